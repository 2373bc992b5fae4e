"""What a client lends the SDK's own helpers: its record log and the one way to add to it.

Every `RacewayClient` composes one `EventRecorder`. The helpers that record on a client's
behalf (tracked objects, instrumented primitives, the middleware, outgoing HTTP calls, the
decorators, background jobs) reach it through `recorder_of`, the one accessor, and never
through the client's private members. An object that is not a `RacewayClient` (a test double)
has no recorder: `recorder_of` answers None and the helper calls the object's public
``track_*`` methods instead (`raceway._client_protocol.ClientLike` names them).

A record is one tuple appended to a deque (`raceway._records` gives its shape); the flusher
thread drains the deque. Appending takes no lock and makes no component call. When the client
stops recording (it was shut down, disabled after a core failure, or muted in a forked child
that could not restart), `mute` turns `append` and `record` into no-ops on the instance, so
the paths that append pay no check per record, and `active` says so to helpers that do more
than append (a lock helper that also updates the context's held locks).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Deque, Optional, Set, Tuple

from ._location import Site, getframe
from ._location import site as _site
from .context import ExecutionContext

if TYPE_CHECKING:
    from ._core import CoreInstance

log = logging.getLogger("raceway")

_time_ns = time.time_ns

Fields = Tuple[Any, ...]
"""An event's kind-specific fields (docs/record-format.md), a tuple."""

Record = Tuple[Any, ...]
"""``(context, state, seq, prev_seq, unix_nanos, duration_ns, file, line, kind, *fields)``: flat
(`raceway._records`)."""


def _noop(*_args: Any, **_kwargs: Any) -> None:
    return None


