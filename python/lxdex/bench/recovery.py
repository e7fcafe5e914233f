"""`lxdex bench recovery`: recovery replay (`Node.open`) on a fixed journal.

The journal is built first, in this process, through a real `Node` (journal
``sync="none"``: durability is not what is measured here) with the
`lxdex bench node` setup (200 funded accounts, the three default markets):

- binary `Records` batches of `rows` order rows (70% limit orders around the
  mid, a quarter of them crossing; 30% cancels of resting orders taken from
  the acks, as the ZeroMQ bench client does);
- and, one in `single_every` batches, a few single JSON-form commands
  (`PlaceOrder`, `CancelOrder`), as the `/api/v1` routes journal them.

The workload is seeded, so the same arguments give the same journal (and the
same state hash). Then `Node.open()` recovers from that journal `repeat`
times, each in a fresh `Node`; each run is timed in wall-clock and in this
process's CPU time, and its state hash is checked against the hash of the
node that wrote the journal.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Callable

import numpy as np

MID = {0: 5_000_000, 1: 300_000, 2: 150_000}  # ticks, as in bench node
ACCOUNTS = 200


def _config():
    from ..node.config import Config

    accounts = [{"name": f"bench-{i}", "deposits": {"USD": "1000000000", "BTC": "100000", "ETH": "1000000",
                                                       "SOL": "10000000"}} for i in range(ACCOUNTS)]
    return Config.from_dict({"snapshot_every": 10**12, "accounts": accounts})


def build(data: Path, commands: int, rows: int = 512, single_every: int = 16, seed: int = 7,
          progress: Callable[[str], None] = lambda m: None) -> dict:
    """Writes a journal of about `commands` order commands into `data`
    through a real node; returns what it holds and the node's state hash."""
    from .. import commands as C
    from ..enums import COMMAND_DTYPE, CommandKind, EventKind
    from ..node.server import Node

    node = Node(data, _config(), sync="none")
    node.start()
    rng = np.random.default_rng(seed)
    markets = ["BTC-USD", "ETH-USD", "SOL-USD"]
    mult = np.array([10, 1, 1])
    bag: list[tuple[int, int, int]] = []  # resting orders: (order id, owner, market)
    n_rows = n_single = n_batches = 0
    t0 = time.perf_counter()
    while n_rows + n_single < commands:
        r = np.zeros(rows, COMMAND_DTYPE)
        market = rng.integers(0, 3, rows)
        side = rng.integers(0, 2, rows)
        mids = np.array([MID[m] for m in market.tolist()])
        off = rng.integers(-20, 60, rows)
        r["kind"] = CommandKind.SUBMIT
        r["market"], r["side"] = market, side
        r["owner"] = rng.integers(0, ACCOUNTS, rows)
        r["price"] = np.where(side == 0, mids - off, mids + off)
        r["qty"] = rng.integers(1, 20, rows) * mult[market]
        cancels = np.flatnonzero(rng.random(rows) < 0.3)[:len(bag)]
        if len(cancels):
            pick = rng.choice(len(bag), len(cancels), replace=False)
            picked = [bag[i] for i in pick.tolist()]
            for i in sorted(pick.tolist(), reverse=True):  # swap-remove
                bag[i] = bag[-1]
                bag.pop()
            got = np.array(picked, dtype=np.int64)
            r["kind"][cancels] = CommandKind.CANCEL
            r["order_id"][cancels], r["owner"][cancels], r["market"][cancels] = got[:, 0], got[:, 1], got[:, 2]
        out = node.execute(C.Records(data=r.tobytes()))
        if not out.ok:
            raise RuntimeError(f"bench batch refused: {out.error}")
        ev = out.events
        acc = ev[ev["kind"] == EventKind.ACCEPTED]
        resting = set(acc["order_id"].tolist())
        for kind in (EventKind.FILL, EventKind.CANCELLED):  # the taker side of a fill may be done already
            done = ev[(ev["kind"] == kind)]
            resting.difference_update(done["order_id"][done["remaining"] == 0].tolist())
        idx = dict(zip(acc["order_id"].tolist(), acc["cmd_index"].tolist()))
        for oid in sorted(resting):
            i = idx[oid]
            bag.append((oid, int(r["owner"][i]), int(r["market"][i])))
        n_rows += rows
        n_batches += 1
        if n_batches % single_every == 0 and bag:
            futs = []
            for k in range(4):
                m = int(rng.integers(0, 3))
                price = MID[m] + int(rng.integers(-20, 60)) * (1 if k % 2 else -1)
                tick = ("0.01", "0.01", "0.001")[m]
                futs.append(node.submit(C.PlaceOrder(account=int(rng.integers(0, ACCOUNTS)), market=markets[m],
                                                     side="sell" if k % 2 else "buy", qty=("0.001", "0.01", "0.1")[m],
                                                     price=str(price * Decimal(tick)))))
            oid, owner, _m = bag.pop()
            futs.append(node.submit(C.CancelOrder(account=owner, order_id=oid)))
            for f in futs:
                f.result()
            n_single += len(futs)
        if n_batches % 500 == 0:
            progress(f"journal: {n_rows + n_single:,} order commands")
    seconds = time.perf_counter() - t0
    seq, h = node.state_hash()
    node.stop(snapshot=False)
    return {"order_commands": n_rows + n_single, "binary_batches": n_batches, "binary_rows": n_rows,
            "single_commands": n_single, "last_seq": seq, "state_hash": h, "build_seconds": round(seconds, 2),
            "journal_bytes": sum(p.stat().st_size for p in (data / "journal").glob("*.seg"))}


