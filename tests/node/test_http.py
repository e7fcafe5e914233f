"""The node's HTTP endpoints: the product description's JSON and the
readable form, every error with a code, a message and the field to blame,
and bad requests leave the state unchanged."""

from __future__ import annotations

import json

import httpx
import pytest
from starlette.testclient import TestClient

from lxdex.node.http import build_app
from lxdex.node.server import Node

from .nodeutil import served, two_accounts_config


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path / "node", two_accounts_config(admin_token="s3cret", max_body_bytes=2048), sync="none")
    n.start()
    yield n
    n.stop()


@pytest.fixture(params=["asgi", "socket"])
def client(node, request):
    """Every test twice: through the ASGI app (Starlette's routes) and over a
    loopback socket as `lxdex node` serves it (the protocol's fast path)."""
    app = build_app(node)
    if request.param == "asgi":
        with TestClient(app) as c:
            yield c
    else:
        with served(app) as base, httpx.Client(base_url=base) as c:
            yield c


def test_post_order_in_the_original_json(client, node):
    r = client.post("/order", json={"symbol": "BTC-USD", "side": 1, "price": 50000, "size": 1})
    assert r.status_code == 200, r.text
    sell = r.json()
    assert sell["status"] == "new" and sell["filled"] == "0.0000" and sell["seq"] == node.exchange.last_seq
    r = client.post("/order", json={"symbol": "BTC-USD", "side": 0, "price": 50001.5, "size": 0.25,
                                    "account": 1})
    buy = r.json()
    assert r.status_code == 200 and buy["status"] == "filled", buy
    assert buy["fills"] == [{"price": "50000.00", "qty": "0.2500", "maker_order_id": sell["order_id"]}]
    orders = client.get("/orders", params={"account": 0}).json()
    assert [(o["order_id"], o["qty"]) for o in orders] == [(sell["order_id"], "0.7500")]


def test_readable_form_and_order_types(client):
    r = client.post("/order", json={"symbol": "ETH-USD", "side": "buy", "type": "limit", "tif": "ioc",
                                    "price": "2000.00", "size": "1.5"})
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["cancel_reason"] == "ioc"
    r = client.post("/order", json={"symbol": "ETH-USD", "side": "sell", "type": "stop_limit", "price": "1900",
                                    "trigger_price": "1950", "size": "1"})
    assert r.status_code == 200 and r.json()["status"] == "pending_trigger", r.text
    r = client.post("/order", json={"symbol": "ETH-USD", "side": "buy", "price": "1000", "size": "2",
                                    "post_only": True})
    assert r.status_code == 200 and r.json()["status"] == "new"


def test_cancel(client):
    oid = client.post("/order", json={"symbol": "BTC-USD", "side": 0, "price": 40000, "size": 1}).json()["order_id"]
    r = client.request("DELETE", "/order", json={"order_id": oid})
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    r = client.request("DELETE", "/order", json={"order_id": oid})
    assert r.status_code == 404 and r.json()["error"]["code"] == "UNKNOWN_ORDER"
    # bob cannot cancel alice's order
    oid = client.post("/order", json={"symbol": "BTC-USD", "side": 0, "price": 40000, "size": 1}).json()["order_id"]
    r = client.request("DELETE", "/order", json={"order_id": oid, "account": 1})
    assert r.status_code in (403, 404) and r.json()["error"]["code"] in ("UNKNOWN_ORDER", "NOT_OWNER")
    assert [o["order_id"] for o in client.get("/orders?account=0").json()] == [oid]


