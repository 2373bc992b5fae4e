"""The pipeline on one core with the race detector on and off: `bench_pipeline`'s loop (record a
chunk of ``track_state_change`` on the application thread, encode each part of
`_records.part_size` records as the flusher does, hand it to the core), with the core call the
flusher makes in each setting (`_flusher.Flusher._encode_pickled`, and `_process` for JSON):

- ``off``: ``Config(detect_races=False)``: the part pickled (`_records.encode_pickle`, the
  flusher's default), ``encode_batch_pickle(part, batch_size)``. The client still captures
  ``race_stack_frames`` frames per access and sends them in the records;
- ``off, 0 frames``: the JSON form (`_records.encode_parts`, ``encode_batch``) with
  ``race_stack_frames=0``: the setting of the pipeline row before the detector (and before
  the pickle form);
- ``on``: the default with an endpoint: ``observe_pickle(part, batch_size)`` (detect, and
  bodies to send);
- ``detect only``: the default with ``endpoint=None``: ``observe_pickle(part, 0)`` (no bodies);
- ``onjson``, ``detectjson``: ``on`` and ``detect only`` with the JSON form (``observe``), the
  flusher's way when the core refuses a pickle, and every batch's way before the pickle form.

Modes are interleaved round by round so that the shared machine's noise falls on all alike.
Events/s are by the wall clock; the same by the thread's CPU time (``time.thread_time``) is
kept too: on a machine that other work keeps busy, that is the figure that says what one core
sustains.
The loop is one context writing one variable (as `bench_pipeline`): the detector's per-access
work is at its least here; `bench_detector` measures a realistic mix.
"""

from __future__ import annotations

import time
from typing import Dict, List

N = 200_000
ROUNDS = 5
MODES = ("off0", "off", "on", "detect", "onjson", "detectjson")


def _round(client, core, method: str, per_body: int, per_call: int, chunk: int) -> tuple:
    """One round of `N` events; ``method`` is the core's method: one of the ``_pickle`` ones
    takes each part in the pickle form, the others in the JSON form."""
    from raceway import _records

    if method.endswith("_pickle"):
        def parts(records):
            for start in range(0, len(records), per_call):
                data = _records.encode_pickle(records[start:start + per_call])
                assert data is not None
                yield data, None
    else:
        def parts(records):
            return _records.encode_parts(records, per_call)

    q = client._queue
    q.clear()
    call = getattr(core, method)
    rec = enc = cor = 0.0
    seen = 0
    cpu0 = time.thread_time()
    t0 = time.perf_counter()
    for s in range(0, N, chunk):
        a = time.perf_counter()
        for i in range(s, min(s + chunk, N)):
            client.track_state_change("account.balance", i, i + 1, "Write")
        records = list(q)
        q.clear()
        b = time.perf_counter()
        rec += b - a
        pieces = parts(records)
        while True:
            c = time.perf_counter()
            payload = next(pieces, None)
            d = time.perf_counter()
            enc += d - c
            if payload is None:
                break
            out = call(payload[0], per_body)
            cor += time.perf_counter() - d
            seen += out["events"]
    elapsed = time.perf_counter() - t0
    cpu = time.thread_time() - cpu0
    assert seen == N, seen
    return N / elapsed, rec / N * 1e6, enc / N * 1e6, cor / N * 1e6, N / cpu


def run() -> Dict[str, List[float]]:
    from raceway import Config, RacewayClient, _records
    from raceway._backlog import CHUNK
    from raceway._core import CoreInstance

    per_body = Config().batch_size
    per_call = _records.part_size(per_body)
    quiet = dict(endpoint=None, batch_size=10**6, flush_interval=3600.0, max_queue_size=10**7,
                 report_races_at_shutdown=False)
    clients = {0: RacewayClient(Config(race_stack_frames=0, **quiet)), 4: RacewayClient(Config(**quiet))}
    setups = {  # mode: (client, core method, events per body)
        "off0": (clients[0], "encode_batch", per_body),
        "off": (clients[4], "encode_batch_pickle", per_body),
        "on": (clients[4], "observe_pickle", per_body),
        "detect": (clients[4], "observe_pickle", 0),
        "onjson": (clients[4], "observe", per_body),
        "detectjson": (clients[4], "observe", 0),
    }
    cores = {}
    for mode in MODES:
        cores[mode] = CoreInstance()
        cores[mode].configure(clients[4]._process_config())
    out: Dict[str, List[float]] = {}
    contexts = {k: c.trace() for k, c in clients.items()}
    for cm in contexts.values():
        cm.__enter__()
    try:
        for _ in range(ROUNDS):
            for mode in MODES:
                client, method, body = setups[mode]
                total, rec, enc, cor, cpu = _round(client, cores[mode], method, body, per_call, CHUNK)
                for key, value in (("eps", total), ("record_us", rec), ("encode_us", enc), ("core_us", cor),
                                   ("cpu_eps", cpu)):
                    out.setdefault(f"detpipe_{mode}_{key}", []).append(value)
    finally:
        for cm in reversed(list(contexts.values())):  # innermost first
            cm.__exit__(None, None, None)
        for c in clients.values():
            c.shutdown(timeout=5)
    return out
