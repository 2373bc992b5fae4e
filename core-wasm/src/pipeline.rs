//! Turns a batch of host records into request bodies for `POST {endpoint}/events`.
//!
//! The server rejects a whole body when one event in it does not deserialize, so every event
//! is validated through the typed model in `event.rs` before a byte of it is written, and a
//! record that cannot be built is dropped and reported instead of being passed on.
//!
//! This is the throughput-critical loop of the SDK, so the parts of an event that repeat are
//! rendered once per batch: metadata per context, clock and lock set per state (joined into
//! one fragment each), a `StateChange` up to its values per variable and after them per site
//! (`event::KindCache`). The varying parts (ids, timestamp, values, counters) are written
//! straight into the body, an event's parent id copied from the previous event's id when it
//! is that event. The summary is worked out first, so the bodies are written after its line
//! in the answer itself (`Bodies`), not copied there.

use crate::detector::Detector;
use crate::event::{KindCache, ProcessConfig};
use crate::ids::event_id_bits;
use crate::pickle;
use crate::read::{self, Event};
use crate::record::{ContextRecord, StateRecord};
use crate::render::{self, Timestamps};
use serde::Serialize;

/// At most this many distinct error messages are returned per batch.
const MAX_ERRORS: usize = 10;
/// The most room reserved for a batch's bodies ahead of writing them (they can grow past it).
const MAX_RESERVE: usize = 4 * 1024 * 1024;

/// What one `encode-batch` call produced.
#[derive(Debug, Default)]
pub struct Encoded {
    /// Request bodies, each `{"events":[…]}`, separated by `\n`.
    pub bodies: Bodies,
    pub summary: Summary,
}

/// The request bodies as they sit in the component's answer (`Encoded::into_wire`), after the
/// summary's line: the summary is known before the first body is written, so the bodies are
/// written in place after it rather than copied there. Derefs to the bodies' bytes.
#[derive(Debug, Default)]
pub struct Bodies {
    wire: Vec<u8>,
    start: usize,
}

impl std::ops::Deref for Bodies {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.wire[self.start..]
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// How many events each body holds, in order.
    pub counts: Vec<usize>,
    pub events: usize,
    pub dropped: usize,
    pub errors: Vec<String>,
}

impl Encoded {
    /// The component's answer: the summary as one JSON line, then the bodies verbatim.
    /// Bodies are not embedded in the JSON: escaping them would double their size.
    pub fn into_wire(self) -> String {
        // Checking the bytes again was a pass over every byte of every body (~7% of an
        // encode call in the component), for bytes that are UTF-8 by construction.
        debug_assert!(std::str::from_utf8(&self.bodies.wire).is_ok());
        // SAFETY: serde_json writes UTF-8, and every byte of the bodies is either ASCII written
        // by the encoder (punctuation, digits, hex) or a whole `&str` copied as it is (strings
        // through `render::string`, raw values, fragments rendered from those).
        unsafe { String::from_utf8_unchecked(self.bodies.wire) }
    }

    #[cfg(test)]
    pub fn body_strs(&self) -> Vec<&str> {
        if self.bodies.is_empty() {
            return Vec::new();
        }
        std::str::from_utf8(&self.bodies)
            .expect("UTF-8")
            .split('\n')
            .collect()
    }

    fn drop_record(&mut self, error: String) {
        self.summary.dropped += 1;
        if self.summary.errors.len() < MAX_ERRORS && !self.summary.errors.contains(&error) {
            self.summary.errors.push(error);
        }
    }
}

/// Encodes a batch into bodies (`max_per_body` events each) without race detection.
pub fn encode_batch(
    config: &ProcessConfig,
    records: &str,
    max_per_body: usize,
) -> Result<Encoded, String> {
    process_batch(config, records, max_per_body, None)
}

/// Reads a batch once into typed events, feeds each valid one to `detector` (when given) and,
/// when `max_per_body` > 0, encodes it into bodies. With `max_per_body` == 0 nothing is
/// rendered: the summary still counts the events and the records that were dropped.
pub fn process_batch(
    config: &ProcessConfig,
    records: &str,
    max_per_body: usize,
    detector: Option<&mut Detector>,
) -> Result<Encoded, String> {
    Ok(process_read(
        config,
        read::read_batch(records)?,
        max_per_body,
        detector,
    ))
}

