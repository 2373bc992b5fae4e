// The Core wrapper: refusals, traps, instances, the raw calls.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Core, CoreError, CoreExit, CoreTrap, Sandbox, loadCore } from "../src/index.js";

const PROCESS = { service_name: "svc", environment: "", instance_id: "i", process_id: 7, tags: {} };
const HEADERS = { traceparent: ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"] };

/** A stand-in for the transpiled exports whose functions do what the test says. */
function fakeRoot(encodeOutgoing) {
  const calls = [];
  const root = {
    propagation: { parseIncoming: () => '{"parent":null,"tracestate":null,"upstream":null,"errors":[]}', encodeOutgoing: (r) => (calls.push(r), encodeOutgoing(r)) },
    pipeline: { configure: () => undefined, encodeBatch: () => '{"counts":[],"events":0,"dropped":0,"errors":[]}' },
    detector: { resetDetector: () => undefined, observe: () => "", races: () => "{}" },
  };
  return { root, calls };
}

test("a refusal is a CoreError and leaves the instance usable", async () => {
  const core = await loadCore();
  assert.throws(() => core.encodeBatch("{}", 10), (e) => e instanceof CoreError && !(e instanceof CoreTrap) && /before configure/.test(e.message));
  assert.throws(() => core.resetDetector({ max_races: "many" }), CoreError);
  assert.equal(core.failure, null);
  assert.equal(core.parseIncoming(HEADERS).parent.span_id, "b7ad6b7169203331");
});

test("a count that is not a u32 is refused before the call (jco would wrap -1 silently)", async () => {
  const core = await loadCore();
  core.configure(PROCESS);
  for (const bad of [-1, 1.5, 2 ** 32, "10", Number.NaN]) {
    assert.throws(() => core.encodeBatch({ contexts: [], states: [], events: [] }, bad), CoreError, String(bad));
  }
  assert.throws(() => core.call("encode-batch", "{}", -1), CoreError);
});

test("a trap poisons the instance: CoreTrap, onTrap once, later calls never enter", () => {
  const { root, calls } = fakeRoot(() => {
    throw new WebAssembly.RuntimeError("unreachable");
  });
  const sandbox = new Sandbox();
  sandbox.importObject()["wasi:cli/stderr"].getStderr().write(new TextEncoder().encode("panicked at src/x.rs:1:1:\nboom\n"));
  const traps = [];
  const core = new Core(root, sandbox, { onTrap: (t) => traps.push(t) });
  assert.throws(() => core.encodeOutgoing("{}"), (e) => e instanceof CoreTrap && /unreachable/.test(e.message) && /boom/.test(e.message));
  assert.match(core.failure, /^encode-outgoing: unreachable/);
  assert.throws(() => core.encodeOutgoing("{}"), CoreTrap);
  assert.throws(() => core.parseIncoming({}), CoreTrap);
  assert.equal(calls.length, 1, "no call after the trap entered the component");
  assert.equal(traps.length, 1);
});

test("the core asking to exit is a trap, not the end of the process", () => {
  const sandbox = new Sandbox();
  const { exit } = sandbox.importObject()["wasi:cli/exit"];
  const { root } = fakeRoot(() => exit({ tag: "err" }));
  const core = new Core(root, sandbox);
  assert.throws(() => core.encodeOutgoing("{}"), (e) => e instanceof CoreTrap && e.cause instanceof CoreExit);
  assert.notEqual(core.failure, null);
});

test("a refusal from the WIT result is a CoreError, not a trap", () => {
  const { root } = fakeRoot(() => {
    throw "outgoing: bad";
  });
  const core = new Core(root, new Sandbox());
  assert.throws(() => core.encodeOutgoing("{}"), (e) => e instanceof CoreError && !(e instanceof CoreTrap) && e.message === "core refused encode-outgoing: outgoing: bad");
  assert.equal(core.failure, null);
});

test("instances are independent: configuration and detector state are per instance", async () => {
  const a = await loadCore();
  const b = await loadCore();
  a.configure(PROCESS);
  assert.throws(() => b.encodeBatch({ contexts: [], states: [], events: [] }, 10), /before configure/);
  const ctx = { trace_id: "0af76519-16cd-43dd-8448-eb211c80319c", thread_id: "t", component: "svc#i/1", span_id: "b7ad6b7169203331", upstream_span_id: null, id_base: "00000000000000000000000000000001" };
  const batch = { contexts: [ctx], states: [{ clock: [], locks: [] }], events: [[0, 0, 1, 0, 0, null, "a.js", 1, "StateChange", ["v", null, 1, "Write"]]] };
  assert.equal(a.observe(batch).events, 1);
  assert.equal(a.races().stats.events, 1);
  assert.equal(b.races().stats.events, 0);
  a.resetDetector({});
  assert.equal(a.races().stats.events, 0);
});

test("call() answers the component's text unparsed", async () => {
  const core = await loadCore();
  assert.deepEqual(JSON.parse(core.call("parse-incoming", JSON.stringify(HEADERS))), core.parseIncoming(HEADERS));
  assert.equal(core.call("configure", JSON.stringify(PROCESS)), "");
  const raw = core.call("encode-batch", '{"contexts":[],"states":[],"events":[]}', 5);
  assert.deepEqual(JSON.parse(raw.split("\n")[0]), { counts: [], events: 0, dropped: 0, errors: [] });
  assert.throws(() => core.call("no-such-function"), CoreError);
  assert.throws(() => core.call("races", "extra"), CoreError);
});

test("encodeBatch splits the bodies as the Python host does, and observe answers the same", async () => {
  const core = await loadCore();
  core.configure(PROCESS);
  const ctx = { trace_id: "0af76519-16cd-43dd-8448-eb211c80319c", thread_id: "t", component: "svc#i/1", span_id: "b7ad6b7169203331", upstream_span_id: null, id_base: "00000000000000000000000000000001" };
  const events = Array.from({ length: 5 }, (_, i) => [0, 0, i + 1, i, 1700000000000000000 + i, null, "a.js", i, "Custom", ["n", { i, text: "ünï ✓" }]]);
  const batch = { contexts: [ctx], states: [{ clock: [], locks: [] }], events };
  const encoded = core.encodeBatch(batch, 2);
  assert.deepEqual(encoded.counts, [2, 2, 1]);
  assert.equal(encoded.bodies.length, 3);
  const ids = encoded.bodies.flatMap((b) => JSON.parse(b).events.map((e) => [e.id, e.parent_id]));
  for (let i = 1; i < ids.length; i++) assert.equal(ids[i][1], ids[i - 1][0], "each event's parent is the previous seq");
  const observed = core.observe(batch, 2);
  assert.deepEqual(observed.bodies, encoded.bodies);
});
