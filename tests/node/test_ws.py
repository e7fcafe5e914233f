"""The node's WebSocket streams against a real node behind a real uvicorn:
every public stream checked against the REST endpoints and the exchange,
subscribe/unsubscribe, bad requests (an error frame, nothing changes), the
private user stream (authentication, failures, isolation between users),
the depth resync procedure, and slow consumers being cut off."""

from __future__ import annotations

import hmac
import random
import statistics
import socket
import threading
import time
from decimal import Decimal
from urllib.parse import urlencode

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from lxdex import commands as C
from lxdex.accounts import generate_key_material, sign_request
from lxdex.enums import COMMAND_DTYPE, CommandKind
from lxdex.node.server import Node
from lxdex.node.ws import WsLimits, interval_end, interval_start, parse_stream, text_frame

from .nodeutil import FUNDS, two_accounts_config
from .wsutil import Client, Served, random_load, wait_idle


def three_accounts_config(**kw):
    cfg = two_accounts_config(**kw)
    cfg.accounts.append({"name": "carol", "deposits": dict(FUNDS)})
    return cfg


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path / "node", three_accounts_config(), sync="none")
    n.start()
    yield n
    n.stop()


@pytest.fixture
def served(node):
    s = Served(node)
    yield s
    s.close()


def place(node, account, side, qty, price=None, market="BTC-USD", **kw):
    out = node.execute(C.PlaceOrder(account=account, market=market, side=side, qty=str(qty),
                                    price=None if price is None else str(price), **kw))
    assert out.ok, out.error
    return out


def subscribed(served, streams, path="/ws") -> Client:
    c = served.ws(path)
    r = c.request("SUBSCRIBE", streams)
    assert r == {"id": r["id"], "result": None}, r
    return c


# -- stream names ---------------------------------------------------------------------------------------
def test_stream_names():
    mk = {"BTC-USD": 0, "btcusd": 0, "BTCUSD": 0, "ETH-USD": 1, "ethusd": 1, "ETHUSD": 1}
    assert parse_stream("btcusd@trade", mk) == (0, "trade", None)
    assert parse_stream("BTC-USD@trade", mk) == (0, "trade", None)
    assert parse_stream("btc-usd@depth", mk) == (0, "depth", 1000)  # Binance's default speed
    assert parse_stream("ethusd@depth@100ms", mk) == (1, "depth", 100)
    assert parse_stream("ethusd@depth@1000ms", mk) == (1, "depth", 1000)
    assert parse_stream("ethusd@depth10", mk) == (1, "depthN", (10, 1000))
    assert parse_stream("ethusd@depth10@100ms", mk) == (1, "depthN", (10, 100))
    assert parse_stream("btcusd@aggTrade", mk) == (0, "aggTrade", None)
    assert parse_stream("btcusd@miniTicker", mk) == (0, "miniTicker", None)
    assert parse_stream("btcusd@ticker_1h", mk) == (0, "windowTicker", "1h")
    assert parse_stream("btcusd@ticker_1d", mk) == (0, "windowTicker", "1d")
    assert parse_stream("!miniTicker@arr", mk) == (None, "allMiniTicker", None)
    assert parse_stream("!ticker@arr", mk) == (None, "allTicker", None)
    assert parse_stream("btcusd@kline_1M", mk) == (0, "kline", "1M")
    assert parse_stream("btcusd@bookTicker", mk) == (0, "bookTicker", None)
    assert parse_stream("btcusd@ticker", mk) == (0, "ticker", None)
    for bad in ("btcusd", "dogeusd@trade", "btcusd@depth7", "btcusd@kline_2m", "btcusd@trade@100ms", "@trade",
                "btcusd@ticker_2d", "btcusd@ticker_24h", "btcusd@ticker_1h@100ms", "btcusd@depth@250ms",
                "!bookTicker@arr",
                "btcusd@", "x" * 200):
        with pytest.raises(ValueError):
            parse_stream(bad, mk)


def test_interval_arithmetic_matches_the_core(node):
    ts = 1_700_000_123_456  # a Tuesday in November 2023
    assert interval_start("1m", ts) == ts - ts % 60_000
    assert interval_start("1w", ts) == 1_699_833_600_000  # Monday 2023-11-13 00:00 UTC
    assert interval_start("1M", ts) == 1_698_796_800_000  # 2023-11-01
    assert interval_end("1M", 1_698_796_800_000) == 1_701_388_800_000 - 1
    assert interval_end("1h", 3_600_000) == 7_199_999


def test_text_frames_are_what_a_websocket_library_would_send():
    from websockets.frames import Frame, Opcode

    for n in (0, 1, 125, 126, 127, 65535, 65536, 70000):
        payload = b"x" * n
        assert text_frame(payload) == Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[]), n


# -- public streams ---------------------------------------------------------------------------------------
def test_trades_carry_the_ids_of_get_trades(served, node):
    c = subscribed(served, ["btcusd@trade", "btcusd@trades"])
    place(node, 0, "sell", "1", 50000)
    place(node, 0, "sell", "1", 50001)
    place(node, 1, "buy", "1.5", 50001)   # two trades in one command
    place(node, 1, "sell", "0.25", 49000)  # no bid left: nothing
    place(node, 0, "buy", "0.25", 50001)   # against the rest of 50001
    trades = served.http.get("/trades/BTC-USD").json()
    assert len(trades) == 3
    msgs = c.until(lambda m: m.get("e") == "trade" and m["t"] == trades[-1]["id"])
    got = [m for m in msgs if m.get("e") == "trade"]
    assert [(m["t"], m["p"], m["q"], m["T"], m["m"]) for m in got] == [
        (t["id"], t["price"], t["qty"], t["ts"], t["taker_side"] == "sell") for t in trades]
    assert got[0]["s"] == "BTC-USD" and got[0]["b"] == 3 and got[0]["a"] == 1  # buyer order 3 took order 1
    batched = [t for m in msgs + c.drain() if m.get("e") == "trades" for t in m["trades"]]
    assert [t["t"] for t in batched] == [t["id"] for t in trades]


def test_raw_combined_and_our_symbol_spellings(served, node):
    raw = served.ws("/ws/BTC-USD@trade/ethusd@trade")
    combined = served.ws("/stream?streams=btcusd@trade/ETH-USD@trade")
    time.sleep(0.2)  # the URL's streams are subscribed just after the handshake
    place(node, 0, "sell", "1", 50000)
    place(node, 1, "buy", "1", 50000)
    place(node, 0, "sell", "1", 3000, market="ETH-USD")
    place(node, 1, "buy", "1", 3000, market="ETH-USD")
    r = raw.until(lambda m: m.get("s") == "ETH-USD")
    assert [(m["e"], m["s"]) for m in r] == [("trade", "BTC-USD"), ("trade", "ETH-USD")]
    w = combined.until(lambda m: m["data"]["s"] == "ETH-USD")
    assert [(m["stream"], m["data"]["s"]) for m in w] == [("btcusd@trade", "BTC-USD"), ("ETH-USD@trade", "ETH-USD")]
    assert w[0]["data"] == r[0]  # the same payload, wrapped


