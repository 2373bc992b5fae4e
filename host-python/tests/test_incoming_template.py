"""The incoming-header template (raceway/_headers.py `IncomingTemplate`, the WIT's
``incoming-template``) answers exactly what the core's ``parse-incoming`` answers, whenever it
answers at all: over every incoming vector, the headers the core itself writes, the bounds
of the canonical shape, and generated headers (valid, near-valid and hostile). And it does
answer for the headers Raceway services send each other, so those cost no component call.
Everything runs against the real component."""

from __future__ import annotations

import base64
import json
import logging
import weakref
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raceway import _incoming
from raceway._core import CoreInstance
from raceway._headers import NO_TRACEPARENT, IncomingTemplate
from raceway._incoming import context_from_headers, gather, template_of
from raceway.middleware import RacewayASGIMiddleware

VECTORS = Path(__file__).resolve().parents[2] / "tests" / "vectors"
TRACE = "0af76519-16cd-43dd-8448-eb211c80319c"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def core() -> CoreInstance:
    return CoreInstance()


@pytest.fixture(scope="module")
def template(core: CoreInstance) -> IncomingTemplate:
    return IncomingTemplate(core.incoming_template())


def same_as_core(template: IncomingTemplate, core: CoreInstance, headers: Dict[str, Any]) -> Optional[dict]:
    """The template's answer, checked against the core's; None when it leaves them to the core."""
    mine = template.parse(headers)
    if mine is not None:
        assert mine == core.parse_incoming(headers), headers
    return dict(mine) if mine is not None else None


def clock_header(obj: Any, *, padded: bool = False, prefix: str = "v1;", ensure_ascii: bool = False) -> str:
    raw = json.dumps(obj, separators=(",", ":"), ensure_ascii=ensure_ascii).encode("utf-8")
    text = base64.urlsafe_b64encode(raw).decode()
    return prefix + (text if padded else text.rstrip("="))


def outgoing(core: CoreInstance, **fields: Any) -> Dict[str, List[str]]:
    """The headers the core writes for one call, as a receiving middleware gathers them."""
    request = {"trace_id": TRACE, "span_id": "5ca1b17ca84ca5e5", "parent_span_id": "b7ad6b7169203331",
               "service": "banking-api", "instance": "host-1", "clock": [["banking-api#host-1/00000001", 2]],
               "component": "banking-api#host-1/00000001", **fields}
    return gather(core.encode_outgoing(request).items())


# -- vectors and the core's own headers ---------------------------------------------------------
def test_every_incoming_vector_reads_as_the_core_reads_it(template, core):
    answered = []
    for case in json.loads((VECTORS / "incoming.json").read_text())["cases"]:
        if same_as_core(template, core, case["headers"]) is not None:
            answered.append(case["name"])
    assert "shared vector" in answered and "no headers: new trace, no errors" in answered
    assert len(answered) >= 10, answered


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"tracestate": "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"},
        {"flags": 0},
        {"flags": 3},
        {"service": "é" * 128, "instance": "€" * 85},  # 256 and 255 bytes
        {"clock": [[f"svc#host/{i:08x}", 10**19 - 1 - i] for i in range(63)], "component": "svc#host/own"},
        {"clock": [], "component": "c"},
        {"service": "", "instance": ""},
    ],
)
def test_headers_the_core_writes_are_read_by_the_template(template, core, fields):
    headers = outgoing(core, **fields)
    assert same_as_core(template, core, headers) is not None


@pytest.mark.parametrize(
    "fields",
    [
        {"service": 'quote"d'},  # escaped in the JSON: the core reads it
        {"instance": "tab\there"},
        {"service": "é" * 129},  # 258 bytes: the core refuses it
        {"clock": [["c" * 257, 1]], "component": "own"},  # the core drops the entry, with a note
        {"clock": [[f"x/{i}", 1] for i in range(70)], "component": "own"},  # cut to 64, with a note
        {"clock": [["c", 10**19]], "component": "own"},  # 20 digits
    ],
)
def test_what_needs_the_core_is_left_to_it(template, core, fields):
    headers = outgoing(core, **fields)
    assert template.parse(headers) is None
    assert core.parse_incoming(headers)["parent"] is not None


