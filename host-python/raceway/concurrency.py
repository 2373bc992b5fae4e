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
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import logging
import sys
import threading
import weakref
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, TypeVar, Union

from ._incoming import context_from_headers, gather
from .context import ExecutionContext, _current, current_task, enter, leave, strand_context

log = logging.getLogger("raceway")

T = TypeVar("T")

PENDING_JOINS_LIMIT = 1024
"""Uncollected executor futures remembered for the join at ``shutdown(wait=True)``: a long-lived
executor with fire-and-forget work must not grow without bound."""

_warned: set = set()


def _warn_once(key: str, msg: str, *args: Any) -> None:
    if key not in _warned:
        _warned.add(key)
        log.error(msg, *args)


# ----------------------------------------------------------------------------------------------
# Fork and join, with or without a client
# ----------------------------------------------------------------------------------------------
def _fork(client: Any, parent: ExecutionContext) -> Optional[ExecutionContext]:
    """A child of ``parent``, made on the parent's strand. With a client the spawn is also an
    ``AsyncSpawn`` event of the parent (nothing is recorded once the client is off); without
    one it is carried by the clock alone."""
    try:
        if client is not None:
            return client.fork(parent)
        parent.tick()  # the spawn is a step of the parent: its earlier events come strictly before
        return parent.child()
    except Exception as e:  # never fail the task creation or submit
        _warn_once("fork", "raceway: cannot fork an execution context: %s", e)
        return None


class _Joins:
    """One child's join bookkeeping: who has already learned that it finished."""

    __slots__ = ("client", "parent", "child", "loop", "collectors", "lock", "initial")

    def __init__(self, client: Any, parent: ExecutionContext, child: ExecutionContext,
                 loop: Optional[asyncio.AbstractEventLoop] = None):
        self.client = client
        self.parent = parent
        self.child = child
        self.loop = loop
        self.collectors: List[ExecutionContext] = []
        self.lock = threading.Lock()
        self.initial = child.state

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
            _warn_once("join", "raceway: cannot join an execution context: %s", e)


def _collector() -> Optional[ExecutionContext]:
    """Who observes a task's end. Inside a task, that task's own context (`strand_context`).
    Outside any task, in a callback the loop runs (``gather`` collects results from one), the
    context the callback was registered in: it runs on behalf of the task that registered it."""
    if current_task() is None and _running_loop() is not None:
        return _current.get()
    return strand_context()


def _running_loop() -> Optional[asyncio.AbstractEventLoop]:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


# ----------------------------------------------------------------------------------------------
# asyncio
# ----------------------------------------------------------------------------------------------
class _RacewayTask(asyncio.Task):
    """A task with a child context of its own. Awaiting it, asking for its ``result()`` or
    ``exception()`` (which ``gather``, ``wait_for`` and ``TaskGroup`` do on the awaiting side),
    or seeing ``done()`` answer True (``asyncio.wait``) joins the child into whoever did so."""

    _raceway_joins: Optional[_Joins] = None

    def __await__(self):  # type: ignore[override]
        try:
            return (yield from super().__await__())
        finally:
            self._raceway_collected()

    def result(self):  # type: ignore[override]
        try:
            return super().result()
        finally:
            self._raceway_collected()

    def exception(self):  # type: ignore[override]
        try:
            return super().exception()
        finally:
            self._raceway_collected()

    def done(self) -> bool:  # type: ignore[override]
        """A strand that sees the task done has observed its end (``asyncio.wait`` learns it
        this way, asking ``done()`` of each task on the waiting side): that is a join."""
        finished = super().done()
        if finished and self._raceway_joins is not None:
            self._raceway_joins.collect(_collector())
        return finished

    def _raceway_collected(self) -> None:
        joins = self._raceway_joins
        if joins is not None and asyncio.Task.done(self):
            joins.collect(_collector())


