"""Where the time goes: runs one benchmark workload under pyinstrument and prints the call tree.
Usage: python benchmarks/profile.py {hot_path,pipeline,propagation,startup}"""

from __future__ import annotations

import sys

from pyinstrument import Profiler


def hot_path() -> None:
    from raceway import Config, RacewayClient

    client = RacewayClient(Config(endpoint=None, batch_size=10**6, flush_interval=3600.0, max_queue_size=10**7))
    with client.trace():
        for i in range(300_000):
            client.track_state_change("account.balance", i, i + 1, "Write")
            if i % 2000 == 0:
                client._queue.clear()
        args = {"from": "alice", "to": "bob", "amount": 100}
        for i in range(100_000):
            client.track_function_call("transfer", args)
            if i % 2000 == 0:
                client._queue.clear()


def pipeline() -> None:
    from raceway import Config, RacewayClient, _records
    from raceway._core import CoreInstance

    client = RacewayClient(Config(endpoint=None, batch_size=10**6, flush_interval=3600.0, max_queue_size=10**7))
    core = CoreInstance()
    core.configure(client._process_config())
    with client.trace():
        for i in range(200_000):
            client.track_state_change("account.balance", i, i + 1, "Write")
    records = list(client._queue)
    per_body = Config().batch_size
    for text, _part in _records.encode_parts(records, _records.part_size(per_body)):
        core.encode_batch(text, per_body)


def propagation() -> None:
    from raceway import Config, RacewayClient

    client = RacewayClient(Config(endpoint=None))
    with client.trace():
        for _ in range(20_000):
            client.propagation_headers()


def startup() -> None:
    import raceway

    raceway.RacewayClient(raceway.Config(endpoint=None))


if __name__ == "__main__":
    target = {"hot_path": hot_path, "pipeline": pipeline, "propagation": propagation, "startup": startup}[sys.argv[1]]
    profiler = Profiler(interval=0.0001)
    profiler.start()
    target()
    profiler.stop()
    print(profiler.output_text(unicode=False, color=False, show_all=False))
