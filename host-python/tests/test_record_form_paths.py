"""The record form of user values (lists as tuples, dicts as object tuples
``(b"", k1..kn, v1..vn)``: raceway/_values.py, docs/record-format.md "Objects").

Checked with the built component and real clients, on every path that makes records: the
core's answers to the pickle form, to the JSON form, and to records holding plain dicts and
lists (what a record held before the change) are identical, byte for byte; the events file has
plain objects; race reports show dicts and lists; odd values (keys that collide once
converted, bytes keys, tuples that start with ``b""``, subclasses, mappings that are not
dicts, cycles, big and deep values, a dict changed by another thread) neither raise nor come
out as objects they are not; and every record leaves the cyclic GC."""

from __future__ import annotations

import collections
import gc
import json
import threading
import time
import types
from collections.abc import Mapping
from typing import Any, Dict, Iterator, List

import pytest
import requests
from _servers import wsgi_server
from hypothesis import given, settings
from hypothesis import strategies as st
from test_properties import values
from test_records_pickle import PROCESS

import raceway
from raceway import Config, RacewayClient, _records, _values
from raceway._core import CoreInstance


# -- the form a record held before the change, by a conversion of its own ----------------------
def plain(value: Any) -> Any:
    """``value`` in the form records held before: each object tuple the dict it stands for,
    each other tuple a list. Fails on a malformed object tuple or bytes anywhere else."""
    if value.__class__ is tuple:
        if value and value[0].__class__ is bytes:
            assert value[0] == b"" and len(value) % 2 == 1, value
            n = len(value) // 2
            keys = value[1 : n + 1]
            assert all(k.__class__ is str for k in keys) and len(set(keys)) == n, value
            return dict(zip(keys, map(plain, value[n + 1 :]), strict=True))
        return [plain(v) for v in value]
    assert value.__class__ in (str, int, float, bool, type(None)), value
    return value


def legacy(records: List[Any]) -> List[Any]:
    return [r[:9] + tuple(plain(f) for f in r[9:]) for r in records]


def core() -> CoreInstance:
    c = CoreInstance()
    c.configure(PROCESS)
    return c


def three_forms(records: List[Any], per_body: int = 50) -> None:
    """The pickle form, the JSON form and the JSON of the legacy records give the same JSON
    text (the last two) and the same answers and findings from the core (all three)."""
    text = _records.encode_safely(records)
    before = _records.encode_safely(legacy(records))
    assert text == before
    assert _records.encode(records, sanitize=True) == text  # the settling path (`_settled`) alike
    pickled = _records.encode_pickle(records)
    assert pickled is not None
    a, b, c = core(), core(), core()
    expected = a.observe(text, per_body)
    assert b.observe_pickle(pickled, per_body) == expected  # read, not refused
    assert c.observe(before, per_body) == expected
    assert b._call("races") == a._call("races") == c._call("races")
    for r in records:  # every record in the form the GC untracks
        assert plain(r[9:]) is not None


# -- odd values ----------------------------------------------------------------------------------
class Dict2(dict):
    pass


class List2(list):
    pass


class Tuple2(tuple):
    pass


class Key:
    def __repr__(self) -> str:
        return "Key()"


def _cyclic_dict() -> Dict[str, Any]:
    d: Dict[str, Any] = {"a": 1}
    d["self"] = d
    d["list"] = [d]
    return d


def _cyclic_list() -> List[Any]:
    x: List[Any] = [1]
    x.append(x)
    x.append({"back": x})
    return x


def _deep(levels: int) -> Dict[str, Any]:
    d: Dict[str, Any] = {"leaf": [1, {"x": None}]}
    for i in range(levels):
        d = {f"l{i}": d, "n": [i]}
    return d


