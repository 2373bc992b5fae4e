"""`raceway.shared` under a read-heavy loop, per access, against the plain dict and against the
same accesses tracked by hand with `track_state_change`; and the issue's twelve plain programs
(host-python/tests/_auto_bar.py) with and without automatic tracking.

The loop: 16 keys, 9 reads (``d[k]``) for each write (``d[k] = v``), inside an execution
context, the flusher kept idle and the record log drained between rounds (as `bench_hot_path`),
so the figure is what the application thread pays per access. Four settings, rounds
interleaved so the machine's noise falls on all alike:

- ``plain``: a plain dict;
- ``off``: ``raceway.shared`` with no client to record to (the wrapper's own cost);
- ``on``: ``raceway.shared`` recording (a ``StateChange`` per access, with the old value of
  each write and the caller's location);
- ``by hand``: the plain dict and a ``track_state_change`` call beside each access, the
  variable name built per access as a user would (``f"d[{k!r}]"``).

The programs: each of the twelve run as a plain function (no plugin: ``raceway.shared`` records
nothing) and as under ``pytest --raceway`` (the plugin's own client configuration, strands without setup, the primitives
instrumented, the test's context, and the races asked for at the end, which waits for the
detector), best of several runs each; the slowdown is the ratio. Every run's races are checked
against the plugin test's verdicts (``bar_wrong_verdicts`` counts the runs that missed one or
found one in a clean program).
"""

from __future__ import annotations

import gc
import importlib.util
import os
import time
from typing import Callable, Dict, List, Set, Tuple

from harness import per_call_us

INNER, REPEATS = 2000, 60
KEYS = [f"k{i}" for i in range(16)]
PROGRAM_RUNS = 7


def _loop(d: Dict[str, int]) -> Callable[[int], object]:
    keys = KEYS

    def step(i: int) -> object:
        k = keys[i & 15]
        if i % 10 == 9:
            d[k] = i
            return None
        return d[k]

    return step


def _by_hand(d: Dict[str, int], tsc: Callable[..., None]) -> Callable[[int], object]:
    keys = KEYS

    def step(i: int) -> object:
        k = keys[i & 15]
        if i % 10 == 9:
            old = d[k]
            d[k] = i
            tsc(f"d[{k!r}]", old, i, "Write")
            return None
        v = d[k]
        tsc(f"d[{k!r}]", None, v, "Read")
        return v

    return step


def _interleaved(settings: Dict[str, Callable[[int], object]], between: Callable[[], object]) -> Dict[str, List[float]]:
    out: Dict[str, List[float]] = {name: [] for name in settings}
    for _ in range(REPEATS):
        for name, fn in settings.items():
            out[name] += per_call_us(fn, INNER, 1, between)
    return out


def run() -> Dict[str, List[float]]:
    import raceway
    from raceway import Config, RacewayClient
    from raceway.shared_state import record_to

    client = RacewayClient(Config(endpoint=None, batch_size=10**6, flush_interval=3600.0, max_queue_size=10**7,
                                  report_races_at_shutdown=False))
    drain = client._queue.clear
    plain = {k: 0 for k in KEYS}
    on = raceway.shared(dict(plain), "d", client=client)
    off = raceway.shared(dict(plain), "d")
    previous = record_to(None)
    try:
        with client.trace():
            results = _interleaved({
                "shared_plain": _loop(plain),
                "shared_off": _loop(off),
                "shared_on": _loop(on),
                "shared_by_hand": _by_hand(dict(plain), client.track_state_change),
            }, drain)
    finally:
        record_to(previous)
        client.shutdown(timeout=5)
    results.update(_programs())
    return results


# ----------------------------------------------------------------------------------------------
# The twelve programs
# ----------------------------------------------------------------------------------------------
def _load_bar():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "host-python", "tests", "_auto_bar.py")
    spec = importlib.util.spec_from_file_location("raceway_auto_bar", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _under_plugin(fn: Callable[[], object]) -> Tuple[float, Set[Tuple[str, str]]]:
    """Runs ``fn`` as the plugin runs a test body; returns the seconds it took, the plugin's
    per-test set-up (a client of its own) and tear-down excluded, the wait for the races
    included, and the races found, as ``(kind, variable)``."""
    from raceway import RacewayClient
    from raceway._auto import set_client
    from raceway.context import ExecutionContext, reset_context, set_context
    from raceway.pytest_plugin import RACES_TIMEOUT, client_config
    from raceway.strands import disable_strands, enable_strands

    client = RacewayClient(client_config())  # the plugin's own configuration of a test's client
    previous = set_client(client)
    enable_strands()
    token = set_context(ExecutionContext.new_trace(client.identity).bind())  # the test's strand, as the plugin sets it
    try:
        started = time.perf_counter()
        fn()
        races = client.races(timeout=RACES_TIMEOUT) if client.stats()["recorded"] else []  # as the plugin asks
        took = time.perf_counter() - started
        return took, {(r.kind, r.variable) for r in races}
    finally:
        reset_context(token)
        disable_strands()
        set_client(previous)
        client.shutdown(timeout=5)


def _programs() -> Dict[str, List[float]]:
    from raceway.primitives import instrument_primitives, uninstrument_primitives

    bar = _load_bar()
    names = list(bar.RACY) + list(bar.CLEAN)
    out: Dict[str, List[float]] = {}
    wrong = 0
    for name in names:
        fn = getattr(bar, name)
        plain, auto = [], []
        expected = bar.RACY.get(name, set())
        for _ in range(PROGRAM_RUNS):
            gc.collect()
            started = time.perf_counter()
            fn()
            plain.append(time.perf_counter() - started)
            instrument_primitives()
            try:
                took, found = _under_plugin(fn)
            finally:
                uninstrument_primitives()
            auto.append(took)
            # The verdicts of the plugin's test (test_pytest_plugin.py): each race expected is
            # found, and nothing in a clean program.
            if not expected <= found or (not expected and found):
                wrong += 1
        out[f"bar_plain_ms_{name}"] = [min(plain) * 1000]
        out[f"bar_auto_ms_{name}"] = [min(auto) * 1000]
        out[f"bar_slowdown_{name}"] = [min(auto) / min(plain)]
    total_plain = sum(out[f"bar_plain_ms_{n}"][0] for n in names)
    total_auto = sum(out[f"bar_auto_ms_{n}"][0] for n in names)
    out["bar_slowdown_total"] = [total_auto / total_plain]
    out["bar_wrong_verdicts"] = [float(wrong)]
    return out


if __name__ == "__main__":
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from statistics import median

    r = run()
    for key in ("shared_plain", "shared_off", "shared_on", "shared_by_hand"):
        print(f"{key:<16} {median(r[key]):.3f} µs per access")
    print(f"runs with a wrong verdict (a race missed, or one in a clean program): {int(r['bar_wrong_verdicts'][0])}")
    for key in sorted(k for k in r if k.startswith("bar_slowdown")):
        name = key[len("bar_slowdown_"):]
        extra = (f"  ({r[f'bar_plain_ms_{name}'][0]:.2f} ms -> {r[f'bar_auto_ms_{name}'][0]:.2f} ms)"
                 if f"bar_plain_ms_{name}" in r else "")
        print(f"{key:<40} {r[key][0]:.2f}x{extra}")
