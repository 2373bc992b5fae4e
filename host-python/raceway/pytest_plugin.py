"""The pytest plugin, when it is on (``pytest --raceway``, or ``raceway = true`` in the ini
file; the entry point is the ``raceway_pytest`` package, which imports this module only then).

For each test:

- a client of its own, ``RacewayClient(Config(endpoint=None))``: the in-process detector,
  nothing sent anywhere, the suppressions of ``--raceway-suppressions`` (or the ini key
  ``raceway_suppressions``, or ``RACEWAY_SUPPRESSIONS``);
- strands without setup (`raceway.strands`) and the standard primitives instrumented
  (`raceway.primitives`: those created from the start of the session, conftest files and test
  modules included); `raceway.shared` objects record to the test's client;
- the test body and its fixtures run in an execution context of their own (a new trace);
- after the test body, the races found fail the test with the race report as its message
  (``--raceway-on-race=warn``, the ini key ``raceway_on_race`` or the marker
  ``@pytest.mark.raceway(on_race="warn")``: a warning instead). A test that failed anyway
  gets the report as an extra section. ``@pytest.mark.raceway(enabled=False)`` leaves a test
  alone;
- the fixture ``raceway_client`` is the test's client.

At the end, ``--raceway-sarif FILE`` and ``--raceway-html FILE`` write the races of the whole
run (each distinct race once), and the terminal summary says how many tests raced. Under
pytest-xdist each worker hands its findings to the controller (``workeroutput``), which writes
the files and the summary for the whole run.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Generator, Iterable, List, Optional, Tuple

import pytest

from . import __version__, _auto
from .client import RacewayClient
from .config import Config
from .context import CurrentToken, ExecutionContext, reset_context, set_context
from .primitives import instrument_primitives, instrumented, uninstrument_primitives
from .races import Race
from .strands import disable_strands, enable_strands, strands_enabled

if TYPE_CHECKING:
    from ._client_protocol import ClientLike

__all__ = ["RacewayPlugin", "RacewayRaceWarning", "instrument_session", "client_config"]

RACES_TIMEOUT = 10.0
"""Seconds the plugin waits for a test's events to reach the detector."""

_PATCHED = pytest.StashKey[bool]()


class RacewayRaceWarning(UserWarning):
    """A test's code raced (``--raceway-on-race=warn``); the message is the race report."""


def client_config(suppressions: Optional[str] = None) -> Config:
    """The configuration of each test's client: the in-process detector, nothing sent anywhere,
    no report at shutdown (the plugin reports), ``suppressions`` (a path, or None for
    ``RACEWAY_SUPPRESSIONS``). benchmarks/bench_shared.py times the issue's programs with it."""
    return Config(endpoint=None, service_name="pytest", report_races_at_shutdown=False, suppressions=suppressions)


def instrument_session(config: pytest.Config) -> None:
    """From before the conftest files are imported: primitives created from now on record
    (to each test's client, while it runs)."""
    if not instrumented():
        instrument_primitives()
        config.stash[_PATCHED] = True


@dataclasses.dataclass
class _TestRun:
    client: RacewayClient
    token: CurrentToken
    previous: Optional[ClientLike]
    strands_were_on: bool
    on_race: str
    races: List[Race] = dataclasses.field(default_factory=list)
    checked_at: Optional[int] = None
    """Events recorded when the races were asked for after the test body (None: not asked)."""


_RUN = pytest.StashKey[_TestRun]()


