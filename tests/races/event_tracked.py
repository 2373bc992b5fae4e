"""Publishing a value with a `raceway.TrackedEvent`.

A publisher thread writes the value and sets the event. One reader blocks in ``wait()``,
another polls ``is_set()``; each reads the value once the event says it is there. ``set()``
happens before a ``wait()`` or ``is_set()`` that returns True.

Verdict: no race. (`event_plain` is the same program with a ``threading.Event``.)
"""

import threading
import time

from raceway import ContextAwareThread, TrackedEvent

from _corpus_support import TIMEOUT

EXPECT = []


def publish(client, ready):
    """The program, for any threading event: shared with event_plain."""
    box = {}

    def read_value():
        client.track_state_change("shared.value", None, box["value"], "Read")

    def publisher():
        time.sleep(0.01)  # the readers are waiting by now (the verdict does not depend on it)
        box["value"] = 42
        client.track_state_change("shared.value", None, 42, "Write")
        ready.set()

    def blocking_reader():
        assert ready.wait(TIMEOUT)
        read_value()

    def polling_reader():
        deadline = time.monotonic() + TIMEOUT
        while not ready.is_set():
            assert time.monotonic() < deadline
            time.sleep(0.001)
        read_value()

    with client.trace():
        threads = [ContextAwareThread(target=f, client=client) for f in (blocking_reader, polling_reader, publisher)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)


def run(client):
    ready = TrackedEvent(client)
    assert isinstance(ready, threading.Event)
    publish(client, ready)
