"""The standard synchronisation primitives, recording their happens-before edges by
themselves: no `tracked_lock`, no `raceway.sync` class.

    raceway.instrument_primitives(client)          # those created from now on
    lock, cond = raceway.instrument_primitives(client, lock, cond)   # or these ones
    raceway.uninstrument_primitives()              # and undone

With no objects, `instrument_primitives` replaces ``threading.Lock``, ``RLock``,
``Condition``, ``Semaphore``, ``BoundedSemaphore``, ``Event``, ``Barrier``, ``queue.Queue``,
``LifoQueue``, ``PriorityQueue`` and ``asyncio.Lock``, ``Event``, ``Condition``,
``Semaphore``, ``BoundedSemaphore``, ``Queue``, ``LifoQueue``, ``PriorityQueue`` by
subclasses that record; the primitives created afterwards record. ``isinstance`` against the
names keeps working for primitives made before and after. Code that took a name before the
call (``from threading import Lock`` at import time) keeps the original.

What each records (the same edges as `tracked_lock` and `raceway.sync`, docs/races.md):

==========================  =====================================================================
primitive                   edge
==========================  =====================================================================
Lock, RLock, Condition,     ``LockAcquire``/``LockRelease`` of the lock's id (``Lock#3@app.py:12``):
asyncio Lock and Condition  a release happens before the next acquire; ``Condition.wait``
                            releases and re-acquires; the ids appear in the reports' "locks held"
Semaphore (both kinds)      a ``release`` happens before the ``acquire`` after it (annotations)
Event                       ``set`` happens before a ``wait``/``is_set`` that saw it set
Barrier                     everything before any party's ``wait`` happens before every party's
                            return from it
Queue (all kinds)           ``put`` happens before the ``get`` of the item (and of later items);
                            ``task_done`` before the ``join`` it releases
==========================  =====================================================================

**Never affected**: the SDK's own primitives, and those the standard library makes for itself
(a ``threading.Thread``'s events, ``logging``'s locks, ``concurrent.futures``' conditions):
constructing one of the names from the SDK or from the standard library gives the original.

Edges are recorded to the client automatic tracking records to (``client``, when given,
becomes it), inside an execution context (or any strand, with strands without setup on).
With no client, or after `uninstrument_primitives`, the instrumented primitives only add a
Python call to each operation.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import queue
import sys
import threading
import time
import weakref
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Dict, Hashable, List, Literal, Optional, Protocol, Tuple

from . import _auto
from ._annotations import HAPPENS_AFTER, HAPPENS_BEFORE, sync_data, sync_id
from ._location import by_offset as _by_offset
from ._location import is_sdk, user_frame
from ._recording import record_event, site_from, strand
from ._values import text as _text
from .context import LOCKS, ExecutionContext, current_task, strand_context
from .context import current_var as _current
from .context import holding as _holding
from .context import holding_get as _holding_get
from .context import unholding_get as _unholding_get
from .sync import AsyncEventEdges, AsyncQueueEdges, ThreadEventEdges, ThreadQueueEdges

if TYPE_CHECKING:
    import _thread

    from ._client_protocol import ClientLike

__all__ = ["instrument_primitives", "uninstrument_primitives", "instrumented"]

_on = False
"""Instrumentation is active (`instrument_primitives` was called and not undone)."""

_STDLIB = os.path.dirname(os.path.abspath(threading.__file__)) + os.sep
_raw_lock = threading.Lock
_raw_rlock = threading.RLock
_LOCK_TYPE = type(_raw_lock())
_RLOCK_TYPE = type(_raw_rlock())
_counter = itertools.count(1)
_getframe = sys._getframe
_ident = threading.get_ident
_task = current_task
_time_ns = time.time_ns
# Bound methods taken once (a call through an imported name would make one per call).
_current_get = _current.get
_by_offset_get = _by_offset.get


class _RawLock(Protocol):
    """A ``threading.Lock`` as `_TracedLock` uses it (``_at_fork_reinit`` is the C lock's,
    private, so typeshed does not list it)."""

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool: ...
    def release(self) -> None: ...
    def __enter__(self) -> bool: ...
    def __exit__(self, *exc: object) -> None: ...
    def locked(self) -> bool: ...
    def _at_fork_reinit(self) -> None: ...


class _RawRLock(Protocol):
    """A ``threading.RLock`` as `_TracedRLock` uses it: with the private methods
    ``threading.Condition`` calls on its lock (not in typeshed)."""

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool: ...
    def release(self) -> None: ...
    def __enter__(self) -> bool: ...
    def __exit__(self, *exc: object) -> None: ...
    def _is_owned(self) -> bool: ...
    def _release_save(self) -> object: ...
    def _acquire_restore(self, state: object) -> None: ...
    def _at_fork_reinit(self) -> None: ...


class _Acquire(Protocol):
    """A lock's ``acquire``."""

    def __call__(self, blocking: bool = True, timeout: float = -1) -> bool: ...


