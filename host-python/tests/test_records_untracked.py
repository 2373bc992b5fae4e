"""Records hold no object the cyclic GC tracks (raceway/_records.py): a record's context is
its `ContextRow` and its state a `State`, tuples of strings and ints, and user values are in
their record form (raceway/_values.py: lists as tuples, dicts as object tuples), so once the
GC's young collections have looked at it a record waiting in the log is untracked and no full
collection ever walks it. Checked on every path that makes records: the client's ``track_*``
methods, the decorators, background jobs, the instrumented primitives, ``raceway.shared``,
happens-before annotations, spawn and join of threads."""

from __future__ import annotations

import gc
import threading
from typing import Any, List

import raceway
from raceway import Config, RacewayClient

ATOMIC = (str, int, float, bool, bytes, type(None))


def _atomic(value: Any) -> bool:
    if isinstance(value, tuple):
        return all(_atomic(v) for v in value)
    return isinstance(value, ATOMIC)


def _record_everything(client: RacewayClient) -> List[Any]:
    raceway.instrument_primitives(client)
    raceway.enable_strands(client)
    try:
        lock = threading.Lock()
        rlock = threading.RLock()
        accounts = raceway.shared({"alice": 100}, "accounts")
        @raceway.track_function(client)
        def plain_call(x: int) -> int:
            return x

        @raceway.track_function(client, capture_args=True, capture_result=True)
        def captured(x: Any, *rest: Any, **named: Any) -> Any:
            return {"out": [x]}

        @raceway.background_job(client, capture_args=True)
        def job(payload: Any) -> None:
            pass

        class Account:
            @raceway.track_method(client)
            def deposit(self, amount: int) -> None:
                pass

        with client.trace():
            client.track_state_change("balance", 1, 2, "Write")
            client.track_state_change("ledger", [1, 2], {"a": [1, {"b": None}], "c": "d"}, "Write")
            client.track_state_change("deep", {"a": {"b": {"c": [1.5, True]}}}, {1: 2, "1": 3}, "Read")
            client.track_function_call("transfer", {"amount": 5})
            client.track_function_call("nothing")
            client.track_function_call("nested", {"to": {"name": "bob"}, "ids": [1, 2]})
            client.track_function_call("listed", [1, (2, 3), {4}])
            plain_call(1)
            captured([1], {"k": "v"}, flag=True)
            Account().deposit(3)
            job({"ids": [1, 2]})
            client.track_custom("payload", {"rows": [{"id": 1}, {"id": 2}]})
            client.track_http_request("POST", "http://example.test/", {"X-A": "1"}, {"q": [1]})
            client.track_http_response(201, {"Content-Type": "text/plain"}, ["ok"], duration_ms=2)
            client.happens_before("handoff")
            client.happens_after("handoff")
            client.track_lock_acquire("L")
            client.track_lock_release("L")
            client.track_custom("note", "x")
            client.track_http_request("GET", "http://example.test/")
            client.track_http_response(200, duration_ms=1)
            with lock:
                accounts["alice"] += 1
            with rlock, rlock:
                _ = accounts["alice"]
            t = threading.Thread(target=lambda: accounts.__setitem__("bob", 1))
            t.start()
            t.join()
            try:
                raise ValueError("boom")
            except ValueError as e:
                client.track_error(e)
    finally:
        raceway.disable_strands()
        raceway.uninstrument_primitives()
    return list(client._queue)


def test_every_record_carries_its_context_and_state_as_atomic_tuples():
    client = RacewayClient(Config(endpoint=None, flush_interval=3600.0, batch_size=10**6, max_queue_size=10**6))
    try:
        records = _record_everything(client)
        kinds = {r[8] for r in records}
        assert {"StateChange", "FunctionCall", "LockAcquire", "LockRelease", "Custom", "HttpRequest",
                "HttpResponse", "Error", "AsyncSpawn", "AsyncAwait"} <= kinds, kinds
        for r in records:
            assert r[0].__class__ is tuple and len(r[0]) == 6 and _atomic(r[0]), r
            assert r[1].__class__ is tuple and len(r[1]) == 2 and _atomic(r[1]), r
        # Every record's fields are atomic too, user values included, so each one leaves the
        # GC once collections have seen it: one collection per level of nesting at most (a
        # collection looks at a tuple before the tuples inside it that only it refers to).
        assert [r for r in records if not _atomic(r[2:])] == []
        for _ in range(8):
            gc.collect()
        assert [r for r in records if gc.is_tracked(r)] == []
    finally:
        client.shutdown(timeout=5)


def test_a_record_leaves_the_gc_in_its_first_young_collection():
    """Records are flat (the kind's fields from the tenth item on): a record that held its
    fields as a tuple of their own stayed tracked through its first young collection, which
    looks at the record before the tuple inside it, and so was carried into the next
    generation and walked again there (on a log growing under load, 0.2-0.3 µs per record).
    Checked in the steady state: a context, its states and the call sites already older than
    the records. (A record made with a brand-new context, state or site is untracked one
    collection later: the same holds for a state and its tuple of locks. The client's
    ``track_lock_acquire`` and the instrumented primitives share the states they make:
    `raceway.context.holding`.)"""
    client = RacewayClient(Config(endpoint=None, flush_interval=3600.0, batch_size=10**6, max_queue_size=10**6))
    raceway.instrument_primitives(client)
    try:
        lock = threading.Lock()
        accounts = raceway.shared({"alice": 100}, "accounts")

        def round_of_work() -> None:
            for i in range(20):
                client.track_state_change("balance", i, i + 1, "Write")  # the client's inline path
                client.track_custom("note", i)  # EventRecorder.append
                client.track_lock_acquire("L")  # the client's own lock events: shared states too
                client.track_lock_release("L")
                with lock:  # the primitives' path
                    accounts["alice"] += 1  # raceway.shared's path (_recording.emit)

        with client.trace():
            round_of_work()
            gc.collect()  # twice: a state made with its tuple of locks is untracked in the second
            gc.collect()
            made_before = len(client._queue)
            gc.disable()  # no automatic collection: every record below is young when we collect
            try:
                round_of_work()
                gc.collect(0)
            finally:
                gc.enable()
        records = list(client._queue)[made_before:]
        assert {r[8] for r in records} == {"StateChange", "Custom", "LockAcquire", "LockRelease"}
        assert len(records) == 20 * 8
        assert len({id(r[1]) for r in records}) <= 4  # each lock's held state made once, reused
        assert [r[8] for r in records if gc.is_tracked(r)] == []
    finally:
        raceway.uninstrument_primitives()
        client.shutdown(timeout=5)
