"""Code written for the reference SDK runs unchanged (docs/compatibility.md keeps the table).

Each test runs a call as the reference SDK's README, decorator guide or source shows it, and
checks what arrived at a real collector; where the reference's meaning is unsafe, that the call
works and one WARNING says why.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Dict, List

import pytest
import requests
from starlette.requests import Request  # noqa: F401 - FastAPI resolves the endpoint's annotation here

from _servers import asgi_server, body, kind, wsgi_server
from conftest import assert_valid_batch
import raceway
from raceway import (
    create_context, get_context, set_context, track_async, track_function, track_method,
    track_lock_acquire, track_lock_release, tracked_lock,
)


def arrived(collector, client) -> List[Dict[str, Any]]:
    assert client.flush(timeout=10)
    for batch in collector.batches:
        assert_valid_batch(batch)
    return collector.events


def calls(events) -> List[tuple]:
    """``(function_name, args)`` of each FunctionCall, and ``("return", data)`` of each
    function_return, ``("Error", type)`` of each Error, in order."""
    out = []
    for e in events:
        k = kind(e)
        if k == "FunctionCall":
            out.append((body(e)["function_name"], body(e)["args"]))
        elif k == "Custom" and body(e)["name"] == "function_return":
            out.append(("return", body(e)["data"]))
        elif k == "Error":
            out.append(("Error", body(e)["error_type"]))
    return out


def warnings_of(caplog) -> List[str]:
    return [r.getMessage() for r in caplog.records if r.name == "raceway" and r.levelno == logging.WARNING]


@pytest.fixture
def fresh_warnings(monkeypatch):
    """The one-per-process warnings, as if this were the process's first time."""
    import raceway._recorder
    import raceway.context

    monkeypatch.setattr(raceway.context, "_derived_warned", set())
    monkeypatch.setattr(raceway._recorder, "_warned_in_process", set())


# -- decorators ---------------------------------------------------------------------------------
def test_track_function_with_name_capture_args_and_capture_result(collector, make_client):
    """DECORATOR-GUIDE "Options": it raised TypeError here before."""
    client = make_client(endpoint=collector.url)

    @track_function(client, name="custom.func.name", capture_args=True, capture_result=True)
    def advanced_function(x, y, z=10):
        return x + y + z

    @track_function(client, name="payment.process")
    def process_payment(amount: float):
        if amount < 0:
            raise ValueError("Amount must be positive")
        return "ok"

    with client.trace():
        assert advanced_function(1, 2) == 13
        assert process_payment(5) == "ok"
        with pytest.raises(ValueError):
            process_payment(-1)
    got = calls(arrived(collector, client))
    assert got[0] == ("custom.func.name", {"args": {"x": 1, "y": 2, "z": 10}})  # defaults applied
    assert got[1][0] == "return" and got[1][1]["return_value"] == 13 and got[1][1]["function"] == "custom.func.name"
    assert got[2] == ("payment.process", {})  # arguments are not captured unless asked for
    assert got[3][0] == "return" and "return_value" not in got[3][1]
    assert got[4] == ("payment.process", {}) and got[5] == ("Error", "ValueError") and got[6][0] == "return"


def test_track_function_defaults_module_qualname_and_no_arguments(collector, make_client):
    client = make_client(endpoint=collector.url)

    @track_function(client)
    def calculate_total(items):
        return sum(items)

    with client.trace():
        assert calculate_total([1, 2]) == 3
    got = calls(arrived(collector, client))
    assert got[0] == (f"{__name__}.{calculate_total.__qualname__}", {})


