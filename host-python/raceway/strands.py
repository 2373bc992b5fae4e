"""Strands without setup: plain threads, thread pools and asyncio tasks become execution
contexts of their own, with their spawn and join edges, and no Raceway code in the program.

    raceway.enable_strands(client)
    ...                              # threading.Thread, ThreadPoolExecutor, asyncio as they are
    raceway.disable_strands()

While on (the pytest plugin turns it on for each test):

- ``threading.Thread.start`` (and so every subclass, ``Timer`` included) forks a child of the
  starter's context for the new thread, like `raceway.ContextAwareThread`; ``Thread.join``
  joins it into whoever joins the thread, once the thread has ended.
- ``concurrent.futures.ThreadPoolExecutor.submit`` runs each call in a child of the
  submitter's context, joined when its result is collected (``result()``, ``exception()``,
  ``map``) or, for work nobody collected, when the executor shuts down with ``wait=True``
  (``with ThreadPoolExecutor() as pool:``), as `raceway.ContextAwareThreadPoolExecutor` does.
  ``asyncio.to_thread`` and ``run_in_executor`` go through it.
- Every asyncio event loop that has no task factory of its own behaves as if
  `raceway.instrument_loop` had been called on it: each task is a child of its creator's
  context, joined when awaited (or its ``result()`` collected, or seen ``done()``).
- A strand that records and has no execution context gets a new one (a new trace), bound to
  it: the main thread of a script, a thread started before the switch, a loop callback.

Threads and pools the SDK starts itself, `ContextAwareThread` and
`ContextAwareThreadPoolExecutor` (which do this already) and the worker threads of thread
pools (their work is what gets the contexts) are left alone. Everything is recorded to the
client automatic tracking records to (``client``, when given, becomes it); with none, the
patched methods only add a function call.

What this cannot see: threads started by C extensions (not through ``threading.Thread``),
event loops that are not ``asyncio.BaseEventLoop`` (uvloop: call ``instrument_loop``), and
executors that do not subclass ``ThreadPoolExecutor``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import sys
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, TypedDict

from . import _auto
from ._asyncio_loop import TaskFactory
from ._joins import Joins, fork_child, running_loop
from ._location import is_sdk
from ._threads import PENDING_JOINS_LIMIT, ContextAwareThreadPoolExecutor, TracedFuture, to_thread_context
from .context import ExecutionContext
from .context import current_var as _current

if TYPE_CHECKING:
    from ._client_protocol import ClientLike

__all__ = ["enable_strands", "disable_strands", "strands_enabled"]

_Thread = threading.Thread
_Pool = concurrent.futures.ThreadPoolExecutor
_Loop = asyncio.BaseEventLoop


class _Originals(TypedDict):
    start: Callable[..., None]  # (thread)
    join: Callable[..., None]  # (thread, timeout)
    submit: Callable[..., concurrent.futures.Future[Any]]  # (executor, fn, *args, **kwargs)
    shutdown: Callable[..., None]  # (executor, wait, **kwargs)
    create_task: Callable[..., asyncio.Task[Any]]  # (loop, coro, **kwargs)


_originals: _Originals = {
    "start": _Thread.start,
    "join": _Thread.join,
    "submit": _Pool.submit,
    "shutdown": _Pool.shutdown,
    "create_task": _Loop.create_task,
}
"""The methods replaced while strands without setup are on (kept: a call that started before
`disable_strands` still finds them)."""
_installed = False
_lock = threading.Lock()
_getframe = sys._getframe


def _active() -> Optional[ClientLike]:
    """The client to record to, when strands without setup are on."""
    return _auto.client if _auto.strands else None


# ----------------------------------------------------------------------------------------------
# Threads
# ----------------------------------------------------------------------------------------------
def _thread_start(self: threading.Thread) -> None:
    client = _active()
    if client is not None and not is_sdk(_getframe(1).f_code.co_filename) and not _is_pool_worker(self):
        parent = _auto.ensure()
        child = fork_child(client, parent) if parent is not None else None
        if parent is not None and child is not None:
            self.__dict__["_raceway_joins"] = Joins(client, parent, child)
            run = self.run

            def run_in_own_context() -> None:
                _current.set(child)  # a new thread starts with a context of its own
                run()

            self.run = run_in_own_context  # type: ignore[method-assign]  # this thread's own run
    _originals["start"](self)


def _is_pool_worker(thread: threading.Thread) -> bool:
    target = getattr(thread, "_target", None)
    return getattr(target, "__module__", None) == "concurrent.futures.thread"


def _thread_join(self: threading.Thread, timeout: Optional[float] = None) -> None:
    _originals["join"](self, timeout)
    joins = self.__dict__.get("_raceway_joins")
    if joins is not None and not self.is_alive():
        joins.collect(_auto.ensure())


# ----------------------------------------------------------------------------------------------
# Thread pools
# ----------------------------------------------------------------------------------------------
def _pool_submit(
    self: concurrent.futures.ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
) -> concurrent.futures.Future[Any]:
    submit = _originals["submit"]
    client = _active()
    if client is None or isinstance(self, ContextAwareThreadPoolExecutor) or is_sdk(_getframe(1).f_code.co_filename):
        return submit(self, fn, *args, **kwargs)
    parent = _auto.ensure()
    child = fork_child(client, parent) if parent is not None else None
    if parent is None or child is None:
        return submit(self, fn, *args, **kwargs)
    target = to_thread_context(fn)
    if target is not None:
        try:
            target.run(_current.set, child)
        except RuntimeError:  # the context is entered elsewhere
            target = None
    if target is not None:
        future = submit(self, fn, *args, **kwargs)
    else:
        future = submit(self, _in_context(fn, child), *args, **kwargs)
    joins = Joins(client, parent, child, running_loop())
    future.__class__ = TracedFuture  # same layout: only result()/exception() change
    future._raceway_joins = joins  # type: ignore[attr-defined]  # a TracedFuture's, since the line above
    pending: Dict[concurrent.futures.Future[Any], Joins] = self.__dict__.setdefault("_raceway_pending_joins", {})
    pending[future] = joins
    while len(pending) > PENDING_JOINS_LIMIT:
        del pending[next(iter(pending))]
    return future


def _in_context(fn: Callable[..., Any], child: ExecutionContext) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        ctx = contextvars.copy_context()  # the worker's own variables, as fn would have seen them
        ctx.run(_current.set, child)
        return ctx.run(fn, *args, **kwargs)

    return run


def _pool_shutdown(self: concurrent.futures.ThreadPoolExecutor, wait: bool = True, **kwargs: Any) -> None:
    _originals["shutdown"](self, wait, **kwargs)
    if not wait:
        return
    pending: Optional[Dict[concurrent.futures.Future[Any], Joins]] = self.__dict__.pop("_raceway_pending_joins", None)
    if not pending:
        return
    collector = _auto.ensure()
    if collector is None:
        return
    for future, joins in list(pending.items()):
        if future.done():
            joins.collect(collector)


# ----------------------------------------------------------------------------------------------
# asyncio
# ----------------------------------------------------------------------------------------------
def _create_task(self: asyncio.BaseEventLoop, coro: Any, **kwargs: Any) -> asyncio.Future[Any]:
    """`BaseEventLoop.create_task`, through a `TaskFactory` when a client is set and a context
    is (or, strands without setup, can be) current. A task factory's result is a Future."""
    create = _originals["create_task"]
    client = _active()
    if client is None or self._task_factory is not None:  # type: ignore[attr-defined]
        return create(self, coro, **kwargs)
    self._check_closed()  # type: ignore[attr-defined]
    given = kwargs.get("context")
    if given is not None and given.get(_current) is None:
        parent = _auto.ensure()
        if parent is not None:
            given = given.copy()
            given.run(_current.set, parent)
            kwargs["context"] = given
    elif given is None and _auto.ensure() is None:
        return create(self, coro, **kwargs)
    return TaskFactory(client)(self, coro, **kwargs)


