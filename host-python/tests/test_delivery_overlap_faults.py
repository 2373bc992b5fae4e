"""Delivery overlapped with encoding, under faults (raceway/_flusher.py: `Flusher._overlap`,
`_deliver(keep=...)`, `_start_request`/`_wait`/`_finish_request`): faults that hit a request
the flusher started between two parts of a chunk, 206 back-pressure, shutdown with such a
request in flight, flush waiters, the memory bound under an outage and a slow server, records
the flusher cannot encode, detection with a server, and fork.

Everything is real: collectors on 127.0.0.1 (`raceway.testing`), the built core, the client's
own threads. To hold the flusher between two parts of a chunk, a test gives one record an int
beyond 64 bits: the core does not read that part in the pickle form, and the flusher logs that
at DEBUG on its own thread before it encodes the part as JSON; a logging handler (`PartGate`)
blocks there until the test lets it go. While it is held, the request started by `_overlap`
for the earlier parts is on the wire, and the test can wait for its answer."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from collections import Counter
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
from conftest import assert_valid_batch, wait_until

from raceway import Config, ContextAwareThread, RacewayClient
from raceway.testing import (
    CloseMidResponse,
    CollectorServer,
    Drop,
    Fault,
    QueueingCollector,
    Received,
    Reset,
    Stall,
    Status,
    core_limits,
)

BIG = 2**70
"""A value the core does not read in the pickle form: its part goes as JSON, and the flusher
says so at DEBUG (the hook `PartGate` holds)."""
GATE_AT = 700
"""Where a burst carries `BIG`: in the fifth part of 160 records. After the fourth, 640 events
wait, and `_overlap` has started the first request (500 events); the flusher is held before it
calls `_overlap` again, so that request is the one in flight."""


class PartGate(logging.Handler):
    """Blocks the flusher thread when it logs that the core did not read a part in the pickle
    form (the first time only), until `go` is set. ``hit`` is set when it blocks."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.hit = threading.Event()
        self.go = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "pickle form" in record.getMessage() and not self.hit.is_set():
            self.hit.set()
            self.go.wait(60)


@pytest.fixture
def gate() -> Iterator[PartGate]:
    logger = logging.getLogger("raceway")
    handler = PartGate()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        handler.go.set()
        logger.removeHandler(handler)
        logger.setLevel(level)


def _settings(url: str, **overrides: Any) -> Dict[str, Any]:
    """The `Config` fields these tests use, for conftest's ``make_client``."""
    settings: Dict[str, Any] = dict(
        endpoint=url,
        service_name="overlap",
        batch_size=50,
        max_batch_size=500,
        flush_interval=3600.0,
        detect_races=False,
        report_races_at_shutdown=False,
        retries=0,
        retry_backoff=0.01,
        retry_backoff_max=1.0,
        timeout=10.0,
    )
    settings.update(overrides)
    return settings


def _config(url: str, **overrides: Any) -> Config:
    return Config(**_settings(url, **overrides))


def _warm_up(client: RacewayClient, server: CollectorServer) -> None:
    """One event delivered: the connection is open and the next request is the burst's first."""
    with client.trace():
        client.track_state_change("warm-up", 0, 1, "Write")
    assert client.flush(timeout=30)
    assert server.wait_for(lambda s: len(s.batches) >= 1)


def _burst(client: RacewayClient, n: int, big_at: Optional[int] = None, variable: str = "account.balance") -> Any:
    """Records ``n`` events in one new trace while the flusher cannot take any (its cycle lock
    is held), so its next cycle finds them all; the event at ``big_at`` carries `BIG`. Returns
    its context."""
    flusher = client._flusher
    assert flusher is not None
    with flusher._cycle_lock:
        with client.trace() as ctx:
            for i in range(n):
                client.track_state_change(variable, BIG if i == big_at else i, i + 1, "Write")
    flusher.wake.set()
    return ctx


