//! The typed parts of an event as the Raceway server deserializes them (`POST /events`): the
//! closed sets (access types, orderings), the `kind` variants with their fields, and the
//! process-wide metadata. Every event's kind is built through these types before a byte of it
//! is written, so a kind the server would reject cannot be sent. The event's envelope (ids,
//! metadata, clock) is written by `pipeline.rs`, whose tests pin it against the server's form.
//! User values (`args`, `old_value`, bodies, …) are `RawValue`s: passed through untouched.
//!
//! The derived `Serialize` is the reference form of a kind; the encoder writes the same bytes
//! with `Kind::write_json`, which a test holds to it.

use crate::render;
use serde::ser::Serializer;
use serde::Serialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;

type Str<'a> = Cow<'a, str>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum AccessType {
    Read,
    Write,
    AtomicRead,
    AtomicWrite,
    #[serde(rename = "AtomicRMW")]
    AtomicRmw,
}

impl AccessType {
    const ALL: [AccessType; 5] = [
        AccessType::Read,
        AccessType::Write,
        AccessType::AtomicRead,
        AccessType::AtomicWrite,
        AccessType::AtomicRmw,
    ];

    /// Case-insensitive, so `"write"` (a common slip the server would reject) still works.
    pub fn parse(s: &str) -> Option<Self> {
        // The server's own spelling, which hosts write, without a comparison per letter.
        let exact = match s {
            "Read" => Some(AccessType::Read),
            "Write" => Some(AccessType::Write),
            _ => None,
        };
        exact.or_else(|| {
            Self::ALL
                .into_iter()
                .find(|a| a.name().eq_ignore_ascii_case(s))
        })
    }

    /// The server's name for it, as `Serialize` writes it.
    pub fn name(self) -> &'static str {
        match self {
            AccessType::Read => "Read",
            AccessType::Write => "Write",
            AccessType::AtomicRead => "AtomicRead",
            AccessType::AtomicWrite => "AtomicWrite",
            AccessType::AtomicRmw => "AtomicRMW",
        }
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
    const ALL: [Ordering; 5] = [
        Ordering::Relaxed,
        Ordering::Acquire,
        Ordering::Release,
        Ordering::AcqRel,
        Ordering::SeqCst,
    ];

    /// Case-insensitive, like `AccessType::parse`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|o| o.name().eq_ignore_ascii_case(s))
    }

    /// The server's name for it, as `Serialize` writes it.
    pub fn name(self) -> &'static str {
        match self {
            Ordering::Relaxed => "Relaxed",
            Ordering::Acquire => "Acquire",
            Ordering::Release => "Release",
            Ordering::AcqRel => "AcqRel",
            Ordering::SeqCst => "SeqCst",
        }
    }
}

/// `file:line`, one string in the server's form, written without building it first (one per
/// event adds up).
#[derive(Debug, Clone)]
pub struct Location<'a> {
    pub file: Str<'a>,
    pub line: u32,
}

impl Serialize for Location<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}:{}", self.file, self.line))
    }
}

/// A stack's frames, kept without an allocation when there is at most one (the host records
/// one frame per access unless asked for more): one allocation per event was a measurable part
/// of reading a batch.
#[derive(Debug, Default)]
pub enum Frames<'a> {
    #[default]
    None,
    One(Str<'a>),
    Many(Vec<Str<'a>>),
}

impl<'a> From<Vec<Str<'a>>> for Frames<'a> {
    fn from(mut frames: Vec<Str<'a>>) -> Self {
        match frames.len() {
            0 => Frames::None,
            1 => Frames::One(frames.pop().expect("one frame")),
            _ => Frames::Many(frames),
        }
    }
}

