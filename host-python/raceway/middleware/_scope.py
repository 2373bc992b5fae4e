"""One request's execution context, from reading its headers to its response.

Every middleware does the same four things, so they live here: open a context from the
incoming headers and record the ``HttpRequest``; record an unhandled exception as an ``Error``;
record the ``HttpResponse`` (status, duration); and make the context stop being current, so a
worker thread or connection task that serves the next request never carries this one's trace.

Events are recorded on the scope's own context object, not on whatever is current, because a
framework may send the response from another task (a streaming body in a task group) that has
a child context of its own. Nothing here raises into the request: an SDK failure is logged
once and the request goes on untraced.

A body the server consumes after the application returned (a WSGI iterable, Flask's and
Django's streamed responses, an aiohttp payload) runs each of its steps under the request's
context through `RequestScope.step` / `RequestScope.astep`, wrapped in `TracedBody` or
`TracedAsyncBody`; the response is recorded when that body ends, so its duration runs to the
last chunk.
"""

from __future__ import annotations

import time
from contextvars import Token
from dataclasses import dataclass
from threading import get_ident as _ident
from typing import Any, Awaitable, Callable, Dict, Iterator, List, Optional, TypeVar

from .. import _values
from .._client_protocol import ClientLike
from .._incoming import context_from_headers, response_traceparent
from .._location import UNKNOWN, Site
from .._recorder import EventRecorder, Fields, warn_once
from ..context import CLOCK, ExecutionContext, current_task
from ..context import current_var as _current

T = TypeVar("T")
NOT_LOCATED: Site = UNKNOWN
"""The file and line of the request's records: its kinds have no location in an event."""
_UNSET = object()
"""`RequestScope.collect`'s default: "what is current now" (None is a value it may be given)."""

# Taken once: a call on an imported name makes a bound method per call in CPython 3.11
# (tests/test_hot_path_bytecode.py).
_current_get = _current.get
_current_set = _current.set
_current_reset = _current.reset


@dataclass(frozen=True)
class Options:
    """What every middleware accepts as keyword arguments."""

    include_query: bool = False
    """Record the query string with the path (off: it often carries tokens or personal data)."""
    response_traceparent: bool = False
    """Add ``traceparent`` (this service's span) to the response headers."""
    isolate_tasks: bool = True
    """Async middlewares: give each asyncio task (and each ``to_thread`` call) its own child
    context on the serving loop (`raceway.concurrency.instrument_loop`)."""


