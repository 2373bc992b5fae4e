"""Events through the whole pipeline on one core: record on the application thread, encode the
record log (Python), hand it to the component, get request bodies ready to POST. No network.
The encoding goes through the flusher's own functions (`_records.encode_parts` in parts of
`_records.part_size`), with the default `Config.batch_size` events per body.

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

    total, record_part, encode_part, core_part = [], [], [], []
    with client.trace():
        for _ in range(ROUNDS):
            events_per_s, rec, enc, cor, _cpu = _round(client, core, "encode_batch", per_body, per_call, chunk)
            total.append(events_per_s)
            record_part.append(rec)
            encode_part.append(enc)
            core_part.append(cor)
    client.shutdown(timeout=5)
    return {"pipeline_events_per_s": total, "pipeline_record_us": record_part,
            "pipeline_encode_us": encode_part, "pipeline_core_us": core_part}
