//! The batch's typed records read straight from the tree's nodes: the same records the serde
//! read (`At`, through `record.rs`'s `Deserialize` impls) makes of them, without serde's
//! visitors in between, which were the larger part of reading a pickled batch.
//!
//! Only the plain shape is read here: a batch `{"contexts", "states", "events"}` in that order,
//! and records (flat or nested, `Tree::record_parts`) whose every field has the type the
//! record format gives it and whose kind is valid. Anything else (another shape, a field of another type, an unknown kind or access
//! type, a task id that is not a UUID) is left to the serde read, record by record, which gives
//! the answer it always gave: a record it builds, or the batch's error. A record read here
//! counts the same visits (`Tree::visit`) as the serde read would, so the bound on the work
//! and the point where it is reached do not change.

use super::{At, Error, Node, RawValueMap, Record, RecordParts, Tree, NONE};
use crate::event::{AccessType, Frames, Kind, Location, Ordering};
use crate::ids::TraceId;
use crate::read::ReadBatch;
use crate::record::{BatchRecord, ContextRecord, EventRecord, StateRecord};
use serde::de::{Deserializer, Visitor};
use serde::forward_to_deserialize_any;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;

impl<'a> Tree<'a> {
    /// The batch's typed records (see the module's documentation), or None when the batch is
    /// not of the plain shape: the caller reads it through serde.
    pub(super) fn plain_batch<'t>(
        &'t self,
        values: &'t str,
    ) -> Option<Result<ReadBatch<'t>, String>>
    where
        'a: 't,
    {
        let Node::Dict(d) = self.nodes[self.root as usize] else {
            return None;
        };
        let &[(k1, contexts), (k2, states), (k3, events)] = self.dicts[d as usize].as_slice()
        else {
            return None;
        };
        if (self.text(k1), self.text(k2), self.text(k3))
            != (Some("contexts"), Some("states"), Some("events"))
        {
            return None;
        }
        let records = self.seq(events)?;
        Some(self.read_plain(values, [contexts, states], records))
    }

    /// What the serde read does for a batch of the plain shape: the root, its keys and each
    /// table in the same order, with the same visits.
    fn read_plain<'t>(
        &'t self,
        values: &'t str,
        [contexts, states]: [u32; 2],
        records: &'t [u32],
    ) -> Result<ReadBatch<'t>, String>
    where
        'a: 't,
    {
        let fail = |e: Error| format!("pickle: {}", e.0);
        let root = At {
            tree: self,
            values,
            node: self.root,
            depth: 0,
        };
        self.visit().map_err(|e| format!("pickle: {e}"))?; // the root
        self.visit().map_err(|e| format!("pickle: {e}"))?; // "contexts"
        let mut contexts = Vec::<ContextRecord>::deserialize(root.child(contexts)).map_err(fail)?;
        self.visit().map_err(|e| format!("pickle: {e}"))?; // "states"
        let mut states = Vec::<StateRecord>::deserialize(root.child(states)).map_err(fail)?;
        self.visit().map_err(|e| format!("pickle: {e}"))?; // "events"
        self.visit().map_err(|e| format!("pickle: {e}"))?; // the list of records
        let list = root.child(0);
        let mut events = Vec::with_capacity(records.len());
        for &record in records {
            let plain = Plain {
                tree: self,
                values,
                visits: 0,
            };
            if !plain.record(record, &mut events) {
                events.push(Ok(Record::deserialize(list.child(record)).map_err(fail)?.0));
            }
        }
        // After the records, as the serde read takes the inline rows.
        self.read_inline(values, &mut contexts, &mut states)?;
        Ok(BatchRecord {
            contexts,
            states,
            events,
        })
    }
}

/// Reads one record's nodes, counting the visits the serde read makes of them: one per node
/// it enters (a value's JSON is taken from the rendered values, without entering it).
pub(super) struct Plain<'t, 'a> {
    pub(super) tree: &'t Tree<'a>,
    pub(super) values: &'t str,
    pub(super) visits: u64,
}

