"""Events through the whole pipeline on one core: record on the application thread, encode the
record log (Python), hand it to the component, get request bodies ready to POST. No network.
The encoding goes through the flusher's own functions in parts of `_records.part_size`: the
pickle form by default (`_records.encode_pickle`, ``encode_batch_pickle``), as the flusher
does; the ``pipeline_json_*`` figures are the same loop with the JSON form
(`_records.encode_parts`, ``encode_batch``), rounds interleaved with the pickle ones.

Measured on one thread, in sequence (record a chunk, encode it, as the flusher drains while the
application records), so the figure is what one core sustains; in a service the recording and
the encoding run on different threads."""

from __future__ import annotations

from typing import Dict, List

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
    from bench_detector_pipeline import _round  # one measuring loop for every pipeline row

    out: Dict[str, List[float]] = {}
    with client.trace():
        for _ in range(ROUNDS):
            for prefix, method in (("pipeline", "encode_batch_pickle"), ("pipeline_json", "encode_batch")):
                events_per_s, rec, enc, cor, _cpu = _round(client, core, method, per_body, per_call, chunk)
                for key, value in (("events_per_s", events_per_s), ("record_us", rec), ("encode_us", enc),
                                   ("core_us", cor)):
                    out.setdefault(f"{prefix}_{key}", []).append(value)
    client.shutdown(timeout=5)
    return out
