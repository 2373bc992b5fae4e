"""The Node host (host-node/) against the Python host: the same component must answer both
alike, byte for byte, and a trace must cross from one to the other.

The Node host runs as a subprocess: ``host-node/scripts/cross-host.mjs`` for calls (it answers
the component's text unparsed), ``host-node/examples/traced-server.mjs`` for the trace across
languages. These tests skip when ``node`` is not on PATH or the Node host is not built
(``make node``); they fail when it was built from another component than the one Python loads.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socketserver
import subprocess
import threading
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from conftest import assert_valid_batch
from raceway import _records
from raceway._core import CoreError, CoreInstance, wasm_bytes
from raceway.context import ExecutionContext, State
from raceway.middleware import RacewayWSGIMiddleware
from raceway.testing import CollectorServer

ROOT = Path(__file__).resolve().parent.parent
HOST_NODE = ROOT / "host-node"
VECTORS = ROOT / "tests" / "vectors"
NODE = shutil.which("node")
BUILT = (HOST_NODE / "generated" / "raceway_core.js").is_file() and (HOST_NODE / "node_modules").is_dir()

pytestmark = pytest.mark.skipif(
    NODE is None or not BUILT, reason="no node on PATH, or the Node host is not built (run `make node`)"
)

PROCESS = {"service_name": "cross-host", "environment": "test", "instance_id": "host-1", "process_id": 4242,
           "tags": {"region": "eu", "ünï": "cødé"}}


@pytest.fixture(scope="module", autouse=True)
def same_component() -> None:
    """The transpiled core must come from the very wasm the Python host loads."""
    manifest = json.loads((HOST_NODE / "generated" / "manifest.json").read_text())
    assert manifest["sha256"] == hashlib.sha256(wasm_bytes()).hexdigest(), (
        "host-node/generated/ was transpiled from another component than the Python host's: run `make node`"
    )


def node_calls(calls: List[Dict[str, Any]]) -> List[Tuple[bool, Any]]:
    """Runs ``calls`` on one Node core instance (``{"new": True}`` starts another); answers
    ``(True, raw bytes)`` or ``(False, error message)`` per call."""
    stdin = "".join(json.dumps(c) + "\n" for c in calls).encode()
    done = subprocess.run([NODE, str(HOST_NODE / "scripts" / "cross-host.mjs")], input=stdin,
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    out, pos, answers = done.stdout, 0, []
    while pos < len(out):
        end = out.index(b"\n", pos)
        head = json.loads(out[pos:end])
        pos = end + 1
        if head["ok"]:
            answers.append((True, out[pos:pos + head["bytes"]]))
            pos += head["bytes"] + 1
        else:
            answers.append((False, head["error"]))
    return answers


def split_answer(raw: bytes) -> Tuple[Dict[str, Any], List[bytes]]:
    """An encode-batch answer, split as the Python host splits it (`CoreInstance._bodies`)."""
    summary = CoreInstance._bodies(raw)
    return {k: v for k, v in summary.items() if k != "bodies"}, summary["bodies"]


# -- batches ----------------------------------------------------------------------------------
def python_made_batch() -> str:
    """A batch as the Python host writes it (`_records.encode`), from real contexts and states:
    every kind, non-ASCII and control characters, big and small numbers, nested values, and
    records the core must drop (an unknown kind, a bad access type, a status past u16)."""
    a = ExecutionContext("0af76519-16cd-43dd-8448-eb211c80319c", "b7ad6b7169203331", None, "k=v", 1, (), "svc#host-1")
    b = ExecutionContext("0af76519-16cd-43dd-8448-eb211c80319c", "00f067aa0ba902b7", "b7ad6b7169203331", None, 3,
                         (("node-gateway#node-1/0000abcd", 2),), "svc#host-1")
    s0: State = ((), ())
    s1: State = ((("svc#host-1/" + a.component.rsplit("/", 1)[1], 2), ("node-gateway#node-1/0000abcd", 2)), ("lock-α",))
    t = 1795246001616516000
    records = [
        (a.row, s0, 1, 0, t, None, "app.py", 10, "HttpRequest", ["GET", "/transfer?x=1", {"accept": "*/*"}, None]),
        (a.row, s0, 2, 1, t + 1, None, "app.py", 11, "StateChange", ["alice.balance", None, 1000, "Read"]),
        (a.row, s0, 3, 2, t + 2, 1500, "app.py", 12, "FunctionCall", ["transfer", "bank", {"from": "alice", "amount": 100.5}]),
        (b.row, s1, 1, 0, t + 3, None, "worker.py", 3, "LockAcquire", ["lock-α", "Mutex"]),
        (b.row, s1, 2, 1, t + 4, None, "worker.py", 4, "StateChange", ["alice.balance", 1000, 900, "write"]),
        (b.row, s1, 3, 2, t + 5, None, "worker.py", 5, "LockRelease", ["lock-α", "Mutex"]),
        (b.row, s1, 4, 3, t + 6, None, "worker.py", 6, "Custom", ["naïve ✓ 😀 \u2028", {"nested": [1, [2, [3]]], "n": -2**53,
                                                                                "big": 2**64 - 1, "tab\t": "\x00\x1f"}]),
        (b.row, s1, 5, 4, t + 7, None, "worker.py", 7, "Error", ["ValueError", "bad \"quote\"", ["f.py:1 in g"]]),
        (b.row, s1, 6, 5, t + 8, None, "worker.py", 8, "AsyncSpawn", ["00000000-0000-0000-0000-000000000002", "main"]),
        (b.row, s1, 7, 6, t + 9, None, "worker.py", 9, "AsyncAwait", ["00000000-0000-0000-0000-000000000002", "here"]),
        (b.row, s1, 8, 7, t + 10, None, "worker.py", 10, "MemoryFence", ["SeqCst"]),
        (b.row, s1, 9, 8, t + 11, None, "worker.py", 11, "DatabaseQuery", ["SELECT 1", "db", 1]),
        (b.row, s1, 10, 9, t + 12, None, "worker.py", 12, "DatabaseResult", [3]),
        (b.row, s1, 11, 10, t + 13, None, "worker.py", 13, "NoSuchKind", []),
        (b.row, s1, 12, 11, t + 14, None, "worker.py", 14, "StateChange", ["x", None, 1, "Modify"]),
        (a.row, s0, 4, 3, t + 15, 2_000_000, "app.py", 20, "HttpResponse", [70000, {}, None, 2]),
        (a.row, s0, 5, 4, t + 16, 2_000_000, "app.py", 21, "HttpResponse", [200, {"content-type": "text/plain"}, "ok", 2]),
    ]
    return _records.encode([r[:9] + tuple(r[9]) for r in records])  # flat, as the host's records are


def detector_batches() -> List[str]:
    cases = json.loads((VECTORS / "detector.json").read_text())["cases"]
    return [json.dumps(batch) for case in cases for batch in case["batches"]]


@pytest.fixture(scope="module")
def python_core() -> CoreInstance:
    core = CoreInstance()
    core.configure(PROCESS)
    return core


@pytest.mark.parametrize("per_body", [1, 3, 50])
def test_encode_batch_bodies_are_byte_identical(python_core: CoreInstance, per_body: int) -> None:
    batches = [python_made_batch(), *detector_batches()]
    calls: List[Dict[str, Any]] = [{"call": "configure", "args": [json.dumps(PROCESS)]}]
    calls += [{"call": "encode-batch", "args": [text, per_body]} for text in batches]
    answers = node_calls(calls)[1:]
    assert len(answers) == len(batches)
    bodies_seen = 0
    for text, (ok, raw) in zip(batches, answers):
        assert ok, raw
        expected = python_core.encode_batch(text, per_body)
        summary, bodies = split_answer(raw)
        assert summary == {k: v for k, v in expected.items() if k != "bodies"}
        assert bodies == expected["bodies"]  # bytes == bytes: byte for byte
        bodies_seen += len(bodies)
    assert bodies_seen >= len(batches)  # the comparison saw real bodies, at least one per batch
    first = python_core.encode_batch(batches[0], per_body)
    assert first["dropped"] == 3 and first["events"] == 14, first["errors"]


def test_encode_batch_refusals_agree(python_core: CoreInstance) -> None:
    bad = ["not json", '{"contexts": 1}', ""]
    answers = node_calls([{"call": "configure", "args": [json.dumps(PROCESS)]}]
                         + [{"call": "encode-batch", "args": [text, 10]} for text in bad])[1:]
    for text, (ok, message) in zip(bad, answers):
        with pytest.raises(CoreError) as refused:
            python_core.encode_batch(text, 10)
        assert not ok
        assert message == str(refused.value), text


def test_headers_and_detector_answers_are_identical(python_core: CoreInstance) -> None:
    """parse-incoming (every incoming vector, errors included), encode-outgoing (the exact
    header strings) and the detector's whole findings (every detector case): the same text."""
    incoming = json.loads((VECTORS / "incoming.json").read_text())["cases"]
    outgoing = json.loads((VECTORS / "outgoing.json").read_text())["cases"]
    detector = json.loads((VECTORS / "detector.json").read_text())["cases"]
    calls: List[Dict[str, Any]] = [{"call": "parse-incoming", "args": [json.dumps(c["headers"])]} for c in incoming]
    calls += [{"call": "encode-outgoing", "args": [json.dumps(c["request"])]} for c in outgoing]
    for case in detector:
        calls.append({"new": True})
        calls.append({"call": "configure", "args": [json.dumps({**PROCESS, "service_name": "svc"})]})
        calls += [{"call": "observe", "args": [json.dumps(b), 0]} for b in case["batches"]]
        calls.append({"call": "races", "args": []})
    answers = iter(node_calls(calls))

    for case in incoming:
        ok, raw = next(answers)
        assert ok and json.loads(raw) == python_core.parse_incoming(case["headers"]), case["name"]
    for case in outgoing:
        ok, raw = next(answers)
        lines = dict(line.split(": ", 1) for line in raw.decode().split("\n"))
        assert ok and lines == python_core.encode_outgoing(case["request"]), case["name"]
    from raceway._detector import Detector

    for case in detector:
        python = Detector()
        next(answers)  # configure
        for batch in case["batches"]:
            ok, raw = next(answers)
            assert ok and json.loads(raw) == python.observe(json.dumps(batch), {**PROCESS, "service_name": "svc"})
        ok, raw = next(answers)
        assert ok and json.loads(raw) == python.findings(), case["name"]


