"""The Binance-compatible subset (/api/v3): raw signed requests checked
against Binance's shapes and error codes, then a real third-party Binance
client (ccxt) driving a node served by uvicorn on a loopback port."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lxdex.client import ApiError, Client
from lxdex.node.http import build_app

from .nodeutil import served
from .apiutil import ADMIN, transport, admin, base_url, api_node, binance_sign, http, make_node, new_user, state, stop_node  # noqa: F401


@pytest.fixture
def trader(admin, http):
    return new_user(admin, http)


def signed(http, user, method, path, params, ts=None, recv_window=None, in_body=False, secret=None, key=None):
    q = binance_sign(secret or user.secret, params, ts, recv_window)
    h = {"X-MBX-APIKEY": key or user.api_key}
    if in_body:
        h["content-type"] = "application/x-www-form-urlencoded"
        return http.request(method, path, content=q.encode(), headers=h)
    return http.request(method, path + "?" + q, headers=h)


def test_general_and_market_data(http, trader):
    assert http.get("/api/v3/ping").json() == {}
    assert abs(http.get("/api/v3/time").json()["serverTime"] - time.time() * 1000) < 5000
    info = http.get("/api/v3/exchangeInfo").json()
    assert info["timezone"] == "UTC" and [s["symbol"] for s in info["symbols"]] == ["BTCUSD", "ETHUSD", "SOLUSD"]
    btc = info["symbols"][0]
    assert (btc["baseAsset"], btc["quoteAsset"], btc["status"]) == ("BTC", "USD", "TRADING")
    filters = {f["filterType"]: f for f in btc["filters"]}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000" and filters["LOT_SIZE"]["stepSize"] == "0.00010000"
    one = http.get("/api/v3/exchangeInfo", params={"symbol": "ETHUSD"}).json()
    assert [s["symbol"] for s in one["symbols"]] == ["ETHUSD"]
    assert http.get("/api/v3/exchangeInfo", params={"symbols": '["ETHUSD","SOLUSD"]'}).json()["symbols"][1][
        "symbol"] == "SOLUSD"
    for path, params in (("/api/v3/depth", {"symbol": "DOGEUSD"}), ("/api/v3/exchangeInfo", {"symbol": "BTC-USD"}),
                         ("/api/v3/trades", {"symbol": "X"}), ("/api/v3/ticker/price", {"symbol": "NOPE"})):
        r = http.get(path, params=params)
        assert r.status_code == 400 and r.json() == {"code": -1121, "msg": "Invalid symbol."}
    r = http.get("/api/v3/depth")
    assert r.json()["code"] == -1102 and "'symbol'" in r.json()["msg"]
    # a trade to look at
    signed(http, trader, "POST", "/api/v3/order", {"symbol": "ETHUSD", "side": "SELL", "type": "LIMIT",
                                                     "timeInForce": "GTC", "quantity": "1", "price": "2500"})
    signed(http, trader, "POST", "/api/v3/order", {"symbol": "ETHUSD", "side": "BUY", "type": "LIMIT",
                                                     "timeInForce": "GTC", "quantity": "0.4", "price": "2500"})
    d = http.get("/api/v3/depth", params={"symbol": "ETHUSD", "limit": 5}).json()
    assert d["asks"][0] == ["2500.00000000", "0.60000000"] and isinstance(d["lastUpdateId"], int)
    [t] = http.get("/api/v3/trades", params={"symbol": "ETHUSD", "limit": 1}).json()
    assert (t["price"], t["qty"], t["quoteQty"], t["isBuyerMaker"]) == ("2500.00000000", "0.40000000",
                                                                        "1000.00000000", False)
    [a] = http.get("/api/v3/aggTrades", params={"symbol": "ETHUSD", "limit": 1}).json()
    assert a["p"] == t["price"] and a["a"] == t["id"]
    k = http.get("/api/v3/klines", params={"symbol": "ETHUSD", "interval": "1m"}).json()[-1]
    assert len(k) == 12 and k[4] == "2500.00000000" and k[6] == k[0] + 59_999
    assert http.get("/api/v3/klines", params={"symbol": "ETHUSD", "interval": "7m"}).json()["code"] == -1120
    tk = http.get("/api/v3/ticker/24hr", params={"symbol": "ETHUSD"}).json()
    assert tk["lastPrice"] == "2500.00000000" and tk["askPrice"] == "2500.00000000" and tk["count"] >= 1
    assert len(http.get("/api/v3/ticker/24hr").json()) == 3
    assert http.get("/api/v3/ticker/price", params={"symbol": "ETHUSD"}).json() == {"symbol": "ETHUSD",
                                                                                    "price": "2500.00000000"}
    bt = http.get("/api/v3/ticker/bookTicker", params={"symbols": '["ETHUSD"]'}).json()
    assert bt == [{"symbol": "ETHUSD", "bidPrice": "0.00000000", "bidQty": "0.00000000", "askPrice": "2500.00000000",
                   "askQty": "0.60000000"}]
    signed(http, trader, "DELETE", "/api/v3/openOrders", {"symbol": "ETHUSD"})


def test_order_lifecycle(http, trader, admin):
    other = new_user(admin, http)
    r = signed(http, trader, "POST", "/api/v3/order", {
        "symbol": "BTCUSD", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC", "quantity": "1",
        "price": "60000", "newClientOrderId": "abc-1", "newOrderRespType": "RESULT"}, in_body=True)
    assert r.status_code == 200, r.text
    o = r.json()
    assert (o["symbol"], o["status"], o["clientOrderId"], o["origQty"], o["type"], o["side"]) == (
        "BTCUSD", "NEW", "abc-1", "1.00000000", "LIMIT", "SELL") and "fills" not in o
    oid = o["orderId"]
    r = signed(http, other, "POST", "/api/v3/order", {"symbol": "BTCUSD", "side": "BUY", "type": "MARKET",
                                                        "quantity": "0.25"})
    m = r.json()
    assert m["status"] == "FILLED" and m["executedQty"] == "0.25000000" and m["cummulativeQuoteQty"] == "15000.00000000"
    assert m["fills"][0]["price"] == "60000.00000000" and m["fills"][0]["commission"] == "7.50000000"
    q = signed(http, trader, "GET", "/api/v3/order", {"symbol": "BTCUSD", "orderId": oid}).json()
    assert (q["status"], q["executedQty"], q["isWorking"]) == ("PARTIALLY_FILLED", "0.25000000", True)
    assert signed(http, trader, "GET", "/api/v3/order", {"symbol": "BTCUSD", "origClientOrderId": "abc-1"}
                  ).json()["orderId"] == oid
    [oo] = signed(http, trader, "GET", "/api/v3/openOrders", {"symbol": "BTCUSD"}).json()
    assert oo["orderId"] == oid and oo["origQty"] == "1.00000000" and oo["clientOrderId"] == "abc-1"
    # another user's order does not exist for you
    r = signed(http, other, "GET", "/api/v3/order", {"symbol": "BTCUSD", "orderId": oid})
    assert r.json() == {"code": -2013, "msg": "Order does not exist."}
    r = signed(http, other, "DELETE", "/api/v3/order", {"symbol": "BTCUSD", "orderId": oid})
    assert r.json() == {"code": -2011, "msg": "Unknown order sent."}
    c = signed(http, trader, "DELETE", "/api/v3/order", {"symbol": "BTCUSD", "orderId": oid}).json()
    assert c["status"] == "CANCELED" and c["orderId"] == oid and c["executedQty"] == "0.25000000"
    assert signed(http, trader, "GET", "/api/v3/openOrders", {}).json() == []
    all_ = signed(http, trader, "GET", "/api/v3/allOrders", {"symbol": "BTCUSD"}).json()
    assert [(x["orderId"], x["status"]) for x in all_] == [(oid, "CANCELED")]
    [t] = signed(http, trader, "GET", "/api/v3/myTrades", {"symbol": "BTCUSD"}).json()
    assert (t["orderId"], t["isMaker"], t["isBuyer"], t["qty"], t["commission"], t["commissionAsset"]) == (
        oid, True, False, "0.25000000", "-1.50000000", "USD")
    assert signed(http, trader, "GET", "/api/v3/myTrades", {"symbol": "BTCUSD", "orderId": oid + 1}).json() == []
    acct = signed(http, trader, "GET", "/api/v3/account", {"omitZeroBalances": "true"}).json()
    bal = {b["asset"]: b for b in acct["balances"]}
    assert bal["BTC"] == {"asset": "BTC", "free": "9.75000000", "locked": "0.00000000"}
    assert acct["canTrade"] is True and acct["canWithdraw"] is False and acct["accountType"] == "SPOT"


def test_order_types_map(http, trader):
    def place(**p):
        return signed(http, trader, "POST", "/api/v3/order", {"symbol": "BTCUSD", "newOrderRespType": "RESULT",
                                                                **p}).json()

    o = place(side="BUY", type="LIMIT_MAKER", quantity="1", price="100")
    assert o["status"] == "NEW"
    assert place(side="SELL", type="LIMIT_MAKER", quantity="1", price="99")["code"] == -2010  # would take
    o = place(side="SELL", type="STOP_LOSS_LIMIT", timeInForce="GTC", quantity="1", price="90", stopPrice="95")
    assert o["status"] == "NEW" and o["stopPrice"] == "95.00000000"
    o = place(side="BUY", type="LIMIT", timeInForce="IOC", quantity="1", price="1")
    assert o["status"] == "EXPIRED"
    assert place(side="BUY", type="LIMIT", timeInForce="GTD", quantity="1", price="1")["code"] == -1115
    assert place(side="UP", type="LIMIT", timeInForce="GTC", quantity="1", price="1")["code"] == -1117
    assert place(side="BUY", type="OCO", quantity="1")["code"] == -1116
    assert place(side="BUY", type="LIMIT", quantity="1", price="1")["code"] == -1102  # timeInForce
    assert place(side="BUY", type="LIMIT", timeInForce="GTC", quantity="1", price="1.001")["code"] == -1013
    assert place(side="BUY", type="LIMIT", timeInForce="GTC", quantity="1000", price="100000")["code"] == -2010
    assert place(side="BUY", type="LIMIT", timeInForce="GTC", quantity="1", price="1", colour="red")["code"] == -1104
    opened = signed(http, trader, "GET", "/api/v3/openOrders", {"symbol": "BTCUSD"}).json()
    assert {o["type"] for o in opened} == {"LIMIT_MAKER", "STOP_LOSS_LIMIT"}
    assert len(signed(http, trader, "DELETE", "/api/v3/openOrders", {"symbol": "BTCUSD"}).json()) == 2


def test_signed_request_failures(http, trader, api_node):
    before = state(api_node, trader.user_id)
    order = {"symbol": "BTCUSD", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "1",
             "price": "10"}
    now = int(time.time() * 1000)
    cases = [
        (dict(secret="00" * 32), 400, -1022),
        (dict(ts=now - 60_000), 400, -1021),
        (dict(ts=now - 2_000, recv_window=1000), 400, -1021),
        (dict(ts=now + 10_000), 400, -1021),
        (dict(recv_window=70_000), 400, -1131),
        (dict(key="B" * 64), 401, -2015),
    ]
    for kw, status, code in cases:
        r = signed(http, trader, "POST", "/api/v3/order", order, **kw)
        assert (r.status_code, r.json()["code"]) == (status, code), (kw, r.json())
    r = http.post("/api/v3/order", params=order)  # no key
    assert r.json() == {"code": -2014, "msg": "API-key format invalid."}
    r = http.post("/api/v3/order", params={**order, "timestamp": now}, headers={"X-MBX-APIKEY": trader.api_key})
    assert r.json()["code"] == -1102 and "'signature'" in r.json()["msg"]
    # a read-only key cannot trade
    ro = Client(base_url(http), trader.api_key, trader.secret, http=http).create_api_key(["read"])
    r = signed(http, trader, "POST", "/api/v3/order", order, secret=ro["secret"], key=ro["api_key"])
    assert (r.status_code, r.json()["code"]) == (401, -2015)
    assert signed(http, trader, "GET", "/api/v3/account", {}, secret=ro["secret"], key=ro["api_key"]
                  ).json()["canTrade"] is False
    after = state(api_node, trader.user_id)
    assert after[1][0][:2] == before[1][0][:2]  # balances and orders unchanged (a key was added)


def test_binance_rate_limit(tmp_path):
    from starlette.testclient import TestClient

    from lxdex.node.config import ApiConfig

    node = make_node(tmp_path / "n", history=False, api=ApiConfig(rate_per_ip=0.01, burst_per_ip=2))
    try:
        with TestClient(build_app(node)) as c:
            rs = [c.get("/api/v3/ping") for _ in range(3)]
            assert [r.status_code for r in rs] == [200, 200, 429]
            assert rs[2].json()["code"] == -1003 and int(rs[2].headers["retry-after"]) >= 1
    finally:
        stop_node(node)


# -- a real Binance client ------------------------------------------------------------------------------------------------


@pytest.fixture
def served_node(tmp_path):
    """A node served as `lxdex node` serves it, on a free loopback port, in a thread."""
    node = make_node(tmp_path / "served")
    try:
        with served(build_app(node)) as base:
            yield node, base
    finally:
        stop_node(node)


def test_ccxt_binance_client_against_the_node(served_node):
    ccxt = pytest.importorskip("ccxt")
    node, base = served_node
    admin = Client(base, admin_token=ADMIN)
    key = admin.admin_create_api_key(0, ["read", "trade"])  # account 0: the config's funded "alice"
    maker = admin.admin_create_api_key(1, ["read", "trade"])
    # Every API family of ccxt's binance points at the node (the unsupported ones at a path that 404s), so
    # nothing can leave the machine whatever ccxt decides to call.
    api = {name: f"{base}/unsupported/{name}" for name in ccxt.binance().urls["api"]}
    api.update(public=f"{base}/api/v3", private=f"{base}/api/v3")
    opts = {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False}
    ex = ccxt.binance({"apiKey": key["api_key"], "secret": key["secret"], "urls": {"api": api}, "options": opts,
                       "enableRateLimit": False})
    mk = ccxt.binance({"apiKey": maker["api_key"], "secret": maker["secret"], "urls": {"api": api},
                       "options": opts, "enableRateLimit": False})
    markets = ex.load_markets()
    assert {"BTC/USD", "ETH/USD", "SOL/USD"} <= set(markets)
    btc = markets["BTC/USD"]
    assert btc["id"] == "BTCUSD" and btc["precision"]["price"] == 0.01 and btc["precision"]["amount"] == 0.0001
    mk.load_markets()
    mk.create_order("BTC/USD", "limit", "sell", 0.5, 51000)
    book = ex.fetch_order_book("BTC/USD", limit=10)
    assert book["asks"][0][:2] == [51000.0, 0.5] and book["bids"] == []
    o = ex.create_order("BTC/USD", "limit", "buy", 0.2, 50000)
    assert o["status"] == "open" and o["amount"] == 0.2 and o["price"] == 50000.0
    assert [x["id"] for x in ex.fetch_open_orders("BTC/USD")] == [o["id"]]
    assert ex.fetch_order(o["id"], "BTC/USD")["status"] == "open"
    assert ex.fetch_order_book("BTC/USD")["bids"][0][:2] == [50000.0, 0.2]
    c = ex.cancel_order(o["id"], "BTC/USD")
    assert c["status"] == "canceled"
    assert ex.fetch_open_orders("BTC/USD") == []
    t = ex.create_order("BTC/USD", "market", "buy", 0.1, params={"quoteOrderQty": None})
    assert t["status"] == "closed" and t["filled"] == 0.1
    bal = ex.fetch_balance()
    assert bal["BTC"]["free"] == pytest.approx(100.1) and bal["USD"]["used"] == 0
    with node.lock:
        usd = node.exchange.balance(0, "USD")[0]
    assert bal["USD"]["free"] == pytest.approx(float(usd))
    [tr] = ex.fetch_my_trades("BTC/USD")
    assert tr["price"] == 51000.0 and tr["amount"] == 0.1 and tr["side"] == "buy"
    assert ex.fetch_ticker("BTC/USD")["last"] == 51000.0
    assert ex.fetch_trades("BTC/USD")[-1]["price"] == 51000.0
    assert ex.fetch_ohlcv("BTC/USD", "1m")[-1][4] == 51000.0
    with pytest.raises(ccxt.InsufficientFunds):
        ex.create_order("BTC/USD", "limit", "buy", 1000, 50000)
    with pytest.raises(ccxt.OrderNotFound):
        ex.cancel_order("987654", "BTC/USD")


# -- client order ids, order/test, cancelReplace ------------------------------------------------------------------


def order(symbol="BTCUSD", side="BUY", qty="0.1", price="100", **kw):
    return {"symbol": symbol, "side": side, "type": "LIMIT", "timeInForce": "GTC", "quantity": qty, "price": price,
            **kw}


def test_client_order_ids_are_kept_and_duplicates_refused(http, trader, admin, api_node):
    o = signed(http, trader, "POST", "/api/v3/order", order(newClientOrderId="grid:1/a.b")).json()
    assert o["clientOrderId"] == "grid:1/a.b"
    before = state(api_node, trader.user_id)
    r = signed(http, trader, "POST", "/api/v3/order", order(price="101", newClientOrderId="grid:1/a.b"))
    assert (r.status_code, r.json()) == (400, {"code": -2010, "msg": "Duplicate order sent."})
    after = state(api_node, trader.user_id)
    assert after[1] == before[1] and after[0] == before[0] + 1  # rejected by the state machine: a seq, no change
    r = signed(http, trader, "POST", "/api/v3/order", order(newClientOrderId="has space"))
    assert r.json()["code"] == -1100 and "newClientOrderId" in r.json()["msg"]
    # another user may use it
    other = new_user(admin, http)
    assert signed(http, other, "POST", "/api/v3/order", order(newClientOrderId="grid:1/a.b")).status_code == 200
    # cancel by client id; then the order is found by it in the history, and the id is free again
    c = signed(http, trader, "DELETE", "/api/v3/order", {"symbol": "BTCUSD", "origClientOrderId": "grid:1/a.b",
                                                         "newClientOrderId": "cx-1"}).json()
    assert (c["orderId"], c["status"], c["origClientOrderId"], c["clientOrderId"]) == (
        o["orderId"], "CANCELED", "grid:1/a.b", "cx-1")
    q = signed(http, trader, "GET", "/api/v3/order", {"symbol": "BTCUSD", "origClientOrderId": "grid:1/a.b"}).json()
    assert (q["orderId"], q["status"], q["clientOrderId"]) == (o["orderId"], "CANCELED", "grid:1/a.b")
    o2 = signed(http, trader, "POST", "/api/v3/order", order(newClientOrderId="grid:1/a.b")).json()
    assert o2["orderId"] != o["orderId"]
    q = signed(http, trader, "GET", "/api/v3/order", {"symbol": "BTCUSD", "origClientOrderId": "grid:1/a.b"}).json()
    assert q["orderId"] == o2["orderId"] and q["status"] == "NEW"
    all_ = signed(http, trader, "GET", "/api/v3/allOrders", {"symbol": "BTCUSD"}).json()
    assert [x["clientOrderId"] for x in all_ if x["orderId"] in (o["orderId"], o2["orderId"])] == ["grid:1/a.b"] * 2
    assert signed(http, trader, "GET", "/api/v3/order", {"symbol": "BTCUSD", "origClientOrderId": "nope"}
                  ).json()["code"] == -2013
    dl = signed(http, trader, "DELETE", "/api/v3/openOrders", {"symbol": "BTCUSD"}).json()
    assert [x["origClientOrderId"] for x in dl] == ["grid:1/a.b"]


def test_client_order_id_survives_a_restart(tmp_path):
    from starlette.testclient import TestClient

    from lxdex.node.server import Node

    node = make_node(tmp_path / "n")
    try:
        with TestClient(build_app(node), client=("127.0.0.1", 50000)) as c:
            adm = Client("http://testserver", admin_token=ADMIN, http=c)
            u = new_user(adm, c)
            open_ = signed(c, u, "POST", "/api/v3/order", order(newClientOrderId="stays-open")).json()
            closed = signed(c, u, "POST", "/api/v3/order", order(price="99", newClientOrderId="gets-closed")).json()
            signed(c, u, "DELETE", "/api/v3/order", {"symbol": "BTCUSD", "orderId": closed["orderId"]})
        with node.lock:
            h = node.exchange.state_hash()
            assert node.exchange.order_by_client_id(u.user_id, "stays-open") == open_["orderId"]
    finally:
        stop_node(node)
    node = Node(tmp_path / "n", node.config, sync="none", history=True)
    node.start()
    try:
        with node.lock:
            assert node.exchange.state_hash() == h  # the journal replay restores the client ids too
        with TestClient(build_app(node), client=("127.0.0.1", 50000)) as c:
            q = signed(c, u, "GET", "/api/v3/order", {"symbol": "BTCUSD", "origClientOrderId": "stays-open"}).json()
            assert (q["orderId"], q["clientOrderId"], q["status"]) == (open_["orderId"], "stays-open", "NEW")
            q = signed(c, u, "GET", "/api/v3/order", {"symbol": "BTCUSD", "origClientOrderId": "gets-closed"}).json()
            assert (q["orderId"], q["status"]) == (closed["orderId"], "CANCELED")
            [oo] = signed(c, u, "GET", "/api/v3/openOrders", {"symbol": "BTCUSD"}).json()
            assert oo["clientOrderId"] == "stays-open"
            r = signed(c, u, "POST", "/api/v3/order", order(newClientOrderId="stays-open"))
            assert r.json()["code"] == -2010
    finally:
        stop_node(node)


def test_order_test_validates_and_places_nothing(http, trader, api_node):
    before = state(api_node, trader.user_id)
    r = signed(http, trader, "POST", "/api/v3/order/test", order())
    assert (r.status_code, r.json()) == (200, {})
    rates = signed(http, trader, "POST", "/api/v3/order/test", order(computeCommissionRates="true")).json()
    assert rates["standardCommissionForOrder"] == {"maker": "-0.00010000", "taker": "0.00050000"}
    for params, code in ((order(price="1.001"), -1013), (order(side="UP"), -1117), (order(timeInForce="GTD"), -1115),
                         (order(colour="red"), -1104), (order(computeCommissionRates="yes"), -1130),
                         (order(symbol="NOPE"), -1121), ({**order(), "quantity": ""}, -1102)):
        r = signed(http, trader, "POST", "/api/v3/order/test", params)
        assert r.json()["code"] == code, (params, r.json())
    assert "'quantity'" in signed(http, trader, "POST", "/api/v3/order/test", {**order(), "quantity": ""}
                                  ).json()["msg"]
    r = signed(http, trader, "POST", "/api/v3/order/test", order(), secret="00" * 32)
    assert r.json()["code"] == -1022
    assert state(api_node, trader.user_id) == before  # nothing submitted: not even a seq


def test_cancel_replace(http, trader, api_node):
    first = signed(http, trader, "POST", "/api/v3/order", order(newClientOrderId="cr-1")).json()
    r = signed(http, trader, "POST", "/api/v3/order/cancelReplace", order(
        price="105", cancelReplaceMode="STOP_ON_FAILURE", cancelOrigClientOrderId="cr-1", newClientOrderId="cr-1",
        newOrderRespType="RESULT"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["cancelResult"], body["newOrderResult"]) == ("SUCCESS", "SUCCESS")
    assert body["cancelResponse"]["orderId"] == first["orderId"] and body["cancelResponse"]["status"] == "CANCELED"
    assert body["cancelResponse"]["origClientOrderId"] == "cr-1"
    new = body["newOrderResponse"]
    assert (new["clientOrderId"], new["price"], new["status"]) == ("cr-1", "105.00000000", "NEW")
    [oo] = [o for o in signed(http, trader, "GET", "/api/v3/openOrders", {"symbol": "BTCUSD"}).json()]
    assert oo["orderId"] == new["orderId"]
    # STOP_ON_FAILURE with an unknown order: nothing placed
    before = state(api_node, trader.user_id)
    r = signed(http, trader, "POST", "/api/v3/order/cancelReplace", order(
        cancelReplaceMode="STOP_ON_FAILURE", cancelOrderId=10**12))
    assert r.status_code == 400 and r.json() == {"code": -2022, "msg": "Order cancel-replace failed.", "data": {
        "cancelResult": "FAILURE", "newOrderResult": "NOT_ATTEMPTED",
        "cancelResponse": {"code": -2011, "msg": "Unknown order sent."}, "newOrderResponse": None}}
    assert state(api_node, trader.user_id)[1] == before[1]
    # ALLOW_FAILURE: the new order is placed although the cancel failed
    r = signed(http, trader, "POST", "/api/v3/order/cancelReplace", order(
        price="90", cancelReplaceMode="ALLOW_FAILURE", cancelOrigClientOrderId="no-such-order"))
    d = r.json()
    assert r.status_code == 409 and d["code"] == -2021 and d["msg"] == "Order cancel-replace partially failed."
    assert (d["data"]["cancelResult"], d["data"]["newOrderResult"]) == ("FAILURE", "SUCCESS")
    assert d["data"]["newOrderResponse"]["price"] == "90.00000000"
    # the cancel done, the new order refused (funds): the cancel stands
    r = signed(http, trader, "POST", "/api/v3/order/cancelReplace", order(
        qty="1000", price="100000", cancelReplaceMode="STOP_ON_FAILURE", cancelOrderId=new["orderId"]))
    d = r.json()
    assert r.status_code == 409 and d["code"] == -2021
    assert (d["data"]["cancelResult"], d["data"]["newOrderResult"]) == ("SUCCESS", "FAILURE")
    assert d["data"]["newOrderResponse"] == {"code": -2010,
                                             "msg": "Account has insufficient balance for requested action."}
    assert new["orderId"] not in [o["orderId"] for o in
                                  signed(http, trader, "GET", "/api/v3/openOrders", {"symbol": "BTCUSD"}).json()]
    # both fail
    r = signed(http, trader, "POST", "/api/v3/order/cancelReplace", order(
        qty="1000", price="100000", cancelReplaceMode="ALLOW_FAILURE", cancelOrderId=new["orderId"]))
    d = r.json()
    assert r.status_code == 400 and d["code"] == -2022 and d["data"]["newOrderResult"] == "FAILURE"
    # bad parameters name the field; a bad signature is refused; nothing changes
    before = state(api_node, trader.user_id)
    for params, code, word in (
            (order(cancelOrderId=1), -1102, "cancelReplaceMode"),
            (order(cancelReplaceMode="SOMETIMES", cancelOrderId=1), -1130, "cancelReplaceMode"),
            (order(cancelReplaceMode="STOP_ON_FAILURE"), -1102, "cancelOrderId"),
            (order(cancelReplaceMode="STOP_ON_FAILURE", cancelOrderId="x"), -1102, "cancelOrderId"),
            (order(cancelReplaceMode="STOP_ON_FAILURE", cancelOrderId=1, cancelNewClientOrderId="a b"), -1100,
             "cancelNewClientOrderId"),
            (order(cancelReplaceMode="STOP_ON_FAILURE", cancelOrderId=1, side="UP"), -1117, "side"),
            (order(cancelReplaceMode="STOP_ON_FAILURE", cancelOrderId=1, cancelRestrictions="ONLY_NEW"), -1104,
             "cancelRestrictions")):
        r = signed(http, trader, "POST", "/api/v3/order/cancelReplace", params)
        assert r.json()["code"] == code and (code == -1117 or word in r.json()["msg"]), (params, r.json())
    r = signed(http, trader, "POST", "/api/v3/order/cancelReplace",
               order(cancelReplaceMode="STOP_ON_FAILURE", cancelOrderId=1), secret="00" * 32)
    assert r.json()["code"] == -1022
    assert state(api_node, trader.user_id) == before
    signed(http, trader, "DELETE", "/api/v3/openOrders", {"symbol": "BTCUSD"})


def test_historical_trades_avg_price_and_rolling_tickers(http, trader, admin):
    other = new_user(admin, http)
    signed(http, trader, "POST", "/api/v3/order", order(symbol="SOLUSD", side="SELL", qty="3", price="20"))
    for _ in range(3):
        signed(http, other, "POST", "/api/v3/order", order(symbol="SOLUSD", qty="1", price="20"))
    signed(http, trader, "POST", "/api/v3/order", order(symbol="SOLUSD", side="SELL", qty="1", price="30"))
    signed(http, other, "POST", "/api/v3/order", order(symbol="SOLUSD", qty="1", price="30"))
    trades = http.get("/api/v3/trades", params={"symbol": "SOLUSD"}).json()
    assert len(trades) == 4
    # historicalTrades: an API key (no signature), fromId and limit
    h = http.get("/api/v3/historicalTrades", params={"symbol": "SOLUSD", "fromId": trades[1]["id"], "limit": 2},
                 headers={"X-MBX-APIKEY": trader.api_key}).json()
    assert h == trades[1:3]
    assert http.get("/api/v3/historicalTrades", params={"symbol": "SOLUSD"},
                    headers={"X-MBX-APIKEY": trader.api_key}).json() == trades
    r = http.get("/api/v3/historicalTrades", params={"symbol": "SOLUSD"})
    assert (r.status_code, r.json()["code"]) == (401, -2014)
    r = http.get("/api/v3/historicalTrades", params={"symbol": "SOLUSD"}, headers={"X-MBX-APIKEY": "B" * 64})
    assert (r.status_code, r.json()["code"]) == (401, -2015)
    for params, code, word in (({"symbol": "SOLUSD", "fromid": 1}, -1104, "fromid"),
                               ({"symbol": "SOLUSD", "limit": 0}, -1130, "limit"),
                               ({"symbol": "SOLUSD", "fromId": "x"}, -1102, "fromId")):
        r = http.get("/api/v3/historicalTrades", params=params, headers={"X-MBX-APIKEY": trader.api_key}).json()
        assert r["code"] == code and word in r["msg"], r
    # avgPrice: volume-weighted over 5 minutes
    a = http.get("/api/v3/avgPrice", params={"symbol": "SOLUSD"}).json()
    assert a == {"mins": 5, "price": "22.50000000", "closeTime": trades[-1]["time"]}
    assert http.get("/api/v3/avgPrice", params={"symbol": "SOL"}).json()["code"] == -1121
    # rolling ticker
    t = http.get("/api/v3/ticker", params={"symbol": "SOLUSD", "windowSize": "5m"}).json()
    assert (t["openPrice"], t["lastPrice"], t["highPrice"], t["lowPrice"], t["volume"], t["quoteVolume"]) == (
        "20.00000000", "30.00000000", "30.00000000", "20.00000000", "4.00000000", "90.00000000")
    assert (t["count"], t["firstId"], t["lastId"]) == (4, trades[0]["id"], trades[-1]["id"])
    assert t["priceChange"] == "10.00000000" and t["priceChangePercent"] == "50.000"
    assert t["weightedAvgPrice"] == "22.50000000" and t["openTime"] % 60_000 == 0
    mini = http.get("/api/v3/ticker", params={"symbols": '["SOLUSD","ETHUSD"]', "windowSize": "2d",
                                              "type": "MINI"}).json()
    assert [m["symbol"] for m in mini] == ["SOLUSD", "ETHUSD"] and "priceChange" not in mini[0]
    assert mini[0]["count"] == 4 and mini[0]["openTime"] % 3_600_000 == 0
    for params, code, word in (({"symbol": "SOLUSD", "windowSize": "60m"}, -1130, "windowSize"),
                               ({"symbol": "SOLUSD", "windowSize": "8d"}, -1130, "windowSize"),
                               ({"symbol": "SOLUSD", "type": "TINY"}, -1130, "type"),
                               ({}, -1102, "symbol"), ({"symbol": "SOLUSD", "window": "1m"}, -1104, "window")):
        r = http.get("/api/v3/ticker", params=params).json()
        assert r["code"] == code and word in r["msg"], (params, r)
    # 24 h ticker: MINI and symbols
    m24 = http.get("/api/v3/ticker/24hr", params={"symbols": '["SOLUSD"]', "type": "MINI"}).json()
    assert len(m24) == 1 and set(m24[0]) == {"symbol", "openPrice", "highPrice", "lowPrice", "lastPrice", "volume",
                                             "quoteVolume", "openTime", "closeTime", "firstId", "lastId", "count"}
    assert http.get("/api/v3/ticker/24hr", params={"symbol": "SOLUSD", "type": "X"}).json()["code"] == -1130
    signed(http, trader, "DELETE", "/api/v3/openOrders", {"symbol": "SOLUSD"})


def test_oco_order_lists(http, trader, api_node):
    base = {"symbol": "BTCUSD", "side": "SELL", "quantity": "0.5", "newOrderRespType": "RESULT"}
    before = signed(http, trader, "GET", "/api/v3/account", {}).json()["balances"]
    # Take profit above (LIMIT_MAKER at 900000), stop below (STOP_LOSS_LIMIT 2 / 1): one hold of 0.5 BTC. Far
    # from where other tests of this module left the last price, so neither triggers at once.
    r = signed(http, trader, "POST", "/api/v3/orderList/oco", {
        **base, "listClientOrderId": "my-list", "aboveType": "LIMIT_MAKER", "abovePrice": "900000",
        "aboveClientOrderId": "tp-1", "belowType": "STOP_LOSS_LIMIT", "belowStopPrice": "2",
        "belowPrice": "1", "belowTimeInForce": "GTC"}, in_body=True)
    assert r.status_code == 200, r.text
    lst = r.json()
    assert (lst["contingencyType"], lst["listStatusType"], lst["listOrderStatus"], lst["listClientOrderId"],
            lst["symbol"]) == ("OCO", "EXEC_STARTED", "EXECUTING", "my-list", "BTCUSD")
    stop, tp = lst["orders"]
    assert tp["clientOrderId"] == "tp-1" and tp["orderId"] == lst["orderListId"] and stop["orderId"] == tp["orderId"] + 1
    assert [(o["type"], o["status"], o["orderListId"]) for o in lst["orderReports"]] == [
        ("STOP_LOSS_LIMIT", "NEW", lst["orderListId"]), ("LIMIT_MAKER", "NEW", lst["orderListId"])]
    btc = {b["asset"]: b for b in signed(http, trader, "GET", "/api/v3/account", {}).json()["balances"]}["BTC"]
    btc0 = {b["asset"]: b for b in before}["BTC"]
    assert float(btc["locked"]) - float(btc0["locked"]) == 0.5, "the pair holds once"
    [live] = signed(http, trader, "GET", "/api/v3/openOrderList", {}).json()
    assert live["orderListId"] == lst["orderListId"] and len(live["orders"]) == 2
    got = signed(http, trader, "GET", "/api/v3/orderList", {"orderListId": lst["orderListId"]}).json()
    assert got["orders"] == lst["orders"]
    # Open orders carry the list id.
    opens = signed(http, trader, "GET", "/api/v3/openOrders", {"symbol": "BTCUSD"}).json()
    assert {o["orderId"] for o in opens} >= {tp["orderId"], stop["orderId"]}
    # Errors: wrong leg types, missing fields, price relationship, and nothing is placed.
    bad = [({**base, "aboveType": "STOP_LOSS", "aboveStopPrice": "70000", "belowType": "STOP_LOSS",
             "belowStopPrice": "50000"}, -1130, "aboveType"),
           ({**base, "aboveType": "LIMIT_MAKER", "belowType": "STOP_LOSS", "belowStopPrice": "50000"}, -1102,
            "abovePrice"),
           ({**base, "aboveType": "LIMIT_MAKER", "abovePrice": "40000", "belowType": "STOP_LOSS",
             "belowStopPrice": "50000"}, -2010, "relationship"),
           ({**base, "quantity": "1000", "aboveType": "LIMIT_MAKER", "abovePrice": "900000", "belowType": "STOP_LOSS",
             "belowStopPrice": "2"}, -2010, "insufficient balance")]
    for params, code, text in bad:
        e = signed(http, trader, "POST", "/api/v3/orderList/oco", params, in_body=True)
        assert e.status_code == 400 and e.json()["code"] == code and text in e.json()["msg"], (params, e.text)
    assert len(signed(http, trader, "GET", "/api/v3/openOrderList", {}).json()) == 1
    # Legacy order/oco: LIMIT_MAKER at price, STOP_LOSS at stopPrice.
    r = signed(http, trader, "POST", "/api/v3/order/oco", {**base, "price": "910000", "stopPrice": "3"},
               in_body=True)
    assert r.status_code == 200, r.text
    legacy = r.json()
    assert [o["type"] for o in legacy["orderReports"]] == ["STOP_LOSS", "LIMIT_MAKER"]
    # Cancel a list: both legs go, the hold is released.
    c = signed(http, trader, "DELETE", "/api/v3/orderList", {"symbol": "BTCUSD", "orderListId": lst["orderListId"]})
    assert c.status_code == 200, c.text
    assert c.json()["listStatusType"] == "ALL_DONE" and {o["status"] for o in c.json()["orderReports"]} == {"CANCELED"}
    signed(http, trader, "DELETE", "/api/v3/orderList", {"symbol": "BTCUSD", "orderListId": legacy["orderListId"]})
    assert signed(http, trader, "GET", "/api/v3/openOrderList", {}).json() == []
    e = signed(http, trader, "GET", "/api/v3/orderList", {"orderListId": lst["orderListId"]})  # ended: the history's
    assert e.status_code == 200 and e.json()["listStatusType"] == "ALL_DONE", e.text
    btc = {b["asset"]: b for b in signed(http, trader, "GET", "/api/v3/account", {}).json()["balances"]}["BTC"]
    assert btc["locked"] == btc0["locked"]


def test_quote_order_qty_market_orders(http, trader, admin, api_node):
    """MARKET orders sized by quoteOrderQty: the state machine walks the book; a buy spends at most the amount
    with its commission, a sell takes in at most the amount (before its commission)."""
    maker = new_user(admin, http)
    info = http.get("/api/v3/exchangeInfo", params={"symbol": "SOLUSD"}).json()["symbols"][0]
    assert info["quoteOrderQtyMarketAllowed"] is True

    def place(user, **p):
        return signed(http, user, "POST", "/api/v3/order", {"symbol": "SOLUSD", **p})

    # Asks far below anything else in SOLUSD: 10 SOL at 1.000 and 10 at 1.001 (lots of 0.01 SOL).
    for price in ("1.000", "1.001"):
        assert place(maker, side="SELL", type="LIMIT", timeInForce="GTC", quantity="10", price=price).status_code == 200
    assert http.get("/api/v3/depth", params={"symbol": "SOLUSD", "limit": 1}).json()["asks"][0][0] == "1.00000000"
    usd0 = Decimal({b["asset"]: b for b in signed(http, trader, "GET", "/api/v3/account", {}).json()["balances"]
                    }["USD"]["free"])
    r = place(trader, side="BUY", type="MARKET", quoteOrderQty="15")
    assert r.status_code == 200, r.text
    o = r.json()
    # 1000 lots at 1.000 cost 10 + 0.005 commission; then 498 lots at 1.001 (4.98498 + 0.002493): a 499th lot
    # would bring the total past 15.
    assert (o["status"], o["type"], o["side"]) == ("FILLED", "MARKET", "BUY")  # all it was sized to
    assert (o["origQty"], o["executedQty"], o["cummulativeQuoteQty"], o["origQuoteOrderQty"]) == (
        "14.98000000", "14.98000000", "14.98498000", "15.00000000")
    assert [(f["price"], f["qty"], f["commission"]) for f in o["fills"]] == [
        ("1.00000000", "10.00000000", "0.00500000"), ("1.00100000", "4.98000000", "0.00249300")]
    usd = {b["asset"]: b for b in signed(http, trader, "GET", "/api/v3/account", {}).json()["balances"]}["USD"]
    assert usd0 - Decimal(usd["free"]) == Decimal("14.98498") + Decimal("0.005") + Decimal("0.002493") <= 15
    assert Decimal(usd["locked"]) == 0
    # The whole amount is held while the order walks: more than the balance is refused.
    e = place(trader, side="BUY", type="MARKET", quoteOrderQty="99999999").json()
    assert e["code"] == -2010 and "insufficient balance" in e["msg"]
    signed(http, maker, "DELETE", "/api/v3/openOrders", {"symbol": "SOLUSD"})
    # A sell: a bid of 1 SOL at 1000; 255 USD of proceeds sells 25 lots (250 USD), a 26th would pass it.
    assert place(maker, side="BUY", type="LIMIT", timeInForce="GTC", quantity="1", price="1000").status_code == 200
    o = place(trader, side="SELL", type="MARKET", quoteOrderQty="255", newOrderRespType="RESULT").json()
    assert (o["status"], o["executedQty"], o["cummulativeQuoteQty"]) == ("FILLED", "0.25000000", "250.00000000")
    # order/test takes it too, and places nothing.
    before = state(api_node, trader.user_id, maker.user_id)
    r = signed(http, trader, "POST", "/api/v3/order/test", {"symbol": "SOLUSD", "side": "BUY", "type": "MARKET",
                                                           "quoteOrderQty": "10"})
    assert (r.status_code, r.json()) == (200, {})
    # Binance's rules, each naming the parameter; nothing changes.
    for params, code, text in [
        (dict(side="BUY", type="LIMIT", timeInForce="GTC", price="1", quoteOrderQty="10"), -1106, "quoteOrderQty"),
        (dict(side="BUY", type="MARKET", quantity="1", quoteOrderQty="10"), -1128, "quoteOrderQty"),
        (dict(side="BUY", type="MARKET"), -1102, "quantity"),
        (dict(side="BUY", type="MARKET", quoteOrderQty="-1"), -1102, "quoteOrderQty"),
        (dict(side="BUY", type="MARKET", quoteOrderQty="ten"), -1102, "quoteOrderQty"),
        (dict(side="BUY", type="MARKET", quoteOrderQty="1.0000001"), -1111, "quoteOrderQty"),
    ]:
        e = place(trader, **params)
        assert e.status_code == 400 and e.json()["code"] == code and text in e.json()["msg"], (params, e.text)
        t = signed(http, trader, "POST", "/api/v3/order/test", {"symbol": "SOLUSD", **params})
        assert t.json()["code"] == code, (params, t.text)
    assert state(api_node, trader.user_id, maker.user_id) == before
    # Rejected by the exchange (a seq, nothing else): less than a lot's worth.
    e = place(trader, side="SELL", type="MARKET", quoteOrderQty="0.5").json()
    assert e["code"] == -1013 and "quote_qty" in e["msg"]
    signed(http, maker, "DELETE", "/api/v3/openOrders", {"symbol": "SOLUSD"})


def test_native_quote_qty_orders(http, trader, admin, api_node):
    maker = new_user(admin, http)
    maker.client.place_order("SOL-USD", "sell", "5", price="2.000")
    out = trader.client.place_order("SOL-USD", "buy", None, type="market", quote_qty="4.01")
    # 200 lots at 2.000: 4 USD + 0.002 commission <= 4.01 (201 lots would cost 4.02 + fee).
    assert Decimal(out["filled"]) == 2 and out["status"] == "filled", out
    before = state(api_node, trader.user_id)
    for body, field in [({"qty": "1", "quote_qty": "4"}, "quote_qty"), ({}, "qty"),
                        ({"quote_qty": "4", "type": "limit", "price": "2"}, "quote_qty"),
                        ({"quote_qty": "0.0000001"}, "quote_qty")]:
        with pytest.raises(ApiError) as e:
            trader.client.place_order("SOL-USD", "buy", body.get("qty"), type=body.get("type", "market"),
                                      price=body.get("price"), quote_qty=body.get("quote_qty"))
        assert e.value.status == 400 and field in e.value.message, (body, e.value)
    maker.client.cancel_all("SOL-USD")
    assert state(api_node, trader.user_id)[1:] == before[1:]


def test_agg_trades_aggregate_one_takers_fills(http, trader, admin):
    maker = new_user(admin, http)
    for _ in range(2):
        signed(http, maker, "POST", "/api/v3/order", order(symbol="ETHUSD", side="SELL", qty="0.1", price="7777"))
    r = signed(http, trader, "POST", "/api/v3/order", order(symbol="ETHUSD", qty="0.2", price="7777"))
    assert r.json()["status"] == "FILLED", r.text
    [g] = http.get("/api/v3/aggTrades", params={"symbol": "ETHUSD", "limit": 1}).json()
    assert (g["p"], g["q"], g["l"] - g["f"], g["a"], g["m"]) == ("7777.00000000", "0.20000000", 1, g["f"], False)
    trades = http.get("/api/v3/trades", params={"symbol": "ETHUSD", "limit": 2}).json()
    assert [t["id"] for t in trades] == [g["f"], g["l"]]
    assert http.get("/api/v3/aggTrades", params={"symbol": "ETHUSD", "fromId": g["a"]}).json() == [g]
    assert http.get("/api/v3/aggTrades", params={"symbol": "ETHUSD", "startTime": g["T"], "endTime": g["T"]}
                    ).json()[-1] == g
    for params in ({"fromId": 1, "startTime": 0}, {"startTime": 5, "endTime": 4}):
        r = http.get("/api/v3/aggTrades", params={"symbol": "ETHUSD", **params})
        assert r.status_code == 400 and r.json()["code"] == -1128


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["0.01", "0.0001", "0.001", "0.5", "0.05", "1", "10", "25", "0.00000001", "0.000000001",
                        "0.000000005", "1E+1"]),
       st.integers(min_value=-10**19, max_value=10**19))
def test_fixed_formatter_equals_the_decimal_one(step, n):
    """`_fixed(step)(n)` (integer arithmetic, used for depth levels) is
    Binance's number string of `n * step` as `_fmt` writes it."""
    from lxdex.node.binance import _fixed, _fmt

    assert _fixed(Decimal(step))(n) == _fmt(n * Decimal(step))


