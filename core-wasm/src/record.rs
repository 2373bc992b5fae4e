//! The compact record log a host hands to the core, one JSON string per batch.
//! The format is documented for host authors in `docs/record-format.md`.
//!
//! Records are cheap for the host to produce (positional arrays, shared context and state
//! tables) and each event record is decoded on its own, so one bad record costs only itself.

use crate::clock::VectorClock;
use crate::event::{AccessType, Frames, Kind, Location, Ordering};
use crate::ids::TraceId;
use serde::de::{
    self, DeserializeSeed, Deserializer, Expected, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

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
/// `&RawValue` for the fallback that parses each record on its own (`EventRecord::parse_alone`),
/// so that one malformed record costs only itself.
#[derive(Debug, Deserialize)]
pub struct BatchRecord<'a, E> {
    #[serde(borrow)]
    pub contexts: Vec<ContextRecord<'a>>,
    #[serde(borrow)]
    pub states: Vec<StateRecord<'a>>,
    pub events: Vec<E>,
}

/// `[context, state, seq, prev_seq, unix_nanos, duration_ns, file, line, kind, fields]`, read in
/// one pass: the kind's name comes before its fields, so the fields are parsed straight into
/// the typed `Kind` (`KindSeed`) instead of being kept as raw JSON and parsed again.
#[derive(Debug)]
pub struct EventRecord<'a> {
    pub context: usize,
    pub state: usize,
    /// The context's counter for this event, from 1.
    pub seq: u64,
    /// The previous event's `seq` (0: none).
    pub prev_seq: u64,
    pub unix_nanos: u64,
    pub duration_ns: Option<u64>,
    /// The kind built from `kind`, `fields`, `file` and `line`, or why the server would not take
    /// it. A well-formed record that names an unknown kind, access type or ordering, or has an
    /// id that is not a UUID, is carried as a value rather than failing the parse: one such
    /// record must not send the whole batch down the slower per-record path.
    pub kind: Result<Kind<'a>, String>,
}

const RECORD: &str =
    "an event record [context, state, seq, prev_seq, unix_nanos, duration_ns, file, line, kind, fields]";

impl<'de> Deserialize<'de> for EventRecord<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(RecordVisitor {
            fields_apart: false,
        })
    }
}

impl<'a> EventRecord<'a> {
    /// Reads one record on its own: the per-record fallback for a batch that did not parse.
    /// Its fields are taken as raw JSON and parsed apart, so that a fault in them (a status
    /// over 65535, a negative duration) becomes the record's `kind` error naming the kind and
    /// the position in the fields, and is reported after the same checks as in the fast path.
    pub fn parse_alone(json: &'a str) -> Result<Self, String> {
        let mut de = serde_json::Deserializer::from_str(json);
        de.deserialize_seq(RecordVisitor { fields_apart: true })
            .and_then(|record| de.end().map(|()| record))
            .map_err(|e| format!("event record: {e}"))
    }
}

struct RecordVisitor {
    /// Read `fields` as raw JSON and parse it on its own (`EventRecord::parse_alone`).
    fields_apart: bool,
}

impl<'de> Visitor<'de> for RecordVisitor {
    type Value = EventRecord<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(RECORD)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, array: A) -> Result<Self::Value, A::Error> {
        let mut elements = Elements::new(array, &RECORD);
        let context = elements.next()?;
        let state = elements.next()?;
        let seq = elements.next()?;
        let prev_seq = elements.next()?;
        let unix_nanos = elements.next()?;
        let duration_ns = elements.next()?;
        let Text(file) = elements.next()?;
        let line = elements.next()?;
        let Text(name) = elements.next()?;
        let kind = match KindName::parse(&name) {
            Some(kind) => {
                let seed = KindSeed { kind, file, line };
                if self.fields_apart {
                    seed.parse_apart(&name, elements.next()?)
                } else {
                    elements.next_seed(seed)?
                }
            }
            None => {
                elements.next::<IgnoredAny>()?;
                Err(format!("event record: unknown kind {name:?}"))
            }
        };
        Ok(EventRecord {
            context,
            state,
            seq,
            prev_seq,
            unix_nanos,
            duration_ns,
            kind,
        })
    }
}

