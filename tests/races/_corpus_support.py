"""What the corpus programs share: a barrier for asyncio tasks (``asyncio.Barrier`` is Python
3.11+; the package supports 3.9) and the timeout every barrier and join uses, so a program that
goes wrong fails instead of hanging. Neither records anything: they are invisible to the
detector, like any synchronisation the SDK does not track."""

from __future__ import annotations

import asyncio

TIMEOUT = 10.0
"""Seconds any barrier, join or request of a corpus program waits at most."""


class AsyncBarrier:
    """``await barrier.wait()`` returns once ``parties`` tasks are waiting. Single use.
    Built on a plain ``asyncio.Event``: no happens-before edge for the detector."""

    def __init__(self, parties: int):
        self.parties = parties
        self.arrived = 0
        self.event: "asyncio.Event | None" = None

    async def wait(self) -> None:
        if self.event is None:
            self.event = asyncio.Event()  # made on the running loop (3.9 binds at creation)
        self.arrived += 1
        if self.arrived >= self.parties:
            self.event.set()
        await asyncio.wait_for(self.event.wait(), TIMEOUT)
