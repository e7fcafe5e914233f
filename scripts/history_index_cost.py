"""What an index by account costs the history writer's order inserts.

Inserts N plain orders of --accounts random accounts through the writer's
own statement and connection (`_Backend.insert_plain_orders`, transactions
of 200,000 rows) into a fresh SQLite file, with and without an index on
`orders(account)` (the layout before schema 4); prints the writer's CPU
per insert for each, alternated. BENCHMARKS.md and docs/history.md cite
its figures (why `account_orders` replaced that index).

    .venv/bin/python scripts/history_index_cost.py --orders 2000000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from lxdex.node import history as H


def run(n: int, accounts: int, index: bool) -> float:
    d = Path(tempfile.mkdtemp(prefix="lxdex-index-cost-"))
    b = H._SQLite(d / "h.sqlite3")
    c = b.connect(writer=False)
    c.execute("PRAGMA page_size = 8192")
    c.execute("PRAGMA journal_mode = WAL")
    H._init_schema(c, b)
    if index:
        c.execute("CREATE INDEX orders_account ON orders (account)")
    c.close()
    w = H._Writer(b, True, None, None)
    rng = np.random.default_rng(1)
    ids = np.arange(1, n + 1, dtype=np.int64)
    z = np.zeros(n, np.int64)
    ts = z + 1_700_000_000_000
    # (the columns of `_PLAIN_ORDER_COLUMNS`)
    cols = [ids, rng.integers(0, accounts, n), z, z, z, z, z, z, rng.integers(1_000, 100_000, n),
            rng.integers(1, 100, n), z, z, z, ("lookup", rng.integers(1, 6, n), H._STATUS_LIST), ts, ts, ids, ids]
    t0 = time.process_time()
    for i in range(0, n, 200_000):
        w._conn.execute("BEGIN")
        w._b.insert_plain_orders(w._conn, H._Cols(*[
            (c[0], c[1][i : i + 200_000], c[2]) if isinstance(c, tuple) else c[i : i + 200_000] for c in cols]))
        w._conn.execute("COMMIT")
    t = time.process_time() - t0
    w._conn.close()
    for f in d.iterdir():
        f.unlink()
    d.rmdir()
    return t / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orders", type=int, default=2_000_000)
    ap.add_argument("--accounts", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    for _ in range(a.rounds):
        for index in (True, False):
            us = run(a.orders, a.accounts, index)
            print(f"{'with' if index else 'without'} an index on orders(account): {us:.2f} us per insert")


if __name__ == "__main__":
    main()
