"""`Exchange`: markets, accounts, balances and fees around the Rust core.

Humans speak decimal strings ("50000.25", "0.001"); the core speaks integers
(ticks, lots, an asset's smallest unit). This module converts exactly — a
value that is not on its grid is rejected naming the field — and keeps the
symbol tables. The rules (holds, fee rounding, conservation) are in
``docs/exchange.md``; the core is ``lxdex._core.ExchangeCore``.

>>> ex = Exchange()
>>> _ = ex.add_asset("BTC", decimals=8); _ = ex.add_asset("USD", decimals=6)
>>> _ = ex.add_market("BTC-USD", base="BTC", quote="USD", tick_size="0.01",
...                   lot_size="0.0001", maker_bps=-1, taker_bps=5)
>>> alice, bob = ex.create_account(), ex.create_account()
>>> ex.deposit(alice, "BTC", "1"); ex.deposit(bob, "USD", "100000")
>>> _ = ex.place(alice, "BTC-USD", "sell", qty="0.5", price="50000")
>>> _ = ex.place(bob, "BTC-USD", "buy", qty="0.2", price="50010")
>>> ex.balance(bob, "BTC")
(Decimal('0.2'), Decimal('0'))
>>> ex.balance(bob, "USD")  # paid 10000 at the maker's price + 5 bps taker fee
(Decimal('89995'), Decimal('0'))
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

import numpy as np

from . import _core
from . import commands as C
from .accounts import AccountError, Accounts, UserStatus
from .enums import COMMAND_DTYPE, EVENT_DTYPE, CommandKind, EventKind, OrderType, Reason, Side, Stp, TimeInForce, parse_enum as _enum
from .errors import OrderRejected

_SYMBOL = re.compile(r"^[A-Z0-9]{1,12}$")
_MARKET = re.compile(r"^[A-Z0-9]{1,12}-[A-Z0-9]{1,12}$")
_STATUS = {"trading": 0, "halted": 1, "post_only": 2, "closed": 3}
#: A client order id: Binance's rule (1 to 36 of letters, digits and `-_.:/`).
CLIENT_ID = re.compile(r"[A-Za-z0-9_.:/-]{1,36}")


def check_client_id(client_id: str, field: str = "client_id") -> None:
    """ValueError naming `field` unless `client_id` is 1 to 36 of [A-Za-z0-9-_.:/]."""
    if not isinstance(client_id, str) or not CLIENT_ID.fullmatch(client_id):
        raise ValueError(f"{field}: {client_id!r} must be 1 to 36 letters, digits or '-', '_', '.', ':', '/'")


def _decimal(value: str | int | Decimal, field: str) -> Decimal:
    if isinstance(value, float):
        raise OrderRejected(f"{field}: pass a decimal string, not a float ({value!r})", Reason.INVALID_AMOUNT)
    try:
        d = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise OrderRejected(f"{field}: {value!r} is not a decimal number", Reason.INVALID_AMOUNT) from None
    if not d.is_finite():
        raise OrderRejected(f"{field}: {value!r} is not a finite number", Reason.INVALID_AMOUNT)
    return d


_PLAIN = re.compile(r"(\d{1,18})(?:\.(\d{1,18}))?")
_STEP_PARTS: dict = {}  # step -> (m, k) with step == m * 10**-k, or False for a step of another form


def _step_parts(step: Decimal):
    sign, digits, exp = step.as_tuple()
    if sign or not isinstance(exp, int) or not any(digits):
        return False
    return int("".join(map(str, digits))) * 10 ** max(exp, 0), max(-exp, 0)


def _units(value: str | int | Decimal, step: Decimal, field: str, reason: Reason) -> int:
    """`value` as a whole number of `step`s, or OrderRejected naming the field.

    A plain decimal string (at most 18 digits before and after the point,
    no sign or exponent: what the gateways pass) that is an exact multiple
    of the step takes integer arithmetic; anything else, and every error,
    takes the Decimal path (`_units_decimal`), whose result it equals."""
    if type(value) is str:
        m = _PLAIN.fullmatch(value)
        if m is not None:
            parts = _STEP_PARTS.get(step)
            if parts is None:
                parts = _STEP_PARTS[step] = _step_parts(step)
            if parts:
                mant, k = parts
                frac = m.group(2) or ""
                if len(frac) <= k:
                    q, r = divmod(int(m.group(1) + frac.ljust(k, "0")), mant)  # value * 10**k / mant
                    if r == 0 and q < _I64:
                        return q
    return _units_decimal(value, step, field, reason)


def _units_decimal(value: str | int | Decimal, step: Decimal, field: str, reason: Reason) -> int:
    d = _decimal(value, field)
    n = d / step
    if n != n.to_integral_value():
        raise OrderRejected(f"{field}: {value} is not a multiple of {step}", reason)
    if not -_I64 <= n < _I64:
        raise OrderRejected(f"{field}: {value} is out of range", _OUT_OF_RANGE.get(reason, reason))
    return int(n)


_I64 = 2**63  # the core's prices, quantities and amounts are i64
_OUT_OF_RANGE = {Reason.OFF_LOT_GRID: Reason.INVALID_QUANTITY, Reason.OFF_TICK_GRID: Reason.INVALID_PRICE}


@dataclass(frozen=True)
class AssetInfo:
    id: int
    symbol: str
    decimals: int

    @property
    def unit(self) -> Decimal:
        return Decimal(1).scaleb(-self.decimals)


@dataclass(frozen=True)
class MarketInfo:
    id: int
    symbol: str
    base: AssetInfo
    quote: AssetInfo
    tick_size: Decimal
    lot_size: Decimal
    maker_bps: int
    taker_bps: int


@dataclass(frozen=True)
class Placed:
    order_id: int
    events: list


#: Cancel reasons that are the system's doing (the user is notified); the
#: others are the user's own request or the order's own terms (IOC, FOK,
#: post-only, a market order's remainder), answered in the response.
SYSTEM_CANCELS = frozenset({Reason.STP, Reason.EXPIRED, Reason.OCO, Reason.PARENT})


@dataclass
class Outcome:
    """What executing one command did.

    `events` are the core's order events (a list of `lxdex._core.Event`, or
    for `Records` an EVENT_DTYPE array whose `cmd_index` names the row);
    `clock_events` are the expiries from moving the clock to the command's
    `ts` (before it applied); `notices` are the account-side events (user created, API key created,
    notifications addressed to users, …) as dicts. A rejected command has
    `error` set ({"reason", "message", and "field" where one is to blame})
    and changed nothing (the clock may have moved to its `ts`: expiries then
    are in `events`)."""

    seq: int
    value: Any = None
    events: Any = field(default_factory=list)
    clock_events: list = field(default_factory=list)
    notices: list = field(default_factory=list)
    error: dict | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Exchange:
    """Markets, accounts and balances, with decimal amounts and symbols.

    One `Exchange` owns every book, balance and user. `master_key` (32
    bytes) seals API key secrets; a node passes its configured key, and the
    default is a fresh random key (keys made under it cannot be verified
    after a restore with another key)."""

    def __init__(self, master_key: bytes | None = None) -> None:
        self.core = _core.ExchangeCore()
        self._assets: dict[str, AssetInfo] = {}
        self._markets: dict[str, MarketInfo] = {}
        self._market_by_id: list[MarketInfo] = []
        self._master_key = master_key if master_key is not None else os.urandom(32)
        self.accounts = Accounts(self._master_key)
        #: The sequence number of the last command `execute` applied.
        self.last_seq = 0
        # Client order ids of open orders, both ways: (account, client id) -> order id and order id ->
        # (account, client id), the same tuple. Only orders placed with a client id are here, and only while
        # open (`execute` prunes those its events closed); part of the snapshot and the state hash.
        self._cid_order: dict[tuple[int, str], int] = {}
        self._cid_of: dict[int, tuple[int, str]] = {}

    # -- registry -------------------------------------------------------
    def add_asset(self, symbol: str, decimals: int) -> AssetInfo:
        if not _SYMBOL.match(symbol):
            raise ValueError(f"symbol: {symbol!r} must be 1-12 upper-case letters or digits")
        if symbol in self._assets:
            raise ValueError(f"symbol: asset {symbol} already exists")
        if not (isinstance(decimals, int) and 0 <= decimals <= 18):
            raise ValueError(f"decimals: must be an integer in 0..=18, got {decimals!r}")
        info = AssetInfo(self.core.add_asset(), symbol, decimals)
        self._assets[symbol] = info
        return info

    def asset(self, symbol: str) -> AssetInfo:
        try:
            return self._assets[symbol]
        except KeyError:
            raise OrderRejected(f"asset: no asset {symbol!r}", Reason.UNKNOWN_ASSET) from None

    def add_market(
        self,
        symbol: str,
        *,
        base: str,
        quote: str,
        tick_size: str,
        lot_size: str,
        min_qty: str | None = None,
        min_notional: str = "0",
        band_bps: int = 0,
        maker_bps: int = 0,
        taker_bps: int = 0,
    ) -> MarketInfo:
        if not _MARKET.match(symbol):
            raise ValueError(f"symbol: {symbol!r} must look like BASE-QUOTE")
        if symbol in self._markets:
            raise ValueError(f"symbol: market {symbol} already exists")
        b, q = self.asset(base), self.asset(quote)
        tick, lot = _decimal(tick_size, "tick_size"), _decimal(lot_size, "lot_size")
        if tick <= 0 or lot <= 0:
            raise ValueError("tick_size and lot_size must be positive")
        lot_units = lot / b.unit
        tick_units = tick * lot / q.unit
        if lot_units != lot_units.to_integral_value():
            raise ValueError(f"lot_size: {lot} is finer than {base}'s {b.decimals} decimals")
        if tick_units != tick_units.to_integral_value():
            raise ValueError(
                f"tick_size: {tick} x lot_size {lot} is finer than {quote}'s {q.decimals} decimals"
            )
        min_lots = 1 if min_qty is None else _units(min_qty, lot, "min_qty", Reason.OFF_LOT_GRID)
        min_quote = _units(min_notional, q.unit, "min_notional", Reason.INVALID_AMOUNT)
        mid = self.core.add_market(
            b.id, q.id, int(lot_units), int(tick_units), min_lots, min_quote, band_bps, maker_bps,
            taker_bps,
        )
        info = MarketInfo(mid, symbol, b, q, tick, lot, maker_bps, taker_bps)
        self._markets[symbol] = info
        self._market_by_id.append(info)
        return info

    def market(self, symbol: str) -> MarketInfo:
        try:
            return self._markets[symbol]
        except KeyError:
            raise OrderRejected(f"market: no market {symbol!r}", Reason.UNKNOWN_MARKET) from None

    def set_fee_tiers(self, symbol: str, tiers: list[tuple[str, int, int]]) -> None:
        """Volume discounts: `[(min 30-day volume in the quote asset, maker_bps, taker_bps)]`,
        thresholds increasing; rates at most the market's base rates."""
        m = self.market(symbol)
        self.core.set_fee_tiers(m.id, [
            (_units(v, m.quote.unit, "min_volume", Reason.INVALID_AMOUNT), maker, taker)
            for v, maker, taker in tiers
        ])

    def volume_30d(self, account: int, quote: str) -> Decimal:
        """The account's traded volume in `quote` over the last 30 days."""
        a = self.asset(quote)
        return Decimal(self.core.volume_30d(account, a.id)).scaleb(-a.decimals).normalize()

    def set_market_status(self, symbol: str, status: str) -> list:
        if status not in _STATUS:
            raise ValueError(f"status: must be one of {', '.join(_STATUS)}")
        return self.core.set_market_status(self.market(symbol).id, _STATUS[status])

    # -- accounts and money ---------------------------------------------
    def create_account(self) -> int:
        return self.core.add_account()

    def suspend(self, account: int, suspended: bool = True) -> None:
        """Suspends (or reactivates) an account: it can cancel but not trade.
        For an account with a user this is the user's status too."""
        if account in self.accounts:
            self.set_user_status(account, "suspended" if suspended else "active", self.core.now)
        else:
            self.core.set_account_suspended(account, suspended)

    def create_user(self, profile: dict, ts: int | None = None) -> int:
        """A user with `profile` (display_name, email, country) and its ledger
        account; returns the id they share."""
        uid = self.core.account_count
        self.accounts.create_user(uid, profile, self.core.now if ts is None else ts)  # validates first
        assert self.core.add_account() == uid
        return uid

    def set_user_status(self, user_id: int, status: str | UserStatus, ts: int | None = None) -> list[dict]:
        """`active` or `suspended`, mirrored into the ledger."""
        events = self.accounts.set_status(user_id, status, self.core.now if ts is None else ts)
        suspended = self.accounts.user(user_id)["status"] == "suspended"
        self.core.set_account_suspended(user_id, suspended)
        return events

    def _amount(self, asset: AssetInfo, amount) -> int:
        return _units(amount, asset.unit, "amount", Reason.INVALID_AMOUNT)

    def deposit(self, account: int, asset: str, amount: str | Decimal) -> None:
        a = self.asset(asset)
        self.core.deposit(account, a.id, self._amount(a, amount))

    def withdraw(self, account: int, asset: str, amount: str | Decimal) -> None:
        a = self.asset(asset)
        self.core.withdraw(account, a.id, self._amount(a, amount))

    def transfer(self, from_account: int, to_account: int, asset: str, amount: str | Decimal) -> None:
        a = self.asset(asset)
        self.core.transfer(from_account, to_account, a.id, self._amount(a, amount))

    def balance(self, account: int, asset: str) -> tuple[Decimal, Decimal]:
        """`(available, held)` in the asset's units."""
        a = self.asset(asset)
        available, held = self.core.balance(account, a.id)
        return Decimal(available).scaleb(-a.decimals).normalize(), Decimal(held).scaleb(-a.decimals).normalize()

    def fees(self, asset: str) -> Decimal:
        a = self.asset(asset)
        return Decimal(self.core.fees(a.id)).scaleb(-a.decimals).normalize()

    # -- trading --------------------------------------------------------
    def place(
        self,
        account: int,
        market: str,
        side: Side | str,
        qty: str | Decimal | None = None,
        price: str | Decimal | None = None,
        *,
        order_type: OrderType | str = OrderType.LIMIT,
        tif: TimeInForce | str | None = None,
        stp: Stp | str = Stp.NONE,
        post_only: bool = False,
        display_qty: str | Decimal | None = None,
        trigger_price: str | Decimal | None = None,
        expire_ts: int = 0,
        client_id: str | None = None,
        quote_qty: str | Decimal | None = None,
    ) -> Placed:
        """Places an order; prices and quantities are decimal strings.

        `price` is the limit price, or for market-type orders an optional
        protection price (required for market-type buys that wait for a
        trigger). `client_id` (1 to 36 of [A-Za-z0-9-_.:/]) is the caller's
        name for the order, kept while the order is open: a second open order
        of the account with the same one is rejected (`DUPLICATE_ID`).

        `quote_qty` (instead of `qty`, market orders only) sizes the order by
        an amount of the quote asset: the core walks the book for the whole
        lots a buy gets for at most that amount, taker fee included, or a
        sell gets at most that amount for (before its fee); a buy holds the
        whole amount until it ends (docs/exchange.md)."""
        amount = self._quote_amount(market, qty, quote_qty, order_type)
        m, side, lots, ticks, otype, tif, stp, display, trigger = self._order_args(
            market, side, "0" if amount else qty, price, order_type, tif, stp, display_qty, trigger_price)
        key = None
        if client_id is not None:
            check_client_id(client_id)
            key = (account, client_id)
            if self.order_by_client_id(account, client_id) is not None:
                raise OrderRejected(f"client_id: account {account} has an open order with client id {client_id!r}",
                                    Reason.DUPLICATE_ID)
        try:
            order_id, events = self.core.place(
                account, m.id, side, lots, ticks, otype, tif, stp, post_only, display, trigger, False, expire_ts,
                amount,
            )
        except OrderRejected as e:
            if amount and e.reason == Reason.BELOW_MIN_QUANTITY:
                raise OrderRejected(f"quote_qty: {quote_qty} {m.quote.symbol} {'buys' if side == Side.BUY else 'sells'}"
                                    " less than the market's minimum quantity at the book's prices now",
                                    Reason.BELOW_MIN_QUANTITY) from None
            raise
        if key is not None and self.core.order_hold(order_id) is not None:
            self._cid_order[key] = order_id
            self._cid_of[order_id] = key
        return Placed(order_id, events)

    def place_oco(
        self,
        account: int,
        market: str,
        side: Side | str,
        qty: str | Decimal,
        *,
        tp_trigger: str | Decimal,
        sl_trigger: str | Decimal,
        tp_price: str | Decimal | None = None,
        sl_price: str | Decimal | None = None,
        stp: Stp | str = Stp.NONE,
        tp_client_id: str | None = None,
        sl_client_id: str | None = None,
    ) -> Placed:
        """Places a one-cancels-other pair on `side` (see `commands.PlaceOco`):
        a take-profit leg and a stop-loss leg, each a limit order at its
        price once its trigger fires (a market order without a price). The
        pair holds once, for its larger leg. Returns the take-profit leg's
        id (the order list id); the stop-loss leg's is the next."""
        m = self.market(market)
        side = _enum(Side, side, "side")
        lots = _units(qty, m.lot_size, "qty", Reason.OFF_LOT_GRID)
        legs = self._leg_args(m, tp_trigger, tp_price, sl_trigger, sl_price)
        stp = _enum(Stp, stp, "stp")
        cids = self._check_client_ids(account, [("tp_client_id", tp_client_id), ("sl_client_id", sl_client_id)])
        tp_id, events = self.core.place_oco(account, m.id, side, lots, *legs, stp)
        self._keep_client_ids(account, [tp_id, tp_id + 1], cids)
        return Placed(tp_id, events)

    def place_bracket(
        self,
        account: int,
        market: str,
        side: Side | str,
        qty: str | Decimal,
        price: str | Decimal | None = None,
        *,
        tp_trigger: str | Decimal,
        sl_trigger: str | Decimal,
        tp_price: str | Decimal | None = None,
        sl_price: str | Decimal | None = None,
        tif: TimeInForce | str | None = None,
        stp: Stp | str = Stp.NONE,
        post_only: bool = False,
        expire_ts: int = 0,
        client_id: str | None = None,
        tp_client_id: str | None = None,
        sl_client_id: str | None = None,
    ) -> Placed:
        """Places a bracket (see `commands.PlaceBracket`): an entry (limit at
        `price`, market without one) whose fills activate take-profit and
        stop-loss exits on the other side. Returns the entry's id (the
        order list id); the exits' are the next two."""
        m = self.market(market)
        side = _enum(Side, side, "side")
        lots = _units(qty, m.lot_size, "qty", Reason.OFF_LOT_GRID)
        ticks = 0 if price is None else _units(price, m.tick_size, "price", Reason.OFF_TICK_GRID)
        if tif is None:
            tif = TimeInForce.IOC if price is None else TimeInForce.GTC
        tif = _enum(TimeInForce, tif, "tif")
        legs = self._leg_args(m, tp_trigger, tp_price, sl_trigger, sl_price)
        stp = _enum(Stp, stp, "stp")
        cids = self._check_client_ids(account, [("client_id", client_id), ("tp_client_id", tp_client_id),
                                                ("sl_client_id", sl_client_id)])
        entry, events = self.core.place_bracket(account, m.id, side, lots, ticks, *legs, tif, stp, post_only,
                                                expire_ts)
        self._keep_client_ids(account, [entry, entry + 1, entry + 2], cids)
        return Placed(entry, events)

    @staticmethod
    def _leg_args(m: MarketInfo, tp_trigger, tp_price, sl_trigger, sl_price) -> tuple[int, int, int, int]:
        """Exit legs' decimal prices as ticks, in the core's order (a left-out price is 0: market)."""
        tick = m.tick_size
        return (_units(tp_trigger, tick, "tp_trigger", Reason.OFF_TICK_GRID),
                0 if tp_price is None else _units(tp_price, tick, "tp_price", Reason.OFF_TICK_GRID),
                _units(sl_trigger, tick, "sl_trigger", Reason.OFF_TICK_GRID),
                0 if sl_price is None else _units(sl_price, tick, "sl_price", Reason.OFF_TICK_GRID))

    def _check_client_ids(self, account: int, named: list[tuple[str, str | None]]) -> list[str | None]:
        """Client ids for orders placed together: each valid, distinct, and not open in the account."""
        seen: set[str] = set()
        for name, cid in named:
            if cid is None:
                continue
            check_client_id(cid, name)
            if cid in seen or self.order_by_client_id(account, cid) is not None:
                raise OrderRejected(f"{name}: account {account} has an open order with client id {cid!r}",
                                    Reason.DUPLICATE_ID)
            seen.add(cid)
        return [cid for _, cid in named]

    def _keep_client_ids(self, account: int, order_ids: list[int], cids: list[str | None]) -> None:
        hold = self.core.order_hold
        for oid, cid in zip(order_ids, cids):
            if cid is not None and hold(oid) is not None:
                self._cid_order[(account, cid)] = oid
                self._cid_of[oid] = (account, cid)

    def order_list(self, order_id: int) -> dict | None:
        """The live bracket or OCO group of an order: `{"order_list_id",
        "contingency": "oco" | "bracket", "entry", "tp", "sl"}` (entry None
        for an OCO pair or once a bracket's entry has left the book), or
        None when the order is not in a live group (a leg has triggered, or
        the group was cancelled)."""
        link = self.core.order_link(order_id)
        if link is None:
            return None
        gid, entry, tp, sl = link
        return {"order_list_id": gid, "contingency": "oco" if gid == tp else "bracket",
                "entry": entry or None, "tp": tp, "sl": sl}

    def client_order_id(self, order_id: int) -> str | None:
        """The client id an open order was placed with, or None."""
        key = self._cid_of.get(order_id)
        return key[1] if key is not None and self.core.order_hold(order_id) is not None else None

    def order_by_client_id(self, account: int, client_id: str) -> int | None:
        """The id of the account's open order placed with `client_id`, or None."""
        oid = self._cid_order.get((account, client_id))
        return oid if oid is not None and self.core.order_hold(oid) is not None else None

    def _prune_client_ids(self, events) -> None:
        """Forgets the client ids of the orders that `events` closed."""
        if isinstance(events, np.ndarray):
            kind = events["kind"]
            fill = kind == _FILL
            ids = np.concatenate([events["order_id"][fill | (kind == _CANCELLED)], events["other_id"][fill]])
            if not len(ids):
                return
            ids = np.unique(ids).tolist()
        else:
            ids = [e.order_id if e.kind == EventKind.CANCELLED else e.other_id
                   for e in events if e.kind == EventKind.CANCELLED or e.kind == EventKind.FILL]
            ids += [e.order_id for e in events if e.kind == EventKind.FILL]
        of, hold = self._cid_of, self.core.order_hold
        for oid in ids:
            key = of.get(oid)
            if key is not None and hold(oid) is None:
                del of[oid]
                if self._cid_order.get(key) == oid:
                    del self._cid_order[key]

    def _quote_amount(self, market, qty, quote_qty, order_type) -> int:
        """A market order's quote amount in quote units (0: sized by `qty`);
        exactly one of `qty` and `quote_qty` (ValueError or OrderRejected
        naming the field)."""
        if quote_qty is None:
            if qty is None:
                raise ValueError("qty: required (or quote_qty, for a market order)")
            return 0
        if qty is not None and _decimal(qty, "qty") != 0:
            raise ValueError("quote_qty: give qty or quote_qty, not both")
        if _enum(OrderType, order_type, "order_type") != OrderType.MARKET:
            raise ValueError("quote_qty: only market orders are sized by a quote amount")
        m = self.market(market)
        amount = _units(quote_qty, m.quote.unit, "quote_qty", Reason.INVALID_AMOUNT)
        if amount <= 0:
            raise OrderRejected(f"quote_qty: {quote_qty} must be positive", Reason.INVALID_AMOUNT)
        return amount

    def _order_args(self, market, side, qty, price, order_type, tif, stp, display_qty, trigger_price) -> tuple:
        """An order's decimal arguments as the core's integers (OrderRejected
        or ValueError naming the field)."""
        m = self.market(market)
        side = _enum(Side, side, "side")
        otype = _enum(OrderType, order_type, "order_type")
        if tif is None:
            tif = TimeInForce.IOC if otype in _MARKET_TYPES else TimeInForce.GTC
        lots = _units(qty, m.lot_size, "qty", Reason.OFF_LOT_GRID)
        ticks = 0 if price is None else _units(price, m.tick_size, "price", Reason.OFF_TICK_GRID)
        display = 0 if display_qty is None else _units(display_qty, m.lot_size, "display_qty", Reason.INVALID_DISPLAY)
        trigger = 0 if trigger_price is None else _units(trigger_price, m.tick_size, "trigger_price", Reason.OFF_TICK_GRID)
        return (m, side, lots, ticks, otype, _enum(TimeInForce, tif, "tif"), _enum(Stp, stp, "stp"), display,
                trigger)

    def order_record(
        self,
        account: int,
        market: str,
        side: Side | str,
        qty: str | Decimal | None = None,
        price: str | Decimal | None = None,
        *,
        order_type: OrderType | str = OrderType.LIMIT,
        tif: TimeInForce | str | None = None,
        stp: Stp | str = Stp.NONE,
        post_only: bool = False,
        display_qty: str | Decimal | None = None,
        trigger_price: str | Decimal | None = None,
        expire_ts: int = 0,
        quote_qty: str | Decimal | None = None,
    ) -> bytes:
        """The 120-byte SUBMIT record (COMMAND_DTYPE) of the order `place`
        would place, for a `Records` batch: the same conversions and the
        same errors for bad arguments; what the core checks (funds, market
        status, bands, …) becomes the row's REJECTED event. Reads only the
        symbol registry (a gateway may call it beside the sequencer). A
        `quote_qty` order is the row with flag `FLAG_QUOTE_QTY` and the
        amount (quote units) in `qty`."""
        amount = self._quote_amount(market, qty, quote_qty, order_type)
        m, side, lots, ticks, otype, tif, stp, display, trigger = self._order_args(
            market, side, "0" if amount else qty, price, order_type, tif, stp, display_qty, trigger_price)
        if not 0 <= account < 2**64:
            raise ValueError(f"account: {account} is out of range")
        if not 0 <= expire_ts < 2**63:  # (signed 64-bit milliseconds, as everywhere outside the core)
            raise ValueError(f"expire_ts: {expire_ts} is out of range")
        flags = (_FLAG_POST_ONLY if post_only else 0) | (FLAG_QUOTE_QTY if amount else 0)
        return _SUBMIT.pack(CommandKind.SUBMIT, side, otype, tif, stp, flags, m.id,
                            0, account, ticks, amount or lots, trigger, display, expire_ts)

    def cancel(self, account: int, order_id: int) -> list:
        return self.core.cancel(account, order_id)

    def amend(self, account: int, order_id: int, *, price=None, qty=None) -> list:
        m = self._market_of(order_id)
        ticks = 0 if price is None else _units(price, m.tick_size, "price", Reason.OFF_TICK_GRID)
        lots = 0 if qty is None else _units(qty, m.lot_size, "qty", Reason.OFF_LOT_GRID)
        return self.core.amend(account, order_id, ticks, lots)

    def cancel_all(self, account: int, market: str | None = None) -> list:
        return self.core.cancel_all(account, None if market is None else self.market(market).id)

    def advance_time(self, ts: int) -> list:
        return self.core.advance_time(ts)

    def observe_price(self, market: str, price: str | Decimal) -> list:
        m = self.market(market)
        return self.core.observe_price(m.id, _units(price, m.tick_size, "price", Reason.OFF_TICK_GRID))

    def depth(self, market: str, n: int = 10) -> tuple[list, list]:
        """`(bids, asks)` as `(price, qty, orders)` with decimal price and quantity."""
        m = self.market(market)
        bids, asks = self.core.book_depth(m.id, n)
        conv = lambda lv: [(lv_p * m.tick_size, lv_q * m.lot_size, c) for lv_p, lv_q, c in lv]  # noqa: E731
        return conv(bids), conv(asks)

    def depth_snapshot(self, market: str, n: int = 100) -> tuple[int, list, list]:
        """`(last_update_id, bids, asks)`: apply DEPTH events with a larger id to resync."""
        m = self.market(market)
        update_id, bids, asks = self.core.depth_snapshot(m.id, n)
        conv = lambda lv: [(p * m.tick_size, q * m.lot_size, c) for p, q, c in lv]  # noqa: E731
        return update_id, conv(bids), conv(asks)

    def trades(self, market: str, limit: int = 500) -> list[dict]:
        """Recent trades, oldest first."""
        m = self.market(market)
        return [
            {"id": i, "ts": ts, "price": p * m.tick_size, "qty": q * m.lot_size,
             "taker_side": Side(s).name.lower()}
            for i, ts, p, q, s in self.core.trades(m.id, limit)
        ]

    def agg_trades(self, market: str, *, from_id: int | None = None, start: int | None = None,
                   end: int | None = None, limit: int = 500) -> list[dict]:
        """Aggregate trades (Binance's aggTrades) from the core's tape (its last 1,000 trades): consecutive
        trades taken by the same order in one command at the same price are one aggregate, whose id is its
        first trade's id. `from_id`: aggregates from that id on (inclusive); `start`/`end` (ms, inclusive):
        aggregates whose time is within them; with `from_id` or `start`, the first `limit` of those,
        otherwise the last `limit`. An aggregate that began before the oldest trade kept starts there.
        Rows: `{id, first_id, last_id, ts, price, qty, taker_side}` (decimal price and quantity)."""
        m = self.market(market)
        aggs: list[list] = []
        for i, ts, p, q, s, same in self.core.tape(m.id, TRADES_KEPT):
            last = aggs[-1] if aggs else None
            if same and last is not None and last[3] == p:
                last[1], last[4] = i, last[4] + q
            else:
                aggs.append([i, i, ts, p, q, s])
        rows = [a for a in aggs if (from_id is None or a[0] >= from_id) and (start is None or a[2] >= start)
                and (end is None or a[2] <= end)]
        rows = rows[:limit] if (from_id is not None or start is not None) else rows[-limit:]
        return [{"id": a, "first_id": a, "last_id": b, "ts": ts, "price": p * m.tick_size, "qty": q * m.lot_size,
                 "taker_side": Side(s).name.lower()} for a, b, ts, p, q, s in rows]

    def candles(self, market: str, interval: str, since: int = 0, limit: int = 500) -> list[dict]:
        """OHLCV candles (start in ms), oldest first; intervals as Binance names them."""
        m = self.market(market)
        qv = m.tick_size * m.lot_size
        return [
            {"start": start, "open": o * m.tick_size, "high": h * m.tick_size, "low": lo * m.tick_size,
             "close": c * m.tick_size, "volume": v * m.lot_size, "quote_volume": qvol * qv, "trades": n}
            for start, o, h, lo, c, v, qvol, n in self.core.candles(m.id, interval, since, limit)
        ]

    def ticker(self, market: str) -> dict | None:
        """Rolling 24 h statistics, or None before the first trade in the window."""
        m = self.market(market)
        t = self.core.ticker(m.id)
        if t is None:
            return None
        o, h, lo, last, v, qvol, n = t
        return {
            "open": o * m.tick_size, "high": h * m.tick_size, "low": lo * m.tick_size,
            "last": last * m.tick_size, "volume": v * m.lot_size,
            "quote_volume": qvol * m.tick_size * m.lot_size, "trades": n,
            "change": (last - o) * m.tick_size,
            "change_pct": (Decimal(last - o) * 100 / o).quantize(Decimal("0.01")),
        }

    def open_orders(self, account: int) -> list[dict]:
        """The account's open orders (resting or waiting for a trigger), by id."""
        out = []
        for o in self.core.open_orders(account):
            m = self._market_by_id[o["market"]]
            row = {"order_id": o["order_id"], "market": m.symbol, "status": o["status"],
                   "side": Side(o["side"]).name.lower()}
            if o["status"] == "resting":
                row |= {"price": o["price"] * m.tick_size,
                        "qty": (o["visible"] + o["hidden"]) * m.lot_size,
                        "visible_qty": o["visible"] * m.lot_size}
            else:
                row |= {"order_type": OrderType(o["order_type"]).name.lower(),
                        "trigger_price": o["trigger"] * m.tick_size,
                        "price": o["price"] * m.tick_size, "qty": o["qty"] * m.lot_size}
            link = self.core.order_link(o["order_id"])
            if link is not None:
                row["order_list_id"] = link[0]
            out.append(row)
        return out

    def recent_fills(self, account: int) -> list[dict]:
        """The account's last fills (at most 100), oldest first; fee in the quote asset."""
        out = []
        for ts, order_id, market, side, maker, price, qty, fee in self.core.recent_fills(account):
            m = self._market_by_id[market]
            out.append({"ts": ts, "order_id": order_id, "market": m.symbol,
                        "side": Side(side).name.lower(), "maker": maker,
                        "price": price * m.tick_size, "qty": qty * m.lot_size,
                        "fee": Decimal(fee).scaleb(-m.quote.decimals).normalize()})
        return out

    # -- commands -----------------------------------------------------------
    def execute(self, cmd: C.Command, seq: int | None = None) -> Outcome:
        """Applies one command of the ordered log under sequence number `seq`
        (default: the next one), first moving the clock to `cmd.ts` if that
        is later. A command that is rejected changes nothing and still takes
        its sequence number (a replay rejects it the same way)."""
        if seq is None:
            seq = self.last_seq + 1
        if seq != self.last_seq + 1:
            raise ValueError(f"seq: expected {self.last_seq + 1}, got {seq} (commands apply in log order)")
        out = Outcome(seq)
        try:
            if cmd.ts > self.core.now:
                out.clock_events = self.core.advance_time(cmd.ts)
            value, out.events, out.notices = _HANDLERS[type(cmd)](self, cmd)
        except _REJECTIONS as e:
            out.error = _error_of(e)
        else:
            out.value = value
        self.last_seq = seq
        if self._cid_of:
            if len(out.clock_events):
                self._prune_client_ids(out.clock_events)
            if len(out.events):
                self._prune_client_ids(out.events)
        if out.clock_events:
            out.notices = self._notices(out.clock_events, cmd) + out.notices
        if len(out.events):
            out.notices = out.notices + self._notices(out.events, cmd)
        return out

    def replay_records(self, buf, spans: bytes, index: int, seq: int) -> tuple[int, int]:
        """Journal replay's fast path: applies the journal records whose
        payloads are ``buf[start:end]`` for the offset pairs in `spans`
        (`Journal.read_spans`), from the `index`-th on and numbered from
        `seq`, for as long as each is a `Records` command in the form
        `commands.encode` gives it; returns ``(count, max ts)``. The state
        after it is what `execute` of each decoded command leaves (clock,
        rows, rejections, the notifications of system cancels and price
        alerts), without building the outcomes nobody reads in a replay.
        Stops (count may be 0) at a payload of another form, which the
        caller decodes and executes."""
        if seq != self.last_seq + 1:
            raise ValueError(f"seq: expected {self.last_seq + 1}, got {seq} (commands apply in log order)")
        n, max_ts, flagged = self.core.replay_records(buf, spans, index, _SYSTEM_CANCEL_REASONS,
                                                      self.accounts.has_alerts())
        for _i, ts, clock_events, events in flagged:
            cmd = C.Records(ts=ts, data=b"")  # what `_notices` reads of the command: its type and ts
            if len(clock_events):
                self._notices(clock_events, cmd)
            if len(events):
                self._notices(events, cmd)
        self.last_seq += n
        return n, max_ts

    def _notices(self, events, cmd: C.Command) -> list[dict]:
        """Notifications for system cancels (stored in the user's inbox) and
        price alerts fired by this command's trades. Fills reach users as the
        FILL events themselves and in `recent_fills`; they are not copied into
        the inbox (at the design point that would double the fill history)."""
        notices: list[dict] = []
        closing = isinstance(cmd, C.SetMarketStatus) and cmd.status == "closed"
        acc = self.accounts
        if isinstance(events, np.ndarray):
            # A batch: only system cancels and, if any price alert is set,
            # each market's last fill price matter; pick them out with numpy
            # (most batches have no system cancel, and many fills).
            kind = events["kind"]
            pick = np.flatnonzero(kind == _CANCELLED)
            if len(pick) and not closing:
                pick = pick[_SYSTEM_CANCEL_LUT[events["reason"][pick]]]
            if acc.has_alerts():
                fills = np.flatnonzero(kind == _FILL)
                if len(fills) > 1:
                    # the last fill of each market, in event order
                    fm = events["market"][fills]
                    if (fm == fm[0]).all():
                        fills = fills[-1:]
                    else:
                        _, last = np.unique(fm[::-1], return_index=True)
                        fills = fills[len(fills) - 1 - last]
                pick = np.concatenate([pick, fills]) if len(pick) else fills
            if not len(pick):
                return notices
            evs = [_Row(*(r[i] for i in _ROW_FIELDS)) for r in events[pick].tolist()]
        else:
            evs = events
        last_price: dict[int, int] = {}
        for e in evs:
            if e.kind == EventKind.FILL:
                last_price[e.market] = e.price
            elif e.kind == EventKind.CANCELLED and (closing or e.reason in SYSTEM_CANCELS) and e.owner in acc:
                m = self._market_by_id[e.market]
                why = "market_closed" if closing else Reason(e.reason).name.lower()
                notices += acc.notify(e.owner, "order_cancelled", {
                    "order_id": e.order_id, "market": m.symbol, "reason": why,
                    "qty": str(e.qty * m.lot_size)}, cmd.ts)
        for market, price in sorted(last_price.items()):
            m = self._market_by_id[market]
            if acc.has_alerts(m.symbol):
                notices += acc.on_price(m.symbol, price * m.tick_size, cmd.ts)
        return notices

    def process_records(self, data: bytes | np.ndarray) -> np.ndarray:
        """Integer-form commands (COMMAND_DTYPE rows) in one batch; returns
        the EVENT_DTYPE events (`cmd_index` = row). Rejected rows yield a
        REJECTED event and change nothing."""
        rows = np.frombuffer(data, COMMAND_DTYPE) if isinstance(data, (bytes, bytearray, memoryview)) else data
        return self.core.process(rows)

    # -- state ------------------------------------------------------------
    def snapshot(self) -> bytes:
        """Canonical bytes of the whole state: the symbol registry, the last
        applied sequence number, the core (books, balances, holds, market
        data) and the users (profiles, API keys, alerts, notifications)."""
        registry = {
            "assets": [[a.symbol, a.decimals] for a in sorted(self._assets.values(), key=lambda a: a.id)],
            "markets": [
                [m.symbol, m.base.symbol, m.quote.symbol, str(m.tick_size), str(m.lot_size),
                 m.maker_bps, m.taker_bps]
                for m in self._market_by_id
            ],
            "last_seq": self.last_seq,
        }
        hold = self.core.order_hold
        cids = sorted([oid, acct, cid] for oid, (acct, cid) in self._cid_of.items() if hold(oid) is not None)
        if cids:  # absent when none: a snapshot without client ids is what it was before they existed
            registry["client_ids"] = cids
        head = json.dumps(registry, sort_keys=True, separators=(",", ":")).encode()
        users = self.accounts.snapshot()
        core = self.core.snapshot()
        return b"LXPY" + struct.pack("<QQ", len(head), len(users)) + head + users + core

    @classmethod
    def restore(cls, data: bytes, master_key: bytes | None = None) -> "Exchange":
        """An exchange in the state `snapshot()` captured (ValueError if
        invalid). `master_key` must be the one that sealed the API keys."""
        if data[:4] != b"LXPY" or len(data) < 20:
            raise ValueError("not an lxdex exchange snapshot")
        n, u = struct.unpack_from("<QQ", data, 4)
        if 20 + n + u > len(data):
            raise ValueError("exchange snapshot truncated")
        try:
            registry = json.loads(data[20 : 20 + n])
        except ValueError as e:
            raise ValueError(f"exchange snapshot registry unreadable: {e}") from None
        ex = cls(master_key)
        ex.core.load_snapshot(data[20 + n + u :])
        if u:
            ex.accounts = Accounts.restore(data[20 + n : 20 + n + u], ex._master_key)
        try:
            for i, (symbol, decimals) in enumerate(registry["assets"]):
                ex._assets[symbol] = AssetInfo(i, symbol, decimals)
            for i, (symbol, base, quote, tick, lot, maker, taker) in enumerate(registry["markets"]):
                m = MarketInfo(i, symbol, ex._assets[base], ex._assets[quote], Decimal(tick), Decimal(lot), maker,
                               taker)
                ex._markets[symbol] = m
                ex._market_by_id.append(m)
            ex.last_seq = int(registry["last_seq"])
            for oid, acct, cid in registry.get("client_ids", ()):
                key = (int(acct), str(cid))
                ex._cid_order[key] = int(oid)
                ex._cid_of[int(oid)] = key
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"exchange snapshot registry invalid: {e!r}") from None
        if len(ex._market_by_id) != ex.core.market_count:
            raise ValueError("exchange snapshot registry does not match the core's markets")
        return ex

    def state_hash(self) -> str:
        """SHA-256 of the canonical snapshot, hex."""
        return hashlib.sha256(self.snapshot()).hexdigest()

    def _market_of(self, order_id: int) -> MarketInfo:
        hold = self.core.order_hold(order_id)
        if hold is None:
            raise OrderRejected(f"order_id: no open order {order_id}", Reason.UNKNOWN_ORDER)
        return self._market_by_id[hold[1]]


