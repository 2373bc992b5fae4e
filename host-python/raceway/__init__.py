"""Raceway SDK for Python: race-condition detection and distributed tracing.

The core (event model, vector clocks, header codecs) is Rust compiled to a WebAssembly
component and runs sandboxed inside wasmtime; this package records events cheaply in Python
and hands them to the core in batches.

    >>> from raceway import RacewayClient, Config
    >>> client = RacewayClient(Config(endpoint="http://localhost:8080", service_name="my-service"))
    >>> with client.trace():
    ...     client.track_state_change("counter", 5, 6, "Write")
"""

from .client import RacewayClient
from .config import Config
from .context import ExecutionContext, create_context, get_context, reset_context, set_context
from .decorators import track_async, track_function, track_method
from .lock_helpers import track_lock_acquire, track_lock_release, tracked_lock

# Imported on first use (PEP 562): they import asyncio and concurrent.futures, which a
# service that never uses them should not pay for at start-up.
_LAZY = {
    "background_job": "background",
    "ContextAwareThread": "concurrency",
    "ContextAwareThreadPoolExecutor": "concurrency",
    "bind": "concurrency",
    "capture": "concurrency",
    "continue_trace": "concurrency",
    "instrument_loop": "concurrency",
    "instrument_http": "http",
    "uninstrument_http": "http",
    "run_with_context": "concurrency",
    # The reference SDK's event types (raceway.types) and its top-level flask_middleware.
    "Event": "types",
    "EventKind": "types",
    "EventMetadata": "types",
    "flask_middleware": "middleware",
    "TrackedQueue": "sync",
    "TrackedAsyncQueue": "sync",
    "TrackedEvent": "sync",
    "TrackedAsyncEvent": "sync",
    "shared": "shared_state",
    "is_shared": "shared_state",
    "SharedAttribute": "attributes",
    "track_attributes": "attributes",
    "instrument_primitives": "primitives",
    "uninstrument_primitives": "primitives",
    "enable_strands": "strands",
    "disable_strands": "strands",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'raceway' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "RacewayClient",
    "Config",
    "Event",
    "EventKind",
    "EventMetadata",
    "ExecutionContext",
    "create_context",
    "set_context",
    "get_context",
    "reset_context",
    "tracked_lock",
    "track_lock_acquire",
    "track_lock_release",
    "track_function",
    "track_async",
    "track_method",
    "background_job",
    "ContextAwareThreadPoolExecutor",
    "ContextAwareThread",
    "run_with_context",
    "bind",
    "instrument_loop",
    "instrument_http",
    "uninstrument_http",
    "capture",
    "continue_trace",
    "TrackedQueue",
    "TrackedAsyncQueue",
    "TrackedEvent",
    "TrackedAsyncEvent",
    "shared",
    "is_shared",
    "SharedAttribute",
    "track_attributes",
    "instrument_primitives",
    "uninstrument_primitives",
    "enable_strands",
    "disable_strands",
]
__version__ = "0.1.0"
