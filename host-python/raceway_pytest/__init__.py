"""The pytest plugin's entry point (``pytest11``): options, the ini keys and the fixture.

It is all that runs when the plugin is off (the default): the options and ini keys are
declared, and nothing else happens: no test hook of the plugin is registered and the
``raceway`` package is not even imported. ``pytest --raceway`` (or ``raceway = true`` in the
ini file) registers `raceway.pytest_plugin.RacewayPlugin`, which does the work (docs/auto.md).
``-p no:raceway`` removes the plugin altogether.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional

import pytest

if TYPE_CHECKING:
    from raceway.client import RacewayClient

PLUGIN_NAME = "raceway-session"
"""The name the active plugin object is registered under."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("raceway", "race detection (raceway)")
    group.addoption(
        "--raceway",
        action="store_true",
        default=None,
        dest="raceway",
        help="find data races and lost updates in each test (off by default)",
    )
    group.addoption(
        "--no-raceway",
        action="store_false",
        dest="raceway",
        help="turn the race detection off (when the ini file turns it on)",
    )
    group.addoption(
        "--raceway-on-race",
        choices=("fail", "warn"),
        default=None,
        dest="raceway_on_race",
        help="a test that raced fails (default) or gets a warning",
    )
    group.addoption(
        "--raceway-sarif",
        metavar="FILE",
        default=None,
        dest="raceway_sarif",
        help="write the races of the whole run to FILE as SARIF 2.1.0",
    )
    group.addoption(
        "--raceway-html",
        metavar="FILE",
        default=None,
        dest="raceway_html",
        help="write the races of the whole run to FILE as an HTML page",
    )
    group.addoption(
        "--raceway-suppressions",
        metavar="FILE",
        default=None,
        dest="raceway_suppressions",
        help="suppressions file (docs/races.md); default: the ini key, then RACEWAY_SUPPRESSIONS",
    )
    parser.addini("raceway", type="bool", default=False, help="turn the race detection on (like --raceway)")
    parser.addini("raceway_on_race", default="fail", help="fail or warn: what a test that raced gets")
    parser.addini("raceway_suppressions", default="", help="suppressions file, relative to the rootdir")


def _enabled(option: object, config: pytest.Config) -> bool:
    if option is not None:
        return bool(option)
    try:
        return bool(config.getini("raceway"))
    except (ValueError, KeyError):
        return False


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: List[str]) -> None:
    """Before conftest files and test modules are imported: the primitives they create at
    import time (a module-level ``threading.Lock()``) must be instrumented too."""
    if _enabled(getattr(early_config.known_args_namespace, "raceway", None), early_config):
        from raceway.pytest_plugin import instrument_session

        instrument_session(early_config)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "raceway(on_race='fail'|'warn', enabled=True): the race detection of this test (under pytest --raceway)",
    )
    if _enabled(config.getoption("raceway", None), config):
        from raceway.pytest_plugin import RacewayPlugin

        config.pluginmanager.register(RacewayPlugin(config), PLUGIN_NAME)


@pytest.fixture
def raceway_client(request: pytest.FixtureRequest) -> RacewayClient:
    """The test's own `raceway.RacewayClient` (in-process detector, nothing sent), under
    ``pytest --raceway``; the test is skipped when the plugin is off."""
    plugin = request.config.pluginmanager.get_plugin(PLUGIN_NAME)
    client: Optional[RacewayClient] = plugin.client_of(request.node) if plugin is not None else None
    if client is None:
        pytest.skip("raceway_client needs pytest --raceway")
    return client
