"""``asyncio.gather`` on an event loop nobody instrumented: both tasks inherit (a copy of)
the parent's context variable, so both see the parent's execution context. Each task records
on a child of its own (`raceway.context.claim`), so their race stays visible.

Two tasks increment an unsynchronised counter, both reading before either writes. The parent
writes the counter first and does not touch it after the gather: without the task factory
there is no join edge, so that would be another race.

Verdict: read/write (WARNING) and write/write (CRITICAL) data races and a lost update
(CRITICAL) between the two tasks.
"""

import asyncio

from _corpus_support import AsyncBarrier

EXPECT = [
    ("lost-update", "CRITICAL", "counter"),
    ("data-race", "CRITICAL", "counter"),
    ("data-race", "WARNING", "counter"),
]


async def main(client, state):
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


def run(client):
    state = {"counter": 0}
    asyncio.run(main(client, state))
    assert state["counter"] == 1
