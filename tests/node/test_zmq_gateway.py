"""The ZeroMQ gateway: binary order messages in, acks back, trades and
depth on the PUB socket; malformed messages get an error reply and change
nothing."""

from __future__ import annotations

import struct
import threading

import numpy as np
import pytest
import zmq

from lxdex.enums import COMMAND_DTYPE, EVENT_DTYPE, Reason
from lxdex.node.server import Node
from lxdex.node.zmq_client import DEPTH_DTYPE, TRADE_DTYPE, GatewayError, ZmqClient, order_rows
from lxdex.node.zmq_gateway import ACK_DTYPE, ERR_KIND, ERR_MALFORMED, ERR_TOO_LARGE, ZmqGateway, acks, encode_request

from ..reference.gateway_acks import acks_for

from .nodeutil import two_accounts_config

BTC = 0  # market id of BTC-USD: tick 0.01, lot 0.0001
P50K = 5_000_000
ONE = 10_000


@pytest.fixture
def gw(tmp_path):
    node = Node(tmp_path / "node", two_accounts_config(), sync="none")
    node.start()
    g = ZmqGateway(node, "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", max_rows=64)
    g.start()
    yield g
    g.stop()
    node.stop()


def sell_buy():
    return order_rows([
        {"kind": "submit", "owner": 0, "market": BTC, "side": "sell", "price": P50K, "qty": 2 * ONE},
        {"kind": "submit", "owner": 1, "market": BTC, "side": "buy", "price": P50K + 100, "qty": ONE},
    ])


def test_orders_are_acked_with_ids_and_fills(gw):
    with ZmqClient(gw.endpoint) as c:
        seq, acks = c.request(sell_buy())
    assert seq == gw.node.exchange.last_seq
    assert acks["status"].tolist() == [0, 0]
    maker, taker = acks["order_id"].tolist()
    assert maker != taker and maker > 0
    assert acks["filled"].tolist() == [0, ONE] and acks["fills"].tolist() == [0, 1]
    assert acks["done"].tolist() == [0, 1]  # the buy filled completely; the sell rests
    fills = gw.node.exchange.recent_fills(1)
    assert len(fills) == 1 and fills[0]["order_id"] == taker and str(fills[0]["qty"]) == "1.0000"
    # cancel the resting rest of the sell
    with ZmqClient(gw.endpoint) as c:
        _, acks = c.request(order_rows([{"kind": "cancel", "owner": 0, "order_id": maker, "market": BTC}]))
    assert acks["status"][0] == 0 and acks["done"][0] == 1 and acks["reason"][0] == Reason.USER
    assert gw.node.exchange.open_orders(0) == []


def test_rejected_rows_say_why_and_the_rest_apply(gw):
    rows = order_rows([
        {"kind": "submit", "owner": 0, "market": 99, "side": "buy", "price": P50K, "qty": ONE},
        {"kind": "submit", "owner": 0, "market": BTC, "side": "buy", "price": P50K, "qty": 1000 * ONE},
        {"kind": "submit", "owner": 0, "market": BTC, "side": "buy", "price": P50K, "qty": ONE},
        {"kind": "cancel", "owner": 1, "order_id": 123456, "market": BTC},
    ])
    with ZmqClient(gw.endpoint) as c:
        _, acks = c.request(rows)
    assert acks["status"].tolist() == [1, 1, 0, 1]
    assert acks["reason"].tolist()[:2] == [Reason.UNKNOWN_MARKET, Reason.INSUFFICIENT_FUNDS]
    assert acks["reason"][3] == Reason.UNKNOWN_ORDER
    assert [o["order_id"] for o in gw.node.exchange.open_orders(0)] == [int(acks["order_id"][2])]


def _error(c: ZmqClient):
    with pytest.raises(GatewayError) as e:
        c.recv()
    return e.value


