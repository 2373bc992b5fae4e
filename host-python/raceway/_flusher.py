"""The background worker: drains the record log, has the core encode it, sends the bodies.

It wakes every ``flush_interval`` seconds, when the log reaches ``batch_size`` records, and on
`flush()`. One thread, so the core's pipeline instance and the HTTP connection are never shared.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Callable, List, Optional

from . import _records
from ._core import CoreError, CoreInstance
from ._stats import Stats
from ._transport import Outcome, Transport

log = logging.getLogger("raceway")

CHUNK = 4096
"""Records handed to the core per call: big enough to amortize the call, small enough to keep
one call short and its JSON string modest."""


class Flusher:
    def __init__(
        self,
        queue: deque,
        core: CoreInstance,
        transport: Optional[Transport],
        batch_size: int,
        interval: float,
        stats: Stats,
        sink: Optional[Callable[[str], None]] = None,
    ):
        self.queue = queue
        self.core = core
        self.transport = transport
        self.batch_size = batch_size
        self.interval = interval
        self.stats = stats
        self.sink = sink
        self.wake = threading.Event()
        self._stopping = False
        self._waiters: List[threading.Event] = []
        self._waiters_lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._logged: set = set()

    def start(self) -> "Flusher":
        self._thread = threading.Thread(target=self._run, name="raceway-flusher", daemon=True)
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while True:
            self.wake.wait(self.interval)
            self.wake.clear()
            with self._waiters_lock:
                waiters, self._waiters = self._waiters, []
            try:
                self.drain()
            except Exception as e:  # never let the worker die
                self._log_once("worker", "raceway: flusher error: %s", e)
            for w in waiters:
                w.set()
            if self._stopping and not self.queue:
                return

    def drain(self) -> None:
        """Sends everything in the log now (on the calling thread: the worker, or a test)."""
        while self.queue:
            records = []
            pop = self.queue.popleft
            try:
                for _ in range(CHUNK):
                    records.append(pop())
            except IndexError:
                pass
            self._process(records)

    def _process(self, records: list) -> None:
        self.stats.add(recorded=len(records))
        try:
            encoded = self.core.encode_batch(_records.encode_safely(records), self.batch_size)
        except CoreError as e:
            try:  # one more time with every value converted: a value the fast path let through
                encoded = self.core.encode_batch(_records.encode(records, sanitize=True), self.batch_size)
            except (CoreError, Exception) as e2:
                self.stats.add(failed=len(records))
                self._log_once("encode", "raceway: could not encode %d events: %s / %s", len(records), e, e2)
                return
        if encoded["dropped"]:
            self.stats.add(dropped=encoded["dropped"])
            self._log_once("invalid", "raceway: dropped %d invalid events: %s", encoded["dropped"], encoded["errors"])
        bodies = encoded["bodies"]
        if not bodies:
            return
        for body, n in zip(bodies.split("\n"), encoded["counts"]):
            self._deliver(body, n)

    def _deliver(self, body: str, n: int) -> None:
        if self.sink is not None:
            self.sink(body)
        if self.transport is None:  # endpoint=None: local use, nothing leaves the process
            return
        result = self.transport.send(body)
        if result.outcome is Outcome.SENT:
            self.stats.add(sent=n)
        elif result.outcome is Outcome.REJECTED:
            self.stats.add(failed=n)
            log.error("raceway: server rejected %d events: %s", n, result.reason)
        else:
            self.stats.add(failed=n)
            self._log_once(result.outcome.value, "raceway: could not deliver %d events: %s", n, result.reason)

    def flush(self, timeout: Optional[float]) -> bool:
        """Asks the worker to drain now; True once everything recorded before the call is out."""
        if not self.alive:
            return False
        done = threading.Event()
        with self._waiters_lock:
            self._waiters.append(done)
        self.wake.set()
        return done.wait(timeout)

    def stop(self, timeout: Optional[float]) -> bool:
        self._stopping = True
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def _log_once(self, key: str, msg: str, *args: object) -> None:
        level = logging.ERROR if key not in self._logged else logging.DEBUG
        self._logged.add(key)
        log.log(level, msg, *args)
