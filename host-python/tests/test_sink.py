"""The records file (`raceway._sink.EventsFile`): its line format, rotation, failures and
crash safety, on real files (and a real process killed while it writes)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from raceway._sink import EventsFile

PROCESS = {"service_name": "svc", "environment": "development", "instance_id": "host-1",
           "process_id": 123, "tags": {"sdk_language": "python"}}


def batch(n: int, pad: int = 0) -> dict:
    return {
        "contexts": [{"trace_id": "00000000-0000-0000-0000-000000000001", "thread_id": f"python-1-{n:08x}",
                      "component": f"svc#host-1/{n:08x}", "span_id": "b7ad6b7169203331",
                      "upstream_span_id": None, "id_base": "0" * 31 + "1"}],
        "states": [{"clock": [["other#host-2/00000001", 3]], "locks": ["account_lock"]}],
        "events": [[0, 0, n + 1, n, 1795246001616516000 + n, None, "app.py", 12, "StateChange",
                    ["balance", None, "x" * pad, "Read", ["app.py:12 in transfer"]]]],
    }


def compact(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":"))


def lines_of(path: Path) -> list:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def test_a_line_is_the_batch_with_the_format_and_the_process_in_front(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = EventsFile(path)
    b = batch(1)
    sink.write(PROCESS, compact(b))
    sink.write(PROCESS, "  " + json.dumps(b) + "\n")  # spaces around it: still one line
    sink.write(PROCESS, "{}")
    sink.close()
    text = path.read_text()
    assert text.endswith("\n") and text.count("\n") == 3
    first, second, third = lines_of(path)
    assert first == {"raceway": "records/1", "process": PROCESS, **b}
    assert list(first)[:2] == ["raceway", "process"]
    assert second == first
    assert third == {"raceway": "records/1", "process": PROCESS}
    assert sink.written_batches == 3 and sink.failed_batches == 0


def test_a_batch_that_is_not_compact_is_still_one_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = EventsFile(path)
    b = batch(2)
    sink.write(PROCESS, json.dumps(b, indent=2))
    sink.close()
    assert lines_of(path) == [{"raceway": "records/1", "process": PROCESS, **b}]


def test_non_ascii_values_survive(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = EventsFile(path)
    b = batch(3)
    b["events"][0][9][2] = "Zürich 東京 \u2028"
    sink.write(PROCESS, json.dumps(b, ensure_ascii=False, separators=(",", ":")))
    sink.close()
    assert lines_of(path)[0]["events"] == b["events"]


def test_rotation_keeps_at_most_the_configured_backups(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = EventsFile(path, max_bytes=2000, backups=2)
    for n in range(60):
        sink.write(PROCESS, compact(batch(n, pad=200)))
    sink.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    for name in names:
        assert (tmp_path / name).stat().st_size <= 2000
    # Newest in PATH, older in PATH.1, oldest kept in PATH.2; none torn, none out of order.
    seqs = [line["events"][0][2] for name in reversed(names) for line in lines_of(tmp_path / name)]
    assert seqs == sorted(seqs) and seqs[-1] == 60
    assert seqs == list(range(seqs[0], 61))


def test_rotation_continues_a_file_left_by_an_earlier_process(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    first = EventsFile(path, max_bytes=1500, backups=1)
    for n in range(3):
        first.write(PROCESS, compact(batch(n, pad=200)))
    first.close()
    second = EventsFile(path, max_bytes=1500, backups=1)
    for n in range(3, 12):
        second.write(PROCESS, compact(batch(n, pad=200)))
    second.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.jsonl", "events.jsonl.1"]
    assert path.stat().st_size <= 1500


def test_zero_backups_starts_the_file_over(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = EventsFile(path, max_bytes=1000, backups=0)
    for n in range(20):
        sink.write(PROCESS, compact(batch(n, pad=200)))
    sink.close()
    assert [p.name for p in tmp_path.iterdir()] == ["events.jsonl"]
    assert path.stat().st_size <= 1000
    assert lines_of(path)[-1]["events"][0][2] == 20


def test_a_line_bigger_than_max_bytes_is_written_alone(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = EventsFile(path, max_bytes=500, backups=3)
    sink.write(PROCESS, compact(batch(1)))
    sink.write(PROCESS, compact(batch(2, pad=2000)))
    sink.write(PROCESS, compact(batch(3)))
    sink.close()
    assert [len(lines_of(tmp_path / n)) for n in ("events.jsonl", "events.jsonl.1", "events.jsonl.2")] == [1, 1, 1]
    assert lines_of(tmp_path / "events.jsonl.1")[0]["events"][0][2] == 3


def test_failures_are_logged_once_never_raised_and_writing_resumes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "missing-dir" / "events.jsonl"
    sink = EventsFile(path)
    with caplog.at_level(logging.ERROR, logger="raceway"):
        for n in range(3):
            sink.write(PROCESS, compact(batch(n)))
        sink.write(PROCESS, "not a json object")
    errors = [r for r in caplog.records if r.name == "raceway"]
    assert len(errors) == 1 and "missing-dir" in errors[0].getMessage()
    assert sink.failed_batches == 4 and sink.written_batches == 0
    (tmp_path / "missing-dir").mkdir()
    sink.write(PROCESS, compact(batch(9)))
    sink.close()
    assert sink.written_batches == 1
    assert [line["events"][0][2] for line in lines_of(path)] == [10]


def test_a_directory_in_the_way_is_contained(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "events.jsonl").mkdir()
    sink = EventsFile(tmp_path / "events.jsonl")
    with caplog.at_level(logging.ERROR, logger="raceway"):
        sink.write(PROCESS, compact(batch(1)))
        sink.write(PROCESS, compact(batch(2)))
    sink.close()
    assert sink.failed_batches == 2
    assert len([r for r in caplog.records if r.name == "raceway"]) == 1


def test_an_unserializable_process_is_contained(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sink = EventsFile(tmp_path / "events.jsonl")
    with caplog.at_level(logging.ERROR, logger="raceway"):
        sink.write({("not", "a string key"): 1}, compact(batch(1)))
        sink.write(PROCESS, compact(batch(2)))
    sink.close()
    assert (sink.failed_batches, sink.written_batches) == (1, 1)
    assert len([r for r in caplog.records if r.name == "raceway"]) == 1
    assert [line["events"][0][2] for line in lines_of(tmp_path / "events.jsonl")] == [3]


def test_a_torn_last_line_from_a_dead_writer_stays_alone(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    whole = '{"raceway":"records/1","process":{},' + compact(batch(1))[1:] + "\n"
    path.write_text(whole + whole[: len(whole) // 2])  # the writer died in the middle of a line
    sink = EventsFile(path)
    sink.write(PROCESS, compact(batch(2)))
    sink.close()
    lines = path.read_text().split("\n")
    assert lines[1] == whole[: len(whole) // 2]
    assert json.loads(lines[2])["events"][0][2] == 3 and lines[3] == ""


def test_writes_after_close_are_ignored(tmp_path: Path) -> None:
    sink = EventsFile(tmp_path / "events.jsonl")
    sink.write(PROCESS, compact(batch(1)))
    sink.close()
    sink.close()
    sink.write(PROCESS, compact(batch(2)))
    assert len(lines_of(tmp_path / "events.jsonl")) == 1


def test_threads_writing_at_once_never_mix_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = EventsFile(path, max_bytes=20_000, backups=50)
    barrier = threading.Barrier(4)

    def writer(k: int) -> None:
        barrier.wait()
        for n in range(50):
            sink.write(dict(PROCESS, process_id=k), compact(batch(n, pad=100)))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sink.close()
    lines = [line for p in tmp_path.iterdir() for line in lines_of(p)]
    assert len(lines) == 200
    for k in range(4):
        assert sorted(line["events"][0][2] for line in lines if line["process"]["process_id"] == k) == list(range(1, 51))


def test_pid_in_the_path_is_replaced(tmp_path: Path) -> None:
    sink = EventsFile(tmp_path / "events-{pid}.jsonl")
    sink.write(PROCESS, compact(batch(1)))
    sink.close()
    assert sink.path == str(tmp_path / f"events-{os.getpid()}.jsonl")
    assert (tmp_path / f"events-{os.getpid()}.jsonl").exists()


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        EventsFile("x", max_bytes=0)
    with pytest.raises(ValueError):
        EventsFile("x", backups=-1)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_process_killed_while_writing_leaves_at_worst_a_truncated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    script = textwrap.dedent(f"""
        import json, sys
        from raceway._sink import EventsFile
        sink = EventsFile({str(path)!r}, max_bytes=1 << 40)
        big = json.dumps({{"contexts": [], "states": [], "events": [[0, 0, 1, 0, 1, None, "a.py", 1,
                          "Custom", ["x", "y" * 4_000_000]]]}}, separators=(",", ":"))
        print("ready", flush=True)
        while True:
            sink.write({{"process_id": 1}}, big)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 15
        while (not path.exists() or path.stat().st_size < 12_000_000) and time.monotonic() < deadline:
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(10)
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    assert len(lines) >= 3
    for line in lines[:-1]:
        assert json.loads(line)["raceway"] == "records/1"
    # The part after the last newline is empty or a prefix of a line: never anything else.
    tail = lines[-1]
    assert tail == b"" or lines[0].startswith(tail)
    # A new writer starts on a fresh line, so the cut line stays alone.
    sink = EventsFile(path, max_bytes=1 << 40)
    sink.write(PROCESS, compact(batch(5)))
    sink.close()
    assert json.loads(path.read_bytes().split(b"\n")[-2])["events"][0][2] == 6