@pytest.mark.parametrize("msg,code,words", [
    (b"", ERR_MALFORMED, "shorter than the 16-byte header"),
    (b"\x00" * 7, ERR_MALFORMED, "shorter"),
    (b"GARBAGE-GARBAGE-GARBAGE", ERR_MALFORMED, "magic"),
    (struct.pack("<4sIQ", b"LXQ1", 0, 5), ERR_MALFORMED, "at least one row"),
    (struct.pack("<4sIQ", b"LXQ1", 2, 5) + b"\x00" * 120, ERR_MALFORMED, "does not match"),
    (struct.pack("<4sIQ", b"LXQ1", 65, 5) + b"\x00" * 120 * 65, ERR_TOO_LARGE, "over the limit of 64"),
])
def test_malformed_messages_get_an_error_and_change_nothing(gw, msg, code, words):
    before = gw.node.state_hash()
    with ZmqClient(gw.endpoint) as c:
        c.send_raw(msg)
        err = _error(c)
        assert err.code == code and words in err.message
        # the connection still works afterwards
        _, acks = c.request(sell_buy())
        assert acks["status"].tolist() == [0, 0]
    assert gw.errors == 1 and before[0] < gw.node.state_hash()[0]


def test_money_rows_and_unknown_kinds_are_refused_whole(gw):
    before = gw.node.state_hash()
    for kind in (8, 9, 10, 4, 200):  # deposit, withdraw, transfer, advance time, nonsense
        rows = sell_buy()
        rows["kind"][1] = kind
        with ZmqClient(gw.endpoint) as c:
            c.send(rows, 77)
            err = _error(c)
        assert err.code == ERR_KIND and err.request_id == 77 and "rows[1].kind" in err.message
    assert gw.node.state_hash() == before  # not even the valid first row applied


def test_expiries_past_signed_64_bit_milliseconds_are_refused_whole(gw):
    """(The history store, like the HTTP API, keeps times as signed 64-bit integers.)"""
    before = gw.node.state_hash()
    rows = sell_buy()
    rows["tif"][1] = 3  # GTD
    rows["expire_ts"][1] = 2**63 + 5
    with ZmqClient(gw.endpoint) as c:
        c.send(rows, 78)
        err = _error(c)
    assert err.code == ERR_MALFORMED and err.request_id == 78
    assert err.message == f"rows[1].expire_ts: {2**63 + 5} is over {2**63 - 1}"
    assert gw.node.state_hash() == before


def test_multi_frame_messages_are_refused(gw):
    before = gw.node.state_hash()
    with ZmqClient(gw.endpoint) as c:
        c.send_raw(b"x", encode_request(sell_buy(), 1))
        assert "one message frame" in _error(c).message
    assert gw.node.state_hash() == before


def test_many_clients_get_their_own_acks(gw):
    n_clients, per = 6, 40
    results: dict[int, list] = {}

    def client(k: int) -> None:
        with ZmqClient(gw.endpoint, zmq.Context()) as c:
            got = []
            rids = [c.send(order_rows([{"kind": "submit", "owner": k % 2, "market": BTC, "side": "buy",
                                        "price": 1_000_000 + k * 1000 + i, "qty": ONE}] * (1 + i % 3)))
                    for i in range(per)]
            for _ in rids:
                rid, seq, acks = c.recv()
                got.append((rid, len(acks), acks["status"].tolist()))
            results[k] = (rids, got)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    total = 0
    for k, (rids, got) in results.items():
        assert sorted(r for r, _, _ in got) == rids
        for rid, n, status in got:
            assert n == 1 + (rid - 1) % 3 and set(status) == {0}
            total += n
    assert len(results) == n_clients
    assert len(gw.node.exchange.open_orders(0)) + len(gw.node.exchange.open_orders(1)) == total


def test_trades_and_depth_are_published(gw):
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(gw.pub_endpoint)
    sub.setsockopt(zmq.SUBSCRIBE, b"trades.BTC-USD")
    sub.setsockopt(zmq.SUBSCRIBE, b"depth.BTC-USD")
    import time

    time.sleep(0.3)  # slow joiner: let the subscription reach the PUB socket
    with ZmqClient(gw.endpoint) as c:
        _, acks = c.request(sell_buy())
    got = {}
    while len(got) < 2 and sub.poll(5000):
        topic, payload = sub.recv_multipart()
        got[topic] = payload
    sub.close(0)
    trades = np.frombuffer(got[b"trades.BTC-USD"], TRADE_DTYPE)
    assert len(trades) == 1 and trades["qty"][0] == ONE and trades["price"][0] == P50K
    assert trades["taker_order_id"][0] == acks["order_id"][1] and trades["maker_order_id"][0] == acks["order_id"][0]
    depth = np.frombuffer(got[b"depth.BTC-USD"], DEPTH_DTYPE)
    # the ask rested at 2 lots, then 1 was taken: its level's last update says 1
    assert depth["price"][-1] == P50K and depth["qty"][-1] == ONE and depth["side"][-1] == 1


