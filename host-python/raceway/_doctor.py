"""``python -m raceway doctor``: what this installation is and whether it works (docs/cli.md).

Each check prints one line (``ok``, ``warn`` or ``FAIL``) with what it found; a failed check
also prints the fix. The exit status is 0 when nothing failed, 1 otherwise. Warnings (an
unknown ``RACEWAY_*`` variable, a cache directory that cannot be written) do not fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, List, Optional, TextIO

if TYPE_CHECKING:
    from ._core import Runtime

DISTRIBUTION = "raceway-wasm"
WASMTIME_MAJOR = 50
"""The wasmtime major the package is built for (pyproject.toml: ``wasmtime>=50,<51``)."""

KNOWN_VARIABLES = (
    "RACEWAY_ENDPOINT",
    "RACEWAY_API_KEY",
    "RACEWAY_INSTANCE_ID",
    "RACEWAY_EVENTS_FILE",
    "RACEWAY_SUPPRESSIONS",
    "RACEWAY_SHUTDOWN_TIMEOUT",
    "RACEWAY_SPOOL",
    "RACEWAY_SPOOL_DIR",
    "RACEWAY_OPTIONS",
    "RACEWAY_CLIENT",
)
"""The variables the package reads (RACEWAY_OPTIONS and RACEWAY_CLIENT are set by the pytest
plugin for its worker processes)."""

REINSTALL = f"reinstall the package: pip install --force-reinstall {DISTRIBUTION} (in a checkout: make build)"


@dataclass
class Report:
    out: TextIO
    failures: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    def ok(self, what: str, text: str) -> None:
        self.out.write(f"ok    {what}: {text}\n")

    def info(self, text: str) -> None:
        self.out.write(f"        {text}\n")

    def warn(self, what: str, text: str, fix: str = "") -> None:
        self.warnings.append(what)
        self.out.write(f"warn  {what}: {text}\n")
        if fix:
            self.out.write(f"        fix: {fix}\n")

    def fail(self, what: str, text: str, fix: str) -> None:
        self.failures.append(what)
        self.out.write(f"FAIL  {what}: {text}\n")
        self.out.write(f"        fix: {fix}\n")


def mask(secret: Optional[str]) -> str:
    """An API key as the report shows it: never more than its last two characters."""
    if not secret:
        return "(none)"
    if len(secret) < 12:
        return f"set, {len(secret)} characters (masked)"
    return f"set, {len(secret)} characters, ending in ...{secret[-2:]} (masked)"


def _version(dist: str) -> Optional[str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def run(out: TextIO = sys.stdout, endpoint: Optional[str] = "", timeout: float = 2.0) -> int:
    """Runs every check; ``endpoint`` replaces the resolved one for the /health check when not
    ``""`` (``None`` skips it). Returns the exit status."""
    report = Report(out)
    _package(report)
    wasm = _component(report)
    runtime = _runtime(report, wasm) if wasm is not None else None
    if runtime is not None:
        _imports(report, runtime)
        _instance(report, runtime)
    resolved = _configuration(report)
    if endpoint == "":
        endpoint = resolved
    _health(report, endpoint, timeout)
    if report.failures:
        out.write(f"\n{len(report.failures)} problem(s): {', '.join(report.failures)}\n")
        return 1
    out.write("\nall checks passed" + (f" ({len(report.warnings)} warning(s))" if report.warnings else "") + "\n")
    return 0


def _package(report: Report) -> None:
    import raceway

    installed = _version(DISTRIBUTION)
    where = os.path.dirname(os.path.abspath(raceway.__file__))
    if installed is None:
        report.warn(
            "package",
            f"raceway {raceway.__version__} at {where}, but no {DISTRIBUTION} "
            "distribution is installed (run from a source tree?)",
            f"pip install {DISTRIBUTION} (in a checkout: make build)",
        )
    elif installed != raceway.__version__:
        report.fail(
            "package",
            f"{DISTRIBUTION} {installed} is installed but raceway {raceway.__version__} is imported from {where}",
            REINSTALL,
        )
    else:
        report.ok("package", f"{DISTRIBUTION} {installed} (import raceway from {where})")
    report.info(f"python {sys.version.split()[0]} ({sys.executable})")

    wasmtime_version = _version("wasmtime")
    if wasmtime_version is None:
        report.fail("wasmtime", "not installed", f"pip install 'wasmtime>={WASMTIME_MAJOR},<{WASMTIME_MAJOR + 1}'")
    elif wasmtime_version.split(".")[0] != str(WASMTIME_MAJOR):
        report.fail(
            "wasmtime",
            f"{wasmtime_version}, but this package needs {WASMTIME_MAJOR}.x",
            f"pip install 'wasmtime>={WASMTIME_MAJOR},<{WASMTIME_MAJOR + 1}'",
        )
    else:
        report.ok("wasmtime", wasmtime_version)


def _component(report: Report) -> Optional[bytes]:
    from ._core import WASM_NAME, wasm_bytes

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_wasm", WASM_NAME)
    try:
        wasm = wasm_bytes()
    except OSError as e:
        report.fail("component", f"cannot read {path}: {e.strerror or e}", REINSTALL)
        return None
    if not wasm.startswith(b"\0asm"):
        report.fail("component", f"{path} is not a WebAssembly binary", REINSTALL)
        return None
    report.ok("component", f"{path}, {len(wasm)} bytes, sha256 {hashlib.sha256(wasm).hexdigest()}")
    return wasm


def _runtime(report: Report, wasm: bytes) -> Optional[Runtime]:
    """The process's compiled component, with the state of its cache reported; None (reported
    as a failure) when wasmtime cannot compile it."""
    from ._core import Runtime, cache_dir, cache_path

    path = cache_path(wasm)
    existed = path.is_file()
    try:
        runtime = Runtime.shared()
    except Exception as e:  # deliberate: whatever wasmtime says, said once
        report.fail(
            "compile",
            f"wasmtime cannot compile the component: {type(e).__name__}: {e}",
            f"{REINSTALL}; check that wasmtime {WASMTIME_MAJOR}.x is installed",
        )
        return None
    if runtime.from_cache:
        state = "used (loaded the compiled component from it)"
    elif path.is_file():
        state = (
            "was stale or unreadable, compiled again and rewritten" if existed else "empty, compiled now and written"
        )
    else:
        state = None
    if state is None:
        report.warn(
            "cache",
            f"{path} cannot be written: every process compiles the component again (~1 s at start-up)",
            f"make {cache_dir()} writable, or set XDG_CACHE_HOME to a writable directory",
        )
    else:
        report.ok("cache", f"{path}: {state}")
    return runtime


def _imports(report: Report, runtime: Runtime) -> None:
    try:
        names = sorted(runtime.component.type.imports(runtime.engine))
    except Exception as e:  # pragma: no cover - another wasmtime-py API
        report.warn("imports", f"cannot list them: {type(e).__name__}: {e}")
        return
    report.ok("imports", f"{len(names)} interfaces")
    for name in names:
        report.info(name)


def _instance(report: Report, runtime: Runtime) -> None:
    from ._core import CoreInstance

    try:
        core = CoreInstance(runtime)
        answer = core.parse_incoming({})
    except Exception as e:  # deliberate: report it, never a traceback
        report.fail(
            "instance",
            f"the component does not run: {type(e).__name__}: {e}",
            f"{REINSTALL}; if it persists, report it with this output",
        )
        return
    report.ok("instance", f"instantiated and answered a call ({len(json.dumps(answer, default=str))} bytes)")


def _configuration(report: Report) -> Optional[str]:
    """Prints the configuration a `Config()` resolves to here; returns its endpoint."""
    from .config import Config, Settings

    present = sorted(name for name in os.environ if name.startswith("RACEWAY_"))
    for name in present:
        if name not in KNOWN_VARIABLES:
            report.warn(
                "environment",
                f"{name} is set but raceway does not read it (a typo?)",
                f"one of {', '.join(KNOWN_VARIABLES[:6])}...",
            )
    try:
        settings = Settings.resolve(Config())
    except ValueError as e:
        report.fail("configuration", str(e), "correct or unset the variable it names")
        return None
    report.ok("configuration", "Config() with " + (", ".join(present) if present else "no RACEWAY_* variables"))
    report.info(f"endpoint       {settings.endpoint}")
    report.info(f"api_key        {mask(settings.api_key)}")
    report.info(f"service_name   {settings.service_name}")
    report.info(f"instance_id    {settings.instance_id}")
    report.info(f"environment    {settings.environment}")
    report.info(f"events_file    {settings.events_file}")
    report.info(f"suppressions   {settings.suppressions}")
    report.info(f"spool_dir      {settings.spool_dir}")
    report.info(f"shutdown       {settings.shutdown_timeout:g} s")
    if settings.suppressions and not os.path.isfile(settings.suppressions):
        report.fail(
            "suppressions", f"{settings.suppressions} is not a file", "create it, or unset RACEWAY_SUPPRESSIONS"
        )
    return settings.endpoint


def _health(report: Report, endpoint: Optional[str], timeout: float) -> None:
    if endpoint is None:
        report.ok("endpoint", "none (nothing is sent over the network): /health not checked")
        return
    url = endpoint.rstrip("/") + "/health"
    fix = (
        f"start the Raceway server at {endpoint}, set RACEWAY_ENDPOINT to where it runs, or, to "
        "detect races locally only, use Config(endpoint=None) (and doctor --endpoint none)"
    )
    try:
        # No proxy from the environment: the client's own transport (urllib3) uses none either.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(urllib.request.Request(url, method="GET"), timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as e:
        report.fail("endpoint", f"GET {url} answered {e.code} {e.reason}", fix)
        return
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        report.fail("endpoint", f"GET {url} failed: {reason}", fix)
        return
    if 200 <= status < 300:
        report.ok("endpoint", f"GET {url} answered {status}")
    else:
        report.fail("endpoint", f"GET {url} answered {status}", fix)
