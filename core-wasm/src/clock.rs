//! Vector clocks: the happens-before order between events of different execution contexts.
//!
//! A clock maps a component (one execution context, e.g. `api#host-1/3f2a9c01`) to a counter.
//! On the wire it is `[[component, counter], …]`. Entries keep their first-seen order so that an
//! encoded clock is deterministic and golden vectors can pin it; comparisons ignore the order.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// The most entries kept of a clock from a peer; a longer one is cut to this (see
/// `VectorClock::cut_foreign`), so a hostile or runaway caller cannot make every later event of
/// the trace carry a huge vector.
pub const MAX_COMPONENTS: usize = 64;
/// The longest component name kept from a peer; an entry with a longer (or empty) name is left
/// out.
pub const MAX_COMPONENT_LEN: usize = 256;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VectorClock(Vec<(String, u64)>);

/// How two clocks relate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Causality {
    Equal,
    /// The left clock happened before the right one.
    Before,
    /// The right clock happened before the left one.
    After,
    Concurrent,
}

impl VectorClock {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn entries(&self) -> &[(String, u64)] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The counter of `component`; an absent component counts as 0.
    pub fn get(&self, component: &str) -> u64 {
        self.0
            .iter()
            .find(|(c, _)| c == component)
            .map_or(0, |(_, n)| *n)
    }

    /// Raises `component` to at least `counter` (never lowers it: clocks only move forward).
    pub fn observe(&mut self, component: &str, counter: u64) {
        match self.0.iter_mut().find(|(c, _)| c == component) {
            Some((_, n)) => *n = (*n).max(counter),
            None => self.0.push((component.to_owned(), counter)),
        }
    }

    /// Counts one more event of `component` and returns its new counter.
    pub fn increment(&mut self, component: &str) -> u64 {
        let next = self.get(component).saturating_add(1);
        self.observe(component, next);
        next
    }

    /// The element-wise maximum: what a context knows after learning everything `other` knew
    /// (a join, a lock hand-over, a request from another service).
    pub fn merge(&mut self, other: &VectorClock) {
        for (c, n) in &other.0 {
            self.observe(c, *n);
        }
    }

    /// Compares two clocks, treating absent components as 0.
    pub fn compare(&self, other: &VectorClock) -> Causality {
        let mut less = false;
        let mut greater = false;
        let components = self.0.iter().chain(other.0.iter()).map(|(c, _)| c.as_str());
        for c in components {
            match self.get(c).cmp(&other.get(c)) {
                Ordering::Less => less = true,
                Ordering::Greater => greater = true,
                Ordering::Equal => {}
            }
        }
        match (less, greater) {
            (false, false) => Causality::Equal,
            (true, false) => Causality::Before,
            (false, true) => Causality::After,
            (true, true) => Causality::Concurrent,
        }
    }

    /// Whether this clock happened strictly before `other`.
    pub fn happens_before(&self, other: &VectorClock) -> bool {
        self.compare(other) == Causality::Before
    }

    /// Brings a clock from a peer within the limits, deterministically: entries whose name is
    /// empty or longer than `MAX_COMPONENT_LEN` are left out; then, past `MAX_COMPONENTS`, the
    /// entries for which `keep_first` answers true stay first (the sender's own components:
    /// the edge the call itself makes), then the others in their order. Returns what was cut,
    /// for the host's debug log, or None.
    pub fn cut_foreign(&mut self, keep_first: impl Fn(&str) -> bool) -> Option<String> {
        let before = self.0.len();
        self.0
            .retain(|(c, _)| !c.is_empty() && c.len() <= MAX_COMPONENT_LEN);
        let bad_names = before - self.0.len();
        let mut cut = 0;
        if self.0.len() > MAX_COMPONENTS {
            let (mut first, rest): (Vec<_>, Vec<_>) =
                self.0.drain(..).partition(|(c, _)| keep_first(c));
            first.truncate(MAX_COMPONENTS);
            let room = MAX_COMPONENTS - first.len();
            cut = rest.len() - rest.len().min(room);
            first.extend(rest.into_iter().take(room));
            self.0 = first;
        }
        (bad_names + cut > 0).then(|| {
            format!(
                "clock cut to {} components ({bad_names} with a name that is empty or over {MAX_COMPONENT_LEN} characters, {cut} past {MAX_COMPONENTS})",
                self.0.len()
            )
        })
    }

