"""An atomic counter: two threads increment it at the same time (a barrier), every access
recorded as ``AtomicRMW`` (a ``fetch_add``, ``itertools.count``, a database ``UPDATE ... SET
n = n + 1``), and then read it with ``AtomicRead``.

Verdict: no race. Atomic accesses never race with each other, and an atomic read-modify-write
cannot lose an update.
"""

import itertools
import threading

from raceway import ContextAwareThread

from _corpus_support import TIMEOUT

EXPECT = []


def run(client):
    hits = itertools.count(1)  # next() is atomic in CPython
    together = threading.Barrier(2, timeout=TIMEOUT)

    def worker():
        together.wait()
        for _ in range(3):
            n = next(hits)
            client.track_state_change("hits", n - 1, n, "AtomicRMW")
        client.track_state_change("hits", None, n, "AtomicRead")

    with client.trace():
        client.track_state_change("hits", None, 0, "AtomicWrite")
        threads = [ContextAwareThread(target=worker, client=client) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
