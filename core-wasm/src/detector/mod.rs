//! The race detector: happens-before over vector clocks, FastTrack-style per-variable state,
//! and the lost-update rule, fed the same typed events the encoder renders (`read.rs`).
//!
//! - `clock`: vector clocks over interned strand ids.
//! - `strands`: execution contexts, their clocks, and the edges between them (spawn, join with
//!   retirement, locks, annotations; the host's inherited clocks carry calls between services).
//! - `access`: what is kept of one access; interned sites.
//! - `variables`: the per-variable state and the two rules.
//! - `races`: distinct races, counted, and their JSON.
//!
//! State lives across batches. Memory is bounded by the `Options` (docs/races.md gives the
//! numbers): live strands, variables, readers kept per variable, distinct races, the length of
//! values kept for reports.

pub mod access;
pub mod clock;
pub mod ids;
pub mod races;
pub mod strands;
pub mod variables;

use crate::event::Kind;
use crate::ids::TraceId;
use crate::read::Event;
use access::{fingerprint, Access, Sites, Values};
use clock::Clock;
use races::Races;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::rc::Rc;
use strands::Strands;
use variables::{Finding, Variables};

/// A `Custom` event with this name is a happens-before annotation: `data` is `{"sync": id}`
/// and everything its strand did so far happens before whatever follows a later
/// `HAPPENS_AFTER` on the same id (ThreadSanitizer's `AnnotateHappensBefore`/`After`).
pub const HAPPENS_BEFORE: &str = "raceway:happens-before";
pub const HAPPENS_AFTER: &str = "raceway:happens-after";

/// The detector's bounds. Every field has a default, so `{}` is a valid configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// Distinct races kept; more are counted in `races_dropped`.
    pub max_races: usize,
    /// Strands whose clocks are kept; past it the least recently active quarter is released
    /// and forgotten (their accesses count as ordered before everything). Clocks are never
    /// longer than this, however many strands ran.
    pub max_strands: usize,
    /// Variables tracked; past it the least recently accessed eighth is forgotten.
    pub max_variables: usize,
    /// Unordered reads kept per variable since its last write (and pending reads for the
    /// lost-update rule); past it the oldest is forgotten.
    pub max_readers: usize,
    /// Bytes of a value's JSON kept for a report; longer values are cut.
    pub max_value_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_races: 1000,
            max_strands: 128,
            max_variables: 100_000,
            max_readers: 64,
            max_value_bytes: 256,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Stats {
    pub events: u64,
    pub accesses: u64,
    pub strands: usize,
    pub variables: usize,
    pub races_dropped: u64,
}

pub struct Detector {
    options: Options,
    strands: Strands,
    variables: Variables,
    races: Races,
    sites: Sites,
    locks: HashMap<Box<str>, Clock>,
    syncs: HashMap<Box<str>, Clock>,
    events: u64,
    accesses: u64,
    batch: u64,
    service: Rc<str>,
    /// Lock sets of the current batch's states, by state index.
    lock_sets: Vec<Option<Rc<[Box<str>]>>>,
    found: Vec<Finding>,
    /// A write the variables no longer hold, whose allocation the next access may take.
    spare: Option<Rc<Access>>,
    /// `strands.evictions` when the lock and annotation clocks were last pruned.
    pruned_at: u64,
}

impl Default for Detector {
    fn default() -> Self {
        Self::new(Options::default())
    }
}

impl Detector {
    pub fn new(options: Options) -> Self {
        Detector {
            strands: Strands::new(options.max_strands),
            variables: Variables::new(options.max_variables, options.max_readers),
            races: Races::new(options.max_races),
            sites: Sites::default(),
            locks: HashMap::new(),
            syncs: HashMap::new(),
            events: 0,
            accesses: 0,
            batch: 0,
            service: Rc::from(""),
            lock_sets: Vec::new(),
            found: Vec::new(),
            spare: None,
            pruned_at: 0,
            options,
        }
    }

    /// Starts a batch of the process named `service` (its states are new).
    pub fn begin_batch(&mut self, service: &str) {
        self.batch += 1;
        self.lock_sets.clear();
        self.strands.begin_batch();
        self.sites.begin_batch();
        self.variables.begin_batch();
        if *self.service != *service {
            self.service = Rc::from(service);
        }
    }

