"""Queues and events whose hand-offs are happens-before edges for the race detector.

A value handed from one strand to another through a ``queue.Queue`` or a ``threading.Event`` is
safely published: the producer's writes really do happen before the consumer's reads. The
detector cannot see that ordering in a plain queue or event, so it reports a race that is not
there. These drop-in subclasses record the hand-off as a pair of annotations
(`RacewayClient.happens_before` / `RacewayClient.happens_after`, ThreadSanitizer's
``AnnotateHappensBefore`` / ``AnnotateHappensAfter``), with the object itself as the token:

============================  =================================  ==================================
class                         happens_before(obj), recorded ...  happens_after(obj), recorded ...
============================  =================================  ==================================
`TrackedQueue`                before an item is put (``put``,    after an item was taken (``get``,
(``queue.Queue``)             ``put_nowait``)                    ``get_nowait``)
`TrackedAsyncQueue`           the same, for ``await put``,       the same, for ``await get``,
(``asyncio.Queue``)           ``put_nowait``                     ``get_nowait``
`TrackedEvent`                before the flag is set (``set``)   after ``wait()`` returned True, or
(``threading.Event``)                                            ``is_set()`` returned True
`TrackedAsyncEvent`           the same                           the same (``await wait()``)
(``asyncio.Event``)
============================  =================================  ==================================

The queues also order ``task_done()`` before the ``join()`` that it lets return (a second token,
so a ``get`` does not learn what consumers did).

**The rule, and where it is conservative.** A put happens before the get that takes its item.
The detector keeps one clock per token, the join of every ``happens_before`` so far, so a get
learns *all* earlier puts, not only the one whose item it took; likewise a ``join()`` learns
every earlier ``task_done()``, and a ``wait()`` every earlier ``set()``. The extra ordering can
only hide a race, never invent one: a consumer of the first item that touches the second item's
data is ordered after the producer's writes to it whenever the second put came before the first
get, which only the schedule decided.

**Exactly the originals otherwise.** Same signatures (the client comes first), same return
values, same exceptions, same blocking. The queues record inside ``_put``/``_get``, which the
base classes call under their own bookkeeping once a put or get is certain to succeed: a put
that fails (``queue.Full``, a timeout) records nothing, and both the blocking and the
``*_nowait`` paths are covered. When no execution context is current nothing is recorded and
the cost is one overriding method call and one context-variable read; the SDK never raises from
here (not even with ``Config(strict_context=True)``, whose purpose is to catch tracking calls
made outside a context, not hand-offs).

    q = TrackedQueue(raceway)                  # producer                consumer
                                               item.total = 42           item = q.get()
                                               q.put(item)               print(item.total)
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import TYPE_CHECKING, Any, Hashable, Literal, Optional, TypeVar

from .context import current_var as _current

__all__ = ["TrackedQueue", "TrackedAsyncQueue", "TrackedEvent", "TrackedAsyncEvent"]

_context = _current.get
_T = TypeVar("_T")

if TYPE_CHECKING:
    from ._client_protocol import ClientLike

    # The edges are mixins put before a queue or event class in an MRO; their ``super()`` calls
    # reach that class's methods. The type checker sees each mixin as a subclass of what it is
    # put before (of what both kinds share, for the mixins common to threads and asyncio); at
    # run time their only base is ``object``, as for any mixin.

    class _QueueBase:
        """The hooks of `queue.Queue` and `asyncio.Queue` that `_QueueEdges` extends."""

        def _put(self, item: Any) -> None: ...
        def _get(self) -> Any: ...
        def task_done(self) -> None: ...

    class _EventBase:
        """The methods of `threading.Event` and `asyncio.Event` that `_EventEdges` extends."""

        def set(self) -> None: ...
        def is_set(self) -> bool: ...

    _ThreadQueue = queue.Queue[Any]
    _AsyncQueue = asyncio.Queue[Any]
    _ThreadEvent = threading.Event
    _AsyncEvent = asyncio.Event
else:
    _QueueBase = _EventBase = _ThreadQueue = _AsyncQueue = _ThreadEvent = _AsyncEvent = object


def _before(client: Optional[ClientLike], token: Hashable) -> None:
    """``client.happens_before(token)``; the caller checked that a context is current."""
    if client is None:
        return
    try:
        client.happens_before(token)
    except Exception:  # the application's hand-off must go through whatever the SDK does
        pass


def _after(client: Optional[ClientLike], token: Hashable) -> None:
    """``client.happens_after(token)``; the caller checked that a context is current."""
    if client is None:
        return
    try:
        client.happens_after(token)
    except Exception:
        pass


class _Token:
    """The token of a queue's ``task_done`` -> ``join`` edge (compared by identity)."""

    __slots__ = ("__weakref__",)


def _done_token(q: object) -> _Token:
    """The queue's ``task_done`` -> ``join`` token, made on first use."""
    token: Optional[_Token] = q.__dict__.get("_raceway_done")
    if token is None:
        token = q.__dict__.setdefault("_raceway_done", _Token())
    return token