def _chain(events: List[Dict[str, Any]], ctx: Any) -> List[str]:
    """The ids of one single-strand context's events that arrived, in recording order (an
    event's id is its context's id base plus its sequence number); checks that each one's
    ``parent_id`` is the event recorded just before it."""
    base = int(ctx.id_base, 16)
    seq = {
        e["id"]: (int(e["id"].replace("-", ""), 16) - base) % 2**128 for e in events if e["trace_id"] == ctx.trace_id
    }
    by_seq = {n: event_id for event_id, n in seq.items()}
    for e in events:
        if e["id"] in seq and seq[e["id"]] > 0 and seq[e["id"]] - 1 in by_seq:
            assert e["parent_id"] == by_seq[seq[e["id"]] - 1]
    return sorted(seq, key=seq.__getitem__)


def _delivered_in_order(server: CollectorServer, chain: List[str]) -> List[str]:
    """The trace's ids in the order the server first accepted them (``arrived`` is a Counter:
    its keys keep their first insertion's order); asserts they are in recording order."""
    position = {event_id: i for i, event_id in enumerate(chain)}
    with server._cond:
        arrived = [event_id for event_id in server.arrived if event_id in position]
    assert [position[i] for i in arrived] == sorted(position[i] for i in arrived), "delivered out of order"
    return arrived


def _held_request(client: RacewayClient, gate: PartGate) -> Any:
    """Waits until the flusher is held between two parts with a request started by `_overlap`
    on the wire, and until that request is answered; returns the flight."""
    flusher = client._flusher
    assert flusher is not None
    assert gate.hit.wait(30), "the flusher never reached the part with the big int"
    flight = flusher._in_flight_request
    assert flight is not None, "no request was started while the chunk was encoded"
    assert flight.job is not None and flight.job[3].wait(30), "the request started by _overlap was never answered"
    return flight


def _stats_add_up(stats: Dict[str, int]) -> None:
    assert stats["queued"] == stats["pending"] == 0
    assert stats["recorded"] == stats["sent"] + stats["dropped"] + stats["failed"] + stats["spooled"], stats


# ------------------------------------------------------------------------------------------------
# Faults on a request started by _overlap, mid-chunk
# ------------------------------------------------------------------------------------------------
FAULTS: List[Tuple[str, Fault, bool]] = [
    # (name, fault, whether the server took the events before the client saw the fault)
    ("503", Status(503), False),
    ("500", Status(500), False),
    ("429-retry-after", Status(429, retry_after=1), False),
    ("reset", Reset(), False),
    ("drop", Drop(), False),
    ("close-mid-response", CloseMidResponse(), True),
    ("stall-past-timeout", Stall(seconds=2.0), True),
]


@pytest.mark.parametrize("name,fault,taken", FAULTS, ids=[f[0] for f in FAULTS])
def test_a_fault_on_a_request_started_mid_chunk_loses_nothing_and_keeps_the_order(
    name: str, fault: Fault, taken: bool, gate: PartGate, make_client: Callable[..., RacewayClient]
) -> None:
    with CollectorServer() as server:
        client = make_client(**_settings(server.url, timeout=0.5 if isinstance(fault, Stall) else 10.0))
        chunk = client._flusher.chunk  # type: ignore[union-attr]
        _warm_up(client, server)
        server.script(fault)
        trace = _burst(client, 2 * chunk + 300, big_at=GATE_AT)
        flight = _held_request(client, gate)
        assert flight.events == 500 and flight.job[2].outcome.value == "failed", flight.job[2]
        gate.go.set()
        assert client.flush(timeout=60)
        chain = _chain(server.events, trace)
        assert len(chain) == 2 * chunk + 300
        faulted = set(chain[:500])  # the burst's first request, the one in flight at the gate
        if taken:  # the server took the first copy; the client could not know: sent again (by design)
            assert server.wait_for(lambda s: all(s.arrived[i] == 2 for i in faulted), timeout=30)
        arrived = _delivered_in_order(server, chain)
        assert arrived == chain
        twice = {i for i, n in server.arrived.items() if n > 1}
        assert twice == (faulted if taken else set())
        assert max(server.arrived.values()) <= 2
        stats = client.stats()
        _stats_add_up(stats)
        assert stats["sent"] == stats["recorded"] == 2 * chunk + 301
        assert stats["failed"] == stats["dropped"] == stats["duplicated"] == 0
        assert stats["retried"] >= 500  # the faulted request's bodies went again
        for batch in server.batches:
            assert batch is None or len(batch["events"]) <= 500
            if batch is not None:
                assert_valid_batch(batch)


