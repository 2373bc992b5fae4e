// The boundary to the Rust core: the only module that knows the component exists (the Node
// twin of host-python/raceway/_core.py). Each `Core` is one instance of the component, with its
// own state (the process fields from `configure`, the race detector) and its own sandbox
// (src/sandbox.js). Calls take and return JSON text (wit/raceway.wit); this module parses and
// renders that JSON, so callers deal in objects.
//
// Failures: a refusal (bad input: the WIT `result`'s error) throws `CoreError` and leaves the
// instance usable. A trap (a panic, out of memory, the core asking to exit) throws `CoreTrap`,
// calls `onTrap` once, and poisons the instance: every later call throws `CoreTrap` without
// entering the component, as the Python host does.

import { readFile } from "node:fs/promises";
import { Sandbox } from "./sandbox.js";

const GENERATED = new URL("../generated/", import.meta.url);

/** The core refused a call (bad input) or could not be loaded. */
export class CoreError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = "CoreError";
  }
}

/** The core failed (trapped, or an earlier call did): this instance cannot be used any more. */
export class CoreTrap extends CoreError {
  constructor(message, options) {
    super(message, options);
    this.name = "CoreTrap";
  }
}

let runtime = null;

/** The transpiled glue and the compiled core modules: loaded once per process, shared. */
async function loadRuntime() {
  let glue;
  try {
    glue = await import(new URL("raceway_core.js", GENERATED).href);
  } catch (e) {
    throw new CoreError(
      "the transpiled core is missing (host-node/generated/): run `make node` or `npm run transpile` in host-node",
      { cause: e },
    );
  }
  const manifest = JSON.parse(await readFile(new URL("manifest.json", GENERATED), "utf8"));
  const modules = new Map();
  for (const name of manifest.modules) {
    modules.set(name, await WebAssembly.compile(await readFile(new URL(name, GENERATED))));
  }
  return { instantiate: glue.instantiate, modules, manifest };
}

function getRuntime() {
  runtime ??= loadRuntime().catch((e) => {
    runtime = null; // a later call may find the files (after `make node`)
    throw e;
  });
  return runtime;
}

/** What the transpiled core was made from: `{source, sha256, bytes, imports, exports}`. */
export async function coreManifest() {
  return (await getRuntime()).manifest;
}

/**
 * A new, sandboxed instance of the core. Compiling happens once per process; each further
 * instance costs an instantiation (about a millisecond).
 */
export async function loadCore(options = {}) {
  const { instantiate, modules } = await getRuntime();
  const sandbox = new Sandbox();
  let root;
  try {
    root = instantiate((name) => {
      const module = modules.get(name);
      if (module === undefined) throw new CoreError(`the transpiled core asks for an unknown module ${name}`);
      return module;
    }, sandbox.importObject());
  } catch (e) {
    if (e instanceof CoreError) throw e;
    throw new CoreError(`cannot instantiate the core: ${e?.message ?? e}`, { cause: e });
  }
  return new Core(root, sandbox, options);
}

/**
 * One instance of the core. Not re-entrant, but JavaScript never re-enters it: every call runs
 * to completion on the calling thread.
 */
export class Core {
  #root;
  #sandbox;
  #onTrap;
  #failure = null;

  /** @internal Use `loadCore()`. */
  constructor(root, sandbox, { onTrap } = {}) {
    this.#root = root;
    this.#sandbox = sandbox ?? new Sandbox();
    this.#onTrap = onTrap ?? null;
  }

  /** Why the instance is unusable, once it is; otherwise null. */
  get failure() {
    return this.#failure;
  }

