"""The bar of the issue "races found without hand-written tracking calls": twelve small plain
programs, six racy/clean twin pairs, written as tests with nothing of Raceway in them but
``raceway.shared(...)`` around the shared object. Under ``pytest --raceway`` every racy test
must fail with its race, every clean twin pass; without the plugin all twelve pass.

`test_pytest_plugin.py` runs this file as a test module of a small project (pytester);
``benchmarks/bench_shared.py`` times the programs with and without the plugin's machinery.

``RACY`` maps each racy test to the races it must report, as ``(kind, variable)``.
"""

import asyncio
import threading
import time

import raceway

RACY = {
    "test_counter_racy": {("data-race", "counter['n']")},
    "test_transfer_racy": {("lost-update", "accounts['alice']")},
    "test_publish_flag_racy": {("data-race", "state['value']"), ("data-race", "state['ready']")},
    "test_shared_dict_racy": {("data-race", "config['mode']")},
    "test_await_racy": {("lost-update", "wallet['balance']")},
    "test_after_start_racy": {("data-race", "job['input']")},
}
CLEAN = ["test_counter_locked", "test_transfer_locked", "test_publish_event", "test_shared_dict_own_keys",
         "test_await_locked", "test_before_start"]


def _run_threads(*targets):
    threads = [threading.Thread(target=t) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)


# 1. An unsynchronised counter / its locked twin.
def test_counter_racy():
    counter = raceway.shared({"n": 0}, "counter")

    def work():
        for _ in range(100):
            counter["n"] += 1

    _run_threads(work, work)
    assert counter["n"] <= 200


def test_counter_locked():
    counter = raceway.shared({"n": 0}, "counter")
    lock = threading.Lock()

    def work():
        for _ in range(100):
            with lock:
                counter["n"] += 1

    _run_threads(work, work)
    assert counter["n"] == 200


# 2. Check-then-act: the transfer takes the lock twice (the read, then the write) / once.
def test_transfer_racy():
    accounts = raceway.shared({"alice": 1000}, "accounts")
    lock = threading.Lock()
    both_read = threading.Barrier(2, timeout=10)

    def withdraw(amount):
        with lock:
            balance = accounts["alice"]
        both_read.wait()
        if balance >= amount:
            with lock:
                accounts["alice"] = balance - amount

    _run_threads(lambda: withdraw(100), lambda: withdraw(250))
    assert accounts["alice"] >= 0


def test_transfer_locked():
    accounts = raceway.shared({"alice": 1000}, "accounts")
    lock = threading.Lock()

    def withdraw(amount):
        with lock:
            balance = accounts["alice"]
            if balance >= amount:
                accounts["alice"] = balance - amount

    _run_threads(lambda: withdraw(100), lambda: withdraw(250))
    assert accounts["alice"] == 650


# 3. Publication through a flag / through a threading.Event.
def test_publish_flag_racy():
    state = raceway.shared({"value": None, "ready": False}, "state")
    seen = []

    def reader():
        while not state["ready"]:
            time.sleep(0.0005)
        seen.append(state["value"])

    t = threading.Thread(target=reader)
    t.start()
    state["value"] = 42
    state["ready"] = True
    t.join(10)
    assert seen == [42]


def test_publish_event():
    state = raceway.shared({"value": None}, "state")
    ready = threading.Event()
    seen = []

    def reader():
        ready.wait(10)
        seen.append(state["value"])

    t = threading.Thread(target=reader)
    t.start()
    state["value"] = 42
    ready.set()
    t.join(10)
    assert seen == [42]


# 4. A shared dict: two threads set one key / each thread its own key, read after join().
def test_shared_dict_racy():
    config = raceway.shared({}, "config")
    _run_threads(lambda: config.__setitem__("mode", "fast"), lambda: config.__setitem__("mode", "safe"))
    assert config["mode"] in ("fast", "safe")


def test_shared_dict_own_keys():
    results = raceway.shared({}, "results")

    def worker(i):
        results[f"worker{i}"] = i * i

    _run_threads(lambda: worker(1), lambda: worker(2))
    assert sorted(results.items()) == [("worker1", 1), ("worker2", 4)]


# 5. A lost update across an await / the same under an asyncio.Lock.
def test_await_racy():
    wallet = raceway.shared({"balance": 100}, "wallet")

    async def spend(amount):
        balance = wallet["balance"]
        await asyncio.sleep(0)
        wallet["balance"] = balance - amount

    async def main():
        await asyncio.gather(spend(10), spend(20))

    asyncio.run(main())
    assert wallet["balance"] in (70, 80, 90)


def test_await_locked():
    wallet = raceway.shared({"balance": 100}, "wallet")

    async def main():
        lock = asyncio.Lock()

        async def spend(amount):
            async with lock:
                balance = wallet["balance"]
                await asyncio.sleep(0)
                wallet["balance"] = balance - amount

        await asyncio.gather(spend(10), spend(20))

    asyncio.run(main())
    assert wallet["balance"] == 70


# 6. Writes before start() and after join() / a write after start().
def test_after_start_racy():
    job = raceway.shared({"input": 1, "output": None}, "job")

    def worker():
        job["output"] = job["input"] * 2

    t = threading.Thread(target=worker)
    t.start()
    job["input"] = 2  # the worker may or may not have read it
    t.join(10)
    assert job["output"] in (2, 4)


def test_before_start():
    job = raceway.shared({"input": None, "output": None}, "job")

    def worker():
        job["output"] = job["input"] * 2

    job["input"] = 21  # before start(): the worker sees it
    t = threading.Thread(target=worker)
    t.start()
    t.join(10)
    job["input"] = 0  # after join(): the worker is done
    assert job["output"] == 42
