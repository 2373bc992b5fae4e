"""The reference API, its errors for misuse, and what it records (checked on the wire)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading

import pytest

import raceway
from conftest import assert_valid_batch
from raceway import Config, RacewayClient, create_context, get_context, set_context, reset_context
from raceway.decorators import track_function
from raceway.lock_helpers import tracked_lock


def kinds(events):
    return [next(iter(e["kind"])) for e in events]


def test_config_defaults_match_the_reference():
    c = Config()
    assert (c.endpoint, c.service_name, c.instance_id, c.environment) == (
        "http://localhost:8080", "unknown-service", None, "development")
    assert (c.batch_size, c.flush_interval, c.debug, c.api_key) == (50, 1.0, False, None)


@pytest.mark.parametrize(
    "kwargs, field",
    [({"batch_size": 0}, "batch_size"), ({"flush_interval": -1}, "flush_interval"),
     ({"endpoint": "localhost:8080"}, "endpoint"), ({"max_queue_size": True}, "max_queue_size"),
     ({"service_name": ""}, "service_name")],
)
def test_config_rejects_bad_values_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        Config(**kwargs)


def test_instance_id_defaults_to_hostname_pid(make_client):
    import os
    import socket

    client = make_client(endpoint=None, instance_id=None)
    assert client.instance_id == f"{socket.gethostname()}-{os.getpid()}"


def test_misuse_raises_value_error_naming_the_argument(make_client):
    client = make_client(endpoint=None)
    with client.trace():
        with pytest.raises(ValueError, match="access_type"):
            client.track_state_change("x", 1, 2, "Modify")
        with pytest.raises(ValueError, match="duration_ms"):
            client.track_http_response(200, duration_ms=-5)
        with pytest.raises(ValueError, match="duration_ns"):
            client.track_function_call("f", None, duration_ns=-1)
        # The wire's durations are u64 nanoseconds: beyond that the core would drop the event.
        with pytest.raises(ValueError, match="duration_ns"):
            client.track_function_call("f", None, duration_ns=2**64)
        with pytest.raises(ValueError, match="duration_ms"):
            client.track_http_response(200, duration_ms=1e30)
        client.track_function_call("f", None, duration_ns=2**64 - 1)  # the largest is taken
        with pytest.raises(ValueError, match="status"):
            client.track_http_response(70000)


def test_outside_a_context_tracking_is_a_no_op_and_strict_mode_raises(collector, make_client):
    client = make_client(endpoint=collector.url)
    assert get_context() is None
    client.track_state_change("x", 1, 2, "Write")
    client.track_function_call("f")
    assert client.flush(timeout=5) and collector.events == []
    strict = make_client(endpoint=None, strict_context=True)
    with pytest.raises(RuntimeError, match="outside"):
        strict.track_state_change("x", 1, 2, "Write")


def test_propagation_headers_outside_a_context_raise_runtime_error(make_client):
    client = make_client(endpoint=None)
    with pytest.raises(RuntimeError):
        client.propagation_headers()
    with client.trace():
        headers = client.propagation_headers({"x-custom": "v"})
    assert set(headers) == {"traceparent", "raceway-clock", "x-custom"}


def test_trace_nests_as_child_and_restores_the_parent(collector, make_client):
    client = make_client(endpoint=collector.url)
    with client.trace() as parent:
        client.track_state_change("x", 0, 1, "Write")
        with client.trace() as child:
            assert get_context() is child
            client.track_state_change("x", 1, 2, "Write")
        assert get_context() is parent
        client.track_state_change("x", 2, 3, "Write")
    assert get_context() is None
    assert client.flush(timeout=5)
    events = collector.events
    assert {e["trace_id"] for e in events} == {parent.trace_id}
    assert child.thread_id != parent.thread_id
    p = [e for e in events if e["metadata"]["thread_id"] == parent.thread_id]
    c = [e for e in events if e["metadata"]["thread_id"] == child.thread_id]
    assert kinds(p) == ["StateChange", "AsyncSpawn", "AsyncAwait", "StateChange"]
    assert p[1]["kind"]["AsyncSpawn"]["task_id"] == child.task_id
    clock = lambda e: dict(map(tuple, e["causality_vector"]))  # noqa: E731
    # the child's event comes after the spawn, and the parent's last event after the child's
    assert clock(c[0])[parent.component] >= clock(p[1])[parent.component]
    assert clock(p[-1])[child.component] >= clock(c[0])[child.component]


def test_reference_context_functions(collector, make_client):
    client = make_client(endpoint=collector.url)
    ctx = create_context("0AF7651916CD43DD8448EB211C80319C", span_id="b7ad6b7169203331",
                         clock_vector=[("upstream#1", 4)])
    assert ctx.trace_id == "0af76519-16cd-43dd-8448-eb211c80319c"
    token = set_context(ctx)
    try:
        assert get_context() is ctx
        client.track_function_call("f")
    finally:
        reset_context(token)
    assert get_context() is None
    assert client.flush(timeout=5)
    (event,) = collector.events
    assert event["trace_id"] == ctx.trace_id
    assert event["metadata"]["distributed_span_id"] == "b7ad6b7169203331"
    assert ["upstream#1", 4] in event["causality_vector"]
    # Any string, as in the reference: replaced by an id derived from it (test_compatibility.py).
    derived = create_context("not-a-trace").trace_id
    assert derived == create_context("not-a-trace").trace_id != "not-a-trace" and len(derived) == 36


def test_tracked_lock_records_the_critical_section_and_survives_exceptions(collector, make_client):
    client = make_client(endpoint=collector.url)
    lock = threading.Lock()
    with client.trace():
        with pytest.raises(KeyError):
            with tracked_lock(client, lock, "acct", "Mutex"):
                client.track_state_change("balance", 10, 5, "Write")
                raise KeyError("boom")
        client.track_state_change("balance", 5, 5, "Read")
    assert not lock.locked()
    assert client.flush(timeout=5)
    events = collector.events
    assert kinds(events) == ["LockAcquire", "StateChange", "LockRelease", "StateChange"]
    assert [e["lock_set"] for e in events] == [["acct"], ["acct"], ["acct"], []]


def test_tracked_lock_with_asyncio_lock(collector, make_client):
    client = make_client(endpoint=collector.url)

    async def main():
        lock = asyncio.Lock()
        with client.trace():
            async with tracked_lock(client, lock, "alock"):
                client.track_state_change("v", 0, 1, "Write")

    asyncio.run(main())
    assert client.flush(timeout=5)
    assert [e["lock_set"] for e in collector.events] == [["alock"]] * 3


def test_track_function_decorator_sync_async_and_errors(collector, make_client):
    client = make_client(endpoint=collector.url)

    @track_function(client, capture_args=True, capture_return=True)  # capture_return: the earlier name
    def add(a, b=2):
        return a + b

    @track_function(client)
    async def fails(x):
        raise ValueError("bad")

    with client.trace():
        assert add(1) == 3
        with pytest.raises(ValueError):
            asyncio.run(fails(5))
    assert client.flush(timeout=5)
    events = collector.events
    for b in collector.batches:
        assert_valid_batch(b)
    assert kinds(events) == ["FunctionCall", "Custom", "FunctionCall", "Error", "Custom"]
    assert events[0]["kind"]["FunctionCall"]["args"] == {"args": {"a": 1, "b": 2}}  # defaults applied
    assert events[2]["kind"]["FunctionCall"]["args"] == {}  # arguments only when asked for
    ret = events[1]["kind"]["Custom"]
    assert ret["name"] == "function_return" and ret["data"]["return_value"] == 3
    assert ret["data"]["duration_ns"] == events[1]["metadata"]["duration_ns"] > 0
    assert events[3]["kind"]["Error"]["error_type"] == "ValueError"
    assert events[0]["kind"]["FunctionCall"]["file"] == __file__


def test_locations_point_at_user_code_even_in_a_folder_named_raceway(collector, make_client, tmp_path):
    pkg = tmp_path / "raceway" / "app"
    pkg.mkdir(parents=True)
    src = pkg / "views.py"
    src.write_text(
        "def handler(client, lock):\n"
        "    client.track_state_change('x', 0, 1, 'Write')\n"
        "    from raceway import tracked_lock\n"
        "    with tracked_lock(client, lock, 'l'):\n"
        "        pass\n"
    )
    spec = importlib.util.spec_from_file_location("user_views", src)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    client = make_client(endpoint=collector.url)
    with client.trace():
        mod.handler(client, threading.Lock())
    assert client.flush(timeout=5)
    change, acquire, release = collector.events
    assert change["kind"]["StateChange"]["location"] == f"{src}:2"
    assert acquire["kind"]["LockAcquire"]["location"] == f"{src}:4"


def test_every_call_site_keeps_its_own_line_in_long_functions_and_in_loops(collector, make_client):
    """Call sites are cached by code object and instruction offset (raceway/_location.py): two
    calls on different lines of one function, a call far down a long function, one call site
    run many times, and the same site reached from two modules all keep their own place."""
    body = "".join(f"    x{i} = {i}\n" for i in range(400))
    src = ("def long_view(client):\n" + body
           + "    for i in range(3):\n"
           + "        client.track_state_change('loop', i, i + 1, 'Write')\n"
           + "    client.track_function_call('far_down', {'a': 1})\n")
    namespaces = []
    for name in ("views_a", "views_b"):
        ns = {"__name__": name}
        exec(compile(src, f"/srv/{name}.py", "exec"), ns)
        namespaces.append(ns)
    client = make_client(endpoint=collector.url)
    with client.trace():
        for ns in namespaces:
            ns["long_view"](client)
    assert client.flush(timeout=5)
    events = collector.events
    assert len(events) == 8
    for name, evs in (("views_a", events[:4]), ("views_b", events[4:])):
        assert [e["kind"]["StateChange"]["location"] for e in evs[:3]] == [f"/srv/{name}.py:403"] * 3
        call = evs[3]["kind"]["FunctionCall"]
        assert (call["file"], call["line"], call["module"]) == (f"/srv/{name}.py", 404, name)


def test_sites_at_the_same_offset_in_two_functions_taking_turns_keep_their_own_place(make_client, tmp_path):
    """The hot paths look a site up by instruction offset first (raceway/_location.py,
    `by_offset`), checking the entry's code object: two functions with the same body, so the
    same offsets, called in turn, keep their own file, line and stack on every path that
    locates an event: track_state_change (1 and 3 stack frames), track_function_call,
    raceway.shared, a tracked lock. Read from the records themselves (the events file), which
    carry the stacks."""
    src = ("def view(client, d, lock):\n"
           "    client.track_state_change('v', 0, 1, 'Write')\n"
           "    client.track_function_call('f')\n"
           "    d['k'] = 1\n"
           "    with raceway.tracked_lock(client, lock, 'l'):\n"
           "        pass\n")
    names = ("turn_a", "turn_b")
    views = []
    for name in names:
        ns = {"__name__": name, "raceway": raceway}
        exec(compile(src, f"/srv/{name}.py", "exec"), ns)
        views.append(ns["view"])
    for frames in (1, 3):
        path = tmp_path / f"events-{frames}.jsonl"
        client = make_client(endpoint=None, race_stack_frames=frames, events_file=str(path))
        d = raceway.shared({}, "d", client=client)
        lock = threading.Lock()
        with client.trace():
            for _ in range(3):
                for view in views:
                    view(client, d, lock)
        client.shutdown(timeout=5)
        records = [r for line in path.read_text().splitlines() for r in json.loads(line)["events"]]
        calls = -1
        for record in records:
            file, line, kind, fields = record[6:10]
            if kind == "StateChange" and fields[0] == "v":
                calls += 1  # each call of a view starts with it
            name = names[calls % 2]
            expected = {"FunctionCall": 3, "LockAcquire": 5, "LockRelease": 5,
                        "StateChange": 2 if fields[0] == "v" else 4}[kind]
            assert (file, line) == (f"/srv/{name}.py", expected), (calls, record)
            if kind == "StateChange":
                stack = fields[4]
                assert stack[0] == f"/srv/{name}.py:{expected} in view", record
                assert 1 <= len(stack) <= frames
        assert calls == 5


def test_the_call_site_cache_is_bounded(collector, make_client, monkeypatch):
    from raceway import _location

    monkeypatch.setattr(_location, "MAX_SITES", 5)
    client = make_client(endpoint=collector.url)
    with client.trace():
        for i in range(20):  # twenty code objects, one site each
            exec(compile("\n" * i + "client.track_state_change('v', 0, 1, 'Write')", f"/gen/{i}.py", "exec"),
                 {"client": client})
    assert len(_location.sites) <= 5
    assert client.flush(timeout=5)
    assert [e["kind"]["StateChange"]["location"] for e in collector.events] == [f"/gen/{i}.py:{i + 1}" for i in range(20)]


def test_values_json_cannot_carry_are_converted_never_raised(collector, make_client):
    client = make_client(endpoint=collector.url)
    cyclic = {"a": 1}
    cyclic["self"] = cyclic

    class Weird:
        def __repr__(self):
            raise RuntimeError("no repr")

    with client.trace():
        client.track_state_change("cyclic", None, cyclic, "Write")
        client.track_state_change("bytes", None, b"\x00\xff", "Write")
        client.track_state_change("inf", float("-inf"), float("nan"), "Write")
        client.track_state_change("big", None, "x" * 100_000, "Write")
        client.track_state_change("weird", None, Weird(), "Write")
        client.track_state_change("surrogate", None, "bad \udc80 byte", "Write")
        client.track_function_call(object(), {1: {2, 3}, (4, 5): None})
        client.track_http_request("GET", "/x", {"h": 1}, body={"deep": [[[[[[[[[[1]]]]]]]]]]})
    assert client.flush(timeout=5)
    for b in collector.batches:
        assert_valid_batch(b)
    values = {e["kind"]["StateChange"]["variable"]: e["kind"]["StateChange"]["new_value"]
              for e in collector.events if "StateChange" in e["kind"]}
    assert values["cyclic"] == {"a": 1, "self": "<cycle>"}
    assert values["bytes"] == "b'\\x00\\xff'"
    assert values["inf"] == "nan"
    assert len(values["big"]) < 5000 and values["big"].endswith("chars]")
    assert values["weird"].startswith("<unrepresentable")
    assert "\\udc80" in values["surrogate"]
    assert len(collector.events) == 8


def test_package_exports_the_reference_names():
    for name in ("RacewayClient", "Config", "create_context", "set_context", "get_context",
                 "tracked_lock", "track_function", "track_async", "track_method"):
        assert hasattr(raceway, name), name
    assert isinstance(RacewayClient, type)


def test_http_headers_are_bounded_like_other_values(collector, make_client):
    client = make_client(endpoint=collector.url)
    with client.trace():
        client.track_http_request("GET", "/x", {f"h{i}": str(i) for i in range(5000)})
    assert client.flush(timeout=5)
    (event,) = collector.events
    assert len(event["kind"]["HttpRequest"]["headers"]) == 100


@pytest.mark.parametrize("entry", [("a", 2**64), ("a\ud800", 1), ("a", -1), ("a", True), (1, 1)])
def test_create_context_refuses_a_clock_the_wire_cannot_carry(entry):
    """A counter past u64 or a component with a lone surrogate would make the core refuse every
    batch the context's events are in (other contexts' events with them): refused here."""
    from raceway import create_context

    with pytest.raises(ValueError, match="clock_vector"):
        create_context(clock_vector=[entry])


def test_a_context_with_the_largest_counter_delivers(collector, make_client):
    from raceway import create_context, reset_context, set_context

    client = make_client(endpoint=collector.url)
    token = set_context(create_context(clock_vector=[("up#1", 2**64 - 1)]))
    try:
        client.track_state_change("x", 0, 1)
    finally:
        reset_context(token)
    assert client.flush(timeout=10)
    assert collector.wait_for_events(1)
    assert ["up#1", 2**64 - 1] in collector.events[0]["causality_vector"]