_FIELD_PREFIX = re.compile(r"^([a-z_]+): ")


class CancelReplaceFailed(OrderRejected):
    """A `CancelReplace` that changed nothing: `detail` says how each part
    failed (`{"cancel": error or None, "place": error or None}`)."""

    def __init__(self, message: str, reason: Reason, detail: dict) -> None:
        super().__init__(message, reason)
        self.detail = detail


_REJECTIONS = (OrderRejected, AccountError, ValueError, OverflowError)


def _error_of(e: Exception) -> dict:
    """A rejected command's `Outcome.error` from what its handler raised."""
    if isinstance(e, OrderRejected):
        err = {"reason": Reason(e.reason).name, "message": str(e)}
        if isinstance(e, CancelReplaceFailed):
            err.update(e.detail)
        return err
    if isinstance(e, AccountError):
        return {"reason": "INVALID_COMMAND", "field": e.field, "message": str(e)}
    if isinstance(e, OverflowError):
        # An id or time that does not fit the core's integer types: raised while converting the arguments,
        # before the core changed anything. Rejecting it (instead of letting it escape) keeps the
        # sequencer, and a replay of the journal, alive.
        return {"reason": "INVALID_COMMAND", "message": f"a number is out of range: {e}"}
    err = {"reason": "INVALID_COMMAND", "message": str(e)}
    if m := _FIELD_PREFIX.match(str(e)):
        err["field"] = m.group(1)
    return err

