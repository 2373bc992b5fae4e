"""`Config.background_nice` (raceway/_priority.py): with it on and the SDK's threads
lowered, what the application starts afterwards (threads, a subprocess, a forked child, a
second client made on another thread) keeps the application's own nice value."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Dict

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are Linux's")


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_what_the_application_starts_keeps_its_nice_value(collector, make_client):
    own = _nice()
    client = make_client(endpoint=collector.url, background_nice=7)
    with client.trace():
        client.track_state_change("x", 0, 1)
    assert client.flush(timeout=10) and collector.wait_for_events(1)
    flusher = next(t for t in threading.enumerate() if t.name == "raceway-flusher")
    assert os.getpriority(os.PRIO_PROCESS, flusher.native_id) == min(19, own + 7)  # it is on

    seen: Dict[str, int] = {}
    thread = threading.Thread(target=lambda: seen.__setitem__("thread", _nice()))
    thread.start()
    thread.join()
    seen["process"] = os.getpriority(os.PRIO_PROCESS, 0)
    seen["subprocess"] = int(subprocess.check_output([sys.executable, "-c", "import os; print(os.nice(0))"]))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(write, str(_nice()).encode())
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    os.close(write)
    seen["forked child"] = int(os.read(read, 64))
    os.close(read)

    # A second client made on an application thread takes that thread's value as its base.
    def second() -> None:
        other = make_client(endpoint=None, background_nice=2)
        with other.trace():
            other.track_state_change("y", 0, 1)
        other.races(timeout=10)
        seen["second client's maker"] = _nice()

    thread = threading.Thread(target=second)
    thread.start()
    thread.join()
    assert seen == dict.fromkeys(seen, own), (own, seen)
    assert _nice() == own
