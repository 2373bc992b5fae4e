"""Real servers on 127.0.0.1 for the middleware tests, each in a thread, each on a free port,
and small helpers to read what arrived at the collector."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def wsgi_server(app: Any, threaded: bool = True) -> Iterator[str]:
    """werkzeug's server; ``threaded=False`` serves every request on ONE thread, one after the
    other (a reused worker)."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=threaded)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def asgi_server(app: Any) -> Iterator[str]:
    """uvicorn (h11) in a thread with its own event loop."""
    import uvicorn

    sock = _free_socket()
    config = uvicorn.Config(app, http="h11", lifespan="off", log_level="critical", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def aiohttp_server(app: Any) -> Iterator[str]:
    """aiohttp's AppRunner on a loop running in a thread."""
    from aiohttp import web

    sock = _free_socket()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.SockSite(runner, sock).start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10), "aiohttp did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        sock.close()


def raw_request(url: str, method: str = "GET", headers: Sequence[Tuple[str, str]] = (),
                body: bytes = b"") -> Tuple[int, Dict[str, str], bytes]:
    """One request with exactly these header lines (repeats and spellings kept), which
    ``requests`` cannot send. Returns status, lower-cased headers, body."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.putrequest(method, parts.path + (f"?{parts.query}" if parts.query else ""))
        for name, value in headers:
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


# -- reading what arrived ----------------------------------------------------------------------
def kind(event: Dict[str, Any]) -> str:
    return next(iter(event["kind"]))


def body(event: Dict[str, Any]) -> Dict[str, Any]:
    return next(iter(event["kind"].values()))


def clock(event: Dict[str, Any]) -> Dict[str, int]:
    return {c: n for c, n in event["causality_vector"]}


def happens_before(a: Dict[str, Any], b: Dict[str, Any]) -> bool:
    """The server's rule: every component of a is in b with a counter <=, one strictly <."""
    ca, cb = clock(a), clock(b)
    return all(c in cb and n <= cb[c] for c, n in ca.items()) and any(n < cb[c] for c, n in ca.items())


def concurrent(a: Dict[str, Any], b: Dict[str, Any]) -> bool:
    return not happens_before(a, b) and not happens_before(b, a)


def by_trace(events: List[Dict[str, Any]]) -> Dict[str, List[Dict[str, Any]]]:
    out: Dict[str, List[Dict[str, Any]]] = {}
    for e in events:
        out.setdefault(e["trace_id"], []).append(e)
    return out


def json_body(raw: bytes) -> Any:
    return json.loads(raw.decode())


class AsyncGate:
    """Lets ``n`` coroutines through together: proof that they really ran concurrently."""

    def __init__(self, n: int, timeout: float = 10.0):
        self.n = n
        self.count = 0
        self.timeout = timeout
        self._event: Optional[asyncio.Event] = None

    async def wait(self) -> None:
        if self._event is None:
            self._event = asyncio.Event()
        self.count += 1
        if self.count >= self.n:
            self._event.set()
        if hasattr(asyncio, "timeout"):  # 3.11+: no extra task (wait_for makes one)
            async with asyncio.timeout(self.timeout):
                await self._event.wait()
        else:  # pragma: no cover
            await asyncio.wait_for(self._event.wait(), self.timeout)
