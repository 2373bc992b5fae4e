"""``httpx``: `httpx.Client.send` and `httpx.AsyncClient.send`, which every call goes through
(``httpx.get``, ``client.get``, ``client.request``, ``client.stream``). A call is one ``send``
with its redirects and authentication round trips (httpx does them inside ``send``). The
request the application built is never changed: a copy with the headers goes out, sharing its
body stream. With ``stream=True`` the duration runs until the response's headers arrived."""

from __future__ import annotations

from typing import Any, Callable

from . import _call
from ._patching import wrap


def patch() -> None:
    import httpx

    wrap(httpx.Client, "send", _send)
    wrap(httpx.AsyncClient, "send", _asend)


def _traced(call: "_call.Call", request: Any) -> Any:
    """A copy of ``request`` with ``call.headers`` added (the same body stream)."""
    if not call.headers:
        return request
    try:
        import httpx

        headers = request.headers.copy()
        headers.update(call.headers)
        return httpx.Request(
            request.method, request.url, headers=headers, stream=request.stream, extensions=dict(request.extensions)
        )
    except Exception as e:
        call.tracer.warn("headers", e)
        return request


def _send(original: Callable[..., Any]) -> Callable[..., Any]:
    def send(self: Any, request: Any, **kwargs: Any) -> Any:
        if _call._active is None:
            return original(self, request, **kwargs)
        call = _call.begin(request.method, str(request.url), request.headers.keys())
        if call is None:
            return original(self, request, **kwargs)
        request = _traced(call, request)
        return call.send(lambda: original(self, request, **kwargs), "status_code")

    return send


def _asend(original: Callable[..., Any]) -> Callable[..., Any]:
    async def send(self: Any, request: Any, **kwargs: Any) -> Any:
        if _call._active is None:
            return await original(self, request, **kwargs)
        call = _call.begin(request.method, str(request.url), request.headers.keys())
        if call is None:
            return await original(self, request, **kwargs)
        request = _traced(call, request)
        return await call.asend(lambda: original(self, request, **kwargs), "status_code")

    return send
