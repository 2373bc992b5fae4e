"""raceway.primitives: the standard synchronisation primitives record their happens-before
edges (no tracked_lock), only when asked, never the SDK's own nor the standard library's, and
one call undoes it.

Each primitive is checked both ways: it still behaves as the original (same results,
blocking, errors), and a program whose only ordering is that primitive is clean with it
instrumented (and races without it, where the program is otherwise unordered).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, List, Tuple

import pytest

import raceway
from raceway import Config, RacewayClient, create_context, reset_context, set_context
from raceway import primitives
from raceway.primitives import instrument_primitives, instrumented, uninstrument_primitives
from raceway.shared_state import record_to
from raceway.strands import disable_strands, enable_strands

NAMES = [("threading", "Lock"), ("threading", "RLock"), ("threading", "Condition"), ("threading", "Semaphore"),
         ("threading", "BoundedSemaphore"), ("threading", "Event"), ("threading", "Barrier"), ("queue", "Queue"),
         ("queue", "LifoQueue"), ("queue", "PriorityQueue"), ("asyncio", "Lock"), ("asyncio", "Event"),
         ("asyncio", "Condition"), ("asyncio", "Semaphore"), ("asyncio", "BoundedSemaphore"), ("asyncio", "Queue")]
MODULES = {"threading": threading, "queue": queue, "asyncio": asyncio}


@contextmanager
def automatic() -> Iterator[RacewayClient]:
    """A client, strands without setup and the primitives created inside instrumented (what
    the pytest plugin does for a test); undone afterwards."""
    client = RacewayClient(Config(endpoint=None, report_races_at_shutdown=False))
    previous = record_to(client)
    instrument_primitives(client)
    enable_strands()
    token = set_context(create_context())  # not client.trace(): in a generator it is current only inside
    try:
        yield client
    finally:
        reset_context(token)
        disable_strands()
        uninstrument_primitives()
        record_to(previous)
        client.shutdown(timeout=5)


def races_of(program: Callable[[], Any]) -> List[Tuple[str, str]]:
    with automatic() as client:
        program()
        return sorted((r.kind, r.variable) for r in client.races(timeout=10))


def run_threads(*targets: Callable[[], Any]) -> None:
    threads = [threading.Thread(target=t) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)


# ----------------------------------------------------------------------------------------------
# Switching on and off
# ----------------------------------------------------------------------------------------------
def test_names_replaced_and_restored() -> None:
    originals = {(m, n): getattr(MODULES[m], n) for m, n in NAMES}
    old_lock, old_event = threading.Lock(), threading.Event()
    with automatic():
        assert instrumented()
        for (m, n), original in originals.items():
            assert getattr(MODULES[m], n) is not original, (m, n)
        lock, event, q = threading.Lock(), threading.Event(), queue.Queue()
        assert isinstance(lock, threading.Lock) and isinstance(old_lock, threading.Lock)
        assert isinstance(event, threading.Event) and isinstance(old_event, threading.Event)
        assert isinstance(q, queue.Queue) and issubclass(queue.LifoQueue, queue.Queue)
        assert type(event).__bases__[-1] is originals[("threading", "Event")]
    assert not instrumented()
    for (m, n), original in originals.items():
        assert getattr(MODULES[m], n) is original, (m, n)
    assert type(threading.Event()) is originals[("threading", "Event")]
    # Those made meanwhile still work, and record nothing any more.
    with lock:
        pass
    event.set()
    assert event.wait(0)


def test_the_sdks_and_the_standard_librarys_own_primitives_are_untouched() -> None:
    lock_type = type(primitives._raw_lock())
    with automatic():
        client = RacewayClient(Config(endpoint=None, report_races_at_shutdown=False))
        try:
            assert type(client._disable_lock) is lock_type  # made by the SDK
        finally:
            client.shutdown(timeout=5)
        t = threading.Thread(target=lambda: None)
        assert type(t._started) is primitives._ORIGINALS[("threading", "Event")]  # made by threading
        q = queue.Queue()
        assert type(q.mutex) is lock_type  # made by queue
        from raceway.sync import TrackedEvent, TrackedQueue

        assert primitives._QueueMixin not in TrackedQueue.__mro__ and primitives._EventMixin not in TrackedEvent.__mro__
        assert primitives._traced_classes.get(primitives._ORIGINALS[("threading", "Event")]) is threading.Event


def test_objects_passed_in() -> None:
    client = RacewayClient(Config(endpoint=None, report_races_at_shutdown=False))
    raw, cond, event = threading.Lock(), threading.Condition(), threading.Event()
    token = set_context(create_context())
    try:
        lock, same_cond, same_event = instrument_primitives(client, raw, cond, event)
        assert not instrumented()  # the names are left alone
        assert same_cond is cond and same_event is event and lock is not raw and lock._raw is raw
        with lock:
            assert raw.locked()
        with cond:
            cond.notify_all()
        event.set()
        client.flush(5)
        assert client.stats()["recorded"] >= 5
    finally:
        reset_context(token)
        uninstrument_primitives()
        client.shutdown(timeout=5)
    assert type(cond) is primitives._ORIGINALS[("threading", "Condition")]
    assert type(event) is primitives._ORIGINALS[("threading", "Event")]
    with pytest.raises(TypeError):
        instrument_primitives(None, object())
    uninstrument_primitives()


# ----------------------------------------------------------------------------------------------
# Behaviour
# ----------------------------------------------------------------------------------------------
def test_threading_primitives_behave_like_the_originals() -> None:
    with automatic():
        lock = threading.Lock()
        assert lock.acquire() and not lock.acquire(blocking=False) and lock.locked()
        lock.release()
        with pytest.raises(RuntimeError):
            lock.release()
        rlock = threading.RLock()
        with rlock:
            with rlock:
                assert rlock._is_owned()
        with pytest.raises(RuntimeError):
            rlock.release()
        cond = threading.Condition(threading.Lock())
        box: List[int] = []

        def consumer() -> None:
            with cond:
                assert cond.wait_for(lambda: box, timeout=10)

        t = threading.Thread(target=consumer)
        t.start()
        with cond:
            box.append(1)
            cond.notify()
        t.join(10)
        with cond:
            assert cond.wait(0.01) is False
        sem = threading.BoundedSemaphore(2)
        assert sem.acquire() and sem.acquire() and not sem.acquire(timeout=0.01)
        sem.release()
        sem.release()
        with pytest.raises(ValueError):
            sem.release()
        barrier = threading.Barrier(2, timeout=10)
        indexes = []
        run_threads(lambda: indexes.append(barrier.wait()), lambda: indexes.append(barrier.wait()))
        assert sorted(indexes) == [0, 1]
        q = queue.PriorityQueue()
        for v in (3, 1, 2):
            q.put(v)
        assert [q.get() for _ in range(3)] == [1, 2, 3]
        with pytest.raises(queue.Empty):
            q.get_nowait()
        for _ in range(3):
            q.task_done()
        q.join()


def test_asyncio_primitives_behave_like_the_originals() -> None:
    async def main() -> None:
        lock = asyncio.Lock()
        async with lock:
            assert lock.locked()
        cond = asyncio.Condition()
        box: List[int] = []

        async def waiter() -> None:
            async with cond:
                await cond.wait_for(lambda: box)

        task = asyncio.create_task(waiter())
        await asyncio.sleep(0)
        async with cond:
            box.append(1)
            cond.notify_all()
        await asyncio.wait_for(task, 10)
        sem = asyncio.BoundedSemaphore(1)
        async with sem:
            assert sem.locked()
        event = asyncio.Event()
        event.set()
        assert await event.wait() and event.is_set()
        q: asyncio.Queue = asyncio.Queue()
        await q.put(1)
        assert q.get_nowait() == 1
        q.task_done()
        await q.join()

    with automatic():
        asyncio.run(main())


# ----------------------------------------------------------------------------------------------
# Edges: clean with the primitive, racy without it
# ----------------------------------------------------------------------------------------------
def _counter(with_lock: bool, kind: str = "Lock") -> Callable[[], None]:
    def program() -> None:
        counter = raceway.shared({"n": 0}, "counter")
        lock = getattr(threading, kind)()

        def bump() -> None:
            for _ in range(20):
                if with_lock:
                    with lock:
                        with lock if kind == "RLock" else _nothing():
                            counter["n"] += 1
                else:
                    counter["n"] += 1

        run_threads(bump, bump)

    return program


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@pytest.mark.parametrize("kind", ["Lock", "RLock", "Condition", "Semaphore", "BoundedSemaphore"])
def test_locks_order_critical_sections(kind: str) -> None:
    assert ("data-race", "counter['n']") in races_of(_counter(False, kind))
    assert races_of(_counter(True, kind)) == []


def test_condition_wait_and_notify() -> None:
    def program() -> None:
        box = raceway.shared({"item": None}, "box")
        cond = threading.Condition()

        def consumer() -> None:
            with cond:
                cond.wait_for(lambda: box["item"] is not None, timeout=10)
                box["item"] += 1

        t = threading.Thread(target=consumer)
        t.start()
        with cond:
            box["item"] = 1
            cond.notify()
        t.join(10)

    assert races_of(program) == []


def test_event_barrier_and_queue_hand_offs() -> None:
    def with_event() -> None:
        data = raceway.shared({"v": 0}, "data")
        ready = threading.Event()

        def reader() -> None:
            ready.wait(10)
            data["v"] += 1

        t = threading.Thread(target=reader)
        t.start()
        data["v"] = 1
        ready.set()
        t.join(10)

    def with_barrier() -> None:
        data = raceway.shared({"a": 0, "b": 0}, "data")
        barrier = threading.Barrier(2, timeout=10)

        def first() -> None:
            data["a"] = 1
            barrier.wait()
            data["b"] += 1

        def second() -> None:
            data["b"] = 1
            barrier.wait()
            data["a"] += 1

        run_threads(first, second)

    def with_queue() -> None:
        q = queue.Queue()

        def producer() -> None:
            for i in range(3):
                job = raceway.shared({"payload": i}, f"job{i}")
                q.put(job)

        def consumer() -> None:
            for _ in range(3):
                job = q.get(timeout=10)
                job["payload"] += 1
                q.task_done()

        run_threads(producer, consumer)
        q.join()

    for program in (with_event, with_barrier, with_queue):
        assert races_of(program) == [], program.__name__


def test_a_plain_flag_still_races() -> None:
    def program() -> None:
        data = raceway.shared({"v": 0, "ready": False}, "data")

        def reader() -> None:
            while not data["ready"]:
                pass
            data["v"] += 1

        t = threading.Thread(target=reader)
        t.start()
        data["v"] = 1
        data["ready"] = True
        t.join(10)

    assert ("data-race", "data['ready']") in races_of(program)


def test_asyncio_lock_queue_and_event() -> None:
    def program() -> None:
        wallet = raceway.shared({"balance": 100}, "wallet")

        async def main() -> None:
            lock = asyncio.Lock()
            q: asyncio.Queue = asyncio.Queue()
            done = asyncio.Event()

            async def spend(n: int) -> None:
                async with lock:
                    balance = wallet["balance"]
                    await asyncio.sleep(0)
                    wallet["balance"] = balance - n

            item = raceway.shared({"v": 0}, "item")

            async def producer() -> None:
                await asyncio.sleep(0)
                item["v"] = 1
                await q.put("ready")

            async def consumer() -> None:
                await q.get()
                item["v"] += 1
                done.set()

            async def last() -> None:
                await done.wait()
                item["v"] += 1

            await asyncio.gather(spend(10), spend(20), producer(), consumer(), last())

        asyncio.run(main())

    assert races_of(program) == []


def test_locks_held_appear_in_the_report() -> None:
    with automatic() as client:
        counter = raceway.shared({"n": 0}, "counter")
        lock = threading.Lock()

        def bump() -> None:
            with lock:
                counter["n"] += 1

        def unlocked() -> None:
            counter["n"] += 1

        run_threads(bump, unlocked)
        races = client.races(timeout=10)
    held = [a.locks for r in races for a in r.accesses if a.locks]
    assert held and held[0][0].startswith("Lock#") and "test_primitives.py:" in held[0][0]


def test_lock_events_carry_the_held_locks_the_callers_line_and_few_states() -> None:
    """Each acquire and release is one event located at the application's line; the acquire's
    and the release's state hold the lock, the events after the release do not; a lock taken
    in a loop records the same two states again (not a new state per event), nested re-entrant
    holds included."""
    client = RacewayClient(Config(endpoint=None, report_races_at_shutdown=False, batch_size=10**6,
                                  flush_interval=3600))
    previous = record_to(client)
    instrument_primitives(client)
    try:
        lock, rlock = threading.Lock(), threading.RLock()
        box = raceway.shared({"n": 0}, "box")
        with client.trace():
            for _ in range(50):
                with lock:
                    box["n"] += 1
            lock.acquire()
            lock.release()
            with rlock:
                with rlock:
                    box["n"] = 0
            box["n"] = 1
        records = list(client._queue)
    finally:
        uninstrument_primitives()
        record_to(previous)
        client.shutdown(timeout=5)
    kinds = [r[8] for r in records]
    assert kinds[:4] == ["LockAcquire", "StateChange", "StateChange", "LockRelease"]
    assert kinds.count("LockAcquire") == kinds.count("LockRelease") == 53
    lock_id = records[0][9]  # the first field: records are flat (raceway._records)
    for r in records:
        if r[8] in ("LockAcquire", "LockRelease") and r[9] == lock_id:
            assert r[1][1] == (lock_id,)
        assert r[6].endswith("test_primitives.py")
    with_line = records[0][7]
    assert {r[7] for r in records[:200] if r[8] != "StateChange"} == {with_line}  # `with lock:`
    assert {r[7] for r in records[:200] if r[8] == "StateChange"} == {with_line + 1}  # `box["n"] += 1`
    # The loop's 200 events (all made holding the lock) share one state, not one per acquire.
    assert len({id(r[1]) for r in records[:200]}) == 1
    rlock_id = records[-6][9]
    assert [r[1][1] for r in records[-6:]] == [
        (rlock_id,), (rlock_id, rlock_id), (rlock_id, rlock_id), (rlock_id, rlock_id), (rlock_id,), ()]
    assert records[-1][9:12] == ("box['n']", None, 1)
