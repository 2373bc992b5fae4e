"""A task collected with ``asyncio.wait`` and never awaited or asked for its result, on an
instrumented loop.

The parent creates a task that writes a total, ``await asyncio.wait({task})`` (which returns
only once the task is done), then reads and rewrites the total. In every execution the task's
write is finished before ``wait`` returns, so the parent's accesses are ordered after it.

Verdict: no race: the parent seeing ``done()`` answer True (inside ``asyncio.wait``) is the join.
"""

import asyncio

from raceway import instrument_loop

EXPECT = []


async def main(client, report):
    instrument_loop(client)

    async def summarise():
        await asyncio.sleep(0)
        report["total"] = 42
        client.track_state_change("report.total", None, 42, "Write")

    with client.trace():
        task = asyncio.ensure_future(summarise())
        done, pending = await asyncio.wait({task}, timeout=10)
        assert task in done and not pending
        client.track_state_change("report.total", None, report["total"], "Read")
        report["total"] += 1
        client.track_state_change("report.total", 42, 43, "Write")


def run(client):
    asyncio.run(main(client, {}))
