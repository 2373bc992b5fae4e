"""``python -m raceway``, run as a real process (sys.executable) on records files written here:
by real clients in real processes (Config(events_file=...)) and, for what a client never
writes (broken, foreign and truncated lines), by hand in the records-file format."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import pytest

from raceway import _analysis

T0 = 1795246001616516000


def run_cli(*args: str, cwd: Optional[Path] = None, env: Optional[Dict[str, str]] = None,
            timeout: float = 25) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.pop("RACEWAY_SUPPRESSIONS", None)
    full_env.update(env or {})
    done = subprocess.run([sys.executable, "-m", "raceway", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in done.stderr, done.stderr
    assert "Traceback" not in done.stdout, done.stdout
    return done


# ----------------------------------------------------------------------------------------------
# Records written by hand, in the contract's format.
# ----------------------------------------------------------------------------------------------
def process(pid: int, service: str = "svc") -> Dict[str, Any]:
    return {"service_name": service, "environment": "development", "instance_id": f"host-{pid}",
            "process_id": pid, "tags": {"sdk_language": "python"}}


def context(n: int, service: str = "svc") -> Dict[str, Any]:
    return {"trace_id": f"{n:08x}-0000-4000-8000-000000000000", "thread_id": f"python-{n}-{n:08x}",
            "component": f"{service}#host-{n}/{n:08x}", "span_id": f"{n:016x}", "upstream_span_id": None,
            "id_base": f"{n:032x}"}


def access(seq: int, t: int, line: int, variable: str, old: Any, new: Any, kind: str) -> list:
    return [0, 0, seq, seq - 1, T0 + t, None, "bank.py", line, "StateChange",
            [variable, old, new, kind, [f"bank.py:{line} in transfer"]]]


def line(pid: int, ctx: int, events: List[list], service: str = "svc") -> str:
    return json.dumps({"raceway": "records/1", "process": process(pid, service),
                       "contexts": [context(ctx, service)], "states": [{"clock": [], "locks": []}],
                       "events": events}, separators=(",", ":")) + "\n"


def lost_update_lines() -> Dict[str, List[str]]:
    """Two processes, one strand each, one file each; in time: A reads, B reads, B writes,
    A writes its stale value. Each file alone shows no race: only the merged order does."""
    return {
        "a.jsonl": [line(1, 1, [access(1, 10, 20, "alice.balance", None, 1000, "Read")]),
                    line(1, 1, [access(2, 40, 24, "alice.balance", 1000, 900, "Write")])],
        "b.jsonl": [line(2, 2, [access(1, 20, 20, "alice.balance", None, 1000, "Read"),
                                access(2, 30, 24, "alice.balance", 1000, 750, "Write")])],
    }


def write_files(tmp_path: Path, files: Dict[str, List[str]]) -> List[str]:
    for name, lines in files.items():
        (tmp_path / name).write_text("".join(lines))
    return [str(tmp_path / name) for name in files]


def analyze_json(*args: str, cwd: Optional[Path] = None) -> Dict[str, Any]:
    done = run_cli("analyze", "--json", *args, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def lost_updates(doc: Dict[str, Any], variable: str = "alice.balance") -> List[Dict[str, Any]]:
    return [r for r in doc["races"] if r["kind"] == "lost-update" and r["variable"] == variable]


# ----------------------------------------------------------------------------------------------
# The command line itself
# ----------------------------------------------------------------------------------------------
def test_version() -> None:
    import raceway

    done = run_cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"raceway {raceway.__version__}"


@pytest.mark.parametrize("args", [(), ("analyze",), ("analyze", "--bogus", "x"), ("nonsense",)])
def test_usage_errors_exit_2(args: Sequence[str]) -> None:
    done = run_cli(*args)
    assert done.returncode == 2
    assert done.stdout == ""


def test_an_unreadable_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    good = write_files(tmp_path, lost_update_lines())
    for missing in (str(tmp_path / "nope.jsonl"), str(tmp_path)):
        done = run_cli("analyze", *good, missing)
        assert done.returncode == 2
        assert done.stderr.count("\n") == 1 and "cannot read" in done.stderr
        assert done.stdout == ""


def test_a_file_with_no_records_at_all_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "app.log").write_text("INFO started\n{\"level\": \"info\"}\n")
    done = run_cli("analyze", str(tmp_path / "app.log"))
    assert done.returncode == 2
    assert "no raceway records" in done.stderr


def test_an_empty_file_is_analysed_and_reports_nothing(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("")
    doc = analyze_json(str(tmp_path / "empty.jsonl"))
    assert doc["races"] == [] and doc["skipped"] == {}


# ----------------------------------------------------------------------------------------------
# analyze on hand-written records
# ----------------------------------------------------------------------------------------------
def test_a_lost_update_across_two_processes_needs_the_merged_order(tmp_path: Path) -> None:
    files = write_files(tmp_path, lost_update_lines())
    doc = analyze_json(*files)
    (race,) = lost_updates(doc)
    read, between, stale = race["accesses"]
    assert (read["access_type"], between["access_type"], stale["access_type"]) == ("Read", "Write", "Write")
    assert read["location"] == "bank.py:20" and stale["location"] == "bank.py:24"
    assert read["thread_id"] == stale["thread_id"] != between["thread_id"]
    assert doc["skipped"] == {}
    assert doc["stats"]["events_analysed"] == 4 and doc["stats"]["processes"] == 2
    # Each file alone: no lost update (the other process's write is missing).
    for f in files:
        assert lost_updates(analyze_json(f)) == []


def test_broken_foreign_and_truncated_lines_are_reported_and_the_rest_analysed(tmp_path: Path) -> None:
    files = lost_update_lines()
    a = files["a.jsonl"]
    files["a.jsonl"] = [
        '{"level": "info", "msg": "a log line in the same file"}\n',
        a[0],
        "this is not json\n",
        '{"raceway": "records/9", "process": {}}\n',
        "[1, 2, 3]\n",
        "\n",
        a[1],
        a[1][: len(a[1]) // 2],  # the writer was killed in the middle of its last line
    ]
    paths = write_files(tmp_path, files)
    done = run_cli("analyze", "--json", *paths)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["skipped"] == {paths[0]: {"foreign_line": 2, "broken_line": 1, "unsupported_version": 1,
                                         "truncated_line": 1}}
    assert len(lost_updates(doc)) == 1
    # stderr says it too, in words, once per file
    skip_lines = [ln for ln in done.stderr.splitlines() if "skipped" in ln]
    assert len(skip_lines) == 1 and "a.jsonl" in skip_lines[0]
    assert "2 foreign lines" in skip_lines[0] and "1 truncated last line" in skip_lines[0]
    assert "1 broken lines (not JSON)" in skip_lines[0]


def test_malformed_batches_and_events_are_counted(tmp_path: Path) -> None:
    files = lost_update_lines()
    good = json.loads(files["a.jsonl"][0])
    bad_events = dict(good, events=[[0, 5, 3, 2, T0, None, "x.py", 1, "StateChange", []],  # no state 5
                                    "not a record", [0, 0]])
    bad_context = dict(good, contexts=[{"thread_id": "t"}])  # the core would refuse the batch
    files["a.jsonl"].insert(1, json.dumps(bad_events) + "\n")
    files["a.jsonl"].insert(1, json.dumps(bad_context) + "\n")
    files["a.jsonl"].insert(1, json.dumps({"raceway": "records/1", "process": "x"}) + "\n")
    paths = write_files(tmp_path, files)
    doc = analyze_json(*paths)
    assert doc["skipped"] == {paths[0]: {"malformed_batch": 1, "malformed_event": 4}}
    assert len(lost_updates(doc)) == 1


def test_records_the_detector_cannot_read_are_counted_not_fatal(tmp_path: Path) -> None:
    files = lost_update_lines()
    odd = access(5, 15, 30, "alice.balance", None, 1, "Read")
    odd[8] = "NoSuchKind"
    files["a.jsonl"].insert(1, line(1, 1, [access(3, 12, 31, "other", None, 1, "Read"), odd]))
    paths = write_files(tmp_path, files)
    done = run_cli("analyze", "--json", *paths)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["stats"]["events_dropped_by_detector"] == 1
    assert "the detector dropped 1 events" in done.stderr and "NoSuchKind" in done.stderr
    assert len(lost_updates(doc)) == 1


def test_duplicates_are_read_once(tmp_path: Path) -> None:
    paths = write_files(tmp_path, lost_update_lines())
    os.symlink(paths[0], tmp_path / "again.jsonl")
    (tmp_path / "copy.jsonl").write_text(Path(paths[1]).read_text())
    doc = analyze_json(*paths, paths[0], str(tmp_path / "again.jsonl"), str(tmp_path / "copy.jsonl"))
    assert doc["stats"]["events_analysed"] == 4
    assert doc["skipped"][paths[0]] == {"duplicate_file": 2}
    assert doc["skipped"][str(tmp_path / "copy.jsonl")] == {"duplicate_event": 2}
    assert len(lost_updates(doc)) == 1


def test_rotated_backups_and_gzip_are_read_together(tmp_path: Path) -> None:
    files = lost_update_lines()
    (tmp_path / "a.jsonl.1").write_text(files["a.jsonl"][0])  # rotated: the older line
    (tmp_path / "a.jsonl").write_text(files["a.jsonl"][1])
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as f:
        f.write("".join(files["b.jsonl"]))
    doc = analyze_json(str(tmp_path / "a.jsonl"), str(tmp_path / "a.jsonl.1"), str(tmp_path / "b.jsonl.gz"))
    assert len(lost_updates(doc)) == 1


def test_a_truncated_gzip_file_is_reported_and_its_start_used(tmp_path: Path) -> None:
    files = lost_update_lines()
    (tmp_path / "a.jsonl").write_text("".join(files["a.jsonl"]))
    data = gzip.compress(("".join(files["b.jsonl"]) + "".join(
        line(2, 9, [access(1, 100 + i, 5, f"v{i}", None, i, "Read")]) for i in range(200))).encode())
    (tmp_path / "b.jsonl.gz").write_bytes(data[: len(data) - 40])
    done = run_cli("analyze", "--json", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl.gz"))
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["skipped"][str(tmp_path / "b.jsonl.gz")].get("truncated_gzip") == 1
    assert len(lost_updates(doc)) == 1


def test_exit_status_with_races_and_fail_on_race(tmp_path: Path) -> None:
    paths = write_files(tmp_path, lost_update_lines())
    done = run_cli("analyze", *paths)
    assert done.returncode == 0
    assert "alice.balance" in done.stdout and "bank.py:20" in done.stdout and "bank.py:24" in done.stdout
    assert run_cli("analyze", "--fail-on-race", *paths).returncode == 1
    assert run_cli("analyze", "--fail-on-race", paths[0]).returncode in (0, 1)  # one file: no lost update
    assert lost_updates(analyze_json(paths[0])) == []


def test_sarif_and_html_outputs(tmp_path: Path) -> None:
    paths = write_files(tmp_path, lost_update_lines())
    done = run_cli("analyze", "--sarif", str(tmp_path / "out.sarif"), "--html", str(tmp_path / "out.html"), *paths)
    assert done.returncode == 0, done.stderr
    sarif = json.loads((tmp_path / "out.sarif").read_text())
    assert sarif["version"] == "2.1.0" and sarif["runs"][0]["results"]
    page = (tmp_path / "out.html").read_text()
    assert "alice.balance" in page
    for option in ("--sarif", "--html"):
        bad = run_cli("analyze", option, str(tmp_path / "no-such-dir" / "out"), *paths)
        assert bad.returncode == 2 and "cannot write" in bad.stderr


def test_suppressions_from_the_option_or_the_environment(tmp_path: Path) -> None:
    paths = write_files(tmp_path, lost_update_lines())
    rules = tmp_path / "raceway.supp"
    rules.write_text("# known\nvariable:alice.*\nlocation:nowhere.py:1\n")
    doc = analyze_json("--suppressions", str(rules), *paths)
    assert doc["races"] == [] and doc["stats"]["suppressed"] >= 1
    text = run_cli("analyze", *paths, env={"RACEWAY_SUPPRESSIONS": str(rules)})
    assert text.returncode == 0 and "alice.balance" not in text.stdout
    assert "nowhere.py:1" in text.stdout  # the rule that matched nothing is listed
    assert run_cli("analyze", "--fail-on-race", "--suppressions", str(rules), *paths).returncode == 0


def test_a_bad_suppressions_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    paths = write_files(tmp_path, lost_update_lines())
    (tmp_path / "bad.supp").write_text("variable:x\nthis is not a rule\n")
    for supp in (str(tmp_path / "bad.supp"), str(tmp_path / "missing.supp")):
        done = run_cli("analyze", "--suppressions", supp, *paths)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and done.stdout == ""


def test_timestamps_going_backwards_in_a_strand_keep_its_seq_order(tmp_path: Path) -> None:
    """The merge itself: a strand whose clock stepped back keeps its order, and lands after
    events of other strands that happened (by the clock) before its earlier events."""
    files = {
        "a.jsonl": [line(1, 1, [access(1, 50, 1, "x", None, 1, "Read"), access(2, 10, 2, "x", 1, 2, "Write"),
                                access(3, 60, 3, "x", 2, 3, "Write")])],
        "b.jsonl": [line(2, 2, [access(1, 20, 1, "y", None, 1, "Read"), access(2, 55, 2, "y", 1, 2, "Write")])],
    }
    paths = write_files(tmp_path, files)
    rec = _analysis.read_records(paths)
    _analysis.merge_order(rec)
    order = [(rec.contexts[e[6]]["thread_id"], json.loads(e[8])[0]) for e in rec.events]
    a, b = context(1)["thread_id"], context(2)["thread_id"]
    assert order == [(b, 1), (a, 1), (a, 2), (b, 2), (a, 3)]
    batches = list(_analysis.rebatch(rec, per_batch=2))
    assert [len(bt) for bt in batches] == [1, 2, 1, 1]
    assert [bt.process["process_id"] for bt in batches] == [2, 1, 2, 1]
    for bt in batches:  # each batch's own tables, the records intact
        records = json.loads(bt.to_json())
        for ev in records["events"]:
            assert ev[0] < len(records["contexts"]) and ev[1] < len(records["states"])
            assert len(ev) == 10 and ev[8] == "StateChange"
    assert [json.loads(bt.to_json())["events"][0][4] for bt in batches] == [T0 + 20, T0 + 50, T0 + 55, T0 + 60]


# ----------------------------------------------------------------------------------------------
# analyze on records files written by real clients in real processes
# ----------------------------------------------------------------------------------------------
SERVICE = textwrap.dedent("""
    import sys
    from raceway import Config, RacewayClient
    name, path = sys.argv[1], sys.argv[2]
    client = RacewayClient(Config(endpoint=None, service_name=name, events_file=path, flush_interval=0.05))
    balance = 1000
    with client.trace():
        for command in sys.stdin:
            command = command.strip()
            if command == "read":
                client.track_state_change("shared.balance", None, balance, "Read")
            elif command.startswith("write "):
                new = int(command.split()[1])
                client.track_state_change("shared.balance", balance, new, "Write")
            client.flush(10)
            print("ok", flush=True)
    client.shutdown(10)
