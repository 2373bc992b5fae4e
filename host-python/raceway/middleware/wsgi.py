"""WSGI middleware: any WSGI application (Django, Flask, Pyramid, Bottle, bare WSGI).

A WSGI response is an iterable the server consumes after the application returned, possibly
streaming. So the context is current while the application is called and again around every
chunk the server pulls (a generator body sees its request's context), and never in between:
the server's thread is clean whenever it does anything else, whatever happens. The response is
recorded when the server closes the iterable (or it runs out).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from ._incoming import gather_wsgi
from ._scope import Options, RequestScope

StartResponse = Callable[..., Any]


class RacewayWSGIMiddleware:
    """``app = RacewayWSGIMiddleware(app, client=raceway)``; for Django,
    ``application = RacewayWSGIMiddleware(get_wsgi_application(), client=raceway)``; for Flask,
    ``app.wsgi_app = RacewayWSGIMiddleware(app.wsgi_app, client=raceway)``.

    Keyword options: ``include_query``, ``response_traceparent``."""

    def __init__(self, app: Callable[[Dict[str, Any], StartResponse], Iterable[bytes]], client: Any, **options: Any):
        self.app = app
        self.client = client
        self.options = Options(**options)

    def __call__(self, environ: Dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = RequestScope.open(
            self.client,
            gather_wsgi(environ),
            environ.get("REQUEST_METHOD", "GET"),
            environ.get("PATH_INFO", "") or "/",
            environ.get("QUERY_STRING", ""),
            self.options,
        )
        if request is None:
            return self.app(environ, start_response)
        status: List[int] = []

        def traced_start_response(status_line: str, headers: List[Tuple[str, str]], exc_info: Any = None) -> Any:
            try:
                status[:] = [int(str(status_line).split(None, 1)[0])]
            except (ValueError, IndexError):
                status[:] = [0]
            if self.options.response_traceparent:
                headers = [(k, v) for k, v in headers if k.lower() != "traceparent"]
                headers.append(("traceparent", request.traceparent()))
            if exc_info is not None:
                return start_response(status_line, headers, exc_info)
            return start_response(status_line, headers)

        try:
            body = self.app(environ, traced_start_response)
        except BaseException as exc:
            request.fail(exc)
            raise
        finally:
            request.deactivate()
        return _TracedBody(body, request, status)


class _TracedBody:
    """The application's response iterable, with the request's context current around each
    chunk and the response recorded at the end. ``close()`` is passed on (PEP 3333)."""

    def __init__(self, body: Iterable[bytes], request: RequestScope, status: List[int]):
        self._body = body
        self._iter: Optional[Iterator[bytes]] = None
        self._request = request
        self._status = status

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._iter is None:
            self._iter = iter(self._in_context(iter, self._body))
        try:
            return self._in_context(next, self._iter)
        except StopIteration:
            self._end(None)
            raise
        except BaseException as exc:
            self._end(exc)
            raise

    def _in_context(self, fn: Callable[[Any], Any], arg: Any) -> Any:
        request = self._request
        request.activate()
        try:
            return fn(arg)
        finally:
            request.deactivate()

    def _end(self, exc: Optional[BaseException]) -> None:
        request = self._request
        if request.finished:
            return
        if isinstance(exc, Exception):
            request.error(exc)
        request.finish(self._status[0] if self._status else (500 if exc else 0))

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                self._in_context(lambda _: close(), None)
        finally:
            self._end(None)

    def __del__(self) -> None:  # a server that neither exhausted nor closed the body
        try:
            self._end(None)
        except Exception:
            pass
