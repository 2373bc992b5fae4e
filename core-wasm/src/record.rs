//! The compact record log a host hands to the core, one JSON string per batch.
//! The format is documented for host authors in `docs/record-format.md`.
//!
//! Records are cheap for the host to produce (positional arrays, shared context and state
//! tables) and each event record is decoded on its own, so one bad record costs only itself.

use crate::clock::VectorClock;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// One execution context (a request, a task, a thread) as the host describes it.
#[derive(Debug, Deserialize)]
pub struct ContextRecord<'a> {
    #[serde(borrow)]
    pub trace_id: Cow<'a, str>,
    #[serde(borrow)]
    pub thread_id: Cow<'a, str>,
    /// This context's own vector-clock component.
    #[serde(borrow)]
    pub component: Cow<'a, str>,
    #[serde(borrow, default)]
    pub span_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub upstream_span_id: Option<Cow<'a, str>>,
    /// 32 hex digits of randomness from which the context's event ids are derived.
    #[serde(borrow)]
    pub id_base: Cow<'a, str>,
}

/// What a context knew and held when events were recorded: the clock it inherited from its
/// parent, callers and joined children, and the locks it held. Shared by many events.
#[derive(Debug, Deserialize)]
pub struct StateRecord<'a> {
    pub clock: VectorClock,
    #[serde(borrow, default)]
    pub locks: Vec<Cow<'a, str>>,
}

/// A batch. `E` is `EventRecord` for the fast path (one typed parse of everything) or
/// `&RawValue` for the fallback that parses each record on its own, so that one malformed
/// record costs only itself.
#[derive(Debug, Deserialize)]
pub struct BatchRecord<'a, E> {
    #[serde(borrow)]
    pub contexts: Vec<ContextRecord<'a>>,
    #[serde(borrow)]
    pub states: Vec<StateRecord<'a>>,
    pub events: Vec<E>,
}

/// `[context, state, seq, prev_seq, unix_nanos, duration_ns, file, line, kind, fields]`.
/// `seq` counts from 1 within the context; `prev_seq` is the previous event's (0: none).
#[derive(Debug, Deserialize)]
pub struct EventRecord<'a>(
    pub usize,
    pub usize,
    pub u64,
    pub u64,
    pub u64,
    pub Option<u64>,
    #[serde(borrow)] pub Cow<'a, str>,
    pub u32,
    #[serde(borrow)] pub Cow<'a, str>,
    #[serde(borrow)] pub &'a RawValue,
);
