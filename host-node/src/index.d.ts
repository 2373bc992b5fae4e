// The API of raceway-node, typed by hand. The JSON shapes are the contract of wit/raceway.wit
// (and docs/record-format.md, docs/races.md); field names stay as the core writes them
// (snake_case), because they cross to other hosts and servers verbatim. `tsc --noEmit`
// (npm run typecheck) checks this file and test/types.ts, which uses every declaration here.

// -- clocks -----------------------------------------------------------------------------------

/** One vector-clock entry: an execution context's component and its counter. */
export type ClockEntry = [component: string, counter: number];
/** A vector clock, entries in first-seen order. */
export type Clock = ClockEntry[];
/** How clock `a` relates to clock `b`. */
export type Causality = "Before" | "After" | "Equal" | "Concurrent";

/** Element-wise maximum, in first-seen order (`a`'s entries, then `b`'s new ones). */
export function mergeClocks(a: Iterable<ClockEntry>, b: Iterable<ClockEntry>): Clock;
/** Compares two clocks; an absent component counts as 0. */
export function compareClocks(a: Iterable<ClockEntry>, b: Iterable<ClockEntry>): Causality;
/** Whether `a` happened strictly before `b`. */
export function happensBefore(a: Iterable<ClockEntry>, b: Iterable<ClockEntry>): boolean;

// -- propagation ------------------------------------------------------------------------------

/** Lower-case header names to every value received under that name, in order. */
export type IncomingHeaders = Record<string, string[]>;

export interface ParentSpan {
  /** Hyphenated lower-case UUID. */
  trace_id: string;
  /** The span the caller minted for us. */
  span_id: string;
  flags: number;
  version: string;
}

export interface Upstream {
  span_id: string;
  /** The caller's own span: our upstream span. */
  parent_span_id: string | null;
  service: string;
  instance: string;
  clock: Clock;
}

/** `parseIncoming`'s answer. */
export interface Incoming {
  parent: ParentSpan | null;
  tracestate: string | null;
  upstream: Upstream | null;
  /** Why headers were dropped; empty when all was well. */
  errors: string[];
}

/** `encodeOutgoing`'s request: one downstream call. */
export interface OutgoingRequest {
  trace_id: string;
  /** The NEW span minted for the callee. */
  span_id: string;
  /** Ours. */
  parent_span_id: string;
  flags: number;
  tracestate: string | null;
  service: string;
  instance: string;
  clock: Clock;
  /** The sender's own clock component: kept first when the clock is cut to the header's bound. */
  component?: string;
}

/** The headers for one outgoing call, as the core renders them. */
export interface OutgoingHeaders {
  traceparent: string;
  "raceway-clock": string;
  tracestate?: string;
}

// -- pipeline ---------------------------------------------------------------------------------

/** The process-wide fields stamped on every event. */
export interface ProcessConfig {
  service_name: string;
  environment: string;
  instance_id: string;
  process_id: number;
  tags?: Record<string, string>;
}

export interface RecordContext {
  trace_id: string;
  thread_id: string;
  component: string;
  span_id: string;
  upstream_span_id: string | null;
  /** 32 hex digits: event ids are `uuid(id_base + seq)`. */
  id_base: string;
}

export interface RecordState {
  /** The inherited clock, without the context's own component. */
  clock: Clock;
  locks: string[];
}

export type EventKind =
  | "StateChange"
  | "FunctionCall"
  | "HttpRequest"
  | "HttpResponse"
  | "LockAcquire"
  | "LockRelease"
  | "AsyncSpawn"
  | "AsyncAwait"
  | "Error"
  | "Custom"
  | "MemoryFence"
  | "DatabaseQuery"
  | "DatabaseResult";

/** `[context, state, seq, prev_seq, unix_nanos, duration_ns, file, line, kind, fields]`. */
export type EventRecord = [
  context: number,
  state: number,
  seq: number,
  prevSeq: number,
  unixNanos: number,
  durationNs: number | null,
  file: string,
  line: number,
  kind: EventKind,
  fields: unknown[],
];

/** One batch of records (docs/record-format.md). */
export interface RecordBatch {
  contexts: RecordContext[];
  states: RecordState[];
  events: EventRecord[];
}

export interface BatchSummary {
  /** Events in each body. */
  counts: number[];
  events: number;
  /** Records that could not be encoded, with the reasons in `errors`. */
  dropped: number;
  errors: string[];
}

/** `encodeBatch`'s (and `observe`'s) answer. */
export interface EncodedBatch extends BatchSummary {
  /** Request bodies for `POST /events`, compact JSON, one per count. */
  bodies: string[];
}

// -- detector ---------------------------------------------------------------------------------

/** The detector's bounds; every field optional (defaults in docs/races.md). */
export interface DetectorOptions {
  max_races?: number;
  max_strands?: number;
  max_variables?: number;
  max_readers?: number;
  max_value_bytes?: number;
}

export type AccessType = "Read" | "Write" | "AtomicRead" | "AtomicWrite" | "AtomicRMW";

export interface Access {
  access_type: AccessType;
  /** `file:line` of the call that recorded the access. */
  location: string;
  /** `file:line in function`, innermost first. */
  stack: string[];
  thread_id: string;
  component: string;
  trace_id: string;
  service: string;
  seq: number;
  /** RFC 3339, UTC. */
  timestamp: string;
  unix_nanos: number;
  locks: string[];
  old_value: unknown;
  new_value: unknown;
}

export interface Race {
  kind: "data-race" | "lost-update";
  severity: "CRITICAL" | "WARNING";
  variable: string;
  count: number;
  first_seen: string;
  last_seen: string;
  /** Data race: earlier, later. Lost update: the read, the other write, the stale write. */
  accesses: Access[];
}

