"""raceway.sync: queues and events whose hand-offs are happens-before annotations.

They behave exactly like the standard library's (same results, exceptions, blocking), annotate
only inside an execution context (put/set before the item or flag is visible, get/wait after),
and never raise because of the SDK. The detector's view of them is in tests/races (the corpus).
"""

from __future__ import annotations

import asyncio
import queue
import subprocess
import sys
import threading
from typing import Any, List, Tuple

import pytest

import raceway
from raceway import create_context, reset_context, set_context
from raceway.sync import TrackedAsyncEvent, TrackedAsyncQueue, TrackedEvent, TrackedQueue


class AnnotationSpy:
    """Stands in for the client: records each annotation with what the queue or event looked
    like at that moment (``look`` reads it without taking the queue's mutex, which the caller
    may hold)."""

    def __init__(self) -> None:
        self.calls: List[Tuple[str, Any, Any]] = []
        self.look = lambda: None

    def happens_before(self, token: Any) -> None:
        self.calls.append(("before", token, self.look()))

    def happens_after(self, token: Any) -> None:
        self.calls.append(("after", token, self.look()))


class Raising:
    def happens_before(self, token: Any) -> None:
        raise RuntimeError("the SDK failed")

    happens_after = happens_before


@pytest.fixture
def in_context():
    token = set_context(create_context())
    yield
    reset_context(token)


# -- the same behaviour as the originals ------------------------------------------------------
def test_they_are_the_standard_classes():
    assert issubclass(TrackedQueue, queue.Queue)
    assert issubclass(TrackedAsyncQueue, asyncio.Queue)
    assert issubclass(TrackedEvent, threading.Event)
    assert issubclass(TrackedAsyncEvent, asyncio.Event)


@pytest.mark.parametrize("context", [False, True])
def test_queue_behaves_like_queue_queue(context, request):
    if context:
        request.getfixturevalue("in_context")
    q = TrackedQueue(AnnotationSpy(), maxsize=2)
    assert q.maxsize == 2 and q.empty()
    assert q.put(1) is None
    assert q.put_nowait(2) is None
    assert q.full() and q.qsize() == 2
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.01)
    assert q.get() == 1
    assert q.get_nowait() == 2
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)
    q.task_done()
    q.task_done()
    with pytest.raises(ValueError):
        q.task_done()
    assert q.join() is None
    assert TrackedQueue(None).maxsize == 0


@pytest.mark.parametrize("context", [False, True])
def test_event_behaves_like_threading_event(context, request):
    if context:
        request.getfixturevalue("in_context")
    e = TrackedEvent(AnnotationSpy())
    assert e.is_set() is False
    assert e.wait(0.01) is False
    assert e.set() is None
    assert e.is_set() is True
    assert e.wait() is True and e.wait(0) is True
    e.clear()
    assert e.is_set() is False
    threading.Timer(0.01, e.set).start()
    assert e.wait(10) is True


@pytest.mark.parametrize("context", [False, True])
def test_async_queue_and_event_behave_like_asyncio_ones(context, request):
    if context:
        request.getfixturevalue("in_context")

    async def main():
        q = TrackedAsyncQueue(AnnotationSpy(), maxsize=1)
        assert q.maxsize == 1
        assert await q.put("a") is None
        with pytest.raises(asyncio.QueueFull):
            q.put_nowait("b")
        assert await q.get() == "a"
        with pytest.raises(asyncio.QueueEmpty):
            q.get_nowait()
        q.put_nowait("c")
        assert q.get_nowait() == "c"
        getter = asyncio.ensure_future(q.get())
        await asyncio.sleep(0)
        await q.put("d")  # wakes the waiting getter
        assert await getter == "d"
        q.task_done()
        q.task_done()
        q.task_done()
        with pytest.raises(ValueError):
            q.task_done()
        assert await q.join() is None

        e = TrackedAsyncEvent(AnnotationSpy())
        assert e.is_set() is False
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(e.wait(), 0.01)
        asyncio.get_running_loop().call_later(0.01, e.set)
        assert await e.wait() is True
        assert e.is_set() is True
        e.clear()
        assert e.is_set() is False

    asyncio.run(main())


# -- the annotations ----------------------------------------------------------------------------
def test_outside_a_context_nothing_is_annotated():
    rec = AnnotationSpy()
    q, e = TrackedQueue(rec), TrackedEvent(rec)
    q.put(1)
    q.get()
    q.task_done()
    q.join()
    e.set()
    e.wait()
    e.is_set()

    async def main():
        aq, ae = TrackedAsyncQueue(rec), TrackedAsyncEvent(rec)
        await aq.put(1)
        await aq.get()
        aq.task_done()
        await aq.join()
        ae.set()
        await ae.wait()

    asyncio.run(main())
    assert rec.calls == []


def test_queue_put_annotates_before_the_item_is_in_get_after_it_left(in_context):
    rec = AnnotationSpy()
    q = TrackedQueue(rec)
    rec.look = lambda: list(q.queue)  # no mutex: put/get hold it while they annotate
    q.put("x")
    q.put_nowait("y")
    assert q.get() == "x"
    assert q.get_nowait() == "y"
    assert rec.calls == [("before", q, []), ("before", q, ["x"]), ("after", q, ["y"]), ("after", q, [])]


