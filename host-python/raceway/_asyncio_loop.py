"""asyncio: a task factory that gives every task created while a context is current a child
context of its own (`instrument_loop`), joined into whoever awaits or collects the task; and
the loop's default executor (``to_thread``, ``run_in_executor(None, ...)``) and anyio's worker
threads made to do the same.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import sys
import weakref
from typing import Any, Awaitable, Callable, Dict, Generator, Optional, Type, TypeVar

from ._client_protocol import ClientLike
from ._joins import Joins, collecting_context, fork_child, running_loop
from ._recorder import warn_once_per_process
from ._threads import ContextAwareThreadPoolExecutor
from .context import current_var as _current
from .context import strand_context

T = TypeVar("T")

_Factory = Callable[..., "asyncio.Future[Any]"]
"""A loop's task factory: ``(loop, coro, **kwargs) -> Task``."""


class RacewayTask(asyncio.Task[Any]):
    """A task with a child context of its own. Awaiting it, asking for its ``result()`` or
    ``exception()`` (which ``gather``, ``wait_for`` and ``TaskGroup`` do on the awaiting side),
    or seeing ``done()`` answer True (``asyncio.wait``) joins the child into whoever did so."""

    _raceway_joins: Optional[Joins] = None

    def __await__(self) -> Generator[Any, None, Any]:
        try:
            return (yield from super().__await__())
        finally:
            self._raceway_collected()

    def result(self) -> Any:
        try:
            return super().result()
        finally:
            self._raceway_collected()

    def exception(self) -> Optional[BaseException]:
        try:
            return super().exception()
        finally:
            self._raceway_collected()

    def done(self) -> bool:
        """A strand that sees the task done has observed its end (``asyncio.wait`` learns it
        this way, asking ``done()`` of each task on the waiting side): that is a join."""
        finished = _task_done(self)
        if finished:
            joins = self._raceway_joins
            if joins is not None and joins.joinable():
                joins.collect(collecting_context())
        return finished

    def _raceway_collected(self) -> None:
        joins = self._raceway_joins
        if joins is not None and _task_done(self) and joins.joinable():
            joins.collect(collecting_context())


_task_done = asyncio.Task.done


class TaskFactory:
    """Gives each task created while a context is current a child context, forked at creation
    (on the creating task's strand). Tasks created outside any context are plain tasks.

    A task created with an explicit ``context=`` runs in a copy of that ``contextvars.Context``
    with the child current: the caller's other variables are all there, but two tasks never
    share one execution context. Another task factory that was installed first is kept and
    called; its tasks get their child contexts but no join events (they are not ours to hook).
    """

    def __init__(self, client: Optional[ClientLike], inner: Optional[_Factory] = None):
        self.client = client
        self.inner = inner

    def __call__(self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Future[Any]:
        given: Optional[contextvars.Context] = kwargs.get("context")
        parent = given.get(_current) if given is not None else strand_context()
        child = fork_child(self.client, parent) if parent is not None else None
        if parent is None or child is None:
            return self._make(loop, coro, kwargs, asyncio.Task)
        if given is not None:
            ctx = given.copy()
            ctx.run(_current.set, child)
            kwargs["context"] = ctx
            task = self._make(loop, coro, kwargs, RacewayTask)
        else:
            token = _current.set(child)  # Task() copies the current context: the child's
            try:
                task = self._make(loop, coro, kwargs, RacewayTask)
            finally:
                _current.reset(token)
        if isinstance(task, RacewayTask):
            task._raceway_joins = Joins(self.client, parent, child)
        return task

    def _make(
        self, loop: asyncio.AbstractEventLoop, coro: Any, kwargs: Dict[str, Any], cls: Type[asyncio.Task[Any]]
    ) -> asyncio.Future[Any]:
        if self.inner is not None:
            return self.inner(loop, coro, **kwargs)
        return cls(coro, loop=loop, **kwargs)


def instrument_loop(
    client: Optional[ClientLike], loop: Optional[asyncio.AbstractEventLoop] = None, *, default_executor: bool = True
) -> bool:
    """Makes every task created on ``loop`` (default: the running one) while a context is
    current run in a child context, and, with ``default_executor``, makes ``asyncio.to_thread``
    and ``run_in_executor(None, ...)`` do the same through a `ContextAwareThreadPoolExecutor`.

    Idempotent and cheap to call again (the middlewares call it per request). A default executor
    the application set itself is left alone. Returns True if the loop is instrumented."""
    try:
        loop = loop or asyncio.get_running_loop()
        factory = loop.get_task_factory()
        if not isinstance(factory, TaskFactory):
            loop.set_task_factory(TaskFactory(client, factory))
        if default_executor:
            _install_default_executor(client, loop)
            _instrument_anyio_threads(client, loop)
        return True
    except Exception as e:
        warn_once_per_process("instrument-loop", "raceway: cannot instrument the event loop: %s", e)
        return False


_anyio_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Optional[ClientLike]] = weakref.WeakKeyDictionary()
"""The client each instrumented loop records with (the task factory keeps its own the same way)."""


def _instrument_anyio_threads(client: Optional[ClientLike], loop: asyncio.AbstractEventLoop) -> None:
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
    original: Callable[..., Awaitable[Any]] = module.run_sync  # anyio's; its types are not ours to import
    if getattr(original, "_raceway_wrapped", False):
        return

    @functools.wraps(original)
    async def run_sync(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        parent = strand_context()
        loop = running_loop()
        own = _anyio_clients.get(loop) if loop is not None else None
        child = fork_child(own, parent) if parent is not None else None
        if parent is None or child is None:
            plain: T = await original(func, *args, **kwargs)
            return plain

        def in_child(*call_args: Any) -> T:
            token = _current.set(child)  # anyio runs this in a copy of the caller's context
            try:
                return func(*call_args)
            finally:
                _current.reset(token)

        try:
            result: T = await original(in_child, *args, **kwargs)
            return result
        finally:
            Joins(own, parent, child).collect(strand_context())

    run_sync._raceway_wrapped = True  # type: ignore[attr-defined]  # a mark on the function object
    setattr(module, "run_sync", run_sync)  # noqa: B010 - a module the type checker does not know


def _install_default_executor(client: Optional[ClientLike], loop: asyncio.AbstractEventLoop) -> None:
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
