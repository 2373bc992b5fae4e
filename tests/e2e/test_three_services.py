"""One order through three services, each its own process on 127.0.0.1 (issue 13): gateway
(Flask) -> inventory (FastAPI; 500 concurrent asyncio tasks joined before its call) ->
payment (Flask under the WSGI middleware), and gateway -> payment, all reporting to one
collector (tests/e2e/_three_services.py). The gateway calls with `client.request()`, the
inventory with httpx under `raceway.instrument_http`.

Checked on what arrived at the collector and what each callee received:
- every event has the caller's trace id;
- the spans form the call tree (each callee's ``distributed_span_id`` is the span its caller
  minted for it, its ``upstream_span_id`` the caller's span);
- every pair of events that the calls order (what the caller did before a call, the joined
  tasks included, against everything the callee and its own callees did) is ordered the same
  way by the vector clocks: directly, or for a joined task that left the clock (retired,
  docs/distributed.md) through the join event; and no pair is ordered the other way;
- every call succeeds, every header stays within its bound, and the API key reaches the
  collector only.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import requests

from raceway.testing import CollectorServer

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from _three_services import BINS, KEY  # noqa: E402

TRACE_HEX = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACE = "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"
ROOT_SPAN = "00f067aa0ba902b7"
TRACESTATE = "rojo=00f067aa0ba902b7,vendor@tenant=x"
CLOCK_HEADER_BOUND = 4099  # docs/distributed.md: 3 + 4/3 x 3,072 bytes of JSON


def start(role: str, tmp_path: Path, *args: str) -> Tuple[subprocess.Popen, str]:
    port_file = tmp_path / f"{role}.port"
    proc = subprocess.Popen([sys.executable, str(HERE / "_three_services.py"), role, str(port_file), *args],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (port_file.exists() and port_file.read_text()):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, f"{role} did not start"
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port_file.read_text()}"


def stop(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    code = proc.wait(timeout=60)
    errors = proc.stderr.read()
    assert code == 0 and "Traceback" not in errors and "raceway" not in errors, errors


# -- reading the events ---------------------------------------------------------------------------
def kind(e: Dict[str, Any]) -> str:
    return next(iter(e["kind"]))


def clock(e: Dict[str, Any]) -> Dict[str, int]:
    return {c: n for c, n in e["causality_vector"]}


def hb(a: Dict[str, Any], b: Dict[str, Any]) -> bool:
    """The Raceway server's rule: every component of a is in b with a counter <=, one <."""
    ca, cb = clock(a), clock(b)
    return all(c in cb and n <= cb[c] for c, n in ca.items()) and any(n < cb[c] for c, n in ca.items())


def decode(value: str) -> Dict[str, Any]:
    payload = value[3:]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def component(e: Dict[str, Any]) -> str:
    """The event's own clock component: ``<service>#<instance>/<the context's suffix>``."""
    meta = e["metadata"]
    return f"{meta['service_name']}#{meta['instance_id']}/{meta['thread_id'].rsplit('-', 1)[1]}"


def at(e: Dict[str, Any]) -> int:
    return clock(e)[component(e)]


def knows(b: Dict[str, Any], a: Dict[str, Any]) -> bool:
    """Whether b's clock knows a: a happened before (or is) b."""
    return clock(b).get(component(a), 0) >= at(a)


