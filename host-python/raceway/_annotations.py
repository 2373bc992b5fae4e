"""Happens-before annotations as events: a hand-off the SDK cannot see (a queue, an event, a
callback registry) made visible to the race detector.

They are recorded as ``Custom`` events the Raceway server stores like any other (its schema has
no other place for them) and the core's detector reads by name (``detector/mod.rs``).
"""

from __future__ import annotations

from typing import Any, Hashable, Tuple

from ._values import OBJECT, text

HAPPENS_BEFORE = "raceway:happens-before"
HAPPENS_AFTER = "raceway:happens-after"

_BY_VALUE = (str, int, float, bytes, bool, type(None))


def sync_id(token: Hashable) -> str:
    """The synchronisation object a token names, as a string: by value for strings, numbers,
    bytes and tuples of them (equal tokens are one object), by identity for anything else
    (``Type@address``: a token that is garbage-collected may have its address reused)."""
    if isinstance(token, _BY_VALUE) or (isinstance(token, tuple) and all(isinstance(t, _BY_VALUE) for t in token)):
        return text(f"{type(token).__name__}:{token!r}")
    return f"{type(token).__module__}.{type(token).__qualname__}@{id(token):x}"


def sync_data(sync: str) -> Tuple[Any, ...]:
    """The ``Custom`` event's data for the synchronisation object ``sync`` (`sync_id`):
    ``{"sync": sync}`` in its record form (an object tuple, `raceway._values`)."""
    return (OBJECT, "sync", sync)
