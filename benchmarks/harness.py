"""Measuring: medians with their spread, never a single run.

Each figure is measured in `repeats` rounds of `inner` calls; a round gives one per-call time.
The table shows the median round and the 10th-90th percentile range across rounds, so a
figure disturbed by the shared machine shows it as a wide range rather than as a wrong number.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass
from typing import Callable, List, Optional


@dataclass
class Figure:
    name: str
    unit: str
    samples: List[float]
    target: Optional[str] = None
    met: Optional[bool] = None
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def spread(self) -> str:
        s = sorted(self.samples)
        lo, hi = s[len(s) // 10], s[-1 - len(s) // 10]
        return f"{fmt(lo)}-{fmt(hi)}"


def fmt(x: float) -> str:
    if x >= 100_000:
        return f"{x:,.0f}"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def per_call_us(fn: Callable[[int], object], inner: int, repeats: int, between: Callable[[], object] = lambda: None) -> List[float]:
    """Per-call microseconds of ``fn(i)`` for each round. ``between`` runs untimed between rounds
    (e.g. to drain a queue so every round starts from the same state)."""
    samples = []
    for _ in range(repeats):
        between()
        gc.collect()
        start = time.perf_counter_ns()
        for i in range(inner):
            fn(i)
        samples.append((time.perf_counter_ns() - start) / inner / 1000)
    return samples
