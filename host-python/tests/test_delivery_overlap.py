"""Requests go out while the flusher encodes (raceway/_flusher.py, `Flusher._overlap`): a
request leaves as soon as a request's worth of bodies is encoded, the rest of its chunk is
encoded while it is on the wire, and the last requests of a chunk are in flight while the next
chunk is taken and encoded, without ever holding more than one chunk of events outside the
record log. Checked against a collector on 127.0.0.1 (a raw socket server, so that it sees a
request's first bytes at once) that holds chosen requests until the test lets them go."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest
from conftest import assert_valid_batch
from conftest import wait_until as _wait_until

from raceway import Config, RacewayClient

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"


class GateCollector:
    """A keep-alive HTTP/1.1 collector: ``on_start()`` is called when a request's first bytes
    arrive, ``on_body(body)`` once it is read (it may block: the request is held), then the
    request is answered 200 with the Raceway envelope. ``batches`` holds the parsed bodies."""

    def __init__(self, on_start: Callable[[], None], on_body: Callable[[Dict[str, Any]], None]) -> None:
        self.on_start, self.on_body = on_start, on_body
        self.batches: List[Dict[str, Any]] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                if not buf:
                    first = conn.recv(1 << 16)
                    if not first:
                        return
                    self.on_start()
                    buf = first
                while b"\r\n\r\n" not in buf:
                    more = conn.recv(1 << 16)
                    if not more:
                        return
                    buf += more
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                while len(buf) < length:
                    more = conn.recv(1 << 20)
                    if not more:
                        return
                    buf += more
                body, buf = buf[:length], buf[length:]
                batch = json.loads(body)
                self.on_body(batch)
                self.batches.append(batch)
                answer = json.dumps(
                    {"success": True, "data": f"Ingested {len(batch['events'])} events", "error": None}
                ).encode()
                conn.sendall(OK % (len(answer), answer))

    def close(self) -> None:
        self._sock.close()



def wait_until(predicate: Callable[[], bool]) -> bool:
    """`conftest.wait_until`, short of the client's 10 s request timeout: a held request is
    never sent twice."""
    return _wait_until(predicate, timeout=8.0)


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def _client(url: str) -> RacewayClient:
    return RacewayClient(
        Config(
            endpoint=url,
            service_name="overlap",
            batch_size=50,
            max_batch_size=500,
            flush_interval=3600.0,
            detect_races=False,
            report_races_at_shutdown=False,
        )
    )


def _event_id(ctx: Any, seq: int) -> str:
    return str(uuid.UUID(int=(int(ctx.id_base, 16) + seq) % 2**128))


def _check_all_once(batches: List[Dict[str, Any]], n: int) -> None:
    events = [e for batch in batches for e in batch["events"]]
    assert len(events) == len({e["id"] for e in events}) == n
    for batch in batches:
        assert_valid_batch(batch)


def test_the_first_request_leaves_before_its_chunk_is_all_encoded(release: threading.Event) -> None:
    encoded_when_it_started: List[int] = []
    client: Optional[RacewayClient] = None
    gated = threading.Event()

    def on_start() -> None:
        if gated.is_set() and not encoded_when_it_started and client is not None:
            encoded_when_it_started.append(client._flusher.backlog.events)

    def on_body(batch: Dict[str, Any]) -> None:
        if len(encoded_when_it_started) == 1:
            encoded_when_it_started.append(-1)  # the first request: held
            release.wait(30)

    server = GateCollector(on_start, on_body)
    client = _client(server.url)
    chunk = client._flusher.chunk
    try:
        with client.trace():  # a first request opens the connection (kept alive)
            client.track_state_change("warm-up", 0, 1, "Write")
        assert client.flush(timeout=30)
        warm_up = len(server.batches)
        gated.set()
        with client._flusher._cycle_lock:  # the flusher's next cycle finds the whole chunk
            with client.trace():
                for i in range(chunk):
                    client.track_state_change("account.balance", i, i + 1, "Write")
        assert wait_until(lambda: len(encoded_when_it_started) == 2)
        # While the first request is held, the rest of the chunk is encoded.
        assert wait_until(lambda: client._flusher.backlog.events == chunk)
        release.set()
        assert client.flush(timeout=30)
    finally:
        release.set()
        client.shutdown(timeout=10)
        server.close()
    # The first request left once its own 500 events were encoded (600 here, typically),
    # before the chunk's 4,096 were: it no longer waited for the whole chunk.
    assert 500 <= encoded_when_it_started[0] < chunk
    sizes = [len(b["events"]) for b in server.batches[warm_up:]]
    assert sizes[:-1] == [500] * (len(sizes) - 1)
    _check_all_once(server.batches[warm_up:], chunk)
    stats = client.stats()
    assert stats["sent"] == stats["recorded"] == chunk + 1 and stats["pending"] == stats["queued"] == 0


def test_the_next_chunk_is_taken_while_a_chunks_last_request_is_in_flight(release: threading.Event) -> None:
    """The chunk's last full request is held: the flusher finishes the chunk and takes and
    encodes the next one meanwhile, and it never holds more than one chunk outside the log."""
    held = threading.Event()
    target: List[str] = []

    def on_body(batch: Dict[str, Any]) -> None:
        if target and target[0] in {e["id"] for e in batch["events"]}:
            held.set()
            release.wait(30)

    server = GateCollector(lambda: None, on_body)
    client = _client(server.url)
    chunk = client._flusher.chunk
    total = 3 * chunk
    outside: List[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            outside.append(client._flusher.held)
            stop.wait(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        with client._flusher._cycle_lock:
            with client.trace() as ctx:
                # Requests carry 500 events: the chunk's last full one ends at this event.
                target.append(_event_id(ctx, chunk - chunk % 500))
                for i in range(total):
                    client.track_state_change("account.balance", i, i + 1, "Write")
            sampler.start()
        assert wait_until(held.is_set)
        # While it is held, the log gives up the next chunk's records.
        assert wait_until(lambda: len(client._queue) < total - chunk)
        release.set()
        assert client.flush(timeout=30)
    finally:
        release.set()
        stop.set()
        client.shutdown(timeout=10)
        server.close()
    sampler.join()
    assert max(outside) <= chunk
    _check_all_once(server.batches, total)
    assert client.stats()["sent"] == total
