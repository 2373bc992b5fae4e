"""The golden vectors against the other Raceway SDKs' header formats (docs/distributed.md,
"Other SDKs"), read off their public source (mode7labs/raceway, sdks/typescript, sdks/go,
sdks/rust):

- each incoming case marked with an ``sdk`` is exactly what that SDK's encoder makes of its
  ``encoded_from`` object: the same JSON text (Go's ``encoding/json`` and Rust's ``serde_json``
  sort a map's keys; TypeScript keeps insertion order) in base64url without padding;
- every outgoing header of ours passes each SDK's decoder, as strict as that decoder is, and
  each reads from it the trace, the spans, the service and the clock we meant.

The decoders are restated here from their documented behaviour (no code of theirs is run).
Where Node is installed, the TypeScript side is also checked with Node's own ``Buffer`` and
``JSON``."""

from __future__ import annotations

import base64
import binascii
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

VECTORS = Path(__file__).parent / "vectors"
INCOMING = [c for c in json.loads((VECTORS / "incoming.json").read_text())["cases"] if "sdk" in c]
OUTGOING = json.loads((VECTORS / "outgoing.json").read_text())["cases"]
SDKS = ("typescript", "go", "rust")


# -- their encoders -------------------------------------------------------------------------------
def encode(sdk: str, payload: Dict[str, Any]) -> str:
    if sdk == "typescript":  # JSON.stringify: insertion order, compact
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    else:  # a map through encoding/json or serde_json (no preserve_order): keys sorted, compact
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        if sdk == "go":  # encoding/json escapes HTML characters
            text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return "v1;" + base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("case", INCOMING, ids=lambda c: c["name"])
def test_incoming_vectors_are_what_their_encoders_make(case: Dict[str, Any]) -> None:
    assert case["sdk"] in SDKS
    assert case["headers"]["raceway-clock"] == [encode(case["sdk"], case["encoded_from"])]
    traceparent = case["headers"]["traceparent"][0]
    assert traceparent.endswith("-01") and traceparent.startswith("00-")  # flags: always 01


# -- their decoders -------------------------------------------------------------------------------
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64_decode(sdk: str, data: str) -> Optional[bytes]:
    """Go's RawURLEncoding and Rust's URL_SAFE_NO_PAD refuse padding and any character outside
    the URL-safe alphabet; Rust (base64 0.21) also refuses non-zero trailing bits. Node's
    Buffer decodes leniently."""
    if sdk == "typescript":
        return base64.urlsafe_b64decode(data.rstrip("=") + "=" * (-len(data.rstrip("=")) % 4))
    if not _B64URL.fullmatch(data) or len(data) % 4 == 1:
        return None
    raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    if sdk == "rust" and base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != data:
        return None  # non-canonical trailing bits
    return raw


def decode(sdk: str, headers: Dict[str, str]) -> Optional[Dict[str, Any]]:
    """What the SDK's incoming parser keeps, or None where it refuses the clock header."""
    parts = headers["traceparent"].strip().split("-")
    hexa = re.compile(r"[0-9a-fA-F]+")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16 or not all(map(hexa.fullmatch, parts[1:3])):
        return None
    value = headers["raceway-clock"]
    if not value.startswith("v1;"):
        return None
    raw = b64_decode(sdk, value[3:])
    if raw is None:
        return None
    try:
        payload = json.loads(raw.decode("utf-8"))
    except ValueError:
        return None
    clock: List[List[Any]] = []
    for entry in payload.get("clock") or []:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            continue
        n = entry[1]
        if isinstance(n, bool) or not isinstance(n, (int, float)):
            continue
        if sdk == "rust" and not (isinstance(n, int) and n >= 0):
            continue  # as_u64
        if sdk == "go":
            n = int(float(n))  # float64, then uint64
        clock.append([entry[0], n])
    for field in ("trace_id", "span_id", "parent_span_id", "service", "instance"):
        if sdk == "go" and not isinstance(payload.get(field), (str, type(None))):
            return None  # encoding/json into a string field (null leaves it empty)
    return {"trace_id": payload.get("trace_id"), "span_id": payload.get("span_id"),
            "parent_span_id": payload.get("parent_span_id"), "service": payload.get("service"),
            "instance": payload.get("instance"), "clock": clock, "traceparent_span": parts[2]}


