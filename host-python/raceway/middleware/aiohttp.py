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
from typing import Any, Awaitable, Callable

from ..concurrency import instrument_loop
from .._incoming import gather
from ._scope import Options, RequestScope, _warn


def aiohttp_middleware(client: Any, **options: Any) -> Callable[..., Awaitable[Any]]:
    """Keyword options: ``include_query``, ``response_traceparent``, ``isolate_tasks``."""
    from aiohttp import web

    opts = Options(**options)

    @web.middleware
    async def raceway_middleware(request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        if opts.isolate_tasks:
            instrument_loop(client)
        scope = RequestScope.open(
            client, gather(request.raw_headers), request.method, request.path, request.query_string, opts
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


def _sent_later(web: Any, response: Any) -> bool:
    """Whether aiohttp writes this (unprepared) response's body after the middleware chain: a
    ``Payload`` body (async iterables, files) or a response class that sends in ``prepare``
    (`web.FileResponse`). A plain bytes body is written at once."""
    if isinstance(response, web.Response):
        from aiohttp.payload import Payload

        return isinstance(response.body, Payload)
    return isinstance(response, web.StreamResponse)


def _finish_at_eof(response: Any, scope: RequestScope) -> bool:
    """Makes ``response.write_eof`` (where aiohttp writes the body) run under the request's
    context and record the response when it is done. False if that cannot be arranged."""
    try:
        ref = weakref.ref(response)
        cls_write_eof = type(response).write_eof

        async def write_eof(*args: Any, **kwargs: Any) -> None:
            resp = ref()
            if resp is None:  # pragma: no cover - aiohttp holds the response while it writes
                return
            failed = None
            try:
                await scope.astep(lambda: cls_write_eof(resp, *args, **kwargs))
            except BaseException as exc:
                failed = exc
                raise
            finally:
                _end(scope, failed, getattr(resp, "status", 0))

        weakref.finalize(response, _end, scope, None, getattr(response, "status", 0))
        response.write_eof = write_eof
        return True
    except Exception as e:
        _warn(scope.client, "middleware-stream", "raceway: cannot follow a streamed aiohttp response: %s", e)
        return False


def _end(scope: RequestScope, exc: Any, status: int) -> None:
    if scope.finished:
        return
    scope.collect(scope.body)
    if isinstance(exc, Exception) and not isinstance(exc, ConnectionError):
        scope.error(exc)
    scope.finish(status)