def test_subscribe_unsubscribe_and_list(served, node):
    c = served.ws()
    assert c.request("LIST_SUBSCRIPTIONS") == {"id": 1, "result": []}
    assert c.request("SUBSCRIBE", ["btcusd@trade", "ethusd@trade"])["result"] is None
    assert c.request("SUBSCRIBE", ["btcusd@trade"])["result"] is None  # again: no duplicate
    assert c.request("LIST_SUBSCRIPTIONS")["result"] == ["btcusd@trade", "ethusd@trade"]
    assert c.request("UNSUBSCRIBE", ["btcusd@trade"])["result"] is None
    assert c.request("LIST_SUBSCRIPTIONS")["result"] == ["ethusd@trade"]
    place(node, 0, "sell", "1", 50000)
    place(node, 1, "buy", "1", 50000)
    place(node, 0, "sell", "1", 3000, market="ETH-USD")
    place(node, 1, "buy", "1", 3000, market="ETH-USD")
    got = c.until(lambda m: m.get("s") == "ETH-USD")
    assert [m["s"] for m in got] == ["ETH-USD"]  # nothing of BTC-USD any more
    assert c.request("UNSUBSCRIBE", ["ethusd@trade"])["result"] is None
    place(node, 0, "sell", "1", 3000, market="ETH-USD")
    place(node, 1, "buy", "1", 3000, market="ETH-USD")
    wait_idle(node)
    assert c.drain(0.3) == []
    assert served.hub.stats()["subscriptions"] == 0


BAD_REQUESTS = [
    ("not json", "INVALID_JSON"),
    ("[1, 2]", "INVALID_REQUEST"),
    ('{"method": "SUBSCRIBE", "params": ["btcusd@trade"], "id": 5, "extra": 1}', "INVALID_REQUEST"),
    ('{"params": ["btcusd@trade"], "id": 5}', "INVALID_REQUEST"),
    ('{"method": "SUBSCRIBE", "params": "btcusd@trade", "id": 5}', "INVALID_REQUEST"),
    ('{"method": "SUBSCRIBE", "params": [], "id": 5}', "INVALID_REQUEST"),
    ('{"method": "SUBSCRIBE", "params": [7], "id": 5}', "INVALID_REQUEST"),
    ('{"method": "SUBSCRIBE", "params": ["ethusd@trade", "dogeusd@trade"], "id": 5}', "UNKNOWN_MARKET"),
    ('{"method": "SUBSCRIBE", "params": ["ethusd@trade", "btcusd@depth7"], "id": 5}', "INVALID_STREAM"),
    ('{"method": "SUBSCRIBE", "params": ["ethusd@trade", "btcusd@kline_7m"], "id": 5}', "INVALID_STREAM"),
    ('{"method": "UNSUBSCRIBE", "params": ["nonsense"], "id": 5}', "INVALID_STREAM"),
    ('{"method": "SUBSCRIBE", "params": ["btcusd@trade"], "id": [1]}', "INVALID_REQUEST"),
    ('{"method": "DELETE_EVERYTHING", "id": 5}', "UNKNOWN_METHOD"),
    ('{"method": "userDataStream.unsubscribe", "id": 5}', "INVALID_REQUEST"),
    ('{"method": "userDataStream.subscribe", "id": 5}', "UNAUTHORIZED"),  # not a demo node
    ('{"method": "userDataStream.subscribe", "params": ["x"], "id": 5}', "INVALID_REQUEST"),
    ('{"method": "SUBSCRIBE", "params": ["' + "a" * 5000 + '"], "id": 5}', "TOO_LARGE"),
]


def test_bad_requests_get_an_error_frame_and_change_nothing(served, node):
    c = served.ws()
    assert c.request("SUBSCRIBE", ["btcusd@trade"])["result"] is None
    for text, code in BAD_REQUESTS:
        c.send(text)
        r = c.recv()
        assert r["error"]["code"] == code, (text, r)
        assert r["id"] in (None, 5)
        assert c.request("LIST_SUBSCRIPTIONS")["result"] == ["btcusd@trade"], text
    c.conn.send(b"\x00binary")
    assert c.recv()["error"]["code"] == "INVALID_REQUEST"
    # still served: a trade arrives
    place(node, 0, "sell", "1", 50000)
    place(node, 1, "buy", "1", 50000)
    assert c.until(lambda m: m.get("e") == "trade")[-1]["t"] == 1
    assert served.hub.stats()["subscriptions"] == 1


def test_unknown_stream_in_the_url_is_refused(served):
    c = served.ws("/ws/dogeusd@trade")
    assert c.recv()["error"]["code"] == "UNKNOWN_MARKET"
    with pytest.raises(ConnectionClosed) as e:
        c.recv()
    assert e.value.rcvd.code == 1008


def test_too_many_requests_disconnects(node):
    s = Served(node, WsLimits(request_burst=5, request_rate=0.5))
    try:
        c = s.ws()
        with pytest.raises(ConnectionClosed) as e:
            # the server may close the connection before the last sends: they raise too
            for _ in range(8):
                c.send('{"method": "LIST_SUBSCRIPTIONS", "id": 1}')
            while True:
                c.recv()
        assert e.value.rcvd.code == 1008 and e.value.rcvd.reason == "too many requests"
    finally:
        s.close()


def test_depth_partial_book_ticker_and_ticker_match_rest(served, node):
    c = subscribed(served, ["btcusd@depth5", "btcusd@depth20", "btcusd@bookTicker", "btcusd@ticker"], "/stream")
    random_load(node, random.Random(5), 200, accounts=(0, 1, 2))
    wait_idle(node)
    book = served.http.get("/book/BTC-USD?depth=20").json()
    msgs = c.until(lambda m: m["stream"] == "btcusd@depth20" and m["data"]["lastUpdateId"] == book["last_update_id"])
    msgs += c.drain()
    last = {m["stream"]: m["data"] for m in msgs}
    d20, d5 = last["btcusd@depth20"], last["btcusd@depth5"]
    assert len(book["bids"]) > 5 and len(book["asks"]) > 5
    assert d20["bids"] == book["bids"] and d20["asks"] == book["asks"] and d20["s"] == "BTC-USD"
    assert d5["bids"] == book["bids"][:5] and d5["asks"] == book["asks"][:5]
    assert d5["lastUpdateId"] == book["last_update_id"]
    bt = last["btcusd@bookTicker"]
    assert [bt["b"], bt["B"]] == book["bids"][0] and [bt["a"], bt["A"]] == book["asks"][0]
    assert bt["u"] <= book["last_update_id"]
    tk = last["btcusd@ticker"]
    with node.lock:
        t = node.exchange.ticker("BTC-USD")
    assert (tk["o"], tk["h"], tk["l"], tk["c"], tk["v"], tk["n"]) == (
        str(t["open"]), str(t["high"]), str(t["low"]), str(t["last"]), str(t["volume"]), t["trades"])
    assert tk["P"] == str(t["change_pct"]) and tk["p"] == str(t["change"])


