"""Middleware overhead per request: a minimal ASGI app and a minimal WSGI app called in-process
(no server, no network), with and without the middleware; the figure is the difference. Both
apps record one state change per request, so the instrumented path does what a real one does.
"With trace headers" adds a caller's traceparent and raceway-clock, which costs a header parse
in the core."""

from __future__ import annotations

import asyncio
import time
from typing import Dict, List

ROUNDS, REQUESTS = 40, 500


def _asgi_app(client):
    async def app(scope, receive, send):
        client.track_state_change("hits", 0, 1, "Write")
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def _wsgi_app(client):
    def app(environ, start_response):
        client.track_state_change("hits", 0, 1, "Write")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return app


def _asgi_rounds(app, headers) -> List[float]:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": "/transfer", "raw_path": b"/transfer", "query_string": b"",
             "headers": headers, "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    async def main() -> List[float]:
        samples = []
        for _ in range(ROUNDS):
            start = time.perf_counter_ns()
            for _ in range(REQUESTS):
                await app(dict(scope), receive, send)
            samples.append((time.perf_counter_ns() - start) / REQUESTS / 1000)
        return samples

    return asyncio.run(main())


def _wsgi_rounds(app) -> List[float]:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/transfer", "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
               "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http"}

    def start_response(status, headers, exc_info=None):
        return lambda data: None

    samples = []
    for _ in range(ROUNDS):
        start = time.perf_counter_ns()
        for _ in range(REQUESTS):
            body = app(dict(environ), start_response)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close:
                close()
        samples.append((time.perf_counter_ns() - start) / REQUESTS / 1000)
    return samples


def _minus(a: List[float], b: List[float]) -> List[float]:
    base = sorted(b)[len(b) // 2]
    return [x - base for x in a]


def run() -> Dict[str, List[float]]:
    from raceway import Config, RacewayClient
    from raceway.middleware import RacewayASGIMiddleware, RacewayWSGIMiddleware

    # The toy apps count hits without a lock (a real data race): the report at shutdown would only
    # interrupt the benchmark output.
    client = RacewayClient(Config(endpoint=None, flush_interval=0.2, report_races_at_shutdown=False))
    headers = [(b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
               (b"raceway-clock", b"v1;eyJ0cmFjZV9pZCI6IjBhZjc2NTE5LTE2Y2QtNDNkZC04NDQ4LWViMjExYzgwMzE5YyIsInNwYW5faWQiOiJiN2FkNmI3MTY5MjAzMzMxIiwicGFyZW50X3NwYW5faWQiOiI1Y2ExYjE3Y2E4NGNhNWU1Iiwic2VydmljZSI6ImJhbmtpbmctYXBpIiwiaW5zdGFuY2UiOiJob3N0LTEiLCJjbG9jayI6W1siYmFua2luZy1hcGkjaG9zdC0xIiwyXV19")]
    plain = [(b"host", b"127.0.0.1"), (b"user-agent", b"bench")]
    asgi_bare = _asgi_rounds(_asgi_app(client), plain)
    asgi_mw = _asgi_rounds(RacewayASGIMiddleware(_asgi_app(client), client=client), plain)
    asgi_mw_headers = _asgi_rounds(RacewayASGIMiddleware(_asgi_app(client), client=client), plain + headers)
    wsgi_bare = _wsgi_rounds(_wsgi_app(client))
    wsgi_mw = _wsgi_rounds(RacewayWSGIMiddleware(_wsgi_app(client), client=client))
    client.shutdown(timeout=5)
    return {"asgi_bare": asgi_bare, "asgi_overhead": _minus(asgi_mw, asgi_bare),
            "asgi_overhead_headers": _minus(asgi_mw_headers, asgi_bare),
            "wsgi_bare": wsgi_bare, "wsgi_overhead": _minus(wsgi_mw, wsgi_bare)}
