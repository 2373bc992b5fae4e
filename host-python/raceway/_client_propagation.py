"""Outgoing trace headers of a client: `RacewayClient.propagation_headers` (from a template the
core makes once per context state, raceway/_headers.py) and `RacewayClient.request`.

A mixin of `raceway.client.RacewayClient`: the state it reads is the client's, declared here.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional

from ._core import CoreError, CoreInstance
from ._headers import OutgoingTemplate
from .config import Config, Settings
from .context import CLOCK, ExecutionContext, new_span_id, strand_context

if TYPE_CHECKING:
    import requests

log = logging.getLogger("raceway")

_compact = json.JSONEncoder(separators=(",", ":")).encode


class Propagation:
    """The headers that carry the current context to a downstream service."""

    config: Config
    settings: Settings
    _codec: Optional[CoreInstance]
    _http_session: Optional[requests.Session]
    _warn_once: Callable[..., None]

    def propagation_headers(self, extra_headers: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
        """Headers for one downstream call: ``traceparent`` (a new span id for the callee),
        ``tracestate`` when there is one, and ``raceway-clock``.
        Raises ``RuntimeError`` outside an execution context."""
        ctx = strand_context()
        if ctx is None:
            raise RuntimeError("Raceway propagation_headers() called outside of an active context")
        counter = ctx.tick()
        headers: Dict[str, str] = {}
        codec = self._codec
        if codec is not None:
            try:
                headers = self._outgoing_template(ctx, codec).headers(new_span_id(), counter)
            except CoreError as e:
                self._warn_once("encode-outgoing", "raceway: cannot build propagation headers: %s", e)
        if extra_headers:
            headers.update(extra_headers)
        return headers

    def _outgoing_template(self, ctx: ExecutionContext, codec: CoreInstance) -> OutgoingTemplate:
        """The context's header template for its current state, kept on the context: a new one
        (one call of ``codec``) only when its inherited clock or locks change (a new `State`)."""
        cached = ctx.outgoing
        state = ctx.state
        if cached is not None and cached[0] is self and cached[1] is state:
            return cached[2]
        own = ctx.component
        request = _compact(
            {
                "trace_id": ctx.trace_id,
                "parent_span_id": ctx.span_id,
                "flags": ctx.flags,
                "tracestate": ctx.tracestate,
                "service": self.settings.service_name,
                "instance": self.settings.instance_id,
                "component": own,
                "clock": [[c, n] for c, n in state[CLOCK] if c != own],
            }
        )
        template = OutgoingTemplate(codec.outgoing_template(request))
        ctx.outgoing = (self, state, template)
        return template

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
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
