"""The pytest plugin (``pytest --raceway``), run on small projects with known verdicts
(pytest inside pytest: ``pytester``).

- the issue's bar: six racy/clean twin pairs of plain programs (`_auto_bar.py`), nothing but
  ``raceway.shared`` in them: every racy one fails with its race, no clean one does;
- a racy test fails with the report, its locked twin passes, a test outside any tracked code
  is untouched (passes, records nothing);
- warnings instead of failures, the marker, the fixture, suppressions, SARIF and HTML, the
  ini key;
- off (the default), nothing of the plugin runs: a suite of 1,000 trivial tests runs no hook
  of the plugin and does not even import the package (counted, not timed).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Dict, Tuple

import pytest

pytest_plugins = ["pytester"]

INNER = ("-p", "no:cacheprovider", "-p", "no:faulthandler")
"""Options of every run inside this process. The inner session's faulthandler would take back
the fatal-signal handlers when it ends, wasmtime's among them (its traps are signals): a later
trap of the core would then kill the whole test run."""

HERE = Path(__file__).resolve().parent
BAR = (HERE / "_auto_bar.py").read_text()
BANK = (HERE / "_auto_bank.py").read_text()

RACY_AND_LOCKED = '''
import threading
import raceway

counter = raceway.shared({"n": 0}, "counter")
module_lock = threading.Lock()          # made at import time, before any test runs


def bump(locked):
    for _ in range(50):
        if locked:
            with module_lock:
                counter["n"] += 1
        else:
            counter["n"] += 1


def run_two(locked):
    threads = [threading.Thread(target=bump, args=(locked,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_racy():
    run_two(False)


def test_locked():
    run_two(True)


def test_untouched():
    assert sum(range(10)) == 45
'''


def _outcomes(reprec: Any) -> Dict[str, Any]:
    """Test name -> its call-phase report (or the setup report when it did not get there)."""
    out: Dict[str, Any] = {}
    for report in reprec.getreports("pytest_runtest_logreport"):
        name = report.nodeid.split("::")[-1]
        if report.when == "call" or (report.when == "setup" and not report.passed):
            out[name] = report
    return out


def _props(report: Any) -> Dict[str, Any]:
    return dict(report.user_properties)


def _found(report: Any) -> set:
    return {(kind, variable) for kind, _severity, variable in _props(report).get("raceway_races", [])}


# ----------------------------------------------------------------------------------------------
# The bar: twelve plain programs
# ----------------------------------------------------------------------------------------------
def test_the_twelve_programs_under_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bar=BAR)
    bar: Dict[str, Any] = {}
    exec(compile(BAR, "_auto_bar.py", "exec"), bar)  # RACY and CLEAN, as the inner run sees them
    reprec = pytester.inline_run("--raceway", *INNER)
    results = _outcomes(reprec)
    assert set(results) == set(bar["RACY"]) | set(bar["CLEAN"])
    for name, expected in bar["RACY"].items():
        report = results[name]
        assert report.failed, f"{name}: the race was not found"
        found = _found(report)
        assert expected <= found, f"{name}: expected {expected}, found {found}"
        text = report.longreprtext
        assert "raceway: the code of this test raced" in text
        for _kind, variable in expected:
            assert f'"{variable}"' in text
        assert "Missing ordering" in text or "LOST UPDATE" in text.upper()
    for name in bar["CLEAN"]:
        report = results[name]
        assert report.passed, f"{name}: a false positive\n{report.longreprtext}"
        assert _found(report) == set()


def test_the_twelve_programs_pass_without_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bar=BAR)
    pytester.inline_run(*INNER).assertoutcome(passed=12)


def test_the_banking_service_of_the_docs(pytester: pytest.Pytester) -> None:
    """docs/auto.md's worked example: the seed's service with no tracking calls at all."""
    pytester.makepyfile(test_bank=BANK)
    results = _outcomes(pytester.inline_run("--raceway", *INNER))
    assert results["test_transfers"].failed
    assert ("lost-update", "accounts['alice']['balance']") in _found(results["test_transfers"])
    assert results["test_transfers_locked"].passed, results["test_transfers_locked"].longreprtext


# ----------------------------------------------------------------------------------------------
# One project: racy, locked, untouched
# ----------------------------------------------------------------------------------------------
def test_racy_fails_locked_passes_untouched_is_untouched(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_counter=RACY_AND_LOCKED)
    before = threading.Lock
    results = _outcomes(pytester.inline_run("--raceway", *INNER))
    assert results["test_racy"].failed
    assert ("data-race", "counter['n']") in _found(results["test_racy"])
    assert "test_counter.py:" in results["test_racy"].longreprtext  # both locations are shown
    assert results["test_locked"].passed, results["test_locked"].longreprtext
    untouched = results["test_untouched"]
    assert untouched.passed and not untouched.sections
    # Its events are counted after the call phase: look at the teardown's properties.
    assert threading.Lock is before, "the primitives were not restored at the end of the session"


def test_untouched_test_records_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain='def test_plain():\n    assert [1, 2] + [3] == [1, 2, 3]\n')
    reprec = pytester.inline_run("--raceway", *INNER)
    reprec.assertoutcome(passed=1)
    teardown = [r for r in reprec.getreports("pytest_runtest_logreport") if r.when == "teardown"][0]
    assert dict(teardown.user_properties)["raceway_events"] == 0


def test_off_by_default_and_ini_key(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_counter=RACY_AND_LOCKED)
    pytester.inline_run(*INNER).assertoutcome(passed=3)
    pytester.makeini("[pytest]\nraceway = true\n")
    pytester.inline_run(*INNER).assertoutcome(passed=2, failed=1)
    pytester.inline_run(*INNER, "--no-raceway").assertoutcome(passed=3)


def test_a_failing_test_gets_the_report_as_a_section(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fails=RACY_AND_LOCKED.replace("    run_two(False)\n", "    run_two(False)\n    assert False, 'its own failure'\n"))
    results = _outcomes(pytester.inline_run("--raceway", *INNER, "-k", "racy"))
    report = results["test_racy"]
    assert report.failed and "its own failure" in report.longreprtext
    assert any("raceway" in title and "counter['n']" in body for title, body in report.sections)


def test_warn_instead_of_fail(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_counter=RACY_AND_LOCKED)
    result = pytester.runpytest("--raceway", "--raceway-on-race=warn", *INNER)
    result.assert_outcomes(passed=3, warnings=1)
    result.stdout.fnmatch_lines(["*RacewayRaceWarning*", "*counter*"])


def test_marker_warn_and_disable(pytester: pytest.Pytester) -> None:
    source = RACY_AND_LOCKED.replace("def test_racy():", "@pytest.mark.raceway(on_race='warn')\ndef test_racy():")
    source = "import pytest\n" + source + '''

@pytest.mark.raceway(enabled=False)
def test_racy_but_off():
    run_two(False)
'''
    pytester.makepyfile(test_marked=source)
    result = pytester.runpytest("--raceway", *INNER)
    result.assert_outcomes(passed=4, warnings=1)


def test_fixture_gives_the_tests_client(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fixture='''
import raceway

def test_client(raceway_client):
    assert isinstance(raceway_client, raceway.RacewayClient)
    d = raceway.shared({}, "d")
    d["k"] = 1
    raceway_client.flush(5)
    assert raceway_client.stats()["recorded"] >= 2
    assert raceway_client.races() == []
''')
    pytester.inline_run("--raceway", *INNER).assertoutcome(passed=1)
    pytester.inline_run(*INNER).assertoutcome(skipped=1)


def test_suppressions_apply(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_counter=RACY_AND_LOCKED)
    rules = pytester.path / "races.supp"
    rules.write_text("# the counter is known\nvariable:counter*\n")
    pytester.inline_run("--raceway", f"--raceway-suppressions={rules}", *INNER).assertoutcome(passed=3)
    pytester.makeini("[pytest]\nraceway_suppressions = races.supp\n")
    pytester.inline_run("--raceway", *INNER).assertoutcome(passed=3)


def test_sarif_and_html_of_the_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bar=BAR)
    sarif, html = pytester.path / "out" / "races.sarif", pytester.path / "out" / "races.html"
    sarif.parent.mkdir()
    result = pytester.runpytest("--raceway", f"--raceway-sarif={sarif}", f"--raceway-html={html}",
                                *INNER)
    result.assert_outcomes(failed=6, passed=6)
    result.stdout.fnmatch_lines(["raceway: 6 of 12 tests raced, * distinct races", "*SARIF report written*"])
    log = json.loads(sarif.read_text())
    results = log["runs"][0]["results"]
    assert log["version"] == "2.1.0" and len(results) >= 6
    assert len({r["partialFingerprints"]["racewayRace/v1"] for r in results}) == len(results)
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "accounts[&#x27;alice&#x27;]" in page


TEARDOWN_RACE = '''
import threading
import pytest
import raceway


@pytest.fixture
def settings():
    config = raceway.shared({"mode": "slow"}, "settings")
    yield config
    threads = [threading.Thread(target=config.__setitem__, args=("mode", m)) for m in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_body_is_clean(settings):
    assert settings["mode"] == "slow"
'''


def test_a_race_in_a_fixtures_teardown_joins_the_runs_findings(pytester: pytest.Pytester) -> None:
    """The races are asked for again after the teardown when it recorded anything: the body
    passed, the teardown's race is in the run's SARIF."""
    pytester.makepyfile(test_teardown=TEARDOWN_RACE)
    sarif = pytester.path / "races.sarif"
    result = pytester.runpytest("--raceway", f"--raceway-sarif={sarif}", *INNER)
    result.assert_outcomes(passed=1)
    results = json.loads(sarif.read_text())["runs"][0]["results"]
    assert any("settings['mode']" in r["message"]["text"] for r in results)


# ----------------------------------------------------------------------------------------------
# Off: nothing of the plugin runs
# ----------------------------------------------------------------------------------------------
COUNTING_CONFTEST = '''
import json, os, sys

def pytest_sessionfinish(session):
    pm = session.config.pluginmanager
    ours = []
    for name in ("pytest_runtest_setup", "pytest_runtest_call", "pytest_runtest_teardown",
                 "pytest_runtest_protocol", "pytest_runtest_logreport", "pytest_collection_modifyitems"):
        for impl in getattr(pm.hook, name).get_hookimpls():
            if "raceway" in (pm.get_name(impl.plugin) or ""):
                ours.append(name)
    json.dump({
        "raceway_imported": "raceway" in sys.modules,
        "entry_point_loaded": pm.has_plugin("raceway"),
        "plugin_registered": pm.get_plugin("raceway-session") is not None,
        "hooks_per_test": ours,
    }, open(os.environ["COUNT_FILE"], "w"))
'''


def _run_suite(pytester: pytest.Pytester, *args: str) -> Tuple[Dict[str, Any], float]:
    count_file = pytester.path / "count.json"
    env = {"COUNT_FILE": str(count_file)}
    import os
    import time

    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", *INNER, *args],
                          cwd=pytester.path, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "1000 passed" in done.stdout
    return json.loads(count_file.read_text()), elapsed


def test_a_thousand_trivial_tests_run_nothing_of_the_plugin_when_off(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(COUNTING_CONFTEST)
    pytester.makepyfile(test_many="import pytest\n\n@pytest.mark.parametrize('i', range(1000))\ndef test_trivial(i):\n    assert i >= 0\n")
    off, off_seconds = _run_suite(pytester)
    assert off == {"raceway_imported": False, "entry_point_loaded": True, "plugin_registered": False,
                   "hooks_per_test": []}
    on, on_seconds = _run_suite(pytester, "--raceway")
    assert on["raceway_imported"] and on["plugin_registered"] and on["hooks_per_test"]
    # Measured, not asserted (a shared machine's timings prove nothing): shown with -s.
    print(f"\n1,000 trivial tests: plugin off {off_seconds:.2f} s, on {on_seconds:.2f} s (wall, incl. start-up)")


# ----------------------------------------------------------------------------------------------
# pytest-xdist: workers hand their findings to the controller
# ----------------------------------------------------------------------------------------------
def test_xdist_workers_hand_their_findings_to_the_controller(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from raceway.pytest_plugin import RacewayPlugin
    from raceway.races import Access, Race

    sarif = tmp_path / "races.sarif"

    class FakeConfig:
        def __init__(self) -> None:
            self.stash = pytest.Stash()
            self.rootpath = tmp_path

        def getoption(self, name: str, default: Any = None) -> Any:
            return {"raceway_sarif": str(sarif)}.get(name, default)

        def getini(self, name: str) -> Any:
            return {"raceway_on_race": "fail", "raceway_suppressions": ""}[name]

    def access(line: int, kind: str) -> Access:
        return Access(access_type=kind, location=f"app.py:{line}", thread_id=f"t{line}", trace_id="tr",
                      timestamp="2026-01-01T00:00:00Z")

    race = Race(variable="counter['n']", kind="data-race", severity="WARNING", count=1,
                first_seen="2026-01-01T00:00:00Z", last_seen="2026-01-01T00:00:00Z",
                accesses=(access(3, "Read"), access(4, "Write")))
    worker_config, controller_config = FakeConfig(), FakeConfig()
    worker_config.workeroutput = {}  # type: ignore[attr-defined]  # what xdist gives a worker
    worker = RacewayPlugin(worker_config)
    controller = RacewayPlugin(controller_config)
    try:
        worker._add([race, race])
        worker.raced, worker.tests = ["test_a.py::test_racy"], 2
        worker.pytest_sessionfinish(None)
        assert not sarif.exists()  # a worker writes nothing itself
        controller.pytest_testnodedown(SimpleNamespace(workeroutput=worker_config.workeroutput), None)
        controller.pytest_testnodedown(SimpleNamespace(workeroutput={}), None)  # a worker that found nothing
        assert (controller.tests, controller.raced) == (2, ["test_a.py::test_racy"])
        controller.pytest_sessionfinish(None)
        results = json.loads(sarif.read_text())["runs"][0]["results"]
        assert len(results) == 1 and "counter['n']" in json.dumps(results)
    finally:
        worker.pytest_unconfigure(worker_config)
        controller.pytest_unconfigure(controller_config)
    assert not raceway_instrumented()


def raceway_instrumented() -> bool:
    from raceway.primitives import instrumented

    return instrumented()
