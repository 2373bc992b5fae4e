// What a host keeps itself (docs/hosts.md): execution contexts with their ids and clocks, and
// the record log the core encodes. The Node twin of the parts of host-python/raceway/context.py
// and _records.py that a middleware needs; the W3C rules stay in the core.

import { randomBytes } from "node:crypto";
import { mergeClocks } from "./clock.js";

/** The only header names the core reads: nothing else is sent across the boundary. */
export const TRACE_HEADERS = Object.freeze(["traceparent", "tracestate", "raceway-clock"]);

/**
 * Every value of each trace header of a Node request, in order, names lower-cased: what
 * `Core.parseIncoming` takes. Accepts an `http.IncomingMessage` (its `headersDistinct`, so a
 * repeated `traceparent` reaches the core as two values and is refused, as it must be), a
 * `rawHeaders`-style flat list, or a plain object of names to a value or a list of values.
 */
export function gatherHeaders(source) {
  const found = {};
  const add = (name, value) => {
    const key = String(name).toLowerCase();
    if (!TRACE_HEADERS.includes(key) || value === undefined || value === null) return;
    for (const v of Array.isArray(value) ? value : [value]) (found[key] ??= []).push(String(v));
  };
  if (Array.isArray(source)) {
    for (let i = 0; i + 1 < source.length; i += 2) add(source[i], source[i + 1]);
  } else if (source && typeof source === "object" && "headersDistinct" in source && source.headersDistinct) {
    for (const [name, values] of Object.entries(source.headersDistinct)) add(name, values);
  } else if (source && typeof source === "object" && Array.isArray(source.rawHeaders)) {
    return gatherHeaders(source.rawHeaders);
  } else if (source && typeof source === "object") {
    for (const [name, value] of Object.entries(source)) add(name, value);
  }
  return found;
}

/** A random trace id: a lower-case hyphenated UUID, never all zero. */
export function newTraceId() {
  for (;;) {
    const h = randomBytes(16).toString("hex");
    if (!/^0+$/.test(h)) return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }
}

/** A random span id: 16 lower-case hex digits, never all zero. */
export function newSpanId() {
  for (;;) {
    const h = randomBytes(8).toString("hex");
    if (h !== "0000000000000000") return h;
  }
}

// Context suffixes count up from a random start: unique within the process, unlikely to
// repeat across processes (the Python host's rule).
let nextSuffix = randomBytes(4).readUInt32BE(0);

/**
 * One strand of work (a request, a task): its trace, its span, its own clock component and
 * event counter, and the clock it inherited.
 */
export class TraceContext {
  /**
   * @param {object} fields `traceId`, `spanId`, and optionally `upstreamSpanId`, `tracestate`,
   *   `flags` (default 1), `clock` (inherited), `service`, `instance`.
   */
  constructor({ traceId, spanId, upstreamSpanId = null, tracestate = null, flags = 1, clock = [], service = "unknown-service", instance = "unknown-instance" }) {
    const suffix = nextSuffix.toString(16).padStart(8, "0");
    nextSuffix = (nextSuffix + 1) >>> 0;
    this.traceId = traceId;
    this.spanId = spanId;
    this.upstreamSpanId = upstreamSpanId;
    this.tracestate = tracestate;
    this.flags = flags;
    this.service = service;
    this.instance = instance;
    this.threadId = `node-${process.pid}-${suffix}`;
    this.component = `${service}#${instance}/${suffix}`;
    this.idBase = randomBytes(16).toString("hex");
    /** Events and outgoing calls so far: this context's own clock counter. */
    this.seq = 0;
    /** The seq of the latest event: the next event's parent. */
    this.last = 0;
    /** What the context inherited (its spawner's clock, the caller's), without its own component. */
    this.inherited = clock.map(([c, n]) => [c, n]);
    this.locks = [];
  }

  /** A new trace, for a request that carried no valid `traceparent`. */
  static newTrace(identity = {}) {
    return new TraceContext({ traceId: newTraceId(), spanId: newSpanId(), ...identity });
  }