/// `process_batch` for a batch in the pickle form (`pickle.rs`, docs/record-format.md): the
/// same answer as `process_batch` gives for the batch's JSON form, or an error, before any
/// event is used, when the pickle is not one this reads (the host then sends the JSON form).
pub fn process_pickle(
    config: &ProcessConfig,
    records: &str,
    max_per_body: usize,
    detector: Option<&mut Detector>,
) -> Result<Encoded, String> {
    pickle::check_size(records)?;
    let mut tree = pickle::Tree::read(records)?;
    let values = tree.render_values()?;
    let batch = tree.batch(&values)?;
    Ok(process_read(config, batch, max_per_body, detector))
}

/// Feeds each valid event of a batch as read to `detector` (when given) and, when
/// `max_per_body` > 0, encodes it into bodies.
fn process_read(
    config: &ProcessConfig,
    batch: read::ReadBatch,
    max_per_body: usize,
    mut detector: Option<&mut Detector>,
) -> Encoded {
    let contexts: Vec<Result<u128, String>> =
        batch.contexts.iter().map(read::check_context).collect();
    let mut enc = Encoder::new(config, max_per_body);
    let rendered: Vec<Result<Ctx, String>> = if max_per_body > 0 {
        batch
            .contexts
            .iter()
            .zip(&contexts)
            .map(|(c, bits)| enc.context(c, bits))
            .collect()
    } else {
        Vec::new()
    };
    if let Some(d) = detector.as_deref_mut() {
        d.begin_batch(&config.service_name);
    }
    let mut out = Encoded::default();
    // The events to render, once the summary is written.
    let mut kept = Vec::with_capacity(if max_per_body > 0 {
        batch.events.len()
    } else {
        0
    });
    for record in &batch.events {
        let event = match read::typed_event(record, &batch.contexts, &contexts, &batch.states) {
            Ok(event) => event,
            Err(e) => {
                out.drop_record(e);
                continue;
            }
        };
        if let Some(d) = detector.as_deref_mut() {
            d.observe(&event);
        }
        if max_per_body > 0 {
            match &rendered[event.context_index] {
                Ok(_) => kept.push(event),
                Err(e) => out.drop_record(e.clone()),
            }
        } else {
            out.summary.events += 1;
        }
    }
    if max_per_body > 0 {
        out.summary.events = kept.len();
        out.summary.counts = kept
            .chunks(max_per_body)
            .map(|events| events.len())
            .collect();
    }
    let mut wire = serde_json::to_vec(&out.summary).expect("plain data serializes");
    wire.push(b'\n');
    let start = wire.len();
    enc.body = wire;
    for (i, event) in kept.iter().enumerate() {
        let ctx = rendered[event.context_index].as_ref().expect("kept above");
        enc.event(ctx, event);
        if i == 0 {
            // Room for the rest, so that the bodies are not copied as they grow; at most
            // `MAX_RESERVE` (an unusually large first event must not reserve for all).
            let first = enc.body.len() - start;
            let rest = (first + 64).saturating_mul(kept.len() - 1);
            enc.body.reserve(rest.min(MAX_RESERVE));
        }
    }
    out.bodies = Bodies {
        wire: enc.finish(),
        start,
    };
    out
}

/// A context of the batch, checked and pre-rendered once for all its events.
struct Ctx<'a> {
    id_base: u128,
    component: &'a str,
    /// `,"trace_id":"…","parent_id":`
    trace: Vec<u8>,
    /// `,"metadata":{"thread_id":…,"tags":{…},"duration_ns":`
    meta_head: Vec<u8>,
    /// `,"instance_id":…,"upstream_span_id":…}`
    meta_tail: Vec<u8>,
}

/// A state rendered for one context: what follows the event's duration up to the context's
/// own counter in the clock, and what follows the counter to the end of the event.
struct RenderedState {
    context: usize,
    /// `,"instance_id":…}` (the context's), `,"causality_vector":[…,["own",`
    head: Vec<u8>,
    base_own: u64,
    /// `]…],"lock_set":[…]}`
    tail: Vec<u8>,
}