def test_all_order_list_and_ended_lists(http, trader, api_node):
    """GET allOrderList: the user's lists, live and ended (from the history), in Binance's shape; GET orderList
    answers for an ended list too; bad parameters name the field and change nothing; signatures are checked."""
    base = {"symbol": "BTCUSD", "side": "SELL", "quantity": "0.1", "aboveType": "LIMIT_MAKER",
            "belowType": "STOP_LOSS"}
    lists = []
    for i in range(3):
        r = signed(http, trader, "POST", "/api/v3/orderList/oco", {
            **base, "abovePrice": str(900000 + i), "belowStopPrice": "2", "aboveClientOrderId": f"all-tp-{i}"},
            in_body=True)
        assert r.status_code == 200, r.text
        lists.append(r.json())
    ended = lists[0]["orderListId"]
    assert signed(http, trader, "DELETE", "/api/v3/orderList", {"symbol": "BTCUSD", "orderListId": ended}
                  ).status_code == 200
    got = signed(http, trader, "GET", "/api/v3/orderList", {"orderListId": ended})
    assert got.status_code == 200, got.text
    g = got.json()
    assert (g["orderListId"], g["contingencyType"], g["listStatusType"], g["listOrderStatus"], g["symbol"],
            g["listClientOrderId"]) == (ended, "OCO", "ALL_DONE", "ALL_DONE", "BTCUSD", f"lxl{ended}")
    assert g["orders"] == [{"symbol": "BTCUSD", "orderId": ended + 1, "clientOrderId": f"lx{ended + 1}"},
                           {"symbol": "BTCUSD", "orderId": ended, "clientOrderId": "all-tp-0"}]
    assert set(g) == {"orderListId", "contingencyType", "listStatusType", "listOrderStatus", "listClientOrderId",
                      "transactionTime", "symbol", "orders"}
    rows = signed(http, trader, "GET", "/api/v3/allOrderList", {"fromId": ended}).json()
    assert [x["orderListId"] for x in rows] == [x["orderListId"] for x in lists]
    assert [x["listStatusType"] for x in rows] == ["ALL_DONE", "EXEC_STARTED", "EXEC_STARTED"]
    assert rows[0] == g and rows[1]["orders"] == lists[1]["orders"]
    assert rows[1]["transactionTime"] >= rows[0]["transactionTime"]
    last = signed(http, trader, "GET", "/api/v3/allOrderList", {"limit": 2}).json()
    assert [x["orderListId"] for x in last] == [x["orderListId"] for x in lists[1:]]
    t = rows[2]["transactionTime"]
    window = signed(http, trader, "GET", "/api/v3/allOrderList", {"startTime": t, "endTime": t}).json()
    assert lists[2]["orderListId"] in [x["orderListId"] for x in window]
    before = state(api_node, trader.user_id)
    for params, code, field in [({"limit": "1001"}, -1130, "limit"), ({"limit": "x"}, -1102, "limit"),
                                ({"fromId": "-1"}, -1102, "fromId"), ({"startTime": "5", "endTime": "4"}, -1128,
                                                                      "startTime"),
                                ({"fromId": "1", "startTime": "1"}, -1128, "fromId"), ({"symbol": "BTCUSD"}, -1104,
                                                                                        "symbol")]:
        e = signed(http, trader, "GET", "/api/v3/allOrderList", params)
        assert e.status_code == 400 and e.json()["code"] == code and field in e.json()["msg"], (params, e.text)
    e = signed(http, trader, "GET", "/api/v3/allOrderList", {}, secret="wrong-secret")
    assert e.status_code == 400 and e.json()["code"] == -1022
    e = http.get("/api/v3/allOrderList", params={"timestamp": int(time.time() * 1000)},
                 headers={"X-MBX-APIKEY": trader.api_key})
    assert e.status_code == 400 and e.json()["code"] == -1102 and "signature" in e.json()["msg"]
    e = signed(http, trader, "GET", "/api/v3/allOrderList", {}, ts=int(time.time() * 1000) - 120_000)
    assert e.status_code == 400 and e.json()["code"] == -1021
    assert http.get("/api/v3/allOrderList").json()["code"] == -2014
    e = signed(http, trader, "GET", "/api/v3/orderList", {"orderListId": 10**15})
    assert e.status_code == 400 and e.json()["code"] == -2011
    assert state(api_node, trader.user_id)[1:] == before[1:]
    for x in lists[1:]:
        signed(http, trader, "DELETE", "/api/v3/orderList", {"symbol": "BTCUSD", "orderListId": x["orderListId"]})