def test_klines_follow_the_candles(served, node):
    c = subscribed(served, ["btcusd@kline_1m", "btcusd@kline_1h", "btcusd@trade"])
    random_load(node, random.Random(9), 150, accounts=(0, 1))
    wait_idle(node)
    trades = served.http.get("/trades/BTC-USD?limit=1000").json()
    assert trades
    msgs = c.until(lambda m: m.get("e") == "kline" and m["k"]["i"] == "1h" and m["k"]["L"] == trades[-1]["id"])
    msgs += c.drain()
    for iv in ("1m", "1h"):
        ks = [m["k"] for m in msgs if m.get("e") == "kline" and m["k"]["i"] == iv]
        k = ks[-1]
        c1 = served.http.get(f"/api/v1/markets/BTC-USD/candles?interval={iv}&limit=1").json()[-1]
        assert [k["t"], k["o"], k["h"], k["l"], k["c"], k["v"], k["n"]] == [
            c1["start"], c1["open"], c1["high"], c1["low"], c1["close"], c1["volume"], c1["trades"]]
        assert k["T"] == interval_end(iv, k["t"]) and k["x"] is False and k["s"] == "BTC-USD"
        first_in = [t for t in trades if t["ts"] >= k["t"]]
        assert k["f"] == first_in[0]["id"] and k["L"] == trades[-1]["id"]
        assert Decimal(k["q"]) == sum(Decimal(t["price"]) * Decimal(t["qty"]) for t in first_in)


def test_kline_subscribed_after_trades_continues_the_candle(served, node):
    place(node, 0, "sell", "2", 50000)
    place(node, 1, "buy", "1", 50000)
    c = subscribed(served, ["btcusd@kline_1m"])
    place(node, 1, "buy", "1", 50000)
    k = c.until(lambda m: m.get("e") == "kline")[-1]["k"]
    assert (k["n"], k["v"], k["f"], k["L"]) == (2, "2.0000", 1, 2)


def test_no_work_without_subscribers_and_trade_ids_continue(served, node):
    place(node, 0, "sell", "5", 50000)
    place(node, 1, "buy", "1", 50000)
    assert served.hub.stats()["batches"] == 0
    c = subscribed(served, ["btcusd@trade"])
    place(node, 1, "buy", "1", 50000)
    assert c.until(lambda m: m.get("e") == "trade")[-1]["t"] == 2
    assert c.request("UNSUBSCRIBE", ["btcusd@trade"])["result"] is None
    place(node, 1, "buy", "1", 50000)  # trade 3, seen by nobody
    c2 = subscribed(served, ["btcusd@trade"])
    place(node, 1, "buy", "1", 50000)
    assert c2.until(lambda m: m.get("e") == "trade")[-1]["t"] == 4


# -- depth diffs and the resync procedure -------------------------------------------------------------------
def apply_resync(snapshot: dict, diffs: list[dict]) -> tuple[dict, dict]:
    """The documented procedure (docs/ws.md): drop diffs with u <= the
    snapshot's last_update_id; the first one applied must have
    U <= last_update_id + 1 <= u; each later one U == previous u + 1."""
    bids = {Decimal(p): Decimal(q) for p, q in snapshot["bids"]}
    asks = {Decimal(p): Decimal(q) for p, q in snapshot["asks"]}
    last = snapshot["last_update_id"]
    first = True
    for d in diffs:
        if d["u"] <= last:
            continue
        if first:
            assert d["U"] <= last + 1 <= d["u"], (last, d["U"], d["u"])
            first = False
        else:
            assert d["U"] == last + 1, (last, d["U"])
        for side, levels in ((bids, d["b"]), (asks, d["a"])):
            for p, q in levels:
                if Decimal(q) == 0:
                    side.pop(Decimal(p), None)
                else:
                    side[Decimal(p)] = Decimal(q)
        last = d["u"]
    return bids, asks


def test_snapshot_plus_diffs_reproduce_the_book(served, node):
    c = subscribed(served, ["btcusd@depth", "ethusd@depth"])
    rng = random.Random(1234)
    random_load(node, rng, 300, accounts=(0, 1, 2))
    snapshot = served.http.get("/book/BTC-USD?depth=1000").json()  # taken while diffs flow
    random_load(node, rng, 300, accounts=(0, 1, 2))
    random_load(node, rng, 60, accounts=(0, 1), market="ETH-USD", mid=3000)
    wait_idle(node)
    final = served.http.get("/book/BTC-USD?depth=1000").json()
    msgs = c.until(lambda m: m.get("s") == "BTC-USD" and m["u"] == final["last_update_id"])
    diffs = [m for m in msgs if m["e"] == "depthUpdate" and m["s"] == "BTC-USD"]
    assert all(m["e"] == "depthUpdate" for m in msgs)
    # the diffs of a market are contiguous from the subscription on
    assert diffs[0]["U"] == 1
    for a, b in zip(diffs, diffs[1:]):
        assert b["U"] == a["u"] + 1 and b["U"] <= b["u"]
    bids, asks = apply_resync(snapshot, diffs)
    assert bids == {Decimal(p): Decimal(q) for p, q in final["bids"]}
    assert asks == {Decimal(p): Decimal(q) for p, q in final["asks"]}
    assert bids and asks
    # and from an empty book (update id 0) the diffs alone rebuild it
    bids0, asks0 = apply_resync({"last_update_id": 0, "bids": [], "asks": []}, diffs)
    assert (bids0, asks0) == (bids, asks)
    # a diff lists each level once, bids high to low and asks low to high
    for d in diffs:
        bp = [Decimal(p) for p, _ in d["b"]]
        ap = [Decimal(p) for p, _ in d["a"]]
        assert bp == sorted(set(bp), reverse=True) and ap == sorted(set(ap))