def test_rust_acks_match_the_reference_on_random_batches():
    from lxdex import commands as C
    from lxdex.enums import CommandKind
    from lxdex.exchange import Exchange

    cfg = two_accounts_config()
    ex = Exchange(b"k" * 32)
    for c in cfg.bootstrap(set(), set(), True):
        assert ex.execute(c).ok
    rng = np.random.default_rng(5)
    live: list[int] = [0]
    for _ in range(60):
        n = int(rng.integers(1, 200))
        rows = np.zeros(n, COMMAND_DTYPE)
        rows["kind"] = rng.choice([CommandKind.SUBMIT] * 6 + [CommandKind.CANCEL, CommandKind.AMEND,
                                                             CommandKind.MASS_CANCEL], n)
        rows["market"] = rng.choice([0, 1, 2, 7], n)
        rows["owner"] = rng.choice([0, 1, 1, 5], n)
        rows["side"] = rng.integers(0, 2, n)
        rows["order_type"] = rng.choice([0, 0, 0, 1], n)
        rows["tif"] = rng.choice([0, 0, 1, 2], n)
        rows["price"] = rng.integers(4_990_000, 5_010_000, n) // 100 * 100
        rows["qty"] = rng.integers(1, 300, n) * 10
        rows["order_id"] = rng.choice(live, n)
        out = ex.execute(C.Records(data=rows.tobytes()))
        got = np.frombuffer(acks(rows.tobytes(), out.events), ACK_DTYPE)
        want = acks_for(rows, out.events)
        assert got.tobytes() == want.tobytes()
        live = sorted(set(live) | set(want["order_id"].tolist()))[-400:]


def test_acks_of_rows_without_events():
    rows = np.zeros(3, COMMAND_DTYPE)
    rows["order_id"] = [4, 5, 6]
    got = np.frombuffer(acks(rows.tobytes(), np.zeros(0, dtype=EVENT_DTYPE)), ACK_DTYPE)
    assert got["order_id"].tolist() == [4, 5, 6] and not got["status"].any()


def test_requests_after_stop_get_an_unavailable_error(tmp_path):
    node = Node(tmp_path / "n", two_accounts_config(), sync="none")
    node.start()
    g = ZmqGateway(node, "tcp://127.0.0.1:*")
    g.start()
    node.stop()
    with ZmqClient(g.endpoint) as c:
        c.send(sell_buy(), 9)
        err = _error(c)
    assert err.request_id == 9 and "not accepting" in err.message
    g.stop()


def test_the_benchmark_load_generator_cancels_its_own_resting_orders(tmp_path):
    """`lxdex bench node`'s ZeroMQ client (built for little CPU: requests
    filled in place, a bag of resting orders as flat arrays): every request
    is acked whole, and its cancels name orders of the right owner and market
    (a slip in the bag's bookkeeping would get them refused)."""
    from lxdex.bench import node as B
    from lxdex.node.config import Config

    path = tmp_path / "bench.toml"
    B._config(path)
    node = Node(tmp_path / "node", Config.load(path), sync="none")
    node.start()
    g = ZmqGateway(node, "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", max_rows=256)
    g.start()
    try:
        class Q:
            def put(self, x):
                self.got = x

        q = Q()
        B._zmq_client(g.endpoint, 1.0, 64, 4, 11, q)
        r = q.got
    finally:
        g.stop()
        node.stop()
    assert r["requests"] > 20 and r["rows"] == 64 * r["requests"]
    # ~30% of the rows are cancels once orders rest: ~23% done, ~8% refused (orders filled meanwhile; the
    # generator before this one had the same shares); cancels with a wrong owner or market would be refused
    assert r["cancelled"] > 0.15 * r["rows"], r
    assert r["rejected"] < 0.15 * r["rows"], r
