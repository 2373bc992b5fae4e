"""The spool across real processes: a process that exits while the collector is down leaves
its events in the spool and the next process with the same endpoint and spool delivers them
first, exactly once; a process killed (SIGKILL) while writing the spool leaves a spool the next
one reads; an exit under gevent is delivered and quiet. Real processes, real sockets on
127.0.0.1; the collector's port is kept across its outage (`refuse` / `restore`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from conftest import assert_valid_batch
from raceway.testing import CollectorServer

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from raceway import Config, RacewayClient

    endpoint, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    kill_after = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    if kill_after:  # SIGKILL this process in the middle of writing its spool file
        from raceway import _spool
        add = _spool.Writer.add
        def add_then_die(self, body, events):
            if self.bodies == kill_after:
                self._file.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return add(self, body, events)
        _spool.Writer.add = add_then_die
    client = RacewayClient(Config(endpoint=endpoint, service_name="spool-test", flush_interval=0.05,
                                  detect_races=False))
    with client.trace() as ctx:
        for i in range(n):
            client.track_state_change("counter", i, i + 1, "Write")
    with open(out, "w") as f:
        f.write(ctx.id_base)
    # no shutdown(): the process just ends
    """
)


def ids_of(id_base: str, n: int) -> List[str]:
    base = int(id_base, 16)
    return [str(uuid.UUID(int=(base + seq) % 2**128)) for seq in range(1, n + 1)]


def run(url: str, out: Path, n: int, env: Dict[str, str], kill_after: int = 0,
        script: str = CHILD) -> subprocess.CompletedProcess:
    args = [sys.executable, "-c", script, url, str(out), str(n)] + ([str(kill_after)] if kill_after else [])
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)


def spool_env(spool: Path, budget: Optional[str] = "2") -> Dict[str, str]:
    env = dict(os.environ, RACEWAY_SPOOL_DIR=str(spool))
    if budget is not None:
        env["RACEWAY_SHUTDOWN_TIMEOUT"] = budget  # the exit budget, short: the collector is down
    return env


def files(spool: Path, pattern: str) -> List[Path]:
    return sorted(spool.glob(f"*/{pattern}"))


def test_events_of_a_process_that_exits_during_an_outage_arrive_with_the_next_process_once(tmp_path):
    spool = tmp_path / "spool"
    with CollectorServer() as server:
        server.refuse()
        first = run(server.url, tmp_path / "a", 500, spool_env(spool))
        assert first.returncode == 0, first.stderr
        # Said once, at exit, with the reason and where the events are (the application
        # configured no logging: Python's last-resort handler prints WARNING and above).
        lines = [line for line in first.stderr.splitlines() if line.strip()]
        assert any("500 events could not be delivered before the process exited" in line and "in the spool" in line
                   for line in lines), first.stderr
        assert "Traceback" not in first.stderr
        assert len(files(spool, "*.spool")) == 1 and not server.arrived

        server.restore()
        second = run(server.url, tmp_path / "b", 100, spool_env(spool, budget=None))
        assert second.returncode == 0, second.stderr
        assert second.stderr == ""
        third = run(server.url, tmp_path / "c", 10, spool_env(spool, budget=None))
        assert third.returncode == 0, third.stderr

    expected = (ids_of((tmp_path / "a").read_text(), 500) + ids_of((tmp_path / "b").read_text(), 100)
                + ids_of((tmp_path / "c").read_text(), 10))
    assert sorted(server.arrived) == sorted(expected)
    assert set(server.arrived.values()) == {1}  # exactly once
    # The spooled events went first, before the second process's own.
    order = [e["id"] for e in server.events]
    spooled = set(ids_of((tmp_path / "a").read_text(), 500))
    assert set(order[:500]) == spooled
    assert not files(spool, "*.spool") and not files(spool, "*.claimed.*") and not files(spool, "*.journal")
    for batch in server.batches:
        assert_valid_batch(batch)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_process_killed_while_spooling_leaves_a_spool_the_next_process_reads(tmp_path):
    spool = tmp_path / "spool"
    with CollectorServer() as server:
        server.refuse()
        first = run(server.url, tmp_path / "a", 300, spool_env(spool))
        assert first.returncode == 0, first.stderr
        # The second process claims the first one's file (the collector is still down), gives
        # it back at exit, and is killed while writing its own.
        killed = run(server.url, tmp_path / "b", 2_000, spool_env(spool), kill_after=3)
        assert killed.returncode == -signal.SIGKILL
        assert len(files(spool, "*.spool")) == 1  # the first process's, complete
        assert len(files(spool, "*.spool.tmp")) == 1  # the killed write, never made visible

        server.restore()
        third = run(server.url, tmp_path / "c", 50, spool_env(spool, budget=None))
        assert third.returncode == 0, third.stderr
        assert third.stderr == ""  # a readable spool: nothing to report

    first_ids = ids_of((tmp_path / "a").read_text(), 300)
    third_ids = ids_of((tmp_path / "c").read_text(), 50)
    assert sorted(server.arrived) == sorted(first_ids + third_ids)  # the killed process's events are lost
    assert set(server.arrived.values()) == {1}
    assert not files(spool, "*.spool.tmp")  # its writer is gone: swept
    assert not files(spool, "*.spool") and not files(spool, "*.claimed.*")


GEVENT_CHILD = "from gevent import monkey\nmonkey.patch_all()\n" + CHILD


def test_an_exit_under_gevent_delivers_and_prints_nothing(tmp_path):
    pytest.importorskip("gevent")
    with CollectorServer() as server:
        proc = run(server.url, tmp_path / "a", 300, spool_env(tmp_path / "spool", budget=None), script=GEVENT_CHILD)
    assert proc.returncode == 0
    assert proc.stderr == "" and proc.stdout == ""
    assert sorted(server.arrived) == sorted(ids_of((tmp_path / "a").read_text(), 300))


def test_an_exit_under_gevent_during_an_outage_spools_quietly_but_for_the_loss(tmp_path):
    pytest.importorskip("gevent")
    spool = tmp_path / "spool"
    with CollectorServer() as server:
        server.refuse()
        proc = run(server.url, tmp_path / "a", 200, spool_env(spool), script=GEVENT_CHILD)
    assert proc.returncode == 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    # The outage warning and the spooled events, nothing else (no traceback, no "Exception ignored").
    assert len(lines) == 2, proc.stderr
    assert "cannot deliver events" in lines[0] and "200 events could not be delivered" in lines[1]
    assert len(files(spool, "*.spool")) == 1
