"""The pieces of the delivery policy on their own: the memory split, the retry schedule, how
the transport classifies what a real server answers, and the new settings' validation."""

from __future__ import annotations

import json

import pytest

from raceway import Config, RacewayClient
from raceway._backlog import CHUNK, split_budget
from raceway._transport import Outcome, RetryPolicy, Transport
from raceway.testing import CloseMidResponse, CollectorServer, Status


@pytest.mark.parametrize("limit", [1, 2, 7, 8, 100, 10_000, 100_000, 10**7])
def test_the_log_and_the_held_chunk_never_exceed_the_limit(limit):
    log, chunk = split_budget(limit)
    assert log >= 1 and 1 <= chunk <= CHUNK
    assert log + chunk <= max(limit, 2)


def test_the_default_split():
    assert split_budget(Config().max_queue_size) == (95_904, 4_096)


def test_the_backoff_doubles_to_its_cap_with_jitter_and_resets():
    backoff = RetryPolicy(backoff=0.5, backoff_max=30.0).schedule()
    delays = [backoff.next_delay() for _ in range(40)]
    for n, delay in enumerate(delays[:5], start=1):
        assert 0.5 * 2**n <= delay <= 0.5 * 2**n + 1.0  # jitter: up to 2 x backoff
    assert all(d == 30.0 for d in delays[5:])
    backoff.reset()
    assert 1.0 <= backoff.next_delay() <= 2.0


def test_retry_after_is_honoured_up_to_the_cap():
    retry = RetryPolicy(backoff_max=2.0).per_request()

    class Answer:
        headers = {"Retry-After": "3600"}

    assert retry.get_retry_after(Answer()) == 2.0
    assert retry.new().get_retry_after(Answer()) == 2.0  # urllib3 copies it on every retry


@pytest.mark.parametrize(
    "faults, outcome, retries",
    [
        ((), Outcome.SENT, 0),
        ((Status(206),), Outcome.BACKPRESSURE, 0),
        ((Status(401),), Outcome.REJECTED, 0),
        ((Status(422),), Outcome.REJECTED, 0),
        ((Status(302),), Outcome.REJECTED, 0),
        ((Status(503),) * 3, Outcome.FAILED, 2),           # retried by urllib3, still failing
        ((Status(429, retry_after=1),) * 3, Outcome.FAILED, 2),  # Retry-After capped at 0.1 s
        ((Status(503), Status(429)), Outcome.SENT, 2),      # recovered within urllib3's retries
        ((CloseMidResponse(),), Outcome.SENT, 1),
    ],
)
def test_the_transport_classifies_real_answers(faults, outcome, retries):
    with CollectorServer() as server:
        server.script(*faults)
        transport = Transport(server.url, None, 2.0, RetryPolicy(retries=2, backoff=0.01, backoff_max=0.1))
        result = transport.send('{"events":[]}')
        transport.close()
    assert (result.outcome, result.retries) == (outcome, retries)
    if outcome is Outcome.REJECTED and faults[0].status != 302:
        assert str(faults[0].status) in result.reason and "injected fault" in result.reason


def test_a_refused_connection_fails_after_urllib3s_retries():
    with CollectorServer() as server:
        url = server.url
        server.refuse()
        result = Transport(url, None, 1.0, RetryPolicy(retries=2, backoff=0.01, backoff_max=0.1)).send("{}")
    assert result.outcome is Outcome.FAILED and result.retries == 2
    assert "refused" in result.reason.lower()


@pytest.mark.parametrize(
    "kwargs, field",
    [({"retries": -1}, "retries"), ({"retries": True}, "retries"), ({"retry_backoff": -0.1}, "retry_backoff"),
     ({"retry_backoff_max": 0}, "retry_backoff_max"), ({"retry_backoff_max": float("inf")}, "retry_backoff_max")],
)
def test_delivery_settings_are_checked(kwargs, field):
    with pytest.raises(ValueError, match=field):
        Config(**kwargs)


