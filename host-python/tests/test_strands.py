"""raceway.strands (strands without setup) and raceway.stress.

Plain threads, thread pools and asyncio tasks become execution contexts of their own, with
spawn and join edges, when the switch is on, and threading, concurrent.futures and asyncio are
exactly as before when it is off. The stress helpers start their contenders together and hand
back results and exceptions.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, List, Tuple

import pytest

import raceway
from raceway import Config, RacewayClient, create_context, get_context, reset_context, set_context, stress
from raceway.shared_state import record_to
from raceway.strands import disable_strands, enable_strands, strands_enabled


@contextmanager
def switched_on(trace: bool = True) -> Iterator[RacewayClient]:
    """A client and strands without setup; with ``trace``, a context current in the body (set
    here, not opened with ``client.trace()``, which inside this generator would be current only
    while the generator runs). Whatever context the body ends up with is undone."""
    client = RacewayClient(Config(endpoint=None, report_races_at_shutdown=False))
    previous = record_to(client)
    enable_strands()
    token = set_context(create_context() if trace else None)
    try:
        yield client
    finally:
        reset_context(token)
        disable_strands()
        record_to(previous)
        client.shutdown(timeout=5)


def races_of(program: Callable[[], Any], trace: bool = True) -> List[Tuple[str, str]]:
    with switched_on(trace) as client:
        program()
        return sorted((r.kind, r.variable) for r in client.races(timeout=10))


def test_switch_patches_and_restores() -> None:
    originals = (threading.Thread.start, threading.Thread.join, concurrent.futures.ThreadPoolExecutor.submit,
                 asyncio.BaseEventLoop.create_task)
    with switched_on():
        assert strands_enabled()
        assert threading.Thread.start is not originals[0]
    assert not strands_enabled()
    assert (threading.Thread.start, threading.Thread.join, concurrent.futures.ThreadPoolExecutor.submit,
            asyncio.BaseEventLoop.create_task) == originals


def test_threads_get_contexts_with_spawn_and_join() -> None:
    seen: List[Any] = []
    with switched_on():
        main = get_context()
        t = threading.Thread(target=lambda: seen.append(get_context()))
        t.start()
        t.join()
        assert seen[0] is not None and seen[0] is not main and seen[0].trace_id == main.trace_id

    def ordered() -> None:
        data = raceway.shared({"x": 0}, "data")
        data["x"] = 1  # before start

        def worker() -> None:
            data["x"] += 1

        t = threading.Thread(target=worker)
        t.start()
        t.join()
        data["x"] += 1  # after join

    def unordered() -> None:
        data = raceway.shared({"x": 0}, "data")
        t = threading.Thread(target=lambda: data.__setitem__("x", 1))
        t.start()
        data["x"] = 2
        t.join()

    assert races_of(ordered) == []
    assert races_of(unordered) == [("data-race", "data['x']")]


def test_no_context_at_all_still_works() -> None:
    """Strands without setup, and no trace: the main thread gets a context at its first
    access, and the threads it starts fork from it."""

    def program() -> None:
        def run() -> None:
            data = raceway.shared({"x": 0}, "data")
            data["x"] = 1
            t = threading.Thread(target=lambda: data.__setitem__("x", data["x"] + 1))
            t.start()
            t.join()
            data["x"] += 1

        helper = threading.Thread(target=run)  # a fresh thread: its context dies with it
        helper.start()
        helper.join()

    assert races_of(program, trace=False) == []


def test_thread_pools() -> None:
    def collected() -> None:
        results = raceway.shared({}, "results")
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(results.__setitem__, i, i * i) for i in range(8)]
            for f in futures:
                f.result()
            list(pool.map(lambda i: results[i], range(8)))
        assert sorted(results) == list(range(8))

    def uncollected() -> None:
        total = raceway.shared({}, "total")
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            for i in range(4):
                pool.submit(total.__setitem__, i, 1)  # a key each: no race between them
        total[0] += 1  # after `with`: every submitted call has finished
        assert len(total) == 4

    def racy() -> None:
        total = raceway.shared({"n": 0}, "total")
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            for _ in range(2):
                pool.submit(lambda: total.__setitem__("n", total["n"] + 1))

    assert races_of(collected) == []
    assert races_of(uncollected) == []
    assert ("data-race", "total['n']") in races_of(racy)


def test_asyncio_tasks_to_thread_and_executors() -> None:
    def program() -> None:
        data = raceway.shared({"x": 0}, "data")

        async def bump() -> None:
            data["x"] += 1

        async def main() -> None:
            data["x"] = 1
            await asyncio.gather(asyncio.create_task(bump()))
            await asyncio.to_thread(lambda: data.__setitem__("x", data["x"] + 1))
            await asyncio.get_running_loop().run_in_executor(None, lambda: data.__setitem__("x", data["x"] + 1))
            data["x"] += 1

        asyncio.run(main())
        data["x"] += 1

    def racy() -> None:
        data = raceway.shared({"x": 0}, "data")

        async def bump() -> None:
            value = data["x"]
            await asyncio.sleep(0)
            data["x"] = value + 1

        async def main() -> None:
            await asyncio.gather(bump(), bump())

        asyncio.run(main())

    assert races_of(program) == []
    assert ("lost-update", "data['x']") in races_of(racy)


def test_the_sdks_own_threads_are_left_alone() -> None:
    with switched_on() as client:
        before = get_context().seq
        other = RacewayClient(Config(endpoint=None, report_races_at_shutdown=False))  # starts its flusher
        other.shutdown(timeout=5)
        t = raceway.ContextAwareThread(target=lambda: None, client=client)
        t.start()
        t.join()
        assert get_context().seq == before + 1  # ContextAwareThread's own spawn, nothing else


# ----------------------------------------------------------------------------------------------
# Stress helpers
# ----------------------------------------------------------------------------------------------
def test_stress_threads_provoke_and_report() -> None:
    def program() -> None:
        counter = raceway.shared({"n": 0}, "counter")

        def bump() -> int:
            value = counter["n"]
            counter["n"] = value + 1
            return value

        results = stress.threads(bump, 4)
        assert len(results) == 4

    found = races_of(program)
    assert ("data-race", "counter['n']") in found


def test_stress_threads_results_index_and_errors() -> None:
    assert stress.threads(lambda i, k: i * k, 3, args=(10,), index=True) == [0, 10, 20]

    def boom() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        stress.threads(boom, 2)
    with pytest.raises(ValueError):
        stress.threads(lambda: None, 0)


def test_stress_tasks() -> None:
    def program() -> None:
        wallet = raceway.shared({"balance": 10}, "wallet")

        async def spend(amount: int) -> int:
            balance = wallet["balance"]
            await asyncio.sleep(0)
            wallet["balance"] = balance - amount
            return balance

        assert stress.run_tasks(spend, 3, args=(1,)) == [10, 10, 10]

    assert ("lost-update", "wallet['balance']") in races_of(program)

    # Without strands without setup: the loop is instrumented for the client in use.
    client = RacewayClient(Config(endpoint=None, report_races_at_shutdown=False))
    previous = record_to(client)
    token = set_context(create_context())
    try:
        program()
        assert ("lost-update", "wallet['balance']") in {(r.kind, r.variable) for r in client.races(timeout=10)}
    finally:
        reset_context(token)
        record_to(previous)
        client.shutdown(timeout=5)