def test_the_bounds_of_the_canonical_shape(template, core):
    """Each bound of the patterns, at it and one past it, against the core."""
    base = {"trace_id": TRACE, "span_id": "b7ad6b7169203331", "parent_span_id": "5ca1b17ca84ca5e5",
            "service": "s", "instance": "i", "clock": [["s#i", 2]]}

    def read(**changes: Any) -> Optional[dict]:
        return same_as_core(template, core, {"traceparent": [TRACEPARENT],
                                             "raceway-clock": [clock_header({**base, **changes})]})

    assert read() is not None
    assert read(service="a" * 256) is not None and read(service="a" * 257) is None
    assert read(instance="é" * 128) is not None and read(instance="a" + "é" * 128) is None
    assert read(clock=[["a" * 256, 1]]) is not None and read(clock=[["a" * 257, 1]]) is None
    assert read(clock=[["", 1]]) is None
    assert read(clock=[[f"c{i}", i] for i in range(64)]) is not None
    assert read(clock=[[f"c{i}", i] for i in range(65)]) is None
    assert read(clock=[["c", 2**63]]) is not None and read(clock=[["c", 2**64 - 1]]) is None
    assert read(clock=[["c", 2**64]]) is None
    assert read(clock=[["a", 1], ["a", 2]]) is not None  # a repeated component, as the core keeps it
    assert read(parent_span_id=None) is not None
    assert read(parent_span_id="0" * 16) is None and read(span_id="0" * 16) is None
    assert read(trace_id="1" * 8 + TRACE[8:]) is None  # another trace: the core says so
    assert read(trace_id=TRACE.upper()) is None
    encoded = clock_header(base)
    for value in (encoded + "=", clock_header(base, padded=True), encoded.replace("v1;", "v2;"), " " + encoded,
                  encoded[:-1], encoded + "A", encoded.replace("-", "+"), clock_header(base, ensure_ascii=True)):
        same_as_core(template, core, {"traceparent": [TRACEPARENT], "raceway-clock": [value]})
    for tracestate in ("a=1", "a=1,b=2", "a=1, b=2", "a=1,,b=2", "1tenant@sys=v", "a= b", "a=b ", "A=1",
                       ",".join(f"k{i}=v" for i in range(32)), ",".join(f"k{i}=v" for i in range(33)),
                       "k" * 256 + "=v", "k" * 257 + "=v", "k=" + "v" * 256, "k=" + "v" * 257):
        same_as_core(template, core, {"traceparent": [TRACEPARENT], "tracestate": [tracestate]})
    assert same_as_core(template, core, {"traceparent": [TRACEPARENT], "tracestate": ["a=1", "b=2"]}) is None
    for flags in ("00", "03", "0a", "10", "ff"):
        assert same_as_core(template, core, {"traceparent": [TRACEPARENT[:-2] + flags]}) is not None


def test_names_and_value_lists_outside_the_canonical_form_are_left_to_the_core(template, core):
    for headers in ({"TraceParent": [TRACEPARENT]}, {"traceparent": [TRACEPARENT], "x": ["1"]},
                    {"traceparent": [TRACEPARENT, TRACEPARENT]}, {"traceparent": []}, {"traceparent": TRACEPARENT},
                    {"traceparent": [TRACEPARENT], "tracestate": []}, {"traceparent": [1]}):
        assert template.parse(headers) is None
        core.parse_incoming(headers)  # and the core answers them
    assert template.read({"tracestate": ["a=1"], "raceway-clock": ["garbage"]}) == NO_TRACEPARENT
    assert same_as_core(template, core, {"tracestate": ["a=1"]}) is not None


# -- generated headers ---------------------------------------------------------------------------
HEX = "0123456789abcdef"


def hex_text(n: int) -> st.SearchStrategy[str]:
    return st.one_of(st.text(HEX, min_size=n, max_size=n), st.just("0" * n),
                     st.text(HEX + "AF-x", min_size=n - 1, max_size=n + 1))


canonical_traceparents = st.builds("00-{}-{}-{}".format, st.text(HEX, min_size=32, max_size=32),
                                   st.text(HEX, min_size=16, max_size=16), st.text(HEX, min_size=2, max_size=2))
traceparents = st.one_of(
    canonical_traceparents,
    canonical_traceparents,
    st.builds("{}-{}-{}-{}{}".format, st.sampled_from(["00", "01", "cc", "ff", "0", "0g"]), hex_text(32), hex_text(16),
              st.one_of(st.text(HEX, min_size=2, max_size=2), st.text(max_size=3)),
              st.sampled_from(["", "", "", "-", "-x", ".", " ", "\t"])),
    st.builds(lambda s: f"{s}{TRACEPARENT}{s}", st.sampled_from([" ", "\t", "", "\n"])),
    st.text(max_size=60),
)
names = st.one_of(st.text(st.sampled_from('abé€😀"\\\x01\x7f#/- '), max_size=8),
                  st.builds(lambda c, n: c * n, st.sampled_from(["a", "é", "😀"]), st.integers(60, 260)))