  #call(name, fn, ...args) {
    if (this.#failure !== null) {
      throw new CoreTrap(`core is off after an earlier failure: ${this.#failure}`);
    }
    try {
      return fn(...args);
    } catch (e) {
      // A refusal: the WIT result's error, thrown as its message (noComponentErrorWrapping).
      if (typeof e === "string") throw new CoreError(`core refused ${name}: ${e}`);
      // Anything else came from inside (the arguments are checked before the call): a trap.
      const stderr = this.#sandbox.stderr.trim().split("\n").filter(Boolean).pop();
      this.#failure = `${name}: ${e?.message ?? e}${stderr ? ` (${stderr})` : ""}`;
      const trap = new CoreTrap(`core call ${this.#failure}`, { cause: e });
      const onTrap = this.#onTrap;
      this.#onTrap = null;
      if (onTrap !== null) {
        try {
          onTrap(trap);
        } catch {
          // the owner's handler must not make it worse
        }
      }
      throw trap;
    }
  }

  /**
   * Calls a WIT function by its name with its arguments as they cross (strings, and a u32 for
   * `max-events-per-body`), and answers the core's text unparsed (`""` for `configure` and
   * `reset-detector`). For tools that pass answers on verbatim, and for comparing hosts.
   */
  call(name, ...args) {
    const fn = this.#functions()[name];
    if (fn === undefined) throw new CoreError(`the core exports no function ${String(name)}`);
    const [arity, hasCount] = WIT_FUNCTIONS[name];
    if (args.length !== arity) throw new CoreError(`${name} takes ${arity} arguments, got ${args.length}`);
    const lowered = args.map((a, i) => (hasCount && i === 1 ? u32("max-events-per-body", a) : text(a)));
    return this.#call(name, fn, ...lowered) ?? "";
  }

  #functions() {
    const { propagation, pipeline, detector } = this.#root;
    return {
      "parse-incoming": propagation.parseIncoming,
      "encode-outgoing": propagation.encodeOutgoing,
      configure: pipeline.configure,
      "encode-batch": pipeline.encodeBatch,
      "reset-detector": detector.resetDetector,
      observe: detector.observe,
      races: detector.races,
    };
  }

  // -- propagation ---------------------------------------------------------------------------

  /**
   * Reads the trace headers of an incoming request. `headers` maps lower-case names to every
   * value received (`gatherHeaders` makes it from a Node request). Never throws for bad
   * headers: they are reported in `errors` and dropped.
   */
  parseIncoming(headers) {
    return JSON.parse(this.#call("parse-incoming", this.#root.propagation.parseIncoming, text(headers)));
  }

  /**
   * The headers for one outgoing call, as `{traceparent, "raceway-clock", tracestate?}` (the
   * core's lines, in its order). Throws `CoreError` when the request is malformed.
   */
  encodeOutgoing(request) {
    const headers = {};
    for (const line of this.#call("encode-outgoing", this.#root.propagation.encodeOutgoing, text(request)).split("\n")) {
      const at = line.indexOf(": ");
      headers[at < 0 ? line : line.slice(0, at)] = at < 0 ? "" : line.slice(at + 2);
    }
    return headers;
  }

  // -- pipeline ------------------------------------------------------------------------------

  /** Sets the process-wide fields stamped on every event. */
  configure(config) {
    this.#call("configure", this.#root.pipeline.configure, text(config));
  }

  /**
   * Encodes one batch of records (docs/record-format.md) into request bodies for
   * `POST /events`, at most `maxEventsPerBody` events each: the summary with `bodies`, each
   * a string of compact JSON.
   */
  encodeBatch(records, maxEventsPerBody) {
    return splitBodies(this.#call("encode-batch", this.#root.pipeline.encodeBatch, text(records), u32("maxEventsPerBody", maxEventsPerBody)));
  }

  // -- detector ------------------------------------------------------------------------------

  /** Starts this instance's detector afresh with these bounds (docs/races.md). */
  resetDetector(options = {}) {
    this.#call("reset-detector", this.#root.detector.resetDetector, text(options));
  }

  /**
   * Feeds one batch to the detector, in the order the events happened; with
   * `maxEventsPerBody` > 0 also encodes it (the answer is then `encodeBatch`'s).
   */
  observe(records, maxEventsPerBody = 0) {
    return splitBodies(this.#call("observe", this.#root.detector.observe, text(records), u32("maxEventsPerBody", maxEventsPerBody)));
  }

  /** The distinct races found so far and the detector's counters. */
  races() {
    return JSON.parse(this.#call("races", this.#root.detector.races));
  }
}

/** Each WIT function: its number of arguments, and whether the second is a u32 count. */
const WIT_FUNCTIONS = {
  "parse-incoming": [1, false],
  "encode-outgoing": [1, false],
  configure: [1, false],
  "encode-batch": [2, true],
  "reset-detector": [1, false],
  observe: [2, true],
  races: [0, false],
};

function u32(name, value) {
  // jco wraps a bad u32 silently (-1 becomes 4294967295): refuse it before the call.
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new CoreError(`${name} must be an integer from 0 to 4294967295, got ${String(value)}`);
  }
  return value;
}

function text(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** The answer of encode-batch and observe: a summary line, then one body per count. */
function splitBodies(answer) {
  let end = answer.indexOf("\n");
  if (end < 0) end = answer.length;
  const summary = JSON.parse(answer.slice(0, end));
  const bodies = [];
  let start = end + 1;
  for (let i = 0; i < summary.counts.length; i++) {
    end = answer.indexOf("\n", start);
    if (end < 0) end = answer.length;
    bodies.push(answer.slice(start, end));
    start = end + 1;
  }
  summary.bodies = bodies;
  return summary;
}
