"""The tasks' counter, with every read-modify-write under one `asyncio.Lock` held through
``async with raceway.tracked_lock(...)``, on an instrumented loop.

Three tasks increment twice each and yield inside the critical section
(``await asyncio.sleep(0)``), so the others really queue on the lock.

Verdict: no race.
"""

import asyncio

from raceway import instrument_loop, tracked_lock

EXPECT = []


async def main(client, state):
    instrument_loop(client)
    lock = asyncio.Lock()

    async def increment():
        for _ in range(2):
            async with tracked_lock(client, lock, "counter_lock"):
                value = state["counter"]
                client.track_state_change("counter", None, value, "Read")
                await asyncio.sleep(0)
                state["counter"] = value + 1
                client.track_state_change("counter", value, value + 1, "Write")

    with client.trace():
        client.track_state_change("counter", None, 0, "Write")
        await asyncio.gather(*(increment() for _ in range(3)))
        client.track_state_change("counter", None, state["counter"], "Read")


def run(client):
    state = {"counter": 0}
    asyncio.run(main(client, state))
    assert state["counter"] == 6