counters = st.one_of(st.integers(0, 2**64 + 5), st.sampled_from([10**19 - 1, 10**19, 2**64 - 1, 2**64, -1, 1.5, True]))
clocks = st.lists(st.one_of(st.tuples(names, counters).map(list), st.just([]), st.just(["c", 1, 2])), max_size=70)
span_ids = st.one_of(hex_text(16), st.none())


@st.composite
def raceway_clocks(draw: st.DrawFn) -> str:
    obj: Dict[str, Any] = {
        "trace_id": draw(st.one_of(st.just(TRACE), st.just(TRACE.upper()), st.just("0" * 8 + TRACE[8:]),
                                   st.text(HEX + "-", min_size=36, max_size=36))),
        "span_id": draw(hex_text(16)),
        "parent_span_id": draw(span_ids),
        "service": draw(names),
        "instance": draw(names),
        "clock": draw(clocks),
    }
    for key in draw(st.lists(st.sampled_from(sorted(obj)), max_size=2, unique=True)):
        del obj[key]
    if draw(st.booleans()):
        obj = dict(sorted(obj.items()))  # another key order
    if draw(st.integers(0, 9)) == 0:
        obj["extra"] = 1
    value = clock_header(obj, padded=draw(st.booleans()), ensure_ascii=draw(st.booleans()),
                         prefix=draw(st.sampled_from(["v1;", "v1;", "v1;", "v2;", "", " v1;"])))
    cut = draw(st.integers(0, 3))
    return value[:-cut] if cut and draw(st.booleans()) else value


tracestates = st.one_of(
    st.lists(st.builds("{}={}".format, st.from_regex(r"[a-z0-9@*/_-]{1,6}", fullmatch=True),
                       st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), min_size=0, max_size=5)),
             max_size=34).map(",".join),
    st.text(max_size=20),
)


@st.composite
def header_sets(draw: st.DrawFn) -> Dict[str, Any]:
    headers: Dict[str, Any] = {}
    if draw(st.integers(0, 5)):
        repeated = draw(st.integers(0, 9)) == 0
        headers["traceparent"] = draw(st.lists(traceparents, min_size=1, max_size=2 if repeated else 1))
    if draw(st.booleans()):
        headers["tracestate"] = draw(st.lists(tracestates, min_size=1, max_size=2))
    if draw(st.booleans()):
        repeated = draw(st.integers(0, 9)) == 0
        headers["raceway-clock"] = draw(st.lists(raceway_clocks(), min_size=1, max_size=2 if repeated else 1))
    if draw(st.integers(0, 9)) == 0:
        headers[draw(st.sampled_from(["Traceparent", "x-other", "RACEWAY-CLOCK"]))] = [TRACEPARENT]
    return headers


@PROPERTY
@given(header_sets())
def test_generated_headers_read_as_the_core_reads_them(template, core, headers):
    same_as_core(template, core, headers)


@PROPERTY
@given(service=names, instance=names, clock=st.lists(st.tuples(names, st.integers(0, 2**64 - 1)).map(list), max_size=8),
       tracestate=st.one_of(st.none(), tracestates), flags=st.integers(0, 255))
def test_generated_outgoing_headers_read_as_the_core_reads_them(
    template, core, service, instance, clock, tracestate, flags
):
    """What the core writes from any state, fed back: mostly canonical, the rest the core's."""
    headers = outgoing(core, service=service, instance=instance, clock=clock + [["own", 1]], component="own",
                       tracestate=tracestate, flags=flags)
    read = same_as_core(template, core, headers)
    plain = all(
        len(n.encode()) <= 256 and not any(c in n for c in '"\\') and all(ord(c) >= 0x20 for c in n)
        for n in [service, instance] + [c for c, _ in clock]
    )
    if plain and all(c and n < 10**19 for c, n in clock) and not tracestate:
        assert read is not None, headers  # what Raceway services send each other takes the fast path


