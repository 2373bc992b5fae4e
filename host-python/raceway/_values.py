"""Turning whatever users pass (`args`, `old_value`, `new_value`, bodies) into JSON the server
accepts. Never raises: an object JSON cannot carry becomes its ``repr``, and sizes are bounded.

Limits (documented in docs/values.md):
- strings longer than `MAX_STRING` characters are cut and marked ``…[+N chars]``;
- containers keep their first `MAX_ITEMS` items (a marker item says how many were left out);
- nesting deeper than `MAX_DEPTH`, and cycles, become ``"<…>"`` markers;
- ``bytes`` become ``"b'…'"`` (their repr, cut like strings); NaN and infinities become strings;
- dict keys become strings; sets and tuples become lists.

Mutable values are converted when the event is recorded, so the event shows the value as it was
then, not as it is when the batch leaves.
"""

from __future__ import annotations

import math
from typing import Any

MAX_STRING = 4096
MAX_ITEMS = 100
MAX_DEPTH = 8

_SCALARS = (int, bool, type(None))


def cut(s: str) -> str:
    if len(s) <= MAX_STRING:
        return s
    return f"{s[:MAX_STRING]}…[+{len(s) - MAX_STRING} chars]"


def clean_str(s: str) -> str:
    """Bounded, and valid UTF-8 (lone surrogates, e.g. from ``surrogateescape``, are escaped)."""
    s = cut(s)
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "backslashreplace").decode("utf-8")


def _safe_repr(value: Any) -> str:
    try:
        return clean_str(repr(value))
    except Exception as e:  # a __repr__ that raises
        return f"<unrepresentable {type(value).__name__}: {type(e).__name__}>"


def snapshot(value: Any, depth: int = 0, seen: frozenset = frozenset()) -> Any:
    """A JSON-safe copy of ``value`` (see the module docstring for the rules)."""
    try:
        if type(value) in _SCALARS:
            return value
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):  # IntEnum and other int subclasses
            return int(value)
        if isinstance(value, float):
            return float(value) if math.isfinite(value) else repr(float(value))
        if isinstance(value, str):
            return clean_str(str(value))
        if isinstance(value, (bytes, bytearray, memoryview)):
            return _safe_repr(bytes(value[: MAX_STRING]))
        if depth >= MAX_DEPTH:
            return f"<depth>{_safe_repr(value)[:64]}"
        if isinstance(value, dict):
            if id(value) in seen:
                return "<cycle>"
            inner = seen | {id(value)}
            out = {}
            for i, (k, v) in enumerate(value.items()):
                if i == MAX_ITEMS:
                    out["…"] = f"+{len(value) - MAX_ITEMS} items"
                    break
                key = k if isinstance(k, str) else _key(k)
                out[clean_str(key)] = snapshot(v, depth + 1, inner)
            return out
        if isinstance(value, (list, tuple, set, frozenset)):
            if id(value) in seen:
                return "<cycle>"
            inner = seen | {id(value)}
            items = list(value) if not isinstance(value, (set, frozenset)) else _ordered(value)
            out_list = [snapshot(v, depth + 1, inner) for v in items[:MAX_ITEMS]]
            if len(items) > MAX_ITEMS:
                out_list.append(f"…+{len(items) - MAX_ITEMS} items")
            return out_list
        return _safe_repr(value)
    except Exception as e:  # pragma: no cover - defensive: conversion must never raise
        return f"<unconvertible {type(value).__name__}: {type(e).__name__}>"


def _key(k: Any) -> str:
    if isinstance(k, (int, float, bool)) or k is None:
        return str(k)
    return _safe_repr(k)


def _ordered(items: Any) -> list:
    try:
        return sorted(items)
    except Exception:
        return list(items)


def text(value: Any) -> str:
    """A name-like argument (variable, function or lock name) as a bounded string."""
    if isinstance(value, str):
        return clean_str(str(value))
    return _safe_repr(value)
