"""The record log between the hot path and the core.

`track_*` calls append one flat tuple per event to a deque:
``(context, state, seq, prev_seq, unix_nanos, duration_ns, file, line, kind, *fields)``, the
kind's fields (docs/record-format.md) from index `FIELDS` on, where ``context`` is the
context's `ContextRow` and ``state`` its `State`, both tuples of strings and ints made once and
shared. So a record holds no object the cyclic GC must track, and no tuple made with it: its
first young collection untracks it, and it waits in the log without weighing on later
collections. (Fields in a nested tuple, the form of the JSON and of older hosts, kept every
record tracked into the next generation: CPython's collector looks at a record before the
tuple inside it, which it untracks only in that same pass. Measured on a log growing to 80,000
records: the GC's share of the hot path went from 0.2-0.3 µs per record to ~0.1.)
The flusher thread drains tuples and writes each part of them for the core in one of two
forms (docs/record-format.md): `encode_pickle`, the pickle form that ``encode-batch-pickle``
and ``observe-pickle`` read (the default: about three times cheaper to write), or `encode`,
the compact JSON that ``encode-batch`` and ``observe`` read (every other host's form, and the
Python host's whenever the core refuses a pickle). Both give the core the same batch, and the
core answers both alike. The JSON form writes each distinct context and state once per batch in
tables and events refer to them by index; the pickle form writes them inline, where pickle's
memo makes every repeat a two-byte reference to the first.
"""

from __future__ import annotations

import io
import json
import pickle
from operator import itemgetter
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from ._values import as_json, entries, snapshot, valid_text
from .context import CLOCK, LOCKS, ContextRow, State

Record = Tuple[Any, ...]
"""``(context, state, seq, prev_seq, unix_nanos, duration_ns, file, line, kind, *fields)``, with
the context as its `ContextRow` and the state as its `State`."""

FIELDS = 9
"""Where a record's fields begin."""

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
    # The distinct contexts and states are collected by C-level passes; each record is then
    # written with its context and state as their table indexes, and json's C encoder writes
    # the rest as it is.
    contexts, states, index = _tables(records)
    # No check for reference cycles (it costs a dict insert and delete per tuple, ~0.25 µs per
    # record): user values are snapshots, copied acyclic on the hot path (`_values`), and a
    # cycle would still end in RecursionError, which `encode_safely` handles.
    at = index.__getitem__
    fields = list(map(_json_fields, records))  # the JSON form nests them (docs/record-format.md)
    events = json.dumps(
        [(at(id(r[0])), at(id(r[1]))) + r[2:FIELDS] + (f,) for r, f in zip(records, fields, strict=True)],
        separators=(",", ":"),
        allow_nan=False,
        check_circular=False,
    )
    if _has_big_int(fields) or ("\\ud" in events and _has_lone_surrogate(records)):
        return _encode_sanitized(records)
    context_rows = _dumps([_context_row(c) for c in contexts])
    state_rows = _dumps([_state_row(s) for s in states])
    return f'{{"contexts":{context_rows},"states":{state_rows},"events":{events}}}'


def _tables(records: Sequence[Record]) -> Tuple[List[ContextRow], List[State], Dict[int, int]]:
    """The batch's distinct contexts and states, in order of first use, and each one's index
    in its table by the ``id`` of its tuple (a context's row and a state are made once and
    shared, so identity is what tells them apart, without hashing their contents). C-level
    passes only: no Python function is called per record."""
    rows = dict(zip(map(id, map(_context_of, records)), map(_context_of, records), strict=True))
    states = dict(zip(map(id, map(_state_of, records)), map(_state_of, records), strict=True))
    index: Dict[int, int] = {key: i for i, key in enumerate(rows)}
    index.update((key, i) for i, key in enumerate(states))
    return list(rows.values()), list(states.values()), index


def _state_row(state: State) -> Dict[str, Any]:
    return {"clock": state[CLOCK], "locks": state[LOCKS]}


_fields_of = itemgetter(slice(FIELDS, None))


def _json_fields(record: Record) -> Tuple[Any, ...]:
    """A record's fields as the JSON form has them: user values in their record form (object
    tuples: `raceway._values.as_json`) back as the dicts they stand for."""
    fields: Tuple[Any, ...] = record[FIELDS:]
    if tuple in map(type, fields):
        return tuple([as_json(v) if v.__class__ is tuple else v for v in fields])
    return fields


