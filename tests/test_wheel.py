"""The distribution as a user gets it: `python -m build` makes the sdist and, from it, the
wheel (so the sdist is checked too); the wheel is installed with pip into a fresh virtual
environment, with no Rust toolchain on PATH, and runs a traced program and `doctor` there.

Marked `wheel` (pytest.ini); it runs in `make test`. It needs the registry for the wheel's
dependencies (wasmtime, urllib3, requests) and build's setuptools; pip's cache keeps it short.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from raceway.testing import CollectorServer

pytestmark = pytest.mark.wheel

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "host-python"
WASM = PACKAGE / "raceway" / "_wasm" / "raceway_core.wasm"

PROGRAM = textwrap.dedent("""
    import threading
    import raceway
    from raceway import Config, ContextAwareThread, RacewayClient

    client = RacewayClient(Config(endpoint=None, service_name="wheel", report_races_at_shutdown=False))
    barrier = threading.Barrier(2)

    def unsynchronised():
        client.track_state_change("n", None, 0, "Read")
        barrier.wait()
        client.track_state_change("n", 0, 1, "Write")

    with client.trace():
        threads = [ContextAwareThread(target=unsynchronised, client=client) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    print("file", raceway.__file__)
    print("races", len(client.races()))
    client.shutdown()
""")


def _no_rust_path() -> str:
    """PATH without any directory that holds cargo or rustc (nor ~/.cargo/bin)."""
    keep = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and not any(os.path.exists(os.path.join(d, tool)) for tool in ("cargo", "rustc", "rustup"))]
    return os.pathsep.join(keep)


def _run(cmd, timeout, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert done.returncode == 0, f"{cmd}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    if not WASM.is_file():
        pytest.fail(f"{WASM} is missing: run `make build` first")
    pytest.importorskip("build", reason="the `build` package (requirements-dev.txt)")
    out = tmp_path_factory.mktemp("dist")
    # Default `python -m build`: the sdist, then the wheel built from the unpacked sdist.
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(PACKAGE)], timeout=180)
    shutil.rmtree(PACKAGE / "build", ignore_errors=True)
    return out


def test_the_wheel_is_pure_python_and_the_sdist_carries_the_component(dist):
    wheels = list(dist.glob("*.whl"))
    sdists = list(dist.glob("*.tar.gz"))
    assert [w.name for w in wheels] == ["raceway_wasm-0.1.0-py3-none-any.whl"]
    assert [s.name for s in sdists] == ["raceway_wasm-0.1.0.tar.gz"]
    with zipfile.ZipFile(wheels[0]) as z:
        names = z.namelist()
        metadata = z.read("raceway_wasm-0.1.0.dist-info/METADATA").decode()
        wheel_info = z.read("raceway_wasm-0.1.0.dist-info/WHEEL").decode()
        assert z.read("raceway/_wasm/raceway_core.wasm") == WASM.read_bytes()
    assert "Root-Is-Purelib: true" in wheel_info and "Tag: py3-none-any" in wheel_info
    compiled = [n for n in names if n.endswith((".so", ".pyd", ".dylib", ".dll", ".pyc"))]
    assert compiled == []
    assert [n for n in names if n.endswith(".wasm")] == ["raceway/_wasm/raceway_core.wasm"]
    assert "Name: raceway-wasm" in metadata
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert any(line.startswith("Requires-Dist: wasmtime<51,>=50") for line in requires), requires
    for extra in ("flask", "fastapi", "django", "aiohttp", "httpx"):
        assert f"Provides-Extra: {extra}" in metadata
    assert "Requires-Python: >=3.11" in metadata


def test_the_wheel_installs_and_runs_without_rust(dist, tmp_path):
    wheel = next(dist.glob("*.whl"))
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], timeout=60)
    python = venv / "bin" / "python"
    path = os.pathsep.join([str(venv / "bin"), _no_rust_path()])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RACEWAY_", "PYTHON", "VIRTUAL_ENV", "CARGO", "RUSTUP"))}
    env.update(PATH=path, XDG_CACHE_HOME=str(tmp_path / "cache"), HOME=str(tmp_path), PIP_CACHE_DIR=os.environ.get(
        "PIP_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "pip")))
    assert shutil.which("cargo", path=path) is None and shutil.which("rustc", path=path) is None
    _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
         timeout=120, env=env, cwd=tmp_path)

    (tmp_path / "traced.py").write_text(PROGRAM)
    done = _run([str(python), "traced.py"], timeout=60, env=env, cwd=tmp_path)
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert lines["file"].startswith(str(venv)), lines  # the installed copy, not the checkout
    assert int(lines["races"]) >= 1, done.stdout

    version = _run([str(python), "-m", "raceway", "--version"], timeout=30, env=env, cwd=tmp_path)
    assert version.stdout.strip() == "raceway 0.1.0"
    with CollectorServer() as collector:
        doctor = _run([str(python), "-m", "raceway", "doctor"], timeout=60, cwd=tmp_path,
                      env={**env, "RACEWAY_ENDPOINT": collector.url})
    out = doctor.stdout
    assert "ok    package: raceway-wasm 0.1.0" in out and str(venv) in out
    assert "ok    component:" in out and "ok    instance:" in out
    assert f"ok    endpoint: GET {collector.url}/health answered 200" in out
    assert "all checks passed" in out
