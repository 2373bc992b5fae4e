"""Sending request bodies to ``POST {endpoint}/events`` over a pooled, reused connection.

Only the flusher thread calls `Transport.send`: sending never happens on an application thread.
The API key goes in ``Authorization`` on this connection and nowhere else.

Retrying is urllib3's `Retry`, configured once by `RetryPolicy`: within one `send`, connection
errors, timeouts, broken responses, 429 and 5xx are retried with exponential backoff and jitter
(honouring ``Retry-After`` up to ``backoff_max``). When a send still fails, the flusher keeps the
body and tries again later (docs/delivery.md); `Backoff` spaces those later attempts with the
same urllib3 formula, so there is one schedule, not two.
"""

from __future__ import annotations

import enum
import json
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

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
    """How many times urllib3 sent the body again within this `send`."""


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

    def _retry(self, **kwargs: object) -> "Retry":
        return _capped_retry()(
            backoff_factor=self.backoff,
            backoff_max=self.backoff_max,
            backoff_jitter=self.backoff * 2,
            **kwargs,  # type: ignore[arg-type]
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


_capped_retry_class: Optional[type] = None


def _capped_retry() -> type:
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
            retry = retry.new(history=retry.history[-self._HISTORY:])
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
        self.url = f"{endpoint}/events"
        self.policy = policy or RetryPolicy()
        self.headers = {"Content-Type": "application/json", "User-Agent": "raceway-python-wasm/0.1"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout = timeout
        self._pool: "Optional[urllib3.PoolManager]" = None

    @property
    def pool(self) -> "urllib3.PoolManager":
        """The connection pool, made on first use (on the flusher thread: it imports urllib3)."""
        if self._pool is None:
            import urllib3

            self._pool = urllib3.PoolManager(
                num_pools=1, maxsize=1, retries=self.policy.per_request(), timeout=urllib3.Timeout(total=self.timeout)
            )
        return self._pool

    def send(self, body: "bytes | str") -> Result:
        from urllib3.exceptions import HTTPError, MaxRetryError

        try:
            resp = self.pool.request("POST", self.url, body=body if isinstance(body, bytes) else body.encode("utf-8"),
                                     headers=self.headers)
        except MaxRetryError as e:
            return Result(Outcome.FAILED, None, _describe(e.reason), self.policy.retries)
        except HTTPError as e:
            return Result(Outcome.FAILED, None, _describe(e))
        retries = len(resp.retries.history) if resp.retries is not None else 0
        status = resp.status
        if status == 206:
            return Result(Outcome.BACKPRESSURE, status, "server queue full (206)", retries)
        if 200 <= status < 300:
            return Result(Outcome.SENT, status, "", retries)
        reason = _reason(resp)
        if status == 429 or status >= 500:
            return Result(Outcome.FAILED, status, reason, retries)
        return Result(Outcome.REJECTED, status, reason, retries)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.clear()


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
