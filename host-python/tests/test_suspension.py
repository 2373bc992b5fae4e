"""Contexts opened at a suspension point never leak into the caller and are never clobbered:
a generator, an async generator, a coroutine driven by hand, and a generator closed or
garbage-collected on another thread while that thread is inside its own context. Checked on
the events that arrived at a real collector."""

from __future__ import annotations

import asyncio
import gc
import threading

from _servers import body, kind
from raceway import get_context


def by_variable(collector):
    return {body(e)["variable"]: e["metadata"]["thread_id"] for e in collector.events if kind(e) == "StateChange"}


def test_a_generator_context_is_current_only_while_the_generator_runs(collector, make_client):
    client = make_client(endpoint=collector.url)

    def numbers():
        with client.trace() as inner:
            client.track_state_change("gen.first", None, 1, "Write")
            yield inner
            client.track_state_change("gen.second", None, 2, "Write")

    with client.trace() as outer:
        it = numbers()
        inner = next(it)
        assert get_context() is outer
        client.track_state_change("caller.between", None, 1, "Write")
        assert next(it, None) is None
        client.track_state_change("caller.after", None, 1, "Write")
        assert get_context() is outer
    assert client.flush(timeout=10)
    seen = by_variable(collector)
    assert seen["gen.first"] == seen["gen.second"] == inner.thread_id
    assert seen["caller.between"] == seen["caller.after"] == outer.thread_id != inner.thread_id


def test_an_async_generator_context_does_not_leak_into_the_consumer(collector, make_client):
    client = make_client(endpoint=collector.url)

    async def stream():
        with client.trace() as inner:
            for i in range(2):
                client.track_state_change(f"agen.{i}", None, i, "Write")
                yield inner

    async def main():
        with client.trace() as outer:
            async for inner in stream():
                client.track_state_change("consumer", None, 1, "Write")
                assert get_context() is outer
            return outer, inner

    outer, inner = asyncio.run(main())
    assert client.flush(timeout=10)
    seen = by_variable(collector)
    assert seen["agen.0"] == seen["agen.1"] == inner.thread_id
    assert seen["consumer"] == outer.thread_id


def test_a_coroutine_driven_by_hand_does_not_leak(collector, make_client):
    client = make_client(endpoint=collector.url)

    class Pause:
        def __await__(self):
            yield

    async def step():
        with client.trace() as inner:
            client.track_state_change("coro.before", None, 1, "Write")
            await Pause()
            client.track_state_change("coro.after", None, 1, "Write")
        return inner

    with client.trace() as outer:
        coro = step()
        coro.send(None)
        client.track_state_change("driver", None, 1, "Write")
        assert get_context() is outer
        try:
            coro.send(None)
        except StopIteration as done:
            inner = done.value
    assert client.flush(timeout=10)
    seen = by_variable(collector)
    assert seen["coro.before"] == seen["coro.after"] == inner.thread_id
    assert seen["driver"] == outer.thread_id


def test_a_generator_closed_on_another_thread_leaves_that_threads_context_alone(collector, make_client):
    client = make_client(endpoint=collector.url)

    def numbers():
        with client.trace():
            client.track_state_change("gen", None, 1, "Write")
            yield 1

    with client.trace():
        it = numbers()
        next(it)
    seen_in_thread = {}

    def other():
        with client.trace() as mine:
            it.close()  # the generator's `finally` runs here, in this thread's context
            seen_in_thread["after-close"] = get_context()
            client.track_state_change("other", None, 1, "Write")
            del_gen()
            seen_in_thread["after-gc"] = get_context()
            seen_in_thread["mine"] = mine

    holder = {}

    def make_and_drop():
        def g():
            with client.trace():
                yield 1
        gen = g()
        next(gen)
        holder["gen"] = gen

    make_and_drop()

    def del_gen():
        holder.pop("gen")
        gc.collect()

    t = threading.Thread(target=other)
    t.start()
    t.join()
    mine = seen_in_thread["mine"]
    assert seen_in_thread["after-close"] is mine and seen_in_thread["after-gc"] is mine
    assert client.flush(timeout=10)
    assert by_variable(collector)["other"] == mine.thread_id


def test_reset_context_with_a_foreign_token_changes_nothing(make_client):
    import contextvars

    from raceway import create_context, reset_context, set_context

    a, b = create_context(), create_context()
    token = contextvars.copy_context().run(set_context, a)  # a token of another Context
    set_context(b)
    reset_context(token)
    assert get_context() is b
    set_context(None)


def test_a_trace_continued_inside_a_generator_does_not_leak(make_client):
    """`continue_trace` is the same kind of context manager as `trace()`: anchored alike."""
    from raceway import continue_trace

    client = make_client(endpoint=None, report_races_at_shutdown=False)

    def worker():
        with continue_trace(client, {}) as ctx:
            yield ctx

    with client.trace() as outer:
        it = worker()
        inner = next(it)
        assert get_context() is outer and inner is not outer
        next(it, None)
        assert get_context() is outer
