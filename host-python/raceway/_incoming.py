"""Incoming trace headers to an execution context: the one place every middleware goes through.

The W3C rules (and the raceway-clock rules) live in the core's ``parse-incoming``; this module
only gathers what the request carried and turns the core's answer into an `ExecutionContext`.
Canonical headers (the ones the core writes) are read by the host from the core's template
(`raceway._headers.IncomingTemplate`), which answers exactly what the core would; anything
else goes to the core.
It passes every value of each trace header, in order, with the name lower-cased: a repeated
``traceparent`` must reach the core as two values, or it could not be refused.

It never raises: a missing core (the client failed open) or a core error means a new trace, so
the request is still served.
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Tuple

from ._client_protocol import ClientLike
from ._core_types import IncomingJSON
from ._headers import IncomingTemplate
from ._recorder import recorder_of, warn_once
from .context import ExecutionContext

if TYPE_CHECKING:
    from ._core import CoreInstance

log = logging.getLogger("raceway")

TRACE_HEADERS = ("traceparent", "tracestate", "raceway-clock")
"""The only header names the core reads: nothing else is sent across the boundary."""

_WSGI_KEYS = {"HTTP_" + name.upper().replace("-", "_"): name for name in TRACE_HEADERS}
_BYTE_NAMES = {name.encode("latin-1"): name for name in TRACE_HEADERS}


def gather(pairs: Iterable[Tuple[Any, Any]]) -> Dict[str, List[str]]:
    """Every value of each trace header from ``(name, value)`` pairs (str or bytes), in order.

    Names match case-insensitively; other spellings (``trace-parent``) are not the header."""
    found: Dict[str, List[str]] = {}
    for name, value in pairs:
        # bytes.lower() changes ASCII letters only, as str.lower() does to any character of
        # latin-1 that could lower-case to a trace header's (ASCII) name.
        key = _BYTE_NAMES.get(name.lower()) if name.__class__ is bytes else name.lower()
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


_PROBE_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
PROBES: Tuple[Dict[str, List[str]], ...] = (
    {"traceparent": [_PROBE_TRACEPARENT]},
    {
        "traceparent": [_PROBE_TRACEPARENT],
        "tracestate": ["congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"],
        "raceway-clock": [
            "v1;eyJ0cmFjZV9pZCI6IjBhZjc2NTE5LTE2Y2QtNDNkZC04NDQ4LWViMjExYzgwMzE5YyIsInNwYW5faWQiOiJiN2FkNmI3MT"
            "Y5MjAzMzMxIiwicGFyZW50X3NwYW5faWQiOiI1Y2ExYjE3Y2E4NGNhNWU1Iiwic2VydmljZSI6ImJhbmtpbmctYXBpIiwiaW5z"
            "dGFuY2UiOiJob3N0LTEiLCJjbG9jayI6W1siYmFua2luZy1hcGkjaG9zdC0xIiwyXV19"
        ],
    },
    {"tracestate": ["a=1"]},
)
"""Canonical headers the template must read, each exactly as the core does, before it is used."""

_templates: "weakref.WeakKeyDictionary[CoreInstance, Optional[IncomingTemplate]]" = weakref.WeakKeyDictionary()
"""Each codec's template (None: the core reads every header), made once per codec."""

_last: "Tuple[Optional[weakref.ref[CoreInstance]], Optional[IncomingTemplate]]" = (None, None)
"""The codec asked last and its template: a process has one client, so one codec, and this
lookup costs less than `_templates`'."""


def template_of(codec: "CoreInstance") -> Optional[IncomingTemplate]:
    """``codec``'s incoming-header template, made once per codec (one component call, plus one
    per `PROBES` entry); None when the core cannot make one, Python cannot read its patterns,
    or it reads a probe otherwise than the core (logged at WARNING): the core then reads every
    header, slower but right."""
    global _last
    ref, template = _last
    if ref is not None and ref() is codec:
        return template
    try:
        template = _templates[codec]
    except KeyError:
        template = _templates[codec] = _make_template(codec)
    except TypeError:  # not a CoreInstance (a test's stand-in): nothing to cache it by
        return _make_template(codec)
    _last = (weakref.ref(codec), template)
    return template


def _make_template(codec: "CoreInstance") -> Optional[IncomingTemplate]:
    try:
        template = IncomingTemplate(codec.incoming_template())
        for headers in PROBES:
            mine, core = template.parse(headers), codec.parse_incoming(headers)
            if mine != core:
                log.warning(
                    "raceway: the incoming-header template disagrees with the core (%r: %r vs %r); "
                    "the core reads every header (slower)",
                    headers,
                    mine,
                    core,
                )
                return None
        return template
    except Exception as e:  # a core that cannot make one, a pattern Python cannot read
        log.debug("raceway: no incoming-header template (%s: %s); the core reads every header", type(e).__name__, e)
        return None


def context_from_headers(client: Optional[ClientLike], headers: Dict[str, List[str]]) -> ExecutionContext:
    """The execution context of a request that carried ``headers`` (from `gather`).

    With a valid ``traceparent``: its trace id, the span id the caller minted for us as our
    span, its flags (sampled and random kept), the validated ``tracestate``, and from a valid
    ``raceway-clock`` the caller's span (our upstream) and clock. Otherwise a new trace, and
    whatever ``tracestate`` came is dropped. The headers are read by the template of the core
    instance of ``client``'s recorder when they are canonical, else by that core instance; a
    client without one (a test double, None) starts new traces."""
    recorder = recorder_of(client)
    codec = recorder.codec if recorder is not None else None
    identity = getattr(client, "identity", None)
    if codec is None or not headers:
        return ExecutionContext.new_trace(identity)
    try:
        template = template_of(codec)
        found = template.read(headers) if template is not None else None
        parsed = codec.parse_incoming(headers) if found is None else None
    except Exception as e:  # a core failure must not fail the request
        warn_once(client, "parse-incoming", "raceway: cannot read incoming trace headers: %s", e)
        return ExecutionContext.new_trace(identity)
    if parsed is not None:
        return _from_answer(client, parsed, identity)
    if found is None or isinstance(found, str):  # NO_TRACEPARENT
        return ExecutionContext.new_trace(identity)
    trace_id, span_id, flags, tracestate, upstream = found
    if upstream is None:
        return ExecutionContext(trace_id, span_id, None, tracestate, flags, (), identity)
    return ExecutionContext(trace_id, span_id, upstream[1], tracestate, flags, upstream[4], identity)


def _from_answer(client: Optional[ClientLike], parsed: IncomingJSON, identity: Optional[str]) -> ExecutionContext:
    """The context ``parse-incoming``'s answer ``parsed`` describes (see `context_from_headers`)."""
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
