"""Automatic propagation for outgoing calls (`raceway.instrument_http`) and `client.request()`,
with real clients (requests, httpx sync and async, urllib3, aiohttp) against a real server on
127.0.0.1 that keeps every header line it received, and a collector for the events."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest
import requests

import raceway
from raceway import get_context
from raceway.http import _call

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
KEY = "api-key-that-must-stay-home"


# -- a downstream service that keeps what it received ------------------------------------------
class Downstream:
    """Answers ``/ok`` (200), ``/status/N`` (N), ``/redirect`` (302 to /ok), ``/slow`` (after
    half a second); keeps each request's path and header lines."""

    def __init__(self) -> None:
        self.received: List[Tuple[str, List[Tuple[str, str]]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                outer.received.append((self.path, [(k.lower(), v) for k, v in self.headers.items()]))
                path = self.path.split("?")[0]
                status, extra = 200, {}
                if path.startswith("/status/"):
                    status = int(path.rsplit("/", 1)[1])
                elif path == "/redirect":
                    status, extra = 302, {"Location": "/ok"}
                elif path == "/slow":
                    time.sleep(0.5)
                data = b'{"ok": true}'
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:
                    pass

            do_POST = do_GET

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def values(self, name: str, index: int = -1) -> List[str]:
        return [v for k, v in self.received[index][1] if k == name]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def downstream() -> Iterator[Downstream]:
    server = Downstream()
    yield server
    server.close()


@pytest.fixture
def traced(collector, make_client) -> Iterator[Any]:
    """A client reporting to the collector (with an API key), outgoing HTTP instrumented."""
    client = make_client(endpoint=collector.url, api_key=KEY)
    raceway.instrument_http(client)
    yield client
    raceway.uninstrument_http()


def decode_clock(value: str) -> Dict[str, Any]:
    assert value.startswith("v1;")
    payload = value[3:]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def http_events(client: Any, collector: Any) -> List[Tuple[str, Dict[str, Any], Dict[str, Any]]]:
    assert client.flush(timeout=10)
    return [(k, e["kind"][k], e) for e in collector.events for k in e["kind"] if k in ("HttpRequest", "HttpResponse", "Error")]


def call_aiohttp(url: str, **kwargs: Any) -> int:
    import aiohttp

    async def go() -> int:
        async with aiohttp.ClientSession() as session:
            async with session.get(url, **kwargs) as response:
                await response.read()
                return response.status

    return asyncio.run(go())


def call_httpx_async(url: str, **kwargs: Any) -> int:
    import httpx

    async def go() -> int:
        async with httpx.AsyncClient() as client:
            return (await client.get(url, **kwargs)).status_code

    return asyncio.run(go())


def call_urllib3_pool(url: str, **kwargs: Any) -> int:
    import urllib3

    rest = url.split("://", 1)[1]
    hostport, _, path = rest.partition("/")
    host, port = hostport.split(":")
    return urllib3.HTTPConnectionPool(host, int(port)).urlopen("GET", "/" + path, **kwargs).status


def _httpx_get(url: str, **kwargs: Any) -> int:
    import httpx

    return httpx.get(url, **kwargs).status_code


def _urllib3_request(url: str, **kwargs: Any) -> int:
    import urllib3

    return urllib3.request("GET", url, **kwargs).status


def _pool_manager(url: str, **kwargs: Any) -> int:
    import urllib3

    return urllib3.PoolManager(headers={"X-Default": "kept"}).request("GET", url, **kwargs).status


ASYNC = ("httpx-async", "aiohttp")
CALLERS: Dict[str, Callable[..., int]] = {
    "requests": lambda url, **kw: requests.get(url, timeout=10, **kw).status_code,
    "requests-session": lambda url, **kw: requests.Session().request("GET", url, timeout=10, **kw).status_code,
    "httpx": _httpx_get,
    "httpx-async": call_httpx_async,
    "urllib3.request": _urllib3_request,
    "urllib3-poolmanager": _pool_manager,
    "urllib3-pool": call_urllib3_pool,
    "aiohttp": call_aiohttp,
}


# -- every library --------------------------------------------------------------------------------
@pytest.mark.parametrize("library", list(CALLERS))
def test_each_call_gets_a_new_span_and_a_counted_clock_and_is_recorded(library, traced, collector, downstream):
    call = CALLERS[library]
    with traced.trace() as ctx:
        assert call(f"{downstream.url}/ok?token=secret") == 200
        assert call(f"{downstream.url}/status/404") == 404
    spans, counters, owns = [], [], []
    for i in (0, 1):
        (traceparent,) = downstream.values("traceparent", i)
        (clock_header,) = downstream.values("raceway-clock", i)
        assert not downstream.values("tracestate", i)
        version, trace, span, flags = traceparent.split("-")
        assert (version, trace, flags) == ("00", ctx.trace_id.replace("-", ""), "01")
        clock = decode_clock(clock_header)
        assert list(clock) == ["trace_id", "span_id", "parent_span_id", "service", "instance", "clock"]
        assert (clock["trace_id"], clock["span_id"], clock["parent_span_id"]) == (ctx.trace_id, span, ctx.span_id)
        own = clock["clock"][0][0]  # the sender's own entry first
        # asyncio.run's task is a strand of its own: a child context of ctx (same span).
        assert own == ctx.component or (library in ASYNC and own.startswith(traced.identity + "/"))
        spans.append(span)
        owns.append(own)
        counters.append(clock["clock"][0][1])
        for name, value in downstream.received[i][1]:
            assert KEY not in value and name != "authorization"
    assert len(set(spans)) == 2 and ctx.span_id not in spans
    if library not in ASYNC:  # (each asyncio.run is a strand of its own)
        assert owns[0] == owns[1] and counters[0] < counters[1]
    if library == "urllib3-poolmanager":
        assert downstream.values("x-default") == ["kept"]  # the manager's default headers still go

    events = http_events(traced, collector)
    assert [k for k, _, _ in events] == ["HttpRequest", "HttpResponse"] * 2
    strands = [e["metadata"]["thread_id"] for _, _, e in events]
    assert strands[0] == strands[1] and strands[2] == strands[3]  # each call on its caller's strand
    assert set(strands) == {ctx.thread_id} or library in ASYNC
    request, response = events[0][1], events[1][1]
    assert request["method"] == "GET" and request["url"] == f"{downstream.url}/ok"  # no query string
    assert request["headers"] == {} and request["body"] is None
    assert response["status"] == 200 and events[3][1]["status"] == 404
    assert events[1][2]["metadata"]["duration_ns"] >= 0
    # The request is recorded before the call's clock tick: the callee's clock knows it.
    assert dict(events[0][2]["causality_vector"])[owns[0]] < counters[0]
    for batch_request in collector.received:  # the SDK's own delivery: never traced
        assert "traceparent" not in batch_request.headers and "raceway-clock" not in batch_request.headers
        assert batch_request.headers.get("authorization") == f"Bearer {KEY}"


@pytest.mark.parametrize("library", list(CALLERS))
def test_outside_any_context_nothing_is_added_or_recorded(library, traced, collector, downstream):
    assert CALLERS[library](f"{downstream.url}/ok") == 200
    assert not [v for k, v in downstream.received[0][1] if k in ("traceparent", "tracestate", "raceway-clock")]
    assert http_events(traced, collector) == []


@pytest.mark.parametrize("library", ["requests", "httpx", "urllib3-poolmanager", "urllib3-pool", "aiohttp",
                                     "httpx-async"])
def test_the_callers_traceparent_wins_and_nothing_of_ours_is_added(library, traced, collector, downstream):
    with traced.trace():
        CALLERS[library](f"{downstream.url}/ok", headers={"TraceParent": TP})
        CALLERS[library](f"{downstream.url}/ok", headers={"raceway-clock": "v1;e30"})
        CALLERS[library](f"{downstream.url}/ok", headers={"tracestate": "mine=1"})
    assert downstream.values("traceparent", 0) == [TP]
    assert not downstream.values("raceway-clock", 0) and not downstream.values("tracestate", 0)
    assert downstream.values("raceway-clock", 1) == ["v1;e30"] and not downstream.values("traceparent", 1)
    # Only tracestate of the caller's: ours are added beside it, theirs kept.
    assert len(downstream.values("traceparent", 2)) == 1 and len(downstream.values("raceway-clock", 2)) == 1
    assert downstream.values("tracestate", 2) == ["mine=1"]
    assert [k for k, _, _ in http_events(traced, collector)] == ["HttpRequest", "HttpResponse"] * 3


def test_requests_over_urllib3_and_a_redirect_are_one_call(traced, collector, downstream):
    with traced.trace():
        assert requests.get(f"{downstream.url}/redirect", timeout=10).status_code == 200
        import urllib3

        assert urllib3.request("GET", f"{downstream.url}/redirect").status == 200
    assert [path for path, _ in downstream.received] == ["/redirect", "/ok"] * 2
    for first, second in ((0, 1), (2, 3)):
        assert len(downstream.values("traceparent", first)) == 1
        assert downstream.values("traceparent", first) == downstream.values("traceparent", second)
    events = http_events(traced, collector)
    assert [(k, b.get("status")) for k, b, _ in events] == [("HttpRequest", None), ("HttpResponse", 200)] * 2


def test_the_raceway_endpoint_never_gets_trace_headers(traced, collector):
    with traced.trace():
        requests.get(f"{collector.url}/health", timeout=10)
        import urllib3

        urllib3.request("GET", f"{collector.url}/health")
    health = [r for r in collector.received if r.path == "/health"]
    assert len(health) == 2
    for r in health:
        assert "traceparent" not in r.headers and "raceway-clock" not in r.headers
    assert http_events(traced, collector) == []


def test_calls_on_the_delivery_threads_are_never_traced(traced, collector, downstream):
    from raceway._transport import FLUSHER_THREAD

    def on_delivery_thread() -> None:
        with traced.trace():
            requests.get(f"{downstream.url}/ok", timeout=10)

    thread = threading.Thread(target=on_delivery_thread, name=FLUSHER_THREAD + "-send")
    thread.start()
    thread.join()
    assert downstream.received and not downstream.values("traceparent")
    assert http_events(traced, collector) == []


def test_a_failed_call_raises_the_librarys_own_error_and_is_recorded(traced, collector):
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there: connection refused
    with traced.trace():
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/x", timeout=5)
    kinds = [(k, b.get("status"), b.get("error_type")) for k, b, _ in http_events(traced, collector)]
    assert kinds == [("HttpRequest", None, None), ("Error", None, "ConnectionError"), ("HttpResponse", 0, None)]


def test_a_cancelled_call_is_a_response_without_status_and_no_error(traced, collector, downstream):
    import aiohttp

    async def go() -> None:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(session.get(f"{downstream.url}/slow"), 0.1)

    with traced.trace():
        asyncio.run(go())
    assert [(k, b.get("status")) for k, b, _ in http_events(traced, collector)] == [
        ("HttpRequest", None), ("HttpResponse", 0)]


def test_our_failures_never_break_the_call_and_are_logged_once(traced, collector, downstream, monkeypatch, caplog):
    def broken(*_args: Any) -> Dict[str, str]:
        raise RuntimeError("headers broke")

    monkeypatch.setattr(traced, "propagation_headers", broken)
    with caplog.at_level(logging.ERROR, logger="raceway"), traced.trace():
        assert requests.get(f"{downstream.url}/ok", timeout=10).status_code == 200
        assert call_aiohttp(f"{downstream.url}/ok") == 200
    assert not downstream.values("traceparent", 0) and not downstream.values("traceparent", 1)
    assert len([r for r in caplog.records if "outgoing HTTP instrumentation failed" in r.message]) == 1
    assert [k for k, _, _ in http_events(traced, collector)] == ["HttpRequest", "HttpResponse"] * 2

    monkeypatch.setattr(traced, "_record", broken)
    with traced.trace():
        assert requests.get(f"{downstream.url}/ok", timeout=10).status_code == 200


def test_credentials_and_the_query_string_are_not_recorded_unless_asked(traced, collector, downstream):
    url = downstream.url.replace("http://", "http://user:password@") + "/ok?token=t#frag"
    with traced.trace():
        requests.get(url, timeout=10)
    raceway.instrument_http(traced, include_query=True)
    with traced.trace():
        requests.get(url, timeout=10)
    urls = [b["url"] for k, b, _ in http_events(traced, collector) if k == "HttpRequest"]
    assert urls == [f"{downstream.url}/ok", f"{downstream.url}/ok?token=t"]


def test_switching_on_twice_and_off_twice(make_client, collector, downstream):
    import aiohttp
    import httpx
    import urllib3

    originals = (requests.Session.send, httpx.Client.send, httpx.AsyncClient.send, urllib3.PoolManager.urlopen,
                 urllib3.HTTPConnectionPool.urlopen, aiohttp.ClientSession._request)
    client = make_client(endpoint=collector.url)
    try:
        assert raceway.instrument_http(client) == ("requests", "httpx", "urllib3", "aiohttp")
        assert raceway.instrument_http(client, libraries=["requests"]) == ("requests",)
        assert raceway.http.instrumented() == ("requests", "httpx", "urllib3", "aiohttp")
        with client.trace():
            requests.get(f"{downstream.url}/ok", timeout=10)
        assert len(downstream.values("traceparent")) == 1
        assert [k for k, _, _ in http_events(client, collector)] == ["HttpRequest", "HttpResponse"]
    finally:
        raceway.uninstrument_http()
        raceway.uninstrument_http()
    assert (requests.Session.send, httpx.Client.send, httpx.AsyncClient.send, urllib3.PoolManager.urlopen,
            urllib3.HTTPConnectionPool.urlopen, aiohttp.ClientSession._request) == originals
    assert raceway.http.instrumented() == ()
    with client.trace():
        requests.get(f"{downstream.url}/ok", timeout=10)
    assert not downstream.values("traceparent")
    with pytest.raises(ValueError):
        raceway.instrument_http(client, libraries=["pycurl"])


def test_a_wrapper_another_tool_put_over_ours_survives_switching_off(make_client, downstream):
    import functools

    client = make_client(endpoint=None)
    original = requests.Session.send
    seen = []
    raceway.instrument_http(client, libraries=["requests"])
    try:
        ours = requests.Session.send

        @functools.wraps(ours)
        def theirs(self: Any, request: Any, **kwargs: Any) -> Any:
            seen.append(request.url)
            return ours(self, request, **kwargs)

        requests.Session.send = theirs
        raceway.uninstrument_http()
        assert requests.Session.send is theirs
        with client.trace():
            requests.get(f"{downstream.url}/ok", timeout=10)
        assert seen and not downstream.values("traceparent")  # theirs works, ours is inert
        raceway.instrument_http(client, libraries=["requests"])
        assert requests.Session.send is theirs
        with client.trace():
            requests.get(f"{downstream.url}/ok", timeout=10)
        assert len(downstream.values("traceparent")) == 1
    finally:
        raceway.uninstrument_http()
        requests.Session.send = original


def test_raceway_exports_them_lazily():
    code = ("import sys, raceway; assert 'raceway.http' not in sys.modules; "
            "from raceway import instrument_http, uninstrument_http; import raceway.http as h; "
            "assert instrument_http is h.instrument_http and uninstrument_http is h.uninstrument_http")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_describe_url_keeps_no_secrets():
    assert _call.describe_url("https://u:p@Example.com:8443/a/b?x=1#f") == "https://example.com:8443/a/b"
    assert _call.describe_url("http://[::1]:80/p?q", include_query=True) == "http://[::1]:80/p?q"
    assert _call.describe_url("http://h:notaport/p?secret") == "http://h:notaport/p"


# -- client.request(), without instrumentation -----------------------------------------------------
def test_request_adds_the_headers_to_that_call_only_and_never_the_api_key(make_client, collector, downstream):
    client = make_client(endpoint=collector.url, api_key=KEY)
    with client.trace() as ctx:
        client.request("GET", f"{downstream.url}/ok", timeout=10)
        client.request("GET", f"{downstream.url}/ok", timeout=10, headers={"X-Mine": "1", "TRACEPARENT": TP})
        requests.get(f"{downstream.url}/ok", timeout=10)  # a plain call: nothing of ours
    client.request("GET", f"{downstream.url}/ok", timeout=10)  # outside any context: no trace headers
    first = downstream.values("traceparent", 0)
    assert len(first) == 1 and first[0].split("-")[1] == ctx.trace_id.replace("-", "")
    assert decode_clock(downstream.values("raceway-clock", 0)[0])["parent_span_id"] == ctx.span_id
    assert downstream.values("traceparent", 1) == [TP] and downstream.values("x-mine", 1) == ["1"]
    for i in (2, 3):
        assert not [v for k, v in downstream.received[i][1] if k in ("traceparent", "tracestate", "raceway-clock")]
    assert not client._http_session.headers.get("traceparent")  # the session itself keeps nothing
    for _, lines in downstream.received:
        for name, value in lines:
            assert KEY not in value and name not in ("authorization", "x-raceway-key")
    assert client.flush(timeout=10)
    assert all(r.headers.get("authorization") == f"Bearer {KEY}" for r in collector.received)


def test_request_under_instrumentation_is_recorded_once_with_its_own_headers(traced, collector, downstream):
    with traced.trace():
        traced.request("GET", f"{downstream.url}/ok", timeout=10)
    assert len(downstream.values("traceparent")) == 1 and len(downstream.values("raceway-clock")) == 1
    assert [k for k, _, _ in http_events(traced, collector)] == ["HttpRequest", "HttpResponse"]


def test_a_fastapi_handler_call_through_httpx_continues_the_request(collector, make_client, downstream):
    """In a served request (uvicorn, the ASGI middleware, an instrumented loop): the call made
    by the handler's task carries the request's trace and the handler's own clock entry."""
    import httpx
    from fastapi import FastAPI

    from _servers import asgi_server
    from raceway.middleware import FastAPIMiddleware

    client = make_client(endpoint=collector.url)
    raceway.instrument_http(client)
    app = FastAPI()
    app.add_middleware(FastAPIMiddleware, client=client)

    @app.get("/go")
    async def go() -> Dict[str, str]:
        async with httpx.AsyncClient() as http:
            await http.get(f"{downstream.url}/ok")
        ctx = get_context()
        return {"component": ctx.component, "span": ctx.span_id}

    try:
        with asgi_server(app) as url:
            seen = requests.get(f"{url}/go", headers={"traceparent": TP}, timeout=10).json()
    finally:
        raceway.uninstrument_http()
    (traceparent,) = downstream.values("traceparent")
    assert traceparent.split("-")[1] == TP.split("-")[1]
    clock = decode_clock(downstream.values("raceway-clock")[0])
    assert clock["parent_span_id"] == seen["span"] == "b7ad6b7169203331"
    assert clock["clock"][0][0] == seen["component"]