class _TaskFactory:
    """Gives each task created while a context is current a child context, forked at creation
    (on the creating task's strand). Tasks created outside any context are plain tasks.

    A task created with an explicit ``context=`` runs in a copy of that ``contextvars.Context``
    with the child current: the caller's other variables are all there, but two tasks never
    share one execution context. Another task factory that was installed first is kept and
    called; its tasks get their child contexts but no join events (they are not ours to hook).
    """

    def __init__(self, client: Any, inner: Optional[Callable[..., Any]] = None):
        self.client = client
        self.inner = inner

    def __call__(self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task:
        given = kwargs.get("context")
        parent = given.get(_current) if given is not None else strand_context()
        child = _fork(self.client, parent) if parent is not None else None
        if child is None:
            return self._make(loop, coro, kwargs, asyncio.Task)
        if given is not None:
            ctx = given.copy()
            ctx.run(_current.set, child)
            kwargs["context"] = ctx
            task = self._make(loop, coro, kwargs, _RacewayTask)
        else:
            token = _current.set(child)  # Task() copies the current context: the child's
            try:
                task = self._make(loop, coro, kwargs, _RacewayTask)
            finally:
                _current.reset(token)
        if isinstance(task, _RacewayTask):
            task._raceway_joins = _Joins(self.client, parent, child)
        return task

    def _make(self, loop: asyncio.AbstractEventLoop, coro: Any, kwargs: Dict[str, Any], cls: type) -> asyncio.Task:
        if self.inner is not None:
            return self.inner(loop, coro, **kwargs)
        return cls(coro, loop=loop, **kwargs)


def instrument_loop(client: Any, loop: Optional[asyncio.AbstractEventLoop] = None, *,
                    default_executor: bool = True) -> bool:
    """Makes every task created on ``loop`` (default: the running one) while a context is
    current run in a child context, and, with ``default_executor``, makes ``asyncio.to_thread``
    and ``run_in_executor(None, ...)`` do the same through a `ContextAwareThreadPoolExecutor`.

    Idempotent and cheap to call again (the middlewares call it per request). A default executor
    the application set itself is left alone. Returns True if the loop is instrumented."""
    try:
        loop = loop or asyncio.get_running_loop()
        factory = loop.get_task_factory()
        if not isinstance(factory, _TaskFactory):
            loop.set_task_factory(_TaskFactory(client, factory))
        if default_executor:
            _install_default_executor(client, loop)
            _instrument_anyio_threads(client, loop)
        return True
    except Exception as e:
        _warn_once("instrument-loop", "raceway: cannot instrument the event loop: %s", e)
        return False


_anyio_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any]" = weakref.WeakKeyDictionary()
"""The client each instrumented loop records with (the task factory keeps its own the same way)."""