impl<'a> std::ops::Deref for Frames<'a> {
    type Target = [Str<'a>];

    fn deref(&self) -> &[Str<'a>] {
        match self {
            Frames::None => &[],
            Frames::One(frame) => std::slice::from_ref(frame),
            Frames::Many(frames) => frames,
        }
    }
}

/// Externally tagged, exactly the variants the server knows (no `FunctionReturn`: the server
/// rejects a whole batch for an unknown variant).
#[derive(Debug, Serialize)]
pub enum Kind<'a> {
    FunctionCall {
        function_name: Str<'a>,
        module: Str<'a>,
        args: &'a RawValue,
        file: Str<'a>,
        line: u32,
    },
    AsyncSpawn {
        task_id: Str<'a>,
        spawned_by: Str<'a>,
    },
    AsyncAwait {
        future_id: Str<'a>,
        awaited_at: Str<'a>,
    },
    StateChange {
        variable: Str<'a>,
        old_value: &'a RawValue,
        new_value: &'a RawValue,
        location: Location<'a>,
        access_type: AccessType,
        /// The caller's stack (`file:line in function`, innermost first) for race reports.
        /// The server has no such field, so it is never written.
        #[serde(skip)]
        stack: Frames<'a>,
    },
    LockAcquire {
        lock_id: Str<'a>,
        lock_type: Str<'a>,
        location: Location<'a>,
    },
    LockRelease {
        lock_id: Str<'a>,
        lock_type: Str<'a>,
        location: Location<'a>,
    },
    MemoryFence {
        ordering: Ordering,
        location: Location<'a>,
    },
    HttpRequest {
        method: Str<'a>,
        url: Str<'a>,
        headers: BTreeMap<Str<'a>, Str<'a>>,
        body: &'a RawValue,
    },
    HttpResponse {
        status: u16,
        headers: BTreeMap<Str<'a>, Str<'a>>,
        body: &'a RawValue,
        duration_ms: u64,
    },
    DatabaseQuery {
        query: Str<'a>,
        database: Str<'a>,
        duration_ms: u64,
    },
    DatabaseResult {
        rows_affected: u64,
    },
    Error {
        error_type: Str<'a>,
        message: Str<'a>,
        stack_trace: Vec<Str<'a>>,
    },
    Custom {
        name: Str<'a>,
        data: &'a RawValue,
    },
}

impl Kind<'_> {
    /// Writes the kind as JSON, byte for byte as serde_json writes the derived `Serialize`
    /// (`{"Variant":{"field":value,…}}`), but without going through serde's generic serializer:
    /// that escapes every field name again for every event and formats the location through
    /// `fmt`, which was over a quarter of the encoder's instructions.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Kind::FunctionCall {
                function_name,
                module,
                args,
                file,
                line,
            } => VariantWriter::new(out, "FunctionCall")
                .field("function_name", function_name)
                .field("module", module)
                .field("args", *args)
                .field("file", file)
                .field("line", line)
                .end(),
            Kind::AsyncSpawn {
                task_id,
                spawned_by,
            } => VariantWriter::new(out, "AsyncSpawn")
                .field("task_id", task_id)
                .field("spawned_by", spawned_by)
                .end(),
            Kind::AsyncAwait {
                future_id,
                awaited_at,
            } => VariantWriter::new(out, "AsyncAwait")
                .field("future_id", future_id)
                .field("awaited_at", awaited_at)
                .end(),
            Kind::StateChange {
                variable,
                old_value,
                new_value,
                location,
                access_type,
                stack: _,
            } => VariantWriter::new(out, "StateChange")
                .field("variable", variable)
                .field("old_value", *old_value)
                .field("new_value", *new_value)
                .field("location", location)
                .field("access_type", access_type)
                .end(),
            Kind::LockAcquire {
                lock_id,
                lock_type,
                location,
            } => VariantWriter::new(out, "LockAcquire")
                .field("lock_id", lock_id)
                .field("lock_type", lock_type)
                .field("location", location)
                .end(),
            Kind::LockRelease {
                lock_id,
                lock_type,
                location,
            } => VariantWriter::new(out, "LockRelease")
                .field("lock_id", lock_id)
                .field("lock_type", lock_type)
                .field("location", location)
                .end(),
            Kind::MemoryFence { ordering, location } => VariantWriter::new(out, "MemoryFence")
                .field("ordering", ordering)
                .field("location", location)
                .end(),
            Kind::HttpRequest {
                method,
                url,
                headers,
                body,
            } => VariantWriter::new(out, "HttpRequest")
                .field("method", method)
                .field("url", url)
                .field("headers", headers)
                .field("body", *body)
                .end(),
            Kind::HttpResponse {
                status,
                headers,
                body,
                duration_ms,
            } => VariantWriter::new(out, "HttpResponse")
                .field("status", status)
                .field("headers", headers)
                .field("body", *body)
                .field("duration_ms", duration_ms)
                .end(),
            Kind::DatabaseQuery {
                query,
                database,
                duration_ms,
            } => VariantWriter::new(out, "DatabaseQuery")
                .field("query", query)
                .field("database", database)
                .field("duration_ms", duration_ms)
                .end(),
            Kind::DatabaseResult { rows_affected } => VariantWriter::new(out, "DatabaseResult")
                .field("rows_affected", rows_affected)
                .end(),
            Kind::Error {
                error_type,
                message,
                stack_trace,
            } => VariantWriter::new(out, "Error")
                .field("error_type", error_type)
                .field("message", message)
                .field("stack_trace", stack_trace.as_slice())
                .end(),
            Kind::Custom { name, data } => VariantWriter::new(out, "Custom")
                .field("name", name)
                .field("data", *data)
                .end(),
        }
    }
}