if TYPE_CHECKING:
    # The mixins are put before the class they instrument in an MRO (`_traced_class`,
    # `_patched_class`), where their ``super()`` calls reach that class's methods: the type
    # checker sees each as a subclass of it. At run time their only base is ``object``.

    class _AsCondition(threading.Condition):
        _lock: _RawLock | _RawRLock
        """The condition's lock (private: typeshed does not list it)."""
        acquire: _Acquire
        release: Callable[[], None]
        """The condition's own ``acquire``/``release`` are its lock's, set on the instance
        (`_condition_bind` replaces them)."""

    class _AsAsyncCondition(asyncio.Condition):
        _lock: asyncio.Lock
        """The condition's lock (private: typeshed does not list it)."""
        acquire: Callable[[], Coroutine[Any, Any, Literal[True]]]
        release: Callable[[], None]
        """Set on the instance by `_async_condition_bind` (the class's own methods otherwise)."""

    _AsSemaphore = threading.Semaphore
    _AsBarrier = threading.Barrier
    _AsAsyncLock = asyncio.Lock
    _AsAsyncSemaphore = asyncio.Semaphore
else:
    _AsCondition = _AsAsyncCondition = _AsSemaphore = _AsBarrier = _AsAsyncLock = _AsAsyncSemaphore = object


def _internal(filename: str) -> bool:
    """A constructor called from the SDK or from the standard library gets the original."""
    found = _internal_files.get(filename)
    if found is None:
        found = is_sdk(filename) or (
            (filename.startswith(_STDLIB) and "site-packages" not in filename and "dist-packages" not in filename)
            or filename.startswith("<frozen")
        )
        if len(_internal_files) >= MAX_CACHED_FILES:
            _internal_files.clear()
        _internal_files[filename] = found
    return found


MAX_CACHED_FILES = 4096
_internal_files: Dict[str, bool] = {}
"""`_internal`'s answers by file name (a ``threading.Thread`` makes three primitives)."""


def _new_id(kind: str) -> str:
    """``Kind#n@file:line``: the primitive's number and where the application made it."""
    frame = user_frame(_getframe(1))
    where = f"@{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}" if frame is not None else ""
    return _text(f"{kind}#{next(_counter)}{where}")


# ----------------------------------------------------------------------------------------------
# Recording
# ----------------------------------------------------------------------------------------------
def _strand() -> Optional[Tuple[ClientLike, ExecutionContext]]:
    """``(client, context)`` to record an edge on, or None."""
    if not _on:
        return None
    client = _auto.client
    if client is None:
        return None
    ctx = strand()
    return (client, ctx) if ctx is not None else None


