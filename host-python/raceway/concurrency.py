"""Context that follows the work: every task and thread gets an execution context of its own.

Python copies ``contextvars`` into asyncio tasks and ``asyncio.to_thread``, so without help two
tasks of one request would share ONE mutable `ExecutionContext`: their events would form a
single strand, and a race between them could not be seen. Threads and executors, on the other
hand, get no context at all. This module gives each strand its own child context (own
``thread_id``, own clock component) that starts from the parent's trace and clock:

- `instrument_loop`: an asyncio task factory that forks a child for every task created while a
  context is current, and a context-aware default executor for ``to_thread`` and
  ``run_in_executor(None, ...)``. The middlewares install it on the serving loop.
- `ContextAwareThreadPoolExecutor`: a drop-in ``ThreadPoolExecutor`` that forks at ``submit``.
- `ContextAwareThread`: a drop-in ``threading.Thread`` that forks at ``start``.
- `capture`, `run_with_context` and `bind`: run a function (or a callback a library will call
  later) in a child of a given context.
- `continue_trace`: across a process boundary (``ProcessPoolExecutor``, a job queue) the trace
  travels as headers, exactly as between services.

Spawn edges are exact when the fork happens on the parent's own strand (task creation, submit,
start): the child knows the parent's events up to that point and nothing after. Join edges are
recorded when the parent can actually observe that the child finished: when it awaits the task,
collects a future's ``result()``/``exception()``, iterates ``Executor.map``, leaves ``with
executor:``, or calls ``Thread.join()`` (see docs/context.md). None of this adds work per event.

This module is the public face; each concern lives in a module of its own:
raceway/_joins.py (fork and join), raceway/_asyncio_loop.py (tasks, the default executor,
anyio), raceway/_threads.py (threads and executors), raceway/_handoffs.py (``capture``,
``run_with_context``, ``bind``) and raceway/_continue_trace.py.
"""

from __future__ import annotations

from ._asyncio_loop import instrument_loop
from ._continue_trace import continue_trace
from ._handoffs import Handoff, bind, capture, run_with_context
from ._threads import PENDING_JOINS_LIMIT, ContextAwareThread, ContextAwareThreadPoolExecutor

__all__ = [
    "PENDING_JOINS_LIMIT",
    "ContextAwareThread",
    "ContextAwareThreadPoolExecutor",
    "Handoff",
    "bind",
    "capture",
    "continue_trace",
    "instrument_loop",
    "run_with_context",
]
