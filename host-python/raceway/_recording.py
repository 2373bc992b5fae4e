"""How an access to a tracked object becomes a ``StateChange`` event: the one path every
`raceway.shared` object and every `raceway.attributes` descriptor records through.

A `TrackedVariables` belongs to one tracked object. It names its variables (``name[key]`` for items,
``name.attr`` for attributes, ``name`` alone for the object's structure: its set of keys, its
length), and it remembers, per strand and variable, the value that strand last read: the
``old_value`` of the strand's next write. That is what lets the detector judge a lost update
(docs/races.md): a write is stale when the value it was computed from is not the value another
strand's write left. A write with no read before it on its strand is recorded with
``old_value`` None (not judged), like the detector's own notion of a write's basis, which a
write consumes.

Values are recorded as they are for scalars and strings. A tracked object stored in another is
recorded as ``<shared NAME>`` (it has its own variables). Anything else goes through the
client's value conversion, during which the calling thread records nothing more: converting a
value may run its ``__repr__`` or iterate it, and those reads are the SDK's, not the
application's.

Nothing here raises into the application: a failure to record is swallowed.
"""

from __future__ import annotations

import sys
import threading
import time
from types import FrameType
from typing import Any, Dict, Optional, Set, Tuple

from . import _auto
from ._client_protocol import ClientLike, StateTracker
from ._location import UNKNOWN as _UNKNOWN
from ._location import Site
from ._location import by_offset as _by_offset
from ._location import locate as _locate
from ._location import stack as _stack
from ._location import user_frame as _user_frame
from ._recorder import EventRecorder, Fields, recorder_of
from ._values import cut
from ._values import snapshot as _snapshot
from .context import ExecutionContext, current_task
from .context import current_var as _current

ABSENT = "<absent>"
"""The value of a key, item or attribute that is not there (read by ``in``, ``get``, ``hasattr``;
left by ``del``, ``pop``): a check for absence followed by an insert is then judged like any
other read and write."""

MAX_NAMES = 4096
"""Variable names cached per tracked object (past it the cache starts over)."""
MAX_BASES = 4096
"""Remembered reads per tracked object (past it they are forgotten: a lost update whose read
was forgotten is missed, never invented)."""
WHOLE_ITEMS = 100
"""An operation that reads a whole container (``==``, ``repr``, ``copy``, pickling) records a
read of its structure and of its first `WHOLE_ITEMS` items."""

_ident = threading.get_ident
_task = current_task
_time_ns = time.time_ns
# Bound methods taken once (a call through an imported name would make one per call).
_current_get = _current.get
_by_offset_get = _by_offset.get
_SCALARS = frozenset({int, float, bool, type(None), str})
_PLAIN = frozenset({int, float, bool, type(None)})
_getframe = sys._getframe
busy: Set[int] = set()
"""Threads converting a value: they record nothing meanwhile."""


def _key_text(key: Any) -> str:
    try:
        return cut(repr(key), 200)
    except Exception:
        return f"<{type(key).__name__}>"


class TrackedVariables:
    """The variables of one tracked object and the reads their next writes are based on."""

    __slots__ = ("name", "client", "log", "attrs", "names", "bases", "__weakref__")

    def __init__(self, name: str, client: Optional[StateTracker] = None, attrs: bool = False):
        self.name = cut(name, 1000)
        self.client = client
        self.log: Optional[EventRecorder] = recorder_of(client)  # the client's, asked once
        self.attrs = attrs
        self.names: Dict[Any, str] = {}
        self.bases: Dict[Tuple[Any, str], Any] = {}

    def var(self, key: Any) -> str:
        """``name[key]`` (``name.key`` for attributes)."""
        try:
            found = self.names.get(key)
        except TypeError:  # an unhashable key: the operation itself will fail
            return f"{self.name}[{_key_text(key)}]"
        if found is None:
            if len(self.names) >= MAX_NAMES:
                self.names.clear()
            found = f"{self.name}.{key}" if self.attrs else f"{self.name}[{_key_text(key)}]"
            self.names[key] = found
        return found

    # -- the accesses ----------------------------------------------------------------------
    def read(self, key: Any, value: Any) -> None:
        """A read of item (or attribute) ``key`` that saw ``value``."""
        emit(self, self.var(key), None, value, "Read")

    def write(self, key: Any, new: Any) -> None:
        """A write of item ``key``, based on the calling strand's last read of it."""
        emit(self, self.var(key), None, new, "Write")

    def read_structure(self, size: Any, atomic: bool) -> None:
        """A read of the set of keys (or the length): ``len`` and ``bool`` are atomic, iteration
        (a step at a time, other threads running in between) is not."""
        emit(self, self.name, None, size, "AtomicRead" if atomic else "Read")

    def write_structure(self, size: Any) -> None:
        """An insertion or removal: atomic in Python (two threads inserting different keys, or
        appending to one list, do not race)."""
        emit(self, self.name, None, size, "AtomicWrite")


