"""`RacewayClient`: the API users call. The reference SDK's methods, names and defaults.

The tracking methods are the hot path. Each one reads the current context, validates its
arguments cheaply, finds the caller's frame and appends one tuple to the record log: no
component call, no I/O, no lock. Everything else (ids, timestamps, clocks, JSON) happens on the
flusher thread, in batches, in the core.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import time
import traceback
import weakref
from collections import deque
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, Mapping, Optional

from . import _values
from ._core import CoreError, CoreInstance, Runtime
from ._flusher import Flusher
from ._location import PACKAGE_DIR, getframe, user_frame
from ._stats import Stats
from ._transport import Transport
from .config import Config, Settings
from .context import ExecutionContext, _current, new_span_id, new_trace_id, set_identity

log = logging.getLogger("raceway")

_ACCESS = {name: name for name in ("Read", "Write", "AtomicRead", "AtomicWrite", "AtomicRMW")}
_ACCESS_FOLDED = {name.lower(): name for name in _ACCESS}
_PLAIN = frozenset({int, float, bool, type(None)})
_MAX = _values.MAX_STRING
_snapshot = _values.snapshot
_time_ns = time.time_ns
_compact = json.JSONEncoder(separators=(",", ":")).encode


def _access_type(value: Any) -> str:
    """Case-insensitive: ``"write"`` works; a type that does not exist is misuse."""
    if isinstance(value, str):
        found = _ACCESS_FOLDED.get(value.lower())
        if found is not None:
            return found
    raise ValueError(f"access_type must be one of {', '.join(_ACCESS)} (any case), got {value!r}")


def _headers(value: Optional[Mapping], argument: str) -> Dict[str, str]:
    if value is None:
        return {}
    try:
        return {_values.text(k): _values.text(v) for k, v in dict(value).items()}
    except (TypeError, ValueError) as e:
        raise ValueError(f"{argument} must be a mapping of header names to values: {e}") from None


def _non_negative_int(value: Any, argument: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
        raise ValueError(f"{argument} must be a non-negative number, got {value!r}")
    if value == float("inf"):
        raise ValueError(f"{argument} must be finite, got {value!r}")
    return int(round(value))


class RacewayClient:
    """Records what the application does and ships it to a Raceway server in the background.

    Thread-safe; one per process is the normal use. Never raises into the application because
    of its own failures: if the core cannot load, it logs once and every method becomes a no-op.
    """

    def __init__(self, config: Optional[Config] = None):
        self.config = config or Config()
        settings = Settings.resolve(self.config)
        self.settings = settings
        self.instance_id = settings.instance_id
        set_identity(settings.service_name, settings.instance_id)
        self._queue: deque = deque(maxlen=self.config.max_queue_size)
        self._wake_at = self.config.batch_size
        self._stats = Stats()
        self._warned: set = set()
        self._http_session = None
        self._codec: Optional[CoreInstance] = None
        self._flusher: Optional[Flusher] = None
        self._closed = False
        try:
            runtime = Runtime.shared()
            self._codec = CoreInstance(runtime)
            pipeline = CoreInstance(runtime)
            pipeline.configure(self._process_config())
            transport = (
                Transport(settings.endpoint, settings.api_key, self.config.timeout)
                if settings.endpoint
                else None
            )
            self._flusher = Flusher(
                self._queue, pipeline, transport, self.config.batch_size, self.config.flush_interval, self._stats
            ).start()
        except Exception as e:
            log.error("raceway: the core could not be started (%s: %s); tracking is off", type(e).__name__, e)
            self._disable()
            return
        if self.config.debug:
            log.setLevel(logging.DEBUG)
            log.debug(
                "raceway: endpoint=%s service=%s instance=%s batch_size=%d flush_interval=%s",
                settings.endpoint, settings.service_name, settings.instance_id,
                self.config.batch_size, self.config.flush_interval,
            )
        atexit.register(_shutdown_at_exit, weakref.ref(self))

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
        ctx = _current.get()
        if ctx is None:
            return self._outside("track_state_change")
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
        if f.f_code.co_filename.startswith(PACKAGE_DIR):
            f = user_frame(f) or f
        seq = ctx.seq + 1
        prev = ctx.last
        ctx.seq = ctx.last = seq
        q = self._queue
        if len(q) >= self._wake_at:
            self._pressure(len(q))
        q.append((ctx, ctx.state, seq, prev, _time_ns(), None, f.f_code.co_filename, f.f_lineno,
                  "StateChange", (variable, old_value, new_value, access)))

    def track_function_call(self, function_name: str, args: Any = None, duration_ns: Optional[int] = None) -> None:
        """Records a call of ``function_name`` with ``args`` (any value; converted if needed)."""
        ctx = _current.get()
        if ctx is None:
            return self._outside("track_function_call")
        if function_name.__class__ is not str or len(function_name) > _MAX:
            function_name = _values.text(function_name)
        args = {} if args is None else args if args.__class__ in _PLAIN else _snapshot(args)
        if duration_ns is not None:
            duration_ns = _non_negative_int(duration_ns, "duration_ns")
        f = getframe(1)
        if f.f_code.co_filename.startswith(PACKAGE_DIR):
            f = user_frame(f) or f
        seq = ctx.seq + 1
        prev = ctx.last
        ctx.seq = ctx.last = seq
        q = self._queue
        if len(q) >= self._wake_at:
            self._pressure(len(q))
        q.append((ctx, ctx.state, seq, prev, _time_ns(), duration_ns, f.f_code.co_filename, f.f_lineno,
                  "FunctionCall", (function_name, f.f_globals.get("__name__", "app"), args)))

    def _record(self, ctx: ExecutionContext, kind: str, fields: tuple, duration_ns: Optional[int] = None) -> None:
        """The shared tail of the less frequent tracking methods."""
        f = user_frame(getframe(1))
        file, line = (f.f_code.co_filename, f.f_lineno) if f is not None else ("<unknown>", 0)
        seq = ctx.seq + 1
        prev = ctx.last
        ctx.seq = ctx.last = seq
        q = self._queue
        if len(q) >= self._wake_at:
            self._pressure(len(q))
        q.append((ctx, ctx.state, seq, prev, _time_ns(), duration_ns, file, line, kind, fields))

    def _pressure(self, size: int) -> None:
        """The log reached a batch: wake the flusher; if it is full, the append drops the oldest."""
        if size >= self.config.max_queue_size:
            self._stats.add(dropped=1, recorded=1)
        if not self._flusher or not self._flusher.wake.is_set():
            if self._flusher:
                self._flusher.wake.set()

    def _outside(self, method: str) -> None:
        if self.config.strict_context:
            raise RuntimeError(f"raceway: {method}() called outside of an execution context")
        if self.config.debug and method not in self._warned:
            self._warned.add(method)
            log.debug("raceway: %s() called outside of an execution context; ignored", method)

    # ------------------------------------------------------------------------------------------
    # Other tracking methods
    # ------------------------------------------------------------------------------------------
    def track_http_request(self, method: str, url: str, headers: Optional[Mapping] = None, body: Any = None) -> None:
        ctx = _current.get()
        if ctx is None:
            return self._outside("track_http_request")
        self._record(ctx, "HttpRequest", (_values.text(method), _values.text(url), _headers(headers, "headers"), _snapshot(body)))

    def track_http_response(self, status: int, headers: Optional[Mapping] = None, body: Any = None, duration_ms: float = 0) -> None:
        ctx = _current.get()
        if ctx is None:
            return self._outside("track_http_response")
        if isinstance(status, bool) or not isinstance(status, int) or not 0 <= status <= 65535:
            raise ValueError(f"status must be an HTTP status code (0-65535), got {status!r}")
        ms = _non_negative_int(duration_ms, "duration_ms")
        duration_ns = _non_negative_int(duration_ms * 1_000_000, "duration_ms")
        self._record(ctx, "HttpResponse", (int(status), _headers(headers, "headers"), _snapshot(body), ms), duration_ns)

    def track_lock_acquire(self, lock_id: str, lock_type: str = "Mutex") -> None:
        """Records that the current context now holds ``lock_id``."""
        ctx = _current.get()
        if ctx is None:
            return self._outside("track_lock_acquire")
        lock_id = _values.text(lock_id)
        ctx.hold(lock_id)
        self._record(ctx, "LockAcquire", (lock_id, _values.text(lock_type)))

    def track_lock_release(self, lock_id: str, lock_type: str = "Mutex") -> None:
        """Records that the current context gives up ``lock_id``."""
        ctx = _current.get()
        if ctx is None:
            return self._outside("track_lock_release")
        lock_id = _values.text(lock_id)
        self._record(ctx, "LockRelease", (lock_id, _values.text(lock_type)))
        ctx.unhold(lock_id)

    def track_error(self, error: BaseException, max_frames: Optional[int] = None) -> None:
        """Records an exception as an ``Error`` event with at most ``max_frames`` stack frames
        (default ``Config.max_stack_frames``), innermost last."""
        ctx = _current.get()
        if ctx is None:
            return self._outside("track_error")
        limit = max_frames or self.config.max_stack_frames
        frames = traceback.extract_tb(error.__traceback__)[-limit:] if error.__traceback__ else []
        stack = [f"{fr.filename}:{fr.lineno} in {fr.name}" for fr in frames]
        self._record(ctx, "Error", (type(error).__name__, _values.text(str(error)), stack))

    def track_custom(self, name: str, data: Any = None) -> None:
        """Records an application-defined event."""
        ctx = _current.get()
        if ctx is None:
            return self._outside("track_custom")
        self._record(ctx, "Custom", (_values.text(name), _snapshot(data)))

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

    @contextmanager
    def trace(self) -> Iterator[ExecutionContext]:
        """Opens an execution context by hand: a child of the current one, or a new trace.
        The previous context is current again on exit."""
        parent = _current.get()
        ctx = self.fork(parent) if parent is not None else ExecutionContext(new_trace_id(), new_span_id())
        token = _current.set(ctx)
        try:
            yield ctx
        finally:
            try:
                _current.reset(token)
            except ValueError:  # exited in another contextvars.Context: restore by value
                _current.set(parent)
            if parent is not None:
                self.join(parent, ctx)

    # ------------------------------------------------------------------------------------------
    # Distributed tracing
    # ------------------------------------------------------------------------------------------
    def propagation_headers(self, extra_headers: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
        """Headers for one downstream call: ``traceparent`` (a new span id for the callee),
        ``tracestate`` when there is one, and ``raceway-clock``.
        Raises ``RuntimeError`` outside an execution context."""
        ctx = _current.get()
        if ctx is None:
            raise RuntimeError("Raceway propagation_headers() called outside of an active context")
        ctx.tick()
        headers: Dict[str, str] = {}
        if self._codec is not None:
            try:
                headers = self._codec.encode_outgoing(self._outgoing_request(ctx))
            except CoreError as e:
                self._warn_once("encode-outgoing", "raceway: cannot build propagation headers: %s", e)
        if extra_headers:
            headers.update(extra_headers)
        return headers

    def _outgoing_request(self, ctx: ExecutionContext) -> str:
        """The ``encode-outgoing`` request as JSON. What does not change between calls of one
        context is rendered once and kept on the context; per call only the new span id and
        the clock are added."""
        cached = ctx.outgoing
        if cached is None or cached[0] is not self:
            prefix = _compact(
                {
                    "trace_id": ctx.trace_id,
                    "parent_span_id": ctx.span_id,
                    "flags": ctx.flags,
                    "tracestate": ctx.tracestate,
                    "service": self.settings.service_name,
                    "instance": self.settings.instance_id,
                }
            )[:-1] + ',"span_id":"'
            cached = ctx.outgoing = (self, prefix)
        return f'{cached[1]}{new_span_id()}","clock":{_compact(ctx.clock())}}}'

    def request(self, method: str, url: str, **kwargs: Any):
        """``requests.request`` with the propagation headers added. Headers you pass win, matched
        case-insensitively, so at most one of each trace header is sent. The API key is never
        sent here: it is for the Raceway endpoint only."""
        import requests
        from requests.structures import CaseInsensitiveDict

        try:
            merged = CaseInsensitiveDict(self.propagation_headers())
        except RuntimeError:
            merged = CaseInsensitiveDict()
            if self.config.debug:
                log.debug("raceway: request() outside an execution context; no trace headers sent")
        merged.update(kwargs.pop("headers", None) or {})
        if self._http_session is None:
            self._http_session = requests.Session()
        return self._http_session.request(method, url, headers=merged, **kwargs)

    # ------------------------------------------------------------------------------------------
    # Lifecycle
    # ------------------------------------------------------------------------------------------
    def flush(self, timeout: Optional[float] = None) -> bool:
        """Sends everything recorded so far; returns True if it was all handed over within
        ``timeout`` seconds (None: wait as long as it takes)."""
        if self._flusher is None:
            return not self._queue
        return self._flusher.flush(timeout)

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Flushes and stops the background thread. Safe to call more than once."""
        if self._closed:
            return True
        self._closed = True
        if self._flusher is None:
            return True
        return self._flusher.stop(timeout)

    def stats(self) -> Dict[str, int]:
        """Counters: events ``recorded`` (including those still ``queued``), ``sent``,
        ``dropped`` (queue full or invalid), ``failed`` (could not be delivered), ``retried``."""
        counts = self._stats.snapshot()
        counts["queued"] = len(self._queue)
        counts["recorded"] += counts["queued"]
        return counts

    # ------------------------------------------------------------------------------------------
    def _warn_once(self, key: str, msg: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.error(msg, *args)

    def _disable(self) -> None:
        """Fail-open: every tracking method becomes a no-op on this instance."""

        def noop(*_args: Any, **_kwargs: Any) -> None:
            return None

        for name in (
            "track_state_change", "track_function_call", "track_http_request", "track_http_response",
            "track_lock_acquire", "track_lock_release", "track_error", "track_custom",
        ):
            setattr(self, name, noop)
        self._queue.clear()


def _shutdown_at_exit(ref: "weakref.ref[RacewayClient]") -> None:
    client = ref()
    if client is not None:
        try:
            client.shutdown(timeout=client.config.timeout + 1)
        except Exception:  # pragma: no cover - never fail interpreter exit
            pass
