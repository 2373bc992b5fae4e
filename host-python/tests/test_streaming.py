"""Every framework integration and every way to stream a response body, on real servers on
127.0.0.1, checked on what arrived at the collector: the body runs under the request's context
(`get_context()` inside it names the request's trace), its events arrive in the request's
trace and come before the ``HttpResponse``, the response's duration runs to the last chunk,
and an exception the body raises is an ``Error``. docs/frameworks.md has the matrix; each
row there is a cell here.

Each body streams three chunks and sleeps ``SLEEP`` seconds after each: the duration must be
at least the time the body itself slept (no assumption about the machine's speed)."""

from __future__ import annotations

import asyncio
import http.client
import time
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple
from urllib.parse import urlsplit

import pytest

import _django_app
from _servers import aiohttp_server, asgi_server, body, by_trace, happens_before, kind, wsgi_server
from conftest import assert_valid_batch
from raceway import get_context

CHUNKS = _django_app.CHUNKS
SLEEP = _django_app.SLEEP
TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACE = "0af76519-16cd-43dd-8448-eb211c80319c"
TP_FAIL = "00-1bf7651916cd43dd8448eb211c80319c-c7ad6b7169203331-01"
TRACE_FAIL = "1bf76519-16cd-43dd-8448-eb211c80319c"
EXPECTED = b"".join(f"{i}\n".encode() for i in range(CHUNKS))

Note = Callable[[int], None]


def fetch(url: str, traceparent: str) -> Tuple[int, bytes]:
    """GET with a traceparent; a body cut short by a failing stream is returned as far as it came."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
    try:
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers={"traceparent": traceparent})
        response = conn.getresponse()
        try:
            data = response.read()
        except http.client.IncompleteRead as cut:
            data = cut.partial
        except (ConnectionError, http.client.HTTPException):
            data = b""
        return response.status, data
    finally:
        conn.close()


def sync_chunks(note: Note, fail: bool) -> Iterator[bytes]:
    for i in range(CHUNKS):
        if fail and i == 1:
            raise RuntimeError("mid-stream")
        note(i)
        time.sleep(SLEEP)
        yield f"{i}\n".encode()


async def async_chunks(note: Note, fail: bool):
    for i in range(CHUNKS):
        if fail and i == 1:
            raise RuntimeError("mid-stream")
        note(i)
        await asyncio.sleep(SLEEP)
        yield f"{i}\n".encode()


def failing(query: Any) -> bool:
    return query.get("fail") == "1"


# -- the cells: each serves /stream (and /stream?fail=1) --------------------------------------
def flask_hooks(client: Any, note: Note, with_context: bool):
    """The reference SDK's hooks, a generator body, optionally in `stream_with_context`."""
    from flask import Flask, Response, request, stream_with_context

    from raceway.middleware import flask_middleware

    app = Flask(__name__)
    middleware = flask_middleware(client)

    @app.before_request
    def init_raceway():
        middleware.before_request()

    @app.after_request
    def finish_raceway(response):
        return middleware.after_request(response)

    @app.route("/stream")
    def stream():
        chunks = sync_chunks(note, failing(request.args))
        return Response(stream_with_context(chunks) if with_context else chunks, mimetype="text/plain")

    return wsgi_server(app)


def flask_wsgi_middleware(client: Any, note: Note):
    """Flask under `RacewayWSGIMiddleware`, the body in `stream_with_context`."""
    from flask import Flask, Response, request, stream_with_context

    from raceway.middleware import RacewayWSGIMiddleware

    app = Flask(__name__)

    @app.route("/stream")
    def stream():
        return Response(stream_with_context(sync_chunks(note, failing(request.args))), mimetype="text/plain")

    app.wsgi_app = RacewayWSGIMiddleware(app.wsgi_app, client=client)
    return wsgi_server(app)


