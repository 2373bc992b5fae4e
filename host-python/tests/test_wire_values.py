"""One value, one wire form (docs/values.md): what goes on the wire for a value is
``snapshot(value)``, whatever else its batch holds and whichever encoding path writes the batch.

The encoder has a fast path (json's C encoder over the records as they are) and a settling path
(taken when a batch holds something the fast path writes differently or cannot write: NaN, an
int beyond 64 bits, a lone surrogate in a name). These tests mix such values into batches and
check that every event comes out the same as when it is encoded alone, byte for byte on the
record log, and as it arrived at a real collector after the real core.
"""

from __future__ import annotations

import json
import math
import sys
import threading
from typing import Any, Iterator, List, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import assert_valid_batch
from raceway import Config, RacewayClient, _records, _values
from raceway.testing import CollectorServer
from test_properties import any_text, values

UNIT = settings(max_examples=150)
E2E = settings(max_examples=40)

# Values that send a batch down the settling path, or that a second conversion would change.
troublemakers = st.sampled_from([
    float("nan"), float("inf"), -float("inf"), 2**64, 2**70, -(2**63) - 1, -(10**30),
    "lone \udc80 surrogate", "x" * 5000, list(range(150)), [[[[[[[[[1]]]]]]]]],
    [[i] * 100 for i in range(12)], {"n": 2**70, "f": float("nan")},
])
names = st.one_of(st.just("balance"), any_text, st.sampled_from(["a\udc80b", "n" * 5000]))


def wire(value: Any) -> Any:
    """What the rule says arrives for a user value: its conversion, as JSON reads it back."""
    return json.loads(json.dumps(_values.as_json(_values.snapshot(value)), allow_nan=False))


def record_all(client: RacewayClient, items: List[Tuple[Any, Any]]) -> list:
    """Records each ``(name, value)`` as a state change, a function call and a custom event
    through the real client, and takes the records off its log."""
    with client.trace():
        for name, value in items:
            client.track_state_change(name, value, value, "Write")
            client.track_function_call(name, value)
            client.track_custom(name, value)
    records = list(client._queue)
    client._queue.clear()
    return records


@pytest.fixture(scope="module")
def quiet() -> Iterator[RacewayClient]:
    """A client whose flusher never wakes: the tests take the records themselves."""
    client = RacewayClient(Config(endpoint=None, flush_interval=600.0, batch_size=10**6, detect_races=False,
                                  service_name="wire", instance_id="w-1"))
    yield client
    client.shutdown(timeout=5)


# -- the record log ------------------------------------------------------------------------------
@UNIT
@given(st.lists(st.tuples(names, st.one_of(values, troublemakers)), min_size=1, max_size=6))
def test_both_encoding_paths_write_the_same_json_for_any_batch(quiet, items):
    records = record_all(quiet, items)
    assert _records.encode_safely(records) == _records.encode(records, sanitize=True)


@UNIT
@given(st.lists(st.tuples(names, st.one_of(values, troublemakers)), min_size=1, max_size=6))
def test_each_event_is_written_as_when_it_is_alone(quiet, items):
    records = record_all(quiet, items)
    together = json.loads(_records.encode_safely(records))["events"]
    for record, event in zip(records, together):
        alone = json.loads(_records.encode_safely([record]))["events"][0]
        assert event[2:] == alone[2:]  # all but the table indexes


@UNIT
@given(names, st.one_of(values, troublemakers), troublemakers)
def test_a_value_is_written_as_its_conversion_beside_any_neighbour(quiet, name, value, neighbour):
    records = record_all(quiet, [(name, value), ("neighbour", neighbour)])
    events = json.loads(_records.encode_safely(records))["events"]
    state, call, custom = (e[9] for e in events[:3])
    assert state[0] == call[0] == custom[0] == json.loads(json.dumps(_values.text(name)))
    assert state[1] == state[2] == custom[1] == wire(value)
    assert call[2] == ({} if value is None else wire(value))


def test_scalars_the_hot_path_keeps_as_they_come_are_converted_by_the_rule(quiet):
    """``int``/``float`` skip `snapshot` on the hot path; the encoder applies the same rule."""
    cases = [(2**64, "18446744073709551616"), (2**64 - 1, 2**64 - 1), (-(2**63), -(2**63)),
             (-(2**63) - 1, "-9223372036854775809"), (float("nan"), "nan"), (float("-inf"), "-inf"),
             (1.5, 1.5), (True, True), (None, None)]
    for value, expected in cases:
        assert _values.snapshot(value) == expected or (isinstance(value, float) and math.isnan(value))
        events = json.loads(_records.encode_safely(record_all(quiet, [("v", value)])))["events"]
        assert events[0][9][2] == expected, value


# -- through the core to a collector ----------------------------------------------------------------
@pytest.fixture(scope="module")
def live() -> Iterator[Tuple[RacewayClient, CollectorServer]]:
    """A client that sends only when told to: each flush is one batch of everything recorded."""
    with CollectorServer() as server:
        client = RacewayClient(Config(endpoint=server.url, service_name="wire", instance_id="w-2",
                                      flush_interval=600.0, detect_races=False, timeout=5.0))
        yield client, server
        client.shutdown(timeout=5)


def arrived_state_changes(server: CollectorServer, before: int) -> dict:
    """``variable -> StateChange`` of the events that arrived since request ``before``."""
    out = {}
    for received in server.received[before:]:
        if received.path == "/events":
            assert_valid_batch(received.json)
            for event in received.json["events"]:
                change = event["kind"].get("StateChange")
                if change is not None:
                    out[change["variable"]] = change
    return out


