//! Strands (execution contexts) and the happens-before edges between them.
//!
//! Each strand has a vector clock over interned strand ids. Its clock at an event is what the
//! host's state says it inherited (spawns, joins and calls from other services, as the host's
//! own clocks carry them), joined with what the detector learned from events: a lock's last
//! release before its acquire, an `AsyncSpawn` before the child's first event, the child's end
//! before an `AsyncAwait`, a `happens-before` annotation before its `happens-after`.
//!
//! **Retirement.** When a strand is joined (`AsyncAwait`), everything it did is ordered before
//! whatever the join is ordered before. So the joiner does not need to carry the joined strand's
//! component in its clock: the detector remembers `joined -> (joiner, joiner's counter at the
//! join, the joined strand's last counter)`, and [`Strands::knows`] asks "does this clock know
//! the joiner at that counter?" when the component itself is absent. That is sound: a clock
//! that knows the joiner at the join knows, through the join edge, every event of the joined
//! strand up to its last counter, and an event after that counter is never claimed. It cannot
//! hide a race: the fallback is only taken when the direct component does not already order
//! the two accesses, and it only answers "ordered" along a real chain of edges.

use super::clock::{Clock, StrandId};
use super::ids::IdMap;
use crate::read::Event;
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;

/// How deep `knows` follows retirements (a strand joined by a strand that was joined, ...).
const MAX_RETIREMENT_DEPTH: usize = 16;

/// What a report says about a strand; shared by every access the detector keeps of it.
#[derive(Debug)]
pub struct StrandMeta {
    pub thread_id: Box<str>,
    pub component: Box<str>,
    pub trace_id: Box<str>,
    pub service: Rc<str>,
}

#[derive(Debug)]
pub struct Strand {
    pub meta: Rc<StrandMeta>,
    /// The clock at the strand's latest event (its own component is that event's counter).
    pub clock: Clock,
    pub seq: u64,
    /// The counter from which the clock is the clock at every later event, own component
    /// aside: it moves whenever the strand learns something (a lock, a join, a new state).
    pub merged_at: u64,
    /// The clocks before the last few `merged_at` moves, each with the counter it held from:
    /// what the strand knew at an earlier counter, for a strand that learns from it late (a
    /// call to another service read in a later batch, or out of order by `analyze`).
    history: VecDeque<(u64, Clock)>,
    /// The detector's event count at the strand's latest event (for eviction).
    pub last_active: u64,
    /// The (batch, state index) last merged: a state is merged once per batch.
    last_state: (u64, usize),
}

/// Past clocks kept per strand (see `Strand::history`).
const HISTORY: usize = 4;

impl Strand {
    /// Joins `other` (leaving out `except`) into the clock as of counter `at`, keeping the
    /// clock it replaces in the history. True if the clock changed.
    fn learn_at(&mut self, other: &Clock, except: &[StrandId], at: u64) -> bool {
        if !self.clock.would_learn(other, except) {
            return false;
        }
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back((self.merged_at, self.clock.clone()));
        self.clock.join_except(other, except);
        self.merged_at = at;
        true
    }

    /// The clock the strand had at its counter `counter` (its own entry aside), if known: the
    /// current one from `merged_at` on, an older one from the history, else None.
    fn clock_at(&self, counter: u64) -> Option<&Clock> {
        if counter >= self.merged_at {
            return Some(&self.clock);
        }
        self.history
            .iter()
            .rev()
            .find(|(from, _)| *from <= counter)
            .map(|(_, c)| c)
    }
}

#[derive(Clone, Copy, Debug)]
struct Retirement {
    joiner: StrandId,
    /// The joiner's counter at the join.
    at: u64,
    /// The joined strand's last counter when it was joined.
    last: u64,
}

/// Every strand the detector knows, and the edges that are not clocks yet.
#[derive(Debug)]
pub struct Strands {
    ids: HashMap<Box<str>, StrandId>,
    next_id: StrandId,
    live: IdMap<StrandId, Strand>,
    by_task: IdMap<u128, StrandId>,
    retired: IdMap<StrandId, Vec<Retirement>>,
    retired_order: VecDeque<StrandId>,
    spawns: IdMap<u128, Clock>,
    spawn_order: VecDeque<u128>,
    pub max_strands: usize,
    /// How many times strands were released: the detector prunes its other clocks (locks,
    /// annotations) when this moves.
    pub evictions: u64,
    /// The strand of each context of the current batch, by context index, once entered: a
    /// component's name is hashed once per batch, not once per event.
    batch_ids: Vec<Option<StrandId>>,
}

