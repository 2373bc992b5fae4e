"""An unsynchronised counter shared by two asyncio tasks on an instrumented loop
(`raceway.instrument_loop`: every task gets its own strand).

Each task reads the counter, awaits until the other has read it too, then writes its value
plus one. The coroutine that gathers them wrote first (spawn) and reads after the gather
(join): ordered.

Verdict: read/write (WARNING) and write/write (CRITICAL) data races, and the forced
interleaving makes the second write a lost update (CRITICAL). Interleaving at an ``await`` is
a real race in asyncio: the schedule, not the program, decides the order.
"""

import asyncio

from raceway import instrument_loop

from _corpus_support import AsyncBarrier

EXPECT = [
    ("lost-update", "CRITICAL", "counter"),
    ("data-race", "CRITICAL", "counter"),
    ("data-race", "WARNING", "counter"),
]


async def main(client, state):
    instrument_loop(client)
    both_read = AsyncBarrier(2)

    async def increment():
        value = state["counter"]
        client.track_state_change("counter", None, value, "Read")
        await both_read.wait()
        state["counter"] = value + 1
        client.track_state_change("counter", value, value + 1, "Write")

    with client.trace():
        client.track_state_change("counter", None, 0, "Write")
        await asyncio.gather(increment(), increment())
        client.track_state_change("counter", None, state["counter"], "Read")


def run(client):
    state = {"counter": 0}
    asyncio.run(main(client, state))
    assert state["counter"] == 1
