"""The background worker: drains the record log, has the core encode it, delivers the bodies.

It wakes every ``flush_interval`` seconds, when the log reaches ``batch_size`` records, and on
`flush()`. One thread, so the core's pipeline instance and the HTTP connection are never shared,
and sending never happens on an application thread.

Delivery policy (docs/delivery.md):

- Records are taken from the log one chunk at a time, and only when nothing taken earlier is
  still undelivered: at most one chunk of events is ever held outside the log (see
  ``_backlog.py`` for why that bounds memory).
- Bodies go out oldest first. urllib3 retries each send (`_transport.RetryPolicy`). A body that
  still cannot be delivered (connection refused, timeouts, 429, 5xx) or that the server
  answers with 206 (its queue is full) stays at the head of the backlog and is sent again
  after a backoff that grows while the outage lasts. Meanwhile the log keeps filling; at its
  limit it drops its oldest records, and those drops are counted. Once the log has dropped
  records, the backlog holds the oldest events of all: before the next attempt it is dropped
  too (counted) and the next chunk is taken from the log instead, so what survives a long
  outage is the most recent events, not the first chunk plus the most recent.
- A body the server refuses (a 4xx other than 429) cannot succeed later: it is dropped,
  counted as failed, and logged at ERROR with the server's reason.
- On `stop`, it delivers what is left, retrying until the deadline (one last attempt without
  one); what still cannot be delivered is counted as failed and logged.
- If the core fails (a trap), the client is told (``on_fatal``; it logs and turns itself off)
  and what was held is counted as failed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Callable, Dict, List, Optional

from . import _records
from ._backlog import CHUNK, Backlog
from ._core import CoreError, CoreInstance, CoreTrap
from ._sink import EventsFile
from ._stats import Stats
from ._transport import FLUSHER_THREAD, Outcome, Result, Transport

log = logging.getLogger("raceway")

REPEAT_LOG_SECONDS = 60.0
"""A recurring problem (refused bodies, a full queue) is logged at most this often."""

class _Waiter:
    """One `flush()` call waiting for the worker."""

    __slots__ = ("event", "ok")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.ok = False

    def done(self, ok: bool) -> None:
        self.ok = ok
        self.event.set()


class Flusher:
    def __init__(
        self,
        queue: deque,
        core: CoreInstance,
        transport: Optional[Transport],
        batch_size: int,
        interval: float,
        stats: Stats,
        chunk: int = CHUNK,
        on_fatal: Optional[Callable[[BaseException], None]] = None,
        log_drops: Optional[Callable[[], int]] = None,
        detect: bool = False,
        sink: Optional[EventsFile] = None,
        process: Optional[Dict[str, Any]] = None,
    ):
        self.queue = queue
        self.core = core
        self.transport = transport
        self.batch_size = batch_size
        self.interval = interval
        self.stats = stats
        self.chunk = chunk
        self.on_fatal = on_fatal
        self.log_drops = log_drops
        """Returns how many records the full log has dropped so far (to log, rate-limited)."""
        self.detect = detect
        """Feed every batch to the core's race detector (`CoreInstance.observe`)."""
        self.sink = sink
        """Where each batch is also written (``Config.events_file``), with ``process``."""
        self.process = process or {}
        self.backlog = Backlog()
        self.backoff = transport.policy.schedule() if transport is not None else None
        self.wake = threading.Event()
        """Set by the hot path (the log reached a batch), `flush` and `stop`."""
        self._halt = threading.Event()  # set by `stop`: ends a backoff early
        self._stopping = False
        self._deadline: Optional[float] = None
        self._stop_reason: Optional[str] = "the client shut down"
        self._finished = False  # the thread has ended (or will, having settled everything)
        self._delivered_all = False
        self._waiters: List[_Waiter] = []
        self._waiters_lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._taken = 0  # events out of the log and not settled (being encoded, or in the backlog)
        self._retry_at = 0.0
        self._outage: Optional[str] = None
        self._logged: set = set()
        self._last_logged: Dict[str, float] = {}
        self._suppressed: Dict[str, int] = {}
        self._drops_logged = 0
        self._drops_at_take = 0  # the log's drop count when the held chunk was taken

    def start(self) -> "Flusher":
        self._thread = threading.Thread(target=self._run, name=FLUSHER_THREAD, daemon=True)
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def held(self) -> int:
        """Events taken out of the log and not yet delivered or given up."""
        return self._taken

    # ------------------------------------------------------------------------------------------
    # The worker
    # ------------------------------------------------------------------------------------------
    def _run(self) -> None:
        ok = True
        try:
            while True:
                self._pause(ok)
                with self._waiters_lock:
                    waiters, self._waiters = self._waiters, []
                try:
                    ok = self._cycle_safely()
                except BaseException:  # the core failed: they are answered on the way out
                    with self._waiters_lock:
                        self._waiters[:0] = waiters
                    raise
                if ok:
                    for w in waiters:
                        w.done(True)
                else:  # they wait for the retry (or the end)
                    with self._waiters_lock:
                        self._waiters[:0] = waiters
                self._note_drops()
                if self._stopping:
                    if ok and not self.queue and not self.backlog:
                        self._delivered_all = True
                        return
                    if not ok and self._out_of_time():
                        self._give_up(self._stop_reason)
                        return
        except CoreTrap as e:
            self._give_up(None)
            if self.on_fatal is not None:
                self.on_fatal(e)
        finally:
            self._close_waiters()

    def _pause(self, last_ok: bool) -> None:
        """Waits for work: a wake-up or the interval; after a failed delivery, the backoff
        (cut short by `stop`, and never past the stop deadline)."""
        if last_ok and not self.backlog:
            if not self._stopping:
                self.wake.wait(self.interval)
                self.wake.clear()
            return
        delay = self._retry_at - time.monotonic()
        if self._stopping:
            delay = min(delay, self._deadline - time.monotonic())  # type: ignore[operator]
            if delay > 0:
                time.sleep(delay)
        elif delay > 0:
            self._halt.wait(delay)

    def _out_of_time(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _cycle_safely(self) -> bool:
        try:
            return self._cycle()
        except CoreTrap:
            raise
        except Exception as e:  # a bug: never let the worker die, never lose count
            lost = self._taken - self.backlog.events
            self._taken = self.backlog.events
            if lost:
                self.stats.add(failed=lost)
            self._log_once("worker", "raceway: flusher error (%d events lost): %s: %s", lost, type(e).__name__, e)
            if self.backoff is not None:  # whatever it was, do not spin on it
                self._retry_at = time.monotonic() + self.backoff.next_delay()
            return not self.backlog

    def _cycle(self) -> bool:
        """Delivers the backlog, then the records that were in the log when the cycle began,
        one chunk at a time. False as soon as a delivery fails (the rest waits for the retry)."""
        if self.backlog:
            self._drop_stale_backlog()
            if self.backlog and not self._deliver():
                return False
        remaining = len(self.queue)
        while remaining > 0:
            records = self._take(min(remaining, self.chunk))
            if not records:
                break
            remaining -= len(records)
            self._encode(records)
            if not self._deliver():
                return False
        return True

    def _drop_stale_backlog(self) -> None:
        """If the log dropped records since the backlog was taken, the backlog is older than
        anything dropped: the oldest go first, so it goes (counted) and a newer chunk is tried."""
        if self.log_drops is not None and self.log_drops() > self._drops_at_take:
            n = self.backlog.clear()
            self._settle(n, dropped=n)

    def _take(self, n: int) -> list:
        if self.log_drops is not None:
            self._drops_at_take = self.log_drops()
        self._taken += n
        records = []
        pop = self.queue.popleft
        try:
            for _ in range(n):
                records.append(pop())
        except IndexError:  # cleared meanwhile (fork, shutdown of a disabled client)
            self._taken -= n - len(records)
        return records

    # ------------------------------------------------------------------------------------------
    # Encoding
    # ------------------------------------------------------------------------------------------
    def _encode(self, records: list) -> None:
        """Turns records into bodies in the backlog; drops and failures are settled here."""
        self.stats.add(recorded=len(records))
        for text, part in _records.encode_parts(records, _records.part_size(self.batch_size)):
            encoded = self._encode_part(text, part)
            if encoded is None:
                self._settle(len(part), failed=len(part))
                continue
            counts = encoded["counts"]
            placed = encoded["events"]  # every valid event (no bodies when nothing is sent)
            if encoded["dropped"]:
                self.stats.add(dropped=encoded["dropped"])
                self._log_once("invalid", "raceway: dropped %d invalid events: %s", encoded["dropped"], encoded["errors"])
            unaccounted = len(part) - placed - encoded["dropped"]
            self._settle(len(part) - placed, failed=max(0, unaccounted))
            if not placed:
                continue
            if self.transport is None:  # endpoint=None: local use, nothing leaves the process
                self._settle(placed)
                continue
            for body, n in zip(encoded["bodies"], counts):
                self.backlog.push(body, n)

    def _encode_part(self, text: str, part: list) -> Optional[dict]:
        try:
            return self._process(text)
        except CoreTrap:
            raise
        except CoreError as e:
            try:  # once more with every value converted: a value the fast path let through
                return self._process(_records.encode(part, sanitize=True))
            except CoreTrap:
                raise
            except Exception as e2:
                self._log_once("encode", "raceway: could not encode %d events: %s / %s", len(part), e, e2)
                return None

    def _process(self, text: str) -> dict:
        """One core call for a part: the detector sees it (when on) and bodies are made only
        when there is a server to send them to. The events file gets the records the core
        accepted."""
        if self.detect:
            encoded = self.core.observe(text, self.batch_size if self.transport is not None else 0)
        else:
            encoded = self.core.encode_batch(text, self.batch_size)
        if self.sink is not None:
            self.sink.write(self.process, text)
        return encoded

    def _settle(self, events: int, **counts: int) -> None:
        self._taken -= events
        if any(counts.values()):
            self.stats.add(**counts)

    # ------------------------------------------------------------------------------------------
    # Delivery
    # ------------------------------------------------------------------------------------------
    def _deliver(self) -> bool:
        """Sends the backlog, oldest first. False (with the next attempt scheduled) when a body
        cannot be delivered now."""
        while self.transport is not None:
            head = self.backlog.head()
            if head is None:
                return True
            body, n, attempts = head
            result = self.transport.send(body)  # type: ignore[union-attr]
            repeats = result.retries + (1 if attempts else 0)
            head[2] = attempts + 1 + result.retries
            if repeats:
                self.stats.add(retried=n * repeats)
            if result.outcome is Outcome.SENT:
                self._settle(self.backlog.pop(), sent=n)
                self._recovered()
            elif result.outcome is Outcome.REJECTED:
                self._settle(self.backlog.pop(), failed=n)
                self._log_repeating(
                    f"rejected-{result.status}", "raceway: the server refused %d events; they are dropped: %s",
                    n, result.reason,
                )
            else:
                self._failed(result)
                return False
        return True

    def _failed(self, result: Result) -> None:
        delay = self.backoff.next_delay()  # type: ignore[union-attr]
        self._retry_at = time.monotonic() + delay
        if self._outage is None:
            log.warning(
                "raceway: cannot deliver events (%s); keeping %d of them and retrying "
                "(up to the queue limit; beyond it the oldest are dropped and counted)",
                result.reason, self.backlog.events,
            )
        else:
            log.debug("raceway: delivery still failing (%s); next attempt in %.2fs", result.reason, delay)
        self._outage = result.reason

    def _recovered(self) -> None:
        if self._outage is not None:
            log.info("raceway: delivering again after an outage (%s)", self._outage)
            self._outage = None
            self.backoff.reset()  # type: ignore[union-attr]

    def _give_up(self, why: Optional[str]) -> None:
        """Counts everything still held (and still in the log) as failed, and ends."""
        queued = len(self.queue)
        self.queue.clear()
        held, self._taken = self._taken, 0
        self.backlog.clear()
        self.stats.add(recorded=queued, failed=queued + held)
        if why is not None and queued + held:
            log.error(
                "raceway: %d events could not be delivered before %s (%s)",
                queued + held, why, self._outage or "no reason recorded",
            )

    # ------------------------------------------------------------------------------------------
    # Called from other threads
    # ------------------------------------------------------------------------------------------
    def flush(self, timeout: Optional[float]) -> bool:
        """Asks the worker to deliver now; True once everything recorded before the call has
        been delivered (or settled), within ``timeout`` seconds (None: no limit)."""
        waiter = _Waiter()
        with self._waiters_lock:
            if self._finished or not self.alive:
                return not self.queue and not self.backlog
            self._waiters.append(waiter)
        self.wake.set()
        return waiter.event.wait(timeout) and waiter.ok

    def stop(self, timeout: Optional[float], reason: Optional[str] = "the client shut down") -> bool:
        """Delivers what is left and ends the worker, retrying until ``timeout`` seconds have
        passed (None: one last attempt). True if everything was delivered in time. What cannot
        be delivered is counted as failed and logged as lost because of ``reason`` (None: not
        logged, the caller has said why)."""
        # A stop is one-way: a later call can bring the deadline closer, never push it back,
        # and once the caller has said why (reason None) nothing more is logged.
        deadline = time.monotonic() + (timeout or 0.0)
        if self._stopping:
            deadline = min(deadline, self._deadline)  # type: ignore[type-var]
            if self._stop_reason is None:
                reason = None
        self._stop_reason = reason
        self._deadline = deadline
        self._stopping = True
        self._halt.set()
        self.wake.set()
        thread = self._thread
        if thread is None:
            return not self.queue
        if thread is not threading.current_thread():
            thread.join(timeout)
        return not thread.is_alive() and self._delivered_all

    def _close_waiters(self) -> None:
        with self._waiters_lock:
            self._finished = True
            waiters, self._waiters = self._waiters, []
        for w in waiters:
            w.done(self._delivered_all)

    # ------------------------------------------------------------------------------------------
    def _note_drops(self) -> None:
        if self.log_drops is None:
            return
        try:
            drops = self.log_drops()
        except Exception:  # pragma: no cover - a counter read; never let it stop the worker
            return
        if drops > self._drops_logged:
            self._log_repeating(
                "queue-full", "raceway: the event queue is full; %d events dropped so far (oldest first)", drops,
                level=logging.WARNING,
            )
            self._drops_logged = drops

    def _log_once(self, key: str, msg: str, *args: object) -> None:
        level = logging.ERROR if key not in self._logged else logging.DEBUG
        self._logged.add(key)
        log.log(level, msg, *args)

    def _log_repeating(self, key: str, msg: str, *args: object, level: int = logging.ERROR) -> None:
        """Logs at ``level`` the first time and then at most every `REPEAT_LOG_SECONDS`
        (saying how many were not logged in between); at DEBUG otherwise."""
        now = time.monotonic()
        last = self._last_logged.get(key)
        if last is None or now - last >= REPEAT_LOG_SECONDS:
            skipped = self._suppressed.pop(key, 0)
            suffix = f" ({skipped} similar messages not logged)" if skipped else ""
            log.log(level, msg + suffix, *args)
            self._last_logged[key] = now
        else:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            log.debug(msg, *args)
