"""`make bench`: every figure of the performance issue in one table, ours beside OpenTelemetry
and the floor, with ratios, then the race detector's figures in a second table.
Usage: python benchmarks/run.py [--only NAME ...] [--markdown]"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import fmt  # noqa: E402

MODULES = ["hot_path", "pipeline", "propagation", "middleware", "startup", "memory",
           "detector", "detector_memory", "detector_pipeline", "spawn_join", "race_stacks", "shared", "sustained"]


def machine() -> str:
    cpu = "unknown cpu"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from importlib.metadata import version

    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"wasmtime-py {version('wasmtime')}, {platform.system()} {platform.release()}")


def median(xs: List[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def spread(xs: List[float]) -> str:
    s = sorted(xs)
    return f"{fmt(s[len(s) // 10])}-{fmt(s[-1 - len(s) // 10])}"


Row = Dict[str, str]


def rows(r: Dict[str, List[float]]) -> List[Row]:
    out: List[Row] = []

    def row(what: str, key: str, unit: str, target: str, ok, otel: Optional[str] = None, floor: Optional[str] = None, note: str = "") -> None:
        if key not in r:
            return
        m = median(r[key])
        cells = {"what": what, "ours": f"{fmt(m)} {unit}", "spread": spread(r[key]), "target": target,
                 "met": "yes" if ok(m) else "NO", "otel": "", "floor": "", "vs floor": "", "vs otel": "", "note": note}
        if otel and otel in r:
            o = median(r[otel])
            cells["otel"] = f"{fmt(o)} {unit}"
            cells["vs otel"] = f"{m / o:.2f}x"
        if floor and floor in r:
            f = median(r[floor])
            cells["floor"] = f"{fmt(f)} {unit}"
            cells["vs floor"] = f"{m / f:.1f}x"
        out.append(cells)

    row("track_state_change (IDLE sender, queue cleared every 2,000 calls: the sustained rows are what a service pays)", "state_change", "µs", "<= 1 µs", lambda m: m <= 1, "otel_span_event", "floor_state_change")
    row("track_function_call (IDLE sender, queue cleared every 2,000 calls: the sustained rows are what a service pays)", "function_call", "µs", "<= 1 µs", lambda m: m <= 1, "otel_span_event", "floor_function_call")
    row("track_function_call(name, args) (IDLE sender, queue cleared every 2,000 calls: the sustained rows are what a service pays)", "function_call_args", "µs", "<= 1 µs", lambda m: m <= 1, "otel_span_event", "floor_function_call")
    row("pipeline, one core (record, encode and core on one thread, no delivery: see the sustained rows)", "pipeline_events_per_s", "ev/s", ">= 300,000 ev/s", lambda m: m >= 300_000,
        note=("per event: record %s µs, encode records %s µs, core %s µs" % tuple(
            fmt(median(r[k])) for k in ("pipeline_record_us", "pipeline_encode_us", "pipeline_core_us")))
        if "pipeline_record_us" in r else "")
    row("pipeline, one core, JSON records (the fallback form)", "pipeline_json_events_per_s", "ev/s", ">= 300,000 ev/s",
        lambda m: m >= 300_000)
    row("ASGI middleware per request", "asgi_overhead", "µs", "<= 30 µs", lambda m: m <= 30, floor="asgi_bare")
    row("WSGI middleware per request", "wsgi_overhead", "µs", "<= 30 µs", lambda m: m <= 30, floor="wsgi_bare")
    row("ASGI middleware, with trace headers", "asgi_overhead_headers", "µs", "<= 30 µs", lambda m: m <= 30)
    row("propagation_headers()", "propagation_headers", "µs", "<= 15 µs", lambda m: m <= 15, "otel_inject", "floor_propagation")
    row("import + ready client (cached)", "startup_cached_ms", "ms", "<= 100 ms", lambda m: m <= 100)
    row("import + ready client (cold)", "startup_cold_ms", "ms", "<= 400 ms", lambda m: m <= 400)
    row("peak RSS growth, 1M events, slow server", "memory_rss_growth_mb", "MB", "bounded by queue limit (100k)", lambda m: m <= 150,
        note=r.get("memory_note", [""])[0] if isinstance(r.get("memory_note"), list) else "")
    return out


def detector_rows(r: Dict[str, List[float]]) -> List[Row]:
    """The race detector's figures (bench_detector*, bench_spawn_join, bench_race_stacks)."""
    out: List[Row] = []

    def med(key: str) -> Optional[float]:
        return median(r[key]) if key in r else None

    def row(what: str, key: str, unit: str, target: str, ok, floor: Optional[str] = None, note: str = "") -> None:
        if key not in r:
            return
        m = median(r[key])
        cells = {"what": what, "ours": f"{fmt(m)} {unit}", "spread": spread(r[key]), "target": target,
                 "met": "yes" if ok(m) else "NO", "otel": "", "floor": "", "vs floor": "", "vs otel": "", "note": note}
        if floor and floor in r:
            f = median(r[floor])
            cells["floor"] = f"{fmt(f)} {unit}"
            cells["vs floor"] = f"{m / f:.1f}x"
        out.append(cells)

    def flat(base: Optional[float], factor: float = 1.5):
        return lambda m: base is not None and m <= factor * base

    # 1. Cost per access as the history grows (one fresh detector, the realistic mix).
    base = med("det_us_4")
    for k in (3, 4, 5, 6):
        read, enc, det = med(f"det_read_us_{k}"), med(f"det_encode_us_{k}"), med(f"det_us_{k}")
        note = ""
        if read is not None and det is not None:
            note = (f"read only (encode_batch(b, 0)) {fmt(read)} µs, so the detector's own share "
                    f"{fmt(det - read)} µs; detection off (encode_batch(b, batch_size)) {fmt(enc)} µs per access")
        if f"det_fed_{k}" in r:
            fed = median(r[f"det_fed_{k}"])
            note += (f"; the detector failed (trap or time budget) after {fed:,.0f} accesses: the figure is over "
                     f"{fed / 2:,.0f}-{fed:,.0f}")
        row(f"detector per access at 10^{k} accesses (mix; observe(b, 0), 2nd half)", f"det_us_{k}", "µs",
            "flat: <= 1.5x the 10^4 row", flat(base), note=note)
    base = med("det_nolocks_us_5")
    for k in (5, 6):
        row(f"detector per access at 10^{k} accesses (mix without locks)", f"det_nolocks_us_{k}", "µs",
            "flat: <= 1.5x its 10^5 row", flat(base))

    # 2. Memory of the detector instance as strands end.
    for name, label in (("mix", "mix, ~100 accesses per strand"), ("nolocks", "mix without locks"),
                        ("nolocks_short", "mix without locks, ~10 accesses per strand")):
        for k, n in (("1e5", "10^5"), ("1e6", "10^6")):
            row(f"detector wasm memory after {n} accesses ({label})", f"detmem_{name}_{k}", "MB",
                "<= 128 MB (half the core's limit)", lambda m: m <= 128)
        if f"detmem_{name}_trap_at" in r:
            at = median(r[f"detmem_{name}_trap_at"])
            out.append({"what": f"detector wasm memory, 10^6 accesses ({label})", "ours": f"trapped at {at:,.0f} accesses",
                        "spread": "", "target": "<= 128 MB (half the core's limit)", "met": "NO", "otel": "", "floor": "",
                        "vs floor": "", "vs otel": "", "note": "the core's 256 MB memory limit: the client turns itself off"})

    if "detmem_client_alive" in r:
        alive = median(r["detmem_client_alive"]) > 0
        out.append({"what": "client with the defaults after 4x10^5 accesses of the mix (endpoint=None)",
                    "ours": "on" if alive else "turned off (core trapped)", "spread": "", "target": "on",
                    "met": "yes" if alive else "NO", "otel": "", "floor": "", "vs floor": "", "vs otel": "",
                    "note": ""})

    # 3. The pipeline on one core with detection on and off. The target, 250k ev/s with
    # detection on, was set on a host where the pipeline before the detector did 359k: 0.70x of
    # it. On a slower host the same ratio to that pipeline (the ``off0`` row, measured in the
    # same run) is the target; the absolute figure is met too when it is reached.
    base = median(r["detpipe_off0_eps"]) if "detpipe_off0_eps" in r else None
    ratio_target = ">= 250,000 ev/s, or >= 0.70x the row before the detector (same run)"
    for mode, label, target, goal in (
        ("off0", "pipeline, detection off, race_stack_frames=0, JSON records (the pipeline before the detector)", ">= 300,000 ev/s", 300_000),
        ("off", "pipeline, detection off (encode_batch_pickle; the default stack frames recorded)", ">= 300,000 ev/s", 300_000),
        ("on", "pipeline, detection on, bodies made (observe_pickle(b, batch_size): the default with an endpoint)", ratio_target, 250_000),
        ("detect", "pipeline, detect only, endpoint=None (observe_pickle(b, 0): the default without one)", ratio_target, 250_000),
        ("onjson", "pipeline, detection on, bodies made, JSON records (observe(b, batch_size): the fallback form)", ratio_target, 250_000),
        ("detectjson", "pipeline, detect only, JSON records (observe(b, 0): the fallback form)", ratio_target, 250_000),
    ):
        note = ""
        if f"detpipe_{mode}_record_us" in r:
            note = "per event: record %s µs, encode records %s µs, core %s µs; by CPU time %s ev/s" % tuple(
                fmt(median(r[f"detpipe_{mode}_{k}"])) for k in ("record_us", "encode_us", "core_us", "cpu_eps"))
        if goal == 250_000 and base and f"detpipe_{mode}_eps" in r:
            note += f"; {median(r[f'detpipe_{mode}_eps']) / base:.2f}x the row before the detector"
        label += "; record, encode and core on one thread, no delivery"
        ok = (lambda m, g=goal: m >= g) if goal != 250_000 else (
            lambda m: m >= 250_000 or (base is not None and m >= 0.70 * base))
        row(label, f"detpipe_{mode}_eps", "ev/s", target, ok, note=note)

    # 4. Spawn + join as joined strands pile up.
    for where, label in (("app", "application thread"), ("bg", "encode + observe(b, 0)")):
        targets = {10: ("", None), 1_000: ("<= 2x the 10 row", flat(med(f"spawn_join_{where}_us_10"), 2.0)),
                   10_000: ("flat: <= 1.25x the 1,000 row", flat(med(f"spawn_join_{where}_us_1000"), 1.25))}
        for k in (10, 1_000, 10_000):
            note = ""
            if where == "bg" and f"spawn_join_encode_us_{k}" in r:
                note = (f"encoding {fmt(median(r[f'spawn_join_encode_us_{k}']))} µs, "
                        f"{median(r[f'spawn_join_chars_{k}']):,.0f} characters of batch per spawn+join, "
                        f"parent's inherited clock {median(r[f'spawn_join_clock_{k}']):.0f} entries")
            row(f"spawn+join (trace() + 1 event) after {k:,} joined, {label}", f"spawn_join_{where}_us_{k}", "µs",
                targets[k][0], targets[k][1] or (lambda m: True), note=note)

    # 5. track_state_change by race_stack_frames.
    for d in (0, 1, 2, 4, 8):
        row(f"track_state_change, race_stack_frames={d} (loop, idle sender)", f"stack_frames_{d}", "µs",
            "<= 1 µs", lambda m: m <= 1, floor="stack_floor")
    for d in (0, 1, 2, 4, 8):
        row(f"track_state_change, race_stack_frames={d} (8-function call chain)", f"stack_chain_frames_{d}", "µs",
            "", lambda m: True, floor="stack_chain_floor")
    for cells in out:
        if cells["target"] == "":
            cells["met"] = ""
    return out


