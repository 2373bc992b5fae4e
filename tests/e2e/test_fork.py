"""``os.fork()`` with a live client, on real processes: the child gets its own flusher, core
instances, connection and identity; parent and child both deliver, under their own process ids.

A forked child runs inside pytest: it must never return into pytest's code, so every child
body ends in ``os._exit`` with a status the parent checks.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections import defaultdict
from typing import Callable, Dict, List

import pytest

from conftest import assert_valid_batch
from raceway import get_context

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # 3.12+: fork with threads
]


def in_child(body: Callable[[], bool]) -> int:
    """Forks; the child runs ``body`` and exits 0 if it returned True. Returns the child's pid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            signal.alarm(60)  # a hung child must not hang the suite
            code = 0 if body() else 2
        except BaseException:
            code = 3
        finally:
            os._exit(code)
    return pid


def wait_child(pid: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return -1
        time.sleep(0.01)


def by_process(events: List[dict]) -> Dict[int, List[dict]]:
    groups: Dict[int, List[dict]] = defaultdict(list)
    for e in events:
        groups[e["metadata"]["process_id"]].append(e)
    return groups


def test_parent_and_child_both_deliver_under_their_own_process_and_instance(collector, make_client):
    # Long interval and big batches: what the parent recorded before the fork is still queued.
    client = make_client(endpoint=collector.url, instance_id=None, flush_interval=60.0, batch_size=1000)
    with client.trace():
        for i in range(10):
            client.track_state_change("before_fork", i, i + 1, "Write")

    def child() -> bool:
        with client.trace():
            for i in range(20):
                client.track_state_change("in_child", i, i + 1, "Write")
        return client.flush(timeout=30)

    pid = in_child(child)
    with client.trace():
        for i in range(20):
            client.track_state_change("in_parent", i, i + 1, "Write")
    assert wait_child(pid) == 0
    assert client.flush(timeout=30)

    events = collector.events
    groups = by_process(events)
    assert set(groups) == {os.getpid(), pid}
    variables = lambda evs: sorted({e["kind"]["StateChange"]["variable"] for e in evs})  # noqa: E731
    assert variables(groups[os.getpid()]) == ["before_fork", "in_parent"]
    assert variables(groups[pid]) == ["in_child"]
    assert len(groups[os.getpid()]) == 30 and len(groups[pid]) == 20  # nothing delivered twice
    host = socket.gethostname()
    assert {e["metadata"]["instance_id"] for e in groups[os.getpid()]} == {f"{host}-{os.getpid()}"}
    assert {e["metadata"]["instance_id"] for e in groups[pid]} == {f"{host}-{pid}"}
    assert len({e["id"] for e in events}) == len(events)
    for batch in collector.batches:
        assert_valid_batch(batch)


def test_a_context_open_at_the_fork_goes_on_as_a_child_context_in_the_child(collector, make_client):
    client = make_client(endpoint=collector.url, flush_interval=60.0, batch_size=1000)
    with client.trace() as ctx:
        for i in range(5):
            client.track_state_change("x", i, i + 1, "Write")

        def child() -> bool:
            renewed = get_context()
            if renewed is ctx or renewed is None:
                return False
            for i in range(5):
                client.track_state_change("x", i, i + 1, "Write")
            return client.flush(timeout=30)

        pid = in_child(child)
        for i in range(5):
            client.track_state_change("x", i, i + 1, "Write")
    assert wait_child(pid) == 0
    assert client.flush(timeout=30)

    events = collector.events
    assert len(events) == 15 and len({e["id"] for e in events}) == 15  # no id used twice
    child_events = by_process(events)[pid]
    assert len(child_events) == 5
    assert all(e["metadata"]["thread_id"].startswith(f"python-{pid}-") for e in child_events)
    assert all(e["trace_id"] == ctx.trace_id for e in child_events)
    # The child started knowing everything the parent context had done before the fork.
    first = dict(map(tuple, child_events[0]["causality_vector"]))
    assert first[ctx.component] >= 5


def test_forking_while_the_flusher_is_busy_never_hangs_the_child(collector, make_client):
    client = make_client(endpoint=collector.url, flush_interval=0.01, batch_size=50)
    stop = threading.Event()

    def busy() -> None:
        with client.trace():
            while not stop.is_set():
                for i in range(200):
                    client.track_function_call("busy", {"i": i})
                time.sleep(0.001)

    worker = threading.Thread(target=busy)
    worker.start()
    pids = []
    try:
        for n in range(5):
            time.sleep(0.02 * n)

            def child(n: int = n) -> bool:
                with client.trace():
                    for i in range(10):
                        client.track_state_change(f"child{n}", i, i + 1, "Write")
                return client.flush(timeout=30)

            pids.append(in_child(child))
        codes = [wait_child(pid) for pid in pids]
    finally:
        stop.set()
        worker.join()
    assert codes == [0] * 5
    assert client.flush(timeout=30)
    groups = by_process(collector.events)
    for pid in pids:
        assert len(groups[pid]) == 10
