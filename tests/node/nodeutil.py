"""Helpers for the node tests: a node in a temporary dir with two funded
accounts (0 "alice", 1 "bob") on the default markets."""

from __future__ import annotations

from lxdex.node.config import Config

FUNDS = {"USD": "10000000", "BTC": "100", "ETH": "1000", "SOL": "100000"}


def two_accounts_config(**kw) -> Config:
    cfg = Config(**kw)
    cfg.accounts = [{"name": "alice", "deposits": dict(FUNDS)}, {"name": "bob", "deposits": dict(FUNDS)}]
    return cfg