/// The parts of recent `StateChange`s' JSON that repeat from event to event, rendered once:
/// the part up to `old_value` (by variable) and the part after `new_value` (by location and
/// access type). Keyed by the strings themselves (the same string of the batch, or an equal
/// one), so a cache gives the bytes `Kind::write_json` writes; one per batch. A few heads are
/// kept (`CACHED`, replaced in turn: a loop that touches two variables is two variables) and a
/// tail per access type (a read and the write that follows it are two sites), where one entry
/// of each rendered them again at every change.
#[derive(Default)]
pub struct KindCache<'b> {
    /// `{"StateChange":{"variable":"…","old_value":`, by variable.
    heads: Cached<&'b str>,
    /// `,"location":"…","access_type":"…"}}`, by file and line, one per access type (a read
    /// and the write after it are found without a search).
    tails: [Tail<'b>; AccessType::ALL.len()],
}

/// A tail's site (file and line) and its bytes.
type Tail<'b> = (Option<(&'b str, u32)>, Vec<u8>);

/// Entries kept by each of `KindCache`'s caches.
const CACHED: usize = 4;

/// Up to `CACHED` keys with their rendered bytes; the next key not found replaces the oldest.
struct Cached<K> {
    keys: [Option<K>; CACHED],
    bytes: [Vec<u8>; CACHED],
    /// The entry the last look-up found or filled (looked at first), and the next to replace.
    last: usize,
    next: usize,
}

impl<K> Default for Cached<K> {
    fn default() -> Self {
        Cached {
            keys: std::array::from_fn(|_| None),
            bytes: Default::default(),
            last: 0,
            next: 0,
        }
    }
}

impl<K: Copy> Cached<K> {
    /// The bytes cached for a key `matches` accepts, else those `render` writes for `key`
    /// (kept in place of the oldest entry).
    #[inline]
    fn get(
        &mut self,
        key: K,
        matches: impl Fn(&K) -> bool,
        render: impl FnOnce(&mut Vec<u8>),
    ) -> &[u8] {
        if !self.keys[self.last].as_ref().is_some_and(&matches) {
            match (0..CACHED).find(|&i| self.keys[i].as_ref().is_some_and(&matches)) {
                Some(i) => self.last = i,
                None => {
                    let i = self.next;
                    self.next = (i + 1) % CACHED;
                    self.bytes[i].clear();
                    render(&mut self.bytes[i]);
                    self.keys[i] = Some(key);
                    self.last = i;
                }
            }
        }
        &self.bytes[self.last]
    }
}