impl Strands {
    pub fn new(max_strands: usize) -> Self {
        Strands {
            ids: HashMap::new(),
            next_id: 0,
            live: IdMap::default(),
            by_task: IdMap::default(),
            retired: IdMap::default(),
            retired_order: VecDeque::new(),
            spawns: IdMap::default(),
            spawn_order: VecDeque::new(),
            max_strands: max_strands.max(16),
            evictions: 0,
            batch_ids: Vec::new(),
        }
    }

    /// A new batch: its context indexes name other contexts.
    pub fn begin_batch(&mut self) {
        self.batch_ids.clear();
    }

    /// How many are held now (the detector's `stats`).
    pub(crate) fn len(&self) -> usize {
        self.live.len()
    }

    pub fn get(&self, id: StrandId) -> &Strand {
        &self.live[&id]
    }

    fn intern(&mut self, component: &str) -> StrandId {
        if let Some(&id) = self.ids.get(component) {
            return id;
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.ids.insert(component.into(), id);
        id
    }

    /// Brings the event's strand up to date and returns it: created on its first event (from
    /// its parent's spawn, when one was seen), the host's inherited clock merged when the
    /// event's state is new, its own component set to the event's counter.
    pub fn enter(&mut self, e: &Event, batch: u64, now: u64, service: &Rc<str>) -> StrandId {
        let id = match self.batch_ids.get(e.context_index) {
            Some(&Some(id)) => id,
            _ => {
                let id = self.intern(&e.context.component);
                if self.batch_ids.len() <= e.context_index {
                    self.batch_ids.resize(e.context_index + 1, None);
                }
                self.batch_ids[e.context_index] = Some(id);
                id
            }
        };
        let state_key = (batch, e.state_index);
        // The usual event: a live strand in a state already merged, found with one look-up.
        if let Some(strand) = self.live.get_mut(&id) {
            if strand.last_state == state_key {
                strand.seq = strand.seq.max(e.seq);
                strand.clock.raise(id, e.seq);
                strand.last_active = now;
                return id;
            }
        }
        if !self.live.contains_key(&id) {
            self.evict_if_full();
            let mut clock = Clock::default();
            if let Some(spawn) = self.spawns.remove(&e.id_base) {
                clock = spawn;
            }
            self.by_task.insert(e.id_base, id);
            // Components are `<service>#<instance>[/<suffix>]` in every Raceway SDK: the
            // service is read from there, so one batch may hold contexts of several services.
            let named = e
                .context
                .component
                .split_once('#')
                .map(|(s, _)| s)
                .filter(|s| !s.is_empty());
            let service = match named {
                Some(name) if name != &**service => Rc::from(name),
                _ => service.clone(),
            };
            let meta = StrandMeta {
                thread_id: e.context.thread_id.as_ref().into(),
                component: e.context.component.as_ref().into(),
                trace_id: e.context.trace_id.as_ref().into(),
                service,
            };
            let strand = Strand {
                meta: Rc::new(meta),
                clock,
                seq: 0,
                merged_at: 0,
                history: VecDeque::new(),
                last_active: now,
                last_state: (u64::MAX, 0),
            };
            self.live.insert(id, strand);
        }
        if self.live[&id].last_state != state_key {
            let mut learned = Clock::default();
            for (component, counter) in e.state.clock.entries() {
                let from = self.intern(component);
                // Only what is new to the strand is worth following: the rest it knows, and
                // knew what came with it when it learned it.
                // A retired strand that the strand knows through its joiner stays out of its
                // clock, which keeps clocks as short as the strands that are still running.
                if self
                    .live
                    .get(&id)
                    .is_some_and(|s| self.knows(&s.clock, from, *counter))
                {
                    continue;
                }
                learned.raise(from, *counter);
                // What `from` knew at that counter: a clock that reached us through a call
                // or a hand-off may carry only the sender's own entry (headers are bounded),
                // and the sender's clock at that counter holds the rest.
                if from != id {
                    if let Some(known) = self
                        .live
                        .get(&from)
                        .and_then(|other| other.clock_at(*counter))
                    {
                        learned.join_except(known, &[from]);
                    }
                }
            }
            let strand = self.live.get_mut(&id).expect("entered above");
            strand.last_state = state_key;
            strand.learn_at(&learned, &[id], e.seq);
        }
        let strand = self.live.get_mut(&id).expect("entered above");
        strand.seq = strand.seq.max(e.seq);
        strand.clock.raise(id, e.seq);
        strand.last_active = now;
        id
    }

    /// The strand learns `clock` at its current event (a lock's release, an annotation).
    pub fn learn(&mut self, id: StrandId, clock: &Clock) {
        if let Some(s) = self.live.get_mut(&id) {
            let at = s.seq;
            s.learn_at(clock, &[id], at);
        }
    }

    /// `parent` spawned the task whose context has `task` as its id base: the child's first
    /// event will start from the parent's clock now.
    pub fn spawned(&mut self, parent: StrandId, task: u128) {
        let clock = self.live[&parent].clock.clone();
        if self.spawns.insert(task, clock).is_none() {
            self.spawn_order.push_back(task);
            while self.spawn_order.len() > self.max_strands {
                if let Some(old) = self.spawn_order.pop_front() {
                    self.spawns.remove(&old);
                }
            }
        }
    }

    /// `joiner` observed that the task `task` finished: it learns the task's clock, and the
    /// task is retired into it (see the module's documentation).
    pub fn joined(&mut self, joiner: StrandId, task: u128) {
        let Some(&child) = self.by_task.get(&task) else {
            return;
        };
        if child == joiner {
            return;
        }
        let Some(c) = self.live.get(&child) else {
            return;
        };
        let (child_clock, last) = (c.clock.clone(), c.seq);
        let at = {
            let j = self.live.get_mut(&joiner).expect("the joiner is entered");
            // The child's own component stays out: the retirement below stands for it, so a
            // strand that joins thousands of children keeps a short clock.
            let at = j.seq;
            j.learn_at(&child_clock, &[joiner, child], at);
            j.clock.remove(child);
            j.seq
        };
        let list = self.retired.entry(child).or_default();
        if list.is_empty() {
            self.retired_order.push_back(child);
        }
        list.push(Retirement { joiner, at, last });
        while self.retired_order.len() > 4 * self.max_strands {
            if let Some(old) = self.retired_order.pop_front() {
                self.retired.remove(&old);
            }
        }
    }

    /// Whether a strand whose clock is `clock` knows event `counter` of `strand`: directly,
    /// or through the strand that joined it.
    pub fn knows(&self, clock: &Clock, strand: StrandId, counter: u64) -> bool {
        self.knows_at(clock, strand, counter, 0)
    }

    fn knows_at(&self, clock: &Clock, strand: StrandId, counter: u64, depth: usize) -> bool {
        if clock.get(strand) >= counter {
            return true;
        }
        if depth >= MAX_RETIREMENT_DEPTH {
            return false;
        }
        let retired = self.retired.get(&strand).is_some_and(|list| {
            list.iter()
                .any(|r| counter <= r.last && self.knows_at(clock, r.joiner, r.at, depth + 1))
        });
        // A strand the detector has released (`evict_if_full`) is forgotten: its accesses count
        // as ordered before everything, so clocks need not carry it (a race with it is
        // missed, never invented).
        retired || !self.live.contains_key(&strand)
    }

    /// Keeps only live strands' entries in `clock` (after an eviction; see `knows_at`).
    pub fn prune(&self, clock: &mut Clock) {
        clock.retain(|s| self.live.contains_key(&s));
    }

    /// Over `max_strands` live strands, the least recently active quarter is released and
    /// forgotten: its accesses count as ordered before everything (`knows_at`), and every
    /// clock drops it. A released strand that records again starts afresh from its inherited
    /// clock: what it had learned from locks and joins is forgotten, so its later accesses
    /// may look unordered with accesses of strands still live.
    fn evict_if_full(&mut self) {
        if self.live.len() < self.max_strands {
            return;
        }
        let mut ages: Vec<u64> = self.live.values().map(|s| s.last_active).collect();
        let cut = ages.len() / 4;
        let (_, &mut threshold, _) = ages.select_nth_unstable(cut);
        let gone: Vec<StrandId> = self
            .live
            .iter()
            .filter(|(_, s)| s.last_active <= threshold)
            .map(|(&id, _)| id)
            .collect();
        self.batch_ids.clear();
        for id in gone {
            if let Some(s) = self.live.remove(&id) {
                self.ids.remove(&s.meta.component);
            }
        }
        let live = &self.live;
        self.by_task.retain(|_, id| live.contains_key(id));
        if self.ids.len() > 4 * self.max_strands {
            self.ids.retain(|_, id| live.contains_key(id));
        }
        // Clocks drop the released strands (they are known to everything from now on), so
        // that no clock is longer than the live strands, however many strands ever ran.
        let live: HashSet<StrandId> = self.live.keys().copied().collect();
        for strand in self.live.values_mut() {
            // A strand's own entry stays: it is live.
            strand.clock.retain(|s| live.contains(&s));
            for (_, past) in strand.history.iter_mut() {
                past.retain(|s| live.contains(&s));
            }
        }
        for clock in self.spawns.values_mut() {
            clock.retain(|s| live.contains(&s));
        }
        self.evictions += 1;
    }
}