def _has_big_int(fields: Sequence[Tuple[Any, ...]]) -> bool:
    """Whether records' ``fields`` hold, at their top level, an ``int`` beyond 64 bits: the hot
    path keeps ints as they come (`client._PLAIN`), and json would write one as a number.
    (Ints inside containers were converted on the hot path.) A plain loop: measured cheaper
    than the C-level passes tried (filter/compress/max over the fields)."""
    for f in fields:
        for v in f:
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
        for v in record[FIELDS:]:
            if v.__class__ is str:
                if valid_text(v) is not v:
                    return True
            elif v.__class__ is tuple and any(valid_text(x) is not x for x in v if x.__class__ is str):
                return True
    return False


_context_of = itemgetter(0)
_state_of = itemgetter(1)


_CONTEXT_KEYS = ("trace_id", "thread_id", "component", "span_id", "upstream_span_id", "id_base")


def _context_row(row: ContextRow) -> Dict[str, Any]:
    return dict(zip(_CONTEXT_KEYS, row, strict=True))


def _encode_sanitized(records: Sequence[Record]) -> str:
    """The settling path: the same JSON as the fast path for every record the fast path can
    write, and for the rest each field settled on its own (`_settled`). Values were converted
    on the hot path; converting them again would cut a cut string again and count one value's
    budget against its neighbours', so nothing is converted twice."""
    contexts, states, index = _tables(records)
    context_table = [_context_row(c) for c in contexts]
    state_table = [_state_row(s) for s in states]
    events = [
        (
            index[id(row)],
            index[id(state)],
            seq,
            prev,
            nanos,
            duration,
            valid_text(file),
            line,
            kind,
            tuple(map(_settled, fields)),
        )
        for row, state, seq, prev, nanos, duration, file, line, kind, *fields in records
    ]
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
    loses its lone surrogates (`valid_text`), a tuple (a stack, a converted list) is settled
    item by item and an object tuple (a converted dict) becomes the dict it stands for, settled
    entry by entry. Anything else was converted when it was recorded and is left as it is."""
    cls = value.__class__
    if cls is int or cls is float:
        return snapshot(value)
    if cls is str:
        return valid_text(value)
    if cls is tuple:
        if value and value[0].__class__ is bytes:
            return {_settled(k): _settled(v) for k, v in entries(value)}
        return tuple(map(_settled, value))
    return value


def _writable(value: Any) -> Any:
    """A settled field that json still cannot write (an object or a cycle that reached a record
    unconverted: a bug, not a user value) becomes its conversion; the others stay as they are."""
    try:
        _dumps(value)
        return value
    except (ValueError, TypeError, RecursionError):
        return as_json(snapshot(value))


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
    """Writes a batch of records as they are. The C pickler writes ints, floats, strings,
    tuples, lists and dicts itself; `reducer_override` is called only for any other object,
    which a record should never hold (every ``track_*`` method converts user values): it
    refuses it, before pickle could call the object's own ``__reduce__``, and the batch goes
    as JSON, whose settling path converts it."""

    def reducer_override(self, obj: Any) -> Any:
        raise _NotPlain(type(obj).__name__)


class _NotPlain(Exception):
    pass


def encode_pickle(records: Sequence[Record]) -> Optional[str]:
    """The batch in the pickle form the core's ``encode-batch-pickle`` and ``observe-pickle``
    read (docs/record-format.md): ``{"contexts": [], "states": [], "events": records}``, the
    records as the hot path made them, each with its context's `ContextRow` and its `State`
    inline (pickle writes each distinct tuple once and a memo reference for every repeat),
    pickled with protocol 5, its bytes as one character each (latin-1), since the core's
    arguments are strings. None when a record holds an object that is not plain data, or the
    pickle passes `MAX_PICKLE_BYTES`: the caller then sends the JSON form (`encode_parts`).

    The core reads only what pickle writes for the values `encode` writes as they are, and
    refuses a batch with anything `encode` would settle first (an int beyond 64 bits, a lone
    surrogate, NaN or an infinity, a dict key that is not a string): so a pickled batch gives
    exactly the answer of its JSON form, and one the core refuses is sent as JSON."""
    out = io.BytesIO()
    try:
        _Pickler(out, 5).dump({"contexts": [], "states": [], "events": records})
    except Exception:  # an unconverted object, or one pickle refuses: the JSON form copes
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
