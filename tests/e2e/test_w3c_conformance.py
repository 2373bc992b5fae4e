"""W3C Trace Context conformance of the middleware plus `raceway.request()`, checked the way the
public harness checks a service (../shared/spec/w3c-trace-context.md): the example service runs
as its own process (`examples/trace_context_service.py --port PORT`), the test POSTs it the
harness's JSON array with trace headers set, and reads the trace headers of the callbacks the
service makes. One test per rule of the file, every invalid form included."""

from __future__ import annotations

import itertools
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import pytest

from conftest import assert_valid_batch
from raceway.testing import CollectorServer, Received

ROOT = Path(__file__).resolve().parents[2]
TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
TP = f"00-{TRACE}-{PARENT}-01"
OUTGOING = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ids = itertools.count()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """The example service in its own process, and the harness side of the protocol."""

    def __init__(self, callbacks: CollectorServer, collector: CollectorServer):
        self.callbacks = callbacks
        self.collector = collector
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "trace_context_service.py"), "--port", str(self.port),
             "--endpoint", collector.url],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"service exited: {self.proc.stdout.read().decode(errors='replace')}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError("service did not start listening")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            self.proc.kill()
        self.proc.stdout.close()

    def exchange(self, headers: Sequence[Tuple[str, str]], calls: int = 2) -> List[Received]:
        """POSTs the harness's array (``calls`` callbacks) with exactly these header lines and
        returns the callback requests the service made, in order."""
        import http.client

        tag = f"t{next(_ids)}"
        items = [{"url": f"{self.callbacks.url}/{tag}/{i}", "arguments": [i, {"k": "v"}]} for i in range(calls)]
        data = json.dumps(items).encode()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.putrequest("POST", "/")
            for name, value in headers:
                conn.putheader(name, value)
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(len(data)))
            conn.endheaders(data)
            response = conn.getresponse()
            response.read()
        finally:
            conn.close()
        assert response.status == 200
        got = [r for r in self.callbacks.received if r.path.startswith(f"/{tag}/")]
        assert [r.path for r in got] == [f"/{tag}/{i}" for i in range(calls)]  # in order, each once
        assert [json.loads(r.body) for r in got] == [item["arguments"] for item in items]
        return got


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    with CollectorServer() as callbacks, CollectorServer() as collector:
        svc = Service(callbacks, collector)
        try:
            yield svc
        finally:
            svc.stop()


# -- what a callback must carry ----------------------------------------------------------------
def outgoing(rec: Received) -> Tuple[str, str, str, Optional[str]]:
    """The callback's trace, parent id, flags and tracestate, after checking the form: exactly
    one traceparent, version 00, lower-case, non-zero ids; at most one tracestate."""
    names = [k for k, _ in rec.header_list]
    assert names.count("traceparent") == 1, rec.header_list
    assert names.count("tracestate") <= 1, rec.header_list
    m = OUTGOING.fullmatch(rec.headers["traceparent"])
    assert m, rec.headers["traceparent"]
    trace, parent, flags = m.groups()
    assert trace != "0" * 32 and parent != "0" * 16
    return trace, parent, flags, rec.headers.get("tracestate")


def assert_continued(recs: List[Received], flags: str = "01", tracestate: Optional[str] = None) -> None:
    parents = set()
    for rec in recs:
        trace, parent, got_flags, state = outgoing(rec)
        assert trace == TRACE
        assert parent != PARENT
        assert got_flags == flags
        assert state == tracestate
        parents.add(parent)
    assert len(parents) == len(recs)  # a new parent id for every outgoing call


def assert_restarted(recs: List[Received]) -> None:
    traces = set()
    for rec in recs:
        trace, parent, _, state = outgoing(rec)
        assert trace != TRACE and parent != PARENT
        assert state is None  # tracestate without a valid traceparent is dropped
        traces.add(trace)
    assert len(traces) == 1  # one new trace for the request, shared by its calls


# -- traceparent -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["traceparent", "TraceParent", "TRACEPARENT"])
def test_header_names_match_case_insensitively(service, name):
    assert_continued(service.exchange([(name, TP)]))


@pytest.mark.parametrize("name", ["trace-parent", "trace.parent", "traceparent-x"])
def test_other_spellings_are_not_the_header(service, name):
    assert_restarted(service.exchange([(name, TP), ("tracestate", "foo=1")]))


@pytest.mark.parametrize("value", [f" {TP}", f"\t{TP}\t", f" \t{TP} \t"])
def test_spaces_and_tabs_around_the_value_are_ignored(service, value):
    assert_continued(service.exchange([("traceparent", value)]))


