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
from typing import Deque, List, Optional, Tuple

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
    ``events`` may be read from any thread (an int, replaced whole)."""

    def __init__(self) -> None:
        self._bodies: Deque[List] = deque()  # [body, events, attempts]
        self.events = 0

    def __len__(self) -> int:
        return len(self._bodies)

    def push(self, body: str, events: int) -> None:
        self._bodies.append([body, events, 0])
        self.events += events

    def head(self) -> Optional[List]:
        """``[body, events, attempts]`` of the oldest body, or None."""
        return self._bodies[0] if self._bodies else None

    def pop(self) -> int:
        """Removes the oldest body; returns its event count."""
        _body, events, _attempts = self._bodies.popleft()
        self.events -= events
        return events

    def clear(self) -> int:
        """Removes everything; returns how many events that was."""
        events = self.events
        self._bodies.clear()
        self.events = 0
        return events
