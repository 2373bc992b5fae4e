"""Hand-made findings and records for the report tests: the JSON shapes of the contract
(notes/contract.md), turned into `Race` objects with `Race.from_json`."""

from __future__ import annotations

import copy
from typing import Any, Dict, List

from raceway.races import Race

T0 = 1795246001616516000
MS = 1_000_000
MAIN, A, B = "bank#host-1/00000001", "bank#host-1/0000000a", "bank#host-1/0000000b"
C, D = "bank#host-2/0000000c", "bank#host-2/0000000d"
"""Strands with no records: their races are drawn from the accesses alone."""
THREADS = {MAIN: "python-1-00000001", A: "python-1-0000000a", B: "python-1-0000000b",
           C: "python-2-0000000c", D: "python-2-0000000d"}
ID_BASE = {MAIN: "00000000000000000000000000000001", A: "0000000000000000000000000000000a",
           B: "0000000000000000000000000000000b"}
TRACE = "5b8aa5a2-d2c1-4e6f-9a8e-3f1c2d4b6a70"


def task_id(component: str) -> str:
    h = ID_BASE[component]
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def stamp(nanos: int) -> str:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(nanos / 1e9, timezone.utc).isoformat()


def access(component: str, seq: int, at_ms: float, access_type: str, location: str, *,
           locks=(), old=None, new=None, stack=None) -> Dict[str, Any]:
    nanos = T0 + int(at_ms * MS)
    return {"access_type": access_type, "location": location,
            "stack": stack if stack is not None else [f"{location} in work", "app.py:90 in main"],
            "thread_id": THREADS.get(component, component), "component": component,
            "trace_id": TRACE, "service": "bank", "seq": seq, "timestamp": stamp(nanos),
            "unix_nanos": nanos, "locks": list(locks), "old_value": old, "new_value": new}


def race(kind: str, severity: str, variable: str, accesses: List[Dict[str, Any]],
         count: int = 1) -> Dict[str, Any]:
    return {"kind": kind, "severity": severity, "variable": variable, "count": count,
            "first_seen": accesses[-1]["timestamp"], "last_seen": accesses[-1]["timestamp"],
            "accesses": accesses}


# Worker A writes alice.balance holding account_lock (seq 4, at 4 ms); worker B reads it with
# no lock (seq 2, at 5 ms) and only then takes the lock: the release->acquire edge comes after
# B's read, so it does not order the two accesses.
DATA_RACE = race("data-race", "WARNING", "alice.balance", [
    access(A, 4, 4, "Write", "/srv/bank/app.py:20", locks=["account_lock"], old=100, new=150,
           stack=["/srv/bank/app.py:20 in deposit", "/srv/bank/app.py:88 in worker_a"]),
    access(B, 2, 5, "Read", "/srv/bank/audit.py:31", new=150,
           stack=["/srv/bank/audit.py:31 in audit", "/srv/bank/app.py:95 in worker_b"]),
], count=3)

WRITE_WRITE = race("data-race", "CRITICAL", "cache.size", [
    access(C, 7, 9, "Write", "/srv/bank/cache.py:10", old=1, new=2),
    access(D, 9, 9.5, "Write", "/srv/bank/cache.py:10", old=1, new=2),
])

LOST_UPDATE = race("lost-update", "CRITICAL", "bob.balance", [
    access(A, 11, 12, "Read", "/srv/bank/app.py:40", locks=["bob_lock"], new=100),
    access(B, 12, 13, "Write", "/srv/bank/app.py:60", locks=["bob_lock"], old=100, new=50),
    access(A, 13, 14, "Write", "/srv/bank/app.py:44", locks=["bob_lock"], old=100, new=150),
], count=2)

XSS_SCRIPT = "<script>document.title='PWNED'</script>"
XSS_IMG = "\"><img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">"
ANSI = "\x1b[2J\x1b[31mred\x1b[0m\nfake: line\r\u202eevil\x00"


