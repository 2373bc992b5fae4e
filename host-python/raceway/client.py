"""`RacewayClient`: the API users call. The reference SDK's methods, names and defaults.

This module holds the client's construction, its tracking methods and contexts, and delivery
(`flush`, `shutdown`, `stats`). The rest is in modules of its own, mixed into the class: race
queries (raceway/_client_races.py), outgoing trace headers (raceway/_client_propagation.py),
muting, failing open, exit and fork (raceway/_client_lifecycle.py). What the SDK's helpers may
use of a client is `raceway._client_protocol.ClientLike` and its `raceway._recorder.EventRecorder`.

The tracking methods are the hot path. Each one reads the current context, validates its
arguments cheaply, finds the caller's frame and appends one tuple to the record log: no
component call, no I/O, no lock. Everything else (ids, timestamps, clocks, JSON) happens on the
flusher thread, in batches, in the core.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from contextvars import Token
from typing import TYPE_CHECKING, Any, Callable, Dict, Hashable, Mapping, Optional, Tuple, TypeVar

from . import _lifecycle, _values
from ._annotations import HAPPENS_AFTER, HAPPENS_BEFORE, sync_data, sync_id
from ._backlog import split_budget
from ._client_lifecycle import ClientLifecycle
from ._client_propagation import Propagation
from ._client_races import RaceQueries
from ._core import CoreInstance, Runtime
from ._flusher import Flusher
from ._location import by_offset, getframe
from ._location import locate as _locate
from ._location import stack as _stack
from ._recorder import EventRecorder
from ._stats import Stats
from ._transport import RetryPolicy, Transport
from .config import Config, Settings
from .context import MAX_COUNTER, ExecutionContext, current_var, set_identity, strand_context
from .context import claim as _claim
from .context import current_task as _task
from .context import enter as enter_context
from .context import leave as leave_context
from .lock_helpers import tracked_lock as TrackedLock

if TYPE_CHECKING:
    from ._sink import EventsFile

T = TypeVar("T")

_ident = threading.get_ident
# Bound methods taken once. A call on a name bound by an import compiles to LOAD_ATTR, not
# LOAD_METHOD, in CPython 3.11-3.12 (the compiler assumes a module): it would make a bound
# method object on every call, ~40 ns each on the hot path (test_hot_path_bytecode.py).
_current_get = current_var.get
_by_offset_get = by_offset.get
log = logging.getLogger("raceway")

_ACCESS = {name: name for name in ("Read", "Write", "AtomicRead", "AtomicWrite", "AtomicRMW")}
_ACCESS_FOLDED = {name.lower(): name for name in _ACCESS}
_PLAIN = frozenset({int, float, bool, type(None)})
_MAX = _values.MAX_STRING
_snapshot = _values.snapshot
_flat_dict = _values.flat_dict
_EMPTY_OBJECT = _values.EMPTY_OBJECT
_time_ns = time.time_ns


def _access_type(value: Any) -> str:
    """Case-insensitive: ``"write"`` works; a type that does not exist is misuse."""
    if isinstance(value, str):
        found = _ACCESS_FOLDED.get(value.lower())
        if found is not None:
            return found
    raise ValueError(f"access_type must be one of {', '.join(_ACCESS)} (any case), got {value!r}")


def _headers(value: object, argument: str) -> Tuple[Any, ...]:
    """``value``'s headers as an object tuple of text (`raceway._values.as_object`)."""
    if value is None:
        return _EMPTY_OBJECT
    try:
        if value.__class__ is dict:  # one read (C-level): another thread may be changing it
            value = value.copy()
        items = value.items() if isinstance(value, Mapping) else dict(value).items()  # type: ignore[call-overload]
        # Bounded like any other value (docs/values.md): the first MAX_ITEMS headers.
        text = _values.text
        return _values.as_object({text(k): text(v) for k, v in itertools.islice(items, _values.MAX_ITEMS)})
    except (TypeError, ValueError) as e:
        raise ValueError(f"{argument} must be a mapping of header names to values: {e}") from None
    except RuntimeError:  # another mapping changed while it was read: recorded without headers
        return _EMPTY_OBJECT