_MARKET_TYPES = {OrderType.MARKET, OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET, OrderType.TRAILING_STOP}



class _Row(NamedTuple):
    """The EVENT_DTYPE fields that notices look at."""

    kind: int
    reason: int
    market: int
    order_id: int
    owner: int
    price: int
    qty: int


_ROW_FIELDS = tuple(EVENT_DTYPE.names.index(f) for f in _Row._fields)
_CANCELLED, _FILL = int(EventKind.CANCELLED), int(EventKind.FILL)
#: A SUBMIT row: kind, side, order_type, tif, stp, flags, market, order_id, owner, price, qty, trigger,
#: display, expire_ts, then the bracket fields (zero): COMMAND_DTYPE's layout.
_SUBMIT = struct.Struct("<BBBBBBxxI4xQQqqqqQ48x")
_FLAG_POST_ONLY = 1
#: Trades the core keeps per market (its tape; `marketdata::TRADES_KEPT`).
TRADES_KEPT = 1_000
#: COMMAND_DTYPE `flags` bit of a SUBMIT row whose `qty` is a quote amount
#: (a market order sized by it; the core's `FLAG_QUOTE_QTY`).
FLAG_QUOTE_QTY = 4
assert _SUBMIT.size == COMMAND_DTYPE.itemsize
_SYSTEM_CANCEL_LUT = np.zeros(256, dtype=bool)
_SYSTEM_CANCEL_LUT[[int(r) for r in SYSTEM_CANCELS]] = True
_SYSTEM_CANCEL_REASONS = sorted(int(r) for r in SYSTEM_CANCELS)


