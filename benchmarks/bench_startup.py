"""`import raceway` plus a ready client, in a fresh interpreter each time: with the compiled
component cached on disk, and cold (an empty cache directory)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from typing import Dict, List

RUNS = 9
SNIPPET = (
    "import time; t = time.perf_counter(); import raceway; "
    "c = raceway.RacewayClient(raceway.Config(endpoint=None)); "
    "print((time.perf_counter() - t) * 1000); c.shutdown()"
)


def _once(cache: str) -> float:
    env = dict(os.environ, XDG_CACHE_HOME=cache)
    out = subprocess.run([sys.executable, "-c", SNIPPET], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def run() -> Dict[str, List[float]]:
    warm_cache = tempfile.mkdtemp(prefix="raceway-bench-")
    _once(warm_cache)  # fills the cache
    cached = [_once(warm_cache) for _ in range(RUNS)]
    cold = [_once(tempfile.mkdtemp(prefix="raceway-bench-cold-")) for _ in range(RUNS)]
    return {"startup_cached_ms": cached, "startup_cold_ms": cold}