def test_track_function_without_a_client_uses_the_instance_client(collector, make_client, caplog):
    """``client=None``: the reference looks for ``args[0]._raceway_client``; without one the call
    runs unrecorded, and here one WARNING per function says so."""
    client = make_client(endpoint=collector.url)

    class Service:
        def __init__(self, raceway_client):
            self._raceway_client = raceway_client

        @track_function()
        def work(self, n):
            return n * 2

    @track_function()
    def orphan(n):
        return n + 1

    @track_function  # bare, without parentheses
    def bare(n):
        return n

    caplog.set_level(logging.WARNING, logger="raceway")
    with client.trace():
        assert Service(client).work(4) == 8
        assert [orphan(1), orphan(2), bare(3)] == [2, 3, 3]
    got = calls(arrived(collector, client))
    assert [g[0] for g in got] == [f"{__name__}.{Service.work.__qualname__}", "return"]
    said = [m for m in warnings_of(caplog) if "no client to record with" in m]
    assert len(said) == 2 and "orphan" in said[0] and "bare" in said[1]


def test_track_method_reads_the_client_from_the_instance(collector, make_client, caplog):
    """DECORATOR-GUIDE: ``@track_method()`` took a required client here before (TypeError)."""
    client = make_client(endpoint=collector.url)

    class BankingService:
        def __init__(self, raceway_client):
            self._raceway_client = raceway_client
            self.accounts: Dict[str, float] = {}

        @track_method()
        def deposit(self, user_id: str, amount: float):
            self.accounts[user_id] = self.accounts.get(user_id, 0) + amount

        @track_method(capture_args=True, capture_result=True)
        def get_balance(self, user_id: str):
            return self.accounts.get(user_id)

        @track_method(name="BankingService.audit", capture_args=True)
        async def audit(self, user_id: str):
            return True

    class CustomService:
        def __init__(self, my_client):
            self.my_custom_client = my_client

        @track_method(client_attr="my_custom_client")
        def process(self):
            return "processed"

    class NoClient:
        @track_method()
        def process(self):
            return "still runs"

    caplog.set_level(logging.WARNING, logger="raceway")
    with client.trace():
        bank = BankingService(client)
        bank.deposit("u1", 10)
        assert bank.get_balance("u1") == 10
        assert asyncio.run(bank.audit("u1")) is True
        assert CustomService(client).process() == "processed"
        assert NoClient().process() == "still runs"
        assert NoClient().process() == "still runs"
    got = calls(arrived(collector, client))
    entries = [g for g in got if g[0] != "return"]
    assert entries == [
        (BankingService.deposit.__qualname__, {"class": "BankingService"}),
        (BankingService.get_balance.__qualname__, {"class": "BankingService", "args": {"user_id": "u1"}}),
        ("BankingService.audit", {"class": "BankingService", "args": {"user_id": "u1"}}),
        (CustomService.process.__qualname__, {"class": "CustomService"}),
    ]
    returns = [g[1] for g in got if g[0] == "return"]
    assert returns[1]["return_value"] == 10 and "return_value" not in returns[0]
    assert len([m for m in warnings_of(caplog) if "'_raceway_client'" in m]) == 1


def test_track_method_still_takes_a_client(collector, make_client):
    """``@track_method(client)``: this SDK's earlier form (the alias of track_function)."""
    client = make_client(endpoint=collector.url)

    class Plain:
        @track_method(client)
        def run(self):
            return 1

    with client.trace():
        Plain().run()
    assert calls(arrived(collector, client))[0] == (Plain.run.__qualname__, {"class": "Plain"})


def test_track_async_with_options_and_on_a_plain_function(collector, make_client):
    """The reference raises TypeError for a plain function under track_async; here it works."""
    client = make_client(endpoint=collector.url)

    @track_async(client, name="user.fetch", capture_args=True, capture_result=True)
    async def fetch_user_with_details(user_id: str, include_history: bool = False):
        await asyncio.sleep(0)
        return {"id": user_id}

    @track_async(client, name="sync_helper")
    def validate_input(data: dict) -> bool:
        return "user_id" in data

    async def main():
        with client.trace():
            assert validate_input({"user_id": "u"})
            return await fetch_user_with_details("u7")

    assert asyncio.run(main()) == {"id": "u7"}
    got = calls(arrived(collector, client))
    assert got[0] == ("sync_helper", {})
    assert got[2] == ("user.fetch", {"args": {"user_id": "u7", "include_history": False}})
    assert got[3][1]["return_value"] == {"id": "u7"}


