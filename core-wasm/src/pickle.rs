//! The record batch in the Python host's other form: `pickle` protocol 5 (docs/record-format.md,
//! "The pickle form"), read into the same typed records as the JSON form, through the same
//! `Deserialize` impls (`record.rs`): one parser of records, two readers of bytes. A batch of
//! the plain shape has its valid records read straight from the nodes (`events.rs`), which
//! gives the same records for a fraction of the work; the rest go through serde.
//!
//! Why: the host writes a batch with `pickle` about three times faster than with `json` (strings
//! it has written once are referred to by a two-byte memo index after that), and the core reads
//! it faster too. The JSON form stays the contract for every other host.
//!
//! What is read: the subset of opcodes `pickle.dumps(batch, 5)` writes for a batch of records
//! (tuples, lists, dicts, strings, ints, floats, `None`, booleans, the memo), and one global:
//! `builtins.int` called on one int, which is how an earlier host wrote the index of a context
//! or a state. The host now writes a record's context and state as tuples inline, which
//! `Tree::inline_rows` turns into table rows. A record is read in either of two forms
//! (`Tree::record_parts`): flat, its kind's fields its own items from the tenth on, as the
//! host writes it, or nested, its fields one tuple, as in the JSON form. Anything else
//! (another opcode, another global, an integer beyond 64 bits, a string that is not UTF-8 such
//! as a lone surrogate, a float that is not finite, a dict key that is not a string, nesting
//! deeper than `MAX_DEPTH`, a record that does not fit) is an error for the whole batch, before
//! any event is used: the host then sends the same batch as JSON, so every value keeps exactly
//! the wire form the JSON form gives it.
//!
//! User values (`old_value`, `args`, bodies, `data`) are written here as JSON text exactly as
//! Python's `json.dumps(value, separators=(",", ":"), ensure_ascii=True)` writes them, so the
//! bodies and the detector's findings are byte for byte those of the JSON form.
//!
//! Bounds, for a malformed or hostile pickle: every opcode makes at most one node, so memory is
//! linear in the input; nesting is limited to `MAX_DEPTH`; the nodes visited (memo references
//! can share a subtree) and the bytes of values written are limited to a multiple of the
//! input's length, so the work stays within the fuel the host gives per input character.

mod events;

use crate::read::ReadBatch;
use crate::record::{BatchRecord, ContextRecord, EventRecord, StateRecord};
use crate::render;
use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;
use serde::Deserialize;
use std::cell::Cell;
use std::fmt;

/// The deepest nesting read (serde_json's own limit for JSON is 128).
pub const MAX_DEPTH: u32 = 100;
/// The largest pickle read, as the UTF-8 length of the host's string (a pickle byte from 0x80
/// takes two); a larger batch is refused (the host sends it as JSON; it pickles at most 1 MiB,
/// which is at most 2 MiB here). At most one node per byte: the nodes, stack and memo of the
/// worst 2 MiB stay well within the instance's 256 MiB.
pub const MAX_INPUT: usize = 2 * 1024 * 1024;
/// Bytes of values' JSON written per byte of input, at most (plus `VALUES_SLACK`), and never
/// more than `MAX_VALUES`.
const VALUES_PER_BYTE: usize = 64;
const VALUES_SLACK: usize = 64 * 1024;
/// The most values' JSON one batch may render: the size at which the host splits a batch of
/// the JSON form (`raceway._records.MAX_BATCH_CHARS`). A pickle shares repeated strings, so a
/// small one can stand for values hundreds of times its size; past this the batch is refused
/// and the host sends it as JSON, in parts of at most that size, instead of the core running
/// out of memory.
pub const MAX_VALUES: usize = 4 * 1024 * 1024;
/// Nodes visited per byte of input, at most (plus `VISITS_SLACK`).
const VISITS_PER_BYTE: u64 = 4;
const VISITS_SLACK: u64 = 4096;

/// The name serde_json's `RawValue` asks a deserializer for, and the key its visitor expects.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";
/// The name `Record` asks `At` for: an event record, in either form (`Tree::record_parts`).
const RECORD_TOKEN: &str = "$raceway::pickle::Record";

#[derive(Clone, Copy, Debug)]
enum Node<'a> {
    None,
    Bool(bool),
    Int(i64),
    /// An int from 2^63 to 2^64 - 1.
    Big(u64),
    Float(f64),
    Str(&'a str),
    /// `owned[index]`: a string that was not ASCII in the input, decoded.
    Owned(u32),
    /// `items[start..start + len]`.
    Tuple(u32, u32),
    /// `lists[index]`.
    List(u32),
    /// `dicts[index]`.
    Dict(u32),
    /// `builtins.int`, to be called by `REDUCE`.
    IntType,
    /// The empty `bytes`, which no user value holds (the host converts bytes to text): at
    /// the head of a tuple it makes the tuple an object, its other items its keys and then
    /// its values (`Tree::object`). Python's cyclic GC never untracks a tuple that holds a dict,
    /// and does untrack one of strings, ints and such tuples, so the host writes a user's
    /// dict this way (docs/record-format.md, "Objects").
    ObjectMark,
}

/// A pickle read into nodes. `root` is what `STOP` left.
pub struct Tree<'a> {
    nodes: Vec<Node<'a>>,
    owned: Vec<String>,
    items: Vec<u32>,
    lists: Vec<Vec<u32>>,
    dicts: Vec<Vec<(u32, u32)>>,
    root: u32,
    /// For each node rendered as a value: its JSON in `values` (`(start, end)`), else `NONE`.
    raw: Vec<(u32, u32)>,
    visits_left: Cell<u64>,
    values_limit: usize,
    /// Contexts (`[0]`) and states (`[1]`) written inline in the records (`inline_rows`):
    /// each distinct one's tuple, moved to a node of its own, in order of first use.
    inline: [Vec<u32>; 2],
}

/// Room kept in the node tables for the nodes `Tree::inline_rows` adds (more grow them).
const INLINE_ROOM: usize = 64;

/// An object tuple's keys and values (`Tree::object`): item indexes, as many of each.
type KeysAndValues<'t> = (&'t [u32], &'t [u32]);

/// No value: every value's JSON has at least one byte, so no value ends where it starts.
const NONE: (u32, u32) = (0, 0);

/// An event record's items as its readers take them (`Tree::record_parts`).
#[derive(Clone, Copy)]
struct RecordParts<'s> {
    /// `context, state, seq, prev_seq, unix_nanos, duration_ns, file, line, kind`.
    head: &'s [u32; 9],
    /// The kind's fields.
    fields: &'s [u32],
    /// The fields are the record's own items from the tenth on (the flat form), not the
    /// items of its tenth (the nested form).
    flat: bool,
}

/// The host passes the pickle's bytes as a string of the characters U+0000 to U+00FF, one per
/// byte (`bytes.decode("latin-1")`), because the component's arguments are strings: `Input`
/// reads the bytes back from that string's UTF-8 as it goes (a byte under 0x80 is itself,
/// one from 0x80 is two), and a string of the pickle that is all ASCII is borrowed as it is.
pub fn check_size(text: &str) -> Result<(), String> {
    if text.len() > MAX_INPUT {
        return err(format_args!("more than {MAX_INPUT} bytes"));
    }
    Ok(())
}

fn err<T>(what: impl fmt::Display) -> Result<T, String> {
    Err(format!("pickle: {what}"))
}

struct Input<'a> {
    /// The host's string (see `check_size`), and its UTF-8.
    text: &'a str,
    data: &'a [u8],
    pos: usize,
}

/// A string of the pickle: borrowed from the input when it is ASCII, else decoded.
enum Text<'a> {
    Borrowed(&'a str),
    Decoded(Vec<u8>),
}

impl<'a> Input<'a> {
    /// The next byte, or None (see `fault` for why). An `Option`, not a `Result`: the error
    /// is made apart, so that a byte read costs no `Result` in memory (most of reading a
    /// batch is reading bytes).
    #[inline(always)]
    fn next(&mut self) -> Option<u8> {
        match self.data.get(self.pos) {
            Some(&b) if b < 0x80 => {
                self.pos += 1;
                Some(b)
            }
            Some(&b) if (b == 0xc2 || b == 0xc3) && self.pos + 1 < self.data.len() => {
                let next = self.data[self.pos + 1];
                self.pos += 2;
                Some(((b & 0x1f) << 6) | (next & 0x3f))
            }
            _ => None,
        }
    }

    /// Why `next` gave no byte.
    #[cold]
    #[inline(never)]
    fn fault(&self) -> String {
        match self.data.get(self.pos) {
            Some(_) => "pickle: a character beyond U+00FF".to_owned(),
            None => "pickle: truncated".to_owned(),
        }
    }

    /// The next `n` bytes.
    #[inline(always)]
    fn take(&mut self, n: usize) -> Result<Text<'a>, String> {
        // An ASCII run is the string itself (taken from the host's string: no second check of
        // its UTF-8).
        let run = self.pos..self.pos.saturating_add(n);
        if let Some(ascii) = self.data.get(run.clone()).filter(|run| run.is_ascii()) {
            if let Some(s) = self.text.get(run) {
                debug_assert_eq!(s.as_bytes(), ascii);
                self.pos += n;
                return Ok(Text::Borrowed(s));
            }
        }
        if n > self.data.len() - self.pos {
            return err("truncated");
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            match self.next() {
                Some(b) => out.push(b),
                None => return Err(self.fault()),
            }
        }
        Ok(Text::Decoded(out))
    }
}

