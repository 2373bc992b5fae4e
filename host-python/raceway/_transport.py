"""Sending request bodies to ``POST {endpoint}/events`` over a pooled, reused connection.

Only the flusher's threads call `Transport.send` (the flusher itself, or its `Sender`): sending
never happens on an application thread. The API key goes in ``Authorization`` on this
connection and nowhere else.

Each request is made once by urllib3 (no urllib3 retries, no redirects followed); `send`
repeats it itself after connection errors, timeouts, broken responses, 429 and 5xx, up to
`RetryPolicy.retries` times, waiting urllib3's backoff formula (``backoff * 2**(n-1)`` plus
jitter, capped, honouring ``Retry-After`` up to the cap). Doing the waits here rather than in
urllib3 lets a shutdown cut them short (``cancel``) and lets the shutdown phase send with a
shorter timeout and no repeats (docs/delivery.md). When a send still fails, the flusher keeps
the body and tries again later; `Backoff` spaces those later attempts with the same formula,
so there is one schedule, not two.

The server's answers (its ingest handler, ``cli/src/server.rs`` of the Raceway server): ``200``
when every event of the body entered its ingest queue; ``206`` with
``"Ingested N events, M errors"`` when its queue (10,000 events) was full for ``M`` of them. The
handler offers the events to the queue one by one, in order, and does not say which were
refused; `Result.accepted` carries ``N``.
"""

from __future__ import annotations

import enum
import json
import logging
import random
import re
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, List, Optional, Union

from ._priority import current_nice, lower_this_thread

if TYPE_CHECKING:
    import urllib3
    from urllib3.util.retry import Retry

# urllib3 (~35 ms of imports) is imported when the first body is sent or the first backoff
# computed, both on the flusher thread, so `import raceway` and a ready client never wait for it.

log = logging.getLogger("raceway")

FLUSHER_THREAD = "raceway-flusher"
"""Name of the flusher thread; urllib3's retry warnings from it are demoted (see below)."""


class Outcome(enum.Enum):
    SENT = "sent"
    BACKPRESSURE = "backpressure"  # 206: the server's queue is full; send again later
    REJECTED = "rejected"  # a 4xx other than 429 (or a redirect): sending again cannot help
    FAILED = "failed"  # connection errors, timeouts, 429 and 5xx after urllib3's retries


@dataclass
class Result:
    outcome: Outcome
    status: Optional[int] = None
    reason: str = ""
    retries: int = 0
    """How many times the body was sent again within this `send`."""
    accepted: Optional[int] = None
    """For a 206: how many of the body's events the server says it took (``Ingested N``)."""
    retry_after: Optional[float] = None
    """The server's ``Retry-After`` (seconds, capped at the policy's ``backoff_max``), if any."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard delivery tries. Defaults: 3 retries within a send after 0, 1 and 2 s (plus up to
    1 s of jitter); then, while the server stays unreachable, attempts 1, 2, 4, 8, 16 and 30 s
    apart (plus jitter)."""

    retries: int = 3
    backoff: float = 0.5
    """urllib3's ``backoff_factor``: the n-th consecutive failure waits ``backoff * 2**(n-1)``."""
    backoff_max: float = 30.0
    """No wait is longer (a ``Retry-After`` from the server included)."""

    def _retry(self, **kwargs: Any) -> "Retry":
        """A `Retry` with this policy's backoff; ``kwargs``: more of `Retry`'s keyword
        arguments, forwarded as they are (their types are `Retry`'s)."""
        return _capped_retry()(
            backoff_factor=self.backoff,
            backoff_max=self.backoff_max,
            backoff_jitter=self.backoff * 2,
            **kwargs,
        )

    def per_request(self) -> "Retry":
        """urllib3's retries within one send."""
        n = self.retries
        return self._retry(
            total=n,
            connect=n,
            read=n,
            status=n,
            other=n,
            redirect=n,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=frozenset({"POST"}),  # bodies carry event ids: a repeat is a duplicate, not a new event
            respect_retry_after_header=True,
            raise_on_status=False,
            raise_on_redirect=False,
        )

    def schedule(self) -> "Backoff":
        return Backoff(self)

    def retry_delay(self, n: int) -> float:
        """The wait before the ``n``-th repeat of a request within one send: urllib3's formula
        (0 for the first, then ``backoff * 2**(n-1)`` plus up to ``2 * backoff`` of jitter,
        capped at ``backoff_max``)."""
        if n <= 1:
            return 0.0
        value = self.backoff * 2 ** (n - 1) + random.random() * self.backoff * 2
        return float(max(0.0, min(self.backoff_max, value)))

    def final(self) -> "RetryPolicy":
        """The schedule of the shutdown phase (`shutdown()` and the exit flush), where a budget
        bounds the time: one request per attempt (the flusher repeats it), attempts
        `FINAL_BACKOFF` x 2, x 4 ... apart, at most `FINAL_BACKOFF_MAX` (never slower than the
        running schedule)."""
        return RetryPolicy(
            retries=0,
            backoff=max(MIN_FINAL_DELAY, min(self.backoff, FINAL_BACKOFF)),
            backoff_max=max(MIN_FINAL_DELAY, min(self.backoff_max, FINAL_BACKOFF_MAX)),
        )