def _h_add_asset(ex: Exchange, c: C.AddAsset):
    a = ex.add_asset(c.symbol, c.decimals)
    return {"asset_id": a.id}, [], []


def _h_add_market(ex: Exchange, c: C.AddMarket):
    m = ex.add_market(c.symbol, base=c.base, quote=c.quote, tick_size=c.tick_size, lot_size=c.lot_size,
                      min_qty=c.min_qty, min_notional=c.min_notional, band_bps=c.band_bps, maker_bps=c.maker_bps,
                      taker_bps=c.taker_bps)
    return {"market_id": m.id}, [], []


def _h_fee_tiers(ex: Exchange, c: C.SetFeeTiers):
    ex.set_fee_tiers(c.market, [tuple(t) for t in c.tiers])
    return None, [], []


def _h_market_status(ex: Exchange, c: C.SetMarketStatus):
    return None, ex.set_market_status(c.market, c.status), []


def _h_create_account(ex: Exchange, c: C.CreateAccount):
    return {"account": ex.create_account()}, [], []


def _h_create_user(ex: Exchange, c: C.CreateUser):
    uid = ex.core.account_count
    notices = ex.accounts.create_user(uid, c.profile, c.ts)
    assert ex.core.add_account() == uid
    return {"user_id": uid}, [], notices


