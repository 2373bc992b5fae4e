"""Trace headers from templates the core made, so that the common case costs no component call
(~9 µs at the least, ~23 µs to read a traceparent and a raceway-clock) per request or call.

Outgoing (`OutgoingTemplate`): per call, only the new span id and the sender's counter change,
so the host fills them in. The core makes the template (``outgoing-template`` in
wit/raceway.wit) from the same code that encodes headers directly (``encode-outgoing``), and
the filled-in headers are byte for byte what the core would have returned (pinned by
tests/test_vectors.py over every outgoing vector).

Incoming (`IncomingTemplate`): the core gives the strict shapes of canonical headers (those it
writes itself, when no name needs an escape) as patterns, and the WIT's ``incoming-template``
says what ``parse-incoming`` answers for headers that match them; the host matches and reads
the groups, and passes anything else to the core. So the core stays the one authority on the
formats: the host never decides that a header is invalid, only that it is the simple case.
Pinned by tests/test_incoming_template.py over every incoming vector and generated headers.

This module only matches, slices and joins strings and applies base64url, as the WIT describes.
"""

from __future__ import annotations

import binascii
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple, TypeAlias, cast

from ._core_types import ClockEntryJSON, IncomingJSON, IncomingTemplateJSON, OutgoingTemplateJSON, UpstreamJSON

_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


class OutgoingTemplate:
    """The headers of one context in one state (``ExecutionContext.state``), ready to fill.

    :param answer: the core's ``outgoing-template`` answer (`OutgoingTemplateJSON`):
        ``{"traceparent": [before, after], "raceway_clock": {"head", "middle", "tail"},
        "tracestate": str | None}``.
    """

    __slots__ = ("before", "after", "head", "middle", "tail", "tracestate")

    def __init__(self, answer: OutgoingTemplateJSON) -> None:
        self.before, self.after = answer["traceparent"]
        clock = answer["raceway_clock"]
        self.head = clock["head"].encode()
        self.middle = clock["middle"].encode()
        self.tail = clock["tail"].encode()
        self.tracestate: Optional[str] = answer.get("tracestate")

    def headers(self, span_id: str, counter: int) -> Dict[str, str]:
        """``traceparent``, ``raceway-clock`` (and ``tracestate`` when there is one) for a call
        with the new span ``span_id`` (16 lower-case hex digits) and the sender's ``counter``."""
        span = span_id.encode()
        json = b"".join((self.head, span, self.middle, b"%d" % counter, self.tail))
        encoded = binascii.b2a_base64(json, newline=False).translate(_URLSAFE).rstrip(b"=")
        headers = {"traceparent": f"{self.before}{span_id}{self.after}", "raceway-clock": "v1;" + encoded.decode()}
        if self.tracestate is not None:
            headers["tracestate"] = self.tracestate
        return headers


Clock: TypeAlias = Tuple[Tuple[str, int], ...]
"""A vector clock as `raceway.context.ExecutionContext` holds it: ``(component, counter)`` pairs."""

Upstream: TypeAlias = Tuple[str, Optional[str], str, str, Clock]
"""What a canonical ``raceway-clock`` says: ``(span_id, parent_span_id, service, instance,
clock)``, as ``parse-incoming``'s ``upstream`` (`UpstreamJSON`) has them."""

Incoming: TypeAlias = Tuple[str, str, int, Optional[str], Optional[Upstream]]
"""What canonical headers with a ``traceparent`` say: ``(trace_id, span_id, flags,
tracestate, upstream)``, as ``parse-incoming``'s ``parent`` (`ParentJSON`, version 00),
``tracestate`` and ``upstream`` have them."""

NO_TRACEPARENT = "no traceparent"
"""`IncomingTemplate.read`'s answer for canonical headers without a ``traceparent``: a new
trace, and nothing to report."""


