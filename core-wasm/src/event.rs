//! The event as the Raceway server deserializes it (`POST /events`), field for field.
//! Only `Serialize`: the core writes events, it never needs to read the server's form back.
//! User values (`args`, `old_value`, bodies, …) are `RawValue`s: passed through untouched.

use crate::clock::VectorClock;
use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;

type Str<'a> = Cow<'a, str>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum AccessType {
    Read,
    Write,
    AtomicRead,
    AtomicWrite,
    #[serde(rename = "AtomicRMW")]
    AtomicRmw,
}

impl AccessType {
    /// Case-insensitive, so `"write"` (a common slip the server would reject) still works.
    pub fn parse(s: &str) -> Option<Self> {
        const ALL: [(&str, AccessType); 5] = [
            ("read", AccessType::Read),
            ("write", AccessType::Write),
            ("atomicread", AccessType::AtomicRead),
            ("atomicwrite", AccessType::AtomicWrite),
            ("atomicrmw", AccessType::AtomicRmw),
        ];
        ALL.iter().find(|(name, _)| name.eq_ignore_ascii_case(s)).map(|(_, a)| *a)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Ordering {
    Relaxed,
    Acquire,
    Release,
    AcqRel,
    SeqCst,
}

impl Ordering {
    pub fn parse(s: &str) -> Option<Self> {
        const ALL: [(&str, Ordering); 5] = [
            ("relaxed", Ordering::Relaxed),
            ("acquire", Ordering::Acquire),
            ("release", Ordering::Release),
            ("acqrel", Ordering::AcqRel),
            ("seqcst", Ordering::SeqCst),
        ];
        ALL.iter().find(|(name, _)| name.eq_ignore_ascii_case(s)).map(|(_, o)| *o)
    }
}

/// `file:line`, serialized without building the string first (one per event adds up).
#[derive(Debug, Clone, Copy)]
pub struct Location<'a> {
    pub file: &'a str,
    pub line: u32,
}

impl Serialize for Location<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}:{}", self.file, self.line))
    }
}

/// Externally tagged, exactly the variants the server knows (no `FunctionReturn`: the server
/// rejects a whole batch for an unknown variant).
#[derive(Debug, Serialize)]
pub enum Kind<'a> {
    FunctionCall { function_name: Str<'a>, module: Str<'a>, args: &'a RawValue, file: Str<'a>, line: u32 },
    AsyncSpawn { task_id: Str<'a>, spawned_by: Str<'a> },
    AsyncAwait { future_id: Str<'a>, awaited_at: Str<'a> },
    StateChange {
        variable: Str<'a>,
        old_value: &'a RawValue,
        new_value: &'a RawValue,
        location: Location<'a>,
        access_type: AccessType,
    },
    LockAcquire { lock_id: Str<'a>, lock_type: Str<'a>, location: Location<'a> },
    LockRelease { lock_id: Str<'a>, lock_type: Str<'a>, location: Location<'a> },
    MemoryFence { ordering: Ordering, location: Location<'a> },
    HttpRequest { method: Str<'a>, url: Str<'a>, headers: BTreeMap<Str<'a>, Str<'a>>, body: &'a RawValue },
    HttpResponse { status: u16, headers: BTreeMap<Str<'a>, Str<'a>>, body: &'a RawValue, duration_ms: u64 },
    DatabaseQuery { query: Str<'a>, database: Str<'a>, duration_ms: u64 },
    DatabaseResult { rows_affected: u64 },
    Error { error_type: Str<'a>, message: Str<'a>, stack_trace: Vec<Str<'a>> },
    Custom { name: Str<'a>, data: &'a RawValue },
}

/// Process-wide fields, set once by the host through `configure`.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct ProcessConfig {
    pub service_name: String,
    pub environment: String,
    pub instance_id: String,
    pub process_id: u32,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
pub struct Metadata<'a> {
    pub thread_id: &'a str,
    pub process_id: u32,
    pub service_name: &'a str,
    pub environment: &'a str,
    pub tags: &'a BTreeMap<String, String>,
    pub duration_ns: Option<u64>,
    pub instance_id: Option<&'a str>,
    pub distributed_span_id: Option<&'a str>,
    pub upstream_span_id: Option<&'a str>,
}

/// A context's clock at one of its events: the clock it inherited (`base`) with its own
/// component raised to the event's counter. Serialized without building a new clock.
#[derive(Debug)]
pub struct ClockAt<'a> {
    pub base: &'a VectorClock,
    pub own: &'a str,
    pub counter: u64,
}

impl Serialize for ClockAt<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let has_own = self.base.entries().iter().any(|(c, _)| c == self.own);
        let mut seq = s.serialize_seq(Some(self.base.len() + usize::from(!has_own)))?;
        for (c, n) in self.base.entries() {
            let n = if c == self.own { (*n).max(self.counter) } else { *n };
            seq.serialize_element(&(c, n))?;
        }
        if !has_own {
            seq.serialize_element(&(self.own, self.counter))?;
        }
        seq.end()
    }
}

#[derive(Debug, Serialize)]
pub struct Event<'a> {
    pub id: String,
    pub trace_id: &'a str,
    pub parent_id: Option<String>,
    pub timestamp: String,
    pub kind: Kind<'a>,
    pub metadata: Metadata<'a>,
    pub causality_vector: ClockAt<'a>,
    pub lock_set: &'a [Str<'a>],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_types_are_case_insensitive_and_closed() {
        assert_eq!(AccessType::parse("write"), Some(AccessType::Write));
        assert_eq!(AccessType::parse("ATOMICRMW"), Some(AccessType::AtomicRmw));
        assert_eq!(AccessType::parse("Modify"), None);
        assert_eq!(serde_json::to_string(&AccessType::AtomicRmw).unwrap(), "\"AtomicRMW\"");
    }

    #[test]
    fn clock_at_raises_or_appends_own_component() {
        let base: VectorClock = [("up".to_string(), 4), ("me".to_string(), 1)].into_iter().collect();
        let at = ClockAt { base: &base, own: "me", counter: 3 };
        assert_eq!(serde_json::to_string(&at).unwrap(), r#"[["up",4],["me",3]]"#);
        let at = ClockAt { base: &base, own: "new", counter: 1 };
        assert_eq!(serde_json::to_string(&at).unwrap(), r#"[["up",4],["me",1],["new",1]]"#);
    }
}
