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
import os
import sys
import weakref
from typing import Any, Callable

from . import context

_renewed_in = [0]  # the pid whose current context was already renewed after fork


def register(client: Any) -> None:
    """Flush ``client`` at exit, and keep it working across ``os.fork()``."""
    ref = weakref.ref(client)
    atexit.register(_at_exit, ref)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(
            before=_hook(ref, "_before_fork"),
            after_in_parent=_hook(ref, "_after_fork_in_parent"),
            after_in_child=_hook(ref, "_after_fork_in_child"),
        )


def _hook(ref: "weakref.ref[Any]", method: str) -> Callable[[], None]:
    def call() -> None:
        client = ref()
        if client is not None:
            try:
                getattr(client, method)()
            except Exception:  # pragma: no cover - the methods contain their own failures
                pass

    return call


def _at_exit(ref: "weakref.ref[Any]") -> None:
    client = ref()
    if client is not None:
        client._exit_flush()


def flush_at_multiprocessing_exit(client: Any) -> None:
    """In a forked child: if this is a multiprocessing worker, flush when it finishes."""
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        util.register_after_fork(client, _finalize_in_worker)


def _finalize_in_worker(client: Any) -> None:
    util = sys.modules["multiprocessing.util"]
    # A high priority runs before multiprocessing's own finalizers (queues, managers).
    util.Finalize(None, _at_exit, args=(weakref.ref(client),), exitpriority=100)


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
