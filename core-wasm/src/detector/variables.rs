//! Per-variable state and the two rules, FastTrack-style (Flanagan & Freund, PLDI 2009):
//! a variable keeps its last write and the reads since then that are not ordered before a
//! later read, not every access, so checking an access costs the same after an hour as after
//! a second.
//!
//! - **Data race**: two accesses from different strands, at least one a write, neither
//!   happening before the other, not both atomic.
//! - **Lost update** (check-then-act): a write W whose basis is a read R (the latest read that
//!   happens before W: the same strand's, or one that reached W's strand through an edge, such
//!   as a read in one service followed by a call that writes in another), where another strand
//!   wrote the variable after R (in the order the accesses were observed) and W's `old_value`
//!   is not the value that write left: W was computed from a stale read. Locks do not matter:
//!   the read and the write can each hold the lock and the update is still lost. Only
//!   non-atomic reads and writes take part, and a write whose `old_value` is null (not
//!   recorded) is not judged.

use super::access::Access;
use super::clock::Clock;
use super::ids::IdMap;
use super::strands::Strands;
use crate::event::same;
use std::collections::HashMap;
use std::rc::Rc;

const NULL_HASH_TEXT: &[u8] = b"null";

/// What one access found; the caller files them as races.
#[derive(Debug)]
pub enum Finding {
    DataRace {
        earlier: Rc<Access>,
        later: Rc<Access>,
    },
    LostUpdate {
        read: Rc<Access>,
        other: Rc<Access>,
        write: Rc<Access>,
    },
}

#[derive(Debug, Default)]
struct Variable {
    write: Option<Rc<Access>>,
    /// Reads since the last write, none of which happens before a later one.
    reads: Vec<Rc<Access>>,
    /// Each strand's latest read not yet followed by its own write: the reads a later write
    /// can be based on (for lost updates).
    pending: Vec<Rc<Access>>,
    last_pos: u64,
}

#[derive(Debug)]
pub struct Variables {
    /// Each variable's id, by name (SipHash: names can come from a request).
    ids: HashMap<Box<str>, u32>,
    vars: IdMap<u32, Variable>,
    next_id: u32,
    pub max_variables: usize,
    pub max_readers: usize,
    /// The names of the current batch already looked up, by the address of the name in the
    /// batch (see `Sites::batch`), to the variable's id: in a batch read from a pickle, a
    /// name the host wrote once is hashed once per batch. Cleared with each batch and
    /// whenever variables are forgotten.
    batch: IdMap<(usize, usize), u32>,
    /// The last name looked up in the batch, by address, and its id: most accesses repeat it.
    last: Option<((usize, usize), u32)>,
    /// That name's text, for the same name in another string (the JSON form's).
    last_name: String,
}

impl Variables {
    pub fn new(max_variables: usize, max_readers: usize) -> Self {
        Variables {
            ids: HashMap::new(),
            vars: IdMap::default(),
            next_id: 0,
            max_variables: max_variables.max(16),
            max_readers: max_readers.max(1),
            batch: IdMap::default(),
            last: None,
            last_name: String::new(),
        }
    }

    /// How many are held now (the detector's `stats`).
    pub(crate) fn len(&self) -> usize {
        self.vars.len()
    }

    /// A new batch: the addresses of the last one mean nothing now.
    pub fn begin_batch(&mut self) {
        self.batch.clear();
        self.last = None;
    }

    /// Checks `access` (by a strand whose clock is `clock`) against what `name` holds, records
    /// it, and pushes what it found onto `found`. Returns the write it replaced, if any (the
    /// caller may reuse its allocation once nothing else holds it).
    pub fn access(
        &mut self,
        name: &str,
        access: Rc<Access>,
        clock: &Clock,
        strands: &Strands,
        found: &mut Vec<Finding>,
    ) -> Option<Rc<Access>> {
        let key = (name.as_ptr() as usize, name.len());
        let id = match self.last {
            Some((last, id)) if last == key => id,
            Some((_, id)) if same(&self.last_name, name) => {
                self.last = Some((key, id));
                id
            }
            _ => {
                let id = self.lookup(name, key);
                self.last = Some((key, id));
                self.last_name.clear();
                self.last_name.push_str(name);
                id
            }
        };
        let max_readers = self.max_readers;
        let var = self.vars.get_mut(&id)?;
        var.access(access, clock, strands, max_readers, found)
    }

