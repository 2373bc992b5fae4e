"""`queue_async_tracked`'s hand-off through a plain ``asyncio.Queue``: correct code whose
ordering the SDK cannot see.

Verdict, per job: the producer's write against the consumer's read (data race, WARNING) and
against its write (data race, CRITICAL).
"""

import asyncio

from raceway import instrument_loop

from queue_async_tracked import JOBS, hand_off

EXPECT = [
    (kind, severity, f"job{i}.payload")
    for i in range(JOBS)
    for kind, severity in (("data-race", "WARNING"), ("data-race", "CRITICAL"))
]


def run(client):
    async def main():
        instrument_loop(client)
        await hand_off(client, asyncio.Queue(maxsize=1))

    asyncio.run(main())
