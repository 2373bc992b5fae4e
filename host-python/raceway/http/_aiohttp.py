"""``aiohttp`` (the client): `ClientSession._request`, which ``session.get``, ``post``,
``request`` and ``ws_connect``'s handshake all go through, for sessions made before or after
instrumentation. A call is one ``_request`` with its redirects (aiohttp follows them inside).
The caller's headers and the session's default headers both count as "set by the caller"; the
headers the application passed are copied, never changed. The duration runs until the
response's headers arrived (aiohttp returns then; the body is read later)."""

from __future__ import annotations

from typing import Any, Callable, List

from . import _call
from ._patching import wrap


def patch() -> None:
    from aiohttp import ClientSession

    wrap(ClientSession, "_request", _request)


def _names(session: Any, given: Any) -> List[str]:
    names: List[str] = []
    if given:
        from multidict import CIMultiDict

        names.extend(CIMultiDict(given).keys())
    defaults = getattr(session, "headers", None)
    if defaults:
        names.extend(defaults.keys())
    return names


def _url(session: Any, str_or_url: Any) -> str:
    build = getattr(session, "_build_url", None)
    try:
        return str(build(str_or_url)) if build is not None else str(str_or_url)
    except Exception:
        return str(str_or_url)


def _request(original: Callable[..., Any]) -> Callable[..., Any]:
    async def request(self: Any, method: str, str_or_url: Any, **kwargs: Any) -> Any:
        if _call._active is None:
            return await original(self, method, str_or_url, **kwargs)
        given = kwargs.get("headers")
        try:
            names = _names(self, given)
        except Exception:  # headers aiohttp itself will refuse: let it say so
            return await original(self, method, str_or_url, **kwargs)
        call = _call.begin(method, _url(self, str_or_url), names)
        if call is None:
            return await original(self, method, str_or_url, **kwargs)
        if call.headers:
            try:
                from multidict import CIMultiDict

                merged = CIMultiDict(given or {})
                for name, value in call.headers.items():
                    merged[name] = value
                kwargs["headers"] = merged
            except Exception as e:
                call.tracer.warn("headers", e)
        return await call.asend(lambda: original(self, method, str_or_url, **kwargs))

    return request
