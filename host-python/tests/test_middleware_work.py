"""Work that a request hands on, under real servers: tasks from ``asyncio.gather``, work sent
through ``to_thread``/executors, streamed response bodies, a downstream call, and Flask's
propagated-exception path. Checked on what arrived at the collector."""

from __future__ import annotations

import asyncio

import requests

from _servers import (aiohttp_server, asgi_server, body, by_trace, concurrent, happens_before, kind,
                      raw_request, wsgi_server)
from conftest import assert_valid_batch
from raceway import ContextAwareThreadPoolExecutor, get_context
from raceway.testing import CollectorServer

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACE = "0af76519-16cd-43dd-8448-eb211c80319c"


def writes(events, variable):
    return [e for e in events if kind(e) == "StateChange" and body(e)["variable"] == variable]


def test_fastapi_gather_and_executor_work_carry_the_request_trace(collector, make_client):
    from fastapi import FastAPI

    from raceway.middleware import FastAPIMiddleware

    client = make_client(endpoint=collector.url)
    pool = ContextAwareThreadPoolExecutor(4, client=client)
    app = FastAPI()
    app.add_middleware(FastAPIMiddleware, client=client)

    async def reserve(item):
        stock = 10
        client.track_state_change("stock", stock, stock - 1, "Write")
        await asyncio.sleep(0.001)
        return get_context().thread_id

    def charge(amount):
        client.track_state_change("balance", 100, 100 - amount, "Write")
        return get_context().thread_id

    @app.post("/order")
    async def order():
        client.track_state_change("order", None, "new", "Write")
        tasks = await asyncio.gather(reserve("a"), reserve("b"))
        loop = asyncio.get_running_loop()
        pooled = await loop.run_in_executor(pool, charge, 5)
        threaded = await asyncio.to_thread(charge, 7)
        client.track_state_change("order", "new", "done", "Write")
        return {"request": get_context().thread_id, "tasks": tasks, "pooled": pooled, "threaded": threaded}

    try:
        with asgi_server(app) as url:
            answers = [requests.post(f"{url}/order", headers={"traceparent": TP} if i == 0 else {}, timeout=10)
                       for i in range(2)]
    finally:
        pool.shutdown()
    assert [r.status_code for r in answers] == [200, 200]
    assert client.flush(timeout=10)
    for batch in collector.batches:
        assert_valid_batch(batch)
    traces = by_trace(collector.events)
    assert len(traces) == 2 and TRACE in traces
    for answer in answers:
        seen = answer.json()
        strands = [seen["request"], *seen["tasks"], seen["pooled"], seen["threaded"]]
        assert len(set(strands)) == 5  # every task and every thread its own context
        trace = next(t for t, evs in traces.items() if any(e["metadata"]["thread_id"] == seen["request"] for e in evs))
        events = traces[trace]
        assert {e["metadata"]["thread_id"] for e in events} == set(strands)
        first, last = writes(events, "order")
        stock = writes(events, "stock")
        assert len(stock) == 2 and concurrent(*stock)  # the two tasks race, visibly
        for e in stock + writes(events, "balance"):
            assert happens_before(first, e) and happens_before(e, last)
        balance = writes(events, "balance")
        assert len(balance) == 2 and happens_before(balance[0], balance[1])  # awaited one by one


def test_asgi_streaming_response_is_recorded_when_its_last_chunk_is_sent(collector, make_client):
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    from raceway.middleware import RacewayASGIMiddleware

    client = make_client(endpoint=collector.url)

    async def chunks():
        for i in range(3):
            client.track_state_change("chunk", None, i, "Write")
            yield f"{i}\n".encode()
            await asyncio.sleep(0.001)

    async def stream(request):
        return StreamingResponse(chunks(), media_type="text/plain")

    app = RacewayASGIMiddleware(Starlette(routes=[Route("/stream", stream)]), client=client)
    with asgi_server(app) as url:
        status, _, raw = raw_request(f"{url}/stream", headers=[("traceparent", TP)])
    assert (status, raw) == (200, b"0\n1\n2\n")
    assert client.flush(timeout=10)
    events = by_trace(collector.events)[TRACE]
    assert [kind(e) for e in events if kind(e) in ("HttpRequest", "StateChange", "HttpResponse")] == [
        "HttpRequest", "StateChange", "StateChange", "StateChange", "HttpResponse"]
    (response,) = [e for e in events if kind(e) == "HttpResponse"]
    assert body(response)["status"] == 200
    chunks_written = writes(events, "chunk")
    assert all(happens_before(c, response) for c in chunks_written)  # the response ends the request


