"""Times the history store's account queries on a node's data directory.

Opens DATA_DIR's history store (e.g. one kept by `scripts/node_threads.py
--keep`) and times `orders(account, limit)`, `fills(account, limit)`,
`orders(account, from_id=..., limit)`, `order(id)`, and `orders` / `fills`
with `start_ts` at the last 5% of the history, for up to --accounts accounts
that have fills; prints the median and the maximum of each.
`--no-time-skip` reads every `account_*` row whatever its times (diagnostic:
what the time filters cost without them).
BENCHMARKS.md cites its figures (the reads of `account_orders` /
`account_fills`, alternated with an older checkout's).

    .venv/bin/python scripts/history_reads.py /tmp/qnew
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import time
from pathlib import Path

from lxdex.node.history import DEFAULT_FILE, HistoryStore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--accounts", type=int, default=20)
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument("--no-time-skip", action="store_true")
    a = ap.parse_args()
    if a.no_time_skip:
        from lxdex.node import history

        ids = history.HistoryStore._account_ids
        history.HistoryStore._account_ids = lambda self, t, acc, f, fw, s=None, e=None: ids(self, t, acc, f, fw)
    db = sqlite3.connect(a.data_dir / DEFAULT_FILE)
    accounts = [r[0] for r in db.execute("SELECT DISTINCT taker_account FROM fills LIMIT ?", (a.accounts,))]
    mid_id = db.execute("SELECT max(order_id) / 2 FROM orders").fetchone()[0] or 0
    t_lo, t_hi = db.execute("SELECT min(created_ts), max(created_ts) FROM orders").fetchone()
    late = t_hi - (t_hi - t_lo) // 20
    db.close()
    store = HistoryStore.open(None, a.data_dir, lambda i: None)  # (the markets are in the database)
    try:
        store.orders(accounts[0], limit=a.limit)  # (connection, market cache)
        for name, f in (("orders", lambda acc: store.orders(acc, limit=a.limit)),
                        ("fills", lambda acc: store.fills(acc, limit=a.limit)),
                        ("orders from_id", lambda acc: store.orders(acc, from_id=mid_id, limit=a.limit)),
                        ("order", lambda acc: [store.order(mid_id + acc)]),
                        ("orders start_ts", lambda acc: store.orders(acc, start_ts=late, limit=a.limit)),
                        ("fills start_ts", lambda acc: store.fills(acc, start_ts=late, limit=a.limit))):
            times, n = [], 0
            for acc in accounts:
                t = time.perf_counter()
                n += len(f(acc))
                times.append(time.perf_counter() - t)
            print(f"{name:16s} median {statistics.median(times) * 1e3:7.2f} ms  max {max(times) * 1e3:7.2f} ms  "
                  f"({n / len(accounts):.0f} rows per call, {len(accounts)} accounts)")
    finally:
        store.close()


if __name__ == "__main__":
    main()