ODD: Dict[str, Any] = {
    "empty-dict": {},
    "empty-list": [],
    "empty-tuple": (),
    "colliding-int-first": {1: "a", "1": "b"},
    "colliding-str-first": {"1": "b", 1: "a"},
    "colliding-many": {1: 1, "1": 2, 1.5: 3, "1.5": 4, None: 5, "None": 6, (1,): 7, "(1,)": 8, False: 9},
    "bytes-keys": {b"k": 1, b"": 2, "b''": 3},
    "odd-keys": {(1, 2): [1], Key(): "k", frozenset(): 0, "": "", "é\u2028": "ü", "\udc80": "lone"},
    "ellipsis-key": {"…": 1, **{str(i): i for i in range(120)}},
    "object-like-tuple": (b"", "a", 1),
    "object-like-list": [b"", "a", 1],
    "mark-alone": (b"",),
    "mark-nested": {"v": (b"", "k", "v"), "w": [(b"",)]},
    "bytes-value": {"b": b"", "c": bytearray(b"x"), "m": memoryview(b"yz")},
    "tuple-subclass-like-object": Tuple2((b"", "k", 1)),
    "list-of-dicts": [{"a": 1}, {}, {"b": [{"c": {}}]}],
    "nested": {"k": [1, {"n": None, "t": (1, "two", 3.0)}], "é": "ü"},
    "sets": {"s": {3, 1, 2}, "f": frozenset({"x", "y"}), "mixed": {1, "a"}},
    "cycle-dict": _cyclic_dict(),
    "cycle-list": _cyclic_list(),
    "big-list": list(range(300)),
    "big-dict": {f"k{i}": {"i": i} for i in range(300)},
    "budget": [{"k": "v" * 400} for _ in range(400)],
    "deep": _deep(20),
    "dict-subclass": Dict2(a=1, b=[Dict2(c=2)]),
    "list-subclass": List2([1, List2([{"z": 1}])]),
    "ordered": collections.OrderedDict([("b", 1), ("a", 2)]),
    "defaultdict": collections.defaultdict(list, {"q": [1], "r": {}}),
    "mappingproxy": types.MappingProxyType({"a": 1}),
    "counter": collections.Counter("abca"),
    "chainmap": collections.ChainMap({"a": 1}, {"b": 2}),
    "big-ints-inside": {"big": 2**70, "neg": -(2**63) - 1, "ok": 2**64 - 1, "l": [10**30]},
    "floats-inside": {"nan": float("nan"), "inf": float("inf"), "x": [-0.0, 1e16, 5e-324]},
    "flat": {"from": "alice", "amount": 100, "ok": True, "none": None, "f": 1.5},
    "flat-but-long-value": {"a": "x" * 300},
    "flat-but-non-ascii": {"a": "é"},
    "scalar-str": "plain",
    "scalar-int": 7,
}


def headers_of(value: Any) -> Any:
    return value if isinstance(value, Mapping) else {"X-Value": value}


