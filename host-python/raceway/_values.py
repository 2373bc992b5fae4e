"""Turning whatever users pass (`args`, `old_value`, `new_value`, bodies) into JSON the server
accepts. Never raises: an object JSON cannot carry becomes its ``repr``, and sizes are bounded.

Limits (documented in docs/values.md):
- strings longer than `MAX_STRING` characters are cut and marked ``…[+N chars]``;
- containers keep their first `MAX_ITEMS` items (a marker item says how many were left out);
- nesting deeper than `MAX_DEPTH`, and cycles, become ``"<…>"`` markers;
- one converted value holds at most `MAX_NODES` values and `MAX_CHARS` characters of text
  in all: without a total, 100 items per level over 8 levels could still be 10^16 values;
- ``bytes`` become ``"b'…'"`` (their repr, cut like strings); NaN and infinities become strings;
- integers beyond 64 bits become their decimal string (the server's numbers are 64-bit),
  at the top as inside containers;
- dict keys become strings; sets and tuples become lists.

The form a converted value takes in a record is immutable: a list is a ``tuple``, a dict an
*object tuple*, `OBJECT` followed by its keys and then its values (``{"a": 1, "b": 2}`` is
``(b"", "a", "b", 1, 2)``: made without a tuple per entry; `as_json` turns one back).
Python's cyclic GC never untracks a tuple that holds a dict or a list, so a record holding one
was walked by every collection until it left the log (a full collection walks them all); a
tuple of strings, numbers and such tuples is untracked in a collection or two. The core reads
an object tuple as the object it stands for (docs/record-format.md, "Objects").

`snapshot` is the one conversion: what goes on the wire for a value is ``snapshot(value)``,
whichever path encodes its batch and whatever else the batch holds (`_records`). The hot path
skips the call for ``int``, ``float``, ``bool`` and ``None``; the encoder finishes those.

Mutable values are converted when the event is recorded, so the event shows the value as it was
then, not as it is when the batch leaves.
"""

from __future__ import annotations

import itertools
import math
import traceback
from typing import Any, Dict, FrozenSet, Iterable, Iterator, List, Optional, Set, Tuple, TypeVar, overload

_T = TypeVar("_T")

MAX_STRING = 4096
MAX_ITEMS = 100
MAX_DEPTH = 8
MAX_NODES = 1000
"""Values (containers, strings, numbers) in one converted value, all levels together."""
MAX_CHARS = 65536
"""Characters of text (strings and keys) in one converted value, all levels together."""

_INT_MIN = -(2**63)
_INT_END = 2**64  # the server reads integers as i64 or u64

OBJECT = b""
"""The head of an object tuple. No converted value holds ``bytes`` (they become text), so a
tuple that starts with bytes is an object and nothing else."""
EMPTY_OBJECT: Tuple[Any, ...] = (OBJECT,)
"""``{}`` in a record (`track_function_call`'s ``args`` when there are none, no headers)."""


def as_object(entries: Dict[str, Any]) -> Tuple[Any, ...]:
    """The object tuple of a dict whose keys are strings and values already converted."""
    return (OBJECT, *entries, *entries.values()) if entries else EMPTY_OBJECT


def entries(value: Tuple[Any, ...]) -> Iterator[Tuple[Any, Any]]:
    """The ``(key, value)`` pairs of an object tuple. An object tuple of a key without its
    value, which no conversion makes, loses that key."""
    n = len(value) // 2
    return zip(value[1 : n + 1], value[n + 1 :], strict=False)


def as_json(value: Any) -> Any:
    """A converted value as JSON has it: each object tuple the dict it stands for, each tuple
    that holds one a list (json writes the other tuples as arrays already). Never raises."""
    if value.__class__ is not tuple or not value:
        return value
    if value[0].__class__ is bytes:
        return {k: as_json(v) for k, v in entries(value)}
    if tuple in map(type, value):
        return [as_json(v) for v in value]
    return value


def cut(s: str, limit: int = MAX_STRING) -> str:
    if len(s) <= limit:
        return s
    return f"{s[:limit]}…[+{len(s) - limit} chars]"


def clean_str(s: str, limit: int = MAX_STRING) -> str:
    """Bounded, and valid UTF-8 (lone surrogates, e.g. from ``surrogateescape``, are escaped)."""
    return valid_text(cut(s, limit))


