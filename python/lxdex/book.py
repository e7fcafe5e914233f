"""`Book`: one market's order book, the Rust engine under a typed Python API.

`submit`, `cancel`, `amend`, `mass_cancel`, `advance_time`, `observe_price`,
`bracket`, `oco` and the queries come straight from the Rust core (one call,
no Python in between); the helpers below (`limit`, `market`, `stop`, ...) are
readable shorthands over `submit` that also take enum names as strings.
Every method returns the list of :class:`lxdex.Event` it caused, or raises
:class:`lxdex.OrderRejected` (and changes nothing). `process` is the batch
API: numpy :data:`COMMAND_DTYPE` records in, :data:`EVENT_DTYPE` records out.
"""

from __future__ import annotations

from . import _core
from .enums import OrderType, Side, Stp, TimeInForce, parse_enum as _enum

class Book(_core.Book):
    """One market's order book. See ``docs/engine.md`` for exact semantics.

    >>> book = Book(tick_size=1, lot_size=1)
    >>> _ = book.limit(1, owner=7, side="sell", price=101, qty=5)
    >>> [e.qty for e in book.limit(2, owner=8, side="buy", price=102, qty=3) if e.kind == 2]
    [3]
    >>> book.depth(1)
    ([], [(101, 2, 1)])
    """

    __slots__ = ()

    @classmethod
    def restore(cls, snapshot: bytes) -> "Book":
        """A book in the state `snapshot()` captured (ValueError if invalid)."""
        book = cls()
        book.load_snapshot(snapshot)
        return book

    def limit(
        self,
        order_id: int,
        owner: int,
        side: Side | str,
        price: int,
        qty: int,
        *,
        tif: TimeInForce | str = TimeInForce.GTC,
        stp: Stp | str = Stp.NONE,
        post_only: bool = False,
        display_qty: int = 0,
        expire_ts: int = 0,
    ) -> list[_core.Event]:
        """A limit order; `display_qty` makes it an iceberg, `expire_ts` with GTD."""
        return self.submit(
            order_id, owner, _enum(Side, side, "side"), qty, price, OrderType.LIMIT,
            _enum(TimeInForce, tif, "tif"), _enum(Stp, stp, "stp"), post_only, display_qty,
            0, False, expire_ts,
        )

    def market(
        self,
        order_id: int,
        owner: int,
        side: Side | str,
        qty: int,
        *,
        protection_price: int = 0,
        tif: TimeInForce | str = TimeInForce.IOC,
        stp: Stp | str = Stp.NONE,
    ) -> list[_core.Event]:
        """A market order (IOC or FOK); it never trades beyond `protection_price` if given."""
        return self.submit(
            order_id, owner, _enum(Side, side, "side"), qty, protection_price, OrderType.MARKET,
            _enum(TimeInForce, tif, "tif"), _enum(Stp, stp, "stp"),
        )

    def stop(
        self,
        order_id: int,
        owner: int,
        side: Side | str,
        trigger_price: int,
        qty: int,
        *,
        limit_price: int = 0,
        tif: TimeInForce | str | None = None,
        stp: Stp | str = Stp.NONE,
        expire_ts: int = 0,
    ) -> list[_core.Event]:
        """A stop order: a market order when triggered, or a limit at `limit_price`."""
        return self._conditional(
            OrderType.STOP_MARKET, OrderType.STOP_LIMIT, order_id, owner, side, trigger_price,
            qty, limit_price, tif, stp, expire_ts,
        )

    def take_profit(
        self,
        order_id: int,
        owner: int,
        side: Side | str,
        trigger_price: int,
        qty: int,
        *,
        limit_price: int = 0,
        tif: TimeInForce | str | None = None,
        stp: Stp | str = Stp.NONE,
        expire_ts: int = 0,
    ) -> list[_core.Event]:
        """A take-profit order: market when triggered, or a limit at `limit_price`."""
        return self._conditional(
            OrderType.TAKE_PROFIT_MARKET, OrderType.TAKE_PROFIT_LIMIT, order_id, owner, side,
            trigger_price, qty, limit_price, tif, stp, expire_ts,
        )

    def trailing_stop(
        self,
        order_id: int,
        owner: int,
        side: Side | str,
        qty: int,
        *,
        distance: int = 0,
        bps: int = 0,
        stp: Stp | str = Stp.NONE,
    ) -> list[_core.Event]:
        """A trailing stop (market when triggered) trailing by a price `distance` or by `bps`."""
        if (distance == 0) == (bps == 0):
            raise ValueError("trailing_stop: give exactly one of distance or bps")
        return self.submit(
            order_id, owner, _enum(Side, side, "side"), qty, 0, OrderType.TRAILING_STOP,
            TimeInForce.IOC, _enum(Stp, stp, "stp"), False, 0, distance or bps, bps != 0,
        )

    def _conditional(self, market_type, limit_type, order_id, owner, side, trigger_price, qty,
                     limit_price, tif, stp, expire_ts):
        if tif is None:
            tif = TimeInForce.IOC if limit_price == 0 else TimeInForce.GTC
        return self.submit(
            order_id, owner, _enum(Side, side, "side"), qty, limit_price,
            market_type if limit_price == 0 else limit_type, _enum(TimeInForce, tif, "tif"),
            _enum(Stp, stp, "stp"), False, 0, trigger_price, False, expire_ts,
        )
