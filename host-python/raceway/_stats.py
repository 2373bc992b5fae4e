"""Delivery counters, reported by `RacewayClient.stats()`."""

from __future__ import annotations

import threading
from typing import Dict


class Stats:
    FIELDS = ("recorded", "sent", "dropped", "retried", "failed")

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
