"""Threads and executors: `ContextAwareThreadPoolExecutor` forks a child context at ``submit``
and `ContextAwareThread` at ``start``; the join happens where the result is collected or the
thread joined.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import threading
from typing import Any, Callable, Dict, Optional, Tuple, TypeVar, cast

from ._client_protocol import ClientLike
from ._joins import Joins, collecting_context, fork_child, running_loop
from .context import ExecutionContext, strand_context
from .context import current_var as _current

T = TypeVar("T")

PENDING_JOINS_LIMIT = 1024
"""Uncollected executor futures remembered for the join at ``shutdown(wait=True)``: a long-lived
executor with fire-and-forget work must not grow without bound."""


class TracedFuture(concurrent.futures.Future[Any]):
    """An executor future whose ``result()``/``exception()`` joins the work's child context
    into the collector. ``run_in_executor``/``to_thread`` collect on the event loop with no
    context of their own; then the join goes to the submitting task, which is the one awaiting
    the result."""

    _raceway_joins: Optional[Joins] = None
    _raceway_owner: Optional[ContextAwareThreadPoolExecutor] = None

    def result(self, timeout: Optional[float] = None) -> Any:
        try:
            return super().result(timeout)
        finally:
            self._raceway_collected()

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        try:
            return super().exception(timeout)
        finally:
            self._raceway_collected()

    def _raceway_collected(self) -> None:
        joins = self._raceway_joins
        if joins is None or not self.done():
            return
        collector = collecting_context()
        if collector is None and joins.loop is not None and running_loop() is joins.loop:
            collector = joins.parent
        joins.collect(collector)
        owner = self._raceway_owner
        if owner is not None:
            owner._raceway_forget(self)


def to_thread_context(fn: Any) -> Optional[contextvars.Context]:
    """``asyncio.to_thread`` submits ``functools.partial(copied_context.run, func, ...)``: the
    function runs in THAT context, so the child must be set there."""
    if isinstance(fn, functools.partial):
        owner = getattr(fn.func, "__self__", None)
        if isinstance(owner, contextvars.Context) and getattr(fn.func, "__name__", "") == "run":
            return owner
    return None


class ContextAwareThreadPoolExecutor(concurrent.futures.ThreadPoolExecutor):
    """A drop-in ``ThreadPoolExecutor`` whose work runs in a child of the submitter's context
    (and sees the submitter's other ``contextvars``, as ``to_thread`` does).

    The child is forked at ``submit``, on the submitter's strand; the join happens when the
    result is collected (``future.result()``, ``future.exception()``, ``map``), or for work
    nobody collected, when the executor is shut down with ``wait=True`` (``with executor:``).
    Pass ``client`` to also record ``AsyncSpawn``/``AsyncAwait`` events; without it the edges are
    carried by the clocks alone."""

    def __init__(
        self,
        max_workers: Optional[int] = None,
        thread_name_prefix: str = "",
        initializer: Optional[Callable[..., Any]] = None,
        initargs: Tuple[Any, ...] = (),
        *,
        client: Optional[ClientLike] = None,
    ):
        super().__init__(max_workers, thread_name_prefix, initializer, initargs)
        self._raceway_client = client
        self._raceway_pending: Dict[concurrent.futures.Future[Any], Joins] = {}
        self._raceway_lock = threading.Lock()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> "concurrent.futures.Future[T]":
        parent = strand_context()
        child = fork_child(self._raceway_client, parent) if parent is not None else None
        target = to_thread_context(fn)
        if child is not None and target is not None:
            try:
                target.run(_current.set, child)
            except RuntimeError:  # the context is entered elsewhere: wrap it instead
                target = None
        if target is not None:
            future = super().submit(fn, *args, **kwargs)
        else:
            ctx = contextvars.copy_context()
            if child is not None:
                ctx.run(_current.set, child)
            future = super().submit(ctx.run, fn, *args, **kwargs)
        if parent is not None and child is not None:
            self._raceway_track(future, Joins(self._raceway_client, parent, child, running_loop()))
        return future

    def _raceway_track(self, future: concurrent.futures.Future[Any], joins: Joins) -> None:
        future.__class__ = TracedFuture  # same layout: only result()/exception() change
        traced = cast(TracedFuture, future)  # what the line above made it (the checker cannot follow)
        traced._raceway_joins = joins
        traced._raceway_owner = self
        with self._raceway_lock:
            pending = self._raceway_pending
            pending[future] = joins
            while len(pending) > PENDING_JOINS_LIMIT:
                del pending[next(iter(pending))]

    def _raceway_forget(self, future: concurrent.futures.Future[Any]) -> None:
        with self._raceway_lock:
            self._raceway_pending.pop(future, None)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait=wait, cancel_futures=cancel_futures)
        if not wait:
            return
        # Everything submitted has finished: the caller's later events come after it all.
        with self._raceway_lock:
            pending, self._raceway_pending = self._raceway_pending, {}
        collector = strand_context()
        if collector is None:
            return
        for future, joins in pending.items():
            if future.done() and joins.child.trace_id == collector.trace_id:
                joins.collect(collector)


class ContextAwareThread(threading.Thread):
    """A drop-in ``threading.Thread`` that runs in a child of the context current at
    ``start()`` (forked there, on the starter's strand); ``join()`` joins it back into whoever
    joins the thread. Pass ``client`` to record ``AsyncSpawn``/``AsyncAwait`` events."""

    def __init__(self, *args: Any, client: Optional[ClientLike] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._raceway_client = client
        self._raceway_context: Optional[contextvars.Context] = None
        self._raceway_joins: Optional[Joins] = None

    def start(self) -> None:
        ctx = contextvars.copy_context()
        parent = strand_context()
        child = fork_child(self._raceway_client, parent) if parent is not None else None
        if parent is not None and child is not None:
            ctx.run(_current.set, child)
            self._raceway_joins = Joins(self._raceway_client, parent, child)
        self._raceway_context = ctx
        super().start()

    def run(self) -> None:
        ctx = self._raceway_context
        if ctx is None:  # run() called directly, not through start()
            return super().run()
        ctx.run(super().run)

    def join(self, timeout: Optional[float] = None) -> None:
        super().join(timeout)
        joins = self._raceway_joins
        if joins is not None and not self.is_alive():
            joins.collect(strand_context())

    @property
    def raceway_context(self) -> Optional[ExecutionContext]:
        """The thread's own execution context (None if it was started outside any)."""
        return self._raceway_joins.child if self._raceway_joins is not None else None
