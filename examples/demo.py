"""`make demo`: a small banking service with a lost-update race, instrumented with Raceway.

Two transfers run on two threads and both read-modify-write the same balance without a lock.
The events go through the real pipeline (the Rust core as a WebAssembly component encodes them)
to a Raceway-compatible collector running in this process on 127.0.0.1, and the demo prints
what arrived: the events of each execution context with their vector clocks, then one event in
full. (The in-process race report replaces this printout once the core's detector lands.)
"""

from __future__ import annotations

import json
import threading
import time

from raceway import Config, RacewayClient, tracked_lock
from raceway.testing import CollectorServer

accounts = {"alice": {"balance": 1000}, "bob": {"balance": 0}}
audit_lock = threading.Lock()


def transfer(client: RacewayClient, amount: int, barrier: threading.Barrier) -> None:
    with client.trace():
        client.track_function_call("transfer", {"from": "alice", "to": "bob", "amount": amount})
        balance = accounts["alice"]["balance"]
        client.track_state_change("alice.balance", None, balance, "Read")
        barrier.wait()  # both threads have read: the race window, made certain
        time.sleep(0.01)
        accounts["alice"]["balance"] = balance - amount
        client.track_state_change("alice.balance", balance, balance - amount, "Write")
        with tracked_lock(client, audit_lock, "audit_lock"):
            client.track_state_change("audit.count", None, 1, "AtomicRMW")


def main() -> None:
    with CollectorServer() as server:
        client = RacewayClient(Config(endpoint=server.url, service_name="banking-api", instance_id="demo-1"))
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=transfer, args=(client, amt, barrier)) for amt in (100, 250)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        client.shutdown(timeout=10)

        events = server.events
        print(f"Raceway demo: {len(events)} events arrived at {server.url}/events "
              f"in {len(server.batches)} batch(es); stats {client.stats()}\n")
        by_ctx: dict = {}
        for e in events:
            by_ctx.setdefault(e["metadata"]["thread_id"], []).append(e)
        for thread_id, evs in by_ctx.items():
            print(f"execution context {thread_id} (trace {evs[0]['trace_id']})")
            for e in evs:
                kind, body = next(iter(e["kind"].items()))
                what = body.get("variable") or body.get("function_name") or body.get("lock_id") or ""
                access = body.get("access_type", "")
                clock = ", ".join(f"{c.rsplit('/', 1)[-1]}:{n}" for c, n in e["causality_vector"])
                locks = f" locks={e['lock_set']}" if e["lock_set"] else ""
                print(f"  {kind:<12} {access:<9} {what:<14} clock[{clock}]{locks}")
            print()
        print(f"Final balance of alice: {accounts['alice']['balance']} (two transfers of 100 and 250 "
              "from 1000 should leave 650: one update was lost)\n")
        write = next(e for e in events if e["kind"].get("StateChange", {}).get("access_type") == "Write")
        print("One event as the server receives it:")
        print(json.dumps(write, indent=2))


if __name__ == "__main__":
    main()
