"""A client's own lifecycle: muting, failing open (`_disable`), and what it does at interpreter
exit and around ``os.fork()`` (the hooks raceway/_lifecycle.py registers with the process).

A mixin of `raceway.client.RacewayClient`: the state it reads is the client's, declared here.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, List, Optional, Set

from . import _lifecycle
from ._core import CoreInstance
from ._recorder import EventRecorder
from ._stats import Stats
from .config import Config, Settings
from .context import set_identity

if TYPE_CHECKING:
    import requests

    from ._flusher import Flusher

log = logging.getLogger("raceway")

MUTED = (
    "track_state_change",
    "track_function_call",
    "track_http_request",
    "track_http_response",
    "track_lock_acquire",
    "track_lock_release",
    "track_error",
    "track_custom",
    "_record",
    "happens_before",
    "happens_after",
)
"""The client's methods that record: no-ops once it is muted."""


def _noop(*_args: Any, **_kwargs: Any) -> None:
    return None


class ClientLifecycle:
    """Mute, disable, exit and fork: the client's side of the process's lifecycle."""

    config: Config
    settings: Settings
    _recorder: EventRecorder
    _codec: Optional[CoreInstance]
    _flusher: Optional[Flusher]
    _stats: Stats
    _http_session: Optional[requests.Session]
    _closed: bool
    _disabled: bool
    _disable_lock: threading.Lock
    _fork_held: List[CoreInstance]
    _warned: Set[str]

    def _start(self) -> None:
        raise NotImplementedError  # the client's: instantiates the core and the flusher

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        raise NotImplementedError  # the client's

    def _mute(self) -> None:
        """Every tracking method (and `_record`, which `fork` and `join` use) becomes a no-op on
        this instance, and so does its recorder (`EventRecorder.mute`: the helpers' path).
        Contexts still work, so the application's code runs unchanged."""
        for name in MUTED:
            setattr(self, name, _noop)
        self._recorder.mute()

    def _disable(self, reason: Optional[str] = None) -> None:
        """Fail-open: logs ``reason`` once at ERROR, turns tracking into a no-op and lets the
        flusher deliver what it still can and stop. Propagation headers degrade to the extra
        headers the caller passes and incoming headers are no longer parsed (``_codec`` is
        None); the recorder is muted too, so the middleware, `fork` and `join` record nothing.
        Safe on any thread, the flusher's included (it never waits for the flusher)."""
        with self._disable_lock:
            if self._disabled:
                return
            self._disabled = True
        if reason is not None:
            log.error("raceway: %s; tracking is off, the application carries on", reason)
        self._mute()
        # The codec calls that may still be in flight report through these keys: already said.
        self._warned.update(("encode-outgoing", "parse-incoming"))
        self._codec = None
        flusher = self._flusher
        if flusher is not None:
            flusher.stop(0, reason=None)  # what it cannot deliver now is counted, not logged again
        else:
            self._recorder.queue.clear()

    def _on_core_failure(self, error: BaseException) -> None:
        """A core instance trapped (out of fuel or memory, a panic): it cannot be used again."""
        self._disable(f"the core failed ({error})")

    # ------------------------------------------------------------------------------------------
    # Exit and fork (registered by _lifecycle.register)
    # ------------------------------------------------------------------------------------------
    def _exit_flush(self) -> None:
        """At interpreter (or multiprocessing worker) exit: deliver what is left within the
        shutdown budget (`shutdown` without an argument), spool the rest."""
        try:
            flusher = self._flusher
            if flusher is not None and not self._closed:
                self._closed = True
                self._mute()
                # A second past the budget for the worker to finish writing the spool.
                flusher.stop(
                    self.settings.shutdown_timeout,
                    reason="the process exited",
                    stall=self.config.shutdown_stall,
                    grace=1.0,
                )
            self.shutdown(timeout=0)
        except Exception:  # pragma: no cover - never fail interpreter exit
            pass

    def _before_fork(self) -> None:
        """Waits (briefly) until no core call is running, so the child never copies a store in
        the middle of a call; the child builds its own instances anyway."""
        flusher = self._flusher
        for core in (self._codec, flusher.core if flusher is not None else None):
            if core is not None and core.hold(timeout=1.0):
                self._fork_held.append(core)

    def _after_fork_in_parent(self) -> None:
        held, self._fork_held = self._fork_held, []
        for core in held:
            core.release()

    def _after_fork_in_child(self) -> None:
        """The child's own client: new core instances, pool, flusher and counters, its own
        ``process_id`` and (unless the user chose one) ``instance_id``. Its log starts empty:
        the parent delivers what it recorded before the fork."""
        self._fork_held = []
        self._disable_lock = threading.Lock()
        if self._closed or self._disabled:
            return
        try:
            self.settings = Settings.resolve(self.config)  # the default instance id names the pid
            set_identity(self.settings.service_name, self.settings.instance_id)
            self._recorder.restart()  # its log emptied (the same deque), no drops, no codec
            self._stats = Stats()
            self._http_session = None
            self._flusher = None
            self._start()
            _lifecycle.renew_current_context()
            _lifecycle.flush_at_multiprocessing_exit(self, self._exit_flush)
        except Exception as e:
            self._disable(f"the client could not be restarted in the forked child ({type(e).__name__}: {e})")
