"""The sandbox and fail-open, with the real component really failing: its fuel or memory is
shrunk (`raceway.testing.core_limits`) so calls trap inside wasmtime, or its bytes are not a
component at all. The application must not notice: requests keep answering, tracking calls
never raise, and the SDK logs exactly one error."""

from __future__ import annotations

import json
import logging
import socketserver
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, List, Tuple
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from raceway import _core
from raceway._core import CoreInstance, CoreTrap
from raceway.middleware import RacewayWSGIMiddleware
from raceway.testing import core_limits

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def raceway_errors(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [r.getMessage() for r in caplog.records if r.name == "raceway" and r.levelno >= logging.ERROR]


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


@pytest.fixture
def app_server(make_client, collector) -> Iterator[Tuple[object, str]]:
    """A small WSGI service on 127.0.0.1, instrumented by the middleware, whose handler also
    records events and builds propagation headers for a downstream call."""
    client = make_client(endpoint=collector.url, flush_interval=0.02)

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        client.track_function_call("handle", {"path": path})
        client.track_state_change("hits", 1, 2, "Write")
        headers = client.propagation_headers({"x-request": "1"}) if path.startswith("/call") else {}
        body = json.dumps({"ok": True, "headers": sorted(headers)}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    httpd = make_server("127.0.0.1", 0, RacewayWSGIMiddleware(app, client=client),
                        server_class=_ThreadingWSGIServer, handler_class=_Quiet)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield client, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def get(url: str, with_trace: bool) -> Tuple[int, dict]:
    request = urllib.request.Request(url, headers={"traceparent": TRACEPARENT} if with_trace else {})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return resp.status, json.loads(resp.read())


@pytest.mark.parametrize("first", ["flusher", "request thread"])
def test_a_core_that_traps_leaves_the_apps_requests_answering(app_server, collector, caplog, first):
    """``first``: where the trap happens first. Requests without trace headers to ``/plain``
    make no core call on the request thread (the middleware only parses headers that came), so
    the first call to trap is the flusher's encode-batch. Requests with a ``traceparent`` to
    ``/call`` trap on the request's own thread: the handler's propagation headers
    (outgoing-template, or encode-outgoing), or parse-incoming (a canonical ``traceparent`` is
    read from the core's template, made before the fault, so it calls nothing)."""
    client, url = app_server
    on_request_thread = first == "request thread"
    during = "/call" if on_request_thread else "/plain"
    assert all(get(f"{url}/call/{i}", True) == (200, {"ok": True, "headers": ["raceway-clock", "traceparent", "x-request"]})
               for i in range(3))
    assert client.flush(timeout=10) and collector.events  # working before the fault

    caplog.set_level(logging.DEBUG, logger="raceway")
    with core_limits(fuel_base=1_000, fuel_per_char=0):  # the next core call runs out of fuel
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda i: get(f"{url}{during}/{i}", on_request_thread), range(40)))
        client.flush(timeout=10)
        after = [get(f"{url}/call/{i}", True) for i in range(10)]

    assert all(status == 200 and body["ok"] for status, body in answers + after)
    # Once off, propagation headers degrade to the caller's extra headers.
    assert after[-1][1]["headers"] == ["x-request"]
    errors = raceway_errors(caplog)
    assert len(errors) == 1, errors
    assert "core failed" in errors[0] and "fuel" in errors[0]
    trapped = ("parse-incoming", "encode-outgoing", "outgoing-template") if on_request_thread else ("encode-batch", "observe", "encode-batch-pickle", "observe-pickle")
    assert any(f"call {name}:" in errors[0] for name in trapped), errors[0]
    assert client._codec is None and not client._flusher.alive
    recorded = client.stats()["recorded"]
    with client.trace():  # tracking is a no-op now, and never raises
        client.track_state_change("x", 1, 2, "Write")
        client.track_function_call("f", {"a": object()})
        client.track_error(ValueError("boom"))
    assert client.stats()["recorded"] == recorded
    stats = client.stats()
    assert stats["recorded"] == stats["sent"] + stats["dropped"] + stats["failed"]


def test_a_core_out_of_memory_turns_the_client_off_with_one_error(make_client, collector, caplog):
    with core_limits(memory=2 * 1024 * 1024):  # the instances made now may grow to 2 MiB
        # The flusher hands the core the log in parts sized by batch_size (`_records.part_size`):
        # at 500, a part is more than the core can hold with its answer in 2 MiB.
        client = make_client(endpoint=collector.url, batch_size=500)
    caplog.set_level(logging.DEBUG, logger="raceway")
    with client.trace():
        for i in range(300):  # ~1.2 MB of record log: the core cannot hold it and its output
            client.track_state_change("blob", None, "y" * 4000, "Write")
    assert client.flush(timeout=10) is False
    errors = raceway_errors(caplog)
    assert len(errors) == 1 and "core failed" in errors[0]
    stats = client.stats()
    assert stats["failed"] == 300 and stats["sent"] == 0
    with client.trace():
        client.track_state_change("after", 1, 2, "Write")
        assert client.propagation_headers({"x": "1"}) == {"x": "1"}
    assert collector.events == []


