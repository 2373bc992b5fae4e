"""One middleware per web framework; each makes every request an execution context.

- `flask_middleware` (the reference SDK's Flask helper), `RacewayWSGIMiddleware` (any WSGI app:
  Django, Flask, bare WSGI), `RacewayASGIMiddleware` and its alias `FastAPIMiddleware` (any ASGI
  app, streaming included), `aiohttp_middleware` (aiohttp servers).

All of them read ``traceparent``, ``tracestate`` and ``raceway-clock`` through the core, record
the request and the response, record an unhandled exception as an ``Error``, and end the
context with the request. Frameworks are imported only when their middleware is used, so none
of them is a dependency (``pip install raceway[flask]``, ``raceway[fastapi]``, ``raceway[aiohttp]``).
See docs/frameworks.md.
"""

from .._incoming import context_from_headers
from ._compat import raceway_context
from ._scope import Options
from .aiohttp import aiohttp_middleware
from .asgi import FastAPIMiddleware, RacewayASGIMiddleware
from .flask import FlaskMiddleware, flask_middleware
from .wsgi import RacewayWSGIMiddleware

__all__ = [
    "flask_middleware",
    "FlaskMiddleware",
    "FastAPIMiddleware",
    "RacewayASGIMiddleware",
    "RacewayWSGIMiddleware",
    "aiohttp_middleware",
    "context_from_headers",
    "Options",
    "raceway_context",
]
