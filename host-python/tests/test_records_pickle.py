"""The pickle form of a record batch (docs/record-format.md) must give exactly what the JSON
form gives: the same summary, the same bodies byte for byte, the same findings of the race
detector; and where the core does not read a pickle it refuses it before using any of it, so
the flusher sends the JSON form instead. Everything here runs the real component."""

from __future__ import annotations

import json
import math
import pickle
import random
import struct
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raceway import Config, RacewayClient, _records
from raceway._backlog import Backlog
from raceway._core import CoreError, CoreInstance
from raceway._flusher import Flusher
from raceway._stats import Stats
from test_properties import any_text, values

VECTORS = Path(__file__).resolve().parents[2] / "tests" / "vectors"
PROCESS = {"service_name": "svc", "environment": "test", "instance_id": "host-1", "process_id": 7,
           "tags": {"sdk_language": "python"}}


def pair() -> Tuple[CoreInstance, CoreInstance]:
    """Two instances configured alike: one fed the JSON form, one the pickle form."""
    a, b = CoreInstance(), CoreInstance()
    a.configure(PROCESS)
    b.configure(PROCESS)
    return a, b


def as_pickle(batch: Any) -> str:
    return pickle.dumps(batch, 5).decode("latin-1")


def feed(json_core: CoreInstance, pickle_core: CoreInstance, text: str, pickled: Optional[str],
         per_body: int, detect: bool = True) -> bool:
    """Feeds one batch to both instances, the second in the pickle form when it reads it
    (else the JSON form, as the flusher does); asserts the answers are identical. True when
    the pickle form was read."""
    if detect:
        expected = json_core.observe(text, per_body)
    else:
        expected = json_core.encode_batch(text, per_body)
    read = False
    got: Dict[str, Any]
    try:
        if pickled is None:
            raise CoreError("not pickled")
        got = pickle_core.observe_pickle(pickled, per_body) if detect else pickle_core.encode_batch_pickle(pickled, per_body)
        read = True
    except CoreError:
        got = pickle_core.observe(text, per_body) if detect else pickle_core.encode_batch(text, per_body)
    assert got == expected
    return read


def vector_batches() -> Iterator[Tuple[str, List[Dict[str, Any]]]]:
    for path in sorted(VECTORS.glob("*.json")):
        for case in json.loads(path.read_text()).get("cases", []):
            if isinstance(case, dict) and case.get("batches"):
                yield f"{path.stem}:{case.get('name')}", case["batches"]


def test_every_golden_vector_gives_the_same_answers_and_findings_in_both_forms() -> None:
    cases = list(vector_batches())
    assert cases, "no vector with record batches"
    read = refused = 0
    for name, batches in cases:
        a, b = pair()
        for batch in batches:
            text = json.dumps(batch, separators=(",", ":"))
            if feed(a, b, text, as_pickle(batch), 50):
                read += 1
            else:
                refused += 1
                # Only a batch with a record the typed read cannot take is refused: its JSON
                # answer drops that record.
                assert a.encode_batch(text, 50)["dropped"], name
        assert b.races() == a.races(), name
    assert read > 0 and read >= 5 * refused


def test_both_forms_encode_the_same_without_the_detector() -> None:
    for _name, batches in vector_batches():
        a, b = pair()
        for batch in batches:
            text = json.dumps(batch, separators=(",", ":"))
            feed(a, b, text, as_pickle(batch), 3, detect=False)
            feed(a, b, text, as_pickle(batch), 0, detect=True)


# -- records made by the real client ------------------------------------------------------------
@pytest.fixture(scope="module")
def quiet() -> Iterator[RacewayClient]:
    """A client whose flusher never wakes: the tests take the records themselves."""
    client = RacewayClient(Config(endpoint=None, flush_interval=600.0, batch_size=10**6, service_name="svc",
                                  instance_id="host-1", report_races_at_shutdown=False))
    yield client
    client.shutdown(timeout=5)


def record_all(client: RacewayClient, items: List[Tuple[Any, Any]]) -> list:
    with client.trace():
        for name, value in items:
            client.track_state_change(name, value, value, "Write")
            client.track_state_change(name, None, value, "Read")
            client.track_function_call(name, value)
            client.track_custom(name, value)
    records = list(client._queue)
    client._queue.clear()
    return records


def both_forms(records: list, per_body: int = 50) -> bool:
    """The flusher's two ways for one part; True when the pickle form was read. The findings
    are compared as the core's text: two spellings of one float read back as the same number."""
    a, b = pair()
    read = feed(a, b, _records.encode_safely(records), _records.encode_pickle(records), per_body)
    assert b._call("races") == a._call("races")
    return read


