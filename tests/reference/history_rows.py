"""A slow, obviously correct model of the history writer's order rows
(`_core.HistoryRows.order_rows`): what a group's events make of each order,
one event at a time, in plain dicts.

Per order, over the group's events that name it, in order (a FILL names its
taker first, then its maker):

- fills add up (quantity and price x quantity);
- the last event gives `remaining` (an AMENDED, TRIGGERED or ACTIVATED
  one: its quantity; a maker's fill: the maker's remaining);
- the last FILL (partially filled / filled) or CANCELLED with nothing left
  (cancelled / expired) gives the status, and a CANCELLED its reason;
- the last AMENDED gives the price; the last AMENDED or ACTIVATED gives
  `qty` = what filled in the group up to it + its quantity;
- the latest TRIGGERED time is the triggered time.

An order placed (ACCEPTED) in the group is a new row, its ACCEPTED event's
values where the group changed nothing; any other order the group changed
is a delta, by order id.
"""

from __future__ import annotations

from lxdex.enums import EventKind, Reason

ACCEPTED, FILL, CANCELLED, AMENDED, TRIGGERED, ACTIVATED = (
    int(EventKind.ACCEPTED), int(EventKind.FILL), int(EventKind.CANCELLED), int(EventKind.AMENDED),
    int(EventKind.TRIGGERED), int(EventKind.ACTIVATED))
EXPIRED = int(Reason.EXPIRED)
I64 = 1 << 64


def _wrap(v: int) -> int:
    """As an int64 (the rows are int64; sums wrap as numpy's do)."""
    v %= I64
    return v - I64 if v >= 1 << 63 else v


def order_rows(events: list[dict], seqs: list[int], times: list[int], params: list[dict]) -> tuple[list, list]:
    """`events`: dicts with EVENT_DTYPE's fields; `params`: the ACCEPTED
    events' submit parameters (tif, stp, flags, trigger_price, display_qty,
    expire_ts), in order. Returns `(new rows, delta rows)` as tuples in
    `HistoryRows.order_rows`' column order."""
    state: dict[int, dict] = {}
    placed: list[tuple[int, dict, dict]] = []  # (event index, event, params)
    p = iter(params)

    def touch(oid, kind, remaining, filled, quote, reason, price, i):
        s = state.setdefault(oid, {"filled": 0, "quote": 0, "code": 0, "reason": 255, "price": -1, "qty": -1,
                                   "triggered": -1})
        s["filled"] = _wrap(s["filled"] + filled)
        s["quote"] = _wrap(s["quote"] + quote)
        s["remaining"] = remaining
        s["ts"], s["seq"] = times[i], seqs[i]
        if kind == FILL:
            s["code"], s["reason"] = (2 if remaining == 0 else 1), 255
        elif kind == CANCELLED and remaining == 0:
            s["code"], s["reason"] = (4 if reason == EXPIRED else 3), reason
        if kind == AMENDED:
            s["price"] = price
        if kind in (AMENDED, ACTIVATED):
            s["qty"] = _wrap(s["filled"] + remaining)
        if kind == TRIGGERED:
            s["triggered"] = max(s["triggered"], times[i])

    for i, e in enumerate(events):
        k = e["kind"]
        if k == ACCEPTED:
            placed.append((i, e, next(p)))
        elif k in (FILL, CANCELLED, AMENDED, TRIGGERED, ACTIVATED):
            rem = e["qty"] if k in (AMENDED, TRIGGERED, ACTIVATED) else e["remaining"]
            fq = (e["qty"], _wrap(e["price"] * e["qty"])) if k == FILL else (0, 0)
            touch(e["order_id"], k, rem, *fq, e["reason"], e["price"], i)
            if k == FILL:
                touch(e["other_id"], FILL, e["other_remaining"], e["qty"], _wrap(e["price"] * e["qty"]), 0, 0, i)
    new = []
    for i, e, pr in placed:
        s = state.get(e["order_id"])
        c_ts, c_seq = times[i], seqs[i]
        if s is None:
            s = {"filled": 0, "quote": 0, "remaining": e["qty"], "code": 0, "reason": 255, "price": -1, "qty": -1,
                 "triggered": -1, "ts": c_ts, "seq": c_seq}
        new.append((e["order_id"], e["owner"], e["market"], e["side"], e["order_type"], pr["tif"], pr["stp"],
                    pr["flags"], s["price"] if s["price"] >= 0 else e["price"], s["qty"] if s["qty"] >= 0 else e["qty"],
                    s["filled"], s["quote"], s["remaining"], s["code"] or 5, c_ts, s["ts"], c_seq, s["seq"],
                    pr["trigger_price"], pr["display_qty"], pr["expire_ts"], s["reason"], s["triggered"]))
    new_ids = {e["order_id"] for _, e, _ in placed}
    deltas = [(s["filled"], s["quote"], s["remaining"], s["code"], s["reason"], s["price"], s["qty"], s["triggered"],
               s["ts"], s["seq"], oid) for oid, s in sorted(state.items()) if oid not in new_ids]
    return new, deltas
