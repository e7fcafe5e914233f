"""`lxdex bench history`: how fast the node's history store writes fills.

Workload: a real `Exchange` runs `Records` batches (the binary gateway's
form); each batch places `makers` resting sells of one lot (spread over
`markets` markets, by random accounts of one half) and one IOC buy per market
(by an account of the other half) for as many lots as were placed there in
the batch, at a price above every resting sell; the sell price moves a tick
per batch in a 50-tick cycle. So each taker fills resting orders, mostly from
earlier batches (price-time priority), every fill closes a maker, and about
1.2 orders are placed per fill (fill-heavy on purpose: the figure is fills/s).

1. Writer throughput: the (command, outcome) pairs are produced first
   (untimed); then they are handed to the store's listener one command at a
   time and the clock stops when `flush()` returns, i.e. when every fill,
   order and candle is committed. fills/s = fills / that time. The
   listener's own time (what the sequencer pays) is measured separately.
2. Sequencer impact: the same commands run through a fresh Exchange, once
   alone and once with a store attached as listener (its writer thread runs
   beside, sharing the GIL); both times, and how far the writer was behind at
   the end (and how long it then took to drain), are reported.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .. import commands as C
from ..enums import COMMAND_DTYPE, EventKind, OrderType, Side, TimeInForce
from ..exchange import Exchange

DEPOSIT = 8  # batch record kind


def commands(batches: int, makers: int, n_markets: int, n_accounts: int) -> list:
    """The workload's commands: setup (assets, markets, accounts, deposits), then the Records batches."""
    ts = 1_700_000_000_000
    cmds: list = [C.AddAsset(symbol="USD", decimals=6, ts=ts)]
    for m in range(n_markets):
        cmds.append(C.AddAsset(symbol=f"B{m}", decimals=8, ts=ts))
        cmds.append(C.AddMarket(symbol=f"B{m}-USD", base=f"B{m}", quote="USD", tick_size="0.01",
                                lot_size="0.0001", maker_bps=-1, taker_bps=5, ts=ts))
    cmds += [C.CreateAccount(ts=ts) for _ in range(n_accounts)]
    fund = np.zeros(n_accounts * (n_markets + 1), COMMAND_DTYPE)
    fund["kind"] = DEPOSIT
    fund["owner"] = np.repeat(np.arange(n_accounts), n_markets + 1)
    fund["order_id"] = np.tile(np.arange(n_markets + 1), n_accounts)  # asset ids: USD = 0, B{m} = m + 1
    fund["qty"] = 10**15
    cmds.append(C.Records(data=fund.tobytes(), ts=ts))
    rng = np.random.default_rng(1)
    half = n_accounts // 2
    per_market = max(1, makers // n_markets)
    for b in range(batches):
        ts += 7  # many batches per second, so candles merge as in busy markets
        n = per_market * n_markets
        rows = np.zeros(n + n_markets, COMMAND_DTYPE)
        mk = rows[:n]
        mk["market"] = np.repeat(np.arange(n_markets), per_market)
        mk["owner"] = rng.integers(0, half, n)
        mk["side"] = Side.SELL
        mk["order_type"] = OrderType.LIMIT
        mk["tif"] = TimeInForce.GTC
        mk["price"] = 5_000_000 + (b % 50)  # the level moves a little: candles get highs and lows
        mk["qty"] = 1
        tk = rows[n:]
        tk["market"] = np.arange(n_markets)
        tk["owner"] = rng.integers(half, n_accounts, n_markets)
        tk["side"] = Side.BUY
        tk["order_type"] = OrderType.LIMIT
        tk["tif"] = TimeInForce.IOC
        tk["price"] = 5_000_100
        tk["qty"] = per_market
        cmds.append(C.Records(data=rows.tobytes(), ts=ts))
    return cmds


def execute(cmds: list, listener=None) -> tuple[Exchange, list, float]:
    """Runs the commands through a fresh Exchange as the node's sequencer
    would (one command per batch, then the listener): `(exchange, pairs,
    seconds)`."""
    ex = Exchange()
    pairs: list = []
    t0 = time.perf_counter()
    for cmd in cmds:
        batch = [(cmd, ex.execute(cmd))]
        if listener is not None:
            listener(batch)
        pairs += batch
    return ex, pairs, time.perf_counter() - t0


def run(new_url: Callable[[], str | None] = lambda: None, batches: int = 1_000, makers: int = 512, markets: int = 8,
        accounts: int = 10_000, dir: Path | None = None, progress: Callable[[str], None] = lambda m: None) -> dict:
    from ..node.history import HistoryStore

    url = new_url()

    progress(f"history bench: {batches:,} batches of {makers} makers, {markets} markets, {accounts:,} accounts")
    cmds = commands(batches, makers, markets, accounts)
    ex, pairs, seq_alone = execute(cmds)
    for out in (o for _, o in pairs):
        assert out.ok, out.error
    fills = sum(int((o.events["kind"] == EventKind.FILL).sum()) for c, o in pairs if isinstance(c, C.Records))
    orders = sum(int((o.events["kind"] == EventKind.ACCEPTED).sum()) for c, o in pairs if isinstance(c, C.Records))
    progress(f"history bench: {len(pairs):,} commands, {fills:,} fills, {orders:,} orders; "
             f"the exchange alone ran them in {seq_alone:.2f} s")
    root = Path(tempfile.mkdtemp(prefix="lxdex-history-bench-", dir=dir))
    markets_of = lambda i: ex._market_by_id[i]  # noqa: E731
    try:
        # 1. The writer's throughput: every batch handed over at once, clock stops when all is committed.
        store = HistoryStore.open(url, root / "a", markets_of)
        try:
            listener = 0.0
            t_start = time.perf_counter()
            for i in range(len(pairs)):
                t = time.perf_counter()
                store(pairs[i : i + 1])
                listener += time.perf_counter() - t
            store.flush(timeout=3600)
            elapsed = time.perf_counter() - t_start
            stats = store.stats()
            assert store.fills(0, limit=1), "no fills written"
        finally:
            store.close()
        size = sum(p.stat().st_size for p in (root / "a").iterdir()) if url is None else None
        # 2. The sequencer with the store attached (the writer runs beside it, sharing the GIL).
        store = HistoryStore.open(new_url(), root / "b", markets_of)
        try:
            _, _, seq_with = execute(cmds, store)
            lag_at_end = store.lag
            t = time.perf_counter()
            store.flush(timeout=3600)
            drain = time.perf_counter() - t
        finally:
            store.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    from .journal import _filesystem

    return {
        "backend": "sqlite" if url is None else "postgresql",
        "filesystem": _filesystem(Path(dir or tempfile.gettempdir())) if url is None else None,
        "workload": {"batches": batches, "makers_per_batch": makers, "markets": markets, "accounts": accounts,
                     "commands": len(pairs), "fills": fills, "orders": orders},
        "seconds": round(elapsed, 3),
        "fills_per_s": round(fills / elapsed),
        "orders_per_s": round(orders / elapsed),
        "transactions": stats["groups"],
        "convert_s": round(stats["convert_s"], 3),
        "write_s": round(stats["write_s"], 3),
        "listener_us_per_command": round(listener / len(pairs) * 1e6, 2),
        "db_bytes": size,
        "sequencer_alone_s": round(seq_alone, 3),
        "sequencer_with_history_s": round(seq_with, 3),
        "history_lag_at_end": lag_at_end,
        "history_drain_after_s": round(drain, 3),
    }
