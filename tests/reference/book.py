"""A slow, obviously correct order book: the model the Rust book is tested
against.

It follows docs/engine.md sentence by sentence, with no attempt at speed:

- every resting order is in one plain list; the best order of a side is found
  by sorting that list (price, then queue position);
- conditional orders and bracket children are in another plain list, scanned
  in full at every observed price;
- fill-or-kill is decided by deep-copying the whole book, running the real
  match on the copy and adding up the fills it made (a self-trade decrement
  takes quantity away without trading, so it does not count);
- orders are tracked by object identity, so an id that is reused after its
  order left can never be confused with the old order.

Rejections raise :class:`Rejected` (and change nothing: every check is done
before any state is touched). :meth:`Book.process_commands` is the batch
form, with REJECTED events in place of exceptions.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from lxdex.enums import (
    MAX_PRICE,
    MAX_QTY,
    MAX_TRAIL_BPS,
    CommandKind,
    EventKind,
    Flags,
    OrderType,
    Reason,
    Side,
    Stp,
    TimeInForce,
)

MARKET_TYPES = (OrderType.MARKET, OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET, OrderType.TRAILING_STOP)
LIMIT_TYPES = (OrderType.LIMIT, OrderType.STOP_LIMIT, OrderType.TAKE_PROFIT_LIMIT)
STOP_TYPES = (OrderType.STOP_MARKET, OrderType.STOP_LIMIT)
TAKE_PROFIT_TYPES = (OrderType.TAKE_PROFIT_MARKET, OrderType.TAKE_PROFIT_LIMIT)
CONDITIONAL_TYPES = STOP_TYPES + TAKE_PROFIT_TYPES + (OrderType.TRAILING_STOP,)
RESTING_TIFS = (TimeInForce.GTC, TimeInForce.GTD)
KNOWN_FLAGS = int(Flags.POST_ONLY | Flags.TRAIL_BPS)


class Rejected(Exception):
    """A command was rejected; the book is unchanged. ``reason`` is a Reason."""

    def __init__(self, reason: int, message: str = ""):
        self.reason = Reason(reason)
        super().__init__(f"{self.reason.name}: {message}" if message else self.reason.name)


@dataclass(frozen=True)
class Event:
    kind: int = 0
    reason: int = 0
    side: int = 0
    order_type: int = 0
    order_id: int = 0
    owner: int = 0
    other_id: int = 0
    other_owner: int = 0
    price: int = 0
    qty: int = 0
    remaining: int = 0
    other_remaining: int = 0

    def astuple(self) -> tuple:
        return (self.kind, self.reason, self.side, self.order_type, self.order_id, self.owner,
                self.other_id, self.other_owner, self.price, self.qty, self.remaining, self.other_remaining)


@dataclass(eq=False)  # eq=False: orders compare (and are found in lists) by identity
class Order:
    order_id: int
    owner: int
    side: int
    order_type: int  # the type now: a triggered stop becomes MARKET or LIMIT
    price: int  # limit price, or a market-type's protection price (0: none)
    qty: int  # what is left of the order (visible + hidden while it rests)
    tif: int
    stp: int
    seq: int
    post_only: bool = False
    display_qty: int = 0  # 0: not an iceberg
    trigger: int = 0  # trigger price, or the trailing amount of a trailing stop
    trail_bps: bool = False
    expire_ts: int = 0
    # while resting
    visible: int = 0
    queue_pos: int = 0  # place in its price level: lower is earlier
    # while conditional
    active: bool = True  # False for a bracket child whose entry has not filled yet
    queued: bool = False  # in the trigger queue
    reference: int | None = None  # a trailing stop's peak (SELL) or trough (BUY)
    # bracket / OCO membership
    group: Group | None = None


@dataclass(eq=False)
class Group:
    """A bracket (entry + two children) or an OCO (two legs, entry None)."""

    entry: Order | None
    tp: Order
    sl: Order
    entry_filled: bool = False


def is_market_type(order_type: int) -> bool:
    return order_type in MARKET_TYPES


class Book:
    def __init__(self, tick_size: int = 1, lot_size: int = 1):
        if tick_size < 1 or lot_size < 1:
            raise ValueError("tick_size and lot_size must be >= 1")
        self.tick_size = tick_size
        self.lot_size = lot_size
        self._now = 0
        self._last_price: int | None = None
        self._next_seq = 1
        self._next_queue_pos = 1
        self.resting: list[Order] = []  # orders in the book, both sides, any order
        self.conditionals: list[Order] = []  # waiting conditional orders and bracket children
        self.trigger_queue: list[tuple[Order, int]] = []  # (order, observed price)

    # ------------------------------------------------------------------
    # queries
    # ------------------------------------------------------------------
    @property
    def now(self) -> int:
        return self._now

    @property
    def last_price(self) -> int | None:
        return self._last_price

    def _side_in_priority_order(self, side: int) -> list[Order]:
        orders = [o for o in self.resting if o.side == side]
        if side == Side.BUY:
            return sorted(orders, key=lambda o: (-o.price, o.queue_pos))
        return sorted(orders, key=lambda o: (o.price, o.queue_pos))

    @property
    def best_bid(self) -> int | None:
        bids = self._side_in_priority_order(Side.BUY)
        return bids[0].price if bids else None

    @property
    def best_ask(self) -> int | None:
        asks = self._side_in_priority_order(Side.SELL)
        return asks[0].price if asks else None

    def __len__(self) -> int:
        return len(self.resting)

    def volume_at(self, side: int, price: int) -> int:
        return sum(o.visible for o in self.resting if o.side == side and o.price == price)

    def depth(self, n: int):
        result = []
        for side in (Side.BUY, Side.SELL):
            levels: list[tuple[int, int, int]] = []
            prices: list[int] = []
            for o in self._side_in_priority_order(side):
                if o.price not in prices:
                    prices.append(o.price)
            for p in prices[:n]:
                at_p = [o for o in self.resting if o.side == side and o.price == p]
                levels.append((p, sum(o.visible for o in at_p), len(at_p)))
            result.append(levels)
        return result[0], result[1]

    def l3(self):
        return [(o.order_id, o.owner, o.side, o.price, o.visible, o.qty - o.visible)
                for side in (Side.BUY, Side.SELL) for o in self._side_in_priority_order(side)]

    def pending(self):
        return [(c.order_id, c.owner, c.side, c.order_type, self._current_trigger(c),
                 self._event_price(c), c.qty, c.active)
                for c in sorted(self.conditionals, key=lambda c: c.seq)]

    def order(self, order_id: int) -> Order | None:
        return self._find_live(order_id)

    # ------------------------------------------------------------------
    # small helpers
    # ------------------------------------------------------------------
    def _find_live(self, order_id: int) -> Order | None:
        for o in self.resting + self.conditionals:
            if o.order_id == order_id:
                return o
        return None

    def _is_live(self, order_id: int) -> bool:
        return self._find_live(order_id) is not None

    def _rests(self, o: Order) -> bool:
        return any(x is o for x in self.resting)

    def _waits(self, o: Order) -> bool:
        return any(x is o for x in self.conditionals)

    def _new_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def _new_queue_pos(self) -> int:
        pos = self._next_queue_pos
        self._next_queue_pos += 1
        return pos

    @staticmethod
    def _event_price(o: Order) -> int:
        """The price events show: the limit price, 0 for market-type orders."""
        return 0 if is_market_type(o.order_type) else o.price

    def _event(self, kind: int, o: Order, **fields) -> Event:
        return Event(kind=kind, side=o.side, order_type=o.order_type, order_id=o.order_id, owner=o.owner, **fields)

    def _cancelled(self, o: Order, reason: int, qty: int, remaining: int = 0) -> Event:
        return self._event(EventKind.CANCELLED, o, reason=reason, price=self._event_price(o), qty=qty,
                           remaining=remaining)

    # ------------------------------------------------------------------
    # validation
    # ------------------------------------------------------------------
    def _check_price(self, price: int, what: str, bad_reason: int = Reason.INVALID_PRICE) -> None:
        if not 1 <= price <= MAX_PRICE:
            raise Rejected(bad_reason, f"{what} {price} is not in 1..={MAX_PRICE}")
        if price % self.tick_size != 0:
            raise Rejected(Reason.OFF_TICK_GRID, f"{what} {price} is not a multiple of tick size {self.tick_size}")

    def _check_qty(self, qty: int, what: str = "qty") -> None:
        if not 1 <= qty <= MAX_QTY:
            raise Rejected(Reason.INVALID_QUANTITY, f"{what} {qty} is not in 1..={MAX_QTY}")
        if qty % self.lot_size != 0:
            raise Rejected(Reason.OFF_LOT_GRID, f"{what} {qty} is not a multiple of lot size {self.lot_size}")

    @staticmethod
    def _check_side(side: int) -> None:
        if side not in (Side.BUY, Side.SELL):
            raise Rejected(Reason.INVALID_SIDE, f"side {side} is neither BUY (0) nor SELL (1)")

    @staticmethod
    def _check_stp(stp: int) -> None:
        if stp not in [int(s) for s in Stp]:
            raise Rejected(Reason.INVALID_STP, f"stp {stp} is not a Stp value")

    def _validate_submit(self, order_id, side, order_type, tif, stp, flags, qty, price, trigger, display, expire_ts):
        """The 11 checks of docs/engine.md "Validation (submit)", in order."""
        # 1
        self._check_side(side)
        # 2
        if order_type not in [int(t) for t in OrderType]:
            raise Rejected(Reason.INVALID_ORDER_TYPE, f"order_type {order_type} is not an OrderType value")
        # 3
        if tif not in [int(t) for t in TimeInForce]:
            raise Rejected(Reason.INVALID_TIF, f"tif {tif} is not a TimeInForce value")
        if is_market_type(order_type) and tif not in (TimeInForce.IOC, TimeInForce.FOK):
            raise Rejected(Reason.INVALID_TIF, f"tif: a {OrderType(order_type).name} order needs IOC or FOK")
        # 4
        self._check_stp(stp)
        # 5
        if flags & ~KNOWN_FLAGS:
            raise Rejected(Reason.INVALID_FLAGS, f"flags {flags:#x} has unknown bits")
        if flags & Flags.POST_ONLY and not (order_type == OrderType.LIMIT and tif in RESTING_TIFS):
            raise Rejected(Reason.INVALID_FLAGS, "post_only needs a LIMIT order with GTC or GTD")
        if flags & Flags.TRAIL_BPS and order_type != OrderType.TRAILING_STOP:
            raise Rejected(Reason.INVALID_FLAGS, "trail_bps needs a TRAILING_STOP order")
        # 6
        self._check_qty(qty)
        # 7
        if order_type in LIMIT_TYPES:
            self._check_price(price, "price")
        elif price != 0:
            self._check_price(price, "protection price")
        # 8
        if order_type in STOP_TYPES + TAKE_PROFIT_TYPES:
            self._check_price(trigger, "trigger_price", Reason.INVALID_TRIGGER)
        elif order_type == OrderType.TRAILING_STOP:
            if flags & Flags.TRAIL_BPS:
                if not 1 <= trigger <= MAX_TRAIL_BPS:
                    raise Rejected(Reason.INVALID_TRIGGER, f"trailing bps {trigger} is not in 1..={MAX_TRAIL_BPS}")
            else:
                self._check_price(trigger, "trailing distance", Reason.INVALID_TRIGGER)
        elif trigger != 0:
            raise Rejected(Reason.INVALID_TRIGGER, f"trigger_price must be 0 for {OrderType(order_type).name}")
        # 9
        if display != 0:
            if order_type not in LIMIT_TYPES or tif not in RESTING_TIFS:
                raise Rejected(Reason.INVALID_DISPLAY, "display_qty needs a limit-type order with GTC or GTD")
            if not 1 <= display < qty or display % self.lot_size != 0:
                raise Rejected(Reason.INVALID_DISPLAY,
                               f"display_qty {display} must be in 1..qty ({qty}) and a multiple of the lot size")
        # 10
        if tif == TimeInForce.GTD:
            if not expire_ts > self._now:
                raise Rejected(Reason.INVALID_EXPIRY, f"expire_ts {expire_ts} is not after now ({self._now})")
        elif expire_ts != 0:
            raise Rejected(Reason.INVALID_EXPIRY, "expire_ts must be 0 without GTD")
        # 11
        if order_id == 0:
            raise Rejected(Reason.DUPLICATE_ID, "order_id 0 is not allowed")
        if self._is_live(order_id):
            raise Rejected(Reason.DUPLICATE_ID, f"order_id {order_id} is live")

    def _validate_exit_legs(self, tp_id, tp_trigger, tp_price, sl_id, sl_trigger, sl_price, entry_id=None):
        def bad(why):
            return Rejected(Reason.INVALID_BRACKET, why)

        if tp_id == 0 or sl_id == 0:
            raise bad("tp_id and sl_id must not be 0")
        if tp_id == sl_id:
            raise bad("tp_id and sl_id must differ")
        if entry_id is not None and entry_id in (tp_id, sl_id):
            raise bad("tp_id and sl_id must differ from the entry id")
        if self._is_live(tp_id) or self._is_live(sl_id):
            raise bad("tp_id or sl_id is live")
        for name, p in (("tp_trigger", tp_trigger), ("sl_trigger", sl_trigger)):
            if not (1 <= p <= MAX_PRICE and p % self.tick_size == 0):
                raise bad(f"{name} {p} is not a valid price on the tick grid")
        for name, p in (("tp_price", tp_price), ("sl_price", sl_price)):
            if p != 0 and not (1 <= p <= MAX_PRICE and p % self.tick_size == 0):
                raise bad(f"{name} {p} is neither 0 nor a valid price on the tick grid")

    # ------------------------------------------------------------------
    # commands
    # ------------------------------------------------------------------
    def submit(self, order_id, owner, side, qty, price=0, order_type=OrderType.LIMIT, tif=TimeInForce.GTC,
               stp=Stp.NONE, post_only=False, display_qty=0, trigger_price=0, trail_bps=False, expire_ts=0):
        flags = (Flags.POST_ONLY if post_only else 0) | (Flags.TRAIL_BPS if trail_bps else 0)
        return self._submit(int(order_id), int(owner), int(side), int(order_type), int(tif), int(stp), int(flags),
                            int(qty), int(price), int(trigger_price), int(display_qty), int(expire_ts))

    def _submit(self, order_id, owner, side, order_type, tif, stp, flags, qty, price, trigger, display, expire_ts):
        self._validate_submit(order_id, side, order_type, tif, stp, flags, qty, price, trigger, display, expire_ts)
        o = Order(order_id=order_id, owner=owner, side=side, order_type=order_type, price=price, qty=qty, tif=tif,
                  stp=stp, seq=self._new_seq(), post_only=bool(flags & Flags.POST_ONLY), display_qty=display,
                  trigger=trigger, trail_bps=bool(flags & Flags.TRAIL_BPS), expire_ts=expire_ts)
        out = [self._event(EventKind.ACCEPTED, o, price=self._event_price(o), qty=qty)]
        if order_type in CONDITIONAL_TYPES:
            self._place_conditional(o)
        else:
            self._run_submitted(o, out)
        self._process_trigger_queue(out)
        return out

    def bracket(self, order_id, owner, side, qty, price, tp_id, tp_trigger, sl_id, sl_trigger,
                tp_price=0, sl_price=0, tif=TimeInForce.GTC, stp=Stp.NONE, post_only=False, expire_ts=0):
        flags = Flags.POST_ONLY if post_only else 0
        return self._bracket(int(order_id), int(owner), int(side), int(qty), int(price), int(tif), int(stp),
                             int(flags), int(expire_ts), int(tp_id), int(tp_trigger), int(tp_price), int(sl_id),
                             int(sl_trigger), int(sl_price))

    def _bracket(self, order_id, owner, side, qty, price, tif, stp, flags, expire_ts,
                 tp_id, tp_trigger, tp_price, sl_id, sl_trigger, sl_price):
        entry_type = OrderType.LIMIT if price > 0 else OrderType.MARKET
        # the entry takes no display_qty, trigger_price or TRAIL_BPS flag: as if 0
        self._validate_submit(order_id, side, entry_type, tif, stp, flags & ~int(Flags.TRAIL_BPS), qty, price,
                              0, 0, expire_ts)
        self._validate_exit_legs(tp_id, tp_trigger, tp_price, sl_id, sl_trigger, sl_price, entry_id=order_id)
        if side == Side.BUY:
            ok = sl_trigger < tp_trigger and (entry_type == OrderType.MARKET or sl_trigger < price < tp_trigger)
        else:
            ok = tp_trigger < sl_trigger and (entry_type == OrderType.MARKET or tp_trigger < price < sl_trigger)
        if not ok:
            raise Rejected(Reason.INVALID_BRACKET, "triggers are not on the right sides (of the entry price)")

        entry = Order(order_id=order_id, owner=owner, side=side, order_type=entry_type, price=price, qty=qty,
                      tif=tif, stp=stp, seq=self._new_seq(), post_only=bool(flags & Flags.POST_ONLY),
                      expire_ts=expire_ts)
        child_side = Side.SELL if side == Side.BUY else Side.BUY
        tp = self._exit_leg(tp_id, owner, child_side, 0, stp, OrderType.TAKE_PROFIT_MARKET,
                            OrderType.TAKE_PROFIT_LIMIT, tp_trigger, tp_price, active=False)
        sl = self._exit_leg(sl_id, owner, child_side, 0, stp, OrderType.STOP_MARKET,
                            OrderType.STOP_LIMIT, sl_trigger, sl_price, active=False)
        group = Group(entry=entry, tp=tp, sl=sl)
        entry.group = tp.group = sl.group = group
        out = [self._event(EventKind.ACCEPTED, entry, price=self._event_price(entry), qty=qty)]
        for child in (tp, sl):
            out.append(self._event(EventKind.ACCEPTED, child, price=self._event_price(child), qty=0))
            self.conditionals.append(child)
        self._run_submitted(entry, out)
        self._process_trigger_queue(out)
        return out

    def _exit_leg(self, order_id, owner, side, qty, stp, market_type, limit_type, trigger, limit_price, active):
        """A take-profit or stop-loss leg: market-type (IOC) if limit_price is 0, else limit-type GTC."""
        if limit_price == 0:
            order_type, tif = market_type, TimeInForce.IOC
        else:
            order_type, tif = limit_type, TimeInForce.GTC
        return Order(order_id=order_id, owner=owner, side=side, order_type=order_type, price=limit_price, qty=qty,
                     tif=tif, stp=stp, seq=self._new_seq(), trigger=trigger, active=active)

    def oco(self, owner, side, qty, tp_id, tp_trigger, sl_id, sl_trigger, tp_price=0, sl_price=0, stp=Stp.NONE):
        return self._oco(int(owner), int(side), int(qty), int(stp), int(tp_id), int(tp_trigger), int(tp_price),
                         int(sl_id), int(sl_trigger), int(sl_price))

    def _oco(self, owner, side, qty, stp, tp_id, tp_trigger, tp_price, sl_id, sl_trigger, sl_price):
        self._check_side(side)
        self._check_stp(stp)
        self._check_qty(qty)
        self._validate_exit_legs(tp_id, tp_trigger, tp_price, sl_id, sl_trigger, sl_price)
        ok = sl_trigger < tp_trigger if side == Side.SELL else tp_trigger < sl_trigger
        if not ok:
            raise Rejected(Reason.INVALID_BRACKET, "triggers are not on the right sides")
        tp = self._exit_leg(tp_id, owner, side, qty, stp, OrderType.TAKE_PROFIT_MARKET,
                            OrderType.TAKE_PROFIT_LIMIT, tp_trigger, tp_price, active=True)
        sl = self._exit_leg(sl_id, owner, side, qty, stp, OrderType.STOP_MARKET,
                            OrderType.STOP_LIMIT, sl_trigger, sl_price, active=True)
        tp.group = sl.group = Group(entry=None, tp=tp, sl=sl)
        out = []
        for leg in (tp, sl):
            out.append(self._event(EventKind.ACCEPTED, leg, price=self._event_price(leg), qty=qty))
        for leg in (tp, sl):
            self._place_conditional(leg)
        self._process_trigger_queue(out)
        return out

    def cancel(self, order_id):
        order_id = int(order_id)
        o = self._find_live(order_id)
        if o is None:
            raise Rejected(Reason.UNKNOWN_ORDER, f"order_id {order_id} is not live")
        out: list[Event] = []
        self._cancel_live(o, Reason.USER, out)
        self._process_trigger_queue(out)
        return out

    def amend(self, order_id, price=0, qty=0):
        order_id, price, qty = int(order_id), int(price), int(qty)
        o = self._find_live(order_id)
        if o is None:
            raise Rejected(Reason.UNKNOWN_ORDER, f"order_id {order_id} is not live")
        if not self._rests(o):
            raise Rejected(Reason.NOT_AMENDABLE, f"order {order_id} does not rest in the book")
        if price == 0 and qty == 0:
            raise Rejected(Reason.INVALID_AMEND, "price and qty are both 0 (nothing to change)")
        if price != 0:
            self._check_price(price, "price")
        if qty != 0:
            self._check_qty(qty)
        new_price = price if price != 0 else o.price
        new_qty = qty if qty != 0 else o.qty
        if o.post_only and self._crosses(o.side, new_price):
            raise Rejected(Reason.WOULD_TAKE, f"post-only order at new price {new_price} would take")
        out = [self._event(EventKind.AMENDED, o, price=new_price, qty=new_qty)]
        if new_price == o.price and new_qty <= o.qty:
            # keeps its place
            o.visible = min(o.visible, new_qty)
            o.qty = new_qty
        else:
            # leaves its level and re-enters as a taker at its new price
            self._remove_resting(o)
            o.price = new_price
            o.qty = new_qty
            o.visible = 0
            self._match_and_finish(o, out)
        self._process_trigger_queue(out)
        return out

    def mass_cancel(self, owner):
        owner = int(owner)
        out: list[Event] = []
        theirs = sorted([o for o in self.resting + self.conditionals if o.owner == owner], key=lambda o: o.seq)
        for o in theirs:
            if self._rests(o) or self._waits(o):  # not already gone by a cascade
                self._cancel_live(o, Reason.USER, out)
        self._process_trigger_queue(out)
        return out

    def advance_time(self, ts):
        ts = int(ts)
        if ts < self._now:
            raise Rejected(Reason.INVALID_TIME, f"ts {ts} is before now ({self._now})")
        self._now = ts
        out: list[Event] = []
        due = [o for o in self.resting + self.conditionals if o.tif == TimeInForce.GTD and o.expire_ts <= ts]
        for o in sorted(due, key=lambda o: (o.expire_ts, o.seq)):
            if self._rests(o) or self._waits(o):
                self._cancel_live(o, Reason.EXPIRED, out)
        self._process_trigger_queue(out)
        return out

    def observe_price(self, price):
        price = int(price)
        if not 1 <= price <= MAX_PRICE:
            raise Rejected(Reason.INVALID_PRICE, f"price {price} is not in 1..={MAX_PRICE}")
        out: list[Event] = []
        self._observe(price)
        self._process_trigger_queue(out)
        return out

    # ------------------------------------------------------------------
    # running an order: post-only, FOK, match, rest or cancel
    # ------------------------------------------------------------------
    def _crosses(self, side: int, price: int) -> bool:
        """Would a limit order of `side` at `price` meet the best opposite price?"""
        if side == Side.BUY:
            return self.best_ask is not None and price >= self.best_ask
        return self.best_bid is not None and price <= self.best_bid

    def _run_submitted(self, o: Order, out: list[Event]) -> None:
        """Steps 2-5 of "Submitting an order that is not conditional"."""
        if o.post_only and self._crosses(o.side, o.price):
            out.append(self._cancelled(o, Reason.POST_ONLY, o.qty))
            self._after_leaving(o, out)
            return
        self._execute(o, out)

    def _execute(self, o: Order, out: list[Event]) -> None:
        """From step 3: FOK, match, rest or cancel the remainder."""
        if o.tif == TimeInForce.FOK and not self._would_fill_completely(o):
            out.append(self._cancelled(o, Reason.FOK, o.qty))
            self._after_leaving(o, out)
            return
        self._match_and_finish(o, out)

    def _would_fill_completely(self, o: Order) -> bool:
        """Runs the real match on a deep copy of the book and the order; true
        if the order's trades (FILL events) add up to its whole quantity."""
        trial_book, trial_order = copy.deepcopy((self, o))
        scratch: list[Event] = []
        trial_book._match(trial_order, scratch)
        traded = sum(e.qty for e in scratch if e.kind == EventKind.FILL)
        return traded == o.qty

    def _match_and_finish(self, o: Order, out: list[Event]) -> None:
        """Steps 4 and 5: match, then rest or cancel what is left."""
        taker_cancelled = self._match(o, out)
        if taker_cancelled or o.qty == 0:
            return
        if o.order_type == OrderType.MARKET:
            out.append(self._cancelled(o, Reason.MARKET_REMAINDER, o.qty))
            self._after_leaving(o, out)
        elif o.tif == TimeInForce.IOC:
            out.append(self._cancelled(o, Reason.IOC, o.qty))
            self._after_leaving(o, out)
        else:  # GTC / GTD: rests at the back of its level
            o.visible = min(o.display_qty, o.qty) if o.display_qty else o.qty
            o.queue_pos = self._new_queue_pos()
            self.resting.append(o)

    def _taker_may_trade_at(self, taker: Order, maker_price: int) -> bool:
        if taker.price == 0:  # a market order without protection price
            assert taker.order_type == OrderType.MARKET
            return True
        if taker.side == Side.BUY:
            return maker_price <= taker.price
        return maker_price >= taker.price

    def _match(self, taker: Order, out: list[Event]) -> bool:
        """Matches the taker against the book. Returns True if self-trade
        prevention cancelled the taker (it is then gone)."""
        opposite = Side.SELL if taker.side == Side.BUY else Side.BUY
        while taker.qty > 0:
            makers = self._side_in_priority_order(opposite)
            if not makers or not self._taker_may_trade_at(taker, makers[0].price):
                return False
            maker = makers[0]
            if maker.owner == taker.owner and taker.stp != Stp.NONE:
                if taker.stp == Stp.CANCEL_TAKER:
                    out.append(self._cancelled(taker, Reason.STP, taker.qty))
                    taker.qty = 0
                    self._after_leaving(taker, out)
                    return True
                if taker.stp == Stp.CANCEL_MAKER:
                    self._cancel_resting(maker, Reason.STP, out)
                    continue
                if taker.stp == Stp.CANCEL_BOTH:
                    self._cancel_resting(maker, Reason.STP, out)
                    out.append(self._cancelled(taker, Reason.STP, taker.qty))
                    taker.qty = 0
                    self._after_leaving(taker, out)
                    return True
                assert taker.stp == Stp.DECREMENT
                n = min(taker.qty, maker.visible)
                maker_left = self._take_from_maker(maker, n)
                out.append(self._cancelled(maker, Reason.STP, n, remaining=maker.qty))
                if maker_left:
                    self._after_leaving(maker, out)
                taker.qty -= n
                out.append(self._cancelled(taker, Reason.STP, n, remaining=taker.qty))
                if taker.qty == 0:
                    self._after_leaving(taker, out)
                    return True
                continue
            # a trade
            n = min(taker.qty, maker.visible)
            taker.qty -= n
            self._take_from_maker(maker, n)
            out.append(Event(kind=EventKind.FILL, side=taker.side, order_type=taker.order_type,
                             order_id=taker.order_id, owner=taker.owner, other_id=maker.order_id,
                             other_owner=maker.owner, price=maker.price, qty=n, remaining=taker.qty,
                             other_remaining=maker.qty))
            self._size_children(maker, n, out)
            self._size_children(taker, n, out)
            self._observe(maker.price)
        return False

    def _take_from_maker(self, maker: Order, n: int) -> bool:
        """Takes n off the maker's visible part; an emptied iceberg refills and
        goes to the back of its level. Returns True if the maker left the book."""
        maker.visible -= n
        maker.qty -= n
        if maker.visible > 0:
            return False
        if maker.qty > 0:
            maker.visible = min(maker.display_qty, maker.qty)
            maker.queue_pos = self._new_queue_pos()
            return False
        self._remove_resting(maker)
        return True

    def _remove_resting(self, o: Order) -> None:
        self.resting = [x for x in self.resting if x is not o]

    # ------------------------------------------------------------------
    # cancels and their cascades
    # ------------------------------------------------------------------
    def _cancel_live(self, o: Order, reason: int, out: list[Event]) -> None:
        if self._rests(o):
            self._cancel_resting(o, reason, out)
        else:
            self._cancel_conditional(o, reason, out)

    def _cancel_resting(self, o: Order, reason: int, out: list[Event]) -> None:
        self._remove_resting(o)
        out.append(self._cancelled(o, reason, o.qty))
        self._after_leaving(o, out)

    def _cancel_conditional(self, c: Order, reason: int, out: list[Event]) -> None:
        """A waiting conditional order or bracket child is cancelled; a leg or
        child takes its sibling with it."""
        self.conditionals = [x for x in self.conditionals if x is not c]
        out.append(self._cancelled(c, reason, c.qty))
        sibling = self._sibling(c)
        if sibling is not None and self._waits(sibling):
            self.conditionals = [x for x in self.conditionals if x is not sibling]
            out.append(self._cancelled(sibling, Reason.OCO, sibling.qty))

    @staticmethod
    def _sibling(c: Order) -> Order | None:
        g = c.group
        if g is None or g.entry is c:
            return None
        return g.sl if c is g.tp else g.tp

    def _after_leaving(self, o: Order, out: list[Event]) -> None:
        """`o` has just left the system with a CANCELLED event. A bracket
        entry that never filled takes its live children with it."""
        g = o.group
        if g is None or g.entry is not o or g.entry_filled:
            return
        for child in (g.tp, g.sl):
            if self._waits(child):
                self.conditionals = [x for x in self.conditionals if x is not child]
                out.append(self._cancelled(child, Reason.PARENT, child.qty))

    def _size_children(self, o: Order, n: int, out: list[Event]) -> None:
        """`o` just traded n: if it is a bracket entry, its live children grow by n."""
        g = o.group
        if g is None or g.entry is not o:
            return
        g.entry_filled = True
        for child in (g.tp, g.sl):
            if self._waits(child):
                child.qty += n
                child.active = True
                out.append(self._event(EventKind.ACTIVATED, child, other_id=o.order_id, qty=child.qty))

    # ------------------------------------------------------------------
    # conditional orders
    # ------------------------------------------------------------------
    def _place_conditional(self, c: Order) -> None:
        if c.order_type == OrderType.TRAILING_STOP:
            c.reference = self._last_price
        if c not in self.conditionals:
            self.conditionals.append(c)
        if self._last_price is not None and c.active and not c.queued and self._condition_holds(c, self._last_price):
            c.queued = True
            self.trigger_queue.append((c, self._last_price))

    def _trail_offset(self, c: Order) -> int:
        if c.trail_bps:
            return max(1, c.reference * c.trigger // 10_000)
        return c.trigger

    def _current_trigger(self, c: Order) -> int:
        if c.order_type != OrderType.TRAILING_STOP:
            return c.trigger
        if c.reference is None:
            return 0
        if c.side == Side.SELL:
            return c.reference - self._trail_offset(c)
        return c.reference + self._trail_offset(c)

    def _condition_holds(self, c: Order, p: int) -> bool:
        if c.order_type in STOP_TYPES:
            return p >= c.trigger if c.side == Side.BUY else p <= c.trigger
        if c.order_type in TAKE_PROFIT_TYPES:
            return p >= c.trigger if c.side == Side.SELL else p <= c.trigger
        assert c.order_type == OrderType.TRAILING_STOP
        if c.reference is None:
            return False
        if c.side == Side.SELL:
            return p <= c.reference - self._trail_offset(c)
        return p >= c.reference + self._trail_offset(c)

    def _observe(self, p: int) -> None:
        """docs/engine.md "Observing a price P"."""
        self._last_price = p
        for c in self.conditionals:
            if c.order_type == OrderType.TRAILING_STOP:
                if c.reference is None:
                    c.reference = p
                elif c.side == Side.SELL:
                    c.reference = max(c.reference, p)
                else:
                    c.reference = min(c.reference, p)
        for c in sorted(self.conditionals, key=lambda c: c.seq):
            if c.active and not c.queued and self._condition_holds(c, p):
                c.queued = True
                self.trigger_queue.append((c, p))

    def _process_trigger_queue(self, out: list[Event]) -> None:
        while self.trigger_queue:
            c, p = self.trigger_queue.pop(0)
            if not self._waits(c):  # cancelled meanwhile
                continue
            self.conditionals = [x for x in self.conditionals if x is not c]
            c.queued = False
            out.append(self._event(EventKind.TRIGGERED, c, price=p, qty=c.qty))
            g = c.group
            if g is not None:
                sibling = self._sibling(c)
                if sibling is not None and self._waits(sibling):
                    self.conditionals = [x for x in self.conditionals if x is not sibling]
                    out.append(self._cancelled(sibling, Reason.OCO, sibling.qty))
                if g.entry is not None and self._rests(g.entry):
                    self._cancel_resting(g.entry, Reason.OCO, out)
                c.group = None
            c.order_type = OrderType.MARKET if is_market_type(c.order_type) else OrderType.LIMIT
            self._execute(c, out)

    # ------------------------------------------------------------------
    # batch
    # ------------------------------------------------------------------
    def process_commands(self, records) -> list[Event]:
        """Applies COMMAND_DTYPE-like records (anything indexable by field
        name); a rejected command gives one REJECTED event instead of raising."""
        out: list[Event] = []
        for r in records:
            def f(name):
                return int(r[name])

            kind = f("kind")
            try:
                if kind == CommandKind.SUBMIT:
                    events = self._submit(f("order_id"), f("owner"), f("side"), f("order_type"), f("tif"), f("stp"),
                                          f("flags"), f("qty"), f("price"), f("trigger_price"), f("display_qty"),
                                          f("expire_ts"))
                elif kind == CommandKind.CANCEL:
                    events = self.cancel(f("order_id"))
                elif kind == CommandKind.AMEND:
                    events = self.amend(f("order_id"), f("price"), f("qty"))
                elif kind == CommandKind.MASS_CANCEL:
                    events = self.mass_cancel(f("owner"))
                elif kind == CommandKind.ADVANCE_TIME:
                    events = self.advance_time(f("expire_ts"))
                elif kind == CommandKind.OBSERVE_PRICE:
                    events = self.observe_price(f("price"))
                elif kind == CommandKind.BRACKET:
                    events = self._bracket(f("order_id"), f("owner"), f("side"), f("qty"), f("price"), f("tif"),
                                           f("stp"), f("flags"), f("expire_ts"), f("tp_id"), f("tp_trigger"),
                                           f("tp_price"), f("sl_id"), f("sl_trigger"), f("sl_price"))
                elif kind == CommandKind.OCO:
                    events = self._oco(f("owner"), f("side"), f("qty"), f("stp"), f("tp_id"), f("tp_trigger"),
                                       f("tp_price"), f("sl_id"), f("sl_trigger"), f("sl_price"))
                else:
                    raise Rejected(Reason.INVALID_COMMAND, f"unknown command kind {kind}")
            except Rejected as e:
                order_id, owner = _rejected_ids(kind, f)
                events = [Event(kind=EventKind.REJECTED, reason=int(e.reason), order_id=order_id, owner=owner)]
            out.extend(events)
        return out


def _rejected_ids(kind: int, f) -> tuple[int, int]:
    """(order_id, owner) of a REJECTED event, from docs/engine.md's event table."""
    if kind in (CommandKind.SUBMIT, CommandKind.BRACKET):
        return f("order_id"), f("owner")
    if kind in (CommandKind.CANCEL, CommandKind.AMEND):
        return f("order_id"), 0
    if kind == CommandKind.MASS_CANCEL:
        return 0, f("owner")
    if kind in (CommandKind.ADVANCE_TIME, CommandKind.OBSERVE_PRICE):
        return 0, 0
    if kind == CommandKind.OCO:
        return f("tp_id"), f("owner")
    # an unknown command: the record's own order_id and owner fields (the spec
    # does not say; "of the command" read literally)
    return f("order_id"), f("owner")


__all__ = ["Book", "Event", "Rejected"]
