"""lxdex: an open exchange engine with a Rust matching core.

The matching core is :class:`Book` (one market's order book); its exact
semantics are in ``docs/engine.md``. Per-call methods return lists of
:class:`Event`; :meth:`Book.process` takes a numpy array of
:data:`COMMAND_DTYPE` records and returns :data:`EVENT_DTYPE` records.
"""

from __future__ import annotations

from ._core import Event, bench_replay
from .book import Book
from .exchange import Exchange
from .enums import (
    COMMAND_DTYPE,
    EVENT_DTYPE,
    MAX_PRICE,
    MAX_QTY,
    CommandKind,
    EventKind,
    Flags,
    OrderType,
    Reason,
    Side,
    Stp,
    TimeInForce,
)
from .errors import OrderRejected

__all__ = [
    "Book",
    "Exchange",
    "Event",
    "OrderRejected",
    "bench_replay",
    "COMMAND_DTYPE",
    "EVENT_DTYPE",
    "MAX_PRICE",
    "MAX_QTY",
    "CommandKind",
    "EventKind",
    "Flags",
    "OrderType",
    "Reason",
    "Side",
    "Stp",
    "TimeInForce",
]
