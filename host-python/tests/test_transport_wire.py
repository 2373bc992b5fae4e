"""What `Transport.send` puts on the wire, read byte for byte by a raw-socket HTTP/1.1 server on
127.0.0.1: the request line (the endpoint's path prefix kept), the headers and their order,
the body, one kept-alive connection for successive requests, and `close` closing it."""

from __future__ import annotations

import socket
import threading
import weakref
from typing import Iterator, List, Tuple

import pytest

from raceway._transport import Outcome, Transport

OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 46\r\n\r\n"
    b'{"success": true, "data": "ok", "error": null}'
)


class RawServer:
    """Accepts connections and keeps every request's raw head and body, per connection."""

    def __init__(self, answer: bytes = OK):
        self.answer = answer
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.connections: List[List[Tuple[bytes, bytes]]] = []
        self.closed = threading.Event()  # a connection was closed by the client
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            requests: List[Tuple[bytes, bytes]] = []
            self.connections.append(requests)
            threading.Thread(target=self._serve, args=(conn, requests), daemon=True).start()

    def _serve(self, conn: socket.socket, requests: List[Tuple[bytes, bytes]]) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        self.closed.set()
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buf) < length:
                    buf += conn.recv(65536)
                requests.append((head, buf[:length]))
                buf = buf[length:]
                conn.sendall(self.answer)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server() -> Iterator[RawServer]:
    s = RawServer()
    try:
        yield s
    finally:
        s.close()


def test_request_line_headers_and_body(server: RawServer) -> None:
    transport = Transport(f"http://127.0.0.1:{server.port}/api/v1", "s3cret", 5.0)
    try:
        first = transport.send(b'{"events":[]}')
        second = transport.send('{"events":["\u00e9"]}')  # a str body goes as UTF-8
    finally:
        transport.close()
    assert (first.outcome, first.status) == (Outcome.SENT, 200)
    assert (second.outcome, second.status) == (Outcome.SENT, 200)
    assert len(server.connections) == 1, "successive requests share one kept-alive connection"
    requests = server.connections[0]
    assert [body for _, body in requests] == [b'{"events":[]}', '{"events":["\u00e9"]}'.encode("utf-8")]
    for head, body in requests:
        assert head.split(b"\r\n") == [
            b"POST /api/v1/events HTTP/1.1",
            f"Host: 127.0.0.1:{server.port}".encode(),
            b"Accept-Encoding: identity",
            f"Content-Length: {len(body)}".encode(),
            b"Content-Type: application/json",
            b"User-Agent: raceway-python-wasm/0.1",
            b"Authorization: Bearer s3cret",
        ]


def test_no_authorization_without_a_key(server: RawServer) -> None:
    transport = Transport(f"http://127.0.0.1:{server.port}", None, 5.0)
    try:
        assert transport.send(b"{}").outcome is Outcome.SENT
    finally:
        transport.close()
    ((head, _),) = server.connections[0]
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /events HTTP/1.1"
    assert not any(line.lower().startswith(b"authorization") for line in lines)


def test_close_closes_the_connection_and_leaves_no_finalizer(server: RawServer) -> None:
    transport = Transport(f"http://127.0.0.1:{server.port}", None, 5.0)
    assert transport.send(b"{}").outcome is Outcome.SENT
    pool = transport.pool  # held here, as a traceback cycle might hold it
    transport.close()
    assert server.closed.wait(5), "the server saw the connection closed"
    finalizers = [f for f in list(getattr(weakref.finalize, "_registry", {})) if (info := f.peek()) and info[0] is pool]
    assert finalizers == [], "the pool's finalizer is detached: nothing is left for interpreter exit"
    # A closed transport makes a new pool when used again.
    assert transport.send(b"{}").outcome is Outcome.SENT
    transport.close()
    assert len(server.connections) == 2