EDGES: List[Any] = [
    0, -1, 1, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63 - 1, 2**63, 2**64 - 1, -(2**63),
    True, False, None, 0.0, -0.0, 0.1, 1 / 3, 1e15, 1e16, 123456789012345678.0, 1e-4, 1e-5, 1.5e300,
    5e-324, -2.5e-7, 1.7976931348623157e308, "", "plain", "é", "\u2028", "😀", "\x00\x1f\x7f", '"\\/\n\r\t\b\f',
    "a" * 300, [], {}, [1, [2, [3, [4]]]], (1, "two", 3.0), {"k": [1, {"n": None}], "é": "ü"}, {"a": 1, "b": "c"},
    [[1, 2]] * 3, "lone \udc80",  # a value's lone surrogate was replaced on the hot path
]
REFUSED: List[Any] = [2**64, -(2**63) - 1, 10**30, float("nan"), float("inf"), -float("inf")]


@pytest.mark.parametrize("value", EDGES, ids=repr)
def test_each_edge_value_is_read_from_the_pickle_and_gives_the_json_answer(quiet, value: Any) -> None:
    assert both_forms(record_all(quiet, [("balance", value)]))


@pytest.mark.parametrize("value", REFUSED, ids=repr)
def test_values_the_json_form_settles_first_are_refused_and_sent_as_json(quiet, value: Any) -> None:
    """An int beyond 64 bits, NaN, an infinity, a lone surrogate: the JSON form writes these
    differently from pickle (settled to strings), so the core refuses the pickle and the
    batch's JSON gives the answer, which is the same either way."""
    records = record_all(quiet, [("balance", 1), ("other", value), ("third", "x")])
    assert not both_forms(records)


def test_a_lone_surrogate_in_a_name_is_refused(quiet) -> None:
    assert not both_forms(record_all(quiet, [("a\udc80b", 1)]))


def test_an_empty_batch_and_empty_tables() -> None:
    a, b = pair()
    assert _records.encode_pickle([]) is not None
    assert feed(a, b, _records.encode_safely([]), _records.encode_pickle([]), 50)


def test_floats_are_written_as_pythons_repr(quiet) -> None:
    rng = random.Random(12)
    floats = [struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0] for _ in range(3000)]
    floats = [f for f in floats if math.isfinite(f)] + [rng.uniform(-1e6, 1e6) for _ in range(1000)]
    floats += [rng.randint(-10**6, 10**6) / 10**rng.randint(0, 12) for _ in range(1000)]
    records = record_all(quiet, [("f", floats[i:i + 50]) for i in range(0, len(floats), 50)])
    assert both_forms(records)


def test_floats_halfway_between_two_shortest_spellings_take_the_even_one(quiet) -> None:
    """``1000000000000000.25`` lies halfway between ``...000.2`` and ``...000.3``, and both read
    back as it: Python's repr takes the even digit, and so must the pickle form's writer (in
    the bodies and in the findings' text)."""
    ties = [1e15 + k / 4 for k in range(-200, 200)] + [-(1e15 + k / 4) for k in range(0, 200)]
    ties += [2.0**52 * 3 + k / 2 for k in range(-50, 50)] + [1e16 + 2.0 * k for k in range(50)]
    assert repr(1000000000000000.25) == "1000000000000000.2"
    records = record_all(quiet, [("f", ties[i:i + 40]) for i in range(0, len(ties), 40)])
    assert both_forms(records)


def test_a_part_whose_values_are_too_large_to_render_goes_as_json_and_the_client_stays_on(caplog) -> None:
    """A pickle shares repeated strings, so a part of ~1 MB can stand for over 100 MB of values'
    JSON. The core refuses to render more than `MAX_VALUES` (4 MiB, where the host splits JSON
    batches) instead of running out of memory; the flusher sends that part as JSON, in parts
    the core can take, and nothing is lost or turned off."""
    client = RacewayClient(Config(endpoint=None, batch_size=160, report_races_at_shutdown=False))
    try:
        strings = ["é" * 2996 + "%04d" % i for i in range(160)]
        with client.trace():
            for text in strings:
                client.track_state_change("v", [text] * 21, [text] * 21, "Write")
        assert client.flush(timeout=60)
        stats = client.stats()
        assert stats.get("failed", 0) == 0 and stats.get("dropped", 0) == 0, stats
        assert not client._disabled
        with client.trace():  # still recording and analysing
            client.track_state_change("after", 0, 1, "Write")
        assert client.flush(timeout=30)
        assert client.races(timeout=30) == []
    finally:
        client.shutdown(timeout=30)
    assert "core failed" not in caplog.text


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.just("balance"), any_text), values), min_size=1, max_size=6))
def test_any_batch_gives_the_same_answer_in_both_forms(quiet, items) -> None:
    both_forms(record_all(quiet, items))


