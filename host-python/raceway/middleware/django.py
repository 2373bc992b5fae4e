"""Django: ``"raceway.middleware.django.RacewayMiddleware"`` in ``MIDDLEWARE``, first.

The client comes from the settings, in one of two ways (exactly one of them):

    RACEWAY = {"endpoint": "http://localhost:8080", "service_name": "shop"}   # Config(**RACEWAY)
    RACEWAY_CLIENT = "shop.tracing.raceway"   # dotted path to a RacewayClient (or a function
                                              # returning one), "module.attr" or "module:attr"

``RACEWAY = {}`` is ``Config()``: the defaults, with what the ``RACEWAY_*`` environment variables set. The
client ``RACEWAY`` builds is made once per process and shared by every middleware instance;
`get_client()` returns it, for the views to record with. ``RACEWAY_OPTIONS`` takes the keyword
options every middleware takes (``include_query``, ``response_traceparent``,
``isolate_tasks``). A missing, doubled or invalid setting is ``ImproperlyConfigured``, raised
when Django loads the middleware (at start-up), naming the setting.

What it records per request, as every Raceway middleware does (docs/frameworks.md): the
``HttpRequest``, what the application records in the request's context, an ``Error`` for an
exception Django turns into a 500 (from Django's ``got_request_exception`` signal, which Django
sends for any exception a view or a middleware inside this one raised and no
``process_exception`` handled: ``Http404``, ``PermissionDenied``, ``BadRequest`` and
``SuspiciousOperation`` are answers, not errors), and the ``HttpResponse``. A streaming
response (``StreamingHttpResponse``, sync or async iterator) is recorded when its body ends:
each chunk runs under the request's context, an exception it raises is an ``Error``, and the
duration runs to the last chunk. A ``FileResponse`` keeps the server's ``wsgi.file_wrapper``
path and is recorded when the middleware returns it.

The middleware is sync and async capable: under ASGI with async middleware around it, Django
calls it as a coroutine, in the request's task. A sync view under ASGI (or an async view under
WSGI) runs in another thread through asgiref; the child context that thread records on comes
back to the request when the view returns and is joined there (`RequestScope.collect`), so the
response comes after what the view did.

Django (and asgiref, which Django requires) is imported only when the middleware is built.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, List, Optional, Tuple, Union

from .._incoming import gather_wsgi
from .._recorder import recorder_of, warn_once
from ._scope import Options, RequestScope, TracedAsyncBody, TracedBody

if TYPE_CHECKING:
    # Django ships no type information (and no stubs are installed: pyproject.toml's mypy
    # overrides), so these names are Any to mypy; they say what the values are.
    from django.http import HttpRequest, HttpResponseBase

    from ..client import RacewayClient

    GetResponse = Callable[[HttpRequest], Union[HttpResponseBase, Awaitable[HttpResponseBase]]]
    """The next middleware or view: sync, or async (a coroutine function) under ASGI."""

_SCOPE_ATTR = "_raceway_scope"
_clients: Dict[str, RacewayClient] = {}
_clients_lock = threading.Lock()


def get_client() -> RacewayClient:
    """The `RacewayClient` the settings name (``RACEWAY_CLIENT``) or build (``RACEWAY``, made
    once per process). Raises ``django.core.exceptions.ImproperlyConfigured`` when the settings
    name none, both, or one that cannot be used."""
    return _from_settings()[0]


def _from_settings() -> Tuple[RacewayClient, Options]:
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    config = getattr(settings, "RACEWAY", None)
    named = getattr(settings, "RACEWAY_CLIENT", None)
    if (config is None) == (named is None):
        raise ImproperlyConfigured(
            "raceway: set exactly one of RACEWAY (a dict of raceway.Config fields) and "
            "RACEWAY_CLIENT (the dotted path of a RacewayClient) in the settings"
            + (" (both are set)" if config is not None else "")
        )
    client = _named_client(named) if named is not None else _configured_client(config)
    raw = getattr(settings, "RACEWAY_OPTIONS", None) or {}
    try:
        options = Options(**raw)
    except TypeError as e:
        raise ImproperlyConfigured(
            f"raceway: RACEWAY_OPTIONS takes include_query, response_traceparent, isolate_tasks; got {raw!r} ({e})"
        ) from None
    return client, options


def _named_client(named: object) -> RacewayClient:
    from django.core.exceptions import ImproperlyConfigured

    value: Any = named  # the setting, or what its dotted path names
    if isinstance(named, str):
        path = named.replace(":", ".") if ":" in named else named
        module_name, _, attr = path.rpartition(".")
        if not module_name:
            raise ImproperlyConfigured(f"raceway: RACEWAY_CLIENT must be a dotted path 'module.attr', got {named!r}")
        try:
            from importlib import import_module

            value = getattr(import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise ImproperlyConfigured(f"raceway: RACEWAY_CLIENT {named!r} cannot be imported: {e}") from e
    from ..client import RacewayClient

    if not isinstance(value, RacewayClient) and callable(value):
        value = value()
    if not isinstance(value, RacewayClient):
        raise ImproperlyConfigured(
            f"raceway: RACEWAY_CLIENT {named!r} is not a RacewayClient (nor a function returning one): {value!r}"
        )
    return value


def _configured_client(config: object) -> RacewayClient:
    from django.core.exceptions import ImproperlyConfigured

    from ..client import RacewayClient
    from ..config import Config

    if not isinstance(config, dict):
        raise ImproperlyConfigured(f"raceway: RACEWAY must be a dict of raceway.Config fields, got {config!r}")
    key = repr(sorted(config.items(), key=lambda item: str(item[0])))
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            try:
                client = RacewayClient(Config(**config))
            except (TypeError, ValueError) as e:
                raise ImproperlyConfigured(f"raceway: RACEWAY is not a valid raceway.Config: {e}") from e
            _clients[key] = client
    return client


class RacewayMiddleware:
    """Django middleware, sync and async capable. Put it first in ``MIDDLEWARE`` so that every
    other middleware runs inside the request's context (one above it runs outside: what it
    records is lost, and an exception it raises is not seen)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse):
        from asgiref.sync import iscoroutinefunction, markcoroutinefunction

        self.get_response = get_response
        self.client, self.options = _from_settings()
        self.recorder = recorder_of(self.client)
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)
        _connect_signal()

    def __call__(self, request: HttpRequest) -> Union[HttpResponseBase, Awaitable[HttpResponseBase]]:
        if self._async:
            return self.__acall__(request)
        scope = self._open(request)
        if scope is None:
            return self.get_response(request)
        try:
            response = self.get_response(request)
        except BaseException as exc:  # DEBUG_PROPAGATE_EXCEPTIONS, or a test client
            self._failed(request, scope, exc)
            raise
        return self._respond(request, scope, response)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        if self.options.isolate_tasks:
            from ..concurrency import instrument_loop

            instrument_loop(self.client)
        scope = self._open(request)
        if scope is None:
            return await self.get_response(request)
        try:
            response = await self.get_response(request)
        except BaseException as exc:
            self._failed(request, scope, exc)
            raise
        return self._respond(request, scope, response)

    # ------------------------------------------------------------------------------------------
    def _open(self, request: HttpRequest) -> Optional[RequestScope]:
        try:
            meta = request.META
            scope = RequestScope.open(
                self.client,
                gather_wsgi(meta),
                request.method or "GET",
                request.path or "/",
                meta.get("QUERY_STRING", "") or "",
                self.options,
                self.recorder,
            )
        except Exception as e:
            warn_once(self.client, "middleware-open", "raceway: cannot open a request context: %s", e)
            return None
        if scope is not None:
            setattr(request, _SCOPE_ATTR, scope)
        return scope

    def _failed(self, request: HttpRequest, scope: RequestScope, exc: BaseException) -> None:
        _detach(request)
        scope.collect()
        scope.fail(exc)
        scope.deactivate()

    def _respond(self, request: HttpRequest, scope: RequestScope, response: HttpResponseBase) -> HttpResponseBase:
        _detach(request)
        try:
            if self.options.response_traceparent:
                response["traceparent"] = scope.traceparent()
            scope.collect()
            if not _stream(request, response, scope):
                scope.finish(getattr(response, "status_code", 0))
        except Exception as e:
            warn_once(self.client, "middleware-record", "raceway: cannot record a Django response: %s", e)
            scope.finish(getattr(response, "status_code", 0))
        finally:
            scope.deactivate()
        return response


