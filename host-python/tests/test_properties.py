"""Property tests: no input makes value conversion or the header codecs raise, and what they
produce is what the server and other SDKs accept. The codecs run in the real component
(one instance for the module: a trap would fail every later example, loudly)."""

from __future__ import annotations

import base64
import enum
import json
import re
from typing import Any, Iterator, Tuple

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import assert_valid_batch
from raceway import Config, RacewayClient, _values
from raceway._core import CoreError, CoreInstance, CoreTrap
from raceway.testing import CollectorServer

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CORE = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
E2E = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
HEX16 = re.compile(r"[0-9a-f]{16}")

# -- arbitrary user values ---------------------------------------------------------------------
any_text = st.text(st.characters(exclude_categories=()), max_size=40)  # lone surrogates included


class RaisingRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class HugeRepr:
    def __repr__(self) -> str:
        return "r" * 100_000


class WrongRepr:
    def __repr__(self):  # type: ignore[override]
        return 42


class RaisingStr(str):
    def __str__(self) -> str:
        raise ValueError("no str")


class Color(enum.IntEnum):
    RED = 1


class Opaque:
    __slots__ = ()


odd_objects = st.one_of(st.builds(RaisingRepr), st.builds(HugeRepr), st.builds(WrongRepr), st.builds(Opaque), st.builds(object))
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([2**63, 2**64, -(2**63) - 1, Color.RED]),
    st.integers(4301, 4400).map(lambda n: -(10**n)),  # past Python's int-to-str digit limit
    st.floats(allow_nan=True, allow_infinity=True),
    any_text,
    st.integers(4000, 70_000).map(lambda n: "é" * n),  # long strings
    st.binary(max_size=50),
    st.binary(min_size=5000, max_size=6000).map(bytearray),
    any_text.map(RaisingStr),
    odd_objects,
)
keys = st.one_of(any_text, st.integers(), st.floats(allow_nan=True), st.booleans(), st.none(),
                 st.tuples(st.integers(), any_text), st.binary(max_size=8), st.builds(RaisingRepr))
values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=8),
        st.tuples(children, children),
        st.dictionaries(keys, children, max_size=8),
        st.frozensets(st.one_of(st.integers(), any_text, st.none()), max_size=8),
        st.sets(st.one_of(st.integers(), st.floats(allow_nan=True)), max_size=8),
        st.integers(101, 3000).map(lambda n: list(range(n))),  # more items than are kept
    ),
    max_leaves=40,
)

SIZE_BOUND = 12 * _values.MAX_CHARS + 128 * _values.MAX_NODES
"""JSON text one converted value can take at most: its characters (12 each when astral ones
are escaped as surrogate pairs) plus markers."""


def well_formed(out: Any) -> str:
    """The JSON of a converted value (in its record form: `_values.as_json` gives the JSON one)."""
    out = _values.as_json(out)
    text = json.dumps(out, allow_nan=False)  # raises on NaN, infinities, non-str keys, objects
    json.dumps(out, allow_nan=False, ensure_ascii=False).encode("utf-8")  # no lone surrogates
    return text


@FAST
@given(values)
def test_snapshot_never_raises_and_yields_bounded_json(value):
    out = _values.snapshot(value)
    assert len(well_formed(out)) <= SIZE_BOUND


def record_form(out: Any) -> bool:
    """Only strings, numbers, booleans, None and tuples of them, bytes only at a tuple's head
    (an object tuple's mark): what Python's cyclic GC untracks (raceway/_values.py)."""
    if type(out) is tuple:
        head = 1 if out and type(out[0]) is bytes else 0
        return all(record_form(v) for v in out[head:])
    return type(out) in (str, int, float, bool, type(None))


@FAST
@given(values)
def test_snapshot_is_in_the_record_form_the_gc_untracks(value):
    out = _values.snapshot(value)
    assert record_form(out), out


