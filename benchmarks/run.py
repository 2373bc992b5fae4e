"""`make bench`: every figure of the performance issue in one table, ours beside OpenTelemetry
and the floor, with ratios. Usage: python benchmarks/run.py [--only NAME ...] [--markdown]"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import fmt  # noqa: E402

MODULES = ["hot_path", "pipeline", "propagation", "middleware", "startup", "memory"]


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

    row("track_state_change", "state_change", "µs", "<= 1 µs", lambda m: m <= 1, "otel_span_event", "floor_state_change")
    row("track_function_call", "function_call", "µs", "<= 1 µs", lambda m: m <= 1, "otel_span_event", "floor_function_call")
    row("track_function_call(name, args)", "function_call_args", "µs", "<= 1 µs", lambda m: m <= 1, "otel_span_event", "floor_function_call")
    row("pipeline, one core", "pipeline_events_per_s", "ev/s", ">= 300,000 ev/s", lambda m: m >= 300_000,
        note=("per event: record %s µs, encode records %s µs, core %s µs" % tuple(
            fmt(median(r[k])) for k in ("pipeline_record_us", "pipeline_encode_us", "pipeline_core_us")))
        if "pipeline_record_us" in r else "")
    row("ASGI middleware per request", "asgi_overhead", "µs", "<= 30 µs", lambda m: m <= 30, floor="asgi_bare")
    row("WSGI middleware per request", "wsgi_overhead", "µs", "<= 30 µs", lambda m: m <= 30, floor="wsgi_bare")
    row("ASGI middleware, with trace headers", "asgi_overhead_headers", "µs", "<= 30 µs", lambda m: m <= 30)
    row("propagation_headers()", "propagation_headers", "µs", "<= 15 µs", lambda m: m <= 15, "otel_inject", "floor_propagation")
    row("import + ready client (cached)", "startup_cached_ms", "ms", "<= 100 ms", lambda m: m <= 100)
    row("import + ready client (cold)", "startup_cold_ms", "ms", "<= 400 ms", lambda m: m <= 400)
    row("peak RSS growth, 1M events, slow server", "memory_rss_growth_mb", "MB", "bounded by queue limit (100k)", lambda m: m <= 150,
        note=r.get("memory_note", [""])[0] if isinstance(r.get("memory_note"), list) else "")
    return out


COLUMNS = ["what", "ours", "spread", "otel", "floor", "vs otel", "vs floor", "target", "met"]


def table(rs: List[Row], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(r[c] for c in COLUMNS) + " |" for r in rs]
    else:
        widths = {c: max(len(c), *(len(r[c]) for r in rs)) for c in COLUMNS}
        lines = ["  ".join(c.ljust(widths[c]) for c in COLUMNS), "  ".join("-" * widths[c] for c in COLUMNS)]
        lines += ["  ".join(r[c].ljust(widths[c]) for c in COLUMNS) for r in rs]
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
    print(table(rows(results), args.markdown))


if __name__ == "__main__":
    main()
