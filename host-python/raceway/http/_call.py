"""One outgoing HTTP call: whether it is traced, the headers it gets, and the two events.

Every library adapter (`_requests`, `_httpx`, `_urllib3`, `_aiohttp`) does the same three
things around the library's own call, through `begin` and `Call.end`:

1. decide whether the call is traced: instrumentation on, a current execution context, not
   already inside a traced call (``requests`` goes through ``urllib3``; redirects and retries
   call the library again), not on the SDK's delivery threads, not to the Raceway endpoint;
2. record ``HttpRequest`` (method and URL: no credentials, no query string unless asked, no
   headers, no body) and compute the headers to add: `RacewayClient.propagation_headers`
   (a new span for the callee, the sender's clock component counted), minus every name the
   caller set itself; when the caller set ``traceparent`` or ``raceway-clock`` it took charge
   of this call's propagation and nothing of ours is added (docs/distributed.md);
3. when the library returns, record ``HttpResponse`` (status, duration); when it raises, an
   ``Error`` (not for a cancellation) and an ``HttpResponse`` with status 0 (or the status the
   exception carries), and the exception goes on to the application unchanged.

Nothing here raises into the application: a failure of ours is logged once (at ERROR, by the
client) and the call goes out as the application made it.
"""

from __future__ import annotations

import threading
import time
from contextvars import ContextVar, Token
from typing import Awaitable, Callable, Dict, Iterable, Optional, Tuple, TypeVar
from urllib.parse import urlsplit, urlunsplit

from .. import _values
from .._client_protocol import ClientLike
from .._recorder import EventRecorder, Fields, recorder_of, warn_once
from .._transport import FLUSHER_THREAD
from ..context import ExecutionContext, strand_context
from ..context import current_var as _current

TAKES_CHARGE = frozenset({"traceparent", "raceway-clock"})
"""Header names that, set by the caller, mean it propagates this call itself: we add none."""

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

# True inside a traced call, in the calling thread or task: the library's inner layers (requests
# over urllib3, a redirect, a retry) go through untouched, so a call is traced once.
_inside: ContextVar[bool] = ContextVar("raceway_http_call", default=False)


