"""The Django integration (``raceway.middleware.django.RacewayMiddleware`` in MIDDLEWARE) on a
real Django project served on 127.0.0.1, under WSGI (werkzeug) and ASGI (uvicorn), with sync
and async views, checked on what arrived at the collector. Streaming responses are cells of
test_streaming.py. The project is `_django_app`."""

from __future__ import annotations

import pytest

import _django_app
from _servers import asgi_server, body, by_trace, happens_before, json_body, kind, raw_request, wsgi_server
from conftest import assert_valid_batch
from raceway import get_context

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACE = "0af76519-16cd-43dd-8448-eb211c80319c"
TP2 = "00-1bf7651916cd43dd8448eb211c80319c-c7ad6b7169203331-03"
TRACE2 = "1bf76519-16cd-43dd-8448-eb211c80319c"
TP3 = "00-2cf7651916cd43dd8448eb211c80319c-d7ad6b7169203331-01"
TRACE3 = "2cf76519-16cd-43dd-8448-eb211c80319c"


def serve(server: str):
    return wsgi_server(_probed(_django_app.wsgi_app()), threaded=False) if server == "wsgi" else asgi_server(
        _probed_asgi(_django_app.asgi_app()))


LEFT: list = []
"""What a probe outside the application saw current after each request (must be None)."""


def _probed(app):
    def probed(environ, start_response):
        try:
            yield from app(environ, start_response)
        finally:
            LEFT.append(get_context())
    return probed


def _probed_asgi(app):
    async def probed(scope, receive, send):
        try:
            await app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                LEFT.append(get_context())
    return probed


@pytest.fixture
def django_client(collector, make_client):
    _django_app.setup()
    LEFT.clear()
    client = make_client(endpoint=collector.url, max_stack_frames=3)
    _django_app.CLIENT = client
    yield client
    _django_app.CLIENT = None


@pytest.mark.parametrize("server", ["wsgi", "asgi"])
@pytest.mark.parametrize("view", ["work", "awork"])
def test_sync_and_async_views_record_in_the_request_context(server, view, django_client, collector):
    with serve(server) as url:
        status, _, raw = raw_request(f"{url}/{view}", headers=[("traceparent", TP)])
        status2, _, raw2 = raw_request(f"{url}/{view}")  # the same worker: starts clean
    assert (status, status2) == (200, 200)
    seen, seen2 = json_body(raw), json_body(raw2)
    assert seen["trace_id"] == TRACE and seen2["trace_id"] not in (None, TRACE)
    assert LEFT == [None, None]
    assert django_client.flush(timeout=10)
    for batch in collector.batches:
        assert_valid_batch(batch)
    events = [e for e in by_trace(collector.events)[TRACE] if kind(e) not in ("AsyncSpawn", "AsyncAwait")]
    assert [kind(e) for e in events] == ["HttpRequest", "StateChange", "HttpResponse"]
    request, work, response = events
    assert (body(request)["method"], body(request)["url"]) == ("GET", f"/{view}")
    assert body(response)["status"] == 200
    assert work["metadata"]["thread_id"] == seen["thread_id"]
    # A sync view under ASGI (an async one under WSGI) runs in another thread through asgiref;
    # its context comes back and is joined: the response comes after what the view did.
    assert happens_before(work, response)


@pytest.mark.parametrize("server", ["wsgi", "asgi"])
@pytest.mark.parametrize("view", ["boom", "aboom"])
def test_a_view_exception_is_an_error_event_and_a_500(server, view, django_client, collector):
    with serve(server) as url:
        status, _, _ = raw_request(f"{url}/{view}", headers=[("traceparent", TP)])
        missing, _, _ = raw_request(f"{url}/missing", headers=[("traceparent", TP2)])
        after = json_body(raw_request(f"{url}/work")[2])
    assert (status, missing) == (500, 404)
    assert after["trace_id"] not in (None, TRACE, TRACE2)
    assert LEFT == [None, None, None]
    assert django_client.flush(timeout=10)
    traces = by_trace(collector.events)
    failed = [e for e in traces[TRACE] if kind(e) not in ("AsyncSpawn", "AsyncAwait")]
    assert [kind(e) for e in failed] == ["HttpRequest", "StateChange", "Error", "HttpResponse"]
    error = body(failed[2])
    assert (error["error_type"], error["message"]) == ("RuntimeError", "boom")
    assert len(error["stack_trace"]) == 3 and error["stack_trace"][-1].endswith("in deep")
    assert body(failed[3])["status"] == 500
    # Http404 is Django's answer, not an error
    answered = [e for e in traces[TRACE2] if kind(e) not in ("AsyncSpawn", "AsyncAwait")]
    assert [kind(e) for e in answered] == ["HttpRequest", "HttpResponse"]
    assert body(answered[1])["status"] == 404


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume")  # Django's, under ASGI
@pytest.mark.parametrize("server", ["wsgi", "asgi"])
def test_a_file_response_keeps_the_servers_file_path_and_is_recorded(server, django_client, collector):
    with serve(server) as url:
        status, _, raw = raw_request(f"{url}/download", headers=[("traceparent", TP)])
    assert (status, raw) == (200, b"file body")
    assert django_client.flush(timeout=10)
    events = by_trace(collector.events)[TRACE]
    assert [kind(e) for e in events] == ["HttpRequest", "HttpResponse"]
    assert body(events[1])["status"] == 200


