"""The direct caller must give exactly what wasmtime-py's public calling path gives."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from raceway._core import CoreError, CoreInstance

VECTORS = Path(__file__).resolve().parents[2] / "tests" / "vectors"


@pytest.fixture(scope="module")
def core() -> CoreInstance:
    c = CoreInstance()
    assert all(c._fast[name] is not None for name in ("parse-incoming", "encode-outgoing", "encode-batch"))
    return c


def test_same_answers_as_the_public_path(core):
    for case in json.loads((VECTORS / "incoming.json").read_text())["cases"]:
        arg = json.dumps(case["headers"])
        assert core._call("parse-incoming", arg) == core._call_public("parse-incoming", arg)
    for case in json.loads((VECTORS / "outgoing.json").read_text())["cases"]:
        arg = json.dumps(case["request"])
        assert core._call("encode-outgoing", arg) == core._call_public("encode-outgoing", arg)


def test_errors_surface_the_same_way(core):
    for call in (core._call, core._call_public):
        with pytest.raises(CoreError, match="trace_id"):
            call("encode-outgoing", "{}")


def test_large_and_non_ascii_strings_cross_intact(core):
    value = "é€😀" * 50_000
    headers = {"tracestate": [value], "traceparent": ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]}
    out = json.loads(core._call("parse-incoming", json.dumps(headers, ensure_ascii=False)))
    assert out["parent"]["span_id"] == "b7ad6b7169203331" and out["tracestate"] is None
    assert core._call("parse-incoming", "") == core._call_public("parse-incoming", "")


def test_callers_reuse_their_values_across_many_calls_and_errors(core):
    """Each caller allocates its argument and result values once: answers, errors and the
    freeing of both must stay right call after call (a value freed twice aborts the process)."""
    cases = json.loads((VECTORS / "outgoing.json").read_text())["cases"]
    requests = [json.dumps(case["request"]) for case in cases] + ["{}", "not json"]
    expected = {}
    for r in requests:
        try:
            expected[r] = core._call_public("encode-outgoing", r)
        except CoreError as e:
            expected[r] = str(e)
    for _ in range(200):
        for r in requests:
            try:
                got = core._call("encode-outgoing", r)
            except CoreError as e:
                got = str(e)
            assert got == expected[r]
        assert core._call("parse-incoming", "{}") == core._call_public("parse-incoming", "{}")


def test_a_call_with_the_wrong_number_of_arguments_is_refused(core):
    fast = core._fast["encode-outgoing"]
    with pytest.raises(TypeError, match="expected 1 arguments, got 0"):
        fast()
    with pytest.raises(TypeError):
        fast("{}", "{}")
    assert core._call("parse-incoming", "{}") == core._call_public("parse-incoming", "{}")  # still fine


def test_a_direct_caller_that_disagrees_with_the_api_is_turned_off_with_one_warning(monkeypatch, caplog):
    """The direct caller relies on wasmtime-py's private layout: when its answers differ from
    the public API's at instance creation (here: a wrapped caller that corrupts one function's
    answer), every call of the instance goes through the public API, said once."""
    from raceway import _core, _fastcall

    real = _fastcall.make_caller

    def corrupting(func, store, **options):
        caller = real(func, store, **options)
        if caller is None:
            return None

        def wrong(*args):
            answer = caller(*args)
            return answer.replace("b7ad6b7169203331", "0000000000000bad") if isinstance(answer, str) else answer

        return wrong

    monkeypatch.setattr(_core, "make_caller", corrupting)
    monkeypatch.setattr(_core, "_said", set())
    caplog.set_level(logging.WARNING, logger="raceway")
    core = _core.CoreInstance()
    assert all(fast is None for fast in core._fast.values())
    warnings = [r for r in caplog.records if "disagree" in r.getMessage()]
    assert len(warnings) == 1
    parsed = core.parse_incoming({"traceparent": ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]})
    assert parsed["parent"]["span_id"] == "b7ad6b7169203331"  # right answers, through the API
    _core.CoreInstance()  # a second instance: no second warning
    assert len([r for r in caplog.records if "disagree" in r.getMessage()]) == 1


def test_a_direct_caller_that_raises_is_turned_off(monkeypatch):
    from raceway import _core, _fastcall

    real = _fastcall.make_caller

    def broken(func, store, **options):
        caller = real(func, store, **options)
        if caller is None:
            return None

        def fail(*args):
            raise OSError("a changed C signature")

        return fail

    monkeypatch.setattr(_core, "make_caller", broken)
    monkeypatch.setattr(_core, "_said", set())
    core = _core.CoreInstance()
    assert all(fast is None for fast in core._fast.values())
    assert core.encode_outgoing({"trace_id": "0af76519-16cd-43dd-8448-eb211c80319c", "span_id": "5ca1b17ca84ca5e5",
                                 "parent_span_id": "b7ad6b7169203331", "service": "s", "instance": "i",
                                 "clock": []})["traceparent"].startswith("00-0af76519")
