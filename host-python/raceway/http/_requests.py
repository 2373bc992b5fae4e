"""``requests``: `requests.Session.send`, which every call goes through (``requests.get``,
``Session.request``, `RacewayClient.request`). A call is one ``send`` with its redirects
(requests follows them inside ``send``; each hop carries the same trace headers). The
prepared request the application passed is never changed: ours is a copy with the headers."""

from __future__ import annotations

from typing import Any, Callable

from . import _call
from ._patching import wrap


def patch() -> None:
    import requests

    wrap(requests.Session, "send", _send)


def _send(original: Callable[..., Any]) -> Callable[..., Any]:
    def send(self: Any, request: Any, **kwargs: Any) -> Any:
        if _call._active is None:
            return original(self, request, **kwargs)
        call = _call.begin(
            getattr(request, "method", None) or "GET", getattr(request, "url", None) or "", _names(request)
        )
        if call is None:
            return original(self, request, **kwargs)
        if call.headers:
            try:
                traced = request.copy()
                traced.headers.update(call.headers)
                request = traced
            except Exception as e:
                call.tracer.warn("headers", e)
        return call.send(lambda: original(self, request, **kwargs), "status_code")

    return send


def _names(request: Any) -> Any:
    headers = getattr(request, "headers", None)
    return headers.keys() if headers is not None else ()