# -- the template in the client -------------------------------------------------------------------
def test_contexts_from_the_template_equal_contexts_from_the_core(make_client, monkeypatch):
    client = make_client(endpoint=None)
    cases = [case["headers"] for case in json.loads((VECTORS / "incoming.json").read_text())["cases"]]
    cases.append(outgoing(client._codec, tracestate="a=1"))
    cases.append(outgoing(client._codec, parent_span_id="5ca1b17ca84ca5e5"))

    def fields(ctx: Any) -> tuple:
        return (ctx.trace_id, ctx.span_id, ctx.upstream_span_id, ctx.tracestate, ctx.flags, ctx.state[0])

    read = [context_from_headers(client, headers) for headers in cases]
    monkeypatch.setattr(_incoming, "template_of", lambda codec: None)  # the core reads every header
    by_core = [context_from_headers(client, headers) for headers in cases]
    continued = 0
    for mine, theirs, headers in zip(read, by_core, cases, strict=True):
        if client._codec.parse_incoming(headers)["parent"] is None:  # a new trace, each time another
            assert mine.trace_id != theirs.trace_id
            assert fields(mine)[2:] == fields(theirs)[2:] == (None, None, 1, ())
        else:
            continued += 1
            assert fields(mine) == fields(theirs), headers
    assert continued > 10


def test_a_request_with_canonical_headers_makes_no_core_call(make_client):
    """Through the ASGI middleware on a real event loop: the template reads the headers."""
    import asyncio

    client = make_client(endpoint=None)
    codec = client._codec
    calls: List[str] = []
    real = codec._call

    def counting(name: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return real(name, *args, **kwargs)

    codec._call = counting  # type: ignore[method-assign]
    seen: List[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["state"]["raceway_context"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = RacewayASGIMiddleware(app, client=client)
    headers = [(name.encode(), values[0].encode()) for name, values in outgoing(codec).items()]

    async def serve() -> None:
        async def receive() -> Any:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            pass

        for _ in range(3):
            await middleware({"type": "http", "method": "GET", "path": "/", "headers": headers}, receive, send)

    asyncio.run(serve())
    assert calls.count("incoming-template") == 1  # once, with its probes
    assert calls.count("parse-incoming") == len(_incoming.PROBES)
    assert [ctx.upstream_span_id for ctx in seen] == ["b7ad6b7169203331"] * 3
    assert seen[0].state[0] == (("banking-api#host-1/00000001", 2),)


@pytest.fixture
def fresh_template_cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(_incoming, "_last", (None, None))
    monkeypatch.setattr(_incoming, "_templates", weakref.WeakKeyDictionary())
    yield


def test_a_template_that_disagrees_with_the_core_is_not_used(fresh_template_cache, monkeypatch, caplog):
    core = CoreInstance()
    real = IncomingTemplate.read

    def wrong(self: IncomingTemplate, headers: Any) -> Any:
        found = real(self, headers)
        return (found[0], "0000000000000bad", *found[2:]) if isinstance(found, tuple) else found

    monkeypatch.setattr(IncomingTemplate, "read", wrong)
    caplog.set_level(logging.WARNING, logger="raceway")
    other = CoreInstance()
    assert template_of(core) is None
    assert template_of(other) is None
    assert template_of(core) is None  # decided once per codec, whichever was asked last
    assert len([r for r in caplog.records if "disagrees" in r.getMessage()]) == 2


def test_two_codecs_keep_their_own_templates(fresh_template_cache):
    first, second = CoreInstance(), CoreInstance()
    made = [template_of(first), template_of(second)]
    assert all(isinstance(t, IncomingTemplate) for t in made) and made[0] is not made[1]
    assert [template_of(first), template_of(second), template_of(first)] == [made[0], made[1], made[0]]


def test_a_core_without_a_template_leaves_every_header_to_it(fresh_template_cache, make_client, monkeypatch):
    client = make_client(endpoint=None)

    def refuse(self: CoreInstance) -> Any:
        raise RuntimeError("no template")

    monkeypatch.setattr(CoreInstance, "incoming_template", refuse)
    assert template_of(client._codec) is None
    ctx = context_from_headers(client, {"traceparent": [TRACEPARENT]})
    assert (ctx.trace_id, ctx.span_id) == (TRACE, "b7ad6b7169203331")


def test_gather_reads_every_value_of_each_trace_header_whatever_the_case_and_type():
    pairs = [(b"TraceParent", b"a"), ("TRACESTATE", "s=1"), (b"host", b"h"), (b"tracestate", "s=2"),
             ("raceway-clock", b"v1;x\xe9"), (b"trace-parent", b"no"), (b"traceparent\xe9", b"no"), ("x", "y")]
    assert gather(pairs) == {"traceparent": ["a"], "tracestate": ["s=1", "s=2"], "raceway-clock": ["v1;x\xe9"]}
    assert gather([]) == {}
