"""The seed's distributed example as three processes, for tests/e2e/test_three_services.py:
``gateway`` (Flask, `flask_middleware`, werkzeug) takes an order, reserves it at ``inventory``
and charges it at ``payment`` with `client.request()`; ``inventory`` (FastAPI,
`FastAPIMiddleware`, uvicorn, an instrumented loop) picks the order's 500 bins in 500
concurrent asyncio tasks, joins them, and asks ``payment`` to authorize with httpx through
`raceway.instrument_http`; ``payment`` (Flask under `RacewayWSGIMiddleware`, werkzeug)
authorizes and charges. All three report to one collector, with an API key.

Run as ``python _three_services.py ROLE PORT_FILE COLLECTOR_URL [INVENTORY_URL] [PAYMENT_URL]``:
it serves on 127.0.0.1 (a free port, written to PORT_FILE) until its stdin closes, then
delivers what it recorded and exits.

Every service answers what it received: the trace headers (each value, and their sizes),
whether the API key reached it, and its context (trace, span, upstream span, component).
"""

import asyncio
import logging
import socket
import sys
import threading
from typing import Any, Dict, Iterable, Tuple

from raceway import Config, RacewayClient, get_context

KEY = "e2e-api-key-for-the-collector-only"
BINS = 500
TRACE_HEADERS = ("traceparent", "tracestate", "raceway-clock")


def received(pairs: Iterable[Tuple[str, str]]) -> Dict[str, Any]:
    pairs = [(k.lower(), v) for k, v in pairs]
    ctx = get_context()
    return {
        "headers": {name: [v for k, v in pairs if k == name] for name in TRACE_HEADERS},
        "key_seen": any(KEY in v for _, v in pairs) or any(k in ("authorization", "x-raceway-key") for k, _ in pairs),
        "context": {"trace_id": ctx.trace_id, "span_id": ctx.span_id, "upstream": ctx.upstream_span_id,
                    "component": ctx.component, "thread_id": ctx.thread_id},
    }


def gateway(client: RacewayClient, inventory: str, payment: str) -> Any:
    from flask import Flask, jsonify, request

    from raceway.middleware import flask_middleware

    app = Flask("gateway")
    flask_middleware(client, app)

    @app.post("/checkout")
    def checkout() -> Any:
        order = request.get_json()["orderId"]
        seen = received(request.headers.items())
        client.track_function_call("checkout", {"orderId": order})
        client.track_state_change("order.status", None, "new", "Write")
        reserved = client.request("POST", f"{inventory}/reserve", json={"orderId": order}, timeout=60)
        client.track_state_change("order.status", "new", "reserved", "Write")
        charged = client.request("POST", f"{payment}/charge", json={"orderId": order, "amount": 42}, timeout=60)
        client.track_state_change("order.status", "reserved", "paid", "Write")
        return jsonify({"received": seen, "inventory": reserved.json(), "payment": charged.json(),
                        "status": [reserved.status_code, charged.status_code]})

    return app


def inventory(client: RacewayClient, payment: str) -> Any:
    import httpx
    from fastapi import FastAPI, Request

    import raceway
    from raceway.middleware import FastAPIMiddleware

    raceway.instrument_http(client)
    app = FastAPI()
    app.add_middleware(FastAPIMiddleware, client=client)

    @app.post("/reserve")
    async def reserve(request: Request) -> Dict[str, Any]:  # (a real annotation: FastAPI reads it)
        order = (await request.json())["orderId"]
        seen = received(request.headers.items())
        client.track_function_call("reserve", {"orderId": order})

        alive = [0, 0]  # tasks running now, most at once

        async def pick(i: int) -> str:
            alive[0] += 1
            alive[1] = max(alive)
            client.track_state_change(f"bin.{i}", None, i, "Read")
            await asyncio.sleep(0)
            alive[0] -= 1
            return get_context().thread_id

        pickers = await asyncio.gather(*(pick(i) for i in range(BINS)))  # 500 tasks, joined
        client.track_state_change("stock", 10, 9, "Write")
        async with httpx.AsyncClient(timeout=60) as http:
            authorized = await http.post(f"{payment}/authorize", json={"orderId": order})
        client.track_state_change("stock.reserved", None, order, "Write")
        return {"received": seen, "payment": authorized.json(), "status": authorized.status_code,
                "pickers": len(set(pickers)), "at_once": alive[1]}

    return app


def payment(client: RacewayClient) -> Any:
    from flask import Flask, jsonify, request

    from raceway.middleware import RacewayWSGIMiddleware

    app = Flask("payment")

    @app.post("/authorize")
    def authorize() -> Any:
        seen = received(request.headers.items())
        client.track_state_change("card.hold", None, request.get_json()["orderId"], "Write")
        return jsonify({"received": seen})

    @app.post("/charge")
    def charge() -> Any:
        seen = received(request.headers.items())
        client.track_state_change("card.charged", None, request.get_json()["amount"], "Write")
        return jsonify({"received": seen})

    app.wsgi_app = RacewayWSGIMiddleware(app.wsgi_app, client=client)  # type: ignore[method-assign]
    return app


def serve_wsgi(app: Any) -> Tuple[int, Any]:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server.server_port, server.shutdown


def serve_asgi(app: Any) -> Tuple[int, Any]:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, http="h11", lifespan="off", log_level="critical", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        thread.join(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    return sock.getsockname()[1], stop


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    role, port_file, collector = sys.argv[1:4]
    client = RacewayClient(Config(endpoint=collector, api_key=KEY, service_name=role, instance_id=f"{role}-1",
                                  flush_interval=0.05, report_races_at_shutdown=False))
    if role == "gateway":
        port, stop = serve_wsgi(gateway(client, sys.argv[4], sys.argv[5]))
    elif role == "inventory":
        port, stop = serve_asgi(inventory(client, sys.argv[4]))
    else:
        port, stop = serve_wsgi(payment(client))
    with open(port_file, "w") as f:
        f.write(str(port))
    sys.stdin.read()  # until the test closes our stdin
    stop()
    if not client.shutdown(timeout=20):
        sys.exit("not everything was delivered")


if __name__ == "__main__":
    main()
