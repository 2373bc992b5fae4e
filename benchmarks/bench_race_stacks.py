"""`track_state_change` on the application thread with ``Config(race_stack_frames=N)`` for
N = 0, 1, 2, 4 (the default) and 8, beside the floor (an empty method called with the same
arguments), all in the same run, rounds interleaved (so the machine's noise falls on all alike).

As `bench_hot_path`: inside a context, the flusher kept idle and the record log drained
between rounds. Two settings:

- a loop 12 Python frames below the benchmark's own calls ``track_state_change`` (the frames
  above the caller live through the round, so CPython materializes their frame objects once);
- each call goes through a fresh chain of 8 functions (``_c8`` -> ... -> ``_c1`` ->
  ``track_state_change``), as a request's handler calls helpers: walking ``f_back`` makes
  CPython (3.11+) create a frame object for every frame it reaches, once per call. Its floor
  is the same chain ending in the empty method.

Every setting finds as many user frames as it asks for. Each captured frame is a cached call
site (`_location.stack`: a frame step and a dictionary lookup).
"""

from __future__ import annotations

import gc
import time
from typing import Callable, Dict, List

DEPTHS = (0, 1, 2, 4, 8)
INNER, REPEATS = 2000, 150
NEST = 12


class _Floor:
    def track_state_change(self, variable, old_value, new_value, access_type="Write"):
        pass


def _nested(n: int, fn: Callable[[], object]) -> object:
    if n == 0:
        return fn()
    return _nested(n - 1, fn)


def _c1(f, i):
    f("account.balance", i, i + 1, "Write")


def _c2(f, i):
    _c1(f, i)


def _c3(f, i):
    _c2(f, i)


def _c4(f, i):
    _c3(f, i)


def _c5(f, i):
    _c4(f, i)


def _c6(f, i):
    _c5(f, i)


def _c7(f, i):
    _c6(f, i)


def _c8(f, i):
    _c7(f, i)


def run() -> Dict[str, List[float]]:
    from raceway import Config, RacewayClient

    quiet = dict(endpoint=None, batch_size=10**6, flush_interval=3600.0, max_queue_size=10**7,
                 report_races_at_shutdown=False)
    clients = {d: RacewayClient(Config(race_stack_frames=d, **quiet)) for d in DEPTHS}
    floor = _Floor()
    out: Dict[str, List[float]] = {f"stack_frames_{d}": [] for d in DEPTHS}
    out.update({f"stack_chain_frames_{d}": [] for d in DEPTHS})
    out["stack_floor"] = []
    out["stack_chain_floor"] = []
    frames_seen: Dict[int, int] = {}

    def one_round(tsc, drain, fresh: bool = False) -> float:
        def loop() -> float:
            clock = time.perf_counter_ns
            start = clock()
            if fresh:
                for i in range(INNER):
                    _c8(tsc, i)
            else:
                for i in range(INNER):
                    tsc("account.balance", i, i + 1, "Write")
            return (clock() - start) / INNER / 1000

        drain()
        gc.collect()
        return _nested(NEST, loop)  # type: ignore[return-value]

    traces = {d: c.trace() for d, c in clients.items()}
    try:
        for d, t in traces.items():
            t.__enter__()
        for _ in range(REPEATS):
            for d in DEPTHS:
                client = clients[d]
                out[f"stack_frames_{d}"].append(one_round(client.track_state_change, client._queue.clear))
                if d not in frames_seen and client._queue:
                    frames_seen[d] = len(client._queue[-1][13])  # a StateChange's stack (records are flat)
                out[f"stack_chain_frames_{d}"].append(one_round(client.track_state_change, client._queue.clear, True))
            out["stack_floor"].append(one_round(floor.track_state_change, lambda: None))
            out["stack_chain_floor"].append(one_round(floor.track_state_change, lambda: None, True))
    finally:
        for t in reversed(list(traces.values())):  # innermost first
            t.__exit__(None, None, None)
        for c in clients.values():
            c.shutdown(timeout=5)
    wrong = {d: n for d, n in frames_seen.items() if n != d}
    if wrong:
        out["race_stacks_note"] = [f"frames captured differ from the setting: {wrong}"]  # type: ignore[list-item]
    return out
