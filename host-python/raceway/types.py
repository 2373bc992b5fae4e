"""The reference SDK's event types (``raceway.types``), for code that imports or builds them.

This SDK does not record through these objects: the ``track_*`` methods append compact records
that the core turns into the server's events (docs/record-format.md). The classes are kept with
the reference's fields and defaults so that imports, type hints and code that builds them (test
fixtures, adapters) keep working; an `Event` built by hand is not sent anywhere. `Config` is
this SDK's, the reference's fields first and in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .config import Config

__all__ = [
    "Config",
    "EventMetadata",
    "StateChangeData",
    "FunctionCallData",
    "FunctionReturnData",
    "AsyncSpawnData",
    "AsyncAwaitData",
    "LockAcquireData",
    "LockReleaseData",
    "HTTPRequestData",
    "HTTPResponseData",
    "ErrorData",
    "EventKind",
    "Event",
]


@dataclass
class EventMetadata:
    """What the server's ``metadata`` object holds for an event (``duration_ns`` in ns)."""

    thread_id: str
    process_id: int
    service_name: str
    environment: str
    tags: Dict[str, str] = field(default_factory=dict)
    duration_ns: Optional[int] = None
    instance_id: Optional[str] = None
    distributed_span_id: Optional[str] = None
    upstream_span_id: Optional[str] = None


@dataclass
class StateChangeData:
    variable: str
    old_value: Any
    new_value: Any
    location: str
    access_type: str


@dataclass
class FunctionCallData:
    function_name: str
    module: str
    args: Any
    file: str
    line: int


@dataclass
class FunctionReturnData:
    """The reference's type; the server has no ``FunctionReturn`` kind, so neither SDK sends it
    (this one records a ``Custom`` ``function_return`` event)."""

    function_name: str
    return_value: Any
    file: str
    line: int


@dataclass
class AsyncSpawnData:
    task_id: str
    task_name: str
    spawned_at: str


@dataclass
class AsyncAwaitData:
    future_id: str
    awaited_at: str


@dataclass
class LockAcquireData:
    lock_id: str
    lock_type: str
    location: str


@dataclass
class LockReleaseData:
    lock_id: str
    lock_type: str
    location: str


@dataclass
class HTTPRequestData:
    method: str
    url: str
    headers: Dict[str, str]
    body: Optional[Any] = None


@dataclass
class HTTPResponseData:
    """``duration_ms`` in milliseconds."""

    status: int
    headers: Dict[str, str]
    body: Optional[Any]
    duration_ms: int


@dataclass
class ErrorData:
    error_type: str
    message: str
    stack_trace: List[str]


@dataclass
class EventKind:
    """One event's kind: exactly one field set, to that kind's fields as a dict."""

    StateChange: Optional[Dict[str, Any]] = None
    FunctionCall: Optional[Dict[str, Any]] = None
    FunctionReturn: Optional[Dict[str, Any]] = None
    HttpRequest: Optional[Dict[str, Any]] = None
    HttpResponse: Optional[Dict[str, Any]] = None
    AsyncSpawn: Optional[Dict[str, Any]] = None
    AsyncAwait: Optional[Dict[str, Any]] = None
    LockAcquire: Optional[Dict[str, Any]] = None
    LockRelease: Optional[Dict[str, Any]] = None
    Error: Optional[Dict[str, Any]] = None


@dataclass
class Event:
    """One event as the server receives it (``timestamp``: RFC 3339; ``causality_vector``:
    ``(component, counter)`` pairs)."""

    id: str
    trace_id: str
    parent_id: Optional[str]
    timestamp: str
    kind: EventKind
    metadata: EventMetadata
    causality_vector: List[Tuple[str, int]] = field(default_factory=list)
    lock_set: List[str] = field(default_factory=list)
