//! Turns a batch of host records into request bodies for `POST {endpoint}/events`.
//!
//! The server rejects a whole body when one event in it does not deserialize, so every event
//! is built through the typed model in `event.rs`, and a record that cannot be built is dropped
//! and reported instead of being passed on.

use crate::event::{AccessType, ClockAt, Event, Kind, Metadata, Ordering, ProcessConfig};
use crate::ids::{event_id, TraceId};
use crate::record::{BatchRecord, ContextRecord, EventRecord};
use crate::timestamp::rfc3339_micros;
use crate::hex;
use serde::Serialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// At most this many distinct error messages are returned per batch.
const MAX_ERRORS: usize = 10;

#[derive(Debug, Default, Serialize)]
pub struct Encoded {
    /// Request bodies, one per line.
    pub bodies: String,
    /// How many events each body holds, in order.
    pub counts: Vec<usize>,
    pub events: usize,
    pub dropped: usize,
    pub errors: Vec<String>,
}

/// A context of the batch, checked once for all its events.
struct Ctx<'a> {
    record: &'a ContextRecord<'a>,
    id_base: u128,
}

pub fn encode_batch(config: &ProcessConfig, records: &str, max_per_body: usize) -> Result<Encoded, String> {
    let batch: BatchRecord = serde_json::from_str(records).map_err(|e| format!("records: {e}"))?;
    let contexts: Vec<Result<Ctx, String>> = batch.contexts.iter().map(check_context).collect();
    let max_per_body = max_per_body.max(1);
    let mut out = Encoded::default();
    let mut body: Vec<u8> = Vec::new();
    let mut in_body = 0usize;
    for raw in &batch.events {
        let event = serde_json::from_str::<EventRecord>(raw.get())
            .map_err(|e| format!("event record: {e}"))
            .and_then(|r| {
                let ctx = contexts.get(r.0).ok_or("event record: unknown context")?.as_ref()?;
                let state = batch.states.get(r.1).ok_or("event record: unknown state")?;
                let mut buf = Vec::new();
                build(config, ctx, state, &r).and_then(|ev| {
                    serde_json::to_writer(&mut buf, &ev).map_err(|e| format!("event: {e}"))
                })?;
                Ok(buf)
            });
        match event {
            Ok(bytes) => {
                if in_body == max_per_body {
                    close_body(&mut out.bodies, &mut body);
                    out.counts.push(in_body);
                    in_body = 0;
                }
                body.extend_from_slice(if in_body == 0 { b"{\"events\":[" } else { b"," });
                body.extend_from_slice(&bytes);
                in_body += 1;
                out.events += 1;
            }
            Err(e) => {
                out.dropped += 1;
                if out.errors.len() < MAX_ERRORS && !out.errors.contains(&e) {
                    out.errors.push(e);
                }
            }
        }
    }
    if in_body > 0 {
        close_body(&mut out.bodies, &mut body);
        out.counts.push(in_body);
    }
    Ok(out)
}

fn close_body(bodies: &mut String, body: &mut Vec<u8>) {
    body.extend_from_slice(b"]}");
    if !bodies.is_empty() {
        bodies.push('\n');
    }
    bodies.push_str(std::str::from_utf8(body).expect("serde_json writes UTF-8"));
    body.clear();
}

fn check_context<'a>(c: &'a ContextRecord<'a>) -> Result<Ctx<'a>, String> {
    TraceId::parse_uuid(&c.trace_id).ok_or_else(|| format!("context: trace_id {:?} is not a UUID", c.trace_id))?;
    let id_base = (c.id_base.len() == 32)
        .then(|| hex::parse_lower(&c.id_base))
        .flatten()
        .ok_or("context: id_base is not 32 lower-case hex digits")?;
    Ok(Ctx { record: c, id_base })
}

fn fields<'a, T: serde::Deserialize<'a>>(kind: &str, raw: &'a RawValue) -> Result<T, String> {
    serde_json::from_str(raw.get()).map_err(|e| format!("{kind}: {e}"))
}

