"""A service for the W3C Trace Context conformance harness, traced by Raceway.

    .venv/bin/python examples/trace_context_service.py --port 7777

The harness POSTs a JSON array like ``[{"url": "http://127.0.0.1:7778/test", "arguments": []}]``
with trace headers set. For each element, in order, this service POSTs ``arguments`` as JSON to
``url`` with ``raceway.request()`` (which adds exactly one ``traceparent`` and the validated
``tracestate``) and waits for the answer; then it answers the harness.

Everything trace-related is the SDK's: the pure ASGI middleware reads the incoming headers
through the core (new trace on an invalid ``traceparent``, ``tracestate`` validated or dropped)
and `raceway.request()` mints a new span per call. The calls run in ``asyncio.to_thread`` (the
``requests`` library blocks), which the middleware gives a child context of the request's.

Events go to ``--endpoint`` (default ``$RACEWAY_ENDPOINT``; without either, nothing is sent).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
from typing import Any, List

from raceway import Config, RacewayClient
from raceway.middleware import RacewayASGIMiddleware

log = logging.getLogger("trace_context_service")

CALL_TIMEOUT = 4.0
"""Seconds one callback may take: the harness gives the whole exchange five."""


def make_app(client: RacewayClient) -> Any:
    """The ASGI application, under the Raceway middleware."""

    def call_back(items: List[Any]) -> List[str]:
        outcomes = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("url"), str):
                outcomes.append("skipped: not {url, arguments}")
                continue
            try:
                response = client.request("POST", item["url"], json=item.get("arguments", []), timeout=CALL_TIMEOUT)
                outcomes.append(f"{response.status_code}")
            except Exception as e:  # one failing callback must not stop the others
                log.warning("callback to %s failed: %s", item["url"], e)
                outcomes.append(f"failed: {type(e).__name__}")
        return outcomes

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            items = json.loads(body or b"[]")
            if not isinstance(items, list):
                raise ValueError("expected a JSON array")
        except ValueError as e:
            await _answer(send, 400, {"error": str(e)})
            return
        outcomes = await asyncio.to_thread(call_back, items)
        await _answer(send, 200, {"callbacks": outcomes})

    return RacewayASGIMiddleware(app, client=client)


async def _answer(send: Any, status: int, payload: Any) -> None:
    data = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--endpoint", default=os.environ.get("RACEWAY_ENDPOINT"),
                        help="Raceway server URL (default: $RACEWAY_ENDPOINT; none: send nothing)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import uvicorn

    client = RacewayClient(Config(endpoint=args.endpoint, service_name="trace-context-service"))
    try:
        uvicorn.run(make_app(client), host="127.0.0.1", port=args.port, log_level="warning")
    finally:
        client.shutdown(timeout=5)


if __name__ == "__main__":
    main()
