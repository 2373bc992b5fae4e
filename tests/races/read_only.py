"""Read-only sharing: configuration written once before the workers start, then only read.

The main thread writes two settings, starts three threads that read them repeatedly (at the
same time: a barrier), and reads them itself while the threads run, before joining them.

Verdict: no race. Reads never race with reads, and the only writes come before the spawns.
"""

import threading

from raceway import ContextAwareThread

from _corpus_support import TIMEOUT

EXPECT = []


def run(client):
    config = {}
    together = threading.Barrier(3, timeout=TIMEOUT)

    def read_settings():
        for name in ("config.timeout", "config.retries"):
            client.track_state_change(name, None, config[name], "Read")

    def worker():
        together.wait()
        for _ in range(3):
            read_settings()

    with client.trace():
        config["config.timeout"] = 30
        client.track_state_change("config.timeout", None, 30, "Write")
        config["config.retries"] = 3
        client.track_state_change("config.retries", None, 3, "Write")
        threads = [ContextAwareThread(target=worker, client=client) for _ in range(3)]
        for t in threads:
            t.start()
        read_settings()  # concurrent with the workers' reads: fine
        for t in threads:
            t.join(TIMEOUT)
