"""Fork and join of execution contexts, with or without a client: what every way of running
work elsewhere (asyncio tasks, threads, executors, strands without setup) shares.

A fork makes a child context on the parent's own strand (so the child knows exactly what the
parent did up to that point); a `Joins` remembers who has already learned that the child
finished, so each collector joins it once. With a client, both edges are also recorded
(``AsyncSpawn``, ``AsyncAwait``); without one they are carried by the clocks alone.
"""

from __future__ import annotations

import _thread
import asyncio
import logging
from typing import List, Optional

from ._client_protocol import ClientLike
from ._recorder import warn_once_per_process
from .context import ExecutionContext, current_task, strand_context
from .context import current_var as _current

log = logging.getLogger("raceway")
_new_lock = _thread.allocate_lock


# ----------------------------------------------------------------------------------------------
# Fork and join, with or without a client
# ----------------------------------------------------------------------------------------------
def fork_child(client: Optional[ClientLike], parent: ExecutionContext) -> Optional[ExecutionContext]:
    """A child of ``parent``, made on the parent's strand. With a client the spawn is also an
    ``AsyncSpawn`` event of the parent (nothing is recorded once the client is off); without
    one it is carried by the clock alone."""
    try:
        if client is not None:
            return client.fork(parent)
        parent.tick()  # the spawn is a step of the parent: its earlier events come strictly before
        return parent.child()
    except Exception as e:  # never fail the task creation or submit
        warn_once_per_process("fork", "raceway: cannot fork an execution context: %s", e)
        return None


class Joins:
    """One child's join bookkeeping: who has already learned that it finished."""

    __slots__ = ("client", "parent", "child", "loop", "collectors", "lock", "initial")

    def __init__(
        self,
        client: Optional[ClientLike],
        parent: ExecutionContext,
        child: ExecutionContext,
        loop: Optional[asyncio.AbstractEventLoop] = None,
    ):
        self.client = client
        self.parent = parent
        self.child = child
        self.loop = loop
        self.collectors: List[ExecutionContext] = []
        self.lock = _new_lock()  # the raw lock: never an instrumented one (`raceway.primitives`)
        self.initial = child.state

    def joinable(self) -> bool:
        """Whether the child has anything to order (see `collect`): asked before looking for
        the collector, which costs more."""
        child = self.child
        return child.seq != 0 or child.state is not self.initial

    def collect(self, collector: Optional[ExecutionContext]) -> None:
        """``collector`` observed that the child finished: its later events come after all of
        the child's. Once per collector; the child itself and "no context" learn nothing.

        A child that recorded nothing and learned nothing (most framework-internal tasks) has
        nothing to order: it is not joined, which keeps the collector's clock from growing by
        one component per such task."""
        if collector is None or collector is self.child:
            return
        child = self.child
        if child.seq == 0 and child.state is self.initial:
            return
        with self.lock:
            if any(c is collector for c in self.collectors):
                return
            self.collectors.append(collector)
        try:
            if self.client is not None:
                self.client.join(collector, self.child)
            else:
                collector.learn(self.child.clock())
        except Exception as e:
            warn_once_per_process("join", "raceway: cannot join an execution context: %s", e)


def collecting_context() -> Optional[ExecutionContext]:
    """Who observes a task's end. Inside a task, that task's own context (`strand_context`).
    Outside any task, in a callback the loop runs (``gather`` collects results from one), the
    context the callback was registered in: it runs on behalf of the task that registered it."""
    if current_task() is None and running_loop() is not None:
        return _current.get()
    return strand_context()


def running_loop() -> Optional[asyncio.AbstractEventLoop]:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