impl<'t, 'a: 't> Plain<'t, 'a> {
    #[inline(always)]
    fn enter(&mut self, node: u32) -> Node<'a> {
        self.visits += 1;
        self.tree.nodes[node as usize]
    }

    /// A `u64` as serde reads one from a node: a non-negative int.
    #[inline(always)]
    fn u64(&mut self, node: u32) -> Option<u64> {
        match self.enter(node) {
            Node::Int(i) if i >= 0 => Some(i as u64),
            Node::Big(u) => Some(u),
            _ => None,
        }
    }

    #[inline(always)]
    fn int<T: TryFrom<u64>>(&mut self, node: u32) -> Option<T> {
        T::try_from(self.u64(node)?).ok()
    }

    #[inline(always)]
    fn text(&mut self, node: u32) -> Option<Cow<'t, str>> {
        self.visits += 1;
        self.tree.text(node).map(Cow::Borrowed)
    }

    #[inline(always)]
    fn seq(&mut self, node: u32) -> Option<&'t [u32]> {
        self.visits += 1;
        self.tree.seq(node)
    }

    fn texts(&mut self, node: u32) -> Option<Vec<Cow<'t, str>>> {
        let items = self.seq(node)?;
        items.iter().map(|&item| self.text(item)).collect()
    }

    /// A user value: its JSON as rendered, through `RawValue`'s own `Deserialize` (which the
    /// serde read calls without entering the node).
    fn raw(&self, node: u32) -> Option<&'t RawValue> {
        let (start, end) = *self.tree.raw.get(node as usize)?;
        if (start, end) == NONE {
            return None;
        }
        <&RawValue>::deserialize(RawJson(&self.values[start as usize..end as usize])).ok()
    }

    /// A dict of strings, or an object tuple of them (`Tree::object`).
    fn headers(&mut self, node: u32) -> Option<BTreeMap<Cow<'t, str>, Cow<'t, str>>> {
        let mut headers = BTreeMap::new();
        match self.enter(node) {
            Node::Dict(d) => {
                for &(name, value) in &self.tree.dicts[d as usize] {
                    let name = self.text(name)?;
                    headers.insert(name, self.text(value)?);
                }
            }
            Node::Tuple(..) => {
                let (names, values) = self.tree.object(node)?.ok()?;
                for (&name, &value) in names.iter().zip(values) {
                    let name = self.text(name)?;
                    headers.insert(name, self.text(value)?);
                }
            }
            _ => return None,
        }
        Some(headers)
    }

    /// Appends the record `(context, state, seq, prev_seq, unix_nanos, duration_ns, file, line,
    /// kind, fields)`, or its flat form `(…, kind, *fields)` (`Tree::record_parts`), to `events`
    /// and takes the visits it took from the tree's, or does neither and answers false (a
    /// record of another shape, or not enough visits left).
    pub(super) fn record(
        self,
        node: u32,
        events: &mut Vec<Result<EventRecord<'t>, String>>,
    ) -> bool {
        let tree = self.tree;
        let Some((event, visits)) = self.read(node) else {
            return false;
        };
        let left = tree.visits_left.get();
        if visits > left {
            return false;
        }
        tree.visits_left.set(left - visits);
        events.push(Ok(event));
        true
    }

    /// The record and the visits it took, without taking them: in either form, the visits of
    /// the nested one (the record, and its fields as a node of their own), as `Span` counts.
    #[inline(always)]
    fn read(mut self, node: u32) -> Option<(EventRecord<'t>, u64)> {
        let RecordParts {
            head: &[context, state, seq, prev_seq, unix_nanos, duration_ns, file, line, kind],
            fields,
            ..
        } = self.tree.record_parts(node)?;
        self.visits += 1;
        let context = self.int(context)?;
        let state = self.int(state)?;
        let seq = self.u64(seq)?;
        let prev_seq = self.u64(prev_seq)?;
        let unix_nanos = self.u64(unix_nanos)?;
        let duration_ns = match self.tree.nodes[duration_ns as usize] {
            Node::None => {
                self.visits += 1;
                None
            }
            _ => Some(self.u64(duration_ns)?),
        };
        let file = self.text(file)?;
        let line = self.int(line)?;
        self.visits += 1;
        let name = self.tree.text(kind)?;
        self.visits += 1; // the fields
        let kind = self.kind(name, fields, file, line)?;
        Some((
            EventRecord {
                context,
                state,
                seq,
                prev_seq,
                unix_nanos,
                duration_ns,
                kind: Ok(kind),
            },
            self.visits,
        ))
    }

    /// The kind `name` from its `fields` (`record.rs`'s `KindSeed`), when it is valid.
    fn kind(
        &mut self,
        name: &str,
        fields: &'t [u32],
        file: Cow<'t, str>,
        line: u32,
    ) -> Option<Kind<'t>> {
        Some(match (name, fields) {
            ("StateChange", &[variable, old, new, access, ref stack @ ..]) if stack.len() <= 1 => {
                let variable = self.text(variable)?;
                let (old_value, new_value) = (self.raw(old)?, self.raw(new)?);
                let access = self.text(access)?;
                let stack = match stack.first() {
                    Some(&frames) => match *self.seq(frames)? {
                        [] => Frames::None,
                        [frame] => Frames::One(self.text(frame)?),
                        ref frames => Frames::Many(
                            frames
                                .iter()
                                .map(|&f| self.text(f))
                                .collect::<Option<_>>()?,
                        ),
                    },
                    None => Frames::None,
                };
                Kind::StateChange {
                    variable,
                    old_value,
                    new_value,
                    location: Location { file, line },
                    access_type: AccessType::parse(&access)?,
                    stack,
                }
            }
            ("FunctionCall", &[function_name, module, args]) => Kind::FunctionCall {
                function_name: self.text(function_name)?,
                module: self.text(module)?,
                args: self.raw(args)?,
                file,
                line,
            },
            ("AsyncSpawn", &[task_id, spawned_by]) => {
                let (task_id, spawned_by) = (self.text(task_id)?, self.text(spawned_by)?);
                TraceId::parse_uuid(&task_id)?;
                Kind::AsyncSpawn {
                    task_id,
                    spawned_by,
                }
            }
            ("AsyncAwait", &[future_id, awaited_at]) => {
                let (future_id, awaited_at) = (self.text(future_id)?, self.text(awaited_at)?);
                TraceId::parse_uuid(&future_id)?;
                Kind::AsyncAwait {
                    future_id,
                    awaited_at,
                }
            }
            ("LockAcquire", &[lock_id, lock_type]) => Kind::LockAcquire {
                lock_id: self.text(lock_id)?,
                lock_type: self.text(lock_type)?,
                location: Location { file, line },
            },
            ("LockRelease", &[lock_id, lock_type]) => Kind::LockRelease {
                lock_id: self.text(lock_id)?,
                lock_type: self.text(lock_type)?,
                location: Location { file, line },
            },
            ("MemoryFence", &[ordering]) => Kind::MemoryFence {
                ordering: Ordering::parse(&self.text(ordering)?)?,
                location: Location { file, line },
            },
            ("HttpRequest", &[method, url, headers, body]) => Kind::HttpRequest {
                method: self.text(method)?,
                url: self.text(url)?,
                headers: self.headers(headers)?,
                body: self.raw(body)?,
            },
            ("HttpResponse", &[status, headers, body, duration_ms]) => Kind::HttpResponse {
                status: self.int(status)?,
                headers: self.headers(headers)?,
                body: self.raw(body)?,
                duration_ms: self.u64(duration_ms)?,
            },
            ("DatabaseQuery", &[query, database, duration_ms]) => Kind::DatabaseQuery {
                query: self.text(query)?,
                database: self.text(database)?,
                duration_ms: self.u64(duration_ms)?,
            },
            ("DatabaseResult", &[rows_affected]) => Kind::DatabaseResult {
                rows_affected: self.u64(rows_affected)?,
            },
            ("Error", &[error_type, message, stack_trace]) => Kind::Error {
                error_type: self.text(error_type)?,
                message: self.text(message)?,
                stack_trace: self.texts(stack_trace)?,
            },
            ("Custom", &[name, data]) => Kind::Custom {
                name: self.text(name)?,
                data: self.raw(data)?,
            },
            _ => return None,
        })
    }
}

/// A value's JSON, as the one thing serde_json's `RawValue` asks a deserializer for (what `At`
/// gives it for a rendered value, without the node).
struct RawJson<'t>(&'t str);

impl<'t> Deserializer<'t> for RawJson<'t> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'t>>(self, _: V) -> Result<V::Value, Error> {
        Err(Error("not a raw value".to_owned()))
    }

    fn deserialize_newtype_struct<V: Visitor<'t>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_map(RawValueMap { json: Some(self.0) })
    }

    forward_to_deserialize_any! {
        <W: Visitor<'t>>
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string option
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}