def _non_negative_int(value: Any, argument: str) -> int:
    """``value`` rounded to an int in 0..2**64-1 (the wire's u64), else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
        raise ValueError(f"{argument} must be a non-negative number, got {value!r}")
    if value == float("inf"):
        raise ValueError(f"{argument} must be finite, got {value!r}")
    rounded = int(round(value))
    if rounded > MAX_COUNTER:  # the server's u64: the core would drop the event
        raise ValueError(f"{argument} is out of range (as nanoseconds it must fit in 64 bits), got {value!r}")
    return rounded


class RacewayClient(RaceQueries, Propagation, ClientLifecycle):
    """Records what the application does and ships it to a Raceway server in the background.

    Thread-safe; one per process is the normal use. Never raises into the application because
    of its own failures: if the core cannot load, it logs once and every method becomes a no-op.
    """

    # Set per instance in __init__ from the client's `EventRecorder` (and replaced by no-ops
    # when muted): instance attributes, so the hot path finds them with one lookup.
    _pressure: Callable[[int], None]
    _record: Callable[..., None]
    _warn_once: Callable[..., None]

    def __init__(self, config: Optional[Config] = None):
        self.config = config or Config()
        settings = Settings.resolve(self.config)
        self.settings = settings
        set_identity(settings.service_name, settings.instance_id)
        # The memory limit covers the record log and what the flusher holds (see _backlog.py).
        queue_limit, self._chunk = split_budget(self.config.max_queue_size)
        wanted = self.config.detect_races or self.settings.events_file is not None
        recorder = self._recorder = EventRecorder(
            queue_limit,
            self.config.batch_size,
            self.config.race_stack_frames if wanted else 0,
        )
        # The hot path reads these as attributes of the client (a lookup less than through the
        # recorder); each is the recorder's own object or constant for the client's whole life.
        self._queue = recorder.queue
        self._wake_at = recorder.wake_at
        recorder.mirror = self  # keeps `_wake_at` equal to the recorder's (`EventRecorder.arm`)
        self._stack_depth = recorder.stack_depth
        self._pressure = recorder.pressure
        self._warned = recorder.warned
        # The client's own shorthand for its recorder's (helpers use `recorder_of`, never these).
        self._record = recorder.record
        self._warn_once = recorder.warn_once
        self._stats = Stats()
        self._http_session = None
        self._flusher: Optional[Flusher] = None
        self._closed = False
        self._disabled = False
        self._disable_lock = threading.Lock()
        self._fork_held = []
        self._suppressions = None
        self._sink: Optional[EventsFile] = None
        self._reported = False
        try:
            self._start()
        except Exception as e:
            self._disable(f"the core could not be started ({type(e).__name__}: {e})")
            return
        if self.config.debug:
            log.setLevel(logging.DEBUG)
            log.debug(
                "raceway: endpoint=%s service=%s instance=%s batch_size=%d flush_interval=%s",
                settings.endpoint,
                settings.service_name,
                settings.instance_id,
                self.config.batch_size,
                self.config.flush_interval,
            )
        _lifecycle.register(self._exit_flush, self._before_fork, self._after_fork_in_parent, self._after_fork_in_child)

    def _start(self) -> None:
        """Instantiates the core (codec and pipeline), the connection pool and the flusher."""
        runtime = Runtime.shared()
        self._codec = CoreInstance(runtime, on_trap=self._on_core_failure)
        pipeline = CoreInstance(runtime, on_trap=self._on_core_failure)
        pipeline.configure(self._process_config())
        config = self.config
        transport = (
            Transport(
                self.settings.endpoint,
                self.settings.api_key,
                config.timeout,
                RetryPolicy(config.retries, config.retry_backoff, config.retry_backoff_max),
            )
            if self.settings.endpoint
            else None
        )
        if self.settings.suppressions is not None and self._suppressions is None:
            self._load_suppressions(self.settings.suppressions)
        sink = None
        if self.settings.events_file is not None:
            from ._sink import EventsFile

            sink = EventsFile(self.settings.events_file, config.events_file_max_bytes, config.events_file_backups)
        self._sink = sink
        spool = None
        endpoint = self.settings.endpoint
        if transport is not None and endpoint and self.settings.spool_dir is not None:
            from ._spool import Spool

            spool = Spool(self.settings.spool_dir, endpoint, config.spool_max_bytes)
        self._flusher = Flusher(
            self._queue,
            pipeline,
            transport,
            config.batch_size,
            config.flush_interval,
            self._stats,
            chunk=self._chunk,
            on_fatal=self._on_core_failure,
            log_drops=self._recorder.dropped_so_far,
            detect=config.detect_races,
            sink=sink,
            process=self._process_config(),
            spool=spool,
            max_batch_size=config.max_batch_size,
            nice=config.background_nice,
            arm=self._recorder.arm,
        ).start()
        self._recorder.wake = self._flusher.wake

    @property
    def _codec(self) -> Optional[CoreInstance]:
        """The core instance for header codecs (None when the core could not start or failed):
        the recorder's, which the helpers reading incoming headers use."""
        return self._recorder.codec

    @_codec.setter
    def _codec(self, codec: Optional[CoreInstance]) -> None:
        self._recorder.codec = codec

    @property
    def identity(self) -> str:
        """``<service_name>#<instance_id>``: the prefix of the clock component of every context
        this client starts (each client its own, however many share a process)."""
        return f"{self.settings.service_name}#{self.settings.instance_id}"

    @property
    def instance_id(self) -> str:
        """The instance id in use (the reference SDK's attribute): `Config.instance_id`, else
        ``RACEWAY_INSTANCE_ID``, else ``<hostname>-<pid>``."""
        return self.settings.instance_id

    def _process_config(self) -> Dict[str, Any]:
        return {
            "service_name": self.settings.service_name,
            "environment": self.settings.environment,
            "instance_id": self.settings.instance_id,
            "process_id": os.getpid(),
            "tags": dict(self.config.tags),
        }

    # ------------------------------------------------------------------------------------------
    # The hot path
    # ------------------------------------------------------------------------------------------
    def track_state_change(self, variable: str, old_value: Any, new_value: Any, access_type: str = "Write") -> None:
        """Records a read or write of shared state (``access_type``: Read, Write, AtomicRead,
        AtomicWrite, AtomicRMW; any case)."""
        ctx = _current_get()
        if ctx is None:
            return self._outside("track_state_change")
        if ctx.owner != _ident() or (ctx.task is not None and ctx.task is not _task()):
            ctx = _claim(ctx)
        access = _ACCESS.get(access_type) if access_type.__class__ is str else None
        if access is None:
            access = _access_type(access_type)
        if variable.__class__ is not str or len(variable) > _MAX:
            variable = _values.text(variable)
        if old_value.__class__ not in _PLAIN:
            old_value = _snapshot(old_value)
        if new_value.__class__ not in _PLAIN:
            new_value = _snapshot(new_value)
        f = getframe(1)
        where = _by_offset_get(f.f_lasti)
        depth = self._stack_depth
        if where is None or where[3] is not f.f_code:  # not the cached site: new, or an SDK caller
            where = _locate(f)
            stack = where[5] if depth == 1 else _stack(f, depth) if depth else ()
        elif depth == 1:  # the default: the access's own frame, already found
            stack = where[5]
        else:
            stack = (where[4],) + _stack(f.f_back, depth - 1) if depth else ()
        seq = ctx.seq + 1
        prev = ctx.last
        ctx.seq = ctx.last = seq
        q = self._queue
        if len(q) >= self._wake_at:
            self._pressure(len(q))
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
                variable,
                old_value,
                new_value,
                access,
                stack,
            )
        )

    def track_function_call(self, function_name: str, args: Any = None, duration_ns: Optional[int] = None) -> None:
        """Records a call of ``function_name`` with ``args`` (any value; converted if needed)."""
        ctx = _current_get()
        if ctx is None:
            return self._outside("track_function_call")
        if ctx.owner != _ident() or (ctx.task is not None and ctx.task is not _task()):
            ctx = _claim(ctx)
        if function_name.__class__ is not str or len(function_name) > _MAX:
            function_name = _values.text(function_name)
        if args.__class__ is dict:  # the usual case, without going through `snapshot`
            args = _flat_dict(args) or _snapshot(args)
        else:
            args = _EMPTY_OBJECT if args is None else args if args.__class__ in _PLAIN else _snapshot(args)
        if duration_ns is not None:
            duration_ns = _non_negative_int(duration_ns, "duration_ns")
        f = getframe(1)
        where = _by_offset_get(f.f_lasti)
        if where is None or where[3] is not f.f_code:
            where = _locate(f)
        seq = ctx.seq + 1
        prev = ctx.last
        ctx.seq = ctx.last = seq
        q = self._queue
        if len(q) >= self._wake_at:
            self._pressure(len(q))
        q.append(
            (
                ctx.row,
                ctx.state,
                seq,
                prev,
                _time_ns(),
                duration_ns,
                where[0],
                where[1],
                "FunctionCall",
                function_name,
                where[2],
                args,
            )
        )

    def _outside(self, method: str) -> None:
        if self.config.strict_context:
            raise RuntimeError(f"raceway: {method}() called outside of an execution context")
        if self.config.debug and method not in self._warned:
            self._warned.add(method)
            log.debug("raceway: %s() called outside of an execution context; ignored", method)

    # ------------------------------------------------------------------------------------------
    # Other tracking methods
    # ------------------------------------------------------------------------------------------
    def track_http_request(
        self, method: str, url: str, headers: Optional[Mapping[str, object]] = None, body: Any = None
    ) -> None:
        """Records an outgoing or incoming HTTP request (``headers``: any mapping; the first
        `raceway._values.MAX_ITEMS` are kept, as text)."""
        ctx = strand_context()
        if ctx is None:
            return self._outside("track_http_request")
        fields = (_values.text(method), _values.text(url), _headers(headers, "headers"), _snapshot(body))
        self._record(ctx, "HttpRequest", fields)

    def track_http_response(
        self, status: int, headers: Optional[Mapping[str, object]] = None, body: Any = None, duration_ms: float = 0
    ) -> None:
        """Records an HTTP response: ``status`` 0-65535, ``duration_ms`` milliseconds (a
        non-negative number; ``ValueError`` otherwise)."""
        ctx = strand_context()
        if ctx is None:
            return self._outside("track_http_response")
        if isinstance(status, bool) or not isinstance(status, int) or not 0 <= status <= 65535:
            raise ValueError(f"status must be an HTTP status code (0-65535), got {status!r}")
        ms = _non_negative_int(duration_ms, "duration_ms")
        duration_ns = _non_negative_int(duration_ms * 1_000_000, "duration_ms")
        self._record(ctx, "HttpResponse", (int(status), _headers(headers, "headers"), _snapshot(body), ms), duration_ns)

    def track_lock_acquire(self, lock_id: str, lock_type: str = "Mutex") -> None:
        """Records that the current context now holds ``lock_id``."""
        ctx = strand_context()
        if ctx is None:
            return self._outside("track_lock_acquire")
        lock_id = _values.text(lock_id)
        ctx.hold(lock_id)
        self._record(ctx, "LockAcquire", (lock_id, _values.text(lock_type)))

    def track_lock_release(self, lock_id: str, lock_type: str = "Mutex") -> None:
        """Records that the current context gives up ``lock_id``."""
        ctx = strand_context()
        if ctx is None:
            return self._outside("track_lock_release")
        lock_id = _values.text(lock_id)
        self._record(ctx, "LockRelease", (lock_id, _values.text(lock_type)))
        ctx.unhold(lock_id)

    def track_error(self, error: BaseException, max_frames: Optional[int] = None) -> None:
        """Records an exception as an ``Error`` event with at most ``max_frames`` stack frames
        (default ``Config.max_stack_frames``), innermost last."""
        ctx = strand_context()
        if ctx is None:
            return self._outside("track_error")
        self._record(ctx, "Error", _values.describe_exception(error, max_frames or self.config.max_stack_frames))

    def track_custom(self, name: str, data: Any = None) -> None:
        """Records an application-defined event."""
        ctx = strand_context()
        if ctx is None:
            return self._outside("track_custom")
        self._record(ctx, "Custom", (_values.text(name), _snapshot(data)))

    # -- the reference SDK's helpers (docs/compatibility.md) -------------------------------------
    def track_function(self, function_name: str, args: Any, fn: Callable[[], T]) -> T:
        """Runs ``fn()`` (called with no arguments) and records one ``FunctionCall`` of
        ``function_name`` with ``args`` and the call's duration in nanoseconds
        (``metadata.duration_ns``), once it has returned or raised (the reference SDK's
        method). Returns what ``fn`` returns; an ``Exception`` it raises is recorded the same
        way and re-raised. For the return value and errors as events of their own, use the
        ``@track_function(client)`` decorator."""
        start = time.perf_counter_ns()
        try:
            result = fn()
        except Exception:
            self.track_function_call(function_name, args, time.perf_counter_ns() - start)
            raise
        self.track_function_call(function_name, args, time.perf_counter_ns() - start)
        return result

    def tracked_lock(self, lock: Any, lock_id: str, lock_type: str = "Mutex") -> TrackedLock:
        """``with client.tracked_lock(lock, "account_lock"):`` (or ``async with`` for an asyncio
        lock): `raceway.tracked_lock` with this client."""
        return TrackedLock(self, lock, lock_id, lock_type)

    # ------------------------------------------------------------------------------------------
    # Execution contexts
    # ------------------------------------------------------------------------------------------
    def fork(self, parent: ExecutionContext) -> ExecutionContext:
        """A child context of ``parent`` (same trace), with an ``AsyncSpawn`` recorded in the
        parent: the child's events are ordered after everything the parent did before."""
        child = parent.child()
        self._record(parent, "AsyncSpawn", (child.task_id, parent.thread_id))
        child.learn(((parent.component, parent.seq),))  # the spawn itself precedes the child
        return child

    def join(self, parent: ExecutionContext, child: ExecutionContext) -> None:
        """``parent`` waited for ``child``: its later events come after all of the child's."""
        parent.learn(child.clock())
        self._record(parent, "AsyncAwait", (child.task_id, child.thread_id))
        parent.retire(child.component)

    def trace(self) -> "_Trace":
        """Opens an execution context by hand: ``with client.trace() as ctx:``, a child of the
        current one (joined back into it on exit) or a new trace. The previous context is
        current again on exit. Inside a generator, the context is current only while the
        generator runs (docs/context.md)."""
        return _Trace(self)

    # ------------------------------------------------------------------------------------------
    # Happens-before annotations and the detector's findings (docs/races.md)
    # ------------------------------------------------------------------------------------------
    def happens_before(self, token: Hashable) -> None:
        """Marks a hand-off the SDK cannot see: everything the current strand did so far
        happens before whatever a strand does after a later `happens_after` with an equal
        ``token`` (ThreadSanitizer's ``AnnotateHappensBefore``). ``token``: any hashable object;
        strings, numbers, bytes and tuples of them are matched by value, other objects by
        identity (while they are alive)."""
        ctx = strand_context()
        if ctx is None:
            return self._outside("happens_before")
        self._record(ctx, "Custom", (HAPPENS_BEFORE, sync_data(sync_id(token))))

    def happens_after(self, token: Hashable) -> None:
        """The receiving side of `happens_before`: the current strand's later events happen
        after everything done before every earlier `happens_before` with an equal ``token``."""
        ctx = strand_context()
        if ctx is None:
            return self._outside("happens_after")
        self._record(ctx, "Custom", (HAPPENS_AFTER, sync_data(sync_id(token))))

    # ------------------------------------------------------------------------------------------
    # Lifecycle
    # ------------------------------------------------------------------------------------------
    def flush(self, timeout: Optional[float] = None) -> bool:
        """Sends everything recorded so far; returns True if it was all handed over within
        ``timeout`` seconds (None: wait as long as it takes)."""
        flusher = self._flusher
        if flusher is None:
            return not self._queue
        return flusher.flush(timeout)

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Delivers what is left and stops the background thread. Without ``timeout``, it
        waits while delivery makes progress: at most ``Config.shutdown_timeout`` (30 s by
        default), and no longer once the server has taken nothing for ``Config.shutdown_stall``
        (10 s). With ``timeout``, it tries for that many seconds. What is still undelivered
        then goes to the spool (or counts as failed) and is logged (docs/delivery.md).
        Tracking is a no-op afterwards. Safe to call more than once. True if everything was
        delivered."""
        self._closed = True
        self._mute()
        flusher = self._flusher
        if flusher is None:
            return True
        if timeout is None:
            delivered = flusher.stop(self.settings.shutdown_timeout, stall=self.config.shutdown_stall)
        else:
            delivered = flusher.stop(timeout)
        self._report_races()
        if self._sink is not None:
            self._sink.close()
        return delivered

    def stats(self) -> Dict[str, int]:
        """Counters (docs/delivery.md): events ``recorded``, ``sent``, ``dropped`` (the queue
        limit, invalid records), ``failed`` (refused by the server, undeliverable at shutdown
        with no spool, a core failure), ``spooled`` (undelivered at shutdown or exit, written
        to the spool), ``retried`` (re-sends), ``duplicated`` (taken by the server per a 206
        and sent again), ``spool_sent`` / ``spool_failed`` (an earlier client's spooled events
        delivered / refused), and those still held: ``queued`` (recorded, not yet encoded) and
        ``pending`` (encoded, not yet delivered). ``recorded`` equals sent + dropped + failed +
        spooled + queued + pending whenever the flusher is between batches."""
        counts = self._stats.snapshot()
        drops = self._recorder.drops
        counts["dropped"] += drops
        counts["queued"] = len(self._queue)
        flusher = self._flusher
        counts["pending"] = flusher.held if flusher is not None else 0
        counts["recorded"] += drops + counts["queued"]
        return counts


class _Trace:
    """`RacewayClient.trace`'s context manager (a class, so it can see the frame that opens it)."""

    __slots__ = ("client", "parent", "ctx", "token")

    def __init__(self, client: RacewayClient):
        self.client = client
        self.parent: Optional[ExecutionContext] = None
        self.ctx: Optional[ExecutionContext] = None
        self.token: Optional[Token[Optional[ExecutionContext]]] = None

    def __enter__(self) -> ExecutionContext:
        client = self.client
        parent = self.parent = strand_context()
        ctx = self.ctx = client.fork(parent) if parent is not None else ExecutionContext.new_trace(client.identity)
        self.token = enter_context(ctx, getframe(1))
        return ctx

    def __exit__(self, *exc: Any) -> None:
        ctx, parent, token = self.ctx, self.parent, self.token
        if ctx is None or token is None:
            return
        left = leave_context(ctx, token)
        # The join is the parent's event: recorded only on the parent's own strand (a generator
        # finished elsewhere, or collected, must not write into another strand's context).
        if parent is not None and left and strand_context() is parent:
            self.client.join(parent, ctx)