""")


class Service:
    def __init__(self, tmp_path: Path, name: str):
        self.path = tmp_path / f"{name}.jsonl"
        self.proc = subprocess.Popen([sys.executable, "-c", SERVICE, name, str(self.path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def do(self, command: str) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        assert self.proc.wait(20) == 0


def test_real_services_in_two_processes_lose_an_update(tmp_path: Path) -> None:
    """Two real processes with a real client each, steered step by step: A reads, B reads and
    writes, A writes its stale value. Only the merged files show the lost update."""
    a, b = Service(tmp_path, "service-a"), Service(tmp_path, "service-b")
    try:
        a.do("read")
        b.do("read")
        b.do("write 750")
        a.do("write 900")
    finally:
        a.close()
        b.close()
    for svc in (a, b):
        lines = [json.loads(ln) for ln in svc.path.read_text().splitlines()]
        assert lines and all(ln["raceway"] == "records/1" for ln in lines)
    doc = analyze_json(str(a.path), str(b.path))
    (race,) = lost_updates(doc, "shared.balance")
    assert [acc["service"] for acc in race["accesses"]] == ["service-a", "service-b", "service-a"]
    assert [acc["new_value"] for acc in race["accesses"]] == [1000, 750, 900]
    assert doc["skipped"] == {}


THREADS = textwrap.dedent("""
    import sys, threading, time
    from raceway import Config, RacewayClient
    client = RacewayClient(Config(endpoint=None, service_name="svc", events_file=sys.argv[1],
                                  events_file_max_bytes=4096, events_file_backups=50))
    state = {"n": 0}
    barrier = threading.Barrier(2)
    def work():
        with client.trace():
            n = state["n"]
            client.track_state_change("counter", None, n, "Read")
            barrier.wait()
            time.sleep(0.02)
            state["n"] = n + 1
            client.track_state_change("counter", n, n + 1, "Write")
            for i in range(10):
                client.track_function_call("busy", {"i": i, "pad": "x" * 500})
                client.flush(10)  # a line each time
    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads: t.start()
    for t in threads: t.join()
    client.shutdown(10)
""")


def test_a_real_client_rotating_its_file_is_analysed_from_the_backups(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    done = subprocess.run([sys.executable, "-c", THREADS, str(path)], capture_output=True, text=True, timeout=25)
    assert done.returncode == 0, done.stderr
    files = sorted(str(p) for p in tmp_path.iterdir())
    assert len(files) > 2  # it rotated
    doc = analyze_json(*files)
    assert lost_updates(doc, "counter")


# ----------------------------------------------------------------------------------------------
# The demo
# ----------------------------------------------------------------------------------------------
def test_the_demo_shows_the_lost_update_then_a_clean_run(tmp_path: Path) -> None:
    done = run_cli("demo", "--html", str(tmp_path / "demo.html"))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    racy, _, fixed = out.partition("2. With the transfer under one lock")
    assert fixed, out
    assert "alice.balance" in racy and "lost" in racy.lower()
    assert "bank.py" in racy  # both locations: the read and the stale write
    assert "out of thin air" in racy
    assert "reports nothing" in fixed and "out of thin air" not in fixed
    assert "alice.balance" in (tmp_path / "demo.html").read_text()
