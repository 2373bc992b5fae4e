"""The threads' counter, with every read-modify-write under one `threading.Lock` held through
`raceway.tracked_lock`.

Two threads start together (a barrier) and increment the counter three times each; the sleep
inside the critical section makes them contend for the lock. Each lock release happens before
the next acquire, so every access is ordered after the previous holder's.

Verdict: no race (and no lost update: a read and its write are in one critical section).
"""

import threading
import time

from raceway import ContextAwareThread, tracked_lock

from _corpus_support import TIMEOUT

EXPECT = []


def run(client):
    state = {"counter": 0}
    lock = threading.Lock()
    start = threading.Barrier(2, timeout=TIMEOUT)

    def increment():
        start.wait()
        for _ in range(3):
            with tracked_lock(client, lock, "counter_lock"):
                value = state["counter"]
                client.track_state_change("counter", None, value, "Read")
                time.sleep(0.001)
                state["counter"] = value + 1
                client.track_state_change("counter", value, value + 1, "Write")

    with client.trace():
        client.track_state_change("counter", None, 0, "Write")
        threads = [ContextAwareThread(target=increment, client=client) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        client.track_state_change("counter", None, state["counter"], "Read")
    assert state["counter"] == 6
