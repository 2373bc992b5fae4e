"""A realistic stream of record batches for the race detector's benchmarks.

The records are made by the SDK's own recording functions (``track_state_change``,
``track_lock_acquire``/``release``, ``fork``/``join``: the tuples the hot path appends to the
log) and encoded by the flusher's own function (`_records.encode_parts`, in parts of
`_records.part_size(Config().batch_size)` records), so each batch is what the flusher hands the
core. Deterministic (seeded).

The mix, per operation of a strand picked at random among ``concurrent`` live ones:

- 45%: a read (70%) or write (30%) of one of the strand's own variables (``req.<n>.<j>``,
  5 per strand: request-scoped state; never racy);
- 30%: a read-modify-write of a shared account under its lock (``account.<k>.balance``,
  1,000 accounts, 16 locks): lock acquire, read, write, lock release;
- 20%: a read of shared configuration (``config.<k>``, 50 of them, never written: readers pile
  up to the detector's ``max_readers`` per variable);
- 5%: an unprotected read-modify-write of a shared counter (``stats.<k>``, 20 of them): the
  bug the detector is for (data races and lost updates; distinct races stay few, as they are
  deduplicated by place).

Strands live for ``per_strand`` accesses on average (uniform in [per/2, 3*per/2]), then end.
75% are requests (a new trace each, unrelated to the others); 25% are tasks forked from a live
strand (``client.fork``: an ``AsyncSpawn`` in the parent, a child inheriting its clock), which
their parent joins when they end (``client.join``: an ``AsyncAwait``) if it is still live.
Stack frames are captured as ``Config.race_stack_frames`` says (the default, 4).
"""

from __future__ import annotations

import random
from typing import Dict, Iterator, List, Tuple

MIX = (0.45, 0.30, 0.20, 0.05)
"""Shares of operations: own variables, locked shared accounts, shared configuration reads,
unprotected shared counters."""
DRAIN = 4096  # records taken from the log at a time, as the flusher's chunk (_backlog.CHUNK)


def make_client(**config):
    """A client whose flusher stays asleep: the benchmark takes the records itself."""
    from raceway import Config, RacewayClient

    settings = dict(endpoint=None, batch_size=10**6, flush_interval=3600.0, max_queue_size=10**8,
                    detect_races=False, report_races_at_shutdown=False)
    settings.update(config)
    return RacewayClient(Config(**settings))


