"""docs/auto.md's worked example: the seed's banking service with no tracking calls at all.

The README's ``POST /transfer`` handler (and `raceway.demo`'s), minus every Raceway call: it
reads the sender's balance, works for a moment, writes the new balance, then credits the
receiver. The service is served by the standard library (``wsgiref``, one thread per request)
and three transfers arrive at once. The only Raceway line is ``raceway.shared`` around the
accounts. Under ``pytest --raceway``, ``test_transfers`` fails with the lost update on
``accounts['alice']['balance']``; ``test_transfers_locked`` (one ``threading.Lock`` around the
read and the write) passes.

`test_pytest_plugin.py` runs this file as a small project.
"""

import json
import socketserver
import threading
import time
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import raceway

OPENING = {"alice": 1000, "bob": 0, "carol": 0, "dave": 0}
TRANSFERS = [("alice", "bob", 100), ("alice", "carol", 250), ("alice", "dave", 50)]


class Bank:
    def __init__(self, locked=False):
        self.accounts = raceway.shared({name: {"balance": b} for name, b in OPENING.items()}, "accounts", deep=True)
        self.lock = threading.Lock() if locked else None

    def transfer(self, source, target, amount):
        if self.lock is None:
            self._move(source, target, amount)
        else:
            with self.lock:
                self._move(source, target, amount)

    def _move(self, source, target, amount):
        balance = self.accounts[source]["balance"]
        time.sleep(0.02)  # the work a real handler does between the read and the write
        self.accounts[source]["balance"] = balance - amount
        credit = self.accounts[target]["balance"]
        self.accounts[target]["balance"] = credit + amount

    def app(self, environ, start_response):
        size = int(environ.get("CONTENT_LENGTH") or 0)
        data = json.loads(environ["wsgi.input"].read(size))
        self.transfer(data["from"], data["to"], int(data["amount"]))
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b'{"success": true}']


class ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    """One thread per request; ``server_close()`` joins them (``block_on_close``)."""


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def run_transfers(bank):
    server = make_server("127.0.0.1", 0, bank.app, server_class=ThreadingServer, handler_class=QuietHandler)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    serving.start()
    url = f"http://127.0.0.1:{server.server_port}/transfer"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def send(source, target, amount):
        body = json.dumps({"from": source, "to": target, "amount": amount}).encode()
        with opener.open(urllib.request.Request(url, data=body, method="POST"), timeout=30) as response:
            response.read()

    clients = [threading.Thread(target=send, args=t) for t in TRANSFERS]
    for t in clients:
        t.start()
    for t in clients:
        t.join(30)
    server.shutdown()
    server.server_close()
    serving.join(5)


def test_transfers():
    bank = Bank()
    run_transfers(bank)
    assert bank.accounts["bob"]["balance"] == 100  # passes: the bug is elsewhere


def test_transfers_locked():
    bank = Bank(locked=True)
    run_transfers(bank)
    assert bank.accounts["alice"]["balance"] == 600