/// The same text: the same string (a string the pickle holds once), or an equal one (compared
/// eight bytes at a time: the component's `memcmp` goes a byte at a time, and a batch of the
/// JSON form has every repeat of a name in a string of its own).
pub(crate) fn same(a: &str, b: &str) -> bool {
    if std::ptr::eq(a, b) {
        return true;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let word = |s: &[u8]| u64::from_le_bytes(s.try_into().expect("8 bytes"));
    let (mut x, mut y) = (a.chunks_exact(8), b.chunks_exact(8));
    if (&mut x).zip(&mut y).any(|(x, y)| word(x) != word(y)) {
        return false;
    }
    x.remainder().iter().zip(y.remainder()).all(|(x, y)| x == y)
}

impl<'b> KindCache<'b> {
    /// Writes `kind` as `Kind::write_json` does.
    pub fn write_json(&mut self, kind: &'b Kind<'_>, out: &mut Vec<u8>) {
        let Kind::StateChange {
            variable,
            old_value,
            new_value,
            location,
            access_type,
            stack: _,
        } = kind
        else {
            return kind.write_json(out);
        };
        let variable: &'b str = variable;
        let head = self.heads.get(
            variable,
            |v| same(v, variable),
            |head| {
                head.extend_from_slice(b"{\"StateChange\":{\"variable\":");
                render::string(head, variable);
                head.extend_from_slice(b",\"old_value\":");
            },
        );
        out.extend_from_slice(head);
        out.extend_from_slice(old_value.get().as_bytes());
        out.extend_from_slice(b",\"new_value\":");
        out.extend_from_slice(new_value.get().as_bytes());
        let file: &'b str = &location.file;
        let (site, tail) = &mut self.tails[*access_type as usize];
        if !site.is_some_and(|(f, line)| line == location.line && same(f, file)) {
            tail.clear();
            tail.extend_from_slice(b",\"location\":");
            location.write_json(tail);
            tail.extend_from_slice(b",\"access_type\":");
            access_type.write_json(tail);
            tail.extend_from_slice(b"}}");
            *site = Some((file, location.line));
        }
        out.extend_from_slice(tail);
    }
}

/// `{"Variant":{"field":value,…}}`: an externally tagged struct variant as serde_json writes it.
/// Variant and field names are Rust identifiers, so they are written as they are: nothing in
/// them needs escaping.
struct VariantWriter<'o> {
    out: &'o mut Vec<u8>,
    fields: usize,
}

impl<'o> VariantWriter<'o> {
    fn new(out: &'o mut Vec<u8>, variant: &str) -> Self {
        out.extend_from_slice(b"{\"");
        out.extend_from_slice(variant.as_bytes());
        out.extend_from_slice(b"\":{");
        VariantWriter { out, fields: 0 }
    }

    fn field<T: WriteJson + ?Sized>(&mut self, name: &str, value: &T) -> &mut Self {
        self.out
            .extend_from_slice(if self.fields == 0 { b"\"" } else { b",\"" });
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
        value.write_json(self.out);
        self.fields += 1;
        self
    }

    fn end(&mut self) {
        self.out.extend_from_slice(b"}}");
    }
}

/// A field's value written as serde_json writes its `Serialize`.
trait WriteJson {
    fn write_json(&self, out: &mut Vec<u8>);
}

impl WriteJson for Str<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        render::string(out, self);
    }
}

impl WriteJson for RawValue {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.get().as_bytes());
    }
}

impl WriteJson for u16 {
    fn write_json(&self, out: &mut Vec<u8>) {
        render::u64(out, u64::from(*self));
    }
}

impl WriteJson for u32 {
    fn write_json(&self, out: &mut Vec<u8>) {
        render::u64(out, u64::from(*self));
    }
}

impl WriteJson for u64 {
    fn write_json(&self, out: &mut Vec<u8>) {
        render::u64(out, *self);
    }
}