def _edge(lock_id: str, acquire: bool, depth: int) -> None:
    """Records the calling strand's acquisition (``acquire``) or release of ``lock_id``,
    located at the first application frame from ``depth`` frames up (``1``: the caller).

    One call per lock operation, the record appended here. The context's state holds the lock
    from the acquire to the release (the ``LockAcquire`` event's state holds it, the
    ``LockRelease`` event's too), as `RacewayClient.track_lock_acquire` keeps it, with the
    states `raceway.context.holding` shares: a loop that takes a lock a thousand times records
    two states, not two thousand."""
    if not _on:
        return
    client = _auto.client
    if client is None:
        return
    ctx = _current_get()
    if ctx is None or ctx.owner != _ident() or (ctx.task is not None and ctx.task is not _task()):
        ctx = _auto.ensure()
        if ctx is None:
            return
    try:
        log = _auto.recorder  # the client's recorder: None for a client that is not a RacewayClient
        if log is None:
            if acquire:
                client.track_lock_acquire(lock_id, "Mutex")
            else:
                client.track_lock_release(lock_id, "Mutex")
            return
        if not log.active:
            return
        f = _getframe(depth + 1)
        where = _by_offset_get(f.f_lasti)
        if where is None or where[3] is not f.f_code:  # not the cached site: new, or an SDK frame
            where = site_from(f)
        state = ctx.state
        if acquire:
            ctx.state = state = _holding_get((id(state), lock_id)) or _holding(state, lock_id)
        seq = ctx.seq + 1
        prev = ctx.last
        ctx.seq = ctx.last = seq
        q = log.queue
        if len(q) >= log.wake_at:
            log.pressure(len(q))
        q.append(
            (
                ctx.row,
                state,
                seq,
                prev,
                _time_ns(),
                None,
                where[0],
                where[1],
                "LockAcquire" if acquire else "LockRelease",
                lock_id,
                "Mutex",
            )
        )
        if not acquire:  # `ExecutionContext.unhold`, its common case inline (a call less per release)
            before = _unholding_get((id(state), lock_id))
            if before is not None:
                ctx.state = before
            else:
                ctx.unhold(lock_id)
    except Exception:  # never raise into the application
        pass


def _acquired(lock_id: str) -> None:
    """`_edge` of an acquisition, for a caller called by the application."""
    _edge(lock_id, True, 2)


def _released(lock_id: str) -> None:
    """`_edge` of a release, for a caller called by the application."""
    _edge(lock_id, False, 2)


def _held(lock_id: str) -> int:
    """How many times the calling strand holds ``lock_id`` (re-entrant locks nest)."""
    ctx = strand_context()
    return ctx.state[LOCKS].count(lock_id) if ctx is not None else 0


def _sync(token: Hashable) -> str:
    """The annotation's name for ``token`` (by identity), computed once per object."""
    try:
        found: Optional[str] = token.__dict__.get("_raceway_sync")
        if found is None:
            found = token.__dict__.setdefault("_raceway_sync", sync_id(token))
        return found
    except AttributeError:  # no __dict__ (a _Token)
        return sync_id(token)


def _annotate(token: Hashable, name: str, method: str) -> None:
    found = _strand()
    if found is None:
        return
    client, ctx = found
    try:
        if not record_event(client, ctx, "Custom", (name, sync_data(_sync(token)))):
            getattr(client, method)(token)
    except Exception:
        pass


def _before(token: Hashable) -> None:
    _annotate(token, HAPPENS_BEFORE, "happens_before")


def _after(token: Hashable) -> None:
    _annotate(token, HAPPENS_AFTER, "happens_after")


def _lock_id(obj: object, kind: str) -> str:
    found: Optional[str] = obj.__dict__.get("_raceway_id")
    if found is None:
        found = obj.__dict__.setdefault("_raceway_id", _new_id(kind))
    return found


