"""The memory budget, and the bodies that wait for delivery.

``Config.max_queue_size`` bounds every event the SDK holds: records in the log (the deque the
hot path appends to) plus events taken out of it and not yet settled (being encoded, or in
request bodies waiting to be delivered: the backlog). The hot path cannot take a lock or look
at the backlog, so the budget is split once, up front: the log is a ``deque(maxlen=...)`` of
the larger share, and the flusher never holds more than the smaller share (one chunk) outside
it. During an outage the backlog holds one chunk and the log fills; when the log is full the
deque drops its oldest record for each new one. The two together never exceed the limit.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Deque, List, Optional, Sequence, Tuple

if TYPE_CHECKING:
    from ._spool import Claim

Source = Tuple["Claim", int]
"""Where a body read back from the spool came from: its claim and its index in the file."""

Entry = List[Any]
"""``[body, events, attempts, source]``: the body (``bytes | str``), its event count, the
delivery attempts so far, its `Source` or None. A list, not a tuple, because the flusher counts
attempts in place (``entry[2]``); a list's positions cannot each have a type, hence ``Any``."""

CHUNK = 4096
"""Records handed to the core per call: big enough to amortize the call, small enough to keep
one call short and its JSON string modest. Also the most events held outside the log."""


def split_budget(max_events: int) -> Tuple[int, int]:
    """``(log length, chunk)`` for a limit of ``max_events``: the chunk is an eighth of the
    limit, at most `CHUNK`, at least 1 (so a limit below 2 still holds 2 events)."""
    chunk = max(1, min(CHUNK, max_events // 8))
    return max(1, max_events - chunk), chunk


class Backlog:
    """Request bodies not yet delivered, oldest first. Only the flusher thread changes it;
    ``events`` may be read from any thread (an int, replaced whole).

    A body is this process's own (``source`` None) or one read back from the spool
    (``source`` is ``(claim, index)``): ``events`` counts the first kind, the events taken out
    of the record log, and ``spool_events`` the second, which belong to no count of this
    process until they are delivered."""

    def __init__(self) -> None:
        self._bodies: Deque[Entry] = deque()
        self.events = 0
        self.spool_events = 0

    def __len__(self) -> int:
        return len(self._bodies)

    def push(self, body: "bytes | str", events: int, source: Optional[Source] = None) -> None:
        self._bodies.append([body, events, 0, source])
        if source is None:
            self.events += events
        else:
            self.spool_events += events

    def head(self) -> Optional[Entry]:
        """The oldest body's entry (``[body, events, attempts, source]``, `Entry`), or None."""
        return self._bodies[0] if self._bodies else None

    def heads(self, max_events: int, joinable: Callable[[Entry], bool]) -> List[Entry]:
        """The oldest body's entry and those right after it that are ``joinable`` (the oldest
        always, whatever it is), while their events come to ``max_events`` at most."""
        out: List[Entry] = []
        total = 0
        for entry in self._bodies:
            if out and (not joinable(entry) or total + entry[1] > max_events):
                break
            out.append(entry)
            total += entry[1]
        return out

    def pop(self) -> int:
        """Removes the oldest body; returns its event count."""
        events: int
        _body, events, _attempts, source = self._bodies.popleft()
        if source is None:
            self.events -= events
        else:
            self.spool_events -= events
        return events

    def take_own(self) -> List[Tuple["bytes | str", int]]:
        """Removes and returns this process's bodies ``(body, events)``, oldest first; bodies
        from the spool are let go (they are still in their spool file)."""
        own = [(b[0], b[1]) for b in self._bodies if b[3] is None]
        self._bodies.clear()
        self.events = self.spool_events = 0
        return own

    def clear(self) -> int:
        """Removes everything; returns how many of this process's events that was."""
        events = self.events
        self._bodies.clear()
        self.events = self.spool_events = 0
        return events


BODY_START = b'{"events":['
BODY_END = b"]}"


def join_bodies(bodies: Sequence[bytes]) -> bytes:
    """One request body with the events of ``bodies``, in order: ``{"events":[...]}`` bodies
    as the core renders them (docs/record-format.md), joined without reading their events, in
    one copy (the events are taken through memoryviews; a request of 500 events is ~340 KB).
    Raises ``ValueError`` for a body of another shape (none is: the core renders them all)."""
    start, end = len(BODY_START), len(BODY_END)
    parts: List[Any] = [BODY_START]
    for body in bodies:
        if not (body.startswith(BODY_START) and body.endswith(BODY_END)):
            raise ValueError("not a body of the core's shape")
        if len(parts) > 1:
            parts.append(b",")
        parts.append(memoryview(body)[start : len(body) - end])
    parts.append(BODY_END)
    return b"".join(parts)
