"""Delivery through faults, on real parts: application threads record, the flusher hands batches
to the built component, and a real HTTP server on 127.0.0.1 refuses connections, answers 503,
429 and 206, stalls past the client's timeout and hangs up mid-response, then recovers.

What is asserted is what arrived at the server (event ids, derived from each context's id base
and sequence number, so a re-sent body carries the same ids) and what the client reports.
Timing only ever bounds how long a test waits, never what it asserts.
"""

from __future__ import annotations

import logging
import threading
import tracemalloc
import uuid
from typing import Callable, List

from conftest import assert_valid_batch, wait_until
from raceway import ExecutionContext
from raceway.testing import CloseMidResponse, CollectorServer, Stall, Status

# Short faults against a short client timeout and a short backoff keep these tests fast.
FAST_RETRY = dict(timeout=0.5, retries=2, retry_backoff=0.02, retry_backoff_max=0.25, flush_interval=0.05)


def ids_of(ctx: ExecutionContext, first: int, last: int) -> List[str]:
    """The ids the core derives for ``ctx``'s events ``first..last`` (docs/record-format.md)."""
    base = int(ctx.id_base, 16)
    return [str(uuid.UUID(int=(base + seq) % 2**128)) for seq in range(first, last + 1)]


class HeldSampler:
    """Samples, on its own thread, how many events the client holds (record log + events out
    of it and not delivered): the quantity ``max_queue_size`` bounds."""

    def __init__(self, held: Callable[[], int]):
        self.held = held
        self.samples: List[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.held())
            self._stop.wait(0.002)

    def __enter__(self) -> "HeldSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()



def test_every_event_id_arrives_through_an_outage_and_memory_stays_within_the_limit(make_client, capfd):
    threads, per_thread = 4, 50_000
    # Recording 200,000 events takes well under a second and nothing can be delivered while
    # the server misbehaves, so the limit must hold them all for none to be dropped: the test
    # sizes it (the default, 100,000, would drop the oldest ~100,000 here, counted).
    limit = threads * per_thread + 10_000
    with CollectorServer(keep_bodies=False) as server:
        server.refuse()
        client = make_client(endpoint=server.url, batch_size=500, max_queue_size=limit, **FAST_RETRY)
        contexts: List[ExecutionContext] = [None] * threads  # type: ignore[list-item]
        start = threading.Barrier(threads + 1)

        def work(k: int) -> None:
            with client.trace() as ctx:
                contexts[k] = ctx
                start.wait()
                for i in range(per_thread):
                    client.track_state_change("counter", i, i + 1, "Write")

        workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
        with HeldSampler(lambda: len(client._queue) + client._flusher.held) as sampler:
            for w in workers:
                w.start()
            start.wait()
            # Connections are refused until the flusher has failed to deliver at least once.
            assert wait_until(lambda: client.stats()["retried"] > 0)
            server.script(
                Status(503), Status(503), Status(503),        # more than urllib3's 2 retries
                Status(429, retry_after=5), Status(429), Status(429),  # waits capped at 0.25 s
                Stall(1.0),                                   # past the 0.5 s timeout
                CloseMidResponse(),
                Status(206),                                  # the server's queue is full
                Status(502), Status(504),
            )
            server.restore()
            for w in workers:
                w.join()
            assert client.flush(timeout=120)

    assert not server.faults, "every injected fault was met"
    expected = {i for ctx in contexts for i in ids_of(ctx, 1, per_thread)}
    arrived = set(server.arrived)
    assert not expected - arrived, f"{len(expected - arrived)} event ids never arrived"
    assert arrived == expected  # duplicates (re-sent bodies) allowed, nothing else
    stats = client.stats()
    assert stats["recorded"] == stats["sent"] == threads * per_thread
    assert stats["dropped"] == stats["failed"] == stats["queued"] == stats["pending"] == 0
    assert stats["retried"] > 0
    assert max(sampler.samples) <= limit
    assert capfd.readouterr().out == ""  # nothing on stdout (warnings go through logging)


