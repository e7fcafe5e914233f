"""Replays a node's journal into the history writer, in this process.

Executes the journal of DATA_DIR (e.g. one kept by `scripts/node_threads.py
--keep`) on a fresh exchange, turns each command into what the node's
history store pipes to its writer, then converts and writes it into a new
SQLite database in groups of about --group-orders orders, serially (no pipe,
no threads). Prints the writer's CPU per order, split into conversion and
each kind of statement, the bytes it wrote, and the database's size.
BENCHMARKS.md cites its figures ("replaying a ZeroMQ run's journal").

    .venv/bin/python scripts/history_replay.py /tmp/zdata --group-orders 184000
    .venv/bin/python scripts/history_replay.py /tmp/zdata --cache-kib 262144 --no-deltas

The commands are cached in DATA_DIR/wire.pickle (delete it after changing
the exchange or the store's wire format).
"""

from __future__ import annotations

import argparse
import os
import pickle
import tempfile
import time
from pathlib import Path

from lxdex import commands as C
from lxdex.exchange import Exchange
from lxdex.node import history as H
from lxdex.node.journal import Journal
from lxdex.node.server import load_master_key


def _wire_items(data: Path) -> tuple[list, list]:
    """The journal's commands as `HistoryStore._wire` items, and the market facts sent with them."""
    cache = data / "wire.pickle"
    if cache.exists():
        with open(cache, "rb") as f:
            return pickle.load(f)
    ex = Exchange(load_master_key(data))
    markets: list = []

    class Sender:  # what `_wire` uses of a HistoryStore
        _sent_markets: set = set()
        _exchange_markets = staticmethod(lambda mid: ex._market_by_id[mid])

        def _need_markets(self, mids, out):
            H.HistoryStore._need_markets(self, mids, out)

    orig = H._write_message
    H._write_message = lambda out, msg: markets.append(msg[1])  # the "market" messages
    try:
        sender, items = Sender(), []
        with Journal.open(data, sync="none") as j:
            for first, payloads in j.read_payloads(1):
                for i, p in enumerate(payloads):
                    c = C.decode(p)
                    items.append(H.HistoryStore._wire(sender, (c, ex.execute(c, first + i)), None))
    finally:
        H._write_message = orig
    with open(cache, "wb") as f:
        pickle.dump((items, markets), f)
    return items, markets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--group-orders", type=int, default=184_000, help="orders per transaction (live: ~184k)")
    ap.add_argument("--page-size", type=int, default=8192)
    ap.add_argument("--cache-kib", type=int, help="SQLite page cache (default: the writer's 64 MiB)")
    ap.add_argument("--checkpoint-pages", type=int, help="wal_autocheckpoint (default: the writer's)")
    ap.add_argument("--no-deltas", action="store_true", help="leave out the updates of older orders (diagnostic)")
    a = ap.parse_args()
    items, markets = _wire_items(a.data_dir)
    d = Path(tempfile.mkdtemp(prefix="lxdex-replay-"))
    b = H._SQLite(d / "history.sqlite3")
    c = b.connect(writer=False)
    c.execute(f"PRAGMA page_size = {a.page_size}")  # before the first table
    c.execute("PRAGMA journal_mode = WAL")
    H._init_schema(c, b)
    c.close()
    w = H._Writer(b, True, None, None)
    if a.cache_kib:
        w._conn.execute(f"PRAGMA cache_size = -{a.cache_kib}")
    if a.checkpoint_pages:
        w._conn.execute(f"PRAGMA wal_autocheckpoint = {a.checkpoint_pages}")
    for m in markets:
        w._infos[m[0]] = m
    times: dict[str, list] = {}
    fast = H._FastSQLite

    def timed(f):
        def g(self, sql, *args):
            t = time.process_time()
            r = f(self, sql, *args)
            x = times.setdefault(sql.split("(")[0].strip()[:32], [0.0, 0])
            x[0] += time.process_time() - t
            x[1] += 1
            return r
        return g

    fast.execute, fast.executemany, fast.insert_columns = (timed(fast.execute), timed(fast.executemany),
                                                            timed(fast.insert_columns))
    n_orders, convert, i = 0, 0.0, 0
    io0 = _io()
    cpu0 = time.process_time()
    while i < len(items):
        j, rows = i, 0
        while j < len(items) and rows < a.group_orders:
            it = items[j]
            if len(it) > 2 and it[3] == 1:  # a Records batch: its order rows
                rows += len(it[4]) // 120
            j += 1
        t = time.process_time()
        g = w._convert(items[i:j])
        convert += time.process_time() - t
        if a.no_deltas:
            g.delta_rows = []
        w._write(g)
        n_orders += rows
        i = j
    cpu = time.process_time() - cpu0
    written = _io() - io0
    print(f"{len(items):,} commands, {n_orders:,} order rows in groups of ~{a.group_orders:,}: "
          f"{cpu / n_orders * 1e6:.2f} us CPU per order (conversion {convert / n_orders * 1e6:.2f})")
    for k, (t, calls) in sorted(times.items(), key=lambda x: -x[1][0]):
        if t / n_orders * 1e6 >= 0.005:
            print(f"  {k:34s} {t / n_orders * 1e6:6.2f} us/order  ({calls} calls)")
    print(f"written: {written // n_orders} bytes per order; database "
          f"{sum(f.stat().st_size for f in d.iterdir()) / 1e6:.0f} MB")
    w._conn.close()
    for f in d.iterdir():
        f.unlink()
    d.rmdir()


def _io() -> int:
    for line in open("/proc/self/io"):
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


if __name__ == "__main__":
    main()
