"""The race detector's cost per access as its history grows: 10^3, 10^4, 10^5 and 10^6
accesses of a realistic mix (`detector_workload`: many strands that start and end, many
variables, reads and writes, locks, forked and joined tasks, a few real races), fed batch by
batch, as the flusher makes them, into one fresh detector (`raceway._detector.Detector().observe`,
i.e. the core's ``observe(batch, 0)``: read the batch and detect, render nothing). Should be flat.

Each figure is the cost per access over the second half of the N accesses (the detector fed
the first half, not counted, before), so it is the cost at that much history, not an average that
the first accesses (and a fresh instance's memory growth) would dilute.

Beside it, the same batches through one `CoreInstance`:

- ``encode_batch(batch, 0)``: the batch read into typed events and nothing else (no detector, no
  bodies): with the boundary crossing, what ``observe(batch, 0)`` costs before detecting, so
  observe minus this is the detector's own share;
- ``encode_batch(batch, batch_size)``: what the pipeline does with detection off.

Per access: the batches also hold lock, spawn and join events (~1.45 events per access).

The same at 10^5 and 10^6 accesses for the mix without its locked updates (those become updates
of the strand's own variables), to show which part of the mix grows.

A round that traps (the core's memory limit, `_core.LIMITS.memory`) or passes ``BUDGET_S``
seconds stops there; the note says after how many accesses, and the figure is over what was fed.
"""

from __future__ import annotations

import gc
import time
from typing import Dict, List, Tuple

SIZES = (10**3, 10**4, 10**5, 10**6)
ROUNDS = {10**3: 20, 10**4: 10, 10**5: 3, 10**6: 1}
BUDGET_S = 45.0
NO_LOCKS = (0.75, 0.0, 0.20, 0.05)

Batch = Tuple[str, int, int]


def _prefix(stream: List[Batch], n: int) -> List[Batch]:
    out, total = [], 0
    for b in stream:
        if total >= n:
            break
        out.append(b)
        total += b[1]
    return out


def _second_half(times: List[float], batches: List[Batch]) -> float:
    """µs per access over the batches of the second half of what was fed: the cost of an
    access when the detector already holds the first half's history."""
    total = sum(b[1] for b in batches[:len(times)])
    seen = spent = counted = 0
    for t, b in zip(times, batches):
        if seen >= total / 2:
            spent += t
            counted += b[1]
        seen += b[1]
    return spent / max(1, counted) * 1e6


def _feed_detector(batches: List[Batch]) -> Tuple[float, int, str]:
    """µs per access (second half), accesses fed, and why it stopped early ('' if it did not)."""
    from raceway._core import CoreError
    from raceway._detector import Detector

    detector = Detector()
    observe = detector.observe
    times: List[float] = []
    fed = 0
    why = ""
    clock = time.perf_counter
    gc.collect()
    started = clock()
    for text, accesses, _ in batches:
        start = clock()
        try:
            observe(text)
        except CoreError as e:
            why = f"trapped after {fed:,} accesses ({e})"
            break
        times.append(clock() - start)
        fed += accesses
        if clock() - started > BUDGET_S:
            why = f"stopped after {fed:,} accesses ({BUDGET_S:.0f} s budget)"
            break
    return _second_half(times, batches), fed, why


def _feed_core(core, batches: List[Batch], per_body: int) -> float:
    encode = core.encode_batch
    clock = time.perf_counter
    times = []
    gc.collect()
    for text, _, _ in batches:
        start = clock()
        encode(text, per_body)
        times.append(clock() - start)
    return _second_half(times, batches)


def run() -> Dict[str, List[float]]:
    from raceway import Config
    from raceway._core import CoreInstance
    from raceway._detector import _UNCONFIGURED

    import detector_workload

    per_body = Config().batch_size
    core = CoreInstance()
    core.configure(dict(_UNCONFIGURED))
    out: Dict[str, List[float]] = {}
    notes: List[str] = []

    stream = detector_workload.generate(max(SIZES))
    events = sum(b[2] for b in stream)
    accesses = sum(b[1] for b in stream)
    notes.append(f"the mix: {events / accesses:.2f} events per access, "
                 f"{sum(len(b[0]) for b in stream) / events:.0f} characters per event, "
                 f"{sum(b[1] for b in stream) / len(stream):.0f} accesses per batch")
    for n in SIZES:
        batches = _prefix(stream, n)
        det, read, enc = [], [], []
        for _ in range(ROUNDS[n]):
            us, fed, why = _feed_detector(batches)
            det.append(us)
            if why:
                notes.append(f"mix, 10^{len(str(n)) - 1}: {why}")
                out[f"det_fed_{len(str(n)) - 1}"] = [float(fed)]
                break
        # The stateless baselines over the same batches (whole, even where the detector stopped).
        for _ in range(min(ROUNDS[n], 3)):
            read.append(_feed_core(core, batches, 0))
            enc.append(_feed_core(core, batches, per_body))
        k = len(str(n)) - 1
        out[f"det_us_{k}"] = det
        out[f"det_read_us_{k}"] = read
        out[f"det_encode_us_{k}"] = enc
    del stream, batches
    gc.collect()

    stream = detector_workload.generate(10**6, mix=NO_LOCKS)
    for n in (10**5, 10**6):
        batches = _prefix(stream, n)
        det = []
        for _ in range(2):
            us, fed, why = _feed_detector(batches)
            det.append(us)
            if why:
                notes.append(f"mix without locks, 10^{len(str(n)) - 1}: {why}")
                break
        out[f"det_nolocks_us_{len(str(n)) - 1}"] = det
    del stream, batches
    gc.collect()
    out["detector_note"] = notes  # type: ignore[assignment]
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