FINAL_BACKOFF = 0.05
"""Backoff factor of the shutdown phase: attempts 0.1-0.2, then 0.2 s apart."""
FINAL_BACKOFF_MAX = 0.2
"""Longest wait between two attempts in the shutdown phase: a collector that recovers is
reached within 0.2 s, at the cost of at most ~5 requests a second while a shutdown waits
(bounded by its budget and its stall limit)."""
MIN_FINAL_DELAY = 0.02


_capped_retry_class: Optional[type[Retry]] = None


def _capped_retry() -> type[Retry]:
    """`Retry` that waits at most ``backoff_max`` for a server's ``Retry-After`` (urllib3's own
    cap is 6 hours, and ``retry_after_max`` only exists from urllib3 2.5 on). Defined on first
    use so that importing this module does not import urllib3."""
    global _capped_retry_class
    if _capped_retry_class is None:
        from urllib3.util.retry import Retry

        class CappedRetry(Retry):
            def get_retry_after(self, response: "urllib3.BaseHTTPResponse") -> Optional[float]:
                after = super().get_retry_after(response)
                return None if after is None else min(after, self.backoff_max)

        _capped_retry_class = CappedRetry
    return _capped_retry_class


class Backoff:
    """The wait before the next attempt at a body that could not be delivered: urllib3's
    ``get_backoff_time`` over the run of consecutive failed sends, so it doubles from
    ``2 * backoff`` up to ``backoff_max``, with jitter. `reset` after a success."""

    _HISTORY = 32  # enough to reach any cap; keeps the history from growing through an outage

    def __init__(self, policy: RetryPolicy):
        self._policy = policy
        self._start: "Optional[Retry]" = None  # built on first use (it imports urllib3)
        self._retry: "Optional[Retry]" = None

    def _current(self) -> "Retry":
        if self._retry is None:
            self._start = self._policy._retry(total=None).increment(method="POST", url="/events")
            self._retry = self._start
        return self._retry

    def next_delay(self) -> float:
        retry = self._current().increment(method="POST", url="/events")
        if len(retry.history) > self._HISTORY:
            retry = retry.new(history=retry.history[-self._HISTORY :])
        self._retry = retry
        return retry.get_backoff_time()

    def reset(self) -> None:
        self._retry = self._start

    @property
    def failures(self) -> int:
        """Consecutive failed sends so far."""
        return len(self._retry.history) - 1 if self._retry is not None else 0


