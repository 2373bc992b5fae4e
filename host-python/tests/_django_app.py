"""A Django project in one module for the tests: settings (configured once per process, the
Raceway middleware first in MIDDLEWARE, the client named by RACEWAY_CLIENT), views and URLs.

A test sets `CLIENT` (and `BODY`, the streamed body's chunk function) before it builds a
handler with `wsgi_app()` or `asgi_app()`: Django builds the middleware chain, and so reads
the settings, when the handler is made."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, List, Optional

CLIENT: Any = None
"""The RacewayClient the middleware uses (``RACEWAY_CLIENT = "_django_app.current_client"``)."""
BODY: Optional[Callable[[int], None]] = None
"""Called for each chunk of the streamed bodies, inside the body, with the chunk's index."""
CHUNKS = 3
SLEEP = 0.05
"""Seconds each chunk of a streamed body sleeps."""


def current_client() -> Any:
    return CLIENT


def setup() -> None:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="raceway-tests-only",
            ALLOWED_HOSTS=["127.0.0.1", "localhost"],
            ROOT_URLCONF=__name__,
            MIDDLEWARE=["raceway.middleware.django.RacewayMiddleware"],
            INSTALLED_APPS=[],
            DATABASES={},
            TEMPLATES=[],
            USE_TZ=True,
            LOGGING_CONFIG=None,  # leave the test process's logging alone
            RACEWAY_CLIENT=f"{__name__}.current_client",
        )
        django.setup()


def wsgi_app() -> Any:
    setup()
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def asgi_app() -> Any:
    setup()
    from django.core.asgi import get_asgi_application

    return get_asgi_application()


# -- views -------------------------------------------------------------------------------------
def _chunk(i: int) -> None:
    if BODY is not None:
        BODY(i)


def _sync_chunks(fail: bool):
    for i in range(CHUNKS):
        if fail and i == 1:
            raise RuntimeError("mid-stream")
        _chunk(i)
        time.sleep(SLEEP)
        yield f"{i}\n".encode()


async def _async_chunks(fail: bool):
    for i in range(CHUNKS):
        if fail and i == 1:
            raise RuntimeError("mid-stream")
        _chunk(i)
        await asyncio.sleep(SLEEP)
        yield f"{i}\n".encode()


def stream(request: Any) -> Any:
    from django.http import StreamingHttpResponse

    fail = request.GET.get("fail") == "1"
    chunks = _async_chunks(fail) if request.GET.get("body") == "async" else _sync_chunks(fail)
    return StreamingHttpResponse(chunks, content_type="text/plain")


def _whoami() -> dict:
    from raceway import get_context

    ctx = get_context()
    return {"trace_id": ctx.trace_id if ctx else None, "thread_id": ctx.thread_id if ctx else None}


def work(request: Any) -> Any:
    from django.http import JsonResponse

    CLIENT.track_state_change("django.work", None, 1, "Write")
    return JsonResponse(_whoami())


async def awork(request: Any) -> Any:
    from django.http import JsonResponse

    CLIENT.track_state_change("django.work", None, 1, "Write")
    await asyncio.sleep(0)
    return JsonResponse(_whoami())


def deep(n: int) -> None:
    if n == 0:
        raise RuntimeError("boom")
    deep(n - 1)


def boom(request: Any) -> Any:
    CLIENT.track_state_change("django.boom", None, 1, "Write")
    deep(5)


async def aboom(request: Any) -> Any:
    CLIENT.track_state_change("django.boom", None, 1, "Write")
    deep(5)


def missing(request: Any) -> Any:
    from django.http import Http404

    raise Http404("no such thing")


def download(request: Any) -> Any:
    import io

    from django.http import FileResponse

    return FileResponse(io.BytesIO(b"file body"), content_type="application/octet-stream")


def _patterns() -> List[Any]:
    from django.urls import path

    return [
        path("stream", stream),
        path("work", work),
        path("awork", awork),
        path("boom", boom),
        path("aboom", aboom),
        path("missing", missing),
        path("download", download),
    ]


def __getattr__(name: str) -> Any:  # ``urlpatterns``, built once Django is configured
    if name == "urlpatterns":
        patterns = _patterns()
        globals()["urlpatterns"] = patterns
        return patterns
    raise AttributeError(name)
