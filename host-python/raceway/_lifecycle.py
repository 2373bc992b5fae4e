"""Process lifecycle: flushing at exit and surviving ``os.fork()``, without the user doing anything.

Exit. `atexit` runs at a normal interpreter exit (a script ending, ``sys.exit``, a ``spawn``ed
multiprocessing child). A *forked* multiprocessing child does not get there: it ends with
``os._exit`` after running multiprocessing's own finalizers. So a forked child also gets a
``multiprocessing.util.Finalize`` (registered through ``register_after_fork``, because
multiprocessing clears its finalizer registry when the child starts).

Fork. Only the forking thread survives in the child: the flusher thread is gone, locks may be
held by threads that no longer exist, the HTTP pool shares sockets with the parent, and
``process_id`` (and the default ``instance_id``) name the parent. Before the fork the client
waits until no core call is running (so no store is copied mid-call); in the child it builds
a new pipeline, codec, connection pool and flusher (`RacewayClient._after_fork_in_child`).
The hooks hold only weak references: a client that is gone is skipped.
"""

from __future__ import annotations

import atexit
import functools
import os
import sys
import weakref
from typing import Callable

from . import context

Hook = Callable[[], None]
"""A client's bound method with no arguments, held here weakly (`weakref.WeakMethod`)."""

_renewed_in = [0]  # the pid whose current context was already renewed after fork


def register(exit_flush: Hook, before_fork: Hook, after_fork_in_parent: Hook, after_fork_in_child: Hook) -> None:
    """Calls ``exit_flush`` at exit, and the three others around every ``os.fork()`` (as
    ``os.register_at_fork`` names them). Each must be a bound method: it is held weakly, and
    skipped once its object is gone. A hook that raises is ignored (each contains its own
    failures)."""
    atexit.register(_call, weakref.WeakMethod(exit_flush))
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(
            before=functools.partial(_call, weakref.WeakMethod(before_fork)),
            after_in_parent=functools.partial(_call, weakref.WeakMethod(after_fork_in_parent)),
            after_in_child=functools.partial(_call, weakref.WeakMethod(after_fork_in_child)),
        )


def _call(ref: "weakref.WeakMethod[Hook]") -> None:
    method = ref()
    if method is not None:
        try:
            method()
        except Exception:  # pragma: no cover - the methods contain their own failures
            pass


def flush_at_multiprocessing_exit(owner: object, exit_flush: Hook) -> None:
    """In a forked child: if this is a multiprocessing worker, call ``exit_flush`` (a bound
    method of ``owner``, held weakly) when it finishes."""
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        util.register_after_fork(owner, functools.partial(_finalize_in_worker, weakref.WeakMethod(exit_flush)))


def _finalize_in_worker(ref: "weakref.WeakMethod[Hook]", _owner: object) -> None:
    util = sys.modules["multiprocessing.util"]
    # A high priority runs before multiprocessing's own finalizers (queues, managers).
    util.Finalize(None, _call, args=(ref,), exitpriority=100)


def renew_current_context() -> None:
    """In a forked child, once: the forking thread's current context goes on in both processes,
    which would give the child's next events the parent's ids and clock component. The child
    continues in a child context instead (as if spawned at the fork), and context suffixes are
    drawn afresh so the child's new contexts do not repeat the parent's."""
    pid = os.getpid()
    if _renewed_in[0] == pid:
        return
    _renewed_in[0] = pid
    context.renew_after_fork()