def test_many_contexts_states_and_kinds_in_one_part(quiet) -> None:
    import threading

    def work(i: int) -> None:
        with quiet.trace():
            quiet.track_state_change("shared", i, i + 1, "Write")
            quiet.track_error(ValueError(f"e{i}"))
            quiet.track_http_request("GET", f"/x/{i}", {"h": "v"}, None)

    with quiet.trace():
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    records = list(quiet._queue)
    quiet._queue.clear()
    assert len({id(r[0]) for r in records}) >= 4
    assert both_forms(records)


def test_an_object_that_is_not_a_context_or_state_is_not_pickled(quiet) -> None:
    records = record_all(quiet, [("x", 1)])
    bad = records[0][:9] + (("x", object(), 1, "Write", ()),)
    assert _records.encode_pickle([bad]) is None


# -- hostile pickles ----------------------------------------------------------------------------
def sbu(text: str) -> bytes:
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data


def custom_record(data: bytes) -> bytes:
    """A batch of one ``Custom`` record whose data is the pickle opcodes ``data``, written by
    hand (for shapes Python's pickler cannot make, such as nesting past its recursion limit)."""
    record = b"(K\x00K\x00K\x01K\x00K\x00N" + sbu("a.py") + b"K\x01" + sbu("Custom") + b"(" + sbu("n") + data + b"tt"
    return (b"\x80\x05}(" + sbu("contexts") + b"]" + sbu("states") + b"]" + sbu("events") + b"](" + record
            + b"eu.")


def hostile() -> Iterator[str]:
    good = pickle.dumps({"contexts": [], "states": [], "events": []}, 5)
    for n in range(len(good)):
        yield good[:n].decode("latin-1")
    yield custom_record(b"]" * 5000 + b"a" * 4999).decode("latin-1")  # lists 5,000 deep
    shared: Any = [1]
    for _ in range(60):  # each level refers to the one below twice: 2**60 leaves written out
        shared = [shared, shared]
    yield as_pickle({"contexts": [], "states": [], "events": [[0, 0, 1, 0, 0, None, "a", 1, "Custom", ["n", shared]]]})
    cyclic: List[Any] = []
    cyclic.append(cyclic)
    yield as_pickle({"contexts": [], "states": [], "events": [[0, 0, 1, 0, 0, None, "a", 1, "Custom", ["n", cyclic]]]})
    yield as_pickle({"contexts": [], "states": [], "events": [[0, 0, 1, 0, 0, None, "a", 1, "Custom", ["n", {1: 2}]]]})
    yield as_pickle(print)  # a global other than builtins.int
    yield pickle.dumps(b"bytes", 5).decode("latin-1")
    yield pickle.dumps(set(), 5).decode("latin-1")
    yield pickle.dumps(2**100, 5).decode("latin-1")
    yield (b"\x80\x05\x8d" + struct.pack("<Q", 2**63) + b"x.").decode("latin-1")  # a huge length
    yield (b"\x80\x05j" + struct.pack("<I", 2**32 - 1) + b".").decode("latin-1")  # an unknown memo index
    yield "\x80\x05" + "(" * 100_000 + "."  # marks without end
    yield "\x80\x05" + "N" * 100_000 + "."  # a stack left full
    yield "\x80\x05" + "N\x94" * 1_000_000 + "."  # the largest read: a node and a memo entry per byte
    yield "\x80\x05" + "N" * 3_000_000 + "."  # past the largest read
    yield "\x80\x05ae."  # append to nothing
    yield "\x80\x05\u0101."  # a character beyond U+00FF
    yield as_pickle({"contexts": [], "states": [], "events": []}) + "N"  # data after the end
    # One string of 2 MB of control characters (6 bytes of JSON each), memoized, then referred
    # to 40 times: ~480 MB of values' JSON from a 2 MB pickle, past the core's memory.
    text = b"X" + struct.pack("<I", 2_000_000) + b"\x01" * 2_000_000 + b"\x94"
    yield custom_record(b"](" + text + b"h\x00" * 39 + b"e").decode("latin-1")
    rng = random.Random(5)
    base = bytearray(pickle.dumps({"contexts": [{"trace_id": "x"}], "states": [{"clock": [], "locks": []}],
                                   "events": [[0, 0, 1, 0, 0, None, "a.py", 1, "Custom", ["n", [1, 2.5, "é"]]]]}, 5))
    for _ in range(300):
        b = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        yield bytes(b).decode("latin-1")


