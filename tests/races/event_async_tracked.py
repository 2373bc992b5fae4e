"""Publishing a value between asyncio tasks with a `raceway.TrackedAsyncEvent`, on an
instrumented loop. A publisher task writes the value and sets the event; one task awaits
``wait()``, another polls ``is_set()``; both then read the value.

Verdict: no race. (`event_async_plain` is the same program with an ``asyncio.Event``.)
"""

import asyncio

from raceway import TrackedAsyncEvent, instrument_loop

EXPECT = []


async def publish(client, ready):
    """The program, for any asyncio event: shared with event_async_plain."""
    box = {}

    def read_value():
        client.track_state_change("shared.value", None, box["value"], "Read")

    async def publisher():
        await asyncio.sleep(0.01)
        box["value"] = 7
        client.track_state_change("shared.value", None, 7, "Write")
        ready.set()

    async def waiting_reader():
        assert await ready.wait()
        read_value()

    async def polling_reader():
        while not ready.is_set():
            await asyncio.sleep(0.001)
        read_value()

    with client.trace():
        await asyncio.wait_for(asyncio.gather(waiting_reader(), polling_reader(), publisher()), 10)


def run(client):
    async def main():
        instrument_loop(client)
        ready = TrackedAsyncEvent(client)
        assert isinstance(ready, asyncio.Event)
        await publish(client, ready)

    asyncio.run(main())
