// Type-checked only (`npm run typecheck`), never run: the API as a TypeScript application
// uses it. Each `@ts-expect-error` is a misuse the declarations must refuse.

import {
  ALLOWED_IMPORTS,
  Core,
  CoreError,
  CoreExit,
  CoreTrap,
  RecordLog,
  Sandbox,
  TRACE_HEADERS,
  TraceContext,
  compareClocks,
  coreManifest,
  gatherHeaders,
  happensBefore,
  loadCore,
  mergeClocks,
  newSpanId,
  newTraceId,
} from "../src/index.js";
import type {
  Access,
  Causality,
  Clock,
  EncodedBatch,
  Findings,
  Incoming,
  OutgoingHeaders,
  OutgoingRequest,
  ProcessConfig,
  Race,
  RecordBatch,
  WitFunction,
} from "../src/index.js";

export async function application(): Promise<void> {
  const core: Core = await loadCore({ onTrap: (trap: CoreTrap) => void trap.message });
  const manifest = await coreManifest();
  const sha: string = manifest.sha256;

  const incoming: Incoming = core.parseIncoming(gatherHeaders({ headersDistinct: { traceparent: ["00-..."] } }));
  const traceId: string | undefined = incoming.parent?.trace_id;
  const context = TraceContext.fromIncoming(incoming, { service: "api", instance: "api-1" });
  const request: OutgoingRequest = context.outgoingRequest();
  const headers: OutgoingHeaders = core.encodeOutgoing(request);
  const clockHeader: string = headers["raceway-clock"];
  const tracestate: string | undefined = headers.tracestate;

  const config: ProcessConfig = { service_name: "api", environment: "prod", instance_id: "api-1", process_id: 1 };
  core.configure(config);
  const log = new RecordLog();
  const seq: number = log.record(context, "StateChange", ["balance", null, 100, "Read"], { file: "app.ts", line: 1 });
  const encoded: EncodedBatch = core.encodeBatch(log.take(), 50);
  const bodies: string[] = encoded.bodies;
  const batch: RecordBatch = { contexts: [], states: [], events: [[0, 0, 1, 0, 0, null, "a.ts", 1, "Custom", ["x", {}]]] };
  core.observe(batch);

  core.resetDetector({ max_races: 10 });
  const findings: Findings = core.races();
  const race: Race | undefined = findings.races[0];
  const kind: "data-race" | "lost-update" | undefined = race?.kind;
  const access: Access | undefined = race?.accesses[0];
  const location: string | undefined = access?.location;
  const raw: string = core.call("encode-batch", "{}", 10);
  const fn: WitFunction = "races";
  core.call(fn);

  const a: Clock = [["x", 1]];
  const merged: Clock = mergeClocks(a, [["y", 2]]);
  const order: Causality = compareClocks(a, merged);
  const before: boolean = happensBefore(a, merged);
  const ids: string = newTraceId() + newSpanId();
  const names: readonly string[] = [...TRACE_HEADERS, ...ALLOWED_IMPORTS];
  const stderr: string = new Sandbox().stderr;
  const errors: Error[] = [new CoreError("x"), new CoreTrap("y"), new CoreExit("z")];
  const failure: string | null = core.failure;
  void [sha, traceId, clockHeader, tracestate, seq, bodies, kind, location, raw, order, before, ids, names, stderr, errors, failure];

  // @ts-expect-error: a kind the record format does not have
  log.record(context, "Sleep", []);
  // @ts-expect-error: maxEventsPerBody is required for encodeBatch
  core.encodeBatch(batch);
  // @ts-expect-error: not a WIT function
  core.call("parse");
  // @ts-expect-error: ProcessConfig needs process_id
  core.configure({ service_name: "api", environment: "", instance_id: "" });
  // @ts-expect-error: the clock is [component, counter] pairs
  mergeClocks([["x", "1"]], []);
  // @ts-expect-error: Core is made by loadCore(), not new
  new Core();
  // @ts-expect-error: failure is read-only
  core.failure = null;
}