INVALID_TRACEPARENTS = {
    "short trace id": f"00-{TRACE[:-2]}-{PARENT}-01",
    "long trace id": f"00-{TRACE}0-{PARENT}-01",
    "short parent id": f"00-{TRACE}-{PARENT[:-1]}-01",
    "long parent id": f"00-{TRACE}-{PARENT}1-01",
    "one-digit version": f"0-{TRACE}-{PARENT}-01",
    "three-digit flags": f"00-{TRACE}-{PARENT}-011",
    "one-digit flags": f"00-{TRACE}-{PARENT}-1",
    "non-hex in trace id": f"00-{TRACE[:-1]}g-{PARENT}-01",
    "0x in trace id": f"00-0x{TRACE[2:]}-{PARENT}-01",
    "non-hex in parent id": f"00-{TRACE}-{PARENT[:-1]}z-01",
    "plus in parent id": f"00-{TRACE}-+{PARENT[1:]}-01",
    "non-hex flags": f"00-{TRACE}-{PARENT}-0g",
    "non-hex version": f"0g-{TRACE}-{PARENT}-01",
    "upper-case trace id": f"00-{TRACE.upper()}-{PARENT}-01",
    "upper-case parent id": f"00-{TRACE}-{PARENT.upper()}-01",
    "upper-case flags": f"00-{TRACE}-{PARENT}-0A",
    "upper-case version": f"0A-{TRACE}-{PARENT}-01",
    "version ff": f"ff-{TRACE}-{PARENT}-01",
    "version 00 with a trailing dot": f"{TP}.",
    "version 00 with an extra field": f"{TP}-extra",
    "version 00 with a trailing dash": f"{TP}-",
    "all-zero trace id": f"00-{'0' * 32}-{PARENT}-01",
    "all-zero parent id": f"00-{TRACE}-{'0' * 16}-01",
    "wrong delimiter": f"00_{TRACE}_{PARENT}_01",
    "empty": "",
    "garbage": "not a traceparent",
}


@pytest.mark.parametrize("value", list(INVALID_TRACEPARENTS.values()), ids=list(INVALID_TRACEPARENTS))
def test_invalid_traceparent_starts_a_new_trace_and_drops_tracestate(service, value):
    assert_restarted(service.exchange([("traceparent", value), ("tracestate", "foo=1")]))


@pytest.mark.parametrize("headers", [
    [("traceparent", TP), ("traceparent", TP)],
    [("traceparent", TP), ("traceparent", f"00-{'1' * 32}-{PARENT}-01")],
    [("traceparent", TP), ("TraceParent", TP)],
], ids=["same value twice", "two values", "two spellings"])
def test_traceparent_present_more_than_once_is_invalid(service, headers):
    assert_restarted(service.exchange(headers + [("tracestate", "foo=1")]))


@pytest.mark.parametrize("value", [f"cc-{TRACE}-{PARENT}-01", f"cc-{TRACE}-{PARENT}-01-what-the-future",
                                   f"01-{TRACE}-{PARENT}-01-x"])
def test_a_higher_version_is_read_and_answered_with_version_00(service, value):
    assert_continued(service.exchange([("traceparent", value), ("tracestate", "foo=1")]), tracestate="foo=1")


@pytest.mark.parametrize("value", [f"cc-{TRACE}-{PARENT}-01.what", f"cc-{TRACE}-{PARENT}-01what"])
def test_a_higher_version_must_continue_with_a_dash(service, value):
    assert_restarted(service.exchange([("traceparent", value), ("tracestate", "foo=1")]))


@pytest.mark.parametrize("flags, expected", [("00", "00"), ("01", "01"), ("02", "02"), ("03", "03"),
                                             ("09", "01"), ("ff", "03")])
def test_sampled_and_random_flags_are_kept(service, flags, expected):
    assert_continued(service.exchange([("traceparent", f"00-{TRACE}-{PARENT}-{flags}")]), flags=expected)


def test_without_traceparent_a_new_trace_with_valid_ids(service):
    assert_restarted(service.exchange([("tracestate", "foo=1")], calls=3))