def emit(rec: TrackedVariables, var: str, old: Any, new: Any, access: str) -> None:
    """Records one access of ``rec``'s object on the calling strand (nothing outside any
    strand, or with no client). The location is the first frame outside the SDK.

    The one path every tracked access takes, so it is written flat: for a scalar value and a
    `RacewayClient`, the record is appended here, in the lines ``track_state_change`` uses
    (no further call but the clock's), located at ``emit``'s caller's caller (the application's
    frame when the SDK's method that calls ``emit`` was called by the application: a cached
    site then; else the first frame outside the SDK, walked to)."""
    client = rec.client
    log = rec.log
    if client is None:
        client = _auto.client
        if client is None:
            return
        log = _auto.recorder
    if busy and _ident() in busy:
        return
    ctx = _current_get()
    if ctx is None or ctx.owner != _ident() or (ctx.task is not None and ctx.task is not _task()):
        ctx = _auto.ensure()
        if ctx is None:
            return
    bases = rec.bases
    if access == "Read":
        if len(bases) >= MAX_BASES:
            bases.clear()
        bases[(ctx, var)] = new
    elif access == "Write":
        old = bases.pop((ctx, var), None)  # None: a blind write, not judged
    try:
        if log is None or new.__class__ not in _PLAIN or old.__class__ not in _PLAIN:
            _emit_slowly(log, client, ctx, var, old, new, access)
            return
        if not log.active:
            return
        # emit <- the SDK's method <- (the application, or more of the SDK's frames)
        f = _getframe(2)
        where = _by_offset_get(f.f_lasti)
        depth = log.stack_depth
        if where is None or where[3] is not f.f_code:  # not the cached site: new, or more SDK frames
            app, where = _located(f)
            stack = where[5] if depth == 1 else _stack(app, depth) if depth and app is not None else ()
        elif depth == 1:  # the default: the access's own frame, already found
            stack = where[5]
        else:
            stack = (where[4],) + _stack(f.f_back, depth - 1) if depth else ()
        seq = ctx.seq + 1
        prev = ctx.last
        ctx.seq = ctx.last = seq
        q = log.queue
        if len(q) >= log.wake_at:
            log.pressure(len(q))
        q.append(
            (
                ctx.row,
                ctx.state,
                seq,
                prev,
                _time_ns(),
                None,
                where[0],
                where[1],
                "StateChange",
                var,
                old,
                new,
                access,
                stack,
            )
        )
    except Exception:  # never raise into the application
        pass


def _emit_slowly(
    log: Optional[EventRecorder], client: StateTracker, ctx: ExecutionContext, var: str, old: Any, new: Any, access: str
) -> None:
    """`emit`'s other cases: a value that is not a plain scalar (a string, a tracked object,
    anything converted), or a client without a recorder (a test double: it gets the call)."""
    if new.__class__ in _SCALARS and old.__class__ in _SCALARS:
        _record(log, client, ctx, var, old, new, access)
        return
    ident = _ident()
    busy.add(ident)  # converting a value may run its code: that is not the application's
    try:
        _record(log, client, ctx, var, _plain(old), _plain(new), access)
    finally:
        busy.discard(ident)


def _record(
    log: Optional[EventRecorder], client: StateTracker, ctx: ExecutionContext, var: str, old: Any, new: Any, access: str
) -> None:
    """``client.track_state_change(var, old, new, access)`` made by the application's frame.

    With the client's recorder (``log``: a `RacewayClient`'s) the record is appended here, as
    ``track_state_change`` appends it, with the location and stack taken from the first frame
    outside the SDK. Without one (a test double) the client gets the call."""
    if log is None:
        client.track_state_change(var, old, new, access)
        return
    # _record <- _emit_slowly <- emit <- the SDK's method <- (more of the SDK's frames) <- the application
    f = _getframe(4)
    app: Optional[FrameType] = f
    where = _by_offset_get(f.f_lasti)
    if where is None or where[3] is not f.f_code:  # not the cached site: new, or more SDK frames
        app, where = _located(f)
    depth = log.stack_depth
    stack = where[5] if depth == 1 else _stack(app, depth) if depth and app is not None else ()
    if old.__class__ not in _PLAIN:
        old = _snapshot(old)
    if new.__class__ not in _PLAIN:
        new = _snapshot(new)
    log.append(ctx, where, "StateChange", (var, old, new, access, stack))


def site_from(f: FrameType) -> Site:
    """The site of the first application frame from ``f`` outwards (`_location`'s caches)."""
    return _located(f)[1]


def _located(f: FrameType) -> Tuple[Optional[FrameType], Site]:
    """The first application frame from ``f`` outwards and its site (`_location`'s caches)."""
    app = _user_frame(f)
    if app is None:
        return None, _UNKNOWN
    where = _by_offset_get(app.f_lasti)
    if where is None or where[3] is not app.f_code:
        where = _locate(app)
    return app, where


def strand() -> Optional[ExecutionContext]:
    """The calling strand's context to record on (with strands without setup, made when it has
    none), or None."""
    ctx = _current_get()
    if ctx is None or ctx.owner != _ident() or (ctx.task is not None and ctx.task is not _task()):
        ctx = _auto.ensure()
    return ctx


def record_event(client: ClientLike, ctx: ExecutionContext, kind: str, fields: Fields) -> bool:
    """Appends an event of ``kind`` (``LockAcquire``, ``LockRelease``, ``Custom``) as the
    client's own tracking methods do, located at the application's frame. False when
    ``client`` has no recorder (not a `RacewayClient`: the caller then calls its method);
    True otherwise, also when the recorder is muted (nothing is recorded then)."""
    log = _auto.recorder if client is _auto.client else recorder_of(client)
    if log is None:
        return False
    f = _getframe(2)
    where = _by_offset_get(f.f_lasti)
    if where is None or where[3] is not f.f_code:  # not the cached site: new, or more SDK frames
        where = _located(f)[1]
    log.append(ctx, where, kind, fields)
    return True


def _plain(value: Any) -> Any:
    if getattr(type(value), "_raceway_shared", False):
        try:
            rec = object.__getattribute__(value, "_raceway_rec")
        except AttributeError:
            return value
        return f"<shared {rec.name}>"
    return value