# -- client methods -----------------------------------------------------------------------------
def test_client_track_function_times_a_call_and_returns_its_result(collector, make_client):
    """``client.track_function(name, args, fn)``: AttributeError here before."""
    client = make_client(endpoint=collector.url)

    def failing():
        raise KeyError("k")

    with client.trace():
        assert client.track_function("compute", {"n": 3}, lambda: 6) == 6
        with pytest.raises(KeyError):
            client.track_function("compute", {"n": 4}, failing)
    events = arrived(collector, client)
    assert [(body(e)["function_name"], body(e)["args"]) for e in events] == [("compute", {"n": 3}), ("compute", {"n": 4})]
    for e in events:
        assert isinstance(e["metadata"]["duration_ns"], int) and e["metadata"]["duration_ns"] >= 0
        assert body(e)["file"] == __file__  # the caller, not the SDK


def test_track_function_call_falsy_args_are_sent_as_they_are(collector, make_client):
    """The reference sends ``args or {}``; here ``None`` becomes ``{}`` and other values stay."""
    client = make_client(endpoint=collector.url)
    with client.trace():
        client.track_function_call("a")
        client.track_function_call("b", None)
        client.track_function_call("c", [])
        client.track_function_call("d", 0)
    assert [body(e)["args"] for e in arrived(collector, client)] == [{}, {}, [], 0]


# -- contexts -----------------------------------------------------------------------------------
def test_create_context_accepts_any_string_ids_with_one_warning(collector, make_client, caplog, fresh_warnings):
    """DECORATOR-GUIDE "Testing with Decorators": ValueError here before."""
    client = make_client(endpoint=collector.url)

    @track_function(client)
    def add(x, y):
        return x + y

    caplog.set_level(logging.WARNING, logger="raceway")
    for _ in range(2):
        ctx = create_context(trace_id="test-trace", span_id="test-span", distributed=False)
        set_context(ctx)
        assert add(2, 3) == 5
        set_context(None)
    assert get_context() is None
    child = create_context(trace_id="test-trace", span_id="0123456789abcdef", parent_span_id="test-span")
    events = arrived(collector, client)
    assert len(events) == 4
    assert {e["trace_id"] for e in events} == {ctx.trace_id}
    assert ctx.trace_id == create_context(trace_id="test-trace").trace_id  # the same string, the same id
    assert {e["metadata"]["distributed_span_id"] for e in events} == {ctx.span_id}
    assert child.upstream_span_id == ctx.span_id and child.span_id == "0123456789abcdef"
    said = warnings_of(caplog)
    assert len([m for m in said if "create_context(trace_id='test-trace')" in m]) == 1
    assert len([m for m in said if "create_context(span_id='test-span')" in m]) == 1
    assert len([m for m in said if "parent_span_id" in m]) == 1


def test_create_context_keeps_valid_ids_without_a_warning(collector, make_client, caplog, fresh_warnings):
    import uuid

    client = make_client(endpoint=collector.url)
    caplog.set_level(logging.WARNING, logger="raceway")
    ctx = create_context(trace_id="4BF92F3577B34DA6A3CE929D0E0E4736", span_id="00F067AA0BA902B7")
    assert (ctx.trace_id, ctx.span_id) == ("4bf92f35-77b3-4da6-a3ce-929d0e0e4736", "00f067aa0ba902b7")
    assert create_context(trace_id=uuid.UUID(int=7)).trace_id == "00000000-0000-0000-0000-000000000007"
    token = set_context(ctx)
    client.track_state_change("x", 0, 1, "Write")
    raceway.reset_context(token)
    (event,) = arrived(collector, client)
    assert event["trace_id"] == "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"
    assert warnings_of(caplog) == []


