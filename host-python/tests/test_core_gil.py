"""Which core calls keep the GIL (raceway/_fastcall.py): the header codecs, short and made on
application threads, keep it (for inputs up to `HOLD_GIL_MAX_BYTES`); batch encoding, the
detector and large inputs release it, so the application's threads run beside them.

The probe is a real thread waiting for the GIL while the switch interval is made very long:
it runs only if the main thread releases the GIL (a C call through ``ctypes.CDLL``, a blocking
wait), never by preemption. A call that keeps the GIL leaves it waiting, deterministically; a
call that releases it lets it run, which the releasing tests retry a bounded number of times
(the waiting thread must be scheduled while the call runs)."""

from __future__ import annotations

import json
import sys
import threading
from typing import Callable, Iterator, List

import pytest

from raceway._core import HOLD_GIL, CoreInstance
from raceway._fastcall import HOLD_GIL_MAX_BYTES

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
CLOCK = (
    "v1;eyJ0cmFjZV9pZCI6IjBhZjc2NTE5LTE2Y2QtNDNkZC04NDQ4LWViMjExYzgwMzE5YyIsInNwYW5faWQiOiJiN2FkNmI3MTY5MjAzMzMxIiwi"
    "cGFyZW50X3NwYW5faWQiOiI1Y2ExYjE3Y2E4NGNhNWU1Iiwic2VydmljZSI6ImJhbmtpbmctYXBpIiwiaW5zdGFuY2UiOiJob3N0LTEiLCJjbG9j"
    "ayI6W1siYmFua2luZy1hcGkjaG9zdC0xIiwyXV19"
)
OUTGOING = {
    "trace_id": "0af76519-16cd-43dd-8448-eb211c80319c",
    "span_id": "5ca1b17ca84ca5e5",
    "parent_span_id": "b7ad6b7169203331",
    "service": "s",
    "instance": "i",
    "clock": [["s#i/1", 2]],
    "component": "s#i/1",
}


class Waiter:
    """A thread that, once `arm` returns, is waiting for the GIL and nothing else."""

    def __init__(self) -> None:
        self.ran: List[bool] = []
        self._gate = threading.Lock()
        self._gate.acquire()
        self._parked = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self._parked.set()
        with self._gate:  # blocks without the GIL; once let through, needs it back
            self.ran.append(True)

    def arm(self) -> None:
        self._thread.start()
        # The thread holds the GIL from `_parked.set()` until it blocks on the gate (the switch
        # interval is long): when this wait returns, it is parked there. Let through, it waits
        # for the GIL, which only a release by this thread gives it.
        assert self._parked.wait(10)
        self._gate.release()

    def finish(self) -> None:
        self._thread.join(10)


@pytest.fixture
def waiter() -> Iterator[Waiter]:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    w = Waiter()
    try:
        yield w
    finally:
        sys.setswitchinterval(interval)
        w.finish()


@pytest.fixture(scope="module")
def core() -> CoreInstance:
    c = CoreInstance()
    assert all(c._fast[name] is not None for name in HOLD_GIL), "the direct caller is off: nothing to test"
    return c


def test_the_header_codecs_keep_the_gil(core, waiter):
    headers = {"traceparent": [TRACEPARENT], "tracestate": ["a=1"], "raceway-clock": [CLOCK]}
    template = json.dumps({k: v for k, v in OUTGOING.items() if k != "span_id"})
    waiter.arm()
    for _ in range(200):
        core.parse_incoming(headers)
        core.encode_outgoing(OUTGOING)
        core.outgoing_template(template)
    assert waiter.ran == []  # it never got the GIL
    waiter.finish()
    assert waiter.ran == [True]  # and was waiting for it


def _batch(events: int) -> str:
    record = '[0,0,{seq},{prev},1795246001616516000,null,"a.py",1,"StateChange",["x",null,"{value}","Write"]]'
    context = {"trace_id": "0af76519-16cd-43dd-8448-eb211c80319c", "thread_id": "python-1-00000001",
               "component": "s#i/00000001", "span_id": "b7ad6b7169203331", "upstream_span_id": None,
               "id_base": "0" * 31 + "1"}
    body = ",".join(record.format(seq=i + 1, prev=i, value="v" * 100) for i in range(events))
    return json.dumps({"contexts": [context], "states": [{"clock": [], "locks": []}]})[:-1] + f',"events":[{body}]}}'


def _released_within(calls: int, call: Callable[[], object], waiter: Waiter) -> bool:
    waiter.arm()
    for _ in range(calls):
        call()
        if waiter.ran:
            return True
    return False


def test_batch_encoding_releases_the_gil(core, waiter):
    core.configure({"service_name": "s", "environment": "e", "instance_id": "i", "process_id": 1, "tags": {}})
    batch = _batch(2000)
    assert core.encode_batch(batch, 50)["events"] == 2000
    assert _released_within(50, lambda: core.encode_batch(batch, 50), waiter)


def test_the_detector_releases_the_gil(core, waiter):
    batch = _batch(2000)
    assert _released_within(50, lambda: core.observe(batch, 0), waiter)


def test_a_header_codec_call_on_a_large_input_releases_the_gil(core, waiter):
    """A tracestate past the bound: the call costs more than the hand-off, so it releases."""
    members = ",".join(f"k{i}=" + "v" * 250 for i in range(32))
    headers = {"traceparent": [TRACEPARENT], "tracestate": [members, members]}
    assert len(json.dumps(headers)) > HOLD_GIL_MAX_BYTES
    assert core.parse_incoming(headers)["parent"] is not None
    assert _released_within(500, lambda: core.parse_incoming(headers), waiter)
