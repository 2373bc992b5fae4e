"""Starlette and FastAPI run ``def`` endpoints, ``def`` dependencies and sync body iterators in
anyio's worker threads. Each such call is a child of the request's context, forked at the call
and joined when the request's task gets the result: a dependency's read and the endpoint's
write in one request are ordered; the same code in two concurrent requests races. A real
uvicorn server on 127.0.0.1, the built component."""

from __future__ import annotations

import threading
import time

import requests

from _servers import asgi_server


def summary(races):
    return sorted((r.kind, r.severity, r.variable) for r in races)


def test_a_def_dependency_and_a_def_endpoint_of_one_request_are_ordered(make_client):
    from fastapi import Depends, FastAPI

    from raceway.middleware import FastAPIMiddleware

    client = make_client(endpoint=None, report_races_at_shutdown=False)
    app = FastAPI()
    app.add_middleware(FastAPIMiddleware, client=client)
    account = {"balance": 1000}

    def current_balance() -> int:  # runs in a worker thread
        client.track_state_change("balance", None, account["balance"], "Read")
        return account["balance"]

    @app.post("/debit/{amount}")
    def debit(amount: int, balance: int = Depends(current_balance)):  # another worker thread
        account["balance"] = balance - amount
        client.track_state_change("balance", balance, balance - amount, "Write")
        return {"balance": account["balance"]}

    with asgi_server(app) as url:
        assert requests.post(f"{url}/debit/100", timeout=10).status_code == 200
    # (Two requests, even one after the other, are not ordered by anything the SDK sees: their
    # accesses would race. One request's dependency and endpoint are.)
    assert client.races() == []


def test_the_same_endpoint_in_two_concurrent_requests_races(make_client):
    from fastapi import Depends, FastAPI

    from raceway.middleware import FastAPIMiddleware

    client = make_client(endpoint=None, report_races_at_shutdown=False)
    app = FastAPI()
    app.add_middleware(FastAPIMiddleware, client=client)
    account = {"balance": 1000}
    barrier = threading.Barrier(2)

    def current_balance() -> int:
        client.track_state_change("balance", None, account["balance"], "Read")
        return account["balance"]

    @app.post("/debit/{amount}")
    def debit(amount: int, balance: int = Depends(current_balance)):
        barrier.wait(timeout=10)
        account["balance"] = balance - amount
        client.track_state_change("balance", balance, balance - amount, "Write")
        return {"balance": account["balance"]}

    with asgi_server(app) as url:
        answers = []
        threads = [threading.Thread(target=lambda a=a: answers.append(
            requests.post(f"{url}/debit/{a}", timeout=10).status_code)) for a in (100, 250)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert answers == [200, 200]
    found = summary(client.races())
    assert ("lost-update", "CRITICAL", "balance") in found
    assert ("data-race", "CRITICAL", "balance") in found


def test_each_loop_forks_with_its_own_client(make_client, collector):
    """Two FastAPI apps with a client each, served on two loops in one process: the worker-thread
    spawns and joins of one app's requests are that app's client's events, even when the other
    app instrumented its loop in between (the wrapper is one for the process)."""
    from fastapi import Depends, FastAPI

    from raceway.middleware import FastAPIMiddleware

    b_served = threading.Event()

    def wait_for_b() -> int:  # a def dependency: one worker thread; app B is served meanwhile
        assert b_served.wait(10)
        return 1

    def make_app(client, dependency):
        app = FastAPI()
        app.add_middleware(FastAPIMiddleware, client=client)

        @app.get("/work")
        def work(_: int = Depends(dependency)):  # a def endpoint: another worker thread
            client.track_state_change("x", None, 1, "Write")
            return {}

        return app

    a = make_client(endpoint=None, report_races_at_shutdown=False, service_name="svc-a")
    b = make_client(endpoint=collector.url, report_races_at_shutdown=False, service_name="svc-b")
    with asgi_server(make_app(a, wait_for_b)) as url_a, asgi_server(make_app(b, lambda: 1)) as url_b:
        answer = []
        first = threading.Thread(target=lambda: answer.append(requests.get(f"{url_a}/work", timeout=10).status_code))
        first.start()
        time.sleep(0.2)  # A's request is in its dependency (not a timing assertion: B may come first)
        assert requests.get(f"{url_b}/work", timeout=10).status_code == 200
        b_served.set()
        first.join()
        assert answer == [200]
    assert a.flush(timeout=10) and b.flush(timeout=10)
    assert a.stats()["recorded"] > 0
    foreign = [e for e in collector.events if any(c.startswith("svc-a#") for c, _ in e["causality_vector"])]
    assert foreign == [], "client B recorded events of app A's contexts"
