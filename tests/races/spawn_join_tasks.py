"""Writes before a task starts, reads after it is awaited, on an instrumented loop.

The parent writes the input, creates a task that reads it and writes a result, awaits the
task and then reads the result and overwrites the input; the same with ``asyncio.gather`` over
two tasks (each with its own input and result), and with ``asyncio.to_thread`` (the loop's
default executor is context-aware once instrumented).

Verdict: no race. Every access of the parent is before the spawn or after the join.
"""

import asyncio

from raceway import instrument_loop

EXPECT = []


async def main(client, data):
    instrument_loop(client)

    def compute(tag):
        value = data[f"{tag}.input"]
        client.track_state_change(f"{tag}.input", None, value, "Read")
        data[f"{tag}.result"] = value + 1
        client.track_state_change(f"{tag}.result", None, value + 1, "Write")

    async def work(tag):
        await asyncio.sleep(0)
        compute(tag)

    def prepare(tag, value):
        data[f"{tag}.input"] = value
        client.track_state_change(f"{tag}.input", None, value, "Write")

    def finish(tag):
        client.track_state_change(f"{tag}.result", None, data[f"{tag}.result"], "Read")
        client.track_state_change(f"{tag}.input", data[f"{tag}.input"], 0, "Write")

    with client.trace():
        prepare("task", 1)
        task = asyncio.ensure_future(work("task"))
        await task
        finish("task")

        prepare("gather.a", 10)
        prepare("gather.b", 20)
        await asyncio.gather(work("gather.a"), work("gather.b"))
        finish("gather.a")
        finish("gather.b")

        prepare("to_thread", 100)
        await asyncio.to_thread(compute, "to_thread")
        finish("to_thread")


def run(client):
    asyncio.run(main(client, {}))
