"""How many events one request carries (docs/delivery.md, "Request size"): the core renders
bodies of ``batch_size`` events, and while the server keeps up the sender joins the bodies that
wait into requests of up to ``Config.max_batch_size`` events; after a 4xx or a 206 a request's
bodies go again one by one. Checked on what a real collector on 127.0.0.1 received."""

from __future__ import annotations

from typing import Any, Dict, List

import pytest
from conftest import assert_valid_batch

from raceway._backlog import join_bodies
from raceway.testing import CollectorServer, Received, Response, Status

BURST = 2_000


def _sizes(collector: Any) -> List[int]:
    return [len(batch["events"]) for batch in collector.batches]


def _record(client: Any, n: int) -> None:
    with client.trace():
        for i in range(n):
            client.track_state_change("account.balance", i, i + 1, "Write")


def _check_nothing_lost(collector: Any, n: int) -> None:
    events: List[Dict[str, Any]] = collector.events
    assert len(events) == n
    assert len({e["id"] for e in events}) == n
    for batch in collector.batches:
        assert_valid_batch(batch)
    # One context: each event's parent is the one before it, across request boundaries.
    by_id = {e["id"]: e for e in events}
    roots = [e for e in events if e["parent_id"] is None]
    assert len(roots) == 1
    assert all(e["parent_id"] in by_id for e in events if e["parent_id"] is not None)


@pytest.mark.parametrize("detect", [True, False])
def test_a_burst_goes_in_requests_of_up_to_max_batch_size(collector, make_client, detect):
    client = make_client(endpoint=collector.url, batch_size=50, max_batch_size=400, detect_races=detect)
    _record(client, BURST)
    assert client.flush(timeout=30)
    sizes = _sizes(collector)
    assert sum(sizes) == BURST
    assert max(sizes) == 400, sizes  # at least 1,600 waited at some point: full requests
    assert len(sizes) < BURST // 50
    _check_nothing_lost(collector, BURST)


def test_max_batch_size_equal_to_batch_size_keeps_every_request_at_batch_size(collector, make_client):
    client = make_client(endpoint=collector.url, batch_size=50, max_batch_size=50)
    _record(client, BURST)
    assert client.flush(timeout=30)
    sizes = _sizes(collector)
    assert max(sizes) == 50 and sum(sizes) == BURST, sizes
    _check_nothing_lost(collector, BURST)


def test_a_max_batch_size_below_batch_size_is_taken_as_batch_size(collector, make_client):
    client = make_client(endpoint=collector.url, batch_size=80, max_batch_size=10)
    _record(client, BURST)
    assert client.flush(timeout=30)
    sizes = _sizes(collector)
    assert max(sizes) == 80 and sum(sizes) == BURST, sizes


def test_a_few_waiting_events_go_in_one_request_of_their_own(collector, make_client):
    client = make_client(endpoint=collector.url, batch_size=50, flush_interval=3600.0)
    for n in (7, 30, 49):
        before = len(collector.batches)
        _record(client, n)
        assert client.flush(timeout=10)
        assert _sizes(collector)[before:] == [n]


def test_the_default_is_500():
    from raceway import Config

    assert Config().max_batch_size == 500 and Config().batch_size == 50


def test_a_refused_request_of_several_bodies_goes_again_body_by_body(make_client):
    """A 4xx refuses a whole request for one bad event; the bodies it carried go again alone,
    so only a body that is itself refused is lost."""
    with CollectorServer() as server:
        server.script(Status(422, error="one bad event"))
        client = make_client(endpoint=server.url, batch_size=10, max_batch_size=100, flush_interval=3600.0)
        _record(client, 30)
        assert client.flush(timeout=10)
        assert _sizes(server) == [30, 10, 10, 10]
        stats = client.stats()
        assert (stats["sent"], stats["failed"], stats["retried"]) == (30, 0, 30)
        # What the server accepted: every event once (the refused request stored nothing).
        assert len(server.arrived) == 30 and set(server.arrived.values()) == {1}


def test_a_request_the_server_took_part_of_goes_again_body_by_body(make_client):
    """After a 206 the bodies of that request are sent one by one: the server dedupes by id,
    and smaller requests send fewer events twice while its queue is full."""
    with CollectorServer() as server:
        server.script(Status(206))
        client = make_client(endpoint=server.url, batch_size=10, max_batch_size=100, flush_interval=3600.0)
        _record(client, 30)
        assert client.flush(timeout=10)
        assert _sizes(server) == [30, 10, 10, 10]
        assert client.stats()["sent"] == 30


def test_bodies_join_into_one_body_with_their_events_in_order():
    a, b = b'{"events":[{"id":1},{"id":2}]}', b'{"events":[{"id":3}]}'
    assert join_bodies([a, b]) == b'{"events":[{"id":1},{"id":2},{"id":3}]}'
    assert join_bodies([a]) == a
    with pytest.raises(ValueError):
        join_bodies([a, b'{"other":[]}'])


def test_a_server_refusing_large_requests_halves_them_down_to_batch_size(make_client, caplog):
    """A proxy with a body limit (413 past 50 events): each refused joined request halves the
    largest request, so after a few refusals every request fits; nothing is lost, and one
    WARNING names the setting."""
    import logging

    def limit(rec: Received) -> Response:
        if rec.method == "POST" and rec.path == "/events":
            n = len(rec.json["events"])
            if n > 50:
                return 413, {"success": False, "data": None, "error": "request entity too large"}
            return 200, {"success": True, "data": f"Ingested {n} events", "error": None}
        return 200, {"success": True, "data": "ok", "error": None}

    with caplog.at_level(logging.WARNING, logger="raceway"):
        with CollectorServer(responder=limit) as server:
            client = make_client(endpoint=server.url, batch_size=50, max_batch_size=500, flush_interval=3600.0)
            for _ in range(6):
                _record(client, 500)
                assert client.flush(timeout=20)
            sizes = _sizes(server)
            refused = [n for n in sizes if n > 50]
            # Halved at each 413 (requests are whole bodies of 50: 500, 250, then 2 bodies under 125), then
            # none too large.
            assert refused == [500, 250, 100], sizes
            stats = client.stats()
            assert (stats["sent"], stats["failed"], stats["dropped"]) == (3000, 0, 0)
            assert len(server.arrived) == 3000 and set(server.arrived.values()) == {1}
    assert any("413" in r.getMessage() and "max_batch_size" in r.getMessage() for r in caplog.records)


def test_an_empty_body_is_never_joined():
    from raceway._flusher import _joinable

    assert not _joinable([b'{"events":[]}', 0, 0, None])
    assert _joinable([b'{"events":[{"id":1}]}', 1, 0, None])
