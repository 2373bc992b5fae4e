"""Producer/consumer hand-off between two asyncio tasks through a `raceway.TrackedAsyncQueue`,
on an instrumented loop. The queue holds one item (``maxsize=1``), so the producer really
waits in ``await put()`` and the consumer in ``await get()``; the last job goes through
``put_nowait``/``get_nowait``.

Verdict: no race. (`queue_async_plain` is the same program with an ``asyncio.Queue``.)
"""

import asyncio

from raceway import TrackedAsyncQueue, instrument_loop

EXPECT = []
JOBS = 3


async def hand_off(client, jobs):
    """The program, for any asyncio queue: shared with queue_async_plain."""

    async def producer():
        for i in range(JOBS - 1):
            job = {"payload": i}
            client.track_state_change(f"job{i}.payload", None, i, "Write")
            await jobs.put((i, job))
        await jobs.join()  # the queue is empty and done: put_nowait cannot fail
        last = JOBS - 1
        client.track_state_change(f"job{last}.payload", None, last, "Write")
        jobs.put_nowait((last, {"payload": last}))

    async def consumer():
        for n in range(JOBS):
            if n < JOBS - 1:
                i, job = await jobs.get()
            else:
                while jobs.empty():
                    await asyncio.sleep(0.001)
                i, job = jobs.get_nowait()
            value = job["payload"]
            client.track_state_change(f"job{i}.payload", None, value, "Read")
            job["payload"] = value + 1
            client.track_state_change(f"job{i}.payload", value, value + 1, "Write")
            jobs.task_done()

    with client.trace():
        await asyncio.wait_for(asyncio.gather(consumer(), producer()), 10)


def run(client):
    async def main():
        instrument_loop(client)
        jobs = TrackedAsyncQueue(client, maxsize=1)
        assert isinstance(jobs, asyncio.Queue)
        await hand_off(client, jobs)

    asyncio.run(main())