class Transport:
    def __init__(self, endpoint: str, api_key: Optional[str], timeout: float, policy: Optional[RetryPolicy] = None):
        self.endpoint = endpoint
        self.url = f"{endpoint}/events"
        self.policy = policy or RetryPolicy()
        self.headers = {"Content-Type": "application/json", "User-Agent": "raceway-python-wasm/0.1"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout = timeout
        self._http: "Optional[_Http]" = None

    @property
    def pool(self) -> "urllib3.HTTPConnectionPool":
        """The connection pool of the endpoint's host (one connection, kept alive), made on
        first use (on a flusher thread: it imports urllib3)."""
        return self._prepared().pool

    def _prepared(self) -> "_Http":
        """What every request shares, made once: the pool, the path and urllib3's per-request
        objects. A request goes to the pool directly, as `urllib3.PoolManager` would pass it."""
        http = self._http
        if http is None:
            http = self._http = _Http(self.url)
        return http

    def send(
        self,
        body: "Union[bytes, str]",
        timeout: Optional[float] = None,
        retries: Optional[int] = None,
        cancel: Optional[threading.Event] = None,
    ) -> Result:
        """POSTs ``body``, repeating it after a transient failure up to ``retries`` times
        (default: the policy's). Each request may take ``timeout`` seconds (default: the
        transport's). A set ``cancel`` ends the waits between repeats: the last failure is
        returned at once."""
        data = body if isinstance(body, bytes) else body.encode("utf-8")
        limit = self.policy.retries if retries is None else retries
        timeout = self.timeout if timeout is None else timeout
        repeats = 0
        while True:
            result = self._request(data, timeout)
            result.retries = repeats
            if result.outcome is not Outcome.FAILED or repeats >= limit:
                return result
            repeats += 1
            delay = self.policy.retry_delay(repeats)
            if result.retry_after is not None:
                delay = max(delay, result.retry_after)
            if cancel is not None:
                if cancel.wait(delay):
                    result.retries = repeats - 1
                    return result
            elif delay > 0:
                time.sleep(delay)
            log.debug("raceway: sending again (%d of %d) after %s", repeats, limit, result.reason)

    def _request(self, data: bytes, timeout: float) -> Result:
        """One request, classified."""
        http = self._prepared()
        try:
            resp = http.pool.urlopen(
                "POST",
                http.path,
                body=data,
                headers=self.headers,
                retries=http.no_retries,
                redirect=False,
                assert_same_host=False,
                timeout=http.timeout(timeout),
            )
        except http.errors as e:  # OSError: urllib3 wraps socket errors; belt and braces
            return Result(Outcome.FAILED, None, _describe(e))
        status = resp.status
        if status == 206:
            accepted = _ingested(resp)
            what = f"{accepted} of the body's events taken" if accepted is not None else "answer unreadable"
            return Result(Outcome.BACKPRESSURE, status, f"the server's queue is full (206; {what})", accepted=accepted)
        if 200 <= status < 300:
            return Result(Outcome.SENT, status, "")
        reason = _reason(resp)
        if status == 429 or status >= 500:
            return Result(Outcome.FAILED, status, reason, retry_after=self._retry_after(resp))
        return Result(Outcome.REJECTED, status, reason)

    def _retry_after(self, resp: "urllib3.BaseHTTPResponse") -> Optional[float]:
        if resp.status not in (429, 503):
            return None
        after = self.policy.per_request().get_retry_after(resp)
        return None if after is None else max(0.0, after)

    def close(self) -> None:
        """Closes the pooled connections and lets the pool go. urllib3 closes a pool's
        connections in a ``weakref.finalize`` when the pool is collected, or at interpreter
        exit if it is still alive then; under gevent that late call fails ("greenlet is being
        finalized") and prints a traceback. Here they are closed now, on the thread that used
        them, and nothing is left for exit."""
        http, self._http = self._http, None
        if http is None:
            return
        pool = http.pool
        try:
            pool.close()  # closes its connections
        except Exception:  # pragma: no cover - closing sockets must never raise
            return
        # A pool can outlive this (an exception's traceback cycle holds it until the cyclic
        # collector runs): its finalizer, now useless, is detached so it cannot run at exit.
        try:
            for finalizer in list(getattr(weakref.finalize, "_registry", {})):
                info = finalizer.peek()
                if info is not None and info[0] is pool:
                    finalizer.detach()
        except Exception:  # pragma: no cover - a private registry; best effort
            pass


class _Http:
    """urllib3's side of a `Transport`, built once per pool: the pool for the endpoint's
    scheme, host and port (what `urllib3.PoolManager` would pick for the URL, with the same
    keyword arguments: one connection, no urllib3 retries), the URL's path and query
    (``request_uri``), a `Retry` that allows none and redirects none (what urllib3 makes of
    ``retries=False, redirect=False`` on every call), and the last `urllib3.Timeout` used."""

    def __init__(self, url: str):
        import urllib3
        from urllib3.exceptions import HTTPError
        from urllib3.util import Retry, parse_url

        self.pool = urllib3.connection_from_url(url, maxsize=1, retries=False)
        self.path = parse_url(url).request_uri
        self.no_retries = Retry(False, redirect=False)
        self.errors = (HTTPError, OSError)
        self._timeout_class = urllib3.Timeout
        self._timeout: "tuple[float, urllib3.Timeout] | None" = None

    def timeout(self, seconds: float) -> "urllib3.Timeout":
        """``urllib3.Timeout(total=seconds)`` (at least 1 ms), reused while ``seconds`` is."""
        cached = self._timeout
        if cached is None or cached[0] != seconds:
            cached = self._timeout = (seconds, self._timeout_class(total=max(0.001, seconds)))
        return cached[1]


_INGESTED = re.compile(r"Ingested (\d+) events")


def _ingested(resp: "urllib3.BaseHTTPResponse") -> Optional[int]:
    """``N`` of the server's ``"Ingested N events, M errors"`` (in ``data`` of its envelope)."""
    try:
        envelope = json.loads(resp.data[:2000].decode("utf-8", "replace"))
        text = envelope.get("data") if isinstance(envelope, dict) else None
        found = _INGESTED.search(text) if isinstance(text, str) else None
        return int(found.group(1)) if found else None
    except (ValueError, AttributeError):
        return None


Job = List[Any]
"""``[body, kwargs, result, done]``: the body, `Transport.send`'s keyword arguments, its
`Result` (None until done) and a `threading.Event` set when it is. A list because the sending
thread fills in the result in place; a list's positions cannot each have a type, hence ``Any``."""


class Sender:
    """Runs `Transport.send` on a thread of its own, so the flusher can stop waiting for an
    answer when its shutdown budget ends, without the request itself ending (a blocking read
    cannot be interrupted). An abandoned request finishes (or times out) by itself and its
    answer is ignored; the body it carried was spooled or counted by then."""

    def __init__(self, transport: Transport, nice: Optional[int] = None):
        self.transport = transport
        self.nice = nice
        """Added to the application's nice value for the sending thread (`raceway._priority`)."""
        self.base_nice = current_nice()
        self._cond = threading.Condition()
        self._job: Optional[Job] = None
        self._closed = False
        self._thread: Optional[threading.Thread] = None

    def submit(self, body: "Union[bytes, str]", **kwargs: object) -> Job:
        """Hands ``body`` and `Transport.send`'s keyword arguments to the sending thread;
        returns the job, whose event (``job[3]``) is set when its result (``job[2]``) is in."""
        job = [body, kwargs, None, threading.Event()]
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=FLUSHER_THREAD + "-send", daemon=True)
                self._thread.start()
            self._job = job
            self._cond.notify()
        return job

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._job is not None

    def _run(self) -> None:
        lower_this_thread(self.nice, self.base_nice)
        while True:
            with self._cond:
                while self._job is None and not self._closed:
                    self._cond.wait()
                if self._job is None:
                    break
                job = self._job
            try:
                result = self.transport.send(job[0], **job[1])
            except Exception as e:  # pragma: no cover - send classifies its own errors
                result = Result(Outcome.FAILED, None, _describe(e))
            with self._cond:
                job[2] = result
                if self._job is job:
                    self._job = None
                job[3].set()
                if self._closed:
                    break
        self.transport.close()

    def close(self) -> None:
        """Ends the thread once it is idle, closing the connections (an abandoned request is
        left to finish; the thread closes them after it)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread, busy = self._thread, self._job is not None
        if thread is None:
            self.transport.close()
        elif thread is not threading.current_thread() and not busy:
            thread.join(1.0)


def _describe(error: object) -> str:
    """A connection error in one line: its type and message without urllib3's pool preamble."""
    text = str(error)
    if "(Caused by " in text:
        text = text.split("(Caused by ", 1)[1].rstrip(")")
    return f"{type(error).__name__}: {text}"[:300]


