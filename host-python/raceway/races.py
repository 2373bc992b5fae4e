"""What the race detector found, as Python objects: `Race` and `Access`.

`RacewayClient.races()` and ``python -m raceway analyze`` return these. They are plain frozen
data built from the core's JSON answer (`raceway._core_types.FindingsJSON`); the report writers
(`raceway.report`) turn them into text, SARIF and HTML. The model (happens-before, the lost
update rule, what is not detected) is in docs/races.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Tuple

from ._core_types import AccessJSON, AccessType, JSONValue, RaceJSON, RaceKind, Severity

DATA_RACE: RaceKind = "data-race"
"""Two accesses to one variable from different strands, at least one a write, not ordered by
happens-before (and not both atomic)."""
LOST_UPDATE: RaceKind = "lost-update"
"""A strand read a variable, another strand wrote it, then the first wrote it based on the
value it had read (its ``old_value`` is not what the other strand left)."""


@dataclass(frozen=True)
class Access:
    """One side of a race."""

    access_type: AccessType
    """``Read``, ``Write``, ``AtomicRead``, ``AtomicWrite`` or ``AtomicRMW``."""
    location: str
    """``file:line``."""
    thread_id: str
    """The execution context (strand) that made the access."""
    trace_id: str
    timestamp: str
    """RFC 3339, UTC."""
    stack: Tuple[str, ...] = ()
    """``file:line in function`` frames, innermost first."""
    component: str = ""
    service: str = ""
    seq: int = 0
    unix_nanos: int = 0
    locks: Tuple[str, ...] = ()
    """Lock ids held at the access."""
    old_value: JSONValue = None
    """The value before the access, as recorded (a long one cut: a string ending
    ``…[+N bytes]``)."""
    new_value: JSONValue = None
    """The value after the access, kept as ``old_value`` is."""

    @classmethod
    def from_json(cls, a: AccessJSON) -> "Access":
        return cls(
            access_type=a["access_type"],
            location=a["location"],
            thread_id=a["thread_id"],
            trace_id=a["trace_id"],
            timestamp=a["timestamp"],
            stack=tuple(a.get("stack", ())),
            component=a.get("component", ""),
            service=a.get("service", ""),
            seq=a.get("seq", 0),
            unix_nanos=a.get("unix_nanos", 0),
            locks=tuple(a.get("locks", ())),
            old_value=a.get("old_value"),
            new_value=a.get("new_value"),
        )

    def to_json(self) -> AccessJSON:
        """The core's form of this access (`from_json` reads it back)."""
        return {
            "access_type": self.access_type,
            "location": self.location,
            "stack": list(self.stack),
            "thread_id": self.thread_id,
            "component": self.component,
            "trace_id": self.trace_id,
            "service": self.service,
            "seq": self.seq,
            "timestamp": self.timestamp,
            "unix_nanos": self.unix_nanos,
            "locks": list(self.locks),
            "old_value": self.old_value,
            "new_value": self.new_value,
        }


@dataclass(frozen=True)
class Race:
    """One distinct race (the same variable and locations), with how often it happened."""

    variable: str
    kind: RaceKind
    """`DATA_RACE` (``"data-race"``) or `LOST_UPDATE` (``"lost-update"``)."""
    severity: Severity
    """``CRITICAL`` (write/write, lost update) or ``WARNING`` (read/write)."""
    count: int
    first_seen: str
    last_seen: str
    accesses: Tuple[Access, ...] = field(default_factory=tuple)
    """Data race: the earlier access, then the later. Lost update: the read, the other
    strand's write in between, the stale write."""

    @classmethod
    def from_json(cls, r: RaceJSON) -> "Race":
        return cls(
            variable=r["variable"],
            kind=r["kind"],
            severity=r["severity"],
            count=r["count"],
            first_seen=r["first_seen"],
            last_seen=r["last_seen"],
            accesses=tuple(Access.from_json(a) for a in r["accesses"]),
        )

    def to_json(self) -> RaceJSON:
        """The core's form of this race (`from_json` reads it back)."""
        return {
            "variable": self.variable,
            "kind": self.kind,
            "severity": self.severity,
            "count": self.count,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "accesses": [a.to_json() for a in self.accesses],
        }

    @property
    def locations(self) -> Tuple[str, ...]:
        return tuple(a.location for a in self.accesses)


def races_from_json(races: List[RaceJSON]) -> List[Race]:
    """`Race.from_json` of each, in order."""
    return [Race.from_json(r) for r in races]
