// A traced node:http service in front of a Python one: one trace across both languages.
//
//   node examples/traced-server.mjs --downstream http://127.0.0.1:8000 [--port 3000]
//        [--collector http://127.0.0.1:8080] [--service node-gateway] [--instance node-1]
//
// Each request: its trace headers go through the core (`parseIncoming`), which makes the
// request's context (the caller's trace, or a new one); the handler calls the downstream
// service with headers the core encodes (`encodeOutgoing`: a new span for the callee, our span
// as its parent, our vector clock); the request and response are recorded, and with
// `--collector` the events go to a Raceway server through `encodeBatch`. The Python service
// under raceway's middleware continues the same trace. The middleware (`traced`) has no
// dependency but raceway-node; with Express, `app.use` the same function.
//
// On start it prints one line of JSON, `{"port": N}`, so a test or a script can find it.

import { createServer } from "node:http";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { RecordLog, TraceContext, gatherHeaders, loadCore } from "../src/index.js";

/** The caller's `file` and `line`, as a host records them with each event. */
function location(depth = 1) {
  const frame = new Error().stack?.split("\n")[depth + 1] ?? "";
  const match = /\(?(?:file:\/\/)?([^()]+):(\d+):\d+\)?$/.exec(frame.trim());
  return match ? { file: match[1], line: Number(match[2]) } : { file: "", line: 0 };
}

/**
 * Tracing middleware for node:http. `handler(req, res)` finds the request's context in
 * `req.raceway.context` and calls other services with `req.raceway.fetch(url, init)`, which
 * adds the trace headers and counts the call on the context's clock.
 */
export function traced(handler, { core, service, instance, collector = null, maxEventsPerBody = 50 }) {
  const log = new RecordLog();
  core.configure({ service_name: service, environment: "", instance_id: instance, process_id: process.pid, tags: {} });

  async function flush() {
    if (collector === null || log.size === 0) return;
    const { bodies, dropped, errors } = core.encodeBatch(log.take(), maxEventsPerBody);
    if (dropped > 0) console.error(`raceway: ${dropped} events dropped: ${errors.join("; ")}`);
    for (const body of bodies) {
      try {
        const answer = await fetch(new URL("/events", collector), {
          method: "POST",
          headers: { "content-type": "application/json", "user-agent": "raceway-node/0.1" },
          body,
        });
        await answer.arrayBuffer();
      } catch (e) {
        console.error(`raceway: cannot deliver events: ${e.message}`);
      }
    }
  }

  return async function tracedRequest(req, res) {
    let context;
    try {
      context = TraceContext.fromIncoming(core.parseIncoming(gatherHeaders(req)), { service, instance });
    } catch (e) {
      // A core failure must not fail the request: a new trace.
      console.error(`raceway: cannot read incoming trace headers: ${e.message}`);
      context = TraceContext.newTrace({ service, instance });
    }
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    log.record(context, "HttpRequest", [req.method ?? "GET", path, {}, null], location(1));
    const started = process.hrtime.bigint();
    const where = location(1);
    res.on("finish", () => {
      const durationNs = Number(process.hrtime.bigint() - started);
      log.record(context, "HttpResponse", [res.statusCode, {}, null, Math.floor(durationNs / 1e6)], { ...where, durationNs });
      flush();
    });
    req.raceway = {
      context,
      /** `fetch` with the trace headers; also answers the span minted for the callee. */
      async fetch(url, init = {}) {
        const request = context.outgoingRequest();
        const headers = new Headers(init.headers);
        try {
          for (const [name, value] of Object.entries(core.encodeOutgoing(request))) headers.set(name, value);
        } catch (e) {
          console.error(`raceway: cannot build propagation headers: ${e.message}`);
        }
        const response = await fetch(url, { ...init, headers });
        response.racewaySpan = request.span_id;
        return response;
      },
    };
    try {
      await handler(req, res);
    } catch (e) {
      log.record(context, "Error", [e?.name ?? "Error", String(e?.message ?? e), []], location(1));
      if (!res.headersSent) res.writeHead(500, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: String(e?.message ?? e) }));
    }
  };
}

/** The example's own handler: every path is passed on to the downstream service. */
export function gateway(downstream) {
  return async (req, res) => {
    const { context, fetch } = req.raceway;
    const url = new URL(req.url ?? "/", downstream);
    const answer = await fetch(url);
    const body = await answer.text();
    res.writeHead(200, { "content-type": "application/json", traceparent: context.traceparent() });
    res.end(
      JSON.stringify({
        trace_id: context.traceId,
        span_id: context.spanId,
        component: context.component,
        downstream_span_id: answer.racewaySpan,
        downstream_status: answer.status,
        downstream_body: body,
      }),
    );
  };
}

async function main() {
  const { values } = parseArgs({
    options: {
      port: { type: "string", default: "0" },
      host: { type: "string", default: "127.0.0.1" },
      downstream: { type: "string" },
      collector: { type: "string" },
      service: { type: "string", default: "node-gateway" },
      instance: { type: "string", default: "node-1" },
    },
  });
  if (!values.downstream) {
    console.error("usage: node examples/traced-server.mjs --downstream URL [--port N] [--collector URL]");
    process.exit(2);
  }
  const core = await loadCore();
  const server = createServer(
    traced(gateway(values.downstream), {
      core,
      service: values.service,
      instance: values.instance,
      collector: values.collector ?? null,
    }),
  );
  server.listen(Number(values.port), values.host, () => {
    console.log(JSON.stringify({ port: server.address().port }));
  });
  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections(); // idle keep-alive connections would hold close() open
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