BAD_ORDERS = [
    (b'{"symbol":"BTC-USD","side":0,', 400, "INVALID_JSON", None),
    (b"\xff\xfe garbage", 400, "INVALID_JSON", None),
    (b"[]", 400, "INVALID_REQUEST", None),
    (b'{"side":0,"price":50000,"size":1}', 400, "INVALID_REQUEST", "symbol"),
    (b'{"symbol":"BTC-USD","side":0,"price":50000,"size":1,"colour":"red"}', 400, "INVALID_REQUEST", "colour"),
    (b'{"symbol":"BTC-USD","side":2,"price":50000,"size":1}', 400, "INVALID_REQUEST", "side"),
    (b'{"symbol":"BTC-USD","side":"up","price":50000,"size":1}', 400, "INVALID_COMMAND", "side"),
    (b'{"symbol":"BTC-USD","side":0,"price":[1],"size":1}', 400, "INVALID_REQUEST", "price"),
    (b'{"symbol":"BTC-USD","side":0,"price":true,"size":1}', 400, "INVALID_REQUEST", "price"),
    (b'{"symbol":"BTC-USD","side":0,"price":50000,"size":"lots"}', 400, "INVALID_AMOUNT", None),
    (b'{"symbol":"BTC-USD","side":0,"price":50000.001,"size":1}', 400, "OFF_TICK_GRID", None),
    (b'{"symbol":"BTC-USD","side":0,"price":50000,"size":0.00001}', 400, "OFF_LOT_GRID", None),
    (b'{"symbol":"BTC-USD","side":0,"price":-5,"size":1}', 400, "INVALID_PRICE", None),
    (b'{"symbol":"NOPE-USD","side":0,"price":50000,"size":1}', 404, "UNKNOWN_MARKET", None),
    (b'{"symbol":"BTC-USD","side":0,"price":50000,"size":1,"account":77}', 404, "UNKNOWN_ACCOUNT", None),
    (b'{"symbol":"BTC-USD","side":0,"price":50000,"size":100000}', 400, "INSUFFICIENT_FUNDS", None),
    (b'{"symbol":"BTC-USD","side":0,"price":50000,"size":1,"type":"sideways"}', 400, "INVALID_COMMAND", "order_type"),
    (b'{"symbol":"BTC-USD","side":0,"price":50000,"size":1,"tif":"forever"}', 400, "INVALID_COMMAND", "tif"),
]


