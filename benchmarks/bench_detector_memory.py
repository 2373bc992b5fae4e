"""The race detector's memory as contexts come and go: 10^6 accesses of the realistic mix
(`detector_workload`) over 10^4 strands, each recording ~100 accesses and then ending, fed
batch by batch into one detector (`raceway._detector.Detector`). Memory is the detector
instance's wasm linear memory (its size: what ``memory.grow`` reached; read from the process's
memory map, as wasmtime-py does not expose a component's memory), at 10^5, 3x10^5 and 10^6
accesses. Bounded means 10^6 is not much more than 10^5 (the detector's bounds: 16,384 live
strands, 100,000 variables, 64 readers per variable, 1,000 races).

Also for the mix without its locked updates, and for that mix with strands of ~10 accesses
(10^5 strands, past the detector's bound on live strands). One fresh process each, with the
records made and encoded as it goes (so the Python side stays flat); its RSS growth is
reported too. A trap (the core's 256 MB memory limit) ends that run: the note says when.

Last, the mix through a client with the defaults (``Config(endpoint=None)``: its own flusher
feeds the detector), 4x10^5 accesses: is the client still on at the end?
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKPOINTS = (10**5, 3 * 10**5, 10**6)
SETTINGS = {
    "mix": {},
    "nolocks": {"mix": (0.75, 0.0, 0.20, 0.05)},
    "nolocks_short": {"mix": (0.75, 0.0, 0.20, 0.05), "per_strand": 10},
}
CHILD = r"""
import json, sys, time
sys.path.insert(0, %(here)r)
import detector_workload as w
from raceway._core import CoreError
from raceway._detector import Detector

client = w.make_client()
before = set(w.wasm_memories())
rss0 = w.rss_bytes()
detector = Detector()
mine = [k for k in w.wasm_memories() if k not in before]
def memory():
    m = w.wasm_memories().get(mine[0], (0, 0)) if mine else (0, 0)
    return m[0] / 2**20, m[1] / 2**20

points, trap = [], None
start_mem = memory()
checkpoints = list(%(checkpoints)r)
fed = 0
started = time.perf_counter()
for text, accesses, _ in w.batches(client, checkpoints[-1], **%(kwargs)s):
    try:
        detector.observe(text)
    except CoreError as e:
        trap = f"trapped after {fed:,} accesses: {e}"
        break
    fed += accesses
    if fed >= checkpoints[0]:
        checkpoints.pop(0)
        stats = detector.findings()["stats"]
        size, resident = memory()
        points.append({"accesses": fed, "wasm_mb": size, "wasm_rss_mb": resident,
                       "rss_growth_mb": (w.rss_bytes() - rss0) / 2**20, "stats": stats,
                       "seconds": time.perf_counter() - started})
last = memory()
print(json.dumps({"start_wasm_mb": start_mem[0], "points": points, "trap": trap, "fed": fed,
                  "last_wasm_mb": last[0]}))
"""


CLIENT_CHILD = r"""
import json, logging, sys, time
sys.path.insert(0, %(here)r)
logging.disable(logging.CRITICAL)
import detector_workload as w
from raceway import Config, RacewayClient

client = RacewayClient(Config(endpoint=None, max_queue_size=10**7, report_races_at_shutdown=False))
started = time.perf_counter()
for _ in w.batches(client, %(accesses)d, drain=False):
    pass
flushed = client.flush(180)
stats = client.stats()
print(json.dumps({"disabled": client._disabled, "flushed": flushed, "stats": stats,
                  "races": len(client.races(0)), "seconds": time.perf_counter() - started}))
client.shutdown(1)
"""
CLIENT_ACCESSES = 400_000


def _child(kwargs: dict, code: str = "") -> dict:
    code = code or CHILD % {"here": HERE, "checkpoints": CHECKPOINTS, "kwargs": repr(kwargs)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    if out.returncode != 0:
        raise RuntimeError(f"memory child failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run() -> Dict[str, List[float]]:
    out: Dict[str, List[float]] = {}
    notes: List[str] = []
    for name, kwargs in SETTINGS.items():
        result = _child(kwargs)
        for p in result["points"]:
            k = {10**5: "1e5", 3 * 10**5: "3e5", 10**6: "1e6"}.get(
                min(CHECKPOINTS, key=lambda c: abs(c - p["accesses"])))
            out[f"detmem_{name}_{k}"] = [p["wasm_mb"]]
            s = p["stats"]
            notes.append(f"{name}, {p['accesses']:,} accesses: wasm memory {p['wasm_mb']:.0f} MB "
                         f"({p['wasm_rss_mb']:.0f} MB resident), process RSS +{p['rss_growth_mb']:.0f} MB, "
                         f"{s['strands']:,} live strands, {s['variables']:,} variables "
                         f"({p['seconds']:.0f} s)")
        if result["trap"]:
            notes.append(f"{name}: {result['trap']} (wasm memory {result['last_wasm_mb']:.0f} MB "
                         f"when it trapped)")
            out[f"detmem_{name}_trap_at"] = [float(result["fed"])]
    # The same mix through a client with the defaults (endpoint=None: the flusher detects).
    result = _child({}, CLIENT_CHILD % {"here": HERE, "accesses": CLIENT_ACCESSES})
    out["detmem_client_alive"] = [0.0 if result["disabled"] else 1.0]
    s = result["stats"]
    notes.append(f"client with the defaults, {CLIENT_ACCESSES:,} accesses of the mix through its own flusher: "
                 f"{'turned itself off (the core trapped)' if result['disabled'] else 'still on'}; "
                 f"recorded {s['recorded']:,}, failed {s['failed']:,}, races() answers {result['races']} "
                 f"({result['seconds']:.0f} s)")
    out["detector_memory_note"] = notes  # type: ignore[assignment]
    return out


if __name__ == "__main__":
    for k, v in run().items():
        print(k, v)
