"""aiohttp server middleware: ``web.Application(middlewares=[aiohttp_middleware(raceway)])``.

aiohttp serves the requests of one keep-alive connection one after the other, and the handler
may leave context variables behind; the middleware resets the context when the request ends,
so the next request on the connection starts clean. An ``HTTPException`` the handler raises is
a response (its status is recorded), not an error. aiohttp is imported lazily.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from ..concurrency import instrument_loop
from ._incoming import gather
from ._scope import Options, RequestScope


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
            scope.finish(http.status)
            raise
        except BaseException as exc:
            scope.fail(exc)
            raise
        else:
            if opts.response_traceparent and not getattr(response, "prepared", False):
                response.headers["traceparent"] = scope.traceparent()
            scope.finish(getattr(response, "status", 0))
            return response
        finally:
            scope.deactivate()

    return raceway_middleware