def _instrument_anyio_threads(client: Any, loop: asyncio.AbstractEventLoop) -> None:
    """``anyio.to_thread.run_sync`` (Starlette's and FastAPI's ``run_in_threadpool``: ``def``
    endpoints, dependencies and body iterators) runs work in anyio's own worker threads, in a
    copy of the caller's context: without this each call would be an unjoined child and two
    calls of one request would look concurrent. Wrapped like ``asyncio.to_thread``: a child
    forked at the call, joined into the awaiting task when the result comes back. Only when
    anyio is already imported (a framework that uses it has been); idempotent."""
    module = sys.modules.get("anyio.to_thread")
    if module is None:
        return
    _anyio_clients[loop] = client
    original = module.run_sync
    if getattr(original, "_raceway_wrapped", False):
        return

    @functools.wraps(original)
    async def run_sync(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        parent = strand_context()
        loop = _running_loop()
        own = _anyio_clients.get(loop) if loop is not None else None
        child = _fork(own, parent) if parent is not None else None
        if child is None:
            return await original(func, *args, **kwargs)

        def in_child(*call_args: Any) -> T:
            token = _current.set(child)  # anyio runs this in a copy of the caller's context
            try:
                return func(*call_args)
            finally:
                _current.reset(token)

        try:
            return await original(in_child, *args, **kwargs)
        finally:
            _Joins(own, parent, child).collect(strand_context())  # type: ignore[arg-type]

    run_sync._raceway_wrapped = True  # type: ignore[attr-defined]
    module.run_sync = run_sync


def _install_default_executor(client: Any, loop: asyncio.AbstractEventLoop) -> None:
    current = getattr(loop, "_default_executor", None)
    if isinstance(current, ContextAwareThreadPoolExecutor):
        return
    # asyncio's own lazily made default (exactly a ThreadPoolExecutor named "asyncio") is
    # replaced; one the application chose is kept.
    if current is not None and not (
        type(current) is concurrent.futures.ThreadPoolExecutor
        and getattr(current, "_thread_name_prefix", "").startswith("asyncio")
    ):
        return
    loop.set_default_executor(ContextAwareThreadPoolExecutor(client=client, thread_name_prefix="asyncio-raceway"))
    if current is not None:
        current.shutdown(wait=False)  # its idle threads end; running work finishes


# ----------------------------------------------------------------------------------------------
# Threads
# ----------------------------------------------------------------------------------------------
class _TracedFuture(concurrent.futures.Future):
    """An executor future whose ``result()``/``exception()`` joins the work's child context
    into the collector. ``run_in_executor``/``to_thread`` collect on the event loop with no
    context of their own; then the join goes to the submitting task, which is the one awaiting
    the result."""

    _raceway_joins: Optional[_Joins] = None
    _raceway_owner: Any = None

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
        collector = _collector()
        if collector is None and joins.loop is not None and _running_loop() is joins.loop:
            collector = joins.parent
        joins.collect(collector)
        owner = self._raceway_owner
        if owner is not None:
            owner._raceway_forget(self)


def _to_thread_context(fn: Any) -> Optional[contextvars.Context]:
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

    def __init__(self, max_workers: Optional[int] = None, thread_name_prefix: str = "",
                 initializer: Optional[Callable[..., Any]] = None, initargs: tuple = (), *,
                 client: Any = None):
        super().__init__(max_workers, thread_name_prefix, initializer, initargs)
        self._raceway_client = client
        self._raceway_pending: Dict[concurrent.futures.Future, _Joins] = {}
        self._raceway_lock = threading.Lock()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> "concurrent.futures.Future[T]":
        parent = strand_context()
        child = _fork(self._raceway_client, parent) if parent is not None else None
        target = _to_thread_context(fn)
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
        if child is not None:
            self._raceway_track(future, _Joins(self._raceway_client, parent, child, _running_loop()))
        return future

    def _raceway_track(self, future: concurrent.futures.Future, joins: _Joins) -> None:
        future.__class__ = _TracedFuture  # same layout: only result()/exception() change
        future._raceway_joins = joins  # type: ignore[attr-defined]
        future._raceway_owner = self  # type: ignore[attr-defined]
        with self._raceway_lock:
            pending = self._raceway_pending
            pending[future] = joins
            while len(pending) > PENDING_JOINS_LIMIT:
                del pending[next(iter(pending))]

    def _raceway_forget(self, future: concurrent.futures.Future) -> None:
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

    def __init__(self, *args: Any, client: Any = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._raceway_client = client
        self._raceway_context: Optional[contextvars.Context] = None
        self._raceway_joins: Optional[_Joins] = None

    def start(self) -> None:
        ctx = contextvars.copy_context()
        parent = strand_context()
        child = _fork(self._raceway_client, parent) if parent is not None else None
        if child is not None:
            ctx.run(_current.set, child)
            self._raceway_joins = _Joins(self._raceway_client, parent, child)  # type: ignore[arg-type]
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


# ----------------------------------------------------------------------------------------------
# Explicit helpers
# ----------------------------------------------------------------------------------------------
class Handoff:
    """What a context knew at the moment it handed work over, captured on its own strand (see
    `capture`). Each run started from it is a new child that knows exactly that much."""

    __slots__ = ("trace_id", "span_id", "upstream_span_id", "tracestate", "flags", "clock", "identity")

    def __init__(self, ctx: ExecutionContext):
        ctx.tick()  # the hand-over is a step of ctx: its earlier events come strictly before
        self.trace_id = ctx.trace_id
        self.span_id = ctx.span_id
        self.upstream_span_id = ctx.upstream_span_id
        self.tracestate = ctx.tracestate
        self.flags = ctx.flags
        self.clock = ctx.clock()
        self.identity = ctx.identity

    def child(self) -> ExecutionContext:
        return ExecutionContext(self.trace_id, self.span_id, self.upstream_span_id, self.tracestate,
                                self.flags, self.clock, self.identity)


def capture(ctx: Optional[ExecutionContext] = None) -> Optional[Handoff]:
    """Captures the current context (or ``ctx``) for work that will run elsewhere, later. Call it
    where the work is handed over; pass the result to `run_with_context`. None outside any
    context."""
    ctx = ctx if ctx is not None else strand_context()
    return Handoff(ctx) if ctx is not None else None


def run_with_context(ctx: Union[Handoff, ExecutionContext, contextvars.Context, None], fn: Callable[..., T],
                     *args: Any, **kwargs: Any) -> T:
    """Runs ``fn(*args, **kwargs)`` in a new child of ``ctx`` and returns its result; the
    caller's context is as before afterwards. Meant for work handed to a plain thread pool or a
    library's thread (the seed's pattern):

        ctx = capture()            # or raceway.get_context()
        executor.submit(run_with_context, ctx, my_function, arg1)

    Each run gets its own ``thread_id``, so concurrent runs never share a context. ``ctx`` may be
    a `Handoff` from `capture` (exact: the run knows what the context did up to the capture),
    an `ExecutionContext` (the run knows what it had done when the run starts, which may be a
    little more), or a ``contextvars.Context`` holding one (its other variables are kept). No
    join is recorded: nothing here sees the result being collected; `ContextAwareThreadPoolExecutor`
    records both edges."""
    if isinstance(ctx, contextvars.Context):
        base = ctx.copy()
        parent: Any = ctx.get(_current)
    else:
        base = contextvars.copy_context()
        parent = ctx
    if parent is not None:
        try:
            base.run(_current.set, parent.child())
        except Exception as e:
            _warn_once("run-with-context", "raceway: cannot make a child context: %s", e)
    return base.run(fn, *args, **kwargs)


def bind(fn: Callable[..., T], ctx: Optional[ExecutionContext] = None) -> Callable[..., T]:
    """Wraps a callback so that whenever (and on whichever thread) a library calls it, it runs
    in a new child of ``ctx`` (default: the context current now), captured now. Outside any
    context the callback is returned unchanged."""
    handoff = capture(ctx)
    if handoff is None:
        return fn

    @functools.wraps(fn)
    def bound(*args: Any, **kwargs: Any) -> T:
        return run_with_context(handoff, fn, *args, **kwargs)

    return bound


# ----------------------------------------------------------------------------------------------
# Across processes
# ----------------------------------------------------------------------------------------------
def continue_trace(client: Any, headers: Union[Mapping[str, str], Iterable[Tuple[str, str]]]) -> "_ContinuedTrace":
    """Continues, in this process, the trace that ``headers`` carry: the
    ``client.propagation_headers()`` of the process that handed the work over (passed with it
    through a ``ProcessPoolExecutor``, a queue, a file...). The headers are read by the core as
    a request's are; invalid or missing ones start a new trace. The context is current inside
    the block and stops being current after it (inside a generator, only while it runs, as
    with `RacewayClient.trace`).

        # parent                                   # worker process (its own RacewayClient)
        pool.submit(job, raceway.propagation_headers(), data)
                                                   def job(headers, data):
                                                       with continue_trace(raceway, headers):
                                                           ...
    """
    return _ContinuedTrace(client, headers)


class _ContinuedTrace:
    """`continue_trace`'s context manager (a class, so it can see the frame that opens it)."""

    __slots__ = ("client", "headers", "ctx", "token")

    def __init__(self, client: Any, headers: Any):
        self.client, self.headers = client, headers
        self.ctx: Optional[ExecutionContext] = None
        self.token: Any = None

    def __enter__(self) -> ExecutionContext:
        try:
            pairs = self.headers.items() if isinstance(self.headers, Mapping) else self.headers
            ctx = context_from_headers(self.client, gather(pairs))
        except Exception as e:
            _warn_once("continue-trace", "raceway: cannot continue a trace: %s", e)
            ctx = ExecutionContext.new_trace(getattr(self.client, "identity", None))
        self.ctx = ctx
        self.token = enter(ctx, sys._getframe(1))
        return ctx

    def __exit__(self, *exc: Any) -> None:
        if self.ctx is not None:
            leave(self.ctx, self.token)
