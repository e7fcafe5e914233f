"""The Python Exchange facade: exact decimal conversion, clear errors,
settlement with fees, holds released, conservation."""

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("lxdex._core")

from lxdex import Exchange, OrderRejected, Reason  # noqa: E402


@pytest.fixture
def ex():
    ex = Exchange()
    ex.add_asset("BTC", 8)
    ex.add_asset("USD", 6)
    ex.add_market("BTC-USD", base="BTC", quote="USD", tick_size="0.01", lot_size="0.0001",
                  min_qty="0.0001", min_notional="1", maker_bps=-1, taker_bps=5)
    return ex


def funded(ex):
    a, b = ex.create_account(), ex.create_account()
    ex.deposit(a, "BTC", "2")
    ex.deposit(b, "USD", "100000")
    return a, b


def test_trade_settles_with_fees_and_conserves(ex):
    a, b = funded(ex)
    sell = ex.place(a, "BTC-USD", "sell", qty="1", price="30000.00")
    assert ex.balance(a, "BTC") == (Decimal("1"), Decimal("1"))
    ex.place(b, "BTC-USD", "buy", qty="0.5", price="30500")
    # 15000 USD notional: taker pays 5 bps (7.5), maker earns 1 bp (1.5).
    assert ex.balance(b, "USD") == (Decimal("84992.5"), Decimal("0"))
    assert ex.balance(a, "USD") == (Decimal("15001.5"), Decimal("0"))
    assert ex.balance(b, "BTC") == (Decimal("0.5"), Decimal("0"))
    assert ex.fees("USD") == Decimal("6")
    ex.cancel(a, sell.order_id)
    assert ex.balance(a, "BTC") == (Decimal("1.5"), Decimal("0"))
    total_usd = sum(sum(ex.balance(x, "USD")) for x in (a, b)) + ex.fees("USD")
    assert total_usd == Decimal("100000")
    ex.core.check_invariants()


def test_off_grid_values_are_rejected_naming_the_field(ex):
    a, _ = funded(ex)
    with pytest.raises(OrderRejected, match="price: 30000.001 is not a multiple of 0.01") as e:
        ex.place(a, "BTC-USD", "sell", qty="1", price="30000.001")
    assert e.value.reason == Reason.OFF_TICK_GRID
    with pytest.raises(OrderRejected, match="qty: 0.00001 is not a multiple of 0.0001"):
        ex.place(a, "BTC-USD", "sell", qty="0.00001", price="30000")
    with pytest.raises(OrderRejected, match="not a float"):
        ex.deposit(a, "BTC", 0.1)
    with pytest.raises(OrderRejected, match="not a decimal number"):
        ex.deposit(a, "BTC", "lots")
    with pytest.raises(OrderRejected, match="market: no market 'ETH-USD'"):
        ex.place(a, "ETH-USD", "sell", qty="1", price="1")
    assert ex.balance(a, "BTC") == (Decimal("2"), Decimal("0"))


def test_insufficient_funds_changes_nothing(ex):
    a, b = funded(ex)
    with pytest.raises(OrderRejected) as e:
        ex.place(b, "BTC-USD", "buy", qty="10", price="30000")
    assert e.value.reason == Reason.INSUFFICIENT_FUNDS
    with pytest.raises(OrderRejected) as e:
        ex.withdraw(a, "BTC", "2.00000001")
    assert e.value.reason == Reason.INSUFFICIENT_FUNDS
    assert ex.balance(b, "USD") == (Decimal("100000"), Decimal("0"))
    assert ex.balance(a, "BTC") == (Decimal("2"), Decimal("0"))


def test_market_config_must_fit_the_assets_decimals():
    ex = Exchange()
    ex.add_asset("BTC", 8)
    ex.add_asset("USD", 2)
    with pytest.raises(ValueError, match="tick_size: 0.01 x lot_size 0.0001 is finer than USD's 2 decimals"):
        ex.add_market("BTC-USD", base="BTC", quote="USD", tick_size="0.01", lot_size="0.0001")
    with pytest.raises(ValueError, match="lot_size: 1E-9 is finer than BTC's 8 decimals"):
        ex.add_market("BTC-USD", base="BTC", quote="USD", tick_size="1", lot_size="0.000000001")
    with pytest.raises(ValueError, match="symbol"):
        ex.add_market("btc/usd", base="BTC", quote="USD", tick_size="1", lot_size="1")


