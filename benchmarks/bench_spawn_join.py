"""Spawn + join as a context's joined strands pile up: one context repeatedly opens a child
with ``client.trace()`` (``client.fork(parent)``: an ``AsyncSpawn``; on exit
``client.join(parent, child)``: an ``AsyncAwait``), the child records one
``track_state_change``, the parent joins it. Measured at 10, 1,000 and 10,000 joined strands:
each round starts a fresh parent, runs K spawn+joins, and times the last ``min(K, 100)`` of
them (so a figure is the cost when K strands have been joined). Should be flat.

Two figures per count:

- on the application thread: ``with client.trace(): client.track_state_change(...)``;
- in the background, for the same window's records (3 per spawn+join): the flusher's encoding
  (`_records.encode_parts`) plus the core's ``observe(part, 0)`` (detect only), on a core whose
  detector saw the K - window spawn+joins before.

Uses ``client.trace()``, not ``ContextAwareThread`` (no thread start in the figure).
"""

from __future__ import annotations

import contextvars
import gc
import time
from typing import Dict, List

COUNTS = (10, 1_000, 10_000)
ROUNDS = {10: 40, 1_000: 10, 10_000: 3}
WINDOW = 100


def run() -> Dict[str, List[float]]:
    # In an empty contextvars.Context: each round's parent is a new trace, whatever an earlier
    # benchmark left current.
    return contextvars.Context().run(_run)


def _run() -> Dict[str, List[float]]:
    from raceway import Config, RacewayClient, _records
    from raceway._core import CoreInstance
    from raceway.context import CLOCK

    client = RacewayClient(Config(endpoint=None, batch_size=10**6, flush_interval=3600.0, max_queue_size=10**7,
                                  report_races_at_shutdown=False))
    per_call = _records.part_size(Config().batch_size)
    q = client._queue
    tsc, trace = client.track_state_change, client.trace
    clock = time.perf_counter
    out: Dict[str, List[float]] = {}
    try:
        for k in COUNTS:
            window = min(k, WINDOW)
            app, background, encode, chars, clock_len = [], [], [], [], []
            for _ in range(ROUNDS[k]):
                q.clear()
                core = CoreInstance()
                core.configure(client._process_config())
                before: List[str] = []  # the prefill's batches (strings: no GC work meanwhile)
                with trace() as parent:
                    for i in range(k - window):
                        with trace():
                            tsc("job.result", i, i + 1, "Write")
                        if len(q) >= 3000:
                            before.extend(text for text, _ in _records.encode_parts(list(q), per_call))
                            q.clear()
                    before.extend(text for text, _ in _records.encode_parts(list(q), per_call))
                    q.clear()
                    gc.collect()
                    start = clock()
                    for i in range(window):
                        with trace():
                            tsc("job.result", i, i + 1, "Write")
                    app.append((clock() - start) / window * 1e6)
                    clock_len.append(len(parent.state[CLOCK]))
                    records = list(q)
                    q.clear()
                for text in before:
                    core.observe(text, 0)
                start = clock()
                texts = [text for text, _ in _records.encode_parts(records, per_call)]
                middle = clock()
                for text in texts:
                    core.observe(text, 0)
                end = clock()
                background.append((end - start) / window * 1e6)
                encode.append((middle - start) / window * 1e6)
                chars.append(sum(map(len, texts)) / window)
            out[f"spawn_join_app_us_{k}"] = app
            out[f"spawn_join_bg_us_{k}"] = background
            out[f"spawn_join_encode_us_{k}"] = encode
            out[f"spawn_join_chars_{k}"] = chars
            out[f"spawn_join_clock_{k}"] = clock_len
    finally:
        client.shutdown(timeout=5)
    return out