@FAST
@given(values, st.sampled_from(["list", "dict"]))
def test_snapshot_of_cyclic_values(value, shape):
    container: Any = [value] if shape == "list" else {"v": value}
    if shape == "list":
        container.append(container)
        container.append({"again": container})
    else:
        container["self"] = container
        container["nested"] = [container, (container,)]
    out = _values.snapshot(container)
    assert "<cycle>" in well_formed(out)


@FAST
@given(st.one_of(values, any_text))
def test_text_never_raises(value):
    out = _values.text(value)
    assert isinstance(out, str)
    out.encode("utf-8")
    assert len(out) <= _values.MAX_STRING + 30


def test_wide_and_deep_values_stay_within_the_budget():
    wide = [[[list(range(100))] * 100] * 100] * 100  # 10^8 leaves without a total budget
    deep: Any = 1
    for _ in range(500):
        deep = [deep]
    for value in (wide, deep, {i: "x" * 4096 for i in range(100)}):
        out = _values.snapshot(value)
        assert len(well_formed(out)) <= SIZE_BOUND


# -- values through the whole path to the server ------------------------------------------------
@pytest.fixture(scope="module")
def live() -> Iterator[Tuple[RacewayClient, CollectorServer]]:
    with CollectorServer() as server:
        client = RacewayClient(Config(endpoint=server.url, service_name="prop", instance_id="p-1",
                                      flush_interval=0.05, timeout=5.0))
        yield client, server
        client.shutdown(timeout=5)


@E2E
@given(old=values, new=values, args=values, name=st.one_of(any_text, values))
def test_any_values_reach_the_server_in_a_batch_it_accepts(live, old, new, args, name):
    client, server = live
    before = len(server.received)
    with client.trace():
        client.track_state_change(name, old, new, "Write")
        client.track_function_call(name, args)
        client.track_custom(name, new)
        client.track_http_request("POST", name, {"h": name}, old)
    assert client.flush(timeout=30)
    batches = [r.json for r in server.received[before:] if r.path == "/events"]
    assert sum(len(b["events"]) for b in batches) == 4
    for batch in batches:
        assert_valid_batch(batch)
    stats = client.stats()
    assert stats["dropped"] == stats["failed"] == 0


# -- header codecs in the real component --------------------------------------------------------
@pytest.fixture(scope="module")
def core() -> CoreInstance:
    return CoreInstance()


def check_parsed(parsed: dict) -> None:
    assert set(parsed) == {"parent", "tracestate", "upstream", "errors"}
    parent = parsed["parent"]
    if parent is not None:
        assert UUID.fullmatch(parent["trace_id"]) and parent["trace_id"] != "00000000-0000-0000-0000-000000000000"
        assert HEX16.fullmatch(parent["span_id"]) and parent["span_id"] != "0" * 16
    upstream = parsed["upstream"]
    if upstream is not None:
        assert parent is not None
        for component, counter in upstream["clock"]:
            assert isinstance(component, str)
            assert isinstance(counter, int) and not isinstance(counter, bool) and counter >= 0
    assert parsed["tracestate"] is None or isinstance(parsed["tracestate"], str)
    assert all(isinstance(e, str) for e in parsed["errors"])


