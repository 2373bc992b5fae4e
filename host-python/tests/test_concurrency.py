"""Context that follows the work: every asyncio task and every thread gets its own execution
context in the parent's trace, with spawn and join edges in the clocks. Real event loops, real
threads, the built component; checked on what arrived at the collector."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from _servers import body, concurrent, happens_before, kind
from conftest import assert_valid_batch
from raceway import (ContextAwareThread, ContextAwareThreadPoolExecutor, bind, get_context, instrument_loop,
                     run_with_context)
from raceway.concurrency import capture, continue_trace


def process_job(endpoint, headers, n):
    """Runs in a spawned worker process with a client of its own, as a real worker would."""
    from raceway import Config, RacewayClient

    client = RacewayClient(Config(endpoint=endpoint, service_name="test-svc", instance_id="worker",
                                  flush_interval=0.05))
    try:
        with continue_trace(client, headers) as ctx:
            client.track_state_change("processed", None, n, "Write")
            seen = (ctx.trace_id, ctx.span_id, ctx.upstream_span_id)
        assert get_context() is None
        return seen
    finally:
        client.shutdown(timeout=10)


def writes(collector, variable):
    found = [e for e in collector.events if kind(e) == "StateChange" and body(e)["variable"] == variable]
    assert found, f"no write of {variable!r} arrived"
    return found


def one(collector, variable):
    (event,) = writes(collector, variable)
    return event


def flushed(client, collector):
    assert client.flush(timeout=10)
    for batch in collector.batches:
        assert_valid_batch(batch)
    return collector.events


# -- asyncio -----------------------------------------------------------------------------------
def test_gathered_tasks_get_their_own_contexts_and_join_when_collected(collector, make_client):
    client = make_client(endpoint=collector.url)

    async def worker(n):
        client.track_state_change("shared", None, n, "Write")
        await asyncio.sleep(0)
        return get_context()

    async def main():
        instrument_loop(client)
        with client.trace() as root:
            client.track_state_change("before", None, 1, "Write")
            a, b = await asyncio.gather(worker(1), worker(2))
            client.track_state_change("after", None, 1, "Write")
        return root, a, b

    root, a, b = asyncio.run(main())
    assert len({root.thread_id, a.thread_id, b.thread_id}) == 3
    assert root.trace_id == a.trace_id == b.trace_id
    flushed(client, collector)
    w1, w2 = writes(collector, "shared")
    assert {w1["metadata"]["thread_id"], w2["metadata"]["thread_id"]} == {a.thread_id, b.thread_id}
    assert concurrent(w1, w2)  # two tasks of one request: their race is visible
    before, after = one(collector, "before"), one(collector, "after")
    for w in (w1, w2):
        assert happens_before(before, w) and happens_before(w, after)
    root_kinds = [kind(e) for e in collector.events if e["metadata"]["thread_id"] == root.thread_id]
    assert root_kinds.count("AsyncSpawn") == 2 and root_kinds.count("AsyncAwait") == 2


def test_a_task_is_joined_when_awaited_not_when_it_finishes(collector, make_client):
    client = make_client(endpoint=collector.url)

    async def child():
        client.track_state_change("x", None, 1, "Write")

    async def main():
        instrument_loop(client)
        with client.trace():
            task = asyncio.create_task(child())
            await asyncio.sleep(0.01)  # finished by now, but nobody has looked
            client.track_state_change("x", None, 2, "Write")  # never synchronized with the child
            await task
            client.track_state_change("x", None, 3, "Write")

    asyncio.run(main())
    flushed(client, collector)
    by_value = {body(e)["new_value"]: e for e in writes(collector, "x")}
    assert concurrent(by_value[1], by_value[2])
    assert happens_before(by_value[1], by_value[3])


def test_seeing_a_task_done_is_a_join(collector, make_client):
    """``asyncio.wait`` (and any ``task.done()`` that answers True) observes the task's end."""
    client = make_client(endpoint=collector.url)

    async def child():
        client.track_state_change("y", None, 1, "Write")

    async def main():
        instrument_loop(client)
        with client.trace():
            task = asyncio.create_task(child())
            done, _ = await asyncio.wait({task})
            assert task in done
            client.track_state_change("y", None, 2, "Write")

    asyncio.run(main())
    flushed(client, collector)
    by_value = {body(e)["new_value"]: e for e in writes(collector, "y")}
    assert happens_before(by_value[1], by_value[2])