def test_a_long_outage_keeps_memory_bounded_drops_the_oldest_and_counts_them(make_client):
    limit, recorded = 8_000, 80_000
    with CollectorServer() as server:
        server.refuse()
        client = make_client(endpoint=server.url, max_queue_size=limit, **FAST_RETRY)
        with HeldSampler(lambda: len(client._queue) + client._flusher.held) as sampler:
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                with client.trace() as ctx:
                    for i in range(recorded):
                        client.track_state_change("counter", i, i + 1, "Write")
                growth = tracemalloc.get_traced_memory()[0] - before
            finally:
                tracemalloc.stop()
            during = client.stats()
            # One more failed attempt after the log started dropping: the held chunk (the
            # oldest events of all) is dropped then, and a newer one taken.
            attempts = during["retried"]
            assert wait_until(lambda: client.stats()["retried"] > attempts)
            server.restore()
            assert client.flush(timeout=60)

    assert max(sampler.samples) <= limit
    # ~340 bytes per held event measured; unbounded, 80,000 events would be ~27 MB.
    assert growth < limit * 1000
    assert during["dropped"] >= recorded - limit
    stats = client.stats()
    # Drops are counted on the hot path without a lock: a record the flusher takes at the very
    # moment an append finds the log full is counted as dropped though it was not (or the
    # reverse when threads race), so the count may be off by a few; everything else is exact.
    assert abs(stats["recorded"] - recorded) <= 50
    assert stats["sent"] + stats["dropped"] == stats["recorded"] and stats["failed"] == 0
    arrived = set(server.arrived)
    assert len(arrived) == stats["sent"]
    ids = ids_of(ctx, 1, recorded)
    assert ids[-1] in arrived and ids[0] not in arrived  # the oldest were dropped, the newest kept
    assert set(ids[-(limit // 2):]) <= arrived
    for batch in server.batches:
        assert_valid_batch(batch)


def test_a_refused_batch_is_dropped_with_an_error_naming_the_reason(make_client, caplog):
    with CollectorServer() as server:
        server.script(Status(422, error="invalid kind FunctionReturn"), Status(401, error="bad api key"))
        client = make_client(endpoint=server.url, batch_size=10, max_batch_size=10, **{**FAST_RETRY, "flush_interval": 60.0})
        with caplog.at_level(logging.ERROR, logger="raceway"):
            with client.trace() as ctx:
                for i in range(30):
                    client.track_state_change("x", i, i + 1, "Write")
            client.flush(timeout=10)
    errors = [r.getMessage() for r in caplog.records if r.name == "raceway" and r.levelno >= logging.ERROR]
    assert any("422" in m and "invalid kind FunctionReturn" in m for m in errors)
    assert any("401" in m and "bad api key" in m for m in errors)
    stats = client.stats()
    assert (stats["sent"], stats["failed"], stats["retried"]) == (10, 20, 0)  # 4xx: no retry
    assert set(server.arrived) == set(ids_of(ctx, 21, 30))


def test_206_is_back_pressure_the_batch_is_sent_again_later(make_client):
    with CollectorServer() as server:
        server.script(Status(206), Status(206))
        client = make_client(endpoint=server.url, **FAST_RETRY)
        with client.trace() as ctx:
            for i in range(20):
                client.track_state_change("x", i, i + 1, "Write")
        assert client.flush(timeout=10)
    posts = [r for r in server.received if r.path == "/events"]
    assert len(posts) == 3  # two answered 206, the third accepted
    assert set(server.arrived) == set(ids_of(ctx, 1, 20))
    stats = client.stats()
    assert stats["sent"] == 20 and stats["retried"] == 40 and stats["failed"] == 0


def test_flush_and_shutdown_return_within_their_timeouts_while_the_server_stalls(make_client):
    release = threading.Event()
    with CollectorServer() as server:
        server.script(Stall(release=release))
        client = make_client(endpoint=server.url, timeout=30.0, retries=0, flush_interval=60.0)
        with client.trace() as ctx:
            client.track_state_change("x", 0, 1, "Write")
        assert client.flush(timeout=0.2) is False
        assert client.shutdown(timeout=0.2) is False
        # Both came back while the request was still held: they did not wait for delivery.
        assert not release.is_set()
        # The budget ended with the request unanswered: the event went to the spool.
        assert client.stats()["spooled"] == 1 and client.stats()["pending"] == 0
        release.set()
        # The abandoned request still ends (the server got the event: it is both there and in
        # the spool, at least once); a later shutdown cannot undo the first.
        assert server.wait_for(lambda s: ids_of(ctx, 1, 1)[0] in s.arrived, timeout=30)
        assert client.shutdown(timeout=30) is False


def test_shutdown_during_an_outage_gives_up_at_its_deadline_and_counts_the_rest(make_client, caplog):
    with CollectorServer() as server:
        server.refuse()
        client = make_client(endpoint=server.url, spool=False, **FAST_RETRY)
        with client.trace():
            for i in range(100):
                client.track_state_change("x", i, i + 1, "Write")
        with caplog.at_level(logging.ERROR, logger="raceway"):
            assert client.shutdown(timeout=1.0) is False
            assert wait_until(lambda: not client._flusher.alive, timeout=30)
    stats = client.stats()
    # Without a spool (Config.spool=False) what is left is lost, counted and said; with one it
    # is spooled (tests/e2e/test_spool.py).
    assert stats["failed"] == 100 and stats["sent"] == 0 and stats["pending"] == stats["queued"] == 0
    assert stats["spooled"] == 0
    assert any("100 events could not be delivered" in r.getMessage() for r in caplog.records)
