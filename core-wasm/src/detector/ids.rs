//! A hasher for the detector's integer-keyed maps (strand ids, task ids, fingerprints).
//!
//! std's default (SipHash with a random key) is kept for every map keyed by text the events
//! carry (variable, lock and component names can come from a request, and a fixed hash would
//! let a sender make them collide). Integer keys are ids the detector made itself, the host's
//! random task ids, or fingerprints already computed: for them SipHash was a measurable share
//! of the per-access work, and a multiply is enough.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Folds the integers written into it with a multiply by an odd constant (Fibonacci hashing);
/// hashbrown takes the top bits, which the multiply mixes well.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

const K: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(K);
    }

    fn write_u128(&mut self, n: u128) {
        self.write_u64(n as u64);
        self.write_u64((n >> 64) as u64);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// A map keyed by an integer id (see the module's documentation).
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;
