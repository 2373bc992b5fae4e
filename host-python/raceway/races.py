"""What the race detector found, as Python objects: `Race` and `Access`.

`RacewayClient.races()` and ``python -m raceway analyze`` return these. They are plain frozen
data built from the core's JSON answer (`raceway._core_types.FindingsJSON`); the report writers
(`raceway.report`) turn them into text, SARIF and HTML. The model (happens-before, the lost
update rule, what is not detected) is in docs/races.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple

from ._core_types import AccessJSON, RaceJSON

DATA_RACE = "data-race"
"""Two accesses to one variable from different strands, at least one a write, not ordered by
happens-before (and not both atomic)."""
LOST_UPDATE = "lost-update"
"""A strand read a variable, another strand wrote it, then the first wrote it based on the
value it had read (its ``old_value`` is not what the other strand left)."""


@dataclass(frozen=True)
class Access:
    """One side of a race."""

    access_type: str
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
    old_value: Any = None
    new_value: Any = None

    @classmethod
    def from_json(cls, a: AccessJSON) -> "Access":
        return cls(
            access_type=a["access_type"], location=a["location"], thread_id=a["thread_id"],
            trace_id=a["trace_id"], timestamp=a["timestamp"], stack=tuple(a.get("stack", ())),
            component=a.get("component", ""), service=a.get("service", ""), seq=a.get("seq", 0),
            unix_nanos=a.get("unix_nanos", 0), locks=tuple(a.get("locks", ())),
            old_value=a.get("old_value"), new_value=a.get("new_value"),
        )

    def to_json(self) -> Dict[str, Any]:
        return {
            "access_type": self.access_type, "location": self.location, "stack": list(self.stack),
            "thread_id": self.thread_id, "component": self.component, "trace_id": self.trace_id,
            "service": self.service, "seq": self.seq, "timestamp": self.timestamp,
            "unix_nanos": self.unix_nanos, "locks": list(self.locks),
            "old_value": self.old_value, "new_value": self.new_value,
        }


@dataclass(frozen=True)
class Race:
    """One distinct race (the same variable and locations), with how often it happened."""

    variable: str
    kind: str
    """`DATA_RACE` (``"data-race"``) or `LOST_UPDATE` (``"lost-update"``)."""
    severity: str
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
            variable=r["variable"], kind=r["kind"], severity=r["severity"], count=r["count"],
            first_seen=r["first_seen"], last_seen=r["last_seen"],
            accesses=tuple(Access.from_json(a) for a in r["accesses"]),
        )

    def to_json(self) -> Dict[str, Any]:
        return {
            "variable": self.variable, "kind": self.kind, "severity": self.severity,
            "count": self.count, "first_seen": self.first_seen, "last_seen": self.last_seen,
            "accesses": [a.to_json() for a in self.accesses],
        }

    @property
    def locations(self) -> Tuple[str, ...]:
        return tuple(a.location for a in self.accesses)


def races_from_json(races: List[RaceJSON]) -> List[Race]:
    return [Race.from_json(r) for r in races]