@overload
def valid_text(s: str) -> str: ...
@overload
def valid_text(s: _T) -> _T: ...
def valid_text(s: Any) -> Any:
    """``s`` with each lone surrogate written as its escape (``"\\udc80"``, six characters),
    so that it is valid UTF-8; the very object ``s`` when it already is (and when it is not a
    ``str``). Never cuts: applied twice, it changes nothing the second time."""
    if s.__class__ is not str or s.isascii():
        return s
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "backslashreplace").decode("utf-8")


def describe_exception(error: BaseException, max_frames: int) -> Tuple[str, str, Tuple[str, ...]]:
    """The fields of an ``Error`` event: the exception's type name, its message, and at most
    ``max_frames`` stack frames as ``file:line in function``, innermost last (a tuple: the
    record form of a list). Never raises."""
    try:
        frames = traceback.extract_tb(error.__traceback__)[-max_frames:] if error.__traceback__ else []
        stack = tuple(clean_str(f"{fr.filename}:{fr.lineno} in {fr.name}") for fr in frames)
    except Exception:  # pragma: no cover - a traceback that cannot be read
        stack = ()
    try:
        message = text(str(error))
    except Exception:  # a __str__ that raises
        message = f"<{type(error).__name__}: str() failed>"
    return (type(error).__name__, message, stack)


def _safe_repr(value: Any, limit: int = MAX_STRING) -> str:
    try:
        return clean_str(repr(value), limit)
    except Exception as e:  # a __repr__ that raises (or returns something odd)
        return f"<unrepresentable {type(value).__name__}: {type(e).__name__}>"


def _big_int(value: int) -> Any:
    """An integer the server can read as a number stays one; a bigger one becomes its digits
    (or, past Python's int-to-str limit, a note of its size)."""
    if _INT_MIN <= value < _INT_END:
        return value
    try:
        return cut(str(value))
    except ValueError:  # more digits than sys.get_int_max_str_digits() allows
        return f"<int of {value.bit_length()} bits>"


def snapshot(value: Any, depth: int = 0, seen: FrozenSet[int] = frozenset()) -> Any:
    """A JSON-safe copy of ``value`` (see the module docstring for the rules) in its record
    form (lists as tuples, dicts as object tuples; `as_json` gives the
    `raceway._core_types.JSONValue`), typed ``Any`` so that callers may keep it where they kept
    the value (``old_value = snapshot(old_value)``). ``seen``: ids of the containers above."""
    cls = type(value)
    if cls is bool or value is None:  # the common scalars, without starting a budget
        return value
    if cls is int:
        return value if _INT_MIN <= value < _INT_END else _big_int(value)
    if cls is str and len(value) <= MAX_STRING:
        return clean_str(value)
    if cls is dict and depth == 0:
        flat = flat_dict(value)
        if flat is not None:
            return flat
    return _Converter().convert(value, depth, seen)


_FLAT_ITEMS = 16
_FLAT_TEXT = 256

_known_keys: Set[str] = set()
"""Keys already checked to be short ASCII strings. Most ``args`` dicts repeat a few literal
keys, and a set lookup (a string caches its hash) is cheaper than checking each key again."""
_MAX_KNOWN_KEYS = 10_000


def flat_dict(value: Dict[Any, Any]) -> Optional[Tuple[Any, ...]]:
    """The common ``args`` shape, ``{"from": "alice", "amount": 100}``: a few short ASCII
    keys with plain scalar values. Such a dict is already JSON-safe and within every limit, so
    one pass that checks and its object tuple replace the general conversion (it runs on the
    application's thread). None when any entry needs the general path."""
    if len(value) > _FLAT_ITEMS:
        return None
    try:
        # One read of the dict (C-level, under the GIL): another thread may change it while it
        # is checked, and the object tuple reads it twice (its keys, then its values).
        value = value.copy()
        if not _known_keys.issuperset(value):
            for k in value:
                if k.__class__ is not str or len(k) > _FLAT_TEXT or not k.isascii():
                    return None
            if len(_known_keys) < _MAX_KNOWN_KEYS:
                _known_keys.update(value)
        for v in value.values():
            t = v.__class__
            if t is str:
                if len(v) > _FLAT_TEXT or not v.isascii():
                    return None
            elif t is int:
                if not _INT_MIN <= v < _INT_END:
                    return None
            elif t is float:
                if v - v != 0.0:  # NaN or an infinity
                    return None
            elif v is not None and t is not bool:
                return None
    except Exception:  # a key whose __hash__ or __eq__ raises: the general path copes
        return None
    return (OBJECT, *value, *value.values()) if value else EMPTY_OBJECT