/// The batch's states as rendered so far, by index. A state is rendered again only when an
/// event of another context uses it, as the clock is rendered around the context's counter.
#[derive(Default)]
struct RenderedStates(Vec<Option<RenderedState>>);

impl RenderedStates {
    fn get(
        &mut self,
        index: usize,
        state: &StateRecord,
        context: usize,
        ctx: &Ctx,
    ) -> &RenderedState {
        if self.0.len() <= index {
            self.0.resize_with(index + 1, || None);
        }
        let slot = &mut self.0[index];
        slot.take_if(|rendered| rendered.context != context);
        slot.get_or_insert_with(|| render_state(state, context, ctx))
    }
}

struct Encoder<'b> {
    max_per_body: usize,
    /// `,"process_id":…,"service_name":…,"environment":…,"tags":{…}`
    process: Vec<u8>,
    /// `,"instance_id":"…"`
    instance: Vec<u8>,
    states: RenderedStates,
    timestamps: Timestamps,
    kinds: KindCache<'b>,
    /// The last event's context, counter and id: the next one's parent, most of the time.
    last_id: (usize, u64, [u8; 38]),
    in_body: usize,
    /// The summary's line, then the bodies so far.
    body: Vec<u8>,
    /// Bodies written so far.
    bodies: usize,
}

impl<'b> Encoder<'b> {
    fn new(config: &ProcessConfig, max_per_body: usize) -> Self {
        let mut process = b",\"process_id\":".to_vec();
        render::u64(&mut process, u64::from(config.process_id));
        process.extend_from_slice(b",\"service_name\":");
        render::string(&mut process, &config.service_name);
        process.extend_from_slice(b",\"environment\":");
        render::string(&mut process, &config.environment);
        process.extend_from_slice(b",\"tags\":");
        serde_json::to_writer(&mut process, &config.tags).expect("plain data serializes");
        let mut instance = b",\"instance_id\":".to_vec();
        render::string(&mut instance, &config.instance_id);
        Encoder {
            max_per_body: max_per_body.max(1),
            process,
            instance,
            states: RenderedStates::default(),
            timestamps: Timestamps::default(),
            kinds: KindCache::default(),
            last_id: (usize::MAX, 0, [0; 38]),
            in_body: 0,
            body: Vec::new(),
            bodies: 0,
        }
    }