def test_task_group_and_explicit_context(collector, make_client):
    client = make_client(endpoint=collector.url)
    other = contextvars.ContextVar("other", default=None)
    seen = []

    async def child(name):
        seen.append((name, get_context(), other.get()))
        client.track_state_change(name, None, 1, "Write")

    async def main():
        instrument_loop(client)
        with client.trace() as root:
            other.set("kept")
            async with asyncio.TaskGroup() as group:
                group.create_task(child("grouped"))
                group.create_task(child("explicit"), context=contextvars.copy_context())
            client.track_state_change("after", None, 1, "Write")
            return root

    root = asyncio.run(main())
    contexts = {name: ctx for name, ctx, _ in seen}
    assert all(value == "kept" for _, _, value in seen)  # the caller's other variables are there
    assert len({root.thread_id, contexts["grouped"].thread_id, contexts["explicit"].thread_id}) == 3
    flushed(client, collector)
    after = one(collector, "after")
    assert happens_before(one(collector, "grouped"), after)  # the TaskGroup's exit waited
    assert happens_before(one(collector, "explicit"), after)


def test_tasks_that_record_nothing_are_not_joined(collector, make_client):
    client = make_client(endpoint=collector.url)

    async def main():
        instrument_loop(client)
        with client.trace() as root:
            await asyncio.gather(*[asyncio.sleep(0) for _ in range(50)])
            client.track_state_change("after", None, 1, "Write")
        return root

    asyncio.run(main())
    flushed(client, collector)
    kinds = [kind(e) for e in collector.events]
    assert kinds.count("AsyncSpawn") == 50 and "AsyncAwait" not in kinds
    assert len(one(collector, "after")["causality_vector"]) == 1  # the clock did not grow


def test_tasks_outside_any_context_are_plain_tasks(make_client):
    client = make_client(endpoint=None)

    async def main():
        instrument_loop(client)
        task = asyncio.create_task(asyncio.sleep(0, result=get_context()))
        assert type(task) is asyncio.Task
        return await task

    assert asyncio.run(main()) is None


def test_an_existing_task_factory_is_kept(make_client):
    client = make_client(endpoint=None)
    made = []

    def factory(loop, coro, **kwargs):
        made.append(coro)
        return asyncio.Task(coro, loop=loop, **kwargs)

    async def child():
        return get_context()

    async def main():
        asyncio.get_running_loop().set_task_factory(factory)
        instrument_loop(client)
        with client.trace() as root:
            ctx = await asyncio.create_task(child())
        return root, ctx

    root, ctx = asyncio.run(main())
    assert made and ctx is not None and ctx is not root and ctx.trace_id == root.trace_id


def test_to_thread_and_run_in_executor_run_in_child_contexts(collector, make_client):
    client = make_client(endpoint=collector.url)

    def blocking(name):
        client.track_state_change(name, None, 1, "Write")
        return get_context(), threading.get_ident()

    async def main():
        instrument_loop(client)
        loop = asyncio.get_running_loop()
        with client.trace() as root:
            results = [await asyncio.to_thread(blocking, "to_thread")]
            client.track_state_change("mark1", None, 1, "Write")
            results.append(await loop.run_in_executor(None, blocking, "default_executor"))
            client.track_state_change("mark2", None, 1, "Write")
            with ContextAwareThreadPoolExecutor(2, client=client) as pool:
                results.append(await loop.run_in_executor(pool, blocking, "own_executor"))
            client.track_state_change("mark3", None, 1, "Write")
        return root, results, threading.get_ident()

    root, results, loop_thread = asyncio.run(main())
    contexts = [ctx for ctx, _ in results]
    assert all(ident != loop_thread for _, ident in results)
    assert all(ctx is not None and ctx.trace_id == root.trace_id for ctx in contexts)
    assert len({root.thread_id, *(ctx.thread_id for ctx in contexts)}) == 4
    flushed(client, collector)
    for name, mark in (("to_thread", "mark1"), ("default_executor", "mark2"), ("own_executor", "mark3")):
        assert happens_before(one(collector, name), one(collector, mark)), name


# -- threads -----------------------------------------------------------------------------------
def test_executor_forks_at_submit_and_joins_at_result_map_and_shutdown(collector, make_client):
    client = make_client(endpoint=collector.url)
    go = threading.Event()

    def work(name):
        if name == "slow":
            assert go.wait(10)
        client.track_state_change(name, None, 1, "Write")
        return get_context()

    with client.trace() as root:
        with ContextAwareThreadPoolExecutor(max_workers=3, client=client) as pool:
            slow = pool.submit(work, "slow")
            client.track_state_change("during", None, 1, "Write")
            go.set()
            mapped = list(pool.map(work, ["m1", "m2"]))
            slow_ctx = slow.result()
            client.track_state_change("collected", None, 1, "Write")
            pool.submit(work, "forgotten")  # nobody collects it: the with block's exit joins it
            client.track_state_change("unsynchronized", None, 1, "Write")
        client.track_state_change("after", None, 1, "Write")
    contexts = [slow_ctx, *mapped]
    assert len({root.thread_id, *(c.thread_id for c in contexts)}) == 4
    flushed(client, collector)
    assert concurrent(one(collector, "during"), one(collector, "slow"))
    for name in ("slow", "m1", "m2"):
        assert happens_before(one(collector, name), one(collector, "collected")), name
    assert happens_before(one(collector, "collected"), one(collector, "forgotten"))
    assert concurrent(one(collector, "forgotten"), one(collector, "unsynchronized"))
    assert happens_before(one(collector, "forgotten"), one(collector, "after"))


