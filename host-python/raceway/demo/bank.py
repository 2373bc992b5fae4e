"""``python -m raceway demo``: the README's banking service, its lost update, and the fix.

The service is a small WSGI application under `raceway.middleware.RacewayWSGIMiddleware`
(each request is an execution context), served by the standard library's ``wsgiref`` with one
thread per request on 127.0.0.1 (a free port). Its ``POST /transfer`` handler is the README's:
it reads the sender's balance, records the read, writes the new balance, records the write. A
short pause between the two (`PAUSE_SECONDS`) stands for real work and makes the interleaving
of concurrent requests near certain: three transfers out of alice's account at once each read
1000, and each write overwrites the others' -- money is created.

Then the same service runs with the whole transfer under one lock (`raceway.tracked_lock`),
held across the read and the write, and the detector reports nothing.

Only the standard library and this package are used; nothing leaves 127.0.0.1. This module
prints: it is the demo's command line, not library code.
"""

from __future__ import annotations

import json
import os
import shutil
import socketserver
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, TextIO, Tuple
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from .. import Config, RacewayClient, tracked_lock
from ..middleware import RacewayWSGIMiddleware

PAUSE_SECONDS = 0.02
"""Between the read and the write of a balance: the work a real handler does there."""

OPENING = {"alice": 1000, "bob": 0, "carol": 0, "dave": 0}
TRANSFERS: Tuple[Tuple[str, str, int], ...] = (("alice", "bob", 100), ("alice", "carol", 250), ("alice", "dave", 50))
ROUNDS = 3
"""Attempts at the racy run: a very busy machine may run the requests one after the other."""


class Bank:
    """The service's state and its transfer handler (the README's code, plus the credit)."""

    def __init__(self, client: RacewayClient, locked: bool):
        self.client = client
        self.accounts: Dict[str, Dict[str, int]] = {name: {"balance": b} for name, b in OPENING.items()}
        self.lock: Optional[threading.Lock] = threading.Lock() if locked else None

    def transfer(self, data: Dict[str, Any]) -> Dict[str, Any]:
        raceway = self.client
        raceway.track_function_call("transfer", data)
        if self.lock is None:
            self._move(data["from"], data["to"], int(data["amount"]))
        else:
            with tracked_lock(raceway, self.lock, "accounts_lock"):
                self._move(data["from"], data["to"], int(data["amount"]))
        return {"success": True}

    def _move(self, source: str, target: str, amount: int) -> None:
        raceway, accounts = self.client, self.accounts
        balance = accounts[source]["balance"]
        raceway.track_state_change(f"{source}.balance", None, balance, "Read")
        time.sleep(PAUSE_SECONDS)  # the work between the read and the write
        accounts[source]["balance"] = balance - amount
        raceway.track_state_change(f"{source}.balance", balance, balance - amount, "Write")

        credit = accounts[target]["balance"]
        raceway.track_state_change(f"{target}.balance", None, credit, "Read")
        accounts[target]["balance"] = credit + amount
        raceway.track_state_change(f"{target}.balance", credit, credit + amount, "Write")

    def balances(self) -> Dict[str, int]:
        return {name: acc["balance"] for name, acc in self.accounts.items()}

    def wsgi(self) -> Callable[..., Iterable[bytes]]:
        """The bare WSGI application: ``POST /transfer`` (JSON ``from``, ``to``, ``amount``) and
        ``GET /balances``."""

        def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            method, path = environ.get("REQUEST_METHOD"), environ.get("PATH_INFO")
            try:
                if method == "POST" and path == "/transfer":
                    size = int(environ.get("CONTENT_LENGTH") or 0)
                    body = self.transfer(json.loads(environ["wsgi.input"].read(size)))
                    status = "200 OK"
                elif method == "GET" and path == "/balances":
                    body, status = self.balances(), "200 OK"
                else:
                    body, status = {"error": "not found"}, "404 Not Found"
            except (ValueError, KeyError, TypeError) as e:
                body, status = {"error": f"bad request: {e}"}, "400 Bad Request"
            data = json.dumps(body).encode()
            start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]

        return app


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass


