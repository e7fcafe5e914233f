"""A realistic single-market order flow as COMMAND_DTYPE records.

- the mid price follows geometric Brownian motion (in integer ticks, from
  `start_price`);
- new resting orders sit at a distance from the mid drawn from a power law
  (Pareto): most near the top of the book, a heavy tail deep; a maker never
  crosses the touch it last saw;
- sizes are skewed (1 + Zipf, capped at 1,000 lots); owners are drawn
  uniformly from `owners` accounts;
- about 95% of resting orders are eventually cancelled (fewer where more of
  them trade, see `describe`), about 20% are amended (half quantity-down,
  which keeps queue priority, half re-priced), about 15% of new orders are
  IOC limits priced around the mid (some cross and trade, the rest are
  cancelled at once), a few are market orders.

Cancels and amends name orders the generator believes still rest: it keeps
a shadow book (an `lxdex.Book` fed each block of `block` commands as it is
generated) and forgets orders as they fill, as a real client that sees its
fills would. Within a block a cancel can still race a fill and be rejected
with UNKNOWN_ORDER, as in real life (`describe` reports the share: under 1%).

Only SUBMIT (LIMIT or MARKET, GTC or IOC), CANCEL and AMEND are used, so
other order books can replay the same flow. `extras=True` adds stop orders
(stop-market and stop-limit) and icebergs for lxdex-only runs.

Scenarios:

- `deep_static`: a deep book around a slow mid; mostly adds and cancels far
  from the top, few trades.
- `balanced`: a moderate mid and book.
- `fast_moving`: a volatile mid, orders close to the top, many crossing IOC
  and market orders, the most trades. It is the worst case by design (the
  most matching work per message); the benchmark still reports the measured
  minimum across scenarios as its headline and names the scenario.

Everything random is drawn up front with numpy; a Python loop visits only
cancels and amends (to pick a live order). 2,000,000 commands take about
5 s of CPU on the 2-core CI machine (about 2 s on a current desktop).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..enums import COMMAND_DTYPE, CommandKind, EventKind, OrderType, Reason, Side, TimeInForce


@dataclass(frozen=True)
class Scenario:
    name: str
    volatility: float  # GBM sigma per command (at 100_000 ticks, 0.000002 = 0.2 tick)
    distance_scale: float  # ticks; scale of the power-law distance from the mid
    pareto_shape: float  # smaller = heavier tail (deeper book)
    ioc_share: float  # of new orders (IOC limits; market orders come on top)
    market_share: float  # of new orders
    cancel_share: float  # of commands
    amend_share: float  # of commands


SCENARIOS = {
    "deep_static": Scenario("deep_static", 0.0000005, 40.0, 1.2, 0.10, 0.01, 0.43, 0.09),
    "balanced": Scenario("balanced", 0.000002, 8.0, 1.6, 0.15, 0.02, 0.40, 0.09),
    "fast_moving": Scenario("fast_moving", 0.00001, 3.0, 2.0, 0.15, 0.05, 0.38, 0.09),
}

#: The scenario the generator is designed to make the hardest for a matcher.
WORST_CASE = "fast_moving"

# What each generated command is (internal categories).
_CANCEL, _AMEND, _MARKET, _IOC, _GTC, _ICEBERG, _STOP_MARKET, _STOP_LIMIT = range(8)
_KIND = np.array([CommandKind.CANCEL, CommandKind.AMEND] + [CommandKind.SUBMIT] * 6, np.uint8)
_OTYPE = np.array([0, 0, OrderType.MARKET, OrderType.LIMIT, OrderType.LIMIT, OrderType.LIMIT,
                   OrderType.STOP_MARKET, OrderType.STOP_LIMIT], np.uint8)
_TIF = np.array([0, 0, TimeInForce.IOC, TimeInForce.IOC, TimeInForce.GTC, TimeInForce.GTC,
                 TimeInForce.IOC, TimeInForce.GTC], np.uint8)
_FILL, _CANCELLED, _USER = int(EventKind.FILL), int(EventKind.CANCELLED), int(Reason.USER)

#: Shares of new orders that `extras=True` turns into icebergs and stops.
EXTRA_ICEBERG_SHARE = 0.05
EXTRA_STOP_SHARE = 0.03

DEFAULTS = {"owners": 1_000, "start_price": 100_000, "block": 128}


def generate(n: int = 2_000_000, scenario: str = "balanced", seed: int = 1, *,
             owners: int = DEFAULTS["owners"], start_price: int = DEFAULTS["start_price"],
             extras: bool = False, block: int = DEFAULTS["block"]) -> np.ndarray:
    """`n` commands of `scenario` as COMMAND_DTYPE records, deterministic for
    a seed. Order ids are unique: a new order's id is its index + 1."""
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario: {scenario!r} is not one of {', '.join(SCENARIOS)}")
    sc = SCENARIOS[scenario]
    rng = np.random.default_rng(seed)

    # Everything random is drawn up front, vectorised, in a fixed order.
    mid = start_price * np.exp(np.cumsum(rng.normal(0.0, sc.volatility, n)))
    mid = np.maximum(mid.round().astype(np.int64), 100)
    dist = 1 + (rng.pareto(sc.pareto_shape, n) * sc.distance_scale).astype(np.int64)
    dist = np.minimum(dist, start_price // 2)
    side = rng.integers(0, 2, n).astype(np.uint8)
    qty = (1 + rng.zipf(2.2, n)).astype(np.int64).clip(1, 1_000)
    owner = rng.integers(1, owners + 1, n).astype(np.uint64)
    r = rng.random(n)
    pick = rng.random(n)
    amend_down = rng.random(n) < 0.5

    cancel_at = sc.cancel_share
    amend_at = cancel_at + sc.amend_share
    u = (r - amend_at) / (1.0 - amend_at)  # uniform in [0, 1) among new orders
    cat = np.full(n, _GTC, np.int8)
    cat[u < sc.market_share + sc.ioc_share] = _IOC
    cat[u < sc.market_share] = _MARKET
    cat[r < amend_at] = _AMEND
    cat[r < cancel_at] = _CANCEL
    if extras:
        x = rng.random(n)
        cat[(cat == _GTC) & (x < EXTRA_ICEBERG_SHARE) & (qty >= 2)] = _ICEBERG
        stop = (cat == _GTC) & (x >= EXTRA_ICEBERG_SHARE) & (x < EXTRA_ICEBERG_SHARE + EXTRA_STOP_SHARE)
        cat[stop & (x < EXTRA_ICEBERG_SHARE + EXTRA_STOP_SHARE / 2)] = _STOP_MARKET
        cat[stop & (x >= EXTRA_ICEBERG_SHARE + EXTRA_STOP_SHARE / 2)] = _STOP_LIMIT

    # Every column that needs no feedback from the book is written up front;
    # `sync` fills in, block by block, what the loop decided (which order a
    # cancel or amend names) and the prices that depend on the touch.
    cmds = np.zeros(n, COMMAND_DTYPE)
    col = {f: cmds[f] for f in ("kind", "order_type", "tif", "order_id", "owner", "side", "price", "qty",
                                "trigger_price", "display_qty")}
    new = cat >= _MARKET
    buy = side == Side.BUY
    col["kind"][:], col["order_type"][:], col["tif"][:] = _KIND[cat], _OTYPE[cat], _TIF[cat]
    col["order_id"][:] = np.where(new, np.arange(1, n + 1, dtype=np.uint64), 0)
    col["owner"][:], col["side"][:] = owner, side
    new_qty = np.where((cat == _MARKET) | (cat == _IOC), np.maximum(1, qty // 2), qty)
    col["qty"][:] = np.where(new, new_qty, 0)
    trigger = np.maximum(np.where(buy, mid + dist, mid - dist), 1)  # a buy stop waits above the mid
    stop = (cat == _STOP_MARKET) | (cat == _STOP_LIMIT)
    col["trigger_price"][:] = np.where(stop, trigger, 0)
    limit_price = np.select([cat == _IOC, cat == _STOP_LIMIT],
                            [np.where(buy, mid + dist // 8, mid - dist // 8),  # IOC around the mid
                             np.where(buy, trigger + 2, trigger - 2)], 0)
    col["price"][:] = np.where((cat == _IOC) | (cat == _STOP_LIMIT), np.maximum(limit_price, 1), 0)
    col["display_qty"][:] = np.where(cat == _ICEBERG, np.maximum(1, qty // 4), 0)

    named = cat <= _AMEND  # cancels and amends: the rows `sync` completes
    named_rows = np.flatnonzero(named)
    named_before = np.concatenate([[0], np.cumsum(named)])
    rest = (cat == _GTC) | (cat == _ICEBERG)  # resting orders: priced by `sync`
    rest_rows = np.flatnonzero(rest)
    rest_before = np.concatenate([[0], np.cumsum(rest)])
    is_amend = cat == _AMEND

    cat_l = bytearray(cat.astype(np.uint8))  # what each row is (indexable like a list)
    victims: list[int] = []  # per cancel/amend row, in order: the order id it names
    amend_qty: list[int] = []  # per cancel/amend row: a quantity-down amend's new quantity, else 0
    changed: list[int] = []  # rows whose category the loop changed
    amended: dict[int, int] = {}  # id -> quantity after our last quantity-down amend

    live: list[int] = []  # ids believed resting (or waiting, for stops)
    live_at: dict[int, int] = {}  # id -> its index in `live`
    shadow = None
    touch: list[int | None] = [None, None]  # the shadow book's best bid and ask

    def forget(order_id: int) -> None:
        j = live_at.pop(order_id, None)
        if j is None:
            return
        last = live.pop()
        if last != order_id:
            live[j] = last
            live_at[last] = j

    def sync(lo: int, hi: int) -> None:
        """Complete records lo..hi, run them through the shadow book, forget
        the orders that left it, note the touch."""
        nonlocal shadow
        m, d = mid[lo:hi], dist[lo:hi]
        bid_price, ask_price = m - d, m + d  # where a new resting order goes
        if touch[1] is not None:
            np.minimum(bid_price, touch[1] - d, out=bid_price)
        if touch[0] is not None:
            np.maximum(ask_price, touch[0] + d, out=ask_price)
        np.maximum(bid_price, 1, out=bid_price)
        rows = rest_rows[rest_before[lo]:rest_before[hi]]
        col["price"][rows] = np.where(buy[rows], bid_price[rows - lo], ask_price[rows - lo])
        k0, k1 = named_before[lo], named_before[hi]
        if k1 > k0:
            rows = named_rows[k0:k1]
            ids = np.array(victims[k0:k1], np.uint64)
            col["order_id"][rows] = ids  # (their owner and side: after the loop)
            aq = np.array(amend_qty[k0:k1], np.int64)
            col["qty"][rows] = aq
            reprice = is_amend[rows] & (aq == 0)
            rp, b = rows[reprice], buy[ids[reprice].astype(np.int64) - 1]
            col["price"][rp] = np.where(b, bid_price[rp - lo], ask_price[rp - lo])
        while changed and changed[0] < hi:
            i = changed.pop(0)
            c = cat_l[i]
            col["kind"][i], col["order_type"][i], col["tif"][i] = _KIND[c], _OTYPE[c], _TIF[c]
            if c == _CANCEL:  # an amend of a waiting stop
                col["price"][i] = col["qty"][i] = 0
            else:  # a new resting order where nothing rested yet
                col["order_id"][i] = i + 1
                col["qty"][i] = qty[i]
                col["price"][i] = bid_price[i - lo] if buy[i] else ask_price[i - lo]

        if shadow is None:
            from .. import Book  # the Rust core, loaded on first use

            shadow = Book()
        ev = shadow.process(cmds[lo:hi])
        ek = ev["kind"]
        fill = ek == _FILL
        if fill.any():
            fills = ev[fill]
            for order_id in (fills["other_id"][fills["other_remaining"] == 0].tolist()
                             + fills["order_id"][fills["remaining"] == 0].tolist()):
                forget(order_id)
        if extras:  # a triggered stop-market's unfilled rest
            cx = ev[(ek == _CANCELLED) & (ev["reason"] != _USER) & (ev["remaining"] == 0)]
            for order_id in cx["order_id"].tolist():
                forget(order_id)
        touch[0], touch[1] = shadow.best_bid, shadow.best_ask

    # The loop visits only cancels and amends; the new resting orders (and
    # stops) between them join `live` in bulk, always before the block that
    # created them is synced (so their fills are seen) and before any later
    # cancel picks.
    joining = cat >= _GTC
    join_ids = (np.flatnonzero(joining) + 1).tolist()
    join_before = np.concatenate([[0], np.cumsum(joining)])  # joiners among rows < i
    joined = 0  # join_ids[:joined] have joined `live`

    def join(q: int) -> None:
        nonlocal joined
        if q > joined:
            ids = join_ids[joined:q]
            live_at.update(zip(ids, range(len(live), len(live) + len(ids))))
            live.extend(ids)
            joined = q

    synced = 0
    for i, q, p, down in zip(named_rows.tolist(), join_before[named_rows].tolist(),
                             pick[named_rows].tolist(), amend_down[named_rows].tolist()):
        while i - synced >= block:
            join(int(join_before[synced + block]))
            sync(synced, synced + block)
            synced += block
        if q > joined:
            join(q)
        if live:
            vid = live[int(p * len(live))]
            victims.append(vid)
            if cat_l[i] == _AMEND and cat_l[vid - 1] < _STOP_MARKET:
                if down:
                    # Quantity down from what we last set: keeps priority
                    # (unless fills took the order below it meanwhile).
                    base = amended.get(vid) or int(qty[vid - 1])
                    amended[vid] = q = max(1, base // 2)
                    amend_qty.append(q)
                else:
                    amend_qty.append(0)  # a re-price (price set by sync)
                continue
            amend_qty.append(0)
            if cat_l[i] == _AMEND:  # an amend of a waiting stop becomes a cancel
                cat_l[i] = _CANCEL
                changed.append(i)
            j = live_at.pop(vid)  # forget(vid), inline
            last = live.pop()
            if last != vid:
                live[j] = last
                live_at[last] = j
        else:  # nothing rests yet: a new resting order instead
            victims.append(0)
            amend_qty.append(0)
            cat_l[i] = _GTC
            changed.append(i)
            live_at[i + 1] = len(live)
            live.append(i + 1)
    while synced < n:
        hi = min(n, synced + block)
        join(int(join_before[hi]))
        sync(synced, hi)
        synced = hi
    src = col["order_id"][named_rows].astype(np.int64) - 1  # the row that created the named order
    col["owner"][named_rows], col["side"][named_rows] = owner[src], side[src]
    return cmds


def workload_params(scenario: str, **overrides) -> dict:
    """The parameters behind `generate` for a scenario, for reports."""
    params = asdict(SCENARIOS[scenario])
    params.update(DEFAULTS)
    params.update({"size": "1 + zipf(2.2), at most 1,000", "distance": "1 + pareto(shape) * scale ticks",
                   "ioc_price": "mid +- distance / 8", "amends": "half quantity-down (halving), half re-price"})
    params.update(overrides)
    return params


def mix(cmds: np.ndarray) -> dict:
    """Counts of the commands by kind, order type and TIF (no replay)."""
    kind = cmds["kind"]
    sub = kind == CommandKind.SUBMIT
    counts: dict[str, int] = {}
    for k in CommandKind:
        c = int((kind == k).sum())
        if c and k != CommandKind.SUBMIT:
            counts[k.name.lower()] = c
    if sub.any():
        key = (cmds["order_type"][sub].astype(np.int64) * 8 + cmds["tif"][sub]) * 2 + (cmds["display_qty"][sub] > 0)
        keys, n = np.unique(key, return_counts=True)
        for k, c in zip(keys.tolist(), n.tolist()):
            o, t, iceberg = k // 16, (k // 2) % 8, k % 2
            name = f"submit_{OrderType(o).name.lower()}_{TimeInForce(t).name.lower()}"
            counts[name + ("_iceberg" if iceberg else "")] = c
    amend = kind == CommandKind.AMEND
    if amend.any():
        counts["amend_qty_down"] = int((amend & (cmds["price"] == 0)).sum())
        counts["amend_reprice"] = int((amend & (cmds["price"] != 0)).sum())
    return counts


def describe(cmds: np.ndarray, replay: bool = True) -> dict:
    """The mix actually generated (counts by kind / type / TIF and shares) and,
    with `replay`, how its orders ended when replayed on an lxdex book
    (measured, not assumed)."""
    n = len(cmds)
    kind = cmds["kind"]
    sub = kind == CommandKind.SUBMIT
    n_sub = max(1, int(sub.sum()))
    resting = sub & (cmds["tif"] == TimeInForce.GTC) & (cmds["order_type"] == OrderType.LIMIT)
    out: dict = {
        "commands": n,
        "submits": int(sub.sum()),
        "cancels": int((kind == CommandKind.CANCEL).sum()),
        "amends": int((kind == CommandKind.AMEND).sum()),
        "counts": mix(cmds),
        "ioc_share_of_new": round(float((sub & (cmds["tif"] == TimeInForce.IOC)).sum() / n_sub), 3),
        "market_share_of_new": round(float((sub & (cmds["order_type"] == OrderType.MARKET)).sum() / n_sub), 3),
        "resting_orders_amended_share": round(float((kind == CommandKind.AMEND).sum() / max(1, resting.sum())), 3),
    }
    if not replay:
        return out
    from .. import Book

    ev = Book().process(cmds)
    kinds = np.bincount(ev["kind"], minlength=len(EventKind))
    user_cancelled = ev["order_id"][(ev["kind"] == _CANCELLED) & (ev["reason"] == _USER)]
    rested_ids = cmds["order_id"][resting]
    rejects = ev[ev["kind"] == EventKind.REJECTED]
    reasons, counts = np.unique(rejects["reason"], return_counts=True)
    out.update({
        "resting_orders_cancelled_share": round(float(np.isin(rested_ids, user_cancelled).sum()
                                                      / max(1, len(rested_ids))), 3),
        "fills": int(kinds[EventKind.FILL]),
        "events": int(len(ev)),
        "rejected_commands_share": round(float(kinds[EventKind.REJECTED] / max(1, n)), 4),
        "rejects_by_reason": {Reason(r).name: int(c) for r, c in zip(reasons.tolist(), counts.tolist())},
    })
    return out
