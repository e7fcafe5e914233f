"""The native REST API (/api/v1) through the Python SDK: every endpoint,
authentication and its failures, permissions, isolation between users,
rate limits, size limits, and bad requests that change nothing."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

import httpx
import pytest
from starlette.testclient import TestClient

from lxdex.client import ApiError, AsyncClient, Client, sign
from lxdex.node.api import TokenBuckets
from lxdex.node.config import ApiConfig, Config, ConfigError
from lxdex.node.http import build_app

from .apiutil import ADMIN, transport, admin, base_url, alice, api_node, bob, http, make_node, new_user, state, stop_node  # noqa: F401


def err(call) -> ApiError:
    with pytest.raises(ApiError) as e:
        call()
    return e.value


# -- market data --------------------------------------------------------------------------------------------------


def test_market_data_replies_are_kept_only_while_the_state_is_unchanged(http, api_node, alice, bob):
    """The reply cache: the same bytes between batches; a batch (any
    command) makes the next reply fresh; errors are never kept; both APIs;
    with the cache off the replies are the same."""
    from lxdex.node.api import ApiContext

    paths = ["/api/v1/markets/SOL-USD/depth?limit=5", "/api/v1/markets/SOL-USD/trades?limit=3",
             "/api/v1/markets/SOL-USD/ticker", "/api/v1/tickers", "/api/v1/markets/SOL-USD/candles?interval=1m",
             "/api/v3/depth?symbol=SOLUSD&limit=5", "/api/v3/trades?symbol=SOLUSD", "/api/v3/klines?symbol=SOLUSD&"
             "interval=1m", "/api/v3/ticker/price?symbol=SOLUSD", "/api/v3/ticker/bookTicker?symbol=SOLUSD",
             "/api/v3/aggTrades?symbol=SOLUSD"]
    alice.client.place_order("SOL-USD", "sell", "3", "150")
    before = {p: http.get(p).content for p in paths}
    assert all(http.get(p).content == before[p] for p in paths)
    bob.client.place_order("SOL-USD", "buy", "1", "150")  # a trade: depth, trades, tickers, candles all move
    after = {p: http.get(p).content for p in paths}
    assert all(after[p] != before[p] for p in paths), [p for p in paths if after[p] == before[p]]
    assert Decimal(json.loads(after[paths[0]])["asks"][0][1]) == 2
    # a command on another market also starts a new version: nothing older than the state is served
    alice.client.place_order("BTC-USD", "sell", "0.01", "90000")
    again = {p: http.get(p).content for p in paths}
    assert again.pop("/api/v1/tickers") != after.pop("/api/v1/tickers") and again == after
    # errors are not kept: a market that appears later is served at once
    r = http.get("/api/v1/markets/NEW-USD/depth")
    assert r.status_code == 404 and http.get("/api/v1/markets/NEW-USD/depth").status_code == 404
    # with the cache off: the same replies
    ctx_off = ApiContext(api_node)
    ctx_off.cfg = type(ctx_off.cfg)(**{**ctx_off.cfg.__dict__, "reply_cache": False})
    calls = []
    assert ctx_off.cached_reply(None, lambda: calls.append(1) or b"x") == b"x"
    assert ctx_off.cached_reply(None, lambda: calls.append(1) or b"x") == b"x" and len(calls) == 2
    alice.client.cancel_all()


def test_market_data(admin, http, alice, bob):
    c = alice.client
    assert abs(c.server_time()["server_time"] - time.time() * 1000) < 5000
    assert [a["asset"] for a in c.assets()] == ["BTC", "ETH", "SOL", "USD"]
    ms = c.markets()
    assert [m["market"] for m in ms] == ["BTC-USD", "ETH-USD", "SOL-USD"]
    assert c.market("ETH-USD") == ms[1] and ms[1]["tick_size"] == "0.01" and ms[1]["lot_size"] == "0.001"
    c.place_order("ETH-USD", "sell", "2", "2000")
    c.place_order("ETH-USD", "sell", "1", "2001")
    bob.client.place_order("ETH-USD", "buy", "0.5", "2000")
    d = c.depth("ETH-USD", limit=5)
    assert d["asks"][:2] == [["2000.00", "1.500", 1], ["2001.00", "1.000", 1]] and d["last_update_id"] > 0
    assert c.depth("ETH-USD", limit=1)["asks"] == [["2000.00", "1.500", 1]]
    t = c.trades("ETH-USD", limit=1)
    assert [(x["price"], x["qty"], x["taker_side"]) for x in t] == [("2000.00", "0.500", "buy")]
    cs = c.candles("ETH-USD", interval="1m")
    assert cs[-1]["close"] == "2000.00" and cs[-1]["trades"] >= 1
    tk = c.ticker("ETH-USD")
    assert tk["last"] == "2000.00" and tk["best_ask"] == "2000.00" and tk["best_ask_qty"] == "1.500"
    assert {t["market"] for t in c.tickers()} == {"BTC-USD", "ETH-USD", "SOL-USD"}
    assert c.ticker("SOL-USD")["last"] is None or c.ticker("SOL-USD")["last"]
    for call in (lambda: c.depth("DOGE-USD"), lambda: c.market("DOGE-USD"), lambda: c.trades("NOPE"),
                 lambda: c.ticker("DOGE-USD"), lambda: c.candles("DOGE-USD")):
        e = err(call)
        assert (e.status, e.code, e.field) == (404, "UNKNOWN_MARKET", "market")
    e = err(lambda: c.depth("BTC-USD", limit=0))
    assert (e.status, e.code, e.field) == (400, "INVALID_REQUEST", "limit")
    e = err(lambda: c.candles("BTC-USD", interval="7m"))
    assert (e.code, e.field) == ("INVALID_REQUEST", "interval")
    c.cancel_all()


def test_public_endpoints_need_no_key(http):
    assert http.get("/api/v1/markets").status_code == 200
    assert http.get("/api/v1/tickers").status_code == 200


# -- trading ---------------------------------------------------------------------------------------------------------


def test_place_query_amend_cancel(alice, bob):
    a = alice.client
    o = a.place_order("BTC-USD", "sell", "1", "50000", client_order_id="my-1")
    assert o["status"] == "new" and o["market"] == "BTC-USD" and o["client_order_id"] == "my-1"
    oid = o["order_id"]
    [live] = a.open_orders()
    assert live == {"order_id": oid, "market": "BTC-USD", "side": "sell", "status": "open", "price": "50000.00",
                    "remaining_qty": "1.0000", "visible_qty": "1.0000", "client_order_id": "my-1"}
    e = err(lambda: a.place_order("BTC-USD", "sell", "1", "50001", client_order_id="my-1"))
    assert (e.status, e.code, e.field) == (400, "DUPLICATE_ID", "client_order_id")
    assert len(a.open_orders()) == 1
    assert a.open_orders(market="ETH-USD") == []
    fill = bob.client.place_order("BTC-USD", "buy", "0.25", "50000")
    assert fill["status"] == "filled" and fill["fills"] == [{"price": "50000.00", "qty": "0.2500",
                                                              "maker_order_id": oid}]
    h = a.order(oid)  # from the history store, caught up with the fill
    assert (h["status"], h["filled_qty"], h["remaining_qty"], h["avg_price"]) == ("partially_filled", "0.2500",
                                                                                 "0.7500", "50000.00")
    am = a.amend_order(oid, price="50100", qty="0.5")
    assert am["status"] == "open" and am["order"]["price"] == "50100.00" and am["order"]["remaining_qty"] == "0.5000"
    c = a.cancel_order(oid)
    assert c["status"] == "cancelled" and a.open_orders() == []
    assert a.order(oid)["status"] == "cancelled" and a.order(oid)["client_order_id"] == "my-1"
    [f] = a.fills()["fills"]
    assert (f["order_id"], f["side"], f["maker"], f["qty"], f["fee"]) == (oid, "sell", True, "0.2500", "-1.250000")
    assert bob.client.fills()["fills"][0]["fee"] == "6.250000"
    e = err(lambda: a.cancel_order(oid))
    assert (e.status, e.code) == (404, "UNKNOWN_ORDER")


def test_order_types_and_rejects(alice):
    a = alice.client
    r = a.place_order("BTC-USD", "buy", "1", "100", tif="ioc")
    assert r["status"] == "cancelled" and r["cancel_reason"] == "ioc"
    r = a.place_order("BTC-USD", "sell", "1", "90000", type="stop_limit", trigger_price="30000")
    assert r["status"] == "pending_trigger"
    [p] = a.open_orders()
    assert p["status"] == "pending_trigger" and p["trigger_price"] == "30000.00" and p["type"] == "stop_limit"
    for kw, code, field in [
        ({"market": "BTC-USD", "side": "buy", "qty": "1", "price": "100.001"}, "OFF_TICK_GRID", None),
        ({"market": "BTC-USD", "side": "buy", "qty": "0.00001", "price": "100"}, "OFF_LOT_GRID", None),
        ({"market": "BTC-USD", "side": "buy", "qty": "1000", "price": "100000"}, "INSUFFICIENT_FUNDS", None),
        ({"market": "BTC-USD", "side": "up", "qty": "1", "price": "100"}, "INVALID_COMMAND", "side"),
    ]:
        e = err(lambda: a.place_order(**kw))
        assert e.status == 400 and e.code == code, e
        if field:
            assert e.field == field
    e = err(lambda: a.place_order("DOGE-USD", "buy", "1", "1"))
    assert (e.status, e.code) == (404, "UNKNOWN_MARKET")
    assert len(a.cancel_all("BTC-USD")["cancelled"]) == 1
    assert a.open_orders() == []


def test_cancel_all(alice):
    a = alice.client
    ids = [a.place_order(m, "buy", q, "10")["order_id"] for m, q in (("BTC-USD", "1"), ("ETH-USD", "1"),
                                                                      ("ETH-USD", "2"))]
    assert sorted(a.cancel_all("ETH-USD")["cancelled"]) == ids[1:]
    assert [o["order_id"] for o in a.open_orders()] == ids[:1]
    assert a.cancel_all()["cancelled"] == ids[:1]


def test_order_history_pagination(alice):
    a = alice.client
    ids = [a.place_order("SOL-USD", "buy", "1", f"{10 + i}")["order_id"] for i in range(5)]
    a.cancel_all()
    p1 = a.orders(market="SOL-USD", limit=2, from_id=0)
    assert [o["order_id"] for o in p1["orders"]] == ids[:2] and p1["next_from_id"] == ids[1] + 1
    p2 = a.orders(market="SOL-USD", limit=2, from_id=p1["next_from_id"])
    p3 = a.orders(market="SOL-USD", limit=2, from_id=p2["next_from_id"])
    assert [o["order_id"] for o in p2["orders"] + p3["orders"]] == ids[2:] and p3["next_from_id"] is None
    assert [o["order_id"] for o in a.orders(limit=3)["orders"]] == ids[2:]  # the most recent
    assert all(o["status"] == "cancelled" for o in a.orders()["orders"])
    e = err(lambda: a.orders(start_ts=10, end_ts=5))
    assert e.field == "start_ts"


def test_balances_account_and_withdrawals(admin, http):
    u = new_user(admin, http, permissions=("read", "trade", "withdraw"), funds={"USD": "100"},
                 ip_allow=["127.0.0.1/32"])
    c = u.client
    bal = {b["asset"]: b for b in c.balances()}
    assert bal["USD"] == {"asset": "USD", "available": "100.000000", "held": "0.000000"}
    c.place_order("BTC-USD", "buy", "0.001", "10000")  # holds 10 USD + fee
    bal = {b["asset"]: b for b in c.balances()}
    assert Decimal(bal["USD"]["held"]) > 0 and Decimal(bal["USD"]["available"]) < 90
    acct = c.account()
    assert acct["user_id"] == u.user_id and acct["country"] == "DE" and acct["balances"] == c.balances()
    w = c.withdraw("USD", "50")
    assert w["amount"] == "50" and w["account"] == u.user_id
    e = err(lambda: c.withdraw("USD", "1000"))
    assert (e.status, e.code) == (400, "INSUFFICIENT_FUNDS")
    e = err(lambda: c.withdraw("XYZ", "1"))
    assert e.code == "UNKNOWN_ASSET"


def test_withdraw_key_from_another_ip_is_refused(admin, api_node):
    with TestClient(build_app(api_node), client=("10.9.9.9", 1234)) as other:
        u = new_user(admin, other, permissions=("read", "withdraw"), funds={"USD": "100"}, ip_allow=["127.0.0.1"])
        e = err(lambda: u.client.withdraw("USD", "1"))
        assert (e.status, e.code, e.field) == (403, "IP_NOT_ALLOWED", "ip")


# -- API keys --------------------------------------------------------------------------------------------------------


def test_api_key_management(admin, http, alice):
    a = alice.client
    [k] = a.api_keys()
    assert k["api_key"] == alice.api_key and k["permissions"] == ["read", "trade"] and "secret" not in k
    ro = a.create_api_key(["read"], label="dashboard")
    assert len(ro["secret"]) == 64 and ro["label"] == "dashboard"
    assert "secret" not in json.dumps(a.api_keys()) and len(a.api_keys()) == 2
    ro_client = Client(base_url(http), ro["api_key"], ro["secret"], http=http)
    assert ro_client.balances() == a.balances()
    e = err(lambda: ro_client.place_order("BTC-USD", "buy", "1", "1"))
    assert (e.status, e.code, e.field) == (403, "PERMISSION_DENIED", "permission")
    e = err(lambda: ro_client.create_api_key(["read", "trade"]))  # no privilege escalation
    assert (e.status, e.code, e.field) == (403, "PERMISSION_DENIED", "permissions")
    e = err(lambda: ro_client.revoke_api_key(alice.api_key))  # a read key cannot revoke a trading key
    assert e.status == 403
    e = err(lambda: a.create_api_key(["read", "fly"]))
    assert (e.status, e.field) == (400, "permissions")
    assert a.revoke_api_key(ro["api_key"])["revoked"] is True
    e = err(ro_client.balances)
    assert (e.status, e.code) == (401, "INVALID_API_KEY")
    bob = new_user(admin, http)
    e = err(lambda: a.revoke_api_key(bob.api_key))  # another user's key: not found
    assert (e.status, e.code) == (404, "UNKNOWN_API_KEY")
    assert bob.client.balances()


# -- alerts and notifications ------------------------------------------------------------------------------------------


def test_price_alerts_and_notifications(alice, bob):
    a = alice.client
    r = a.add_alert("SOL-USD", "above", "150.5")
    assert r["price"] == "150.5" and r["condition"] == "above"
    extra = a.add_alert("SOL-USD", "below", "1")
    assert [x["alert_id"] for x in a.alerts()] == [r["alert_id"], extra["alert_id"]]
    assert a.cancel_alert(extra["alert_id"])["cancelled"] is True
    e = err(lambda: a.cancel_alert(extra["alert_id"]))
    assert (e.status, e.code) == (404, "UNKNOWN_ALERT")
    e = err(lambda: bob.client.cancel_alert(r["alert_id"]))  # not bob's
    assert e.status == 404
    e = err(lambda: a.add_alert("SOL-USD", "sideways", "1"))
    assert (e.status, e.field) == (400, "condition")
    bob.client.place_order("SOL-USD", "sell", "1", "151")
    a.place_order("SOL-USD", "buy", "1", "151")  # trades at 151: the alert fires
    assert a.alerts() == []
    [n] = a.notifications(unread_only=True)
    assert n["kind"] == "price_alert" and n["payload"]["observed_price"] == "151" and n["read"] is False
    assert a.account()["unread_notifications"] == 1
    assert a.mark_read()["marked_read"] == [n["notification_id"]]
    assert a.notifications(unread_only=True) == [] and a.notifications()[0]["read"] is True
    assert bob.client.notifications() == []


# -- admin -------------------------------------------------------------------------------------------------------------


def test_admin_endpoints_need_the_token(http, admin, alice):
    bad = Client(base_url(http), admin_token="wrong", http=http)
    e = err(lambda: bad.admin_create_user("x", "x@example.com"))
    assert (e.status, e.code) == (401, "UNAUTHORIZED")
    e = err(lambda: bad.admin_deposit(alice.user_id, "USD", "1"))
    assert e.status == 401
    r = http.post("/api/v1/admin/deposits", json={"account": 0, "asset": "USD", "amount": "1"})
    assert r.status_code == 401 and r.json()["error"]["field"] == "authorization"
    u = admin.admin_user(alice.user_id)
    assert u["user_id"] == alice.user_id and u["api_keys"][0]["api_key"] == alice.api_key
    e = err(lambda: admin.admin_user(10**9))
    assert (e.status, e.code) == (404, "UNKNOWN_ACCOUNT")
    e = err(lambda: admin.admin_deposit(10**9, "USD", "1"))
    assert (e.status, e.code) == (404, "UNKNOWN_ACCOUNT")
    e = err(lambda: admin.admin_create_user("x", "not-an-email"))
    assert (e.status, e.field) == (400, "email")


def test_admin_disabled_without_a_token(tmp_path):
    node = make_node(tmp_path / "n", history=False)
    node.config.admin_token = None
    try:
        with TestClient(build_app(node)) as c:
            r = c.post("/api/v1/admin/users", json={"display_name": "x", "email": "x@example.com"})
            assert r.status_code == 403 and r.json()["error"]["code"] == "ADMIN_DISABLED"
    finally:
        stop_node(node)


# -- authentication failures ---------------------------------------------------------------------------------------------


def _signed(http, user, method, path, body=b"", query="", ts=None, secret=None, window=None, headers=None):
    ts = str(int(time.time() * 1000)) if ts is None else str(ts)
    h = {"X-LX-APIKEY": user.api_key, "X-LX-TIMESTAMP": ts,
         "X-LX-SIGNATURE": sign(secret or user.secret, ts, method, path, query, body)}
    if window is not None:
        h["X-LX-RECV-WINDOW"] = str(window)
    if body:
        h["content-type"] = "application/json"
    h.update(headers or {})
    return http.request(method, path + ("?" + query if query else ""), content=body or None, headers=h)


def test_auth_failures(http, alice, api_node):
    before = state(api_node, alice.user_id)
    body = json.dumps({"market": "BTC-USD", "side": "buy", "qty": "1", "price": "10"}).encode()
    cases = [
        (dict(secret="00" * 32), 401, "INVALID_SIGNATURE", "signature"),
        (dict(ts=int(time.time() * 1000) - 60_000), 401, "INVALID_TIMESTAMP", "timestamp"),
        (dict(ts=int(time.time() * 1000) - 3_000, window=1000), 401, "INVALID_TIMESTAMP", "timestamp"),
        (dict(ts=int(time.time() * 1000) + 60_000), 401, "INVALID_TIMESTAMP", "timestamp"),
        (dict(ts="yesterday"), 401, "INVALID_TIMESTAMP", "timestamp"),
        (dict(window=10**9), 400, "INVALID_RECV_WINDOW", "recv_window"),
        (dict(headers={"X-LX-APIKEY": "A" * 64}), 401, "INVALID_API_KEY", "api_key"),
        (dict(headers={"X-LX-SIGNATURE": "zz"}), 401, "INVALID_SIGNATURE", "signature"),
    ]
    for kw, status, code, field in cases:
        r = _signed(http, alice, "POST", "/api/v1/orders", body, **kw)
        assert (r.status_code, r.json()["error"]["code"], r.json()["error"].get("field")) == (status, code, field), kw
    # the signature covers the body: a changed body fails
    ts = str(int(time.time() * 1000))
    h = {"X-LX-APIKEY": alice.api_key, "X-LX-TIMESTAMP": ts,
         "X-LX-SIGNATURE": sign(alice.secret, ts, "POST", "/api/v1/orders", "", body)}
    r = http.post("/api/v1/orders", content=body.replace(b'"1"', b'"9"'), headers=h)
    assert r.status_code == 401 and r.json()["error"]["code"] == "INVALID_SIGNATURE"
    # ... and the path: a signature for one endpoint does not work on another
    r = http.get("/api/v1/balances", headers={**h, "X-LX-SIGNATURE": sign(alice.secret, ts, "GET", "/api/v1/account",
                                                                           "", b"")})
    assert r.status_code == 401
    r = http.get("/api/v1/balances")
    assert r.status_code == 401 and r.json()["error"] == {
        "code": "UNAUTHORIZED", "message": "api_key: this endpoint needs a signed request (X-LX-APIKEY)",
        "field": "api_key"}
    assert state(api_node, alice.user_id) == before


def test_a_signed_state_change_is_accepted_once(http, alice):
    body = json.dumps({"market": "BTC-USD", "side": "buy", "qty": "1", "price": "10"}).encode()
    ts = str(int(time.time() * 1000))
    h = {"X-LX-APIKEY": alice.api_key, "X-LX-TIMESTAMP": ts, "content-type": "application/json",
         "X-LX-SIGNATURE": sign(alice.secret, ts, "POST", "/api/v1/orders", "", body)}
    assert http.post("/api/v1/orders", content=body, headers=h).status_code == 200
    r = http.post("/api/v1/orders", content=body, headers=h)
    assert r.status_code == 401 and r.json()["error"]["code"] == "REPLAYED"
    assert len(alice.client.open_orders()) == 1
    alice.client.cancel_all()


def test_users_cannot_see_or_touch_each_others_orders(alice, bob, api_node):
    oid = alice.client.place_order("BTC-USD", "buy", "1", "100")["order_id"]
    before = state(api_node, alice.user_id, bob.user_id)
    b = bob.client
    for call in (lambda: b.order(oid), lambda: b.cancel_order(oid), lambda: b.amend_order(oid, price="101")):
        e = err(call)
        assert (e.status, e.code, e.field) == (404, "UNKNOWN_ORDER", "order_id")
    assert b.open_orders() == [] and b.orders()["orders"] == [] and b.fills()["fills"] == []
    assert b.cancel_all()["cancelled"] == []
    assert alice.client.open_orders()[0]["order_id"] == oid
    after = state(api_node, alice.user_id, bob.user_id)
    assert after[1] == before[1]  # bob's cancel-all took a seq number and changed nothing
    alice.client.cancel_all()


# -- bad input ----------------------------------------------------------------------------------------------------------


BAD = [
    ("POST", "/api/v1/orders", b"", 400, "INVALID_JSON", "body"),
    ("POST", "/api/v1/orders", b'{"market":"BTC-USD",', 400, "INVALID_JSON", None),
    ("POST", "/api/v1/orders", b"[]", 400, "INVALID_REQUEST", None),
    ("POST", "/api/v1/orders", b'{"side":"buy","qty":"1"}', 400, "INVALID_REQUEST", "market"),
    ("POST", "/api/v1/orders", b'{"market":"BTC-USD","side":"buy","qty":"1","colour":1}', 400, "INVALID_REQUEST",
     "colour"),
    ("POST", "/api/v1/orders", b'{"market":"BTC-USD","side":"buy","qty":true}', 400, "INVALID_REQUEST", "qty"),
    ("POST", "/api/v1/orders", b'{"market":"BTC-USD","side":"buy","qty":"x","price":"1"}', 400, "INVALID_AMOUNT",
     None),
    ("POST", "/api/v1/orders", b'{"market":"BTC-USD","side":"buy","qty":"1","client_order_id":"a b"}', 400,
     "INVALID_REQUEST", "client_order_id"),
    ("PATCH", "/api/v1/orders/1", b"{}", 400, "INVALID_REQUEST", "price"),
    ("PATCH", "/api/v1/orders/abc", b'{"price":"1"}', 400, "INVALID_REQUEST", "order_id"),
    ("DELETE", "/api/v1/orders/99999999", b"", 404, "UNKNOWN_ORDER", "order_id"),
    ("POST", "/api/v1/alerts", b'{"market":"BTC-USD","condition":"above","price":"-1"}', 400, "INVALID_COMMAND",
     "price"),
    ("POST", "/api/v1/alerts", b'{"market":"DOGE-USD","condition":"above","price":"1"}', 404, "UNKNOWN_MARKET",
     "market"),
    ("DELETE", "/api/v1/alerts/0", b"", 400, "INVALID_REQUEST", "alert_id"),
    ("POST", "/api/v1/notifications/read", b'{"notification_ids":[0]}', 400, "INVALID_REQUEST", "notification_ids"),
    ("POST", "/api/v1/api-keys", b'{"permissions":[]}', 400, "INVALID_REQUEST", "permissions"),
    ("POST", "/api/v1/api-keys", b'{"permissions":["read"],"ip_allow":["nonsense"]}', 400, "INVALID_COMMAND",
     "ip_allow[0]"),
]


@pytest.mark.parametrize("method,path,body,status,code,field", BAD)
def test_bad_requests_change_nothing(http, alice, api_node, method, path, body, status, code, field):
    alice.client.place_order("BTC-USD", "buy", "1", "100")
    before = state(api_node, alice.user_id)
    r = _signed(http, alice, method, path, body)
    e = r.json()["error"]
    assert (r.status_code, e["code"], e.get("field")) == (status, code, field), e
    assert e["message"]
    after = state(api_node, alice.user_id)
    assert after[1] == before[1]
    if status == 400 and code in ("INVALID_JSON", "INVALID_REQUEST"):
        assert after[0] == before[0]  # refused at the gateway: no command at all
    alice.client.cancel_all()


def test_size_limits(http, alice):
    big = b'{"market":"BTC-USD","side":"buy","qty":"1","price":"1","client_order_id":"' + b"x" * 70_000 + b'"}'
    r = _signed(http, alice, "POST", "/api/v1/orders", big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "TOO_LARGE"
    r = http.get("/api/v1/markets?" + "x=1&" * 2000)
    assert r.status_code == 414 and r.json()["error"]["code"] == "TOO_LARGE"


def test_unknown_routes_and_methods(http):
    r = http.get("/api/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    r = http.put("/api/v1/markets")
    assert r.status_code == 405 and r.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


# -- rate limits ---------------------------------------------------------------------------------------------------------


def test_token_bucket():
    now = [0.0]
    b = TokenBuckets(rate=2, burst=3, clock=lambda: now[0])
    assert [b.take("k") for _ in range(3)] == [0, 0, 0]
    assert b.take("k") == pytest.approx(0.5)
    assert b.take("other") == 0
    now[0] += 0.5
    assert b.take("k") == 0 and b.take("k") > 0


def test_rate_limits_answer_429_with_retry_after(tmp_path):
    node = make_node(tmp_path / "n", history=False,
                     api=ApiConfig(rate_per_ip=0.01, burst_per_ip=5, rate_per_key=0.01, burst_per_key=2))
    app = build_app(node)  # the buckets belong to the app
    try:
        with TestClient(app, client=("127.0.0.1", 1)) as c:
            codes = [c.get("/api/v1/markets").status_code for _ in range(7)]
            assert codes[:5] == [200] * 5 and codes[5] == 429
            r = c.get("/api/v1/markets")
            assert r.status_code == 429 and r.json()["error"]["code"] == "RATE_LIMITED"
            assert int(r.headers["retry-after"]) >= 1
        # per key: another IP each time, the same key
        with TestClient(app, client=("127.0.0.2", 1)) as c2:
            admin = Client("http://testserver", admin_token=ADMIN, http=c2)
            k = admin.admin_create_api_key(0, ["read"])
        results = []
        for i in range(4):
            with TestClient(app, client=(f"127.0.1.{i}", 1)) as ci:
                try:
                    Client("http://testserver", k["api_key"], k["secret"], http=ci).balances()
                    results.append(200)
                except ApiError as e:
                    results.append(e.status)
                    assert e.code == "RATE_LIMITED" and e.retry_after >= 1
        assert results[:2] == [200, 200] and 429 in results[2:]
    finally:
        stop_node(node)


def test_api_config_is_validated():
    cfg = Config.from_dict({"api": {"rate_per_ip": 5, "burst_per_key": 7}})
    assert cfg.api.rate_per_ip == 5.0 and cfg.api.burst_per_key == 7 and cfg.api.rate_per_key == 50.0
    with pytest.raises(ConfigError, match="api.rate_per_iq"):
        Config.from_dict({"api": {"rate_per_iq": 5}})
    with pytest.raises(ConfigError, match="api.burst_per_ip"):
        Config.from_dict({"api": {"burst_per_ip": 0.5}})
    assert Config.from_dict({"api": {"reply_cache": False}}).api.reply_cache is False
    assert Config().api.reply_cache is True
    with pytest.raises(ConfigError, match="api.reply_cache must be true or false"):
        Config.from_dict({"api": {"reply_cache": 1}})


# -- the async client ----------------------------------------------------------------------------------------------------


def test_async_client(api_node, admin, http):
    u = new_user(admin, http)
    app = build_app(api_node)

    async def main():
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 9))
        async with AsyncClient("http://testserver", u.api_key, u.secret,
                               http=httpx.AsyncClient(transport=transport)) as c:
            assert [m["market"] for m in await c.markets()][0] == "BTC-USD"
            orders = await asyncio.gather(*(c.place_order("ETH-USD", "buy", "1", str(100 + i)) for i in range(5)))
            assert len({o["order_id"] for o in orders}) == 5
            assert len(await c.open_orders("ETH-USD")) == 5
            assert len((await c.cancel_all())["cancelled"]) == 5
            with pytest.raises(ApiError) as e:
                await c.cancel_order(orders[0]["order_id"])
            assert e.value.code == "UNKNOWN_ORDER"

    asyncio.run(main())


def test_the_original_endpoints_still_work(http):
    r = http.post("/order", json={"symbol": "BTC-USD", "side": 0, "price": 1, "size": 1})
    assert r.status_code == 200 and r.json()["status"] == "new"
    assert http.request("DELETE", "/order", json={"order_id": r.json()["order_id"]}).status_code == 200
    assert http.get("/book/BTC-USD").status_code == 200 and http.get("/markets").status_code == 200


def test_out_of_range_numbers_are_rejected_and_the_node_lives_on(http, alice, api_node):
    """Numbers that do not fit the core's integers used to escape Exchange.execute as OverflowError and stop
    the sequencer (and the replay of a journal holding them)."""
    before = state(api_node, alice.user_id)
    for body, code in [({"qty": "1e30", "price": "100"}, "INVALID_QUANTITY"),
                       ({"qty": "1", "price": "1e30"}, "INVALID_PRICE"),
                       ({"qty": "1", "price": "100", "expire_ts": 2**70}, "INVALID_REQUEST")]:
        r = _signed(http, alice, "POST", "/api/v1/orders",
                    json.dumps({"market": "BTC-USD", "side": "buy", **body}).encode())
        assert r.status_code == 400 and r.json()["error"]["code"] == code, r.json()
    r = http.post("/order", json={"symbol": "BTC-USD", "side": 0, "price": 50000, "size": "1e30"})
    assert r.status_code == 400
    # an integer no command encoding can hold: refused by the sequencer, which goes on
    r = http.post("/order", json={"symbol": "BTC-USD", "side": 0, "price": 5, "size": 1, "expire_ts": 2**70})
    assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_COMMAND"
    assert state(api_node, alice.user_id)[1] == before[1]
    assert api_node.healthy and alice.client.place_order("BTC-USD", "buy", "1", "100")["status"] == "new"
    alice.client.cancel_all()


def test_without_a_history_store(tmp_path):
    node = make_node(tmp_path / "n", history=False)
    try:
        with TestClient(build_app(node), client=("127.0.0.1", 1)) as h:
            u = new_user(Client("http://testserver", admin_token=ADMIN, http=h), h)
            oid = u.client.place_order("BTC-USD", "buy", "1", "100")["order_id"]
            assert u.client.order(oid)["status"] == "open"  # live from the core
            for call in (u.client.fills, u.client.orders):
                e = err(call)
                assert (e.status, e.code) == (503, "HISTORY_UNAVAILABLE")
    finally:
        stop_node(node)


def test_order_lists_oco_and_bracket(alice, bob):
    a = alice.client
    # OCO: sell 2 BTC, take profit at 900000 (limit), stop at 1 (market): far from where other tests of this
    # module left the last price, so neither triggers at once. One hold of 2 BTC.
    r = a.place_order_list("oco", "BTC-USD", "sell", "2", take_profit={"trigger_price": "900000", "price": "900000",
                                                                          "client_order_id": "tp-a"},
                           stop_loss={"trigger_price": "1"})
    assert r["type"] == "oco" and r["status"] == "executing" and r["order_ids"] == [r["order_list_id"],
                                                                                     r["order_list_id"] + 1]
    btc = {b["asset"]: b for b in a.balances()}["BTC"]
    assert Decimal(btc["held"]) == 2
    # Bracket: buy 0.5 BTC at 1 (nothing sells that low) with exits at 2 / 0.5 (limit 0.49).
    b = a.place_order_list("bracket", "BTC-USD", "buy", "0.5", price="1", take_profit={"trigger_price": "2"},
                           stop_loss={"trigger_price": "0.5", "price": "0.49"})
    assert len(b["order_ids"]) == 3
    lists = a.order_lists()
    assert [(x["order_list_id"], x["type"], len(x["orders"])) for x in lists] == [
        (r["order_list_id"], "oco", 2), (b["order_list_id"], "bracket", 3)]
    assert {o["order_list_id"] for o in a.open_orders()} == {r["order_list_id"], b["order_list_id"]}
    # Bad input: the field is named, nothing changes.
    for kw, code, field in [
        (dict(type="iceberg"), "INVALID_REQUEST", "type"),
        (dict(take_profit={"trigger_price": "900000.001"}), "OFF_TICK_GRID", None),
        (dict(price="1"), "INVALID_REQUEST", "price"),
        (dict(take_profit={"trigger_price": "0.5"}), "INVALID_BRACKET", None),
    ]:
        args = {"type": "oco", "market": "BTC-USD", "side": "sell", "qty": "1",
                "take_profit": {"trigger_price": "900000"}, "stop_loss": {"trigger_price": "1"}} | kw
        e = err(lambda: a.place_order_list(**args))
        assert e.status == 400 and e.code == code, e
        if field:
            assert e.field == field
    assert len(a.order_lists()) == 2
    # Someone else's list is unknown; cancelling a list cancels its legs (and a bracket's entry).
    e = err(lambda: bob.client.cancel_order_list(r["order_list_id"]))
    assert (e.status, e.code) == (404, "UNKNOWN_ORDER")
    c = a.cancel_order_list(r["order_list_id"])
    assert sorted(c["cancelled"]) == r["order_ids"]
    c = a.cancel_order_list(b["order_list_id"])
    assert sorted(c["cancelled"]) == b["order_ids"]
    assert a.order_lists() == [] and a.open_orders() == []
    assert all(Decimal(x["held"]) == 0 for x in a.balances())


def test_order_list_history(alice, bob, http):
    """GET /order-lists?status=all: the key's lists, live and ended, with all their orders, from the history;
    paginated by list id; bad parameters name the field."""
    a = alice.client
    live = a.place_order_list("oco", "BTC-USD", "sell", "1", take_profit={"trigger_price": "900000", "price": "900000"},
                              stop_loss={"trigger_price": "1"})
    ended = a.place_order_list("bracket", "BTC-USD", "buy", "0.5", price="1", take_profit={"trigger_price": "2"},
                               stop_loss={"trigger_price": "0.5", "price": "0.49"})
    a.cancel_order_list(ended["order_list_id"])
    page = a.order_list_history(from_id=live["order_list_id"])
    assert page["next_from_id"] is None
    got = {g["order_list_id"]: g for g in page["order_lists"]}
    g, b = got[live["order_list_id"]], got[ended["order_list_id"]]
    assert (g["type"], g["status"], g["market"], g["entry"], g["tp"], g["sl"]) == (
        "oco", "executing", "BTC-USD", None, live["order_list_id"], live["order_list_id"] + 1)
    assert [(o["order_id"], o["status"], o["order_list_id"], o["contingency"]) for o in g["orders"]] == [
        (i, "new", live["order_list_id"], "oco") for i in live["order_ids"]]
    assert (b["type"], b["status"], b["entry"]) == ("bracket", "done", ended["order_list_id"])
    assert [o["status"] for o in b["orders"]] == ["cancelled"] * 3 and b["updated_ts"] >= b["created_ts"]
    one = a.order_list_history(from_id=live["order_list_id"], limit=1)
    assert [x["order_list_id"] for x in one["order_lists"]] == [live["order_list_id"]]
    assert one["next_from_id"] == live["order_list_id"] + 1
    assert bob.client.order_list_history(from_id=live["order_list_id"])["order_lists"] == []  # not bob's
    assert [x["order_list_id"] for x in a.order_lists()] == [live["order_list_id"]]  # status=open: live only
    a.cancel_order_list(live["order_list_id"])
    for query, field in (({"status": "closed"}, "status"), ({"status": "all", "limit": "0"}, "limit"),
                         ({"status": "all", "from_id": "x"}, "from_id"), ({"limit": "5"}, "limit"),
                         ({"status": "all", "market": "NOPE-USD"}, "market"),
                         ({"status": "all", "start_ts": "9", "end_ts": "1"}, "start_ts")):
        e = err(lambda: a._call(_list_spec(query)))
        assert e.status in (400, 404) and e.field == field, (query, e)


def _list_spec(query: dict):
    from lxdex.client import _Spec

    return _Spec("GET", "/order-lists", "signed", query=query)


def test_the_sdk_never_signs_the_same_request_twice(alice, monkeypatch):
    """The node refuses a signature it has seen (replays); the SDK's
    timestamps strictly increase, so the same request sent twice within one
    millisecond (here: a stopped clock) is two requests, not a replay."""
    import time as real_time
    import types

    import lxdex.client as sdk

    frozen = real_time.time()
    monkeypatch.setattr(sdk, "time", types.SimpleNamespace(time=lambda: frozen))
    a = alice.client
    alert = a.add_alert("SOL-USD", "above", "150.5")
    assert a.cancel_alert(alert["alert_id"])["cancelled"] is True
    e = err(lambda: a.cancel_alert(alert["alert_id"]))
    assert (e.status, e.code) == (404, "UNKNOWN_ALERT")  # not 401 REPLAYED
    assert len({a._timestamp() for _ in range(100)}) == 100
