"""Pure ASGI middleware: any ASGI framework (Starlette, FastAPI, Quart, Litestar, bare apps).

Pure ASGI rather than Starlette's ``BaseHTTPMiddleware``: the request runs in the server's own
task (no extra task group between the server and the app), streaming responses pass through
untouched, and the response's duration runs to its last body chunk, so a streamed body counts.
Only ``http`` scopes are traced; ``lifespan`` and ``websocket`` pass.

A middleware that Starlette/FastAPI runs outside this one (``add_middleware`` puts each new
middleware outside the ones added before) runs outside the request's context: its events are
lost, as anything outside a context is (docs/frameworks.md).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Dict

from .._client_protocol import ClientLike
from .._incoming import gather
from .._recorder import recorder_of
from ..concurrency import instrument_loop
from ._scope import Options, RequestScope

if TYPE_CHECKING:
    # Starlette's names for the ASGI shapes (mappings, as the specification has them), so that
    # ``app.add_middleware(RacewayASGIMiddleware, client=...)`` type-checks; any ASGI server
    # passes these shapes, Starlette or not.
    from starlette.types import ASGIApp, Message, Receive, Scope, Send


class RacewayASGIMiddleware:
    """``app = RacewayASGIMiddleware(app, client=raceway)``, or with Starlette/FastAPI
    ``app.add_middleware(RacewayASGIMiddleware, client=raceway)``.

    Keyword options: ``include_query``, ``response_traceparent``, ``isolate_tasks`` (see
    `raceway.middleware.Options`)."""

    def __init__(self, app: ASGIApp, client: ClientLike, **options: Any):
        self.app = app
        self.client = client
        self.recorder = recorder_of(client)
        self.options = Options(**options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        if self.options.isolate_tasks:
            instrument_loop(self.client)
        raw = scope.get("query_string") or b""
        request = RequestScope.open(
            self.client,
            gather(scope.get("headers") or ()),
            scope.get("method", "GET"),
            scope.get("path", "/"),
            raw.decode("latin-1") if isinstance(raw, bytes) else str(raw),
            self.options,
            self.recorder,
        )
        if request is None:
            await self.app(scope, receive, send)
            return
        try:  # Starlette's ``request.state.raceway_context``, as the reference SDK sets it
            scope.setdefault("state", {})["raceway_context"] = request.ctx
        except Exception:
            pass
        add_traceparent = self.options.response_traceparent
        sent: Dict[str, int] = {}

        async def traced_send(message: Message) -> None:
            kind = message.get("type")
            if kind == "http.response.start":
                sent["status"] = int(message.get("status", 0))
                if add_traceparent:
                    message = _with_traceparent(message, request.traceparent())
            await send(message)
            if kind == "http.response.body" and not message.get("more_body", False):
                sent.setdefault("end_ns", time.perf_counter_ns())

        try:
            await self.app(scope, receive, traced_send)
            request.collect()
        except BaseException as exc:
            request.collect()
            # Without a response started, the server (or an outer error middleware) answers 500.
            request.fail(exc, sent.get("status", 500), sent.get("end_ns"))
            raise
        finally:
            # Recorded when the app returns, not from inside send(): a body streamed by another
            # task (Starlette's task group) has been joined by then, so the response comes after
            # everything the request did. The duration runs to the last body chunk.
            request.finish(sent.get("status", 0), sent.get("end_ns"))
            request.deactivate()


def _with_traceparent(message: Message, value: str) -> Message:
    headers = [(k, v) for k, v in message.get("headers") or () if bytes(k).lower() != b"traceparent"]
    headers.append((b"traceparent", value.encode("latin-1")))
    message = dict(message)
    message["headers"] = headers
    return message


class FastAPIMiddleware(RacewayASGIMiddleware):
    """The reference SDK's name: ``app.add_middleware(FastAPIMiddleware, client=raceway)``.
    It is the pure ASGI middleware, so it works with streaming responses too."""
