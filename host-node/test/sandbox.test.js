// The sandbox: the component gets the WASI interfaces it imports, each inert, and nothing more.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { ALLOWED_IMPORTS, CoreExit, Sandbox, coreManifest, loadCore } from "../src/index.js";
import { STDERR_KEEP } from "../src/sandbox.js";

const PYTHON_WASM = new URL("../../host-python/raceway/_wasm/raceway_core.wasm", import.meta.url);
const GLUE = new URL("../generated/raceway_core.js", import.meta.url);

test("the transpiled core is the very component the Python host loads", async () => {
  const manifest = await coreManifest();
  const sha = createHash("sha256").update(readFileSync(PYTHON_WASM)).digest("hex");
  assert.equal(manifest.sha256, sha, "host-node/generated/ is stale: run `make node` (or `npm run transpile`)");
  assert.deepEqual(manifest.exports.filter((e) => e.startsWith("raceway:")).sort(), [
    "raceway:core/detector@0.1.0",
    "raceway:core/pipeline@0.1.0",
    "raceway:core/propagation@0.1.0",
  ]);
});

test("the component imports nothing beyond the allowlist: no filesystem, sockets, HTTP or clocks", async () => {
  const { imports } = await coreManifest();
  for (const name of imports) assert.ok(ALLOWED_IMPORTS.includes(name), `unexpected import ${name}`);
  for (const name of ALLOWED_IMPORTS) assert.match(name, /^wasi:(cli|io|random)\//);
  assert.ok(!ALLOWED_IMPORTS.some((n) => /filesystem|sockets|http|clocks|random\/random|random\/insecure$/.test(n)));
  // The glue looks up exactly these names in the import object, nothing else.
  const looked = new Set([...readFileSync(GLUE, "utf8").matchAll(/imports\['([^']+)'\]/g)].map((m) => m[1]));
  assert.deepEqual([...looked].sort(), [...imports].sort());
});

test("the import object grants exactly the allowlist, frozen", () => {
  const imports = new Sandbox().importObject();
  assert.deepEqual(Object.keys(imports).sort(), [...ALLOWED_IMPORTS].sort());
  assert.ok(Object.isFrozen(imports));
  for (const iface of Object.values(imports)) assert.ok(Object.isFrozen(iface));
});

test("no environment, no arguments, no working directory", () => {
  process.env.RACEWAY_SANDBOX_PROBE = "secret";
  try {
    const env = new Sandbox().importObject()["wasi:cli/environment"];
    assert.deepEqual(env.getEnvironment(), []);
    assert.deepEqual(env.getArguments(), []);
    assert.equal(env.initialCwd(), undefined);
  } finally {
    delete process.env.RACEWAY_SANDBOX_PROBE;
  }
});

test("wasi:cli/exit throws instead of ending the process", () => {
  const { exit } = new Sandbox().importObject()["wasi:cli/exit"];
  assert.throws(() => exit({ tag: "err" }), CoreExit);
  assert.throws(() => exit({ tag: "ok" }), CoreExit);
});

test("stdin is closed, stdout goes nowhere, stderr is kept (bounded) and never printed", (t) => {
  const sandbox = new Sandbox();
  const imports = sandbox.importObject();
  const written = [];
  t.mock.method(process.stdout, "write", (chunk) => written.push(chunk));
  t.mock.method(process.stderr, "write", (chunk) => written.push(chunk));
  const stdin = imports["wasi:cli/stdin"].getStdin();
  assert.throws(() => stdin.blockingRead(10n), (e) => e.tag === "closed");
  const stdout = imports["wasi:cli/stdout"].getStdout();
  const stderr = imports["wasi:cli/stderr"].getStderr();
  assert.ok(stdout instanceof imports["wasi:io/streams"].OutputStream);
  assert.ok(stdout.checkWrite() > 0n);
  stdout.write(new TextEncoder().encode("to stdout\n"));
  stdout.blockingFlush();
  stderr.write(new TextEncoder().encode("x".repeat(STDERR_KEEP)));
  stderr.write(new TextEncoder().encode("panicked at core-wasm/src/lib.rs:1:1\n"));
  assert.deepEqual(written, []);
  assert.equal(Buffer.byteLength(sandbox.stderr), STDERR_KEEP);
  assert.ok(sandbox.stderr.endsWith("panicked at core-wasm/src/lib.rs:1:1\n"));
  assert.equal(imports["wasi:cli/terminal-stdout"].getTerminalStdout(), undefined);
  assert.equal(stdout.subscribe().ready(), true);
});

test("the core runs in the sandbox and writes nothing anywhere", async (t) => {
  const written = [];
  t.mock.method(process.stdout, "write", (chunk) => written.push(chunk));
  const core = await loadCore();
  core.configure({ service_name: "s", environment: "", instance_id: "i", process_id: 1, tags: {} });
  assert.equal(core.encodeBatch({ contexts: [], states: [], events: [] }, 10).events, 0);
  assert.equal(core.races().races.length, 0);
  assert.deepEqual(written, []);
});

test("in use, the core calls one import: the seed of its hash maps", async () => {
  const { instantiate } = await import(GLUE.href);
  const called = new Set();
  const granted = new Sandbox().importObject();
  const recording = {};
  for (const [iface, members] of Object.entries(granted)) {
    recording[iface] = {};
    for (const [name, member] of Object.entries(members)) {
      const isFunction = typeof member === "function" && !/^[A-Z]/.test(name); // classes pass as they are
      recording[iface][name] = isFunction ? (...args) => (called.add(`${iface}#${name}`), member(...args)) : member;
    }
  }
  const root = instantiate((name) => new WebAssembly.Module(readFileSync(new URL(name, GLUE))), recording);
  root.propagation.parseIncoming(JSON.stringify({ traceparent: ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"] }));
  root.pipeline.configure(JSON.stringify({ service_name: "s", environment: "", instance_id: "i", process_id: 1, tags: {} }));
  const vectors = JSON.parse(readFileSync(new URL("../../tests/vectors/detector.json", import.meta.url), "utf8"));
  for (const batch of vectors.cases.flatMap((c) => c.batches)) {
    root.detector.observe(JSON.stringify(batch), 10);
    root.pipeline.encodeBatch(JSON.stringify(batch), 10);
  }
  root.detector.races();
  assert.deepEqual([...called], ["wasi:random/insecure-seed#insecureSeed"]);
});
