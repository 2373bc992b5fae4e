"""Writes before a thread starts, reads after it is joined: ordered by spawn and join.

The main thread prepares the input and starts a `ContextAwareThread` that reads the input and
writes the result; after ``join()`` the main thread reads the result and overwrites the input.
The same again through a `ContextAwareThreadPoolExecutor`: the work is forked at ``submit``
and joined when ``future.result()`` is collected.

Verdict: no race. Every access of the main thread is before the spawn or after the join.
"""

from raceway import ContextAwareThread, ContextAwareThreadPoolExecutor

from _corpus_support import TIMEOUT

EXPECT = []


def run(client):
    data = {}

    def work(tag):
        value = data[f"{tag}.input"]
        client.track_state_change(f"{tag}.input", None, value, "Read")
        data[f"{tag}.result"] = value * 2
        client.track_state_change(f"{tag}.result", None, value * 2, "Write")
        return value * 2

    def prepare(tag, value):
        data[f"{tag}.input"] = value
        client.track_state_change(f"{tag}.input", None, value, "Write")

    def finish(tag):
        client.track_state_change(f"{tag}.result", None, data[f"{tag}.result"], "Read")
        client.track_state_change(f"{tag}.input", data[f"{tag}.input"], 0, "Write")
        client.track_state_change(f"{tag}.result", data[f"{tag}.result"], 0, "Write")

    with client.trace():
        prepare("thread", 21)
        t = ContextAwareThread(target=work, args=("thread",), client=client)
        t.start()
        t.join(TIMEOUT)
        finish("thread")

        with ContextAwareThreadPoolExecutor(max_workers=2, client=client) as pool:
            prepare("pool", 5)
            future = pool.submit(work, "pool")
            assert future.result(TIMEOUT) == 10
            finish("pool")
