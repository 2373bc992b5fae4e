"""Trace, span and event ids (raceway/context.py): drawn from a generator seeded from the OS,
never all zero, unique, and different in a forked child from the parent's (the generator is
reseeded at fork; without that both processes would draw the same sequence)."""

from __future__ import annotations

import json
import os

import pytest

from raceway.context import ExecutionContext, new_span_id, new_trace_id


def _draw() -> list:
    return [new_trace_id(), new_span_id(), ExecutionContext.new_trace().id_base]


def test_ids_have_their_shapes_and_do_not_repeat():
    trace_ids = {new_trace_id() for _ in range(20_000)}
    span_ids = {new_span_id() for _ in range(20_000)}
    assert len(trace_ids) == len(span_ids) == 20_000
    for t in list(trace_ids)[:100]:
        assert len(t) == 36 and t.count("-") == 4 and t.replace("-", "") != "0" * 32
    for s in list(span_ids)[:100]:
        assert len(s) == 16 and int(s, 16) != 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_draws_other_ids_than_its_parent():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first draws, to the parent, then out without cleanup
        try:
            os.write(write, json.dumps(_draw()).encode())
        finally:
            os._exit(0)
    os.close(write)
    parent = _draw()
    with os.fdopen(read) as f:
        child = json.loads(f.read())
    os.waitpid(pid, 0)
    assert len(child) == 3
    assert all(a != b for a, b in zip(parent, child, strict=True)), (parent, child)


def test_no_id_is_drawn_with_a_system_call():
    """The request path's ids come from the seeded generator: patching os.urandom away does
    not change that new contexts get ids (a context made per request no longer makes the
    system call that releases the GIL)."""
    real = os.urandom

    def refuse(n: int) -> bytes:
        raise AssertionError("os.urandom called on the request path")

    os.urandom = refuse
    try:
        _draw()
    finally:
        os.urandom = real
