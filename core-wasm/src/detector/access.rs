//! What the detector keeps of one access: enough to check later accesses against it (strand,
//! counter, position, value fingerprints) and to report it (location, stack, strand, locks,
//! values). Sites and lock sets are shared, so an access costs a few words plus its values.

use super::clock::StrandId;
use super::ids::IdMap;
use super::strands::StrandMeta;
use crate::event::{same, AccessType};
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::rc::Rc;

/// A place in the code: the access's `file:line` and the stack above it.
#[derive(Debug)]
pub struct Site {
    file: Box<str>,
    line: u32,
    /// Interned by location alone: distinct races are keyed by the places of their accesses
    /// (as ThreadSanitizer keys them by program counters), whatever stacks led there.
    pub id: u32,
    pub location: Box<str>,
    pub stack: Box<[Box<str>]>,
}

#[derive(Debug)]
pub struct Access {
    pub strand: StrandId,
    pub seq: u64,
    /// The detector's event count at this access: the order in which accesses were observed.
    pub pos: u64,
    pub meta: Rc<StrandMeta>,
    pub site: Rc<Site>,
    pub access_type: AccessType,
    pub unix_nanos: u64,
    pub locks: Rc<[Box<str>]>,
    /// The old value's JSON then the new one's, as kept for a report (`Values`): one
    /// allocation for both.
    pub values: Values,
    /// Fingerprints of the values' JSON text: the lost-update rule compares these.
    pub old_hash: u64,
    pub new_hash: u64,
}

impl Access {
    pub fn is_write(&self) -> bool {
        matches!(
            self.access_type,
            AccessType::Write | AccessType::AtomicWrite | AccessType::AtomicRmw
        )
    }

    pub fn is_atomic(&self) -> bool {
        matches!(
            self.access_type,
            AccessType::AtomicRead | AccessType::AtomicWrite | AccessType::AtomicRmw
        )
    }
}

/// FNV-1a: a fast, deterministic fingerprint (no security role: values are compared, and a
/// collision can only hide one lost update).
pub const fn fingerprint(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    h
}

/// An access's old and new values as kept for a report, each its JSON or, when it is longer
/// than the detector's `max_value_bytes`, a string saying it was cut. Short ones (counters,
/// flags: most values) are kept in the access itself, without an allocation of their own.
#[derive(Debug)]
pub struct Values {
    text: Kept,
    /// Where the new value starts in the text.
    split: usize,
}

/// The bytes of `Values::INLINE` or fewer, or a string of their own.
#[derive(Debug)]
enum Kept {
    Inline([u8; Values::INLINE], u8),
    Heap(Box<str>),
}

impl Values {
    const INLINE: usize = 22;

    pub fn new(old: &RawValue, new: &RawValue, max_chars: usize) -> Self {
        let (o, n) = (old.get().as_bytes(), new.get().as_bytes());
        if o.len() + n.len() <= Self::INLINE && o.len().max(n.len()) <= max_chars {
            let mut bytes = [0u8; Self::INLINE];
            bytes[..o.len()].copy_from_slice(o);
            bytes[o.len()..o.len() + n.len()].copy_from_slice(n);
            return Values {
                text: Kept::Inline(bytes, (o.len() + n.len()) as u8),
                split: o.len(),
            };
        }
        let mut text = String::with_capacity(o.len().min(max_chars) + n.len().min(max_chars));
        keep_value(&mut text, old, max_chars);
        let split = text.len();
        keep_value(&mut text, new, max_chars);
        Values {
            text: Kept::Heap(text.into_boxed_str()),
            split,
        }
    }

    fn text(&self) -> &str {
        match &self.text {
            Kept::Inline(bytes, len) => {
                std::str::from_utf8(&bytes[..*len as usize]).expect("copied from two strs")
            }
            Kept::Heap(text) => text,
        }
    }

    pub fn old_value(&self) -> &RawValue {
        raw(&self.text()[..self.split])
    }

    pub fn new_value(&self) -> &RawValue {
        raw(&self.text()[self.split..])
    }
}

/// Kept text as the `RawValue` a report writes (parsed again: reports are rare).
fn raw(json: &str) -> &RawValue {
    serde_json::from_str(json).expect("a kept value is JSON")
}

/// Appends a value as kept for a report: its JSON, or a string saying it was cut when it is
/// long.
fn keep_value(out: &mut String, raw: &RawValue, max_chars: usize) {
    let text = raw.get();
    if text.len() <= max_chars {
        out.push_str(text);
        return;
    }
    let mut end = max_chars;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = format!("{}…[+{} bytes]", &text[..end], text.len() - end);
    out.push_str(&serde_json::to_string(&cut).expect("a string serializes"));
}

/// Interned sites, by fingerprint of their text.
#[derive(Debug, Default)]
pub struct Sites {
    by_hash: IdMap<u64, Vec<Rc<Site>>>,
    locations: HashMap<Box<str>, u32>,
    /// The current batch's sites by the addresses of their strings (file, line, the one frame
    /// of the stack): in a batch read from a pickle, a string the host wrote once is one
    /// string of the input, so a site recorded again is found without reading its text.
    /// Addresses are only compared within one batch, whose input does not change or move.
    batch: IdMap<SiteKey, Rc<Site>>,
    /// The site of the last access of the batch, by the same key: most accesses repeat it.
    last: Option<(SiteKey, Rc<Site>)>,
}

/// A site's strings by address (file, line, the one frame: see `Sites::batch`).
type SiteKey = (usize, usize, u32, usize, usize);

impl Sites {
    /// A new batch: the addresses of the last one mean nothing now.
    pub fn begin_batch(&mut self) {
        self.batch.clear();
        self.last = None;
    }

