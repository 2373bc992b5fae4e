"""A lost update spread across two services, found from both services' records files:
two concurrent requests to ``api`` each read alice's balance through ``ledger`` and then ask
``ledger`` to store the balance they computed. Each service alone shows no lost update (the
api only reads, the ledger only writes); ``python -m raceway analyze api.jsonl ledger.jsonl``
puts both in one order and finds it, with the read in the api and both writes in the ledger.
Real processes, real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).parent


def start(role, tmp_path, *extra):
    port_file = tmp_path / f"{role}.port"
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "_ledger_services.py"), role, str(port_file), str(tmp_path / f"{role}.jsonl"),
         *extra],
        stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while not (port_file.exists() and port_file.read_text()):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "service did not start"
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port_file.read_text()}"


def stop(proc):
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    assert proc.stderr.read() == ""


def analyze(*files):
    done = subprocess.run([sys.executable, "-m", "raceway", "analyze", "--json", *map(str, files)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_check_in_one_service_and_an_act_in_another_is_a_lost_update(tmp_path):
    ledger, ledger_url = start("ledger", tmp_path)
    try:
        api, api_url = start("api", tmp_path, ledger_url)
        try:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            answers = []
            threads = [threading.Thread(target=lambda a=a: answers.append(
                opener.open(urllib.request.Request(f"{api_url}/debit/{a}", method="POST", data=b""),
                            timeout=30).status)) for a in (100, 250)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert answers == [200, 200]
        finally:
            stop(api)
    finally:
        stop(ledger)

    both = analyze(tmp_path / "api.jsonl", tmp_path / "ledger.jsonl")
    lost = [r for r in both["races"] if r["kind"] == "lost-update"]
    assert len(lost) == 1, both["races"]
    read, other, write = lost[0]["accesses"]
    assert lost[0]["variable"] == "alice.balance" and lost[0]["severity"] == "CRITICAL"
    assert read["service"] == "api" and read["access_type"] == "Read"
    assert other["service"] == write["service"] == "ledger"
    assert read["trace_id"] == write["trace_id"] != other["trace_id"]  # one request's chain
    assert write["old_value"] == read["new_value"] == 1000
    for alone in ("api.jsonl", "ledger.jsonl"):
        assert not [r for r in analyze(tmp_path / alone)["races"] if r["kind"] == "lost-update"], alone
