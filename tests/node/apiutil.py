"""Fixtures for the REST API tests: one node (with its history store) per
test module, each test run twice: through the ASGI app in-process
(Starlette's TestClient) and over a loopback socket as `lxdex node` serves
it (the HTTP protocol's fast path for the routes that have one); each test
makes its own funded user and API key through the admin endpoints."""

from __future__ import annotations

import hmac
import itertools
import time
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx
import pytest
from starlette.testclient import TestClient

from lxdex.client import Client
from lxdex.node.config import ApiConfig
from lxdex.node.http import build_app
from lxdex.node.server import Node

from .nodeutil import served, two_accounts_config

ADMIN = "admin-token-for-tests"
_names = itertools.count()


def make_node(path, api: ApiConfig | None = None, history: bool = True, **kw) -> Node:
    cfg = two_accounts_config(admin_token=ADMIN, **kw)
    if api is not None:
        cfg.api = api
    node = Node(path, cfg, sync="none", history=history)
    node.start()
    return node


def stop_node(node: Node) -> None:
    node.stop()  # closes the history store too


@pytest.fixture(scope="module", params=["asgi", "socket"])
def transport(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def api_node(tmp_path_factory, transport):  # one node per transport: tests may count what a market holds
    node = make_node(tmp_path_factory.mktemp("api") / "node",
                     api=ApiConfig(rate_per_ip=10_000, burst_per_ip=10_000, rate_per_key=10_000,
                                   burst_per_key=10_000))
    yield node
    stop_node(node)


@pytest.fixture(scope="module")
def http(api_node, transport):
    app = build_app(api_node)
    if transport == "asgi":
        with TestClient(app, client=("127.0.0.1", 50000)) as c:
            yield c
    else:
        with served(app) as base, httpx.Client(base_url=base) as c:
            yield c


def base_url(http) -> str:
    """The base URL of the `http` fixture's client (TestClient's or the served node's)."""
    return str(http.base_url).rstrip("/")


@pytest.fixture(scope="module")
def admin(http):
    return Client(base_url(http), admin_token=ADMIN, http=http)


@dataclass
class User:
    user_id: int
    api_key: str
    secret: str
    client: Client


def new_user(admin: Client, http, permissions=("read", "trade"), funds=None, ip_allow=None) -> User:
    n = next(_names)
    u = admin.admin_create_user(f"user{n}", f"user{n}@example.com", "DE")
    for asset, amount in (funds or {"USD": "1000000", "BTC": "10", "ETH": "100", "SOL": "1000"}).items():
        admin.admin_deposit(u["user_id"], asset, amount)
    k = admin.admin_create_api_key(u["user_id"], list(permissions), ip_allow=ip_allow)
    return User(u["user_id"], k["api_key"], k["secret"],
                Client(base_url(http), k["api_key"], k["secret"], http=http))


@pytest.fixture
def alice(admin, http) -> User:
    return new_user(admin, http)


@pytest.fixture
def bob(admin, http) -> User:
    return new_user(admin, http)


def binance_sign(secret: str, params: dict, ts: int | None = None, recv_window: int | None = None) -> str:
    """A Binance-style signed query string (`...&timestamp=..&signature=..`)."""
    p = dict(params)
    p["timestamp"] = ts if ts is not None else int(time.time() * 1000)
    if recv_window is not None:
        p["recvWindow"] = recv_window
    q = urlencode(p)
    return q + "&signature=" + hmac.digest(secret.encode(), q.encode(), "sha256").hex()


def state(node: Node, *accounts: int) -> tuple:
    """What a bad request must not change: balances and open orders of the
    accounts, the applied seq, the API keys and alerts."""
    with node.lock:
        ex = node.exchange
        return (ex.last_seq,
                [(ex.core.balances(a), ex.open_orders(a), ex.accounts.api_keys(a, include_revoked=True),
                  ex.accounts.price_alerts(a)) for a in accounts])