def test_executor_without_a_client_keeps_the_edges_in_the_clocks(collector, make_client):
    client = make_client(endpoint=collector.url)
    with client.trace() as root:
        client.track_state_change("before", None, 1, "Write")
        with ContextAwareThreadPoolExecutor(1) as pool:
            pool.submit(client.track_state_change, "child", None, 1, "Write").result()
        client.track_state_change("after", None, 1, "Write")
    flushed(client, collector)
    assert happens_before(one(collector, "before"), one(collector, "child"))
    assert happens_before(one(collector, "child"), one(collector, "after"))
    assert one(collector, "child")["metadata"]["thread_id"] != root.thread_id
    assert not [e for e in collector.events if kind(e) in ("AsyncSpawn", "AsyncAwait")]


def test_context_aware_thread_forks_at_start_and_joins_at_join(collector, make_client):
    client = make_client(endpoint=collector.url)
    with client.trace() as root:
        client.track_state_change("before", None, 1, "Write")
        thread = ContextAwareThread(target=client.track_state_change, args=("child", None, 1, "Write"), client=client)
        thread.start()
        thread.join()
        client.track_state_change("after", None, 1, "Write")
    assert thread.raceway_context is not None and thread.raceway_context.thread_id != root.thread_id
    flushed(client, collector)
    child = one(collector, "child")
    assert child["trace_id"] == root.trace_id
    assert happens_before(one(collector, "before"), child) and happens_before(child, one(collector, "after"))


def test_run_with_context_and_bind_give_each_run_its_own_context(collector, make_client):
    client = make_client(endpoint=collector.url)

    def work(name):
        client.track_state_change(name, None, 1, "Write")
        return get_context()

    with client.trace() as root:
        client.track_state_change("before", None, 1, "Write")
        ctx = capture()
        with ThreadPoolExecutor(2) as pool:  # a plain executor: the seed's explicit pattern
            runs = [pool.submit(run_with_context, ctx, work, f"run{i}").result() for i in range(2)]
            late = pool.submit(run_with_context, get_context(), work, "late").result()
        callback = bind(work)
        result = []
        t = threading.Thread(target=lambda: result.append(callback("callback")))  # a library's thread
        t.start()
        t.join()
        via_vars = run_with_context(contextvars.copy_context(), work, "copied")
    assert get_context() is None
    contexts = [*runs, late, result[0], via_vars]
    assert len({root.thread_id, *(c.thread_id for c in contexts)}) == 6
    assert all(c.trace_id == root.trace_id for c in contexts)
    assert bind(work) is work  # outside any context a callback stays as it is
    flushed(client, collector)
    assert concurrent(one(collector, "run0"), one(collector, "run1"))
    for name in ("run0", "run1", "callback"):
        assert happens_before(one(collector, "before"), one(collector, name)), name
    assert not [e for e in collector.events if kind(e) in ("AsyncSpawn", "AsyncAwait")]


def test_outside_any_context_tracking_is_ignored_with_a_debug_log_or_raises_in_strict_mode(
        collector, make_client, caplog):
    client = make_client(endpoint=collector.url, debug=True)
    strict = make_client(endpoint=None, strict_context=True)
    caplog.set_level(logging.DEBUG, logger="raceway")

    def untraced():
        client.track_state_change("x", None, 1, "Write")
        return get_context()

    assert asyncio.run(asyncio.to_thread(untraced)) is None
    assert any("outside of an execution context" in r.getMessage() for r in caplog.records)
    with pytest.raises(RuntimeError, match="outside"):
        with ThreadPoolExecutor(1) as pool:
            pool.submit(strict.track_state_change, "x", None, 1, "Write").result()
    assert client.flush(timeout=10) and collector.events == []


def test_a_process_pool_worker_continues_the_trace_through_headers(collector, make_client):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    client = make_client(endpoint=collector.url)
    with client.trace() as root:
        client.track_state_change("before", None, 1, "Write")
        headers = client.propagation_headers()
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            trace_id, span_id, upstream = pool.submit(process_job, collector.url, headers, 7).result(timeout=60)
    assert trace_id == root.trace_id and upstream == root.span_id
    assert span_id == headers["traceparent"].split("-")[2]
    flushed(client, collector)
    remote = one(collector, "processed")
    assert remote["metadata"]["instance_id"] == "worker" and remote["metadata"]["distributed_span_id"] == span_id
    assert happens_before(one(collector, "before"), remote)
    # headers that cannot be read start a new trace in the worker
    with continue_trace(client, {"traceparent": "garbage"}) as ctx:
        assert ctx.trace_id != root.trace_id
    assert get_context() is None