impl<'a> Tree<'a> {
    /// Runs the pickle whose bytes are the characters of the host's string `text` (see
    /// `check_size`), with the opcodes listed in the module's documentation.
    pub fn read(text: &'a str) -> Result<Self, String> {
        let data = text.as_bytes();
        let mut tree = Tree {
            nodes: Vec::with_capacity(data.len() / 4),
            owned: Vec::new(),
            // Room for what a batch of records needs (an item is at least one byte).
            items: Vec::with_capacity(data.len() / 2),
            lists: Vec::new(),
            dicts: Vec::new(),
            root: 0,
            raw: Vec::new(),
            visits_left: Cell::new(VISITS_PER_BYTE * data.len() as u64 + VISITS_SLACK),
            values_limit: (VALUES_PER_BYTE * data.len() + VALUES_SLACK).min(MAX_VALUES),
            inline: [Vec::new(), Vec::new()],
        };
        let mut input = Input { text, data, pos: 0 };
        let mut stack: Vec<u32> = Vec::with_capacity(64);
        let mut marks: Vec<usize> = Vec::with_capacity(16);
        let mut memo: Vec<u32> = Vec::with_capacity(data.len() / 16);
        let floor = |marks: &Vec<usize>| marks.last().copied().unwrap_or(0);
        macro_rules! byte {
            () => {{
                match input.next() {
                    Some(b) => b,
                    None => return Err(input.fault()),
                }
            }};
        }
        // The next `$n` bytes, as an array.
        macro_rules! le {
            ($n:literal) => {{
                let mut out = [0u8; $n];
                for b in out.iter_mut() {
                    *b = byte!();
                }
                out
            }};
        }
        macro_rules! pop {
            () => {{
                if stack.len() <= floor(&marks) {
                    return err("stack underflow");
                }
                stack.pop().expect("checked")
            }};
        }
        macro_rules! push {
            ($node:expr) => {{
                stack.push(tree.nodes.len() as u32);
                tree.nodes.push($node);
            }};
        }
        // The items above the last mark (taken off the stack by the caller, with `truncate`).
        macro_rules! mark {
            () => {{
                let Some(mark) = marks.pop() else {
                    return err("no mark");
                };
                mark
            }};
        }
        if byte!() != 0x80 || !(2..=5).contains(&byte!()) {
            return err("not a pickle of protocol 2 to 5");
        }
        loop {
            let op = byte!();
            match op {
                0x95 => {
                    le!(8); // FRAME: a length hint
                }
                b'.' => {
                    let root = pop!();
                    if !stack.is_empty() || !marks.is_empty() || input.pos != data.len() {
                        return err("data after the end");
                    }
                    tree.root = root;
                    return Ok(tree);
                }
                b'(' => marks.push(stack.len()),
                b']' => {
                    push!(Node::List(tree.lists.len() as u32));
                    tree.lists.push(Vec::new());
                }
                b'}' => {
                    push!(Node::Dict(tree.dicts.len() as u32));
                    tree.dicts.push(Vec::new());
                }
                b')' => push!(Node::Tuple(tree.items.len() as u32, 0)),
                // The list (dict) must be in the current frame, below what is appended to it:
                // after `APPEND` (`SETITEM`) pops one value (a key and a value), or `APPENDS`
                // (`SETITEMS`) pops to the mark.
                b'a' | b'e' => {
                    let from = if op == b'a' {
                        stack.len().saturating_sub(1)
                    } else {
                        mark!()
                    };
                    if from <= floor(&marks)
                        || from > stack.len()
                        || (op == b'a' && from == stack.len())
                    {
                        return err("append to nothing");
                    }
                    let Node::List(l) = tree.nodes[stack[from - 1] as usize] else {
                        return err("append to a non-list");
                    };
                    tree.lists[l as usize].extend_from_slice(&stack[from..]);
                    stack.truncate(from);
                }
                b's' | b'u' => {
                    let from = if op == b's' {
                        stack.len().saturating_sub(2)
                    } else {
                        mark!()
                    };
                    if from <= floor(&marks)
                        || from > stack.len()
                        || (op == b's' && from + 2 != stack.len())
                        || !(stack.len() - from).is_multiple_of(2)
                    {
                        return err("setitems without a dict, a key or a value");
                    }
                    let Node::Dict(d) = tree.nodes[stack[from - 1] as usize] else {
                        return err("setitem on a non-dict");
                    };
                    tree.dicts[d as usize]
                        .extend(stack[from..].chunks_exact(2).map(|pair| (pair[0], pair[1])));
                    stack.truncate(from);
                }
                b't' | 0x85..=0x87 => {
                    let from = match op {
                        b't' => mark!(),
                        _ => {
                            let n = (op - 0x84) as usize;
                            if stack.len() < floor(&marks) + n {
                                return err("stack underflow");
                            }
                            stack.len() - n
                        }
                    };
                    let start = tree.items.len() as u32;
                    tree.items.extend_from_slice(&stack[from..]);
                    let len = (stack.len() - from) as u32;
                    stack.truncate(from);
                    push!(Node::Tuple(start, len));
                }
                b'N' => push!(Node::None),
                b'C' => {
                    if byte!() != 0 {
                        return err("bytes other than an object's empty marker");
                    }
                    push!(Node::ObjectMark);
                }
                0x88 => push!(Node::Bool(true)),
                0x89 => push!(Node::Bool(false)),
                b'J' => push!(Node::Int(i64::from(i32::from_le_bytes(le!(4))))),
                b'K' => push!(Node::Int(i64::from(byte!()))),
                b'M' => push!(Node::Int(i64::from(u16::from_le_bytes(le!(2))))),
                0x8a => {
                    let n = byte!() as usize;
                    if n > 9 {
                        return err("an integer beyond 64 bits");
                    }
                    let mut bytes = [0u8; 9];
                    for b in bytes[..n].iter_mut() {
                        *b = byte!();
                    }
                    let low = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
                    push!(long1(n, low, bytes[8])?);
                }
                b'G' => {
                    let x = f64::from_be_bytes(le!(8));
                    push!(Node::Float(x));
                }
                0x8c | b'X' | 0x8d => {
                    let n = match op {
                        0x8c => byte!() as usize,
                        b'X' => u32::from_le_bytes(le!(4)) as usize,
                        _ => usize::try_from(u64::from_le_bytes(le!(8))).unwrap_or(usize::MAX),
                    };
                    match input.take(n)? {
                        Text::Borrowed(s) => push!(Node::Str(s)),
                        Text::Decoded(bytes) => {
                            let Ok(s) = String::from_utf8(bytes) else {
                                return err("a string that is not UTF-8");
                            };
                            push!(Node::Owned(tree.owned.len() as u32));
                            tree.owned.push(s);
                        }
                    }
                }
                0x94 => {
                    let Some(&top) = stack.last() else {
                        return err("memoize nothing");
                    };
                    memo.push(top);
                }
                b'h' | b'j' => {
                    let i = if op == b'h' {
                        byte!() as usize
                    } else {
                        u32::from_le_bytes(le!(4)) as usize
                    };
                    let Some(&node) = memo.get(i) else {
                        return err("unknown memo index");
                    };
                    stack.push(node);
                }
                0x93 => {
                    let name = pop!();
                    let module = pop!();
                    match (tree.text(module), tree.text(name)) {
                        (Some("builtins"), Some("int")) => push!(Node::IntType),
                        _ => return err("a global other than builtins.int"),
                    }
                }
                b'R' => {
                    let args = pop!();
                    let callable = pop!();
                    let Node::IntType = tree.nodes[callable as usize] else {
                        return err("a call of something else than int");
                    };
                    let Node::Tuple(start, 1) = tree.nodes[args as usize] else {
                        return err("int() of other arguments");
                    };
                    let arg = tree.items[start as usize];
                    let Node::Int(i) = tree.nodes[arg as usize] else {
                        return err("int() of a non-int");
                    };
                    push!(Node::Int(i));
                }
                other => return err(format_args!("opcode 0x{other:02x} is not read")),
            }
        }
    }

    /// The string a node holds, if it is one.
    #[inline(always)]
    fn text(&self, node: u32) -> Option<&str> {
        match self.nodes[node as usize] {
            Node::Str(s) => Some(s),
            Node::Owned(i) => Some(&self.owned[i as usize]),
            _ => None,
        }
    }

    #[inline]
    fn visit(&self) -> Result<(), String> {
        let left = self.visits_left.get();
        if left == 0 {
            return err("too many references");
        }
        self.visits_left.set(left - 1);
        Ok(())
    }

    #[inline(always)]
    fn seq(&self, node: u32) -> Option<&[u32]> {
        match self.nodes[node as usize] {
            Node::Tuple(start, len) => Some(&self.items[start as usize..(start + len) as usize]),
            Node::List(l) => Some(&self.lists[l as usize]),
            _ => None,
        }
    }

    /// The keys and the values of an object written as a tuple headed by the empty bytes
    /// (`Node::ObjectMark`): `(mark, key_1, …, key_n, value_1, …, value_n)`, keys first, so
    /// that the host writes one with `(mark, *d, *d.values())`, without a tuple per entry.
    /// None for any other node; an error for an object tuple of an even length (a key without
    /// its value).
    #[inline(always)]
    fn object(&self, node: u32) -> Option<Result<KeysAndValues<'_>, &'static str>> {
        let Node::Tuple(start, len) = self.nodes[node as usize] else {
            return None;
        };
        let items = self.items.get(start as usize..(start + len) as usize)?;
        let (&mark, entries) = items.split_first()?;
        if !matches!(self.nodes[mark as usize], Node::ObjectMark) {
            return None;
        }
        if entries.len() % 2 != 0 {
            return Some(Err("an object with a key and no value"));
        }
        Some(Ok(entries.split_at(entries.len() / 2)))
    }

    /// An event record's first nine items and its kind's fields, in either of the pickle
    /// form's two record forms (docs/record-format.md, "The pickle form"):
    /// - nested, `(context, …, kind, fields)`: exactly ten items, the tenth a sequence (a
    ///   tuple or a list), whose items are the fields (the JSON form's record; older hosts);
    /// - flat, `(context, …, kind, *fields)`: any other sequence of at least nine items,
    ///   whose items from the tenth on are the fields (what the Python host writes: a record
    ///   of one tuple, which Python's cyclic GC untracks in its first collection).
    ///
    /// None for a node that is not a sequence of at least nine items (every reader then
    /// refuses it as the record it is). The one record both forms could describe, ten items
    /// the last of which is a sequence, is read as nested, as it was before the flat form
    /// was read: read as flat, it would be a kind of one field that is a sequence, and no
    /// kind has one (`MemoryFence`'s one field, `ordering`, is a string, `DatabaseResult`'s,
    /// `rows_affected`, an int): the host never writes such a flat record, and whatever
    /// record of this shape comes is read (kept, dropped or refused) exactly as before.
    #[inline(always)]
    fn record_parts(&self, node: u32) -> Option<RecordParts<'_>> {
        let (head, rest) = self.seq(node)?.split_first_chunk::<9>()?;
        if let &[fields] = rest {
            if let Some(fields) = self.seq(fields) {
                return Some(RecordParts {
                    head,
                    fields,
                    flat: false,
                });
            }
        }
        Some(RecordParts {
            head,
            fields: rest,
            flat: true,
        })
    }

    /// Writes the JSON of every user value of every event record, as the JSON form has it,
    /// then makes table rows of the contexts and states written inline (`inline_rows`, which
    /// must come after: it rewrites the nodes the values were rendered from). The records'
    /// places of values are those of `docs/record-format.md`; a record of another shape is
    /// left for the typed read to refuse.
    pub fn render_values(&mut self) -> Result<String, String> {
        // With room for the nodes `inline_rows` adds (one per distinct inline tuple, a few
        // per batch), so that adding them does not copy the table.
        let mut raw = Vec::with_capacity(self.nodes.len() + INLINE_ROOM);
        raw.resize(self.nodes.len(), NONE);
        let values = self.render_values_into(&mut raw);
        self.raw = raw;
        let values = values?;
        self.inline_rows()?;
        Ok(values)
    }

    /// `render_values`, with the table of where each value's JSON is apart from the tree (so
    /// that each value is written as its record is found, without a list of them first).
    fn render_values_into(&self, raw: &mut [(u32, u32)]) -> Result<String, String> {
        let Node::Dict(d) = self.nodes[self.root as usize] else {
            return err("the batch is not a dict");
        };
        let events = self.dicts[d as usize]
            .iter()
            .find(|(k, _)| self.text(*k) == Some("events"));
        let Some(&(_, events)) = events else {
            return err("the batch has no events");
        };
        let Some(records) = self.seq(events) else {
            return err("events is not a list");
        };
        let mut values = Vec::with_capacity(8 * records.len());
        // The last kind's node and its places: the pickle holds a kind's name once, so the
        // records of a kind share its node, and the name is compared once per run of them.
        let mut last: (u32, &[usize]) = (u32::MAX, &[]);
        for &record in records {
            let Some(RecordParts { head, fields, .. }) = self.record_parts(record) else {
                continue;
            };
            let places = if head[8] == last.0 {
                last.1
            } else {
                let Some(kind) = self.text(head[8]) else {
                    continue;
                };
                let places: &[usize] = match kind {
                    "StateChange" => &[1, 2],
                    "FunctionCall" | "HttpResponse" => &[2],
                    "HttpRequest" => &[3],
                    "Custom" => &[1],
                    _ => &[],
                };
                last = (head[8], places);
                places
            };
            for &node in places.iter().filter_map(|&i| fields.get(i)) {
                if raw[node as usize] != NONE {
                    continue;
                }
                let start = values.len();
                match self.nodes[node as usize] {
                    // The usual value, written here rather than through the recursive writer.
                    Node::Int(i) => {
                        self.visit()?;
                        values.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
                    }
                    _ => self.write_value(&mut values, node, 0)?,
                }
                if values.len() > self.values_limit || values.len() > u32::MAX as usize {
                    return err("values too large");
                }
                raw[node as usize] = (start as u32, values.len() as u32);
            }
        }
        String::from_utf8(values).map_err(|_| "pickle: values are not UTF-8".to_owned())
    }

    /// `json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False)`.
    fn write_value(&self, out: &mut Vec<u8>, node: u32, depth: u32) -> Result<(), String> {
        self.visit()?;
        if depth > MAX_DEPTH {
            return err("nested too deep");
        }
        match self.nodes[node as usize] {
            Node::None => out.extend_from_slice(b"null"),
            Node::Bool(true) => out.extend_from_slice(b"true"),
            Node::Bool(false) => out.extend_from_slice(b"false"),
            Node::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
            Node::Big(u) => out.extend_from_slice(itoa::Buffer::new().format(u).as_bytes()),
            Node::Float(x) => python_float(out, x)?,
            Node::Str(_) | Node::Owned(_) => ascii_string(out, self.text(node).expect("a string")),
            Node::Tuple(..) | Node::List(_) => match self.object(node) {
                Some(Err(e)) => return err(e),
                Some(Ok((keys, values))) => {
                    let entries = keys.iter().copied().zip(values.iter().copied());
                    self.write_object(out, entries, depth)?;
                }
                None => {
                    out.push(b'[');
                    for (i, &item) in self.seq(node).expect("a sequence").iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        self.write_value(out, item, depth + 1)?;
                        if out.len() > self.values_limit {
                            return err("values too large");
                        }
                    }
                    out.push(b']');
                }
            },
            Node::Dict(d) => {
                self.write_object(out, self.dicts[d as usize].iter().copied(), depth)?
            }
            Node::IntType => return err("int in a value"),
            Node::ObjectMark => return err("bytes other than at the head of an object"),
        }
        Ok(())
    }

    /// `{"key":value,…}` of a dict's entries or an object tuple's keys and values.
    fn write_object(
        &self,
        out: &mut Vec<u8>,
        entries: impl Iterator<Item = (u32, u32)>,
        depth: u32,
    ) -> Result<(), String> {
        out.push(b'{');
        for (i, (k, v)) in entries.enumerate() {
            let Some(key) = self.text(k) else {
                return err("a dict key that is not a string");
            };
            if i > 0 {
                out.push(b',');
            }
            ascii_string(out, key);
            out.push(b':');
            self.write_value(out, v, depth + 1)?;
            if out.len() > self.values_limit {
                return err("values too large");
            }
        }
        out.push(b'}');
        Ok(())
    }

    /// Makes table rows of the contexts and states written inline in the records, the Python
    /// host's pickle form (docs/record-format.md): a record's context or state is then the
    /// tuple itself (`(trace_id, thread_id, component, span_id, upstream_span_id, id_base)`,
    /// `(clock, locks)`) instead of a table index, and pickle's memo makes every repeat of a
    /// tuple the same node. Each distinct tuple gets the next index after the batch's own
    /// table rows, its node becomes that index and the tuple moves to a node of its own, read
    /// as a row by `batch` (as the JSON form's table rows are, positionally). So every read
    /// of the records sees indexes, as in the JSON form. Called by `render_values`, once the
    /// values are rendered. At most two nodes per record are added. Fails when one tuple is
    /// written both as a context and as a state.
    fn inline_rows(&mut self) -> Result<(), String> {
        let Node::Dict(d) = self.nodes[self.root as usize] else {
            return Ok(());
        };
        let (mut tables, mut events) = ([None, None], None);
        for &(k, v) in &self.dicts[d as usize] {
            match self.text(k) {
                Some("contexts") => tables[0] = Some(v),
                Some("states") => tables[1] = Some(v),
                Some("events") => events = Some(v),
                _ => {}
            }
        }
        let base = tables.map(|t| t.and_then(|t| self.seq(t)).map_or(0, <[u32]>::len));
        let Some(records) = events.and_then(|e| self.seq(e)).map(<[u32]>::to_vec) else {
            return Ok(());
        };
        // The table each replaced node went to: a tuple written as a context in one record
        // and as a state in another (the host never writes one) would read as an index into
        // the wrong table; such a pickle is refused, as the JSON form would refuse it.
        let mut replaced: Vec<(u32, usize)> = Vec::new();
        // The node each table's last record referred to, once it was an index of that table:
        // a record of the same context (state) as the one before is passed over without
        // looking through `replaced` again.
        let mut last = [u32::MAX; 2];
        for record in records {
            let Some(refs) = self
                .seq(record)
                .map(|r| [r.first().copied(), r.get(1).copied()])
            else {
                continue;
            };
            for (table, node) in refs.into_iter().enumerate() {
                let Some(node) = node else { continue };
                if node == last[table] {
                    continue;
                }
                let found = self.nodes[node as usize];
                if let Node::Int(_) = found {
                    if replaced.iter().any(|&(n, t)| n == node && t != table) {
                        return err("a tuple is both a context and a state");
                    }
                    last[table] = node;
                    continue; // an index, or a tuple already made a row of this table
                }
                if !matches!(found, Node::Tuple(..) | Node::List(_)) {
                    continue; // something the read will refuse
                }
                let index = base[table] + self.inline[table].len();
                self.inline[table].push(self.nodes.len() as u32);
                self.nodes.push(found);
                self.raw.push(NONE);
                self.nodes[node as usize] = Node::Int(index as i64);
                replaced.push((node, table));
                last[table] = node;
            }
        }
        Ok(())
    }

    /// Appends the rows `inline_rows` found to the batch's own tables. Fails (the host then
    /// sends the batch as JSON) when one is not a context's or a state's tuple.
    fn read_inline<'t>(
        &'t self,
        values: &'t str,
        contexts: &mut Vec<ContextRecord<'t>>,
        states: &mut Vec<StateRecord<'t>>,
    ) -> Result<(), String>
    where
        'a: 't,
    {
        let fail = |e: Error| format!("pickle: an inline row: {}", e.0);
        let at = |node| At {
            tree: self,
            values,
            node,
            depth: 1,
        };
        for &node in &self.inline[0] {
            contexts.push(ContextRecord::deserialize(at(node)).map_err(fail)?);
        }
        for &node in &self.inline[1] {
            states.push(StateRecord::deserialize(at(node)).map_err(fail)?);
        }
        Ok(())
    }

    /// The batch's typed records, reading the JSON of values from `values` (what
    /// `render_values` returned). Fails when any record does not fit: the host then sends the
    /// batch as JSON, whose reader says which records it drops and why.
    pub fn batch<'t>(&'t self, values: &'t str) -> Result<ReadBatch<'t>, String>
    where
        'a: 't,
    {
        match self.plain_batch(values) {
            Some(batch) => batch,
            None => self.serde_batch(values),
        }
    }

    /// `batch` through serde alone: for a batch of another shape than the plain one.
    fn serde_batch<'t>(&'t self, values: &'t str) -> Result<ReadBatch<'t>, String>
    where
        'a: 't,
    {
        let at = At {
            tree: self,
            values,
            node: self.root,
            depth: 0,
        };
        let mut batch: BatchRecord<Record<'t>> =
            serde::Deserialize::deserialize(at).map_err(|e| format!("pickle: {}", e.0))?;
        self.read_inline(values, &mut batch.contexts, &mut batch.states)?;
        Ok(BatchRecord {
            contexts: batch.contexts,
            states: batch.states,
            events: batch.events.into_iter().map(|r| Ok(r.0)).collect(),
        })
    }
}

