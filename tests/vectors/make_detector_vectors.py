"""Writes tests/vectors/detector.json: small programs as record batches, with the races a
correct detector reports for each (written here by hand, from the rules in docs/races.md; they
are not the detector's output). Run it again after changing a case:

    python tests/vectors/make_detector_vectors.py

Each strand behaves as the Python host does: a child starts from its parent's clock (with the
parent's counter at the spawn), a join merges the child's clock into the parent, and the host
records `AsyncSpawn`/`AsyncAwait` in the parent. Events are listed in the order they happened.
"""

from __future__ import annotations

import json
from pathlib import Path

TRACE = "0af76519-16cd-43dd-8448-eb211c80319c"


class Program:
    def __init__(self, service: str = "svc") -> None:
        self.service = service
        self.contexts: list = []
        self.states: list = []
        self.events: list = []
        self.batch_marks: list = []

    def strand(self, name: str, parent: "Strand | None" = None) -> "Strand":
        s = Strand(self, name, len(self.contexts))
        self.contexts.append(s)
        if parent is not None:
            parent.spawn(s)
        return s

    def cut(self) -> None:
        """Starts a new batch here (state across batches is part of what is tested)."""
        self.batch_marks.append(len(self.events))

    def batches(self) -> list:
        bounds = [0, *self.batch_marks, len(self.events)]
        out = []
        for start, end in zip(bounds, bounds[1:]):
            events = self.events[start:end]
            if not events:
                continue
            used_ctx = sorted({e[0] for e in events})
            states: list = []
            recs = []
            for ctx, state, *rest in events:
                if state not in states:
                    states.append(state)
                recs.append([used_ctx.index(ctx), states.index(state), *rest])
            out.append({
                "contexts": [self.contexts[i].row() for i in used_ctx],
                "states": [{"clock": [list(p) for p in clock], "locks": list(locks)} for clock, locks in states],
                "events": recs,
            })
        return out


class Strand:
    def __init__(self, program: Program, name: str, index: int) -> None:
        self.p = program
        self.name = name
        self.index = index
        self.component = f"{program.service}#host/{name}"
        self.id_base = f"{index + 1:032x}"
        self.seq = 0
        self.clock: dict = {}
        self.locks: tuple = ()

    @property
    def task_id(self) -> str:
        h = self.id_base
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def row(self) -> dict:
        return {"trace_id": TRACE, "thread_id": f"python-1-{self.name}", "component": self.component,
                "span_id": "b7ad6b7169203331", "upstream_span_id": None, "id_base": self.id_base}

    def _record(self, line: int, kind: str, fields: list) -> None:
        self.seq += 1
        state = (tuple(sorted(self.clock.items())), self.locks)
        self.p.events.append((self.index, state, self.seq, self.seq - 1, 1_000_000 * len(self.p.events),
                              None, "app.py", line, kind, fields))

    def read(self, var: str, value, line: int, access: str = "Read") -> None:
        self._record(line, "StateChange", [var, None, value, access, [f"app.py:{line} in {self.name}"]])

    def write(self, var: str, old, new, line: int, access: str = "Write") -> None:
        self._record(line, "StateChange", [var, old, new, access, [f"app.py:{line} in {self.name}"]])

    def acquire(self, lock: str, line: int = 1) -> None:
        self.locks = self.locks + (lock,)
        self._record(line, "LockAcquire", [lock, "Mutex"])

    def release(self, lock: str, line: int = 1) -> None:
        self._record(line, "LockRelease", [lock, "Mutex"])
        locks = list(self.locks)
        locks.reverse()
        locks.remove(lock)
        locks.reverse()
        self.locks = tuple(locks)

    def spawn(self, child: "Strand") -> None:
        self._record(2, "AsyncSpawn", [child.task_id, f"python-1-{self.name}"])
        child.clock = {**self.clock, self.component: self.seq}

    def join(self, child: "Strand", keep_component: bool = True) -> None:
        """``keep_component=False``: the host retired the child (its component left out)."""
        for c, n in child.clock.items():
            if n > self.clock.get(c, 0) and c != self.component:
                self.clock[c] = n
        if keep_component:
            self.clock[child.component] = max(self.clock.get(child.component, 0), child.seq)
        self._record(3, "AsyncAwait", [child.task_id, f"python-1-{child.name}"])

    def happens_before(self, sync: str) -> None:
        self._record(4, "Custom", ["raceway:happens-before", {"sync": sync}])

    def happens_after(self, sync: str) -> None:
        self._record(5, "Custom", ["raceway:happens-after", {"sync": sync}])


def race(kind: str, severity: str, variable: str, locations: list, count: int = 1) -> dict:
    return {"kind": kind, "severity": severity, "variable": variable, "count": count, "locations": locations}


CASES: list = []


def case(name: str, description: str):
    def register(build):
        p = Program()
        expect = build(p)
        CASES.append({"name": name, "description": description, "batches": p.batches(), "expect": expect})
        return build
    return register