def hostile() -> Dict[str, Any]:
    """A race whose every string is an attack on the writer that shows it."""
    r = race("data-race", "CRITICAL", XSS_SCRIPT + XSS_IMG, [
        access(C, 20, 20, "Write", XSS_IMG + ":7", locks=[XSS_SCRIPT], old=ANSI,
               new={"k": XSS_SCRIPT, "n": "x" * 5000}, stack=[XSS_SCRIPT + ":1 in " + ANSI]),
        access(D, 21, 21, "Write", "app.py:8", old=None, new=ANSI * 100),
    ])
    r["accesses"][0]["thread_id"] = XSS_IMG
    r["accesses"][0]["trace_id"] = ANSI
    return r


def races(*findings: Dict[str, Any]) -> List[Race]:
    return [Race.from_json(copy.deepcopy(f)) for f in findings]


def batches() -> List[Dict[str, Any]]:
    """The records of the DATA_RACE scenario, as parsed lines of a records file: main spawns A
    and B and joins both; A writes under account_lock and releases it; B reads without a lock,
    then acquires account_lock."""
    contexts = [{"trace_id": TRACE, "thread_id": THREADS[c], "component": c,
                 "span_id": "b7ad6b7169203331", "upstream_span_id": None, "id_base": ID_BASE[c]}
                for c in (MAIN, A, B)]
    states = [{"clock": [], "locks": []},
              {"clock": [[MAIN, 2]], "locks": []},
              {"clock": [[MAIN, 2]], "locks": ["account_lock"]},
              {"clock": [[MAIN, 3], [A, 5]], "locks": ["account_lock"]}]

    def ev(ctx: int, state: int, seq: int, at_ms: float, file: str, line: int, kind: str,
           fields: list) -> list:
        return [ctx, state, seq, seq - 1, T0 + int(at_ms * MS), None, file, line, kind, fields]

    app, audit = "/srv/bank/app.py", "/srv/bank/audit.py"
    first = {"raceway": "records/1",
             "process": {"service_name": "bank", "environment": "development",
                         "instance_id": "host-1", "process_id": 1, "tags": {}},
             "contexts": contexts, "states": states, "events": [
                 ev(0, 0, 1, 0, app, 80, "StateChange", ["config.mode", None, "live", "Write", []]),
                 ev(0, 0, 2, 1, app, 84, "AsyncSpawn", [task_id(A), THREADS[MAIN]]),
                 ev(0, 0, 3, 1.5, app, 85, "AsyncSpawn", [task_id(B), THREADS[MAIN]]),
                 ev(1, 1, 1, 2, app, 87, "FunctionCall", ["worker_a", "app", {}]),
                 ev(1, 1, 2, 3, app, 18, "LockAcquire", ["account_lock", "Mutex"]),
                 ev(1, 2, 3, 3.5, app, 19, "StateChange", ["alice.balance", None, 100, "Read", []]),
                 ev(1, 2, 4, 4, app, 20, "StateChange", ["alice.balance", 100, 150, "Write", []]),
             ]}
    second = {"raceway": "records/1", "process": first["process"],
              "contexts": [contexts[1], contexts[2], contexts[0]], "states": states, "events": [
                 ev(1, 0, 1, 2.5, app, 94, "FunctionCall", ["worker_b", "app", {}]),
                 ev(1, 1, 2, 5, audit, 31, "StateChange", ["alice.balance", None, 150, "Read", []]),
                 ev(0, 2, 5, 6, app, 21, "LockRelease", ["account_lock", "Mutex"]),
                 ev(0, 1, 6, 6.5, app, 22, "FunctionCall", ["log", "app", {}]),
                 ev(1, 1, 3, 7, audit, 33, "LockAcquire", ["account_lock", "Mutex"]),
                 ev(1, 3, 4, 7.5, audit, 34, "StateChange", ["alice.limit", None, 500, "Read", []]),
                 ev(1, 3, 5, 8, audit, 35, "LockRelease", ["account_lock", "Mutex"]),
                 ev(2, 0, 4, 10, app, 97, "AsyncAwait", [task_id(A), THREADS[A]]),
                 ev(2, 0, 5, 11, app, 98, "AsyncAwait", [task_id(B), THREADS[B]]),
             ]}
    return [first, second]
