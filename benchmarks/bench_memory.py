"""Memory while 1,000,000 events pass through with the server slow: peak RSS growth of a fresh
process (sampled from /proc/self/statm, so Linux only), against the queue limit. Run in a
subprocess so earlier figures do not share its heap."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Dict, List

EVENTS = 1_000_000
CHILD = r"""
import json, resource, threading, time
from raceway import Config, RacewayClient
from raceway.testing import CollectorServer

def slow(rec):
    time.sleep(0.05)  # a server that takes 50 ms per request
    return 200, {"success": True, "data": "ok", "error": None}

# keep_bodies=False: the collector runs in this process for convenience, and what it keeps of
# the bodies it received is not the SDK's memory (with requests of up to max_batch_size events
# it receives ten times more in the same time, and kept them all: ~10 MB of this figure).
def rss_kb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024

# The growth is measured from the RSS once the client is ready, to the highest RSS sampled
# while the events pass (every 2 ms). Not ru_maxrss: when the component had to be compiled
# (a cache made stale by a new core), compiling peaked higher than the run, and the growth
# read 0 MB.
peak = [0]
done = threading.Event()
def sample():
    while not done.wait(0.002):
        peak[0] = max(peak[0], rss_kb())

with CollectorServer(responder=slow, keep_bodies=False) as server:
    client = RacewayClient(Config(endpoint=server.url, service_name="bench", max_queue_size=%(limit)d))
    before = rss_kb()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with client.trace():
        for i in range(%(events)d):
            client.track_state_change("account.balance", i, i + 1, "Write")
    done.set()
    sampler.join()
    peak[0] = max(peak[0], rss_kb())
    stats = client.stats()
    client.shutdown(timeout=1)
print(json.dumps({"rss_growth_mb": (peak[0] - before) / 1024, "stats": stats}))
"""


def run(limit: int = 100_000) -> Dict[str, List[float]]:
    code = CHILD % {"events": EVENTS, "limit": limit}
    samples, notes = [], []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        samples.append(result["rss_growth_mb"])
        notes.append(result["stats"])
    run.last_stats = notes[-1]  # type: ignore[attr-defined]
    return {"memory_rss_growth_mb": samples}
