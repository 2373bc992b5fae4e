//! Reading a batch of records into typed events: the one parser whose output both consumers
//! take, the encoder (`pipeline.rs`, events for the server) and the race detector
//! (`detector/`). Each event is checked here, in one order, so that both see exactly the same
//! events and a record one of them would drop is dropped for both.

use crate::event::Kind;
use crate::hex;
use crate::ids::TraceId;
use crate::record::{BatchRecord, ContextRecord, EventRecord, StateRecord};
use serde_json::value::RawValue;

/// A batch as read: its tables, and each event record or why it could not be read.
pub type ReadBatch<'a> = BatchRecord<'a, Result<EventRecord<'a>, String>>;

/// One valid event, with the context and state it refers to resolved.
#[derive(Debug)]
pub struct Event<'b, 'a> {
    pub context_index: usize,
    pub context: &'b ContextRecord<'a>,
    /// The context's `id_base`: its events' ids are `id_base + seq`, and `id_base` as a UUID
    /// is the task id its parent's `AsyncSpawn` and `AsyncAwait` name.
    pub id_base: u128,
    pub state_index: usize,
    /// What the context had inherited (its clock without its own component) and held.
    pub state: &'b StateRecord<'a>,
    /// The context's counter for this event, from 1: its own clock component.
    pub seq: u64,
    pub prev_seq: u64,
    pub unix_nanos: u64,
    pub duration_ns: Option<u64>,
    pub kind: &'b Kind<'a>,
}

/// Parses a batch: one typed pass when every record is well-formed, else record by record so
/// that a malformed record costs only itself. Fails only when the batch itself is not one.
pub fn read_batch(records: &str) -> Result<ReadBatch<'_>, String> {
    match serde_json::from_str::<BatchRecord<EventRecord>>(records) {
        Ok(batch) => Ok(BatchRecord {
            contexts: batch.contexts,
            states: batch.states,
            events: batch.events.into_iter().map(Ok).collect(),
        }),
        Err(_) => {
            let batch: BatchRecord<&RawValue> =
                serde_json::from_str(records).map_err(|e| format!("records: {e}"))?;
            Ok(BatchRecord {
                contexts: batch.contexts,
                states: batch.states,
                events: batch
                    .events
                    .iter()
                    .map(|raw| EventRecord::parse_alone(raw.get()))
                    .collect(),
            })
        }
    }
}

/// A context's `id_base`, once its ids are checked (a trace id the server would refuse makes
/// every event of the context unsendable).
pub fn check_context(c: &ContextRecord) -> Result<u128, String> {
    TraceId::parse_uuid(&c.trace_id)
        .ok_or_else(|| format!("context: trace_id {:?} is not a UUID", c.trace_id))?;
    (c.id_base.len() == 32)
        .then(|| hex::parse_lower(&c.id_base))
        .flatten()
        .ok_or_else(|| "context: id_base is not 32 lower-case hex digits".to_owned())
}

/// Resolves and checks one record, in this order: the record itself, its context, its state,
/// its kind, its counters.
pub fn typed_event<'b, 'a>(
    record: &'b Result<EventRecord<'a>, String>,
    contexts: &'b [ContextRecord<'a>],
    checked: &'b [Result<u128, String>],
    states: &'b [StateRecord<'a>],
) -> Result<Event<'b, 'a>, String> {
    let r = record.as_ref().map_err(Clone::clone)?;
    let (context, id_base) = match (contexts.get(r.context), checked.get(r.context)) {
        (Some(c), Some(Ok(bits))) => (c, *bits),
        (Some(_), Some(Err(e))) => return Err(e.clone()),
        _ => return Err("event record: unknown context".to_owned()),
    };
    let state = states.get(r.state).ok_or("event record: unknown state")?;
    let kind = r.kind.as_ref().map_err(Clone::clone)?;
    if r.seq == 0 || r.prev_seq >= r.seq {
        return Err(format!("event record: seq {} after {}", r.seq, r.prev_seq));
    }
    Ok(Event {
        context_index: r.context,
        context,
        id_base,
        state_index: r.state,
        state,
        seq: r.seq,
        prev_seq: r.prev_seq,
        unix_nanos: r.unix_nanos,
        duration_ns: r.duration_ns,
        kind,
    })
}