# ----------------------------------------------------------------------------------------------
# The switch
# ----------------------------------------------------------------------------------------------
def enable_strands(client: Optional[ClientLike] = None) -> None:
    """Turns strands without setup on (see the module's documentation). ``client``, when given,
    becomes the client automatic tracking records to. Calling it again is harmless."""
    global _installed
    if client is not None:
        _auto.set_client(client)
    with _lock:
        if not _installed:
            _installed = True
            _Thread.start = _thread_start  # type: ignore[method-assign]
            _Thread.join = _thread_join  # type: ignore[method-assign]
            # The replacements take the originals' arguments (typeshed's generic signatures aside).
            _Pool.submit = _pool_submit  # type: ignore[method-assign, assignment]
            _Pool.shutdown = _pool_shutdown  # type: ignore[method-assign, assignment]
            _Loop.create_task = _create_task  # type: ignore[method-assign, assignment]
        _auto.set_strands(True)


def disable_strands() -> None:
    """Turns strands without setup off: ``threading``, ``concurrent.futures`` and ``asyncio``
    are as they were. Threads, futures and tasks started meanwhile keep their contexts (and
    their joins are still recorded when collected through a future or a task)."""
    global _installed
    with _lock:
        _auto.set_strands(False)
        if _installed:
            _installed = False
            _Thread.start = _originals["start"]  # type: ignore[method-assign]
            _Thread.join = _originals["join"]  # type: ignore[method-assign]
            _Pool.submit = _originals["submit"]  # type: ignore[method-assign]
            _Pool.shutdown = _originals["shutdown"]  # type: ignore[method-assign]
            _Loop.create_task = _originals["create_task"]  # type: ignore[method-assign]


def strands_enabled() -> bool:
    return _auto.strands
