"""``@track_function`` (and ``track_async``, ``track_method``) on generator and async generator
functions: the call is the iteration. The duration covers it (at least the time the test itself
slept in it), an exception raised during it is an ``Error``, a generator closed early is not,
and ``send``/``throw``/return values pass through. Checked on what arrived at the collector."""

from __future__ import annotations

import asyncio
import gc
import inspect
import threading
import time

import pytest

from _servers import body, kind
from raceway import track_async, track_function, track_method

SLEEP = 0.1
ITEMS = 3
DECORATORS = {"track_function": track_function, "track_async": track_async, "track_method": track_method}


def tracked(collector):
    """(kind, name) of each event that arrived, and the function_return events' data."""
    out, returns = [], []
    for e in collector.events:
        k = kind(e)
        if k == "FunctionCall":
            out.append((k, body(e)["function_name"]))
        elif k == "Custom" and body(e)["name"] == "function_return":
            out.append((k, body(e)["data"]["function"]))
            returns.append((body(e)["data"], e["metadata"]["duration_ns"]))
        elif k == "Error":
            out.append((k, body(e)["error_type"]))
        elif k == "StateChange":
            out.append((k, body(e)["variable"]))
    return out, returns


def make_generators(decorator, client):
    """A generator function, an async one, and the same as methods (for track_method)."""

    @decorator(client, name="numbers")
    def numbers(n, fail=False):
        for i in range(n):
            if fail and i == 1:
                raise ValueError("bad item")
            client.track_state_change("item", None, i, "Write")
            time.sleep(SLEEP)
            yield i

    @decorator(client, name="anumbers")
    async def anumbers(n, fail=False):
        for i in range(n):
            if fail and i == 1:
                raise ValueError("bad item")
            client.track_state_change("item", None, i, "Write")
            await asyncio.sleep(SLEEP)
            yield i

    class Feed:
        @decorator(client, name="numbers")
        def numbers(self, n, fail=False):
            yield from numbers.__wrapped__(n, fail)

        @decorator(client, name="anumbers")
        async def anumbers(self, n, fail=False):
            async for i in anumbers.__wrapped__(n, fail):
                yield i

    return numbers, anumbers, Feed()


@pytest.mark.parametrize("name", list(DECORATORS))
@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_the_duration_covers_the_iteration(name, flavour, collector, make_client):
    client = make_client(endpoint=collector.url)
    numbers, anumbers, feed = make_generators(DECORATORS[name], client)
    if name == "track_method":
        numbers, anumbers = feed.numbers, feed.anumbers
    assert inspect.isgeneratorfunction(numbers) and inspect.isasyncgenfunction(anumbers)

    async def consume():
        return [i async for i in anumbers(ITEMS)]

    with client.trace():
        items = list(numbers(ITEMS)) if flavour == "sync" else asyncio.run(consume())
    assert items == list(range(ITEMS))
    assert client.flush(timeout=10)
    seen, returns = tracked(collector)
    label = "numbers" if flavour == "sync" else "anumbers"  # the names given (defaults differ by form)
    assert seen == [("FunctionCall", label)] + [("StateChange", "item")] * ITEMS + [("Custom", label)]
    (data, duration_ns), = returns
    assert data["duration_ns"] == duration_ns >= ITEMS * SLEEP * 1e9  # not the 0.002 ms of a call


@pytest.mark.parametrize("name", list(DECORATORS))
@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_an_exception_during_the_iteration_is_an_error(name, flavour, collector, make_client):
    client = make_client(endpoint=collector.url)
    numbers, anumbers, feed = make_generators(DECORATORS[name], client)
    if name == "track_method":
        numbers, anumbers = feed.numbers, feed.anumbers

    async def consume():
        return [i async for i in anumbers(ITEMS, fail=True)]

    with client.trace():
        with pytest.raises(ValueError, match="bad item"):
            list(numbers(ITEMS, fail=True)) if flavour == "sync" else asyncio.run(consume())
    assert client.flush(timeout=10)
    seen, returns = tracked(collector)
    label = "numbers" if flavour == "sync" else "anumbers"
    assert seen == [("FunctionCall", label), ("StateChange", "item"), ("Error", "ValueError"), ("Custom", label)]
    assert returns[0][1] >= SLEEP * 1e9


def test_a_generator_closed_early_is_not_an_error(collector, make_client):
    client = make_client(endpoint=collector.url)
    numbers, anumbers, _ = make_generators(track_function, client)
    finished = []

    async def consume():
        agen = anumbers(ITEMS)
        async for i in agen:
            if i == 1:
                break
        # Closed where the loop broke (contextlib.aclosing does the same). Left to the event
        # loop, it would be closed later in a task of its own: another strand, nothing recorded.
        await agen.aclose()

    with client.trace():
        for i in numbers(ITEMS):
            if i == 1:
                break
        it = numbers(ITEMS)
        next(it)
        it.close()
        finished.append(True)
        asyncio.run(consume())
    assert client.flush(timeout=10)
    seen, returns = tracked(collector)
    assert [k for k, _ in seen].count("Error") == 0
    assert [k for k, _ in seen].count("Custom") == 3


def test_send_throw_and_the_return_value_pass_through(collector, make_client):
    client = make_client(endpoint=collector.url)

    @track_function(client)
    def accumulate():
        total = 0
        while True:
            try:
                value = yield total
            except KeyError:
                value = 100
            if value is None:
                return total
            total += value

    @track_function(client)
    async def aecho():
        value = None
        while True:
            try:
                value = yield value
            except KeyError:
                value = "caught"

    async def drive():
        g = aecho()
        first = await g.asend(None)
        echoed = await g.asend("x")
        caught = await g.athrow(KeyError())
        await g.aclose()
        return first, echoed, caught

    with client.trace():
        g = accumulate()
        assert next(g) == 0
        assert g.send(5) == 5
        assert g.throw(KeyError()) == 105
        with pytest.raises(StopIteration) as stop:
            g.send(None)
        assert stop.value.value == 105
        assert asyncio.run(drive()) == (None, "x", "caught")
    assert client.flush(timeout=10)
    seen, returns = tracked(collector)
    assert [k for k, _ in seen] == ["FunctionCall", "Custom", "FunctionCall", "Custom"]


def test_a_generator_collected_on_another_thread_records_nothing_there(collector, make_client):
    """Closed by the garbage collector on a thread that never ran it, inside that thread's own
    context: nothing is recorded on that context (it was not that strand's call)."""
    client = make_client(endpoint=collector.url)

    @track_function(client)
    def numbers():
        yield 1
        yield 2

    with client.trace():
        it = numbers()
        next(it)
    holder = [it]
    del it
    other = {}

    def elsewhere():
        with client.trace() as ctx:
            other["ctx"] = ctx
            holder.clear()  # the last reference: the generator is closed here
            gc.collect()
            client.track_state_change("elsewhere", None, 1, "Write")

    t = threading.Thread(target=elsewhere)
    t.start()
    t.join()
    assert client.flush(timeout=10)
    on_other = [e for e in collector.events if e["metadata"]["thread_id"] == other["ctx"].thread_id]
    assert [kind(e) for e in on_other] == ["StateChange"]
