"""What a client lends its helpers (raceway/_recorder.py): the recorder, its one accessor, and
muting that covers the helpers' path as well as the client's own methods."""

from __future__ import annotations

import gc
import logging
import weakref
from typing import Any, List

import pytest

import raceway
from raceway import Config, RacewayClient
from raceway._recorder import EventRecorder, recorder_of, warn_once
from raceway._recording import record_event


def _idle_client() -> RacewayClient:
    """No endpoint, and a flusher that does not wake on its own: what is recorded stays in the log."""
    return RacewayClient(Config(endpoint=None, batch_size=10**6, flush_interval=3600, report_races_at_shutdown=False))


class _Double:
    """A test double: the public tracking methods, no recorder."""

    def __init__(self) -> None:
        self.calls: List[Any] = []

    def track_state_change(self, variable: str, old_value: Any, new_value: Any, access_type: str = "Write") -> None:
        self.calls.append((variable, old_value, new_value, access_type))


def test_the_accessor_finds_a_clients_recorder_and_nothing_else() -> None:
    client = _idle_client()
    try:
        recorder = recorder_of(client)
        assert isinstance(recorder, EventRecorder)
        assert recorder.queue is client._queue  # the log the hot path appends to
        assert recorder_of(_Double()) is None
        assert recorder_of(None) is None
        assert recorder_of(object()) is None
    finally:
        client.shutdown(timeout=5)


def test_helpers_and_the_client_append_to_one_log_located_at_the_application() -> None:
    client = _idle_client()
    try:
        recorder = recorder_of(client)
        assert recorder is not None
        d = raceway.shared({"k": 1}, "d", client=client)
        with client.trace() as ctx:
            client.track_custom("by-the-client")
            recorder.record(ctx, "Custom", ("by-a-helper", {}))
            d["k"] = 2
            assert record_event(client, ctx, "Custom", ("through-record-event", {}))
        kinds = [(r[8], r[9]) for r in client._queue]  # kind, first field (records are flat)
        assert ("Custom", "by-the-client") in kinds
        assert ("Custom", "by-a-helper") in kinds
        assert ("Custom", "through-record-event") in kinds
        assert ("StateChange", "d['k']") in kinds
        helper = next(r for r in client._queue if r[9] == "by-a-helper")
        assert helper[6] == __file__  # the caller's frame, not the recorder's
        seqs = [r[2] for r in client._queue if r[0] is ctx.row]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # one sequence per context
    finally:
        client.shutdown(timeout=5)


def test_a_shut_down_client_records_nothing_through_any_path() -> None:
    client = _idle_client()
    recorder = recorder_of(client)
    assert recorder is not None and recorder.active
    d = raceway.shared({"k": 1}, "d", client=client)
    with client.trace() as ctx:
        client.shutdown(timeout=5)
        assert not recorder.active
        before = len(recorder.queue)
        client.track_state_change("x", 1, 2)
        client.track_custom("late")
        recorder.record(ctx, "Custom", ("late", {}))
        recorder.append(ctx, ("f.py", 1, "m", None, "f.py:1 in f"), "Custom", ("late", {}))
        d["k"] = 3
        record_event(client, ctx, "Custom", ("late", {}))
        client.fork(ctx)
        assert len(recorder.queue) == before


def test_a_disabled_client_mutes_its_recorder() -> None:
    client = _idle_client()
    recorder = recorder_of(client)
    assert recorder is not None
    with client.trace() as ctx:
        client._disable("a test turned it off")  # what a core failure does
        recorder.record(ctx, "Custom", ("late", {}))
        assert not recorder.active and len(recorder.queue) == 0
        assert recorder.codec is None and client._codec is None


def test_a_test_double_gets_the_public_call() -> None:
    double = _Double()
    d = raceway.shared({"k": 1}, "d", client=double)
    client = _idle_client()
    try:
        with client.trace():
            d["k"] = 2
    finally:
        client.shutdown(timeout=5)
    assert ("d['k']", None, 2, "Write") in double.calls
    ctx = raceway.create_context()
    assert record_event(double, ctx, "Custom", ("x", {})) is False  # type: ignore[arg-type]


def test_warn_once_logs_once_per_key_through_the_recorder(caplog: pytest.LogCaptureFixture) -> None:
    client = _idle_client()
    try:
        with caplog.at_level(logging.ERROR, logger="raceway"):
            for _ in range(3):
                warn_once(client, "k", "raceway: trouble %d", 1)
                warn_once(_Double(), "k", "raceway: a double's trouble")
        assert [r.getMessage() for r in caplog.records].count("raceway: trouble 1") == 1
        assert [r.getMessage() for r in caplog.records].count("raceway: a double's trouble") == 3
    finally:
        client.shutdown(timeout=5)


def test_the_exit_and_fork_hooks_hold_the_client_weakly() -> None:
    client = _idle_client()
    client.shutdown(timeout=5)
    ref = weakref.ref(client)
    del client
    gc.collect()
    assert ref() is None  # the hooks registered with atexit and os.register_at_fork keep no client alive