class _Converter:
    """One conversion, with its budget of values and characters left. The loops check the
    common scalars inline: this runs on the application's thread for every non-scalar value."""

    __slots__ = ("nodes", "chars")

    def __init__(self) -> None:
        self.nodes = MAX_NODES - 1  # the value being converted is the first
        self.chars = MAX_CHARS

    def text(self, s: str) -> str:
        """``s`` cut to the characters left in the budget (and to `MAX_STRING`)."""
        limit = min(MAX_STRING, max(self.chars, 0))
        out = clean_str(s, limit)
        self.chars -= min(len(s), limit)
        return out

    def _int(self, value: int) -> Any:
        big = _big_int(value)
        return self.text(big) if isinstance(big, str) else big

    def convert(self, value: Any, depth: int, seen: FrozenSet[int]) -> Any:
        """``value`` converted; the caller has already counted it against the budget."""
        try:
            if value is None or type(value) is bool:
                return value
            if isinstance(value, bool):
                return bool(value)
            if isinstance(value, int):  # IntEnum and other int subclasses too
                return self._int(int(value))
            if isinstance(value, float):
                return float(value) if math.isfinite(value) else repr(float(value))
            if isinstance(value, str):
                return self.text(str(value))
            if isinstance(value, (bytes, bytearray, memoryview)):
                return self.text(_safe_repr(bytes(value[:MAX_STRING])))
            if depth >= MAX_DEPTH:
                return f"<depth>{_safe_repr(value, 64)}"
            if isinstance(value, dict):
                if id(value) in seen:
                    return "<cycle>"
                return self._dict(value, depth, seen | {id(value)})
            if isinstance(value, (list, tuple, set, frozenset)):
                if id(value) in seen:
                    return "<cycle>"
                return self._list(value, depth, seen | {id(value)})
            return self.text(_safe_repr(value))
        except Exception as e:  # defensive: conversion must never raise
            return f"<unconvertible {type(value).__name__}: {type(e).__name__}>"

    def _item(self, v: Any, depth: int, seen: FrozenSet[int]) -> Any:
        """One element of a container: scalars inline, anything else through `convert`."""
        t = type(v)
        if t is int:
            return v if _INT_MIN <= v < _INT_END else self._int(v)
        if t is str and len(v) <= self.chars and len(v) <= MAX_STRING and v.isascii():
            self.chars -= len(v)
            return v
        if t is bool or v is None:
            return v
        if t is float and math.isfinite(v):
            return v
        return self.convert(v, depth + 1, seen)

    def _dict(self, value: Dict[Any, Any], depth: int, seen: FrozenSet[int]) -> Tuple[Any, ...]:
        # Collected in a dict first: two keys may convert to the same string (``1`` and
        # ``"1"``), and the later one wins, as in the dict json would have written.
        out: Dict[str, Any] = {}
        total = len(value)
        item = self._item
        for i, (k, v) in enumerate(value.items()):
            if i == MAX_ITEMS or self.nodes <= 0:
                out["…"] = f"+{total - i} items"
                break
            self.nodes -= 1
            if type(k) is not str or len(k) > self.chars or len(k) > MAX_STRING or not k.isascii():
                k = self.text(k if isinstance(k, str) else _key(k))
            else:
                self.chars -= len(k)
            out[k] = item(v, depth, seen)
        return as_object(out)

    def _list(self, value: Any, depth: int, seen: FrozenSet[int]) -> Tuple[Any, ...]:
        total = len(value)
        if isinstance(value, (set, frozenset)):
            items = _ordered(value) if total <= MAX_ITEMS else list(itertools.islice(value, MAX_ITEMS))
        else:
            items = value[:MAX_ITEMS]
        out: List[Any] = []
        append = out.append
        item = self._item
        for v in items:
            if self.nodes <= 0:
                break
            self.nodes -= 1
            append(item(v, depth, seen))
        if len(out) < total:
            append(f"…+{total - len(out)} items")
        return tuple(out)


def _key(k: Any) -> str:
    if isinstance(k, (bool, float)) or k is None:
        return str(k)
    if isinstance(k, int):
        big = _big_int(int(k))
        return big if isinstance(big, str) else str(big)
    return _safe_repr(k)


def _ordered(items: Iterable[Any]) -> List[Any]:
    try:
        return sorted(items)
    except Exception:
        return list(items)


def text(value: Any) -> str:
    """A name-like argument (variable, function or lock name) as a bounded string."""
    try:
        if isinstance(value, str):
            return clean_str(str(value))
    except Exception:
        pass
    return _safe_repr(value)