def batches(client, accesses: int, per_strand: int = 100, concurrent: int = 32, seed: int = 1,
            mix: Tuple[float, float, float, float] = MIX, tasks: float = 0.25,
            drain: bool = True) -> Iterator[Tuple[str, int, int]]:
    """Yields ``(batch_json, accesses_in_it, events_in_it)`` until ``accesses`` accesses.
    ``mix``: the shares of own, locked, configuration and unprotected operations; ``tasks``: the
    share of new strands forked from a live one (the rest are new traces). With ``drain``
    False nothing is yielded: the records stay in the client's log for its own flusher."""
    from raceway import Config, _records
    from raceway.context import ExecutionContext, _current

    per_call = _records.part_size(Config().batch_size)
    rng = random.Random(seed)
    rand, randint = rng.random, rng.randrange
    tsc = client.track_state_change
    acquire, release = client.track_lock_acquire, client.track_lock_release
    queue = client._queue
    live: List[list] = []  # [ctx, accesses left, parent entry or None, strand number, alive]
    made = [0]

    def new_strand() -> None:
        if live and rand() < tasks:
            parent = live[randint(len(live))]
            ctx = client.fork(parent[0])
        else:
            parent = None
            ctx = ExecutionContext.new_trace()
        ctx.bind()
        made[0] += 1
        live.append([ctx, randint(per_strand // 2, per_strand * 3 // 2 + 1), parent, made[0], True])

    for _ in range(concurrent):
        new_strand()

    def take() -> Iterator[Tuple[str, int, int]]:
        if not drain:
            return
        records = list(queue)
        queue.clear()
        for text, part in _records.encode_parts(records, per_call):
            n = 0
            for r in part:
                if r[8] == "StateChange":
                    n += 1
            yield text, n, len(part)

    own, locked, config = mix[0], mix[0] + mix[1], mix[0] + mix[1] + mix[2]
    done = 0
    value = 0
    while done < accesses:
        i = randint(len(live))
        strand = live[i]
        ctx = strand[0]
        token = _current.set(ctx)
        r = rand()
        value += 1
        if r < own:
            name = f"req.{strand[3]}.{randint(5)}"
            if rand() < 0.7:
                tsc(name, value, value, "Read")
            else:
                tsc(name, value - 1, value, "Write")
            n = 1
        elif r < locked:
            k = randint(1000)
            lock = f"lock.{k % 16}"
            name = f"account.{k}.balance"
            acquire(lock)
            tsc(name, value, value, "Read")
            tsc(name, value, value + 1, "Write")
            release(lock)
            n = 2
        elif r < config:
            tsc(f"config.{randint(50)}", 1, 1, "Read")
            n = 1
        else:
            name = f"stats.{randint(20)}"
            tsc(name, value, value, "Read")
            tsc(name, value, value + 1, "Write")
            n = 2
        _current.reset(token)
        done += n
        strand[1] -= n
        if strand[1] <= 0:
            live[i] = live[-1]
            live.pop()
            strand[4] = False
            parent = strand[2]
            if parent is not None and parent[4]:
                client.join(parent[0], ctx)
            new_strand()
        if len(queue) >= DRAIN:
            yield from take()
    if queue:
        yield from take()


def wasm_memories() -> Dict[int, Tuple[int, int]]:
    """The linear memories of the wasm instances in this process (Linux): ``{start: (bytes
    accessible, bytes resident)}``. wasmtime reserves 4 GiB (plus guards) of address space per
    32-bit memory and makes the accessible part read-write: that part's size is the memory's
    current size (what ``memory.grow`` reached), its Rss what was touched."""
    vmas = []
    try:
        with open("/proc/self/smaps") as f:
            for line in f:
                if "-" in line[:20] and not line.startswith(("Rss", "Size")) and line[0] in "0123456789abcdef":
                    head = line.split(None, 2)
                    lo, hi = head[0].split("-")
                    vmas.append([int(lo, 16), int(hi, 16), head[1], 0])
                elif line.startswith("Rss:") and vmas:
                    vmas[-1][3] = int(line.split()[1]) * 1024
    except OSError:
        return {}
    out: Dict[int, Tuple[int, int]] = {}
    for i, (lo, hi, perms, _) in enumerate(vmas):
        if perms.startswith("---") and hi - lo >= 2 << 30:  # the rest of a reservation
            j = i
            while j > 0 and vmas[j - 1][2].startswith("rw") and vmas[j - 1][1] == vmas[j][0]:
                j -= 1
            if j < i:
                run = vmas[j:i]
                out[run[0][0]] = (sum(v[1] - v[0] for v in run), sum(v[3] for v in run))
    return out


def rss_bytes() -> int:
    """This process's resident set now (Linux), else its peak (ru_maxrss)."""
    try:
        with open("/proc/self/statm") as f:
            import os

            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def generate(accesses: int, **kwargs) -> List[Tuple[str, int, int]]:
    """The whole stream in memory (for timing the detector alone)."""
    client = make_client()
    try:
        return list(batches(client, accesses, **kwargs))
    finally:
        client.shutdown(timeout=5)


def dump(path: str, accesses: int, **kwargs) -> None:
    """Writes the stream's batches to ``path``, one per line (for the native bench:
    core-wasm/examples/detector_bench.rs)."""
    with open(path, "w") as f:
        for text, _, _ in generate(accesses, **kwargs):
            f.write(text)
            f.write("\n")


if __name__ == "__main__":
    import sys
    import time

    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    t = time.perf_counter()
    if len(sys.argv) > 1 and sys.argv[1] != "-":
        dump(sys.argv[1], n)
    else:
        out = generate(n)
        print(f"{len(out)} batches, {sum(a for _, a, _ in out)} accesses, {sum(e for _, _, e in out)} events, "
              f"{sum(len(t) for t, _, _ in out) / sum(e for _, _, e in out):.0f} chars/event")
    print(f"{time.perf_counter() - t:.1f} s", file=sys.stderr)
