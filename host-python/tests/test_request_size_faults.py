"""Requests of several bodies (docs/delivery.md, "Request size"), against real
collectors on 127.0.0.1: what a joined request does at a shutdown, with the spool, behind a
server that refuses large requests, under a full server queue, and to the order of each
context's events."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any, Dict, List

from raceway import ContextAwareThread
from raceway.testing import CollectorServer, QueueingCollector, Stall, Status


def _record(client: Any, n: int) -> None:
    with client.trace():
        for i in range(n):
            client.track_state_change("account.balance", i, i + 1, "Write")


def _sizes(server: CollectorServer) -> List[int]:
    return [len(r.json["events"]) for r in server.received if r.path == "/events" and r.json is not None]


def test_a_joined_request_abandoned_at_shutdown_is_spooled_and_the_spool_goes_body_by_body(make_client):
    """The first request (all 300 events, joined) hangs past the shutdown budget: its bodies are
    spooled, counted as spooled and nothing else; the next client sends the spool one body at
    a time (spooled bodies are never joined), and every event reaches the server."""
    release = threading.Event()
    with CollectorServer() as server:
        server.script(Stall(release=release))
        first = make_client(endpoint=server.url, batch_size=50, max_batch_size=500, flush_interval=3600.0)
        _record(first, 300)
        first.flush(timeout=0.05)
        while server.faults:  # the stall is taken: the joined request is in flight
            time.sleep(0.01)
        assert first.shutdown(timeout=0.5) is False
        stats = first.stats()
        assert (stats["spooled"], stats["sent"], stats["failed"], stats["pending"]) == (300, 0, 0, 0)
        release.set()  # the abandoned request is now taken (a duplicate of the spool, by design)
        assert server.wait_for(lambda s: len(s.arrived) == 300)

        second = make_client(endpoint=server.url, batch_size=50, max_batch_size=500, flush_interval=0.05)
        assert second.flush(timeout=10)
        assert server.wait_for(lambda s: sum(s.arrived.values()) == 600)
        assert _sizes(server) == [300] + [50] * 6
        stats = second.stats()
        assert (stats["spool_sent"], stats["spool_failed"], stats["sent"]) == (300, 0, 0)
        assert set(server.arrived.values()) == {2}


def test_under_a_full_server_queue_every_duplicate_is_counted(make_client):
    """Joined requests against a small server queue: 206s, bodies sent again. ``duplicated``
    is exactly what the server took twice, every event is stored, and all are ``sent``."""
    n = 10_000
    with QueueingCollector(capacity=2_000, drain_rate=20_000, step=50) as server:
        client = make_client(endpoint=server.url, batch_size=50, max_batch_size=500, max_queue_size=200_000)
        for _ in range(n // 1000):
            _record(client, 1000)
        assert client.flush(timeout=60)
        assert server.wait_for(lambda s: len(s.stored) == n, timeout=30)
        stats = client.stats()
        twice = sum(count - 1 for count in server.arrived.values())
        assert stats["sent"] == n and stats["failed"] == 0 and stats["dropped"] == 0
        assert stats["duplicated"] == twice
        assert stats["recorded"] == stats["sent"]


def test_each_contexts_events_first_arrive_in_their_order_through_refusals_and_206s(make_client):
    """Four threads record; the server refuses one request (422) and takes part of two (206).
    For every context, the events first reach the server in the order they were recorded
    (what a joined request's bodies do after a refusal or a 206 keeps the backlog's order)."""
    with CollectorServer() as server:
        server.script(Status(422, error="one bad event"), Status(206), Status(200), Status(206))
        client = make_client(endpoint=server.url, batch_size=20, max_batch_size=200, flush_interval=3600.0)

        def work(k: int) -> None:
            for i in range(150):
                client.track_state_change(f"v{k}", i, i + 1, "Write")

        with client.trace():
            threads = [ContextAwareThread(target=work, args=(k,), client=client) for k in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert client.flush(timeout=20)
        first_seen: Dict[str, List[Dict[str, Any]]] = defaultdict(list)
        seen = set()
        for rec in server.received:
            if rec.path != "/events" or rec.json is None:
                continue
            for event in rec.json["events"]:
                if event["id"] not in seen:
                    seen.add(event["id"])
                    first_seen[event["metadata"]["thread_id"]].append(event)
        assert len(seen) == 4 * 150 + 8  # 4 spawns and 4 joins too
        checked = 0
        for events in first_seen.values():
            # Within a context each event's parent is the one before it: it arrived first.
            own = {e["id"] for e in events}
            arrived: set = set()
            for event in events:
                if event["parent_id"] in own:
                    assert event["parent_id"] in arrived
                    checked += 1
                arrived.add(event["id"])
        assert checked >= 4 * 149
        assert max(_sizes(server)) > 20  # requests were joined
        assert client.stats()["sent"] == len(seen)
