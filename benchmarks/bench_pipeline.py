"""Events through the whole pipeline on one core: record on the application thread, encode the
record log (Python), hand it to the component, get request bodies ready to POST. No network.
The encoding goes through the flusher's own functions (`_records.encode_parts` in parts of
`_records.part_size`), with the default `Config.batch_size` events per body.

Measured on one thread, in sequence (record a chunk, encode it, as the flusher drains while the
application records), so the figure is what one core sustains; in a service the recording and
the encoding run on different threads."""

from __future__ import annotations

import time
from typing import Dict, List

N = 200_000
ROUNDS = 5


def run() -> Dict[str, List[float]]:
    from raceway import Config, RacewayClient, _records
    from raceway._backlog import CHUNK
    from raceway._core import CoreInstance

    per_body = Config().batch_size
    client = RacewayClient(Config(endpoint=None, batch_size=10**6, flush_interval=3600.0, max_queue_size=10**7))
    core = CoreInstance()
    core.configure(client._process_config())
    chunk = CHUNK
    per_call = _records.part_size(per_body)
    total, record_part, encode_part, core_part = [], [], [], []
    q = client._queue
    with client.trace():
        for _ in range(ROUNDS):
            q.clear()
            rec = enc = cor = 0.0
            sent = 0
            t0 = time.perf_counter()
            # Record a chunk, then encode it, as the flusher does while the application records:
            # the log never holds more than a chunk, like a drained queue.
            for s in range(0, N, chunk):
                a = time.perf_counter()
                for i in range(s, min(s + chunk, N)):
                    client.track_state_change("account.balance", i, i + 1, "Write")
                records = list(q)
                q.clear()
                b = time.perf_counter()
                rec += b - a
                parts = _records.encode_parts(records, per_call)
                while True:
                    c = time.perf_counter()
                    payload = next(parts, None)
                    d = time.perf_counter()
                    enc += d - c
                    if payload is None:
                        break
                    out = core.encode_batch(payload[0], per_body)
                    cor += time.perf_counter() - d
                    sent += out["events"]
            t2 = time.perf_counter()
            assert sent == N, sent
            total.append(N / (t2 - t0))
            record_part.append(rec / N * 1e6)
            encode_part.append(enc / N * 1e6)
            core_part.append(cor / N * 1e6)
    client.shutdown(timeout=5)
    return {"pipeline_events_per_s": total, "pipeline_record_us": record_part,
            "pipeline_encode_us": encode_part, "pipeline_core_us": core_part}
