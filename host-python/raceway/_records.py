"""The record log between the hot path and the core.

`track_*` calls append one tuple per event to a deque:
``(context, state, seq, prev_seq, unix_nanos, duration_ns, file, line, kind, fields)``.
The flusher thread drains tuples and `encode` turns them into the compact JSON the core's
``encode-batch`` reads (format: docs/record-format.md). Contexts and states are shared objects,
so they are written once per batch in tables and events refer to them by index.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator, List, Sequence, Tuple

from ._values import clean_str, snapshot

Record = tuple

_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode

MAX_BATCH_CHARS = 4 * 1024 * 1024
"""Largest record log handed to the core in one call. Each user value is bounded
(docs/values.md), but 4096 records of large values could still be hundreds of megabytes: the
core's memory limit would make that a trap, so big batches are split first."""


def encode(records: Sequence[Record], sanitize: bool = False) -> str:
    """Compact JSON for ``encode-batch``. With ``sanitize``, every user value is converted again
    (the fallback for a batch that the fast path could not encode, e.g. one holding NaN)."""
    contexts: Dict[Any, int] = {}
    context_table: List[dict] = []
    states: Dict[Any, int] = {}
    state_table: List[dict] = []
    events: List[tuple] = []
    for ctx, state, seq, prev, nanos, duration, file, line, kind, fields in records:
        ci = contexts.get(ctx)
        if ci is None:
            ci = contexts[ctx] = len(context_table)
            context_table.append(
                {
                    "trace_id": ctx.trace_id,
                    "thread_id": ctx.thread_id,
                    "component": ctx.component,
                    "span_id": ctx.span_id,
                    "upstream_span_id": ctx.upstream_span_id,
                    "id_base": ctx.id_base,
                }
            )
        si = states.get(state)
        if si is None:
            si = states[state] = len(state_table)
            state_table.append({"clock": state.clock, "locks": state.locks})
        if sanitize:
            file = clean_str(file)
            fields = snapshot(fields)
        events.append((ci, si, seq, prev, nanos, duration, file, line, kind, fields))
    batch = {"contexts": context_table, "states": state_table, "events": events}
    if sanitize:
        batch["contexts"] = snapshot(context_table)
        batch["states"] = snapshot(state_table)
    return _dumps(batch)


def encode_safely(records: Sequence[Record]) -> str:
    """`encode`, falling back to the sanitizing path when a value JSON cannot carry slipped
    through the hot path's cheap checks (NaN, infinity)."""
    try:
        return encode(records)
    except (ValueError, TypeError, RecursionError):
        return encode(records, sanitize=True)


def encode_parts(records: Sequence[Record], max_chars: int = MAX_BATCH_CHARS) -> Iterator[Tuple[str, Sequence[Record]]]:
    """``(json, records)`` pieces of at most ``max_chars`` each (a single record may exceed it),
    in order. The JSON is ASCII (``ensure_ascii``), so characters are bytes."""
    stack = [records]
    while stack:
        part = stack.pop()
        text = encode_safely(part)
        if len(text) > max_chars and len(part) > 1:
            mid = len(part) // 2
            stack.append(part[mid:])
            stack.append(part[:mid])
            continue
        yield text, part
