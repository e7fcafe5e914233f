"""The memory benchmark at the product's design point (`lxdex bench memory`).

It builds the state and measures the process's resident memory (RSS), step
by step, so each component's share is a measured delta, not an estimate
(the driver's own command and event arrays are released before each
measurement):

1. 1,000,000 accounts in the Rust ledger, each funded in three assets;
2. 1,000,000 users with a profile and one API key (lxdex.accounts);
3. 21,000 markets (11,000 equity-like, 10,000 crypto pairs);
4. 1,440 one-minute candles and the last 1,000 trades per market: one trade
   per market per minute for a day, between 100,000 active traders (so each
   keeps its last 100 fills of history);
5. 100 resting orders per market.

Scale it down with `--scale` (e.g. 0.01) for a quick run; the figures in
BENCHMARKS.md are at scale 1.
"""

from __future__ import annotations

import gc
import os
import time

import numpy as np

from .. import _core
from ..enums import COMMAND_DTYPE, CommandKind, Side, TimeInForce

DEPOSIT = 8
MINUTE_MS = 60_000


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def run(scale: float = 1.0, progress=None) -> dict:
    say = progress or (lambda _m: None)
    n_users = int(1_000_000 * scale)
    n_markets = max(2, int(21_000 * scale))
    n_traders = max(2, int(100_000 * scale))
    minutes = 1_440
    gc.collect()
    base = rss()
    marks: dict[str, int] = {}
    t0 = time.perf_counter()

    def mark(name: str) -> None:
        gc.collect()
        marks[name] = rss()
        say(f"{name}: RSS {marks[name] / 2**20:,.0f} MiB")

    # 1. accounts and balances (quote USD + the two bases each trader uses)
    say(f"{n_users:,} accounts with three balances each")
    x = _core.ExchangeCore()
    usd = x.add_asset()
    bases = [x.add_asset() for _ in range(n_markets)]
    for _ in range(n_users):
        x.add_account()
    a = np.arange(n_users)
    fund = np.zeros(3 * n_users, COMMAND_DTYPE)
    fund["kind"] = DEPOSIT
    fund["owner"] = np.repeat(a, 3)
    base_ids = np.asarray(bases)
    fund["order_id"] = np.stack([np.full(n_users, usd), base_ids[a % n_markets], base_ids[(a + 1) % n_markets]], 1).ravel()
    fund["qty"] = 10**9
    for i in range(0, len(fund), 1 << 20):
        x.process(fund[i : i + (1 << 20)])
    del fund, a
    mark("ledger")

    # 2. users with a profile and one API key
    say(f"{n_users:,} users with a profile and an API key")
    from ..accounts import Accounts, generate_key_material

    master = bytes(range(32))
    users = Accounts(master)
    for u in range(n_users):
        users.create_user(u, {"display_name": f"trader {u:07d}", "email": f"u{u:07d}@example.com",
                              "country": "DE"}, ts=1_700_000_000_000)
        km = generate_key_material(master, user_id=u)
        users.create_api_key(u, km.api_key, km.sealed_secret, "read,trade", ts=1_700_000_000_000,
                             label="bot")
    mark("users")

    # 3. markets
    say(f"{n_markets:,} markets")
    for m in range(n_markets):
        x.add_market(bases[m], usd, lot_units=1, tick_units=1, min_qty=1, maker_bps=-1, taker_bps=5)
    mark("markets")

    # 4. a day of trades: one per market per minute, between active traders
    say(f"{minutes} minutes x {n_markets:,} markets of trades")
    traders = np.arange(n_traders)
    start = 1_700_000_000_000 - 1_700_000_000_000 % (24 * 60 * MINUTE_MS)
    clock = np.zeros(1, COMMAND_DTYPE)
    clock["kind"] = CommandKind.ADVANCE_TIME
    mk = np.arange(n_markets, dtype=np.uint32)
    # Trader t trades in the markets of its own bases: market (t % n_markets).
    # A pair (seller, buyer) per market per minute, rotating through traders.
    per_market = max(2, n_traders // n_markets)
    for minute in range(minutes):
        clock["expire_ts"] = start + minute * MINUTE_MS + 1
        x.process(clock)
        seller = mk + n_markets * ((2 * minute) % per_market)
        buyer = mk + n_markets * ((2 * minute + 1) % per_market)
        seller, buyer = seller % n_traders, buyer % n_traders
        c = np.zeros(2 * n_markets, COMMAND_DTYPE)
        c["kind"] = CommandKind.SUBMIT
        c["market"] = np.repeat(mk, 2)
        c["side"] = np.tile([Side.SELL, Side.BUY], n_markets)
        c["owner"] = np.stack([seller, buyer], 1).ravel()
        c["price"] = 1_000 + (minute % 7)
        c["qty"] = 1
        c["tif"] = np.tile([TimeInForce.GTC, TimeInForce.IOC], n_markets)
        ev = x.process(c)
        assert (ev["kind"] == 2).sum() == n_markets, "one trade per market per minute"
    del c, ev
    mark("market data and fill history")

    # 5. 100 resting orders per market
    say(f"100 resting orders in each of {n_markets:,} markets")
    for side, sign in ((Side.BUY, -1), (Side.SELL, 1)):
        c = np.zeros(50 * n_markets, COMMAND_DTYPE)
        c["kind"] = CommandKind.SUBMIT
        c["market"] = np.repeat(mk, 50)
        c["side"] = side
        k = max(1, n_users // n_markets)  # accounts holding market m's base: m, m + n, m + 2n, ...
        c["owner"] = np.repeat(mk, 50) + n_markets * (np.tile(np.arange(50), n_markets) % k)
        c["price"] = 1_000 + sign * (10 + np.tile(np.arange(50), n_markets))
        c["qty"] = 5
        ev = x.process(c)
        assert not (ev["kind"] == 1).any(), "resting orders accepted"
    # The driver's last command batch and its events (1.05M rows each at
    # scale 1, ~290 MiB) are not exchange state: release them first.
    del c, ev
    mark("resting orders")

    total = rss()
    order = ["ledger", "users", "markets", "market data and fill history", "resting orders"]
    breakdown, prev = {}, base
    for k in order:
        breakdown[k] = marks[k] - prev
        prev = marks[k]
    return {
        "scale": scale,
        "users": n_users,
        "markets": n_markets,
        "active_traders": n_traders,
        "rss_bytes": total,
        "rss_bytes_excluding_interpreter": total - base,
        "interpreter_and_libraries_bytes": base,
        "breakdown_bytes": breakdown,
        "target_bytes": 2 * 10**9,
        "seconds": round(time.perf_counter() - t0, 1),
        "pid": os.getpid(),
    }