def test_update_context_changes_nothing_and_says_so_once(collector, make_client, caplog, fresh_warnings):
    from raceway.context import RacewayContext, update_context

    client = make_client(endpoint=collector.url)
    caplog.set_level(logging.WARNING, logger="raceway")
    with client.trace() as ctx:
        assert isinstance(ctx, RacewayContext)
        client.track_state_change("x", 0, 1, "Write")
        update_context("some-event-id", True)
        update_context("another", False)
        client.track_state_change("x", 1, 2, "Write")
    first, second = [e for e in arrived(collector, client) if kind(e) == "StateChange"]
    assert second["parent_id"] == first["id"]  # the chain is the context's own
    assert len([m for m in warnings_of(caplog) if "update_context" in m]) == 1


def test_raceway_context_decorator_runs_each_call_in_a_new_context(collector, make_client):
    """``raceway.middleware.raceway_context``: the reference leaves the context current after the
    call; here the previous one (none) is current again."""
    from raceway.middleware import raceway_context

    client = make_client(endpoint=collector.url)

    @raceway_context()
    def job(n):
        client.track_state_change("counter", None, n, "Read")
        return get_context()

    @raceway_context("test-trace")
    async def ajob():
        client.track_state_change("counter", None, 9, "Read")

    first, second = job(1), job(2)
    assert get_context() is None
    asyncio.run(ajob())
    events = arrived(collector, client)
    assert [e["trace_id"] for e in events] == [first.trace_id, second.trace_id, create_context("test-trace").trace_id]
    assert first.trace_id != second.trace_id


# -- locks --------------------------------------------------------------------------------------
def test_tracked_lock_reference_forms(collector, make_client):
    client = make_client(endpoint=collector.url)
    lock = threading.Lock()

    class EnterOnly:
        """A lock with only __enter__/__exit__ (the reference accepts these)."""

        def __init__(self):
            self.inner = threading.Lock()

        def __enter__(self):
            self.inner.acquire()

        def __exit__(self, *exc):
            self.inner.release()

    enter_only = EnterOnly()
    with client.trace():
        with tracked_lock(client, lock, "account_lock"):
            client.track_state_change("balance", 1, 2, "Write")
        with tracked_lock(client, enter_only, "cm_lock", "RWLock"):
            assert enter_only.inner.locked()
        with client.tracked_lock(lock, "method_lock"):
            assert lock.locked()
        track_lock_acquire(client, "manual", "Semaphore")
        track_lock_release(client, "manual", "Semaphore")
    assert not lock.locked() and not enter_only.inner.locked()
    events = arrived(collector, client)
    seen = [(kind(e), body(e).get("lock_id"), body(e).get("lock_type")) for e in events if kind(e).startswith("Lock")]
    assert seen == [
        ("LockAcquire", "account_lock", "Mutex"), ("LockRelease", "account_lock", "Mutex"),
        ("LockAcquire", "cm_lock", "RWLock"), ("LockRelease", "cm_lock", "RWLock"),
        ("LockAcquire", "method_lock", "Mutex"), ("LockRelease", "method_lock", "Mutex"),
        ("LockAcquire", "manual", "Semaphore"), ("LockRelease", "manual", "Semaphore"),
    ]
    (write,) = [e for e in events if kind(e) == "StateChange"]
    assert write["lock_set"] == ["account_lock"]


def test_tracked_lock_outside_a_context_takes_the_lock_and_says_why_once(collector, make_client, caplog, fresh_warnings):
    """The reference raises RuntimeError outside a context (a background job would fail)."""
    client = make_client(endpoint=collector.url)
    lock = threading.Lock()
    caplog.set_level(logging.WARNING, logger="raceway")
    for _ in range(2):
        with tracked_lock(client, lock, "job_lock"):
            assert lock.locked()
    assert not lock.locked()
    client.track_custom("marker")  # outside: ignored as well
    with client.trace():
        client.track_custom("inside")
    assert [body(e)["name"] for e in arrived(collector, client)] == ["inside"]
    assert len([m for m in warnings_of(caplog) if "tracked_lock('job_lock') outside" in m]) == 1