def bare_wsgi(client: Any, note: Note):
    from urllib.parse import parse_qs

    from raceway.middleware import RacewayWSGIMiddleware

    def app(environ, start_response):
        fail = parse_qs(environ.get("QUERY_STRING", "")).get("fail") == ["1"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return sync_chunks(note, fail)

    return wsgi_server(RacewayWSGIMiddleware(app, client=client))


def starlette(client: Any, note: Note, body_kind: str, fastapi: bool):
    from starlette.responses import StreamingResponse

    from raceway.middleware import FastAPIMiddleware

    def make(fail: bool):
        chunks = async_chunks(note, fail) if body_kind == "async" else sync_chunks(note, fail)
        return StreamingResponse(chunks, media_type="text/plain")

    if fastapi:
        from fastapi import FastAPI

        app = FastAPI()

        @app.get("/stream")
        async def stream(fail: int = 0):
            return make(fail == 1)
    else:
        from starlette.applications import Starlette
        from starlette.routing import Route

        async def stream(request):
            return make(failing(request.query_params))

        app = Starlette(routes=[Route("/stream", stream)])
    app.add_middleware(FastAPIMiddleware, client=client)
    return asgi_server(app)


def bare_asgi(client: Any, note: Note):
    """A bare ASGI app sending its body as several ``http.response.body`` messages."""
    from raceway.middleware import RacewayASGIMiddleware

    async def app(scope, receive, send):
        fail = b"fail=1" in scope.get("query_string", b"")
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        async for chunk in async_chunks(note, fail):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return asgi_server(RacewayASGIMiddleware(app, client=client))


def aiohttp_stream(client: Any, note: Note, form: str):
    """aiohttp's forms: a `StreamResponse` the handler writes (plain or chunked), or a
    `web.Response` whose body is an async generator (aiohttp sends it after the handler)."""
    from aiohttp import web

    from raceway.middleware import aiohttp_middleware

    async def stream(request):
        fail = failing(request.query)
        if form == "body":
            return web.Response(body=async_chunks(note, fail), content_type="text/plain")
        response = web.StreamResponse()
        if form == "chunked":
            response.enable_chunked_encoding()
        await response.prepare(request)
        async for chunk in async_chunks(note, fail):
            await response.write(chunk)
        await response.write_eof()
        return response

    app = web.Application(middlewares=[aiohttp_middleware(client)])
    app.router.add_get("/stream", stream)
    return aiohttp_server(app)


@contextmanager
def django(client: Any, note: Note, body_kind: str, server: str) -> Iterator[str]:
    """Django with ``raceway.middleware.django.RacewayMiddleware`` in MIDDLEWARE, a
    ``StreamingHttpResponse`` of a sync or async iterator, under WSGI (werkzeug) or ASGI
    (uvicorn)."""
    _django_app.CLIENT, _django_app.BODY = client, note
    try:
        if server == "wsgi":
            with wsgi_server(_django_app.wsgi_app()) as url:
                yield f"{url}/stream?body={body_kind}"
        else:
            with asgi_server(_django_app.asgi_app()) as url:
                yield f"{url}/stream?body={body_kind}"
    finally:
        _django_app.CLIENT = _django_app.BODY = None


@contextmanager
def django_under_wsgi_middleware(client: Any, note: Note) -> Iterator[str]:
    """Django's WSGI application wrapped in `RacewayWSGIMiddleware` (no Django middleware)."""
    from django.test.utils import override_settings

    from raceway.middleware import RacewayWSGIMiddleware

    _django_app.CLIENT, _django_app.BODY = client, note
    try:
        with override_settings(MIDDLEWARE=[]):
            app = RacewayWSGIMiddleware(_django_app.wsgi_app(), client=client)
        with wsgi_server(app) as url:
            yield f"{url}/stream?body=sync"
    finally:
        _django_app.CLIENT = _django_app.BODY = None


CELLS: Dict[str, Callable[[Any, Note], Any]] = {
    "flask-hooks/generator": lambda c, n: flask_hooks(c, n, with_context=False),
    "flask-hooks/stream_with_context": lambda c, n: flask_hooks(c, n, with_context=True),
    "flask-wsgi-middleware/stream_with_context": flask_wsgi_middleware,
    "wsgi/generator": bare_wsgi,
    "starlette/StreamingResponse-async": lambda c, n: starlette(c, n, "async", fastapi=False),
    "starlette/StreamingResponse-sync": lambda c, n: starlette(c, n, "sync", fastapi=False),
    "fastapi/StreamingResponse-async": lambda c, n: starlette(c, n, "async", fastapi=True),
    "fastapi/StreamingResponse-sync": lambda c, n: starlette(c, n, "sync", fastapi=True),
    "asgi/more_body": bare_asgi,
    "aiohttp/StreamResponse.write": lambda c, n: aiohttp_stream(c, n, "write"),
    "aiohttp/StreamResponse-chunked": lambda c, n: aiohttp_stream(c, n, "chunked"),
    "aiohttp/Response-async-generator-body": lambda c, n: aiohttp_stream(c, n, "body"),
    "django-wsgi/StreamingHttpResponse-sync": lambda c, n: django(c, n, "sync", "wsgi"),
    "django-wsgi/StreamingHttpResponse-async": lambda c, n: django(c, n, "async", "wsgi"),
    "django-asgi/StreamingHttpResponse-sync": lambda c, n: django(c, n, "sync", "asgi"),
    "django-asgi/StreamingHttpResponse-async": lambda c, n: django(c, n, "async", "asgi"),
    "django-under-wsgi-middleware/StreamingHttpResponse-sync": django_under_wsgi_middleware,
}

# The status the client gets when the body fails after its first chunk: the one already sent,
# except where the server reads the whole body before sending anything (Django serving an async
# iterator under WSGI answers 500).
FAILED_STATUS = {"django-wsgi/StreamingHttpResponse-async": 500}
# The status recorded then: the one the client got, except where the framework itself turns
# the handler's exception into a 500 (aiohttp, for a handler that raises after it prepared).
RECORDED_FAILED_STATUS = {**FAILED_STATUS, "aiohttp/StreamResponse.write": 500, "aiohttp/StreamResponse-chunked": 500}


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume")
@pytest.mark.parametrize("cell", list(CELLS))
def test_a_streamed_body_runs_in_the_request_context_and_the_response_lasts_to_its_last_chunk(
        cell, collector, make_client):
    client = make_client(endpoint=collector.url)
    seen: List[Optional[str]] = []

    def note(i: int) -> None:
        ctx = get_context()
        seen.append(ctx.trace_id if ctx is not None else None)
        client.track_state_change("chunk", None, i, "Write")

    with CELLS[cell](client, note) as url:
        path = url if "?" in url else f"{url}/stream"
        status, raw = fetch(path, TP)
        fail_url = path + ("&" if "?" in path else "?") + "fail=1"
        fail_status, _ = fetch(fail_url, TP_FAIL)
    assert (status, raw) == (200, EXPECTED)
    assert fail_status == FAILED_STATUS.get(cell, 200)
    # context current in the body
    assert seen == [TRACE] * CHUNKS + [TRACE_FAIL]
    assert client.flush(timeout=10)
    for batch in collector.batches:
        assert_valid_batch(batch)
    traces = by_trace(collector.events)

    # events arrive, in the request's trace, before the response; the duration covers the body
    events = [e for e in traces[TRACE] if kind(e) != "AsyncSpawn" and kind(e) != "AsyncAwait"]
    assert [kind(e) for e in events] == ["HttpRequest"] + ["StateChange"] * CHUNKS + ["HttpResponse"]
    response = events[-1]
    assert body(response)["status"] == 200
    assert response["metadata"]["duration_ns"] >= CHUNKS * SLEEP * 1e9
    assert body(response)["duration_ms"] >= round(CHUNKS * SLEEP * 1e3)  # whole ms, floored: 3 * 0.05 * 1e3 is 150.00000000000003
    for chunk in events[1:-1]:
        assert happens_before(events[0], chunk) and happens_before(chunk, response)

    # an exception raised by the body is an Error, and the response is still recorded
    failed = [e for e in traces[TRACE_FAIL] if kind(e) not in ("AsyncSpawn", "AsyncAwait")]
    assert [kind(e) for e in failed] == ["HttpRequest", "StateChange", "Error", "HttpResponse"]
    assert (body(failed[2])["error_type"], body(failed[2])["message"]) == ("RuntimeError", "mid-stream")
    assert body(failed[3])["status"] == RECORDED_FAILED_STATUS.get(cell, 200)


# -- a context the body opens across its own yields --------------------------------------------
@pytest.mark.parametrize("framework", ["wsgi", "flask-hooks"])
def test_a_context_the_body_opens_across_yields_is_its_own_and_never_the_servers(framework, collector, make_client):
    """The body opens ``client.trace()`` and yields inside it: when the server resumes it, that
    context is current again (not the request's), and between chunks and after the request
    the server thread has no context at all."""
    client = make_client(endpoint=collector.url)
    inside: List[Any] = []
    between: List[Any] = []

    def chunks():
        client.track_state_change("before", None, 1, "Write")
        with client.trace() as inner:
            for i in range(2):
                inside.append((inner, get_context()))
                client.track_state_change("inner", None, i, "Write")
                yield f"{i}\n".encode()
        client.track_state_change("after", None, 1, "Write")
        yield b"end\n"

    if framework == "wsgi":
        from raceway.middleware import RacewayWSGIMiddleware

        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return chunks()

        traced = RacewayWSGIMiddleware(app, client=client)
    else:
        from flask import Flask, Response

        from raceway.middleware import flask_middleware

        flask = Flask(__name__)
        flask_middleware(client, flask)
        flask.route("/s")(lambda: Response(chunks()))
        traced = flask.wsgi_app

    def probed(environ, start_response):
        for chunk in traced(environ, start_response):
            between.append(get_context())
            yield chunk
        between.append(get_context())

    with wsgi_server(probed, threaded=False) as url:
        status, raw = fetch(f"{url}/s", TP)
        fetch(f"{url}/s", TP_FAIL)  # the same worker thread: starts clean
    assert (status, raw) == (200, b"0\n1\nend\n")
    assert between and all(c is None for c in between)
    assert all(current is inner for inner, current in inside)
    assert client.flush(timeout=10)
    events = by_trace(collector.events)[TRACE]
    threads = {body(e)["variable"]: e["metadata"]["thread_id"] for e in events if kind(e) == "StateChange"}
    request_thread = events[0]["metadata"]["thread_id"]
    assert threads["before"] == threads["after"] == request_thread
    assert threads["inner"] == inside[0][0].thread_id != request_thread
    assert [kind(e) for e in events][-1] == "HttpResponse"
    assert [kind(e) for e in by_trace(collector.events)[TRACE_FAIL]][0] == "HttpRequest"


# -- where a Starlette/FastAPI middleware runs, relative to Raceway's -------------------------
def test_fastapi_middleware_added_after_raceways_runs_outside_the_request_context(collector, make_client):
    """``add_middleware`` puts each middleware outside those added before it: one added after
    Raceway's sees no context (what it records is lost); one added before runs inside it."""
    from fastapi import FastAPI

    from raceway.middleware import FastAPIMiddleware

    client = make_client(endpoint=collector.url)
    seen: Dict[str, Any] = {}
    app = FastAPI()

    @app.middleware("http")
    async def added_before(request, call_next):
        ctx = get_context()
        seen["before"] = ctx.trace_id if ctx else None
        client.track_state_change("mw.before", None, 1, "Write")
        return await call_next(request)

    app.add_middleware(FastAPIMiddleware, client=client)

    @app.middleware("http")
    async def added_after(request, call_next):
        ctx = get_context()
        seen["after"] = ctx.trace_id if ctx else None
        client.track_state_change("mw.after", None, 1, "Write")
        return await call_next(request)

    @app.get("/x")
    async def x():
        return {}

    with asgi_server(app) as url:
        status, _ = fetch(f"{url}/x", TP)
    assert status == 200
    assert seen == {"before": TRACE, "after": None}
    assert client.flush(timeout=10)
    variables = [body(e)["variable"] for e in collector.events if kind(e) == "StateChange"]
    assert variables == ["mw.before"]
