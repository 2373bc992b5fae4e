"""The background worker: drains the record log, has the core encode it, delivers the bodies.

It wakes every ``flush_interval`` seconds, when the log reaches ``batch_size`` records, and on
`flush()`. One thread owns the core's pipeline instance and the backlog; requests go out on
a second one (`_transport.Sender`) so that a shutdown never waits past its budget for an
answer. Sending never happens on an application thread.

Delivery policy (docs/delivery.md):

- A spool left by an earlier client with the same endpoint is delivered first, body by body,
  each one journaled once delivered (`_spool.py`).
- Records are taken from the log one chunk at a time, as far as what is still undelivered
  leaves room: at most one chunk of events is ever held outside the log (see ``_backlog.py``
  for why that bounds memory). Requests go out while a chunk is encoded (`Flusher._overlap`),
  the last ones of a chunk while the next is taken, so the sender, the server and the core
  work at once.
- Bodies go out oldest first. A 206 (the server's ingest queue is full) is back-pressure, not
  failure: the body is sent again once the pacer (`_transport.Pacer`, AIMD on the rate) allows,
  and the pacer keeps later bodies to what the server takes. A body that cannot be delivered
  (connection refused, timeouts, 429, 5xx, after the transport's own repeats) stays at the
  head of the backlog and is sent again after a backoff that grows while the outage lasts.
  Meanwhile the log keeps filling; at its limit it drops its oldest records, and those drops
  are counted. Once the log has dropped records, the backlog holds the oldest events of all:
  before the next attempt it is dropped too (counted) and the next chunk is taken from the
  log instead.
- A body the server refuses (a 4xx other than 429) cannot succeed later: it is dropped,
  counted as failed, and logged at ERROR with the server's reason.
- On `stop`, it delivers what is left within a budget: until the deadline, and (for the
  default budget) only while delivery makes progress: it gives up once the server has taken
  nothing for ``stall`` seconds. Attempts then follow the short shutdown schedule
  (`RetryPolicy.final`), each request bounded by the time left. What is still undelivered
  when it gives up is written to the spool (or, without one, counted as failed) and logged
  once with the reason.
- If the core fails (a trap), the client is told (``on_fatal``; it logs and turns itself off)
  and what was held is spooled or counted as failed.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Set, Tuple, cast

from . import _records
from ._backlog import BODY_END, BODY_START, CHUNK, Backlog, Entry, join_bodies
from ._core import CoreError, CoreInstance, CoreTrap
from ._core_types import EncodedBatch
from ._priority import current_nice, lower_this_thread
from ._records import Record
from ._sink import EventsFile
from ._spool import Claim, Spool, SpoolError
from ._stats import Stats
from ._transport import FLUSHER_THREAD, Job, Outcome, Pacer, Result, Sender, Transport

log = logging.getLogger("raceway")

REPEAT_LOG_SECONDS = 60.0
"""A recurring problem (refused bodies, a full queue) is logged at most this often."""
SPOOL_SECONDS_PER_EVENT = 5e-6
"""Time kept back from a shutdown budget, per event held, to encode and spool what is left
(measured: ~2-3 µs per event to encode and write; doubled)."""
SPOOL_SECONDS_BASE = 0.05
POLL = 0.05
"""How often the worker looks up from a request in flight (a stop, the end of the budget)."""


class _Waiter:
    """One `flush()` call waiting for the worker."""

    __slots__ = ("event", "ok")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.ok = False

    def done(self, ok: bool) -> None:
        self.ok = ok
        self.event.set()


class _Flight:
    """A request on the sender: the backlog entries it carries (the head first), their events,
    the sender's job (None: abandoned before it started, the budget being spent) and when it
    started (`time.monotonic`)."""

    __slots__ = ("group", "events", "job", "started")

    def __init__(self, group: List[Entry], events: int, job: Optional[Job], started: float) -> None:
        self.group = group
        self.events = events
        self.job = job
        self.started = started


class Flusher:
    def __init__(
        self,
        queue: Deque[Record],
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
        spool: Optional[Spool] = None,
        pickle: bool = True,
        max_batch_size: Optional[int] = None,
        nice: Optional[int] = None,
        arm: Optional[Callable[[], None]] = None,
    ):
        self.queue = queue
        self.core = core
        self.transport = transport
        self.batch_size = batch_size
        self.max_batch_size = max(batch_size, max_batch_size or batch_size)
        """Events one request may carry, in bodies of ``batch_size`` joined while the server
        keeps up (`Config.max_batch_size`; halved by a 413, `_too_large`)."""
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
        self.consumed = transport is not None or detect or sink is not None
        """Whether anything reads the records: a server, the race detector or the events file.
        Without one (``endpoint=None``, ``detect_races=False``, no events file) records are
        taken from the log and counted as recorded, and nothing else: bodies nobody would send
        would only take CPU from the application (their encoding was ~1-2 µs per event)."""
        self.pickle = pickle and sink is None
        """Hand batches to the core in the pickle form (the events file is written as JSON, so
        with one the JSON form is made anyway)."""
        self.pickle_refused = 0
        """Parts the core did not read in the pickle form (sent as JSON instead)."""
        self.spool = spool if transport is not None else None
        """Where undeliverable bodies go at the end, and where an earlier client's wait."""
        self.backlog = Backlog()
        self.backoff = transport.policy.schedule() if transport is not None else None
        self.final_backoff = transport.policy.final().schedule() if transport is not None else None
        self.pacer = Pacer()
        self.nice = nice
        """Added to the application's nice value for the flusher and the sender
        (`Config.background_nice`); the base is taken here, on the application's thread."""
        self.base_nice = current_nice()
        self.sender = Sender(transport, nice) if transport is not None else None
        self.wake = threading.Event()
        """Set by the hot path (the log reached a batch), `flush` and `stop`."""
        self.wake_size = min(batch_size, queue.maxlen or batch_size)
        """The log's size at which an append wakes the waiting flusher (`EventRecorder.wake_at`
        when armed: ``batch_size``, at most the log's limit)."""
        self.arm = arm or _nothing
        """Called before each wait: the hot path wakes the flusher only while it waits
        (`EventRecorder.arm`), so appends made while it works pay no call."""
        self._halt = threading.Event()  # set by `stop`: ends a backoff early
        self._stopping = False
        self._stop_started = 0.0
        self._deadline: Optional[float] = None
        self._stall: Optional[float] = None
        self._stop_reason: Optional[str] = "the client shut down"
        self._finished = False  # the thread has ended (or will, having settled everything)
        self._delivered_all = False
        self._waiters: List[_Waiter] = []
        self._waiters_lock = threading.Lock()
        self._cycle_lock = threading.Lock()
        """Held by the worker for each cycle and by `analyse_here`: one of them at a time takes
        records from the log and has the core see them, so the core sees them in order."""
        self._thread: Optional[threading.Thread] = None
        self._taken = 0  # events out of the log and not settled (being encoded, or in the backlog)
        self._retry_at = 0.0
        self._outage: Optional[str] = None
        self._last_progress = time.monotonic()
        self._in_flight: Optional[str] = None  # why the last request was abandoned
        self._in_flight_request: Optional[_Flight] = None
        """A request started while a chunk was encoded (`_overlap`), not yet settled."""
        self._deferred = False  # this cycle deferred a delivery started by `_overlap`
        self._log_at_take = 0  # the log's length right after the last take
        self._grew = False  # the log grew while the last chunk was worked on (`_recording`)
        self._claim: Optional[Claim] = None
        self._claim_items: Any = None
        self._spool_scanned = self.spool is None
        self._logged: Set[str] = set()
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
        lower_this_thread(self.nice, self.base_nice)
        ok = True
        try:
            while True:
                self._pause(ok)
                with self._waiters_lock:
                    waiters, self._waiters = self._waiters, []
                try:
                    with self._cycle_lock:
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
                    if ok and not self.queue and not self.backlog and self._claim is None:
                        self._delivered_all = True
                        return
                    if not ok and self._out_of_time():
                        with self._cycle_lock:
                            self._give_up(self._stop_reason)
                        return
        except CoreTrap as e:
            with self._cycle_lock:
                self._give_up(None, trapped=True)
            if self.on_fatal is not None:
                self.on_fatal(e)
        finally:
            self._release_claim()
            self._close_waiters()
            if self.sender is not None:
                self.sender.close()

    def _pause(self, last_ok: bool) -> None:
        """Waits for work: a wake-up or the interval; after a deferred delivery, until the
        retry (cut short by `stop`, and never past the point where the budget ends)."""
        if last_ok and not self.backlog:
            if not self._stopping:
                self.arm()
                # Appends made while it worked did not wake it (`arm`): a batch already waiting
                # is taken now, not after the interval.
                if len(self.queue) < self.wake_size:
                    self.wake.wait(self.interval)
                self.wake.clear()
            return
        delay = self._retry_at - time.monotonic()
        if self._stopping:
            delay = min(delay, self._give_up_at() - time.monotonic())
            if delay > 0:
                time.sleep(delay)
        elif delay > 0:
            self._halt.wait(delay)

    def _give_up_at(self) -> float:
        """When a stopping worker stops trying: the deadline, or (with a stall limit) that long
        after the server last took something, less the time kept to spool what is left."""
        end = self._deadline if self._deadline is not None else float("inf")
        if self._stall is not None:
            end = min(end, max(self._stop_started, self._last_progress) + self._stall)
        return end - self._reserve()

    def _reserve(self) -> float:
        held = len(self.queue) + self._taken
        budget = (self._deadline or 0.0) - self._stop_started
        return min(max(0.0, budget) / 4, SPOOL_SECONDS_BASE + SPOOL_SECONDS_PER_EVENT * held)

    def _out_of_time(self) -> bool:
        return self._stopping and time.monotonic() >= self._give_up_at()

    def _cycle_safely(self) -> bool:
        try:
            return self._cycle()
        except CoreTrap:
            raise
        except Exception as e:  # a bug: never let the worker die, never lose count
            self._count_lost(e)
            if self.backoff is not None:  # whatever it was, do not spin on it
                self._retry_at = time.monotonic() + self.backoff.next_delay()
            return not self.backlog

    def _count_lost(self, error: Exception) -> None:
        """After a bug (``error``) in encoding or delivery: the events taken from the log and
        not in the backlog are counted as failed, and it is logged once."""
        lost = self._taken - self.backlog.events
        self._taken = self.backlog.events
        if lost:
            self.stats.add(failed=lost)
        self._log_once("worker", "raceway: flusher error (%d events lost): %s: %s", lost, type(error).__name__, error)

    def _cycle(self) -> bool:
        """Delivers the backlog, then what waits in the spool, then the records that were in
        the log when the cycle began, one chunk at a time, each chunk's requests going out as
        its parts are encoded (`_overlap`) and its last ones while the next is taken (within
        one chunk: `_deliver`'s ``keep``). False as soon as a delivery is deferred (the rest
        waits for the retry)."""
        self._deferred = False
        if self._in_flight_request is not None and not self._deliver():  # left by a failed cycle
            return False
        if self.backlog:
            self._drop_stale_backlog()
            if self.backlog and not self._deliver():
                return False
        while self._load_spool():
            if not self._deliver():
                return False
        remaining = self._log_at_take = len(self.queue)  # growth while it waited says nothing of now
        while remaining > 0:
            if self._stopping and self._out_of_time():
                return False
            # What the backlog still holds counts against the chunk (at most one chunk of
            # events is held outside the log): the rest of a chunk's bodies, and the request
            # in flight, go out while the next chunk is encoded, once they leave room for
            # half a chunk (or for all that remains). Not while the application records (the
            # log grew since the last take): the round trips are then its time, and the chunk
            # is delivered before the next is taken, as it was without overlap.
            want = min(remaining, self.chunk)
            self._grew = len(self.queue) > self._log_at_take
            keep = 0 if self._grew else self.chunk - min(want, max(1, self.chunk // 2))
            if not self._deliver(keep=keep):
                return False
            records = self._take(min(want, self.chunk - self.backlog.events))
            self._log_at_take = len(self.queue)
            if not records:
                break
            remaining -= len(records)
            self._encode(records)
            if self._deferred:
                return False
        return self._deliver()

    def _drop_stale_backlog(self) -> None:
        """If the log dropped records since the backlog was taken, the backlog is older than
        anything dropped: the oldest go first, so it goes (counted) and a newer chunk is tried."""
        if self.backlog.events and self.log_drops is not None and self.log_drops() > self._drops_at_take:
            n = self.backlog.clear()
            self._settle(n, dropped=n)

    def _take(self, n: int) -> List[Record]:
        # The drops the backlog's oldest events have seen: bodies of the last chunk still held
        # (carried into this take) are older than anything the log dropped since their take.
        if self.log_drops is not None and not self.backlog.events:
            self._drops_at_take = self.log_drops()
        self._taken += n
        records: List[Record] = []
        pop = self.queue.popleft
        try:
            for _ in range(n):
                records.append(pop())
        except IndexError:  # cleared meanwhile (fork, shutdown of a disabled client)
            self._taken -= n - len(records)
        return records

    # ------------------------------------------------------------------------------------------
    # The spool of earlier clients
    # ------------------------------------------------------------------------------------------
    def _load_spool(self) -> bool:
        """Puts up to a chunk of events from the spool into the (empty) backlog. False when
        the spool has nothing (more) to send."""
        if self.spool is None or self.backlog:
            return False
        while True:
            if self._claim is None:
                if self._spool_scanned:
                    return False
                self._claim = self.spool.claim_next()
                self._report_spool()
                if self._claim is None:
                    self._spool_scanned = True
                    return False
                self._claim_items = self._claim.items()
                log.info(
                    "raceway: sending %d events left in the spool by an earlier client (%s)",
                    self._claim.events,
                    self._claim.path,
                )
            loaded = 0
            try:
                for index, n, body in self._claim_items:
                    self.backlog.push(body, n, (self._claim, index))
                    loaded += n
                    if loaded >= self.chunk:
                        break
            except OSError as e:
                self.spool.problem = f"cannot read the spool file {self._claim.path}: {e}"
                self._report_spool()
                self._release_claim()
                self._spool_scanned = True
                return bool(self.backlog)
            if loaded:
                return True
            if self._claim.finished:
                self._claim.finish()
            else:
                self._claim.release()
            self._claim = self._claim_items = None

    def _release_claim(self) -> None:
        """Gives the spool file being delivered back, for the next client (what was delivered
        is in its journal)."""
        claim, self._claim, self._claim_items = self._claim, None, None
        if claim is None:
            return
        try:
            claim.release()
        except Exception:  # pragma: no cover - a rename; never fail the worker for it
            pass
        if not claim.finished:
            log.warning(
                "raceway: %d of %d bodies left in the spool by an earlier client were not delivered; they stay "
                "in %s for the next client with this endpoint",
                claim.bodies - len(claim.done),
                claim.bodies,
                self.spool.path if self.spool is not None else "the spool",
            )

    def _report_spool(self) -> None:
        spool = self.spool
        if spool is None:
            return
        while spool.bad:
            log.error("raceway: skipped an unreadable spool file, kept as %s", spool.bad.pop(0))
        if spool.problem:
            self._log_once("spool", "raceway: the spool cannot be used: %s", spool.problem)
            spool.problem = None

    # ------------------------------------------------------------------------------------------
    # Encoding
    # ------------------------------------------------------------------------------------------
    def _encode(self, records: List[Record]) -> None:
        """Turns records into bodies in the backlog; drops and failures are settled here.
        Each part goes to the core in the pickle form when it can (`_encode_pickled`), else
        in the JSON form, which gives the same answer (docs/record-format.md). With nothing to
        read them (`consumed`) they are only counted."""
        self.stats.add(recorded=len(records))
        if not self.consumed:
            self._settle(len(records))
            return
        per_call = _records.part_size(self.batch_size)
        for start in range(0, len(records), per_call):
            part = records[start : start + per_call]
            encoded = self._encode_pickled(part) if self.pickle else None
            if encoded is not None:
                self._place(part, encoded)
                self._overlap()
                continue
            for text, piece in _records.encode_parts(part, per_call):
                self._place(piece, self._encode_part(text, piece))
                self._overlap()

    def _encode_pickled(self, part: Sequence[Record]) -> Optional[EncodedBatch]:
        """One core call for a part in the pickle form; None when the part cannot be pickled
        or the core does not read this pickle (it then has used nothing of it): the caller
        sends the JSON form."""
        data = _records.encode_pickle(part)
        if data is None:
            return None
        try:
            if self.detect:
                return self.core.observe_pickle(data, self.batch_size if self.transport is not None else 0)
            return self.core.encode_batch_pickle(data, self.batch_size)
        except CoreTrap:
            raise
        except CoreError as e:
            self.pickle_refused += 1
            if self.pickle_refused == 1:
                log.debug("raceway: the core did not read a batch in the pickle form (%s); sent as JSON", e)
            return None

    def _place(self, part: Sequence[Record], encoded: Optional[EncodedBatch]) -> None:
        """Settles what the core answered for ``part`` (None: it could not be encoded) and
        puts its bodies in the backlog."""
        if encoded is None:
            self._settle(len(part), failed=len(part))
            return
        counts = encoded["counts"]
        placed = encoded["events"]  # every valid event (no bodies when nothing is sent)
        if encoded["dropped"]:
            self.stats.add(dropped=encoded["dropped"])
            self._log_once("invalid", "raceway: dropped %d invalid events: %s", encoded["dropped"], encoded["errors"])
        unaccounted = len(part) - placed - encoded["dropped"]
        self._settle(len(part) - placed, failed=max(0, unaccounted))
        if not placed:
            return
        if self.transport is None:  # endpoint=None: local use, nothing leaves the process
            self._settle(placed)
            return
        for body, n in zip(encoded["bodies"], counts, strict=True):  # one body per count
            self.backlog.push(body, n)

    def _encode_part(self, text: str, part: Sequence[Record]) -> Optional[EncodedBatch]:
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

    def _process(self, text: str) -> EncodedBatch:
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
    def _deliver(self, keep: int = 0) -> bool:
        """Sends the backlog, oldest first, as fast as the pacer allows, until it is empty (or,
        with ``keep``, holds at most that many events: a request in flight counts until it is
        answered, and may stay in flight). False (with the next attempt scheduled) when a body
        cannot be delivered now. Consecutive bodies of this process go in one request
        (`_request_group`) while the server keeps up. A request started while a part was
        encoded (`_overlap`) is waited for first."""
        while self.transport is not None:
            if self.backlog.head() is None or (keep and self.backlog.events <= keep):
                return True
            flight = self._in_flight_request
            if flight is None:
                flight = self._start_request(time.monotonic())
                if flight is None:  # the pacer's wait: ``_retry_at`` is set
                    return False
            self._in_flight_request = None
            result = self._wait(flight)  # None: the budget ended with the request unanswered
            if result is None or not self._finish_request(flight, result):
                return False
        return True

    def _start_request(self, now: float) -> Optional["_Flight"]:
        """Submits the next request (the backlog's head, which must be there, and what joins
        it) to the sender. None when the pacer says to wait (``_retry_at`` is then set)."""
        assert self.sender is not None
        head = self.backlog.head()
        assert head is not None
        wait = self.pacer.delay(now)
        if wait > 0:
            self._retry_at = now + wait
            return None
        group = self._request_group(head, now)
        body = head[0] if len(group) == 1 else join_bodies([entry[0] for entry in group])
        n = sum(entry[1] for entry in group)
        self.pacer.before_send(n, now)
        if self._stopping:
            left = self._give_up_at() - now
            if left <= 0.01:
                self._in_flight = None
                return _Flight(group, n, None, now)
            assert self.transport is not None
            job = self.sender.submit(body, timeout=min(self.transport.timeout, left), retries=0)
        else:
            job = self.sender.submit(body, cancel=self._halt)
        return _Flight(group, n, job, now)

    def _wait(self, flight: "_Flight") -> Optional[Result]:
        """The answer to ``flight``, waited for on this thread. Running: as long as the
        transport's own repeats take, their waits cut short by `stop`. Stopping: until the
        budget ends; None then (the request is abandoned: its bodies stay in the backlog and
        are spooled)."""
        job = flight.job
        if job is None:
            return None
        done = job[3]
        while not done.wait(POLL):
            if self._out_of_time():
                self._abandon(flight)
                return None
        return cast(Optional[Result], job[2])

    def _abandon(self, flight: "_Flight") -> None:
        """Stops waiting for ``flight`` (its bodies stay in the backlog, to be spooled or counted;
        the sender finishes it alone) and keeps why, for the line that says what was not
        delivered."""
        assert self.transport is not None
        self._in_flight = (
            f"no answer from the server; a request had waited {time.monotonic() - flight.started:.1f} s "
            f"(timeout {self.transport.timeout:g} s)"
        )

    def _finish_request(self, flight: "_Flight", result: Result) -> bool:
        """Settles the bodies of an answered request by its outcome. False when delivery is
        deferred (a failure or back-pressure: the next attempt is scheduled)."""
        group, n, head = flight.group, flight.events, flight.group[0]
        for entry in group:
            attempts, events = entry[2], entry[1]
            repeats = result.retries + (1 if attempts else 0)
            entry[2] = attempts + 1 + result.retries
            if repeats:
                self.stats.add(retried=events * repeats)
            if entry[3] is not None:
                entry[3][0].touch()
        if result.outcome is Outcome.SENT:
            for entry in group:
                self._done(entry[3], entry[1], "sent")
            self._progress()
            self.pacer.accepted(n, time.monotonic())
            self._recovered()
        elif result.outcome is Outcome.REJECTED and len(group) > 1:
            # One bad event refuses a whole request (4xx): the bodies go again one by one
            # (sent before: never joined again), so only the one that holds it is lost.
            log.debug(
                "raceway: a request of %d bodies was refused (%s); sending them one by one",
                len(group),
                result.status,
            )
            if result.status == 413:
                self._too_large(n)
        elif result.outcome is Outcome.REJECTED:
            self._done(head[3], head[1], "failed")
            self._log_repeating(
                f"rejected-{result.status}",
                "raceway: the server refused %d events; they are dropped: %s",
                head[1],
                result.reason,
            )
        elif result.outcome is Outcome.BACKPRESSURE:
            self._backpressure(result, n)
            return False
        else:
            self._failed(result)
            return False
        return True

    def _overlap(self) -> None:
        """Between two parts of a chunk being encoded: settles a request that has been
        answered and starts the next one once a whole request's worth of bodies
        (``max_batch_size`` events) waits, so the sender and the server work while this thread
        encodes. Without it every request's round trip left the SDK's core idle (measured:
        the process busy 84% of the time while it delivered a burst). Not while stopping
        (`_deliver` keeps to the budget), nor once a delivery was deferred in this cycle (the
        rest of the chunk is encoded and waits in the backlog, as before)."""
        if self.transport is None or self._stopping or self._deferred:
            return
        flight = self._in_flight_request
        if flight is not None:
            if flight.job is None or not flight.job[3].is_set():
                return
            self._in_flight_request = None
            result = cast(Optional[Result], flight.job[2])
            if result is None or not self._finish_request(flight, result):
                self._deferred = True
                return
        # While the application records, the round trips are its time: requests wait for the
        # end of the chunk, as they did without overlap.
        if self._recording() or self.backlog.events < self.max_batch_size:
            return
        now = time.monotonic()
        if self.pacer.backed_off(now):  # under back-pressure bodies go one by one, as they come
            return
        self._in_flight_request = self._start_request(now)

    def _recording(self) -> bool:
        """Whether the application is recording: the log grew while the last chunk was worked
        on, or since this one was taken. Then the flusher does not overlap requests with its
        own work, so that a burst keeps the time a request's round trip leaves (measured with
        overlap during bursts of 80,000 calls: 0.83 -> 0.88-0.92 µs per call on the
        application's thread). Looking only between two parts missed it: with one core, the
        application often does not run between two parts."""
        return self._grew or len(self.queue) > self._log_at_take

    def _too_large(self, events: int) -> None:
        """The server (or a proxy before it) refused a joined request of ``events`` events as
        too large (413): later requests carry at most half as many, down to ``batch_size``,
        so a body limit costs one refused request per halving, not one per request."""
        before = self.max_batch_size
        self.max_batch_size = max(self.batch_size, events // 2)
        if self.max_batch_size < before:
            self._log_repeating(
                "too-large",
                "raceway: the server refused a request of %d events as too large (413); requests now carry at "
                "most %d events (Config.max_batch_size sets the largest)",
                events,
                self.max_batch_size,
                level=logging.WARNING,
            )

    def _request_group(self, head: Entry, now: float) -> List[Entry]:
        """The bodies the next request carries: the head and, while the server keeps up (no
        206 lately: `Pacer.backed_off`), the bodies after it, up to ``max_batch_size`` events
        in all, as long as they are this process's own and were never sent (a body sent before
        goes alone: after a 206 the server took part of it, after a 4xx one of them is bad).
        A request costs ~0.2-0.3 ms of CPU whatever its size, so at ``batch_size`` 50 requests
        alone cost 4-6 µs per event (docs/delivery.md). Under back-pressure bodies go one by
        one: a 206 does not say which events the server took, so the whole request goes again,
        and a small one sends fewer events twice."""
        if self.max_batch_size <= head[1] or not _joinable(head) or self.pacer.backed_off(now):
            return [head]
        return self.backlog.heads(self.max_batch_size, _joinable)

    def _done(self, source: Optional[Tuple[Claim, int]], n: int, how: str) -> None:
        """Settles the head body: this process's events are ``sent`` or ``failed``; a spooled
        body is journaled and counted as ``spool_sent`` or ``spool_failed``."""
        self.backlog.pop()
        if source is None:
            self._settle(n, **{how: n})
            return
        claim, index = source
        self.stats.add(**{f"spool_{how}": n})
        try:
            claim.mark_done(index)
        except OSError as e:
            self.spool.problem = f"cannot write the spool journal {claim.journal_path}: {e}"  # type: ignore[union-attr]
            self._report_spool()

    def _progress(self) -> None:
        self._last_progress = time.monotonic()

    def _backpressure(self, result: Result, n: int) -> None:
        """A 206: the server's queue was full for part of the body. The body is sent again
        (the server does not say which events it took; those it did arrive twice, and the
        server stores an event once per id): counted in ``duplicated``. The pacer slows
        down; no failure, no growing backoff."""
        now = time.monotonic()
        taken = result.accepted or 0
        if taken:
            self.stats.add(duplicated=min(taken, n))
            self._progress()
        self.pacer.backpressure(n, taken, now)
        self._retry_at = now + self.pacer.delay(now)
        self._log_repeating(
            "backpressure",
            "raceway: the server's ingest queue is full (206); sending at the rate it takes (now ~%d events/s)",
            int(self.pacer.rate or 0),
            level=logging.INFO,
        )

    def _failed(self, result: Result) -> None:
        schedule = self.final_backoff if self._stopping else self.backoff
        delay = schedule.next_delay()  # type: ignore[union-attr]
        if result.retry_after is not None:
            delay = max(delay, result.retry_after)
        self._retry_at = time.monotonic() + delay
        if self._outage is None:
            log.warning(
                "raceway: cannot deliver events (%s); keeping %d of them and retrying "
                "(up to the queue limit; beyond it the oldest are dropped and counted)",
                result.reason,
                self.backlog.events + self.backlog.spool_events,
            )
        else:
            log.debug("raceway: delivery still failing (%s); next attempt in %.2fs", result.reason, delay)
        self._outage = result.reason

    def _recovered(self) -> None:
        if self._outage is not None:
            log.info("raceway: delivering again after an outage (%s)", self._outage)
            self._outage = None
            self.backoff.reset()  # type: ignore[union-attr]
            self.final_backoff.reset()  # type: ignore[union-attr]

    def _give_up(self, why: Optional[str], trapped: bool = False) -> None:
        """The budget is spent: everything still held, and still in the log, goes to the spool
        (encoded first), or is counted as failed; one log line says how many and why."""
        self._release_claim()
        # A request `_overlap` started and nobody waited for (the budget ended, or the core
        # failed, while a chunk was encoded): settled by its answer if it has one (a 200 is
        # delivered: not spooled, not sent again by the next client), else abandoned.
        flight, self._in_flight_request = self._in_flight_request, None
        if flight is not None and flight.job is not None and flight.job[3].is_set():
            self._finish_request(flight, cast(Result, flight.job[2]))
        elif flight is not None and flight.job is not None:
            self._abandon(flight)
        reason = self._in_flight or self._outage or ("the server's queue stayed full" if self.pacer.rate else None)
        own = self.backlog.take_own()
        spooled = failed = 0
        problem: Optional[str] = None
        writer = None
        if self.spool is not None and (own or self.queue):
            try:
                writer = self.spool.writer()
            except SpoolError as e:
                problem = str(e)

        def put(bodies: List[Tuple["bytes | str", int]]) -> None:
            nonlocal spooled, failed, writer, problem
            for body, n in bodies:
                if writer is not None:
                    try:
                        if writer.add(body, n):
                            spooled += n
                            continue
                        limit = self.spool.max_bytes if self.spool is not None else 0
                        problem = f"the spool is full ({limit} bytes; Config.spool_max_bytes)"
                    except SpoolError as e:
                        problem = str(e)
                        writer.abort()
                        failed += spooled
                        spooled = 0
                        writer = None
                failed += n

        put(own)
        while self.queue and not trapped and writer is not None:
            records = self._take(min(len(self.queue), self.chunk))
            if not records:
                break
            try:
                self._encode(records)
            except CoreTrap:
                trapped = True
            put(self.backlog.take_own())
        queued = len(self.queue)
        self.queue.clear()
        if writer is not None:
            try:
                writer.commit()
            except SpoolError as e:
                problem = str(e)
                failed += spooled
                spooled = 0
        held, self._taken = self._taken, 0
        failed += queued + max(0, held - spooled - failed)
        counts = {"recorded": queued, "failed": failed, "spooled": spooled}
        self.stats.add(**counts)
        if spooled:
            log.warning(
                "raceway: %d events could not be delivered before %s (%s); they are in the spool "
                "(%s) and the next client with this endpoint sends them first",
                spooled,
                why or "the client turned itself off",
                reason or "no reason recorded",
                self.spool.path,  # type: ignore[union-attr]
            )
        if failed:
            detail = (
                f"; the spool could not take them: {problem}"
                if problem
                else ("" if self.spool is not None else "; no spool (Config.spool is off)")
            )
            # After a core failure (``why`` None) the client has logged the one ERROR already:
            # the count is said at WARNING.
            log.log(
                logging.ERROR if why is not None or problem else logging.WARNING,
                "raceway: %d events could not be delivered before %s (%s)%s",
                failed,
                why or "the client turned itself off",
                reason or "no reason recorded",
                detail,
            )
        elif problem:
            log.error("raceway: the spool could not be used: %s", problem)

    # ------------------------------------------------------------------------------------------
    # Called from other threads
    # ------------------------------------------------------------------------------------------
    def analyse_here(self, timeout: Optional[float]) -> bool:
        """For a client without a server (``transport`` None): has the core see everything the
        log holds now, on the calling thread, instead of waking the worker and waiting for it
        (`flush`): `RacewayClient.races` asks this, and the hand-off to the worker and back
        was ~0.1-0.15 ms per question (the pytest plugin asks once per test). The cycle lock
        keeps the order: the worker may hold a chunk it took from the log and has not yet
        given to the core, and records taken after it must not reach the core first. With a
        server, or once stopping, this is `flush`. False when the lock was not had within
        ``timeout`` or the core failed."""
        if self.transport is not None or self._stopping or not self.alive:
            return self.flush(timeout)
        if not self._cycle_lock.acquire(timeout=-1 if timeout is None else timeout):
            return False
        try:
            # The worker's own cycle: without a server it takes what the log holds now, one
            # chunk at a time, and has the core see it (nothing to deliver, no spool).
            self._cycle()
        except CoreTrap:  # the instance told the client (its on_trap); the worker settles the rest
            return False
        except Exception as e:  # a bug: as the worker does, count what was taken and go on
            self._count_lost(e)
            return False
        finally:
            self._cycle_lock.release()
        return True

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

    def stop(
        self,
        timeout: Optional[float],
        reason: Optional[str] = "the client shut down",
        stall: Optional[float] = None,
        grace: float = 0.0,
    ) -> bool:
        """Delivers what is left and ends the worker: retrying until ``timeout`` seconds have
        passed (None or 0: give up at the first failure), and with ``stall``, only while the
        server takes something at least every ``stall`` seconds. True if everything was
        delivered in time. What cannot be delivered is spooled (or counted as failed) and
        logged as not delivered because of ``reason`` (None: not logged, the caller has said
        why). Waits ``grace`` seconds past the deadline for the worker to finish spooling."""
        # A stop is one-way: a later call can bring the deadline closer, never push it back,
        # and the first call's reason stands (None: the caller has said why; nothing is logged).
        now = time.monotonic()
        deadline = now + (timeout or 0.0)
        if self._stopping:
            deadline = min(deadline, self._deadline if self._deadline is not None else deadline)
            reason = self._stop_reason  # the first stop says why
            if self._stall is not None:
                stall = self._stall if stall is None else min(stall, self._stall)
        else:
            self._stop_started = now
        self._stop_reason = reason
        self._stall = stall
        self._deadline = deadline
        self._stopping = True
        self._halt.set()
        self.wake.set()
        thread = self._thread
        if thread is None:
            return not self.queue
        if thread is not threading.current_thread():
            # The caller's own timeout: an earlier, shorter stop ends the worker sooner, and the
            # join returns as soon as it has settled everything.
            thread.join((timeout or 0.0) + grace)
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
                "queue-full",
                "raceway: the event queue is full; %d events dropped so far (oldest first)",
                drops,
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


def _nothing() -> None:
    return None


def _joinable(entry: Entry) -> bool:
    """Whether a backlog body may share a request: with events, this process's own (not the
    spool's), never sent, and of the core's shape (`join_bodies`)."""
    body = entry[0]
    return (
        entry[1] > 0
        and not entry[2]
        and entry[3] is None
        and isinstance(body, bytes)
        and body.startswith(BODY_START)
        and body.endswith(BODY_END)
    )
