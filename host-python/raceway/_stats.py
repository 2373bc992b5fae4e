"""Delivery counters, reported by `RacewayClient.stats()`.

Every event the application records ends up in exactly one of ``sent``, ``dropped``,
``failed`` or ``spooled``, or is still held (``queued`` in the record log, ``pending`` in bodies
waiting to be delivered), so ``recorded == sent + dropped + failed + spooled + queued +
pending`` once the flusher is between batches. ``retried``, ``duplicated``, ``spool_sent`` and
``spool_failed`` are not part of that sum.

- ``recorded``: events the application recorded.
- ``sent``: events in bodies the server accepted (200).
- ``dropped``: events the SDK let go by its own policy: the memory limit was reached (the oldest
  go first) or the core found the record invalid.
- ``failed``: events that could not be delivered: the server refused the body (a 4xx other
  than 429), delivery was still failing when the client shut down and there was no spool (or
  the spool could not take them), or the core failed.
- ``spooled``: events still undelivered when the shutdown budget ended (or at exit), written
  to the spool: the next client with the same endpoint and spool sends them.
- ``retried``: event sends repeated after a failure or a 206 (each repeat of a body counts its
  events).
- ``duplicated``: events the server said it had taken (the ``N`` of a 206) that were sent
  again with the rest of their body: at most this many arrived twice (the server keeps one
  per id).
- ``spool_sent`` / ``spool_failed``: events from the spool (left by an earlier client) that
  this client delivered / that the server refused.

These counters move on the flusher thread. Drops because the record log is full happen on the
application's threads; the client counts those in a plain attribute, without a lock (an
increment can be lost in a thread switch: the count is exact in practice, not by construction),
and adds them in `RacewayClient.stats()`.
"""

from __future__ import annotations

import threading
from typing import Dict


class Stats:
    FIELDS = ("recorded", "sent", "dropped", "retried", "failed", "spooled", "duplicated", "spool_sent", "spool_failed")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self.FIELDS, 0)

    def add(self, **counts: int) -> None:
        with self._lock:
            for k, v in counts.items():
                self._counts[k] += v

    def snapshot(self) -> Dict[str, int]:
        with self._lock:
            return dict(self._counts)
