"""The seed's transfer: check-then-act with two separate acquisitions of one lock.

Two withdrawals from alice's account (1000): each reads the balance under the lock, releases
it, checks the funds, and writes ``balance - amount`` under the lock again. A barrier between
the read and the write makes both read 1000 before either writes, so the second write
overwrites the first with a value computed from a stale read: money is created.

Verdict: every access holds ``accounts_lock`` and every pair of accesses is ordered by it, so
there is no data race; the second write is a lost update (CRITICAL) all the same.
"""

import threading

from raceway import ContextAwareThread, tracked_lock

from _corpus_support import TIMEOUT

EXPECT = [("lost-update", "CRITICAL", "alice.balance")]


def run(client):
    accounts = {"alice": 1000}
    lock = threading.Lock()
    both_checked = threading.Barrier(2, timeout=TIMEOUT)

    def withdraw(amount):
        with tracked_lock(client, lock, "accounts_lock"):
            balance = accounts["alice"]
            client.track_state_change("alice.balance", None, balance, "Read")
        both_checked.wait()
        if balance >= amount:
            with tracked_lock(client, lock, "accounts_lock"):
                accounts["alice"] = balance - amount
                client.track_state_change("alice.balance", balance, balance - amount, "Write")

    with client.trace():
        client.track_state_change("alice.balance", None, 1000, "Write")
        threads = [ContextAwareThread(target=withdraw, args=(a,), client=client) for a in (100, 250)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
    assert accounts["alice"] in (900, 750)  # not 650: one withdrawal was lost