def test_wsgi_streaming_body_runs_in_the_request_context(collector, make_client):
    from raceway.middleware import RacewayWSGIMiddleware

    client = make_client(endpoint=collector.url)
    outside = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def generate():
            for i in range(3):
                client.track_state_change("chunk", None, i, "Write")
                yield f"{i}\n".encode()

        return generate()

    traced = RacewayWSGIMiddleware(app, client=client)

    def probed(environ, start_response):
        for chunk in traced(environ, start_response):
            outside.append(get_context())  # between chunks the server thread is clean
            yield chunk

    with wsgi_server(probed) as url:
        status, _, raw = raw_request(f"{url}/s", headers=[("traceparent", TP)])
    assert (status, raw) == (200, b"0\n1\n2\n")
    assert outside == [None, None, None]
    assert client.flush(timeout=10)
    events = by_trace(collector.events)[TRACE]
    assert [kind(e) for e in events] == ["HttpRequest", "StateChange", "StateChange", "StateChange", "HttpResponse"]
    assert len({e["metadata"]["thread_id"] for e in events}) == 1


def test_flask_handler_calls_downstream_and_uses_an_executor(collector, make_client):
    from flask import Flask, jsonify

    from raceway.middleware import flask_middleware

    client = make_client(endpoint=collector.url)
    app = Flask(__name__)
    flask_middleware(client, app)  # registers both hooks

    def audit(n):
        client.track_state_change("audit", None, n, "Write")
        return get_context().thread_id

    with CollectorServer() as downstream:
        @app.route("/checkout", methods=["POST"])
        def checkout():
            with ContextAwareThreadPoolExecutor(2, client=client) as pool:
                strands = list(pool.map(audit, [1, 2]))
            client.request("POST", f"{downstream.url}/reserve", json={"orderId": 1})
            return jsonify({"request": get_context().thread_id, "strands": strands})

        with wsgi_server(app) as url:
            r = requests.post(f"{url}/checkout", headers={"traceparent": TP, "tracestate": "vendor=x"}, timeout=10)
        (sent,) = downstream.received
    assert r.status_code == 200
    seen = r.json()
    assert len({seen["request"], *seen["strands"]}) == 3
    tp = sent.headers["traceparent"].split("-")
    assert tp[1] == TRACE.replace("-", "") and tp[2] != "b7ad6b7169203331" and tp[3] == "01"
    assert sent.headers["tracestate"] == "vendor=x"
    assert client.flush(timeout=10)
    events = by_trace(collector.events)[TRACE]
    assert {e["metadata"]["thread_id"] for e in events} == {seen["request"], *seen["strands"]}
    assert len(writes(events, "audit")) == 2


def test_flask_propagated_exception_still_ends_the_context(collector, make_client):
    from flask import Flask

    from raceway.middleware import flask_middleware

    client = make_client(endpoint=collector.url)
    app = Flask(__name__)
    app.config["PROPAGATE_EXCEPTIONS"] = True  # no after_request: the teardown signal ends it
    middleware = flask_middleware(client)
    app.before_request(middleware.before_request)
    app.after_request(middleware.after_request)
    seen_after = []

    @app.route("/boom")
    def boom():
        raise LookupError("missing")

    inner = app.wsgi_app

    def probed(environ, start_response):
        try:
            return inner(environ, start_response)
        finally:
            seen_after.append(get_context())

    app.wsgi_app = probed
    with wsgi_server(app, threaded=False) as url:
        status, _, _ = raw_request(f"{url}/boom", headers=[("traceparent", TP)])
    assert status == 500
    assert seen_after == [None]
    assert client.flush(timeout=10)
    events = by_trace(collector.events)[TRACE]
    assert [kind(e) for e in events] == ["HttpRequest", "Error", "HttpResponse"]
    assert body(events[1])["error_type"] == "LookupError" and body(events[2])["status"] == 500


def test_aiohttp_keep_alive_connection_serves_each_request_in_a_fresh_context(collector, make_client):
    from aiohttp import web

    from raceway.middleware import aiohttp_middleware

    client = make_client(endpoint=collector.url)
    leftovers = []

    async def touch(n):
        client.track_state_change("y", None, n, "Write")

    async def leaky(request):
        client.track_state_change("x", None, 1, "Write")
        await asyncio.gather(touch(1), touch(2))
        return web.json_response({"trace": get_context().trace_id, "thread": get_context().thread_id})

    @web.middleware
    async def outer(request, handler):
        try:
            return await handler(request)
        finally:
            leftovers.append(get_context())

    app = web.Application(middlewares=[outer, aiohttp_middleware(client)])
    app.router.add_get("/x", leaky)
    with aiohttp_server(app) as url:
        with requests.Session() as session:  # one keep-alive connection
            answers = [session.get(f"{url}/x", timeout=10).json() for _ in range(3)]
    assert leftovers == [None, None, None]
    assert len({a["trace"] for a in answers}) == 3
    assert client.flush(timeout=10)
    for a in answers:
        request_kinds = [kind(e) for e in collector.events if e["metadata"]["thread_id"] == a["thread"]]
        assert request_kinds == ["HttpRequest", "StateChange", "AsyncSpawn", "AsyncSpawn",
                                 "AsyncAwait", "AsyncAwait", "HttpResponse"]
