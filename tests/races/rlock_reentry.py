"""A re-entrant lock (`threading.RLock`) taken twice by the same thread, through
`raceway.tracked_lock` each time, by two threads that contend for it.

Each thread writes inside the inner acquisition, and again after leaving it while still
holding the outer one. The inner release does not let the other thread in (the lock is still
held), and the outer release happens before the other thread's acquire.

Verdict: no race.
"""

import threading

from raceway import ContextAwareThread, tracked_lock

from _corpus_support import TIMEOUT

EXPECT = []


def run(client):
    state = {"ledger": 0}
    lock = threading.RLock()
    start = threading.Barrier(2, timeout=TIMEOUT)

    def add(amount):
        value = state["ledger"]
        client.track_state_change("ledger", None, value, "Read")
        state["ledger"] = value + amount
        client.track_state_change("ledger", value, value + amount, "Write")

    def worker():
        start.wait()
        for _ in range(2):
            with tracked_lock(client, lock, "ledger_lock", "RLock"):
                with tracked_lock(client, lock, "ledger_lock", "RLock"):
                    add(1)
                add(10)  # still holding the outer acquisition

    with client.trace():
        client.track_state_change("ledger", None, 0, "Write")
        threads = [ContextAwareThread(target=worker, client=client) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        client.track_state_change("ledger", None, state["ledger"], "Read")
    assert state["ledger"] == 44