def test_suspended_accounts_cannot_trade_but_can_cancel(ex):
    a, _ = funded(ex)
    placed = ex.place(a, "BTC-USD", "sell", qty="1", price="30000")
    ex.suspend(a)
    with pytest.raises(OrderRejected) as e:
        ex.place(a, "BTC-USD", "sell", qty="0.1", price="30000")
    assert e.value.reason == Reason.ACCOUNT_SUSPENDED
    ex.cancel(a, placed.order_id)
    assert ex.balance(a, "BTC") == (Decimal("2"), Decimal("0"))


def test_another_accounts_order_is_unknown(ex):
    a, b = funded(ex)
    placed = ex.place(a, "BTC-USD", "sell", qty="1", price="30000")
    with pytest.raises(OrderRejected) as e:
        ex.cancel(b, placed.order_id)
    assert e.value.reason == Reason.UNKNOWN_ORDER
    assert ex.depth("BTC-USD") == ([], [(Decimal("30000.00"), Decimal("1.0000"), 1)])


def test_market_data_from_trades(ex):
    a, b = funded(ex)
    ex.advance_time(1_700_000_000_000)
    ex.place(a, "BTC-USD", "sell", qty="1", price="30000")
    ex.place(b, "BTC-USD", "buy", qty="0.25", price="30000")
    ex.advance_time(1_700_000_061_000)
    ex.place(b, "BTC-USD", "buy", qty="0.25", price="30000")
    trades = ex.trades("BTC-USD")
    assert [(t["id"], t["price"], t["qty"], t["taker_side"]) for t in trades] == [
        (1, Decimal("30000.00"), Decimal("0.2500"), "buy"),
        (2, Decimal("30000.00"), Decimal("0.2500"), "buy"),
    ]
    one_minute = ex.candles("BTC-USD", "1m")
    assert len(one_minute) == 2 and one_minute[0]["volume"] == Decimal("0.25")
    (hour,) = ex.candles("BTC-USD", "1h")
    assert hour["volume"] == Decimal("0.5") and hour["trades"] == 2
    assert hour["quote_volume"] == Decimal("15000")
    t = ex.ticker("BTC-USD")
    assert t["last"] == Decimal("30000") and t["volume"] == Decimal("0.5") and t["change_pct"] == 0
    update_id, bids, asks = ex.depth_snapshot("BTC-USD")
    assert asks == [(Decimal("30000.00"), Decimal("0.5000"), 1)] and update_id == 3
    with pytest.raises(ValueError, match="interval"):
        ex.candles("BTC-USD", "2m")


def test_open_orders_and_recent_fills(ex):
    a, b = funded(ex)
    sell = ex.place(a, "BTC-USD", "sell", qty="1", price="30000")
    stop = ex.place(a, "BTC-USD", "sell", qty="0.5", price=None, order_type="stop_market",
                    trigger_price="25000")
    ex.place(b, "BTC-USD", "buy", qty="0.25", price="30000")
    rows = ex.open_orders(a)
    assert [(r["order_id"], r["status"]) for r in rows] == [(sell.order_id, "resting"), (stop.order_id, "pending")]
    assert rows[0]["qty"] == Decimal("0.75") and rows[1]["trigger_price"] == Decimal("25000")
    (fill,) = ex.recent_fills(a)
    assert fill["maker"] and fill["side"] == "sell" and fill["fee"] == Decimal("-0.75")
    (fill,) = ex.recent_fills(b)
    assert not fill["maker"] and fill["fee"] == Decimal("3.75")
    assert ex.open_orders(b) == []


