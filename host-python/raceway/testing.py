"""A real HTTP server on 127.0.0.1 that speaks the Raceway ingest API, for tests.

It records every request it receives and answers ``POST /events`` like a Raceway server
(``200`` with the ``{"success", "data", "error"}`` envelope). Give it a ``responder`` to inject
faults: return a status and body, or ``None`` to drop the connection without answering.

    with CollectorServer() as server:
        client = RacewayClient(Config(endpoint=server.url))
        ...
        client.flush()
        assert server.events
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple

Response = Optional[Tuple[int, Any]]


@dataclass
class Received:
    method: str
    path: str
    headers: Dict[str, str]
    body: bytes
    json: Any = None
    header_list: List[Tuple[str, str]] = field(default_factory=list)


class CollectorServer:
    def __init__(self, responder: Optional[Callable[[Received], Response]] = None, host: str = "127.0.0.1", port: int = 0):
        self.responder = responder
        self.received: List[Received] = []
        self._cond = threading.Condition()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    parsed = json.loads(body) if body else None
                except ValueError:
                    parsed = None
                rec = Received(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body, parsed,
                    [(k.lower(), v) for k, v in self.headers.items()],
                )
                response = server._respond(rec)
                with server._cond:
                    server.received.append(rec)
                    server._cond.notify_all()
                if response is None:  # simulate a connection closed mid-exchange
                    self.close_connection = True
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                status, payload = response
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _handle

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="raceway-collector", daemon=True
        )

    def _respond(self, rec: Received) -> Response:
        if self.responder is not None:
            return self.responder(rec)
        if rec.method == "POST" and rec.path == "/events":
            n = len(rec.json.get("events", [])) if isinstance(rec.json, dict) else 0
            return 200, {"success": True, "data": f"Ingested {n} events", "error": None}
        if rec.path == "/health":
            return 200, {"success": True, "data": "ok", "error": None}
        return 200, {"success": True, "data": None, "error": None}

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "CollectorServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "CollectorServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- what arrived ---------------------------------------------------------------------------
    @property
    def batches(self) -> List[Dict[str, Any]]:
        """Parsed bodies of every ``POST /events`` (including ones answered with an error)."""
        with self._cond:
            return [r.json for r in self.received if r.method == "POST" and r.path == "/events"]

    @property
    def events(self) -> List[Dict[str, Any]]:
        return [e for b in self.batches if isinstance(b, dict) for e in b.get("events", [])]

    def wait_for(self, predicate: Callable[["CollectorServer"], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def wait_for_events(self, n: int, timeout: float = 10.0) -> bool:
        return self.wait_for(lambda s: len(s.events) >= n, timeout)
