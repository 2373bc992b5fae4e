"""The shapes of the detector's answers as they cross the core boundary (``detector.races``).

Every field is documented in ``wit/raceway.wit`` and docs/races.md; these TypedDicts are the
Python side of that contract, so the report writers are checked against it.
"""

from __future__ import annotations

from typing import Any, List, Literal, TypedDict


class AccessJSON(TypedDict):
    """One access of a race, as the core reports it."""

    access_type: str
    """``Read``, ``Write``, ``AtomicRead``, ``AtomicWrite`` or ``AtomicRMW``."""
    location: str
    """``file:line`` of the call that recorded the access."""
    stack: List[str]
    """Frames as ``file:line in function``, innermost first (the first is the location's);
    as many as ``Config.race_stack_frames`` allowed, possibly none."""
    thread_id: str
    """The execution context (strand) that made the access."""
    component: str
    """The strand's vector-clock component (``service#instance/suffix``)."""
    trace_id: str
    service: str
    seq: int
    """The strand's event counter at this access (its own clock component)."""
    timestamp: str
    """RFC 3339, UTC."""
    unix_nanos: int
    locks: List[str]
    """Lock ids the strand held at the access."""
    old_value: Any
    new_value: Any


class RaceJSON(TypedDict):
    """One distinct race: the same variable and the same locations, however often it happened."""

    kind: Literal["data-race", "lost-update"]
    severity: Literal["CRITICAL", "WARNING"]
    variable: str
    count: int
    """How many times this race was observed."""
    first_seen: str
    """RFC 3339 time of the first observation (its last access)."""
    last_seen: str
    accesses: List[AccessJSON]
    """Data race: the earlier access, then the later one. Lost update: the read, the other
    strand's write in between, then the write based on the stale read."""


class DetectorStatsJSON(TypedDict):
    events: int
    accesses: int
    strands: int
    """Strands (execution contexts) whose clocks are held now."""
    variables: int
    races_dropped: int
    """Distinct races beyond ``max_races``: counted, not kept."""


class FindingsJSON(TypedDict):
    races: List[RaceJSON]
    stats: DetectorStatsJSON