type S<'a> = Cow<'a, str>;
type Headers<'a> = BTreeMap<S<'a>, S<'a>>;

fn build<'a>(
    config: &'a ProcessConfig,
    ctx: &'a Ctx<'a>,
    state: &'a crate::record::StateRecord<'a>,
    r: &'a EventRecord<'a>,
) -> Result<Event<'a>, String> {
    let EventRecord(_, _, seq, prev_seq, nanos, duration_ns, file, line, kind_name, raw) = r;
    if *seq == 0 || prev_seq >= seq {
        return Err(format!("event record: seq {seq} after {prev_seq}"));
    }
    let location = || format!("{file}:{line}");
    let kind_name: &str = kind_name;
    let kind = match kind_name {
        "StateChange" => {
            let (variable, old_value, new_value, access): (S, &RawValue, &RawValue, S) = fields(kind_name, raw)?;
            let access_type = AccessType::parse(&access)
                .ok_or_else(|| format!("StateChange: access type {access:?} does not exist"))?;
            Kind::StateChange { variable, old_value, new_value, location: location(), access_type }
        }
        "FunctionCall" => {
            let (function_name, module, args): (S, S, &RawValue) = fields(kind_name, raw)?;
            Kind::FunctionCall { function_name, module, args, file: file.clone(), line: *line }
        }
        "HttpRequest" => {
            let (method, url, headers, body): (S, S, Headers, &RawValue) = fields(kind_name, raw)?;
            Kind::HttpRequest { method, url, headers, body }
        }
        "HttpResponse" => {
            let (status, headers, body, duration_ms): (u16, Headers, &RawValue, u64) = fields(kind_name, raw)?;
            Kind::HttpResponse { status, headers, body, duration_ms }
        }
        "LockAcquire" | "LockRelease" => {
            let (lock_id, lock_type): (S, S) = fields(kind_name, raw)?;
            if kind_name == "LockAcquire" {
                Kind::LockAcquire { lock_id, lock_type, location: location() }
            } else {
                Kind::LockRelease { lock_id, lock_type, location: location() }
            }
        }
        "AsyncSpawn" => {
            let (task_id, spawned_by): (S, S) = fields(kind_name, raw)?;
            TraceId::parse_uuid(&task_id).ok_or("AsyncSpawn: task_id is not a UUID")?;
            Kind::AsyncSpawn { task_id, spawned_by }
        }
        "AsyncAwait" => {
            let (future_id, awaited_at): (S, S) = fields(kind_name, raw)?;
            TraceId::parse_uuid(&future_id).ok_or("AsyncAwait: future_id is not a UUID")?;
            Kind::AsyncAwait { future_id, awaited_at }
        }
        "Error" => {
            let (error_type, message, stack_trace): (S, S, Vec<S>) = fields(kind_name, raw)?;
            Kind::Error { error_type, message, stack_trace }
        }
        "Custom" => {
            let (name, data): (S, &RawValue) = fields(kind_name, raw)?;
            Kind::Custom { name, data }
        }
        "MemoryFence" => {
            let (ordering,): (S,) = fields(kind_name, raw)?;
            let ordering = Ordering::parse(&ordering).ok_or("MemoryFence: unknown ordering")?;
            Kind::MemoryFence { ordering, location: location() }
        }
        "DatabaseQuery" => {
            let (query, database, duration_ms): (S, S, u64) = fields(kind_name, raw)?;
            Kind::DatabaseQuery { query, database, duration_ms }
        }
        "DatabaseResult" => {
            let (rows_affected,): (u64,) = fields(kind_name, raw)?;
            Kind::DatabaseResult { rows_affected }
        }
        other => return Err(format!("event record: unknown kind {other:?}")),
    };
    let c = ctx.record;
    Ok(Event {
        id: event_id(ctx.id_base, *seq),
        trace_id: &c.trace_id,
        parent_id: (*prev_seq > 0).then(|| event_id(ctx.id_base, *prev_seq)),
        timestamp: rfc3339_micros(*nanos),
        kind,
        metadata: Metadata {
            thread_id: &c.thread_id,
            process_id: config.process_id,
            service_name: &config.service_name,
            environment: &config.environment,
            tags: &config.tags,
            duration_ns: *duration_ns,
            instance_id: Some(&config.instance_id),
            distributed_span_id: c.span_id.as_deref(),
            upstream_span_id: c.upstream_span_id.as_deref(),
        },
        causality_vector: ClockAt { base: &state.clock, own: &c.component, counter: *seq },
        lock_set: &state.locks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ProcessConfig {
        ProcessConfig {
            service_name: "svc".into(),
            environment: "test".into(),
            instance_id: "host-1".into(),
            process_id: 42,
            tags: [("sdk_language".to_string(), "python".to_string())].into_iter().collect(),
        }
    }

    const CTX: &str = r#"{"trace_id":"0af76519-16cd-43dd-8448-eb211c80319c","thread_id":"python-42-0000abcd","component":"svc#host-1/0000abcd","span_id":"b7ad6b7169203331","upstream_span_id":null,"id_base":"000000000000000000000000000000a0"}"#;

    fn batch(events: &[&str]) -> String {
        format!(
            r#"{{"contexts":[{CTX}],"states":[{{"clock":[["up",3]],"locks":["L"]}}],"events":[{}]}}"#,
            events.join(",")
        )
    }

    #[test]
    fn builds_server_events_with_chains_and_clocks() {
        let b = batch(&[
            r#"[0,0,1,0,0,null,"app.py",3,"StateChange",["x",null,5,"write"]]"#,
            r#"[0,0,3,1,1000,7,"app.py",4,"FunctionCall",["f","app",{"a":1}]]"#,
        ]);
        let out = encode_batch(&config(), &b, 50).unwrap();
        assert_eq!((out.events, out.dropped), (2, 0), "{:?}", out.errors);
        let body: serde_json::Value = serde_json::from_str(&out.bodies).unwrap();
        let evs = body["events"].as_array().unwrap();
        assert_eq!(evs[0]["id"], "00000000-0000-0000-0000-0000000000a1");
        assert_eq!(evs[0]["parent_id"], serde_json::Value::Null);
        assert_eq!(evs[1]["parent_id"], evs[0]["id"]);
        assert_eq!(evs[0]["kind"]["StateChange"]["access_type"], "Write");
        assert_eq!(evs[0]["kind"]["StateChange"]["location"], "app.py:3");
        assert_eq!(evs[1]["causality_vector"], serde_json::json!([["up", 3], ["svc#host-1/0000abcd", 3]]));
        assert_eq!(evs[1]["metadata"]["duration_ns"], 7);
        assert_eq!(evs[1]["lock_set"], serde_json::json!(["L"]));
        assert_eq!(evs[1]["timestamp"], "1970-01-01T00:00:00.000001+00:00");
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
        ]);
        let out = encode_batch(&config(), &b, 50).unwrap();
        assert_eq!((out.events, out.dropped), (1, 5));
        assert!(out.errors.iter().any(|e| e.contains("Modify")), "{:?}", out.errors);
    }

    #[test]
    fn splits_into_bodies_of_at_most_n_events() {
        let recs: Vec<String> = (1..=5)
            .map(|i| format!(r#"[0,0,{i},{},0,null,"a.py",1,"Custom",["n",{i}]]"#, i - 1))
            .collect();
        let refs: Vec<&str> = recs.iter().map(String::as_str).collect();
        let out = encode_batch(&config(), &batch(&refs), 2).unwrap();
        let sizes: Vec<usize> = out
            .bodies
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["events"].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes, vec![2, 2, 1]);
        assert_eq!(out.counts, sizes);
    }

    #[test]
    fn empty_batch_has_no_bodies_and_garbage_is_an_error() {
        assert_eq!(encode_batch(&config(), &batch(&[]), 10).unwrap().bodies, "");
        assert!(encode_batch(&config(), "nonsense", 10).is_err());
    }
}