    /// The id of the variable `name` (whose address is `key`), made if it is new.
    fn lookup(&mut self, name: &str, key: (usize, usize)) -> u32 {
        if let Some(&id) = self.batch.get(&key) {
            return id;
        }
        let id = match self.ids.get(name) {
            Some(&id) => id,
            None => {
                self.evict_if_full();
                let id = self.next_id;
                self.next_id = self.next_id.wrapping_add(1);
                self.ids.insert(name.into(), id);
                self.vars.insert(id, Variable::default());
                id
            }
        };
        self.batch.insert(key, id);
        id
    }

    /// Over `max_variables`, the least recently accessed eighth is forgotten (races on them
    /// with accesses from before are then missed, never invented). An eighth, not more: the
    /// sweep runs inside one core call, whose work is bounded (the host's fuel).
    fn evict_if_full(&mut self) {
        if self.vars.len() < self.max_variables {
            return;
        }
        let mut ages: Vec<u64> = self.vars.values().map(|v| v.last_pos).collect();
        let eighth = ages.len() / 8;
        let (_, &mut threshold, _) = ages.select_nth_unstable(eighth);
        self.vars.retain(|_, v| v.last_pos > threshold);
        let vars = &self.vars;
        self.ids.retain(|_, id| vars.contains_key(id));
        self.batch.clear();
        self.last = None;
    }
}

impl Variable {
    fn access(
        &mut self,
        access: Rc<Access>,
        clock: &Clock,
        strands: &Strands,
        max_readers: usize,
        found: &mut Vec<Finding>,
    ) -> Option<Rc<Access>> {
        let var = self;
        var.last_pos = access.pos;
        let me = access.strand;
        let unordered = |other: &Access| {
            other.strand != me
                && !(other.is_atomic() && access.is_atomic())
                && !strands.knows(clock, other.strand, other.seq)
        };
        if let Some(w) = &var.write {
            if unordered(w) {
                found.push(Finding::DataRace {
                    earlier: w.clone(),
                    later: access.clone(),
                });
            }
        }
        if access.is_write() {
            for r in &var.reads {
                if unordered(r) {
                    found.push(Finding::DataRace {
                        earlier: r.clone(),
                        later: access.clone(),
                    });
                }
            }
            if !access.is_atomic() {
                let basis = var
                    .pending
                    .iter()
                    .filter(|r| r.strand == me || strands.knows(clock, r.strand, r.seq))
                    .max_by_key(|r| r.pos);
                if let (Some(read), Some(other)) = (basis, &var.write) {
                    let stale = other.strand != me
                        && other.pos > read.pos
                        && access.old_hash != NULL_HASH
                        && access.old_hash != other.new_hash;
                    if stale {
                        found.push(Finding::LostUpdate {
                            read: read.clone(),
                            other: other.clone(),
                            write: access.clone(),
                        });
                    }
                }
                var.pending.retain(|r| r.strand != me);
            }
            var.reads.clear();
            var.write.replace(access)
        } else {
            // A read ordered before this one adds nothing a later write could race with
            // that this read does not already (FastTrack's read-exclusive step).
            var.reads
                .retain(|r| r.strand != me && !strands.knows(clock, r.strand, r.seq));
            if var.reads.len() >= max_readers {
                var.reads.remove(0);
            }
            var.reads.push(access.clone());
            if !access.is_atomic() {
                var.pending.retain(|r| r.strand != me);
                if var.pending.len() >= max_readers {
                    var.pending.remove(0);
                }
                var.pending.push(access);
            }
            None
        }
    }
}

/// The fingerprint of a `null` value (an old value the host did not record).
const NULL_HASH: u64 = super::access::fingerprint(NULL_HASH_TEXT);