/// The kinds the server knows, as a record names them.
#[derive(Clone, Copy, Debug)]
enum KindName {
    FunctionCall,
    AsyncSpawn,
    AsyncAwait,
    StateChange,
    LockAcquire,
    LockRelease,
    MemoryFence,
    HttpRequest,
    HttpResponse,
    DatabaseQuery,
    DatabaseResult,
    Error,
    Custom,
}

impl KindName {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "FunctionCall" => KindName::FunctionCall,
            "AsyncSpawn" => KindName::AsyncSpawn,
            "AsyncAwait" => KindName::AsyncAwait,
            "StateChange" => KindName::StateChange,
            "LockAcquire" => KindName::LockAcquire,
            "LockRelease" => KindName::LockRelease,
            "MemoryFence" => KindName::MemoryFence,
            "HttpRequest" => KindName::HttpRequest,
            "HttpResponse" => KindName::HttpResponse,
            "DatabaseQuery" => KindName::DatabaseQuery,
            "DatabaseResult" => KindName::DatabaseResult,
            "Error" => KindName::Error,
            "Custom" => KindName::Custom,
            _ => return None,
        })
    }

    /// The kind's `fields`, as `docs/record-format.md` lists them.
    fn fields(self) -> &'static str {
        match self {
            KindName::FunctionCall => "[function_name, module, args]",
            KindName::AsyncSpawn => "[task_id, spawned_by]",
            KindName::AsyncAwait => "[future_id, awaited_at]",
            KindName::StateChange => "[variable, old_value, new_value, access_type, stack?]",
            KindName::LockAcquire | KindName::LockRelease => "[lock_id, lock_type]",
            KindName::MemoryFence => "[ordering]",
            KindName::HttpRequest => "[method, url, headers, body]",
            KindName::HttpResponse => "[status, headers, body, duration_ms]",
            KindName::DatabaseQuery => "[query, database, duration_ms]",
            KindName::DatabaseResult => "[rows_affected]",
            KindName::Error => "[error_type, message, stack_trace]",
            KindName::Custom => "[name, data]",
        }
    }
}

/// Reads a record's `fields` as the kind named before them, with the record's `file` and
/// `line` for the kinds that carry a location.
struct KindSeed<'a> {
    kind: KindName,
    file: Cow<'a, str>,
    line: u32,
}

impl<'a> KindSeed<'a> {
    /// For the fallback: parses the fields on their own, and a fault in them becomes the error
    /// of the record's kind (`HttpResponse: invalid value: integer …`).
    fn parse_apart(self, name: &str, fields: &'a RawValue) -> Result<Kind<'a>, String> {
        let mut de = serde_json::Deserializer::from_str(fields.get());
        self.deserialize(&mut de)
            .and_then(|built| de.end().map(|()| built))
            .unwrap_or_else(|e| Err(format!("{name}: {e}")))
    }
}

impl<'de> DeserializeSeed<'de> for KindSeed<'de> {
    type Value = Result<Kind<'de>, String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for KindSeed<'de> {
    type Value = Result<Kind<'de>, String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.kind.fields())
    }