def _reason(resp: "urllib3.BaseHTTPResponse") -> str:
    """The server's error text from its ``{"success", "data", "error"}`` envelope, if any."""
    text = resp.data[:500].decode("utf-8", "replace") if resp.data else ""
    try:
        envelope = json.loads(text)
        if isinstance(envelope, dict) and envelope.get("error"):
            return f"HTTP {resp.status}: {envelope['error']}"
    except ValueError:
        pass
    return f"HTTP {resp.status}: {text[:200]}"


class _DemoteFlusherWarnings(logging.Filter):
    """urllib3 logs each retry at WARNING ("Retrying ... after connection broken"). From the
    flusher thread those are the SDK's business, not the application's: they are passed on at
    DEBUG on the ``raceway`` logger instead, so an outage does not spill urllib3 warnings onto
    the application's stderr. Records from the application's own urllib3 use are untouched."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING and threading.current_thread().name.startswith(FLUSHER_THREAD):
            if log.isEnabledFor(logging.DEBUG):
                log.debug("raceway: urllib3: %s", record.getMessage())
            return False
        return True


_filter = _DemoteFlusherWarnings()
for _name in ("urllib3.connectionpool", "urllib3.poolmanager"):
    _logger = logging.getLogger(_name)
    if not any(isinstance(f, _DemoteFlusherWarnings) for f in _logger.filters):
        _logger.addFilter(_filter)


class Pacer:
    """Paces sending to what the server takes: AIMD on the rate, in events per second.

    Unpaced until the server first answers 206 (its ingest queue is full). Then the rate is
    cut to 70% of what the server took over the last second (at most once per `CUT_GAP`;
    with too little taken to tell, the body is held back 0.05, 0.1 ... 1 s instead), and
    a body is sent only when the previous ones have had their share of time. While bodies are
    taken whole, the rate grows back linearly, by a quarter of the rate after the cut per
    second, and after `PROBE_AFTER` seconds without a cut it probes upward by half per second.
    A full server queue keeps draining at the server's own speed while the client backs off,
    so a burst drains at the server's speed with few refused attempts: the cuts stop sending
    before the queue is refilled, and the queue (10,000 events on the Raceway server) covers
    the gaps."""

    WINDOW = 1.0
    CUT = 0.7
    CUT_GAP = 0.2
    INCREASE = 0.25
    PROBE_AFTER = 4.0
    PROBE = 0.5
    MIN_RATE = 20.0
    MAX_RATE = 1e7
    HISTORY = 4
    """Bodies' worth of events the server must have taken within `WINDOW` before the rate
    is estimated from them."""
    HOLD = 0.05
    HOLD_MAX = 1.0

    def __init__(self) -> None:
        self.rate: Optional[float] = None
        self._next = 0.0
        self._cut_at = float("-inf")
        self._cut_rate = 0.0
        self._taken: "deque[tuple[float, int]]" = deque()
        self._holds = 0
        self.cuts = 0

    def delay(self, now: float) -> float:
        """Seconds to wait before the next body may go."""
        return max(0.0, self._next - now)

    def before_send(self, events: int, now: float) -> None:
        if self.rate is not None:
            self._next = max(self._next, now) + events / self.rate

    def accepted(self, events: int, now: float) -> None:
        self._note(events, now)
        self._holds = 0
        if self.rate is not None:
            step = self.INCREASE * self._cut_rate
            if now - self._cut_at >= self.PROBE_AFTER:
                step = max(step, self.PROBE * self.rate)
            self.rate = min(self.MAX_RATE, self.rate + step * events / self.rate)

    def backpressure(self, events: int, taken: int, now: float) -> None:
        """A 206 for a body of ``events`` of which the server took ``taken``."""
        self._note(taken, now)
        seen = sum(n for _, n in self._taken)
        if now - self._cut_at >= self.CUT_GAP and (self.rate is not None or seen >= self.HISTORY * events):
            measured = self.measured(now)
            base = measured if self.rate is None else min(self.rate, measured)
            self.rate = max(self.MIN_RATE, self.CUT * base)
            self._cut_rate = self.rate
            self._cut_at = now
            self.cuts += 1
        if self.rate is None:
            # Nothing to estimate the server's speed from (a 206 after a quiet spell): hold
            # back, longer at each 206 in a row, until the server takes something.
            self._next = now + min(self.HOLD_MAX, self.HOLD * 2**self._holds)
            self._holds += 1
        else:
            self._next = now + events / self.rate

    def backed_off(self, now: float) -> bool:
        """Whether the server has been the bottleneck lately: a body held back, or the rate cut
        within the last `PROBE_AFTER` seconds."""
        return self._holds > 0 or now - self._cut_at < self.PROBE_AFTER

    def measured(self, now: float) -> float:
        """Events per second the server took over the last `WINDOW` seconds."""
        if not self._taken:
            return self.MIN_RATE
        span = max(0.05, min(self.WINDOW, now - self._taken[0][0]))
        return sum(n for _, n in self._taken) / span

    def _note(self, events: int, now: float) -> None:
        taken = self._taken
        taken.append((now, events))
        while taken and now - taken[0][0] > self.WINDOW:
            taken.popleft()
