"""What the SDK's helpers need from a client: `ClientLike`, a ``typing.Protocol``.

The helpers (`raceway.concurrency`, the middleware, outgoing HTTP, the decorators, lock
helpers, background jobs, tracked objects, instrumented primitives) take a client and use only
these public members of it. `RacewayClient` satisfies it; so does a test double that
implements the same methods. Anything more a helper needs (appending records directly, the
record log's settings, logging once, reading incoming headers with the client's core) it gets
from the client's `raceway._recorder.EventRecorder`, through `raceway._recorder.recorder_of`,
never from the client's private members.

Nothing is checked at run time: this is for the type checker and for the reader.
"""

from __future__ import annotations

from typing import Any, Dict, Hashable, Mapping, Optional, Protocol

from .config import Config
from .context import ExecutionContext


class StateTracker(Protocol):
    """What a tracked object (`raceway.shared`, `raceway.attributes`) records through."""

    def track_state_change(self, variable: str, old_value: Any, new_value: Any, access_type: str = "Write") -> None:
        """Records a read or write of ``variable``."""


class ClientLike(StateTracker, Protocol):
    """What the SDK's helpers use of a `raceway.RacewayClient` (its public API, a subset)."""

    @property
    def config(self) -> Config:
        """The client's configuration (the helpers read ``debug`` and ``strict_context``)."""

    @property
    def identity(self) -> str:
        """``<service_name>#<instance_id>``: the prefix of the clock component of the contexts
        the client starts."""

    def fork(self, parent: ExecutionContext) -> ExecutionContext:
        """A child context of ``parent``, with the spawn recorded in the parent."""

    def join(self, parent: ExecutionContext, child: ExecutionContext) -> None:
        """``parent`` observed that ``child`` finished: recorded in ``parent``."""

    def track_function_call(self, function_name: str, args: Any = None, duration_ns: Optional[int] = None) -> None:
        """Records a call of ``function_name``."""

    def track_error(self, error: BaseException, max_frames: Optional[int] = None) -> None:
        """Records an exception."""

    def track_custom(self, name: str, data: Any = None) -> None:
        """Records an application-defined event."""

    def track_lock_acquire(self, lock_id: str, lock_type: str = "Mutex") -> None:
        """Records that the current context now holds ``lock_id``."""

    def track_lock_release(self, lock_id: str, lock_type: str = "Mutex") -> None:
        """Records that the current context gives up ``lock_id``."""

    def happens_before(self, token: Hashable) -> None:
        """The sending side of a hand-off the SDK cannot see."""

    def happens_after(self, token: Hashable) -> None:
        """The receiving side of `happens_before`."""

    def propagation_headers(self, extra_headers: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
        """Trace headers for one downstream call."""
