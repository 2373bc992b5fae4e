"""The SDK's background threads run at a lower CPU priority than the application's
(`Config.background_nice`, raceway/_priority.py): read back from the kernel, per thread."""

from __future__ import annotations

import os
import sys
import threading
from typing import Dict

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are Linux's")


def _nice_by_thread_name() -> Dict[str, int]:
    return {t.name: os.getpriority(os.PRIO_PROCESS, t.native_id) for t in threading.enumerate() if t.native_id}


def _run_background_threads(client) -> None:
    with client.trace():
        client.track_state_change("x", 0, 1)
    assert client.flush(timeout=10)


@pytest.mark.parametrize("nice", [10, 3, 0])
def test_the_flusher_and_the_sender_run_at_the_configured_nice_value(collector, make_client, nice):
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    client = make_client(endpoint=collector.url, background_nice=nice)
    _run_background_threads(client)
    assert collector.wait_for_events(1)
    nices = _nice_by_thread_name()
    background = {name: n for name, n in nices.items() if name.startswith("raceway-flusher")}
    assert set(background) == {"raceway-flusher", "raceway-flusher-send"}, nices
    assert all(n == min(19, own + nice) for n in background.values()), (own, background)
    # The application's thread is untouched.
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own


def test_off_by_default_and_a_local_client_lowers_its_flusher_too(make_client):
    from raceway import Config

    assert Config().background_nice == 0
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    client = make_client(endpoint=None, background_nice=10)
    _run_background_threads(client)
    assert _nice_by_thread_name()["raceway-flusher"] == min(19, own + 10)


@pytest.mark.parametrize("value", [-1, 20, 2.0, True])
def test_background_nice_is_checked(value):
    from raceway import Config

    with pytest.raises(ValueError, match="background_nice"):
        Config(background_nice=value)
