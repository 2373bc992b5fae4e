"""Lock tracking: `tracked_lock` wraps any lock with ``acquire()``/``release()`` (``threading``
or ``asyncio``) so that holding it is recorded, exception-safe."""

from __future__ import annotations

import inspect
from typing import Any


class tracked_lock:  # noqa: N801 - the reference SDK's name, used as a context manager
    """``with tracked_lock(client, lock, "account_lock"):`` for thread locks,
    ``async with tracked_lock(client, lock, "account_lock"):`` for asyncio locks.

    The acquire is recorded after the lock is really held and the release before it is really
    released, so the recorded critical section never claims more than the real one.
    """

    def __init__(self, client: Any, lock: Any, lock_id: str, lock_type: str = "Mutex"):
        self.client = client
        self.lock = lock
        self.lock_id = lock_id
        self.lock_type = lock_type

    def __enter__(self) -> Any:
        acquired = self.lock.acquire()
        if inspect.isawaitable(acquired):
            acquired.close()  # an asyncio lock: it needs `async with`
            raise TypeError("tracked_lock: this lock's acquire() is a coroutine; use `async with`")
        self.client.track_lock_acquire(self.lock_id, self.lock_type)
        return self.lock

    def __exit__(self, *exc: Any) -> None:
        try:
            self.client.track_lock_release(self.lock_id, self.lock_type)
        finally:
            self.lock.release()

    async def __aenter__(self) -> Any:
        acquired = self.lock.acquire()
        if inspect.isawaitable(acquired):
            await acquired
        self.client.track_lock_acquire(self.lock_id, self.lock_type)
        return self.lock

    async def __aexit__(self, *exc: Any) -> None:
        self.__exit__(*exc)


def track_lock_acquire(client: Any, lock_id: str, lock_type: str = "Mutex") -> None:
    client.track_lock_acquire(lock_id, lock_type)


def track_lock_release(client: Any, lock_id: str, lock_type: str = "Mutex") -> None:
    client.track_lock_release(lock_id, lock_type)
