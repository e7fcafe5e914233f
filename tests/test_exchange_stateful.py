"""Random multi-account trading on the Rust exchange core and on the slow
reference ledger (tests/reference/exchange.py): after every step the same
result (order id or rejection reason), the same balances, holds and fees,
and conservation of every asset."""

import pytest

pytest.importorskip("lxdex._core")

from hypothesis import settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule  # noqa: E402

import lxdex  # noqa: E402
from lxdex import _core  # noqa: E402
from lxdex.enums import OrderType, Side, Stp, TimeInForce  # noqa: E402
from tests.reference.exchange import RefExchange, Rejected  # noqa: E402

N_ACCOUNTS, N_ASSETS = 3, 3
MARKETS = [  # base, quote, lot_units, tick_units, min_qty, min_notional, band, maker, taker
    (0, 1, 1_000, 10, 1, 0, 0, -2, 10),
    (2, 1, 100, 3, 2, 500, 2_000, 5, 25),
]

accounts = st.sampled_from([0, 1, 2] * 6 + [N_ACCOUNTS])  # now and then an unknown one
assets = st.sampled_from([0, 1, 2] * 4 + [N_ASSETS])
amounts = st.sampled_from([0, -1]) | st.integers(1, 300_000)
prices = st.integers(90, 110)


def outcome(fn):
    try:
        return ("ok", fn())
    except Rejected as e:
        return ("rejected", int(e.reason))
    except lxdex.OrderRejected as e:
        return ("rejected", int(e.reason))


class ExchangeMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.fast = _core.ExchangeCore()
        self.ref = RefExchange(lxdex.Book)
        for _ in range(N_ASSETS):
            assert self.fast.add_asset() == self.ref.add_asset()
        for m in MARKETS:
            assert self.fast.add_market(*m) == self.ref.add_market(*m)
        tiers = [(3_000, 0, 15), (9_000, -5, 5)]
        self.fast.set_fee_tiers(1, tiers)
        self.ref.set_fee_tiers(1, tiers)
        for a in range(N_ACCOUNTS):
            self.fast.add_account(), self.ref.add_account()
            for s in range(N_ASSETS):
                self.fast.deposit(a, s, 200_000)
                self.ref.deposit(a, s, 200_000)
        self.ids = []

    def both(self, fast, ref):
        f, r = outcome(fast), outcome(ref)
        if f[0] == "ok":
            f = ("ok", f[1][0] if isinstance(f[1], tuple) else None)
            r = ("ok", r[1] if isinstance(r[1], int) else None)
        assert f == r
        if f[0] == "ok" and isinstance(f[1], int):
            self.ids.append(f[1])

    @rule(a=accounts, s=assets, n=amounts)
    def deposit(self, a, s, n):
        self.both(lambda: self.fast.deposit(a, s, n), lambda: self.ref.deposit(a, s, n))

    @rule(a=accounts, s=assets, n=amounts)
    def withdraw(self, a, s, n):
        self.both(lambda: self.fast.withdraw(a, s, n), lambda: self.ref.withdraw(a, s, n))

    @rule(a=accounts, b=accounts, s=assets, n=amounts)
    def transfer(self, a, b, s, n):
        self.both(lambda: self.fast.transfer(a, b, s, n), lambda: self.ref.transfer(a, b, s, n))

    @rule(
        a=accounts, m=st.sampled_from([0, 1] * 8 + [2]), side=st.sampled_from([Side.BUY, Side.SELL]),
        qty=st.integers(1, 12) | st.just(0), price=prices, kind=st.integers(0, 6),
        tif=st.sampled_from([TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK]),
        stp=st.sampled_from(list(Stp)),
    )
    def place(self, a, m, side, qty, price, kind, tif, stp):
        self._place(a, m, side, qty, price, kind, tif, stp)

    # Orders are most of what an exchange sees: give placing more weight.
    @rule(a=accounts, m=st.sampled_from([0, 1]), side=st.sampled_from([Side.BUY, Side.SELL]),
          qty=st.integers(1, 8), price=prices, tif=st.sampled_from([TimeInForce.GTC, TimeInForce.IOC]))
    def place_limit(self, a, m, side, qty, price, tif):
        self._place(a, m, side, qty, price, 0, tif, Stp.NONE)

    @rule(a=accounts, m=st.sampled_from([0, 1]), side=st.sampled_from([Side.BUY, Side.SELL]),
          qty=st.integers(1, 8), price=prices, stp=st.sampled_from(list(Stp)))
    def place_crossing(self, a, m, side, qty, price, stp):
        self._place(a, m, side, qty, price, 0, TimeInForce.GTC, stp)

    def _place(self, a, m, side, qty, price, kind, tif, stp):
        args = dict(side=int(side), qty=qty, price=price, order_type=0, tif=int(tif), stp=int(stp))
        if kind == 1:
            args.update(price=0, order_type=OrderType.MARKET, tif=TimeInForce.IOC)
        elif kind == 2:
            args.update(order_type=OrderType.STOP_LIMIT, trigger_price=price, price=price + (3 if side == Side.BUY else -3), tif=0)
        elif kind == 3:
            args.update(order_type=OrderType.STOP_MARKET, trigger_price=price, price=0 if side == Side.SELL else 115, tif=TimeInForce.IOC)
        elif kind == 4:
            args.update(post_only=True, tif=0)
        elif kind == 5 and qty > 1:
            args.update(display_qty=1, tif=0)
        self.both(lambda: self.fast.place(a, m, **args), lambda: self.ref.place(a, m, **args))

    @rule(a=accounts, m=st.sampled_from([0, 1] * 8 + [2]), side=st.sampled_from([Side.BUY, Side.SELL]),
          amount=st.sampled_from([0, -1, 250_000]) | st.integers(1, 30_000) | st.integers(1, 30_000),
          protect=st.just(0) | prices, otype=st.sampled_from([OrderType.MARKET] * 12 + [OrderType.LIMIT]),
          tif=st.sampled_from([TimeInForce.IOC] * 6 + [TimeInForce.FOK] * 2 + [TimeInForce.GTC]),
          stp=st.sampled_from(list(Stp)))
    def place_quote(self, a, m, side, amount, protect, otype, tif, stp):
        """A market order sized by a quote amount (Binance's quoteOrderQty)."""
        args = dict(side=int(side), qty=0, price=protect, order_type=int(otype), tif=int(tif), stp=int(stp))
        self.both(lambda: self.fast.place(a, m, **args, quote_qty=amount),
                  lambda: self.ref.place(a, m, **args, quote_qty=amount))

    @rule(a=accounts, m=st.sampled_from([0, 1] * 8 + [2]), side=st.sampled_from([Side.BUY, Side.SELL]),
          qty=st.integers(1, 10) | st.just(0), lo=st.integers(92, 104), gap=st.integers(1, 8) | st.just(0),
          tp_price=st.just(0) | prices, sl_price=st.just(0) | prices, stp=st.sampled_from(list(Stp)))
    def place_oco(self, a, m, side, qty, lo, gap, tp_price, sl_price, stp):
        # A sell pair takes profit above and stops below; a buy pair the other way round (gap 0: invalid).
        tp, sl = (lo + gap, lo) if side == Side.SELL else (lo, lo + gap)
        args = (a, m, int(side), qty, tp, tp_price, sl, sl_price, int(stp))
        n = len(self.ids)
        self.both(lambda: self.fast.place_oco(*args), lambda: self.ref.place_oco(*args))
        if len(self.ids) > n:
            self.ids.append(self.ids[-1] + 1)

    @rule(a=accounts, m=st.sampled_from([0, 1] * 8 + [2]), side=st.sampled_from([Side.BUY, Side.SELL]),
          qty=st.integers(1, 10) | st.just(0), price=st.just(0) | st.integers(96, 104), dlo=st.integers(0, 6),
          dhi=st.integers(1, 6), tp_price=st.just(0) | prices, sl_price=st.just(0) | prices,
          tif=st.sampled_from([TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK]), stp=st.sampled_from(list(Stp)),
          post_only=st.booleans())
    def place_bracket(self, a, m, side, qty, price, dlo, dhi, tp_price, sl_price, tif, stp, post_only):
        # Exits of a buy entry sell: take profit above the entry, stop below it (dlo 0: invalid).
        mid = price or 100
        tp, sl = (mid + dhi, mid - dlo) if side == Side.BUY else (mid - dlo, mid + dhi)
        if price == 0:
            tif, post_only = TimeInForce.IOC, False
        args = (a, m, int(side), qty, price, tp, tp_price, sl, sl_price, int(tif), int(stp), post_only)
        n = len(self.ids)
        self.both(lambda: self.fast.place_bracket(*args), lambda: self.ref.place_bracket(*args))
        if len(self.ids) > n:
            self.ids += [self.ids[-1] + 1, self.ids[-1] + 2]

    @rule(a=accounts, pick=st.integers(0, 10_000))
    def cancel(self, a, pick):
        oid = self.ids[pick % len(self.ids)] if self.ids else 1
        self.both(lambda: self.fast.cancel(a, oid), lambda: self.ref.cancel(a, oid))

    @rule(a=accounts, pick=st.integers(0, 10_000), price=st.one_of(st.just(0), prices), qty=st.integers(0, 12))
    def amend(self, a, pick, price, qty):
        oid = self.ids[pick % len(self.ids)] if self.ids else 1
        self.both(lambda: self.fast.amend(a, oid, price, qty), lambda: self.ref.amend(a, oid, price, qty))

    @rule(a=accounts)
    def cancel_all(self, a):
        self.both(lambda: self.fast.cancel_all(a), lambda: self.ref.cancel_all(a))

    @rule(m=st.integers(0, 1), price=prices)
    def observe(self, m, price):
        self.both(lambda: self.fast.observe_price(m, price), lambda: self.ref.observe_price(m, price))

    @rule(dt=st.sampled_from([0, 1_000, 5_000, 86_400_000, 10 * 86_400_000, 25 * 86_400_000]))
    def advance(self, dt):
        ts = self.ref.now + dt
        self.both(lambda: self.fast.advance_time(ts), lambda: self.ref.advance_time(ts))

    @rule(m=st.integers(0, 1), status=st.sampled_from([0, 0, 0, 0, 0, 1, 2, 3]))
    def status(self, m, status):
        self.both(lambda: self.fast.set_market_status(m, status), lambda: self.ref.set_market_status(m, status))

    @invariant()
    def same_money(self):
        for a in range(N_ACCOUNTS):
            for s in range(N_ASSETS):
                assert self.fast.balance(a, s) == tuple(self.ref.bal.get((a, s), [0, 0])), (a, s)
        for s in range(N_ASSETS):
            assert self.fast.fees(s) == self.ref.fees[s]
            for a in range(N_ACCOUNTS):
                assert self.fast.volume_30d(a, s) == self.ref.volume_30d(a, s)
        for oid, o in self.ref.orders.items():
            assert self.fast.order_hold(oid) == (o["account"], o["market"], o["asset"], o["held"])
        self.ref.check_conservation()
        self.fast.check_invariants()


ExchangeMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=50, deadline=None)
TestExchangeAgainstReference = ExchangeMachine.TestCase