    /// The parts of a checked context's events that do not change, rendered once.
    fn context<'a>(
        &self,
        c: &'a ContextRecord<'a>,
        id_base: &Result<u128, String>,
    ) -> Result<Ctx<'a>, String> {
        let id_base = id_base.clone()?;
        let mut trace = b",\"trace_id\":".to_vec();
        render::string(&mut trace, &c.trace_id);
        trace.extend_from_slice(b",\"parent_id\":");
        let mut meta_head = b",\"metadata\":{\"thread_id\":".to_vec();
        render::string(&mut meta_head, &c.thread_id);
        meta_head.extend_from_slice(&self.process);
        meta_head.extend_from_slice(b",\"duration_ns\":");
        let mut meta_tail = self.instance.clone();
        for (name, value) in [
            ("distributed_span_id", &c.span_id),
            ("upstream_span_id", &c.upstream_span_id),
        ] {
            meta_tail.extend_from_slice(format!(",\"{name}\":").as_bytes());
            match value {
                Some(v) => render::string(&mut meta_tail, v),
                None => meta_tail.extend_from_slice(b"null"),
            }
        }
        meta_tail.push(b'}');
        Ok(Ctx {
            id_base,
            component: &c.component,
            trace,
            meta_head,
            meta_tail,
        })
    }

    fn event(&mut self, ctx: &Ctx, event: &Event<'b, '_>) {
        let (seq, prev_seq) = (event.seq, event.prev_seq);
        let st = self
            .states
            .get(event.state_index, event.state, event.context_index, ctx);

        let body = &mut self.body;
        if self.in_body == self.max_per_body {
            body.extend_from_slice(b"]}");
            self.in_body = 0;
        }
        if self.in_body == 0 {
            if self.bodies > 0 {
                body.push(b'\n');
            }
            body.extend_from_slice(b"{\"events\":[");
            self.bodies += 1;
        } else {
            body.push(b',');
        }
        // The id of the context's event just before this one, plus one, is usually the last
        // id written with its last digit counted up (when that digit does not carry).
        let (last_context, last_seq, last) = &self.last_id;
        let id = match last[36] {
            b'0'..=b'9' | b'a'..=b'e'
                if (*last_context, last_seq.checked_add(1)) == (event.context_index, Some(seq)) =>
            {
                let mut id = *last;
                id[36] += if id[36] == b'9' { b'a' - b'9' } else { 1 };
                id
            }
            _ => render::uuid_bytes(event_id_bits(ctx.id_base, seq)),
        };
        body.extend_from_slice(b"{\"id\":");
        body.extend_from_slice(&id);
        body.extend_from_slice(&ctx.trace);
        if prev_seq == 0 {
            body.extend_from_slice(b"null");
        } else if (self.last_id.0, self.last_id.1) == (event.context_index, prev_seq) {
            body.extend_from_slice(&self.last_id.2);
        } else {
            render::uuid(body, event_id_bits(ctx.id_base, prev_seq));
        }
        self.last_id = (event.context_index, seq, id);
        body.extend_from_slice(b",\"timestamp\":");
        self.timestamps.write(body, event.unix_nanos);
        body.extend_from_slice(b",\"kind\":");
        self.kinds.write_json(event.kind, body);
        body.extend_from_slice(&ctx.meta_head);
        match event.duration_ns {
            Some(d) => render::u64(body, d),
            None => body.extend_from_slice(b"null"),
        }
        body.extend_from_slice(&st.head);
        render::u64(body, st.base_own.max(seq));
        body.extend_from_slice(&st.tail);
        self.in_body += 1;
    }

    /// The summary's line and the bodies.
    fn finish(mut self) -> Vec<u8> {
        if self.in_body > 0 {
            self.body.extend_from_slice(b"]}");
        }
        self.body
    }
}