# ----------------------------------------------------------------------------------------------
# The edges, once for every queue and event. A class that mixes them in says how an annotation
# is recorded (`_raceway_before`/`_raceway_after`): the tracked classes below through their own
# client, `raceway.primitives` through the client its switch was given.
# ----------------------------------------------------------------------------------------------
class _QueueEdges(_QueueBase):
    """A put happens before the get that takes its item, and ``task_done`` before the ``join``
    it releases. The hooks are those ``queue.Queue`` and ``asyncio.Queue`` call once an
    operation is certain to succeed (``_put``/``_get``, under the queue's own lock for
    ``queue.Queue``): the put's annotation is in the record log before any getter can see the
    item, the get's after the item has left the queue. They call the next class's hooks, so
    ordering variants compose: ``class TrackedPriorityQueue(TrackedQueue, queue.PriorityQueue)``."""

    def _raceway_before(self, token: Hashable) -> None:
        raise NotImplementedError

    def _raceway_after(self, token: Hashable) -> None:
        raise NotImplementedError

    def _put(self, item: Any) -> None:
        self._raceway_before(self)
        super()._put(item)

    def _get(self) -> Any:
        item = super()._get()
        self._raceway_after(self)
        return item

    def task_done(self) -> None:
        self._raceway_before(_done_token(self))
        super().task_done()


class ThreadQueueEdges(_QueueEdges, _ThreadQueue):
    def join(self) -> None:
        super().join()
        self._raceway_after(_done_token(self))


class AsyncQueueEdges(_QueueEdges, _AsyncQueue):
    async def join(self) -> None:
        await super().join()
        self._raceway_after(_done_token(self))


class _EventEdges(_EventBase):
    """``set()`` happens before a ``wait()`` that returns True and an ``is_set()`` that answers
    True (a wait that timed out, or an unset flag, orders nothing)."""

    def _raceway_before(self, token: Hashable) -> None:
        raise NotImplementedError

    def _raceway_after(self, token: Hashable) -> None:
        raise NotImplementedError

    def set(self) -> None:
        self._raceway_before(self)
        super().set()

    def is_set(self) -> bool:
        flag = super().is_set()
        if flag:
            self._raceway_after(self)
        return flag


class ThreadEventEdges(_EventEdges, _ThreadEvent):
    def wait(self, timeout: Optional[float] = None) -> bool:
        signaled = super().wait(timeout)
        if signaled:
            self._raceway_after(self)
        return signaled


class AsyncEventEdges(_EventEdges, _AsyncEvent):
    async def wait(self) -> Literal[True]:
        signaled = await super().wait()
        if signaled:
            self._raceway_after(self)
        return signaled


class _OwnClient:
    """Annotations through the client the object was made with, when a context is current
    (nothing is recorded, and nothing is asked of the client, outside any context)."""

    _raceway_client: Optional[ClientLike] = None

    def __init__(self, client: Optional[ClientLike], *args: Any, **kwargs: Any):
        self._raceway_client = client
        super().__init__(*args, **kwargs)  # the queue's or event's own arguments

    def _raceway_before(self, token: Hashable) -> None:
        if _context() is not None:
            _before(self._raceway_client, token)

    def _raceway_after(self, token: Hashable) -> None:
        if _context() is not None:
            _after(self._raceway_client, token)


class TrackedQueue(_OwnClient, ThreadQueueEdges, queue.Queue[_T]):
    """A ``queue.Queue`` whose put -> get hand-offs are happens-before edges.

    ``TrackedQueue(client, maxsize=0)``; everything else is ``queue.Queue``'s. A put records
    ``client.happens_before(queue)`` before the item is in the queue, a get records
    ``client.happens_after(queue)`` after it took the item; ``task_done()`` happens before the
    ``join()`` it releases. See the module's documentation for the rule and its limits.
    """


class TrackedAsyncQueue(_OwnClient, AsyncQueueEdges, asyncio.Queue[_T]):
    """An ``asyncio.Queue`` whose put -> get hand-offs are happens-before edges.

    ``TrackedAsyncQueue(client, maxsize=0)``; ``await put()``, ``put_nowait()``, ``await get()``,
    ``get_nowait()``, ``task_done()`` and ``await join()`` are ``asyncio.Queue``'s, with the
    annotations of `TrackedQueue`. Tasks are strands only on an instrumented loop
    (`raceway.instrument_loop`) or one whose tasks claimed their own contexts.
    """


class TrackedEvent(_OwnClient, ThreadEventEdges, threading.Event):
    """A ``threading.Event`` whose set -> wait hand-off is a happens-before edge.

    ``TrackedEvent(client)``. ``set()`` records ``client.happens_before(event)`` before the
    flag is set; ``wait()`` that returns True and ``is_set()`` that returns True record
    ``client.happens_after(event)`` (a wait that timed out, or an unset flag, records nothing).
    """


class TrackedAsyncEvent(_OwnClient, AsyncEventEdges, asyncio.Event):
    """An ``asyncio.Event`` whose set -> wait hand-off is a happens-before edge.

    ``TrackedAsyncEvent(client)``; ``set()``, ``is_set()`` and ``await wait()`` as in
    `TrackedEvent`.
    """
