// Contexts, headers and records on the Node side, through the real core.

import assert from "node:assert/strict";
import { test } from "node:test";
import { RecordLog, TraceContext, compareClocks, gatherHeaders, loadCore, newSpanId, newTraceId } from "../src/index.js";

const core = await loadCore();
const identity = { service: "node-svc", instance: "node-1" };
const TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

test("gatherHeaders keeps every value of the trace headers only, names lower-cased", () => {
  assert.deepEqual(gatherHeaders({ headersDistinct: { traceparent: [TP, TP], "x-other": ["1"] } }), { traceparent: [TP, TP] });
  assert.deepEqual(gatherHeaders(["TraceParent", TP, "TraceState", "a=1", "tracestate", "b=2", "Host", "h"]), {
    traceparent: [TP],
    tracestate: ["a=1", "b=2"],
  });
  assert.deepEqual(gatherHeaders({ rawHeaders: ["Raceway-Clock", "v1;x"] }), { "raceway-clock": ["v1;x"] });
  assert.deepEqual(gatherHeaders({ Traceparent: TP, tracestate: ["a=1"], other: "x", empty: undefined }), {
    traceparent: [TP],
    tracestate: ["a=1"],
  });
  // A repeated traceparent reaches the core as two values, and the core refuses it.
  const parsed = core.parseIncoming(gatherHeaders({ headersDistinct: { traceparent: [TP, TP] } }));
  assert.equal(parsed.parent, null);
  assert.ok(parsed.errors.length > 0);
});

test("ids: a hyphenated UUID and 16 hex digits, never zero", () => {
  assert.match(newTraceId(), /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  assert.match(newSpanId(), /^(?!0{16})[0-9a-f]{16}$/);
});

test("a call from one Node context to another continues the trace, span and clock", () => {
  const caller = TraceContext.fromIncoming(core.parseIncoming(gatherHeaders({ traceparent: TP })), identity);
  assert.equal(caller.traceId, "0af76519-16cd-43dd-8448-eb211c80319c");
  assert.equal(caller.spanId, "b7ad6b7169203331");
  const request = caller.outgoingRequest();
  const headers = core.encodeOutgoing(request);
  assert.equal(headers.traceparent, `00-0af7651916cd43dd8448eb211c80319c-${request.span_id}-01`);
  const callee = TraceContext.fromIncoming(core.parseIncoming(gatherHeaders(headers)), { service: "other", instance: "o-1" });
  assert.equal(callee.traceId, caller.traceId);
  assert.equal(callee.spanId, request.span_id);
  assert.equal(callee.upstreamSpanId, caller.spanId);
  assert.deepEqual(callee.inherited, [[caller.component, 1]]);
  callee.tick(); // its first event
  assert.equal(compareClocks(caller.clock(), callee.clock()), "Before");
});

test("no or invalid headers: a new trace", () => {
  const ctx = TraceContext.fromIncoming(core.parseIncoming(gatherHeaders({ traceparent: "garbage" })), identity);
  assert.notEqual(ctx.traceId, "0af76519-16cd-43dd-8448-eb211c80319c");
  assert.equal(ctx.upstreamSpanId, null);
  assert.match(ctx.component, /^node-svc#node-1\/[0-9a-f]{8}$/);
  assert.match(ctx.traceparent(), /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
});

test("spawn and join: a child is after its parent, a joiner learns the child", () => {
  const parent = TraceContext.newTrace(identity);
  parent.tick();
  const child = parent.child();
  child.tick();
  assert.equal(compareClocks(parent.clock(), child.clock()), "Before");
  parent.tick();
  assert.equal(compareClocks(parent.clock(), child.clock()), "Concurrent");
  parent.join(child);
  assert.equal(compareClocks(child.clock(), parent.clock()), "Before");
  assert.ok(!parent.inherited.some(([c]) => c === parent.component), "our own component stays out of what we inherited");
});

test("RecordLog batches encode through the core: ids chain, trace and strand kept", () => {
  const log = new RecordLog();
  const a = TraceContext.newTrace(identity);
  log.record(a, "HttpRequest", ["GET", "/x", {}, null], { file: "app.js", line: 1 });
  const b = a.child(); // spawned after a's first event
  log.record(b, "StateChange", ["v", null, 1, "Read"], { file: "app.js", line: 2 });
  b.locks.push("L");
  log.record(b, "StateChange", ["v", 1, 2, "Write"], { file: "app.js", line: 3 });
  log.record(a, "HttpResponse", [200, {}, null, 1], { file: "app.js", line: 4, durationNs: 1_000_000 });
  assert.equal(log.size, 4);
  core.configure({ service_name: "node-svc", environment: "", instance_id: "node-1", process_id: process.pid, tags: {} });
  const encoded = core.encodeBatch(log.take(), 100);
  assert.equal(log.size, 0);
  assert.equal(encoded.dropped, 0, encoded.errors.join("; "));
  const events = JSON.parse(encoded.bodies[0]).events;
  assert.equal(events.length, 4);
  assert.ok(events.every((e) => e.trace_id === a.traceId));
  const [req, read, write, res] = events;
  assert.equal(req.parent_id, null);
  assert.equal(res.parent_id, req.id);
  assert.equal(write.parent_id, read.id);
  assert.equal(read.metadata.thread_id, b.threadId);
  assert.deepEqual(write.lock_set, ["L"]);
  assert.deepEqual(read.causality_vector, [[a.component, 1], [b.component, 1]]);
  assert.equal(res.metadata.duration_ns, 1_000_000);
});