class EventRecorder:
    """One client's record log, its bound, and the settings every record path reads.

    :param limit: the most records the log holds; past it the oldest are dropped (and counted
        in `drops`).
    :param wake_at: the log's size (records) at which an append wakes a waiting flusher.
    :param stack_depth: stack frames kept per ``StateChange`` for race reports (0: none).
    """

    queue: Deque[Record]
    """The record log (a ``deque`` with ``maxlen=limit``): the same object for the client's
    whole life, emptied (not replaced) in a forked child."""
    limit: int
    batch: int
    """The log's size (records) at which an append wakes a waiting flusher."""
    wake_at: int
    """The log's size at which an append calls `pressure`: ``batch`` while the flusher waits,
    ``limit`` once an append has woken it (until it waits again: `arm`). So while the flusher
    works, appends pay no call for waking it: only a full log (a drop to count) calls."""
    mirror: Optional[Any]
    """An object whose ``_wake_at`` attribute is kept equal to `wake_at` (the client, whose
    inline hot paths read it as their own attribute, a lookup less), or None."""
    stack_depth: int
    drops: int
    """Records the full log dropped, counted on the application's threads without a lock."""
    wake: Optional[threading.Event]
    """The flusher's wake-up, once it runs."""
    warned: Set[str]
    """Keys `warn_once` has already logged."""
    codec: Optional["CoreInstance"]
    """The client's core instance for header codecs (reading incoming trace headers), or None
    when the core could not start or failed."""
    active: bool
    """False once `mute` was called: nothing more is recorded."""

    def __init__(self, limit: int, wake_at: int, stack_depth: int) -> None:
        self.queue = deque(maxlen=limit)
        self.limit = limit
        # A log that can never hold ``wake_at`` records still wakes the flusher and counts its
        # drops: ``pressure`` is called at the limit at the latest.
        self.batch = self.wake_at = min(wake_at, limit)
        self.mirror = None
        self.stack_depth = stack_depth
        self.drops = 0
        self.wake = None
        self.warned = set()
        self.codec = None
        self.active = True

    def append(
        self, ctx: ExecutionContext, where: Site, kind: str, fields: Fields, duration_ns: Optional[int] = None
    ) -> None:
        """Appends one record of ``ctx`` located at ``where`` (a `raceway._location.Site`):
        ``kind`` is the event kind (``StateChange``, ``LockAcquire``, ``Custom``, ...),
        ``fields`` its kind-specific fields (docs/record-format.md), ``duration_ns`` the
        event's duration in nanoseconds or None. The one place a record is made, but for the
        client's ``track_state_change`` and ``track_function_call``, which write the same
        lines inline (a method call is a tenth of their cost)."""
        seq = ctx.seq + 1
        prev = ctx.last
        ctx.seq = ctx.last = seq
        q = self.queue
        if len(q) >= self.wake_at:
            self.pressure(len(q))
        q.append((ctx.row, ctx.state, seq, prev, _time_ns(), duration_ns, where[0], where[1], kind) + fields)

    def record(self, ctx: ExecutionContext, kind: str, fields: Fields, duration_ns: Optional[int] = None) -> None:
        """`append`, located at the first application frame from the caller outwards (the
        caller's own frame when it is the application's)."""
        self.append(ctx, _site(getframe(1)), kind, fields, duration_ns)

    def pressure(self, size: int) -> None:
        """The log holds ``size`` records, at least `wake_at`: wake the flusher, and raise
        `wake_at` to the limit until it waits again (`arm`). If the log is full, the append
        that follows drops its oldest record: counted here, without a lock (see
        raceway/_stats.py)."""
        try:
            if size >= self.limit:
                self.drops += 1
            wake = self.wake
            if wake is not None:
                # Raised before the set: a flusher that arms between the two is woken by the
                # set and arms again after its cycle. (Raised after, it could overwrite the arm
                # of a flusher that had already woken, cycled and gone back to waiting, which
                # then slept through every later batch.)
                self._set_wake_at(self.limit)
                if not wake.is_set():
                    wake.set()
        except Exception:  # pragma: no cover - never raise into the application
            pass

    def arm(self) -> None:
        """Called by the flusher just before it waits: the next append that finds `batch`
        records or more wakes it. (An append that woke it between this and its wait makes
        the wait return at once; one that finds `wake_at` raised is in a cycle the flusher
        has yet to start or finish, which takes what the log holds.)"""
        self._set_wake_at(self.batch)

    def _set_wake_at(self, size: int) -> None:
        self.wake_at = size
        mirror = self.mirror
        if mirror is not None:
            mirror._wake_at = size

    def dropped_so_far(self) -> int:
        """`drops`, for the flusher (which reads it to log drops as they happen)."""
        return self.drops

    def warn_once(self, key: str, msg: str, *args: Any) -> None:
        """Logs ``msg % args`` at ERROR the first time ``key`` is seen on this recorder."""
        if key not in self.warned:
            self.warned.add(key)
            log.error(msg, *args)

    def mute(self) -> None:
        """`append` and `record` become no-ops on this instance, and `active` False. For good:
        a client that stops recording does not start again."""
        self.active = False
        for name in ("append", "record"):
            setattr(self, name, _noop)

    def restart(self) -> None:
        """In a forked child, before the client starts its own flusher: an empty log, no
        drops, no flusher to wake, no codec yet (the parent delivers what it recorded)."""
        self.queue.clear()
        self.drops = 0
        self.wake = None
        self._set_wake_at(self.batch)
        self.codec = None


def recorder_of(client: object) -> Optional[EventRecorder]:
    """The `EventRecorder` of ``client`` if it is a `RacewayClient`, else None (a test double,
    or any other object with the public tracking methods: call those instead).

    The one accessor of a client's internals for the SDK's helpers. It costs a function call:
    a path that runs per access caches the answer per client (`raceway._auto.recorder`)."""
    found = getattr(client, "_recorder", None)
    return found if found.__class__ is EventRecorder else None


def warn_once(client: object, key: str, msg: str, *args: Any) -> None:
    """Logs ``msg % args`` at ERROR once per ``key`` through ``client``'s recorder; for an
    object that has none, logs it every time (a test double's warnings are the test's)."""
    recorder = recorder_of(client)
    if recorder is not None:
        recorder.warn_once(key, msg, *args)
    else:
        log.error(msg, *args)


_warned_in_process: Set[str] = set()


def warn_once_per_process(key: str, msg: str, *args: Any, level: int = logging.ERROR) -> None:
    """Logs ``msg % args`` at ``level`` the first time ``key`` is seen in this process: for the
    context machinery and helpers that have no client to warn through (`warn_once` is the
    per-client one)."""
    if key not in _warned_in_process:
        _warned_in_process.add(key)
        log.log(level, msg, *args)
