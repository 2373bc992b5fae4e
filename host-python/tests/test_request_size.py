"""How many events one request carries (docs/delivery.md, "Request size"): ``batch_size``
while the sender keeps up, up to ``Config.max_batch_size`` when more wait, and exactly
``batch_size`` at most when ``max_batch_size`` says so. Checked on what a real collector on
127.0.0.1 received."""

from __future__ import annotations

from typing import Any, Dict, List

import pytest
from conftest import assert_valid_batch

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