  /**
   * The context of a request, from `Core.parseIncoming`'s answer: the caller's trace, the span
   * it minted for us, its flags and tracestate, and from `raceway-clock` the caller's span (our
   * upstream) and clock. Without a valid parent, a new trace.
   */
  static fromIncoming(parsed, identity = {}) {
    const parent = parsed?.parent;
    if (!parent) return TraceContext.newTrace(identity);
    const upstream = parsed.upstream;
    return new TraceContext({
      traceId: parent.trace_id,
      spanId: parent.span_id,
      upstreamSpanId: upstream?.parent_span_id ?? null,
      tracestate: parsed.tracestate ?? null,
      flags: parent.flags ?? 1,
      clock: upstream?.clock ?? [],
      ...identity,
    });
  }

  /** The current vector clock: the inherited one with this context's own counter. */
  clock() {
    return mergeClocks(this.inherited, [[this.component, this.seq]]);
  }

  /** Counts a step that is not an event (an outgoing call); returns the new counter. */
  tick() {
    this.seq += 1;
    return this.seq;
  }

  /**
   * The `encode-outgoing` request for one downstream call: a new span for the callee, this
   * context's span as its parent, and the clock after counting the call.
   */
  outgoingRequest() {
    this.tick();
    return {
      trace_id: this.traceId,
      span_id: newSpanId(),
      parent_span_id: this.spanId,
      flags: this.flags,
      tracestate: this.tracestate,
      service: this.service,
      instance: this.instance,
      component: this.component,
      clock: this.clock(),
    };
  }

  /** A child strand (spawn edge): same trace, its own span and component, our clock. */
  child() {
    return new TraceContext({
      traceId: this.traceId,
      spanId: newSpanId(),
      upstreamSpanId: this.spanId,
      tracestate: this.tracestate,
      flags: this.flags,
      clock: this.clock(),
      service: this.service,
      instance: this.instance,
    });
  }

  /** We waited for `other` (join edge): learn its clock. */
  join(other) {
    this.inherited = mergeClocks(this.inherited, other.clock()).filter(([c]) => c !== this.component);
  }

  /** `traceparent` naming this context's span, for a response header. */
  traceparent() {
    return `00-${this.traceId.replaceAll("-", "")}-${this.spanId}-${(this.flags & 0x03).toString(16).padStart(2, "0")}`;
  }
}

function unixNanos() {
  // Microseconds from the high-resolution clock, as nanoseconds. Past 2^53 a Number is not
  // exact, but JSON writes the nearest integer and the core reads it as a u64: ~100 ns off.
  return Math.round((performance.timeOrigin + performance.now()) * 1000) * 1000;
}

/**
 * The record log (docs/record-format.md): events of any number of contexts, taken as one
 * batch for `Core.encodeBatch` / `Core.observe`.
 */
export class RecordLog {
  #contexts = new Map();
  #states = new Map();
  #batch = { contexts: [], states: [], events: [] };

  /** How many events are waiting. */
  get size() {
    return this.#batch.events.length;
  }

  /**
   * Records one event of `ctx`. `fields` as the kind needs them (docs/record-format.md);
   * `location` is `{file, line}`, `durationNs` the event's duration or null.
   */
  record(ctx, kind, fields, { file = "", line = 0, durationNs = null } = {}) {
    let ci = this.#contexts.get(ctx);
    if (ci === undefined) {
      ci = this.#batch.contexts.length;
      this.#contexts.set(ctx, ci);
      this.#batch.contexts.push({
        trace_id: ctx.traceId,
        thread_id: ctx.threadId,
        component: ctx.component,
        span_id: ctx.spanId,
        upstream_span_id: ctx.upstreamSpanId,
        id_base: ctx.idBase,
      });
    }
    const state = { clock: ctx.inherited.map(([c, n]) => [c, n]), locks: [...ctx.locks] };
    const key = JSON.stringify(state);
    let si = this.#states.get(key);
    if (si === undefined) {
      si = this.#batch.states.length;
      this.#states.set(key, si);
      this.#batch.states.push(state);
    }
    const seq = ctx.tick();
    const prev = ctx.last;
    ctx.last = seq;
    this.#batch.events.push([ci, si, seq, prev, unixNanos(), durationNs, file, line, kind, fields]);
    return seq;
  }

  /** The batch so far, as JSON text, and a fresh log. */
  take() {
    const text = JSON.stringify(this.#batch);
    this.#contexts.clear();
    this.#states.clear();
    this.#batch = { contexts: [], states: [], events: [] };
    return text;
  }
}