/// A context's clock is its inherited clock with its own component at the event's counter:
/// rendered as the JSON before the counter and the JSON after it, with what comes before
/// (the end of the context's metadata) and after (the lock set).
fn render_state(state: &StateRecord, context: usize, ctx: &Ctx) -> RenderedState {
    let (clock, own) = (&state.clock, ctx.component);
    let mut head = ctx.meta_tail.clone();
    head.extend_from_slice(b",\"causality_vector\":[");
    let start = head.len();
    let mut tail = Vec::new();
    let mut base_own = 0;
    let mut seen_own = false;
    for (c, n) in clock.entries() {
        if c == own {
            seen_own = true;
            base_own = *n;
            if head.len() > start {
                head.push(b',');
            }
            head.push(b'[');
            render::string(&mut head, c);
            head.push(b',');
            continue;
        }
        let needs_comma = seen_own || head.len() > start;
        let target = if seen_own { &mut tail } else { &mut head };
        if needs_comma {
            target.push(b',');
        }
        target.push(b'[');
        render::string(target, c);
        target.push(b',');
        render::u64(target, *n);
        target.push(b']');
    }
    if !seen_own {
        if head.len() > start {
            head.push(b',');
        }
        head.push(b'[');
        render::string(&mut head, own);
        head.push(b',');
    }
    let mut clock_tail = vec![b']'];
    clock_tail.extend_from_slice(&tail);
    clock_tail.extend_from_slice(b"],\"lock_set\":");
    serde_json::to_writer(&mut clock_tail, &state.locks).expect("plain data serializes");
    clock_tail.push(b'}');
    RenderedState {
        context,
        head,
        base_own,
        tail: clock_tail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{BatchRecord, EventRecord};
    use serde_json::{json, Value};

    fn config() -> ProcessConfig {
        ProcessConfig {
            service_name: "svc".into(),
            environment: "test".into(),
            instance_id: "host-1".into(),
            process_id: 42,
            tags: [("sdk_language".to_string(), "python".to_string())]
                .into_iter()
                .collect(),
        }
    }

    const CTX: &str = r#"{"trace_id":"0af76519-16cd-43dd-8448-eb211c80319c","thread_id":"python-42-0000abcd","component":"svc#host-1/0000abcd","span_id":"b7ad6b7169203331","upstream_span_id":null,"id_base":"000000000000000000000000000000a0"}"#;

    fn batch_with_states(states: &str, events: &[&str]) -> String {
        format!(
            r#"{{"contexts":[{CTX}],"states":{states},"events":[{}]}}"#,
            events.join(",")
        )
    }

    fn batch(events: &[&str]) -> String {
        batch_with_states(r#"[{"clock":[["up",3]],"locks":["L"]}]"#, events)
    }

    fn bodies(out: &Encoded) -> Vec<Value> {
        out.body_strs()
            .iter()
            .map(|b| serde_json::from_str(b).unwrap())
            .collect()
    }

    #[test]
    fn builds_server_events_with_chains_and_clocks() {
        let b = batch(&[
            r#"[0,0,1,0,0,null,"app.py",3,"StateChange",["x",null,5,"write"]]"#,
            r#"[0,0,3,1,1000,7,"app.py",4,"FunctionCall",["f","app",{"a":1}]]"#,
        ]);
        let out = encode_batch(&config(), &b, 50).unwrap();
        assert_eq!(
            (out.summary.events, out.summary.dropped),
            (2, 0),
            "{:?}",
            out.summary.errors
        );
        let body = &bodies(&out)[0];
        let evs = body["events"].as_array().unwrap();
        assert_eq!(evs[0]["id"], "00000000-0000-0000-0000-0000000000a1");
        assert_eq!(evs[0]["parent_id"], Value::Null);
        assert_eq!(evs[1]["parent_id"], evs[0]["id"]);
        assert_eq!(evs[0]["kind"]["StateChange"]["access_type"], "Write");
        assert_eq!(evs[0]["kind"]["StateChange"]["location"], "app.py:3");
        assert_eq!(
            evs[1]["causality_vector"],
            json!([["up", 3], ["svc#host-1/0000abcd", 3]])
        );
        assert_eq!(evs[1]["metadata"]["duration_ns"], 7);
        assert_eq!(evs[1]["lock_set"], json!(["L"]));
        assert_eq!(evs[1]["timestamp"], "1970-01-01T00:00:00.000001+00:00");
        let meta = &evs[0]["metadata"];
        assert_eq!(
            *meta,
            json!({"thread_id": "python-42-0000abcd", "process_id": 42, "service_name": "svc",
                   "environment": "test", "tags": {"sdk_language": "python"}, "duration_ns": null,
                   "instance_id": "host-1", "distributed_span_id": "b7ad6b7169203331", "upstream_span_id": null})
        );
    }

    /// Every event of the JSON batch `b`, as `reference_event` writes it.
    fn reference_events(b: &str) -> Vec<String> {
        let batch = read::read_batch(b).unwrap();
        let checked: Vec<_> = batch.contexts.iter().map(read::check_context).collect();
        batch
            .events
            .iter()
            .map(|r| {
                let e = read::typed_event(r, &batch.contexts, &checked, &batch.states).unwrap();
                reference_event(&config(), &batch, &e)
            })
            .collect()
    }

    /// An event as the server takes it, written the slow way: every field through serde
    /// (`Kind`'s derived `Serialize`, the clock built entry by entry), nothing cached.
    fn reference_event(config: &ProcessConfig, batch: &read::ReadBatch, e: &Event) -> String {
        #[derive(Serialize)]
        struct Metadata<'r> {
            thread_id: &'r str,
            process_id: u32,
            service_name: &'r str,
            environment: &'r str,
            tags: &'r std::collections::BTreeMap<String, String>,
            duration_ns: Option<u64>,
            instance_id: &'r str,
            distributed_span_id: Option<&'r str>,
            upstream_span_id: Option<&'r str>,
        }
        #[derive(Serialize)]
        struct ServerEvent<'r> {
            id: String,
            trace_id: &'r str,
            parent_id: Option<String>,
            timestamp: String,
            kind: &'r crate::event::Kind<'r>,
            metadata: Metadata<'r>,
            causality_vector: Vec<(&'r str, u64)>,
            lock_set: &'r [std::borrow::Cow<'r, str>],
        }
        let c = &batch.contexts[e.context_index];
        let own = &*c.component;
        let mut clock: Vec<(&str, u64)> = e
            .state
            .clock
            .entries()
            .iter()
            .map(|(name, n)| (name.as_str(), *n))
            .collect();
        match clock.iter_mut().find(|(name, _)| *name == own) {
            Some(entry) => entry.1 = entry.1.max(e.seq),
            None => clock.push((own, e.seq)),
        }
        serde_json::to_string(&ServerEvent {
            id: crate::ids::format_uuid(event_id_bits(e.id_base, e.seq)),
            trace_id: &c.trace_id,
            parent_id: (e.prev_seq > 0)
                .then(|| crate::ids::format_uuid(event_id_bits(e.id_base, e.prev_seq))),
            timestamp: crate::timestamp::rfc3339_micros(e.unix_nanos),
            kind: e.kind,
            metadata: Metadata {
                thread_id: &c.thread_id,
                process_id: config.process_id,
                service_name: &config.service_name,
                environment: &config.environment,
                tags: &config.tags,
                duration_ns: e.duration_ns,
                instance_id: &config.instance_id,
                distributed_span_id: c.span_id.as_deref(),
                upstream_span_id: c.upstream_span_id.as_deref(),
            },
            causality_vector: clock,
            lock_set: &e.state.locks,
        })
        .unwrap()
    }

    #[test]
    fn cached_fragments_give_what_rendering_each_event_alone_gives() {
        const OTHER: &str = r#"{"trace_id":"4bf92f35-77b3-4da6-a3ce-929d0e0e4736","thread_id":"t\"2","component":"svc#host-1/0000beef","span_id":null,"upstream_span_id":"00f067aa0ba902b7","id_base":"ffffffffffffffffffffffffffffff00"}"#;
        let states = r#"[{"clock":[["up",3]],"locks":["L"]},
            {"clock":[["up",4],["svc#host-1/0000abcd",2]],"locks":[]},
            {"clock":[["svc#host-1/0000beef",9],["up",4]],"locks":["L","M\u00e9"]},
            {"clock":[],"locks":["L"]}]"#;
        // Two contexts interleaved; a context whose state changes mid-batch and changes back;
        // a state both contexts use in turn; lock sets that change; durations and none;
        // variables, files, lines and access types that change; ids that carry past 2^64.
        let events = [
            r#"[0,0,1,0,1000,null,"a.py",3,"StateChange",["x",null,5,"write"]]"#,
            r#"[1,2,1,0,1001,7,"b.py",3,"StateChange",["x",5,6,"Write"]]"#,
            r#"[0,0,2,1,2000,null,"a.py",3,"StateChange",["x",5,6,"Write"]]"#,
            r#"[0,1,3,2,2001,12,"a.py",4,"StateChange",["x",6,7,"Read"]]"#,
            r#"[1,3,2,1,2002,null,"b.py",3,"StateChange",["y\n",6,7,"Read"]]"#,
            r#"[0,3,4,3,3000,null,"a.py",4,"FunctionCall",["f","m",{"a":[1]}]]"#,
            r#"[0,0,5,4,3001,0,"a.py",4,"StateChange",["x",7,8,"AtomicRMW"]]"#,
            r#"[1,3,300,2,3002,null,"b.py",3,"StateChange",["x",8,9,"Write"]]"#,
            r#"[0,1,6,5,1999999999,null,"a.py",5,"Custom",["n",1]]"#,
            r#"[1,0,301,300,2000000000,5,"b.py",3,"StateChange",["x",9,10,"Write"]]"#,
            r#"[0,2,7,6,2000000001,null,"a.py",5,"LockAcquire",["L","Mutex"]]"#,
        ];
        let b = format!(
            r#"{{"contexts":[{CTX},{OTHER}],"states":{states},"events":[{}]}}"#,
            events.join(",")
        );
        let expected = reference_events(&b);
        for per_body in [1, 3, 50] {
            let out = encode_batch(&config(), &b, per_body).unwrap();
            assert_eq!(out.summary.events, events.len());
            let want: Vec<String> = expected
                .chunks(per_body)
                .map(|events| format!("{{\"events\":[{}]}}", events.join(",")))
                .collect();
            assert_eq!(
                String::from_utf8(out.bodies.to_vec()).unwrap(),
                want.join("\n")
            );
        }
    }

    #[test]
    fn ids_counted_up_from_the_last_are_the_ids_of_their_seq() {
        // Consecutive counters whose ids' last digit goes through 9 to a and f to 0 (a carry,
        // into the digits before it and past a hyphen), ids that wrap past 2^128, a counter
        // that skips, another context in between, a gap in a context's chain.
        for id_base in [
            "000000000000000000000000000000a0",
            "0000000000000000000000000000fff0",
            "fffffffffffffffffffffffffffffff0",
            "0af7651916cd43dd8448eb211c80319c",
        ] {
            let ctx = CTX.replace("000000000000000000000000000000a0", id_base);
            let other = CTX
                .replace(
                    "000000000000000000000000000000a0",
                    "ffffffffffffffffffffffffffffff00",
                )
                .replace("0000abcd", "0000beef");
            let mut events: Vec<String> = (1..=40u64)
                .map(|seq| {
                    format!(
                        r#"[0,0,{seq},{},7,null,"a.py",3,"Custom",["n",1]]"#,
                        seq - 1
                    )
                })
                .collect();
            events.insert(12, r#"[1,0,5,0,7,null,"a.py",3,"Custom",["n",1]]"#.into());
            events.push(r#"[0,0,60,40,7,null,"a.py",3,"Custom",["n",1]]"#.into());
            events.push(r#"[0,0,61,60,7,null,"a.py",3,"Custom",["n",1]]"#.into());
            events.push(r#"[0,0,63,61,7,null,"a.py",3,"Custom",["n",1]]"#.into());
            let b = format!(
                r#"{{"contexts":[{ctx},{other}],"states":[{{"clock":[],"locks":[]}}],"events":[{}]}}"#,
                events.join(",")
            );
            let expected = reference_events(&b);
            let out = encode_batch(&config(), &b, 1000).unwrap();
            assert_eq!(
                String::from_utf8(out.bodies.to_vec()).unwrap(),
                format!("{{\"events\":[{}]}}", expected.join(","))
            );
        }
    }

    #[test]
    fn own_component_inside_the_inherited_clock_keeps_its_place() {
        let states = r#"[{"clock":[["a",1],["svc#host-1/0000abcd",5],["b",2]],"locks":[]},{"clock":[],"locks":[]}]"#;
        let b = batch_with_states(
            states,
            &[
                r#"[0,0,2,0,0,null,"a.py",1,"Custom",["n",1]]"#,
                r#"[0,0,9,2,0,null,"a.py",1,"Custom",["n",1]]"#,
                r#"[0,1,10,9,0,null,"a.py",1,"Custom",["n",1]]"#,
            ],
        );
        let out = encode_batch(&config(), &b, 50).unwrap();
        let evs = bodies(&out)[0]["events"].as_array().unwrap().clone();
        assert_eq!(
            evs[0]["causality_vector"],
            json!([["a", 1], ["svc#host-1/0000abcd", 5], ["b", 2]])
        );
        assert_eq!(
            evs[1]["causality_vector"],
            json!([["a", 1], ["svc#host-1/0000abcd", 9], ["b", 2]])
        );
        assert_eq!(
            evs[2]["causality_vector"],
            json!([["svc#host-1/0000abcd", 10]])
        );
    }

    #[test]
    fn bad_records_are_dropped_alone() {
        let b = batch(&[
            r#"[0,0,1,0,0,null,"a.py",1,"StateChange",["x",null,1,"Modify"]]"#,
            r#"[0,0,2,1,0,null,"a.py",1,"FunctionReturn",[]]"#,
            r#"[0,0,3,2,0,null,"a.py",1,"HttpResponse",[70000,{},null,1]]"#,
            r#"[0,0,4,3,0,null,"a.py",1,"HttpResponse",[200,{},null,-1]]"#,
            r#"[5,0,5,4,0,null,"a.py",1,"Custom",["n",1]]"#,
            r#"[0,0,6,5,0,null,"a.py",1,"Custom",["n",1]]"#,
            r#"[0,0,7,6,-3,null,"a.py",1,"Custom",["n",1]]"#,
            r#"[0,0,8,8,0,null,"a.py",1,"Custom",["n",1]]"#,
        ]);
        let out = encode_batch(&config(), &b, 50).unwrap();
        assert_eq!((out.summary.events, out.summary.dropped), (1, 7));
        assert!(
            out.summary.errors.iter().any(|e| e.contains("Modify")),
            "{:?}",
            out.summary.errors
        );
        assert_eq!(bodies(&out).len(), 1);
    }

    #[test]
    fn records_that_fit_no_kind_keep_the_typed_parse_of_the_batch() {
        let b = batch(&[
            r#"[0,0,1,0,0,null,"a.py",1,"StateChange",["x",null,1,"Modify"]]"#,
            r#"[0,0,2,1,0,null,"a.py",1,"FunctionReturn",{"not":"an array"}]"#,
            r#"[0,0,3,2,0,null,"a.py",1,"MemoryFence",["Weird"]]"#,
            r#"[0,0,4,3,0,null,"a.py",1,"AsyncSpawn",["not-a-uuid","main"]]"#,
            r#"[0,0,5,4,0,null,"a.py",1,"Custom",["n",1]]"#,
        ]);
        assert!(serde_json::from_str::<BatchRecord<EventRecord>>(&b).is_ok());
        let out = encode_batch(&config(), &b, 50).unwrap();
        assert_eq!((out.summary.events, out.summary.dropped), (1, 4));
        assert_eq!(
            out.summary.errors,
            [
                "StateChange: access type \"Modify\" does not exist",
                "event record: unknown kind \"FunctionReturn\"",
                "MemoryFence: unknown ordering",
                "AsyncSpawn: task_id is not a UUID",
            ]
        );
    }

    #[test]
    fn the_per_record_fallback_names_the_kind_and_checks_in_the_same_order() {
        let b = batch(&[
            r#"[0,0,1,0,0,null,"a.py",1,"HttpResponse",[70000,{},null,1]]"#,
            // Malformed fields, but the unknown context is what the typed path would report.
            r#"[5,0,2,1,0,null,"a.py",1,"HttpResponse",[70000,{},null,1]]"#,
            r#"[0,0,3,2,0,null,"a.py",1,"Custom",["n",1]]"#,
        ]);
        assert!(serde_json::from_str::<BatchRecord<EventRecord>>(&b).is_err());
        let out = encode_batch(&config(), &b, 50).unwrap();
        assert_eq!((out.summary.events, out.summary.dropped), (1, 2));
        assert_eq!(
            out.summary.errors,
            [
                "HttpResponse: invalid value: integer `70000`, expected u16 at line 1 column 6",
                "event record: unknown context",
            ]
        );
    }

    #[test]
    fn splits_into_bodies_of_at_most_n_events() {
        let recs: Vec<String> = (1..=5)
            .map(|i| format!(r#"[0,0,{i},{},0,null,"a.py",1,"Custom",["n",{i}]]"#, i - 1))
            .collect();
        let refs: Vec<&str> = recs.iter().map(String::as_str).collect();
        let out = encode_batch(&config(), &batch(&refs), 2).unwrap();
        let sizes: Vec<usize> = bodies(&out)
            .iter()
            .map(|b| b["events"].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes, vec![2, 2, 1]);
        assert_eq!(out.summary.counts, sizes);
    }

    #[test]
    fn wire_form_is_a_summary_line_then_bodies() {
        let out = encode_batch(
            &config(),
            &batch(&[r#"[0,0,1,0,0,null,"a.py",1,"Custom",["n",1]]"#]),
            50,
        )
        .unwrap();
        let wire = out.into_wire();
        let (head, rest) = wire.split_once('\n').unwrap();
        let summary: Value = serde_json::from_str(head).unwrap();
        assert_eq!(summary["counts"], json!([1]));
        assert!(rest.starts_with("{\"events\":[{\"id\":"));
    }

    #[test]
    fn empty_batch_has_no_bodies_and_garbage_is_an_error() {
        let out = encode_batch(&config(), &batch(&[]), 10).unwrap();
        assert!(out.bodies.is_empty() && out.body_strs().is_empty());
        assert!(encode_batch(&config(), "nonsense", 10).is_err());
    }
}