def time_open(data: Path) -> tuple[float, float, object]:
    """`(wall s, CPU s, Recovery)` of one `Node.open()` on `data`."""
    from ..node.server import Node

    node = Node(data, _config(), sync="none")
    c0, t0 = time.process_time(), time.perf_counter()
    rec = node.open()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    node.journal.close()
    return wall, cpu, rec


def run(commands: int = 4_000_000, rows: int = 512, single_every: int = 16, repeat: int = 3, seed: int = 7,
        dir: Path | None = None, keep: Path | None = None,
        progress: Callable[[str], None] = lambda m: None) -> dict:
    root = Path(tempfile.mkdtemp(prefix="lxdex-bench-recovery-", dir=dir)) if keep is None else keep
    data = root / "data"
    try:
        if keep is not None and (data / "journal").exists():
            journal = dict(json.loads((root / "journal.json").read_text()))
            progress(f"reusing the journal in {data}")
        else:
            journal = build(data, commands, rows, single_every, seed, progress)
            if keep is not None:
                (root / "journal.json").write_text(json.dumps(journal))
        progress(f"journal: {journal['order_commands']:,} order commands in {journal['last_seq']:,} records "
                 f"({journal['journal_bytes'] / 1e6:,.0f} MB); timing Node.open x{repeat}")
        runs = []
        for _ in range(repeat):
            wall, cpu, rec = time_open(data)
            runs.append({"seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
                         "orders_per_s": round(journal["order_commands"] / wall),
                         "orders_per_cpu_s": round(journal["order_commands"] / cpu),
                         "hash_matches": rec.state_hash == journal["state_hash"]
                         and rec.last_seq == journal["last_seq"]})
            progress(f"Node.open: {wall:.3f} s ({cpu:.3f} CPU s) = {runs[-1]['orders_per_s']:,} order commands/s")
        best = min(runs, key=lambda r: r["seconds"])
        return {"journal": journal, "runs": runs, "best_orders_per_s": best["orders_per_s"],
                "median_orders_per_s": sorted(r["orders_per_s"] for r in runs)[len(runs) // 2],
                "hash_matches": all(r["hash_matches"] for r in runs)}
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)
