// The WASI the core is instantiated with: it grants nothing.
//
// The component imports 14 WASI interfaces because Rust's std links them (the environment, the
// standard streams a panic message would go to, exit, a seed for HashMap), not because the core
// needs the outside world: in use it calls one of them, `insecure-seed` (test/sandbox.test.js). `jco transpile` would normally map each of them to
// @bytecodealliance/preview2-shim, whose Node defaults are the process's own: the whole
// `process.env`, `process.argv`, the real stdin/stdout/stderr (through an I/O worker thread),
// and `wasi:cli/exit` calling `process.exit()`, so a component could read secrets from the
// environment, write into the application's output, or end the process.
//
// preview2-shim's `WASIShim` takes a `sandbox` option: `env: {}`, `args: []` and `preopens: {}`
// deny the environment, the arguments and the filesystem, `enableNetwork: false` outgoing HTTP
// and sockets. That is used here. It does not cover the rest, so those come from this module:
//
// | import                      | here                                                        |
// | --------------------------- | ----------------------------------------------------------- |
// | wasi:cli/environment        | no variables, no arguments, no working directory            |
// | wasi:cli/exit               | throws `CoreExit` (the call traps) instead of process.exit  |
// | wasi:cli/stdin              | a stream that is always closed                              |
// | wasi:cli/stdout             | a sink that drops what it is given                          |
// | wasi:cli/stderr             | a sink that keeps the last `STDERR_KEEP` bytes (for a trap's message) |
// | wasi:cli/terminal-*         | not a terminal                                              |
// | wasi:io/streams, poll, error| these inert streams: no file, socket or descriptor behind them |
// | wasi:random/insecure-seed   | preview2-shim's (node:crypto): randomness grants no access  |
//
// Only the interfaces in `ALLOWED_IMPORTS` are passed, and scripts/transpile.mjs refuses a
// component that imports any other: no filesystem, sockets, HTTP or clocks can appear unnoticed.

import { WASIShim } from "@bytecodealliance/preview2-shim/instantiation";

/** Every interface the core may import (versions stripped, as jco's glue looks them up). */
export const ALLOWED_IMPORTS = Object.freeze([
  "wasi:cli/environment",
  "wasi:cli/exit",
  "wasi:cli/stdin",
  "wasi:cli/stdout",
  "wasi:cli/stderr",
  "wasi:cli/terminal-input",
  "wasi:cli/terminal-output",
  "wasi:cli/terminal-stdin",
  "wasi:cli/terminal-stdout",
  "wasi:cli/terminal-stderr",
  "wasi:io/error",
  "wasi:io/poll",
  "wasi:io/streams",
  "wasi:random/insecure-seed",
]);

/** Bytes of the core's stderr kept per instance (a panic message is a few hundred). */
export const STDERR_KEEP = 4096;

/** The component asked to exit. It never should: the call traps and the instance is done. */
export class CoreExit extends Error {
  constructor(status) {
    super(`the core called wasi:cli/exit (${status?.tag === "err" ? "failure" : "success"}); the sandbox refuses to end the process`);
    this.name = "CoreExit";
  }
}

const CLOSED = { tag: "closed" };

class IoError {
  constructor(message) {
    this.message = message;
  }
  toDebugString() {
    return this.message;
  }
}

/** Always ready: nothing here ever waits. */
class Pollable {
  ready() {
    return true;
  }
  block() {}
}

class InputStream {
  read() {
    throw CLOSED;
  }
  blockingRead() {
    throw CLOSED;
  }
  skip() {
    throw CLOSED;
  }
  blockingSkip() {
    throw CLOSED;
  }
  subscribe() {
    return new Pollable();
  }
}

/** A sink. `keep` (or nothing) receives the bytes; nothing reaches a descriptor. */
class OutputStream {
  #keep;
  constructor(keep) {
    this.#keep = keep;
  }
  checkWrite() {
    return 65536n;
  }
  write(contents) {
    this.#keep?.(contents);
  }
  blockingWriteAndFlush(contents) {
    this.#keep?.(contents);
  }
  flush() {}
  blockingFlush() {}
  writeZeroes() {}
  blockingWriteZeroesAndFlush() {}
  splice() {
    throw CLOSED;
  }
  blockingSplice() {
    throw CLOSED;
  }
  subscribe() {
    return new Pollable();
  }
}

class TerminalInput {}
class TerminalOutput {}

/**
 * One instance's WASI: the import object for jco's `instantiate`, and what the core wrote to
 * stderr (the last `STDERR_KEEP` bytes).
 */
export class Sandbox {
  #stderr = Buffer.alloc(0);

  /** The last bytes the core wrote to stderr, as text (a panic's message, if it printed one). */
  get stderr() {
    return this.#stderr.toString("utf8");
  }

  #keepStderr(bytes) {
    const joined = Buffer.concat([this.#stderr, Buffer.from(bytes)]);
    this.#stderr = joined.length > STDERR_KEEP ? joined.subarray(joined.length - STDERR_KEEP) : joined;
  }

  /** The imports, exactly `ALLOWED_IMPORTS`, frozen. */
  importObject() {
    const stdin = new InputStream();
    const stdout = new OutputStream(null);
    const stderr = new OutputStream((bytes) => this.#keepStderr(bytes));
    const cli = {
      environment: {
        getEnvironment: () => [],
        getArguments: () => [],
        initialCwd: () => undefined,
      },
      exit: {
        exit(status) {
          throw new CoreExit(status);
        },
        exitWithCode(code) {
          throw new CoreExit({ tag: code === 0 ? "ok" : "err" });
        },
      },
      stdin: { getStdin: () => stdin },
      stdout: { getStdout: () => stdout },
      stderr: { getStderr: () => stderr },
      terminalInput: { TerminalInput },
      terminalOutput: { TerminalOutput },
      terminalStdin: { getTerminalStdin: () => undefined },
      terminalStdout: { getTerminalStdout: () => undefined },
      terminalStderr: { getTerminalStderr: () => undefined },
    };
    const io = { error: { Error: IoError }, poll: { Pollable, poll: (list) => new Uint32Array(list.map((_, i) => i)) }, streams: { InputStream, OutputStream } };
    const shim = new WASIShim({
      sandbox: { env: {}, args: [], preopens: {}, enableNetwork: false },
      cli,
      io,
    });
    const all = shim.getImportObject();
    const granted = {};
    for (const name of ALLOWED_IMPORTS) {
      if (all[name] === undefined) throw new Error(`sandbox: preview2-shim provides no ${name}`);
      granted[name] = Object.freeze({ ...all[name] });
    }
    return Object.freeze(granted);
  }
}
