"""``urllib3``: `PoolManager.urlopen` (``urllib3.request``, ``PoolManager.request``, a
``ProxyManager``) and `HTTPConnectionPool.urlopen` (pools used directly, and the pools under
``requests`` and under a pool manager, where the call is already traced and passes through).
A call is the outermost ``urlopen`` with its redirects and retries (urllib3 does them by
calling ``urlopen`` again, inside). The headers the application passed (or the manager's or
pool's default headers, which urllib3 would use) are copied, never changed.

The SDK's own delivery uses urllib3 too: it runs on the flusher's threads, outside any
execution context, to the Raceway endpoint; each of the three keeps it untraced."""

from __future__ import annotations

from typing import Any, Callable, Optional

from . import _call
from ._patching import wrap


def patch() -> None:
    import urllib3
    from urllib3.connectionpool import HTTPConnectionPool

    wrap(urllib3.PoolManager, "urlopen", _manager_urlopen)
    wrap(HTTPConnectionPool, "urlopen", _pool_urlopen)


def _with(call: "_call.Call", headers: Any) -> Optional[Any]:
    """``headers`` (a mapping or None) with ``call.headers`` added, as a new HTTPHeaderDict."""
    try:
        from urllib3 import HTTPHeaderDict

        merged = HTTPHeaderDict(headers or {})
        for name, value in call.headers.items():
            merged[name] = value
        return merged
    except Exception as e:
        call.tracer.warn("headers", e)
        return None


def _manager_urlopen(original: Callable[..., Any]) -> Callable[..., Any]:
    def urlopen(self: Any, method: str, url: str, redirect: bool = True, **kw: Any) -> Any:
        if _call._active is None:
            return original(self, method, url, redirect, **kw)
        headers = kw["headers"] if "headers" in kw else self.headers
        call = _call.begin(method, url, headers.keys() if headers else ())
        if call is None:
            return original(self, method, url, redirect, **kw)
        if call.headers:
            merged = _with(call, headers)
            if merged is not None:
                kw["headers"] = merged
        return call.send(lambda: original(self, method, url, redirect, **kw))

    return urlopen


def _pool_urlopen(original: Callable[..., Any]) -> Callable[..., Any]:
    def urlopen(self: Any, method: str, url: str, body: Any = None, headers: Any = None, *args: Any, **kw: Any) -> Any:
        if _call._active is None:
            return original(self, method, url, body, headers, *args, **kw)
        given = headers if headers is not None else self.headers
        call = _call.begin(method, _absolute(self, url), given.keys() if given else ())
        if call is None:
            return original(self, method, url, body, headers, *args, **kw)
        if call.headers:
            merged = _with(call, given)
            if merged is not None:
                headers = merged
        return call.send(lambda: original(self, method, url, body, headers, *args, **kw))

    return urlopen


def _absolute(pool: Any, url: str) -> str:
    """The pool's request target as an absolute URL (a proxied request's already is one)."""
    if not isinstance(url, str) or "://" in url[:16]:
        return str(url)
    host = pool.host if ":" not in (pool.host or "") else f"[{pool.host}]"
    port = f":{pool.port}" if pool.port else ""
    return f"{pool.scheme}://{host}{port}{url if url.startswith('/') else '/' + url}"
