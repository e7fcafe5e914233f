"""A slow, obvious model of the exchange ledger (docs/exchange.md).

It decides holds, settles fills and charges fees from the rules in the doc,
written independently of the Rust core; matching itself comes from a book
object given to it (the fast book, whose matching is checked separately
against tests/reference/book.py), so this model checks the money, not the
matching. Plain dicts, Python ints, no cleverness.
"""

from __future__ import annotations

from lxdex.enums import EventKind, OrderType, Reason, Side, Stp

MARKET_TYPES = {OrderType.MARKET, OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET, OrderType.TRAILING_STOP}
CONDITIONAL = {OrderType.STOP_MARKET, OrderType.STOP_LIMIT, OrderType.TAKE_PROFIT_MARKET,
               OrderType.TAKE_PROFIT_LIMIT, OrderType.TRAILING_STOP}


class Rejected(Exception):
    def __init__(self, reason: Reason):
        super().__init__(reason.name)
        self.reason = reason


def ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


def fee(notional: int, bps: int) -> int:
    """Fees round up against the payer; rebates (bps < 0) round toward zero."""
    if bps >= 0:
        return ceil_div(notional * bps, 10_000)
    return -((notional * -bps) // 10_000)


class RefExchange:
    def __init__(self, book_factory):
        self.book_factory = book_factory
        self.n_assets = 0
        self.markets: list[dict] = []
        self.accounts: list[dict] = []  # {"suspended": bool}
        self.bal: dict[tuple[int, int], list[int]] = {}  # (account, asset) -> [available, held]
        self.fees: dict[int, int] = {}
        self.deposited: dict[int, int] = {}
        self.orders: dict[int, dict] = {}
        self.next_id = 1
        self.now = 0
        self.traded: list[tuple[int, int, int, int]] = []  # (account, quote, day, notional)
        self.tiered_quotes: set[int] = set()  # volume counts only in these quote assets
        # Bracket and OCO groups by group id: {"entry": id or None, "tp", "sl", "max_per_lot", "deficit"}.
        self.groups: dict[int, dict] = {}

    # -- registry and money ---------------------------------------------
    def add_asset(self) -> int:
        self.n_assets += 1
        self.fees[self.n_assets - 1] = 0
        self.deposited[self.n_assets - 1] = 0
        return self.n_assets - 1

    def add_market(self, base, quote, lot_units, tick_units, min_qty=1, min_notional=0,
                   band_bps=0, maker_bps=0, taker_bps=0) -> int:
        self.markets.append(dict(base=base, quote=quote, lot_units=lot_units, tick_units=tick_units,
                                 min_qty=min_qty, min_notional=min_notional, band_bps=band_bps,
                                 maker_bps=maker_bps, taker_bps=taker_bps, status=0,
                                 book=self.book_factory()))
        return len(self.markets) - 1

    def set_fee_tiers(self, market, tiers):
        m = self.markets[market]
        rates = [t[2] for t in tiers] + [m["taker_bps"]]
        ok = all(a[0] < b[0] for a, b in zip(tiers, tiers[1:])) and all(
            v > 0 and 0 <= tk <= m["taker_bps"] and mk <= m["maker_bps"] and mk >= -min(rates)
            for v, mk, tk in tiers
        ) and m["maker_bps"] >= -min(rates)
        if not ok:
            raise Rejected(Reason.INVALID_MARKET_CONFIG)
        m["tiers"] = list(tiers)
        if tiers:
            self.tiered_quotes.add(m["quote"])

    def volume_30d(self, account, quote) -> int:
        today = self.now // 86_400_000
        return sum(n for a, q, d, n in self.traded if a == account and q == quote and today - 29 <= d <= today)

    def rates(self, m, account) -> tuple[int, int]:
        maker, taker = m["maker_bps"], m["taker_bps"]
        v = self.volume_30d(account, m["quote"])
        for min_volume, mk, tk in m.get("tiers", []):
            if min_volume <= v:
                maker, taker = mk, tk
        return maker, taker

    def add_account(self) -> int:
        self.accounts.append({"suspended": False})
        return len(self.accounts) - 1

    def _b(self, account: int, asset: int) -> list[int]:
        return self.bal.setdefault((account, asset), [0, 0])

    def _check(self, accounts: list[int], asset: int, amount: int) -> None:
        """The account(s), then the asset, then the amount (docs/exchange.md)."""
        for account in accounts:
            if not 0 <= account < len(self.accounts):
                raise Rejected(Reason.UNKNOWN_ACCOUNT)
        if not 0 <= asset < self.n_assets:
            raise Rejected(Reason.UNKNOWN_ASSET)
        if amount <= 0:
            raise Rejected(Reason.INVALID_AMOUNT)

    def deposit(self, account, asset, amount):
        self._check([account], asset, amount)
        if self.deposited[asset] + amount > 2**63 - 1:
            raise Rejected(Reason.OVERFLOW)
        self._b(account, asset)[0] += amount
        self.deposited[asset] += amount

    def withdraw(self, account, asset, amount):
        self._check([account], asset, amount)
        if self.bal.get((account, asset), [0, 0])[0] < amount:
            raise Rejected(Reason.INSUFFICIENT_FUNDS)
        self._b(account, asset)[0] -= amount
        self.deposited[asset] -= amount

    def transfer(self, src, dst, asset, amount):
        self._check([src, dst], asset, amount)
        if self.bal.get((src, asset), [0, 0])[0] < amount:
            raise Rejected(Reason.INSUFFICIENT_FUNDS)
        self._b(src, asset)[0] -= amount
        self._b(dst, asset)[0] += amount

    # -- orders ---------------------------------------------------------
    def buy_per_lot(self, m: dict, price: int) -> int:
        n = price * m["tick_units"]
        return n + fee(n, max(m["taker_bps"], m["maker_bps"], 0))

    def max_taker_bps(self, m, account) -> int:
        """The highest taker rate the account can pay during one command: its tier's now, or that of a tier
        its volume may still reach."""
        _, now = self.rates(m, account)
        v = self.volume_30d(account, m["quote"])
        return max([now, 0] + [tk for min_volume, _, tk in m.get("tiers", []) if min_volume > v])

    def quote_lots(self, m, account, side, amount, price, stp) -> int:
        """The whole lots a market order of `amount` quote units takes: the best lots first, from each maker
        order the most that fit, until an order cannot be taken whole. A buy's fill of n lots at p costs
        n x p x tick_units plus its fee at the highest taker rate, rounded up once for a plain maker order
        (one fill) and per lot for an iceberg (a fill per slice); a sell's is n x p x tick_units."""
        bps = self.max_taker_bps(m, account) if side == Side.BUY else 0

        def cost(p, n, iceberg):
            unit = p * m["tick_units"]
            if side == Side.SELL:
                return unit * n
            return (unit + fee(unit, bps)) * n if iceberg else unit * n + fee(unit * n, bps)

        lots, spent = 0, 0
        for _, owner, o_side, o_price, vis, hid in m["book"].l3():
            if o_side == side:
                continue
            if price > 0 and (o_price > price if side == Side.BUY else o_price < price):
                break
            if stp != Stp.NONE and owner == account:
                continue
            n = vis + hid
            while n > 0 and spent + cost(o_price, n, hid > 0) > amount:
                n -= 1
            lots, spent = lots + n, spent + (cost(o_price, n, hid > 0) if n else 0)
            if n < vis + hid:
                break
        return lots

    def place(self, account, market, side, qty, price=0, order_type=0, tif=0, stp=0,
              post_only=False, display_qty=0, trigger_price=0, expire_ts=0, quote_qty=0):
        if not 0 <= market < len(self.markets):
            raise Rejected(Reason.UNKNOWN_MARKET)
        m = self.markets[market]
        if not (m["status"] == 0 or (m["status"] == 2 and post_only)):
            raise Rejected(Reason.MARKET_NOT_TRADING)
        if not 0 <= account < len(self.accounts):
            raise Rejected(Reason.UNKNOWN_ACCOUNT)
        if self.accounts[account]["suspended"]:
            raise Rejected(Reason.ACCOUNT_SUSPENDED)
        book = m["book"]
        oid = self.next_id
        if quote_qty:
            # Sized by a quote amount (docs/exchange.md): a market order of the lots the amount covers.
            if order_type != OrderType.MARKET:
                raise Rejected(Reason.INVALID_FLAGS)
            if quote_qty <= 0:
                raise Rejected(Reason.INVALID_AMOUNT)
            try:
                type(book).restore(book.snapshot()).submit(oid, account, side, 1, price, order_type, tif, stp,
                                                           post_only, display_qty, trigger_price, False, expire_ts)
            except Exception as e:  # noqa: BLE001 - the book's rejection
                raise Rejected(Reason(e.reason)) from None
            qty = self.quote_lots(m, account, side, quote_qty, price, stp)
            if qty < m["min_qty"]:
                raise Rejected(Reason.BELOW_MIN_QUANTITY)
        # Let the book validate the order on a copy first (it changes nothing
        # on rejection, but we must not hold funds for an invalid order).
        probe = type(book).restore(book.snapshot())
        try:
            probe.submit(oid, account, side, qty, price, order_type, tif, stp, post_only,
                         display_qty, trigger_price, False, expire_ts)
        except Exception as e:  # noqa: BLE001 - the book's rejection
            raise Rejected(Reason(e.reason)) from None
        if qty < m["min_qty"]:
            raise Rejected(Reason.BELOW_MIN_QUANTITY)
        if price > 0:
            if price * qty * m["tick_units"] < m["min_notional"]:
                raise Rejected(Reason.BELOW_MIN_NOTIONAL)
            last = book.last_price
            if m["band_bps"] > 0 and last is not None:
                if abs(price - last) * 10_000 > last * m["band_bps"]:
                    raise Rejected(Reason.PRICE_OUT_OF_BAND)
        if side == Side.SELL:
            asset, per_lot = m["base"], m["lot_units"]
            held = qty * per_lot
        elif quote_qty:
            asset, per_lot, held = m["quote"], 0, quote_qty  # the whole amount, until the order ends
        elif price > 0:
            asset, per_lot = m["quote"], self.buy_per_lot(m, price)
            held = qty * per_lot
        elif order_type in CONDITIONAL:
            raise Rejected(Reason.PROTECTION_REQUIRED)
        else:
            asset, per_lot = m["quote"], 0
            held, need = 0, qty
            for o_id, owner, o_side, o_price, vis, hid in book.l3():
                if o_side != Side.SELL or need == 0:
                    continue
                if stp != Stp.NONE and owner == account:
                    continue
                n = min(need, vis + hid)
                need -= n
                held += n * self.buy_per_lot(m, o_price)
        if held > 2**63 - 1 or self.bal.get((account, asset), [0, 0])[0] < held:
            raise Rejected(Reason.INSUFFICIENT_FUNDS)
        if held:
            b = self._b(account, asset)
            b[0] -= held
            b[1] += held
        self.orders[oid] = dict(account=account, market=market, side=side, asset=asset, held=held,
                                per_lot=per_lot)
        self.next_id += 1
        events = book.submit(oid, account, side, qty, price, order_type, tif, stp, post_only,
                             display_qty, trigger_price, False, expire_ts)
        self._settle(m, events)
        return oid

    # -- linked orders (docs/exchange.md, "Linked orders") ------------------
    def _linked_checks(self, account, market):
        if not 0 <= market < len(self.markets):
            raise Rejected(Reason.UNKNOWN_MARKET)
        m = self.markets[market]
        if m["status"] != 0:
            raise Rejected(Reason.MARKET_NOT_TRADING)
        if not 0 <= account < len(self.accounts):
            raise Rejected(Reason.UNKNOWN_ACCOUNT)
        if self.accounts[account]["suspended"]:
            raise Rejected(Reason.ACCOUNT_SUSPENDED)
        return m

    def _price_rules(self, m, qty, price):
        if price * qty * m["tick_units"] < m["min_notional"]:
            raise Rejected(Reason.BELOW_MIN_NOTIONAL)
        last = m["book"].last_price
        if m["band_bps"] > 0 and last is not None and abs(price - last) * 10_000 > last * m["band_bps"]:
            raise Rejected(Reason.PRICE_OUT_OF_BAND)

    def _leg_rules(self, m, qty, exit_side, tp_price, sl_price):
        """Minimum quantity, the legs' price rules, and the legs' per-lot holds."""
        if qty < m["min_qty"]:
            raise Rejected(Reason.BELOW_MIN_QUANTITY)
        for price in (tp_price, sl_price):
            if price > 0:
                self._price_rules(m, qty, price)
        if exit_side == Side.SELL:
            return m["lot_units"], m["lot_units"]
        if tp_price == 0 or sl_price == 0:
            raise Rejected(Reason.PROTECTION_REQUIRED)
        return self.buy_per_lot(m, tp_price), self.buy_per_lot(m, sl_price)

    def _take(self, account, asset, amount):
        if amount > 2**63 - 1 or self.bal.get((account, asset), [0, 0])[0] < amount:
            raise Rejected(Reason.INSUFFICIENT_FUNDS)

    def place_oco(self, account, market, side, qty, tp_trigger, tp_price, sl_trigger, sl_price, stp=0):
        """Both legs wait on `side`; the pair holds qty x the larger leg's per-lot hold, once."""
        m = self._linked_checks(account, market)
        tp, sl = self.next_id, self.next_id + 1
        probe = type(m["book"]).restore(m["book"].snapshot())
        try:
            probe.oco(account, side, qty, tp, tp_trigger, sl, sl_trigger, tp_price, sl_price, stp)
        except Exception as e:  # noqa: BLE001 - the book's rejection
            raise Rejected(Reason(e.reason)) from None
        tp_lot, sl_lot = self._leg_rules(m, qty, side, tp_price, sl_price)
        asset = m["quote"] if side == Side.BUY else m["base"]
        self._take(account, asset, qty * max(tp_lot, sl_lot))
        for oid, per_lot in ((tp, tp_lot), (sl, sl_lot)):
            self.orders[oid] = dict(account=account, market=market, side=side, asset=asset, held=0, per_lot=per_lot)
        self.groups[tp] = dict(entry=None, tp=tp, sl=sl, max_per_lot=max(tp_lot, sl_lot), deficit=0)
        self.next_id += 2
        events = m["book"].oco(account, side, qty, tp, tp_trigger, sl, sl_trigger, tp_price, sl_price, stp)
        self._settle(m, events)
        return tp

    def place_bracket(self, account, market, side, qty, price, tp_trigger, tp_price, sl_trigger, sl_price,
                      tif=0, stp=0, post_only=False, expire_ts=0):
        """The entry holds as an ordinary order; the exits hold, per filled entry lot, the larger leg's
        per-lot hold; per unfilled lot, what that exceeds what a fill of it brings at least (held at once)."""
        m = self._linked_checks(account, market)
        entry, tp, sl = self.next_id, self.next_id + 1, self.next_id + 2
        probe = type(m["book"]).restore(m["book"].snapshot())
        try:
            probe.bracket(entry, account, side, qty, price, tp, tp_trigger, sl, sl_trigger, tp_price, sl_price, tif,
                          stp, post_only, expire_ts)
        except Exception as e:  # noqa: BLE001
            raise Rejected(Reason(e.reason)) from None
        exit_side = Side.SELL if side == Side.BUY else Side.BUY
        tp_lot, sl_lot = self._leg_rules(m, qty, exit_side, tp_price, sl_price)
        top = max(tp_lot, sl_lot)
        if side == Side.BUY:
            brings = m["lot_units"]
        elif price > 0:
            n = price * m["tick_units"]
            brings = n - fee(n, max(m["taker_bps"], m["maker_bps"], 0))
        else:
            brings = 0
        deficit = max(top - brings, 0)
        # The entry: the ordinary rules (price rules, then its hold).
        if price > 0:
            self._price_rules(m, qty, price)
        if side == Side.SELL:
            asset, per_lot = m["base"], m["lot_units"]
        elif price > 0:
            asset, per_lot = m["quote"], self.buy_per_lot(m, price)
        else:
            asset, per_lot = m["quote"], 0
        if per_lot:
            held = qty * per_lot
        else:
            held, need = 0, qty
            for _, owner, o_side, o_price, vis, hid in m["book"].l3():
                if o_side == Side.SELL and need and not (stp != Stp.NONE and owner == account):
                    n = min(need, vis + hid)
                    need -= n
                    held += n * self.buy_per_lot(m, o_price)
        if held > 2**63 - 1 or qty * top > 2**63 - 1:
            raise Rejected(Reason.INSUFFICIENT_FUNDS)
        exit_asset = m["quote"] if exit_side == Side.BUY else m["base"]
        self._take(account, asset, held)
        self._take(account, exit_asset, qty * deficit)  # the other asset than the entry's
        b = self._b(account, asset)
        b[0] -= held
        b[1] += held
        self.orders[entry] = dict(account=account, market=market, side=side, asset=asset, held=held, per_lot=per_lot)
        for oid, leg_lot in ((tp, tp_lot), (sl, sl_lot)):
            self.orders[oid] = dict(account=account, market=market, side=exit_side, asset=exit_asset, held=0,
                                    per_lot=leg_lot)
        self.groups[entry] = dict(entry=entry, tp=tp, sl=sl, max_per_lot=top, deficit=deficit)
        self.next_id += 3
        events = m["book"].bracket(entry, account, side, qty, price, tp, tp_trigger, sl, sl_trigger, tp_price,
                                   sl_price, tif, stp, post_only, expire_ts)
        self._settle(m, events)
        return entry

    def _group_of(self, order_id):
        for gid, g in self.groups.items():
            if order_id in (g["entry"], g["tp"], g["sl"]):
                return gid, g
        return None, None

    def _rehold(self) -> None:
        """After a command: every live order holds what the rules say for the state it is in. A group's
        reservation is on its carrier leg (the larger per-lot hold, take-profit on a tie), the other leg holds 0;
        any other order with a per-lot hold holds remaining x per lot."""
        if not self.groups:
            return
        remaining = {}
        for m in self.markets:
            for oid, _, _, _, vis, hid in m["book"].l3():
                remaining[oid] = vis + hid
            for oid, *_, qty, _active in m["book"].pending():
                remaining[oid] = qty
        want = {}
        for g in self.groups.values():
            tp, sl = self.orders[g["tp"]], self.orders[g["sl"]]
            carrier, other = (g["sl"], g["tp"]) if sl["per_lot"] > tp["per_lot"] else (g["tp"], g["sl"])
            want[carrier] = remaining[g["tp"]] * g["max_per_lot"]
            if g["entry"] is not None:
                want[carrier] += remaining[g["entry"]] * g["deficit"]
            want[other] = 0
        for oid, o in self.orders.items():
            need = want.get(oid, remaining[oid] * o["per_lot"] if o["per_lot"] else o["held"])
            self._set_hold(o, need)

    def _set_hold(self, o: dict, need: int) -> None:
        b = self._b(o["account"], o["asset"])
        b[0] -= need - o["held"]
        b[1] += need - o["held"]
        o["held"] = need

    def cancel(self, account, order_id):
        o = self.orders.get(order_id)
        if o is None or o["account"] != account:
            raise Rejected(Reason.UNKNOWN_ORDER)
        m = self.markets[o["market"]]
        self._settle(m, m["book"].cancel(order_id))

    def amend(self, account, order_id, price, qty):
        o = self.orders.get(order_id)
        if o is None or o["account"] != account:
            raise Rejected(Reason.UNKNOWN_ORDER)
        linked = self._group_of(order_id)[0] is not None
        if self.accounts[account]["suspended"]:
            raise Rejected(Reason.ACCOUNT_SUSPENDED)
        m = self.markets[o["market"]]
        if m["status"] != 0:
            raise Rejected(Reason.MARKET_NOT_TRADING)
        book = m["book"]
        probe = type(book).restore(book.snapshot())
        try:
            probe.amend(order_id, price, qty)
        except Exception as e:  # noqa: BLE001
            raise Rejected(Reason(e.reason)) from None
        resting = {r[0]: r for r in book.l3()}[order_id]
        new_price = price or resting[3]
        new_qty = qty or resting[4] + resting[5]
        if linked:
            raise Rejected(Reason.NOT_AMENDABLE)
        if new_qty < m["min_qty"]:
            raise Rejected(Reason.BELOW_MIN_QUANTITY)
        per_lot = o["per_lot"] if o["side"] == Side.SELL else self.buy_per_lot(m, new_price)
        need = new_qty * per_lot
        extra = need - o["held"]
        b = self._b(account, o["asset"])
        if extra > 0 and b[0] < extra:
            raise Rejected(Reason.INSUFFICIENT_FUNDS)
        events = book.amend(order_id, price, qty)
        b[0] -= extra
        b[1] += extra
        o["held"], o["per_lot"] = need, per_lot
        self._settle(m, events)

    def cancel_all(self, account):
        if not 0 <= account < len(self.accounts):
            raise Rejected(Reason.UNKNOWN_ACCOUNT)
        for mi in sorted({o["market"] for o in self.orders.values() if o["account"] == account}):
            m = self.markets[mi]
            self._settle(m, m["book"].mass_cancel(account))

    def observe_price(self, market, price):
        if not 0 <= market < len(self.markets):
            raise Rejected(Reason.UNKNOWN_MARKET)
        m = self.markets[market]
        if m["status"] != 0:
            raise Rejected(Reason.MARKET_NOT_TRADING)
        try:
            events = m["book"].observe_price(price)
        except Exception as e:  # noqa: BLE001
            raise Rejected(Reason(e.reason)) from None
        self._settle(m, events)

    def advance_time(self, ts):
        if ts < self.now:
            raise Rejected(Reason.INVALID_TIME)
        self.now = ts
        for m in self.markets:
            self._settle(m, m["book"].advance_time(ts))

    def set_market_status(self, market, status):
        m = self.markets[market]
        m["status"] = status
        if status == 3:
            owners = sorted({r[1] for r in m["book"].l3()} | {p[1] for p in m["book"].pending()})
            for owner in owners:
                self._settle(m, m["book"].mass_cancel(owner))

    # -- settlement -----------------------------------------------------
    def _release_to(self, order_id: int, remaining: int) -> None:
        o = self.orders.get(order_id)
        if o is None:
            return
        gid, g = self._group_of(order_id)
        if g is not None:
            # sized by `_rehold` at the end of the command; gone: its hold is released
            if remaining == 0:
                self._set_hold(o, 0)
                del self.orders[order_id]
                if g["entry"] == order_id:
                    g["entry"] = None
                else:
                    del self.groups[gid]  # a leg went: the book cancels the other in the same step
            return
        if remaining == 0:
            keep = 0
        elif o["per_lot"] == 0:
            keep = o["held"]
        else:
            keep = remaining * o["per_lot"]
        b = self._b(o["account"], o["asset"])
        excess = o["held"] - keep
        assert excess >= 0, (order_id, o, remaining)
        b[1] -= excess
        b[0] += excess
        o["held"] = keep
        if remaining == 0:
            del self.orders[order_id]

    def _settle(self, m: dict, events) -> None:
        self._settle_events(m, events)
        self._rehold()

    def _settle_events(self, m: dict, events) -> None:
        for e in events:
            if e.kind == EventKind.TRIGGERED:
                gid, g = self._group_of(e.order_id)
                if g is not None:
                    # the triggered leg is an ordinary order from now on, holding its own need
                    del self.groups[gid]
                    o = self.orders[e.order_id]
                    self._set_hold(o, e.qty * o["per_lot"])
                continue
            if e.kind == EventKind.FILL:
                notional = e.price * e.qty * m["tick_units"]
                if e.side == Side.BUY:
                    buyer, seller, brem, srem = e.order_id, e.other_id, e.remaining, e.other_remaining
                else:
                    buyer, seller, brem, srem = e.other_id, e.order_id, e.other_remaining, e.remaining
                bo, so = self.orders[buyer], self.orders[seller]
                b_maker, b_taker = self.rates(m, bo["account"])
                s_maker, s_taker = self.rates(m, so["account"])
                bfee = fee(notional, b_taker if e.side == Side.BUY else b_maker)
                sfee = fee(notional, s_maker if e.side == Side.BUY else s_taker)
                if m["quote"] in self.tiered_quotes:
                    day = self.now // 86_400_000
                    self.traded.append((bo["account"], m["quote"], day, notional))
                    self.traded.append((so["account"], m["quote"], day, notional))
                base = e.qty * m["lot_units"]
                # base: seller's hold -> buyer
                self._b(so["account"], m["base"])[1] -= base
                self._b(bo["account"], m["base"])[0] += base
                so["held"] -= base
                # quote: buyer's hold -> seller (minus the seller's fee) and fees
                paid = notional + max(bfee, 0)
                self._b(bo["account"], m["quote"])[1] -= paid
                bo["held"] -= paid
                self._b(so["account"], m["quote"])[0] += notional - sfee
                if bfee < 0:
                    self._b(bo["account"], m["quote"])[0] += -bfee
                self.fees[m["quote"]] += bfee + sfee
                self._release_to(buyer, brem)
                self._release_to(seller, srem)
            elif e.kind == EventKind.CANCELLED:
                self._release_to(e.order_id, e.remaining)

    # -- checks ---------------------------------------------------------
    def check_conservation(self) -> None:
        for asset in range(self.n_assets):
            total = sum(sum(v) for (a, s), v in self.bal.items() if s == asset)
            assert total + self.fees[asset] == self.deposited[asset], asset
        assert all(v[0] >= 0 and v[1] >= 0 for v in self.bal.values())
        assert all(f >= 0 for f in self.fees.values())
