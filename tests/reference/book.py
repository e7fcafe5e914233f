"""A slow, obviously correct order book: the model the Rust book is tested
against. It follows docs/engine.md sentence by sentence with plain lists and
dicts: the best order is found by sorting, fill-or-kill is decided by running
the match on a deep copy, conditions are checked by scanning every waiting
order. Nothing here is fast, on purpose.
"""

from __future__ import annotations

import copy
from dataclasses import astuple, dataclass, field

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

MARKET_TYPES = {OrderType.MARKET, OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET, OrderType.TRAILING_STOP}
LIMIT_TYPES = {OrderType.LIMIT, OrderType.STOP_LIMIT, OrderType.TAKE_PROFIT_LIMIT}
STOPS = {OrderType.STOP_MARKET, OrderType.STOP_LIMIT}
TAKE_PROFITS = {OrderType.TAKE_PROFIT_MARKET, OrderType.TAKE_PROFIT_LIMIT}
CONDITIONAL = STOPS | TAKE_PROFITS | {OrderType.TRAILING_STOP}


class Rejected(Exception):
    def __init__(self, reason: Reason):
        super().__init__(f"rejected: {Reason(reason).name}")
        self.reason = Reason(reason)


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
        return astuple(self)


@dataclass
class Order:
    id: int
    owner: int
    side: int
    type: int  # current type: LIMIT/MARKET while executing or resting, else the conditional type
    price: int  # limit price; for market types the protection price (0: none)
    qty: int  # remaining (visible + hidden when resting)
    tif: int
    stp: int
    seq: int
    expire_ts: int = 0
    post_only: bool = False
    display: int = 0
    visible: int = 0
    pos: int = 0  # queue position (lower = earlier) while resting
    trigger: int = 0
    trail_bps: bool = False
    reference: int = 0
    active: bool = True
    queued: bool = False
    group: int = 0

    @property
    def hidden(self) -> int:
        return self.qty - self.visible


@dataclass
class Group:
    entry: int  # order id of the bracket entry while live, else 0
    filled: int = 0
    tp: int = 0  # seq of the take-profit child/leg while live, else 0
    sl: int = 0