def shared_rows(r: Dict[str, List[float]]) -> List[Row]:
    """Automatic tracking (bench_shared): raceway.shared per access, and the issue's twelve plain
    programs with and without the pytest plugin's machinery."""
    out: List[Row] = []
    if "shared_on" not in r:
        return out
    plain, by_hand = median(r["shared_plain"]), median(r["shared_by_hand"])

    def row(what: str, key: str, target: str = "", met: str = "", note: str = "") -> None:
        m = median(r[key])
        out.append({"what": what, "ours": f"{fmt(m)} µs", "spread": spread(r[key]), "otel": "", "floor": f"{fmt(plain)} µs",
                    "vs otel": "", "vs floor": f"{m / plain:.1f}x", "target": target, "met": met, "note": note})

    on = median(r["shared_on"])
    idle = " (IDLE sender, queue cleared between rounds: the recording cost alone)"
    row("dict, 9 reads : 1 write, per access: raceway.shared, no client", "shared_off")
    row("the same, raceway.shared recording" + idle, "shared_on", "<= 1.5x track_state_change by hand",
        "yes" if on <= 1.5 * by_hand else "NO", note=f"{on / by_hand:.2f}x the same accesses tracked by hand")
    row("the same, plain dict + track_state_change by hand" + idle, "shared_by_hand")
    if "bar_slowdown_total" in r:
        names = sorted(k[len("bar_slowdown_"):] for k in r if k.startswith("bar_slowdown_") and k != "bar_slowdown_total")
        total = r["bar_slowdown_total"][0]
        wrong = int(r.get("bar_wrong_verdicts", [0.0])[0])
        what = "12 plain programs (issue bar) under the plugin's machinery, total (each test's own client set-up, 2-6 ms, excluded)"
        out.append({"what": what, "ours": f"{total:.2f}x",
                    "spread": "", "otel": "", "floor": "", "vs otel": "", "vs floor": "", "target": "< 3x, every verdict right",
                    "met": "yes" if total < 3 and not wrong else "NO",
                    "note": f"runs with a wrong verdict: {wrong}; " + "; ".join(f"{n[5:]} {r['bar_slowdown_' + n][0]:.1f}x" for n in names)})
    return out


