"""The pieces of back-pressure, budgets and the spool on their own: what the server's 206 says
and how the transport reads it, the pacer's decisions, the shutdown schedule, the spool's
files (claims, journal, bad and stale files, the size bound), and the new settings."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

from raceway import Config, RacewayClient
from raceway._spool import Spool, SpoolError
from raceway._transport import Outcome, Pacer, RetryPolicy, Transport
from raceway.config import Settings
from raceway.testing import CollectorServer, QueueingCollector


def body(ids):
    return json.dumps({"events": [{"id": i} for i in ids]})


# -- the server's answers ----------------------------------------------------------------------
def test_the_queueing_collector_answers_like_the_raceway_server():
    with QueueingCollector(capacity=5, drain_rate=0.001) as server:  # drains nothing in the test
        transport = Transport(server.url, None, 5.0)
        first = transport.send(body(["a", "b", "c"]))
        second = transport.send(body(["d", "e", "f", "g"]))
        third = transport.send(body(["h"]))
        transport.close()
        queued = list(server.queue)
    assert (first.outcome, first.status) == (Outcome.SENT, 200)
    assert (second.outcome, second.status, second.accepted) == (Outcome.BACKPRESSURE, 206, 2)
    assert (third.outcome, third.accepted) == (Outcome.BACKPRESSURE, 0)
    assert queued == [{"id": i} for i in "abcde"]  # offered in order: the body's tail was refused
    assert server.answers == {200: 1, 206: 2}


def test_the_answer_text_is_the_servers():
    with QueueingCollector(capacity=2, drain_rate=0.001) as server:
        import urllib3

        http = urllib3.PoolManager()
        ok = http.request("POST", server.url + "/events", body=body(["a"]), headers={"Content-Type": "application/json"})
        partial = http.request("POST", server.url + "/events", body=body(["b", "c", "d"]))
        bad = http.request("POST", server.url + "/events", body=b"{}")
    assert (ok.status, json.loads(ok.data)) == (200, {"success": True, "data": "Ingested 1 events", "error": None})
    assert (partial.status, json.loads(partial.data)) == (
        206, {"success": True, "data": "Ingested 1 events, 2 errors", "error": None})
    assert bad.status == 422


def test_the_store_keeps_one_event_per_id():
    with QueueingCollector(capacity=100, drain_rate=10_000, step=10) as server:
        transport = Transport(server.url, None, 5.0)
        assert transport.send(body(["x", "y"])).outcome is Outcome.SENT
        assert transport.send(body(["x", "z"])).outcome is Outcome.SENT
        transport.close()
        assert server.wait_for_stored({"x", "y", "z"})
    assert sorted(server.stored) == ["x", "y", "z"] and server.arrived["x"] == 2


# -- the pacer ---------------------------------------------------------------------------------
def test_the_pacer_is_off_until_the_first_206_and_then_paces_to_what_the_server_took():
    pacer = Pacer()
    now = 0.0
    for _ in range(40):  # 2,000 events taken in 0.4 s: 5,000/s
        pacer.before_send(50, now)
        pacer.accepted(50, now)
        now += 0.01
    assert pacer.rate is None and pacer.delay(now) == 0
    pacer.backpressure(50, 10, now)
    assert pacer.rate is not None and 0.7 * 4_000 < pacer.rate < 0.7 * 6_000
    assert pacer.delay(now) == pytest.approx(50 / pacer.rate)
    rate = pacer.rate
    pacer.backpressure(50, 0, now + 0.01)  # within CUT_GAP: one cut per episode
    assert pacer.rate == rate
    pacer.backpressure(50, 0, now + 0.3)
    assert pacer.rate < rate
    low = pacer.rate
    t = now + 0.3
    for _ in range(100):  # taken whole: the rate grows back
        t += pacer.delay(t)
        pacer.before_send(50, t)
        pacer.accepted(50, t)
    assert pacer.rate > low


def test_a_206_with_nothing_to_measure_holds_back_longer_each_time():
    pacer = Pacer()
    delays = []
    for k in range(8):
        pacer.backpressure(50, 0, float(k))
        delays.append(pacer.delay(float(k)))
    assert pacer.rate is None
    assert delays == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])
    pacer.accepted(50, 9.0)
    pacer.backpressure(50, 0, 10.0)
    assert pacer.delay(10.0) == pytest.approx(0.05)


def test_the_shutdown_schedule_is_short():
    final = RetryPolicy().final()
    assert final.retries == 0
    backoff = final.schedule()
    delays = [backoff.next_delay() for _ in range(10)]
    assert 0.1 <= delays[0] <= 0.2 and all(d == 0.2 for d in delays[2:])
    assert RetryPolicy(backoff=0.01, backoff_max=0.05).final().backoff_max == 0.05  # never slower than running


# -- the spool ---------------------------------------------------------------------------------
def write(spool: Spool, bodies):
    writer = spool.writer()
    for b, n in bodies:
        assert writer.add(b, n)
    return writer.commit()


def test_a_spool_file_is_written_whole_claimed_once_and_journaled(tmp_path):
    spool = Spool(str(tmp_path), "http://collector:8080", 10**6)
    path = write(spool, [(body(["a"]), 1), (body(["b", "c"]), 2), (body(["d"]), 1)])
    assert path.endswith(".spool") and not list(tmp_path.glob("*/*.tmp"))
    other = Spool(str(tmp_path), "http://collector:8080", 10**6)
    claim = spool.claim_next()
    assert claim is not None and (claim.bodies, claim.events) == (3, 4)
    assert other.claim_next() is None  # claimed by the first
    items = list(claim.items())
    assert [(i, n) for i, n, _ in items] == [(0, 1), (1, 2), (2, 1)]
    assert json.loads(items[1][2]) == {"events": [{"id": "b"}, {"id": "c"}]}
    claim.mark_done(0)
    claim.release()  # given back with its journal
    again = other.claim_next()
    assert [i for i, _, _ in again.items()] == [1, 2]
    again.mark_done(1)
    again.mark_done(2)
    assert again.finished
    again.finish()
    assert sorted(p.name for p in tmp_path.glob("*/*")) == ["ENDPOINT"]


def test_another_endpoint_has_its_own_spool(tmp_path):
    write(Spool(str(tmp_path), "http://a:1", 10**6), [(body(["a"]), 1)])
    assert Spool(str(tmp_path), "http://b:1", 10**6).claim_next() is None
    assert Spool(str(tmp_path), "http://a:1", 10**6).claim_next() is not None


def test_a_claim_of_a_dead_process_is_taken_over(tmp_path):
    spool = Spool(str(tmp_path), "http://c:1", 10**6)
    write(spool, [(body(["a"]), 1)])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (f,) = tmp_path.glob("*/*.spool")
    f.rename(f.with_name(f.name[: -len(".spool")] + f".claimed.{pid}.abcd"))
    claim = spool.claim_next()
    assert claim is not None and claim.events == 1


def test_an_unreadable_file_is_set_aside_and_reported(tmp_path):
    spool = Spool(str(tmp_path), "http://c:1", 10**6)
    path = write(spool, [(body(["a"]), 1), (body(["b"]), 1)])
    with open(path, "rb+") as f:  # cut the trailer off
        data = f.read()
        f.seek(0)
        f.truncate()
        f.write(data[: data.rindex(b'{"end"')])
    write(spool, [(body(["c"]), 1)])
    claim = spool.claim_next()
    assert claim is not None and [json.loads(b)["events"][0]["id"] for _, _, b in claim.items()] == ["c"]
    assert len(spool.bad) == 1 and "truncated" in spool.bad[0]
    assert len(list(tmp_path.glob("*/*.bad"))) == 1


def test_the_spool_is_bounded(tmp_path):
    spool = Spool(str(tmp_path), "http://c:1", 2_000)
    writer = spool.writer()
    taken = 0
    while writer.add(body(["x" * 30]), 1):
        taken += 1
    writer.commit()
    assert 0 < taken < 60 and spool.used_bytes() <= 2_000
    assert not spool.writer().add(body(["y" * 400]), 1)  # the directory as a whole is full


def test_a_spool_directory_that_cannot_be_made_is_an_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SpoolError, match="cannot use the spool directory"):
        Spool(str(blocker / "spool"), "http://c:1", 10**6).writer()


def test_a_full_or_unusable_spool_counts_the_events_as_failed_and_says_so(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with CollectorServer() as server:
        server.refuse()
        for spool_dir, max_bytes, why in ((str(blocker / "spool"), 10**6, "cannot use the spool directory"),
                                          (str(tmp_path / "small"), 1_000, "the spool is full")):
            client = RacewayClient(Config(endpoint=server.url, service_name="s", instance_id="i", detect_races=False,
                                          spool_dir=spool_dir, spool_max_bytes=max_bytes, flush_interval=0.05))
            with client.trace():
                for i in range(30):
                    client.track_state_change("x", i, i + 1, "Write")
            caplog.clear()
            with caplog.at_level(logging.ERROR, logger="raceway"):
                assert client.shutdown(0.5) is False
            stats = client.stats()
            assert stats["failed"] + stats["spooled"] == 30 and stats["failed"] > 0
            errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
            lost = [m for m in errors if "could not be delivered" in m]
            assert len(lost) == 1 and why in lost[0] and f"{stats['failed']} events" in lost[0], errors


# -- settings ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, field",
    [({"shutdown_timeout": 0}, "shutdown_timeout"), ({"shutdown_timeout": float("nan")}, "shutdown_timeout"),
     ({"shutdown_stall": -1}, "shutdown_stall"), ({"spool": "yes"}, "spool"), ({"spool_dir": ""}, "spool_dir"),
     ({"spool_max_bytes": 0}, "spool_max_bytes"), ({"spool_max_bytes": 1.5}, "spool_max_bytes")],
)
def test_the_new_settings_are_checked(kwargs, field):
    with pytest.raises(ValueError, match=field):
        Config(**kwargs)


def test_the_environment_sets_the_budget_and_the_spool(monkeypatch, tmp_path):
    monkeypatch.delenv("RACEWAY_SPOOL_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    settings = Settings.resolve(Config())
    assert settings.shutdown_timeout == 30.0
    assert settings.spool_dir == os.path.join(str(tmp_path), "raceway", "spool")
    monkeypatch.setenv("RACEWAY_SHUTDOWN_TIMEOUT", "4.5")
    monkeypatch.setenv("RACEWAY_SPOOL_DIR", str(tmp_path / "elsewhere"))
    settings = Settings.resolve(Config())
    assert (settings.shutdown_timeout, settings.spool_dir) == (4.5, str(tmp_path / "elsewhere"))
    assert Settings.resolve(Config(shutdown_timeout=2, spool_dir="/x")).shutdown_timeout == 2.0
    monkeypatch.setenv("RACEWAY_SPOOL", "off")
    assert Settings.resolve(Config()).spool_dir is None
    assert Settings.resolve(Config(spool=True)).spool_dir == str(tmp_path / "elsewhere")
    monkeypatch.setenv("RACEWAY_SPOOL", "maybe")
    with pytest.raises(ValueError, match="RACEWAY_SPOOL"):
        Settings.resolve(Config())
    monkeypatch.setenv("RACEWAY_SPOOL", "1")
    monkeypatch.setenv("RACEWAY_SHUTDOWN_TIMEOUT", "-3")
    with pytest.raises(ValueError, match="RACEWAY_SHUTDOWN_TIMEOUT"):
        Settings.resolve(Config())
