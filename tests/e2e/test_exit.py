"""A process that records events and exits without calling ``shutdown()`` still delivers them:
a plain interpreter exit (atexit) and a forked multiprocessing worker (which ends with
``os._exit``, skipping atexit). Real processes, a real server on 127.0.0.1."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import List

import pytest

from conftest import assert_valid_batch
from raceway import RacewayClient

CHILD = textwrap.dedent(
    """
    import sys
    from raceway import Config, RacewayClient

    endpoint, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    # A long interval and big batches: nothing is sent before the interpreter exits.
    client = RacewayClient(Config(endpoint=endpoint, service_name="exit-test", flush_interval=60.0, batch_size=10_000))
    with client.trace() as ctx:
        for i in range(n):
            client.track_state_change("counter", i, i + 1, "Write")
    with open(out, "w") as f:
        f.write(ctx.id_base)
    # no shutdown(), no flush(): the script just ends
    """
)


def ids_of(id_base: str, n: int) -> List[str]:
    base = int(id_base, 16)
    return [str(uuid.UUID(int=(base + seq) % 2**128)) for seq in range(1, n + 1)]


def test_a_script_that_exits_without_shutdown_delivers_its_events(collector, tmp_path):
    out = tmp_path / "id_base"
    n = 500
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, collector.url, str(out), str(n)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # the SDK never prints
    assert set(collector.arrived) == set(ids_of(out.read_text(), n))
    for batch in collector.batches:
        assert_valid_batch(batch)


def _record_in_worker(client: RacewayClient, out: str, n: int) -> None:
    with client.trace() as ctx:
        for i in range(n):
            client.track_state_change("counter", i, i + 1, "Write")
    Path(out).write_text(ctx.id_base)
    # returns without shutdown(): multiprocessing then ends the process with os._exit


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs the fork start method")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # 3.12+: fork with threads
def test_a_forked_multiprocessing_worker_delivers_its_events_at_exit(collector, make_client, tmp_path):
    client = make_client(endpoint=collector.url, flush_interval=60.0, batch_size=10_000)
    out = tmp_path / "id_base"
    n = 300
    worker = multiprocessing.get_context("fork").Process(target=_record_in_worker, args=(client, str(out), n))
    worker.start()
    worker.join(timeout=120)
    assert worker.exitcode == 0
    expected = set(ids_of(out.read_text(), n))
    assert set(collector.arrived) == expected
    assert {e["metadata"]["process_id"] for e in collector.events} == {worker.pid}
