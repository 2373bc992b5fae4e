"""Incoming trace headers to an execution context: the one place every middleware goes through.

The W3C rules (and the raceway-clock rules) live in the core's ``parse-incoming``; this module
only gathers what the request carried and turns the core's answer into an `ExecutionContext`.
It passes every value of each trace header, in order, with the name lower-cased: a repeated
``traceparent`` must reach the core as two values, or it could not be refused.

It never raises: a missing core (the client failed open) or a core error means a new trace, so
the request is still served.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Iterable, List, Optional, Tuple

from ._client_protocol import ClientLike
from ._recorder import recorder_of, warn_once
from .context import ExecutionContext

log = logging.getLogger("raceway")

TRACE_HEADERS = ("traceparent", "tracestate", "raceway-clock")
"""The only header names the core reads: nothing else is sent across the boundary."""

_WSGI_KEYS = {"HTTP_" + name.upper().replace("-", "_"): name for name in TRACE_HEADERS}


def gather(pairs: Iterable[Tuple[Any, Any]]) -> Dict[str, List[str]]:
    """Every value of each trace header from ``(name, value)`` pairs (str or bytes), in order.

    Names match case-insensitively; other spellings (``trace-parent``) are not the header."""
    found: Dict[str, List[str]] = {}
    for name, value in pairs:
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        key = name.lower()
        if key in TRACE_HEADERS:
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            found.setdefault(key, []).append(value)
    return found


def gather_wsgi(environ: Dict[str, Any]) -> Dict[str, List[str]]:
    """The trace headers of a WSGI environ. A WSGI server has already joined repeated headers
    with commas; for ``tracestate`` that is the W3C combination rule, and a joined repeated
    ``traceparent`` is invalid as it must be."""
    found: Dict[str, List[str]] = {}
    for key, name in _WSGI_KEYS.items():
        value = environ.get(key)
        if isinstance(value, str):
            found[name] = [value]
    return found


def context_from_headers(client: Optional[ClientLike], headers: Dict[str, List[str]]) -> ExecutionContext:
    """The execution context of a request that carried ``headers`` (from `gather`).

    With a valid ``traceparent``: its trace id, the span id the caller minted for us as our
    span, its flags (sampled and random kept), the validated ``tracestate``, and from a valid
    ``raceway-clock`` the caller's span (our upstream) and clock. Otherwise a new trace, and
    whatever ``tracestate`` came is dropped. The headers are read by the core instance of
    ``client``'s recorder; a client without one (a test double, None) starts new traces."""
    recorder = recorder_of(client)
    codec = recorder.codec if recorder is not None else None
    identity = getattr(client, "identity", None)
    if codec is None or not headers:
        return ExecutionContext.new_trace(identity)
    try:
        parsed = codec.parse_incoming(headers)
    except Exception as e:  # a core failure must not fail the request
        warn_once(client, "parse-incoming", "raceway: cannot read incoming trace headers: %s", e)
        return ExecutionContext.new_trace(identity)
    if parsed.get("errors") and getattr(getattr(client, "config", None), "debug", False):
        log.debug("raceway: incoming trace headers: %s", "; ".join(map(str, parsed["errors"])))
    parent = parsed.get("parent")
    if not parent:
        return ExecutionContext.new_trace(identity)
    upstream = parsed.get("upstream")
    clock: Tuple[Tuple[str, int], ...] = ()
    upstream_span = None
    if upstream:
        upstream_span = upstream.get("parent_span_id")
        clock = tuple((str(c), int(n)) for c, n in upstream.get("clock") or ())
    return ExecutionContext(
        parent["trace_id"],
        parent["span_id"],
        upstream_span,
        parsed.get("tracestate"),
        int(parent.get("flags", 1)),
        clock,
        identity,
    )


def response_traceparent(ctx: ExecutionContext) -> str:
    """``traceparent`` naming this service's span, for a response header: version 00, the
    trace, our span, the sampled and random flags as received."""
    return f"00-{ctx.trace_id.replace('-', '')}-{ctx.span_id}-{ctx.flags & 0x03:02x}"
