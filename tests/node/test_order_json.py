"""POST /order's Rust fast path (`_core.OrderJson`) against the Python path
(`http._order_row`: msgspec, then `Exchange.order_record`): whenever the
fast path takes a body, it makes the very record the Python path makes;
bodies it does not take (None) go the Python way, errors included. The
common forms must be taken, or the fast path would be dead code."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

import numpy as np

from lxdex.enums import EVENT_DTYPE, EventKind
from lxdex.exchange import Exchange
from lxdex.node.http import JSON, _order_row, _OrderJson

ex = Exchange(b"k" * 32)
ex.add_asset("USD", 6)
ex.add_asset("BTC", 8)
ex.add_asset("ETH", 8)
ex.add_market("BTC-USD", base="BTC", quote="USD", tick_size="0.01", lot_size="0.0001")
ex.add_market("ETH-USD", base="ETH", quote="USD", tick_size="0.05", lot_size="0.001")
ex.add_market("X-USD", base="ETH", quote="USD", tick_size="5", lot_size="1")


def _parser() -> _OrderJson:
    p = _OrderJson()
    for sym in ("BTC-USD", "ETH-USD", "X-USD"):
        p.learn(ex._markets[sym])
    return p


P = _parser()


def _python(body: bytes, default):
    out = _order_row(ex, body, lambda acct: acct if acct is not None else default)
    return None if isinstance(out, JSON) else (out[0], out[1].id)


def _check(body: bytes, default=None):
    fast = P.parse(body, default)
    if fast is not None:
        assert _python(body, default) == (bytes(fast[0]), fast[1]), body
    return fast


def test_the_common_forms_take_the_fast_path():
    for body, default in [
        ({"symbol": "BTC-USD", "side": 0, "price": 50000, "size": 1}, 0),
        ({"symbol": "BTC-USD", "side": 1, "price": 50000.25, "size": 0.012, "account": 7}, None),
        ({"symbol": "BTC-USD", "side": "buy", "price": "50000.10", "size": "0.5", "type": "limit", "tif": "ioc"}, 3),
        ({"symbol": "ETH-USD", "side": "SELL", "size": "2", "type": "market"}, 3),
        ({"symbol": "ETH-USD", "side": "Sell", "size": 2, "price": None, "type": "market", "post_only": False,
          "stp": "cancel_both", "expire_ts": 17, "trigger_price": None, "display_size": None}, 3),
        ({"symbol": "X-USD", "side": 0, "price": 123455, "size": 4, "post_only": True, "tif": "GTD"}, 1),
    ]:
        raw = json.dumps(body).encode()
        assert _check(raw, default) is not None, raw
        assert _check(b"  \n" + raw.replace(b", ", b" ,\t") + b" \r\n", default) is not None


def test_floats_up_to_15_significant_digits_are_taken():
    """A JSON number with a fraction is a float to msgspec: exact through a
    double with at most 15 significant digits, which the fast path takes;
    more go the Python way (repr of the double)."""
    taken = b'{"symbol": "X-USD", "side": 0, "price": 10, "size": 123456789012345.0, "account": 1}'
    assert _check(taken) is not None
    assert _check(b'{"symbol": "X-USD", "side": 0, "price": 10, "size": 000.0, "account": 1}') is None
    for raw in (b'{"symbol": "X-USD", "side": 0, "price": 10, "size": 1234567890123456.0, "account": 1}',
                b'{"symbol": "BTC-USD", "side": 0, "price": 50000.000000000001, "size": 1, "account": 1}'):
        assert P.parse(raw, None) is None, raw


def test_what_it_leaves_to_the_python_path():
    for raw in [
        b'{"symbol": "BTC-USD", "side": 0, "price": 50000, "size": 0.00001}',  # off the lot grid: an error
        b'{"symbol": "BTC-USD", "side": 2, "price": 50000, "size": 1}',  # bad side: an error
        b'{"symbol": "DOGE-USD", "side": 0, "price": 1, "size": 1}',  # unknown market
        b'{"symbol": "BTC-USD", "side": 0, "price": 5e4, "size": 1}',  # exponent
        b'{"symbol": "BTC-USD", "side": 0, "price": 50000, "size": 1, "size": 2}',  # repeated key
        b'{"symbol": "BTC-USD", "side": 0, "price": 50000, "size": 1, "extra": 1}',  # unknown field
        b'{"symbol": "BTC\\u002dUSD", "side": 0, "price": 50000, "size": 1}',  # an escape
        b'{"symbol": "BTC-USD", "side": 0, "price": 50000, "size": 1, "type": "stop_limit", "trigger_price": 1}',
        b'{"symbol": "BTC-USD", "side": 0, "price": -5, "size": 1}',
        b'{"symbol": "BTC-USD", "side": 0, "price": 0.1000000000000000055511151231257827, "size": 1}',
        b'{"symbol": "BTC-USD", "side": 0, "price": 50000, "size": 1}, ',
        b'{"symbol": "BTC-USD", "side": 0, "price": 50000, "size": 1',
        b'{"symbol": "BTC-USD", "side": 0, "price": 50000, "size": 1, "account": null}',  # no default account
        b'{"symbol": "BTC-USD", "side": 0, "price": 050000, "size": 1}',
    ]:
        assert P.parse(raw, None) is None, raw


_NUMS = st.one_of(
    st.integers(-3, 10**20),
    st.decimals(min_value=0, max_value=10**7, places=6, allow_nan=False).map(lambda d: float(d)),
    st.floats(min_value=-1, max_value=1e20, allow_nan=False, allow_infinity=False),
    st.decimals(min_value=0, max_value=10**9, places=8, allow_nan=False).map(str),
    st.sampled_from(["1", "0.5", "1.", ".5", "+1", "1e3", " 1", "0x10", "", "00.010", "1.0000", "-0", "NaN"]),
    st.none(), st.booleans(),
)
_NAMES = st.sampled_from(["buy", "sell", "BUY", "Sell", "b", "", 0, 1, 2, -1, "limit", "market", "stop_limit",
                          "gtc", "IOC", "fok", "gtd", "none", "cancel_taker", "decrement", "x", None, True, 1.0])


@settings(max_examples=600, deadline=None)
@given(
    symbol=st.sampled_from(["BTC-USD", "ETH-USD", "X-USD", "btc-usd", "NOPE", 5]),
    side=_NAMES, size=_NUMS, price=_NUMS,
    extra=st.dictionaries(
        st.sampled_from(["type", "tif", "account", "post_only", "stp", "trigger_price", "display_size",
                         "expire_ts", "bogus"]),
        st.one_of(_NAMES, _NUMS, st.integers(0, 2**64 + 5)), max_size=5),
    default=st.sampled_from([None, 0, 5]),
    drop=st.sets(st.sampled_from(["symbol", "side", "size", "price"])),
)
def test_the_fast_path_makes_the_python_paths_record(symbol, side, size, price, extra, default, drop):
    body = {"symbol": symbol, "side": side, "size": size, "price": price, **extra}
    for k in drop:
        body.pop(k)
    _check(json.dumps(body).encode(), default)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80) | st.text(max_size=80).map(str.encode))
def test_garbage_is_never_taken(data):
    assert P.parse(data, 0) is None or _python(data, 0) == (bytes(P.parse(data, 0)[0]), P.parse(data, 0)[1])


# -- replies ------------------------------------------------------------------------------------------------

def _funded():
    e = Exchange(b"k" * 32)
    e.add_asset("USD", 6)
    e.add_asset("BTC", 8)
    e.add_market("BTC-USD", base="BTC", quote="USD", tick_size="0.01", lot_size="0.0001", maker_bps=-1,
                 taker_bps=5)
    e.add_market("TINY-USD", base="BTC", quote="USD", tick_size="100", lot_size="0.00000001")
    accounts = [e.create_account() for _ in range(4)]
    for a in accounts:
        e.deposit(a, "BTC", "1000")
        e.deposit(a, "USD", "100000000")
    p = _OrderJson()
    for m in e._markets.values():
        p.learn(m)
    return e, p


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(
    st.sampled_from(["BTC-USD", "TINY-USD"]), st.integers(0, 3), st.sampled_from(["buy", "sell"]),
    st.integers(1, 400), st.integers(-6, 6), st.sampled_from(["limit", "limit", "market", "stop_limit"]),
    st.sampled_from([None, "ioc", "fok", "gtc"]), st.booleans(), st.sampled_from(["none", "cancel_taker",
                                                                                  "cancel_both", "decrement"]),
    st.booleans()), min_size=1, max_size=40))
def test_replies_are_the_python_replies(orders):
    """Batches of orders run on an exchange (fills, IOC/FOK/STP cancels,
    post-only and funds rejections, triggers pending): every reply built in
    Rust is byte for byte the Python reply; only rejected rows are left to
    Python."""
    from lxdex import commands as C
    from lxdex.node.http import _json, _row_reply

    e, p = _funded()
    rows = []
    for sym, acct, side, qty, off, otype, tif, post_only, stp, broke in orders:
        m = e._markets[sym]
        price = str((50_000 + off) * m.tick_size) if otype != "market" else None
        trigger = str((50_000 + off) * m.tick_size) if otype == "stop_limit" else None
        size = str(qty * m.lot_size * (10**13 if broke else 1))  # some orders beyond the account's funds
        rows.append(e.order_record(acct, sym, side, size, price, order_type=otype, tif=tif, stp=stp,
                                   post_only=post_only, trigger_price=trigger))
    out = e.execute(C.Records(data=b"".join(rows)), e.last_seq + 1)
    replies = p.replies(out.events, len(rows), out.seq)
    per_row = [[] for _ in rows]
    for ev in out.events.tolist():
        per_row[ev[4]].append(ev)
    for i, (events, body) in enumerate(zip(per_row, replies)):
        rejected = any(ev[0] == int(EventKind.REJECTED) for ev in events)
        assert (body is None) == rejected, (i, events)
        if body is not None:
            market = e._market_by_id[next(ev[5] for ev in events if ev[0] == int(EventKind.ACCEPTED))]
            assert bytes(body) == _json.encode(_row_reply(out.seq, events, market)), (i, events)


def test_decimal_strings_as_python_writes_them():
    """The amounts of a reply are `units * step` as `str(Decimal)` writes
    them: plain, or scientific for tiny zeros and positive exponents."""
    from decimal import Decimal

    from lxdex.node.http import _json

    e, p = _funded()
    cases = [(0, "0.0001"), (120, "0.0001"), (5_000_000, "0.01"), (0, "0.00000001"), (7, "0.00000001"),
             (3, "5"), (3, "5E+1"), (12345678, "0.00000001"), (1, "0.000001"), (1, "0.0000001"), (0, "1E+2")]
    for i, (units, step) in enumerate(cases):
        m = type("M", (), {"id": 100 + i, "symbol": f"T{i}-USD", "tick_size": Decimal(step),
                           "lot_size": Decimal(step)})
        p.learn(m)
    for i, (units, step) in enumerate(cases):
        ev = np.zeros(1, EVENT_DTYPE)
        ev["kind"], ev["market"], ev["order_id"], ev["qty"], ev["price"] = int(EventKind.ACCEPTED), 100 + i, 9, 0, 0
        fill = np.zeros(1, EVENT_DTYPE)
        fill["kind"], fill["market"], fill["order_id"] = int(EventKind.FILL), 100 + i, 9
        fill["price"], fill["qty"], fill["remaining"] = units, units, 1
        body = p.replies(np.concatenate([ev, fill]), 1, 5)[0]
        want = _json.encode({"price": units * Decimal(step)})[len(b'{"price":'):-1]
        assert want in bytes(body), (units, step, body, want)
