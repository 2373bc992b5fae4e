"""The TypedDicts of `raceway._core_types` against the real component's answers: every key the
core writes is declared, every declared key is written, and each value has the declared type.
A field added to, renamed in or dropped from the Rust without the Python side fails here."""

from __future__ import annotations

import json
import sys
import typing
from pathlib import Path
from typing import Any, List, Literal, Tuple, Union, get_args, get_origin, get_type_hints, is_typeddict

import pytest

from raceway import _core_types as t
from raceway._core import CoreInstance

sys.path.insert(0, str(Path(__file__).parent))
from _report_data import batches  # noqa: E402

REQUEST = {"trace_id": "0af76519-16cd-43dd-8448-eb211c80319c", "span_id": "5ca1b17ca84ca5e5",
           "parent_span_id": "b7ad6b7169203331", "service": "s", "instance": "i",
           "clock": [["s#i/1", 2], ["t#j/2", 7]], "component": "s#i/1", "tracestate": "a=1"}


def mismatches(value: Any, tp: Any, where: str = "$") -> List[str]:
    """Where ``value`` (decoded JSON, or the host's additions to it) is not a ``tp``."""
    if tp is t.JSONValue:
        json.dumps(value)
        return []
    if is_typeddict(tp):
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__}, not an object"]
        hints = get_type_hints(tp)
        out = [f"{where}.{k}: not declared" for k in value.keys() - hints.keys()]
        out += [f"{where}.{k}: missing" for k in tp.__required_keys__ - value.keys()]
        for k in value.keys() & hints.keys():
            out += mismatches(value[k], hints[k], f"{where}.{k}")
        return out
    origin, args = get_origin(tp), get_args(tp)
    if origin is Union:
        failures = [mismatches(value, a, where) for a in args]
        return [] if any(not f for f in failures) else [f"{where}: {value!r} is none of {args}"]
    if origin is Literal:
        return [] if value in args else [f"{where}: {value!r} not in {args}"]
    if origin in (typing.NotRequired, typing.Required):
        return mismatches(value, args[0], where)
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: {type(value).__name__}, not a list"]
        return [m for i, v in enumerate(value) for m in mismatches(v, args[0], f"{where}[{i}]")]
    if origin is tuple:  # a JSON array whose positions have their own types
        if not isinstance(value, list) or len(value) != len(args):
            return [f"{where}: {value!r} is not a {len(args)}-element array"]
        return [m for i, (v, a) in enumerate(zip(value, args, strict=True)) for m in mismatches(v, a, f"{where}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__}, not an object"]
        return [m for k, v in value.items() for m in mismatches(v, args[1], f"{where}.{k}")]
    if tp is type(None):
        return [] if value is None else [f"{where}: {value!r} is not null"]
    if tp is int and isinstance(value, bool):
        return [f"{where}: a boolean, not an integer"]
    return [] if isinstance(value, tp) else [f"{where}: {type(value).__name__}, not {tp.__name__}"]


@pytest.fixture(scope="module")
def core() -> CoreInstance:
    return CoreInstance()


def test_the_checker_can_fail() -> None:
    assert mismatches({"head": "a", "middle": "b"}, t.ClockTemplateJSON) == ["$.tail: missing"]
    assert mismatches({"head": "a", "middle": "b", "tail": 1, "x": 0}, t.ClockTemplateJSON) == [
        "$.x: not declared", "$.tail: int, not str"]
    assert mismatches([["c", "1"]], List[t.ClockEntryJSON]) == ["$[0][1]: str, not int"]
    assert mismatches(None, Tuple[str, str]) != []


def test_propagation_answers(core: CoreInstance) -> None:
    headers = core.encode_outgoing(dict(REQUEST))
    incoming = core.parse_incoming({name: [value] for name, value in headers.items()})
    assert incoming["parent"] is not None and incoming["upstream"] is not None  # every field filled
    assert mismatches(incoming, t.IncomingJSON) == []
    refused = core.parse_incoming({"traceparent": ["00-nonsense"]})
    assert refused["errors"] and mismatches(refused, t.IncomingJSON) == []
    template = core.outgoing_template(json.dumps({k: v for k, v in REQUEST.items() if k != "span_id"}))
    assert mismatches(template, t.OutgoingTemplateJSON) == []
    assert template["tracestate"] == "a=1"
    assert mismatches(core.incoming_template(), t.IncomingTemplateJSON) == []


def test_batch_answers(core: CoreInstance) -> None:
    first, second = batches()
    core.configure(first["process"])
    assert mismatches(first["process"], t.ProcessConfigJSON) == []
    encoded = core.encode_batch(json.dumps(first), 3)
    assert len(encoded["bodies"]) == len(encoded["counts"]) > 1
    assert mismatches(encoded, t.EncodedBatch) == []
    bad = dict(second, events=second["events"] + [[0, 0, 9, 8, 1, None, "f.py", 1, "NoSuchKind", []]])
    summary = core.observe(json.dumps(bad), 0)
    assert summary["dropped"] == 1 and summary["errors"] and summary["counts"] == []
    assert mismatches(summary, t.EncodedBatch) == []


def test_findings_answer(core: CoreInstance) -> None:
    options: t.DetectorOptionsJSON = {"max_races": 10, "max_value_bytes": 64}
    core.reset_detector(dict(options))
    first, second = batches()
    core.configure(first["process"])
    for batch in (first, second):
        core.observe(json.dumps(batch), 0)
    findings = core.races()
    assert findings["races"] and findings["races"][0]["accesses"]
    assert mismatches(findings, t.FindingsJSON) == []