def test_an_order_through_three_services_is_one_causal_trace(tmp_path):
    with CollectorServer() as collector:
        payment, payment_url = start("payment", tmp_path, collector.url)
        inventory, inventory_url = start("inventory", tmp_path, collector.url, payment_url)
        gateway, gateway_url = start("gateway", tmp_path, collector.url, inventory_url, payment_url)
        try:
            answer = requests.post(f"{gateway_url}/checkout", json={"orderId": 7}, timeout=120,
                                   headers={"traceparent": f"00-{TRACE_HEX}-{ROOT_SPAN}-01", "tracestate": TRACESTATE})
        finally:
            for proc in (gateway, inventory, payment):
                stop(proc)
        events = collector.events
        batches = [r for r in collector.received if r.path == "/events"]

    # Every call succeeded.
    assert answer.status_code == 200, answer.text
    seen = answer.json()
    assert seen["status"] == [200, 200] and seen["inventory"]["status"] == 200
    assert seen["inventory"]["pickers"] == BINS  # every task had a context of its own
    assert seen["inventory"]["at_once"] == BINS  # and all ran at once

    gw, inv = seen["received"], seen["inventory"]["received"]
    authorize, charge = seen["inventory"]["payment"]["received"], seen["payment"]["received"]

    # The headers each callee received: one traceparent of the trace, the tracestate, a bounded
    # raceway-clock whose first entry is the caller's own; never the API key.
    calls = {"inventory": (gw, inv), "authorize": (inv, authorize), "charge": (gw, charge)}
    clocks = {}
    for name, (caller, callee) in calls.items():
        headers = callee["headers"]
        (traceparent,) = headers["traceparent"]
        (raceway_clock,) = headers["raceway-clock"]
        assert headers["tracestate"] == [TRACESTATE], name
        assert len(traceparent) == 55 and traceparent.split("-")[1] == TRACE_HEX, name
        assert len(raceway_clock) < CLOCK_HEADER_BOUND, (name, len(raceway_clock))
        assert not callee["key_seen"], name
        header = decode(raceway_clock)
        assert header["span_id"] == traceparent.split("-")[2] == callee["context"]["span_id"], name
        assert header["parent_span_id"] == caller["context"]["span_id"] == callee["context"]["upstream"], name
        assert header["clock"][0][0] == caller["context"]["component"], name
        clocks[name] = header
    assert len(decode(authorize["headers"]["raceway-clock"][0])["clock"]) <= 33  # joined tasks retired

    # One trace; the spans form the call tree.
    assert events and {e["trace_id"] for e in events} == {TRACE}
    span = {"gateway": gw["context"]["span_id"], "inventory": inv["context"]["span_id"],
            "authorize": authorize["context"]["span_id"], "charge": charge["context"]["span_id"]}
    assert span["gateway"] == ROOT_SPAN and len(set(span.values())) == 4
    parent_of = {span["gateway"]: None, span["inventory"]: span["gateway"],
                 span["authorize"]: span["inventory"], span["charge"]: span["gateway"]}
    for e in events:
        meta = e["metadata"]
        assert meta["distributed_span_id"] in parent_of, meta
        assert meta.get("upstream_span_id") == parent_of[meta["distributed_span_id"]], meta
    by_span: Dict[str, List[Dict[str, Any]]] = {}
    for e in events:
        by_span.setdefault(e["metadata"]["distributed_span_id"], []).append(e)
    assert {e["metadata"]["service_name"] for e in by_span[span["inventory"]]} == {"inventory"}
    assert {e["metadata"]["service_name"] for e in by_span[span["charge"]]} == {"payment"}
    outgoing = [(kind(e), e["kind"][kind(e)]) for e in sorted(by_span[span["inventory"]], key=at)
                if kind(e) in ("HttpRequest", "HttpResponse") and e["metadata"]["thread_id"] == inv["context"]["thread_id"]]
    assert outgoing == [("HttpRequest", {"method": "POST", "url": "/reserve", "headers": {}, "body": None}),
                        ("HttpRequest", {"method": "POST", "url": f"{payment_url}/authorize", "headers": {}, "body": None}),
                        ("HttpResponse", outgoing[2][1]), ("HttpResponse", outgoing[3][1])]
    assert outgoing[2][1]["status"] == outgoing[3][1]["status"] == 200  # the call's, then the request's

    # The order the calls make, against the clocks. a -> b when b's clock knows a's own entry
    # at a's counter (Fidge and Mattern); a joined task that left its joiner's clock (retired)
    # is known through the join: b knows the joiner at the join, and the join knows a.
    below = {span["inventory"]: [span["inventory"], span["authorize"]], span["charge"]: [span["charge"]],
             span["authorize"]: [span["authorize"]]}
    checked = through_join = 0
    for name, (caller, callee) in calls.items():
        at_call = clocks[name]["clock"][0][1]
        strand = sorted((e for e in events if e["metadata"]["thread_id"] == caller["context"]["thread_id"]), key=at)
        before = [e for e in strand if at(e) < at_call]
        after_call = [e for e in strand if at(e) > at_call]
        joins = {e["kind"]["AsyncAwait"]["awaited_at"]: e for e in before if kind(e) == "AsyncAwait"}
        joined = [e for e in events if e["metadata"]["thread_id"] in joins]
        callee_events = [e for s in below[callee["context"]["span_id"]] for e in by_span[s]]
        assert before and callee_events and (name != "authorize" or len(joins) == BINS)
        for a in before + joined:
            join = joins.get(a["metadata"]["thread_id"])
            for b in callee_events:
                assert not knows(a, b), (name, a, b)  # never the other way round
                if not knows(b, a):
                    assert join is not None and knows(join, a) and knows(b, join), (name, a, b)
                    through_join += 1
                if name != "authorize":  # nothing was cut: the server's rule orders them too
                    assert hb(a, b), (name, a, b)
                checked += 1
        for x in after_call:  # the response carries no clock back: x is never before the callee's
            for b in callee_events:
                assert not knows(b, x), (name, x, b)
    assert checked > BINS * 3 and through_join > 0  # some tasks were retired, and still ordered

    # The SDK's own delivery: never traced, the key only there.
    assert batches
    for r in batches:
        assert r.headers.get("authorization") == f"Bearer {KEY}"
        assert not {"traceparent", "tracestate", "raceway-clock"} & set(r.headers)