def sustained_rows(r: Dict[str, List[float]]) -> List[Row]:
    """Issue 12 (bench_sustained): track_* the way a service runs, end to end, the reference SDK."""
    out: List[Row] = []
    if "sus_none_state_change_us" not in r and "e2e_off_eps" not in r:
        return out

    def med(key: str) -> float:
        return median(r[key])

    def cost_note(prefix: str) -> str:
        return (f"per 10^6 calls: GC collections gen0/1/2 {med(prefix + '_gc0'):,.0f} / {med(prefix + '_gc1'):,.0f} / "
                f"{med(prefix + '_gc2'):,.0f}; other threads' CPU (process CPU - app thread CPU: the sender, "
                f"an upper bound on its GIL share) {med(prefix + '_other_cpu_s_per_m'):.2f} s, "
                f"{100 * med(prefix + '_other_share'):.0f}% of the round's wall time")

    def row(what: str, key: str, unit: str, target: str = "", ok=None, floor: Optional[str] = None, note: str = "") -> None:
        if key not in r:
            return
        m = med(key)
        cells = {"what": what, "ours": f"{fmt(m)} {unit}", "spread": spread(r[key]), "target": target,
                 "met": "" if ok is None else ("yes" if ok(m) else "NO"), "otel": "", "floor": "", "vs floor": "",
                 "vs otel": "", "note": note}
        if floor and floor in r:
            f = med(floor)
            cells["floor"] = f"{fmt(f)} {unit}"
            cells["vs floor"] = f"{m / f:.1f}x"
            if ok is not None:
                cells["met"] = "yes" if ok(m) and m <= 15 * f else "NO"
        out.append(cells)

    # Issue 12's target is for track_state_change with the default Config (an endpoint: the
    # sender running). The other rows are the measurements it asked for beside it: each track_*
    # call, and endpoint=None, which is not the default and has no sender (its flusher feeds
    # the detector).
    for mode, label in (("collector", "default Config, sender running, collector on 127.0.0.1 in another process"),
                        ("none", "endpoint=None (no server: the flusher feeds the detector)")):
        for call in ("state_change", "function_call"):
            p = f"sus_{mode}_{call}"
            targeted = mode == "collector" and call == "state_change"
            row(f"track_{call}, sustained: 80k calls, one context, {label}", f"{p}_us", "µs",
                "<= 1 µs and <= 15x floor" if targeted else "", (lambda m: m <= 1) if targeted else None,
                f"sus_{mode}_floor_{call}_us", note=cost_note(p) if f"{p}_gc0" in r else "")
    for call in ("state_change", "function_call"):
        row(f"track_{call}, IDLE sender (the old make bench row: endpoint=None, queue cleared every 2,000 calls)",
            f"sus_idle_{call}", "µs", floor=f"sus_none_floor_{call}_us")
    for tag, label, goal in (("off", "detect_races=False", 250_000), ("on", "detect_races=True (default)", 200_000)):
        p = f"e2e_{tag}"
        if f"{p}_eps" not in r:
            continue
        note = (f"received {med(p + '_received'):,.0f} of 80,000 per round in {med(p + '_requests'):,.0f} requests; "
                f"recording took {med(p + '_record_s'):.2f} s of {med(p + '_total_s'):.2f} s; SDK process CPU "
                f"{med(p + '_sdk_cpu_s'):.2f} s; collector CPU {med(p + '_collector_cpu_s'):.2f} s "
                f"({100 * med(p + '_collector_cpu_s') / med(p + '_total_s'):.0f}% busy: not the bottleneck)")
        row(f"end-to-end, record to delivered, SDK pinned to 1 core, collector in another process, {label}",
            f"{p}_eps", "ev/s", f">= {goal:,} ev/s", lambda m, g=goal: m >= g, note=note)
    if "sus_ref_us" in r:
        row("reference Raceway Python SDK, track_state_change sustained (own process, same collector, 3x2,000 calls)",
            "sus_ref_us", "µs", floor="sus_collector_floor_state_change_us",
            note=cost_note("sus_ref") + f"; collector received {med('sus_ref_received'):,.0f} of {med('sus_ref_recorded'):,.0f}")
    if "sus_otel_us" in r:
        row("OpenTelemetry SDK, span + 1 event sustained (BatchSpanProcessor, discarding exporter, 3x20,000)",
            "sus_otel_us", "µs", floor="sus_collector_floor_state_change_us", note=cost_note("sus_otel"))
    return out


