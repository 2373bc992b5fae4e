"""The CPU priority of the SDK's background threads (the flusher, the HTTP sender).

On Linux a thread is a task of its own: ``setpriority(PRIO_PROCESS, tid, n)`` sets one thread's
nice value (setpriority(2), "BUGS": the per-thread behaviour is Linux's, not POSIX's). With a
higher nice value the scheduler gives the application's threads the CPU first when both want
it: the encoding, the race detection and the requests run in the CPU time the application
leaves over, and fall behind (into the bounded queue) rather than slow it down. The GIL is not
affected: a background thread holding it while descheduled leaves the waiting thread blocked,
so the CPU goes to the holder (no priority inversion over CPU time).

Elsewhere nothing is done: on other systems the same call names a *process* by that number.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Optional

log = logging.getLogger("raceway")


def current_nice() -> Optional[int]:
    """The calling thread's nice value (Linux), or None. Taken on the application's thread
    when a client starts, as the base of `lower_this_thread` (a thread inherits its creator's
    nice value, so the sender, started by the flusher, would otherwise add to it twice)."""
    if sys.platform != "linux":
        return None
    try:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    except (OSError, AttributeError):
        return None


def lower_this_thread(nice: Optional[int], base: Optional[int]) -> None:
    """Sets the calling thread's nice value to ``base + nice`` (at most 19), on Linux; ``base``
    is the application thread's (`current_nice`). Nothing when ``nice`` is None or 0 or
    ``base`` is None. A thread cannot raise its priority back without privileges; the SDK's
    threads never need to. Never raises: a refusal (a sandbox without ``setpriority``) is
    logged at DEBUG."""
    if not nice or base is None or sys.platform != "linux":
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, base + nice))
    except (OSError, AttributeError) as e:
        log.debug("raceway: cannot lower the priority of %s: %s", threading.current_thread().name, e)