def _h_update_profile(ex: Exchange, c: C.UpdateProfile):
    return None, [], ex.accounts.update_profile(c.user_id, c.changes, c.ts)


def _h_set_kyc(ex: Exchange, c: C.SetKyc):
    return None, [], ex.accounts.set_kyc(c.user_id, c.status, c.level, c.ts)


def _h_user_status(ex: Exchange, c: C.SetUserStatus):
    return None, [], ex.set_user_status(c.user_id, c.status, c.ts)


def _h_create_key(ex: Exchange, c: C.CreateApiKey):
    created = ex.accounts.create_api_key(c.user_id, c.api_key, c.sealed_secret, c.permissions, c.ts,
                                         ip_allow=c.ip_allow, label=c.label)
    return {"api_key": c.api_key, "secret": created.secret}, [], created.events


def _h_revoke_key(ex: Exchange, c: C.RevokeApiKey):
    return None, [], ex.accounts.revoke_api_key(c.user_id, c.api_key, c.ts)


def _h_add_alert(ex: Exchange, c: C.AddPriceAlert):
    ex.market(c.market)  # an alert on an unknown market would never fire
    notices = ex.accounts.add_price_alert(c.user_id, c.market, c.condition, c.price, c.ts)
    return {"alert_id": notices[0]["alert_id"]} if notices else None, [], notices