def test_flat_dict_fast_path_gives_what_the_general_conversion_gives():
    from raceway import _values
    from raceway._values import _Converter, snapshot

    cases = [
        {"from": "alice", "to": "bob", "amount": 100, "ok": True, "none": None, "ratio": 0.5},
        {"nan": float("nan"), "inf": float("-inf")},
        {"big": 2**70, "neg": -(2**63) - 1},
        {"é": 1, "s": "ünïcode", "sur": "\udc80"},
        {1: "int key", "nested": {"a": [1, 2]}},
        {"long": "x" * 300, "k" * 300: 1},
        {f"k{i}": i for i in range(40)},
    ]
    for _ in range(2):  # the second time, the good keys are known (`_values._known_keys`)
        for value in cases:
            assert snapshot(value) == _Converter().convert(value, 0, frozenset()), value
    assert "from" in _values._known_keys and "é" not in _values._known_keys and "k" * 300 not in _values._known_keys
    original = {"a": 1}
    copy = snapshot(original)
    original["a"] = 2
    assert copy == (_values.OBJECT, "a", 1)  # the value as it was when recorded, in its record form
    assert _values.as_json(copy) == {"a": 1}


def _quiet_client(make_client):
    """A client whose flusher does not wake before the test takes the records itself."""
    return make_client(endpoint=None, flush_interval=600, batch_size=10**6)


def _records_of(client, n):
    with client.trace():
        for i in range(n):
            client.track_state_change("v", i, i + 1, "Write")
    records = list(client._queue)
    client._queue.clear()
    assert len(records) == n
    return records


def test_parts_are_whole_bodies_in_order_and_within_the_size_limit(make_client):
    from raceway import _records

    assert [_records.part_size(n) for n in (1, 50, 100, 1000)] == [160, 150, 100, 1000]
    records = _records_of(_quiet_client(make_client), 400)
    parts = [part for _text, part in _records.encode_parts(records, 150)]
    assert [len(p) for p in parts] == [150, 150, 100]
    assert [r for p in parts for r in p] == records
    small = [part for _text, part in _records.encode_parts(records, 150, max_chars=5_000)]
    assert all(len(text) <= 5_000 for text, _ in _records.encode_parts(records, 150, max_chars=5_000))
    assert [r for p in small for r in p] == records and max(len(p) for p in small) < 150


@pytest.mark.parametrize("value", ["cycle", "object"])
def test_a_value_the_fast_encoding_cannot_write_falls_back_to_conversion(make_client, value):
    """The fast encoding skips json's cycle check: user values are acyclic snapshots. If a cyclic
    value (RecursionError) or an object json cannot write (TypeError) ever got
    into a record, the batch is still encoded, converted."""
    from raceway import _records

    records = _records_of(_quiet_client(make_client), 3)
    if value == "cycle":
        data = [1]
        data.append(data)
    else:
        data = [1, object()]
    records[1] = records[1][:8] + ("Custom", "c", data)  # flat: the kind, then its fields
    with pytest.raises(RecursionError if value == "cycle" else TypeError):
        _records.encode(records)
    decoded = json.loads(_records.encode_safely(records))
    assert len(decoded["events"]) == 3 and decoded["events"][1][8] == "Custom"
    assert decoded["events"][1][9][1][0] == 1 and isinstance(decoded["events"][1][9][1][1], str)


def test_the_core_answer_becomes_one_body_per_count(make_client):
    from raceway import _records
    from raceway._core import CoreInstance

    client = _quiet_client(make_client)
    core = CoreInstance()
    core.configure(client._process_config())
    out = core.encode_batch(_records.encode(_records_of(client, 120)), 50)
    assert out["counts"] == [50, 50, 20] and len(out["bodies"]) == 3
    assert [len(json.loads(b)["events"]) for b in out["bodies"]] == out["counts"]
    empty = core.encode_batch(_records.encode([]), 50)
    assert (empty["counts"], empty["bodies"], empty["events"]) == ([], [], 0)


@pytest.mark.parametrize("detect", [False, True])
def test_with_nothing_to_read_them_records_are_counted_and_the_core_does_no_work(detect: bool) -> None:
    """No server, no detector, no events file: nothing reads the records, so the flusher takes
    and counts them and the component runs nothing for them (its fuel is untouched). With the
    detector on, the same records are read by the core (the fuel moves): the contrast that
    shows the first case can fail."""
    client = RacewayClient(Config(endpoint=None, detect_races=detect, report_races_at_shutdown=False))
    try:
        store = client._flusher.core._store
        fuel = store.get_fuel()
        with client.trace():
            for i in range(500):
                client.track_state_change("x", i, i + 1, "Write")
        assert client.flush(timeout=10)
        stats = client.stats()
        assert stats["recorded"] == 500
        assert stats["queued"] == stats["pending"] == stats["dropped"] == stats["failed"] == stats["sent"] == 0
        assert (store.get_fuel() != fuel) is detect
    finally:
        client.shutdown(timeout=5)
