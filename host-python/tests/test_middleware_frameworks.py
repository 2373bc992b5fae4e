"""Every middleware on a real server on 127.0.0.1, driven by real HTTP clients, checked on what
arrived at the collector: Flask (the reference SDK's hooks), bare WSGI, FastAPI, bare ASGI and
aiohttp. The same application runs under each: ``/work`` records a write and answers with its
execution context, ``/boom`` raises from a few frames deep.

Each server also has a probe OUTSIDE the Raceway middleware that notes the current context
before and after every request: it must be None both times, or a reused worker would carry a
stale trace into the next request."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
import requests

from _servers import (AsyncGate, aiohttp_server, asgi_server, body, by_trace, clock, json_body, kind,
                      raw_request, wsgi_server)
from conftest import assert_valid_batch
from raceway import get_context

KINDS = ["flask", "wsgi", "fastapi", "asgi", "aiohttp"]
TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACE = "0af76519-16cd-43dd-8448-eb211c80319c"


def whoami() -> Dict[str, Any]:
    ctx = get_context()
    if ctx is None:
        return {"trace_id": None}
    return {"trace_id": ctx.trace_id, "span_id": ctx.span_id, "upstream": ctx.upstream_span_id,
            "tracestate": ctx.tracestate, "flags": ctx.flags, "thread_id": ctx.thread_id,
            "clock": [list(p) for p in ctx.clock()]}


def deep(n: int) -> None:
    if n == 0:
        raise RuntimeError("boom")
    deep(n - 1)


class Probe:
    def __init__(self) -> None:
        self.seen: List[Tuple[str, Any]] = []

    def note(self, when: str) -> None:
        self.seen.append((when, get_context()))

    def assert_clean(self) -> None:
        assert self.seen, "the probe saw no request"
        assert [c for _, c in self.seen if c is not None] == [], self.seen


# -- the same application under every framework ------------------------------------------------
def flask_app(client: Any, probe: Probe, gate: Any, threaded: bool, opts: Dict[str, Any]):
    from flask import Flask, jsonify

    from raceway.middleware import flask_middleware

    app = Flask(__name__)
    middleware = flask_middleware(client, **opts)

    @app.before_request
    def init_raceway():
        middleware.before_request()

    @app.after_request
    def finish_raceway(response):
        return middleware.after_request(response)

    @app.route("/work")
    def work():
        client.track_state_change("shared", None, 1, "Write")
        if gate:
            gate.wait()
        return jsonify(whoami())

    @app.route("/boom")
    def boom():
        deep(12)

    inner = app.wsgi_app

    def probed(environ, start_response):
        probe.note("before")
        try:
            return inner(environ, start_response)
        finally:
            probe.note("after")

    app.wsgi_app = probed
    return wsgi_server(app, threaded=threaded)


def bare_wsgi_app(client: Any, probe: Probe, gate: Any, threaded: bool, opts: Dict[str, Any]):
    import json

    from raceway.middleware import RacewayWSGIMiddleware

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/boom":
            deep(12)
        client.track_state_change("shared", None, 1, "Write")
        if gate:
            gate.wait()
        data = json.dumps(whoami()).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    traced = RacewayWSGIMiddleware(app, client=client, **opts)

    def probed(environ, start_response):
        probe.note("before")
        try:
            for chunk in traced(environ, start_response):
                yield chunk
        finally:
            probe.note("after")

    return wsgi_server(probed, threaded=threaded)


def probed_asgi(app: Any, probe: Probe) -> Any:
    async def outer(scope, receive, send):
        if scope["type"] == "http":
            probe.note("before")
        try:
            await app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                probe.note("after")

    return outer


def fastapi_app(client: Any, probe: Probe, gate: Any, threaded: bool, opts: Dict[str, Any]):
    from fastapi import FastAPI

    from raceway.middleware import FastAPIMiddleware

    app = FastAPI()
    app.add_middleware(FastAPIMiddleware, client=client, **opts)

    @app.get("/work")
    async def work():
        client.track_state_change("shared", None, 1, "Write")
        if gate:
            await gate.wait()
        return whoami()

    @app.get("/boom")
    async def boom():
        deep(12)

    return asgi_server(probed_asgi(app, probe))


def bare_asgi_app(client: Any, probe: Probe, gate: Any, threaded: bool, opts: Dict[str, Any]):
    import json

    from raceway.middleware import RacewayASGIMiddleware

    async def app(scope, receive, send):
        if scope["path"] == "/boom":
            deep(12)
        client.track_state_change("shared", None, 1, "Write")
        if gate:
            await gate.wait()
        data = json.dumps(whoami()).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": data})

    return asgi_server(probed_asgi(RacewayASGIMiddleware(app, client=client, **opts), probe))


def aiohttp_app(client: Any, probe: Probe, gate: Any, threaded: bool, opts: Dict[str, Any]):
    from aiohttp import web

    from raceway.middleware import aiohttp_middleware

    @web.middleware
    async def probe_mw(request, handler):
        probe.note("before")
        try:
            return await handler(request)
        finally:
            probe.note("after")

    async def work(request):
        client.track_state_change("shared", None, 1, "Write")
        if gate:
            await gate.wait()
        return web.json_response(whoami())

    async def boom(request):
        deep(12)

    app = web.Application(middlewares=[probe_mw, aiohttp_middleware(client, **opts)])
    app.router.add_get("/work", work)
    app.router.add_get("/boom", boom)
    return aiohttp_server(app)


BUILDERS: Dict[str, Callable[..., Any]] = {
    "flask": flask_app, "wsgi": bare_wsgi_app, "fastapi": fastapi_app, "asgi": bare_asgi_app, "aiohttp": aiohttp_app,
}


@contextmanager
def serve(kind_name: str, client: Any, gate_n: Optional[int] = None, threaded: bool = True,
          **opts: Any) -> Iterator[Tuple[str, Probe]]:
    probe = Probe()
    gate: Any = None
    if gate_n:
        gate = threading.Barrier(gate_n, timeout=10) if kind_name in ("flask", "wsgi") else AsyncGate(gate_n)
    with BUILDERS[kind_name](client, probe, gate, threaded, opts) as url:
        yield url, probe


def request_events(events: List[Dict[str, Any]], trace_id: str) -> List[Dict[str, Any]]:
    return [e for e in events if e["trace_id"] == trace_id]


# -- tests -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind_name", KINDS)
def test_request_continues_the_callers_trace(kind_name, collector, make_client):
    client = make_client(endpoint=collector.url)
    caller = make_client(endpoint=None, service_name="caller", instance_id="c-1")
    with caller.trace() as caller_ctx:
        sent = caller.propagation_headers()
    with serve(kind_name, client) as (url, probe):
        status, _, raw = raw_request(f"{url}/work?secret=token", headers=[
            ("traceparent", sent["traceparent"]), ("raceway-clock", sent["raceway-clock"]),
            ("tracestate", "foo=1"), ("tracestate", "bar=2")])
    assert status == 200
    seen = json_body(raw)
    minted = sent["traceparent"].split("-")[2]
    assert seen["trace_id"] == caller_ctx.trace_id
    assert seen["span_id"] == minted != caller_ctx.span_id  # the span the caller minted for us
    assert seen["upstream"] == caller_ctx.span_id
    assert seen["tracestate"] == "foo=1,bar=2"
    assert client.flush(timeout=10)
    for batch in collector.batches:
        assert_valid_batch(batch)
    events = request_events(collector.events, caller_ctx.trace_id)
    assert [kind(e) for e in events] == ["HttpRequest", "StateChange", "HttpResponse"]
    assert {e["metadata"]["thread_id"] for e in events} == {seen["thread_id"]}
    assert all(e["metadata"]["distributed_span_id"] == minted for e in events)
    assert all(e["metadata"]["upstream_span_id"] == caller_ctx.span_id for e in events)
    request, _, response = events
    assert (body(request)["method"], body(request)["url"]) == ("GET", "/work")  # no query string
    assert body(response)["status"] == 200 and body(response)["duration_ms"] >= 0
    assert response["metadata"]["duration_ns"] > 0
    # the caller's clock came along: our events come after the caller's call
    caller_component = next(c for c, _ in caller_ctx.clock())
    assert clock(request)[caller_component] >= 1
    probe.assert_clean()


@pytest.mark.parametrize("kind_name", KINDS)
def test_invalid_or_missing_traceparent_starts_a_new_trace(kind_name, collector, make_client):
    client = make_client(endpoint=collector.url)
    cases = {
        "repeated": [("traceparent", TP), ("traceparent", TP), ("tracestate", "foo=1")],
        "other spelling": [("trace-parent", TP), ("tracestate", "foo=1")],
        "upper-case id": [("traceparent", TP.upper()), ("tracestate", "foo=1")],
        "none": [],
    }
    with serve(kind_name, client) as (url, probe):
        answers = {name: json_body(raw_request(f"{url}/work", headers=h)[2]) for name, h in cases.items()}
        same = json_body(raw_request(f"{url}/work", headers=[("TraceParent", TP), ("TRACESTATE", "foo=1")])[2])
    for name, seen in answers.items():
        assert seen["trace_id"] not in (None, TRACE), name
        assert seen["tracestate"] is None, name
        assert seen["span_id"] != "b7ad6b7169203331", name
    assert len({seen["trace_id"] for seen in answers.values()}) == len(cases)
    # header names match case-insensitively
    assert (same["trace_id"], same["span_id"], same["tracestate"]) == (TRACE, "b7ad6b7169203331", "foo=1")
    probe.assert_clean()


@pytest.mark.parametrize("kind_name", KINDS)
def test_nine_concurrent_requests_get_nine_traces_and_spans(kind_name, collector, make_client):
    client = make_client(endpoint=collector.url)
    with serve(kind_name, client, gate_n=9) as (url, probe):
        with ThreadPoolExecutor(9) as pool:  # the gate only opens when all nine are inside
            answers = list(pool.map(lambda _: requests.get(f"{url}/work", timeout=20), range(9)))
    assert [r.status_code for r in answers] == [200] * 9
    seen = [r.json() for r in answers]
    assert len({s["trace_id"] for s in seen}) == 9
    assert len({s["span_id"] for s in seen}) == 9
    assert len({s["thread_id"] for s in seen}) == 9
    assert client.flush(timeout=10)
    traces = by_trace(collector.events)
    assert set(traces) == {s["trace_id"] for s in seen}
    for s in seen:
        events = traces[s["trace_id"]]
        assert [kind(e) for e in events] == ["HttpRequest", "StateChange", "HttpResponse"]
        assert {e["metadata"]["thread_id"] for e in events} == {s["thread_id"]}
        assert {e["metadata"]["distributed_span_id"] for e in events} == {s["span_id"]}
    for batch in collector.batches:
        assert_valid_batch(batch)
    probe.assert_clean()


@pytest.mark.parametrize("kind_name", KINDS)
def test_unhandled_exception_is_an_error_event_and_the_next_request_starts_clean(kind_name, collector, make_client):
    client = make_client(endpoint=collector.url, max_stack_frames=3)
    with serve(kind_name, client, threaded=False) as (url, probe):  # one worker for WSGI servers
        status, _, _ = raw_request(f"{url}/boom", headers=[("traceparent", TP)])
        after = json_body(raw_request(f"{url}/work")[2])
    assert status == 500
    assert after["trace_id"] not in (None, TRACE)
    assert client.flush(timeout=10)
    failed = request_events(collector.events, TRACE)
    assert [kind(e) for e in failed] == ["HttpRequest", "Error", "HttpResponse"]
    error = body(failed[1])
    assert (error["error_type"], error["message"]) == ("RuntimeError", "boom")
    assert len(error["stack_trace"]) == 3
    assert error["stack_trace"][-1].endswith("in deep") and __file__ in error["stack_trace"][-1]
    assert body(failed[2])["status"] == 500
    clean = request_events(collector.events, after["trace_id"])
    assert [kind(e) for e in clean] == ["HttpRequest", "StateChange", "HttpResponse"]
    assert body(clean[2])["status"] == 200
    for batch in collector.batches:
        assert_valid_batch(batch)
    probe.assert_clean()


@pytest.mark.parametrize("kind_name", KINDS)
def test_options_query_string_and_response_traceparent(kind_name, collector, make_client):
    client = make_client(endpoint=collector.url)
    sampled_random = TP[:-2] + "03"
    with serve(kind_name, client, include_query=True, response_traceparent=True) as (url, _):
        status, headers, raw = raw_request(f"{url}/work?page=2", headers=[("traceparent", sampled_random)])
    assert status == 200
    seen = json_body(raw)
    assert headers["traceparent"] == f"00-{TRACE.replace('-', '')}-{seen['span_id']}-03"
    assert seen["flags"] == 3
    assert client.flush(timeout=10)
    (request,) = [e for e in collector.events if kind(e) == "HttpRequest"]
    assert body(request)["url"] == "/work?page=2"


@pytest.mark.parametrize("kind_name", KINDS)
def test_a_core_that_failed_to_load_still_serves_requests(kind_name, collector, make_client):
    client = make_client(endpoint=collector.url)
    client._codec = None  # what the constructor leaves when the component cannot load
    client._disable()
    with serve(kind_name, client) as (url, probe):
        status, _, raw = raw_request(f"{url}/work", headers=[("traceparent", TP)])
        boom, _, _ = raw_request(f"{url}/boom")
    assert (status, boom) == (200, 500)
    assert json_body(raw)["trace_id"] not in (None, TRACE)  # headers cannot be read: a new trace
    client.flush(timeout=5)
    assert collector.events == []
    probe.assert_clean()
