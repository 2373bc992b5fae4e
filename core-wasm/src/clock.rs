//! Vector clocks: the happens-before order between events of different execution contexts.
//!
//! A clock maps a component (one execution context, e.g. `api#host-1/3f2a9c01`) to a counter.
//! On the wire it is `[[component, counter], …]`. Entries keep their first-seen order so that an
//! encoded clock is deterministic and golden vectors can pin it; comparisons ignore the order.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// The most entries an incoming clock may have; a header with more is refused, so a hostile or
/// runaway caller cannot make every later event of the trace carry a huge vector.
pub const MAX_COMPONENTS: usize = 256;
/// The longest component name accepted from a peer.
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
        self.0.iter().find(|(c, _)| c == component).map_or(0, |(_, n)| *n)
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

    /// Checks the limits a clock from a peer must respect.
    pub fn validate_foreign(&self) -> Result<(), String> {
        if self.0.len() > MAX_COMPONENTS {
            return Err(format!("clock has {} components, more than {MAX_COMPONENTS}", self.0.len()));
        }
        if let Some((c, _)) = self.0.iter().find(|(c, _)| c.is_empty() || c.len() > MAX_COMPONENT_LEN) {
            return Err(format!("clock component of length {} is not 1..={MAX_COMPONENT_LEN}", c.len()));
        }
        Ok(())
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
        for bad in [r#"[["a",-1]]"#, r#"[["a",1.5]]"#, r#"[["a",true]]"#, r#"[["a"]]"#, r#"{"a":1}"#] {
            assert!(serde_json::from_str::<VectorClock>(bad).is_err(), "{bad}");
        }
    }
}