    /// Every field is read before any is checked, so that a record which is malformed as well
    /// as wrong is reported as malformed, whichever field is which.
    fn visit_seq<A: SeqAccess<'de>>(self, array: A) -> Result<Self::Value, A::Error> {
        let KindSeed { kind, file, line } = self;
        let expected = kind.fields();
        let mut f = Elements::new(array, &expected);
        Ok(Ok(match kind {
            KindName::FunctionCall => {
                let (Text(function_name), Text(module), args) = (f.next()?, f.next()?, f.next()?);
                Kind::FunctionCall {
                    function_name,
                    module,
                    args,
                    file,
                    line,
                }
            }
            KindName::AsyncSpawn => {
                let (Text(task_id), Text(spawned_by)) = (f.next()?, f.next()?);
                if TraceId::parse_uuid(&task_id).is_none() {
                    return Ok(Err("AsyncSpawn: task_id is not a UUID".to_owned()));
                }
                Kind::AsyncSpawn {
                    task_id,
                    spawned_by,
                }
            }
            KindName::AsyncAwait => {
                let (Text(future_id), Text(awaited_at)) = (f.next()?, f.next()?);
                if TraceId::parse_uuid(&future_id).is_none() {
                    return Ok(Err("AsyncAwait: future_id is not a UUID".to_owned()));
                }
                Kind::AsyncAwait {
                    future_id,
                    awaited_at,
                }
            }
            KindName::StateChange => {
                let (Text(variable), old_value, new_value, Text(access)) =
                    (f.next()?, f.next()?, f.next()?, f.next()?);
                let stack = f.next_optional::<Vec<Text>>()?.unwrap_or_default();
                let Some(access_type) = AccessType::parse(&access) else {
                    return Ok(Err(format!(
                        "StateChange: access type {access:?} does not exist"
                    )));
                };
                let stack = Frames::from(
                    stack
                        .into_iter()
                        .map(|Text(frame)| frame)
                        .collect::<Vec<_>>(),
                );
                Kind::StateChange {
                    variable,
                    old_value,
                    new_value,
                    location: Location { file, line },
                    access_type,
                    stack,
                }
            }
            KindName::LockAcquire => {
                let (Text(lock_id), Text(lock_type)) = (f.next()?, f.next()?);
                Kind::LockAcquire {
                    lock_id,
                    lock_type,
                    location: Location { file, line },
                }
            }
            KindName::LockRelease => {
                let (Text(lock_id), Text(lock_type)) = (f.next()?, f.next()?);
                Kind::LockRelease {
                    lock_id,
                    lock_type,
                    location: Location { file, line },
                }
            }
            KindName::MemoryFence => {
                let Text(ordering) = f.next()?;
                let Some(ordering) = Ordering::parse(&ordering) else {
                    return Ok(Err("MemoryFence: unknown ordering".to_owned()));
                };
                Kind::MemoryFence {
                    ordering,
                    location: Location { file, line },
                }
            }
            KindName::HttpRequest => {
                let (Text(method), Text(url), Headers(headers), body) =
                    (f.next()?, f.next()?, f.next()?, f.next()?);
                Kind::HttpRequest {
                    method,
                    url,
                    headers,
                    body,
                }
            }
            KindName::HttpResponse => {
                let (status, Headers(headers), body, duration_ms) =
                    (f.next()?, f.next()?, f.next()?, f.next()?);
                Kind::HttpResponse {
                    status,
                    headers,
                    body,
                    duration_ms,
                }
            }
            KindName::DatabaseQuery => {
                let (Text(query), Text(database), duration_ms) = (f.next()?, f.next()?, f.next()?);
                Kind::DatabaseQuery {
                    query,
                    database,
                    duration_ms,
                }
            }
            KindName::DatabaseResult => Kind::DatabaseResult {
                rows_affected: f.next()?,
            },
            KindName::Error => {
                let (Text(error_type), Text(message), stack_trace) =
                    (f.next()?, f.next()?, f.next::<Vec<Text>>()?);
                let stack_trace = stack_trace.into_iter().map(|Text(line)| line).collect();
                Kind::Error {
                    error_type,
                    message,
                    stack_trace,
                }
            }
            KindName::Custom => {
                let (Text(name), data) = (f.next()?, f.next()?);
                Kind::Custom { name, data }
            }
        }))
    }
}

/// The elements of a JSON array read in order, a missing one reported as serde's tuples do.
struct Elements<'e, A> {
    seq: A,
    read: usize,
    expected: &'e dyn Expected,
}

impl<'de, 'e, A: SeqAccess<'de>> Elements<'e, A> {
    fn new(seq: A, expected: &'e dyn Expected) -> Self {
        Elements {
            seq,
            read: 0,
            expected,
        }
    }

    fn next<T: Deserialize<'de>>(&mut self) -> Result<T, A::Error> {
        self.next_seed(std::marker::PhantomData)
    }

    /// An element that may be left out at the end of the array.
    fn next_optional<T: Deserialize<'de>>(&mut self) -> Result<Option<T>, A::Error> {
        let value = self.seq.next_element()?;
        if value.is_some() {
            self.read += 1;
        }
        Ok(value)
    }

    fn next_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        let value = self.seq.next_element_seed(seed)?;
        let value = value.ok_or_else(|| de::Error::invalid_length(self.read, self.expected))?;
        self.read += 1;
        Ok(value)
    }
}

/// A string borrowed from the batch, or owned when it had escapes to undo. `Cow<str>`'s own
/// `Deserialize` always copies (`#[serde(borrow)]` changes that only for derived fields), and
/// a copy per string field was a good part of the cost of reading a record.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// HTTP headers, names and values borrowed like `Text`. A repeated name keeps its last value,
/// as `BTreeMap`'s own `Deserialize` does.
struct Headers<'a>(BTreeMap<Cow<'a, str>, Cow<'a, str>>);

