"""The Python side of examples/traced-server.mjs: a small banking service under raceway's WSGI
middleware, so a request through the Node gateway is one trace across both languages.

    .venv/bin/python host-node/examples/python_service.py --port 8000 [--endpoint URL]

``GET /balance/<name>`` reads a balance (recorded as a ``Read`` of ``<name>.balance``) and
answers it with the trace id and span this service continued. Events go to ``--endpoint``
(default ``$RACEWAY_ENDPOINT``; without either, nothing is sent).
"""

from __future__ import annotations

import argparse
import json
import os
import socketserver
from wsgiref.simple_server import WSGIServer, make_server

from raceway import Config, RacewayClient, get_context
from raceway.middleware import RacewayWSGIMiddleware


class Threaded(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


def make_app(client: RacewayClient):
    balances = {"alice": 1000, "bob": 250}

    def app(environ, start_response):
        name = environ.get("PATH_INFO", "/").rstrip("/").rsplit("/", 1)[-1]
        if name not in balances:
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [json.dumps({"error": f"no account {name!r}"}).encode()]
        client.track_state_change(f"{name}.balance", None, balances[name], "Read")
        ctx = get_context()
        body = {"account": name, "balance": balances[name], "trace_id": ctx.trace_id if ctx else None,
                "span_id": ctx.span_id if ctx else None, "upstream_span_id": ctx.upstream_span_id if ctx else None}
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--endpoint", default=os.environ.get("RACEWAY_ENDPOINT"))
    args = parser.parse_args()
    client = RacewayClient(Config(endpoint=args.endpoint, service_name="py-bank", instance_id="py-1"))
    server = make_server("127.0.0.1", args.port, RacewayWSGIMiddleware(make_app(client), client=client),
                         server_class=Threaded)
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        client.shutdown()


if __name__ == "__main__":
    main()