def test_queue_failures_annotate_nothing(in_context):
    rec = AnnotationSpy()
    q = TrackedQueue(rec, maxsize=1)
    q.put(1)
    rec.calls.clear()
    with pytest.raises(queue.Full):
        q.put_nowait(2)
    with pytest.raises(queue.Full):
        q.put(2, timeout=0.01)
    q.get()
    rec.calls.clear()
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)
    assert rec.calls == []


def test_task_done_happens_before_join_on_a_token_of_its_own(in_context):
    rec = AnnotationSpy()
    q = TrackedQueue(rec)
    q.put(1)
    q.get()
    rec.calls.clear()
    q.task_done()
    q.join()
    (before, token, _), (after, token2, _) = rec.calls
    assert (before, after) == ("before", "after") and token is token2 and token is not q


def test_event_set_annotates_before_the_flag_wait_after_a_true_answer_only(in_context):
    rec = AnnotationSpy()
    e = TrackedEvent(rec)
    rec.look = lambda: threading.Event.is_set(e)
    assert e.wait(0.01) is False
    assert e.is_set() is False
    assert rec.calls == []
    e.set()
    assert e.wait(0) is True
    assert e.is_set() is True
    assert rec.calls == [("before", e, False), ("after", e, True), ("after", e, True)]


def test_async_queue_and_event_annotations(in_context):
    async def main():
        rec = AnnotationSpy()
        q = TrackedAsyncQueue(rec)
        rec.look = lambda: list(q._queue)
        await q.put("x")
        q.put_nowait("y")
        assert await q.get() == "x"
        assert q.get_nowait() == "y"
        assert rec.calls == [("before", q, []), ("before", q, ["x"]), ("after", q, ["y"]), ("after", q, [])]
        rec.calls.clear()
        with pytest.raises(asyncio.QueueEmpty):
            q.get_nowait()
        q.task_done()
        q.task_done()
        await q.join()
        assert [c[0] for c in rec.calls] == ["before", "before", "after"]
        assert all(c[1] is not q for c in rec.calls)

        rec2 = AnnotationSpy()
        e = TrackedAsyncEvent(rec2)
        rec2.look = lambda: asyncio.Event.is_set(e)
        assert e.is_set() is False
        e.set()
        assert await e.wait() is True
        assert rec2.calls == [("before", e, False), ("after", e, True)]

    asyncio.run(main())


# -- never raise because of the SDK ------------------------------------------------------------
def test_a_failing_client_never_reaches_the_application(in_context):
    client = Raising()
    q, e = TrackedQueue(client), TrackedEvent(client)
    q.put(1)
    assert q.get() == 1
    q.task_done()
    q.join()
    e.set()
    assert e.wait() and e.is_set()

    async def main():
        aq, ae = TrackedAsyncQueue(client), TrackedAsyncEvent(client)
        await aq.put(1)
        assert await aq.get() == 1
        ae.set()
        assert await ae.wait()

    asyncio.run(main())


def test_strict_context_does_not_make_them_raise_outside_a_context(make_client):
    client = make_client(endpoint=None, strict_context=True)
    with pytest.raises(RuntimeError):
        client.happens_before("token")  # what the wrappers must not call outside a context
    q, e = TrackedQueue(client), TrackedEvent(client)
    q.put(1)
    assert q.get() == 1
    e.set()
    assert e.wait(0)
    assert client.stats()["recorded"] == 0


def test_with_a_real_client_the_annotations_are_recorded_only_in_a_context(make_client):
    client = make_client(endpoint=None, report_races_at_shutdown=False)
    q = TrackedQueue(client)
    q.put(1)
    q.get()
    assert client.stats()["recorded"] == 0
    with client.trace():
        q.put(1)
        q.get()
    assert client.stats()["recorded"] == 2
    assert client.races() == []


# -- exports -------------------------------------------------------------------------------------
def test_exported_lazily_from_the_package():
    for name in ("TrackedQueue", "TrackedAsyncQueue", "TrackedEvent", "TrackedAsyncEvent"):
        assert name in raceway.__all__
        assert getattr(raceway, name) is getattr(raceway.sync, name)
    code = "import sys, raceway; assert 'raceway.sync' not in sys.modules; raceway.TrackedQueue; assert 'raceway.sync' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_ordering_variants_compose_with_the_tracked_queue(in_context):
    class TrackedPriorityQueue(TrackedQueue, queue.PriorityQueue):
        pass

    class TrackedLifoQueue(TrackedQueue, queue.LifoQueue):
        pass

    rec = AnnotationSpy()
    pq, lq = TrackedPriorityQueue(rec), TrackedLifoQueue(rec)
    for x in (3, 1, 2):
        pq.put(x)
        lq.put(x)
    assert [pq.get() for _ in range(3)] == [1, 2, 3]
    assert [lq.get() for _ in range(3)] == [2, 1, 3]
    assert [c[0] for c in rec.calls].count("before") == 6
    assert [c[0] for c in rec.calls].count("after") == 6
