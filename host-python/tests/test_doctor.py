"""`python -m raceway doctor`, run as a real process against a real collector
(`raceway.testing.CollectorServer`) for its /health check."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

from raceway import _doctor
from raceway._core import wasm_bytes
from raceway.testing import CollectorServer


def doctor(*args: str, env: Optional[Dict[str, str]] = None, cache: Optional[Path] = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RACEWAY_")}
    if cache is not None:
        full_env["XDG_CACHE_HOME"] = str(cache)
    full_env.update(env or {})
    done = subprocess.run([sys.executable, "-m", "raceway", "doctor", *args], env=full_env,
                          capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    return done


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_all_well_with_a_collector_that_answers(tmp_path):
    key = "s3cr3t-api-key-0123456789"
    with CollectorServer() as collector:
        done = doctor(env={"RACEWAY_ENDPOINT": collector.url, "RACEWAY_API_KEY": key,
                           "RACEWAY_INSTANCE_ID": "doc-1"}, cache=tmp_path)
        health = [r for r in collector.received if r.path == "/health"]
    out = done.stdout
    assert done.returncode == 0, out
    assert len(health) == 1 and health[0].method == "GET"
    wasm = wasm_bytes()
    assert f"{len(wasm)} bytes, sha256 {hashlib.sha256(wasm).hexdigest()}" in out
    assert f"ok    endpoint: GET {collector.url}/health answered 200" in out
    assert f"endpoint       {collector.url}" in out and "instance_id    doc-1" in out
    assert key not in out and key[:-2] not in out  # masked: the last two characters at most
    assert "api_key        set, 25 characters, ending in ...89 (masked)" in out
    assert "wasmtime: 50." in out
    assert "wasi:cli/stdout@" in out  # the component's imports are listed
    assert f"ok    cache: {tmp_path / 'raceway'}" in out and "compiled now and written" in out
    assert "all checks passed" in out

    again = doctor(env={"RACEWAY_ENDPOINT": collector.url}, cache=tmp_path, *("--endpoint", "none"))
    assert again.returncode == 0 and "loaded the compiled component from it" in again.stdout
    assert "/health not checked" in again.stdout


def test_an_endpoint_that_does_not_answer_fails_with_the_fix(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    done = doctor(env={"RACEWAY_ENDPOINT": url}, cache=tmp_path)
    assert done.returncode == 1
    assert f"FAIL  endpoint: GET {url}/health failed" in done.stdout
    assert "fix: start the Raceway server" in done.stdout and "Config(endpoint=None)" in done.stdout
    assert "1 problem(s): endpoint" in done.stdout


def test_an_endpoint_that_answers_an_error_fails(tmp_path):
    with CollectorServer(responder=lambda rec: (503, {"success": False, "data": None, "error": "down"})) as collector:
        done = doctor("--endpoint", collector.url, cache=tmp_path)
    assert done.returncode == 1
    assert f"FAIL  endpoint: GET {collector.url}/health answered 503" in done.stdout


def test_a_bad_variable_fails_and_an_unknown_one_warns(tmp_path):
    done = doctor("--endpoint", "none", env={"RACEWAY_ENDPOINT": "not a url", "RACEWAY_ENDPIONT": "x"}, cache=tmp_path)
    assert done.returncode == 1
    assert "FAIL  configuration: " in done.stdout and "RACEWAY_ENDPOINT" in done.stdout
    assert "fix: correct or unset the variable it names" in done.stdout
    assert "warn  environment: RACEWAY_ENDPIONT is set but raceway does not read it" in done.stdout


def test_an_unwritable_cache_warns_but_does_not_fail(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    done = doctor("--endpoint", "none", cache=blocker)
    assert done.returncode == 0, done.stdout
    assert "warn  cache: " in done.stdout and "cannot be written" in done.stdout


def test_mask_never_shows_a_short_key():
    assert _doctor.mask(None) == "(none)"
    assert _doctor.mask("abc") == "set, 3 characters (masked)"
    assert "abc" not in _doctor.mask("abcdefghijklmnop")
