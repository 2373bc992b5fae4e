//! The typed parts of an event as the Raceway server deserializes them (`POST /events`): the
//! closed sets (access types, orderings), the `kind` variants with their fields, and the
//! process-wide metadata. Every event's kind is built through these types before a byte of it
//! is written, so a kind the server would reject cannot be sent. The event's envelope (ids,
//! metadata, clock) is written by `pipeline.rs`, whose tests pin it against the server's form.
//! User values (`args`, `old_value`, bodies, …) are `RawValue`s: passed through untouched.

use serde::ser::Serializer;
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
}
