"""Outgoing trace headers from a template the core made: per call, only the new span id and
the sender's counter change, so the host fills them in instead of calling the component
(~9 µs a call) for every outgoing request.

The core stays the one authority on the formats: it makes the template (``outgoing-template``
in wit/raceway.wit) from the same code that encodes headers directly (``encode-outgoing``), and
the filled-in headers are byte for byte what the core would have returned (pinned by
tests/test_vectors.py over every outgoing vector). This module only joins strings and applies
base64url, as the WIT describes.
"""

from __future__ import annotations

import binascii
from typing import Dict, Optional

from ._core_types import OutgoingTemplateJSON

_URLSAFE = bytes.maketrans(b"+/", b"-_")


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