def test_tracked_lock_releases_the_lock_when_recording_fails(make_client):
    client = make_client(endpoint=None, strict_context=True)
    lock = threading.Lock()
    with pytest.raises(RuntimeError, match="outside of an execution context"):
        with tracked_lock(client, lock, "strict_lock"):
            pass  # pragma: no cover - not reached
    assert not lock.locked()


# -- modules and names --------------------------------------------------------------------------
def test_the_reference_modules_and_names_import():
    from raceway import Config, Event, EventKind, EventMetadata, flask_middleware  # noqa: F401
    from raceway.context import RacewayContext, update_context  # noqa: F401
    from raceway.middleware import FastAPIMiddleware, raceway_context  # noqa: F401
    from raceway.types import (  # noqa: F401
        AsyncAwaitData, AsyncSpawnData, ErrorData, FunctionCallData, FunctionReturnData, HTTPRequestData,
        HTTPResponseData, LockAcquireData, LockReleaseData, StateChangeData,
    )
    from raceway import trace_context  # noqa: F401

    for name in ["RacewayClient", "Config", "Event", "EventKind", "EventMetadata", "create_context", "set_context",
                 "get_context", "tracked_lock", "track_lock_acquire", "track_lock_release", "track_function",
                 "track_async", "track_method"]:
        assert name in raceway.__all__ and getattr(raceway, name) is not None
    assert raceway.__version__
    meta = EventMetadata(thread_id="t", process_id=1, service_name="s", environment="e")
    event = Event(id="i", trace_id="t", parent_id=None, timestamp="now",
                  kind=EventKind(StateChange={"variable": "v"}), metadata=meta)
    assert event.causality_vector == [] and event.kind.StateChange == {"variable": "v"}
    config = Config("http://127.0.0.1:9", "svc", "inst", "prod", 10, 0.5, False, None)  # positional, as there
    assert (config.endpoint, config.service_name, config.instance_id, config.environment, config.batch_size,
            config.flush_interval) == ("http://127.0.0.1:9", "svc", "inst", "prod", 10, 0.5)


def test_trace_context_functions_continue_a_trace_in_a_hand_made_middleware(collector, make_client):
    """``raceway.trace_context``: what the reference's middleware is built from."""
    from raceway.trace_context import build_propagation_headers, increment_clock_vector, parse_incoming_headers

    client = make_client(endpoint=collector.url)
    out = build_propagation_headers(trace_id="4bf92f35-77b3-4da6-a3ce-929d0e0e4736", current_span_id="00f067aa0ba902b7",
                                    tracestate="vendor=1", clock_vector=[("up#1", 3)], service_name="up", instance_id="1")
    assert out.clock_vector == [("up#1", 4)]
    assert out.headers["traceparent"] == f"00-4bf92f3577b34da6a3ce929d0e0e4736-{out.child_span_id}-01"
    assert out.headers["tracestate"] == "vendor=1" and out.headers["raceway-clock"].startswith("v1;")
    assert increment_clock_vector([], service_name="s", instance_id="i") == [("s#i", 1)]

    parsed = parse_incoming_headers({"TraceParent": out.headers["traceparent"], "raceway-clock": out.headers["raceway-clock"]},
                                    service_name="down", instance_id="2")
    assert (parsed.trace_id, parsed.span_id, parsed.parent_span_id, parsed.distributed) == (
        "4bf92f35-77b3-4da6-a3ce-929d0e0e4736", out.child_span_id, "00f067aa0ba902b7", True)
    assert parsed.clock_vector == [("up#1", 4), ("down#2", 0)]
    ctx = create_context(trace_id=parsed.trace_id, span_id=parsed.span_id, parent_span_id=parsed.parent_span_id,
                         distributed=parsed.distributed, clock_vector=parsed.clock_vector, tracestate=parsed.tracestate)
    token = set_context(ctx)
    client.track_http_request("GET", "/reserve")
    raceway.reset_context(token)
    (event,) = arrived(collector, client)
    assert event["trace_id"] == parsed.trace_id
    assert event["metadata"]["distributed_span_id"] == out.child_span_id
    assert event["metadata"]["upstream_span_id"] == "00f067aa0ba902b7"
    assert dict(event["causality_vector"])["up#1"] == 4

    fresh = parse_incoming_headers({"traceparent": "garbage"}, service_name="down", instance_id="2")
    assert fresh.distributed is False and fresh.parent_span_id is None and fresh.clock_vector == [("down#2", 0)]


