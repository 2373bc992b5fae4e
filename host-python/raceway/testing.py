"""A real HTTP server on 127.0.0.1 that speaks the Raceway ingest API, for tests, and the faults
it can inject.

It records every request it receives and answers ``POST /events`` like a Raceway server
(``200`` with the ``{"success", "data", "error"}`` envelope). Give it a ``responder`` to decide
answers yourself: return a status and body, or ``None`` to drop the connection without
answering.

    with CollectorServer() as server:
        client = RacewayClient(Config(endpoint=server.url))
        ...
        client.flush()
        assert server.events

Faults, for delivery tests (each is short, so the tests stay fast):

- `script` queues faults that the next ``POST /events`` requests meet, one each, in order:
  `Status` (a 503, a 429 with ``Retry-After``, a 206, a 401...), `Stall` (hold the request past
  the client's timeout, then accept it), `CloseMidResponse` (accept, start the answer, hang up).
  `Drop` (read the request, close the connection without an answer), `Reset` (close it with
  a TCP reset before reading).
- `refuse` closes the listening socket and every open connection (the client then gets
  "connection refused"); `restore` listens again on the same port.
- `Hang` (a context manager) is an endpoint that accepts TCP connections and never answers.
- `arrived` counts the event ids the server accepted (a 2xx other than 206, even if the client
  never saw the answer); ``keep_bodies=False`` keeps only those ids, for tests that send
  hundreds of thousands of events.

`QueueingCollector` behaves like the Raceway server's ingest path (its ``/events`` handler and
engine, read from the server's public source): a bounded queue drained at a set rate, ``206``
with the same answer when the queue is full, and a store keyed by event id.

`core_limits` shrinks the core's sandbox limits so the real component traps.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import Counter, deque
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Self, Set, Tuple, Union

Response = Optional[Tuple[int, Any]]


@dataclass
class Received:
    method: str
    path: str
    headers: Dict[str, str]
    body: bytes
    json: Any = None
    header_list: List[Tuple[str, str]] = field(default_factory=list)


# -- faults ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Status:
    """Answer with ``status`` (and ``Retry-After`` when given). A 2xx other than 206 accepts
    the events; anything else does not."""

    status: int
    retry_after: Optional[int] = None
    """Seconds, as the header carries them (an integer)."""
    error: str = "injected fault"


@dataclass(frozen=True)
class Stall:
    """Hold the request ``seconds`` (or until ``release`` is set), then accept it and answer
    200. With ``seconds`` past the client's timeout, the client gives up first and sends the
    body again: the server has both copies (a duplicate, by design)."""

    seconds: float = 0.0
    release: Optional[threading.Event] = None


@dataclass(frozen=True)
class CloseMidResponse:
    """Accept the events, send the status line and part of the answer, close the connection."""


@dataclass(frozen=True)
class Drop:
    """Read the request, then close the connection without answering (nothing accepted)."""


@dataclass(frozen=True)
class Reset:
    """Close the connection with a TCP reset, the request unread (nothing accepted)."""


Fault = Union[Status, Stall, CloseMidResponse, Drop, Reset]


class CollectorServer:
    def __init__(
        self,
        responder: Optional[Callable[[Received], Response]] = None,
        host: str = "127.0.0.1",
        port: int = 0,
        keep_bodies: bool = True,
    ):
        self.responder = responder
        self.keep_bodies = keep_bodies
        self.received: List[Received] = []
        self.arrived: Counter[str] = Counter()
        """Event ids the server accepted, with how many times each came."""
        self.faults: Deque[Fault] = deque()
        self._cond = threading.Condition()
        self._conns: Set[socket.socket] = set()
        self._refusing = False
        self.resets = 0
        """Connections closed by a `Reset` fault (their requests were never read)."""
        self._host = host
        self._httpd = self._make_httpd(host, port)
        self._port = self._httpd.server_address[1]
        self._thread = self._serving_thread()

    # -- the HTTP side ----------------------------------------------------------------------------
    def _make_httpd(self, host: str, port: int) -> ThreadingHTTPServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms ACK waits

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def setup(self) -> None:
                super().setup()
                with server._cond:
                    server._conns.add(self.connection)

            def finish(self) -> None:
                try:
                    super().finish()
                except OSError:
                    pass
                with server._cond:
                    server._conns.discard(self.connection)

            def _handle(self) -> None:
                is_events = self.command == "POST" and self.path == "/events"
                if is_events and server.faults and isinstance(server.faults[0], Reset):
                    fault = server._next_fault()
                    if isinstance(fault, Reset):
                        self.close_connection = True
                        try:
                            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        except OSError:
                            pass
                        with server._cond:
                            server.resets += 1
                            server._cond.notify_all()
                        return
                    if fault is not None:
                        with server._cond:
                            server.faults.appendleft(fault)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    parsed = json.loads(body) if body else None
                except ValueError:
                    parsed = None
                headers = {k.lower(): v for k, v in self.headers.items()}
                rec = Received(
                    self.command,
                    self.path,
                    headers,
                    body if server.keep_bodies else b"",
                    parsed if server.keep_bodies else None,
                    [(k.lower(), v) for k, v in self.headers.items()],
                )
                is_events = self.command == "POST" and self.path == "/events"
                fault = server._next_fault() if is_events else None
                if fault is not None:
                    return self._fault(fault, rec, parsed)
                response = server._respond(replace(rec, json=parsed, body=body))
                with server._cond:
                    server.received.append(rec)
                    if is_events and response is not None and 200 <= response[0] < 300 and response[0] != 206:
                        server._accept(parsed)
                    server._cond.notify_all()
                if response is None:  # simulate a connection closed mid-exchange
                    self._hang_up()
                    return
                status, payload = response
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self._answer(status, data)

            def _answer(self, status: int, data: bytes, extra: Optional[Dict[str, str]] = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _hang_up(self) -> None:
                self.close_connection = True
                try:
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

            def _fault(self, fault: Fault, rec: Received, parsed: Any) -> None:
                accepted = isinstance(fault, (Stall, CloseMidResponse)) or (
                    isinstance(fault, Status) and 200 <= fault.status < 300 and fault.status != 206
                )
                if isinstance(fault, Stall):
                    if fault.release is not None:
                        fault.release.wait(fault.seconds or None)
                    else:
                        time.sleep(fault.seconds)
                with server._cond:
                    server.received.append(rec)
                    if accepted:
                        server._accept(parsed)
                    server._cond.notify_all()
                try:
                    if isinstance(fault, Drop):
                        self._hang_up()
                    elif isinstance(fault, CloseMidResponse):
                        self.wfile.write(
                            b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n{"succ'
                        )
                        self._hang_up()
                    elif isinstance(fault, Status):
                        n = _count(parsed)
                        envelope = {
                            "success": accepted,
                            "data": f"Ingested {n} events" if accepted else None,
                            "error": None if accepted else fault.error,
                        }
                        extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
                        self._answer(fault.status, json.dumps(envelope).encode(), extra)
                    else:
                        self._answer(200, json.dumps({"success": True, "data": "late", "error": None}).encode())
                except OSError:  # the client gave up waiting and closed the connection
                    self.close_connection = True

            do_GET = do_POST = do_PUT = _handle

        httpd = ThreadingHTTPServer((host, port), Handler)
        httpd.daemon_threads = True
        return httpd

    def _serving_thread(self) -> threading.Thread:
        return threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="raceway-collector", daemon=True
        )

    def _respond(self, rec: Received) -> Response:
        if self.responder is not None:
            return self.responder(rec)
        if rec.method == "POST" and rec.path == "/events":
            n = _count(rec.json)
            return 200, {"success": True, "data": f"Ingested {n} events", "error": None}
        if rec.path == "/health":
            return 200, {"success": True, "data": "ok", "error": None}
        return 200, {"success": True, "data": None, "error": None}

    def _accept(self, parsed: Any) -> None:
        """Counts the ids of an accepted body (called with the condition held)."""
        if isinstance(parsed, dict):
            for event in parsed.get("events") or ():
                if isinstance(event, dict) and "id" in event:
                    self.arrived[event["id"]] += 1

    def _next_fault(self) -> Optional[Fault]:
        with self._cond:
            return self.faults.popleft() if self.faults else None

    # -- control ----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    def start(self) -> "CollectorServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        if not self._refusing:
            self._httpd.shutdown()
            self._httpd.server_close()
        self._close_connections()

    def __enter__(self) -> "CollectorServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def script(self, *faults: Fault) -> "CollectorServer":
        """Queues faults for the next ``POST /events`` requests, one each, in order."""
        with self._cond:
            self.faults.extend(faults)
        return self

    def refuse(self) -> None:
        """Stops listening and closes every open connection: new connections are refused."""
        if self._refusing:
            return
        self._refusing = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._close_connections()

    def restore(self) -> None:
        """Listens again, on the same port."""
        if not self._refusing:
            return
        self._httpd = self._make_httpd(self._host, self._port)
        self._thread = self._serving_thread()
        self._thread.start()
        self._refusing = False

    def _close_connections(self) -> None:
        with self._cond:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- what arrived -----------------------------------------------------------------------------
    @property
    def batches(self) -> List[Dict[str, Any]]:
        """Parsed bodies of every ``POST /events`` (including ones answered with an error)."""
        with self._cond:
            return [r.json for r in self.received if r.method == "POST" and r.path == "/events"]

    @property
    def events(self) -> List[Dict[str, Any]]:
        return [e for b in self.batches if isinstance(b, dict) for e in b.get("events", [])]

    def wait_for(self, predicate: Callable[[Self], bool], timeout: float = 10.0) -> bool:
        """Waits until ``predicate(self)`` holds (checked under the server's lock, after each
        request it took), at most ``timeout`` seconds; whether it does."""
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

    def wait_for_ids(self, ids: "Set[str]", timeout: float = 10.0) -> bool:
        """Waits until every id in ``ids`` was accepted at least once."""
        return self.wait_for(lambda s: all(i in s.arrived for i in ids), timeout)


def _count(parsed: Any) -> int:
    return len(parsed.get("events", [])) if isinstance(parsed, dict) else 0


class Hang:
    """An endpoint on 127.0.0.1 that accepts TCP connections and never answers (it reads
    nothing and closes nothing until the block ends): the client's requests time out.

        with Hang() as url:
            client = RacewayClient(Config(endpoint=url, timeout=2.0))
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(64)
        self._sock.settimeout(0.05)
        self.host, self.port = self._sock.getsockname()[:2]
        self.connections: List[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="raceway-hang", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            self.connections.append(conn)

    def __enter__(self) -> str:
        self._thread.start()
        return self.url

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()
        for conn in self.connections:
            try:
                conn.close()
            except OSError:
                pass


# -- a collector that behaves like the Raceway server -------------------------------------------
class QueueingCollector(CollectorServer):
    """The Raceway server's ingest path, reproduced: ``POST /events`` offers the body's events
    to a bounded queue one by one, in order (each offer atomic, so the drainer can take events
    between two offers of one body, as on the server); it answers ``200`` with
    ``"Ingested N events"`` when every event entered, else ``206`` with
    ``"Ingested N events, M errors"`` (``success: true``): the server's exact answers. A drainer
    thread takes ``step`` events every ``step / drain_rate`` seconds into `stored`, a dict keyed
    by event id (the server's memory store: an event sent twice is stored once).

    The server's defaults (``core/src/engine.rs``): a queue of 10,000 events, drained 100 at a
    time every 100 ms, so ~1,000 events per second. Tests use a higher ``drain_rate`` to stay
    short; the behaviour at the edges of the queue is the same.

    ``arrived`` counts every time an id entered the queue (a duplicate counts twice);
    ``answers`` counts the statuses sent; ``drained`` records ``(monotonic time, total stored)``
    after each drain step, to measure the drain rate."""

    def __init__(
        self,
        capacity: int = 10_000,
        drain_rate: float = 1_000.0,
        step: int = 100,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        super().__init__(responder=self._ingest, host=host, port=port, keep_bodies=False)
        self.capacity = capacity
        self.drain_rate = drain_rate
        self.step = step
        self.queue: Deque[Dict[str, Any]] = deque()
        self.stored: Dict[str, Dict[str, Any]] = {}
        self.answers: Counter[int] = Counter()
        self.drained: List[Tuple[float, int]] = []
        self._queue_lock = threading.Lock()
        self._stop_drain = threading.Event()
        self._drainer = threading.Thread(target=self._drain, name="raceway-collector-drain", daemon=True)

    def start(self) -> "QueueingCollector":
        super().start()
        self._drainer.start()
        return self

    def stop(self) -> None:
        self._stop_drain.set()
        super().stop()

    def _ingest(self, rec: Received) -> Response:
        if rec.method == "GET" and rec.path == "/health":
            return 200, {"success": True, "data": "ok", "error": None}
        if not (rec.method == "POST" and rec.path == "/events"):
            return 404, {"success": False, "data": None, "error": "not found"}
        batch = rec.json
        if not isinstance(batch, dict) or not isinstance(batch.get("events"), list):
            return 422, {"success": False, "data": None, "error": "Failed to deserialize the JSON body"}
        ok = errors = 0
        for event in batch["events"]:
            with self._queue_lock:  # one try_send
                full = len(self.queue) >= self.capacity
                if not full:
                    self.queue.append(event)
            if full:
                errors += 1
                continue
            ok += 1
            with self._cond:
                if isinstance(event, dict) and "id" in event:
                    self.arrived[event["id"]] += 1
        with self._cond:
            status = 200 if errors == 0 else 206
            self.answers[status] += 1
            self._cond.notify_all()
        text = f"Ingested {ok} events" if errors == 0 else f"Ingested {ok} events, {errors} errors"
        return status, {"success": True, "data": text, "error": None}

    def _accept(self, parsed: Any) -> None:
        """Counting happens in `_ingest`, event by event (and for 206 answers too)."""

    def _drain(self) -> None:
        period = self.step / self.drain_rate
        next_at = time.monotonic()
        while not self._stop_drain.is_set():
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop_drain.wait(delay)
            else:
                next_at = time.monotonic()  # fell behind (a loaded machine): no burst to catch up
            with self._queue_lock:
                taken = [self.queue.popleft() for _ in range(min(self.step, len(self.queue)))]
            if taken:
                with self._cond:
                    for event in taken:
                        if isinstance(event, dict) and "id" in event:
                            self.stored[event["id"]] = event
                    self.drained.append((time.monotonic(), len(self.stored)))
                    self._cond.notify_all()

    def wait_for_stored(self, ids: "Set[str]", timeout: float = 10.0) -> bool:
        """Waits until every id in ``ids`` is in the store."""
        return self.wait_for(lambda s: all(i in s.stored for i in ids), timeout)


# -- the core's sandbox ------------------------------------------------------------------------
@contextmanager
def core_limits(
    memory: Optional[int] = None, fuel_base: Optional[int] = None, fuel_per_char: Optional[int] = None
) -> Iterator[None]:
    """Shrinks the core's sandbox limits while the block runs, so the real component traps
    (``fuel_base=1000, fuel_per_char=0``: the next call runs out of fuel). Fuel applies to calls
    made in the block; ``memory`` to instances created in it (clients made in the block)."""
    from . import _core

    saved = replace(_core.LIMITS)
    try:
        if memory is not None:
            _core.LIMITS.memory = memory
        if fuel_base is not None:
            _core.LIMITS.fuel_base = fuel_base
        if fuel_per_char is not None:
            _core.LIMITS.fuel_per_char = fuel_per_char
        yield
    finally:
        _core.LIMITS.memory = saved.memory
        _core.LIMITS.fuel_base = saved.fuel_base
        _core.LIMITS.fuel_per_char = saved.fuel_per_char
