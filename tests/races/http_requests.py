"""Two concurrent HTTP requests through the project's middleware: a tiny WSGI application
under `raceway.middleware.RacewayWSGIMiddleware` (each request is an execution context of its
own), served by ``wsgiref`` with one thread per request on 127.0.0.1 (a free port).

``POST /reserve`` reads the stock, waits until the other request has read it too (a barrier
in the handler), and writes ``stock - 1``. Both requests run at once.

Verdict: the requests are unordered strands: read/write (WARNING) and write/write (CRITICAL)
data races, and the second write is a lost update (CRITICAL): two reservations, one unit sold.
"""

import http.client
import socketserver
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from raceway.middleware import RacewayWSGIMiddleware

from _corpus_support import TIMEOUT

EXPECT = [
    ("lost-update", "CRITICAL", "inventory.stock"),
    ("data-race", "CRITICAL", "inventory.stock"),
    ("data-race", "WARNING", "inventory.stock"),
]


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def run(client):
    inventory = {"stock": 10}
    both_read = threading.Barrier(2, timeout=TIMEOUT)

    def app(environ, start_response):
        stock = inventory["stock"]
        client.track_state_change("inventory.stock", None, stock, "Read")
        both_read.wait()
        inventory["stock"] = stock - 1
        client.track_state_change("inventory.stock", stock, stock - 1, "Write")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"reserved"]

    server = make_server("127.0.0.1", 0, RacewayWSGIMiddleware(app, client=client),
                         server_class=_Server, handler_class=_Quiet)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    serving.start()
    statuses = []

    def reserve():
        conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=TIMEOUT)
        try:
            conn.request("POST", "/reserve", body=b"")
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
        finally:
            conn.close()

    try:
        requests = [threading.Thread(target=reserve) for _ in range(2)]
        for t in requests:
            t.start()
        for t in requests:
            t.join(TIMEOUT)
    finally:
        server.shutdown()
        server.server_close()
        serving.join(TIMEOUT)
    assert statuses == [200, 200]
    assert inventory["stock"] == 9  # one reservation was lost
