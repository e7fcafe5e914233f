"""Helpers for the node tests: a node in a temporary dir with two funded
accounts (0 "alice", 1 "bob") on the default markets."""

from __future__ import annotations

import contextlib

from lxdex.node.config import Config

FUNDS = {"USD": "10000000", "BTC": "100", "ETH": "1000", "SOL": "100000"}


def two_accounts_config(**kw) -> Config:
    cfg = Config(**kw)
    cfg.accounts = [{"name": "alice", "deposits": dict(FUNDS)}, {"name": "bob", "deposits": dict(FUNDS)}]
    return cfg


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(app, **kw):
    """`app` (from `build_app`) served as `lxdex node` serves it (uvicorn with
    the node's HTTP protocol) on a free loopback port, in a thread: yields
    the base URL. `kw`: uvicorn settings to change."""
    import threading
    import time

    import uvicorn

    from lxdex.node.main import uvicorn_config

    port = free_port()
    server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", port, **{"log_level": "warning", **kw}))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert t.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        t.join(10)
