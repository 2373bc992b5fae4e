"""The record log between the hot path and the core.

`track_*` calls append one tuple per event to a deque:
``(context, state, seq, prev_seq, unix_nanos, duration_ns, file, line, kind, fields)``.
The flusher thread drains tuples and writes each part of them for the core in one of two
forms (docs/record-format.md): `encode_pickle`, the pickle form that ``encode-batch-pickle``
and ``observe-pickle`` read (the default: about three times cheaper to write), or `encode`,
the compact JSON that ``encode-batch`` and ``observe`` read (every other host's form, and the
Python host's whenever the core refuses a pickle). Both give the core the same batch, and the
core answers both alike. Contexts and states are shared objects, so they are written once per
batch in tables and events refer to them by index.
"""

from __future__ import annotations

import io
import json
import pickle
from operator import itemgetter
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from ._values import snapshot, valid_text
from .context import ExecutionContext

Record = Tuple[Any, ...]
"""``(context, state, seq, prev_seq, unix_nanos, duration_ns, file, line, kind, fields)``."""

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
    """Compact JSON for ``encode-batch``: ``{"contexts", "states", "events"}``.

    Each record is written exactly as `_settled` would leave it, whichever path writes it, so
    an event's JSON never depends on the other events of its batch (docs/values.md, "One
    value, one wire form"). The fast path writes the records as they are and then checks
    for the only two things in them that it writes differently: an integer beyond 64 bits
    that the hot path kept as it came, and a lone surrogate in a string the hot path kept as
    it came (a short name). Either one, or anything json cannot write (NaN, an infinity, an
    object, a cycle: ``ValueError``, ``KeyError``, ``TypeError``, ``RecursionError``, which
    `encode_safely` catches), sends the batch to the settling path. ``sanitize=True`` takes
    the settling path directly (the flusher's retry when the core refused a batch)."""
    if sanitize:
        return _encode_sanitized(records)
    # No Python loop over the records, and no Python function called per record: the distinct
    # contexts and states are collected by C-level passes, and json's C encoder writes each
    # record as it is, calling the table's `dict.__getitem__` (a C function) for the two objects
    # it cannot write, which become indexes into the tables.
    contexts, states, index = _tables(records)
    # No check for reference cycles (it costs a dict insert and delete per tuple, ~0.25 µs per
    # record): user values are snapshots, copied acyclic on the hot path (`_values`), and a
    # cycle would still end in RecursionError, which `encode_safely` handles.
    events = json.dumps(
        records, default=index.__getitem__, separators=(",", ":"), allow_nan=False, check_circular=False
    )
    if _has_big_int(records) or ("\\ud" in events and _has_lone_surrogate(records)):
        return _encode_sanitized(records)
    context_rows = _dumps([_context_row(c) for c in contexts])
    state_rows = _dumps([_state_row(s) for s in states])
    return f'{{"contexts":{context_rows},"states":{state_rows},"events":{events}}}'


def _tables(records: Sequence[Record]) -> Tuple[List[ExecutionContext], List[Any], Dict[Any, int]]:
    """The batch's distinct contexts and states, in order of first use, and each one's index
    in its table (both forms write a record's context and state as these indexes). C-level
    passes only: no Python function is called per record."""
    contexts = list(dict.fromkeys(map(_context_of, records)))
    states = list(dict.fromkeys(map(_state_of, records)))
    index: Dict[Any, int] = {obj: i for i, obj in enumerate(contexts)}
    index.update((obj, i) for i, obj in enumerate(states))
    return contexts, states, index


def _state_row(state: Any) -> Dict[str, Any]:
    return {"clock": state.clock, "locks": state.locks}


_fields_of = itemgetter(9)


def _has_big_int(records: Sequence[Record]) -> bool:
    """Whether a record's fields hold, at their top level, an ``int`` beyond 64 bits: the hot
    path keeps ints as they come (`client._PLAIN`), and json would write one as a number.
    (Ints inside containers were converted on the hot path.) A plain loop: measured cheaper
    than the C-level passes tried (filter/compress/max over the fields)."""
    for fields in map(_fields_of, records):
        for v in fields:
            if type(v) is int and not -9223372036854775808 <= v < 18446744073709551616:  # -2**63, 2**64
                return True
    return False


def _has_lone_surrogate(records: Sequence[Record]) -> bool:
    """Whether a string the hot path kept as it came (a short name, a file name, a stack
    frame) holds a lone surrogate, which the core would refuse (the event would be dropped).
    Asked only when the JSON holds a ``\\ud`` escape: ``ensure_ascii`` writes lone surrogates
    that way, but also every character beyond U+FFFF (as a pair)."""
    for record in records:
        if valid_text(record[6]) is not record[6]:
            return True
        for v in record[9]:
            if v.__class__ is str:
                if valid_text(v) is not v:
                    return True
            elif v.__class__ is tuple and any(valid_text(x) is not x for x in v if x.__class__ is str):
                return True
    return False


_context_of = itemgetter(0)
_state_of = itemgetter(1)


def _context_row(ctx: ExecutionContext) -> Dict[str, Any]:
    return {
        "trace_id": ctx.trace_id,
        "thread_id": ctx.thread_id,
        "component": ctx.component,
        "span_id": ctx.span_id,
        "upstream_span_id": ctx.upstream_span_id,
        "id_base": ctx.id_base,
    }


