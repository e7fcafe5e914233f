"""The Binance-compatible subset (/api/v3): raw signed requests checked
against Binance's shapes and error codes, then a real third-party Binance
client (ccxt) driving a node served by uvicorn on a loopback port."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import uvicorn

from lxdex.client import Client
from lxdex.node.http import build_app

from .apiutil import ADMIN, admin, api_node, binance_sign, http, make_node, new_user, state, stop_node  # noqa: F401


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
    assert place(side="BUY", type="MARKET", quoteOrderQty="10")["code"] == -1128
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
    ro = Client("http://testserver", trader.api_key, trader.secret, http=http).create_api_key(["read"])
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served_node(tmp_path):
    """A node served by uvicorn on a free loopback port, in a thread."""
    node = make_node(tmp_path / "served")
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(node), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield node, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        t.join(10)
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
