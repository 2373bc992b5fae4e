"""Background jobs: each run of a decorated function is an execution of its own, a child of the
caller's context inside a request, a new trace outside any."""

from __future__ import annotations

import asyncio

import pytest

from _servers import body, happens_before, kind
from conftest import assert_valid_batch
from raceway import background_job, get_context, instrument_loop


def test_outside_any_context_each_run_starts_a_new_trace(collector, make_client):
    client = make_client(endpoint=collector.url)

    @background_job(client)
    def cleanup(n):
        client.track_state_change("tokens", None, n, "Write")
        return get_context()

    first, second = cleanup(1), cleanup(2)
    assert get_context() is None
    assert first.trace_id != second.trace_id
    assert client.flush(timeout=10)
    for batch in collector.batches:
        assert_valid_batch(batch)
    by_trace = {}
    for e in collector.events:
        by_trace.setdefault(e["trace_id"], []).append(e)
    assert set(by_trace) == {first.trace_id, second.trace_id}
    for events in by_trace.values():
        assert [kind(e) for e in events] == ["FunctionCall", "StateChange"]
        assert body(events[0])["function_name"].endswith("cleanup")
        assert body(events[0])["file"] == __file__  # the caller's line, not the SDK's


def test_inside_a_request_a_run_is_a_child_that_the_caller_joins(collector, make_client):
    client = make_client(endpoint=collector.url)

    @background_job(client, "send_email", capture_args=True)
    async def send_email(to):
        client.track_state_change("outbox", None, to, "Write")
        return get_context()

    async def main():
        instrument_loop(client)
        with client.trace() as root:
            client.track_state_change("before", None, 1, "Write")
            job = await send_email("a@example.com")
            client.track_state_change("after", None, 1, "Write")
        return root, job

    root, job = asyncio.run(main())
    assert job.trace_id == root.trace_id and job.thread_id != root.thread_id
    assert client.flush(timeout=10)
    events = collector.events
    named = {body(e).get("variable"): e for e in events if kind(e) == "StateChange"}
    assert happens_before(named["before"], named["outbox"]) and happens_before(named["outbox"], named["after"])
    call = next(e for e in events if kind(e) == "FunctionCall")
    assert body(call)["function_name"] == "send_email"
    assert body(call)["args"] == {"args": ["a@example.com"], "kwargs": {}}
    root_kinds = [kind(e) for e in events if e["metadata"]["thread_id"] == root.thread_id]
    assert root_kinds == ["StateChange", "AsyncSpawn", "AsyncAwait", "StateChange"]


def test_a_failing_run_records_the_error_and_raises_it(collector, make_client):
    client = make_client(endpoint=collector.url)

    @background_job(client)
    def flaky():
        raise ValueError("no route")

    @background_job(client)
    async def flaky_async():
        raise KeyError("gone")

    with pytest.raises(ValueError):
        flaky()
    with pytest.raises(KeyError):
        asyncio.run(flaky_async())
    assert get_context() is None
    assert client.flush(timeout=10)
    errors = [body(e) for e in collector.events if kind(e) == "Error"]
    assert [e["error_type"] for e in errors] == ["ValueError", "KeyError"]
    assert all(e["stack_trace"] for e in errors)
    assert len({e["trace_id"] for e in collector.events}) == 2


def test_a_scheduled_async_job_runs_beside_the_request(collector, make_client):
    client = make_client(endpoint=collector.url)

    @background_job(client)
    async def refresh():
        client.track_state_change("cache", None, 1, "Write")

    async def main():
        instrument_loop(client)
        with client.trace() as root:
            task = asyncio.create_task(refresh())  # fire and forget, collected later
            client.track_state_change("cache", None, 2, "Write")
            await task
        return root

    root = asyncio.run(main())
    assert client.flush(timeout=10)
    writes = {body(e)["new_value"]: e for e in collector.events if kind(e) == "StateChange"}
    assert writes[1]["trace_id"] == root.trace_id
    assert not happens_before(writes[1], writes[2]) and not happens_before(writes[2], writes[1])
