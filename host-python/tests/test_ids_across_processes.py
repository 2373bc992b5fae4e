"""Ids drawn from the seeded Mersenne Twister (raceway/context.py): every way a
process can start from this one (multiprocessing's fork, spawn and forkserver, and a plain
``os.fork`` from a thread that is not the main one), and threads drawing at once, give ids
that never repeat."""

from __future__ import annotations

import multiprocessing
import os
import threading
from typing import List

import pytest

from raceway import context


def _draw(n: int = 200) -> List[str]:
    return [context.new_trace_id() for _ in range(n)] + [context.new_span_id() for _ in range(n)]


def _child(queue: "multiprocessing.Queue[List[str]]") -> None:
    queue.put(_draw())


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_processes_started_by_multiprocessing_draw_their_own_ids(method):
    _draw(1)  # the parent has drawn before the children start
    ctx = multiprocessing.get_context(method)
    queue = ctx.Queue()
    children = [ctx.Process(target=_child, args=(queue,)) for _ in range(2)]
    for p in children:
        p.start()
    drawn = [queue.get(timeout=60) for _ in children]
    for p in children:
        p.join(60)
    drawn.append(_draw())
    flat = [i for ids in drawn for i in ids]
    assert len(set(flat)) == len(flat)


def test_a_fork_from_a_thread_that_is_not_the_main_one_reseeds_the_child():
    _draw(1)
    read, write = os.pipe()

    def fork() -> None:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                os.write(write, "\n".join(_draw()).encode())
            finally:
                os._exit(0)
        os.waitpid(pid, 0)

    thread = threading.Thread(target=fork)
    thread.start()
    thread.join()
    os.close(write)
    data = b""
    while chunk := os.read(read, 1 << 16):
        data += chunk
    os.close(read)
    child = data.decode().split()
    assert len(child) == 400
    flat = child + _draw()
    assert len(set(flat)) == len(flat)


def test_threads_drawing_at_once_never_repeat_an_id():
    drawn: List[List[str]] = []
    start = threading.Barrier(4)

    def work() -> None:
        start.wait()
        drawn.append(_draw(2000))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [i for ids in drawn for i in ids]
    assert len(flat) == 4 * 4000 and len(set(flat)) == len(flat)
