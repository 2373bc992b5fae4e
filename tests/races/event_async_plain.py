"""`event_async_tracked`'s publication through a plain ``asyncio.Event``.

Verdict: the publisher's write against the readers' read: one distinct data race, WARNING.
"""

import asyncio

from raceway import instrument_loop

from event_async_tracked import publish

EXPECT = [("data-race", "WARNING", "shared.value")]


def run(client):
    async def main():
        instrument_loop(client)
        await publish(client, asyncio.Event())

    asyncio.run(main())
