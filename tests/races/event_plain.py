"""`event_tracked`'s publication through a plain ``threading.Event``: correct code whose
ordering the SDK cannot see.

Verdict: the publisher's write against the readers' read (one place in the code, read by two
strands): one distinct data race, WARNING.
"""

import threading

from event_tracked import publish

EXPECT = [("data-race", "WARNING", "shared.value")]


def run(client):
    publish(client, threading.Event())
