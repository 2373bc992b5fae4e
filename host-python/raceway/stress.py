"""Stress helpers: run one function from N threads, or N asyncio tasks, at the same moment.

A race the detector reports needs both accesses to have happened (a lost update, the
interleaving too). Tests that provoke races start the contenders together::

    from raceway import stress

    def test_deposit_is_atomic():
        account = raceway.shared(Account(), "account")
        stress.threads(account.deposit, 8, args=(10,))      # 8 threads, released at once
        assert account.balance == 80

    async def test_async():
        await stress.tasks(wallet.spend, 8, args=(1,))      # 8 tasks, released at once

Each thread (task) waits at a barrier until all N have started, then calls the function; the
results come back in order, and the first exception is raised once all have ended. The
barrier belongs to the SDK: it adds no happens-before edge, so what the function does in one
thread stays concurrent with what it does in the others (and the function's own
synchronisation is what orders them).

The threads and tasks are strands of their own: with strands without setup on (under the pytest
plugin) plain threads and tasks are; otherwise the threads are `raceway.ContextAwareThread`s and
the loop of `run_tasks` is instrumented, forked from the caller's context when there is one.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence

from . import _auto
from .concurrency import ContextAwareThread, instrument_loop

__all__ = ["threads", "tasks", "run_tasks"]

DEFAULT_TIMEOUT = 30.0


def threads(
    fn: Callable[..., Any],
    n: int = 8,
    *,
    args: Sequence[Any] = (),
    kwargs: Optional[Dict[str, Any]] = None,
    index: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> List[Any]:
    """Calls ``fn(*args, **kwargs)`` (``fn(i, *args, **kwargs)`` with ``index``) from ``n``
    threads released together; returns the ``n`` results in thread order. Raises the first
    thread's exception (in thread order) after all have ended, and ``TimeoutError`` if they
    have not ended within ``timeout`` seconds."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    kwargs = kwargs or {}
    barrier = threading.Barrier(n, timeout=timeout)  # the SDK's: the original, no edge
    results: List[Any] = [None] * n
    errors: List[Optional[BaseException]] = [None] * n

    def body(i: int) -> None:
        try:
            barrier.wait()
            results[i] = fn(i, *args, **kwargs) if index else fn(*args, **kwargs)
        except BaseException as e:  # handed to the caller
            errors[i] = e

    _auto.ensure()  # with strands without setup: the caller is a strand the threads fork from
    started = [
        ContextAwareThread(target=body, args=(i,), client=_auto.client, name=f"raceway-stress-{i}") for i in range(n)
    ]
    for t in started:
        t.start()
    for t in started:
        t.join(timeout)
    if any(t.is_alive() for t in started):
        running = sum(t.is_alive() for t in started)
        raise TimeoutError(f"stress.threads: {running} of {n} threads still running after {timeout} s")
    for e in errors:
        if e is not None:
            raise e
    return results


async def tasks(
    fn: Callable[..., Awaitable[Any]],
    n: int = 8,
    *,
    args: Sequence[Any] = (),
    kwargs: Optional[Dict[str, Any]] = None,
    index: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> List[Any]:
    """Awaits ``fn(*args, **kwargs)`` (``fn(i, ...)`` with ``index``) in ``n`` tasks released
    together, on the running loop; returns the results in order (``gather``'s). The loop must
    make tasks strands (strands without setup, `raceway.instrument_loop`, a middleware);
    `run_tasks` does it for you."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    kwargs = kwargs or {}
    released = asyncio.Event()  # the SDK's: the original, no edge
    arrived = [0]

    async def body(i: int) -> Any:
        arrived[0] += 1
        if arrived[0] >= n:
            released.set()
        await asyncio.wait_for(released.wait(), timeout)
        return await (fn(i, *args, **kwargs) if index else fn(*args, **kwargs))

    return await asyncio.wait_for(asyncio.gather(*(body(i) for i in range(n))), timeout)


def run_tasks(
    fn: Callable[..., Awaitable[Any]],
    n: int = 8,
    *,
    args: Sequence[Any] = (),
    kwargs: Optional[Dict[str, Any]] = None,
    index: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> List[Any]:
    """`tasks` from synchronous code: runs them on a new event loop (``asyncio.run``), made to
    give each task a context of its own, and returns the results."""

    async def main() -> List[Any]:
        client = _auto.client
        if client is not None and not _auto.strands:
            instrument_loop(client, default_executor=False)
        return await tasks(fn, n, args=args, kwargs=kwargs, index=index, timeout=timeout)

    _auto.ensure()
    return asyncio.run(main())
