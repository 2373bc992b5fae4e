"""Work handed to a plain ``concurrent.futures.ThreadPoolExecutor`` with
``contextvars.copy_context().run(fn)``: both pool threads see the submitter's execution
context. Recording on it from two threads would merge them into one strand and hide their
race; instead each pool thread records on a child of its own (`raceway.context.claim`).

The two calls increment an unsynchronised counter with a barrier between the read and the
write (both read before either writes). The submitter writes the counter first; it does not
touch it after collecting the results: a plain pool records no join edge, so that would be
another (real, as far as the SDK can know) race.

Verdict: the race between the two pool threads: read/write (WARNING) and write/write
(CRITICAL) data races, and a lost update (CRITICAL).
"""

import concurrent.futures
import contextvars
import threading

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
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(contextvars.copy_context().run, increment) for _ in range(2)]
            for f in futures:
                f.result(TIMEOUT)
    assert state["counter"] == 1
