"""Events through the whole pipeline on one core: record on the application thread, encode the
record log (Python), hand it to the component, get request bodies ready to POST. No network.

Measured on one thread, in sequence, so the figure is what one core sustains; in a service the
recording and the encoding run on different threads."""

from __future__ import annotations

import time
from typing import Dict, List

N = 200_000
ROUNDS = 5


def run() -> Dict[str, List[float]]:
    from raceway import Config, RacewayClient, _records
    from raceway._core import CoreInstance

    client = RacewayClient(Config(endpoint=None, batch_size=10**9, flush_interval=10**6, max_queue_size=10**7))
    core = CoreInstance()
    core.configure(client._process_config())
    chunk = 4096
    total, record_part, encode_part, core_part = [], [], [], []
    with client.trace():
        for _ in range(ROUNDS):
            q = client._queue
            q.clear()
            t0 = time.perf_counter()
            for i in range(N):
                client.track_state_change("account.balance", i, i + 1, "Write")
            t1 = time.perf_counter()
            records = list(q)
            q.clear()
            enc = cor = 0.0
            sent = 0
            for s in range(0, N, chunk):
                a = time.perf_counter()
                payload = _records.encode_safely(records[s:s + chunk])
                b = time.perf_counter()
                out = core.encode_batch(payload, 50)
                cor += time.perf_counter() - b
                enc += b - a
                sent += out["events"]
            t2 = time.perf_counter()
            assert sent == N, sent
            total.append(N / (t2 - t0))
            record_part.append((t1 - t0) / N * 1e6)
            encode_part.append(enc / N * 1e6)
            core_part.append(cor / N * 1e6)
    client.shutdown(timeout=5)
    return {"pipeline_events_per_s": total, "pipeline_record_us": record_part,
            "pipeline_encode_us": encode_part, "pipeline_core_us": core_part}
