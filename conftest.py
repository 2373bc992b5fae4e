"""Fixtures shared by the host's unit tests (host-python/tests) and the cross-language and
end-to-end tests (tests/). Everything is real: an HTTP server on 127.0.0.1, the built
component, real threads."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Iterator, List

import jsonschema
import pytest
from hypothesis import HealthCheck, settings

# Tests must not depend on the machine's speed: no deadlines, no health checks that time the
# data generation, and the same examples on every run (a failure reproduces).
settings.register_profile(
    "raceway", derandomize=True, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
settings.load_profile("raceway")

from raceway import Config, RacewayClient
from raceway.testing import CollectorServer

ROOT = Path(__file__).parent
SCHEMA = json.loads((ROOT / "tests" / "schema" / "raceway-events.schema.json").read_text())
_validator = jsonschema.Draft202012Validator(SCHEMA)


def assert_valid_batch(batch: object) -> None:
    """Fails with every schema error of a request body the SDK sent."""
    errors = sorted(_validator.iter_errors(batch), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Polls ``predicate`` every 2 ms until it holds (True) or ``timeout`` seconds pass (False):
    for states a test cannot be told of (a collector takes a fault without notifying)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


@pytest.fixture(autouse=True)
def _own_spool_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets a spool directory of its own (``RACEWAY_SPOOL_DIR``, inherited by the
    processes it starts): a test's spooled events never reach another test's collector, and
    nothing is written to the user's cache directory (docs/delivery.md)."""
    monkeypatch.setenv("RACEWAY_SPOOL_DIR", str(tmp_path_factory.mktemp("spool")))


@pytest.fixture
def collector() -> Iterator[CollectorServer]:
    with CollectorServer() as server:
        yield server


@pytest.fixture
def make_client() -> Iterator[Callable[..., RacewayClient]]:
    """Builds clients with test-friendly defaults and shuts every one down afterwards."""
    made: List[RacewayClient] = []

    def make(**kwargs: object) -> RacewayClient:
        kwargs.setdefault("service_name", "test-svc")
        kwargs.setdefault("instance_id", "test-1")
        kwargs.setdefault("flush_interval", 0.05)
        client = RacewayClient(Config(**kwargs))  # type: ignore[arg-type]
        made.append(client)
        return client

    yield make
    for client in made:
        client.shutdown(timeout=5)
