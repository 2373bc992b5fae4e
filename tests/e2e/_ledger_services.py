"""Two services for the cross-service lost-update test, each its own process: ``api`` checks
a balance (it reads it from ``ledger``) and then acts (asks ``ledger`` to store the new
balance). Run as ``python _ledger_services.py ROLE PORT_FILE EVENTS_FILE [LEDGER_URL]``: it
serves on 127.0.0.1 (a free port, written to PORT_FILE) until its stdin closes.

The seed's pattern across a service boundary: the read is recorded where the value is read
(the api), the write where it is written (the ledger), with the value the api read as its
``old_value``; the api's calls carry the trace headers (``raceway.request``), so the ledger's
write happens after the api's read.
"""

from __future__ import annotations

import json
import socketserver
import sys
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from raceway import Config, RacewayClient
from raceway.middleware import RacewayWSGIMiddleware


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):  # keep stderr for real problems
        pass


class Threaded(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


def ledger_app(client):
    balance = {"alice": 1000}
    lock = threading.Lock()

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/balance":
            body = {"balance": balance["alice"]}
        elif path == "/store":
            data = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
            with lock:  # each store is atomic: the race is in the check-then-act across services
                balance["alice"] = data["new"]
            client.track_state_change("alice.balance", data["old"], data["new"], "Write")
            body = {"stored": data["new"]}
        else:
            body = {"error": path}
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]

    return app


def api_app(client, ledger, barrier):
    def app(environ, start_response):
        amount = int(environ["PATH_INFO"].rsplit("/", 1)[-1])
        current = client.request("GET", f"{ledger}/balance", timeout=10).json()["balance"]
        client.track_state_change("alice.balance", None, current, "Read")
        barrier.wait(timeout=10)  # both requests have checked: the race window, made certain
        client.request("POST", f"{ledger}/store", json={"old": current, "new": current - amount}, timeout=10)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"debited": amount}).encode()]

    return app


def main() -> None:
    role, port_file, events_file = sys.argv[1:4]
    client = RacewayClient(Config(endpoint=None, service_name=role, instance_id=f"{role}-1",
                                  events_file=events_file, report_races_at_shutdown=False,
                                  flush_interval=0.05))
    if role == "ledger":
        app = ledger_app(client)
    else:
        app = api_app(client, sys.argv[4], threading.Barrier(2))
    server = make_server("127.0.0.1", 0, RacewayWSGIMiddleware(app, client=client),
                         server_class=Threaded, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with open(port_file, "w") as f:
        f.write(str(server.server_address[1]))
    sys.stdin.read()  # until the test closes our stdin
    server.shutdown()
    client.shutdown(timeout=10)


if __name__ == "__main__":
    main()
