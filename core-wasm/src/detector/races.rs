//! Distinct races: one entry per kind, variable and set of locations, however often it
//! happens, with a count, the first and last time seen and the first occurrence's accesses
//! (ThreadSanitizer's deduplication, by the pair of places rather than the pair of events).

use super::access::Access;
use super::variables::Finding;
use crate::event::AccessType;
use crate::timestamp::rfc3339_micros;
use serde::Serialize;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::rc::Rc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum RaceKind {
    #[serde(rename = "data-race")]
    DataRace,
    #[serde(rename = "lost-update")]
    LostUpdate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Severity {
    #[serde(rename = "CRITICAL")]
    Critical,
    #[serde(rename = "WARNING")]
    Warning,
}

/// The places a distinct race is known by: (site, access type) of each access, the two sides
/// of a data race in a fixed order so that A-then-B and B-then-A are one race.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RaceKey {
    kind: RaceKind,
    variable: Box<str>,
    places: Vec<(u32, AccessType)>,
}

#[derive(Debug)]
struct Race {
    kind: RaceKind,
    severity: Severity,
    variable: Box<str>,
    count: u64,
    first_nanos: u64,
    last_nanos: u64,
    accesses: Vec<Rc<Access>>,
}

#[derive(Debug)]
pub struct Races {
    index: HashMap<RaceKey, usize>,
    list: Vec<Race>,
    pub dropped: u64,
    pub max_races: usize,
}

impl Races {
    pub fn new(max_races: usize) -> Self {
        Races {
            index: HashMap::new(),
            list: Vec::new(),
            dropped: 0,
            max_races,
        }
    }

    pub fn file(&mut self, variable: &str, finding: Finding) {
        let (kind, severity, accesses) = match finding {
            Finding::DataRace { earlier, later } => {
                let severity = if earlier.is_write() && later.is_write() {
                    Severity::Critical
                } else {
                    Severity::Warning
                };
                (RaceKind::DataRace, severity, vec![earlier, later])
            }
            Finding::LostUpdate { read, other, write } => (
                RaceKind::LostUpdate,
                Severity::Critical,
                vec![read, other, write],
            ),
        };
        let mut places: Vec<(u32, AccessType)> = accesses
            .iter()
            .map(|a| (a.site.id, a.access_type))
            .collect();
        if kind == RaceKind::DataRace {
            places.sort_by_key(|&(site, access)| (site, access as u8));
        }
        let when = accesses.last().expect("a race has accesses").unix_nanos;
        let key = RaceKey {
            kind,
            variable: variable.into(),
            places,
        };
        if let Some(&i) = self.index.get(&key) {
            let race = &mut self.list[i];
            race.count += 1;
            race.first_nanos = race.first_nanos.min(when);
            race.last_nanos = race.last_nanos.max(when);
            return;
        }
        if self.list.len() >= self.max_races {
            self.dropped += 1;
            return;
        }
        self.index.insert(key, self.list.len());
        self.list.push(Race {
            kind,
            severity,
            variable: variable.into(),
            count: 1,
            first_nanos: when,
            last_nanos: when,
            accesses,
        });
    }

    /// The races as the WIT's `races` documents them: lost updates first, then by severity,
    /// then in the order they were first found.
    pub fn to_json(&self) -> Vec<RaceJson<'_>> {
        let mut order: Vec<usize> = (0..self.list.len()).collect();
        order.sort_by_key(|&i| {
            let r = &self.list[i];
            (
                r.kind != RaceKind::LostUpdate,
                r.severity != Severity::Critical,
                i,
            )
        });
        order
            .into_iter()
            .map(|i| {
                let r = &self.list[i];
                RaceJson {
                    kind: r.kind,
                    severity: r.severity,
                    variable: &r.variable,
                    count: r.count,
                    first_seen: rfc3339_micros(r.first_nanos),
                    last_seen: rfc3339_micros(r.last_nanos),
                    accesses: r.accesses.iter().map(|a| AccessJson::of(a)).collect(),
                }
            })
            .collect()
    }
}

#[derive(Serialize)]
pub struct RaceJson<'a> {
    kind: RaceKind,
    severity: Severity,
    variable: &'a str,
    count: u64,
    first_seen: String,
    last_seen: String,
    accesses: Vec<AccessJson<'a>>,
}

#[derive(Serialize)]
struct AccessJson<'a> {
    access_type: &'static str,
    location: &'a str,
    stack: &'a [Box<str>],
    thread_id: &'a str,
    component: &'a str,
    trace_id: &'a str,
    service: &'a str,
    seq: u64,
    timestamp: String,
    unix_nanos: u64,
    locks: &'a [Box<str>],
    old_value: &'a RawValue,
    new_value: &'a RawValue,
}

impl<'a> AccessJson<'a> {
    fn of(a: &'a Access) -> Self {
        AccessJson {
            access_type: a.access_type.name(),
            location: &a.site.location,
            stack: &a.site.stack,
            thread_id: &a.meta.thread_id,
            component: &a.meta.component,
            trace_id: &a.meta.trace_id,
            service: &a.meta.service,
            seq: a.seq,
            timestamp: rfc3339_micros(a.unix_nanos),
            unix_nanos: a.unix_nanos,
            locks: &a.locks,
            old_value: a.values.old_value(),
            new_value: a.values.new_value(),
        }
    }
}
