"""The exchange benchmark (`lxdex bench exchange`): the full per-order path
(validation, holds, matching, settlement with fees, depth updates, trade tape
and candles) on a multi-market, multi-account flow, through the batch API.

Accounts hold the quote asset and two base assets and trade in the market of
their first base; markets are picked with a Zipf skew (a few busy ones, a
long tail); orders: ~55% resting limits near a drifting mid, ~15% IOC, ~4%
market, ~20% cancels, ~6% amends.
"""

from __future__ import annotations

import time

import numpy as np

from .. import _core
from ..enums import COMMAND_DTYPE, CommandKind, OrderType, TimeInForce

DEPOSIT = 8  # batch record kind (docs/exchange.md)


def build(n_markets: int, n_accounts: int):
    x = _core.ExchangeCore()
    quote = x.add_asset()
    bases = [x.add_asset() for _ in range(n_markets)]
    for b in bases:
        x.add_market(b, quote, lot_units=1_000, tick_units=1, min_qty=1, maker_bps=-1, taker_bps=5)
    for _ in range(n_accounts):
        x.add_account()
    a = np.arange(n_accounts)
    fund = np.zeros(3 * n_accounts, COMMAND_DTYPE)
    fund["kind"] = DEPOSIT
    fund["owner"] = np.repeat(a, 3)
    base = np.asarray(bases)
    fund["order_id"] = np.stack([np.full(n_accounts, quote), base[a % n_markets], base[(a * 7 + 3) % n_markets]], 1).ravel()
    fund["qty"] = 10**12
    ev = x.process(fund)
    assert not (ev["kind"] == 1).any(), "funding rejected"
    return x


def flow(n: int, n_markets: int, n_accounts: int, seed: int = 7) -> np.ndarray:
    """Generates the flow in blocks, each applied to a shadow exchange, so
    that cancels and amends name orders that still rest (within a block of 64
    commands one can still race a fill, as in real life)."""
    rng = np.random.default_rng(seed)
    market = np.minimum(rng.zipf(1.3, n) - 1, n_markets - 1).astype(np.uint32)
    owners = (market + n_markets * rng.integers(0, max(1, n_accounts // n_markets), n)).astype(np.uint64)
    r = rng.random(n)
    pick = rng.random(n)
    sides = rng.integers(0, 2, n).astype(np.uint8)
    dist = np.minimum((rng.pareto(1.6, n) * 4).astype(np.int64), 50_000)
    qty = rng.integers(1, 20, n)
    steps = rng.choice(np.array([-1, 0, 0, 1]), n)  # an unbiased random walk of each mid, in ticks
    c = np.zeros(n, COMMAND_DTYPE)
    c["side"], c["market"], c["owner"] = sides, market, owners
    mids = [100_000] * n_markets
    live: list[list[int]] = [[] for _ in range(n_markets)]
    where: dict[int, tuple[int, int]] = {}  # order id -> (market, owner)
    shadow = build(n_markets, n_accounts)
    next_id = 1  # the exchange numbers accepted orders 1, 2, ...
    block = 64

    def forget(oid: int) -> None:
        if oid in where:
            m, _ = where.pop(oid)
            live[m].remove(oid)

    for lo in range(0, n, block):
        hi = min(n, lo + block)
        for i in range(lo, hi):
            m = int(market[i])
            mids[m] += int(steps[i])
            lv = live[m]
            ri = r[i]
            rec = c[i]
            if ri < 0.55 or not lv:
                s = int(sides[i])
                rec["price"] = mids[m] - 1 - dist[i] if s == 0 else mids[m] + 1 + dist[i]
                rec["qty"] = qty[i]
                lv.append(next_id)
                where[next_id] = (m, int(owners[i]))
                next_id += 1
            elif ri < 0.70:
                rec["price"] = mids[m] + 3 if sides[i] == 0 else mids[m] - 3
                rec["qty"], rec["tif"] = qty[i], TimeInForce.IOC
                next_id += 1
            elif ri < 0.74:
                rec["qty"], rec["order_type"], rec["tif"] = qty[i], OrderType.MARKET, TimeInForce.IOC
                next_id += 1
            elif ri < 0.94:
                oid = lv[int(pick[i] * len(lv))]
                rec["kind"], rec["order_id"], rec["owner"] = CommandKind.CANCEL, oid, where[oid][1]
                forget(oid)
            else:
                oid = lv[int(pick[i] * len(lv))]
                rec["kind"], rec["order_id"], rec["owner"] = CommandKind.AMEND, oid, where[oid][1]
                rec["qty"] = max(1, int(qty[i]) // 2)
        ev = shadow.process(c[lo:hi])
        assert not ((ev["kind"] == 1) & (ev["reason"] != 45)).any(), "only racing cancels may be rejected"
        fills = ev[ev["kind"] == 2]
        for oid in fills["other_id"][fills["other_remaining"] == 0]:
            forget(int(oid))
        for oid in fills["order_id"][fills["remaining"] == 0]:
            forget(int(oid))
        gone = ev[(ev["kind"] == 3) & (ev["remaining"] == 0)]
        for oid in gone["order_id"]:
            forget(int(oid))
    return c


def run(commands: int = 2_000_000, markets: int = 100, accounts: int = 10_000, chunk: int = 4096,
        progress=None) -> dict:
    if progress:
        progress(f"building {markets} markets, {accounts:,} funded accounts")
    x = build(markets, accounts)
    if progress:
        progress(f"generating {commands:,} commands")
    cmds = flow(commands, markets, accounts)
    if progress:
        progress("running the exchange core")
    kinds = np.zeros(8, dtype=np.int64)
    t0 = time.perf_counter()
    for i in range(0, commands, chunk):
        ev = x.process(cmds[i : i + chunk])
        kinds += np.bincount(ev["kind"], minlength=8)[:8]
    seconds = time.perf_counter() - t0
    x.check_invariants()
    return {
        "commands": commands, "markets": markets, "accounts": accounts, "chunk": chunk,
        "seconds": round(seconds, 3), "exchange_cmds_per_s": round(commands / seconds),
        "events": {"accepted": int(kinds[0]), "rejected": int(kinds[1]), "fills": int(kinds[2]),
                   "cancelled": int(kinds[3]), "amended": int(kinds[4]), "depth_updates": int(kinds[7])},
    }
