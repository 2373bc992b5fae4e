"""Lock tracking: `tracked_lock` wraps a lock (``threading``, ``asyncio``, or any object with
``acquire()``/``release()`` or ``__enter__``/``__exit__``) so that holding it is recorded,
exception-safe. The reference SDK's helpers, with its signatures."""

from __future__ import annotations

import inspect
import logging
from typing import Any

from ._client_protocol import ClientLike
from ._recorder import warn_once_per_process
from .context import get_context

log = logging.getLogger("raceway")


class tracked_lock:  # noqa: N801 - the reference SDK's name, used as a context manager
    """``with tracked_lock(client, lock, "account_lock"):`` for thread locks,
    ``async with tracked_lock(client, lock, "account_lock"):`` for asyncio locks. ``lock_type``
    (default ``"Mutex"``) is recorded as given. ``as`` binds the lock.

    The acquire is recorded after the lock is really held and the release before it is really
    released, so the recorded critical section never claims more than the real one. A lock
    with ``__enter__``/``__exit__`` but no ``acquire``/``release`` is entered and exited.

    Outside any execution context the lock is still taken and released but nothing is
    recorded, and one WARNING says so: the reference SDK raises ``RuntimeError`` there, which
    would fail a background job or a script that has no request around it. If recording the
    acquire raises (``Config.strict_context``), the lock is released before the error leaves.
    A coroutine ``acquire()`` under a plain ``with`` raises ``TypeError`` (use ``async with``).
    """

    def __init__(self, client: ClientLike, lock: Any, lock_id: str, lock_type: str = "Mutex") -> None:
        self.client = client
        self.lock = lock
        self.lock_id = lock_id
        self.lock_type = lock_type

    def __enter__(self) -> Any:
        lock = self.lock
        if hasattr(lock, "acquire") and hasattr(lock, "release"):
            acquired = lock.acquire()
            if inspect.isawaitable(acquired):
                if inspect.iscoroutine(acquired):
                    acquired.close()  # an asyncio lock: it needs `async with`
                raise TypeError("tracked_lock: this lock's acquire() is a coroutine; use `async with`")
        elif hasattr(lock, "__enter__") and hasattr(lock, "__exit__"):
            lock.__enter__()
        else:
            raise TypeError(
                f"tracked_lock: {type(lock).__name__} has neither acquire()/release() nor __enter__/__exit__"
            )
        self._record_acquire()
        return lock

    def __exit__(self, *exc: Any) -> None:
        try:
            self.client.track_lock_release(self.lock_id, self.lock_type)
        finally:
            self._release()

    async def __aenter__(self) -> Any:
        acquired = self.lock.acquire()
        if inspect.isawaitable(acquired):
            await acquired
        self._record_acquire()
        return self.lock

    async def __aexit__(self, *exc: Any) -> None:
        self.__exit__(*exc)

    def _record_acquire(self) -> None:
        if get_context() is None:
            warn_once_per_process(
                "tracked-lock-outside",
                "raceway: tracked_lock(%r) outside an execution context: the lock is taken, nothing is "
                "recorded (the reference SDK raises RuntimeError here; open a context with client.trace() "
                "or the middleware to record it)",
                self.lock_id,
                level=logging.WARNING,
            )
        try:
            self.client.track_lock_acquire(self.lock_id, self.lock_type)
        except BaseException:
            self._release()  # never leave the application holding a lock it was not given
            raise

    def _release(self) -> None:
        lock = self.lock
        if hasattr(lock, "release"):
            lock.release()
        else:
            lock.__exit__(None, None, None)


def track_lock_acquire(client: ClientLike, lock_id: str, lock_type: str = "Mutex") -> None:
    """Records that the current context now holds ``lock_id`` (``client.track_lock_acquire``)."""
    client.track_lock_acquire(lock_id, lock_type)


def track_lock_release(client: ClientLike, lock_id: str, lock_type: str = "Mutex") -> None:
    """Records that the current context gives up ``lock_id`` (``client.track_lock_release``)."""
    client.track_lock_release(lock_id, lock_type)