def test_hostile_pickles_are_refused_without_harm() -> None:
    """Broken, truncated, deep, self-referencing, exponentially shared, foreign: each is an
    error (never a trap, which would turn the SDK off), the instance stays usable, and the
    detector has seen none of it."""
    a, b = pair()
    good = {"contexts": [{"trace_id": "0af76519-16cd-43dd-8448-eb211c80319c", "thread_id": "t", "component": "s#h/1",
                          "span_id": None, "upstream_span_id": None, "id_base": "0" * 32}],
            "states": [{"clock": [], "locks": []}],
            "events": [[0, 0, 1, 0, 0, None, "a.py", 1, "StateChange", ["v", None, 1, "Write"]]]}
    assert feed(a, b, json.dumps(good), as_pickle(good), 50)
    before = b.races()
    refused = 0
    for text in hostile():
        try:
            b.observe_pickle(text, 50)
        except CoreError as e:
            assert b.failure is None, e  # an error, not a trap
            refused += 1
        assert b.races()["stats"]["events"] == before["stats"]["events"] or b.failure is None
    assert refused > 50
    assert b.failure is None
    good["events"][0][2:4] = [2, 1]
    assert feed(a, b, json.dumps(good), as_pickle(good), 50)  # still working, state intact
    assert b.races() == a.races()


def test_the_direct_caller_answers_the_pickle_calls_as_the_api_does() -> None:
    core = CoreInstance()
    core.configure(PROCESS)
    for name in ("encode-batch-pickle", "observe-pickle"):
        assert core._fast[name] is not None
    batch = as_pickle({"contexts": [], "states": [], "events": []})
    for name, args in (("encode-batch-pickle", (batch, 50)), ("observe-pickle", (batch, 0)),
                       ("encode-batch-pickle", ("\x80\x05.", 50)), ("observe-pickle", ("garbage", 0))):
        assert CoreInstance._probe(core._call, name, args) == CoreInstance._probe(core._call_public, name, args)


# -- the flusher --------------------------------------------------------------------------------
def flusher(core: CoreInstance, pickled: bool) -> Flusher:
    return Flusher(deque_of([]), core, None, 50, 3600.0, Stats(), detect=True, pickle=pickled)


def deque_of(items: list) -> Any:
    from collections import deque

    return deque(items)


def test_the_flusher_pickles_by_default_and_falls_back_per_part(quiet) -> None:
    items = [("balance", i) for i in range(400)] + [("odd", float("nan")), ("big", 2**70)] + \
        [("balance", i) for i in range(400)]
    records = record_all(quiet, items)
    a, b = pair()
    with_json, with_pickle = flusher(a, False), flusher(b, True)
    assert with_pickle.pickle and not with_json.pickle
    with_json._encode(records)
    with_pickle._encode(records)
    assert with_pickle.stats.snapshot() == with_json.stats.snapshot()
    assert with_pickle.pickle_refused == 1  # the one part with the NaN and the big int
    assert b.races() == a.races()
    assert isinstance(with_pickle.backlog, Backlog)


def test_no_pickle_when_an_events_file_wants_the_json(tmp_path) -> None:
    from raceway._sink import EventsFile

    sink = EventsFile(str(tmp_path / "events.jsonl"))
    f = Flusher(deque_of([]), CoreInstance(), None, 50, 3600.0, Stats(), detect=True, sink=sink)
    assert not f.pickle


def test_the_public_calling_path_reads_the_pickle_form_alike(quiet) -> None:
    """When the direct caller is off (`_core.CoreInstance._check_direct_calls`), every call goes
    through wasmtime-py's API: the pickle form must give the same answers there."""
    records = record_all(quiet, [("balance", 1), ("é", {"k": [1.5, None]}), ("big", 2**70)])
    a, b = pair()
    b._fast = dict.fromkeys(b._fast)  # as after a disagreement: the public API serves every call
    text, pickled = _records.encode_safely(records[:8]), _records.encode_pickle(records[:8])
    assert pickled is not None
    assert b.observe_pickle(pickled, 50) == a.observe(text, 50)
    assert b.encode_batch_pickle(pickled, 50) == a.encode_batch(text, 50)
    with pytest.raises(CoreError, match="pickle"):
        b.observe_pickle(_records.encode_pickle(records), 50)  # the int beyond 64 bits
    assert b.races() == a.races()
