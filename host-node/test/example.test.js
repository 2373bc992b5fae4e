// examples/traced-server.mjs's middleware, with a downstream service and a collector in Node
// (the Python service is tests/test_cross_host.py's).

import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer } from "node:http";
import { test } from "node:test";
import { gateway, traced } from "../examples/traced-server.mjs";
import { loadCore } from "../src/index.js";

async function listen(handler) {
  const server = createServer(handler);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { server, url: `http://127.0.0.1:${server.address().port}` };
}

test("the middleware continues the caller's trace, calls downstream with new headers, posts its events", async (t) => {
  const seen = [];
  const downstream = await listen((req, res) => {
    seen.push(req.headers);
    res.end('{"ok":true}');
  });
  const bodies = [];
  let arrived;
  const delivered = new Promise((resolve) => (arrived = resolve));
  const collector = await listen(async (req, res) => {
    let body = "";
    for await (const chunk of req) body += chunk;
    bodies.push({ path: req.url, type: req.headers["content-type"], body: JSON.parse(body) });
    res.end('{"success":true,"data":"ok","error":null}');
    if (bodies.flatMap((b) => b.body.events).length >= 2) arrived();
  });
  const core = await loadCore();
  const app = await listen(traced(gateway(downstream.url), { core, service: "gw", instance: "gw-1", collector: collector.url }));
  t.after(() => [downstream, collector, app].forEach(({ server }) => server.close()));

  const answer = await fetch(`${app.url}/work?q=1`, {
    headers: { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", tracestate: "a=1" },
  });
  const body = await answer.json();
  assert.equal(body.trace_id, "0af76519-16cd-43dd-8448-eb211c80319c");
  assert.equal(body.span_id, "b7ad6b7169203331");
  assert.equal(answer.headers.get("traceparent"), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");

  assert.equal(seen.length, 1);
  assert.equal(seen[0].traceparent, `00-0af7651916cd43dd8448eb211c80319c-${body.downstream_span_id}-01`);
  assert.equal(seen[0].tracestate, "a=1");
  const parsed = core.parseIncoming({ traceparent: [seen[0].traceparent], "raceway-clock": [seen[0]["raceway-clock"]] });
  assert.equal(parsed.upstream.parent_span_id, "b7ad6b7169203331");
  assert.deepEqual(parsed.upstream.clock, [[body.component, 2]]);

  await delivered;
  assert.ok(bodies.every((b) => b.path === "/events" && b.type === "application/json"));
  const events = bodies.flatMap((b) => b.body.events);
  assert.deepEqual(events.map((e) => Object.keys(e.kind)[0] ?? e.kind), ["HttpRequest", "HttpResponse"]);
  assert.ok(events.every((e) => e.trace_id === body.trace_id && e.metadata.service_name === "gw"));
});