@pytest.mark.parametrize("sdk", SDKS)
@pytest.mark.parametrize("case", OUTGOING, ids=lambda c: c["name"])
def test_our_headers_are_read_by_each_sdk_as_we_meant_them(case: Dict[str, Any], sdk: str) -> None:
    request, headers = case["request"], case["expect"]
    got = decode(sdk, headers)
    assert got is not None, f"{sdk} refuses {case['name']}"
    assert got["trace_id"] == request["trace_id"]
    assert got["span_id"] == got["traceparent_span"] == request["span_id"]
    assert got["parent_span_id"] == request["parent_span_id"]
    assert (got["service"], got["instance"]) == (request["service"], request["instance"])
    sent = {c: n for c, n in request["clock"]}
    assert bool(got["clock"]) == bool(sent) and all(sent[c] == n for c, n in got["clock"])  # as we had them
    if request.get("component"):
        assert got["clock"][0][0] == request["component"]  # our own entry first
    assert headers["traceparent"].split("-")[1] == request["trace_id"].replace("-", "")
    assert len(headers["raceway-clock"]) <= 3 + 4 * 3072 // 3 + 3  # docs/distributed.md: 3,072 bytes of JSON at most
    assert "note" in case


def test_their_decoders_as_restated_refuse_what_they_refuse() -> None:
    """The restated decoders are as strict as theirs: padding and foreign characters (Go,
    Rust), non-canonical trailing bits (Rust), a wrong prefix (all)."""
    good = OUTGOING[0]["expect"]
    padded = dict(good, **{"raceway-clock": good["raceway-clock"] + "=" * (-len(good["raceway-clock"][3:]) % 4 or 4)})
    assert decode("go", padded) is None and decode("rust", padded) is None and decode("typescript", padded)
    last = good["raceway-clock"][-1]
    bits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    if len(good["raceway-clock"][3:]) % 4:  # a partial last group: flip a trailing bit
        flipped = dict(good, **{"raceway-clock": good["raceway-clock"][:-1] + bits[bits.index(last) ^ 1]})
        assert decode("rust", flipped) is None and decode("go", flipped) is not None
    for sdk in SDKS:
        assert decode(sdk, dict(good, **{"raceway-clock": "v2;" + good["raceway-clock"][3:]})) is None
    with pytest.raises(binascii.Error):
        base64.urlsafe_b64decode("A")  # (what a length of 1 mod 4 is to every decoder)


@pytest.mark.skipif(shutil.which("node") is None, reason="Node is not installed")
def test_node_reads_our_headers_and_writes_its_own_as_the_vectors_say(tmp_path: Path) -> None:
    script = r"""
const fs = require('fs');
const [outgoing, incoming] = [process.argv[1], process.argv[2]].map(p => JSON.parse(fs.readFileSync(p, 'utf8')));
const read = outgoing.map(c => {
  const v = c.expect['raceway-clock'];
  const p = JSON.parse(Buffer.from(v.substring(3), 'base64url').toString('utf8'));
  const clock = p.clock.filter(i => Array.isArray(i) && i.length === 2 && typeof i[0] === 'string' && typeof i[1] === 'number');
  return {p, same: clock.length === p.clock.length,
          reencoded: 'v1;' + Buffer.from(JSON.stringify(p), 'utf8').toString('base64url') === v};
});
const written = incoming.filter(c => c.sdk === 'typescript').map(c =>
  'v1;' + Buffer.from(JSON.stringify(c.encoded_from), 'utf8').toString('base64url') === c.headers['raceway-clock'][0]);
console.log(JSON.stringify({read, written}));
"""
    out_file, in_file = tmp_path / "out.json", tmp_path / "in.json"
    out_file.write_text(json.dumps(OUTGOING))
    in_file.write_text(json.dumps(INCOMING))
    done = subprocess.run(["node", "-e", script, str(out_file), str(in_file)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    for case, seen in zip(OUTGOING, answer["read"]):
        assert seen["same"] and seen["p"]["span_id"] == case["request"]["span_id"]
        # Byte for byte what the TypeScript SDK's encoder makes of the same object.
        assert seen["reencoded"], case["name"]
    assert answer["written"] and all(answer["written"])