export interface DetectorStats {
  events: number;
  accesses: number;
  strands: number;
  variables: number;
  races_dropped: number;
}

export interface Findings {
  races: Race[];
  stats: DetectorStats;
}

// -- the core ---------------------------------------------------------------------------------

/** The core refused a call (bad input) or could not be loaded. */
export class CoreError extends Error {}
/** The core failed (trapped, or an earlier call did): the instance cannot be used any more. */
export class CoreTrap extends CoreError {}

export interface CoreOptions {
  /** Called once, with the trap, when this instance traps. */
  onTrap?: (trap: CoreTrap) => void;
}

/** What the transpiled core was made from. */
export interface CoreManifest {
  /** The component, relative to the repository. */
  source: string;
  sha256: string;
  bytes: number;
  /** The interfaces it imports (all granted by the sandbox, and only those). */
  imports: string[];
  exports: string[];
  /** The core wasm modules jco made of it. */
  modules: string[];
}

/** The functions of wit/raceway.wit, by their WIT names. */
export type WitFunction =
  | "parse-incoming"
  | "encode-outgoing"
  | "configure"
  | "encode-batch"
  | "reset-detector"
  | "observe"
  | "races";

/** One sandboxed instance of the core, with its own configuration and detector. */
export class Core {
  private constructor();
  /** Why the instance is unusable, once it is; otherwise null. */
  readonly failure: string | null;
  /** Reads an incoming request's trace headers; never throws for bad headers. */
  parseIncoming(headers: IncomingHeaders | string): Incoming;
  /** The headers for one outgoing call. Throws `CoreError` when the request is malformed. */
  encodeOutgoing(request: OutgoingRequest | string): OutgoingHeaders;
  /** Sets the process-wide fields stamped on every event. */
  configure(config: ProcessConfig | string): void;
  /** Encodes one batch into request bodies of at most `maxEventsPerBody` events each. */
  encodeBatch(records: RecordBatch | string, maxEventsPerBody: number): EncodedBatch;
  /** Starts the detector afresh with these bounds. */
  resetDetector(options?: DetectorOptions | string): void;
  /** Feeds one batch to the detector (and encodes it when `maxEventsPerBody` > 0). */
  observe(records: RecordBatch | string, maxEventsPerBody?: number): EncodedBatch;
  /** The distinct races found so far, and the detector's counters. */
  races(): Findings;
  /** A WIT function by name, its answer unparsed (`""` for functions without one). */
  call(name: "races"): string;
  call(name: "encode-batch" | "observe", records: string, maxEventsPerBody: number): string;
  call(name: "parse-incoming" | "encode-outgoing" | "configure" | "reset-detector", json: string): string;
}

/** A new sandboxed instance (the component is compiled once per process). */
export function loadCore(options?: CoreOptions): Promise<Core>;
/** What the transpiled core was made from. */
export function coreManifest(): Promise<CoreManifest>;

// -- the sandbox ------------------------------------------------------------------------------

/** Every interface the core may import; the sandbox grants these, inert, and nothing else. */
export const ALLOWED_IMPORTS: readonly string[];

/** The core called `wasi:cli/exit`: refused, the call traps. */
export class CoreExit extends Error {}

/** One instance's WASI, granting nothing. */
export class Sandbox {
  /** The last bytes the core wrote to stderr. */
  readonly stderr: string;
  /** The import object for the transpiled `instantiate`: exactly `ALLOWED_IMPORTS`. */
  importObject(): Readonly<Record<string, Readonly<Record<string, unknown>>>>;
}

// -- contexts and records ---------------------------------------------------------------------

/** `traceparent`, `tracestate`, `raceway-clock`. */
export const TRACE_HEADERS: readonly string[];

/** Something with headers: an `http.IncomingMessage`, a `rawHeaders` list, or a plain object. */
export type HeaderSource =
  | { headersDistinct: Record<string, string[]> }
  | { rawHeaders: string[] }
  | readonly string[]
  | Record<string, string | readonly string[] | undefined>;

/** Every value of each trace header, names lower-cased, for `parseIncoming`. */
export function gatherHeaders(source: HeaderSource): IncomingHeaders;
export function newTraceId(): string;
export function newSpanId(): string;

export interface Identity {
  service?: string;
  instance?: string;
}

export interface TraceContextFields extends Identity {
  traceId: string;
  spanId: string;
  upstreamSpanId?: string | null;
  tracestate?: string | null;
  flags?: number;
  clock?: Clock;
}

/** One strand of work: its trace, span, clock component and counter, inherited clock. */
export class TraceContext {
  constructor(fields: TraceContextFields);
  static newTrace(identity?: Identity): TraceContext;
  static fromIncoming(parsed: Incoming, identity?: Identity): TraceContext;
  readonly traceId: string;
  readonly spanId: string;
  readonly upstreamSpanId: string | null;
  readonly tracestate: string | null;
  readonly flags: number;
  readonly service: string;
  readonly instance: string;
  readonly threadId: string;
  readonly component: string;
  readonly idBase: string;
  seq: number;
  last: number;
  inherited: Clock;
  locks: string[];
  clock(): Clock;
  tick(): number;
  /** Counts the call and returns the request for `encodeOutgoing`, with a new span for the callee. */
  outgoingRequest(): OutgoingRequest & { component: string };
  child(): TraceContext;
  join(other: TraceContext): void;
  traceparent(): string;
}

export interface RecordOptions {
  file?: string;
  line?: number;
  durationNs?: number | null;
}

/** The record log: events of any contexts, taken as one batch. */
export class RecordLog {
  readonly size: number;
  /** Records one event; returns its seq. */
  record(ctx: TraceContext, kind: EventKind, fields: unknown[], options?: RecordOptions): number;
  /** The batch so far as JSON text, and a fresh log. */
  take(): string;
}