# ----------------------------------------------------------------------------------------------
# Locks (C objects: wrapped)
# ----------------------------------------------------------------------------------------------
class _TracedLock:
    """A ``threading.Lock`` that records its acquisitions and releases."""

    __slots__ = ("_raw", "_raceway_id", "__weakref__")

    def __init__(self, raw: Optional[_thread.LockType] = None, lock_id: Optional[str] = None):
        # A C lock is a `_RawLock` (its `_at_fork_reinit` is private: typeshed does not list it).
        self._raw: _RawLock = raw if raw is not None else _raw_lock()  # type: ignore[assignment]
        self._raceway_id = lock_id or _new_id("Lock")

    # Each method records with one call (`_edge`), located at its caller.
    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        ok = self._raw.acquire(blocking, timeout)
        if ok and _on:
            _edge(self._raceway_id, True, 1)
        return ok

    def release(self) -> None:
        if _on and self._raw.locked():
            _edge(self._raceway_id, False, 1)  # before: the next acquire must come after it
        self._raw.release()

    def __enter__(self) -> bool:
        ok = self._raw.acquire()
        if _on:
            _edge(self._raceway_id, True, 1)
        return ok

    def __exit__(self, *exc: object) -> None:
        if _on and self._raw.locked():
            _edge(self._raceway_id, False, 1)
        self._raw.release()

    def locked(self) -> bool:
        return self._raw.locked()

    def _at_fork_reinit(self) -> None:
        self._raw._at_fork_reinit()

    def __repr__(self) -> str:
        return repr(self._raw)


class _TracedRLock:
    """A ``threading.RLock`` that records its acquisitions and releases (nested ones too)."""

    __slots__ = ("_raw", "_raceway_id", "_depth", "__weakref__")

    def __init__(self, raw: Optional[_thread.RLock] = None, lock_id: Optional[str] = None):
        # A C re-entrant lock is a `_RawRLock` (the methods Condition calls are private: typeshed
        # does not list them).
        self._raw: _RawRLock = raw if raw is not None else _raw_rlock()  # type: ignore[assignment]
        self._raceway_id = lock_id or _new_id("RLock")
        self._depth = 0  # changed only by the owner

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        ok = self._raw.acquire(blocking, timeout)
        if ok:
            self._depth += 1
            _edge(self._raceway_id, True, 1)
        return ok

    def release(self) -> None:
        if self._raw._is_owned():
            _edge(self._raceway_id, False, 1)
            self._depth -= 1
        self._raw.release()

    def __enter__(self) -> bool:
        ok = self._raw.acquire()
        self._depth += 1
        _edge(self._raceway_id, True, 1)
        return ok

    def __exit__(self, *exc: object) -> None:
        if self._raw._is_owned():
            _edge(self._raceway_id, False, 1)
            self._depth -= 1
        self._raw.release()

    # What threading.Condition uses when it is given this lock.
    def _is_owned(self) -> bool:
        return self._raw._is_owned()

    def _release_save(self) -> Tuple[object, int]:
        depth, self._depth = self._depth, 0
        for _ in range(depth):
            _released(self._raceway_id)
        return self._raw._release_save(), depth

    def _acquire_restore(self, state: Tuple[object, int]) -> None:
        raw_state, depth = state
        self._raw._acquire_restore(raw_state)
        self._depth = depth
        for _ in range(depth):
            _acquired(self._raceway_id)

    def _at_fork_reinit(self) -> None:
        self._raw._at_fork_reinit()
        self._depth = 0

    def __repr__(self) -> str:
        return repr(self._raw)


if TYPE_CHECKING:
    _LockArgument = _thread.LockType | _thread.RLock | _TracedLock | _TracedRLock | None
    """The lock a ``threading.Condition`` is given (a traced one is unwrapped)."""