impl WriteJson for Location<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        render::string(out, &self.file);
        out.pop(); // the closing quote: the line goes inside the string
        out.push(b':');
        render::u64(out, u64::from(self.line));
        out.push(b'"');
    }
}

impl WriteJson for AccessType {
    fn write_json(&self, out: &mut Vec<u8>) {
        render::string(out, self.name());
    }
}

impl WriteJson for Ordering {
    fn write_json(&self, out: &mut Vec<u8>) {
        render::string(out, self.name());
    }
}

impl WriteJson for BTreeMap<Str<'_>, Str<'_>> {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        for (i, (name, value)) in self.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            render::string(out, name);
            out.push(b':');
            render::string(out, value);
        }
        out.push(b'}');
    }
}

impl WriteJson for [Str<'_>] {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        for (i, s) in self.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            render::string(out, s);
        }
        out.push(b']');
    }
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
        assert_eq!(
            serde_json::to_string(&AccessType::AtomicRmw).unwrap(),
            "\"AtomicRMW\""
        );
        assert_eq!(Ordering::parse("seqcst"), Some(Ordering::SeqCst));
        assert_eq!(Ordering::parse("Weird"), None);
        for a in AccessType::ALL {
            assert_eq!(
                serde_json::to_string(&a).unwrap(),
                format!("\"{}\"", a.name())
            );
        }
        for o in Ordering::ALL {
            assert_eq!(
                serde_json::to_string(&o).unwrap(),
                format!("\"{}\"", o.name())
            );
        }
    }

    fn raw(json: &str) -> &RawValue {
        serde_json::from_str(json).unwrap()
    }

    /// Every variant, with strings that need escaping, empty and full maps and lists.
    fn every_kind() -> Vec<Kind<'static>> {
        let at = |file: &'static str| Location {
            file: Cow::Borrowed(file),
            line: 7,
        };
        let headers: BTreeMap<Str, Str> = [("b", "2"), ("a", "\"quoted\"\n"), ("ü", "\u{1}")]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        vec![
            Kind::FunctionCall {
                function_name: "f".into(),
                module: "m\\n".into(),
                args: raw(r#"{"a": [1, 2.5, null], "s": "\u00e9"}"#),
                file: "C:\\app\\wü.py".into(),
                line: 4_000_000_000,
            },
            Kind::AsyncSpawn {
                task_id: "8f14e45f-ceea-467e-a8f8-2f6b1a3b3f01".into(),
                spawned_by: "main".into(),
            },
            Kind::AsyncAwait {
                future_id: "8f14e45f-ceea-467e-a8f8-2f6b1a3b3f01".into(),
                awaited_at: "h".into(),
            },
            Kind::StateChange {
                variable: "account.balance".into(),
                old_value: raw("null"),
                new_value: raw(r#"{"v":1}"#),
                location: at("app.py"),
                access_type: AccessType::AtomicRmw,
                stack: Frames::One("app.py:7 in f".into()),
            },
            Kind::LockAcquire {
                lock_id: "L".into(),
                lock_type: "threading.Lock".into(),
                location: at("a\"b\\c.py"),
            },
            Kind::LockRelease {
                lock_id: "L".into(),
                lock_type: "threading.Lock".into(),
                location: at(""),
            },
            Kind::MemoryFence {
                ordering: Ordering::AcqRel,
                location: at("\u{7f}\u{1f}.py"),
            },
            Kind::HttpRequest {
                method: "GET".into(),
                url: "/?q=é".into(),
                headers: BTreeMap::new(),
                body: raw("null"),
            },
            Kind::HttpResponse {
                status: 65535,
                headers,
                body: raw(r#""text""#),
                duration_ms: u64::MAX,
            },
            Kind::DatabaseQuery {
                query: "SELECT 1".into(),
                database: "pg".into(),
                duration_ms: 0,
            },
            Kind::DatabaseResult { rows_affected: 12 },
            Kind::Error {
                error_type: "E".into(),
                message: "bad ☃".into(),
                stack_trace: vec!["a".into(), "\tb".into()],
            },
            Kind::Error {
                error_type: "E".into(),
                message: "".into(),
                stack_trace: vec![],
            },
            Kind::Custom {
                name: "n".into(),
                data: raw("[1,{}]"),
            },
        ]
    }

    #[test]
    fn same_text_is_equal_bytes() {
        let texts = [
            "",
            "a",
            "abcdefg",
            "abcdefgh",
            "abcdefghi",
            "account.balance",
            "é✓",
        ];
        for a in texts {
            for b in texts {
                let b = String::from(b); // another string, equal or not
                assert_eq!(same(a, &b), a == b, "{a:?} {b:?}");
                let mut c = b.clone().into_bytes();
                if let Some(last) = c.last_mut() {
                    *last ^= 1; // the last byte differs
                    if let Ok(c) = String::from_utf8(c) {
                        assert!(!same(&b, &c), "{b:?} {c:?}");
                    }
                }
            }
            assert!(same(a, a));
        }
        assert!(!same("abcdefgh-1", "abcdefgX-1"));
    }

    #[test]
    fn the_kind_cache_writes_what_write_json_does() {
        let raw_one = raw("1");
        let raw_obj = raw(r#"{"v":[1]}"#);
        let change =
            |variable: &'static str, file: &'static str, line, access_type| Kind::StateChange {
                variable: variable.into(),
                old_value: raw_one,
                new_value: raw_obj,
                location: Location {
                    file: file.into(),
                    line,
                },
                access_type,
                stack: Frames::None,
            };
        // An equal variable in another string, a variable that changes and changes back, a
        // site whose file, line or access type changes, other kinds in between, escapes.
        let owned = String::from("acct");
        let kinds = [
            vec![
                change("acct", "a.py", 3, AccessType::Write),
                change("acct", "a.py", 3, AccessType::Write),
                Kind::StateChange {
                    variable: Cow::Borrowed(owned.as_str()),
                    old_value: raw_obj,
                    new_value: raw_one,
                    location: Location {
                        file: "a.py".into(),
                        line: 3,
                    },
                    access_type: AccessType::Write,
                    stack: Frames::None,
                },
                change("acct", "a.py", 3, AccessType::Read),
                change("acct", "a.py", 4, AccessType::Read),
                change("acct", "b.py", 4, AccessType::Read),
                change("other\"q", "b.py", 4, AccessType::Read),
                change("acct", "b\\.py", 4, AccessType::Read),
            ],
            every_kind(),
            vec![change("acct", "a.py", 3, AccessType::Write)],
            // More variables and sites than the cache keeps, in turn and back again: each
            // is found, evicted and rendered again (non-ASCII and escaped names among them).
            (0..40)
                .map(|i: u32| {
                    const VARS: [&str; 6] = ["v0", "vé1", "v\"2", "acct", "v\n4", "ü5"];
                    const FILES: [&str; 3] = ["a.py", "b\\é.py", "a.py"];
                    change(
                        VARS[(i * 7 % 6) as usize],
                        FILES[(i % 3) as usize],
                        [0, 1, u32::MAX][(i % 5 % 3) as usize],
                        AccessType::ALL[(i % 5) as usize],
                    )
                })
                .collect(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
        let mut cache = KindCache::default();
        for kind in &kinds {
            let (mut cached, mut direct) = (Vec::new(), Vec::new());
            cache.write_json(kind, &mut cached);
            kind.write_json(&mut direct);
            assert_eq!(
                String::from_utf8(cached).unwrap(),
                String::from_utf8(direct).unwrap()
            );
        }
    }

    #[test]
    fn write_json_writes_what_serialize_does() {
        for kind in every_kind() {
            let mut written = Vec::new();
            kind.write_json(&mut written);
            let serialized = serde_json::to_vec(&kind).unwrap();
            assert_eq!(
                String::from_utf8(written).unwrap(),
                String::from_utf8(serialized).unwrap()
            );
        }
    }
}
