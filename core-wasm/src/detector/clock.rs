//! Vector clocks over interned strand ids, for the detector's inner loop: sorted
//! `(strand, counter)` pairs, so a lookup is a binary search and a join is one merge pass,
//! with no strings hashed or compared.

/// A strand's id, interned from its component name (`detector::strands`). Never reused.
pub type StrandId = u32;

/// `strand -> counter`, absent strands at 0. Sorted by strand id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Clock(Vec<(StrandId, u64)>);

impl Clock {
    pub fn get(&self, strand: StrandId) -> u64 {
        match self.0.binary_search_by_key(&strand, |&(s, _)| s) {
            Ok(i) => self.0[i].1,
            Err(_) => 0,
        }
    }

    /// Raises `strand` to at least `counter`; true if the clock changed.
    pub fn raise(&mut self, strand: StrandId, counter: u64) -> bool {
        match self.0.binary_search_by_key(&strand, |&(s, _)| s) {
            Ok(i) if self.0[i].1 >= counter => false,
            Ok(i) => {
                self.0[i].1 = counter;
                true
            }
            Err(_) if counter == 0 => false,
            Err(i) => {
                self.0.insert(i, (strand, counter));
                true
            }
        }
    }

    /// The element-wise maximum with `other`, leaving out the strands in `except` (one whose
    /// counter the caller sets itself, one that is retired); true if the clock changed.
    pub fn join_except(&mut self, other: &Clock, except: &[StrandId]) -> bool {
        // Most joins teach nothing new: find out before building a merged clock.
        if !self.would_learn(other, except) {
            return false;
        }
        let mut changed = false;
        let mut merged = Vec::with_capacity(self.0.len().max(other.0.len()));
        let (mut i, mut j) = (0, 0);
        let (a, b) = (&self.0, &other.0);
        while i < a.len() || j < b.len() {
            let take_b = |s: StrandId| !except.contains(&s);
            match (a.get(i), b.get(j)) {
                (Some(&(sa, na)), Some(&(sb, nb))) if sa == sb => {
                    let n = if take_b(sb) && nb > na {
                        changed = true;
                        nb
                    } else {
                        na
                    };
                    merged.push((sa, n));
                    i += 1;
                    j += 1;
                }
                (Some(&(sa, na)), Some(&(sb, _))) if sa < sb => {
                    merged.push((sa, na));
                    i += 1;
                }
                (Some(_), Some(&(sb, nb))) | (None, Some(&(sb, nb))) => {
                    if take_b(sb) && nb > 0 {
                        merged.push((sb, nb));
                        changed = true;
                    }
                    j += 1;
                }
                (Some(&(sa, na)), None) => {
                    merged.push((sa, na));
                    i += 1;
                }
                (None, None) => unreachable!(),
            }
        }
        if changed {
            self.0 = merged;
        }
        changed
    }

    /// Whether joining `other` (leaving out `except`) would change this clock.
    pub fn would_learn(&self, other: &Clock, except: &[StrandId]) -> bool {
        other
            .0
            .iter()
            .any(|&(s, n)| n > 0 && !except.contains(&s) && self.get(s) < n)
    }

    /// Keeps the entries whose strand `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(StrandId) -> bool) {
        self.0.retain(|&(s, _)| keep(s));
    }

    /// Drops `strand`'s entry (a retired strand: see `strands.rs`).
    pub fn remove(&mut self, strand: StrandId) {
        if let Ok(i) = self.0.binary_search_by_key(&strand, |&(s, _)| s) {
            self.0.remove(i);
        }
    }

    pub fn join(&mut self, other: &Clock) -> bool {
        self.join_except(other, &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(pairs: &[(StrandId, u64)]) -> Clock {
        let mut c = Clock::default();
        for &(s, n) in pairs {
            c.raise(s, n);
        }
        c
    }

    #[test]
    fn join_is_the_element_wise_maximum() {
        let mut a = clock(&[(1, 3), (4, 1)]);
        assert!(a.join(&clock(&[(0, 2), (1, 1), (4, 5), (9, 1)])));
        assert_eq!(a, clock(&[(0, 2), (1, 3), (4, 5), (9, 1)]));
        assert!(!a.join(&clock(&[(1, 2)])));
        assert_eq!(a.get(7), 0);
    }

    #[test]
    fn join_except_leaves_one_strand_alone() {
        let mut a = clock(&[(1, 3)]);
        assert!(!a.join_except(&clock(&[(1, 9)]), &[1]));
        assert!(a.join_except(&clock(&[(1, 9), (2, 1)]), &[1]));
        assert_eq!(a, clock(&[(1, 3), (2, 1)]));
    }
}
