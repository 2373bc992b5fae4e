"""WSGI middleware: any WSGI application (Django, Flask, Pyramid, Bottle, bare WSGI).

A WSGI response is an iterable the server consumes after the application returned, possibly
streaming. So the context is current while the application is called and again around every
step of the body the server drives (`RequestScope.step`: a generator body sees its request's
context, and a context it opens across a ``yield`` is current again when it resumes), and
never in between: the server's thread is clean whenever it does anything else, whatever
happens. The response is recorded when the body runs out, fails or is closed, so its duration
runs to the last chunk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, List, Optional, Tuple

from .._client_protocol import ClientLike
from .._incoming import gather_wsgi
from .._recorder import recorder_of
from ._scope import Options, RequestScope, TracedBody

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

    from _typeshed import OptExcInfo  # sys.exc_info()'s type (typeshed's, for type checking only)


class RacewayWSGIMiddleware:
    """``app = RacewayWSGIMiddleware(app, client=raceway)``; for Django,
    ``application = RacewayWSGIMiddleware(get_wsgi_application(), client=raceway)`` (or
    ``raceway.middleware.django.RacewayMiddleware`` in ``MIDDLEWARE``, which also sees view
    exceptions); for Flask, ``app.wsgi_app = RacewayWSGIMiddleware(app.wsgi_app, client=raceway)``.

    Keyword options: ``include_query``, ``response_traceparent``.

    The body the application returns is handed to the server wrapped (`TracedBody`), except a
    ``wsgi.file_wrapper`` object, which goes through untouched so the server can still send
    the file with ``sendfile``: the response is then recorded when the application returns."""

    def __init__(self, app: WSGIApplication, client: ClientLike, **options: Any):
        self.app = app
        self.client = client
        self.recorder = recorder_of(client)
        self.options = Options(**options)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = RequestScope.open(
            self.client,
            gather_wsgi(environ),
            environ.get("REQUEST_METHOD", "GET"),
            environ.get("PATH_INFO", "") or "/",
            environ.get("QUERY_STRING", ""),
            self.options,
            self.recorder,
        )
        if request is None:
            return self.app(environ, start_response)
        status: List[int] = []

        def traced_start_response(
            status_line: str, headers: List[Tuple[str, str]], exc_info: Optional[OptExcInfo] = None
        ) -> Callable[[bytes], object]:
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
            request.collect()
        except BaseException as exc:
            request.collect()
            request.fail(exc)
            raise
        finally:
            request.deactivate()
        file_wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(file_wrapper, type) and isinstance(body, file_wrapper):
            request.finish(status[0] if status else 0)
            return body
        return TracedBody(body, request, lambda: status[0] if status else 0)
