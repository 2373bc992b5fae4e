"""The whole path on real parts: application threads record, the flusher hands batches to the
built component, and a real HTTP server on 127.0.0.1 receives what a Raceway server would."""

from __future__ import annotations

import base64
import json
import threading
from collections import defaultdict

from conftest import assert_valid_batch
from raceway import get_context, tracked_lock
from raceway.testing import CollectorServer


def own_counter(event: dict) -> int:
    """The event's counter in its own context's clock component."""
    suffix = event["metadata"]["thread_id"].rsplit("-", 1)[1]
    return dict(map(tuple, event["causality_vector"]))[f"test-svc#test-1/{suffix}"]


def test_every_batch_validates_and_contexts_chain_in_order(collector, make_client):
    client = make_client(endpoint=collector.url, batch_size=7, max_batch_size=7)
    lock = threading.Lock()
    per_thread = 40

    def work(n: int) -> None:
        with client.trace():
            for i in range(per_thread // 4):
                client.track_function_call("step", {"worker": n, "i": i, "odd": {1, 2}, "raw": b"\xff"})
                with tracked_lock(client, lock, "shared_lock"):
                    client.track_state_change("counter", i, i + 1, "write")
                client.track_state_change(f"v{n}", None, float("nan"), "Read")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert client.flush(timeout=10)

    assert len(collector.batches) >= 3 * per_thread * 5 // 4 // 7
    for batch in collector.batches:
        assert_valid_batch(batch)
        assert len(batch["events"]) <= 7
    events = collector.events
    assert len(events) == 3 * (per_thread // 4) * 5  # call, acquire, write, release, read
    assert len({e["id"] for e in events}) == len(events)

    by_thread = defaultdict(list)
    for e in events:
        by_thread[e["metadata"]["thread_id"]].append(e)
    assert len(by_thread) == 3
    for evs in by_thread.values():
        assert len({e["trace_id"] for e in evs}) == 1
        assert evs[0]["parent_id"] is None
        for prev, cur in zip(evs, evs[1:]):
            assert cur["parent_id"] == prev["id"]
            assert own_counter(cur) > own_counter(prev)
            assert cur["timestamp"] >= prev["timestamp"]
    writes = [e for e in events if "StateChange" in e["kind"] and e["kind"]["StateChange"]["variable"] == "counter"]
    assert all(e["lock_set"] == ["shared_lock"] for e in writes)
    assert all(e["kind"]["StateChange"]["access_type"] == "Write" for e in writes)
    reads = [e for e in events if "StateChange" in e["kind"] and e["kind"]["StateChange"]["access_type"] == "Read"]
    assert all(e["lock_set"] == [] and e["kind"]["StateChange"]["new_value"] == "nan" for e in reads)


def test_api_key_reaches_the_raceway_endpoint_and_no_other_host(collector, make_client):
    client = make_client(endpoint=collector.url, api_key="s3cret")
    with CollectorServer() as downstream:
        with client.trace():
            client.track_function_call("checkout")
            resp = client.request("POST", f"{downstream.url}/reserve", json={"orderId": 1})
            assert resp.status_code == 200
        assert client.flush(timeout=10)
        sent = downstream.received[0]
        assert "authorization" not in sent.headers
        assert "x-raceway-key" not in sent.headers
        assert "s3cret" not in json.dumps(sent.headers)
    posts = [r for r in collector.received if r.path == "/events"]
    assert posts and all(r.headers["authorization"] == "Bearer s3cret" for r in posts)


def test_request_propagates_trace_headers_to_the_callee(collector, make_client):
    client = make_client(endpoint=collector.url)
    with CollectorServer() as downstream:
        with client.trace():
            ctx = get_context()
            client.request("GET", f"{downstream.url}/a")
            client.request("GET", f"{downstream.url}/b", headers={"X-Custom": "1"})
        first, second = downstream.received
    tps = [r.header_list for r in (first, second)]
    for headers in tps:
        assert [k for k, _ in headers].count("traceparent") == 1
    tp1, tp2 = first.headers["traceparent"], second.headers["traceparent"]
    assert tp1.split("-")[1] == ctx.trace_id.replace("-", "")
    assert tp1.split("-")[2] != tp2.split("-")[2] != ctx.span_id  # a new span per call
    assert second.headers["x-custom"] == "1"
    payload = first.headers["raceway-clock"].split(";", 1)[1]
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert list(decoded) == ["trace_id", "span_id", "parent_span_id", "service", "instance", "clock"]
    assert decoded["parent_span_id"] == ctx.span_id
    assert decoded["span_id"] == tp1.split("-")[2]


def test_endpoint_none_sends_nothing(collector, make_client, monkeypatch):
    monkeypatch.setenv("RACEWAY_ENDPOINT", collector.url)
    client = make_client(endpoint=None)
    with client.trace():
        client.track_state_change("x", 0, 1, "Write")
    assert client.flush(timeout=10)
    assert collector.received == []
    assert client.stats()["sent"] == 0


def test_environment_fills_endpoint_and_api_key(collector, make_client, monkeypatch):
    monkeypatch.setenv("RACEWAY_ENDPOINT", collector.url)
    monkeypatch.setenv("RACEWAY_API_KEY", "from-env")
    client = make_client()
    with client.trace():
        client.track_state_change("x", 0, 1, "Write")
    assert client.flush(timeout=10)
    assert collector.events and collector.received[0].headers["authorization"] == "Bearer from-env"
    assert client.stats()["sent"] == 1


def test_shutdown_flushes_what_is_left(collector, make_client):
    client = make_client(endpoint=collector.url, flush_interval=60.0, batch_size=1000)
    with client.trace():
        for i in range(25):
            client.track_state_change("x", i, i + 1, "Write")
    assert client.shutdown(timeout=10)
    assert len(collector.events) == 25