    pub fn intern(&mut self, file: &str, line: u32, stack: &[std::borrow::Cow<str>]) -> Rc<Site> {
        if stack.len() > 1 {
            return self.intern_text(file, line, stack);
        }
        let frame = stack
            .first()
            .map_or((0, 0), |f| (f.as_ptr() as usize, f.len()));
        let key = (file.as_ptr() as usize, file.len(), line, frame.0, frame.1);
        if let Some((last, site)) = &mut self.last {
            if *last == key {
                return site.clone();
            }
            // The same place in other strings (a batch of the JSON form has every repeat of a
            // name in a string of its own): the site `intern_text` would find.
            if site.line == line
                && same(&site.file, file)
                && site.stack.len() == stack.len()
                && site.stack.iter().zip(stack).all(|(a, b)| same(a, b))
            {
                *last = key;
                return site.clone();
            }
        }
        let site = match self.batch.get(&key) {
            Some(site) => site.clone(),
            None => {
                let site = self.intern_text(file, line, stack);
                self.batch.insert(key, site.clone());
                site
            }
        };
        self.last = Some((key, site.clone()));
        site
    }

    fn intern_text(&mut self, file: &str, line: u32, stack: &[std::borrow::Cow<str>]) -> Rc<Site> {
        let mut h =
            fingerprint(file.as_bytes()) ^ u64::from(line).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for frame in stack {
            h = fingerprint(frame.as_bytes()) ^ h.rotate_left(7);
        }
        let bucket = self.by_hash.entry(h).or_default();
        // Compared piece by piece: the location string is made only for a new site.
        if let Some(site) = bucket.iter().find(|s| {
            s.line == line
                && *s.file == *file
                && s.stack.len() == stack.len()
                && s.stack.iter().zip(stack).all(|(a, b)| **a == **b)
        }) {
            return site.clone();
        }
        let location = format!("{file}:{line}");
        let next = self.locations.len() as u32;
        let id = *self
            .locations
            .entry(location.as_str().into())
            .or_insert(next);
        let site = Rc::new(Site {
            file: file.into(),
            line,
            id,
            location: location.into(),
            stack: stack.iter().map(|f| f.as_ref().into()).collect(),
        });
        bucket.push(site.clone());
        site
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn the_last_site_is_reused_only_for_the_same_place_and_stack() {
        // Every string apart, as a batch of the JSON form has them: the last-site shortcut
        // compares text, and must tell a line or a frame apart. The strings live as long as
        // the batch, as a batch's input does (sites are keyed by their addresses meanwhile).
        let files: Vec<String> = (0..6).map(|_| "w.py".to_owned()).collect();
        let frames: Vec<Vec<Cow<str>>> = [
            "app.py:1 in f",
            "app.py:1 in f",
            "app.py:1 in f",
            "app.py:2 in g",
        ]
        .iter()
        .map(|f| vec![Cow::Owned((*f).to_owned())])
        .collect();
        let mut sites = Sites::default();
        sites.begin_batch();
        let a = sites.intern(&files[0], 7, &frames[0]);
        let same = sites.intern(&files[1], 7, &frames[1]);
        assert!(Rc::ptr_eq(&a, &same));
        let other_line = sites.intern(&files[2], 8, &frames[2]);
        assert!(!Rc::ptr_eq(&a, &other_line) && other_line.line == 8);
        let other_frame = sites.intern(&files[3], 8, &frames[3]);
        assert!(!Rc::ptr_eq(&other_line, &other_frame));
        assert_eq!(&*other_frame.stack[0], "app.py:2 in g");
        let no_stack = sites.intern(&files[4], 8, &[]);
        assert!(no_stack.stack.is_empty());
        let again = sites.intern(&files[5], 7, &frames[0]);
        assert!(Rc::ptr_eq(&a, &again)); // found by its text again, past the shortcut
    }

    #[test]
    fn values_are_kept_whole_or_cut_at_a_character() {
        let long = raw(r#"{"k":"ééééé"}"#); // 18 bytes
        let short = raw("[1,null]");
        let kept = Values::new(long, short, 11);
        // 11 bytes would end inside the third `é`: the cut is at 10.
        assert_eq!(kept.old_value().get(), r#""{\"k\":\"éé…[+8 bytes]""#);
        assert_eq!(kept.new_value().get(), "[1,null]");
        let kept = Values::new(short, long, 64);
        assert_eq!(kept.old_value().get(), "[1,null]");
        assert_eq!(kept.new_value().get(), long.get());
        let kept = Values::new(raw("null"), raw("\"\""), 0);
        assert_eq!(kept.old_value().get(), r#""…[+4 bytes]""#);
        assert_eq!(kept.new_value().get(), r#""…[+2 bytes]""#);
        // Kept in the access (22 bytes or fewer in all), or apart.
        for (old, new) in [
            ("1", "2"),
            ("null", "\"é\""),
            ("12345678901", "12345678901"),
        ] {
            let kept = Values::new(raw(old), raw(new), 256);
            assert!(matches!(kept.text, Kept::Inline(..)));
            assert_eq!((kept.old_value().get(), kept.new_value().get()), (old, new));
        }
        let kept = Values::new(raw("12345678901"), raw("123456789012"), 256);
        assert!(matches!(kept.text, Kept::Heap(..)));
        assert_eq!(kept.new_value().get(), "123456789012");
        let kept = Values::new(raw("123"), raw("1"), 2);
        assert_eq!(kept.old_value().get(), r#""12…[+1 bytes]""#);
        assert_eq!(kept.new_value().get(), "1");
    }
}
