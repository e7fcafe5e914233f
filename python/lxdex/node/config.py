"""Node configuration: a TOML file, with defaults for everything.

```toml
node_id = "node-1"
snapshot_every = 100000     # commands between snapshots
batch_max = 4096            # commands per journal batch (group commit)
admin_token = "..."         # enables POST /command (admin commands); unset: disabled
max_body_bytes = 65536
journal_segment_bytes = 67108864   # journal segment size (compaction drops whole segments)
history_url = "postgresql://user@host/db"   # history store; unset: SQLite in the data dir
history_max_backlog_mb = 256    # what the history store may hold unwritten; beyond it the sequencer waits
                                # for its writer (so memory stays bounded when orders come faster than
                                # the history can be written)
demo = false                # demo mode: the first account's private WebSocket stream and the web UI's
                            # order entry work without an API key (`lxdex demo` turns it on)

[api]                       # the REST API under /api (docs/api.md); every key optional
rate_per_ip = 100.0         # token bucket per client IP: requests per second ...
burst_per_ip = 200          # ... and bucket size
rate_per_key = 50.0         # token bucket per API key (signed requests)
burst_per_key = 100
recv_window_max_ms = 60000  # largest recvWindow a signed request may ask for
max_query_bytes = 4096      # longest query string
history_wait_s = 2.0        # history reads wait this long for the store to catch up
listen_key_ttl_s = 3600     # a Binance listenKey lives this long after its creation or last keepalive
ws_allowed_origins = []     # browser pages (Origin header) that may open WebSockets besides the node's own
                            # pages, e.g. ["https://app.example.com"]; ["*"]: any. Clients that send no
                            # Origin (bots, SDKs) are not affected

[[assets]]
symbol = "BTC"
decimals = 8

[[markets]]
symbol = "BTC-USD"
base = "BTC"
quote = "USD"
tick_size = "0.01"
lot_size = "0.0001"
maker_bps = -1
taker_bps = 5
band_bps = 0                # 0: no price band

[[accounts]]                # created (with deposits) when the state is new
name = "demo"                # optional: email, country (ISO code, default US)
deposits = { USD = "1000000", BTC = "10" }
```

With no file at all a node has the demo assets (BTC, ETH, SOL, USD), three
markets against USD and one funded `demo` account, which `POST /order` uses
when a request names no account (as the product description's requests
do). Markets and assets in the file that the state lacks are added (through
the log) at start; removing one from the file does not remove it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import commands as C

DEFAULT_ASSETS = [("BTC", 8), ("ETH", 8), ("SOL", 6), ("USD", 6)]
DEFAULT_MARKETS = [
    {"symbol": "BTC-USD", "base": "BTC", "quote": "USD", "tick_size": "0.01", "lot_size": "0.0001",
     "maker_bps": -1, "taker_bps": 5},
    {"symbol": "ETH-USD", "base": "ETH", "quote": "USD", "tick_size": "0.01", "lot_size": "0.001",
     "maker_bps": -1, "taker_bps": 5},
    {"symbol": "SOL-USD", "base": "SOL", "quote": "USD", "tick_size": "0.001", "lot_size": "0.01",
     "maker_bps": 0, "taker_bps": 5},
]
DEFAULT_ACCOUNTS = [{"name": "demo", "deposits": {"USD": "10000000", "BTC": "100", "ETH": "1000", "SOL": "100000"}}]

_MARKET_KEYS = {"symbol", "base", "quote", "tick_size", "lot_size", "min_qty", "min_notional", "band_bps",
                "maker_bps", "taker_bps"}


class ConfigError(ValueError):
    pass


def _origin_ok(o: str) -> bool:
    """An origin as browsers send it: `scheme://host[:port]`, nothing after (or "*", or "null")."""
    if o in ("*", "null"):
        return True
    scheme, sep, rest = o.partition("://")
    return bool(sep) and scheme in ("http", "https") and bool(rest) and not any(c in rest for c in "/?#@ ")


@dataclass
class ApiConfig:
    """The `[api]` table: rate limits and request limits of the REST API."""

    rate_per_ip: float = 100.0
    burst_per_ip: int = 200
    rate_per_key: float = 50.0
    burst_per_key: int = 100
    recv_window_max_ms: int = 60_000
    max_query_bytes: int = 4096
    history_wait_s: float = 2.0
    #: seconds a Binance listenKey lives after its creation or last keepalive (Binance: 60 minutes)
    listen_key_ttl_s: float = 3600.0
    #: origins (scheme://host[:port]) whose pages may open WebSockets besides the node's own; "*": any
    ws_allowed_origins: list[str] = field(default_factory=list)
    #: public market-data replies are kept while the exchange state is unchanged (its last applied sequence
    #: number): the same request between two batches gets the same bytes without rebuilding them
    reply_cache: bool = True

    @classmethod
    def from_dict(cls, data: dict, where: str) -> "ApiConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: [api] must be a table")
        cfg = cls()
        for k, v in data.items():
            if k not in cls.__dataclass_fields__:
                raise ConfigError(f"{where}: unknown key api.{k} (known: {', '.join(cls.__dataclass_fields__)})")
            if k == "ws_allowed_origins":
                if not isinstance(v, list) or not all(isinstance(o, str) and _origin_ok(o) for o in v):
                    raise ConfigError(f"{where}: api.ws_allowed_origins must be a list of origins like "
                                      f"\"https://app.example.com\" (scheme://host[:port], no path), or [\"*\"]; "
                                      f"got {v!r}")
                cfg.ws_allowed_origins = list(v)
                continue
            if k == "reply_cache":
                if not isinstance(v, bool):
                    raise ConfigError(f"{where}: api.reply_cache must be true or false, got {v!r}")
                cfg.reply_cache = v
                continue
            want = type(getattr(cfg, k))
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (want is int and not isinstance(v, int)) \
                    or v <= 0:
                raise ConfigError(f"{where}: api.{k} must be a positive {'integer' if want is int else 'number'}")
            setattr(cfg, k, want(v))
        return cfg


@dataclass
class Config:
    node_id: str = "node-1"
    snapshot_every: int = 100_000
    batch_max: int = 4096
    admin_token: str | None = None
    max_body_bytes: int = 65_536
    journal_segment_bytes: int = 64 << 20
    #: history store: None = SQLite in the data dir; "postgresql://..." = PostgreSQL
    history_url: str | None = None
    #: memory the history store's backlog may take before the sequencer waits for its writer
    history_max_backlog_mb: int = 256
    #: demo mode: the first account trades from the web UI and reads its user stream without an API key
    demo: bool = False
    assets: list[tuple[str, int]] = field(default_factory=lambda: list(DEFAULT_ASSETS))
    markets: list[dict[str, Any]] = field(default_factory=lambda: [dict(m) for m in DEFAULT_MARKETS])
    accounts: list[dict[str, Any]] = field(default_factory=lambda: [dict(a) for a in DEFAULT_ACCOUNTS])
    api: ApiConfig = field(default_factory=ApiConfig)

    @classmethod
    def load(cls, path: str | Path | None) -> "Config":
        """The config in `path` (TOML), or the defaults for None."""
        if path is None:
            return cls()
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"config {path}: {e}") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: dict, where: str = "config") -> "Config":
        cfg = cls()
        known = {"node_id", "snapshot_every", "batch_max", "admin_token", "max_body_bytes", "journal_segment_bytes",
                 "history_url", "history_max_backlog_mb", "demo", "assets", "markets", "accounts", "api"}
        for k in data:
            if k not in known:
                raise ConfigError(f"{where}: unknown key {k!r} (known: {', '.join(sorted(known))})")
        for k, typ, lo in (("snapshot_every", int, 1), ("batch_max", int, 1), ("max_body_bytes", int, 1024),
                            ("journal_segment_bytes", int, 4096), ("history_max_backlog_mb", int, 1)):
            if k in data:
                if not isinstance(data[k], typ) or data[k] < lo:
                    raise ConfigError(f"{where}: {k} must be an integer >= {lo}")
                setattr(cfg, k, data[k])
        for k in ("node_id", "admin_token", "history_url"):
            if k in data:
                if not isinstance(data[k], str) or not data[k]:
                    raise ConfigError(f"{where}: {k} must be a non-empty string")
                setattr(cfg, k, data[k])
        if "demo" in data:
            if not isinstance(data["demo"], bool):
                raise ConfigError(f"{where}: demo must be true or false")
            cfg.demo = data["demo"]
        if "assets" in data:
            try:
                cfg.assets = [(a["symbol"], a["decimals"]) for a in data["assets"]]
            except (KeyError, TypeError):
                raise ConfigError(f"{where}: each [[assets]] needs symbol and decimals") from None
        if "markets" in data:
            for m in data["markets"]:
                extra = set(m) - _MARKET_KEYS
                if extra or not {"symbol", "base", "quote", "tick_size", "lot_size"} <= set(m):
                    raise ConfigError(f"{where}: market {m.get('symbol')!r}: needs symbol, base, quote, tick_size, "
                                      f"lot_size; unknown keys {sorted(extra)}")
            cfg.markets = [dict(m) for m in data["markets"]]
        if "accounts" in data:
            cfg.accounts = [dict(a) for a in data["accounts"]]
        if "api" in data:
            cfg.api = ApiConfig.from_dict(data["api"], where)
        return cfg

    def bootstrap(self, have_assets: set[str], have_markets: set[str], fresh: bool) -> list[C.Command]:
        """The commands that bring a state up to this config: missing assets
        and markets, and on a fresh state the accounts with their deposits."""
        cmds: list[C.Command] = [C.AddAsset(symbol=s, decimals=d) for s, d in self.assets if s not in have_assets]
        for m in self.markets:
            if m["symbol"] not in have_markets:
                kw = {k: (str(v) if k in ("tick_size", "lot_size", "min_qty", "min_notional") else v)
                      for k, v in m.items()}
                cmds.append(C.AddMarket(**kw))
        if fresh:
            for i, a in enumerate(self.accounts):
                name = str(a.get("name", f"account-{i}"))
                cmds.append(C.CreateUser(profile={"display_name": name,
                                                  "email": str(a.get("email", f"{name}@example.com")),
                                                  "country": str(a.get("country", "US"))}))
                for asset, amount in sorted(a.get("deposits", {}).items()):
                    cmds.append(C.Deposit(account=i, asset=asset, amount=str(amount)))
        return cmds