def test_the_asgi_send_path_too(served, node):
    """Without direct writes (a server other than uvicorn, or `direct=False`)
    the same messages go through the ASGI send."""
    served.hub.direct = False
    c = subscribed(served, ["btcusd@depth", "btcusd@trade"], "/stream")
    user = login(served, node, 1)
    assert not any(k.direct for f in served.hub._loops.values() for conns in f.topics.values() for k in conns)
    random_load(node, random.Random(8), 200, accounts=(0, 1, 2))
    wait_idle(node)
    final = served.http.get("/book/BTC-USD?depth=1000").json()
    trades = served.http.get("/trades/BTC-USD?limit=1000").json()
    msgs = c.until(lambda m: m["stream"] == "btcusd@depth" and m["data"]["u"] == final["last_update_id"])
    msgs += c.drain()
    bids, asks = apply_resync({"last_update_id": 0, "bids": [], "asks": []},
                              [m["data"] for m in msgs if m["stream"] == "btcusd@depth"])
    assert bids == {Decimal(p): Decimal(q) for p, q in final["bids"]}
    assert asks == {Decimal(p): Decimal(q) for p, q in final["asks"]}
    assert [m["data"]["t"] for m in msgs if m["stream"] == "btcusd@trade"] == [t["id"] for t in trades]
    assert any(m.get("x") == "TRADE" for m in user.drain())


# -- private streams ------------------------------------------------------------------------------------------
def make_key(node, user_id: int, permissions=("read",), ip_allow=None) -> tuple[str, str]:
    km = generate_key_material(node.master_key, user_id)
    out = node.execute(C.CreateApiKey(user_id=user_id, api_key=km.api_key, sealed_secret=km.sealed_secret,
                                      permissions=list(permissions), ip_allow=ip_allow))
    assert out.ok, out.error
    return km.api_key, km.secret


def login_params(api_key: str, secret: str, ts: int | None = None, **extra) -> dict:
    params = {"apiKey": api_key, "timestamp": int(time.time() * 1000) if ts is None else ts, **extra}
    payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
    return params | {"signature": sign_request(secret, payload)}


def login(served, node, user_id: int, path="/ws") -> Client:
    key, secret = make_key(node, user_id)
    c = served.ws(path)
    r = c.request("userDataStream.subscribe", login_params(key, secret))
    assert r["result"] == {"userId": user_id}, r
    return c


def test_user_stream_order_updates_fills_and_balances(served, node):
    alice = login(served, node, 0)
    sell = place(node, 0, "sell", "1", 50000).value["order_id"]
    buy = place(node, 1, "buy", "0.4", 50000).value["order_id"]
    node.execute(C.CancelOrder(account=0, order_id=sell))
    msgs = alice.until(lambda m: m.get("x") == "CANCELED")
    msgs += alice.drain()
    reports = [m for m in msgs if m["e"] == "executionReport"]
    assert [(m["x"], m["X"], m["i"]) for m in reports] == [
        ("NEW", "NEW", sell), ("TRADE", "PARTIALLY_FILLED", sell), ("CANCELED", "CANCELED", sell)]
    new, fill, cancel = reports
    assert (new["s"], new["S"], new["o"], new["p"], new["q"]) == ("BTC-USD", "SELL", "LIMIT", "50000.00", "1.0000")
    assert (fill["l"], fill["L"], fill["rq"], fill["m"], fill["t"]) == ("0.4000", "50000.00", "0.6000", True, 1)
    assert (cancel["r"], cancel["q"], cancel["rq"]) == ("USER", "0.6000", "0.0000")
    assert buy not in {m["i"] for m in reports}  # bob's order is not alice's business
    positions = [m for m in msgs if m["e"] == "outboundAccountPosition"]
    assert positions
    with node.lock:
        btc, usd = node.exchange.balance(0, "BTC"), node.exchange.balance(0, "USD")
    final = {b["a"]: (Decimal(b["f"]), Decimal(b["l"])) for m in positions for b in m["B"]}
    assert final["BTC"] == btc and final["USD"] == usd


def test_user_stream_rejections_money_moves_and_notifications(served, node):
    alice = login(served, node, 0, path="/stream")
    out = node.execute(C.PlaceOrder(account=0, market="BTC-USD", side="buy", qty="1000000", price="50000"))
    assert out.error["reason"] == "INSUFFICIENT_FUNDS"
    node.execute(C.Deposit(account=0, asset="USD", amount="5"))
    node.execute(C.Transfer(from_account=0, to_account=1, asset="USD", amount="2"))
    node.execute(C.AddPriceAlert(user_id=0, market="BTC-USD", condition="above", price="40000"))
    place(node, 1, "sell", "1", 50000)
    place(node, 2, "buy", "1", 50000)
    msgs = alice.until(lambda m: m["data"]["e"] == "notification")
    assert {m["stream"] for m in msgs} == {"user"}
    data = [m["data"] for m in msgs]
    rej = next(d for d in data if d["e"] == "executionReport")
    assert (rej["x"], rej["r"], rej["s"], rej["S"]) == ("REJECTED", "INSUFFICIENT_FUNDS", "BTC-USD", "BUY")
    assert [(d["a"], d["d"]) for d in data if d["e"] == "balanceUpdate"] == [("USD", "5"), ("USD", "-2")]
    note = data[-1]
    assert note["kind"] == "price_alert" and note["payload"]["market"] == "BTC-USD"


def test_user_stream_sees_records_rows_too(served, node):
    """Orders from the binary gateway (one Records command): fills and
    rejections of the subscribed user's rows only."""
    bob = login(served, node, 1)
    rows = np.zeros(4, COMMAND_DTYPE)
    rows["kind"] = CommandKind.SUBMIT
    rows["market"] = 0
    rows["owner"] = [0, 1, 1, 2]
    rows["side"] = [1, 0, 0, 0]
    rows["price"] = [5_000_000, 5_000_000, 5_000_000, 5_000_000]
    rows["qty"] = [10_000, 4_000, 10**11, 1_000]  # bob's second row is far beyond his funds
    out = node.execute(C.Records(data=rows.tobytes()))
    assert out.ok
    msgs = bob.until(lambda m: m.get("x") == "REJECTED")
    msgs += bob.drain()
    reports = [(m["x"], m["X"]) for m in msgs if m["e"] == "executionReport"]
    assert reports == [("NEW", "NEW"), ("TRADE", "FILLED"), ("REJECTED", "REJECTED")]
    fill = next(m for m in msgs if m.get("x") == "TRADE")
    assert (fill["S"], fill["m"], fill["l"], fill["t"]) == ("BUY", False, "0.4000", 1)