def test_snapshot_restore_and_replay_reach_the_same_hash(ex):
    a, b = funded(ex)
    ex.advance_time(1_700_000_000_000)
    ex.place(a, "BTC-USD", "sell", qty="1", price="30000")
    ex.place(b, "BTC-USD", "buy", qty="0.25", price="30000")
    snap, h = ex.snapshot(), ex.state_hash()
    restored = Exchange.restore(snap)
    assert restored.state_hash() == h
    assert restored.balance(b, "BTC") == ex.balance(b, "BTC")
    # The same commands after the snapshot reach the same state.
    for x in (ex, restored):
        x.advance_time(1_700_000_100_000)
        x.place(b, "BTC-USD", "buy", qty="0.5", price="30000")
    assert restored.state_hash() == ex.state_hash() != h
    assert restored.candles("BTC-USD", "1m") == ex.candles("BTC-USD", "1m")
    with pytest.raises(ValueError):
        Exchange.restore(snap[:-10])


def test_fee_tiers(ex):
    a, b = funded(ex)
    ex.set_fee_tiers("BTC-USD", [("20000", -1, 2)])
    with pytest.raises(OrderRejected) as e:
        ex.set_fee_tiers("BTC-USD", [("20000", -1, 6)])  # above the base taker rate
    assert e.value.reason == Reason.INVALID_MARKET_CONFIG
    ex.place(a, "BTC-USD", "sell", qty="1", price="30000")
    ex.place(b, "BTC-USD", "buy", qty="0.5", price="30000")  # 15000: 5 bps
    assert ex.volume_30d(b, "USD") == Decimal("15000")
    ex.place(b, "BTC-USD", "buy", qty="0.5", price="30000")  # still 5 bps (15000 < 20000)
    before = ex.balance(b, "USD")[0]
    ex.place(a, "BTC-USD", "sell", qty="1", price="30000")
    ex.place(b, "BTC-USD", "buy", qty="0.1", price="30000")  # 3000 at the 2 bps tier
    assert before - ex.balance(b, "USD")[0] == Decimal("3000.6")


def test_agg_trades_group_one_takers_fills_at_one_price(ex):
    a, b = funded(ex)
    for price, qty in (("100", "0.1"), ("100", "0.2"), ("101", "0.3")):
        ex.place(a, "BTC-USD", "sell", qty=qty, price=price)
    ex.place(b, "BTC-USD", "buy", qty="0.6", price="101")  # one taker: 100 x2, then 101
    ex.place(a, "BTC-USD", "sell", qty="0.1", price="101")
    ex.place(b, "BTC-USD", "buy", qty="0.1", price="101")  # another taker at the same price: its own aggregate
    aggs = ex.agg_trades("BTC-USD")
    assert [(g["id"], g["first_id"], g["last_id"], g["price"], g["qty"]) for g in aggs] == [
        (1, 1, 2, Decimal("100"), Decimal("0.3")), (3, 3, 3, Decimal("101"), Decimal("0.3")),
        (4, 4, 4, Decimal("101"), Decimal("0.1"))]
    assert [g["id"] for g in ex.agg_trades("BTC-USD", from_id=3)] == [3, 4]
    assert [g["id"] for g in ex.agg_trades("BTC-USD", from_id=2)] == [3, 4]  # ids are first trade ids
    assert [g["id"] for g in ex.agg_trades("BTC-USD", limit=1)] == [4]
    assert [g["id"] for g in ex.agg_trades("BTC-USD", start=0, limit=1)] == [1]
    assert ex.agg_trades("BTC-USD", end=-1) == []


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.from_regex(r"\A[0-9]{1,20}(\.[0-9]{0,20})?\Z"), st.from_regex(r"\A-?[0-9]{0,3}\.?[0-9]{0,3}\Z"),
                 st.sampled_from(["", "1e3", " 5", "+5", "NaN", "Infinity", "0.0", "00012", "1" * 19, "1." + "0" * 19])),
       st.sampled_from(["0.01", "0.0001", "0.001", "0.5", "0.05", "1", "10", "1E+1", "25", "0.00000001", "0.3"]))
def test_units_fast_path_equals_the_decimal_path(value, step):
    """`_units` (integer arithmetic for plain decimal strings) gives what
    the Decimal path gives, or the same rejection."""
    from lxdex.exchange import _units, _units_decimal

    def run(f):
        try:
            return f(value, Decimal(step), "qty", Reason.OFF_LOT_GRID)
        except OrderRejected as e:
            return ("rejected", e.reason, str(e))

    assert run(_units) == run(_units_decimal)
