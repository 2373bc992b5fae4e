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
from .context import ExecutionContext, State

Record = tuple

_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode

MAX_BATCH_CHARS = 4 * 1024 * 1024
"""Largest record log handed to the core in one call. Each user value is bounded
(docs/values.md), but 4096 records of large values could still be hundreds of megabytes: the
core's memory limit would make that a trap, so big batches are split first."""


def encode(records: Sequence[Record], sanitize: bool = False) -> str:
    """Compact JSON for ``encode-batch``. With ``sanitize``, every user value is converted again
    (the fallback for a batch that the fast path could not encode, e.g. one holding NaN)."""
    if sanitize:
        return _encode_sanitized(records)
    tables = _Tables()
    # The records are dumped as they are: json's C encoder walks them and calls `tables.index`
    # only for the two objects it cannot write, the context and the state, which become
    # indexes into the tables. No Python loop over the records.
    events = json.dumps(records, default=tables.index, separators=(",", ":"), allow_nan=False)
    return f'{{"contexts":{_dumps(tables.contexts)},"states":{_dumps(tables.states)},"events":{events}}}'


class _Tables:
    """The context and state tables of one batch, filled as the encoder meets them."""

    __slots__ = ("seen", "contexts", "states")

    def __init__(self) -> None:
        self.seen: Dict[int, int] = {}
        self.contexts: List[dict] = []
        self.states: List[dict] = []

    def index(self, obj: Any) -> int:
        i = self.seen.get(id(obj))  # the records keep every obj alive: ids cannot be reused
        if i is not None:
            return i
        if obj.__class__ is State:
            i = len(self.states)
            self.states.append({"clock": obj.clock, "locks": obj.locks})
        elif obj.__class__ is ExecutionContext:
            i = len(self.contexts)
            self.contexts.append(_context_row(obj))
        else:
            raise TypeError(f"{type(obj).__name__} is not JSON serializable")
        self.seen[id(obj)] = i
        return i


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