hex_chars = st.sampled_from("0123456789abcdefABCDEF-x+ ")
traceparents = st.one_of(
    any_text,
    st.text(hex_chars, max_size=60),
    st.from_regex(r"\A[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}\Z"),
    st.from_regex(r"\A00-[0-9a-f]{32}-[0-9a-f]{16}-0[01](-[ -~]{0,10})?\Z"),
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


clock_json = st.fixed_dictionaries({
    "trace_id": st.one_of(st.uuids().map(str), any_text),
    "span_id": st.one_of(st.from_regex(r"\A[0-9a-f]{16}\Z"), any_text),
    "parent_span_id": st.one_of(st.from_regex(r"\A[0-9a-f]{16}\Z"), any_text, st.none()),
    "service": any_text,
    "instance": any_text,
    "clock": st.lists(st.tuples(any_text, st.one_of(st.integers(), st.floats(), st.booleans(), st.none(), any_text)), max_size=5),
})
raceway_clocks = st.one_of(
    any_text,
    clock_json.map(lambda d: "v1;" + b64(json.dumps(d).encode("utf-8", "surrogatepass"))),
    st.recursive(st.none() | st.integers() | any_text, lambda c: st.lists(c) | st.dictionaries(any_text, c)).map(
        lambda v: "v1;" + b64(json.dumps(v).encode("utf-8", "surrogatepass"))),
    st.binary(max_size=200).map(lambda b: "v1;" + b64(b)),
    st.text(st.sampled_from("v1;ABCxyz09-_=+/"), max_size=80),
)
header_values = st.lists(st.one_of(traceparents, raceway_clocks, any_text), max_size=3)
header_maps = st.dictionaries(
    st.one_of(st.sampled_from(["traceparent", "tracestate", "raceway-clock", "Traceparent"]), any_text),
    header_values,
    max_size=5,
)


@given(header_maps)
def test_headers_cross_as_exactly_the_json_json_dumps_writes(headers):
    from raceway._core import _headers_json

    assert _headers_json(headers) == json.dumps(headers, separators=(",", ":"))


@CORE
@given(header_maps)
def test_parse_incoming_never_raises_and_answers_well_formed(core, headers):
    check_parsed(core.parse_incoming(headers))


@CORE
@given(traceparents, st.lists(any_text, max_size=3), raceway_clocks)
def test_parse_incoming_of_the_three_trace_headers(core, traceparent, tracestate, clock):
    check_parsed(core.parse_incoming({"traceparent": [traceparent], "tracestate": tracestate, "raceway-clock": [clock]}))


@CORE
@given(st.text(max_size=300))
def test_parse_incoming_of_any_text_is_an_answer_not_an_error(core, text):
    check_parsed(json.loads(core._call("parse-incoming", text)))


requests = st.fixed_dictionaries({
    "trace_id": st.one_of(st.uuids().map(str), any_text),
    "span_id": st.one_of(st.from_regex(r"\A[0-9a-f]{16}\Z"), any_text),
    "parent_span_id": st.one_of(st.from_regex(r"\A[0-9a-f]{16}\Z"), any_text),
    "flags": st.one_of(st.integers(0, 255), st.integers(), st.none()),
    "tracestate": st.one_of(st.none(), any_text),
    "service": any_text,
    "instance": any_text,
    "clock": st.lists(st.tuples(any_text, st.integers()), max_size=4),
})


@CORE
@given(requests)
def test_encode_outgoing_answers_or_refuses_but_never_fails(core, request):
    try:
        headers = core.encode_outgoing(request)
    except CoreTrap:
        raise
    except CoreError:
        return  # a refusal: the request was malformed
    assert "traceparent" in headers and "raceway-clock" in headers
    check_parsed(core.parse_incoming({k: [v] for k, v in headers.items()}))


clean_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=20)


@CORE
@given(
    trace=st.uuids().filter(lambda u: u.int != 0),
    span=st.from_regex(r"\A[0-9a-f]{16}\Z").filter(lambda s: s != "0" * 16),
    parent_span=st.from_regex(r"\A[0-9a-f]{16}\Z").filter(lambda s: s != "0" * 16),
    service=clean_text,
    instance=clean_text,
    clock=st.dictionaries(clean_text, st.integers(0, 2**53), max_size=5),
)
def test_outgoing_headers_read_back_as_sent(core, trace, span, parent_span, service, instance, clock):
    request = {"trace_id": str(trace), "span_id": span, "parent_span_id": parent_span, "flags": 1,
               "tracestate": None, "service": service, "instance": instance, "clock": list(clock.items())}
    try:
        headers = core.encode_outgoing(request)
    except CoreError:
        assume(False)  # e.g. names the codec refuses; covered by the property above
    parsed = core.parse_incoming({k: [v] for k, v in headers.items()})
    assert parsed["parent"]["trace_id"] == str(trace) and parsed["parent"]["span_id"] == span
    assert parsed["upstream"]["parent_span_id"] == parent_span
    assert dict(map(tuple, parsed["upstream"]["clock"])) == clock