# -- the README's Flask service, and the middleware forms of the reference's docstrings --------
def flask_bank(client, per_hook_instances: bool):
    from flask import Flask, request

    from raceway.middleware import flask_middleware

    app = Flask(__name__)
    accounts = {"alice": {"balance": 1000}}
    seen: Dict[str, Any] = {}
    middleware = flask_middleware(client)

    @app.before_request
    def init_raceway():
        (flask_middleware(client) if per_hook_instances else middleware).before_request()

    @app.after_request
    def finish_raceway(response):
        return (flask_middleware(client) if per_hook_instances else middleware).after_request(response)

    @app.route("/transfer", methods=["POST"])
    def transfer():
        data = request.get_json()
        client.track_function_call("transfer", data)
        balance = accounts[data["from"]]["balance"]
        client.track_state_change(f"{data['from']}.balance", None, balance, "Read")
        accounts[data["from"]]["balance"] -= data["amount"]
        client.track_state_change(f"{data['from']}.balance", balance, accounts[data["from"]]["balance"], "Write")
        seen["context"] = getattr(request, "racewayContext", None)
        seen["current"] = get_context()
        return {"success": True}

    return app, seen


@pytest.mark.parametrize("per_hook_instances", [False, True], ids=["readme", "docstring"])
def test_the_readme_flask_service_runs_unchanged(collector, make_client, per_hook_instances):
    """The README's quick start, with one middleware object; and the reference middleware's
    docstring form, which makes a new one in each hook (``flask_middleware(client).before_request()``)."""
    client = make_client(endpoint=collector.url)
    app, seen = flask_bank(client, per_hook_instances)
    with wsgi_server(app, threaded=False) as url:
        for _ in range(2):
            response = requests.post(f"{url}/transfer", json={"from": "alice", "amount": 100}, timeout=10)
            assert response.json() == {"success": True}
    events = arrived(collector, client)
    kinds = [kind(e) for e in events]
    assert kinds == ["HttpRequest", "FunctionCall", "StateChange", "StateChange", "HttpResponse"] * 2
    assert body(events[1])["args"] == {"from": "alice", "amount": 100}
    assert [body(e)["new_value"] for e in events if kind(e) == "StateChange"] == [1000, 900, 900, 800]
    assert body(events[4])["status"] == 200
    assert len({e["trace_id"] for e in events}) == 2  # one trace per request, none left behind
    assert seen["context"] is seen["current"] and seen["current"] is not None  # request.racewayContext


def test_fastapi_middleware_sets_request_state_raceway_context(collector, make_client):
    """``app.add_middleware(FastAPIMiddleware, client=client)``; the reference's also puts the
    context on ``request.state.raceway_context``."""
    from fastapi import FastAPI

    from raceway.middleware import FastAPIMiddleware

    client = make_client(endpoint=collector.url)
    app = FastAPI()
    app.add_middleware(FastAPIMiddleware, client=client)
    seen: Dict[str, Any] = {}

    @app.get("/work")
    async def work(request: Request):
        client.track_state_change("counter", None, 1, "Read")
        seen["state"] = getattr(request.state, "raceway_context", None)
        seen["current"] = get_context()
        return {"ok": True}

    with asgi_server(app) as url:
        assert requests.get(f"{url}/work", timeout=10).json() == {"ok": True}
    events = arrived(collector, client)
    assert [kind(e) for e in events] == ["HttpRequest", "StateChange", "HttpResponse"]
    assert seen["state"] is not None and seen["state"].trace_id == seen["current"].trace_id == events[0]["trace_id"]
