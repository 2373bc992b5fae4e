"""Flask, the reference SDK's way: ``middleware = flask_middleware(raceway)`` and two hooks.

    @app.before_request
    def init_raceway():
        middleware.before_request()

    @app.after_request
    def finish_raceway(response):
        return middleware.after_request(response)

or ``flask_middleware(raceway, app)`` (or ``middleware.init_app(app)``) to register both.

A streamed response (a generator body, with or without Flask's ``stream_with_context``) is
sent after ``after_request`` has run: ``after_request`` hands its body to the server wrapped
(`TracedBody`), so each chunk runs under the request's context, an exception the body raises is
recorded as an ``Error``, and the response is recorded when the body ends (its duration runs
to the last chunk). A ``send_file`` response (``direct_passthrough``) is left to the server's
file path and recorded at ``after_request``.

Flask does not call ``after_request`` hooks for an exception it propagates (debug or testing
mode), and they cannot see the exception anyway. So the middleware also listens to Flask's
``got_request_exception`` signal (records the ``Error``) and ``request_tearing_down`` (ends a
context that ``after_request`` did not): the context ends with every request, whatever happens.
Flask is imported lazily: it is an optional extra (``pip install raceway[flask]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, TypeVar, Union

from .._client_protocol import ClientLike
from .._incoming import gather_wsgi
from .._recorder import recorder_of, warn_once
from ._scope import Options, RequestScope, TracedBody

if TYPE_CHECKING:
    from flask import Blueprint, Flask
    from werkzeug.wrappers import Response

_Response = TypeVar("_Response", bound="Response")
"""The application's response class (Flask's, or a subclass): `after_request` returns what it got."""


class FlaskMiddleware:
    """The two hooks, and Flask's exception and teardown signals (see the module docstring).

    :param client: the `RacewayClient` whose contexts the requests get.
    :param app: a Flask app (or blueprint) to register the hooks on now (`init_app`), or None.
    :param options: `Options`' fields (``include_query``, ``response_traceparent``).
    """

    def __init__(self, client: ClientLike, app: "Optional[Union[Flask, Blueprint]]" = None, **options: Any):
        from flask import signals  # noqa: F401 - fails early with a clear ImportError

        self.client = client
        self.recorder = recorder_of(client)
        self.options = Options(**options)
        # Keyed by the client: the reference SDK's docstring makes a new middleware in each hook
        # (``flask_middleware(client).before_request()``, then ``.after_request(response)``).
        self._key = f"raceway.scope.{id(client):x}"
        # Weak (blinker's default): a middleware nobody holds any more stops listening.
        signals.got_request_exception.connect(self._on_exception)
        signals.request_tearing_down.connect(self._on_teardown)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: "Union[Flask, Blueprint]") -> None:
        """Registers `before_request` and `after_request` on ``app``."""
        app.before_request(self.before_request)
        app.after_request(self.after_request)

    def before_request(self) -> None:
        """Opens the request's execution context (returns None, so Flask goes on)."""
        from flask import request

        environ = request.environ
        if self._key in environ:
            return None
        scope = RequestScope.open(
            self.client,
            gather_wsgi(environ),
            request.method,
            request.path,
            request.query_string.decode("latin-1"),
            self.options,
            self.recorder,
        )
        if scope is not None:
            environ[self._key] = scope
            try:
                # The reference SDK's attribute, which Flask's Request does not declare.
                request.racewayContext = scope.ctx  # type: ignore[attr-defined]
            except Exception:
                pass
        return None

    def after_request(self, response: _Response) -> _Response:
        """Records the response (a streamed one when its body ends), optionally adds
        ``traceparent``, ends the context. Returns ``response``."""
        scope = self._take()
        if scope is not None:
            if self.options.response_traceparent:
                try:
                    response.headers["traceparent"] = scope.traceparent()
                except Exception:
                    pass
            scope.collect()
            if not self._stream(response, scope):
                scope.finish(getattr(response, "status_code", 0))
            scope.deactivate()
        return response

    @staticmethod
    def _stream(response: "Response", scope: RequestScope) -> bool:
        """Hands a streamed body to the server wrapped; False if the response is not one."""
        try:
            if not getattr(response, "is_streamed", False) or getattr(response, "direct_passthrough", False):
                return False
            response.response = TracedBody(response.response, scope, lambda: getattr(response, "status_code", 0))
            return True
        except Exception as e:
            warn_once(scope.client, "middleware-stream", "raceway: cannot follow a streamed Flask response: %s", e)
            return False

    # -- signals -------------------------------------------------------------------------------
    def _on_exception(self, sender: object, exception: Optional[BaseException] = None, **extra: object) -> None:
        scope = self._peek()
        if scope is not None and isinstance(exception, Exception):
            scope.error(exception)

    def _on_teardown(self, sender: object, exc: Optional[BaseException] = None, **extra: object) -> None:
        scope = self._take()
        if scope is not None:
            scope.finish(500 if exc is not None else 0)
            scope.deactivate()

    def _peek(self) -> Optional[RequestScope]:
        from flask import has_request_context, request

        return request.environ.get(self._key) if has_request_context() else None

    def _take(self) -> Optional[RequestScope]:
        from flask import has_request_context, request

        return request.environ.pop(self._key, None) if has_request_context() else None


def flask_middleware(
    client: ClientLike, app: "Optional[Union[Flask, Blueprint]]" = None, **options: Any
) -> FlaskMiddleware:
    """The reference SDK's factory. Keyword options: ``include_query``, ``response_traceparent``."""
    return FlaskMiddleware(client, app, **options)
