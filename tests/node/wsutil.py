"""Helpers for the WebSocket and web UI tests: a node's app served by a real
uvicorn on a free loopback port (in a thread), and a small synchronous
WebSocket client on top of `websockets`."""

from __future__ import annotations

import json
import random
import threading
import time
from decimal import Decimal

import httpx
import uvicorn
from websockets.sync.client import connect

from lxdex import commands as C
from lxdex.node.http import build_app
from lxdex.node.main import uvicorn_config

from .nodeutil import free_port


class Served:
    """`build_app(node)` served as `lxdex node` serves it (uvicorn with the
    node's HTTP protocol) in a thread; `close()` stops it."""

    def __init__(self, node, limits=None) -> None:
        self.node = node
        self.app = build_app(node, ws_limits=limits)
        self.hub = self.app.ws_hub
        self.port = free_port()
        cfg = uvicorn_config(self.app, "127.0.0.1", self.port, log_level="warning", timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 10
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def ws(self, path: str = "/ws", **kw) -> "Client":
        return Client(connect(self.ws_url + path, max_queue=kw.pop("max_queue", None), open_timeout=5, **kw))

    def close(self) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.hub.close()


class Client:
    """A WebSocket client that keeps what it received."""

    def __init__(self, conn) -> None:
        self.conn = conn.__enter__()  # (as `with connect(...)` would; closed by close())
        self.next_id = 1
        self.early: list[dict] = []  # stream messages that came while waiting for a reply

    def send(self, obj) -> None:
        self.conn.send(obj if isinstance(obj, (str, bytes)) else json.dumps(obj))

    def recv(self, timeout: float = 5.0) -> dict:
        return json.loads(self.conn.recv(timeout=timeout))

    def request(self, method: str, params=None, timeout: float = 5.0) -> dict:
        """Sends a request and returns its reply; stream messages received
        meanwhile are kept in `self.early`."""
        rid = self.next_id
        self.next_id += 1
        msg = {"method": method, "id": rid}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        deadline = time.time() + timeout
        while True:
            m = self.recv(max(0.01, deadline - time.time()))
            if m.get("id") == rid and ("result" in m or "error" in m):
                return m
            self.early.append(m)

    def drain(self, quiet: float = 0.3, limit: float = 10.0) -> list[dict]:
        """Everything received until nothing came for `quiet` seconds."""
        out, deadline = self.early, time.time() + limit
        self.early = []
        while time.time() < deadline:
            try:
                out.append(self.recv(quiet))
            except TimeoutError:
                break
        return out

    def until(self, pred, timeout: float = 10.0) -> list[dict]:
        """Messages received until one satisfies `pred` (included)."""
        out, deadline = self.early, time.time() + timeout
        self.early = []
        if any(pred(m) for m in out):
            return out
        while True:
            m = self.recv(max(0.01, deadline - time.time()))
            out.append(m)
            if pred(m):
                return out

    def close(self) -> None:
        self.conn.close()


def wait_idle(node, timeout: float = 10.0) -> None:
    """Until the node has applied everything queued (a no-op command round trip)."""
    node.execute(C.Tick(), timeout)


def random_load(node, rng: random.Random, n: int, accounts=(0, 1), market: str = "BTC-USD", mid: int = 50000,
                batch: int = 25) -> list:
    """`n` random commands (limit orders around `mid`, some crossing, some
    market orders, some cancels of live orders), submitted `batch` at a
    time so that sequencer batches hold several. Returns the outcomes."""
    outs, live = [], []
    for start in range(0, n, batch):
        futs = []
        for _ in range(min(batch, n - start)):
            acct = rng.choice(accounts)
            r = rng.random()
            if r < 0.15 and live:
                oid, owner = live.pop(rng.randrange(len(live)))
                futs.append(node.submit(C.CancelOrder(account=owner, order_id=oid)))
                continue
            side = rng.choice(("buy", "sell"))
            qty = str(Decimal(rng.randint(1, 40)) / 100)
            if r < 0.25:
                futs.append(node.submit(C.PlaceOrder(account=acct, market=market, side=side, qty=qty,
                                                     order_type="market")))
                continue
            off = rng.randint(-15, 25)
            price = mid - off if side == "buy" else mid + off
            futs.append(node.submit(C.PlaceOrder(account=acct, market=market, side=side, qty=qty, price=str(price))))
        for f in futs:
            out = f.result(10)
            outs.append(out)
            if out.ok and out.value and "order_id" in out.value:
                live.append((out.value["order_id"], None))
        # owners of the live orders (for cancels)
        live = [(oid, owner if owner is not None else _owner(node, oid)) for oid, owner in live]
        live = [(oid, owner) for oid, owner in live if owner is not None]
    return outs


def _owner(node, oid: int):
    with node.lock:
        hold = node.exchange.core.order_hold(oid)
    return None if hold is None else hold[0]