class RequestScope:
    """One request's context and what it recorded (see the module docstring). ``recorder``:
    ``client``'s record log (`raceway._recorder.recorder_of`); None for an object that is not
    a `RacewayClient`, which makes the context current and records nothing."""

    __slots__ = ("client", "recorder", "ctx", "token", "start_ns", "finished", "status", "body", "last_error")

    def __init__(self, client: ClientLike, ctx: ExecutionContext, recorder: Optional[EventRecorder]):
        self.client = client
        self.recorder = recorder
        self.ctx = ctx
        self.token: Optional[Token[Optional[ExecutionContext]]] = None
        self.start_ns = time.perf_counter_ns()
        self.finished = False
        self.status: Optional[int] = None
        # What the response body sees as current at its next step (`step`): the request's
        # context, or one the body opened and left open across a yield.
        self.body: Optional[ExecutionContext] = ctx
        self.last_error: Optional[BaseException] = None

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        client: ClientLike,
        headers: Dict[str, List[str]],
        method: str,
        path: str,
        query: str,
        options: Options,
        recorder: Optional[EventRecorder],
    ) -> Optional["RequestScope"]:
        """Makes the request's context current and records the request; None if that failed
        (logged once), in which case the request is served untraced. ``headers``: the trace
        headers' values by lower-case name (`raceway._incoming.gather`); ``recorder``:
        ``recorder_of(client)``, which each middleware looks up once, when it is made."""
        try:
            scope = cls(client, context_from_headers(client, headers), recorder)
            url = f"{path}?{query}" if options.include_query and query else path
            scope.record("HttpRequest", (_values.text(method), _values.text(url), _values.EMPTY_OBJECT, None))
            scope.activate()
            return scope
        except Exception as e:
            warn_once(client, "middleware-open", "raceway: cannot open a request context: %s", e)
            return None

    def activate(self) -> None:
        if self.ctx.owner is None:  # the request's strand is the one that serves it
            self.ctx.bind()
        self.token = _current_set(self.ctx)

    def deactivate(self) -> None:
        """Restores what was current before `activate`, whatever the application left current
        meanwhile (a context it set and never reset, one a thread hop copied back). Safe to
        call twice. Called from another ``contextvars.Context`` than `activate`'s (not where
        the request's context was made current), it changes nothing."""
        token, self.token = self.token, None
        if token is not None:
            _reset(token)

    # -- the response body ---------------------------------------------------------------------
    def step(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs ``fn(*args)``, one step of a response body the server drives (``next`` of its
        iterator, its ``close``), with the body's context current: the request's at first, then
        whatever the body left current at its previous step (a context it opened across a
        ``yield``). Afterwards the caller's current context is exactly what it was."""
        token = _current_set(self._body_context())
        try:
            return fn(*args)
        finally:
            self.body = _current_get()
            _reset(token)

    async def astep(self, fn: Callable[[], Awaitable[T]]) -> T:
        """`step` for an asynchronous body: awaits ``fn()`` with the body's context current."""
        token = _current_set(self._body_context())
        try:
            return await fn()
        finally:
            self.body = _current_get()
            _reset(token)

    def _body_context(self) -> Optional[ExecutionContext]:
        """The body's context for a step on the calling strand. A body that moved to another
        strand (a framework consumes it in a worker thread: Django's ``sync_to_async(list)``
        under ASGI, ``async_to_sync`` under WSGI) continues there in a child forked from it
        (an ``AsyncSpawn``; the strand it left is waiting for it), joined at the end."""
        ctx = self.body
        if ctx is None or ctx.anchor is not None or ctx.owner is None:
            return ctx
        if ctx.owner == _ident() and ctx.task is current_task():
            return ctx
        try:
            child = self.client.fork(ctx).bind()
        except Exception as e:
            warn_once(self.client, "middleware-fork", "raceway: cannot follow a body to another strand: %s", e)
            return ctx
        self.body = child
        return child

    def collect(self, current: object = _UNSET) -> None:
        """Joins into the request's context a child of it that is current in the request's
        ``contextvars.Context`` when the application returns (or ``current``: what a body left
        current at its end). asgiref's ``sync_to_async``/``async_to_sync`` (Django's sync views
        under ASGI and async views under WSGI, Flask's async views) run the call in another
        thread on a copy of the variables and copy what it set back: the child context that
        thread recorded on comes back here, and the call has returned. Joining it (an
        ``AsyncAwait``) puts the response after everything it did."""
        try:
            found = _current_get() if current is _UNSET else current
            ctx = self.ctx
            if (
                found is None
                or found is ctx
                or not isinstance(found, ExecutionContext)
                or found.anchor is not None
                or found.trace_id != ctx.trace_id
            ):
                return
            if all(component != ctx.component for component, _ in found.state[CLOCK]):
                return  # not made from the request's context
            self.client.join(ctx, found)
        except Exception as e:
            warn_once(self.client, "middleware-collect", "raceway: cannot join a request's child context: %s", e)

    # -- recording -----------------------------------------------------------------------------
    def record(self, kind: str, fields: Fields, duration_ns: Optional[int] = None) -> None:
        """Records one event of ``kind`` (``HttpRequest``, ``HttpResponse``, ``Error``) on the
        request's context; ``duration_ns`` in nanoseconds. A failure is logged once. These
        kinds carry no location (docs/record-format.md), so none is looked up (a frame walk
        per event): the record says `NOT_LOCATED`."""
        recorder = self.recorder
        if recorder is None:
            return
        try:
            recorder.append(self.ctx, NOT_LOCATED, kind, fields, duration_ns)
        except Exception as e:
            warn_once(self.client, "middleware-record", "raceway: cannot record a request event: %s", e)

    def error(self, exc: BaseException) -> None:
        """Records an unhandled exception with at most ``Config.max_stack_frames`` frames,
        innermost last (the same shape as `RacewayClient.track_error`). The same exception
        object twice (a framework's signal, then the middleware that sees it propagate) is
        recorded once."""
        if exc is self.last_error:
            return
        self.last_error = exc
        try:
            fields = _values.describe_exception(exc, self.client.config.max_stack_frames)
        except Exception as e:
            warn_once(self.client, "middleware-record", "raceway: cannot record a request event: %s", e)
            return
        self.record("Error", fields)

    def fail(self, exc: BaseException, status: int = 500, end_ns: Optional[int] = None) -> None:
        """An exception left the application: record it (a cancellation or an interpreter exit
        is not an application error) and finish with ``status``."""
        if isinstance(exc, Exception):
            self.error(exc)
        self.finish(status, end_ns)

    def finish(self, status: int, end_ns: Optional[int] = None) -> None:
        """Records the response once: its status and how long the request took (until
        ``end_ns``, a ``perf_counter_ns`` reading, default now)."""
        if self.finished:
            return
        self.finished = True
        self.status = status
        duration_ns = max(0, (end_ns or time.perf_counter_ns()) - self.start_ns)
        status = status if isinstance(status, int) and 0 <= status <= 65535 else 0
        self.record("HttpResponse", (status, _values.EMPTY_OBJECT, None, duration_ns // 1_000_000), duration_ns)

    def traceparent(self) -> str:
        return response_traceparent(self.ctx)


def _reset(token: Token[Optional[ExecutionContext]]) -> None:
    try:
        _current_reset(token)
    except (ValueError, RuntimeError):  # another contextvars.Context's token, or used already
        pass


class _Body:
    """What both traced bodies keep, and how they end: the response is recorded once.
    ``body``: the framework's response body (an iterable, or an async iterable for
    `TracedAsyncBody`), typed ``Any`` because it is either and each subclass uses one."""

    def __init__(self, body: Any, scope: "RequestScope", status: Callable[[], int], buffered: bool = False):
        self._body = body
        self._iter: Any = None  # iter(body) or body.__aiter__(), once the first step took it
        self._scope = scope
        self._status = status
        self._sent = False
        self._buffered = buffered

    def _end(self, exc: Optional[BaseException]) -> None:
        _end_body(self._scope, exc, self._status, self._sent and not self._buffered)

    def __del__(self) -> None:  # a server that neither exhausted nor closed the body
        try:
            self._end(None)
        except Exception:
            pass


class TracedBody(_Body):
    """A response body the server iterates after the application returned (a WSGI iterable,
    a streamed Flask or Django response): each step (``iter``, every ``next``, ``close``) runs
    under the request's context (`RequestScope.step`), and the response is recorded once, when
    the body runs out, fails or is closed, so its duration runs to the last chunk. An
    exception from the body is recorded as an ``Error`` and re-raised. ``close()`` is passed
    on (PEP 3333), and a body nobody exhausted or closed is recorded when it is collected.

    ``status`` gives the status to record (called at the end); a body that fails before its
    first chunk is recorded as 500, which is what servers answer then. ``buffered``: the
    server reads the whole body before it sends anything (Django serving an async iterator
    under WSGI), so a failure anywhere in it is answered 500."""

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        scope = self._scope
        try:
            if self._iter is None:
                self._iter = scope.step(iter, self._body)
            chunk = scope.step(next, self._iter)
        except StopIteration:
            self._end(None)
            raise
        except BaseException as exc:
            self._end(exc)
            raise
        self._sent = True
        return chunk

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                self._scope.step(close)
        except BaseException as exc:
            self._end(exc)
            raise
        finally:
            self._end(None)


class TracedAsyncBody(_Body):
    """`TracedBody` for an asynchronous iterable (Django's async streaming responses): each
    ``__anext__`` and ``aclose`` is awaited under the request's context (`RequestScope.astep`).
    It has a synchronous ``close()`` too, which only records the response (Django calls it
    when the response is closed), and no ``__iter__``, so frameworks see an async iterable."""

    def __aiter__(self) -> "TracedAsyncBody":
        return self

    async def __anext__(self) -> Any:
        try:
            if self._iter is None:
                self._iter = self._body.__aiter__()
            it = self._iter
            chunk = await self._scope.astep(it.__anext__)
        except StopAsyncIteration:
            self._end(None)
            raise
        except BaseException as exc:
            self._end(exc)
            raise
        self._sent = True
        return chunk

    async def aclose(self) -> None:
        try:
            aclose = getattr(self._iter if self._iter is not None else self._body, "aclose", None)
            if aclose is not None:
                await self._scope.astep(aclose)
        except BaseException as exc:
            self._end(exc)
            raise
        finally:
            self._end(None)

    def close(self) -> None:
        self._end(None)


def _end_body(scope: "RequestScope", exc: Optional[BaseException], status: Callable[[], int], sent: bool) -> None:
    """A body ended: join what it left current, record its exception (not a cancellation, a
    closed generator or an interpreter exit: those are not application errors), record the
    response."""
    if scope.finished:
        return
    scope.collect(scope.body)
    if isinstance(exc, Exception):
        scope.error(exc)
    try:
        code = status()
    except Exception:
        code = 0
    scope.finish(500 if isinstance(exc, Exception) and not sent else code)