def _h_cancel_alert(ex: Exchange, c: C.CancelPriceAlert):
    return None, [], ex.accounts.cancel_price_alert(c.user_id, c.alert_id, c.ts)


def _h_mark_read(ex: Exchange, c: C.MarkRead):
    return None, [], ex.accounts.mark_read(c.user_id, c.notification_ids, c.ts)


def _h_deposit(ex: Exchange, c: C.Deposit):
    ex.deposit(c.account, c.asset, c.amount)
    return None, [], []


def _h_withdraw(ex: Exchange, c: C.Withdraw):
    ex.withdraw(c.account, c.asset, c.amount)
    return None, [], []


def _h_transfer(ex: Exchange, c: C.Transfer):
    ex.transfer(c.from_account, c.to_account, c.asset, c.amount)
    return None, [], []


def _place(ex: Exchange, c: C.PlaceOrder) -> Placed:
    return ex.place(c.account, c.market, c.side, c.qty, c.price, order_type=c.order_type, tif=c.tif, stp=c.stp,
                    post_only=c.post_only, display_qty=c.display_qty, trigger_price=c.trigger_price,
                    expire_ts=c.expire_ts, client_id=c.client_id, quote_qty=c.quote_qty)


def _h_place(ex: Exchange, c: C.PlaceOrder):
    p = _place(ex, c)
    return {"order_id": p.order_id}, p.events, []