# -- one trace across Node and Python ---------------------------------------------------------
class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


class _Threaded(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


@pytest.fixture
def python_service(make_client: Any, collector: CollectorServer) -> Iterator[Tuple[str, Any]]:
    """A small Python service under raceway's WSGI middleware, reporting to the collector."""
    client = make_client(endpoint=collector.url, service_name="py-ledger", instance_id="py-1")
    balance = {"alice": 1000}

    def app(environ: Dict[str, Any], start_response: Any) -> List[bytes]:
        client.track_state_change("alice.balance", None, balance["alice"], "Read")
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"balance": balance["alice"], "path": environ["PATH_INFO"]}).encode()]

    server = make_server("127.0.0.1", 0, RacewayWSGIMiddleware(app, client=client),
                         server_class=_Threaded, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", client
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def node_gateway(python_service: Tuple[str, Any], collector: CollectorServer) -> Iterator[str]:
    """host-node/examples/traced-server.mjs in front of the Python service."""
    url, _ = python_service
    proc = subprocess.Popen(
        [NODE, str(HOST_NODE / "examples" / "traced-server.mjs"), "--downstream", url, "--collector", collector.url,
         "--service", "node-gateway", "--instance", "node-1"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read().decode(errors="replace") if proc.stderr else "no output"
        yield f"http://127.0.0.1:{json.loads(line)['port']}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait()


def test_one_trace_spans_node_and_python(node_gateway: str, python_service: Tuple[str, Any],
                                          collector: CollectorServer) -> None:

    with urllib.request.urlopen(f"{node_gateway}/balance/alice", timeout=30) as answer:
        assert answer.status == 200
        node = json.loads(answer.read())
    assert node["downstream_status"] == 200
    assert json.loads(node["downstream_body"])["balance"] == 1000

    _, client = python_service
    client.flush(timeout=10)

    def by(service: str) -> List[Dict[str, Any]]:
        return [e for e in collector.events if e["metadata"]["service_name"] == service]

    assert collector.wait_for(lambda s: len(by("py-ledger")) >= 3 and len(by("node-gateway")) >= 2, timeout=20), \
        collector.events
    for batch in collector.batches:
        assert_valid_batch(batch)

    python_events, node_events = by("py-ledger"), by("node-gateway")
    # Python continues the trace Node started, in the span Node minted for it, under Node's span.
    assert {e["trace_id"] for e in python_events} == {node["trace_id"]}
    assert {e["metadata"]["distributed_span_id"] for e in python_events} == {node["downstream_span_id"]}
    assert {e["metadata"]["upstream_span_id"] for e in python_events} == {node["span_id"]}
    # ...and after Node's call: every Python event's clock knows Node's strand at the call.
    for event in python_events:
        clock = dict((c, n) for c, n in event["causality_vector"])
        assert clock.get(node["component"], 0) >= 2, event["causality_vector"]
    # Node's own events, encoded by the same core through encodeBatch, are the same trace.
    assert {e["trace_id"] for e in node_events} == {node["trace_id"]}
    assert {e["metadata"]["distributed_span_id"] for e in node_events} == {node["span_id"]}
    kinds = [next(iter(e["kind"])) if isinstance(e["kind"], dict) else e["kind"] for e in node_events]
    assert kinds[:1] == ["HttpRequest"] and "HttpResponse" in kinds