    /// The entries to send in a header of at most `budget` bytes of JSON: `own` first (the
    /// sender's component: the edge the call makes), then the others in order while they fit.
    /// Deterministic; what is left out is what the receiver's detector rebuilds from the
    /// sender's own clock (docs/distributed.md).
    pub fn bounded(&self, own: Option<&str>, budget: usize) -> VectorClock {
        // Each entry's exact JSON (escapes included) and its comma; the brackets around all.
        let size = |entry: &(String, u64)| {
            serde_json::to_string(entry).map_or(usize::MAX, |s| s.len() + 1)
        };
        let mut out = Vec::new();
        let mut used = 2;
        if let Some(own) = own {
            if let Some(entry) = self.0.iter().find(|(c, _)| c == own) {
                used += size(entry);
                out.push(entry.clone());
            }
        }
        for entry in &self.0 {
            if Some(entry.0.as_str()) == own {
                continue;
            }
            let more = size(entry);
            if used.saturating_add(more) > budget {
                break;
            }
            used += more;
            out.push(entry.clone());
        }
        VectorClock(out)
    }
}

impl FromIterator<(String, u64)> for VectorClock {
    fn from_iter<I: IntoIterator<Item = (String, u64)>>(iter: I) -> Self {
        let mut clock = VectorClock::new();
        for (c, n) in iter {
            clock.observe(&c, n);
        }
        clock
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_clocks_are_cut_deterministically_keeping_the_senders_own_first() {
        let mut big: VectorClock = (0..100).map(|i| (format!("c{i}"), i)).collect();
        big.0.push(("".into(), 1));
        big.0.push(("x".repeat(300), 1));
        big.0.push(("own#1".into(), 7));
        let note = big.cut_foreign(|c| c.starts_with("own#")).unwrap();
        assert_eq!(big.len(), MAX_COMPONENTS);
        assert_eq!(big.entries()[0], ("own#1".to_string(), 7));
        assert_eq!(big.entries()[1].0, "c0");
        assert!(
            note.contains("2 with a name") && note.contains("37 past"),
            "{note}"
        );
        let mut small = vc(&[("a", 1)]);
        assert_eq!(small.cut_foreign(|_| false), None);
    }

    #[test]
    fn bounded_keeps_own_then_what_fits() {
        let clock: VectorClock = (0..500).map(|i| (format!("svc#host/{i:08x}"), i)).collect();
        let b = clock.bounded(Some("svc#host/000001f3"), 2000);
        assert_eq!(b.entries()[0].0, "svc#host/000001f3");
        assert!(serde_json::to_string(&b).unwrap().len() <= 2000);
        assert!(b.len() > 20);
        assert_eq!(clock.bounded(None, 10).len(), 0);
    }

    fn vc(entries: &[(&str, u64)]) -> VectorClock {
        entries.iter().map(|(c, n)| (c.to_string(), *n)).collect()
    }

    #[test]
    fn compare_orders_and_detects_concurrency() {
        let a = vc(&[("a", 1)]);
        let b = vc(&[("a", 1), ("b", 1)]);
        let c = vc(&[("a", 2)]);
        assert_eq!(a.compare(&b), Causality::Before);
        assert_eq!(b.compare(&a), Causality::After);
        assert_eq!(b.compare(&c), Causality::Concurrent);
        assert_eq!(a.compare(&a.clone()), Causality::Equal);
        assert!(a.happens_before(&c));
    }

    #[test]
    fn merge_takes_maximum_and_keeps_first_seen_order() {
        let mut a = vc(&[("x", 3), ("y", 1)]);
        a.merge(&vc(&[("z", 2), ("y", 5), ("x", 1)]));
        assert_eq!(a, vc(&[("x", 3), ("y", 5), ("z", 2)]));
        assert_eq!(a.entries()[2].0, "z");
    }

    #[test]
    fn increment_starts_absent_components_at_one() {
        let mut a = VectorClock::new();
        assert_eq!(a.increment("me"), 1);
        assert_eq!(a.increment("me"), 2);
    }

    #[test]
    fn serializes_as_pairs_and_rejects_bad_counters() {
        let a = vc(&[("svc#i", 2)]);
        assert_eq!(serde_json::to_string(&a).unwrap(), r#"[["svc#i",2]]"#);
        for bad in [
            r#"[["a",-1]]"#,
            r#"[["a",1.5]]"#,
            r#"[["a",true]]"#,
            r#"[["a"]]"#,
            r#"{"a":1}"#,
        ] {
            assert!(serde_json::from_str::<VectorClock>(bad).is_err(), "{bad}");
        }
    }
}