def test_auth_failures(served, node):
    key, secret = make_key(node, 0)
    trade_only, trade_secret = make_key(node, 0, permissions=("trade",))
    fenced, fenced_secret = make_key(node, 0, ip_allow=["10.0.0.0/8"])
    revoked, revoked_secret = make_key(node, 1)
    node.execute(C.RevokeApiKey(user_id=1, api_key=revoked))
    now = int(time.time() * 1000)
    good = login_params(key, secret)
    cases = [
        (good | {"signature": "0" * 64}, "UNAUTHORIZED", "bad_signature"),
        (good | {"signature": "zz"}, "UNAUTHORIZED", "bad_signature"),
        (login_params("K" * 64, secret), "UNAUTHORIZED", "unknown_key"),
        (login_params(revoked, revoked_secret), "UNAUTHORIZED", "revoked"),
        (login_params(key, secret, ts=now - 60_000), "UNAUTHORIZED", "recvWindow"),
        (login_params(key, secret, ts=now + 60_000), "UNAUTHORIZED", "recvWindow"),
        (login_params(trade_only, trade_secret), "FORBIDDEN", "permission_denied"),
        (login_params(fenced, fenced_secret), "FORBIDDEN", "ip_not_allowed"),
        (good | {"timestamp": "now"}, "INVALID_REQUEST", "timestamp"),
        ({"apiKey": key, "signature": good["signature"]}, "INVALID_REQUEST", "timestamp"),
        (good | {"listenKey": "x"}, "INVALID_REQUEST", "listenKey"),
        (login_params(key, secret, recvWindow=10**9), "INVALID_REQUEST", "recvWindow"),
        (good | {"apiKey": secret}, "UNAUTHORIZED", "unknown_key"),
    ]
    c = served.ws()
    for params, code, words in cases:
        r = c.request("userDataStream.subscribe", params)
        assert r["error"]["code"] == code and words in r["error"]["message"], (params, r)
    assert served.hub.stats()["users"] == 0
    place(node, 0, "sell", "1", 50000)
    wait_idle(node)
    assert c.drain(0.3) == []  # nothing private for a connection that failed to log in
    # a signature is for its own timestamp: changing it breaks it
    assert c.request("userDataStream.subscribe", good | {"timestamp": good["timestamp"] + 1})["error"]["code"] \
        == "UNAUTHORIZED"
    ok = c.request("userDataStream.subscribe", login_params(key, secret, recvWindow=10_000))
    assert ok["result"] == {"userId": 0}
    other, other_secret = make_key(node, 1)
    r = c.request("userDataStream.subscribe", login_params(other, other_secret))
    assert r["error"]["code"] == "INVALID_REQUEST"  # one user per connection
    assert c.request("userDataStream.unsubscribe")["result"] is None
    assert c.request("userDataStream.subscribe", login_params(other, other_secret))["result"] == {"userId": 1}


def test_another_users_events_are_never_delivered(served, node):
    streams = {u: login(served, node, u) for u in (0, 1, 2)}
    outs = random_load(node, random.Random(77), 400, accounts=(0, 1, 2))
    rows = np.zeros(50, COMMAND_DTYPE)  # and some binary rows, a few rejected (unknown market)
    rows["kind"] = CommandKind.SUBMIT
    rows["owner"] = np.arange(50) % 3
    rows["side"] = np.arange(50) % 2
    rows["market"] = np.where(np.arange(50) % 7 == 0, 9, 0)
    rows["price"] = 5_000_000 + (np.arange(50) % 5) * 100
    rows["qty"] = 1000
    node.execute(C.Records(data=rows.tobytes()))
    wait_idle(node)
    owner_of: dict[int, int] = {}
    for o in outs:
        for e in o.events:
            if e.kind == 0:  # ACCEPTED
                owner_of[e.order_id] = e.owner
    with node.lock:
        for u in (0, 1, 2):
            for o in node.exchange.open_orders(u):
                owner_of[o["order_id"]] = u
            for f in node.exchange.recent_fills(u):
                owner_of.setdefault(f["order_id"], u)
    for u, c in streams.items():
        msgs = c.drain(0.5)
        reports = [m for m in msgs if m["e"] == "executionReport"]
        assert reports, u
        for m in reports:
            if m["i"] is not None and m["i"] in owner_of:
                assert owner_of[m["i"]] == u, (u, m)
        with node.lock:
            fills = node.exchange.recent_fills(u)
        assert len([m for m in reports if m["x"] == "TRADE"]) >= min(len(fills), 100) > 0
        assert sum(1 for m in reports if m["x"] == "REJECTED") == sum(1 for i in range(50) if i % 3 == u
                                                                       and i % 7 == 0)


def test_demo_mode_user_stream(tmp_path):
    cfg = three_accounts_config(demo=True)
    n = Node(tmp_path / "demo", cfg, sync="none")
    n.start()
    s = Served(n)
    try:
        c = s.ws()
        assert c.request("userDataStream.subscribe")["result"] == {"userId": 0}
        place(n, 0, "sell", "1", 50000)
        assert c.until(lambda m: m.get("e") == "executionReport")[-1]["x"] == "NEW"
        demo = s.http.get("/ui/api/demo").json()
        assert demo["account"] == 0 and demo["open_orders"][0]["price"] == "50000.00"
        # the same views as the REST API's, signed as the demo account
        key, secret = make_key(n, 0)
        from lxdex.client import Client as Sdk

        with Sdk(s.url, api_key=key, secret=secret) as sdk:
            assert demo["open_orders"] == sdk.open_orders() and demo["balances"] == sdk.balances()
    finally:
        s.close()
        n.stop()


def test_demo_endpoint_is_off_outside_demo_mode(served):
    r = served.http.get("/ui/api/demo")
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    assert served.http.get("/").status_code == 200
    assert served.http.get("/web/app.js").status_code == 200
    # the page's market data is the REST API's: no copies of it under /ui/api
    for gone in ("/ui/api/klines/BTC-USD", "/ui/api/tickers"):
        assert served.http.get(gone).status_code == 404