@contextmanager
def serve(app: Callable[..., Iterable[bytes]]) -> Iterator[str]:
    """Serves ``app`` on 127.0.0.1 (a free port), one thread per request; yields the base URL."""
    server = make_server("127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="raceway-demo-server", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1: never a proxy


def fire_transfers(url: str, transfers: Iterable[Tuple[str, str, int]] = TRANSFERS) -> List[int]:
    """Sends the transfers at the same moment (one thread each, released by a barrier);
    returns the HTTP statuses."""
    transfers = list(transfers)
    barrier = threading.Barrier(len(transfers))
    statuses = [0] * len(transfers)

    def send(i: int, source: str, target: str, amount: int) -> None:
        body = json.dumps({"from": source, "to": target, "amount": amount}).encode()
        request = urllib.request.Request(
            f"{url}/transfer", data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        barrier.wait(10)
        with _opener.open(request, timeout=30) as response:
            response.read()
            statuses[i] = response.status

    threads = [threading.Thread(target=send, args=(i, *t)) for i, t in enumerate(transfers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def _client(events_file: Optional[str] = None) -> RacewayClient:
    # The demo prints the report itself (not again as a log line at shutdown), with the two
    # frames that matter (the handler and its caller, not the server's).
    options: Dict[str, Any] = {
        "endpoint": None,
        "service_name": "banking-api",
        "instance_id": "demo-1",
        "report_races_at_shutdown": False,
        "race_stack_frames": 2,
    }
    if events_file is not None:
        options["events_file"] = events_file
    return RacewayClient(Config(**options))


def _run_round(client: RacewayClient, locked: bool) -> Bank:
    bank = Bank(client, locked)
    with serve(RacewayWSGIMiddleware(bank.wsgi(), client=client)) as url:
        fire_transfers(url)
    return bank


def _expected() -> Dict[str, int]:
    balances = dict(OPENING)
    for source, target, amount in TRANSFERS:
        balances[source] -= amount
        balances[target] += amount
    return balances


def _show_balances(bank: Bank, out: TextIO) -> bool:
    """Prints the balances against the expected ones; True when they differ (money was lost
    or made)."""
    actual, expected = bank.balances(), _expected()
    for name in OPENING:
        mark = "" if actual[name] == expected[name] else f"   <-- should be {expected[name]}"
        out.write(f"    {name:<6} {actual[name]:>5}{mark}\n")
    total, held = sum(actual.values()), sum(OPENING.values())
    verdict = "correct" if total == held else f"{total - held:+d} out of thin air"
    out.write(f"    total  {total:>5}   (the bank holds {held}: {verdict})\n")
    return actual != expected


def run(html: Optional[str] = None, out: TextIO = sys.stdout) -> int:
    """Runs the demo, printing to ``out``; writes the racy run's HTML report to ``html``.
    Returns 0 when the racy run showed a lost update and the fixed run none, else 1."""
    amounts = ", ".join(f"{a} from {s} to {t}" for s, t, a in TRANSFERS)
    out.write(
        "Raceway demo: a banking service (WSGI, one thread per request, on 127.0.0.1)\n"
        "POST /transfer reads the sender's balance, works for a moment, then writes the new\n"
        f"balance. Three transfers arrive at once: {amounts}.\n\n"
    )
    out.flush()
    tmpdir = tempfile.mkdtemp(prefix="raceway-demo-") if html else None
    events_file = os.path.join(tmpdir, "events.jsonl") if tmpdir else None

    # 1. The racy service.
    out.write("1. Without a lock\n\n")
    client = _client(events_file)
    try:
        lost = False
        for _attempt in range(ROUNDS):
            bank = _run_round(client, locked=False)
            if bank.balances() != _expected():
                lost = True
                break
            out.write("   (the requests ran one after the other this time; again)\n")
        out.write("   Balances after the transfers:\n")
        _show_balances(bank, out)
        races = client.races()
        out.write("\n" + _indent(client.race_report()) + "\n")
    finally:
        client.shutdown()
    lost_update = any(r.kind == "lost-update" and r.variable == "alice.balance" for r in races)

    # 2. The same service, the transfer under one lock held across the read and the write.
    out.write("2. With the transfer under one lock (raceway.tracked_lock, across the read and the write)\n\n")
    fixed = _client()
    try:
        bank = _run_round(fixed, locked=True)
        out.write("   Balances after the transfers:\n")
        wrong = _show_balances(bank, out)
        fixed_races = fixed.races()
        if fixed_races:
            out.write("\n" + _indent(fixed.race_report()) + "\n")
        else:
            out.write("\n   The detector reports nothing: no race.\n\n")
    finally:
        fixed.shutdown()

    if html and events_file and tmpdir:
        out.write(_write_html(events_file, html))
        shutil.rmtree(tmpdir, ignore_errors=True)
    out.flush()

    ok = lost_update and not fixed_races and not wrong
    if not ok:
        out.write(
            "The demo did not go as expected: "
            + ("no lost update was reported for alice.balance; " if not lost_update else "")
            + ("the locked run reported races; " if fixed_races else "")
            + ("the locked run lost money; " if wrong else "")
            + ("(the requests never overlapped: a very busy machine?)" if not lost else "")
            + "\n"
        )
    return 0 if ok else 1


def _write_html(events_file: str, path: str) -> str:
    """The racy run's HTML report through the ``analyze`` path (its records file)."""
    from .._analysis import InputError, analyze
    from ..report import html as html_report

    try:
        analysis = analyze([events_file], keep_batches=True)
        page = html_report.render(analysis.races, analysis.batches or [])
        with open(path, "w", encoding="utf-8") as f:
            f.write(page)
    except (InputError, OSError) as e:
        return f"Could not write the HTML report to {path}: {e}\n"
    return f"HTML report of the run without a lock: {path}\n"


def _indent(text: str, prefix: str = "   ") -> str:
    return "".join(prefix + line if line.strip() else line for line in text.splitlines(True))
