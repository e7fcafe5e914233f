"""A realistic single-market order flow as COMMAND_DTYPE records.

- the mid price follows geometric Brownian motion (in ticks);
- new orders rest at a distance from the mid drawn from a power law, so most
  activity is near the top of the book with a heavy tail deeper;
- about 95% of resting orders are eventually cancelled, about 20% are
  amended (half quantity-down, keeping priority; half re-priced), about 15%
  of new orders are IOC (crossing the spread), a few are market orders.

The generator keeps a shadow book (an lxdex.Book fed each block of commands
as it is generated) so that cancels and amends target orders that still rest,
as a real client that sees its fills would; within a block (64 commands) a
cancel can still race a fill and be rejected, as in real life. `describe()`
reports the mix actually generated.

Only SUBMIT (LIMIT/MARKET with GTC/IOC), CANCEL and AMEND are used, so other
order books can replay the same flow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..enums import COMMAND_DTYPE, CommandKind, OrderType, Side, TimeInForce


@dataclass(frozen=True)
class Scenario:
    name: str
    volatility: float  # GBM sigma per command (at 100_000 ticks, 0.000002 = 0.2 tick)
    distance_scale: float  # ticks; scale of the power-law distance from the mid
    pareto_shape: float  # smaller = heavier tail (deeper book)
    ioc_share: float
    market_share: float
    cancel_share: float  # of commands
    amend_share: float  # of commands


SCENARIOS = {
    # A deep book around a slow mid: mostly adds and cancels far from the top.
    "deep_static": Scenario("deep_static", 0.0000005, 40.0, 1.2, 0.10, 0.01, 0.43, 0.09),
    "balanced": Scenario("balanced", 0.000002, 8.0, 1.6, 0.15, 0.02, 0.40, 0.09),
    # Fast-moving: high volatility, orders near the top, many crossing orders
    # and trades; the worst case for the matcher (it does the most work).
    "fast_moving": Scenario("fast_moving", 0.00001, 3.0, 2.0, 0.15, 0.05, 0.38, 0.09),
}


def generate(n: int = 2_000_000, scenario: str = "balanced", seed: int = 1, *,
             owners: int = 1_000, start_price: int = 100_000) -> np.ndarray:
    """`n` commands of `scenario` (deterministic for a seed)."""
    sc = SCENARIOS[scenario]
    rng = np.random.default_rng(seed)
    # Pre-draw everything vectorised; the loop only keeps the live-order set.
    mid = start_price * np.exp(np.cumsum(rng.normal(0.0, sc.volatility, n)))
    mid = np.maximum(mid.round().astype(np.int64), 100)
    dist = 1 + (rng.pareto(sc.pareto_shape, n) * sc.distance_scale).astype(np.int64)
    dist = np.minimum(dist, start_price // 2)
    side = rng.integers(0, 2, n).astype(np.uint8)
    qty = (1 + rng.zipf(2.2, n)).astype(np.int64).clip(1, 1_000)
    owner = rng.integers(1, owners + 1, n).astype(np.uint64)
    r = rng.random(n)
    pick = rng.random(n)
    amend_kind = rng.random(n)

    kind = np.zeros(n, np.uint8)
    otype = np.zeros(n, np.uint8)
    tif = np.zeros(n, np.uint8)
    oid = np.zeros(n, np.uint64)
    price = np.zeros(n, np.int64)
    q = np.zeros(n, np.int64)
    own = owner.copy()

    live: list[int] = []  # ids believed resting
    live_at: dict[int, int] = {}  # id -> index in `live`
    live_owner: dict[int, int] = {}
    live_side: dict[int, int] = {}
    next_id = 1
    cancel_at = sc.cancel_share
    amend_at = cancel_at + sc.amend_share
    from .. import Book  # the shadow book

    shadow = Book()
    block = 64
    touch: list[int | None] = [None, None]  # the shadow book's best bid and ask
    cmds = np.zeros(n, COMMAND_DTYPE)

    def forget(order_id: int) -> None:
        j = live_at.pop(order_id, None)
        if j is None:
            return
        last = live.pop()
        if last != order_id:
            live[j] = last
            live_at[last] = j
        live_owner.pop(order_id)
        live_side.pop(order_id)

    def sync(lo: int, hi: int) -> None:
        cmds["kind"][lo:hi], cmds["side"][lo:hi] = kind[lo:hi], side[lo:hi]
        cmds["order_type"][lo:hi], cmds["tif"][lo:hi] = otype[lo:hi], tif[lo:hi]
        cmds["order_id"][lo:hi], cmds["owner"][lo:hi] = oid[lo:hi], own[lo:hi]
        cmds["price"][lo:hi], cmds["qty"][lo:hi] = price[lo:hi], q[lo:hi]
        ev = shadow.process(cmds[lo:hi])
        fills = ev[ev["kind"] == 2]
        for maker in fills["other_id"][fills["other_remaining"] == 0]:
            forget(int(maker))
        gone = ev[(ev["kind"] == 3) & (ev["remaining"] == 0)]
        for order_id in gone["order_id"]:
            forget(int(order_id))
        touch[0], touch[1] = shadow.best_bid, shadow.best_ask

    for i in range(n):
        if i % block == 0 and i:
            sync(i - block, i)
        ri = r[i]
        if live and ri < cancel_at:
            victim = live[int(pick[i] * len(live))]
            kind[i], oid[i] = CommandKind.CANCEL, victim
            own[i] = live_owner[victim]
            forget(victim)
            continue
        if live and ri < amend_at:
            victim = live[int(pick[i] * len(live))]
            kind[i], oid[i], own[i] = CommandKind.AMEND, victim, live_owner[victim]
            if amend_kind[i] < 0.5:
                q[i] = max(1, int(qty[i]) // 2)  # quantity down: keeps priority
            else:
                s = live_side[victim]
                price[i] = mid[i] - dist[i] if s == Side.BUY else mid[i] + dist[i]
            continue
        kind[i], oid[i], q[i] = CommandKind.SUBMIT, next_id, qty[i]
        s = int(side[i])
        u = (ri - amend_at) / (1.0 - amend_at)  # uniform in [0, 1) among new orders
        if u < sc.market_share:
            otype[i], tif[i] = OrderType.MARKET, TimeInForce.IOC
            q[i] = max(1, int(qty[i]) // 2)
        elif u < sc.market_share + sc.ioc_share:
            # Marketable-limit IOCs priced around the mid: some reach the
            # touch and trade, the rest are cancelled at once.
            tif[i] = TimeInForce.IOC
            q[i] = max(1, int(qty[i]) // 2)
            price[i] = mid[i] + dist[i] // 8 if s == Side.BUY else mid[i] - dist[i] // 8
        else:
            # Resting orders join their side of the book: a maker does not
            # cross the touch it sees (as of the last block).
            if s == Side.BUY:
                price[i] = mid[i] - dist[i] if touch[1] is None else min(mid[i] - dist[i], touch[1] - 1 - (dist[i] - 1))
            else:
                price[i] = mid[i] + dist[i] if touch[0] is None else max(mid[i] + dist[i], touch[0] + 1 + (dist[i] - 1))
            live_at[next_id] = len(live)
            live.append(next_id)
            live_owner[next_id] = int(own[i])
            live_side[next_id] = s
        next_id += 1
    sync(n - (n % block or block), n)
    return cmds


def describe(cmds: np.ndarray) -> dict:
    """The mix actually generated, and how its orders ended when replayed on
    an lxdex book (measured, not assumed)."""
    from .. import Book

    n = len(cmds)
    sub = cmds["kind"] == CommandKind.SUBMIT
    gtc = sub & (cmds["tif"] == TimeInForce.GTC) & (cmds["order_type"] == OrderType.LIMIT)
    ev = Book().process(cmds)
    kinds = np.bincount(ev["kind"], minlength=8)
    gtc_ids = set(cmds["order_id"][gtc].tolist())
    cancelled = ev[(ev["kind"] == 3) & (ev["remaining"] == 0)]["order_id"]
    ended_by_cancel = len(gtc_ids.intersection(cancelled.tolist()))
    return {
        "commands": n,
        "submits": int(sub.sum()),
        "cancels": int((cmds["kind"] == CommandKind.CANCEL).sum()),
        "amends": int((cmds["kind"] == CommandKind.AMEND).sum()),
        "ioc_share_of_new": round(float((sub & (cmds["tif"] == TimeInForce.IOC)).sum() / max(1, sub.sum())), 3),
        "market_share_of_new": round(float((sub & (cmds["order_type"] == OrderType.MARKET)).sum() / max(1, sub.sum())), 3),
        "resting_orders_cancelled_share": round(ended_by_cancel / max(1, len(gtc_ids)), 3),
        "resting_orders_amended_share": round(float((cmds["kind"] == CommandKind.AMEND).sum() / max(1, len(gtc_ids))), 3),
        "fills": int(kinds[2]),
        "rejected_commands_share": round(float(kinds[1] / n), 4),
    }