def _origin(url: str) -> Optional[Tuple[str, str, int]]:
    """(scheme, host, port) of an absolute URL, lower-cased, the port made explicit."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    except ValueError:
        return None
    return (scheme, host, port) if host else None


def describe_url(url: str, include_query: bool = False) -> str:
    """The URL as recorded: scheme, host, port and path; never the user-info part
    (``user:password@``) nor the fragment; the query string only with ``include_query``
    (query strings often carry tokens, as the middleware's ``include_query`` says)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = parts.port
    except ValueError:  # not a URL we can take apart: keep what precedes any query
        return _values.text(str(url).split("?", 1)[0].split("#", 1)[0])
    netloc = f"{host}:{port}" if port is not None else host
    query = parts.query if include_query else ""
    return _values.text(urlunsplit((parts.scheme, netloc, parts.path, query, "")))


class Tracer:
    """The instrumentation in force: the client whose contexts and headers are used, its
    record log (``recorder``: `raceway._recorder.recorder_of`, None for an object that is not
    a `RacewayClient`: its calls get headers and no events), and the options. One at a time
    (`raceway.http.instrument_http`)."""

    __slots__ = ("client", "recorder", "include_query", "endpoint")

    def __init__(self, client: ClientLike, include_query: bool = False):
        self.client = client
        self.recorder: Optional[EventRecorder] = recorder_of(client)
        self.include_query = include_query
        endpoint = getattr(getattr(client, "settings", None), "endpoint", None)
        self.endpoint = _origin(endpoint) if endpoint else None

    def to_endpoint(self, url: str) -> bool:
        """Whether ``url`` goes to the Raceway endpoint (which gets no trace headers: the
        SDK's own delivery, or the application talking to the Raceway API)."""
        return self.endpoint is not None and _origin(url) == self.endpoint

    def warn(self, key: str, error: BaseException) -> None:
        """Logs a failure of ours once per ``key`` (at ERROR, through the client's recorder)."""
        warn_once(
            self.client,
            f"http-{key}",
            "raceway: outgoing HTTP instrumentation failed (%s: %s); the call goes out untraced",
            type(error).__name__,
            error,
        )


_active: Optional[Tracer] = None


def activate(tracer: Optional[Tracer]) -> None:
    global _active
    _active = tracer


def active() -> Optional[Tracer]:
    return _active


def _on_delivery_thread() -> bool:
    return threading.current_thread().name.startswith(FLUSHER_THREAD)


_R = TypeVar("_R")


class Call:
    """A traced call between `begin` and `end`: ``headers`` are the ones to add to it."""

    __slots__ = ("tracer", "ctx", "start_ns", "headers", "token", "ended")

    def __init__(self, tracer: Tracer, ctx: ExecutionContext):
        self.tracer = tracer
        self.ctx = ctx
        self.start_ns = time.perf_counter_ns()
        self.headers: Dict[str, str] = {}
        self.token: Optional[Token[bool]] = None
        self.ended = False

    def _record(self, kind: str, fields: Fields, duration_ns: Optional[int] = None) -> None:
        recorder = self.tracer.recorder
        if recorder is not None:
            recorder.record(self.ctx, kind, fields, duration_ns)

    def send(self, request: Callable[[], _R], status: str = "status") -> _R:
        """``request()``, the library's own call, then `end` with the response's ``status``
        attribute (0 when it has none), or with the error it raised (raised again)."""
        try:
            response = request()
        except BaseException as e:
            self.end(0, e)
            raise
        self.end(getattr(response, status, 0))
        return response

    async def asend(self, request: Callable[[], Awaitable[_R]], status: str = "status") -> _R:
        """`send` for a coroutine-returning call."""
        try:
            response = await request()
        except BaseException as e:
            self.end(0, e)
            raise
        self.end(getattr(response, status, 0))
        return response

    def end(self, status: object = 0, error: Optional[BaseException] = None) -> None:
        """The library returned a response with ``status``, or raised ``error``. Records the
        response once; never raises."""
        if self.ended:
            return
        self.ended = True
        token, self.token = self.token, None
        if token is not None:
            try:
                _inside.reset(token)
            except (ValueError, RuntimeError):  # reset from another context: nothing of ours left
                pass
        try:
            duration_ns = max(0, time.perf_counter_ns() - self.start_ns)
            if error is not None:
                if isinstance(error, Exception):  # a cancellation or an exit is not a failed call
                    frames = self.tracer.client.config.max_stack_frames
                    self._record("Error", _values.describe_exception(error, frames))
                carried = getattr(error, "status", None)
                status = carried if isinstance(carried, int) and not isinstance(carried, bool) else 0
            if isinstance(status, bool) or not isinstance(status, int) or not 0 <= status <= 65535:
                status = 0
            self._record("HttpResponse", (status, _values.EMPTY_OBJECT, None, duration_ns // 1_000_000), duration_ns)
        except Exception as e:
            self.tracer.warn("record", e)


def begin(method: object, url: object, names: Iterable[object] = ()) -> Optional[Call]:
    """Starts tracing one call of ``method`` to the absolute ``url``, where ``names`` are the
    header names the caller set (any case). None: the call is not traced (go through
    untouched). Otherwise the caller adds ``call.headers`` and calls `Call.end` exactly once,
    whatever happens (the guard against tracing the call twice is released there)."""
    tracer = _active
    if tracer is None or _current.get() is None or _inside.get():
        return None
    try:
        ctx = strand_context()
        url = url if isinstance(url, str) else str(url)
        if ctx is None or _on_delivery_thread() or tracer.to_endpoint(url):
            return None
        call = Call(tracer, ctx)
        call._record(
            "HttpRequest", (_values.text(method), describe_url(url, tracer.include_query), _values.EMPTY_OBJECT, None)
        )
    except Exception as e:
        tracer.warn("request", e)
        return None
    call.token = _inside.set(True)
    try:
        given = {n.decode("latin-1") if isinstance(n, bytes) else str(n) for n in names}
        given = {n.lower() for n in given}
        if not given & TAKES_CHARGE:
            call.headers = {k: v for k, v in tracer.client.propagation_headers().items() if k not in given}
    except Exception as e:
        tracer.warn("headers", e)
        call.headers = {}
    return call
