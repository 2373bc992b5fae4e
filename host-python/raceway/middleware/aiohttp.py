"""aiohttp server middleware: ``web.Application(middlewares=[aiohttp_middleware(raceway)])``.

aiohttp serves the requests of one keep-alive connection one after the other, and the handler
may leave context variables behind; the middleware resets the context when the request ends,
so the next request on the connection starts clean. An ``HTTPException`` the handler raises is
a response (its status is recorded), not an error. aiohttp is imported lazily.

Streamed bodies, in each of aiohttp's forms:

- a `web.StreamResponse` the handler prepares and writes (``await resp.write(...)``, chunked or
  not): the writes run in the handler, under the request's context; the response is recorded
  when the handler returns it.
- a `web.Response` whose body aiohttp sends after the handler returned: an async generator or
  iterable (``web.Response(body=agen())``), a file object, any ``Payload``; and a
  `web.FileResponse`. aiohttp writes these in ``write_eof`` after the whole middleware chain
  returned, so the middleware wraps that response's ``write_eof``: the body runs under the
  request's context, an exception it raises is recorded as an ``Error``, and the response is
  recorded when the last byte is written. If aiohttp never sends it (an outer middleware
  replaced it, the client went away first), it is recorded when the response object is freed.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional, Protocol

from .._client_protocol import ClientLike
from .._incoming import gather
from .._recorder import recorder_of, warn_once
from ..concurrency import instrument_loop
from ._scope import Options, RequestScope

if TYPE_CHECKING:
    from aiohttp import web
    from aiohttp.typedefs import Handler

    Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]
    """What ``web.Application(middlewares=[...])`` takes (aiohttp's ``typedefs.Middleware``)."""

    class _Web(Protocol):
        """The two classes of ``aiohttp.web`` that `_sent_later` reads: the middleware passes
        the module itself, imported once when it was made, not per request."""

        Response: type[web.Response]
        StreamResponse: type[web.StreamResponse]


def aiohttp_middleware(client: ClientLike, **options: Any) -> Middleware:
    """Keyword options: ``include_query``, ``response_traceparent``, ``isolate_tasks``."""
    from aiohttp import web

    opts = Options(**options)
    recorder = recorder_of(client)

    @web.middleware
    async def raceway_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if opts.isolate_tasks:
            instrument_loop(client)
        scope = RequestScope.open(
            client,
            gather(request.raw_headers),
            request.method,
            request.path,
            request.query_string,
            opts,
            recorder,
        )
        if scope is None:
            return await handler(request)
        try:
            response = await handler(request)
        except web.HTTPException as http:  # a response raised as an exception
            if opts.response_traceparent:
                http.headers["traceparent"] = scope.traceparent()
            scope.collect()
            scope.finish(http.status)
            raise
        except BaseException as exc:
            scope.collect()
            scope.fail(exc)
            raise
        else:
            prepared = getattr(response, "prepared", False)
            if opts.response_traceparent and not prepared:
                response.headers["traceparent"] = scope.traceparent()
            scope.collect()
            if prepared or not _sent_later(web, response) or not _finish_at_eof(response, scope):
                scope.finish(getattr(response, "status", 0))
            return response
        finally:
            scope.deactivate()

    return raceway_middleware


def _sent_later(aiohttp_web: _Web, response: web.StreamResponse) -> bool:
    """Whether aiohttp writes this (unprepared) response's body after the middleware chain: a
    ``Payload`` body (async iterables, files) or a response class that sends in ``prepare``
    (`web.FileResponse`). A plain bytes body is written at once."""
    if isinstance(response, aiohttp_web.Response):
        from aiohttp.payload import Payload

        return isinstance(response.body, Payload)
    return isinstance(response, aiohttp_web.StreamResponse)


def _finish_at_eof(response: web.StreamResponse, scope: RequestScope) -> bool:
    """Makes ``response.write_eof`` (where aiohttp writes the body) run under the request's
    context and record the response when it is done. False if that cannot be arranged."""
    try:
        ref = weakref.ref(response)
        cls_write_eof = type(response).write_eof

        async def write_eof(*args: Any, **kwargs: Any) -> None:
            resp = ref()
            if resp is None:  # pragma: no cover - aiohttp holds the response while it writes
                return
            failed: Optional[BaseException] = None
            try:
                await scope.astep(lambda: cls_write_eof(resp, *args, **kwargs))
            except BaseException as exc:
                failed = exc
                raise
            finally:
                _end(scope, failed, getattr(resp, "status", 0))

        weakref.finalize(response, _end, scope, None, getattr(response, "status", 0))
        # This response's own write_eof (the class's is left alone); mypy refuses any assignment
        # to a method.
        response.write_eof = write_eof  # type: ignore[method-assign]
        return True
    except Exception as e:
        warn_once(scope.client, "middleware-stream", "raceway: cannot follow a streamed aiohttp response: %s", e)
        return False


def _end(scope: RequestScope, exc: Optional[BaseException], status: int) -> None:
    if scope.finished:
        return
    scope.collect(scope.body)
    if isinstance(exc, Exception) and not isinstance(exc, ConnectionError):
        scope.error(exc)
    scope.finish(status)