# -- slow consumers ---------------------------------------------------------------------------------------------
def stalled_client(served, streams: list[str]):
    """A client that reads nothing: a tiny receive buffer, the client library
    stops reading from the socket after one unread frame, and on the server
    side its socket's send buffer (and uvicorn's write buffer) are made small
    too, as on a slow link, so that a few dozen messages fill the path."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", served.port))
    port = sock.getsockname()[1]
    conn = connect(f"{served.ws_url}/ws", sock=sock, max_queue=(1, 0), open_timeout=5)
    c = Client(conn)
    r = c.request("SUBSCRIBE", streams)
    assert r["result"] is None
    server_side = [k for f in list(served.hub._loops.values()) for conns in list(f.topics.values()) for k in conns
                   if k.ws.client.port == port]
    transport = server_side[0].transport()
    transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    loop = server_side[0].loop  # (the transport belongs to uvicorn's loop: set its limits from there)
    loop.call_soon_threadsafe(transport.set_write_buffer_limits, 4096)
    return c


def load_until(node, cond, rng, seconds: float = 30.0) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        random_load(node, rng, 40, accounts=(0, 1, 2))
        if cond():
            return
        time.sleep(0.005)  # let deliveries happen: each one checks the queues
    raise AssertionError("condition not reached")


def test_slow_consumer_is_disconnected_with_1008(node):
    s = Served(node, WsLimits(max_queue=16, close_timeout=30))
    try:
        fast = subscribed(s, ["btcusd@depth", "btcusd@depth20", "btcusd@trade"])
        slow = stalled_client(s, ["btcusd@depth", "btcusd@depth20", "btcusd@trade"])
        got: list = []
        stop = threading.Event()

        def read_fast():
            while not stop.is_set():
                try:
                    got.append(fast.recv(0.2))
                except TimeoutError:
                    pass

        reader = threading.Thread(target=read_fast)
        reader.start()
        seq0 = node.exchange.last_seq
        load_until(node, lambda: s.hub.slow_consumers >= 1, random.Random(3))
        assert node.exchange.last_seq > seq0  # the node went on
        # the slow client now reads what had reached it, then the close frame
        n = 0
        with pytest.raises(ConnectionClosed) as e:
            while True:
                slow.recv(10)
                n += 1
        assert e.value.rcvd.code == 1008 and e.value.rcvd.reason == "slow consumer"
        assert s.hub.slow_consumers == 1
        # the fast client was not affected: its diffs are contiguous to the end
        wait_idle(node)
        final = s.http.get("/book/BTC-USD?depth=1000").json()
        deadline = time.time() + 10
        while time.time() < deadline and not any(m.get("e") == "depthUpdate" and m["u"] == final["last_update_id"]
                                                  for m in got[-50:]):
            time.sleep(0.05)
        stop.set()
        reader.join()
        diffs = [m for m in got if m.get("e") == "depthUpdate"]
        for a, b in zip(diffs, diffs[1:]):
            assert b["U"] == a["u"] + 1
        assert diffs[-1]["u"] == final["last_update_id"]
        assert s.hub.stats()["connections"] == 1
    finally:
        s.close()


def test_a_client_that_never_reads_is_cut_off(node):
    s = Served(node, WsLimits(max_queue=16, close_timeout=0.5))
    try:
        # (streams sent with every delivery: the throttled ones would take long to fill the buffers)
        slow = stalled_client(s, ["btcusd@trade", "btcusd@aggTrade", "btcusd@depth@100ms"])
        load_until(node, lambda: s.hub.slow_consumers >= 1, random.Random(4))
        deadline = time.time() + 10
        while s.hub.stats()["connections"] and time.time() < deadline:
            time.sleep(0.05)
        st = s.hub.stats()
        assert st["connections"] == 0 and st["subscriptions"] == 0
        slow.conn.socket.close()
    finally:
        s.close()


# -- Binance user data stream (listenKey) ---------------------------------------------------------------------
EXECUTION_REPORT_FIELDS = set("e E s c S o f q p P F g C x X r i l z L n N T t I w m M O Z Y Q V".split())


def bsigned(served, key, secret, method, path, params):
    """A Binance-style signed request (docs/api.md)."""
    q = urlencode({**params, "timestamp": int(time.time() * 1000)})
    q += "&signature=" + hmac.digest(secret.encode(), q.encode(), "sha256").hex()
    return served.http.request(method, path + "?" + q, headers={"X-MBX-APIKEY": key})


def listen_key(served, key) -> str:
    r = served.http.post("/api/v3/userDataStream", headers={"X-MBX-APIKEY": key})
    assert r.status_code == 200, r.text
    return r.json()["listenKey"]


def test_listen_key_rest_lifecycle(served, node):
    key, _ = make_key(node, 0)
    other, _ = make_key(node, 1)
    trade_only, _ = make_key(node, 0, permissions=("trade",))
    url = "/api/v3/userDataStream"
    r = served.http.post(url)
    assert r.status_code == 401 and r.json()["code"] == -2014
    for bad in ("K" * 64, trade_only):
        r = served.http.post(url, headers={"X-MBX-APIKEY": bad})
        assert r.status_code == 401 and r.json()["code"] == -2015, r.json()
    lk = listen_key(served, key)
    assert len(lk) == 64 and int(lk, 16) >= 0
    assert listen_key(served, key) == lk  # one per user: the live one again
    h = {"X-MBX-APIKEY": key}
    assert served.http.put(url, params={"listenKey": lk}, headers=h).json() == {}
    r = served.http.put(url, headers=h)
    assert r.status_code == 400 and r.json()["code"] == -1102 and "listenKey" in r.json()["msg"]
    r = served.http.put(url, params={"listenKey": lk, "x": "1"}, headers=h)
    assert r.json()["code"] == -1104 and "x" in r.json()["msg"]
    r = served.http.put(url, params={"listenKey": lk}, headers={"X-MBX-APIKEY": other})  # not bob's
    assert r.status_code == 400 and r.json() == {"code": -1125, "msg": "This listenKey does not exist."}
    assert served.http.delete(url, params={"listenKey": lk}, headers={"X-MBX-APIKEY": other}).json()["code"] == -1125
    assert served.http.delete(url, params={"listenKey": lk}, headers=h).json() == {}
    assert served.http.delete(url, params={"listenKey": lk}, headers=h).json()["code"] == -1125
    assert served.http.put(url, params={"listenKey": lk}, headers=h).json()["code"] == -1125
    assert listen_key(served, key) != lk  # a new one after the close


def test_listen_key_stream_delivers_binance_user_events(served, node):
    key, secret = make_key(node, 0, permissions=("read", "trade"))
    lk = listen_key(served, key)
    raw = served.ws(f"/ws/{lk}")
    combined = served.ws(f"/stream?streams={lk}/btcusd@trade")
    time.sleep(0.2)
    r = bsigned(served, key, secret, "POST", "/api/v3/order", {
        "symbol": "BTCUSD", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC", "quantity": "1",
        "price": "50000", "newClientOrderId": "my-order-1"})
    assert r.status_code == 200, r.text
    oid = r.json()["orderId"]
    place(node, 1, "buy", "0.4", 50000)
    node.execute(C.Deposit(account=0, asset="USD", amount="5"))
    r = bsigned(served, key, secret, "DELETE", "/api/v3/order", {"symbol": "BTCUSD", "orderId": oid})
    assert r.status_code == 200, r.text
    msgs = raw.until(lambda m: m.get("x") == "CANCELED") + raw.drain()
    reports = [m for m in msgs if m["e"] == "executionReport"]
    assert [(m["x"], m["X"]) for m in reports] == [("NEW", "NEW"), ("TRADE", "PARTIALLY_FILLED"),
                                                   ("CANCELED", "CANCELED")]
    for m in reports:
        assert set(m) >= EXECUTION_REPORT_FIELDS, EXECUTION_REPORT_FIELDS - set(m)
        assert (m["s"], m["c"], m["i"], m["S"], m["o"], m["f"], m["q"], m["p"], m["g"]) == (
            "BTCUSD", "my-order-1", oid, "SELL", "LIMIT", "GTC", "1.0000", "50000.00", -1)
    new, fill, cancel = reports
    assert (new["z"], new["l"], new["t"], new["w"], new["n"], new["N"]) == ("0.0000", "0.0000", -1, True, "0", None)
    with node.lock:
        [f] = node.exchange.recent_fills(0)
    assert (fill["l"], fill["L"], fill["z"], fill["Z"], fill["Y"], fill["t"], fill["m"]) == (
        "0.4000", "50000.00", "0.4000", "20000.000000", "20000.000000", 1, True)
    assert Decimal(fill["n"]) == f["fee"] and fill["N"] == "USD"
    assert (cancel["z"], cancel["C"], cancel["r"], cancel["w"]) == ("0.4000", "my-order-1", "NONE", False)
    assert fill["O"] == new["O"] and fill["I"] > new["I"]  # I: the command's sequence number
    assert [(m["a"], m["d"]) for m in msgs if m["e"] == "balanceUpdate"] == [("USD", "5")]
    positions = [m for m in msgs if m["e"] == "outboundAccountPosition"]
    with node.lock:
        usd = node.exchange.balance(0, "USD")
    assert {b["a"]: (Decimal(b["f"]), Decimal(b["l"])) for m in positions for b in m["B"]}["USD"] == usd
    assert not [m for m in msgs if m["e"] == "notification"]  # ours, not Binance's
    w = combined.until(lambda m: m["data"].get("x") == "CANCELED")
    assert {m["stream"] for m in w} == {lk, "btcusd@trade"}
    assert [m["data"] for m in w if m["stream"] == lk and m["data"]["e"] == "executionReport"] == reports
    # the connection's stream is the key's user's only: bob's own orders are not in it
    place(node, 1, "buy", "0.1", 40000)
    wait_idle(node)
    assert [m for m in raw.drain(0.3) if m["e"] == "executionReport"] == []
    # a bad listenKey in the URL: an error frame, then 1008
    bad = served.ws("/ws/" + "0" * 64)
    assert bad.recv()["error"]["code"] == "INVALID_STREAM"
    with pytest.raises(ConnectionClosed) as e:
        bad.recv()
    assert e.value.rcvd.code == 1008


def test_listen_key_expires_unless_kept_alive(tmp_path):
    cfg = three_accounts_config()
    cfg.api.listen_key_ttl_s = 1.0
    n = Node(tmp_path / "n", cfg, sync="none")
    n.start()
    s = Served(n)
    try:
        key, _ = make_key(n, 0)
        lk = listen_key(s, key)
        c = s.ws(f"/ws/{lk}")
        for _ in range(3):  # 1.8 s in all, kept alive every 0.6 s: still there
            time.sleep(0.6)
            assert s.http.put("/api/v3/userDataStream", params={"listenKey": lk},
                              headers={"X-MBX-APIKEY": key}).json() == {}
        place(n, 0, "sell", "1", 50000)
        assert c.until(lambda m: m.get("e") == "executionReport")[-1]["x"] == "NEW"
        t0 = time.monotonic()
        msgs = c.until(lambda m: m.get("e") == "listenKeyExpired", timeout=5)
        assert 0.5 < time.monotonic() - t0 < 2.5
        assert msgs[-1]["listenKey"] == lk and abs(msgs[-1]["E"] - time.time() * 1000) < 5000
        place(n, 0, "sell", "1", 50001)  # nothing more on this connection
        wait_idle(n)
        assert c.drain(0.3) == []
        assert s.hub.stats()["users"] == 0
        r = s.http.put("/api/v3/userDataStream", params={"listenKey": lk}, headers={"X-MBX-APIKEY": key})
        assert r.json()["code"] == -1125
        late = s.ws(f"/ws/{lk}")
        err = late.recv()["error"]
        assert err["code"] == "INVALID_STREAM" and "listenKey" in err["message"]
        # closing a key ends its streams at once, the same way
        lk2 = listen_key(s, key)
        c2 = s.ws(f"/ws/{lk2}")
        time.sleep(0.1)
        s.http.delete("/api/v3/userDataStream", params={"listenKey": lk2}, headers={"X-MBX-APIKEY": key})
        assert c2.recv(2)["e"] == "listenKeyExpired"
    finally:
        s.close()
        n.stop()


# -- Origin --------------------------------------------------------------------------------------------------
def test_cross_site_pages_are_refused(tmp_path):
    from websockets.exceptions import InvalidStatus

    cfg = three_accounts_config(demo=True)
    cfg.api.ws_allowed_origins = ["https://app.example.com"]
    n = Node(tmp_path / "o", cfg, sync="none")
    n.start()
    s = Served(n)
    try:
        for origin in ("http://evil.example", "null", f"http://127.0.0.1:{s.port + 1}", "https://app.example.com:444",
                       f"http://127.0.0.1.evil.example:{s.port}"):
            with pytest.raises(InvalidStatus) as e:
                s.ws("/ws", origin=origin)
            assert e.value.response.status_code == 403, origin
        assert s.hub.stats()["refused_origins"] == 5
        # the node's own page, an allowed origin, and a client without Origin (a bot)
        for kw in ({"origin": f"http://127.0.0.1:{s.port}"}, {"origin": f"http://localhost:{s.port}"},
                   {"origin": "https://app.example.com"}, {}):
            if "localhost" in kw.get("origin", ""):
                c = Client(connect(f"ws://localhost:{s.port}/ws", origin=kw["origin"], open_timeout=5))
            else:
                c = s.ws("/ws", **kw)
            assert c.request("userDataStream.subscribe")["result"] == {"userId": 0}, kw
            c.close()
    finally:
        s.close()
        n.stop()


# -- the streams added for Binance parity ----------------------------------------------------------------------
def test_agg_trade_mini_ticker_and_all_market_arrays(served, node):
    c = subscribed(served, ["btcusd@aggTrade", "btcusd@miniTicker", "!miniTicker@arr", "!ticker@arr",
                            "btcusd@ticker_1h", "btcusd@ticker_1d", "btcusd@ticker"], "/stream")
    place(node, 0, "sell", "1", 50000)
    place(node, 1, "buy", "0.5", 50000)
    place(node, 0, "sell", "1", 3000, market="ETH-USD")
    place(node, 1, "buy", "0.3", 3000, market="ETH-USD")
    place(node, 1, "buy", "0.25", 50000)
    trades = served.http.get("/api/v3/aggTrades", params={"symbol": "BTCUSD"}).json()
    assert len(trades) == 2
    wait_idle(node)
    time.sleep(1.2)  # the tickers go out at most once a second: the last state is there after one period
    msgs = c.drain(0.5)
    by: dict = {}
    for m in msgs:
        by.setdefault(m["stream"], []).append(m["data"])
    agg = by["btcusd@aggTrade"]
    assert [(a["a"], a["f"], a["l"], Decimal(a["p"]), Decimal(a["q"]), a["m"], a["T"]) for a in agg] == [
        (t["a"], t["f"], t["l"], Decimal(t["p"]), Decimal(t["q"]), t["m"], t["T"]) for t in trades]
    assert agg[0]["e"] == "aggTrade" and agg[0]["s"] == "BTC-USD" and agg[0]["M"] is True
    with node.lock:
        t = node.exchange.ticker("BTC-USD")
        te = node.exchange.ticker("ETH-USD")
    mini = by["btcusd@miniTicker"][-1]
    assert mini["e"] == "24hrMiniTicker" and (mini["o"], mini["h"], mini["l"], mini["c"], mini["v"], mini["q"]) == (
        str(t["open"]), str(t["high"]), str(t["low"]), str(t["last"]), str(t["volume"]), str(t["quote_volume"]))
    arr = {}
    for rows in by["!miniTicker@arr"]:
        arr.update({r["s"]: r for r in rows})
    assert set(arr) == {"BTC-USD", "ETH-USD"}  # the markets that changed only (SOL-USD had no trade)
    assert arr["BTC-USD"] == {**mini, "E": arr["BTC-USD"]["E"]} and arr["ETH-USD"]["c"] == str(te["last"])
    full = {}
    for rows in by["!ticker@arr"]:
        full.update({r["s"]: r for r in rows})
    assert full["BTC-USD"] == {**by["btcusd@ticker"][-1], "E": full["BTC-USD"]["E"]}
    # every trade is within the last hour: the rolling windows equal the 24 h statistics
    for win in ("1h", "1d"):
        w = by[f"btcusd@ticker_{win}"][-1]
        assert w["e"] == f"{win}Ticker"
        assert (w["o"], w["h"], w["l"], w["c"], w["v"], w["q"], w["n"], w["F"], w["L"]) == (
            str(t["open"]), str(t["high"]), str(t["low"]), str(t["last"]), str(t["volume"]),
            str(t["quote_volume"]), t["trades"], 1, 2)
        assert w["C"] - w["O"] <= {"1h": 3_600_000, "1d": 86_400_000}[win] and w["w"] == "50000.00"
    # throttled: at most one message per second and stream (here: one, or two with the first at once)
    assert len(by["btcusd@miniTicker"]) <= 2 and len(by["btcusd@ticker_1h"]) <= 2


def test_depth_update_speeds_differ_and_content_is_the_same(served, node):
    c = subscribed(served, ["btcusd@depth", "btcusd@depth@100ms", "btcusd@depth5", "btcusd@depth5@100ms"],
                   "/stream")
    snapshot = served.http.get("/book/BTC-USD?depth=1000").json()
    rng = random.Random(11)
    t0 = time.monotonic()
    arrivals: dict = {}
    got = []
    while time.monotonic() - t0 < 2.6:
        random_load(node, rng, 10, accounts=(0, 1, 2))
        time.sleep(0.02)
        while True:
            try:
                m = c.recv(0.001)
            except TimeoutError:
                break
            got.append(m)
            arrivals.setdefault(m["stream"], []).append(time.monotonic())
    wait_idle(node)
    final = served.http.get("/book/BTC-USD?depth=1000").json()
    deadline = time.time() + 5
    while time.time() < deadline and not any(m["stream"] == "btcusd@depth" and m["data"]["u"] ==
                                             final["last_update_id"] for m in got):
        try:
            m = c.recv(0.2)
        except TimeoutError:
            continue
        got.append(m)
        arrivals.setdefault(m["stream"], []).append(time.monotonic())
    slow = [m["data"] for m in got if m["stream"] == "btcusd@depth"]
    fast = [m["data"] for m in got if m["stream"] == "btcusd@depth@100ms"]
    assert 2 <= len(slow) <= 5 and len(fast) >= 3 * len(slow), (len(slow), len(fast))
    gaps = [b - a for a, b in zip(arrivals["btcusd@depth"], arrivals["btcusd@depth"][1:])]
    # (arrival gaps, not minimums: a client held up by a loaded machine reads two frames at once)
    assert statistics.median(gaps) > 0.8, gaps
    fast_gaps = [b - a for a, b in zip(arrivals["btcusd@depth@100ms"], arrivals["btcusd@depth@100ms"][1:])]
    assert statistics.median(fast_gaps) > 0.05, fast_gaps
    # the same book from either
    for diffs in (slow, fast):
        for a, b in zip(diffs, diffs[1:]):
            assert b["U"] == a["u"] + 1
        bids, asks = apply_resync(snapshot, diffs)
        assert diffs[-1]["u"] == final["last_update_id"]
        assert bids == {Decimal(p): Decimal(q) for p, q in final["bids"]}
        assert asks == {Decimal(p): Decimal(q) for p, q in final["asks"]}
    p_slow = [m["data"] for m in got if m["stream"] == "btcusd@depth5"]
    p_fast = [m["data"] for m in got if m["stream"] == "btcusd@depth5@100ms"]
    assert len(p_fast) > len(p_slow) >= 2


def test_agg_trade_stream_aggregates_as_rest(served, node):
    """A taker sweeping two makers at one price is one @aggTrade message, equal to GET /api/v3/aggTrades'
    aggregate; sweeping two prices, two messages (one per price)."""
    c = subscribed(served, ["btcusd@aggTrade"], "/stream")
    place(node, 0, "sell", "0.2", 50000)
    place(node, 2, "sell", "0.3", 50000)
    place(node, 1, "buy", "0.5", 50000)      # two trades at 50000: one aggregate
    place(node, 0, "sell", "0.1", 50100)
    place(node, 2, "sell", "0.1", 50200)
    place(node, 1, "buy", "0.2", 50200)      # 50100 then 50200: two aggregates
    wait_idle(node)
    got = [m["data"] for m in c.drain(0.5) if m["stream"] == "btcusd@aggTrade"]
    rest = served.http.get("/api/v3/aggTrades", params={"symbol": "BTCUSD"}).json()
    assert [(g["f"], g["l"], g["p"], g["q"]) for g in rest] == [
        (rest[0]["f"], rest[0]["f"] + 1, "50000.00000000", "0.50000000"),
        (rest[0]["f"] + 2, rest[0]["f"] + 2, "50100.00000000", "0.10000000"),
        (rest[0]["f"] + 3, rest[0]["f"] + 3, "50200.00000000", "0.10000000")]
    assert len(got) == 3
    for g, r in zip(got, rest):
        assert (g["e"], g["s"], g["M"]) == ("aggTrade", "BTC-USD", True)
        assert (g["a"], g["f"], g["l"], Decimal(g["p"]), Decimal(g["q"]), g["T"], g["m"]) == (
            r["a"], r["f"], r["l"], Decimal(r["p"]), Decimal(r["q"]), r["T"], r["m"])