/// The int `LONG1` writes in `n` bytes, little-endian two's complement: `low` holds the first
/// eight, `ninth` the ninth.
#[inline]
fn long1(n: usize, low: u64, ninth: u8) -> Result<Node<'static>, String> {
    match n {
        0 => Ok(Node::Int(0)),
        1..=7 => {
            let negative = low >> (8 * n - 1) & 1 == 1;
            let high = if negative { u64::MAX << (8 * n) } else { 0 };
            Ok(Node::Int((low | high) as i64))
        }
        8 => Ok(Node::Int(low as i64)),
        9 if ninth == 0 => Ok(if low > i64::MAX as u64 {
            Node::Big(low)
        } else {
            Node::Int(low as i64)
        }),
        _ => err("an integer beyond 64 bits"),
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A JSON string as Python's `json` writes it with `ensure_ascii`: `"` and `\` escaped, the
/// usual short escapes, every other character outside `' '..='~'` as `\uXXXX` (lower-case hex;
/// beyond U+FFFF as a surrogate pair).
fn ascii_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut plain = 0;
    // Whole words of characters written as they are are passed over eight bytes at a time;
    // the rest byte by byte.
    let mut start = 0;
    while let Some(word) = bytes.get(start..start + 8) {
        if !written_as_is(u64::from_le_bytes(word.try_into().expect("8 bytes"))) {
            break;
        }
        start += 8;
    }
    for (i, &b) in bytes[start..]
        .iter()
        .enumerate()
        .map(|(i, b)| (start + i, b))
    {
        if (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\' {
            continue;
        }
        if b >= 0x80 && !s.is_char_boundary(i) {
            continue; // inside a character escaped at its first byte
        }
        out.extend_from_slice(&bytes[plain..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                let c = s[i..].chars().next().expect("a character starts here");
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let u = *unit as usize;
                    out.extend_from_slice(&[
                        b'\\',
                        b'u',
                        HEX[u >> 12],
                        HEX[(u >> 8) & 0xf],
                        HEX[(u >> 4) & 0xf],
                        HEX[u & 0xf],
                    ]);
                }
            }
        }
        plain = i + s[i..].chars().next().map_or(1, char::len_utf8);
    }
    out.extend_from_slice(&bytes[plain..]);
    out.push(b'"');
}

/// Whether each of the eight bytes of `w` is one `ascii_string` writes as it is: from `' '`
/// to `'~'`, neither `"` nor `\\` (none that JSON escapes, `render::json_escapes`, and none from
/// 0x7f: those have their top bit set in `w` or after adding one to their low seven bits,
/// which never carries out of a byte).
fn written_as_is(w: u64) -> bool {
    use render::{HIGH, ONES};
    let high = (w | ((w & !HIGH) + ONES)) & HIGH;
    render::json_escapes(w) | high == 0
}

/// A float as Python's `repr` writes it (which `json` uses): the shortest digits that read back
/// as the same float, in positional notation when the decimal exponent is from -4 to 15 (with
/// `.0` when there is no fraction), else as `d.ddde+XX` (at least two exponent digits).
/// Of two shortest digit strings that both read back as `x` and lie equally far from it (`x`
/// exactly halfway between them), Python's `repr` takes the one whose last digit is even (David
/// Gay's `dtoa`, mode 0, rounds half to even); Rust's shortest formatting may take the other
/// (`1000000000000000.25` is `...000.2` in Python, `...000.3` in Rust). Only outputs of 16 or
/// more digits can be such a tie (below that, two candidates cannot both read back as `x`), so
/// shorter ones cost nothing. `digits`/`exp`: Rust's shortest, `d.ddd x 10^exp`; `x` >= 0.
fn half_even(x: f64, digits: Vec<u8>, exp: i32) -> (Vec<u8>, i32) {
    let n = digits.len();
    if n < 16 {
        return (digits, exp);
    }
    // `x` to n + 1 significant digits: a tie ends in 5 there, with nothing after it.
    let split = |text: &str| -> (Vec<u8>, i32) {
        let (m, e) = text.split_once('e').expect("{:e} has an exponent");
        (
            m.bytes().filter(|&b| b != b'.').collect(),
            e.parse().expect("a decimal exponent"),
        )
    };
    let (near, near_exp) = split(&format!("{:.*e}", n, x));
    if near.get(n) != Some(&b'5') {
        return (digits, exp);
    }
    // Every digit of `x` (a double has at most 767 significant ones).
    let (all, all_exp) = split(&format!("{:.*e}", 800, x));
    if all_exp != near_exp || all[..=n] != near[..] || all[n + 1..].iter().any(|&d| d != b'0') {
        return (digits, exp);
    }
    let lower = all[..n].to_vec();
    let mut upper = lower.clone();
    let mut i = n;
    loop {
        if i == 0 {
            return (digits, exp); // 99..9 + 1: not a tie of two n-digit strings
        }
        i -= 1;
        if upper[i] == b'9' {
            upper[i] = b'0';
        } else {
            upper[i] += 1;
            break;
        }
    }
    let reads_back = |d: &[u8]| {
        let text = format!(
            "{}.{}e{}",
            d[0] as char,
            std::str::from_utf8(&d[1..]).expect("digits"),
            all_exp
        );
        text.parse::<f64>().ok() == Some(x)
    };
    for candidate in [lower, upper] {
        if (candidate[n - 1] - b'0').is_multiple_of(2) && reads_back(&candidate) {
            let mut candidate = candidate;
            while candidate.len() > 1 && candidate.last() == Some(&b'0') {
                candidate.pop();
            }
            return (candidate, all_exp);
        }
    }
    (digits, exp)
}

fn python_float(out: &mut Vec<u8>, x: f64) -> Result<(), String> {
    if !x.is_finite() {
        return err("a float that is not finite");
    }
    // Rust's `{:e}` writes the same shortest round-trip digits: `d.ddde<exp>`.
    let text = format!("{x:e}");
    let (mantissa, exp) = text.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("{:e} writes a decimal exponent");
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: Vec<u8> = mantissa.bytes().filter(|&b| b != b'.').collect();
    let (digits, exp) = half_even(x.abs(), digits, exp);
    let n = digits.len() as i32;
    let point = exp + 1; // digits are 0.d1d2... x 10^point
    if negative {
        out.push(b'-');
    }
    if point <= -4 || point > 16 {
        out.push(digits[0]);
        if n > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.extend_from_slice(
            format!("e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs()).as_bytes(),
        );
    } else if point <= 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', (-point) as usize));
        out.extend_from_slice(&digits);
    } else if point >= n {
        out.extend_from_slice(&digits);
        out.extend(std::iter::repeat_n(b'0', (point - n) as usize));
        out.extend_from_slice(b".0");
    } else {
        out.extend_from_slice(&digits[..point as usize]);
        out.push(b'.');
        out.extend_from_slice(&digits[point as usize..]);
    }
    Ok(())
}

/// The error of the typed read over a tree.
#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

/// One node of a tree, as a serde `Deserializer`: numbers, strings, sequences and maps as
/// serde_json presents the same values, and a value's JSON to serde_json's `RawValue`.
#[derive(Clone, Copy)]
struct At<'t, 'a> {
    tree: &'t Tree<'a>,
    values: &'t str,
    node: u32,
    depth: u32,
}

impl<'t, 'a: 't> At<'t, 'a> {
    #[inline]
    fn child(&self, node: u32) -> Self {
        At {
            node,
            depth: self.depth + 1,
            ..*self
        }
    }

    /// `visitor` over a dict's entries or an object tuple's keys and values, the node itself
    /// already entered. Entries left unread are an error, as serde_json makes of an object's.
    fn visit_entries<V: Visitor<'t>>(
        self,
        entries: impl ExactSizeIterator<Item = (u32, u32)>,
        visitor: V,
    ) -> Result<V::Value, Error> {
        let len = entries.len();
        let mut map = Entries {
            at: self,
            entries,
            value: None,
        };
        let value = visitor.visit_map(&mut map)?;
        match map.entries.len() {
            0 => Ok(value),
            n => Err(de::Error::invalid_length(len - n, &"fewer entries")),
        }
    }

    #[inline]
    fn enter(&self) -> Result<Node<'a>, Error> {
        self.tree.visit().map_err(Error)?;
        if self.depth > MAX_DEPTH {
            return Err(Error("nested too deep".to_owned()));
        }
        Ok(self.tree.nodes[self.node as usize])
    }
}

