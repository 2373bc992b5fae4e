"""Producer/consumer hand-off through a `raceway.TrackedQueue`.

The producer thread fills in each job's payload and puts the job on the queue; the consumer
thread takes it, reads the payload and writes its answer into it. The put happens before the
get that takes the job (recorded as ``happens_before``/``happens_after`` on the queue), so
the producer's writes are ordered before the consumer's accesses.

Verdict: no race. (`queue_plain` is the same program with a ``queue.Queue``.)
"""

import queue

from raceway import ContextAwareThread, TrackedQueue

from _corpus_support import TIMEOUT

EXPECT = []
JOBS = 2


def hand_off(client, jobs):
    """The program, for any queue: shared with queue_plain."""

    def producer():
        for i in range(JOBS):
            job = {"payload": i * 10}
            client.track_state_change(f"job{i}.payload", None, job["payload"], "Write")
            jobs.put((i, job))
        jobs.put(None)

    def consumer():
        while True:
            item = jobs.get(timeout=TIMEOUT)
            if item is None:
                return
            i, job = item
            value = job["payload"]
            client.track_state_change(f"job{i}.payload", None, value, "Read")
            job["payload"] = value + 1
            client.track_state_change(f"job{i}.payload", value, value + 1, "Write")

    with client.trace():
        threads = [ContextAwareThread(target=f, client=client) for f in (consumer, producer)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)


def run(client):
    jobs = TrackedQueue(client)
    assert isinstance(jobs, queue.Queue)
    hand_off(client, jobs)