class _Patched(type):
    """The metaclass of the names put in place of the originals: constructing one from the SDK
    or the standard library gives the original; ``isinstance`` and ``issubclass`` against the
    name accept the original's instances and subclasses as well."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:  # the constructor's arguments and object
        original = cls.__dict__.get("_raceway_original")
        if original is not None and _internal(_getframe(1).f_code.co_filename):
            return original(*args, **kwargs)
        return super().__call__(*args, **kwargs)

    def __instancecheck__(cls, obj: object) -> bool:
        original = cls.__dict__.get("_raceway_original")
        if original is not None:
            accepted = cls.__dict__["_raceway_accepts"]
            return isinstance(obj, accepted)
        return type.__instancecheck__(cls, obj)

    def __subclasscheck__(cls, sub: type) -> bool:
        original = cls.__dict__.get("_raceway_original")
        if original is not None:
            accepted = cls.__dict__["_raceway_accepts"]
            return issubclass(sub, accepted)
        return type.__subclasscheck__(cls, sub)


class Lock(metaclass=_Patched):
    """Stands for ``threading.Lock`` while instrumented: makes `_TracedLock` objects."""

    _raceway_original = staticmethod(_raw_lock)
    _raceway_accepts = (_LOCK_TYPE, _TracedLock)

    # The stand-in makes objects of another class (a C lock's class cannot be subclassed).
    def __new__(cls, *args: Any, **kwargs: Any) -> _TracedLock:  # type: ignore[misc]
        return _TracedLock(_raw_lock(*args, **kwargs), _new_id("Lock"))


class RLock(metaclass=_Patched):
    """Stands for ``threading.RLock`` while instrumented: makes `_TracedRLock` objects."""

    _raceway_original = staticmethod(_raw_rlock)
    _raceway_accepts = (_RLOCK_TYPE, _TracedRLock)

    # The stand-in makes objects of another class (a C lock's class cannot be subclassed).
    def __new__(cls, *args: Any, **kwargs: Any) -> _TracedRLock:  # type: ignore[misc]
        return _TracedRLock(_raw_rlock(*args, **kwargs), _new_id("RLock"))


# ----------------------------------------------------------------------------------------------
# Mixins for the classes written in Python (their instances can also be instrumented in place)
# ----------------------------------------------------------------------------------------------
class _ConditionMixin(_AsCondition):
    """``threading.Condition``: its lock's acquisitions and releases, ``wait`` included."""

    def __init__(self, lock: _LockArgument = None) -> None:
        lock_id = None
        raw: _LockArgument | _RawLock | _RawRLock = lock
        if isinstance(lock, (_TracedLock, _TracedRLock)):
            lock_id, raw = lock._raceway_id, lock._raw
        # Any object with the lock methods will do (typeshed lists only the stdlib's locks).
        super().__init__(raw if raw is not None else _raw_rlock())  # type: ignore[arg-type]
        self.__dict__["_raceway_id"] = lock_id or _new_id("Condition")
        _condition_bind(self)

    def __enter__(self) -> bool:
        result = self._lock.__enter__()
        _acquired(_lock_id(self, "Condition"))
        return result

    def __exit__(self, *exc: Any) -> None:
        _released(_lock_id(self, "Condition"))
        return self._lock.__exit__(*exc)

    def wait(self, timeout: Optional[float] = None) -> bool:
        lock_id = _lock_id(self, "Condition")
        depth = max(_held(lock_id), 1) if _on and _auto.client is not None else 0
        for _ in range(depth):
            _released(lock_id)
        try:
            return super().wait(timeout)
        finally:
            for _ in range(depth):
                _acquired(lock_id)


def _condition_bind(cond: _AsCondition) -> None:
    lock = cond._lock
    lock_id = _lock_id(cond, "Condition")

    def acquire(blocking: bool = True, timeout: float = -1) -> bool:
        ok = lock.acquire(blocking, timeout)
        if ok:
            _acquired(lock_id)
        return ok

    def release() -> None:
        _released(lock_id)
        lock.release()

    cond.acquire = acquire
    cond.release = release


def _condition_unbind(cond: _AsCondition) -> None:
    cond.acquire = cond._lock.acquire
    cond.release = cond._lock.release


class _SemaphoreMixin(_AsSemaphore):
    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        ok = super().acquire(blocking, timeout)
        if ok:
            _after(self)
        return ok

    __enter__ = acquire

    def release(self, n: int = 1) -> None:
        _before(self)
        super().release(n)


class _BarrierMixin(_AsBarrier):
    def wait(self, timeout: Optional[float] = None) -> int:
        _before(self)
        index = super().wait(timeout)
        _after(self)
        return index


