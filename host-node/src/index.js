// raceway-node: the Raceway core (Rust, a WebAssembly component) in Node.js, through jco.
// The same component the Python host runs; see README.md and docs/hosts.md.

export { Core, CoreError, CoreTrap, coreManifest, loadCore } from "./core.js";
export { compareClocks, happensBefore, mergeClocks } from "./clock.js";
export { RecordLog, TRACE_HEADERS, TraceContext, gatherHeaders, newSpanId, newTraceId } from "./context.js";
export { ALLOWED_IMPORTS, CoreExit, Sandbox } from "./sandbox.js";
