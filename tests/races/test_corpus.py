"""The race corpus: small concurrent programs with known verdicts (tests/races/*.py).

Each program defines ``run(client)`` and ``EXPECT``, a list of ``(kind, severity, variable)``
with one entry per distinct race it must produce (``[]``: none). Each runs against a fresh
in-process detector (``Config(endpoint=None)``), and the findings must be exactly ``EXPECT``:
every expected race found, nothing else (no false positive on the synchronised programs), each
distinct race (kind, variable, locations) reported once with a count of at least one, and
every access of a race made by the corpus's own code, from different strands where the rule
says so.

A program may set ``XFAIL = "reason"`` when its verdict is wrong because of the detector or
the host, not the program: it stays, as ``xfail(strict=True)``, and starts failing when fixed.

Test ids carry the verdict, e.g. ``queue_plain=>data-race:WARNING:job0.payload+...`` or
``queue_tracked=>no-race``, so a failure names the program and what it should have found.
"""

from __future__ import annotations

import collections
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import List, Tuple

import pytest

from raceway import Config, RacewayClient

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # the programs import _corpus_support

KINDS = {"data-race", "lost-update"}
SEVERITIES = {"CRITICAL", "WARNING"}
WRITES = {"Write", "AtomicWrite", "AtomicRMW"}


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"raceway_corpus.{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _programs() -> List[ModuleType]:
    found = []
    for path in sorted(HERE.glob("*.py")):
        if path.name.startswith(("_", "test_", "conftest")):
            continue
        found.append(_load(path))
    return found


PROGRAMS = _programs()


def _verdict(expect: List[Tuple[str, str, str]]) -> str:
    return "+".join(":".join(e) for e in expect) if expect else "no-race"


def _param(module: ModuleType):
    name = module.__name__.rsplit(".", 1)[-1]
    marks = []
    reason = getattr(module, "XFAIL", None)
    if reason:
        marks.append(pytest.mark.xfail(strict=True, reason=reason))
    return pytest.param(module, id=f"{name}=>{_verdict(module.EXPECT)}", marks=marks)


def test_every_program_is_well_formed():
    assert len(PROGRAMS) >= 20
    for module in PROGRAMS:
        name = module.__file__
        assert (module.__doc__ or "").strip(), f"{name}: no docstring saying what it shows"
        assert callable(getattr(module, "run", None)), f"{name}: no run(client)"
        for entry in module.EXPECT:
            kind, severity, variable = entry
            assert kind in KINDS and severity in SEVERITIES and isinstance(variable, str), f"{name}: {entry!r}"
            if kind == "lost-update":
                assert severity == "CRITICAL", f"{name}: every lost update is CRITICAL"


def _distinct_key(race) -> tuple:
    """What makes a race distinct: kind, variable, and its places (a data race's two sides in
    either order are one race)."""
    places = tuple((a.location, a.access_type) for a in race.accesses)
    if race.kind == "data-race":
        places = tuple(sorted(places))
    return race.kind, race.variable, places


@pytest.mark.parametrize("program", [_param(m) for m in PROGRAMS])
def test_program_verdict(program: ModuleType) -> None:
    name = program.__name__.rsplit(".", 1)[-1]
    client = RacewayClient(Config(endpoint=None, service_name=f"corpus-{name}", report_races_at_shutdown=False))
    try:
        program.run(client)
        assert client.flush(timeout=10), "the recorded events did not reach the detector"
        races = client.races(timeout=10)
        report = client.race_report(timeout=10)
        stats = client.stats()
    finally:
        client.shutdown(timeout=5)
    # The verdict is about what the program recorded: all of it, none of it lost on the way.
    assert stats["recorded"] > 0 and stats["dropped"] == 0 and stats["failed"] == 0, stats

    found = sorted((r.kind, r.severity, r.variable) for r in races)
    expected = sorted(tuple(e) for e in program.EXPECT)
    missing = list((collections.Counter(expected) - collections.Counter(found)).elements())
    extra = list((collections.Counter(found) - collections.Counter(expected)).elements())
    assert not missing and not extra, (
        f"{name}: missing {missing}, unexpected {extra}\n{report}"
    )

    keys = [_distinct_key(r) for r in races]
    duplicates = [k for k, n in collections.Counter(keys).items() if n > 1]
    assert not duplicates, f"{name}: a distinct race reported more than once: {duplicates}\n{report}"

    for race in races:
        assert race.count >= 1, race
        expected_sides = 2 if race.kind == "data-race" else 3
        assert len(race.accesses) == expected_sides, race
        for access in race.accesses:
            file = access.location.rsplit(":", 1)[0]
            assert Path(os.path.realpath(file)).parent == HERE, f"{name}: an access outside the corpus: {access.location}"
        sides = race.accesses
        if race.kind == "data-race":
            assert sides[0].thread_id != sides[1].thread_id, race
            writes = [a.access_type in WRITES for a in sides]
            assert any(writes), race
            assert not all(a.access_type.startswith("Atomic") for a in sides), race
            assert race.severity == ("CRITICAL" if all(writes) else "WARNING"), race
        else:
            read, other, write = sides
            assert read.access_type == "Read" and write.access_type == "Write" and other.access_type == "Write", race
            assert read.thread_id == write.thread_id != other.thread_id, race