@pytest.mark.parametrize("body,status,code,field", BAD_ORDERS)
def test_bad_orders_get_a_clear_error_and_change_nothing(client, node, body, status, code, field):
    before = node.exchange.snapshot()
    seq_before = node.exchange.last_seq
    r = client.post("/order", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code, err
    assert err["message"]
    if field:
        assert err.get("field") == field, err
    # nothing changed but (for commands that reached the log) the sequence number
    snap = node.exchange.snapshot()
    if node.exchange.last_seq == seq_before:
        assert snap == before
    else:
        from lxdex.exchange import Exchange

        # a rejected command takes a sequence number and moves the clock to its time, nothing else
        a, b = Exchange.restore(before, node.master_key), Exchange.restore(snap, node.master_key)
        assert a.core.advance_time(b.core.now) == []
        a.last_seq = b.last_seq
        assert a.state_hash() == b.state_hash()


def test_oversized_bodies_are_refused(client, node):
    seq = node.exchange.last_seq
    big = json.dumps({"symbol": "BTC-USD", "side": 0, "price": 1, "size": 1, "x": "y" * 5000})
    r = client.post("/order", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "TOO_LARGE"
    assert node.exchange.last_seq == seq


@pytest.mark.parametrize("path,status,code,field", [
    ("/book/NOPE-USD", 404, "UNKNOWN_MARKET", "symbol"),
    ("/book/BTC-USD?depth=0", 400, "INVALID_REQUEST", "depth"),
    ("/book/BTC-USD?depth=abc", 400, "INVALID_REQUEST", "depth"),
    ("/trades/BTC-USD?limit=100000", 400, "INVALID_REQUEST", "limit"),
    ("/orders", 400, "INVALID_REQUEST", "account"),
    ("/orders?account=-1", 400, "INVALID_REQUEST", "account"),
    ("/orders?account=999", 404, "UNKNOWN_ACCOUNT", "account"),
    ("/nowhere", 404, "NOT_FOUND", None),
])
def test_bad_queries(client, path, status, code, field):
    r = client.get(path)
    assert r.status_code == status and r.json()["error"]["code"] == code, r.text
    assert r.json()["error"].get("field") == field


def test_wrong_method(client):
    r = client.put("/order", json={})
    assert r.status_code == 405 and r.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_market_data_endpoints(client):
    client.post("/order", json={"symbol": "BTC-USD", "side": 1, "price": 50000, "size": 1})
    client.post("/order", json={"symbol": "BTC-USD", "side": 0, "price": 50000, "size": 0.5, "account": 1})
    book = client.get("/book/BTC-USD?depth=5").json()
    assert book["asks"] == [["50000.00", "0.5000"]] and book["bids"] == [] and book["last_update_id"] > 0
    trades = client.get("/trades/BTC-USD").json()
    assert [(t["price"], t["qty"], t["taker_side"]) for t in trades] == [("50000.00", "0.5000", "buy")]
    markets = client.get("/markets").json()
    assert [m["symbol"] for m in markets] == ["BTC-USD", "ETH-USD", "SOL-USD"]
    assert markets[0]["tick_size"] == "0.01" and markets[0]["lot_size"] == "0.0001"


def test_stats_health_metrics(client, node):
    client.post("/order", json={"symbol": "BTC-USD", "side": 1, "price": 50000, "size": 1})
    stats = client.get("/stats").json()
    for k in ("node_id", "uptime_s", "orders", "trades", "throughput", "journal_seq", "state_hash", "vertices",
              "finalized", "fpc_enabled", "vote_threshold"):
        assert k in stats
    assert stats["orders"] >= 1 and stats["journal_seq"] == node.exchange.last_seq
    assert stats["state_hash"] == node.exchange.state_hash()
    assert client.get("/health").json()["status"] == "ok"
    text = client.get("/metrics").text
    assert "lxdex_orders_total" in text and "lxdex_journal_seq" in text and "lxdex_http_orders_total 1.0" in text
    assert 'lxdex_thread_cpu_seconds_total{thread="lxdex-sequencer"}' in text


def test_health_is_503_when_the_node_stops(client, node):
    node.stop()
    assert client.get("/health").status_code == 503
    r = client.post("/order", json={"symbol": "BTC-USD", "side": 1, "price": 50000, "size": 1})
    assert r.status_code == 503 and r.json()["error"]["code"] == "UNAVAILABLE"


def test_admin_commands_need_the_token(client, node):
    dep = {"cmd": "deposit", "account": 1, "asset": "USD", "amount": "5"}
    assert client.post("/command", json=dep).status_code == 401
    assert client.post("/command", json=dep, headers={"authorization": "Bearer wrong"}).status_code == 401
    before = node.exchange.balance(1, "USD")[0]
    r = client.post("/command", json=dep, headers={"authorization": "Bearer s3cret"})
    assert r.status_code == 200 and node.exchange.balance(1, "USD")[0] == before + 5
    r = client.post("/command", json={"cmd": "deposit", "account": 1, "asset": "XYZ", "amount": "5"},
                    headers={"authorization": "Bearer s3cret"})
    assert r.status_code == 400 and r.json()["error"]["code"] in ("INVALID_COMMAND", "UNKNOWN_ASSET")
    r = client.post("/command", json={"cmd": "launch_rockets"}, headers={"authorization": "Bearer s3cret"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_REQUEST"


@pytest.fixture
def hnode(tmp_path):
    n = Node(tmp_path / "hnode", two_accounts_config(), sync="none", history=True)
    n.start()
    yield n
    n.stop()


def test_history_and_candles_endpoints(hnode):
    with TestClient(build_app(hnode)) as client:
        sell = client.post("/order", json={"symbol": "BTC-USD", "side": 1, "price": 50000, "size": 1}).json()
        buy = client.post("/order", json={"symbol": "BTC-USD", "side": 0, "price": 50000, "size": 0.4,
                                          "account": 1}).json()
        # (no flush: the read waits for what the node had acknowledged, though the store gets it after the ack)
        fills = client.get("/history/fills?account=1").json()
        assert [(f["order_id"], f["price"], f["qty"]) for f in fills] == [(buy["order_id"], "50000.00", "0.4000")]
        orders = client.get("/history/orders?account=0&market=BTC-USD").json()
        assert [o["order_id"] for o in orders] == [sell["order_id"]]
        one = client.get(f"/history/orders/{buy['order_id']}").json()
        assert one["order_id"] == buy["order_id"] and one["status"] == "filled"
        assert client.get("/history/orders/999999").status_code == 404
        assert client.get("/history/fills?account=1&colour=red").json()["error"]["field"] == "colour"
        assert client.get("/history/fills?account=1&market=NOPE-USD").status_code == 400
        assert client.get("/history/fills").json()["error"]["field"] == "account"
        candles = client.get("/candles/BTC-USD?interval=1m").json()
        assert len(candles) == 1 and candles[0]["volume"] == "0.4000"
        r = client.get("/candles/BTC-USD?interval=7m")
        assert r.status_code == 400 and r.json()["error"]["field"] == "interval"
        stats = client.get("/stats").json()
        assert stats["history"]["last_seq"] == stats["applied_seq"] and stats["history"]["lag"] == 0


def test_history_endpoints_without_a_store(client):
    assert client.get("/history/fills?account=0").status_code == 404


def test_pages_of_other_sites_cannot_place_or_cancel_orders(client, node):
    """POST/DELETE /order act for the node's accounts without credentials:
    a browser page of another site (its Origin) is refused and changes
    nothing; the node's own pages, allowed origins and clients without an
    Origin (not browsers) are served."""
    order = {"symbol": "BTC-USD", "side": 0, "price": 40000, "size": 1}
    seq = node.exchange.last_seq
    for origin in ("https://evil.example", "null", "http://127.0.0.1.evil.example"):
        r = client.post("/order", json=order, headers={"Origin": origin})
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "FORBIDDEN_ORIGIN" and r.json()["error"]["field"] == "origin"
    assert node.exchange.last_seq == seq
    host = client.base_url.netloc.decode()
    oid = client.post("/order", json=order, headers={"Origin": f"http://{host}"}).json()["order_id"]
    r = client.request("DELETE", "/order", json={"order_id": oid}, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and [o["order_id"] for o in node.exchange.open_orders(0)] == [oid]
    node.config.api.ws_allowed_origins = ["https://desk.example"]
    try:
        r = client.request("DELETE", "/order", json={"order_id": oid}, headers={"Origin": "https://desk.example"})
        assert r.status_code == 200 and node.exchange.open_orders(0) == []
    finally:
        node.config.api.ws_allowed_origins = []


def test_order_batches_linger_only_when_few_requests_wait():
    """Group commit's commit delay for POST /order: after a batch of n is
    answered, n/2 or more waiting requests go at once; fewer wait up to
    LINGER_S for more; an idle node sends the first request at once."""
    import asyncio

    from lxdex.node.http import _LoopSink, _OrderRows

    class FakeNode:
        def __init__(self):
            self.sent = []

        def submit_to(self, cmd, sink, token):
            self.sent.append((asyncio.get_running_loop().time(), len(cmd.data) // 3, token))
            return True

    async def main():
        loop = asyncio.get_running_loop()
        node = FakeNode()
        rows = _OrderRows(node, _LoopSink(loop), None)
        rows.add(b"abc")  # idle: goes on the next loop turn
        await asyncio.sleep(0)
        assert [n for _, n, _ in node.sent] == [1]
        for _ in range(4):
            rows.add(b"abc")
        rows.done(8)  # 4 waiting of a batch of 8: at once
        assert [n for _, n, _ in node.sent] == [1, 4]
        rows.add(b"abc")
        t0 = loop.time()
        rows.done(8)  # 1 waiting of 8: lingers
        assert len(node.sent) == 2
        rows.add(b"abc")
        await asyncio.sleep(rows.LINGER_S * 4)
        assert [n for _, n, _ in node.sent] == [1, 4, 2] and node.sent[-1][0] - t0 >= rows.LINGER_S * 0.9

    asyncio.run(main())


def test_a_batch_whose_rust_replies_fail_is_answered_by_the_python_path(caplog):
    """If building the replies in Rust raises, every request of the batch
    still gets its answer (its row's events, for the Python reply)."""
    import numpy as np

    from lxdex.enums import EVENT_DTYPE
    from lxdex.node.fasthttp import Pending
    from lxdex.node.http import _RowBatch

    class Owner:
        class order_json:
            @staticmethod
            def replies(*a):
                raise ValueError("broken")

        def done(self, n):
            self.n = n

    ev = np.zeros(3, EVENT_DTYPE)
    ev["cmd_index"] = [0, 1, 1]
    ev["order_id"] = [5, 6, 7]
    futs = [Pending(), Pending()]
    _RowBatch(Owner(), futs).resolve(type("Out", (), {"events": ev, "seq": 9})())
    assert [f.result()[0] for f in futs] == [9, 9]
    assert [[e[6] for e in f.result()[1]] for f in futs] == [[5], [6, 7]]
    assert "answering through the Python path" in caplog.text