class _AsyncLockMixin(_AsAsyncLock):
    def __init__(self, *args: Any, **kwargs: Any) -> None:  # asyncio.Lock's own arguments
        super().__init__(*args, **kwargs)
        self.__dict__["_raceway_id"] = _new_id("asyncio.Lock")

    async def acquire(self) -> Literal[True]:
        result = await super().acquire()
        _acquired(_lock_id(self, "asyncio.Lock"))
        return result

    def release(self) -> None:
        _released(_lock_id(self, "asyncio.Lock"))
        super().release()


class _AsyncConditionMixin(_AsAsyncCondition):
    def __init__(self, lock: Optional[asyncio.Lock] = None) -> None:
        super().__init__(lock)
        if not isinstance(lock, _AsyncLockMixin):
            _async_condition_bind(self)


def _async_condition_bind(cond: _AsAsyncCondition) -> None:
    lock = cond._lock
    if isinstance(lock, _AsyncLockMixin):
        return
    lock_id = _lock_id(cond, "asyncio.Condition")

    async def acquire() -> Literal[True]:
        result = await lock.acquire()
        _acquired(lock_id)
        return result

    def release() -> None:
        _released(lock_id)
        lock.release()

    cond.acquire = acquire
    cond.release = release


class _AsyncSemaphoreMixin(_AsAsyncSemaphore):
    async def acquire(self) -> Literal[True]:
        result = await super().acquire()
        _after(self)
        return result

    def release(self) -> None:
        _before(self)
        super().release()


class _AutoEdges:
    """Annotations through the client `instrument_primitives` was given."""

    def _raceway_before(self, token: Hashable) -> None:
        _before(token)

    def _raceway_after(self, token: Hashable) -> None:
        _after(token)


class _EventMixin(_AutoEdges, ThreadEventEdges):
    pass


class _AsyncEventMixin(_AutoEdges, AsyncEventEdges):
    pass


class _QueueMixin(_AutoEdges, ThreadQueueEdges):
    pass


class _AsyncQueueMixin(_AutoEdges, AsyncQueueEdges):
    pass


# (module, name, mixin): the names replaced, in this order.
_TABLE: List[Tuple[ModuleType, str, Optional[type]]] = [
    (threading, "Lock", None),
    (threading, "RLock", None),
    (threading, "Condition", _ConditionMixin),
    (threading, "Semaphore", _SemaphoreMixin),
    (threading, "BoundedSemaphore", _SemaphoreMixin),
    (threading, "Event", _EventMixin),
    (threading, "Barrier", _BarrierMixin),
    (queue, "Queue", _QueueMixin),
    (queue, "LifoQueue", _QueueMixin),
    (queue, "PriorityQueue", _QueueMixin),
    (asyncio, "Lock", _AsyncLockMixin),
    (asyncio, "Condition", _AsyncConditionMixin),
    (asyncio, "Semaphore", _AsyncSemaphoreMixin),
    (asyncio, "BoundedSemaphore", _AsyncSemaphoreMixin),
    (asyncio, "Event", _AsyncEventMixin),
    (asyncio, "Queue", _AsyncQueueMixin),
    (asyncio, "LifoQueue", _AsyncQueueMixin),
    (asyncio, "PriorityQueue", _AsyncQueueMixin),
]
# A class, or (threading.Lock and RLock) a factory function.
_ORIGINALS: Dict[Tuple[str, str], Any] = {(m.__name__, n): getattr(m, n) for m, n, _ in _TABLE}
_MIXIN_OF: Dict[type, type] = {_ORIGINALS[(m.__name__, n)]: mixin for m, n, mixin in _TABLE if mixin is not None}

_patched: Dict[Tuple[str, str], type] = {}
"""The names replaced by the class-level instrumentation (empty when it is off)."""
_traced_classes: Dict[type, type] = {}
"""Original class (or a subclass of one) -> its instrumented subclass."""
_in_place: weakref.WeakSet[object] = weakref.WeakSet()
"""Objects passed in and instrumented in place (their class swapped), to be restored."""
_lock = threading.Lock()