def _h_cancel_replace(ex: Exchange, c: C.CancelReplace):
    """Cancel `order_id`, then place `new` (Binance's order/cancelReplace).
    A failed cancel stops it unless `allow_failure`; a failed placement
    after a done cancel leaves the cancel done. The value says what each
    part did; when nothing was done the command is rejected, with both
    parts' errors (`cancel`, `place`) in the error."""
    if c.new.ts:
        raise ValueError("new: ts is the command's own; leave the new order's ts 0")
    account = c.new.account
    cancel_err = place_err = None
    events: list = []
    try:
        hold = ex.core.order_hold(c.order_id)
        if hold is None or hold[0] != account:
            raise OrderRejected(f"order_id: account {account} has no open order {c.order_id}", Reason.UNKNOWN_ORDER)
        if ex._market_by_id[hold[1]].symbol != c.new.market:
            raise OrderRejected(f"order_id: order {c.order_id} is not in market {c.new.market}",
                                Reason.UNKNOWN_ORDER)
        events = list(ex.cancel(account, c.order_id))
    except _REJECTIONS as e:
        cancel_err = _error_of(e)
        if not c.allow_failure:
            raise CancelReplaceFailed(f"cancel failed: {e}", e.reason if isinstance(e, OrderRejected)
                                      else Reason.INVALID_COMMAND, {"cancel": cancel_err, "place": None}) from None
    order_id = None
    try:
        p = _place(ex, c.new)
        order_id = p.order_id
        events += p.events
    except _REJECTIONS as e:
        place_err = _error_of(e)
        if cancel_err is not None:
            raise CancelReplaceFailed(f"cancel failed: {cancel_err['message']}; new order failed: {e}",
                                      Reason[cancel_err["reason"]], {"cancel": cancel_err, "place": place_err}) from None
    return {"cancelled": cancel_err is None, "cancel_error": cancel_err, "order_id": order_id,
            "place_error": place_err}, events, []


