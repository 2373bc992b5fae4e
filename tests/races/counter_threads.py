"""An unsynchronised counter shared by two threads (`ContextAwareThread`).

Each thread reads the counter, waits until the other has read it too, then writes its value
plus one: one increment is lost. The main thread's first write comes before both threads
(spawn) and its final read after both (join), so those are ordered and not reported.

Verdict: the two reads and two writes are unordered, so there is a read/write data race
(WARNING) and a write/write data race (CRITICAL) whatever the schedule. The barrier forces the
check-then-act interleaving, so the second write is also a lost update (CRITICAL).
"""

import threading

from raceway import ContextAwareThread

from _corpus_support import TIMEOUT

EXPECT = [
    ("lost-update", "CRITICAL", "counter"),
    ("data-race", "CRITICAL", "counter"),
    ("data-race", "WARNING", "counter"),
]


def run(client):
    state = {"counter": 0}
    both_read = threading.Barrier(2, timeout=TIMEOUT)

    def increment():
        value = state["counter"]
        client.track_state_change("counter", None, value, "Read")
        both_read.wait()
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
    assert state["counter"] == 1  # the lost update really happened
