"""`queue_tracked`'s producer/consumer hand-off through a plain ``queue.Queue``.

The program is correct (the queue does publish the payload safely), but the SDK cannot see
the hand-off: nothing orders the producer's write before the consumer's accesses. This is what
`raceway.TrackedQueue` (or ``happens_before``/``happens_after``) is for.

Verdict, per job: the producer's write against the consumer's read (data race, WARNING) and
against the consumer's write (data race, CRITICAL). No lost update: the producer never writes
a job again after putting it.
"""

import queue

from queue_tracked import JOBS, hand_off

EXPECT = [
    (kind, severity, f"job{i}.payload")
    for i in range(JOBS)
    for kind, severity in (("data-race", "WARNING"), ("data-race", "CRITICAL"))
]


def run(client):
    hand_off(client, queue.Queue())