impl<'de> Deserialize<'de> for Headers<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeadersVisitor;
        impl<'de> Visitor<'de> for HeadersVisitor {
            type Value = Headers<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of header names to strings")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut headers = BTreeMap::new();
                while let Some((Text(name), Text(value))) = map.next_entry()? {
                    headers.insert(name, value);
                }
                Ok(Headers(headers))
            }
        }
        deserializer.deserialize_map(HeadersVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(record: &str) -> Result<Kind<'_>, String> {
        serde_json::from_str::<EventRecord>(record).unwrap().kind
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let r = r#"[0,0,1,0,0,null,"a.py",3,"HttpRequest",["GET","/\u00e9",{"k":"v"},null]]"#;
        let Ok(Kind::HttpRequest {
            method,
            url,
            headers,
            ..
        }) = kind_of(r)
        else {
            panic!()
        };
        assert!(matches!(method, Cow::Borrowed("GET")));
        assert!(matches!(url, Cow::Owned(ref u) if u == "/é"));
        assert!(headers
            .iter()
            .all(|(k, v)| matches!((k, v), (Cow::Borrowed("k"), Cow::Borrowed("v")))));
    }

    #[test]
    fn faults_in_well_formed_records_are_values() {
        let cases = [
            (
                r#"["x",null,1,"Modify"]"#,
                "StateChange",
                "StateChange: access type \"Modify\" does not exist",
            ),
            (
                r#"["Weird"]"#,
                "MemoryFence",
                "MemoryFence: unknown ordering",
            ),
            (
                r#"["not-a-uuid","main"]"#,
                "AsyncSpawn",
                "AsyncSpawn: task_id is not a UUID",
            ),
            (
                r#"["zzzz","main"]"#,
                "AsyncAwait",
                "AsyncAwait: future_id is not a UUID",
            ),
            (
                r#"{"any":["json"]}"#,
                "FunctionReturn",
                "event record: unknown kind \"FunctionReturn\"",
            ),
        ];
        for (fields, kind, error) in cases {
            let record = format!(r#"[0,0,1,0,0,null,"a.py",3,"{kind}",{fields}]"#);
            assert_eq!(kind_of(&record).unwrap_err(), error);
            assert_eq!(
                EventRecord::parse_alone(&record).unwrap().kind.unwrap_err(),
                error
            );
        }
    }

    #[test]
    fn malformed_fields_fail_the_parse_and_are_named_when_read_alone() {
        let cases = [
            (r#"[70000,{},null,1]"#, "HttpResponse", "HttpResponse: invalid value: integer `70000`, expected u16 at line 1 column 6"),
            (r#"["x",null,1]"#, "StateChange", "StateChange: invalid length 3, expected [variable, old_value, new_value, access_type, stack?] at line 1 column 12"),
            (r#"["x",null,1,"Write",5]"#, "StateChange", "StateChange: invalid type: integer `5`, expected a sequence at line 1 column 21"),
            (r#"["x",null,1,"Write",[],6]"#, "StateChange", "StateChange: trailing characters at line 1 column 24"),
            (r#"{"lock_id":"a"}"#, "LockAcquire", "LockAcquire: invalid type: map, expected [lock_id, lock_type] at line 1 column 0"),
            // Malformed and wrong: reported as malformed, like a record that is only malformed.
            (r#"["not-a-uuid",5]"#, "AsyncSpawn", "AsyncSpawn: invalid type: integer `5`, expected a string at line 1 column 15"),
        ];
        for (fields, kind, error) in cases {
            let record = format!(r#"[0,0,1,0,0,null,"a.py",3,"{kind}",{fields}]"#);
            assert!(
                serde_json::from_str::<EventRecord>(&record).is_err(),
                "{record}"
            );
            assert_eq!(
                EventRecord::parse_alone(&record).unwrap().kind.unwrap_err(),
                error
            );
        }
        let short = EventRecord::parse_alone(r#"[0,0,1]"#).unwrap_err();
        assert!(
            short.starts_with("event record: invalid length 3, expected an event record [context"),
            "{short}"
        );
    }
}