def _stream(request: HttpRequest, response: HttpResponseBase, scope: RequestScope) -> bool:
    """Wraps a streaming response's body so it runs under the request's context and records
    the response at its end. False for other responses, and for a ``FileResponse`` (its file
    goes to the server's ``wsgi.file_wrapper``, which a wrapped body would defeat)."""
    if not getattr(response, "streaming", False) or getattr(response, "file_to_stream", None) is not None:
        return False
    status = lambda: getattr(response, "status_code", 0)  # noqa: E731
    content = response.streaming_content
    if getattr(response, "is_async", False):
        # Under WSGI Django reads an async body whole (async_to_sync) before sending anything.
        buffered = "wsgi.input" in getattr(request, "META", {})
        response.streaming_content = TracedAsyncBody(content, scope, status, buffered)
    else:
        response.streaming_content = TracedBody(content, scope, status)
    return True


def _detach(request: HttpRequest) -> None:
    try:
        delattr(request, _SCOPE_ATTR)
    except AttributeError:
        pass


_connected: List[bool] = []
"""Non-empty once the signal handler is connected (once per process)."""


def _connect_signal() -> None:
    if _connected:
        return
    from django.core.signals import got_request_exception

    got_request_exception.connect(_on_exception, dispatch_uid="raceway.middleware.django")
    _connected.append(True)


def _on_exception(sender: object, request: Optional[HttpRequest] = None, **kwargs: object) -> None:
    """Django's ``got_request_exception``: sent, inside the ``except`` block (or asgiref's
    re-raise of it in a worker thread), for an exception that becomes a 500."""
    scope = getattr(request, _SCOPE_ATTR, None)
    if scope is None:
        return
    exc = sys.exc_info()[1]
    if isinstance(exc, Exception):
        scope.error(exc)