impl<'t, 'a: 't> Deserializer<'t> for At<'t, 'a> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'t>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.enter()? {
            Node::None => visitor.visit_unit(),
            Node::Bool(b) => visitor.visit_bool(b),
            Node::Int(i) if i >= 0 => visitor.visit_u64(i as u64),
            Node::Int(i) => visitor.visit_i64(i),
            Node::Big(u) => visitor.visit_u64(u),
            Node::Float(x) if x.is_finite() => visitor.visit_f64(x),
            Node::Float(_) => Err(Error("a float that is not finite".to_owned())),
            Node::Str(s) => visitor.visit_borrowed_str(s),
            Node::Owned(i) => visitor.visit_borrowed_str(&self.tree.owned[i as usize]),
            Node::Tuple(..) | Node::List(_) => match self.tree.object(self.node) {
                Some(Err(e)) => Err(Error(e.to_owned())),
                Some(Ok((keys, values))) => {
                    let entries = keys.iter().copied().zip(values.iter().copied());
                    self.visit_entries(entries, visitor)
                }
                None => Span {
                    at: self,
                    items: self.tree.seq(self.node).expect("a sequence"),
                    fields: None,
                }
                .visit(visitor),
            },
            Node::Dict(d) => {
                let entries = self.tree.dicts[d as usize].iter().copied();
                self.visit_entries(entries, visitor)
            }
            Node::IntType => Err(Error("int in a record".to_owned())),
            Node::ObjectMark => Err(Error(
                "bytes other than at the head of an object".to_owned(),
            )),
        }
    }

    fn deserialize_option<V: Visitor<'t>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.tree.nodes[self.node as usize] {
            Node::None => {
                self.enter()?;
                visitor.visit_none()
            }
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'t>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        if name == RECORD_TOKEN {
            return match self.tree.record_parts(self.node) {
                Some(RecordParts {
                    head,
                    fields,
                    flat: true,
                }) => visitor.visit_newtype_struct(Span {
                    at: self,
                    items: head,
                    fields: Some(fields),
                }),
                _ => visitor.visit_newtype_struct(self),
            };
        }
        if name != RAW_VALUE_TOKEN {
            return visitor.visit_newtype_struct(self);
        }
        let (start, end) = self
            .tree
            .raw
            .get(self.node as usize)
            .copied()
            .unwrap_or(NONE);
        if (start, end) == NONE {
            return Err(Error("a value where the records have none".to_owned()));
        }
        visitor.visit_map(RawValueMap {
            json: Some(&self.values[start as usize..end as usize]),
        })
    }

    forward_to_deserialize_any! {
        <W: Visitor<'t>>
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// A sequence as serde reads it: a tuple's or a list's items, or a flat record read as the
/// nested record it stands for (`Tree::record_parts`): its first nine items, then its fields
/// as one more item, a sequence of their own. The flat record and its fields cost a visit each
/// and are as deep as the nested record and its tenth item, so both forms give the same
/// answers, errors included, after the same visits.
#[derive(Clone, Copy)]
struct Span<'t, 'a> {
    /// The node whose items these are (for a flat record's fields, the record, one level
    /// deeper): each item is read one level below it.
    at: At<'t, 'a>,
    items: &'t [u32],
    /// A flat record's fields, read after its nine `items`.
    fields: Option<&'t [u32]>,
}

impl<'t, 'a: 't> Span<'t, 'a> {
    /// `visitor` over the items, the sequence itself already entered. Items left unread are
    /// an error, as serde_json makes of a JSON array's.
    fn visit<V: Visitor<'t>>(self, visitor: V) -> Result<V::Value, Error> {
        let len = |items: usize, fields: Option<&[u32]>| items + usize::from(fields.is_some());
        let mut seq = Items {
            at: self.at,
            items: self.items.iter(),
            fields: self.fields,
        };
        let value = visitor.visit_seq(&mut seq)?;
        match len(seq.items.len(), seq.fields) {
            0 => Ok(value),
            n => Err(de::Error::invalid_length(
                len(self.items.len(), self.fields) - n,
                &"fewer elements",
            )),
        }
    }
}

/// A sequence that is no node of its own (a flat record, or its fields), read as `At` reads a
/// tuple.
impl<'t, 'a: 't> Deserializer<'t> for Span<'t, 'a> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'t>>(self, visitor: V) -> Result<V::Value, Error> {
        self.at.enter()?;
        self.visit(visitor)
    }

    fn deserialize_option<V: Visitor<'t>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'t>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        if name == RAW_VALUE_TOKEN {
            return Err(Error("a value where the records have none".to_owned()));
        }
        visitor.visit_newtype_struct(self)
    }

    forward_to_deserialize_any! {
        <W: Visitor<'t>>
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

struct Items<'t, 'a> {
    at: At<'t, 'a>,
    items: std::slice::Iter<'t, u32>,
    /// A flat record's fields, the item after `items` (`Span`).
    fields: Option<&'t [u32]>,
}

impl<'t, 'a: 't> SeqAccess<'t> for &mut Items<'t, 'a> {
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'t>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        match self.items.next() {
            Some(&node) => seed.deserialize(self.at.child(node)).map(Some),
            None => match self.fields.take() {
                Some(fields) => seed
                    .deserialize(Span {
                        at: self.at.child(self.at.node),
                        items: fields,
                        fields: None,
                    })
                    .map(Some),
                None => Ok(None),
            },
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len() + usize::from(self.fields.is_some()))
    }
}

/// An event record of the pickle form, read as `EventRecord` reads one: a flat record through
/// `At`'s answer to `RECORD_TOKEN`, as the nested record it stands for.
struct Record<'t>(EventRecord<'t>);

impl<'de> Deserialize<'de> for Record<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RecordVisitor;
        impl<'de> Visitor<'de> for RecordVisitor {
            type Value = Record<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an event record")
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(
                self,
                record: D,
            ) -> Result<Self::Value, D::Error> {
                EventRecord::deserialize(record).map(Record)
            }
        }
        deserializer.deserialize_newtype_struct(RECORD_TOKEN, RecordVisitor)
    }
}

struct Entries<'t, 'a, I> {
    at: At<'t, 'a>,
    entries: I,
    value: Option<u32>,
}