def test_every_append_path_wakes_the_flusher_again_after_it_waited() -> None:
    """An append that wakes the flusher raises the log's wake-up size to its limit, so the
    appends made while it works pay no call (`EventRecorder.arm`); the flusher lowers it again
    before it waits. Each burst here is a batch recorded through one of the four append paths
    after the flusher went back to waiting: with a 60 s interval, it arrives only if that
    burst's own appends woke the flusher (a missed re-arm leaves it asleep until the test's
    deadline)."""
    import threading
    import time

    from raceway.shared_state import record_to
    from raceway.primitives import instrument_primitives
    from raceway.testing import CollectorServer

    with CollectorServer() as server:
        client = RacewayClient(
            Config(endpoint=server.url, batch_size=20, max_batch_size=20, flush_interval=60, detect_races=False)
        )
        try:
            recorder = recorder_of(client)
            assert recorder is not None
            previous = record_to(client)
            (lock,) = instrument_primitives(client, threading.Lock())  # primitives' own append
            d = raceway.shared({"k": 0}, "d", client=client)  # _recording.emit
            paths = {
                "the client's inline path": lambda i: client.track_state_change("x", i, i + 1),
                "EventRecorder.append": lambda i: client.track_custom("c", {"i": i}),
                "_recording.emit": lambda i: d.__setitem__("k", i),
                "primitives": lambda i: lock.acquire() and lock.release(),
            }
            for rounds in range(2):
                for name, append in paths.items():
                    deadline = time.monotonic() + 20
                    while recorder.wake_at != recorder.batch and time.monotonic() < deadline:
                        time.sleep(0.001)  # the flusher's cycle ends, and it arms before it waits
                    assert recorder.wake_at == recorder.batch, name
                    before = len(server.events)
                    with client.trace():
                        for i in range(40):
                            append(i)
                    # A batch arrives without a flush (what is left of the burst after the
                    # flusher's cycle began may wait for the next append or the interval).
                    assert server.wait_for(lambda s: len(s.events) >= before + 20, timeout=20), name
                    assert client._wake_at == recorder.wake_at  # the client's copy follows
        finally:
            record_to(previous)
            client.shutdown(timeout=5)


def test_records_appended_while_the_flusher_works_are_taken_without_waiting_for_the_interval() -> None:
    """Appends made while the flusher works do not wake it (`EventRecorder.arm`): what they
    left must be taken when it is done, not after ``flush_interval``. The first request
    stalls, so the whole burst is appended while the flusher's first cycle delivers."""
    import threading
    import time

    from raceway.testing import CollectorServer, Stall

    release = threading.Event()
    with CollectorServer() as server:
        server.script(Stall(release=release))
        client = RacewayClient(
            Config(endpoint=server.url, batch_size=20, max_batch_size=20, flush_interval=60, detect_races=False)
        )
        try:
            with client.trace():
                for i in range(21):  # the 21st wakes the flusher: its cycle takes these and stalls
                    client.track_state_change("x", i, i + 1)
                deadline = time.monotonic() + 20
                while server.faults and time.monotonic() < deadline:  # until the stall has begun
                    time.sleep(0.001)
                assert not server.faults
                for i in range(400):  # appended while it delivers: none of them wakes it
                    client.track_state_change("x", i, i + 1)
            release.set()
            assert server.wait_for(lambda s: len(s.events) >= 421, timeout=20), len(server.events)
        finally:
            release.set()
            client.shutdown(timeout=5)


def test_an_append_that_loses_the_cpu_while_waking_the_flusher_leaves_it_armed() -> None:
    """`pressure` raises the wake-up size before it sets the flusher's event. In the other
    order, an application thread preempted between the two could overwrite the arm of a
    flusher that had meanwhile woken, cycled and gone back to waiting: every later batch then
    waited for ``flush_interval``. The preemption is made certain here: the recorder's handle
    on the event sleeps inside its first ``set`` (the flusher's own event is untouched)."""
    import threading
    import time

    from raceway.testing import CollectorServer

    with CollectorServer() as server:
        client = RacewayClient(
            Config(endpoint=server.url, batch_size=20, max_batch_size=20, flush_interval=60, detect_races=False)
        )
        try:
            recorder = recorder_of(client)
            assert recorder is not None and recorder.wake is not None
            real = recorder.wake

            class PreemptedInSet:
                def is_set(self) -> bool:
                    return real.is_set()

                def set(self) -> None:
                    real.set()
                    recorder.wake = real  # only this first wake is preempted
                    time.sleep(0.5)  # the flusher wakes, takes the log, arms and waits

            deadline = time.monotonic() + 20
            while recorder.wake_at != recorder.batch and time.monotonic() < deadline:
                time.sleep(0.001)
            recorder.wake = PreemptedInSet()  # type: ignore[assignment]

            def burst(n: int) -> None:
                with client.trace():
                    for i in range(n):
                        client.track_state_change("x", i, i + 1)

            t = threading.Thread(target=burst, args=(21,))
            t.start()
            t.join()
            # The 21st append woke it; the log then held the first 20 (the 21st is appended
            # after its wake): they arrive, the 21st waits for the next batch.
            assert server.wait_for(lambda s: len(s.events) >= 20, timeout=20)
            before = len(server.events)
            burst(200)  # ten batches, after the flusher went back to waiting
            assert server.wait_for(lambda s: len(s.events) >= before + 20, timeout=20), (recorder.wake_at, recorder.batch)
        finally:
            client.shutdown(timeout=5)


def test_a_batch_size_over_the_logs_limit_still_wakes_the_flusher_and_counts_drops() -> None:
    """``batch_size`` above what the log holds: an append still calls the recorder once the
    log is full (the wake-up size is at most the limit), so the flusher is woken and the
    records the full log drops are counted: nothing is lost without a count."""
    from raceway.testing import CollectorServer

    with CollectorServer() as server:
        client = RacewayClient(
            Config(endpoint=server.url, batch_size=100, max_queue_size=50, flush_interval=60, detect_races=False)
        )
        try:
            recorder = recorder_of(client)
            assert recorder is not None and recorder.wake_at <= recorder.limit
            with client.trace():
                for i in range(1000):
                    client.track_state_change("x", i, i + 1)
            assert client.flush(timeout=20)
            stats = client.stats()
            assert stats["sent"] + stats["dropped"] == 1000, stats
            assert stats["dropped"] > 0 and stats["sent"] == len(server.events)
        finally:
            client.shutdown(timeout=5)