@pytest.mark.parametrize("refusals", [1, 2])
def test_a_joined_request_refused_mid_chunk_goes_again_body_by_body(
    refusals: int, gate: PartGate, make_client: Callable[..., RacewayClient]
) -> None:
    """A 400 for the joined request started by `_overlap`: its bodies go again one by one, so
    only a body that is itself refused (the second 400: the head body alone) is lost."""
    with CollectorServer() as server:
        client = make_client(**_settings(server.url))
        chunk = client._flusher.chunk  # type: ignore[union-attr]
        _warm_up(client, server)
        server.script(*[Status(400, error="bad event")] * refusals)
        total = 2 * chunk + 300
        trace = _burst(client, total, big_at=GATE_AT)
        flight = _held_request(client, gate)
        assert flight.job[2].status == 400 and len(flight.group) == 10
        gate.go.set()
        assert client.flush(timeout=60)
        batches = server.batches
        refused = [e["id"] for e in batches[1]["events"]]
        # After the refusal the same bodies went alone (50 events each), head first.
        assert [len(b["events"]) for b in batches[2:12]] == [50] * 10
        assert [e["id"] for b in batches[2:12] for e in b["events"]] == refused
        lost = set(refused[:50]) if refusals == 2 else set()
        chain = _chain(server.events, trace)
        assert len(chain) == total
        arrived = _delivered_in_order(server, chain)
        assert arrived == [i for i in chain if i not in lost]
        assert max(server.arrived.values()) == 1
        stats = client.stats()
        _stats_add_up(stats)
        assert stats["failed"] == len(lost)
        assert stats["sent"] == total + 1 - len(lost)


def test_413_for_a_request_started_mid_chunk_halves_later_requests(
    gate: PartGate, make_client: Callable[..., RacewayClient]
) -> None:
    with CollectorServer() as server:
        client = make_client(**_settings(server.url))
        chunk = client._flusher.chunk  # type: ignore[union-attr]
        _warm_up(client, server)
        server.script(Status(413, error="too large"))
        total = 2 * chunk + 300
        trace = _burst(client, total, big_at=GATE_AT)
        flight = _held_request(client, gate)
        assert flight.job[2].status == 413
        gate.go.set()
        assert client.flush(timeout=60)
        assert client._flusher.max_batch_size == 250  # type: ignore[union-attr]
        sizes = [len(b["events"]) for b in server.batches[2:]]
        assert sizes[:10] == [50] * 10  # the refused bodies, alone
        assert max(sizes) <= 250
        chain = _chain(server.events, trace)
        assert _delivered_in_order(server, chain) == chain and len(chain) == total
        assert max(server.arrived.values()) == 1
        stats = client.stats()
        _stats_add_up(stats)
        assert stats["sent"] == total + 1 and stats["failed"] == 0


