"""Delivery against a server that pushes back, fails for a while, or never answers, with
`shutdown()`'s defaults: real threads, the built component, real sockets on 127.0.0.1.

- `QueueingCollector` is the Raceway server's ingest path reproduced (a queue of 10,000 events,
  ``206 "Ingested N events, M errors"`` when it is full, a store keyed by event id). The real
  server drains ~1,000 events/s; here it drains 10,000/s so that 100,000 events take ~10 s
  rather than ~90 s (the client's pacing does not depend on the rate: docs/delivery.md has
  the figures at 1,000/s).
- A collector that fails its first 30 requests and more (refusals, 503, 429, dropped and
  reset connections) and then recovers.
- An endpoint that accepts connections and never answers.

Assertions are about what arrived and what the client counted and said; time only bounds how
long a test may wait.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import List

from conftest import assert_valid_batch, wait_until
from raceway import Config, ExecutionContext, RacewayClient
from raceway.testing import CloseMidResponse, CollectorServer, Drop, Hang, QueueingCollector, Reset, Status


def ids_of(ctx: ExecutionContext, first: int, last: int) -> List[str]:
    base = int(ctx.id_base, 16)
    return [str(uuid.UUID(int=(base + seq) % 2**128)) for seq in range(first, last + 1)]



def record(client: RacewayClient, threads: int, per_thread: int) -> List[ExecutionContext]:
    """``threads`` threads, each in a context of its own, record ``per_thread`` events in a
    tight loop; returns their contexts."""
    contexts: List[ExecutionContext] = [None] * threads  # type: ignore[list-item]
    start = threading.Barrier(threads)

    def work(k: int) -> None:
        with client.trace() as ctx:
            contexts[k] = ctx
            start.wait()
            for i in range(per_thread):
                client.track_state_change(f"counter-{k}", i, i + 1, "Write")

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return contexts


def test_a_burst_drains_at_the_servers_speed_and_every_event_is_stored_once(caplog):
    threads, per_thread = 4, 25_000
    total = threads * per_thread
    with QueueingCollector(capacity=10_000, drain_rate=10_000) as server:
        # The memory limit must hold the burst (recording takes well under a second, delivery
        # ~10 s): with the default 100,000 the oldest few thousand would be dropped, counted.
        client = RacewayClient(Config(endpoint=server.url, service_name="burst", instance_id="b-1",
                                      max_queue_size=2 * total, detect_races=False))
        with caplog.at_level(logging.INFO, logger="raceway"):
            contexts = record(client, threads, per_thread)
            assert client.shutdown() is True  # the default budget: 30 s while delivery progresses
        expected = {i for ctx in contexts for i in ids_of(ctx, 1, per_thread)}
        assert server.wait_for(lambda s: not s.queue, timeout=60)

    assert set(server.stored) == expected  # every event id stored exactly once
    assert server.answers[206] > 0, "the burst met the full queue"
    stats = client.stats()
    assert stats["recorded"] == stats["sent"] == total
    assert stats["failed"] == stats["dropped"] == stats["spooled"] == stats["pending"] == stats["queued"] == 0
    # A 206 does not say which events were taken; the body goes again, whole. What the server
    # took twice is exactly what the client counted as duplicated, and it stores each id once.
    twice = sum(server.arrived.values()) - len(server.arrived)
    assert twice == stats["duplicated"]
    assert twice < total // 100
    messages = [r.getMessage() for r in caplog.records]
    assert any("ingest queue is full (206)" in m for m in messages)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # back-pressure is no failure


def test_a_collector_failing_its_first_30_requests_gets_everything_with_the_default_shutdown(caplog):
    threads, per_thread = 4, 5_000
    faults = [Status(503), Drop(), Status(429), Reset(), Status(502), CloseMidResponse()] * 5
    faults[7] = Status(429, retry_after=1)
    with CollectorServer(keep_bodies=False) as server:
        server.refuse()  # refused connections first: the first attempts fail before the 30
        client = RacewayClient(Config(endpoint=server.url, service_name="faulty", instance_id="f-1",
                                      detect_races=False))
        with caplog.at_level(logging.INFO, logger="raceway"):
            contexts = record(client, threads, per_thread)
            # A request is out: refused at once (and again, the first repeat has no wait).
            assert wait_until(lambda: client._flusher.sender.busy)
            time.sleep(0.2)
            server.script(*faults)
            server.restore()
            assert client.shutdown() is True
    assert not server.faults, "all 30 faults were met"
    expected = {i for ctx in contexts for i in ids_of(ctx, 1, per_thread)}
    # CloseMidResponse accepts the events and breaks the answer: those bodies arrive twice.
    assert set(server.arrived) == expected
    stats = client.stats()
    assert stats["sent"] == threads * per_thread and stats["failed"] == stats["spooled"] == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "cannot deliver events" in warnings[0]  # said once per outage
    assert any("delivering again" in r.getMessage() for r in caplog.records)


def test_a_hung_endpoint_counts_and_logs_the_loss_and_the_spool_keeps_the_events(tmp_path, caplog):
    spool = tmp_path / "spool"
    with Hang() as url:
        client = RacewayClient(Config(endpoint=url, service_name="hung", instance_id="h-1", timeout=2.0,
                                      spool_dir=str(spool), detect_races=False))
        with client.trace() as ctx:
            for i in range(20):
                client.track_state_change("x", i, i + 1, "Write")
        time.sleep(0.2)  # the flusher's request is in flight, unanswered
        with caplog.at_level(logging.WARNING, logger="raceway"):
            assert client.shutdown(3.0) is False
        port = int(url.rsplit(":", 1)[1])
    stats = client.stats()
    assert stats["spooled"] == 20 and stats["pending"] == stats["queued"] == stats["failed"] == 0
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    # The outage is said when it starts; the events left when the budget ends, once, with why.
    assert "cannot deliver events" in said[0] and "timed out" in said[0]
    gave_up = [m for m in said if "could not be delivered" in m]
    assert len(gave_up) == 1 and "20 events" in gave_up[0] and "in the spool" in gave_up[0]
    assert "timed out" in gave_up[0] or "no answer" in gave_up[0]
    assert list(spool.glob("*/*.spool"))

    # The next client with the same endpoint and spool sends them first, once.
    with CollectorServer(port=port) as server:
        again = RacewayClient(Config(endpoint=url, service_name="hung", instance_id="h-2", spool_dir=str(spool),
                                     detect_races=False))
        assert again.shutdown(10.0) is True
    assert sorted(server.arrived) == sorted(ids_of(ctx, 1, 20))
    assert set(server.arrived.values()) == {1}
    assert again.stats()["spool_sent"] == 20
    assert not list(spool.glob("*/*.spool")) and not list(spool.glob("*/*.claimed.*"))
    for batch in server.batches:
        assert_valid_batch(batch)


def test_a_hung_endpoint_without_a_spool_counts_the_events_as_failed(caplog):
    with Hang() as url:
        client = RacewayClient(Config(endpoint=url, service_name="hung", instance_id="h-3", timeout=2.0,
                                      spool=False, detect_races=False))
        with client.trace():
            client.track_state_change("x", 0, 1, "Write")
        time.sleep(0.2)
        with caplog.at_level(logging.WARNING, logger="raceway"):
            assert client.shutdown(3.0) is False
    stats = client.stats()
    assert stats["failed"] == 1 and stats["pending"] == stats["spooled"] == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "1 events could not be delivered" in errors[0]
    assert ("timed out" in errors[0] or "no answer" in errors[0]) and "no spool" in errors[0]