COLUMNS = ["what", "ours", "spread", "otel", "floor", "vs otel", "vs floor", "target", "met"]


DETECTOR_COLUMNS = ["what", "ours", "spread", "floor", "vs floor", "target", "met"]


def table(rs: List[Row], markdown: bool, columns: Optional[List[str]] = None) -> str:
    cols = columns or COLUMNS
    if markdown:
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(r[c] for c in cols) + " |" for r in rs]
    else:
        widths = {c: max(len(c), *(len(r[c]) for r in rs)) for c in cols}
        lines = ["  ".join(c.ljust(widths[c]) for c in cols), "  ".join("-" * widths[c] for c in cols)]
        lines += ["  ".join(r[c].ljust(widths[c]) for c in cols) for r in rs]
    notes = [f"- {r['what']}: {r['note']}" for r in rs if r["note"]]
    return "\n".join(lines + ([""] + notes if notes else []))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", choices=MODULES)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    results: Dict[str, List[float]] = {}
    started = time.time()
    for name in args.only or MODULES:
        try:
            module = __import__(f"bench_{name}")
        except ModuleNotFoundError as e:
            print(f"skipping {name}: {e}", file=sys.stderr)
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results.update(module.run())
        if name == "memory" and getattr(module.run, "last_stats", None):
            results["memory_note"] = [f"stats of the last run: {module.run.last_stats}"]  # type: ignore[list-item]
    print(f"\nRaceway benchmarks ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {time.time() - started:.0f} s)")
    print(f"Machine: {machine()}")
    print("Medians over rounds; spread is the 10th-90th percentile of rounds.\n")
    main_rows = rows(results)
    if main_rows:
        print(table(main_rows, args.markdown))
    auto_rows = shared_rows(results)
    if auto_rows:
        print("\nAutomatic tracking (raceway.shared, the pytest plugin)\n")
        print(table(auto_rows, args.markdown))
    sus_rows = sustained_rows(results)
    if sus_rows:
        print("\nSustained (issue 12): each in a fresh process, SDK pinned to CPU 0, collector process on CPU 1\n")
        print(table(sus_rows, args.markdown, DETECTOR_COLUMNS))
    det_rows = detector_rows(results)
    if det_rows:
        print("\nRace detector\n")
        print(table(det_rows, args.markdown, DETECTOR_COLUMNS))
        for key in ("detector_note", "detector_memory_note", "race_stacks_note"):
            for line in results.get(key, []):
                print(f"- {line}")


if __name__ == "__main__":
    main()
