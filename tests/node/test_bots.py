"""The demo's bots are API clients: they trade through the node's REST API
with the Python SDK (signed requests with keys the demo gives them), and
books, trades and candles move."""

from __future__ import annotations

import time

from lxdex.node.bots import Bots, demo_config
from lxdex.node.http import build_app
from lxdex.node.server import Node

from .nodeutil import served


def test_bots_trade_through_the_rest_api_with_the_sdk(tmp_path):
    node = Node(tmp_path / "node", demo_config(), sync="none")
    node.start()
    try:
        with served(build_app(node)) as base:
            bots = Bots(node, base, seed=3, rate=5.0)
            bots.start()
            deadline = time.monotonic() + 20
            markets = ("BTC-USD", "ETH-USD", "SOL-USD")
            while time.monotonic() < deadline and (bots.placed < 40 or not all(node.exchange.trades(m, 1)
                                                                               for m in markets)):
                time.sleep(0.1)
            bots.stop()
            assert bots.error is None and bots.placed >= 40, (bots.placed, bots.failed, bots.error)
            assert bots.failed <= bots.placed // 10
            with node.lock:
                ex = node.exchange
                assert all(ex.trades(m, 1) for m in markets)
                bids, asks = ex.depth("BTC-USD", 5)
                assert bids and asks and bids[0][0] < asks[0][0]
                # each bot user has the key it traded with: a read+trade key made for it
                for user in bots.makers + bots.takers:
                    keys = ex.accounts.api_keys(user)
                    assert [k["permissions"] for k in keys] == [["read", "trade"]], keys
    finally:
        node.stop()