def _encode_sanitized(records: Sequence[Record]) -> str:
    """The settling path: the same JSON as the fast path for every record the fast path can
    write, and for the rest each field settled on its own (`_settled`). Values were converted
    on the hot path; converting them again would cut a cut string again and count one value's
    budget against its neighbours', so nothing is converted twice."""
    contexts: Dict[Any, int] = {}
    context_table: List[Dict[str, Any]] = []
    states: Dict[Any, int] = {}
    state_table: List[Dict[str, Any]] = []
    events: List[Tuple[Any, ...]] = []
    for ctx, state, seq, prev, nanos, duration, file, line, kind, fields in records:
        ci = contexts.get(ctx)
        if ci is None:
            ci = contexts[ctx] = len(context_table)
            context_table.append(_context_row(ctx))
        si = states.get(state)
        if si is None:
            si = states[state] = len(state_table)
            state_table.append(_state_row(state))
        events.append((ci, si, seq, prev, nanos, duration, valid_text(file), line, kind, tuple(map(_settled, fields))))
    try:
        return _dumps({"contexts": context_table, "states": state_table, "events": events})
    except (ValueError, TypeError, RecursionError):  # an object no track_* method converted
        events = [(*e[:9], tuple(map(_writable, e[9]))) for e in events]
        return _dumps({"contexts": context_table, "states": state_table, "events": events})


def _settled(value: Any) -> Any:
    """One field of a record as it goes on the wire, a function of the field alone.

    The hot path stores a user value either converted (`snapshot`) or, when it is an
    ``int``, ``float``, ``bool`` or ``None``, as it came; and a name either through
    `_values.text` or, when it is a short ``str``, as it came. This finishes what it left:
    an int or float becomes ``snapshot(value)`` (an int beyond 64 bits its decimal string,
    NaN and infinities ``"nan"``, ``"inf"``, ``"-inf"``; any other one itself), a string
    loses its lone surrogates (`valid_text`), a tuple (a stack) is settled item by item.
    Anything else was converted when it was recorded and is left as it is."""
    cls = value.__class__
    if cls is int or cls is float:
        return snapshot(value)
    if cls is str:
        return valid_text(value)
    if cls is tuple:
        return tuple(map(_settled, value))
    return value


def _writable(value: Any) -> Any:
    """A settled field that json still cannot write (an object or a cycle that reached a record
    unconverted: a bug, not a user value) becomes its conversion; the others stay as they are."""
    try:
        _dumps(value)
        return value
    except (ValueError, TypeError, RecursionError):
        return snapshot(value)


def encode_safely(records: Sequence[Record]) -> str:
    """`encode`, taking the settling path when json cannot write a record as it is (NaN, an
    infinity; an unconverted object or a cycle, which no ``track_*`` method lets through)."""
    try:
        return encode(records)
    except (ValueError, TypeError, KeyError, RecursionError):
        return encode(records, sanitize=True)


MAX_PICKLE_BYTES = 1024 * 1024
"""Largest pickle handed to the core, in bytes (its own bound is 2 MiB of the string's UTF-8,
where a byte from 0x80 takes two); a larger part goes as JSON,
which `encode_parts` splits by size."""


class _Pickler(pickle.Pickler):
    """Writes a batch with the contexts and states as their table indexes: `reducer_override`
    is called only for objects pickle has no built-in way to write (the C pickler writes ints,
    strings, tuples, lists and dicts itself), and once per object (the result is memoized).
    An object that is not in the tables raises ``KeyError``: the batch goes as JSON."""

    index: Dict[Any, int]

    def reducer_override(self, obj: Any) -> Any:
        if obj is int:  # the global the indexes are written with
            return NotImplemented
        return (int, (self.index[obj],))


def encode_pickle(records: Sequence[Record]) -> Optional[str]:
    """The batch in the pickle form the core's ``encode-batch-pickle`` and ``observe-pickle``
    read (docs/record-format.md): ``{"contexts", "states", "events"}`` as `encode` writes them,
    pickled with protocol 5, its bytes as one character each (latin-1), since the core's
    arguments are strings. None when the batch cannot be pickled this way (an object that is
    not a context or a state, an object pickle refuses) or the pickle passes
    `MAX_PICKLE_BYTES`: the caller then sends the JSON form (`encode_parts`).

    The core reads only what pickle writes for the values `encode` writes as they are, and
    refuses a batch with anything `encode` would settle first (an int beyond 64 bits, a lone
    surrogate, NaN or an infinity, a dict key that is not a string): so a pickled batch gives
    exactly the answer of its JSON form, and one the core refuses is sent as JSON."""
    contexts, states, index = _tables(records)
    batch = {
        "contexts": [_context_row(c) for c in contexts],
        "states": [_state_row(s) for s in states],
        "events": records,
    }
    out = io.BytesIO()
    pickler = _Pickler(out, 5)
    pickler.index = index
    try:
        pickler.dump(batch)
    except Exception:  # an unconverted object (KeyError), or one pickle refuses: the JSON form copes
        return None
    if out.tell() > MAX_PICKLE_BYTES:
        return None
    return out.getvalue().decode("latin-1")


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
        stack = [records[start : start + per_call]]
        while stack:
            part = stack.pop()
            text = encode_safely(part)
            if len(text) > max_chars and len(part) > 1:
                mid = len(part) // 2
                stack.append(part[mid:])
                stack.append(part[:mid])
                continue
            yield text, part