def test_faults_on_many_requests_of_a_burst_lose_only_refused_bodies(make_client: Callable[..., RacewayClient]) -> None:
    """Every third request fails (503, 429, 400, a dropped connection, 413 in turn) while
    requests go out between parts and the next chunks are taken: what arrives arrives once and
    in order, and every event is either sent or counted as failed (refused by a 400/413)."""
    lock = threading.Lock()
    count = [0]
    answers = [
        (503, {"success": False, "data": None, "error": "busy"}),
        (429, {"success": False, "data": None, "error": "slow down"}),
        (400, {"success": False, "data": None, "error": "bad event"}),
        None,  # the connection closed without an answer
        (413, {"success": False, "data": None, "error": "too large"}),
    ]
    refused: List[List[str]] = []

    def respond(rec: Received) -> Any:
        n = len(rec.json["events"])
        with lock:
            count[0] += 1
            k = count[0]
        if k % 3 == 0:
            answer = answers[(k // 3) % len(answers)]
            if answer is not None and answer[0] in (400, 413):
                refused.append([e["id"] for e in rec.json["events"]])
            return answer
        return 200, {"success": True, "data": f"Ingested {n} events", "error": None}

    with CollectorServer(responder=respond) as server:
        # Accepted events: counted by the responder's answers (the server counts only 2xx).
        client = make_client(**_settings(server.url, max_queue_size=10**6))
        chunk = client._flusher.chunk  # type: ignore[union-attr]
        total = 4 * chunk + 123
        trace = _burst(client, total)
        assert client.flush(timeout=120)
        chain = _chain(server.events, trace)
        assert len(chain) == total
        arrived = _delivered_in_order(server, chain)
        assert max(server.arrived.values()) == 1
        stats = client.stats()
        _stats_add_up(stats)
        assert stats["sent"] == len(arrived)
        assert stats["failed"] == total - len(arrived)
        lost = set(chain) - set(arrived)
        # A lost event was refused alone, in a request of one body.
        refused_alone = {i for ids in refused if len(ids) <= 50 for i in ids}
        assert lost <= refused_alone


# ------------------------------------------------------------------------------------------------
# 206 back-pressure
# ------------------------------------------------------------------------------------------------
def test_back_pressure_counts_every_event_the_server_took_twice(make_client: Callable[..., RacewayClient]) -> None:
    """Against the server's queue (`QueueingCollector`, small and fast): every event is stored
    once, and what entered the queue more than once is exactly what ``duplicated`` says."""
    with QueueingCollector(capacity=1200, drain_rate=40_000.0, step=200) as server:
        client = make_client(**_settings(server.url))
        chunk = client._flusher.chunk  # type: ignore[union-attr]
        total = 3 * chunk + 77
        _burst(client, total)
        assert client.flush(timeout=120)
        assert server.wait_for(lambda s: len(s.stored) >= total, timeout=60)
        stats = client.stats()
        _stats_add_up(stats)
        assert stats["sent"] == total and stats["failed"] == 0
        assert server.answers[206] >= 1  # the queue was full at times: the path was taken
        with server._cond:
            entered = sum(server.arrived.values())
            assert set(server.arrived) == set(server.stored)
        assert len(server.stored) == total
        assert entered == stats["sent"] + stats["duplicated"]


# ------------------------------------------------------------------------------------------------
# Shutdown with a request started by _overlap in flight
# ------------------------------------------------------------------------------------------------
def test_shutdown_with_a_held_request_spools_the_rest_and_the_next_client_sends_it(
    tmp_path: Any, make_client: Callable[..., RacewayClient]
) -> None:
    release = threading.Event()
    spool = str(tmp_path / "spool")
    try:
        with CollectorServer() as server:
            client = make_client(**_settings(server.url, spool_dir=spool))
            chunk = client._flusher.chunk  # type: ignore[union-attr]
            _warm_up(client, server)
            server.script(Stall(release=release))
            total = 3 * chunk
            trace = _burst(client, total)
            assert wait_until(lambda: not server.faults)  # the first request is held
            done: List[bool] = []
            stopper = threading.Thread(target=lambda: done.append(client.shutdown(timeout=1.0)))
            stopper.start()
            stopper.join(60)
            assert done == [False]  # not everything was delivered: said
            stats = client.stats()
            _stats_add_up(stats)
            assert stats["failed"] == 0 and stats["spooled"] > 0
            release.set()  # the abandoned request is answered now (its events taken)
            assert server.wait_for(lambda s: len(s.batches) >= 2, timeout=30)
            held = server.batches[1]  # nothing else was sent: the budget ended while it was held
            assert len(held["events"]) == 500
            second = make_client(**_settings(server.url, spool_dir=spool))
            assert second.shutdown(timeout=30)
            assert second.stats()["spool_sent"] == stats["spooled"]
            chain = _chain(server.events, trace)
            assert len(chain) == total
            assert set(chain) <= set(server.arrived)
            twice = {i for i, n in server.arrived.items() if n > 1}
            # Only the request the budget abandoned can arrive twice (docs/delivery.md).
            assert twice <= {e["id"] for e in held["events"]}
            assert max(server.arrived.values()) <= 2
    finally:
        release.set()


def test_shutdown_while_requests_go_out_mid_chunk_delivers_everything_once(
    make_client: Callable[..., RacewayClient],
) -> None:
    """`shutdown()` right after a burst of several chunks, against a server that keeps up:
    every event arrives once, none is spooled, and the counts add up."""
    with CollectorServer() as server:
        client = make_client(**_settings(server.url, max_queue_size=10**6))
        chunk = client._flusher.chunk  # type: ignore[union-attr]
        total = 5 * chunk + 11
        with client.trace() as ctx:
            for i in range(total):
                client.track_state_change("x", i, i + 1, "Write")
        assert client.shutdown(timeout=60)
        chain = _chain(server.events, ctx)
        assert len(chain) == total
        assert _delivered_in_order(server, chain) == chain
        assert max(server.arrived.values()) == 1
        stats = client.stats()
        _stats_add_up(stats)
        assert stats["sent"] == total and stats["spooled"] == stats["failed"] == 0


# ------------------------------------------------------------------------------------------------
# flush() waiters
# ------------------------------------------------------------------------------------------------
def test_flush_waiters_from_several_threads_are_answered_once_their_events_are_delivered(
    make_client: Callable[..., RacewayClient],
) -> None:
    release = threading.Event()
    try:
        with CollectorServer() as server:
            client = make_client(**_settings(server.url, max_queue_size=10**6))
            chunk = client._flusher.chunk  # type: ignore[union-attr]
            _warm_up(client, server)
            server.script(Stall(release=release))
            results: Dict[int, Tuple[bool, int]] = {}

            def worker(k: int) -> None:
                with client.trace():
                    for i in range(chunk // 2 + 17 * k):
                        client.track_state_change(f"v{k}", i, i + 1, "Write")
                ok = client.flush(timeout=60)
                results[k] = (ok, len(server.arrived))

            threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
            for t in threads:
                t.start()
            assert wait_until(lambda: not server.faults)  # a request is held
            time.sleep(0.2)
            assert not results  # nobody answered while their events wait behind the held request
            release.set()
            for t in threads:
                t.join(90)
            recorded = 1 + sum(chunk // 2 + 17 * k for k in range(4))
            assert all(ok for ok, _ in results.values()) and len(results) == 4
            stats = client.stats()
            _stats_add_up(stats)
            assert stats["sent"] == recorded == len(server.arrived)
            assert max(server.arrived.values()) == 1
    finally:
        release.set()


def test_flush_during_an_outage_says_false_and_true_once_delivered(make_client: Callable[..., RacewayClient]) -> None:
    with CollectorServer() as server:
        client = make_client(**_settings(server.url, max_queue_size=10**6, retry_backoff_max=0.05))
        chunk = client._flusher.chunk  # type: ignore[union-attr]
        _warm_up(client, server)
        server.refuse()
        trace = _burst(client, 2 * chunk + 5)
        assert not client.flush(timeout=0.5)
        server.restore()
        assert client.flush(timeout=60)
        chain = _chain(server.events, trace)
        assert len(chain) == 2 * chunk + 5 and _delivered_in_order(server, chain) == chain
        assert max(server.arrived.values()) == 1
        stats = client.stats()
        _stats_add_up(stats)
        assert stats["sent"] == 2 * chunk + 6


# ------------------------------------------------------------------------------------------------
# The memory bound: at most max_queue_size events held, outage or slow server
# ------------------------------------------------------------------------------------------------
def _sampled(client: RacewayClient, stop: threading.Event, samples: List[Tuple[int, int]]) -> threading.Thread:
    flusher = client._flusher
    assert flusher is not None

    def sample() -> None:
        while not stop.is_set():
            held = flusher.held  # first: a take raises ``held`` before it empties the log
            samples.append((held, len(client._queue)))
            stop.wait(0.0005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("server_kind", ["outage", "slow"])
def test_the_held_bound_holds_and_the_oldest_are_dropped(
    server_kind: str, make_client: Callable[..., RacewayClient]
) -> None:
    limit = 16_000

    def slow(rec: Received) -> Any:
        time.sleep(0.02)
        return 200, {"success": True, "data": f"Ingested {len(rec.json['events'])} events", "error": None}

    with CollectorServer(responder=slow if server_kind == "slow" else None) as server:
        client = make_client(**_settings(server.url, max_queue_size=limit, retry_backoff_max=0.05))
        chunk = client._flusher.chunk  # type: ignore[union-attr]
        maxlen = client._queue.maxlen
        assert maxlen is not None and maxlen + chunk == limit
        _warm_up(client, server)
        if server_kind == "outage":
            server.refuse()
        stop = threading.Event()
        samples: List[Tuple[int, int]] = []
        sampler = _sampled(client, stop, samples)
        total = 3 * limit
        with client.trace() as ctx:
            for i in range(total):
                client.track_state_change("x", i, i + 1, "Write")
                if i % 2000 == 0:
                    time.sleep(0.002)  # let the flusher work while the log fills
        if server_kind == "outage":
            time.sleep(0.3)  # a few more failed attempts
            server.restore()
        assert client.flush(timeout=120)
        stop.set()
        sampler.join()
        assert max(h for h, _ in samples) <= chunk
        assert max(h + q for h, q in samples) <= limit
        stats = client.stats()
        _stats_add_up(stats)
        assert stats["dropped"] > 0 and stats["failed"] == 0
        chain = _chain(server.events, ctx)
        arrived = _delivered_in_order(server, chain)
        assert max(server.arrived.values()) == 1
        assert stats["sent"] == len(arrived) + 1
        # The oldest were dropped: the newest ``maxlen`` events (what the log held at its last
        # drop, and everything after it) all arrived. (Sequence numbers start at 1.)
        base = int(ctx.id_base, 16)
        newest = [str(uuid.UUID(int=(base + i) % 2**128)) for i in range(total - maxlen + 1, total + 1)]
        assert set(newest) <= set(arrived)


# ------------------------------------------------------------------------------------------------
# A record the flusher cannot encode, while a request is in flight
# ------------------------------------------------------------------------------------------------
def test_a_record_that_cannot_be_encoded_mid_chunk_is_counted_and_the_request_in_flight_is_kept(
    gate: PartGate, make_client: Callable[..., RacewayClient], caplog: pytest.LogCaptureFixture
) -> None:
    with CollectorServer() as server:
        client = make_client(**_settings(server.url, retry_backoff_max=0.05))
        flusher = client._flusher
        assert flusher is not None
        chunk = flusher.chunk
        _warm_up(client, server)
        with flusher._cycle_lock:
            with client.trace() as ctx:
                for i in range(2 * chunk):
                    if i == 1600:
                        client._queue.append(("not", "a", "record"))  # the flusher fails on this part
                    client.track_state_change("x", BIG if i == GATE_AT else i, i + 1, "Write")
        flusher.wake.set()
        flight = _held_request(client, gate)
        assert flight.job[2].outcome.value == "sent"
        gate.go.set()
        assert client.flush(timeout=60)
        stats = client.stats()
        _stats_add_up(stats)
        assert stats["recorded"] == 2 * chunk + 2
        assert stats["failed"] > 0 and stats["dropped"] == 0
        chain = _chain(server.events, ctx)
        arrived = _delivered_in_order(server, chain)
        assert max(server.arrived.values()) == 1
        assert stats["sent"] == len(arrived) + 1
        assert set(chain[:500]) <= set(arrived)  # the request in flight was settled, once
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "flusher error" in r.getMessage()]
        assert len(errors) == 1


# ------------------------------------------------------------------------------------------------
# Detection with a server
# ------------------------------------------------------------------------------------------------
def test_races_with_a_server_wait_for_the_overlapped_delivery(make_client: Callable[..., RacewayClient]) -> None:
    with CollectorServer() as server:
        client = make_client(**_settings(server.url, detect_races=True, max_queue_size=10**6))
        chunk = client._flusher.chunk  # type: ignore[union-attr]
        barrier = threading.Barrier(2)

        def unsynchronised() -> None:
            client.track_state_change("shared", None, 0, "Read")
            barrier.wait()
            client.track_state_change("shared", 0, 1, "Write")

        with client.trace():
            threads = [ContextAwareThread(target=unsynchronised, client=client) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for i in range(2 * chunk + 9):
                client.track_state_change("mine", i, i + 1, "Write")
        found = client.races(timeout=60)
        assert "shared" in {r.variable for r in found}
        assert "mine" not in {r.variable for r in found}
        stats = client.stats()
        _stats_add_up(stats)
        assert stats["sent"] == stats["recorded"] == len(server.arrived)


# ------------------------------------------------------------------------------------------------
# Fork with a request in flight
# ------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # 3.12+: fork with threads
def test_fork_while_a_request_is_in_flight(make_client: Callable[..., RacewayClient]) -> None:
    release = threading.Event()
    try:
        with CollectorServer() as server:
            client = make_client(**_settings(server.url, max_queue_size=10**6))
            chunk = client._flusher.chunk  # type: ignore[union-attr]
            _warm_up(client, server)
            server.script(Stall(release=release))
            trace = _burst(client, 2 * chunk)
            assert wait_until(lambda: not server.faults)  # held at the server
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                code = 1
                try:
                    signal.alarm(60)
                    with client.trace():
                        for i in range(30):
                            client.track_state_change("child", i, i + 1, "Write")
                    ok = client.flush(timeout=30)
                    stats = client.stats()
                    code = 0 if ok and stats["sent"] == stats["recorded"] == 30 else 2
                finally:
                    os._exit(code)
            deadline = time.monotonic() + 60
            status = None
            while time.monotonic() < deadline:
                done, raw = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = os.waitstatus_to_exitcode(raw)
                    break
                time.sleep(0.01)
            if status is None:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            assert status == 0
            release.set()
            assert client.flush(timeout=60)
            chain = _chain(server.events, trace)
            assert len(chain) == 2 * chunk and _delivered_in_order(server, chain) == chain
            assert max(server.arrived.values()) == 1
            by_pid = Counter(e["metadata"]["process_id"] for e in server.events)
            assert by_pid[pid] == 30
            stats = client.stats()
            _stats_add_up(stats)
            assert stats["sent"] == 2 * chunk + 1
    finally:
        release.set()


# -- found by this review, fixed in raceway/_flusher.py ------------------------------------------
def test_an_answered_request_is_not_spooled_when_the_budget_ends_mid_chunk(gate: PartGate, tmp_path) -> None:
    """shutdown(timeout) whose budget ends while the flusher encodes, with a request that
    `_overlap` started and the server answered 200: its events were delivered, yet `_give_up`
    spools them (counted as spooled, not sent) and the next client sends them again."""
    spool = str(tmp_path / "spool")
    with CollectorServer() as server:
        client = RacewayClient(_config(server.url, spool_dir=spool))
        chunk = client._flusher.chunk
        _warm_up(client, server)
        _burst(client, 2 * chunk, big_at=GATE_AT)
        flight = _held_request(client, gate)
        assert flight.job[2].outcome.value == "sent"
        stopper = threading.Thread(target=client.shutdown, args=(0.2,))
        stopper.start()
        while not client._flusher._out_of_time():
            time.sleep(0.01)
        gate.go.set()
        stopper.join(30)
        stats = client.stats()
        assert stats["sent"] == 1 + 500, stats  # main: 1 (the 500 answered events are spooled)
        second = RacewayClient(_config(server.url, spool_dir=spool))
        assert second.shutdown(timeout=30)
        assert max(server.arrived.values()) == 1  # main: 500 ids arrive twice


def test_an_answered_request_is_not_spooled_when_the_core_traps_mid_chunk(gate: PartGate, tmp_path) -> None:
    spool = str(tmp_path / "spool")
    with CollectorServer() as server:
        client = RacewayClient(_config(server.url, spool_dir=spool))
        chunk = client._flusher.chunk
        _warm_up(client, server)
        _burst(client, 2 * chunk, big_at=GATE_AT)
        flight = _held_request(client, gate)
        assert flight.job[2].outcome.value == "sent"
        with core_limits(fuel_base=1000, fuel_per_char=0):  # the next core call traps
            gate.go.set()
            client._flusher._thread.join(30)
        stats = client.stats()
        assert stats["sent"] == 1 + 500, stats  # main: 1
        second = RacewayClient(_config(server.url, spool_dir=spool))
        assert second.shutdown(timeout=30)
        assert max(server.arrived.values()) == 1  # main: 500 ids arrive twice


@pytest.mark.parametrize("max_queue_size", [10, 15])
def test_flush_delivers_everything_with_a_small_queue(max_queue_size: int) -> None:
    """max_queue_size < 16 gives a chunk of 1: `keep = chunk - min(want, chunk // 2)` is 1,
    so `_deliver(keep=1)` leaves the body, `_take(0)` takes nothing and the cycle ends with
    records in the log: flush() says True after delivering one event (one per cycle, then
    the flusher waits flush_interval)."""
    with CollectorServer() as server:
        client = RacewayClient(_config(server.url, max_queue_size=max_queue_size, batch_size=5, spool=False))
        n = min(6, client._queue.maxlen)
        with client._flusher._cycle_lock:
            with client.trace():
                for i in range(n):
                    client.track_state_change("x", i, i + 1, "Write")
        assert client.flush(timeout=10)
        stats = client.stats()
        client.shutdown(timeout=5)
        assert stats["sent"] == n, stats  # main: 1 (queued n-2, pending 1)


def test_leftovers_of_a_chunk_older_than_dropped_records_are_dropped_after_a_failure(gate: PartGate) -> None:
    """docs/delivery.md: once the log has dropped records, what the flusher holds is older than
    anything dropped, and before its next attempt it is dropped too. With leftovers of chunk 1
    carried into chunk 2's take, `_take` refreshes `_drops_at_take`: drops between the two takes
    are forgotten, and after a failed request of those leftovers they are delivered anyway."""
    fail_seq = {"id": None, "done": False}
    lock = threading.Lock()
    after_failure = []

    def respond(rec: Received):
        ids = [e["id"] for e in rec.json["events"]]
        with lock:
            if fail_seq["id"] in ids and not fail_seq["done"]:
                fail_seq["done"] = True
                return 503, {"success": False, "data": None, "error": "busy"}
            if fail_seq["done"]:
                after_failure.extend(ids)
        return 200, {"success": True, "data": f"Ingested {len(ids)} events", "error": None}

    with CollectorServer(responder=respond) as server:
        client = RacewayClient(_config(server.url, max_queue_size=32768, retry_backoff_max=0.05))
        flusher = client._flusher
        chunk, maxlen = flusher.chunk, client._queue.maxlen
        assert chunk == 4096
        with flusher._cycle_lock:
            with client.trace() as ctx:
                for i in range(maxlen):
                    client.track_state_change("x", 2**70 if i == GATE_AT else i, i + 1, "Write")
        import uuid

        base = int(ctx.id_base, 16)
        sid = lambda seq: str(uuid.UUID(int=(base + seq) % 2**128))  # noqa: E731
        fail_seq["id"] = sid(chunk)  # the last event of chunk 1 (sequence numbers start at 1)
        flusher.wake.set()
        assert gate.hit.wait(30)
        # The flusher holds chunk 1 (taken with no drops); the log fills and drops 100.
        with client.trace():
            for i in range(chunk + 100):
                client.track_state_change("y", i, i + 1, "Write")
        drops = client._recorder.dropped_so_far()
        assert drops >= 100
        gate.go.set()
        assert client.flush(timeout=60)
        client.shutdown(timeout=5)
        assert fail_seq["done"]
        first_dropped = chunk + 1  # the log's oldest when it dropped: right after chunk 1
        older = {sid(s) for s in range(1, first_dropped)}
        late_old = [i for i in after_failure if i in older]
        assert not late_old, f"{len(late_old)} events older than dropped ones delivered after the failure"


def test_the_give_up_line_says_why_when_a_request_started_mid_chunk_is_unanswered(gate: PartGate, caplog) -> None:
    """Budget ends while the flusher encodes, with a request `_overlap` started still
    unanswered (the server holds it): the one log line should give the reason (docs: "no answer
    from the server; a request had waited ..."), not "no reason recorded"."""
    from raceway.testing import Stall

    release = threading.Event()
    try:
        with CollectorServer() as server:
            client = RacewayClient(_config(server.url, spool=False))
            chunk = client._flusher.chunk
            _warm_up(client, server)
            server.script(Stall(release=release))
            _burst(client, 2 * chunk, big_at=GATE_AT)
            assert gate.hit.wait(30)
            assert client._flusher._in_flight_request is not None
            stopper = threading.Thread(target=client.shutdown, args=(0.2,))
            stopper.start()
            while not client._flusher._out_of_time():
                time.sleep(0.01)
            gate.go.set()
            stopper.join(30)
            client._flusher._thread.join(30)
            lines = [r.getMessage() for r in caplog.records if "could not be delivered" in r.getMessage()]
            assert len(lines) == 1 and "no reason recorded" not in lines[0], lines
    finally:
        release.set()