# -- tracestate --------------------------------------------------------------------------------
VALID_TRACESTATES = {
    "one member": (["foo=1"], "foo=1"),
    "in order": (["foo=1,bar=2"], "foo=1,bar=2"),
    "headers combined in order": (["foo=1", "bar=2", "baz=3"], "foo=1,bar=2,baz=3"),
    "empty members and blanks skipped": ([" foo=1 ,, \t,bar=2\t", ","], "foo=1,bar=2"),
    "an empty header skipped": (["foo=1", ""], "foo=1"),
    "multi-tenant key": (["tenant@system=1"], "tenant@system=1"),
    "key characters": (["a_0-9*/z=1"], "a_0-9*/z=1"),
    "inner space in value": (["foo=a b"], "foo=a b"),
    "printable punctuation in value": (["foo=!\"#$%&'()*+-./:;<>?@[\\]^_`{|}~"], "foo=!\"#$%&'()*+-./:;<>?@[\\]^_`{|}~"),
    "256-char key": ([f"{'k' * 256}=1"], f"{'k' * 256}=1"),
    "256-char value": ([f"foo={'v' * 256}"], f"foo={'v' * 256}"),
    "32 members": ([",".join(f"k{i}=v" for i in range(32))], ",".join(f"k{i}=v" for i in range(32))),
    "level 2: key ending in @": (["foo@=1"], "foo@=1"),
    "level 2: several @": (["a@b@c=1"], "a@b@c=1"),
    "level 2: 242-character tenant": ([f"{'t' * 242}@v=1"], f"{'t' * 242}@v=1"),
    "level 2: 15-character system": ([f"t@{'s' * 15}=1"], f"t@{'s' * 15}=1"),
    "level 1: tenant starting with a digit": (["1tenant@sys=1"], "1tenant@sys=1"),
}


@pytest.mark.parametrize("values, expected", list(VALID_TRACESTATES.values()), ids=list(VALID_TRACESTATES))
def test_valid_tracestate_is_passed_on_unchanged(service, values, expected):
    headers = [("traceparent", TP)] + [("tracestate", v) for v in values]
    assert_continued(service.exchange(headers), tracestate=expected)


def test_duplicate_keys_are_kept_or_the_later_dropped(service):
    recs = service.exchange([("traceparent", TP), ("tracestate", "foo=1,foo=2")])
    assert outgoing(recs[0])[3] in ("foo=1,foo=2", "foo=1")
    assert_continued(recs, tracestate=outgoing(recs[0])[3])


INVALID_TRACESTATES = {
    "space before =": "foo =1",
    "upper-case key": "FOO=1",
    "dot in key": "foo.bar=1",
    "key starts with @": "@foo=1",
    "two =": "foo=bar=baz",
    "empty value": "foo=",
    "no =": "foo",
    "empty key": "=1",
    "key over 256 characters": f"{'k' * 257}=1",
    "value over 256 characters": f"foo={'v' * 257}",
    "comma-free value with non-ASCII": "foo=caf\xe9",
    "key over 256 characters with @": f"{'t' * 255}@v=1",
}


@pytest.mark.parametrize("member", list(INVALID_TRACESTATES.values()), ids=list(INVALID_TRACESTATES))
def test_one_invalid_member_discards_the_whole_tracestate(service, member):
    recs = service.exchange([("traceparent", TP), ("tracestate", "ok=1"), ("tracestate", member),
                             ("tracestate", "also=2")])
    assert_continued(recs, tracestate=None)


def test_more_than_32_members_discards_the_whole_tracestate(service):
    members = ",".join(f"k{i}=v" for i in range(33))
    assert_continued(service.exchange([("traceparent", TP), ("tracestate", members)]), tracestate=None)


def test_the_service_reports_the_exchange_to_raceway(service):
    recs = service.exchange([("traceparent", TP), ("tracestate", "foo=1")])
    deadline = time.monotonic() + 10
    trace_uuid = f"{TRACE[:8]}-{TRACE[8:12]}-{TRACE[12:16]}-{TRACE[16:20]}-{TRACE[20:]}"

    def arrived(server: CollectorServer) -> bool:
        kinds = [next(iter(e["kind"])) for e in server.events if e["trace_id"] == trace_uuid]
        return "HttpResponse" in kinds

    assert service.collector.wait_for(arrived, timeout=max(0.0, deadline - time.monotonic()))
    events = [e for e in service.collector.events if e["trace_id"] == trace_uuid]
    for batch in service.collector.batches:
        assert_valid_batch(batch)
    assert {e["metadata"]["distributed_span_id"] for e in events} == {PARENT}
    request = next(e for e in events if "HttpRequest" in e["kind"])
    assert request["kind"]["HttpRequest"]["method"] == "POST"
    # the callbacks were made from a child context (asyncio.to_thread) of the request's
    minted = {outgoing(r)[1] for r in recs}
    assert len(minted) == len(recs)
