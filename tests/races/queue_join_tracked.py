"""A work queue drained by two worker threads, and ``queue.join()`` as the hand-back: a
`raceway.TrackedQueue` orders each ``task_done()`` before the ``join()`` it releases.

The main thread writes four jobs' inputs and puts them; the workers (never joined until the
end) each take jobs, read the input and write the job's result, then call ``task_done()``.
After ``jobs.join()`` the main thread reads every result, before it stops the workers.

Verdict: no race: put -> get orders the inputs, task_done -> join the results.
"""

from raceway import ContextAwareThread, TrackedQueue

from _corpus_support import TIMEOUT

EXPECT = []
JOBS = 4


def run(client):
    jobs = TrackedQueue(client)
    results = {}

    def worker():
        while True:
            i = jobs.get(timeout=TIMEOUT)
            if i is None:
                jobs.task_done()
                return
            client.track_state_change(f"job{i}.input", None, i, "Read")
            results[i] = i * i
            client.track_state_change(f"job{i}.result", None, i * i, "Write")
            jobs.task_done()

    with client.trace():
        workers = [ContextAwareThread(target=worker, client=client, daemon=True) for _ in range(2)]
        for t in workers:
            t.start()
        for i in range(JOBS):
            client.track_state_change(f"job{i}.input", None, i, "Write")
            jobs.put(i)
        jobs.join()
        for i in range(JOBS):
            client.track_state_change(f"job{i}.result", None, results[i], "Read")
        for _ in workers:
            jobs.put(None)
        for t in workers:
            t.join(TIMEOUT)