class IncomingTemplate:
    """Reads canonical incoming headers as the core would (see the module docstring).

    :param answer: the core's ``incoming-template`` answer (`IncomingTemplateJSON`): five
        patterns. Raises ``re.error`` if Python cannot read one (the caller then asks the core
        for every request).
    """

    __slots__ = ("traceparent", "tracestate", "clock", "clock_json", "entries")

    def __init__(self, answer: IncomingTemplateJSON) -> None:
        self.traceparent = re.compile(answer["traceparent"]).fullmatch
        self.tracestate = re.compile(answer["tracestate"]).fullmatch
        self.clock = re.compile(answer["raceway_clock"]).fullmatch
        # The payload's patterns are over its bytes (one character per byte, as the WIT says):
        # bounds on names count bytes, as the core's do.
        self.clock_json = re.compile(answer["raceway_clock_json"].encode("ascii")).fullmatch
        self.entries = re.compile(answer["clock_entry"].encode("ascii")).findall

    def read(self, headers: Mapping[str, Any]) -> "Incoming | str | None":
        """What ``headers`` (each trace header's values, as `raceway._incoming.gather` makes
        them) say when they are canonical: an `Incoming`, or `NO_TRACEPARENT`; None when they
        are not, and only the core can say what they mean. Never raises. (A tuple, not
        ``parse-incoming``'s JSON: this runs per request, and the caller wants the values.)"""
        values = headers.get("traceparent")
        tracestate = headers.get("tracestate")
        clock = headers.get("raceway-clock")
        if len(headers) != (values is not None) + (tracestate is not None) + (clock is not None):
            return None  # another name: only the core knows what the mix means
        if values is None:
            return NO_TRACEPARENT
        if type(values) is not list or len(values) != 1 or type(values[0]) is not str:
            return None
        m = self.traceparent(values[0])
        if m is None:
            return None
        if tracestate is not None:
            if type(tracestate) is not list or len(tracestate) != 1 or type(tracestate[0]) is not str:
                return None
            tracestate = tracestate[0]
            if self.tracestate(tracestate) is None:
                return None
        hex_id, span_id, flags = m.groups()
        trace_id = f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}"
        if clock is None:
            return (trace_id, span_id, int(flags, 16), tracestate, None)
        if type(clock) is not list or len(clock) != 1 or type(clock[0]) is not str:
            return None
        c = self.clock(clock[0])
        if c is None:
            return None
        payload: str = c.group(1)  # base64url's alphabet only
        try:  # a length one more than a multiple of 4 raises, as the core refuses it
            data = binascii.a2b_base64(payload.encode("ascii").translate(_FROM_URLSAFE) + b"=" * (-len(payload) % 4))
        except binascii.Error:
            return None
        j = self.clock_json(data)
        if j is None:
            return None
        clock_trace, up_span, up_parent, service, instance, entries = j.groups()
        if clock_trace != trace_id.encode("ascii"):
            return None
        try:  # names are the only places the payload may hold other than ASCII
            upstream = (
                up_span.decode("ascii"),
                up_parent.decode("ascii") if up_parent is not None else None,
                service.decode("utf-8"),
                instance.decode("utf-8"),
                tuple([(name.decode("utf-8"), int(n)) for name, n in self.entries(entries)]),
            )
        except UnicodeDecodeError:
            return None
        return (trace_id, span_id, int(flags, 16), tracestate, upstream)

    def parse(self, headers: Mapping[str, Any]) -> Optional[IncomingJSON]:
        """`read` as ``parse-incoming``'s answer (`IncomingJSON`), which it equals for every
        canonical input (tests/test_incoming_template.py); None when not canonical."""
        found = self.read(headers)
        if found is None:
            return None
        if isinstance(found, str):
            return {"parent": None, "tracestate": None, "upstream": None, "errors": []}
        trace_id, span_id, flags, tracestate, up = found
        upstream: Optional[UpstreamJSON] = None
        if up is not None:
            upstream = {
                "span_id": up[0],
                "parent_span_id": up[1],
                "service": up[2],
                "instance": up[3],
                # Lists, as the core's JSON decodes (`ClockEntryJSON` types their positions).
                "clock": cast(List[ClockEntryJSON], [list(entry) for entry in up[4]]),
            }
        return {
            "parent": {"trace_id": trace_id, "span_id": span_id, "flags": flags, "version": "00"},
            "tracestate": tracestate,
            "upstream": upstream,
            "errors": [],
        }
