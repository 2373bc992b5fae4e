"""The record log between the hot path and the core.

`track_*` calls append one tuple per event to a deque:
``(context, state, seq, prev_seq, unix_nanos, duration_ns, file, line, kind, fields)``.
The flusher thread drains tuples and `encode` turns them into the compact JSON the core's
``encode-batch`` reads (format: docs/record-format.md). Contexts and states are shared objects,
so they are written once per batch in tables and events refer to them by index.
"""

from __future__ import annotations

import json
from operator import itemgetter
from typing import Any, Dict, Iterator, List, Sequence, Tuple

from ._values import clean_str, snapshot
from .context import ExecutionContext

Record = tuple

_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode

PART_RECORDS = 160
"""Records per ``encode-batch`` call, at most. A call has a fixed cost (~15 µs), but big calls
cost more per event: their answers (~700 bytes of bodies per event) are copied out of the
component and into Python in buffers that glibc's allocator maps and unmaps afresh each time
once they pass ~128 KB, and the page faults cost more than the copies. Measured through the
pipeline benchmark (2 cores): core time per event 1.5 µs at 100-200 records per call (~5k page
faults per million events), 2.0-2.2 µs at 500-1000 (300-400k page faults), 1.9 µs at 4096."""

MAX_BATCH_CHARS = 4 * 1024 * 1024
"""Largest record log handed to the core in one call. Each user value is bounded
(docs/values.md), but a part of large values could still be hundreds of megabytes: the
core's memory limit would make that a trap, so big batches are split first."""


def encode(records: Sequence[Record], sanitize: bool = False) -> str:
    """Compact JSON for ``encode-batch``. With ``sanitize``, every user value is converted again
    (the fallback for a batch that the fast path could not encode, e.g. one holding NaN)."""
    if sanitize:
        return _encode_sanitized(records)
    # No Python loop over the records, and no Python function called per record: the distinct
    # contexts and states are collected by C-level passes, and json's C encoder writes each
    # record as it is, calling the table's `dict.__getitem__` (a C function) for the two objects
    # it cannot write, which become indexes into the tables.
    contexts = list(dict.fromkeys(map(_context_of, records)))
    states = list(dict.fromkeys(map(_state_of, records)))
    index: Dict[Any, int] = {obj: i for i, obj in enumerate(contexts)}
    index.update((obj, i) for i, obj in enumerate(states))
    # No check for reference cycles (it costs a dict insert and delete per tuple, ~0.25 µs per
    # record): user values are snapshots, copied acyclic on the hot path (`_values`), and a
    # cycle would still end in RecursionError, which `encode_safely` handles.
    events = json.dumps(
        records, default=index.__getitem__, separators=(",", ":"), allow_nan=False, check_circular=False
    )
    context_rows = _dumps([_context_row(c) for c in contexts])
    state_rows = _dumps([{"clock": s.clock, "locks": s.locks} for s in states])
    return f'{{"contexts":{context_rows},"states":{state_rows},"events":{events}}}'


_context_of = itemgetter(0)
_state_of = itemgetter(1)


def _context_row(ctx: ExecutionContext) -> dict:
    return {
        "trace_id": ctx.trace_id,
        "thread_id": ctx.thread_id,
        "component": ctx.component,
        "span_id": ctx.span_id,
        "upstream_span_id": ctx.upstream_span_id,
        "id_base": ctx.id_base,
    }


def _encode_sanitized(records: Sequence[Record]) -> str:
    contexts: Dict[Any, int] = {}
    context_table: List[dict] = []
    states: Dict[Any, int] = {}
    state_table: List[dict] = []
    events: List[tuple] = []
    for ctx, state, seq, prev, nanos, duration, file, line, kind, fields in records:
        ci = contexts.get(ctx)
        if ci is None:
            ci = contexts[ctx] = len(context_table)
            context_table.append(_context_row(ctx))
        si = states.get(state)
        if si is None:
            si = states[state] = len(state_table)
            state_table.append({"clock": state.clock, "locks": state.locks})
        events.append((ci, si, seq, prev, nanos, duration, clean_str(file), line, kind, snapshot(fields)))
    return _dumps({"contexts": snapshot(context_table), "states": snapshot(state_table), "events": events})


def encode_safely(records: Sequence[Record]) -> str:
    """`encode`, falling back to the sanitizing path when a value JSON cannot carry slipped
    through the hot path's cheap checks (NaN, infinity)."""
    try:
        return encode(records)
    except (ValueError, TypeError, KeyError, RecursionError):
        return encode(records, sanitize=True)


def part_size(per_body: int) -> int:
    """Records per ``encode-batch`` call for bodies of ``per_body`` events: the largest multiple
    of ``per_body`` up to `PART_RECORDS` (so no call leaves a short body behind), at least one
    body's worth."""
    return max(1, per_body) * max(1, PART_RECORDS // max(1, per_body))


def encode_parts(
    records: Sequence[Record], per_call: int = PART_RECORDS, max_chars: int = MAX_BATCH_CHARS
) -> Iterator[Tuple[str, Sequence[Record]]]:
    """``(json, records)`` pieces of at most ``per_call`` records and ``max_chars`` characters
    each (a single record may exceed it), in order. The JSON is ASCII (``ensure_ascii``), so
    characters are bytes."""
    per_call = max(1, per_call)
    for start in range(0, len(records), per_call):
        stack = [records[start:start + per_call]]
        while stack:
            part = stack.pop()
            text = encode_safely(part)
            if len(text) > max_chars and len(part) > 1:
                mid = len(part) // 2
                stack.append(part[mid:])
                stack.append(part[:mid])
                continue
            yield text, part