@dataclass
class Book:
    tick_size: int = 1
    lot_size: int = 1
    now: int = 0
    last_price: int | None = None
    next_seq: int = 1
    next_pos: int = 1
    resting: list[Order] = field(default_factory=list)
    conds: dict[int, Order] = field(default_factory=dict)  # by seq
    groups: dict[int, Group] = field(default_factory=dict)
    queue: list[tuple[int, int]] = field(default_factory=list)  # (seq, observed price)

    # -- queries --------------------------------------------------------
    def _side(self, side: int) -> list[Order]:
        orders = [o for o in self.resting if o.side == side]
        if side == Side.BUY:
            return sorted(orders, key=lambda o: (-o.price, o.pos))
        return sorted(orders, key=lambda o: (o.price, o.pos))

    @property
    def best_bid(self) -> int | None:
        b = self._side(Side.BUY)
        return b[0].price if b else None

    @property
    def best_ask(self) -> int | None:
        a = self._side(Side.SELL)
        return a[0].price if a else None

    def __len__(self) -> int:
        return len(self.resting)

    def volume_at(self, side: int, price: int) -> int:
        return sum(o.visible for o in self.resting if o.side == side and o.price == price)

    def depth(self, n: int):
        out = []
        for side in (Side.BUY, Side.SELL):
            levels: list[list[int]] = []
            for o in self._side(side):
                if levels and levels[-1][0] == o.price:
                    levels[-1][1] += o.visible
                    levels[-1][2] += 1
                else:
                    levels.append([o.price, o.visible, 1])
            out.append([tuple(lv) for lv in levels[:n]])
        return out[0], out[1]

    def l3(self):
        return [(o.id, o.owner, o.side, o.price, o.visible, o.hidden)
                for side in (Side.BUY, Side.SELL) for o in self._side(side)]

    def pending(self):
        return [(c.id, c.owner, c.side, c.type, self._trigger_price(c),
                 0 if c.type in MARKET_TYPES else c.price, c.qty, c.active)
                for _, c in sorted(self.conds.items())]

    # -- helpers --------------------------------------------------------
    def _live(self, order_id: int) -> bool:
        return any(o.id == order_id for o in self.resting) or any(c.id == order_id for c in self.conds.values())

    def _resting_by_id(self, order_id: int) -> Order | None:
        return next((o for o in self.resting if o.id == order_id), None)

    def _cond_by_id(self, order_id: int) -> Order | None:
        return next((c for c in self.conds.values() if c.id == order_id), None)

    def _ev(self, kind, o: Order, **kw) -> Event:
        return Event(kind=kind, order_id=o.id, owner=o.owner, side=o.side, order_type=o.type, **kw)

    def _event_price(self, o: Order) -> int:
        return 0 if o.type in MARKET_TYPES else o.price

    def _check_price(self, p: int) -> None:
        if not 1 <= p <= MAX_PRICE:
            raise Rejected(Reason.INVALID_PRICE)
        if p % self.tick_size:
            raise Rejected(Reason.OFF_TICK_GRID)

    def _check_qty(self, q: int) -> None:
        if not 1 <= q <= MAX_QTY:
            raise Rejected(Reason.INVALID_QUANTITY)
        if q % self.lot_size:
            raise Rejected(Reason.OFF_LOT_GRID)

    def _validate(self, order_id, side, order_type, tif, stp, flags, qty, price, trigger, display, expire_ts):
        if side not in (0, 1):
            raise Rejected(Reason.INVALID_SIDE)
        if order_type not in [t.value for t in OrderType]:
            raise Rejected(Reason.INVALID_ORDER_TYPE)
        if tif not in [t.value for t in TimeInForce]:
            raise Rejected(Reason.INVALID_TIF)
        market = order_type in MARKET_TYPES
        if market and tif not in (TimeInForce.IOC, TimeInForce.FOK):
            raise Rejected(Reason.INVALID_TIF)
        if stp not in [s.value for s in Stp]:
            raise Rejected(Reason.INVALID_STP)
        if flags & ~int(Flags.POST_ONLY | Flags.TRAIL_BPS):
            raise Rejected(Reason.INVALID_FLAGS)
        post_only, trail_bps = bool(flags & Flags.POST_ONLY), bool(flags & Flags.TRAIL_BPS)
        resting_tif = tif in (TimeInForce.GTC, TimeInForce.GTD)
        if post_only and not (order_type == OrderType.LIMIT and resting_tif):
            raise Rejected(Reason.INVALID_FLAGS)
        if trail_bps and order_type != OrderType.TRAILING_STOP:
            raise Rejected(Reason.INVALID_FLAGS)
        self._check_qty(qty)
        if not (market and price == 0):
            self._check_price(price)
        if order_type in STOPS | TAKE_PROFITS:
            if not 1 <= trigger <= MAX_PRICE:
                raise Rejected(Reason.INVALID_TRIGGER)
            if trigger % self.tick_size:
                raise Rejected(Reason.OFF_TICK_GRID)
        elif order_type == OrderType.TRAILING_STOP:
            if not 1 <= trigger <= (MAX_TRAIL_BPS if trail_bps else MAX_PRICE):
                raise Rejected(Reason.INVALID_TRIGGER)
            if not trail_bps and trigger % self.tick_size:
                raise Rejected(Reason.OFF_TICK_GRID)
        elif trigger != 0:
            raise Rejected(Reason.INVALID_TRIGGER)
        if display != 0:
            if not (order_type in LIMIT_TYPES and resting_tif and 1 <= display < qty
                    and display % self.lot_size == 0):
                raise Rejected(Reason.INVALID_DISPLAY)
        if tif == TimeInForce.GTD:
            if not expire_ts > self.now:
                raise Rejected(Reason.INVALID_EXPIRY)
        elif expire_ts != 0:
            raise Rejected(Reason.INVALID_EXPIRY)
        if order_id == 0 or self._live(order_id):
            raise Rejected(Reason.DUPLICATE_ID)
        return post_only, trail_bps

    def _take_seq(self) -> int:
        self.next_seq += 1
        return self.next_seq - 1

    # -- commands -------------------------------------------------------
    def submit(self, order_id, owner, side, qty, price=0, order_type=OrderType.LIMIT,
               tif=TimeInForce.GTC, stp=Stp.NONE, post_only=False, display_qty=0,
               trigger_price=0, trail_bps=False, expire_ts=0):
        flags = (Flags.POST_ONLY if post_only else 0) | (Flags.TRAIL_BPS if trail_bps else 0)
        return self._submit(order_id, owner, int(side), int(order_type), int(tif), int(stp), int(flags),
                            qty, price, trigger_price, display_qty, expire_ts)

    def _submit(self, order_id, owner, side, order_type, tif, stp, flags, qty, price, trigger, display, expire_ts):
        post_only, trail_bps = self._validate(order_id, side, order_type, tif, stp, flags, qty, price,
                                              trigger, display, expire_ts)
        out: list[Event] = []
        o = Order(order_id, owner, side, order_type, price, qty, tif, stp, self._take_seq(), expire_ts,
                  post_only, display, trigger=trigger, trail_bps=trail_bps)
        out.append(self._ev(EventKind.ACCEPTED, o, price=self._event_price(o), qty=qty))
        if order_type in CONDITIONAL:
            if order_type == OrderType.TRAILING_STOP:
                o.reference = self.last_price or 0
            self.conds[o.seq] = o
            self._check_at_placement(o)
        else:
            self._run_new(o, out)
        self._process_queue(out)
        return out

    def bracket(self, order_id, owner, side, qty, price, tp_id, tp_trigger, sl_id, sl_trigger,
                tp_price=0, sl_price=0, tif=TimeInForce.GTC, stp=Stp.NONE, post_only=False, expire_ts=0):
        flags = Flags.POST_ONLY if post_only else 0
        return self._bracket(order_id, owner, int(side), price, qty, int(tif), int(stp), int(flags), expire_ts,
                             tp_id, tp_trigger, tp_price, sl_id, sl_trigger, sl_price)

    def _bracket(self, order_id, owner, side, price, qty, tif, stp, flags, expire_ts,
                 tp_id, tp_trigger, tp_price, sl_id, sl_trigger, sl_price):
        otype = OrderType.LIMIT if price > 0 else OrderType.MARKET
        post_only, _ = self._validate(order_id, side, otype, tif, stp, flags & ~int(Flags.TRAIL_BPS), qty, price,
                                      0, 0, expire_ts)
        self._validate_legs(tp_id, tp_trigger, tp_price, sl_id, sl_trigger, sl_price, [order_id])
        child_side = 1 - side
        if not self._legs_ordered(child_side, tp_trigger, sl_trigger):
            raise Rejected(Reason.INVALID_BRACKET)
        if otype == OrderType.LIMIT:
            ok = (sl_trigger < price < tp_trigger) if side == Side.BUY else (tp_trigger < price < sl_trigger)
            if not ok:
                raise Rejected(Reason.INVALID_BRACKET)
        out: list[Event] = []
        entry = Order(order_id, owner, side, otype, price, qty, tif, stp, self._take_seq(), expire_ts, post_only)
        tp, sl = self._legs(owner, child_side, 0, stp, tp_id, tp_trigger, tp_price, sl_id, sl_trigger, sl_price,
                            group=entry.seq, active=False)
        entry.group = entry.seq
        out.append(self._ev(EventKind.ACCEPTED, entry, price=price, qty=qty))
        for c in (tp, sl):
            out.append(self._ev(EventKind.ACCEPTED, c, price=self._event_price(c), qty=0))
            self.conds[c.seq] = c
        self.groups[entry.seq] = Group(entry=order_id, tp=tp.seq, sl=sl.seq)
        self._run_new(entry, out)
        self._process_queue(out)
        return out

    def oco(self, owner, side, qty, tp_id, tp_trigger, sl_id, sl_trigger, tp_price=0, sl_price=0, stp=Stp.NONE):
        return self._oco(owner, int(side), qty, int(stp), tp_id, tp_trigger, tp_price, sl_id, sl_trigger, sl_price)

    def _oco(self, owner, side, qty, stp, tp_id, tp_trigger, tp_price, sl_id, sl_trigger, sl_price):
        if side not in (0, 1):
            raise Rejected(Reason.INVALID_SIDE)
        if stp not in [s.value for s in Stp]:
            raise Rejected(Reason.INVALID_STP)
        self._check_qty(qty)
        self._validate_legs(tp_id, tp_trigger, tp_price, sl_id, sl_trigger, sl_price, [])
        if not self._legs_ordered(side, tp_trigger, sl_trigger):
            raise Rejected(Reason.INVALID_BRACKET)
        out: list[Event] = []
        tp_seq = self.next_seq
        tp, sl = self._legs(owner, side, qty, stp, tp_id, tp_trigger, tp_price, sl_id, sl_trigger, sl_price,
                            group=tp_seq, active=True)
        for c in (tp, sl):
            out.append(self._ev(EventKind.ACCEPTED, c, price=self._event_price(c), qty=qty))
            self.conds[c.seq] = c
        self.groups[tp_seq] = Group(entry=0, tp=tp.seq, sl=sl.seq)
        self._check_at_placement(tp)
        self._check_at_placement(sl)
        self._process_queue(out)
        return out

    def _validate_legs(self, tp_id, tp_trigger, tp_price, sl_id, sl_trigger, sl_price, other_ids):
        bad = Rejected(Reason.INVALID_BRACKET)
        if 0 in (tp_id, sl_id) or tp_id == sl_id or tp_id in other_ids or sl_id in other_ids:
            raise bad
        if self._live(tp_id) or self._live(sl_id):
            raise bad
        for p in (tp_trigger, sl_trigger):
            if not (1 <= p <= MAX_PRICE and p % self.tick_size == 0):
                raise bad
        for p in (tp_price, sl_price):
            if p != 0 and not (1 <= p <= MAX_PRICE and p % self.tick_size == 0):
                raise bad

    @staticmethod
    def _legs_ordered(side, tp_trigger, sl_trigger) -> bool:
        return sl_trigger < tp_trigger if side == Side.SELL else tp_trigger < sl_trigger

    def _legs(self, owner, side, qty, stp, tp_id, tp_trigger, tp_price, sl_id, sl_trigger, sl_price, group, active):
        def leg(oid, trigger, price, market_type, limit_type):
            return Order(oid, owner, side, market_type if price == 0 else limit_type, price, qty,
                         TimeInForce.IOC if price == 0 else TimeInForce.GTC, stp, self._take_seq(),
                         trigger=trigger, active=active, group=group)
        tp = leg(tp_id, tp_trigger, tp_price, OrderType.TAKE_PROFIT_MARKET, OrderType.TAKE_PROFIT_LIMIT)
        sl = leg(sl_id, sl_trigger, sl_price, OrderType.STOP_MARKET, OrderType.STOP_LIMIT)
        return tp, sl

    def cancel(self, order_id):
        out: list[Event] = []
        o = self._resting_by_id(order_id)
        if o is not None:
            self._cancel_resting(o, Reason.USER, out)
        else:
            c = self._cond_by_id(order_id)
            if c is None:
                raise Rejected(Reason.UNKNOWN_ORDER)
            self._cancel_cond(c, Reason.USER, True, out)
        self._process_queue(out)
        return out

    def amend(self, order_id, price=0, qty=0):
        o = self._resting_by_id(order_id)
        if o is None:
            raise Rejected(Reason.NOT_AMENDABLE if self._cond_by_id(order_id) else Reason.UNKNOWN_ORDER)
        if price == 0 and qty == 0:
            raise Rejected(Reason.INVALID_AMEND)
        if price != 0:
            self._check_price(price)
        if qty != 0:
            self._check_qty(qty)
        new_price = price or o.price
        new_qty = qty or o.qty
        if o.post_only and self._crosses(o.side, new_price):
            raise Rejected(Reason.WOULD_TAKE)
        out = [self._ev(EventKind.AMENDED, o, price=new_price, qty=new_qty)]
        if new_price == o.price and new_qty <= o.qty:
            o.visible = min(o.visible, new_qty)
            o.qty = new_qty
        else:
            self.resting.remove(o)
            o.price, o.qty = new_price, new_qty
            self._execute(o, out)
        self._process_queue(out)
        return out

    def mass_cancel(self, owner):
        out: list[Event] = []
        live = sorted([(o.seq, o.id) for o in self.resting if o.owner == owner]
                      + [(c.seq, c.id) for c in self.conds.values() if c.owner == owner])
        for seq, oid in live:
            o = self._resting_by_id(oid)
            if o is not None and o.seq == seq:
                self._cancel_resting(o, Reason.USER, out)
            elif seq in self.conds and self.conds[seq].id == oid:
                self._cancel_cond(self.conds[seq], Reason.USER, True, out)
        self._process_queue(out)
        return out

    def advance_time(self, ts):
        if ts < self.now:
            raise Rejected(Reason.INVALID_TIME)
        self.now = ts
        out: list[Event] = []
        while True:
            due = sorted([(o.expire_ts, o.seq, o) for o in self.resting
                          if o.tif == TimeInForce.GTD and o.expire_ts <= ts]
                         + [(c.expire_ts, c.seq, c) for c in self.conds.values()
                            if c.tif == TimeInForce.GTD and c.expire_ts <= ts], key=lambda t: t[:2])
            if not due:
                break
            _, _, o = due[0]
            if o in self.resting:
                self._cancel_resting(o, Reason.EXPIRED, out)
            else:
                self._cancel_cond(o, Reason.EXPIRED, True, out)
        self._process_queue(out)
        return out

    def observe_price(self, price):
        if not 1 <= price <= MAX_PRICE:
            raise Rejected(Reason.INVALID_PRICE)
        out: list[Event] = []
        self._observe(price)
        self._process_queue(out)
        return out

    # -- execution ------------------------------------------------------
    def _crosses(self, side: int, bound: int) -> bool:
        if side == Side.BUY:
            return self.best_ask is not None and self.best_ask <= bound
        return self.best_bid is not None and self.best_bid >= bound

    def _bound(self, o: Order) -> int:
        if o.type == OrderType.MARKET and o.price == 0:
            return 10**30 if o.side == Side.BUY else -(10**30)
        return o.price

    def _run_new(self, o: Order, out: list[Event]) -> None:
        if o.post_only and self._crosses(o.side, o.price):
            out.append(self._ev(EventKind.CANCELLED, o, reason=Reason.POST_ONLY,
                                price=self._event_price(o), qty=o.qty))
            self._order_left(o.group, out)
            return
        self._run_from_fok(o, out)

    def _run_from_fok(self, o: Order, out: list[Event]) -> None:
        if o.tif == TimeInForce.FOK:
            # Run the match on a copy: it must fill the whole quantity through
            # trades (a self-trade decrement reduces it without trading).
            trial = copy.deepcopy(self)
            t = copy.deepcopy(o)
            scratch: list[Event] = []
            trial._match(t, scratch)
            traded = sum(e.qty for e in scratch if e.kind == EventKind.FILL and e.order_id == o.id)
            if traded < o.qty:
                out.append(self._ev(EventKind.CANCELLED, o, reason=Reason.FOK,
                                    price=self._event_price(o), qty=o.qty))
                self._order_left(o.group, out)
                return
        self._execute(o, out)

    def _execute(self, o: Order, out: list[Event]) -> None:
        if self._match(o, out) or o.qty == 0:
            self._order_left(o.group, out)
            return
        if o.type == OrderType.MARKET:
            reason = Reason.MARKET_REMAINDER
        elif o.tif in (TimeInForce.GTC, TimeInForce.GTD):
            o.visible = min(o.display, o.qty) if o.display else o.qty
            o.pos, self.next_pos = self.next_pos, self.next_pos + 1
            self.resting.append(o)
            return
        else:
            reason = Reason.IOC
        out.append(self._ev(EventKind.CANCELLED, o, reason=reason, price=self._event_price(o), qty=o.qty))
        self._order_left(o.group, out)

    def _match(self, t: Order, out: list[Event]) -> bool:
        """Matches taker t; returns True if self-trade prevention cancelled it."""
        bound = self._bound(t)
        opp = 1 - t.side
        while t.qty > 0:
            makers = self._side(opp)
            if not makers:
                return False
            m = makers[0]
            if (t.side == Side.BUY and m.price > bound) or (t.side == Side.SELL and m.price < bound):
                return False
            if m.owner == t.owner and t.stp != Stp.NONE:
                if t.stp == Stp.CANCEL_TAKER:
                    out.append(self._ev(EventKind.CANCELLED, t, reason=Reason.STP, price=self._event_price(t), qty=t.qty))
                    t.qty = 0
                    return True
                if t.stp == Stp.CANCEL_MAKER:
                    self._cancel_resting(m, Reason.STP, out)
                    continue
                if t.stp == Stp.CANCEL_BOTH:
                    self._cancel_resting(m, Reason.STP, out)
                    out.append(self._ev(EventKind.CANCELLED, t, reason=Reason.STP, price=self._event_price(t), qty=t.qty))
                    t.qty = 0
                    return True
                # DECREMENT
                n = min(t.qty, m.visible)
                out.append(self._ev(EventKind.CANCELLED, m, reason=Reason.STP, price=m.price, qty=n,
                                    remaining=m.qty - n))
                gone = self._consume(m, n)
                if gone:
                    self._order_left(m.group, out)
                t.qty -= n
                out.append(self._ev(EventKind.CANCELLED, t, reason=Reason.STP, price=self._event_price(t), qty=n,
                                    remaining=t.qty))
                if t.qty == 0:
                    return True
                continue
            n = min(t.qty, m.visible)
            t.qty -= n
            out.append(Event(EventKind.FILL, 0, t.side, t.type, t.id, t.owner, m.id, m.owner, m.price, n,
                             t.qty, m.qty - n))
            gone = self._consume(m, n)
            if m.group:
                self._activate(m.group, n, out)
            if t.group:
                self._activate(t.group, n, out)
            if gone and m.group:
                self._order_left(m.group, out)
            self._observe(m.price)
        return False

    def _consume(self, m: Order, n: int) -> bool:
        """Takes n from m's visible part; refills an iceberg to the back of its
        level; returns True if m left the book."""
        m.visible -= n
        m.qty -= n
        if m.visible > 0:
            return False
        if m.qty > 0:
            m.visible = min(m.display, m.qty)
            m.pos, self.next_pos = self.next_pos, self.next_pos + 1
            return False
        self.resting.remove(m)
        return True

    def _cancel_resting(self, o: Order, reason: int, out: list[Event]) -> None:
        self.resting.remove(o)
        out.append(self._ev(EventKind.CANCELLED, o, reason=reason, price=o.price, qty=o.qty))
        self._order_left(o.group, out)

    # -- conditional orders ---------------------------------------------
    def _offset(self, c: Order) -> int:
        if c.trail_bps:
            return max(1, c.reference * c.trigger // 10_000)
        return c.trigger

    def _trigger_price(self, c: Order) -> int:
        if c.type != OrderType.TRAILING_STOP:
            return c.trigger
        if c.reference == 0:
            return 0
        return c.reference - self._offset(c) if c.side == Side.SELL else c.reference + self._offset(c)

    def _holds(self, c: Order, p: int) -> bool:
        if c.type in STOPS:
            return p >= c.trigger if c.side == Side.BUY else p <= c.trigger
        if c.type in TAKE_PROFITS:
            return p <= c.trigger if c.side == Side.BUY else p >= c.trigger
        if c.reference == 0:
            return False
        return p <= self._trigger_price(c) if c.side == Side.SELL else p >= self._trigger_price(c)

    def _check_at_placement(self, c: Order) -> None:
        if self.last_price is not None and c.active and not c.queued and self._holds(c, self.last_price):
            c.queued = True
            self.queue.append((c.seq, self.last_price))

    def _observe(self, p: int) -> None:
        self.last_price = p
        for c in self.conds.values():
            if c.type == OrderType.TRAILING_STOP and c.active and not c.queued:
                if c.reference == 0:
                    c.reference = p
                elif c.side == Side.SELL:
                    c.reference = max(c.reference, p)
                else:
                    c.reference = min(c.reference, p)
        for seq in sorted(self.conds):
            c = self.conds[seq]
            if c.active and not c.queued and self._holds(c, p):
                c.queued = True
                self.queue.append((seq, p))

    def _process_queue(self, out: list[Event]) -> None:
        while self.queue:
            seq, p = self.queue.pop(0)
            c = self.conds.pop(seq, None)
            if c is None:
                continue
            out.append(self._ev(EventKind.TRIGGERED, c, price=p, qty=c.qty))
            if c.group:
                g = self.groups.pop(c.group, None)
                if g is not None:
                    sibling = g.sl if g.tp == seq else g.tp
                    if sibling and sibling in self.conds:
                        self._cancel_cond(self.conds[sibling], Reason.OCO, False, out)
                    if g.entry:
                        e = self._resting_by_id(g.entry)
                        if e is not None and e.group == c.group:
                            e.group = 0
                            self._cancel_resting(e, Reason.OCO, out)
            c.type = OrderType.MARKET if c.type in MARKET_TYPES else OrderType.LIMIT
            if c.type == OrderType.MARKET:
                pass  # c.price stays the protection price (0: none)
            c.group = 0
            c.queued = False
            self._run_from_fok(c, out)

    def _cancel_cond(self, c: Order, reason: int, cascade: bool, out: list[Event]) -> None:
        del self.conds[c.seq]
        out.append(self._ev(EventKind.CANCELLED, c, reason=reason, price=self._event_price(c), qty=c.qty))
        g = self.groups.get(c.group)
        if g is None:
            return
        if g.tp == c.seq:
            g.tp, sibling = 0, g.sl
        else:
            g.sl, sibling = 0, g.tp
        if cascade and sibling and sibling in self.conds:
            self._cancel_cond(self.conds[sibling], Reason.OCO, False, out)
        g = self.groups.get(c.group)
        if g is not None and g.entry == 0 and g.tp == 0 and g.sl == 0:
            del self.groups[c.group]

    def _activate(self, gid: int, n: int, out: list[Event]) -> None:
        g = self.groups.get(gid)
        if g is None:
            return
        g.filled += n
        for seq in (g.tp, g.sl):
            c = self.conds.get(seq) if seq else None
            if c is None:
                continue
            c.qty += n
            c.active = True
            out.append(self._ev(EventKind.ACTIVATED, c, other_id=g.entry, qty=c.qty))

    def _order_left(self, gid: int, out: list[Event]) -> None:
        if not gid:
            return
        g = self.groups.get(gid)
        if g is None:
            return
        g.entry = 0
        if g.filled == 0:
            for seq in (g.tp, g.sl):
                if seq and seq in self.conds:
                    self._cancel_cond(self.conds[seq], Reason.PARENT, False, out)
            self.groups.pop(gid, None)
        elif g.tp == 0 and g.sl == 0:
            del self.groups[gid]

    # -- batch ----------------------------------------------------------
    def process_commands(self, records) -> list[Event]:
        """Applies COMMAND_DTYPE-like records; rejections become REJECTED events."""
        out: list[Event] = []
        for r in records:
            kind = int(r["kind"])
            try:
                if kind == CommandKind.SUBMIT:
                    out += self._submit(int(r["order_id"]), int(r["owner"]), int(r["side"]), int(r["order_type"]),
                                        int(r["tif"]), int(r["stp"]), int(r["flags"]), int(r["qty"]), int(r["price"]),
                                        int(r["trigger_price"]), int(r["display_qty"]), int(r["expire_ts"]))
                elif kind == CommandKind.CANCEL:
                    out += self.cancel(int(r["order_id"]))
                elif kind == CommandKind.AMEND:
                    out += self.amend(int(r["order_id"]), int(r["price"]), int(r["qty"]))
                elif kind == CommandKind.MASS_CANCEL:
                    out += self.mass_cancel(int(r["owner"]))
                elif kind == CommandKind.ADVANCE_TIME:
                    out += self.advance_time(int(r["expire_ts"]))
                elif kind == CommandKind.OBSERVE_PRICE:
                    out += self.observe_price(int(r["price"]))
                elif kind == CommandKind.BRACKET:
                    out += self._bracket(int(r["order_id"]), int(r["owner"]), int(r["side"]), int(r["price"]),
                                         int(r["qty"]), int(r["tif"]), int(r["stp"]), int(r["flags"]),
                                         int(r["expire_ts"]), int(r["tp_id"]), int(r["tp_trigger"]),
                                         int(r["tp_price"]), int(r["sl_id"]), int(r["sl_trigger"]), int(r["sl_price"]))
                elif kind == CommandKind.OCO:
                    out += self._oco(int(r["owner"]), int(r["side"]), int(r["qty"]), int(r["stp"]),
                                     int(r["tp_id"]), int(r["tp_trigger"]), int(r["tp_price"]),
                                     int(r["sl_id"]), int(r["sl_trigger"]), int(r["sl_price"]))
                else:
                    raise Rejected(Reason.INVALID_COMMAND)
            except Rejected as e:
                oid, owner = {
                    CommandKind.SUBMIT: (r["order_id"], r["owner"]),
                    CommandKind.BRACKET: (r["order_id"], r["owner"]),
                    CommandKind.CANCEL: (r["order_id"], 0),
                    CommandKind.AMEND: (r["order_id"], 0),
                    CommandKind.MASS_CANCEL: (0, r["owner"]),
                    CommandKind.ADVANCE_TIME: (0, 0),
                    CommandKind.OBSERVE_PRICE: (0, 0),
                    CommandKind.OCO: (r["tp_id"], r["owner"]),
                }.get(kind, (r["order_id"], r["owner"]))
                out.append(Event(kind=EventKind.REJECTED, reason=e.reason, order_id=int(oid), owner=int(owner)))
        return out
