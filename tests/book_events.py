"""Readable constructors of expected book events, as the tuples that
``Event.astuple()`` gives: (kind, reason, side, order_type, order_id, owner,
other_id, other_owner, price, qty, remaining, other_remaining).

Shared by the book tests, which run against the reference book
(tests/reference/book.py) and the fast book (lxdex.Book).
"""

from __future__ import annotations

import numpy as np

from lxdex.enums import COMMAND_DTYPE, EventKind, OrderType, Reason, Side, Stp, TimeInForce

B, S = Side.BUY, Side.SELL
LIM, MKT = OrderType.LIMIT, OrderType.MARKET
SM, SLM = OrderType.STOP_MARKET, OrderType.STOP_LIMIT
TPM, TPL = OrderType.TAKE_PROFIT_MARKET, OrderType.TAKE_PROFIT_LIMIT
TS = OrderType.TRAILING_STOP
GTC, IOC, FOK, GTD = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.GTD

EVENT_FIELDS = ("kind", "reason", "side", "order_type", "order_id", "owner", "other_id", "other_owner",
                "price", "qty", "remaining", "other_remaining")


def ev(kind, reason=0, side=0, order_type=0, order_id=0, owner=0, other_id=0, other_owner=0, price=0, qty=0,
       remaining=0, other_remaining=0) -> tuple:
    return tuple(int(v) for v in (kind, reason, side, order_type, order_id, owner, other_id, other_owner, price,
                                  qty, remaining, other_remaining))


def accepted(order_id, owner, side, order_type, price, qty):
    return ev(EventKind.ACCEPTED, 0, side, order_type, order_id, owner, price=price, qty=qty)


def fill(taker, taker_owner, side, order_type, maker, maker_owner, price, qty, remaining, other_remaining):
    return ev(EventKind.FILL, 0, side, order_type, taker, taker_owner, maker, maker_owner, price, qty, remaining,
              other_remaining)


def cancelled(order_id, owner, side, order_type, price, qty, reason, remaining=0):
    return ev(EventKind.CANCELLED, reason, side, order_type, order_id, owner, price=price, qty=qty,
              remaining=remaining)


def amended(order_id, owner, side, order_type, price, qty):
    return ev(EventKind.AMENDED, 0, side, order_type, order_id, owner, price=price, qty=qty)


def triggered(order_id, owner, side, order_type, price, qty):
    return ev(EventKind.TRIGGERED, 0, side, order_type, order_id, owner, price=price, qty=qty)


def activated(order_id, owner, side, order_type, entry_id, qty):
    return ev(EventKind.ACTIVATED, 0, side, order_type, order_id, owner, other_id=entry_id, qty=qty)


def rejected(order_id, owner, reason):
    return ev(EventKind.REJECTED, reason, order_id=order_id, owner=owner)


def tuples(events) -> list[tuple]:
    """Per-call events (reference or fast) as plain int tuples."""
    return [tuple(int(v) for v in e.astuple()) for e in events]


def record_tuples(events: np.ndarray) -> list[tuple]:
    """Batch EVENT_DTYPE records as the same tuples (cmd_index, market dropped)."""
    return [tuple(int(e[f]) for f in EVENT_FIELDS) for e in events]


def commands(*records: dict) -> np.ndarray:
    """A COMMAND_DTYPE array; each record a dict of the fields it sets."""
    arr = np.zeros(len(records), COMMAND_DTYPE)
    for i, r in enumerate(records):
        for k, v in r.items():
            arr[i][k] = v
    return arr


def run_batch(book, arr: np.ndarray) -> list[tuple]:
    """Runs a batch through either book: the fast book's `process`, or the
    reference's `process_commands`."""
    if hasattr(book, "process_commands"):
        return tuples(book.process_commands(arr))
    return record_tuples(book.process(arr))


def rejects(call, reason) -> Exception:
    """Asserts that `call()` raises a rejection (the reference's Rejected or
    lxdex.OrderRejected) with this reason; returns the exception."""
    try:
        call()
    except Exception as e:  # noqa: BLE001 - either book's rejection type
        got = getattr(e, "reason", None)
        assert got is not None, f"expected a rejection {Reason(reason).name}, got {e!r}"
        assert int(got) == int(reason), f"expected {Reason(reason).name}, got {Reason(int(got)).name}: {e}"
        return e
    raise AssertionError(f"expected a rejection {Reason(reason).name}, but the call succeeded")


def state(book) -> tuple:
    """Everything observable about a book, for before/after comparisons."""
    return (book.l3(), book.pending(), book.best_bid, book.best_ask, book.last_price, book.now, len(book),
            book.depth(100))


__all__ = [
    "B", "S", "LIM", "MKT", "SM", "SLM", "TPM", "TPL", "TS", "GTC", "IOC", "FOK", "GTD", "Stp", "Reason",
    "ev", "accepted", "fill", "cancelled", "amended", "triggered", "activated", "rejected", "tuples",
    "record_tuples", "commands", "run_batch", "rejects", "state", "EVENT_FIELDS",
]
