"""Resident memory of `lxdex.accounts.Accounts` per user, each user with a
profile and one API key (balances live in the Rust ledger, not here).

    .venv/bin/python benchmarks/accounts_memory.py [N_USERS]   # default 1,000,000

Prints RSS (VmRSS from /proc/self/status, Linux) before and after creating
the users and keys, and the difference per user. Key material is generated
by the gateway helper (random, AES-GCM sealed) inside the loop, as a gateway
would; only what the state keeps stays alive. Also times snapshot, restore
and state_hash at that size.
"""

from __future__ import annotations

import gc
import os
import platform
import sys
import time

from lxdex.accounts import Accounts, generate_key_material


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    master = os.urandom(32)
    gc.collect()
    before = rss()
    acc = Accounts(master)
    t0 = time.perf_counter()
    ts = 1_700_000_000_000
    for uid in range(n):
        acc.create_user(uid, {"display_name": f"trader {uid:07d}", "email": f"trader{uid:07d}@example.com",
                              "country": "DE"}, ts + uid)
        km = generate_key_material(master, uid)
        acc.create_api_key(uid, km.api_key, km.sealed_secret, "read,trade", ts + uid, label="bot")
    build_s = time.perf_counter() - t0
    gc.collect()
    after = rss()
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cpus")
    print(f"users: {n:,} (display name 15 chars, email 27 chars, one API key of 64 chars, label 'bot')")
    print(f"RSS before: {before:,} B  after: {after:,} B  delta: {after - before:,} B")
    print(f"per user (profile + 1 API key): {(after - before) / n:.1f} B")
    print(f"build: {build_s:.1f} s ({n / build_s:,.0f} users+keys/s)")
    t0 = time.perf_counter()
    snap = acc.snapshot()
    print(f"snapshot: {len(snap):,} B in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    acc.state_hash()
    print(f"state_hash: {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    again = Accounts.restore(snap, master)
    print(f"restore: {time.perf_counter() - t0:.1f} s, equal: {again.snapshot() == snap}")


if __name__ == "__main__":
    main()