def test_propagated_exceptions_are_recorded_once(django_client, collector):
    """DEBUG_PROPAGATE_EXCEPTIONS: Django sends got_request_exception, then the exception goes
    through the middleware to the server: one Error, and the server's 500."""
    from django.test.utils import override_settings

    with override_settings(DEBUG_PROPAGATE_EXCEPTIONS=True):
        app = _django_app.wsgi_app()
    with wsgi_server(app, threaded=False) as url:
        status, _, _ = raw_request(f"{url}/boom", headers=[("traceparent", TP)])
    assert status == 500
    assert django_client.flush(timeout=10)
    assert [kind(e) for e in by_trace(collector.events)[TRACE]] == ["HttpRequest", "StateChange", "Error", "HttpResponse"]


# -- the settings ------------------------------------------------------------------------------
def test_a_client_built_from_the_raceway_setting(collector):
    """``RACEWAY = {...}`` (Config fields): one client per process, `get_client()` returns it;
    ``RACEWAY_OPTIONS`` takes the middleware's options."""
    from django.test.utils import override_settings

    from raceway.middleware import django as integration

    _django_app.setup()
    settings = {"endpoint": collector.url, "service_name": "django-shop", "instance_id": "d-1", "flush_interval": 0.05}
    with override_settings(RACEWAY=settings, RACEWAY_CLIENT=None,
                           RACEWAY_OPTIONS={"include_query": True, "response_traceparent": True}):
        app = _django_app.wsgi_app()
        client = integration.get_client()
        assert _django_app.wsgi_app() and integration.get_client() is client  # one per process
    _django_app.CLIENT = client  # the views record with it
    try:
        with wsgi_server(app) as url:
            status, headers, raw = raw_request(f"{url}/work?page=2", headers=[("traceparent", TP2)])
        assert status == 200 and json_body(raw)["trace_id"] == TRACE2
        assert headers["traceparent"].startswith(f"00-{TRACE2.replace('-', '')}-") and headers["traceparent"].endswith("-03")
        assert client.flush(timeout=10)
        events = by_trace(collector.events)[TRACE2]
        assert [kind(e) for e in events] == ["HttpRequest", "StateChange", "HttpResponse"]
        assert body(events[0])["url"] == "/work?page=2"
        assert {e["metadata"]["service_name"] for e in events} == {"django-shop"}
    finally:
        _django_app.CLIENT = None
        client.shutdown(timeout=5)
        integration._clients.clear()


@pytest.mark.parametrize("overrides, says", [
    ({"RACEWAY_CLIENT": None}, "set exactly one of RACEWAY"),
    ({"RACEWAY": {"endpoint": None}}, "(both are set)"),
    ({"RACEWAY": {"servce_name": "x"}, "RACEWAY_CLIENT": None}, "servce_name"),
    ({"RACEWAY": {"service_name": "x" * 300}, "RACEWAY_CLIENT": None}, "service_name"),
    ({"RACEWAY_CLIENT": "no_such_module.client"}, "cannot be imported"),
    ({"RACEWAY_CLIENT": "_django_app.CHUNKS"}, "is not a RacewayClient"),
    ({"RACEWAY_OPTIONS": {"include_queries": True}}, "RACEWAY_OPTIONS"),
])
def test_settings_that_cannot_work_fail_when_django_loads_the_middleware(overrides, says, django_client):
    from django.core.exceptions import ImproperlyConfigured
    from django.test.utils import override_settings

    with override_settings(**overrides):
        with pytest.raises(ImproperlyConfigured) as raised:
            _django_app.wsgi_app()
    assert says in str(raised.value)