def send(client: RacewayClient, server: CollectorServer, items: List[Tuple[str, Any]]) -> dict:
    before = len(server.received)
    with client.trace():
        for name, value in items:
            client.track_state_change(name, None, value, "Write")
    assert client.flush(timeout=30)
    return arrived_state_changes(server, before)


def test_a_big_int_arrives_as_the_same_string_alone_and_beside_a_nan(live):
    """The issue's example: alone it used to arrive as a number, beside a NaN as a string."""
    client, server = live
    alone = send(client, server, [("big", 2**70)])
    mixed = send(client, server, [("big", 2**70), ("nan", float("nan"))])
    assert alone["big"]["new_value"] == mixed["big"]["new_value"] == "1180591620717411303424"
    assert mixed["nan"]["new_value"] == "nan"


def test_values_a_second_conversion_would_change_arrive_unchanged_beside_a_nan(live):
    """Converting a batch again used to cut cut strings again, add markers to kept lists, push
    a level past the depth limit and share one budget among an event's values (which cut the
    field list itself: the event was dropped)."""
    client, server = live
    items = [("long", "x" * 5000), ("list", list(range(150))), ("deep", [[[[[[[[[1]]]]]]]]]),
             ("budget", [[i] * 100 for i in range(12)]), ("name\udc80", 1)]
    alone = send(client, server, items)
    mixed = send(client, server, items + [("nan", float("nan"))])
    assert client.stats()["dropped"] == 0
    for name, value in items:
        key = _values.text(name)
        assert alone[key]["new_value"] == mixed[key]["new_value"] == wire(value), name


@E2E
@given(st.one_of(values, troublemakers), st.lists(troublemakers, min_size=1, max_size=3))
def test_any_value_arrives_the_same_alone_and_in_a_mixed_batch(live, value, neighbours):
    client, server = live
    alone = send(client, server, [("v", value)])
    mixed = send(client, server, [(f"n{i}", n) for i, n in enumerate(neighbours)] + [("v", value)])
    assert alone["v"]["new_value"] == mixed["v"]["new_value"] == wire(value)
    stats = client.stats()
    assert stats["dropped"] == stats["failed"] == 0


# -- values another thread changes while they are recorded ---------------------------------------
def _while_changed(change, record, calls: int) -> RacewayClient:  # type: ignore[no-untyped-def]
    """Runs ``change()`` in a loop on another thread, with a switch interval of 1 µs, while
    ``record(client)`` runs ``calls`` times; returns the client, its records in its log."""
    client = RacewayClient(Config(endpoint=None, flush_interval=600.0, batch_size=10**6, max_queue_size=10**7,
                                  report_races_at_shutdown=False))
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            change()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    thread = threading.Thread(target=loop)
    thread.start()
    try:
        with client.trace():
            for _ in range(calls):
                record(client)
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
    return client


def test_a_dict_changed_by_another_thread_is_recorded_as_one_state_of_it():
    """`flat_dict` checks the user's dict in Python and reads it once: another thread changing
    it meanwhile never raises into the application, and an object tuple made of its keys and
    then its values, read separately, paired a key with another key's value when a switch fell
    between them."""
    d = {"a": 1, "b": 2}
    counter = [0]

    def change() -> None:
        counter[0] += 1
        d["c"] = 3
        del d["c"]
        d.pop("a", None)
        d["a"] = counter[0]

    client = _while_changed(change, lambda c: c.track_function_call("f", d), 30_000)
    try:
        args = [r[11] for r in client._queue if r[8] == "FunctionCall"]
        assert len(args) == 30_000
        for a in args:
            assert len(a) % 2 == 1, a  # the mark, then as many values as keys
            entries = _values.as_json(a)
            assert entries["b"] == 2 and entries.get("c", 3) == 3 and set(entries) <= {"a", "b", "c"}, a
    finally:
        client.shutdown(timeout=5)


def test_headers_changed_by_another_thread_never_raise_into_the_application():
    h = {f"H{i}": "v" for i in range(50)}

    def change() -> None:
        h["X"] = "1"
        h["Y"] = "2"
        h.pop("X", None)
        h.pop("Y", None)

    client = _while_changed(change, lambda c: c.track_http_request("GET", "/", h, None), 20_000)
    try:
        records = [r for r in client._queue if r[8] == "HttpRequest"]
        assert len(records) == 20_000
        assert all(set(_values.as_json(r[11])) >= {f"H{i}" for i in range(50)} for r in records)
    finally:
        client.shutdown(timeout=5)


def test_a_key_whose_comparison_raises_is_converted_not_raised():
    class Key:
        def __hash__(self) -> int:
            return hash("amount")  # meets a known key's hash, so the set compares them

        def __eq__(self, other: object) -> bool:
            raise ValueError("no comparing me")

        def __repr__(self) -> str:
            return "Key()"

    _values.flat_dict({"amount": 1})  # "amount" is a known key now
    client = RacewayClient(Config(endpoint=None, flush_interval=600.0, batch_size=10**6, report_races_at_shutdown=False))
    try:
        with client.trace():
            client.track_function_call("f", {Key(): 1})
            client.track_custom("c", {Key(): 2})
            client.track_state_change("s", None, {Key(): 3}, "Write")
        values = [r[11] for r in client._queue if r[8] == "FunctionCall"]
        values += [r[10] for r in client._queue if r[8] == "Custom"]
        values += [r[11] for r in client._queue if r[8] == "StateChange"]
        assert [_values.as_json(v) for v in values] == [{"Key()": 1}, {"Key()": 2}, {"Key()": 3}]
    finally:
        client.shutdown(timeout=5)