    /// Takes one event, in the order the host observed them.
    pub fn observe(&mut self, e: &Event) {
        self.events += 1;
        let now = self.events;
        let me = self.strands.enter(e, self.batch, now, &self.service);
        if self.strands.evictions != self.pruned_at {
            self.pruned_at = self.strands.evictions;
            for clock in self.locks.values_mut().chain(self.syncs.values_mut()) {
                self.strands.prune(clock);
            }
        }
        match e.kind {
            Kind::StateChange {
                variable,
                old_value,
                new_value,
                location,
                access_type,
                stack,
            } => {
                self.accesses += 1;
                if self.lock_sets.len() <= e.state_index {
                    self.lock_sets.resize(e.state_index + 1, None);
                }
                let locks = self.lock_sets[e.state_index]
                    .get_or_insert_with(|| {
                        e.state.locks.iter().map(|l| l.as_ref().into()).collect()
                    })
                    .clone();
                let strand = self.strands.get(me);
                let access = Access {
                    strand: me,
                    seq: e.seq,
                    pos: now,
                    meta: strand.meta.clone(),
                    site: self.sites.intern(&location.file, location.line, stack),
                    access_type: *access_type,
                    unix_nanos: e.unix_nanos,
                    locks,
                    values: Values::new(old_value, new_value, self.options.max_value_bytes),
                    old_hash: fingerprint(old_value.get().as_bytes()),
                    new_hash: fingerprint(new_value.get().as_bytes()),
                };
                // The allocation of the last write replaced, when nothing holds it any more.
                let access = match self.spare.take() {
                    Some(mut spare) => match Rc::get_mut(&mut spare) {
                        Some(slot) => {
                            *slot = access;
                            spare
                        }
                        None => Rc::new(access),
                    },
                    None => Rc::new(access),
                };
                let replaced = self.variables.access(
                    variable,
                    access,
                    &strand.clock,
                    &self.strands,
                    &mut self.found,
                );
                for finding in self.found.drain(..) {
                    self.races.file(variable, finding);
                }
                self.spare = replaced;
            }
            Kind::LockAcquire { lock_id, .. } => {
                if let Some(released) = self.locks.get(lock_id.as_ref()) {
                    self.strands.learn(me, released);
                }
            }
            Kind::LockRelease { lock_id, .. } => {
                let clock = self.strands.get(me).clock.clone();
                self.locks.insert(lock_id.as_ref().into(), clock);
            }
            Kind::AsyncSpawn { task_id, .. } => {
                if let Some(task) = TraceId::parse_uuid(task_id) {
                    self.strands.spawned(me, task.bits());
                }
            }
            Kind::AsyncAwait { future_id, .. } => {
                if let Some(task) = TraceId::parse_uuid(future_id) {
                    self.strands.joined(me, task.bits());
                }
            }
            Kind::Custom { name, data } if name == HAPPENS_BEFORE || name == HAPPENS_AFTER => {
                let Some(sync) = sync_id(data.get()) else {
                    return;
                };
                if name == HAPPENS_BEFORE {
                    let clock = self.strands.get(me).clock.clone();
                    self.syncs.entry(sync.into()).or_default().join(&clock);
                } else if let Some(released) = self.syncs.get(sync.as_str()) {
                    self.strands.learn(me, released);
                }
            }
            _ => {}
        }
    }

    pub fn stats(&self) -> Stats {
        Stats {
            events: self.events,
            accesses: self.accesses,
            strands: self.strands.len(),
            variables: self.variables.len(),
            races_dropped: self.races.dropped,
        }
    }

    /// `{"races": [...], "stats": {...}}`, as the WIT's `races` documents it.
    pub fn findings_json(&self) -> String {
        #[derive(Serialize)]
        struct Findings<'a> {
            races: Vec<races::RaceJson<'a>>,
            stats: Stats,
        }
        serde_json::to_string(&Findings {
            races: self.races.to_json(),
            stats: self.stats(),
        })
        .expect("plain data serializes")
    }
}

/// The `sync` member of an annotation's data.
fn sync_id(data: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Data {
        sync: String,
    }
    serde_json::from_str::<Data>(data).ok().map(|d| d.sync)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ProcessConfig;
    use crate::pipeline::process_batch;

    /// The batch-scoped caches (the last site and variable by address or text, the strand of
    /// each context, a replaced write's allocation) find what the look-ups they save would:
    /// the same events give the same findings in one batch as one event per batch, where
    /// nothing is found in them.
    #[test]
    fn findings_do_not_depend_on_how_events_are_batched() {
        let contexts = r#"[{"trace_id":"0af76519-16cd-43dd-8448-eb211c80319c","thread_id":"t1","component":"svc#h/1","id_base":"00000000000000000000000000000010"},
            {"trace_id":"0af76519-16cd-43dd-8448-eb211c80319c","thread_id":"t2","component":"svc#h/2","id_base":"00000000000000000000000000000020"}]"#;
        let states = r#"[{"clock":[],"locks":[]},{"clock":[],"locks":["L"]},{"clock":[["svc#h/1",3]],"locks":[]}]"#;
        let mut events = Vec::new();
        let mut seqs = [0u64; 2];
        for i in 0..60u64 {
            let c = (i % 3 % 2) as usize; // two contexts, interleaved unevenly
            seqs[c] += 1;
            let (seq, state) = (seqs[c], (i / 7 % 3) as usize);
            let variable = ["x", "y", "x"][(i % 5 % 3) as usize];
            let (access, file, line) = if i % 4 == 0 {
                ("Read", "r.py", 7)
            } else {
                ("Write", "w.py", 7)
            };
            let kind = match i % 11 {
                5 => r#""LockAcquire",["L","Mutex"]"#.to_owned(),
                6 => r#""LockRelease",["L","Mutex"]"#.to_owned(),
                _ => format!(
                    r#""StateChange",["{variable}",{},{},"{access}",["app.py:1 in f"]]"#,
                    i,
                    i + 1
                ),
            };
            events.push(format!(
                r#"[{c},{state},{seq},{},{},null,"{file}",{line},{kind}]"#,
                seq - 1,
                1_000 + i
            ));
        }
        let batch = |events: &[String]| {
            format!(
                r#"{{"contexts":{contexts},"states":{states},"events":[{}]}}"#,
                events.join(",")
            )
        };
        let config = ProcessConfig::default();
        let mut whole = Detector::default();
        process_batch(&config, &batch(&events), 0, Some(&mut whole)).unwrap();
        let mut apart = Detector::default();
        for event in &events {
            process_batch(
                &config,
                &batch(std::slice::from_ref(event)),
                0,
                Some(&mut apart),
            )
            .unwrap();
        }
        let findings = whole.findings_json();
        assert!(findings.contains("data-race"), "{findings}");
        assert_eq!(findings, apart.findings_json());
    }
}