class RacewayPlugin:
    """Registered as ``raceway-session`` by the entry point when the plugin is on."""

    def __init__(self, config: pytest.Config):
        self.config = config
        on_race = config.getoption("raceway_on_race", None) or config.getini("raceway_on_race") or "fail"
        if on_race not in ("fail", "warn"):
            raise pytest.UsageError(f"raceway_on_race must be 'fail' or 'warn', not {on_race!r}")
        self.on_race = on_race
        self.suppressions = self._path(
            config.getoption("raceway_suppressions", None), config.getini("raceway_suppressions")
        )
        self.sarif = config.getoption("raceway_sarif", None)
        self.html = config.getoption("raceway_html", None)
        self.findings: Dict[Tuple[str, str, str], Race] = {}
        self.raced: List[str] = []
        self.tests = 0
        if not instrumented():  # registered without the entry point's early hook
            instrument_session(config)

    def _path(self, option: Optional[str], ini: str) -> Optional[str]:
        if option:
            return str(Path(option).resolve())
        if ini:
            return str((Path(self.config.rootpath) / ini).resolve())
        return None  # Config falls back to RACEWAY_SUPPRESSIONS

    # -- one test ---------------------------------------------------------------------------
    def client_of(self, item: pytest.Item) -> Optional[RacewayClient]:
        run = item.stash.get(_RUN, None)
        return run.client if run is not None else None

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, object, object]:
        self._start(item)
        return (yield)

    def _start(self, item: pytest.Item) -> None:
        marker = item.get_closest_marker("raceway")
        options = dict(marker.kwargs) if marker is not None else {}
        if not options.get("enabled", True):
            return
        on_race = options.get("on_race", self.on_race)
        client = RacewayClient(client_config(self.suppressions))
        previous = _auto.set_client(client)
        strands_were_on = strands_enabled()
        enable_strands()
        # The test's own strand: a new trace, current until the end of its teardown whatever
        # the test leaves current (reset_context restores what was there before).
        token = set_context(ExecutionContext.new_trace(client.identity).bind())
        item.stash[_RUN] = _TestRun(client, token, previous, strands_were_on, on_race)
        self.tests += 1

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        run = item.stash.get(_RUN, None)
        if run is None:
            return (yield)
        try:
            result = yield
        except BaseException:
            races, report = self._check(item, run)
            if races:
                item.add_report_section("call", "raceway", report)
            raise
        races, report = self._check(item, run)
        if races:
            if run.on_race == "warn":
                item.warn(RacewayRaceWarning(report))
            else:
                pytest.fail(report, pytrace=False)
        return result

    def _check(self, item: pytest.Item, run: _TestRun) -> Tuple[List[Race], str]:
        client = run.client
        recorded = client.stats()["recorded"]
        races = client.races(timeout=RACES_TIMEOUT) if recorded else []
        run.races = races
        run.checked_at = recorded
        item.user_properties.append(("raceway_races", [(r.kind, r.severity, r.variable) for r in races]))
        if not races:
            return races, ""
        self.raced.append(item.nodeid)
        report = client.race_report(timeout=RACES_TIMEOUT)
        return races, f"raceway: the code of this test raced\n\n{report}"

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: Optional[pytest.Item]
    ) -> Generator[None, object, object]:
        try:
            return (yield)
        finally:
            run = item.stash.get(_RUN, None)
            if run is not None:
                self._finish(item, run)

    def _finish(self, item: pytest.Item, run: _TestRun) -> None:
        client = run.client
        try:
            reset_context(run.token)
        finally:
            if not run.strands_were_on:
                disable_strands()
            _auto.set_client(run.previous)
        races = run.races or []
        try:
            recorded = client.stats()["recorded"]
            if recorded and recorded != run.checked_at:  # the teardown's events too
                races = client.races(timeout=RACES_TIMEOUT) or races
            item.user_properties.append(("raceway_events", recorded))
        finally:
            client.shutdown(timeout=5)
        self._add(races)

    # -- the session ------------------------------------------------------------------------
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.tests:
            return
        found = len(self.findings)
        line = (
            f"raceway: {len(self.raced)} of {self.tests} tests raced, {found} distinct race{'' if found == 1 else 's'}"
            if self.raced
            else f"raceway: no races in {self.tests} tests"
        )
        terminalreporter.write_line(line)
        for path, what in ((self.sarif, "SARIF"), (self.html, "HTML")):
            if path:
                terminalreporter.write_line(f"raceway: {what} report written to {path}")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:  # a pytest-xdist worker: the controller reports for all
            workeroutput["raceway"] = json.dumps(
                {"races": [r.to_json() for r in self.findings.values()], "raced": self.raced, "tests": self.tests}
            )
            return
        races = list(self.findings.values())
        if self.sarif:
            from .report import sarif

            sarif.write(self.sarif, races, __version__)
        if self.html:
            from .report import html

            text = html.render(races)
            directory = os.path.dirname(os.path.abspath(self.html))
            os.makedirs(directory, exist_ok=True)
            with open(self.html, "w", encoding="utf-8") as f:
                f.write(text)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:  # node: pytest-xdist's WorkerController
        """pytest-xdist's controller: a worker's findings join the run's."""
        data = getattr(node, "workeroutput", {}).get("raceway")
        if not data:
            return
        found = json.loads(data)
        self._add(Race.from_json(r) for r in found.get("races", []))
        self.raced.extend(found.get("raced", []))
        self.tests += int(found.get("tests", 0))

    def _add(self, races: Iterable[Race]) -> None:
        from .report.sarif import fingerprint

        for race in races:
            self.findings.setdefault((race.kind, race.variable, fingerprint(race)), race)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if config.stash.get(_PATCHED, False):
            uninstrument_primitives()
            config.stash[_PATCHED] = False