def _h_place_oco(ex: Exchange, c: C.PlaceOco):
    p = ex.place_oco(c.account, c.market, c.side, c.qty, tp_trigger=c.tp_trigger, sl_trigger=c.sl_trigger,
                     tp_price=c.tp_price, sl_price=c.sl_price, stp=c.stp, tp_client_id=c.tp_client_id,
                     sl_client_id=c.sl_client_id)
    return {"order_list_id": p.order_id, "order_ids": [p.order_id, p.order_id + 1]}, p.events, []


def _h_place_bracket(ex: Exchange, c: C.PlaceBracket):
    p = ex.place_bracket(c.account, c.market, c.side, c.qty, c.price, tp_trigger=c.tp_trigger,
                         sl_trigger=c.sl_trigger, tp_price=c.tp_price, sl_price=c.sl_price, tif=c.tif, stp=c.stp,
                         post_only=c.post_only, expire_ts=c.expire_ts, client_id=c.client_id,
                         tp_client_id=c.tp_client_id, sl_client_id=c.sl_client_id)
    ids = [p.order_id, p.order_id + 1, p.order_id + 2]
    return {"order_list_id": p.order_id, "order_ids": ids}, p.events, []


def _h_cancel(ex: Exchange, c: C.CancelOrder):
    return None, ex.cancel(c.account, c.order_id), []


def _h_amend(ex: Exchange, c: C.AmendOrder):
    return None, ex.amend(c.account, c.order_id, price=c.price, qty=c.qty), []


def _h_cancel_all(ex: Exchange, c: C.CancelAll):
    return None, ex.cancel_all(c.account, c.market), []


def _h_observe(ex: Exchange, c: C.ObservePrice):
    events = ex.observe_price(c.market, c.price)
    m = ex.market(c.market)
    notices = ex.accounts.on_price(m.symbol, c.price, c.ts)
    return None, events, notices


def _h_tick(ex: Exchange, c: C.Tick):
    return None, [], []


def _h_records(ex: Exchange, c: C.Records):
    if len(c.data) % COMMAND_DTYPE.itemsize:
        raise ValueError(f"data: {len(c.data)} bytes is not a whole number of {COMMAND_DTYPE.itemsize}-byte records")
    return None, ex.process_records(c.data), []


_HANDLERS = {
    C.AddAsset: _h_add_asset, C.AddMarket: _h_add_market, C.SetFeeTiers: _h_fee_tiers,
    C.SetMarketStatus: _h_market_status, C.CreateAccount: _h_create_account, C.CreateUser: _h_create_user,
    C.UpdateProfile: _h_update_profile, C.SetKyc: _h_set_kyc, C.SetUserStatus: _h_user_status,
    C.CreateApiKey: _h_create_key, C.RevokeApiKey: _h_revoke_key, C.AddPriceAlert: _h_add_alert,
    C.CancelPriceAlert: _h_cancel_alert, C.MarkRead: _h_mark_read, C.Deposit: _h_deposit,
    C.Withdraw: _h_withdraw, C.Transfer: _h_transfer, C.PlaceOrder: _h_place, C.PlaceOco: _h_place_oco,
    C.PlaceBracket: _h_place_bracket, C.CancelOrder: _h_cancel,
    C.AmendOrder: _h_amend, C.CancelAll: _h_cancel_all, C.CancelReplace: _h_cancel_replace, C.ObservePrice: _h_observe, C.Tick: _h_tick,
    C.Records: _h_records,
}