@case("unsynchronised-counter", "two threads read then write a counter with no lock, interleaved")
def _(p: Program):
    m = p.strand("main")
    a, b = p.strand("a", m), p.strand("b", m)
    a.read("counter", 0, 10)
    b.read("counter", 0, 10)
    a.write("counter", 0, 1, 11)
    p.cut()
    b.write("counter", 0, 1, 11)
    return [
        race("lost-update", "CRITICAL", "counter", ["app.py:10", "app.py:11", "app.py:11"]),
        race("data-race", "CRITICAL", "counter", ["app.py:11", "app.py:11"]),
        race("data-race", "WARNING", "counter", ["app.py:10", "app.py:11"]),
    ]


@case("counter-under-one-lock", "the same counter, read and written inside one critical section")
def _(p: Program):
    m = p.strand("main")
    a, b = p.strand("a", m), p.strand("b", m)
    for s in (a, b):
        s.acquire("L")
        s.read("counter", s.index - 1, 10)
        s.write("counter", s.index - 1, s.index, 11)
        s.release("L")
    return []


@case("check-then-act-two-critical-sections",
      "the seed's transfer: read under the lock, release, write under the lock again; both threads")
def _(p: Program):
    m = p.strand("main")
    a, b = p.strand("a", m), p.strand("b", m)
    for s in (a, b):
        s.acquire("L")
        s.read("alice.balance", 1000, 20)
        s.release("L")
    a.acquire("L")
    a.write("alice.balance", 1000, 900, 21)
    a.release("L")
    b.acquire("L")
    b.write("alice.balance", 1000, 750, 21)
    b.release("L")
    return [race("lost-update", "CRITICAL", "alice.balance", ["app.py:20", "app.py:21", "app.py:21"])]


@case("read-only-sharing", "many strands read one value nobody writes")
def _(p: Program):
    m = p.strand("main")
    for name in "abcd":
        p.strand(name, m).read("config", 1, 30)
    return []


@case("write-before-spawn-read-after-join",
      "the parent writes before starting the child and reads after joining it; the child writes")
def _(p: Program):
    m = p.strand("main")
    m.write("x", None, 1, 40)
    c = p.strand("child", m)
    c.read("x", 1, 41)
    c.write("x", 1, 2, 42)
    p.cut()
    m.join(c)
    m.read("x", 2, 43)
    m.write("x", 2, 3, 44)
    return []


@case("joined-children-retired",
      "the parent starts and joins children one after another; the host leaves joined children's"
      " components out of the parent's clock (retirement); each child writes the same variable")
def _(p: Program):
    m = p.strand("main")
    for i in range(5):
        c = p.strand(f"c{i}", m)
        c.read("total", i, 50)
        c.write("total", i, i + 1, 51)
        m.join(c, keep_component=False)
    m.read("total", 5, 52)
    late = p.strand("late", m)
    late.write("total", 5, 6, 53)
    return []


@case("write-after-start-races-with-child",
      "the parent writes after starting the child (no join yet): the child's read races with it")
def _(p: Program):
    m = p.strand("main")
    c = p.strand("child", m)
    m.write("x", None, 1, 60)
    c.read("x", None, 61)
    return [race("data-race", "WARNING", "x", ["app.py:60", "app.py:61"])]


@case("hand-off-through-annotation", "a value published before happens_before and read after happens_after")
def _(p: Program):
    m = p.strand("main")
    a, b = p.strand("a", m), p.strand("b", m)
    a.write("item", None, "x", 70)
    a.happens_before("queue-1")
    b.happens_after("queue-1")
    b.read("item", "x", 71)
    return []


@case("hand-off-missing", "the same without the annotation: a data race")
def _(p: Program):
    m = p.strand("main")
    a, b = p.strand("a", m), p.strand("b", m)
    a.write("item", None, "x", 70)
    b.read("item", "x", 71)
    return [race("data-race", "WARNING", "item", ["app.py:70", "app.py:71"])]


@case("atomic-counter", "AtomicRMW from several strands never races")
def _(p: Program):
    m = p.strand("main")
    for name in "abc":
        s = p.strand(name, m)
        s.write("hits", 0, 1, 80, access="AtomicRMW")
        s.read("hits", 1, 81, access="AtomicRead")
    return []


@case("rlock-reentry", "a re-entrant lock taken twice, released twice; the other strand under it too")
def _(p: Program):
    m = p.strand("main")
    a, b = p.strand("a", m), p.strand("b", m)
    a.acquire("R")
    a.acquire("R")
    a.write("cache", None, 1, 90)
    a.release("R")
    a.release("R")
    b.acquire("R")
    b.write("cache", 1, 2, 91)
    b.release("R")
    return []


@case("lock-taken-by-one-side-only", "only one strand holds the lock: still a race")
def _(p: Program):
    m = p.strand("main")
    a, b = p.strand("a", m), p.strand("b", m)
    a.acquire("L")
    a.write("y", 0, 1, 100)
    a.release("L")
    b.write("y", 0, 2, 101)
    return [race("data-race", "CRITICAL", "y", ["app.py:100", "app.py:101"])]


