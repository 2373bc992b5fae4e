"""The golden vectors in tests/vectors/, checked against the built component through the
Python host's boundary (the Rust side checks the same files natively in
core-wasm/tests/vectors.rs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raceway._core import CoreError, CoreInstance
from raceway.context import merge_clocks

VECTORS = Path(__file__).parent / "vectors"


def load(name: str) -> dict:
    return json.loads((VECTORS / name).read_text())


@pytest.fixture(scope="module")
def core() -> CoreInstance:
    return CoreInstance()


@pytest.mark.parametrize("case", load("incoming.json")["cases"], ids=lambda c: c["name"])
def test_incoming(core: CoreInstance, case: dict) -> None:
    got = core.parse_incoming(case["headers"])
    for key in ("parent", "tracestate", "upstream"):
        assert got[key] == case["expect"][key], key
    if "expect_errors" in case:
        assert len(got["errors"]) == case["expect_errors"], got["errors"]


@pytest.mark.parametrize("case", load("outgoing.json")["cases"], ids=lambda c: c["name"])
def test_outgoing(core: CoreInstance, case: dict) -> None:
    assert core.encode_outgoing(case["request"]) == case["expect"]


@pytest.mark.parametrize("case", load("outgoing.json")["errors"], ids=lambda c: c["name"])
def test_outgoing_refuses(core: CoreInstance, case: dict) -> None:
    with pytest.raises(CoreError):
        core.encode_outgoing(case["request"])


@pytest.mark.parametrize("case", load("clock.json")["cases"])
def test_python_clock_merge_matches_the_core_rule(case: dict) -> None:
    # Live contexts merge clocks in Python (a join must not cost a component call); this pins
    # the Python twin to the same rule as the core's VectorClock::merge.
    merged = merge_clocks(tuple(map(tuple, case["a"])), case["b"])
    assert [list(p) for p in merged] == case["merge"]


@pytest.mark.parametrize("case", load("detector.json")["cases"], ids=lambda c: c["name"])
def test_detector(case: dict) -> None:
    """Each case's batches through one detector in the component; its races as the file
    states them (the Rust side runs the same cases natively)."""
    from raceway._detector import Detector

    detector = Detector()
    for batch in case["batches"]:
        summary = detector.observe(json.dumps(batch), {"service_name": "svc", "environment": "", "instance_id": "",
                                                       "process_id": 0, "tags": {}})
        assert summary["dropped"] == 0, summary["errors"]
    got = [
        {"kind": r.kind, "severity": r.severity, "variable": r.variable, "count": r.count, "locations": list(r.locations)}
        for r in detector.races()
    ]
    assert got == case["expect"], case["description"]


@pytest.mark.parametrize("case", load("outgoing.json")["cases"], ids=lambda c: c["name"])
def test_a_filled_header_template_is_the_cores_own_encoding(core: CoreInstance, case: dict) -> None:
    """propagation_headers fills the core's template per call instead of a component call:
    the result must be byte for byte the core's own encoding of the same request. A request
    that names no component gets its first clock entry as the sender's (the template needs
    one), and the core's direct encoding of that request is the reference."""
    import json as _json

    from raceway._headers import OutgoingTemplate

    request = dict(case["request"])
    clock = [list(p) for p in request.get("clock") or []]
    if not request.get("component"):
        if not clock:
            clock = [["sender#host/00000001", 1]]
        request["component"] = clock[0][0]
    request["clock"] = clock
    own = request["component"]
    counter = max((n for c, n in clock if c == own), default=0)
    expected = core.encode_outgoing(request)
    if case["request"].get("component"):
        assert expected == case["expect"]
    template_request = {k: v for k, v in request.items() if k != "span_id"}
    template_request["clock"] = [[c, n] for c, n in clock if c != own]
    template = OutgoingTemplate(core.outgoing_template(_json.dumps(template_request)))
    assert template.headers(request["span_id"], counter) == expected


def _cut_to_the_senders_entry(batches: list) -> list:
    """The same batches, with every spawned context's inherited clock cut to its parent's
    entry alone: what a receiver gets from a header cut to its bound (the sender's own entry
    first, docs/distributed.md)."""
    import copy

    def as_uuid(h: str) -> str:
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    spawned_by = {}
    for batch in batches:
        for event in batch["events"]:
            if event[8] == "AsyncSpawn":
                spawned_by[event[9][0]] = batch["contexts"][event[0]]["component"]
    parent_of = {c["component"]: spawned_by[as_uuid(c["id_base"])]
                 for batch in batches for c in batch["contexts"] if as_uuid(c["id_base"]) in spawned_by}
    cut = copy.deepcopy(batches)
    for batch in cut:
        owner = {}
        for event in batch["events"]:
            owner.setdefault(event[1], batch["contexts"][event[0]]["component"])
        for i, state in enumerate(batch["states"]):
            parent = parent_of.get(owner.get(i))
            if parent is not None:
                state["clock"] = [entry for entry in state["clock"] if entry[0] == parent]
    return cut


@pytest.mark.parametrize("case", load("detector.json")["cases"], ids=lambda c: c["name"])
def test_detector_verdicts_do_not_need_more_than_the_senders_entry(case: dict) -> None:
    """Bounded clocks give up no verdict: with every inherited clock cut to the sender's
    entry, the detector rebuilds the rest (spawn and join events, the sender's clock at the
    call) and reports exactly the same races."""
    from raceway._detector import Detector

    def verdicts(batches: list) -> list:
        detector = Detector()
        for batch in batches:
            detector.observe(json.dumps(batch))
        return [(r.kind, r.severity, r.variable, r.count, r.locations) for r in detector.races()]

    assert verdicts(_cut_to_the_senders_entry(case["batches"])) == verdicts(case["batches"])
