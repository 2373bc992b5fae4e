"""Starlette and FastAPI run ``def`` endpoints, ``def`` dependencies and sync body iterators in
anyio's worker threads. Each such call is a child of the request's context, forked at the call
and joined when the request's task gets the result: a dependency's read and the endpoint's
write in one request are ordered; the same code in two concurrent requests races. A real
uvicorn server on 127.0.0.1, the built component."""

from __future__ import annotations

import threading

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
