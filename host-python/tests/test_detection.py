"""The in-process race detector through the client: what `races()` and `race_report()` say
about real threads and event loops, strands that share one context, annotations, retirement of
joined strands, suppressions, the report at shutdown, and the events file. Real threads, real
loops, the built component; clocks checked on what arrived at a real collector."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from _servers import body, concurrent, kind
from raceway import Config, ContextAwareThread, RacewayClient, get_context, tracked_lock
from raceway.context import MAX_INHERITED


def local(make_client, **kwargs):
    kwargs.setdefault("endpoint", None)
    kwargs.setdefault("report_races_at_shutdown", False)
    return make_client(**kwargs)


def summary(races):
    return sorted((r.kind, r.severity, r.variable) for r in races)


def run_strands(client, *targets):
    """Runs each ``(function, args)`` on a `ContextAwareThread` of its own and joins them all."""
    threads = [ContextAwareThread(target=fn, args=args, client=client) for fn, args in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def unsynchronised(client, variable, barrier):
    value = 0
    client.track_state_change(variable, None, value, "Read")
    barrier.wait()
    client.track_state_change(variable, value, value + 1, "Write")


# -- one context on several strands ------------------------------------------------------------
def test_copy_context_run_in_a_plain_pool_gives_each_thread_its_own_strand(collector, make_client):
    """OpenTelemetry's documented fix: two pool threads run in copies of ONE context. Each
    must record on a child of its own, so their race is visible (and the clocks say so)."""
    client = make_client(endpoint=collector.url, report_races_at_shutdown=False)
    barrier = threading.Barrier(2)
    with client.trace() as root:
        client.track_state_change("before", None, 1, "Write")
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(contextvars.copy_context().run, unsynchronised, client, "n", barrier)
                       for _ in range(2)]
            for f in futures:
                f.result()
        client.track_state_change("after", None, 1, "Write")
        assert get_context() is root  # the owner stays on its own context
    assert ("lost-update", "CRITICAL", "n") in summary(client.races())
    assert ("data-race", "CRITICAL", "n") in summary(client.races())
    assert client.flush(timeout=10)
    writes = [e for e in collector.events if kind(e) == "StateChange" and body(e)["variable"] == "n"
              and body(e)["access_type"] == "Write"]
    assert len(writes) == 2
    threads = {e["metadata"]["thread_id"] for e in writes}
    assert len(threads) == 2 and root.thread_id not in threads
    assert concurrent(writes[0], writes[1])


def test_gather_on_a_loop_nobody_instrumented_gives_each_task_its_own_strand(make_client):
    client = local(make_client)

    async def task(n):
        value = 0
        client.track_state_change("total", None, value, "Read")
        await asyncio.sleep(0.01)
        client.track_state_change("total", value, value + n, "Write")
        return get_context()

    async def main():
        with client.trace() as root:
            a, b = await asyncio.gather(task(1), task(2))
        return root, a, b

    root, a, b = asyncio.run(main())
    assert len({root.thread_id, a.thread_id, b.thread_id}) == 3
    assert ("lost-update", "CRITICAL", "total") in summary(client.races())


def test_one_context_set_in_two_threads_by_hand(make_client):
    """`set_context` of one context in two threads (the reference SDK's pattern): two strands."""
    from raceway import set_context

    client = local(make_client)
    barrier = threading.Barrier(2)
    with client.trace() as shared:
        def run():
            set_context(shared)
            unsynchronised(client, "hand", barrier)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert ("data-race", "CRITICAL", "hand") in summary(client.races())


# -- the rules, end to end -----------------------------------------------------------------------
def test_the_seed_transfer_under_two_critical_sections_is_a_lost_update_with_three_locations(make_client):
    client = local(make_client)
    lock = threading.Lock()
    barrier = threading.Barrier(2)
    accounts = {"alice": 1000}

    def transfer(amount):
        with tracked_lock(client, lock, "accounts"):
            balance = accounts["alice"]
            client.track_state_change("alice.balance", None, balance, "Read")
        barrier.wait()
        with tracked_lock(client, lock, "accounts"):
            accounts["alice"] = balance - amount
            client.track_state_change("alice.balance", balance, balance - amount, "Write")

    with client.trace():
        threads = [ContextAwareThread(target=transfer, args=(a,), client=client) for a in (100, 250)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    (race,) = client.races()
    assert (race.kind, race.severity, race.variable, race.count) == ("lost-update", "CRITICAL", "alice.balance", 1)
    read, other, write = race.accesses
    assert read.thread_id == write.thread_id != other.thread_id
    assert read.access_type == "Read" and other.access_type == write.access_type == "Write"
    assert read.locks == write.locks == ("accounts",)
    assert all(a.location.startswith(__file__) for a in race.accesses)
    assert read.stack and read.stack[0].endswith("in test_the_seed_transfer_under_two_critical_sections_is_a_lost_update_with_three_locations.<locals>.transfer")
    assert write.old_value == 1000 and other.new_value != write.old_value
    report = client.race_report()
    assert "LOST UPDATE" in report and "alice.balance" in report and read.location in report


def test_one_lock_across_read_and_write_reports_nothing(make_client):
    client = local(make_client)
    lock = threading.Lock()
    accounts = {"alice": 1000}

    def transfer(amount):
        with tracked_lock(client, lock, "accounts"):
            balance = accounts["alice"]
            client.track_state_change("alice.balance", None, balance, "Read")
            accounts["alice"] = balance - amount
            client.track_state_change("alice.balance", balance, balance - amount, "Write")

    with client.trace():
        threads = [ContextAwareThread(target=transfer, args=(a,), client=client) for a in (100, 250, 50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert client.races() == []
    assert "no races" in client.race_report().lower()


def test_annotations_order_a_hand_off_the_sdk_cannot_see(make_client):
    client = local(make_client)
    box = []
    handed = threading.Event()

    def producer():
        box.append(1)
        client.track_state_change("box", None, 1, "Write")
        client.happens_before(("box", 1))
        handed.set()

    def consumer():
        handed.wait()
        client.happens_after(("box", 1))
        client.track_state_change("box", 1, 1, "Read")

    with client.trace():
        threads = [ContextAwareThread(target=f, client=client) for f in (consumer, producer)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert client.races() == []

    # The same without the annotation is a race.
    handed.clear()
    with client.trace():
        threads = [ContextAwareThread(target=f, client=client)
                   for f in (lambda: (handed.wait(), client.track_state_change("bare", None, 1, "Read")),
                             lambda: (client.track_state_change("bare", None, 1, "Write"), handed.set()))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert summary(client.races()) == [("data-race", "WARNING", "bare")]


def test_thousands_of_joined_threads_keep_clocks_short_and_order_stays_exact(make_client):
    """Retirement: past MAX_INHERITED components a context forgets joined strands, and the
    detector still orders every joined strand's writes before what follows the join."""
    client = local(make_client)
    n = 4 * MAX_INHERITED

    def work(i):
        client.track_state_change("x", i, i + 1, "Write")

    with client.trace() as root:
        for i in range(n):
            t = ContextAwareThread(target=work, args=(i,), client=client)
            t.start()
            t.join()
        assert len(root.state[0]) <= MAX_INHERITED
        client.track_state_change("x", n, n + 1, "Write")
        late = ContextAwareThread(target=work, args=(n + 1,), client=client)
        late.start()
        late.join()
        racer = ContextAwareThread(target=work, args=(0,), client=client)
        racer.start()
        client.track_state_change("x", 0, 1, "Write")  # not joined yet: races with the thread
        racer.join()
    assert summary(client.races()) == [("data-race", "CRITICAL", "x")]
    assert client.stats()["failed"] == 0


# -- configuration, reports, suppressions --------------------------------------------------------
def test_suppressions_silence_matching_races_and_unmatched_rules_are_reported(make_client, tmp_path):
    rules = tmp_path / "raceway.supp"
    rules.write_text("# known\nvariable:cache.*\nvariable:never.matches\n")
    client = local(make_client, suppressions=str(rules))
    barrier = threading.Barrier(2)
    with client.trace():
        run_strands(client, *((unsynchronised, (client, v, barrier)) for v in ("cache.hits", "cache.hits")))
    assert client.races() == []
    report = client.race_report()
    assert "never.matches" in report


@pytest.mark.parametrize("content", ["nonsense without a type\n", None])
def test_a_bad_or_missing_suppressions_file_is_said_and_races_are_still_found(make_client, tmp_path, caplog, content):
    rules = tmp_path / "bad.supp"
    if content is not None:
        rules.write_text(content)
    with caplog.at_level(logging.ERROR, logger="raceway"):
        client = local(make_client, suppressions=str(rules))
    assert any("bad.supp" in r.getMessage() for r in caplog.records)
    barrier = threading.Barrier(2)
    with client.trace():
        run_strands(client, *[(unsynchronised, (client, "still", barrier))] * 2)
    assert ("lost-update", "CRITICAL", "still") in summary(client.races())


def test_the_report_is_logged_at_shutdown_when_there_are_races(tmp_path, caplog):
    client = RacewayClient(Config(endpoint=None, service_name="svc"))
    barrier = threading.Barrier(2)
    with client.trace():
        run_strands(client, *[(unsynchronised, (client, "shut", barrier))] * 2)
    with caplog.at_level(logging.WARNING, logger="raceway"):
        client.shutdown(timeout=5)
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("shut" in m and "LOST UPDATE" in m for m in logged), logged


def test_detection_off_finds_nothing_and_still_delivers(collector, make_client):
    client = make_client(endpoint=collector.url, detect_races=False)
    barrier = threading.Barrier(2)
    with client.trace():
        run_strands(client, *[(unsynchronised, (client, "off", barrier))] * 2)
    assert client.races() == []
    assert client.flush(timeout=10)
    assert sum(1 for e in collector.events if kind(e) == "StateChange") == 4


def test_the_events_file_holds_every_batch_the_detector_saw(make_client, tmp_path):
    path = tmp_path / "events.jsonl"
    client = local(make_client, events_file=str(path))
    with client.trace():
        for i in range(120):
            client.track_state_change("v", i, i + 1, "Write")
    assert client.flush(timeout=10)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines and all(line["raceway"] == "records/1" for line in lines)
    assert sum(len(line["events"]) for line in lines) == 120
    assert lines[0]["process"]["service_name"] == "test-svc"


@pytest.mark.parametrize("field,value", [
    ("race_stack_frames", -1), ("race_stack_frames", 65), ("race_stack_frames", True),
    ("detect_races", "yes"), ("report_races_at_shutdown", 1), ("events_file", ""),
    ("suppressions", 5), ("events_file_max_bytes", 0), ("events_file_backups", -1),
])
def test_detector_settings_are_checked(field, value):
    with pytest.raises(ValueError, match=field):
        Config(**{field: value})


def test_environment_variables_name_the_events_file_and_suppressions(monkeypatch, tmp_path):
    from raceway.config import Settings

    monkeypatch.setenv("RACEWAY_EVENTS_FILE", str(tmp_path / "e.jsonl"))
    monkeypatch.setenv("RACEWAY_SUPPRESSIONS", str(tmp_path / "s.supp"))
    settings = Settings.resolve(Config(endpoint=None))
    assert settings.events_file == str(tmp_path / "e.jsonl")
    assert settings.suppressions == str(tmp_path / "s.supp")
    assert Settings.resolve(Config(endpoint=None, events_file="x.jsonl")).events_file == "x.jsonl"


def test_hundreds_of_distinct_races_are_answered_without_tripping_the_sandbox(make_client):
    """The answer of `races()` grows with the races found: its budget must not be the one for
    a small call (it trapped at a few hundred races and turned the client off)."""
    client = local(make_client)

    def writes(k):
        for i in range(700):
            client.track_state_change(f"v{i}", i, i + k, "Write")

    with client.trace():
        threads = [ContextAwareThread(target=writes, args=(k,), client=client) for k in (1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(client.races()) == 700
    with client.trace():
        client.track_state_change("after", None, 1, "Write")
    assert client.flush(timeout=10) and client.stats()["failed"] == 0


def test_released_strands_are_forgotten_without_inventing_races(make_client):
    """With far more strands than the detector keeps (`max_strands`), a counter under one lock
    taken by 200 strands in turn is still race-free (released strands count as ordered before
    everything, and clocks drop them), and a race between two live strands is still found."""
    from raceway import _records
    from raceway._detector import Detector

    client = make_client(endpoint=None, detect_races=False, flush_interval=3600.0, batch_size=10**6)
    lock = threading.Lock()
    total = {"n": 0}

    def locked_increment():
        with tracked_lock(client, lock, "counter-lock"):
            value = total["n"]
            client.track_state_change("counter", None, value, "Read")
            total["n"] = value + 1
            client.track_state_change("counter", value, value + 1, "Write")

    barrier = threading.Barrier(2)
    with client.trace():
        for _ in range(200):  # one after another, none joined: they end and are never seen again
            t = threading.Thread(target=contextvars.copy_context().run, args=(locked_increment,))
            t.start()
            t.join()
        run_strands(client, *[(unsynchronised, (client, "last", barrier))] * 2)
    records = list(client._queue)
    detector = Detector({"max_strands": 16})
    for text, _part in _records.encode_parts(records, 160):
        detector.observe(text)
    assert summary(detector.races()) == [("data-race", "CRITICAL", "last"), ("data-race", "WARNING", "last"),
                                          ("lost-update", "CRITICAL", "last")]
    stats = detector.findings()["stats"]
    assert stats["strands"] <= 16 and stats["accesses"] >= 400  # the 200 strands did record


def test_races_waits_for_the_flusher_only_when_something_is_pending(make_client):
    """Everything recorded before `races()` is analysed first; asked again with nothing recorded
    since (the plugin asks at teardown and for the report), it answers without a hand-off."""
    client = local(make_client, flush_interval=3600)
    flusher = client._flusher
    flushes = []
    real_analyse = flusher.analyse_here

    def counted(timeout):
        flushes.append(timeout)
        return real_analyse(timeout)

    flusher.analyse_here = counted
    with client.trace():
        barrier = threading.Barrier(2)
        run_strands(client, (unsynchronised, (client, "x", barrier)), (unsynchronised, (client, "x", barrier)))
    assert {r.variable for r in client.races()} == {"x"}
    assert len(flushes) == 1
    assert {r.variable for r in client.races()} == {"x"}
    assert "x" in client.race_report()
    assert len(flushes) == 1  # nothing recorded since: answered directly
    with client.trace():
        barrier = threading.Barrier(2)
        run_strands(client, (unsynchronised, (client, "y", barrier)), (unsynchronised, (client, "y", barrier)))
    assert {r.variable for r in client.races()} == {"x", "y"}
    assert len(flushes) == 2


def test_races_asked_while_threads_record_sees_each_strands_events_in_order(make_client):
    """races() asked again and again while three threads record a lock-protected counter: every
    answer is empty. Whoever takes the records to the core (the flusher, or the asking thread)
    must hand them over in the order they were recorded; a release seen after the acquire that
    followed it would make the counter look racy."""
    client = local(make_client, batch_size=7)
    lock = threading.Lock()
    box = {"n": 0}
    asked_once = threading.Event()

    def bump():
        for i in range(2000):  # 24,000 events in all: the log never fills
            if i == 1000:
                asked_once.wait(10)  # the second half is recorded while races() is being asked
            with tracked_lock(client, lock, "box"):
                old = box["n"]
                client.track_state_change("box.n", None, old, "Read")
                box["n"] = old + 1
                client.track_state_change("box.n", old, old + 1, "Write")

    with client.trace():
        threads = [ContextAwareThread(target=bump, client=client) for _ in range(3)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            assert client.races(timeout=10) == []
            asked_once.set()
        for t in threads:
            t.join()
    assert client.races(timeout=10) == []
    stats = client.stats()
    assert stats["recorded"] == 3 * 2000 * 4 + 6 and stats["dropped"] == 0  # and 3 spawns, 3 joins
