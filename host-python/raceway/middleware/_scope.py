"""One request's execution context, from reading its headers to its response.

Every middleware does the same four things, so they live here: open a context from the
incoming headers and record the ``HttpRequest``; record an unhandled exception as an ``Error``;
record the ``HttpResponse`` (status, duration); and make the context stop being current, so a
worker thread or connection task that serves the next request never carries this one's trace.

Events are recorded on the scope's own context object, not on whatever is current, because a
framework may send the response from another task (a streaming body in a task group) that has
a child context of its own. Nothing here raises into the request: an SDK failure is logged
once and the request goes on untraced.
"""

from __future__ import annotations

import time
from contextvars import Token
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from .. import _values
from ..context import ExecutionContext, _current, leave
from ._incoming import context_from_headers, response_traceparent


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
    __slots__ = ("client", "ctx", "token", "start_ns", "finished", "status")

    def __init__(self, client: Any, ctx: ExecutionContext):
        self.client = client
        self.ctx = ctx
        self.token: Optional[Token] = None
        self.start_ns = time.perf_counter_ns()
        self.finished = False
        self.status: Optional[int] = None

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, client: Any, headers: Dict[str, List[str]], method: str, path: str,
             query: str, options: Options) -> Optional["RequestScope"]:
        """Makes the request's context current and records the request; None if that failed
        (logged once), in which case the request is served untraced."""
        try:
            scope = cls(client, context_from_headers(client, headers))
            url = f"{path}?{query}" if options.include_query and query else path
            scope.record("HttpRequest", (_values.text(method), _values.text(url), {}, None))
            scope.activate()
            return scope
        except Exception as e:
            _warn(client, "middleware-open", "raceway: cannot open a request context: %s", e)
            return None

    def activate(self) -> None:
        if self.ctx.owner is None:  # the request's strand is the one that serves it
            self.ctx.bind()
        self.token = _current.set(self.ctx)

    def deactivate(self) -> None:
        """Makes the context stop being current where it is current. Safe to call twice; where
        another context is current (another strand's), nothing changes."""
        token, self.token = self.token, None
        if token is not None:
            leave(self.ctx, token)

    # -- recording -----------------------------------------------------------------------------
    def record(self, kind: str, fields: tuple, duration_ns: Optional[int] = None) -> None:
        try:
            self.client._record(self.ctx, kind, fields, duration_ns)
        except Exception as e:
            _warn(self.client, "middleware-record", "raceway: cannot record a request event: %s", e)

    def error(self, exc: BaseException) -> None:
        """Records an unhandled exception with at most ``Config.max_stack_frames`` frames,
        innermost last (the same shape as `RacewayClient.track_error`)."""
        self.record("Error", _values.describe_exception(exc, self.client.config.max_stack_frames))

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
        self.record("HttpResponse", (status, {}, None, duration_ns // 1_000_000), duration_ns)

    def traceparent(self) -> str:
        return response_traceparent(self.ctx)


def _warn(client: Any, key: str, msg: str, *args: Any) -> None:
    try:
        client._warn_once(key, msg, *args)
    except Exception:  # pragma: no cover - logging must not fail the request either
        pass