def test_a_component_that_cannot_load_makes_a_no_op_client(make_client, collector, caplog, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(_core.Runtime, "_shared", None)
    monkeypatch.setattr(_core, "wasm_bytes", lambda: b"\x00asm\x0d\x00\x01\x00 this is not a component")
    caplog.set_level(logging.DEBUG, logger="raceway")
    client = make_client(endpoint=collector.url)
    errors = raceway_errors(caplog)
    assert len(errors) == 1 and "could not be started" in errors[0]
    with client.trace():
        client.track_state_change("x", 1, 2, "Write")
        client.track_http_request("GET", "/x", {"h": "v"}, b"body")
        assert client.propagation_headers({"x": "1"}) == {"x": "1"}
    assert client.flush(timeout=1) is True
    assert client.shutdown(timeout=1) is True
    assert collector.received == []


def test_a_trapped_instance_refuses_every_later_call_and_reports_once():
    reports: List[BaseException] = []
    core = CoreInstance(on_trap=reports.append)
    headers = {"traceparent": [TRACEPARENT]}
    assert core.parse_incoming(headers)["parent"]["span_id"] == "b7ad6b7169203331"
    with core_limits(fuel_base=1_000, fuel_per_char=0):
        with pytest.raises(CoreTrap, match="fuel"):
            core.parse_incoming(headers)
    for _ in range(3):  # back to normal limits: the instance stays off
        with pytest.raises(CoreTrap, match="earlier failure"):
            core.parse_incoming(headers)
    assert len(reports) == 1 and isinstance(reports[0], CoreTrap)
    assert CoreInstance().parse_incoming(headers)["parent"] is not None  # a new instance works


def test_no_caller_sees_a_trap_before_the_owner_has_reacted():
    """Another thread's call, made while the owner's ``on_trap`` runs, waits for it and then
    refuses: had it seen the failure first, the client would log its own error beside the
    owner's one (test_a_core_that_traps_leaves_the_apps_requests_answering)."""
    seen: List[object] = []
    reacted: List[bool] = []

    def other_call() -> None:
        try:
            core.parse_incoming({"traceparent": [TRACEPARENT]})
            seen.append("answered")
        except CoreTrap:
            seen.append(bool(reacted))  # True: the owner had finished reacting

    def on_trap(error: BaseException) -> None:
        other = threading.Thread(target=other_call)
        other.start()
        other.join(0.5)  # long enough for a call that does not wait to finish; this one waits
        reacted.append(True)
        threads.append(other)

    threads: List[threading.Thread] = []
    core = CoreInstance(on_trap=on_trap)
    with core_limits(fuel_base=1_000, fuel_per_char=0):
        with pytest.raises(CoreTrap, match="fuel"):
            core.parse_incoming({"traceparent": [TRACEPARENT]})
    threads[0].join(10)
    assert seen == [True]


def test_the_fuel_budget_leaves_real_input_a_wide_margin():
    """The biggest record log the flusher hands over in one call (4 MB of small events, the
    costliest per character) runs well within its budget."""
    core = CoreInstance()
    core.configure({"service_name": "s", "environment": "e", "instance_id": "i", "process_id": 1, "tags": {}})
    record = '[0,0,{seq},{prev},1795246001616516000,null,"a.py",1,"LockRelease",["l","Mutex"]]'
    context = {"trace_id": "0af76519-16cd-43dd-8448-eb211c80319c", "thread_id": "python-1-00000001",
               "component": "s#i/00000001", "span_id": "b7ad6b7169203331", "upstream_span_id": None,
               "id_base": "0" * 31 + "1"}
    events = ",".join(record.format(seq=i + 1, prev=i) for i in range(4096))
    text = json.dumps({"contexts": [context], "states": [{"clock": [], "locks": []}]})[:-1] + f',"events":[{events}]}}'
    budget = CoreInstance._fuel((text,))
    core._store.set_fuel(budget)
    assert core.encode_batch(text, 50)["events"] == 4096
    used = budget - core._store.get_fuel()
    assert used * 4 < budget, (used, budget)


def test_a_trap_during_an_outage_is_still_one_error(make_client, collector, caplog):
    collector.refuse()
    client = make_client(endpoint=collector.url, timeout=0.5, retries=1, retry_backoff=0.01, retry_backoff_max=0.05,
                         spool=False)  # without a spool what is left is failed (with one: spooled)
    caplog.set_level(logging.DEBUG, logger="raceway")
    with client.trace():
        for i in range(20):
            client.track_state_change("x", i, i + 1, "Write")
        with core_limits(fuel_base=1_000, fuel_per_char=0):
            assert client.propagation_headers({"x": "1"}) == {"x": "1"}  # the codec traps here
    assert client.shutdown(timeout=10) is False
    errors = raceway_errors(caplog)
    assert len(errors) == 1 and "core failed" in errors[0], errors
    stats = client.stats()
    assert stats["failed"] == 20 and stats["sent"] == 0