def _traced_class(cls: type) -> type:
    found = _traced_classes.get(cls)
    if found is not None:
        return found
    mixin = next(m for base, m in _MIXIN_OF.items() if issubclass(cls, base))
    found = type(cls.__name__, (mixin, cls), {"__module__": cls.__module__, "__qualname__": cls.__qualname__})
    _traced_classes[cls] = found
    return found


def _patched_class(module: ModuleType, name: str, mixin: type) -> type:
    original = _ORIGINALS[(module.__name__, name)]
    namespace = {
        "__module__": module.__name__,
        "__qualname__": name,
        "_raceway_original": original,
        "_raceway_accepts": (original,),
    }
    cls = _Patched(name, (mixin, original), namespace)
    _traced_classes[original] = cls
    return cls


# ----------------------------------------------------------------------------------------------
# The two calls
# ----------------------------------------------------------------------------------------------
def instrument_primitives(client: Optional[ClientLike] = None, *objects: Any) -> Tuple[Any, ...]:
    """Makes the standard primitives record their happens-before edges.

    With no ``objects``: every primitive created from now on (see the module's documentation
    for the list and the exceptions). With ``objects``: those, and only those; each comes back
    instrumented, in the same order (instances of the Python classes are instrumented in place
    and come back as they are; ``threading.Lock`` and ``RLock`` objects, which are C objects,
    come back wrapped: use what is returned). ``client``, when given, becomes the client
    automatic tracking records to. Calling it again is harmless."""
    global _on
    if client is not None:
        _auto.set_client(client)
    with _lock:
        _on = True
        if not objects:
            _patch()
            return ()
        return tuple(_instrument(obj) for obj in objects)


def _patch() -> None:
    if _patched:
        return
    # The SDK's own subclasses of these classes must be made from the originals.
    from . import concurrency, sync  # noqa: F401

    for module, name, mixin in _TABLE:
        cls: type
        if mixin is None:
            cls = Lock if name == "Lock" else RLock
        else:
            cls = _patched_class(module, name, mixin)
        _patched[(module.__name__, name)] = cls
        setattr(module, name, cls)


def _instrument(obj: object) -> object:
    if isinstance(obj, (_TracedLock, _TracedRLock)) or getattr(type(obj), "_raceway_original", None) is not None:
        return obj
    if type(obj) is _LOCK_TYPE:
        return _TracedLock(obj, _new_id("Lock"))
    if type(obj) is _RLOCK_TYPE:
        return _TracedRLock(obj, _new_id("RLock"))
    cls = type(obj)
    if cls in _traced_classes.values():
        return obj
    if not any(issubclass(cls, base) for base in _MIXIN_OF):
        raise TypeError(f"instrument_primitives: {cls.__name__} is not a primitive it knows")
    traced = _traced_class(cls)
    obj.__class__ = traced
    obj.__dict__.setdefault("_raceway_id", _new_id(cls.__name__))
    if isinstance(obj, _ConditionMixin):
        _condition_bind(obj)
    elif isinstance(obj, _AsyncConditionMixin):
        _async_condition_bind(obj)
    _in_place.add(obj)
    return obj


def uninstrument_primitives() -> None:
    """Undoes `instrument_primitives`: the original names are back, objects instrumented in
    place have their class back, and nothing instrumented records any more."""
    global _on
    with _lock:
        _on = False
        for (module_name, name), _cls in list(_patched.items()):
            setattr(sys.modules[module_name], name, _ORIGINALS[(module_name, name)])
        _patched.clear()
        for obj in list(_in_place):
            original = type(obj).__bases__[-1]  # made as (mixin, original): `_traced_class`
            if isinstance(obj, _ConditionMixin):
                _condition_unbind(obj)
            elif isinstance(obj, _AsyncConditionMixin) and "acquire" in obj.__dict__:
                del obj.acquire, obj.release
            obj.__class__ = original
        _in_place.clear()


def instrumented() -> bool:
    """Whether the primitives created now are instrumented."""
    return bool(_patched)