@case("one-report-per-distinct-race",
      "the same racy pair of lines in ten pairs of strands: one race; each of the 19 writes after"
      " the first races with the one before it, so it is counted 19 times")
def _(p: Program):
    m = p.strand("main")
    for i in range(10):
        a, b = p.strand(f"a{i}", m), p.strand(f"b{i}", m)
        a.write("z", 0, 1, 110)
        b.write("z", 0, 2, 111)
    return [race("data-race", "CRITICAL", "z", ["app.py:110", "app.py:111"], count=19)]


@case("fresh-read-is-no-lost-update", "the writer read again after the other write: nothing is lost")
def _(p: Program):
    m = p.strand("main")
    a, b = p.strand("a", m), p.strand("b", m)
    a.acquire("L"); a.read("v", 1, 120); a.release("L")
    b.acquire("L"); b.read("v", 1, 120); b.write("v", 1, 2, 121); b.release("L")
    a.acquire("L"); a.read("v", 2, 120); a.write("v", 2, 3, 121); a.release("L")
    return []


@case("lost-update-across-two-services",
      "the api service reads a balance and calls the ledger service, which writes the new balance"
      " (its old_value is what the api read); two requests at once. The read happens before the"
      " write through the call (the ledger's request inherits the caller's clock)")
def _(p: Program):
    api1, api2 = p.strand("api-1"), p.strand("api-2")
    api1.read("alice.balance", 1000, 130)
    api2.read("alice.balance", 1000, 130)
    ledger1, ledger2 = p.strand("ledger-1"), p.strand("ledger-2")
    for caller, callee in ((api1, ledger1), (api2, ledger2)):
        caller.seq += 1  # the outgoing call is a step of the caller (propagation_headers ticks)
        callee.clock = {**caller.clock, caller.component: caller.seq}
    ledger1.write("alice.balance", 1000, 900, 140)
    ledger2.write("alice.balance", 1000, 750, 140)
    return [
        race("lost-update", "CRITICAL", "alice.balance", ["app.py:130", "app.py:140", "app.py:140"]),
        race("data-race", "CRITICAL", "alice.balance", ["app.py:140", "app.py:140"]),
        race("data-race", "WARNING", "alice.balance", ["app.py:130", "app.py:140"]),
    ]


@case("no-lost-update-without-a-basis",
      "a strand writes without having read (blind write): no lost update, only data races. A"
      " write clears the reads before it (FastTrack), so a's read is checked against b's write,"
      " and main's write against b's, not a's read")
def _(p: Program):
    m = p.strand("main")
    a, b = p.strand("a", m), p.strand("b", m)
    a.read("w", 1, 150)
    b.write("w", 1, 2, 151)
    m.write("w", 1, 3, 152)  # main never read w; its old_value 1 is not based on a read
    return [
        race("data-race", "CRITICAL", "w", ["app.py:151", "app.py:152"]),
        race("data-race", "WARNING", "w", ["app.py:150", "app.py:151"]),
    ]


@case("bounded-header-rebuilt-from-the-senders-clock",
      "b writes x and releases L; a takes L (so a knows b's write), calls another service whose"
      " request carries only a's own clock entry (a header cut to its bound), then learns more"
      " (takes M) before the callee's event is seen; the callee reads x: ordered, through a's"
      " clock at the call")
def _(p: Program):
    m = p.strand("main")
    a, b, d = p.strand("a", m), p.strand("b", m), p.strand("d", m)
    b.write("x", None, 1, 160)
    b.acquire("L"); b.release("L")
    a.acquire("L"); a.release("L")
    callee = p.strand("callee")
    a.seq += 1  # the call's tick
    callee.clock = {a.component: a.seq}
    d.acquire("M"); d.release("M")
    a.acquire("M"); a.release("M")
    callee.read("x", 1, 161)
    return []


@case("bounded-header-without-the-edge-is-a-race",
      "the same call, but a never took L: the callee's read races with b's write")
def _(p: Program):
    m = p.strand("main")
    a, b = p.strand("a", m), p.strand("b", m)
    b.write("x", None, 1, 170)
    callee = p.strand("callee")
    a.seq += 1
    callee.clock = {a.component: a.seq}
    callee.read("x", 1, 171)
    return [race("data-race", "WARNING", "x", ["app.py:170", "app.py:171"])]


def main() -> None:
    out = {
        "description": (
            "Race detector cases: `batches` are fed in order to one detector (pipeline "
            "`observe`); `expect` lists the races it must report, in the order `races` gives them "
            "(lost updates, then CRITICAL, then WARNING, each group in order found), each as kind, "
            "severity, variable, count and the accesses' locations. Generated by "
            "make_detector_vectors.py; the expectations are written by hand."
        ),
        "cases": CASES,
    }
    path = Path(__file__).with_name("detector.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {len(CASES)} cases to {path}")


if __name__ == "__main__":
    main()