impl<'t, 'a: 't, I: ExactSizeIterator<Item = (u32, u32)>> MapAccess<'t>
    for &mut Entries<'t, 'a, I>
{
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'t>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.entries.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(self.at.child(k)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<S: DeserializeSeed<'t>>(&mut self, seed: S) -> Result<S::Value, Error> {
        let v = self
            .value
            .take()
            .ok_or_else(|| Error("a value before its key".to_owned()))?;
        seed.deserialize(self.at.child(v))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// What serde_json's `RawValue` visitor reads: one entry, its marker key and the JSON text.
struct RawValueMap<'t> {
    json: Option<&'t str>,
}

impl<'t> MapAccess<'t> for RawValueMap<'t> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'t>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if self.json.is_none() {
            return Ok(None);
        }
        seed.deserialize(BorrowedStrDeserializer::new(RAW_VALUE_TOKEN))
            .map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'t>>(&mut self, seed: S) -> Result<S::Value, Error> {
        let json = self
            .json
            .take()
            .ok_or_else(|| Error("no raw value".to_owned()))?;
        seed.deserialize(BorrowedStrDeserializer::new(json))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::{Detector, Options};
    use crate::event::ProcessConfig;
    use crate::pipeline::{process_batch, process_pickle};

    /// `pickle.dumps(batch, 5)` by Python 3.11 of the batch in `BATCH_JSON` (tuples for the
    /// records, as the host's are): non-ASCII strings, a nested value, the memo, ints at both
    /// ends of 64 bits, floats, a lower-case access type.
    const BATCH: &[u8] = b"\x80\x05\x95\xec\x01\x00\x00\x00\x00\x00\x00}\x94(\x8c\x08contexts\x94]\x94}\x94(\x8c\x08trace_id\x94\x8c$0af76519-16cd-43dd-8448-eb211c80319c\x94\x8c\tthread_id\x94\x8c\rpython-1-main\x94\x8c\tcomponent\x94\x8c\rsvc#host/main\x94\x8c\x07span_id\x94\x8c\x10b7ad6b7169203331\x94\x8c\x10upstream_span_id\x94N\x8c\x07id_base\x94\x8c 00000000000000000000000000000001\x94ua\x8c\x06states\x94]\x94}\x94(\x8c\x05clock\x94\x8c\x06up#h/1\x94K\x03\x86\x94\x85\x94\x8c\x05locks\x94\x8c\x01L\x94\x85\x94ua\x8c\x06events\x94]\x94((K\x00K\x00K\x01K\x00M\xe8\x03N\x8c\x06app.py\x94K\x03\x8c\x0bStateChange\x94(\x8c\x01x\x94N}\x94\x8c\x02\xc3\xa9\x94]\x94(K\x01G@\x04\x00\x00\x00\x00\x00\x00\x88\x8c\x04\xf0\x9f\x98\x80\x94es\x8c\x05Write\x94\x8c\rapp.py:3 in f\x94\x85\x94t\x94t\x94(K\x00K\x00K\x02K\x01M\xd0\x07K\x07h\x1bK\x04\x8c\x06Custom\x94\x8c\x01n\x94\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80\x86\x94t\x94(K\x00K\x00K\x03K\x02M\xb8\x0bNh\x1bK\x05h\x1c(h\x1d\x8a\t\xff\xff\xff\xff\xff\xff\xff\xff\x00G>\xe4\xf8\xb5\x88\xe3h\xf1\x8c\x04read\x94t\x94t\x94eu.";

    /// `json.dumps(batch, separators=(",", ":"))` of the same batch.
    const BATCH_JSON: &str = r#"{"contexts":[{"trace_id":"0af76519-16cd-43dd-8448-eb211c80319c","thread_id":"python-1-main","component":"svc#host/main","span_id":"b7ad6b7169203331","upstream_span_id":null,"id_base":"00000000000000000000000000000001"}],"states":[{"clock":[["up#h/1",3]],"locks":["L"]}],"events":[[0,0,1,0,1000,null,"app.py",3,"StateChange",["x",null,{"\u00e9":[1,2.5,true,"\ud83d\ude00"]},"Write",["app.py:3 in f"]]],[0,0,2,1,2000,7,"app.py",4,"Custom",["n",-9223372036854775808]],[0,0,3,2,3000,null,"app.py",5,"StateChange",["x",18446744073709551615,1e-05,"read"]]]}"#;

    /// `pickle.dumps(batch, 5)` of a batch with every kind, and records the typed read keeps
    /// with an error (an unknown access type, ordering and kind, a task id that is not a UUID),
    /// stacks of none, one and two frames, ints at both ends of 64 bits.
    const KINDS: &[u8] = b"\x80\x05\x95\xb0\x04\x00\x00\x00\x00\x00\x00}\x94(\x8c\x08contexts\x94]\x94}\x94(\x8c\x08trace_id\x94\x8c$0af76519-16cd-43dd-8448-eb211c80319c\x94\x8c\x09thread_id\x94\x8c\x01t\x94\x8c\x09component\x94\x8c\x07svc#h/1\x94\x8c\x07span_id\x94N\x8c\x10upstream_span_id\x94N\x8c\x07id_base\x94\x8c 00000000000000000000000000000010\x94ua\x8c\x06states\x94]\x94}\x94(\x8c\x05clock\x94\x8c\x06up#h/1\x94K\x03\x86\x94\x85\x94\x8c\x05locks\x94\x8c\x01L\x94\x85\x94ua\x8c\x06events\x94]\x94((K\x00K\x00K\x01K\x00K\x0aN\x8c\x04a.py\x94K\x01\x8c\x0bStateChange\x94(\x8c\x01x\x94N}\x94\x8c\x01k\x94]\x94(K\x01K\x02es\x8c\x05Write\x94\x8c\x0ba.py:1 in f\x94\x8c\x0bb.py:2 in g\x94\x86\x94t\x94t\x94(K\x00K\x00K\x02K\x01K\x0bK\x05h\x1aK\x02h\x1b(h\x1cK\x01K\x02\x8c\x04read\x94t\x94t\x94(K\x00K\x00K\x03K\x02K\x0cNh\x1aK\x03h\x1b(h\x1cK\x01K\x02\x8c\x06Modify\x94t\x94t\x94(K\x00K\x00K\x04K\x03K\x0dNh\x1aK\x04\x8c\x0cFunctionCall\x94\x8c\x01f\x94\x8c\x01m\x94}\x94\x8c\x01a\x94K\x01s\x87\x94t\x94(K\x00K\x00K\x05K\x04K\x0eNh\x1aK\x05\x8c\x0aAsyncSpawn\x94\x8c$8f14e45f-ceea-467e-a8f8-2f6b1a3b3f01\x94\x8c\x04main\x94\x86\x94t\x94(K\x00K\x00K\x06K\x05K\x0fNh\x1aK\x06h3\x8c\x0anot-a-uuid\x94h5\x86\x94t\x94(K\x00K\x00K\x07K\x06K\x10Nh\x1aK\x07\x8c\x0aAsyncAwait\x94h4h5\x86\x94t\x94(K\x00K\x00K\x08K\x07K\x11Nh\x1aK\x08\x8c\x0bLockAcquire\x94h\x16\x8c\x05Mutex\x94\x86\x94t\x94(K\x00K\x00K\x09K\x08K\x12Nh\x1aK\x09\x8c\x0bLockRelease\x94h@t\x94(K\x00K\x00K\x0aK\x09K\x13Nh\x1aK\x0a\x8c\x0bMemoryFence\x94\x8c\x06seqcst\x94\x85\x94t\x94(K\x00K\x00K\x0bK\x0aK\x14Nh\x1aK\x0bhD\x8c\x05Weird\x94\x85\x94t\x94(K\x00K\x00K\x0cK\x0bK\x15Nh\x1aK\x0c\x8c\x0bHttpRequest\x94(\x8c\x03GET\x94\x8c\x03/\xc3\xa9\x94}\x94(\x8c\x01b\x94\x8c\x012\x94h0\x8c\x011\x94uNt\x94t\x94(K\x00K\x00K\x0dK\x0cK\x16Nh\x1aK\x0d\x8c\x0cHttpResponse\x94(K\xc8}\x94\x8c\x04text\x94K\x07t\x94t\x94(K\x00K\x00K\x0eK\x0dK\x17Nh\x1aK\x0e\x8c\x0dDatabaseQuery\x94\x8c\x08SELECT 1\x94\x8c\x02pg\x94K\x03\x87\x94t\x94(K\x00K\x00K\x0fK\x0eK\x18Nh\x1aK\x0f\x8c\x0eDatabaseResult\x94K\x0c\x85\x94t\x94(K\x00K\x00K\x10K\x0fK\x19Nh\x1aK\x10\x8c\x05Error\x94\x8c\x01E\x94\x8c\x07bad \xe2\x98\x83\x94h0hO\x86\x94\x87\x94t\x94(K\x00K\x00K\x11K\x10K\x1aNh\x1aK\x11\x8c\x06Custom\x94\x8c\x01n\x94]\x94(G?\xf8\x00\x00\x00\x00\x00\x00\x88e\x86\x94t\x94(K\x00K\x00K\x12K\x11K\x1bNh\x1aK\x12\x8c\x0eFunctionReturn\x94h-\x85\x94t\x94(K\x00K\x00K\x13K\x12K\x1cNh\x1aK\x13h\x1b(h\x1cK\x01K\x02h )t\x94t\x94(K\x00K\x00K\x14K\x13\x8a\x09\xff\xff\xff\xff\xff\xff\xff\xff\x00\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\x00h\x1aK\x14hghhN\x86\x94t\x94eu.";

    /// `KINDS` with its records flat, as the Python host writes them: `pickle.dumps` of the
    /// batch each of whose records is `record[:9] + record[9]`.
    const KINDS_FLAT: &[u8] = b"\x80\x05\x95\x86\x04\x00\x00\x00\x00\x00\x00}\x94(\x8c\x08contexts\x94]\x94}\x94(\x8c\x08trace_id\x94\x8c$0af76519-16cd-43dd-8448-eb211c80319c\x94\x8c\x09thread_id\x94\x8c\x01t\x94\x8c\x09component\x94\x8c\x07svc#h/1\x94\x8c\x07span_id\x94N\x8c\x10upstream_span_id\x94N\x8c\x07id_base\x94\x8c 00000000000000000000000000000010\x94ua\x8c\x06states\x94]\x94}\x94(\x8c\x05clock\x94\x8c\x06up#h/1\x94K\x03\x86\x94\x85\x94\x8c\x05locks\x94\x8c\x01L\x94\x85\x94ua\x8c\x06events\x94]\x94((K\x00K\x00K\x01K\x00K\x0aN\x8c\x04a.py\x94K\x01\x8c\x0bStateChange\x94\x8c\x01x\x94N}\x94\x8c\x01k\x94]\x94(K\x01K\x02es\x8c\x05Write\x94\x8c\x0ba.py:1 in f\x94\x8c\x0bb.py:2 in g\x94\x86\x94t\x94(K\x00K\x00K\x02K\x01K\x0bK\x05h\x1aK\x02h\x1bh\x1cK\x01K\x02\x8c\x04read\x94t\x94(K\x00K\x00K\x03K\x02K\x0cNh\x1aK\x03h\x1bh\x1cK\x01K\x02\x8c\x06Modify\x94t\x94(K\x00K\x00K\x04K\x03K\x0dNh\x1aK\x04\x8c\x0cFunctionCall\x94\x8c\x01f\x94\x8c\x01m\x94}\x94\x8c\x01a\x94K\x01st\x94(K\x00K\x00K\x05K\x04K\x0eNh\x1aK\x05\x8c\x0aAsyncSpawn\x94\x8c$8f14e45f-ceea-467e-a8f8-2f6b1a3b3f01\x94\x8c\x04main\x94t\x94(K\x00K\x00K\x06K\x05K\x0fNh\x1aK\x06h/\x8c\x0anot-a-uuid\x94h1t\x94(K\x00K\x00K\x07K\x06K\x10Nh\x1aK\x07\x8c\x0aAsyncAwait\x94h0h1t\x94(K\x00K\x00K\x08K\x07K\x11Nh\x1aK\x08\x8c\x0bLockAcquire\x94h\x16\x8c\x05Mutex\x94t\x94(K\x00K\x00K\x09K\x08K\x12Nh\x1aK\x09\x8c\x0bLockRelease\x94h\x16h8t\x94(K\x00K\x00K\x0aK\x09K\x13Nh\x1aK\x0a\x8c\x0bMemoryFence\x94\x8c\x06seqcst\x94t\x94(K\x00K\x00K\x0bK\x0aK\x14Nh\x1aK\x0bh<\x8c\x05Weird\x94t\x94(K\x00K\x00K\x0cK\x0bK\x15Nh\x1aK\x0c\x8c\x0bHttpRequest\x94\x8c\x03GET\x94\x8c\x03/\xc3\xa9\x94}\x94(\x8c\x01b\x94\x8c\x012\x94h-\x8c\x011\x94uNt\x94(K\x00K\x00K\x0dK\x0cK\x16Nh\x1aK\x0d\x8c\x0cHttpResponse\x94K\xc8}\x94\x8c\x04text\x94K\x07t\x94(K\x00K\x00K\x0eK\x0dK\x17Nh\x1aK\x0e\x8c\x0dDatabaseQuery\x94\x8c\x08SELECT 1\x94\x8c\x02pg\x94K\x03t\x94(K\x00K\x00K\x0fK\x0eK\x18Nh\x1aK\x0f\x8c\x0eDatabaseResult\x94K\x0ct\x94(K\x00K\x00K\x10K\x0fK\x19Nh\x1aK\x10\x8c\x05Error\x94\x8c\x01E\x94\x8c\x07bad \xe2\x98\x83\x94h-hE\x86\x94t\x94(K\x00K\x00K\x11K\x10K\x1aNh\x1aK\x11\x8c\x06Custom\x94\x8c\x01n\x94]\x94(G?\xf8\x00\x00\x00\x00\x00\x00\x88et\x94(K\x00K\x00K\x12K\x11K\x1bNh\x1aK\x12\x8c\x0eFunctionReturn\x94h*t\x94(K\x00K\x00K\x13K\x12K\x1cNh\x1aK\x13h\x1bh\x1cK\x01K\x02h )t\x94(K\x00K\x00K\x14K\x13\x8a\x09\xff\xff\xff\xff\xff\xff\xff\xff\x00\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\x00h\x1aK\x14hXhYNt\x94eu.";

    /// `json.dumps(batch, separators=(",", ":"))` of the same batch.
    const KINDS_JSON: &str = r#"{"contexts":[{"trace_id":"0af76519-16cd-43dd-8448-eb211c80319c","thread_id":"t","component":"svc#h/1","span_id":null,"upstream_span_id":null,"id_base":"00000000000000000000000000000010"}],"states":[{"clock":[["up#h/1",3]],"locks":["L"]}],"events":[[0,0,1,0,10,null,"a.py",1,"StateChange",["x",null,{"k":[1,2]},"Write",["a.py:1 in f","b.py:2 in g"]]],[0,0,2,1,11,5,"a.py",2,"StateChange",["x",1,2,"read"]],[0,0,3,2,12,null,"a.py",3,"StateChange",["x",1,2,"Modify"]],[0,0,4,3,13,null,"a.py",4,"FunctionCall",["f","m",{"a":1}]],[0,0,5,4,14,null,"a.py",5,"AsyncSpawn",["8f14e45f-ceea-467e-a8f8-2f6b1a3b3f01","main"]],[0,0,6,5,15,null,"a.py",6,"AsyncSpawn",["not-a-uuid","main"]],[0,0,7,6,16,null,"a.py",7,"AsyncAwait",["8f14e45f-ceea-467e-a8f8-2f6b1a3b3f01","main"]],[0,0,8,7,17,null,"a.py",8,"LockAcquire",["L","Mutex"]],[0,0,9,8,18,null,"a.py",9,"LockRelease",["L","Mutex"]],[0,0,10,9,19,null,"a.py",10,"MemoryFence",["seqcst"]],[0,0,11,10,20,null,"a.py",11,"MemoryFence",["Weird"]],[0,0,12,11,21,null,"a.py",12,"HttpRequest",["GET","/\u00e9",{"b":"2","a":"1"},null]],[0,0,13,12,22,null,"a.py",13,"HttpResponse",[200,{},"text",7]],[0,0,14,13,23,null,"a.py",14,"DatabaseQuery",["SELECT 1","pg",3]],[0,0,15,14,24,null,"a.py",15,"DatabaseResult",[12]],[0,0,16,15,25,null,"a.py",16,"Error",["E","bad \u2603",["a","b"]]],[0,0,17,16,26,null,"a.py",17,"Custom",["n",[1.5,true]]],[0,0,18,17,27,null,"a.py",18,"FunctionReturn",["f"]],[0,0,19,18,28,null,"a.py",19,"StateChange",["x",1,2,"Write",[]]],[0,0,20,19,18446744073709551615,9223372036854775808,"a.py",20,"Custom",["n",null]]]}"#;

    /// As the host passes a pickle: one character per byte.
    fn host_string(bytes: &[u8]) -> String {
        bytes.iter().map(|&b| b as char).collect()
    }

    fn config() -> ProcessConfig {
        ProcessConfig {
            service_name: "svc".into(),
            ..ProcessConfig::default()
        }
    }

    #[test]
    fn a_pythons_pickle_gives_what_its_json_gives() {
        for per_body in [0, 1, 50] {
            let pickled = process_pickle(&config(), &host_string(BATCH), per_body, None).unwrap();
            let json = process_batch(&config(), BATCH_JSON, per_body, None).unwrap();
            assert_eq!(pickled.summary.events, 3);
            assert_eq!(pickled.into_wire(), json.into_wire());
        }
    }

    /// `BATCH_JSON` as the Python host now pickles it: each record's context and state inline,
    /// the tuple written once and memo references after (`_records.encode_pickle`).
    const BATCH_INLINE: &[u8] = b"\x80\x05\x95\x89\x01\x00\x00\x00\x00\x00\x00}\x94(\x8c\x08contexts\x94]\x94\x8c\x06states\x94]\x94\x8c\x06events\x94]\x94(((\x8c$0af76519-16cd-43dd-8448-eb211c80319c\x94\x8c\x0dpython-1-main\x94\x8c\x0dsvc#host/main\x94\x8c\x10b7ad6b7169203331\x94N\x8c 00000000000000000000000000000001\x94t\x94\x8c\x06up#h/1\x94K\x03\x86\x94\x85\x94\x8c\x01L\x94\x85\x94\x86\x94K\x01K\x00M\xe8\x03N\x8c\x06app.py\x94K\x03\x8c\x0bStateChange\x94(\x8c\x01x\x94N}\x94\x8c\x02\xc3\xa9\x94]\x94(K\x01G@\x04\x00\x00\x00\x00\x00\x00\x88\x8c\x04\xf0\x9f\x98\x80\x94es\x8c\x05Write\x94\x8c\x0dapp.py:3 in f\x94\x85\x94t\x94t\x94(h\x0ch\x12K\x02K\x01M\xd0\x07K\x07h\x13K\x04\x8c\x06Custom\x94\x8c\x01n\x94\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80\x86\x94t\x94(h\x0ch\x12K\x03K\x02M\xb8\x0bNh\x13K\x05h\x14(h\x15\x8a\x09\xff\xff\xff\xff\xff\xff\xff\xff\x00G>\xe4\xf8\xb5\x88\xe3h\xf1\x8c\x04read\x94t\x94t\x94eu.";

    /// `BATCH_INLINE` with its records flat, as `KINDS_FLAT` is `KINDS`.
    const BATCH_INLINE_FLAT: &[u8] = b"\x80\x05\x95\x81\x01\x00\x00\x00\x00\x00\x00}\x94(\x8c\x08contexts\x94]\x94\x8c\x06states\x94]\x94\x8c\x06events\x94]\x94(((\x8c$0af76519-16cd-43dd-8448-eb211c80319c\x94\x8c\x0dpython-1-main\x94\x8c\x0dsvc#host/main\x94\x8c\x10b7ad6b7169203331\x94N\x8c 00000000000000000000000000000001\x94t\x94\x8c\x06up#h/1\x94K\x03\x86\x94\x85\x94\x8c\x01L\x94\x85\x94\x86\x94K\x01K\x00M\xe8\x03N\x8c\x06app.py\x94K\x03\x8c\x0bStateChange\x94\x8c\x01x\x94N}\x94\x8c\x02\xc3\xa9\x94]\x94(K\x01G@\x04\x00\x00\x00\x00\x00\x00\x88\x8c\x04\xf0\x9f\x98\x80\x94es\x8c\x05Write\x94\x8c\x0dapp.py:3 in f\x94\x85\x94t\x94(h\x0ch\x12K\x02K\x01M\xd0\x07K\x07h\x13K\x04\x8c\x06Custom\x94\x8c\x01n\x94\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80t\x94(h\x0ch\x12K\x03K\x02M\xb8\x0bNh\x13K\x05h\x14h\x15\x8a\x09\xff\xff\xff\xff\xff\xff\xff\xff\x00G>\xe4\xf8\xb5\x88\xe3h\xf1\x8c\x04read\x94t\x94eu.";

    #[test]
    fn inline_contexts_and_states_give_what_the_tables_give() {
        for bytes in [BATCH_INLINE, BATCH_INLINE_FLAT] {
            for per_body in [0, 1, 50] {
                let inline =
                    process_pickle(&config(), &host_string(bytes), per_body, None).unwrap();
                let json = process_batch(&config(), BATCH_JSON, per_body, None).unwrap();
                assert_eq!(inline.summary.events, 3);
                assert_eq!(inline.into_wire(), json.into_wire());
            }
            // Three records, one context and one state: each tuple became one row.
            let text = host_string(bytes);
            let mut tree = Tree::read(&text).unwrap();
            tree.render_values().unwrap();
            assert_eq!(tree.inline.each_ref().map(Vec::len), [1, 1]);
        }
    }

    #[test]
    fn inline_rows_come_after_the_tables_rows() {
        // One context and one state in the tables (index 0); the records also carry a
        // context and a state inline, which become index 1 of each table.
        const MIXED: &[u8] = b"\x80\x05\x95\xfc\x01\x00\x00\x00\x00\x00\x00}\x94(\x8c\x08contexts\x94]\x94}\x94(\x8c\x08trace_id\x94\x8c$11111111-16cd-43dd-8448-eb211c80319c\x94\x8c\x09thread_id\x94\x8c\x0apython-2-x\x94\x8c\x09component\x94\x8c\x0asvc#host/x\x94\x8c\x07span_id\x94\x8c\x10b7ad6b7169203331\x94\x8c\x10upstream_span_id\x94N\x8c\x07id_base\x94\x8c 00000000000000000000000000000002\x94ua\x8c\x06states\x94]\x94}\x94(\x8c\x05clock\x94)\x8c\x05locks\x94)ua\x8c\x06events\x94]\x94(((\x8c$0af76519-16cd-43dd-8448-eb211c80319c\x94\x8c\x0dpython-1-main\x94\x8c\x0dsvc#host/main\x94h\x0bN\x8c 00000000000000000000000000000001\x94t\x94K\x00K\x01K\x00M\xe8\x03N\x8c\x06app.py\x94K\x03\x8c\x0bStateChange\x94(\x8c\x01x\x94NK\x05\x8c\x05Write\x94\x8c\x0dapp.py:3 in f\x94\x85\x94t\x94t\x94(K\x00\x8c\x06up#h/1\x94K\x03\x86\x94\x85\x94\x8c\x01L\x94\x85\x94\x86\x94K\x01K\x00M\xd0\x07K\x07h\x1bK\x04\x8c\x06Custom\x94\x8c\x01n\x94K\x03\x86\x94t\x94eu.";
        const MIXED_JSON: &str = r#"{"contexts":[{"trace_id":"11111111-16cd-43dd-8448-eb211c80319c","thread_id":"python-2-x","component":"svc#host/x","span_id":"b7ad6b7169203331","upstream_span_id":null,"id_base":"00000000000000000000000000000002"},{"trace_id":"0af76519-16cd-43dd-8448-eb211c80319c","thread_id":"python-1-main","component":"svc#host/main","span_id":"b7ad6b7169203331","upstream_span_id":null,"id_base":"00000000000000000000000000000001"}],"states":[{"clock":[],"locks":[]},{"clock":[["up#h/1",3]],"locks":["L"]}],"events":[[1,0,1,0,1000,null,"app.py",3,"StateChange",["x",null,5,"Write",["app.py:3 in f"]]],[0,1,1,0,2000,7,"app.py",4,"Custom",["n",3]]]}"#;
        for per_body in [0, 50] {
            let mixed = process_pickle(&config(), &host_string(MIXED), per_body, None).unwrap();
            let json = process_batch(&config(), MIXED_JSON, per_body, None).unwrap();
            assert_eq!(mixed.summary.events, 2);
            assert_eq!(mixed.into_wire(), json.into_wire());
        }
    }

    #[test]
    fn a_tuple_that_is_both_a_context_and_a_state_is_refused() {
        // The second record's state is the first record's context tuple (one memo entry):
        // read as an index, it would name a state the batch does not mean.
        const BOTH: &[u8] = b"\x80\x05\x95\xf1\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x08contexts\x94]\x94\x8c\x06states\x94]\x94\x8c\x06events\x94]\x94(((\x8c$0af76519-16cd-43dd-8448-eb211c80319c\x94\x8c\x0dpython-1-main\x94\x8c\x0dsvc#host/main\x94\x8c\x10b7ad6b7169203331\x94N\x8c 00000000000000000000000000000001\x94t\x94))\x86\x94K\x01K\x00M\xe8\x03N\x8c\x06app.py\x94K\x03\x8c\x06Custom\x94\x8c\x01n\x94K\x01\x86\x94t\x94(h\x0ch\x0cK\x02K\x01M\xd0\x07Nh\x0eK\x04h\x0fh\x10K\x02\x86\x94t\x94eu.";
        let found = process_pickle(&config(), &host_string(BOTH), 50, None);
        assert!(
            found
                .as_ref()
                .is_err_and(|e| e.contains("both a context and a state")),
            "{:?}",
            found.map(|e| e.summary.events)
        );
    }

    #[test]
    fn an_inline_row_of_the_wrong_shape_is_refused() {
        // A context tuple of five items instead of six (no id_base): the pickle is refused
        // (the host sends the JSON form), not read with a made-up row.
        let mut bytes = BATCH_INLINE.to_vec();
        let id_base = b"\x8c 00000000000000000000000000000001\x94";
        let at = bytes
            .windows(id_base.len())
            .position(|w| w == id_base)
            .unwrap();
        bytes.drain(at..at + id_base.len());
        let found = process_pickle(&config(), &host_string(&bytes), 50, None);
        assert!(found.is_err(), "{:?}", found.map(|e| e.summary.events));
    }

    /// The records `batch` reads from the nodes of `text` (a pickle as the host passes it, its
    /// inline rows made as `process_pickle` makes them), and the visits left after, as the
    /// serde read gives them, with `budget` visits (None: the tree's own).
    fn reads(text: &str, budget: Option<u64>) -> [(String, u64); 2] {
        [true, false].map(|plain| {
            let mut tree = Tree::read(text).unwrap();
            let values = tree.render_values().unwrap();
            if let Some(budget) = budget {
                tree.visits_left.set(budget);
            }
            let batch = if plain {
                tree.plain_batch(&values).expect("the plain shape")
            } else {
                tree.serde_batch(&values)
            };
            (format!("{batch:?}"), tree.visits_left.get())
        })
    }

    /// Out of visits at every point of the read of `text`: the plain read and serde's give the
    /// same error, then the same records. Answers the visits the read takes.
    fn same_reads_at_every_budget(text: &str) -> u64 {
        let [plain, serde] = reads(text, None);
        assert_eq!(plain, serde);
        assert!(plain.0.starts_with("Ok("), "{}", plain.0);
        let mut budget = 0;
        loop {
            let [plain, serde] = reads(text, Some(budget));
            assert_eq!(plain, serde, "budget {budget}");
            if plain.0.starts_with("Ok(") {
                return budget;
            }
            assert!(plain.0.contains("too many references"), "{}", plain.0);
            budget += 1;
        }
    }

    /// How many of the batch's records the plain read takes from the nodes (the others are
    /// left to serde).
    fn read_plainly(text: &str) -> usize {
        let mut tree = Tree::read(text).unwrap();
        let values = tree.render_values().unwrap();
        let Node::Dict(d) = tree.nodes[tree.root as usize] else {
            panic!("a dict")
        };
        let records = tree.seq(tree.dicts[d as usize][2].1).unwrap();
        let mut read = Vec::new();
        let plain = records.iter().map(|&record| {
            let plain = events::Plain {
                tree: &tree,
                values: &values,
                visits: 0,
            };
            plain.record(record, &mut read)
        });
        plain.filter(|&p| p).count()
    }

    #[test]
    fn the_plain_read_gives_what_serde_reads_with_the_same_visits() {
        for bytes in [BATCH, KINDS, KINDS_FLAT, BATCH_INLINE, BATCH_INLINE_FLAT] {
            let visits = same_reads_at_every_budget(&host_string(bytes));
            assert!(visits > 20, "{visits}");
        }
        // Every valid record is read from the nodes, in either form; the others are left to
        // serde.
        assert_eq!(read_plainly(&host_string(KINDS)), 16);
        assert_eq!(read_plainly(&host_string(KINDS_FLAT)), 16);
        for per_body in [0, 1, 50] {
            for kinds in [KINDS, KINDS_FLAT] {
                let pickled =
                    process_pickle(&config(), &host_string(kinds), per_body, None).unwrap();
                let json = process_batch(&config(), KINDS_JSON, per_body, None).unwrap();
                assert_eq!((pickled.summary.events, pickled.summary.dropped), (16, 4));
                assert_eq!(pickled.into_wire(), json.into_wire());
            }
        }
    }

    /// A Python value, as a test writes a batch to pickle (`pickled`).
    #[derive(Clone, Debug, PartialEq)]
    enum Py {
        None,
        Bool(bool),
        Int(i64),
        Float(f64),
        Str(String),
        Tuple(Vec<Py>),
        List(Vec<Py>),
        Dict(Vec<(&'static str, Py)>),
        /// The empty bytes, the head of an object tuple (`Node::ObjectMark`).
        Mark,
    }

    fn s(text: &str) -> Py {
        Py::Str(text.to_owned())
    }

    /// `pickle.dumps(value, 5)` as the host passes it (one character per byte), written with
    /// the opcodes Python's pickler uses, each equal string or non-empty tuple being one object
    /// (written once, a memo reference after), as the host's shared strings and rows are.
    fn pickled(value: &Py) -> String {
        fn write(v: &Py, out: &mut Vec<u8>, memo: &mut Vec<Py>) {
            let shared =
                matches!(v, Py::Str(_) | Py::Mark) || matches!(v, Py::Tuple(t) if !t.is_empty());
            if let Some(i) = memo.iter().position(|m| shared && m == v) {
                match u8::try_from(i) {
                    Ok(i) => out.extend([b'h', i]),
                    Err(_) => {
                        out.push(b'j');
                        out.extend((i as u32).to_le_bytes());
                    }
                }
                return;
            }
            let mut memoize = |out: &mut Vec<u8>| {
                out.push(0x94);
                memo.push(v.clone());
            };
            match v {
                Py::None => out.push(b'N'),
                Py::Bool(b) => out.push(if *b { 0x88 } else { 0x89 }),
                &Py::Int(i @ 0..=0xff) => out.extend([b'K', i as u8]),
                &Py::Int(i @ 0x100..=0xffff) => {
                    out.push(b'M');
                    out.extend((i as u16).to_le_bytes());
                }
                &Py::Int(i) => match i32::try_from(i) {
                    Ok(i) => {
                        out.push(b'J');
                        out.extend(i.to_le_bytes());
                    }
                    Err(_) => {
                        out.extend([0x8a, 8]);
                        out.extend(i.to_le_bytes());
                    }
                },
                Py::Float(x) => {
                    out.push(b'G');
                    out.extend(x.to_be_bytes());
                }
                Py::Str(text) => {
                    match u8::try_from(text.len()) {
                        Ok(n) => out.extend([0x8c, n]),
                        Err(_) => {
                            out.push(b'X');
                            out.extend((text.len() as u32).to_le_bytes());
                        }
                    }
                    out.extend(text.as_bytes());
                    memoize(out);
                }
                Py::Mark => {
                    out.extend([b'C', 0]);
                    memoize(out);
                }
                Py::Tuple(items) if items.is_empty() => out.push(b')'),
                Py::Tuple(items) => {
                    if items.len() > 3 {
                        out.push(b'(');
                    }
                    for item in items {
                        write(item, out, memo);
                    }
                    out.push(match items.len() {
                        n @ 1..=3 => 0x84 + n as u8,
                        _ => b't',
                    });
                    out.push(0x94);
                    memo.push(v.clone());
                }
                Py::List(items) => {
                    out.push(b']');
                    memoize(out);
                    if !items.is_empty() {
                        out.push(b'(');
                        for item in items {
                            write(item, out, memo);
                        }
                        out.push(b'e');
                    }
                }
                Py::Dict(entries) => {
                    out.push(b'}');
                    memoize(out);
                    if !entries.is_empty() {
                        out.push(b'(');
                        for (key, value) in entries {
                            write(&s(key), out, memo);
                            write(value, out, memo);
                        }
                        out.push(b'u');
                    }
                }
            }
        }
        let mut out = b"\x80\x05".to_vec();
        write(value, &mut out, &mut Vec::new());
        out.push(b'.');
        host_string(&out)
    }

    /// A batch of `records`, with one context and one state in the tables (index 0; the
    /// records' inline rows come after them).
    fn batch(records: Vec<Py>) -> Py {
        let context = Py::Dict(vec![
            ("trace_id", s("11111111-16cd-43dd-8448-eb211c80319c")),
            ("thread_id", s("python-2-x")),
            ("component", s("svc#h/2")),
            ("span_id", Py::None),
            ("upstream_span_id", Py::None),
            ("id_base", s("00000000000000000000000000000002")),
        ]);
        let state = Py::Dict(vec![
            ("clock", Py::Tuple(vec![])),
            ("locks", Py::Tuple(vec![])),
        ]);
        Py::Dict(vec![
            ("contexts", Py::List(vec![context])),
            ("states", Py::List(vec![state])),
            ("events", Py::List(records)),
        ])
    }

    /// An inline context row (a tuple, as the host writes it) for thread `n`.
    fn context(n: u8) -> Py {
        Py::Tuple(vec![
            s("0af76519-16cd-43dd-8448-eb211c80319c"),
            s(&format!("python-1-{n}")),
            s(&format!("svc#h/{n}")),
            s("b7ad6b7169203331"),
            Py::None,
            s(&format!("0000000000000000000000000000001{n}")),
        ])
    }

    /// An inline state row: an inherited clock of one component, and a lock.
    fn state() -> Py {
        Py::Tuple(vec![
            Py::Tuple(vec![Py::Tuple(vec![s("up#h/1"), Py::Int(3)])]),
            Py::Tuple(vec![s("L")]),
        ])
    }

    /// The nested record `(context, state, seq, seq - 1, unix_nanos, None, "a.py", seq, kind,
    /// fields)`.
    fn nested(context: Py, state: Py, seq: i64, kind: &str, fields: Vec<Py>) -> Py {
        Py::Tuple(vec![
            context,
            state,
            Py::Int(seq),
            Py::Int(seq - 1),
            Py::Int(1_700_000_000_000_000_000 + seq),
            if seq % 3 == 0 {
                Py::Int(seq * 7)
            } else {
                Py::None
            },
            s("a.py"),
            Py::Int(seq),
            s(kind),
            Py::Tuple(fields),
        ])
    }

    /// A nested record's flat form: its fields as its own items from the tenth on.
    fn flat(record: &Py) -> Py {
        let Py::Tuple(items) = record else {
            panic!("a record")
        };
        let Some((Py::Tuple(fields), head)) = items.split_last() else {
            panic!("a nested record")
        };
        Py::Tuple(head.iter().chain(fields).cloned().collect())
    }

    /// Each kind's fields, valid and not (kept with an error, or unknown), as
    /// docs/record-format.md lists them.
    fn every_kind() -> Vec<(&'static str, Vec<Py>)> {
        let uuid = "8f14e45f-ceea-467e-a8f8-2f6b1a3b3f01";
        let value = Py::Dict(vec![(
            "k",
            Py::List(vec![Py::Int(1), Py::Float(2.5), Py::Bool(true), s("é😀")]),
        )]);
        let frames = |n: usize| {
            Py::Tuple(
                ["a.py:1 in f", "b.py:2 in g"][..n]
                    .iter()
                    .map(|f| s(f))
                    .collect(),
            )
        };
        vec![
            (
                "StateChange",
                vec![s("x"), Py::None, Py::Int(1), s("Write")],
            ),
            (
                "StateChange",
                vec![s("x"), Py::Int(1), value.clone(), s("read"), frames(0)],
            ),
            (
                "StateChange",
                vec![s("x"), Py::Int(1), Py::Int(2), s("Write"), frames(1)],
            ),
            (
                "StateChange",
                vec![
                    s("y"),
                    Py::Tuple(vec![Py::Int(1)]),
                    Py::Int(i64::MIN),
                    s("Write"),
                    frames(2),
                ],
            ),
            (
                "StateChange",
                vec![s("x"), Py::Int(1), Py::Int(2), s("Modify")],
            ),
            ("FunctionCall", vec![s("f"), s("m"), value.clone()]),
            ("AsyncSpawn", vec![s(uuid), s("main")]),
            ("AsyncSpawn", vec![s("not-a-uuid"), s("main")]),
            ("AsyncAwait", vec![s(uuid), s("main")]),
            ("LockAcquire", vec![s("L"), s("Mutex")]),
            ("LockRelease", vec![s("L"), s("Mutex")]),
            ("MemoryFence", vec![s("seqcst")]),
            ("MemoryFence", vec![s("Weird")]),
            (
                "HttpRequest",
                vec![
                    s("GET"),
                    s("/é"),
                    Py::Dict(vec![("b", s("2")), ("a", s("1"))]),
                    Py::None,
                ],
            ),
            (
                "HttpResponse",
                vec![Py::Int(200), Py::Dict(vec![]), s("text"), Py::Int(7)],
            ),
            ("DatabaseQuery", vec![s("SELECT 1"), s("pg"), Py::Int(3)]),
            ("DatabaseResult", vec![Py::Int(12)]),
            (
                "Error",
                vec![s("E"), s("bad ☃"), Py::List(vec![s("a"), s("b")])],
            ),
            (
                "Custom",
                vec![s("n"), Py::List(vec![Py::Float(1.5), Py::Bool(true)])],
            ),
            ("Custom", vec![s("n"), Py::None]),
            ("FunctionReturn", vec![s("f")]),
            ("Nothing", vec![]),
        ]
    }

    /// Every kind in one context (inline rows), then two writes of `x` from a second context
    /// with no order to the first context's (races), records that use the tables' rows, and
    /// the first record again (the same object: a memo reference to the whole record).
    fn records_of_every_kind() -> Vec<Py> {
        let mut records: Vec<Py> = every_kind()
            .into_iter()
            .zip(1..)
            .map(|((kind, fields), seq)| nested(context(1), state(), seq, kind, fields))
            .collect();
        let write = |seq, new| vec![s("x"), Py::Int(seq), Py::Int(new), s("Write")];
        records.push(nested(context(2), state(), 1, "StateChange", write(1, 5)));
        records.push(nested(
            Py::Int(0),
            Py::Int(0),
            1,
            "StateChange",
            write(2, 6),
        ));
        records.push(nested(
            Py::Int(0),
            state(),
            2,
            "Custom",
            vec![s("n"), Py::Int(3)],
        ));
        records.push(nested(
            context(2),
            Py::Int(0),
            2,
            "LockAcquire",
            vec![s("L"), s("Mutex")],
        ));
        records.push(records[0].clone());
        records
    }

    /// What the core answers for the batch: its bodies and summary for several body sizes,
    /// and with a detector the same and the races found.
    fn answers(text: &str) -> Vec<Result<String, String>> {
        let mut out: Vec<_> = [0, 1, 50]
            .map(|per_body| process_pickle(&config(), text, per_body, None).map(|e| e.into_wire()))
            .into();
        let mut detector = Detector::new(Options::default());
        let observed = process_pickle(&config(), text, 50, Some(&mut detector));
        out.push(observed.map(|e| e.into_wire() + "\n" + &detector.findings_json()));
        out
    }

    /// The batch of `records` as it is, and with the records `which` picks flat instead: the
    /// same answers, the same records and visits from both reads, and each read of the flat
    /// batch gives what the same read of the nested one gives.
    fn flat_reads_as_nested(
        records: &[Py],
        which: impl Fn(usize) -> bool,
    ) -> Vec<Result<String, String>> {
        let nested = pickled(&batch(records.to_vec()));
        let flat = pickled(&batch(
            records
                .iter()
                .enumerate()
                .map(|(i, r)| if which(i) { flat(r) } else { r.clone() })
                .collect(),
        ));
        assert_ne!(flat, nested);
        let answers_nested = answers(&nested);
        assert_eq!(answers(&flat), answers_nested);
        let budget = Some(1 << 20);
        let [plain, serde] = reads(&flat, budget);
        assert_eq!(plain, serde);
        assert_eq!(plain, reads(&nested, budget)[0]);
        answers_nested
    }

    #[test]
    fn a_flat_record_reads_as_the_nested_one() {
        let records = records_of_every_kind();
        // All flat, every other one, and each on its own among nested ones.
        let answers = flat_reads_as_nested(&records, |_| true);
        flat_reads_as_nested(&records, |i| i % 2 == 1);
        for one in 0..records.len() {
            flat_reads_as_nested(&records, |i| i == one);
        }
        // The batch is read, its bad records dropped, and the second context's writes race
        // with the first's.
        let Ok(wire) = &answers[3] else {
            panic!("{answers:?}")
        };
        let summary: serde_json::Value =
            serde_json::from_str(wire.lines().next().unwrap()).unwrap();
        assert_eq!(
            (summary["events"].as_u64(), summary["dropped"].as_u64()),
            (Some(22), Some(5))
        );
        let findings = wire.lines().last().unwrap();
        assert!(findings.contains("\"variable\":\"x\""), "{findings}");
        // With a tight budget the plain read and serde's stop at the same visit, flat or not.
        let mixed = pickled(&batch(
            records
                .iter()
                .enumerate()
                .map(|(i, r)| if i % 2 == 0 { flat(r) } else { r.clone() })
                .collect(),
        ));
        let all_nested = pickled(&batch(records.clone()));
        assert_eq!(
            same_reads_at_every_budget(&mixed),
            same_reads_at_every_budget(&all_nested)
        );
        // Every valid record of either form is read from the nodes.
        let flat_all = records.iter().map(flat).collect();
        assert_eq!(read_plainly(&pickled(&batch(flat_all))), 22);
        assert_eq!(read_plainly(&pickled(&batch(records))), 22);
    }

    /// `value` as the Python host writes a user value: each dict an object tuple (the empty
    /// bytes, its keys, then its values) and each list a tuple, all the way down.
    fn as_objects(value: &Py) -> Py {
        match value {
            Py::Dict(entries) => Py::Tuple(
                std::iter::once(Py::Mark)
                    .chain(entries.iter().map(|(k, _)| s(k)))
                    .chain(entries.iter().map(|(_, v)| as_objects(v)))
                    .collect(),
            ),
            Py::List(items) | Py::Tuple(items) => Py::Tuple(items.iter().map(as_objects).collect()),
            other => other.clone(),
        }
    }

    /// A nested record with its fields' dicts as object tuples (`as_objects`).
    fn with_objects(record: &Py) -> Py {
        let Py::Tuple(items) = record else {
            panic!("a record")
        };
        let Some((Py::Tuple(fields), head)) = items.split_last() else {
            panic!("a nested record")
        };
        let fields = Py::Tuple(fields.iter().map(as_objects).collect());
        Py::Tuple(head.iter().cloned().chain([fields]).collect())
    }

    #[test]
    fn objects_written_as_tuples_read_as_the_dicts_they_stand_for() {
        let mut records = records_of_every_kind();
        // An empty object, objects in a list in an object, an object as a header map.
        let nested_value = Py::Dict(vec![
            ("e", Py::Dict(vec![])),
            (
                "l",
                Py::List(vec![Py::Dict(vec![("a", Py::Int(1))]), Py::Dict(vec![])]),
            ),
        ]);
        records.push(nested(
            context(1),
            state(),
            30,
            "FunctionCall",
            vec![s("f"), s("m"), Py::Dict(vec![])],
        ));
        records.push(nested(
            context(1),
            state(),
            31,
            "Custom",
            vec![s("n"), nested_value.clone()],
        ));
        records.push(nested(
            context(1),
            state(),
            32,
            "StateChange",
            vec![s("x"), nested_value, Py::Int(1), s("Write")],
        ));
        let dicts = pickled(&batch(records.clone()));
        for objects in [
            records.iter().map(with_objects).collect::<Vec<_>>(),
            records.iter().map(|r| flat(&with_objects(r))).collect(),
        ] {
            let objects = pickled(&batch(objects));
            assert_ne!(objects, dicts);
            assert_eq!(answers(&objects), answers(&dicts));
            let budget = Some(1 << 20);
            let [plain, serde] = reads(&objects, budget);
            assert_eq!(plain, serde);
            assert_eq!(read_plainly(&objects), read_plainly(&dicts));
        }
    }

    #[test]
    fn a_malformed_object_tuple_is_refused() {
        let custom = |data: Py| {
            pickled(&batch(vec![nested(
                context(1),
                state(),
                1,
                "Custom",
                vec![s("n"), data],
            )]))
        };
        let headers = |map: Py| {
            let fields = vec![s("GET"), s("/"), map, Py::None];
            pickled(&batch(vec![nested(
                context(1),
                state(),
                1,
                "HttpRequest",
                fields,
            )]))
        };
        let cases = [
            // A key and no value; a key that is not a string; the mark not at the head, or alone.
            custom(Py::Tuple(vec![Py::Mark, s("a")])),
            custom(Py::Tuple(vec![Py::Mark, Py::Int(1), Py::Int(2)])),
            custom(Py::Tuple(vec![s("a"), Py::Mark])),
            custom(Py::Mark),
            headers(Py::Tuple(vec![Py::Mark, s("a")])),
            headers(Py::Tuple(vec![Py::Mark, s("a"), Py::Int(1)])),
        ];
        for text in cases {
            let answer = process_pickle(&config(), &text, 50, None).map(|e| e.into_wire());
            assert!(answer.is_err(), "{answer:?}");
        }
        // Bytes other than the empty ones are no object's mark.
        let mut text = custom(Py::Tuple(vec![Py::Mark, s("a"), Py::Int(1)]));
        assert!(process_pickle(&config(), &text, 50, None).is_ok());
        text = text.replacen("C\u{0}", "C\u{1}x", 1);
        assert!(process_pickle(&config(), &text, 50, None).is_err());
    }

    #[test]
    fn a_flat_record_of_too_few_or_too_many_fields_is_refused_as_the_nested_one() {
        for (kind, fields) in every_kind() {
            let unknown = matches!(kind, "FunctionReturn" | "Nothing");
            // One field short of the fields a kind needs (a StateChange's stack is optional),
            // and one past the most it may have.
            let needs = if kind == "StateChange" {
                4
            } else {
                fields.len()
            };
            let fewer = fields[..needs.saturating_sub(1)].to_vec();
            let mut more = fields.clone();
            if kind == "StateChange" && more.len() == 4 {
                more.push(Py::Tuple(vec![])); // an empty stack
            }
            more.push(Py::Int(0));
            for (fields, expected) in [(fewer, "expected ["), (more, "expected fewer elements")] {
                let records = [
                    nested(context(1), state(), 1, "Custom", vec![s("n"), Py::Int(1)]),
                    nested(context(1), state(), 2, kind, fields.clone()),
                ];
                let answers = flat_reads_as_nested(&records, |_| true);
                flat_reads_as_nested(&records, |i| i == 1);
                if unknown {
                    // An unknown kind's fields are not read: the record is dropped.
                    let wire = answers[2].as_ref().unwrap();
                    assert!(wire.contains("unknown kind"), "{wire}");
                } else {
                    // The pickle is refused (the host sends the JSON form, whose reader drops
                    // the record saying why), with the error of the nested record.
                    let error = answers[0].as_ref().unwrap_err();
                    assert!(
                        error.starts_with("pickle: invalid length") && error.contains(expected),
                        "{kind} {fields:?}: {error}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_record_of_nine_items_is_flat_and_one_of_fewer_is_refused() {
        // Nine items: a flat record without fields, as the nested one with `()`.
        for (kind, expected) in [
            ("MemoryFence", Err("invalid length 0, expected [ordering]")),
            ("Nothing", Ok("unknown kind")),
        ] {
            let records = [nested(context(1), state(), 1, kind, vec![])];
            let answers = flat_reads_as_nested(&records, |_| true);
            match expected {
                Err(e) => assert!(answers[0].as_ref().unwrap_err().contains(e), "{answers:?}"),
                Ok(e) => assert!(answers[0].as_ref().unwrap().contains(e), "{answers:?}"),
            }
        }
        // Eight items: no record of either form, refused as the record it is.
        let Py::Tuple(mut items) = nested(context(1), state(), 1, "Custom", vec![]) else {
            panic!()
        };
        items.truncate(8);
        let text = pickled(&batch(vec![Py::Tuple(items)]));
        let error = process_pickle(&config(), &text, 50, None)
            .map(|_| ())
            .unwrap_err();
        assert!(
            error.starts_with("pickle: invalid length 8, expected an event record [context"),
            "{error}"
        );
        let [plain, serde] = reads(&text, None);
        assert_eq!(plain, serde);
    }

    #[test]
    fn ten_items_the_last_a_sequence_are_a_nested_record() {
        // A one-field kind whose field is a sequence is no record the host writes flat: such
        // a record is read as the nested one it is, as before.
        let fence = nested(context(1), state(), 1, "MemoryFence", vec![s("seqcst")]);
        let text = pickled(&batch(vec![fence]));
        let fence_json = r#"{"contexts":[{"trace_id":"11111111-16cd-43dd-8448-eb211c80319c","thread_id":"python-2-x","component":"svc#h/2","span_id":null,"upstream_span_id":null,"id_base":"00000000000000000000000000000002"},{"trace_id":"0af76519-16cd-43dd-8448-eb211c80319c","thread_id":"python-1-1","component":"svc#h/1","span_id":"b7ad6b7169203331","upstream_span_id":null,"id_base":"00000000000000000000000000000011"}],"states":[{"clock":[],"locks":[]},{"clock":[["up#h/1",3]],"locks":["L"]}],"events":[[1,1,1,0,1700000000000000001,null,"a.py",1,"MemoryFence",["seqcst"]]]}"#;
        let pickled = process_pickle(&config(), &text, 50, None).unwrap();
        let json = process_batch(&config(), fence_json, 50, None).unwrap();
        assert_eq!(pickled.summary.events, 1);
        assert_eq!(pickled.into_wire(), json.into_wire());
    }

    /// `LONG1`'s int as the bytes say: the reference `long1` is held to.
    fn long1_reference(bytes: &[u8]) -> Result<Node<'static>, String> {
        match bytes.len() {
            0 => Ok(Node::Int(0)),
            1..=8 => {
                let negative = bytes[bytes.len() - 1] & 0x80 != 0;
                let mut buf = [if negative { 0xff } else { 0 }; 8];
                buf[..bytes.len()].copy_from_slice(bytes);
                Ok(Node::Int(i64::from_le_bytes(buf)))
            }
            9 if bytes[8] == 0 => {
                let u = u64::from_le_bytes(bytes[..8].try_into().unwrap());
                Ok(if u > i64::MAX as u64 {
                    Node::Big(u)
                } else {
                    Node::Int(u as i64)
                })
            }
            _ => err("an integer beyond 64 bits"),
        }
    }

    #[test]
    fn long_ints_are_read_as_their_bytes_say() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for n in 0..=9 {
            for i in 0..400u32 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let mut bytes = x.to_le_bytes().to_vec();
                bytes.push((x >> 13) as u8 & if i % 2 == 0 { 0 } else { 0xff });
                // Edges: the sign bit of the last byte set and clear, all ones, all zeros.
                match i {
                    0 => bytes.iter_mut().for_each(|b| *b = 0),
                    1 => bytes.iter_mut().for_each(|b| *b = 0xff),
                    2 if n > 0 => bytes[n - 1] = 0x80,
                    3 if n > 0 => bytes[n - 1] = 0x7f,
                    _ => {}
                }
                let bytes = &bytes[..n];
                let low = bytes
                    .iter()
                    .take(8)
                    .enumerate()
                    .fold(0u64, |v, (k, &b)| v | u64::from(b) << (8 * k));
                let ninth = bytes.get(8).copied().unwrap_or(0);
                assert_eq!(
                    format!("{:?}", long1(n, low, ninth)),
                    format!("{:?}", long1_reference(bytes)),
                    "{bytes:?}"
                );
            }
        }
    }

    #[test]
    // The ties are written with every digit of the float they are (`1000000000000000.25` is
    // exactly that double), which is the point of them.
    #[allow(clippy::excessive_precision)]
    fn floats_are_written_as_pythons_repr() {
        let cases: [(f64, &str); 21] = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1.0 / 3.0, "0.3333333333333333"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (1.5e300, "1.5e+300"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            // Ties of two shortest candidates: Python takes the even last digit.
            (1000000000000000.25, "1000000000000000.2"),
            (1000000000000000.75, "1000000000000000.8"),
            (-1000000000000000.25, "-1000000000000000.2"),
            (1000000000000002.25, "1000000000000002.2"),
            (1000000000000003.75, "1000000000000003.8"),
            (0.30000000000000004, "0.30000000000000004"),
            (1e16 + 2.0, "1.0000000000000002e+16"),
        ];
        for (x, repr) in cases {
            let mut out = Vec::new();
            python_float(&mut out, x).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), repr);
        }
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(python_float(&mut Vec::new(), x).is_err());
        }
    }

    #[test]
    fn strings_are_written_as_pythons_json_with_ensure_ascii() {
        let mut out = Vec::new();
        ascii_string(&mut out, "aé😀\u{7f}\u{1}\"\\\n\r\t\u{8}\u{c}/");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#""a\u00e9\ud83d\ude00\u007f\u0001\"\\\n\r\t\b\f/""#
        );
    }

    /// Python's `json.dumps(s, ensure_ascii=True)`, one character at a time.
    fn python_json_string(s: &str) -> String {
        let mut out = String::from('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                ' '..='~' => out.push(c),
                _ => {
                    for unit in c.encode_utf16(&mut [0u16; 2]) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
            }
        }
        out.push('"');
        out
    }

    #[test]
    fn strings_are_written_as_python_writes_them_at_every_offset() {
        let mut specials: Vec<char> = (0u8..0x80).map(char::from).collect();
        specials.extend(['\u{80}', 'é', 'ÿ', '✓', '\u{ffff}', '😀']);
        for c in specials {
            for at in 0..18 {
                for tail in [0, 1, 7, 8, 9] {
                    let s = format!("{}{c}{}", "x".repeat(at), "~ ".repeat(tail));
                    let mut out = Vec::new();
                    ascii_string(&mut out, &s);
                    assert_eq!(
                        String::from_utf8(out).unwrap(),
                        python_json_string(&s),
                        "{s:?}"
                    );
                }
            }
        }
    }

    fn refused(bytes: &[u8]) -> String {
        process_pickle(&config(), &host_string(bytes), 50, None)
            .map(|_| ())
            .unwrap_err()
    }

    #[test]
    fn malformed_and_hostile_pickles_are_errors() {
        for n in 0..BATCH.len() {
            assert!(
                process_pickle(&config(), &host_string(&BATCH[..n]), 50, None).is_err(),
                "cut at {n}"
            );
        }
        // A Custom record whose data is `data`, in a batch.
        let custom = |data: &[u8]| {
            let mut b = b"\x80\x05}(\x8c\x08contexts]\x8c\x06states]\x8c\x06events](".to_vec();
            b.extend_from_slice(
                b"(K\x00K\x00K\x01K\x00K\x00N\x8c\x01aK\x01\x8c\x06Custom(\x8c\x01n",
            );
            b.extend_from_slice(data);
            b.extend_from_slice(b"tteu.");
            b
        };
        let deep = [vec![b']'; 5000], vec![b'a'; 4999]].concat();
        assert!(refused(&custom(&deep)).contains("nested too deep"));
        // A list that holds itself.
        assert!(refused(&custom(b"]\x94h\x00a")).contains("nested too deep"));
        // Lists 60 deep, each holding the one below twice: 2^60 leaves if written out.
        let mut shared = Vec::new();
        for _ in 0..59 {
            shared.extend_from_slice(b"]\x94(");
        }
        shared.extend_from_slice(b"]\x94K\x01a");
        for j in 0..59u8 {
            shared.extend_from_slice(&[b'h', 59 - j, b'e']);
        }
        assert!(refused(&custom(&shared)).contains("too many references"));
        assert!(refused(b"\x80\x05\x8c\x02osK\x00\x93.").contains("global"));
        assert!(
            refused(b"\x80\x05\x8a\x0a\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01.")
                .contains("beyond 64 bits")
        );
        assert!(refused(b"\x80\x05\x8c\x03\xed\xb2\x80.").contains("not UTF-8"));
        assert!(refused(b"\x80\x05\x8d\x00\x00\x00\x00\x00\x00\x00\x80x.").contains("truncated"));
        assert!(refused(b"\x80\x05ae.").contains("append to nothing"));
        assert!(refused(b"\x80\x05N.N").contains("after the end"));
        assert!(process_pickle(&config(), "\u{80}\u{5}\u{101}.", 50, None)
            .unwrap_err()
            .contains("beyond U+00FF"));
        assert!(
            process_pickle(&config(), &"N".repeat(MAX_INPUT + 1), 50, None)
                .unwrap_err()
                .contains("more than")
        );
    }
}
