"""The reference SDK's ``raceway.trace_context``: incoming trace headers to a context's fields,
and a context's fields to outgoing headers, for code that builds its own middleware.

The work is the core's (``parse-incoming``, ``encode-outgoing``: the W3C Trace Context and
``raceway-clock`` rules every middleware here uses), in one sandboxed instance shared by these
functions and made on first use. The middleware and `RacewayClient.propagation_headers` do not
go through this module. Nothing here raises because of what the headers hold: headers that
cannot be read start a new trace, as in the reference.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Literal, Mapping, Optional, Tuple, Union

from .context import new_span_id, new_trace_id, valid_or_derived

if TYPE_CHECKING:
    from ._core import CoreInstance
    from ._core_types import IncomingJSON

log = logging.getLogger("raceway")

TRACEPARENT_HEADER = "traceparent"
TRACESTATE_HEADER = "tracestate"
RACEWAY_CLOCK_HEADER = "raceway-clock"
TRACEPARENT_VERSION = "00"
TRACE_FLAGS = "01"
CLOCK_VERSION_PREFIX = "v1;"


@dataclass
class ParsedTraceContext:
    """What `parse_incoming_headers` read. ``trace_id``: a UUID; ``span_id``: this service's
    span (16 hex), the one the caller minted for it; ``parent_span_id``: the caller's span;
    ``clock_vector``: ``(component, counter)`` pairs, this service's own (``service#instance``)
    included; ``distributed``: whether a valid ``traceparent`` came."""

    trace_id: str
    span_id: str
    parent_span_id: Optional[str]
    tracestate: Optional[str]
    clock_vector: List[Tuple[str, int]]
    distributed: bool


@dataclass
class PropagationHeaders:
    """``headers`` for one outgoing call, the ``clock_vector`` they carry (the caller's, with
    its own component counted up), and the span id minted for the callee."""

    headers: Dict[str, str]
    clock_vector: List[Tuple[str, int]]
    child_span_id: str


_core: Union[CoreInstance, None, Literal[False]] = None
"""The shared instance; False once it could not be made."""
_core_lock = threading.Lock()


def _codec() -> Optional[CoreInstance]:
    """The shared core instance, made on first use (None if the core cannot start)."""
    global _core
    with _core_lock:
        if _core is None:
            try:
                from ._core import CoreInstance

                _core = CoreInstance()
            except Exception as e:  # never fail the caller: no core, no propagation
                log.error("raceway: trace_context: the core could not be started (%s)", e)
                _core = False
        return _core or None


def _clock_component(service_name: str, instance_id: str) -> str:
    return f"{service_name}#{instance_id}"


def parse_incoming_headers(headers: Mapping[str, str], *, service_name: str, instance_id: str) -> ParsedTraceContext:
    """Reads ``traceparent``, ``tracestate`` and ``raceway-clock`` from ``headers`` (any mapping
    or object with ``items()``; names in any case). Without a valid ``traceparent``: a new
    trace id and span id, no parent span, no tracestate, ``distributed`` False. The clock
    always ends with this service's component (counter 0 when the caller did not know it)."""
    from ._incoming import gather

    trace_id, span_id, parent_span_id, tracestate = new_trace_id(), new_span_id(), None, None
    clock: List[Tuple[str, int]] = []
    distributed = False
    codec = _codec()
    parsed: Optional[IncomingJSON] = None
    try:
        parsed = codec.parse_incoming(gather(headers.items())) if codec is not None else None
    except Exception as e:
        log.debug("raceway: trace_context: cannot read incoming trace headers: %s", e)
    parent = parsed.get("parent") if parsed is not None else None
    if parsed is not None and parent:
        trace_id, span_id, distributed = parent["trace_id"], parent["span_id"], True
        tracestate = parsed.get("tracestate")
        upstream = parsed.get("upstream")
        if upstream:
            parent_span_id = upstream.get("parent_span_id")
            clock = [(str(c), int(n)) for c, n in upstream.get("clock") or ()]
    component = _clock_component(service_name, instance_id)
    if not any(c == component for c, _ in clock):
        clock.append((component, 0))
    return ParsedTraceContext(trace_id, span_id, parent_span_id, tracestate, clock, distributed)


def build_propagation_headers(
    *,
    trace_id: str,
    current_span_id: str,
    tracestate: Optional[str],
    clock_vector: List[Tuple[str, int]],
    service_name: str,
    instance_id: str,
) -> PropagationHeaders:
    """Headers for one outgoing call: ``traceparent`` (a new span id for the callee),
    ``raceway-clock`` (``clock_vector`` with this service's component counted up) and
    ``tracestate`` when given. Ids that are not valid W3C ids are replaced as in
    `create_context` (derived from the string, one WARNING). If the core cannot encode them
    (a name it refuses, a failed core), ``headers`` is empty and the clock is still counted."""
    next_clock = increment_clock_vector(clock_vector, service_name=service_name, instance_id=instance_id)
    child = new_span_id()
    request = {
        "trace_id": valid_or_derived(trace_id, "trace_id"),
        "parent_span_id": valid_or_derived(current_span_id, "span_id"),
        "span_id": child,
        "flags": 1,
        "tracestate": tracestate,
        "service": service_name,
        "instance": instance_id,
        "clock": [[c, n] for c, n in next_clock],
    }
    headers: Dict[str, str] = {}
    codec = _codec()
    if codec is not None:
        try:
            headers = codec.encode_outgoing(request)
        except Exception as e:
            log.warning("raceway: trace_context: cannot build propagation headers: %s", e)
    return PropagationHeaders(headers, next_clock, child)


def increment_clock_vector(
    clock_vector: List[Tuple[str, int]], *, service_name: str, instance_id: str
) -> List[Tuple[str, int]]:
    """A new list: ``clock_vector`` with the ``service_name#instance_id`` component counted up
    by one (added with 1 when absent). The input is not changed."""
    component = _clock_component(service_name, instance_id)
    updated: List[Tuple[str, int]] = []
    found = False
    for entry, value in clock_vector:
        if entry == component:
            updated.append((entry, value + 1))
            found = True
        else:
            updated.append((entry, value))
    if not found:
        updated.append((component, 1))
    return updated
