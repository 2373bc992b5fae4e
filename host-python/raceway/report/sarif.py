"""The races as a SARIF 2.1.0 log, for code-scanning systems (GitHub, GitLab, Azure DevOps...).

One rule per race kind and severity (``lost-update/critical``, ``data-race/critical``,
``data-race/warning``). One result per distinct race: its primary location is the later access
(a data race's second access, a lost update's stale write), ``relatedLocations`` are the other
accesses, a ``codeFlows`` entry has one thread flow per strand with its accesses in order (and
their stacks), ``partialFingerprints["racewayRace/v1"]`` is a hash of the kind, the variable
and the access locations (not times, strands or values), so the same race found again by
another run dedupes. Files become URIs: an absolute path a ``file://`` URI, a relative path a
relative reference, percent-encoded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Iterable, List, Tuple, Union
from urllib.parse import quote

from ..races import Access, Race
from . import _explain
from ._format import clean, frame_location, headline, ordered, split_location, strand_letters, strand_of

SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
FINGERPRINT_KEY = "racewayRace/v1"

_RULES: Dict[Tuple[str, str], Tuple[str, str, str]] = {
    ("lost-update", "CRITICAL"): (
        "LostUpdate",
        "Lost update",
        "A strand read a variable, another strand wrote it, then the first strand wrote it "
        "based on the value it had read: the other strand's write was lost.",
    ),
    ("data-race", "CRITICAL"): (
        "DataRaceWriteWrite",
        "Write/write data race",
        "Two strands wrote one variable with no happens-before ordering between the writes.",
    ),
    ("data-race", "WARNING"): (
        "DataRaceReadWrite",
        "Read/write data race",
        "One strand read a variable another strand wrote, with no happens-before ordering between the two accesses.",
    ),
}
_LEVEL = {"CRITICAL": "error", "WARNING": "warning"}
_DRIVE = re.compile(r"^[A-Za-z]:/")


def rule_id(race: Race) -> str:
    """``<kind>/<severity>`` in lower case, e.g. ``data-race/warning``."""
    return f"{clean(race.kind, 40)}/{clean(race.severity, 20).lower()}"


def fingerprint(race: Race) -> str:
    """32 hex digits identifying a distinct race: kind, variable and access locations."""
    parts = [race.kind, race.variable, *race.locations]
    return hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def artifact_uri(file: str) -> str:
    """A file path as a SARIF artifact URI (see the module doc)."""
    path = file.replace("\\", "/")
    if _DRIVE.match(path):
        return "file:///" + quote(path, safe="/:")
    if path.startswith("/"):
        return "file://" + quote(path, safe="/")
    return quote(path, safe="/")


def _physical(location: str, message: str = "") -> Dict[str, Any]:
    file, line = split_location(location)
    physical: Dict[str, Any] = {"artifactLocation": {"uri": artifact_uri(file)}}
    if line is not None and line >= 1:
        physical["region"] = {"startLine": line}
    result: Dict[str, Any] = {"physicalLocation": physical}
    if message:
        result["message"] = {"text": message}
    return result


def _strand(race: Race, access: Access) -> str:
    letter = strand_letters(race).get(strand_of(access), "?")
    return f"strand {letter} ({clean(access.thread_id, 80)})"


def _access_message(race: Race, access: Access) -> str:
    return f"{_strand(race, access)} {_explain.describe_access(access)} at {clean(access.location)}"


def _is_time(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return False
    return True


def _code_flow(race: Race) -> Dict[str, Any]:
    flows: Dict[str, Dict[str, Any]] = {}
    for order, access in enumerate(race.accesses, start=1):
        key = strand_of(access)
        flow = flows.setdefault(
            key, {"id": clean(access.thread_id, 200), "message": {"text": _strand(race, access)}, "locations": []}
        )
        step: Dict[str, Any] = {
            "location": _physical(access.location, _access_message(race, access)),
            "executionOrder": order,
        }
        if _is_time(access.timestamp):
            step["executionTimeUtc"] = access.timestamp
        if access.stack:
            step["stack"] = {"frames": [{"location": _physical(frame_location(f), clean(f))} for f in access.stack]}
        flow["locations"].append(step)
    return {"message": {"text": _explain.missing(race)}, "threadFlows": list(flows.values())}


def _result(race: Race, rule_index: int) -> Dict[str, Any]:
    accesses = race.accesses
    message = (
        f'{headline(race)} on "{clean(race.variable)}" ({race.count}x): {_explain.missing(race)} {_explain.fix(race)}'
    )
    result: Dict[str, Any] = {
        "ruleId": rule_id(race),
        "ruleIndex": rule_index,
        "level": _LEVEL.get(race.severity, "note"),
        "message": {"text": message},
        "partialFingerprints": {FINGERPRINT_KEY: fingerprint(race)},
        "occurrenceCount": max(1, race.count),
        "properties": {
            "variable": race.variable,
            "kind": race.kind,
            "count": race.count,
            "firstSeen": race.first_seen,
            "lastSeen": race.last_seen,
            "strands": sorted({a.thread_id for a in accesses}),
            "traceIds": sorted({a.trace_id for a in accesses}),
        },
    }
    if accesses:
        primary = accesses[-1]
        result["locations"] = [_physical(primary.location)]
        result["relatedLocations"] = [
            dict(_physical(a.location, _access_message(race, a)), id=i) for i, a in enumerate(accesses[:-1], start=1)
        ]
        result["codeFlows"] = [_code_flow(race)]
    return result


def _rule(key: Tuple[str, str], rid: str) -> Dict[str, Any]:
    name, short, full = _RULES.get(key, ("Race", f"{rid} race", f"A race of kind {rid}."))
    return {
        "id": rid,
        "name": name,
        "shortDescription": {"text": short},
        "fullDescription": {"text": full},
        "help": {"text": full + " See the result's message for the ordering that was missing and how to fix it."},
        "defaultConfiguration": {"level": _LEVEL.get(key[1], "note")},
        "properties": {"tags": ["concurrency", "race-condition"], "precision": "high"},
    }


def render(races: Iterable[Race], *, tool_version: str) -> Dict[str, Any]:
    """A SARIF 2.1.0 log (a JSON-ready dict) with one run of tool ``raceway`` `tool_version`.

    Results are ordered like the text report (lost updates, CRITICAL, WARNING)."""
    races = ordered(races)
    keys: List[Tuple[str, str]] = list(_RULES)
    for race in races:
        if (race.kind, race.severity) not in keys:
            keys.append((race.kind, race.severity))
    ids = [f"{clean(kind, 40)}/{clean(sev, 20).lower()}" for kind, sev in keys]
    index = {key: i for i, key in enumerate(keys)}
    return {
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "raceway",
                        "version": str(tool_version),
                        "rules": [_rule(k, rid) for k, rid in zip(keys, ids, strict=True)],
                    }
                },
                "results": [_result(r, index[(r.kind, r.severity)]) for r in races],
            }
        ],
    }


def write(path: Union[str, Path], races: Iterable[Race], tool_version: str) -> None:
    """Writes `render` as UTF-8 JSON to `path`, atomically (a temporary file then a rename).

    Raises OSError if the file cannot be written."""
    path = Path(path)
    data = json.dumps(render(races, tool_version=tool_version), indent=2, ensure_ascii=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(data + "\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


__all__ = ["FINGERPRINT_KEY", "SCHEMA_URI", "artifact_uri", "fingerprint", "render", "rule_id", "write"]