def _wait_for(predicate: Any, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not predicate() and time.monotonic() < end:
        time.sleep(0.01)


def record_every_path(client: RacewayClient, value: Any) -> List[Any]:
    """Records ``value`` through every path that makes records, and takes the records."""
    from raceway.middleware import RacewayWSGIMiddleware

    def app(environ: Any, start_response: Any) -> Any:
        client.track_state_change("served", None, value, "Write")
        if environ["PATH_INFO"] == "/fail":
            raise RuntimeError("app failed")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    raceway.instrument_primitives(client)
    raceway.enable_strands(client)
    try:
        box = raceway.shared({"v": None}, "box")
        sem = threading.Semaphore(1)
        lock = threading.Lock()

        @raceway.track_function(client, capture_args=True, capture_result=True)
        def captured(x: Any, *rest: Any, **named: Any) -> Any:
            return x

        @raceway.track_function(client)
        def uncaptured(x: Any) -> Any:
            return x

        @raceway.background_job(client, capture_args=True)
        def job(payload: Any) -> None:
            pass

        class Account:
            @raceway.track_method(client, capture_args=True, capture_result=True)
            def deposit(self, amount: Any) -> Any:
                return amount

        with client.trace():
            client.track_state_change("v", value, value, "Write")
            client.track_state_change("v", None, value, "Read")
            client.track_function_call("f", value)
            client.track_function_call("f", {"arg": value})
            client.track_function_call("none")
            client.track_custom("c", value)
            client.track_custom("c", [value, {"in": value}])
            captured(value, value, k=value)
            uncaptured(value)
            Account().deposit(value)
            job(value)
            client.track_http_request("POST", "http://x.test/", headers_of(value), value)
            client.track_http_response(201, headers_of(value), value, duration_ms=1)
            client.track_http_request("GET", "http://x.test/")
            client.track_http_response(200, duration_ms=1)
            client.happens_before(("tok", b""))
            client.happens_after(("tok", b""))
            box["v"] = value
            _ = box["v"]
            with lock:
                box["w"] = value
            sem.acquire()
            sem.release()
            t = threading.Thread(target=box.__setitem__, args=("t", value))
            t.start()
            t.join()
            try:
                raise ValueError(value if isinstance(value, str) else "boom")
            except ValueError as e:
                client.track_error(e)
            with wsgi_server(RacewayWSGIMiddleware(app, client=client)) as url:
                raceway.instrument_http(client, libraries=("requests",))
                try:
                    assert requests.get(f"{url}/ok", timeout=10).status_code == 200
                    assert requests.get(f"{url}/fail", timeout=10).status_code == 500
                finally:
                    raceway.uninstrument_http()
                # The server's responses are recorded when each body is closed.
                _wait_for(lambda: sum(r[8] == "HttpResponse" for r in client._queue) >= 6)
    finally:
        raceway.disable_strands()
        raceway.uninstrument_primitives()
    records = list(client._queue)
    client._queue.clear()
    kinds = {r[8] for r in records}
    assert {
        "StateChange",
        "FunctionCall",
        "Custom",
        "HttpRequest",
        "HttpResponse",
        "Error",
        "LockAcquire",
        "LockRelease",
        "AsyncSpawn",
        "AsyncAwait",
    } <= kinds, kinds
    assert sum(r[8] == "HttpResponse" for r in records) >= 6
    return records


@pytest.fixture(scope="module")
def quiet() -> Iterator[RacewayClient]:
    """A client whose flusher never wakes: the tests take the records themselves."""
    client = RacewayClient(
        Config(
            endpoint=None,
            flush_interval=600.0,
            batch_size=10**6,
            max_queue_size=10**6,
            service_name="svc",
            instance_id="host-1",
            report_races_at_shutdown=False,
        )
    )
    yield client
    client.shutdown(timeout=5)


@pytest.mark.parametrize("name", list(ODD))
def test_every_path_gives_the_answers_records_of_dicts_and_lists_gave(quiet, name: str) -> None:
    records = record_every_path(quiet, ODD[name])
    three_forms(records)
    # The records leave the GC once collections have looked at them.
    for _ in range(8):
        gc.collect()
    assert [r[8] for r in records if gc.is_tracked(r)] == []


@settings(max_examples=80, deadline=None)
@given(st.lists(values, min_size=1, max_size=4))
def test_any_values_give_the_answers_records_of_dicts_and_lists_gave(quiet, items) -> None:
    """Random values (test_properties.values: nested dicts with keys of any type, lists, sets,
    tuples, bytes, odd numbers and text), each inside a dict so that the hot path converts it."""
    with quiet.trace():
        for value in items:
            wrapped = {"v": value}
            quiet.track_state_change("v", wrapped, [value], "Write")
            quiet.track_function_call("f", wrapped)
            quiet.track_custom("c", wrapped)
            quiet.track_http_request("POST", "/", headers_of(value), wrapped)
    records = list(quiet._queue)
    quiet._queue.clear()
    three_forms(records)
    for _ in range(8):
        gc.collect()
    assert [r[8] for r in records if gc.is_tracked(r)] == []


# -- what conversions give, against what the old form had ---------------------------------------
EXPECTED: List[Any] = [
    ({1: "a", "1": "b"}, {"1": "b"}),
    ({"1": "b", 1: "a"}, {"1": "a"}),
    ({b"k": 1, b"": 2}, {"b'k'": 1, "b''": 2}),
    ((b"", "a", 1), ["b''", "a", 1]),
    (Tuple2((b"", "a", 1)), ["b''", "a", 1]),
    ((b"",), ["b''"]),
    ({"v": (b"", "k", "v")}, {"v": ["b''", "k", "v"]}),
    ([{}], [{}]),
    ({}, {}),
    (Dict2(a=1), {"a": 1}),
    (collections.OrderedDict([("b", 1), ("a", 2)]), {"b": 1, "a": 2}),
    (collections.defaultdict(list, {"q": [1]}), {"q": [1]}),
    (types.MappingProxyType({"a": 1}), "mappingproxy({'a': 1})"),  # its repr, as before
    ({"k": [1, {"n": None}]}, {"k": [1, {"n": None}]}),
]


@pytest.mark.parametrize("value,expected", EXPECTED, ids=[repr(v) for v, _ in EXPECTED])
def test_a_converted_value_stands_for_the_json_it_had(value: Any, expected: Any) -> None:
    out = _values.snapshot(value)
    assert plain(out) == expected
    assert json.dumps(_values.as_json(out)) == json.dumps(expected)  # same keys in the same order
    assert json.dumps(_records._settled(out)) == json.dumps(expected)


def test_a_user_tuple_that_starts_with_the_mark_is_no_object(quiet) -> None:
    with quiet.trace():
        quiet.track_custom("c", (b"", "a", 1))
        quiet.track_function_call("f", (b"", "k"))
        quiet.track_state_change("v", (b"",), [b"", "x", "y"], "Write")
    records = list(quiet._queue)
    quiet._queue.clear()
    fields = [r[9:] for r in records]
    assert fields[0][1] == ("b''", "a", 1)
    assert fields[1][2] == ("b''", "k")
    assert fields[2][1:3] == (("b''",), ("b''", "x", "y"))
    three_forms(records)


# -- the JSON form: events file ------------------------------------------------------------------
def test_the_events_file_has_plain_objects_as_before(tmp_path) -> None:
    path = tmp_path / "events.jsonl"
    client = RacewayClient(
        Config(endpoint=None, events_file=str(path), detect_races=False, report_races_at_shutdown=False)
    )
    names = list(ODD)
    try:
        assert not client._flusher.pickle
        with client.trace():
            for name in names:
                client.track_custom(name, ODD[name])
                client.track_function_call(name, ODD[name])
                client.track_http_request("POST", "http://x.test/", headers_of(ODD[name]), ODD[name])
            client.track_function_call("none")
        assert client.flush(timeout=30)
    finally:
        client.shutdown(timeout=10)
    text = path.read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    events = [e for line in lines for e in line["events"]]
    custom = {e[9][0]: e[9][1] for e in events if e[8] == "Custom"}
    calls = {e[9][0]: e[9][2] for e in events if e[8] == "FunctionCall"}
    requests_ = [e[9] for e in events if e[8] == "HttpRequest"]
    assert set(custom) == set(names) and set(calls) == set(names) | {"none"}
    for name in names:
        expected = json.loads(json.dumps(plain(_values.snapshot(ODD[name]))))
        assert custom[name] == expected, name
        assert calls[name] == expected, name
    assert calls["none"] == {}
    assert len(requests_) == len(names)
    for fields, name in zip(requests_, names, strict=True):
        assert isinstance(fields[2], dict) and all(isinstance(v, str) for v in fields[2].values()), name
        assert fields[3] == custom[name]
    # Dict values are objects, and no mark was written as a value anywhere.
    assert custom["nested"] == {"k": [1, {"n": None, "t": [1, "two", 3.0]}], "é": "ü"}
    assert custom["empty-dict"] == {} and custom["list-of-dicts"] == [{"a": 1}, {}, {"b": [{"c": {}}]}]


# -- race reports --------------------------------------------------------------------------------
def test_races_show_dict_and_list_values() -> None:
    client = RacewayClient(Config(endpoint=None, report_races_at_shutdown=False))
    barrier = threading.Barrier(2)
    old = {"owner": "alice", "items": [1, {"n": 2}], "none": {}}

    def work(i: int) -> None:
        with client.trace():
            client.track_state_change("account", None, old, "Read")
            barrier.wait()
            client.track_state_change("account", old, {"owner": f"t{i}", "items": [i], "tags": ("a",)}, "Write")

    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        races = [r for r in client.races(timeout=30) if r.variable == "account"]
        assert races
        values = [v for r in races for a in r.accesses for v in (a.old_value, a.new_value) if v is not None]
        assert old in values
        assert {"owner": "t0", "items": [0], "tags": ["a"]} in values or {
            "owner": "t1",
            "items": [1],
            "tags": ["a"],
        } in values
        report = client.race_report(timeout=30)
        assert '{"items":[1,{"n":2}],"none":{},"owner":"alice"}' in report
        assert "b''" not in report
    finally:
        client.shutdown(timeout=10)


# -- a container changed by another thread while it is converted ---------------------------------
def test_a_nested_dict_changed_meanwhile_never_raises_and_stays_well_formed(quiet) -> None:
    """The general conversion (a dict holding containers: not the flat ``args`` path) of a dict
    another thread changes: every record holds well-formed object tuples, both forms agree."""
    shared: Dict[Any, Any] = {"a": [1], "b": {"c": 2}}
    stop = threading.Event()

    def change() -> None:
        i = 0
        while not stop.is_set():
            shared[i % 7] = [i]
            shared.pop((i + 3) % 7, None)
            shared["b"] = {"c": i}
            i += 1

    t = threading.Thread(target=change)
    t.start()
    try:
        with quiet.trace():
            for _ in range(3000):
                quiet.track_state_change("s", shared, shared, "Write")
                quiet.track_custom("c", shared)
    finally:
        stop.set()
        t.join()
    records = list(quiet._queue)
    quiet._queue.clear()
    assert len(records) == 6000
    for i in range(0, len(records), 160):
        three_forms(records[i : i + 160])


# -- the detector reads the sync annotations, now object tuples, from the pickle form ------------
def test_happens_before_in_the_pickle_form_orders_two_strands() -> None:
    client = RacewayClient(Config(endpoint=None, report_races_at_shutdown=False))
    try:
        assert client._flusher.pickle
        handed, loose = threading.Event(), threading.Event()

        def first() -> None:
            with client.trace():
                client.track_state_change("handed", None, {"n": [1]}, "Write")
                client.track_state_change("loose", None, {"n": [1]}, "Write")
                client.happens_before(("token", b""))
                handed.set()
                loose.set()

        def second() -> None:
            handed.wait()
            loose.wait()
            with client.trace():
                client.happens_after(("token", b""))
                client.track_state_change("handed", {"n": [1]}, {"n": [2]}, "Write")
            with client.trace():  # no annotation on this strand
                client.track_state_change("loose", {"n": [1]}, {"n": [2]}, "Write")

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        variables = {r.variable for r in client.races(timeout=30)}
        assert "loose" in variables and "handed" not in variables
        assert client._flusher.pickle_refused == 0
    finally:
        client.shutdown(timeout=10)
