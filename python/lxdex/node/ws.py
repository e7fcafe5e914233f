"""WebSocket streams of a node: public market data and private user streams.

Routes (Starlette `WebSocketRoute`s, mounted by `build_app`):

- `/ws`                  a connection that subscribes with `SUBSCRIBE`;
  payloads arrive raw;
- `/ws/<stream>[/<stream>...]`  subscribed to those streams from the start
  (Binance's raw streams), payloads raw; a Binance listenKey among them
  (`/ws/<listenKey>`) is that user's Binance user data stream;
- `/stream?streams=a/b`  Binance's combined streams: every payload is
  wrapped as `{"stream": <name>, "data": <payload>}`.

Stream names follow Binance (`btcusd@trade`, `@aggTrade`, `@depth` (1000 ms),
`@depth@100ms`, `@depth20`, `@kline_1m`, `@bookTicker`, `@ticker`,
`@miniTicker`, `@ticker_1h`, `!ticker@arr`, `!miniTicker@arr`); our own
symbols work too (`BTC-USD@trade`). Requests on a connection:
`{"method": "SUBSCRIBE" | "UNSUBSCRIBE", "params": [names], "id": 1}`,
`{"method": "LIST_SUBSCRIPTIONS", "id": 2}`,
`{"method": "userDataStream.subscribe", "params": {"apiKey", "timestamp",
"signature"}, "id": 3}` (the private stream of the key's user; without
params only on a node in demo mode, for the demo account) and
`userDataStream.unsubscribe`. docs/ws.md has the message shapes, the depth
resync procedure and the limits.

Fan-out. The hub registers one listener on the node. On the sequencer thread
it only puts the batch on a queue (nothing at all while nobody is connected).
One worker thread takes everything queued, converts it once into encoded
messages per topic (and per subscribed user), and hands them to each event
loop that has subscribers with one `call_soon_threadsafe`; there each
message is framed once (RFC 6455 text frame) and the same bytes go to every
subscriber: written to its transport at once when it keeps up (one write per
subscriber per delivery, on uvicorn), else appended to its bounded queue,
which a sender task per connection drains (elsewhere, through the ASGI
send). The worker waits for the loop to take a
delivery before preparing the next one, so under load several sequencer
batches coalesce into one delivery (depth diffs merge, as Binance's
`@depth@100ms` does) instead of the loop falling behind. A subscriber whose
queue overflows is cut off with close code 1008, reason "slow consumer": the
node never waits for a client. Throttled streams (depth, tickers) are
accumulated by the worker and go out when their period is due.

A browser connection (one with an Origin header) is accepted only from the
node's own pages or `[api] ws_allowed_origins`; others get HTTP 403 before
the handshake completes.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import msgspec
import numpy as np
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from .. import commands as C
from ..accounts import AuthError, AuthFailure
from ..enums import COMMAND_DTYPE, EVENT_DTYPE, CommandKind, EventKind, Flags, OrderType, Reason, Side, Stp
from .server import Node

log = logging.getLogger("lxdex.node.ws")

_enc = msgspec.json.Encoder(decimal_format="string")

FILL, DEPTH, REJECTED = int(EventKind.FILL), int(EventKind.DEPTH), int(EventKind.REJECTED)
KLINE_INTERVALS = ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "1w", "1M")
PARTIAL_LEVELS = (5, 10, 20)
_SECOND, _MINUTE, _HOUR, _DAY = 1000, 60_000, 3_600_000, 86_400_000
_FIXED = {"1s": _SECOND, "1m": _MINUTE, "3m": 3 * _MINUTE, "5m": 5 * _MINUTE, "15m": 15 * _MINUTE,
          "30m": 30 * _MINUTE, "1h": _HOUR, "2h": 2 * _HOUR, "4h": 4 * _HOUR, "6h": 6 * _HOUR, "8h": 8 * _HOUR,
          "12h": 12 * _HOUR, "1d": _DAY}
_CONDITIONAL = {int(t) for t in OrderType} - {int(OrderType.LIMIT), int(OrderType.MARKET)}


@dataclass
class WsLimits:
    """Per-node limits of the WebSocket gateway (docs/ws.md)."""

    #: messages waiting per subscriber; one more and it is disconnected (1008 "slow consumer")
    max_queue: int = 4096
    #: streams per connection (Binance: 1024)
    max_streams: int = 1024
    #: connections per node; past it a connection is closed with 1013
    max_connections: int = 10_000
    #: size of one client request (a text frame)
    max_request_bytes: int = 4096
    #: client requests: a bucket of `request_burst`, refilled at `request_rate` per second;
    #: a client past it is disconnected (1008 "too many requests")
    request_rate: float = 10.0
    request_burst: int = 50
    #: how long a close frame to a slow consumer may take before the connection is aborted
    close_timeout: float = 2.0
    #: userDataStream.subscribe: the largest recvWindow (ms) a client may ask for
    max_recv_window: int = 60_000


# -- interval arithmetic (as the core's marketdata.rs) ----------------------------------------
def interval_start(interval: str, ts: int) -> int:
    """Start (ms) of the `interval` candle that holds `ts`."""
    n = _FIXED.get(interval)
    if n is not None:
        return ts - ts % n
    if interval == "1w":  # weeks start Monday 00:00 UTC; 1970-01-05 starts week 0
        shifted = ts + 3 * _DAY
        return max(shifted - shifted % (7 * _DAY) - 3 * _DAY, 0)
    d = datetime.fromtimestamp(ts / 1000, timezone.utc)
    return int(datetime(d.year, d.month, 1, tzinfo=timezone.utc).timestamp() * 1000)


def interval_end(interval: str, start: int) -> int:
    """The last ms of the candle starting at `start`."""
    n = _FIXED.get(interval)
    if n is not None:
        return start + n - 1
    if interval == "1w":
        return start + 7 * _DAY - 1
    d = datetime.fromtimestamp(start / 1000, timezone.utc)
    y, m = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
    return int(datetime(y, m, 1, tzinfo=timezone.utc).timestamp() * 1000) - 1


# -- stream names -----------------------------------------------------------------------------
class StreamError(ValueError):
    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code, self.field = code, field


#: update speed (ms) of each throttled stream kind; the others go out with every delivery
SPEEDS = {"depth": (100, 1000), "depthN": (100, 1000)}
#: window tickers: `<symbol>@ticker_<window>` (computed from the 1 m candles, of which the core keeps a day)
TICKER_WINDOWS = {f"{h}h": h * _HOUR for h in range(1, 24)} | {"1d": _DAY}
ALL_MARKET_STREAMS = {"!miniTicker@arr": "allMiniTicker", "!ticker@arr": "allTicker"}
STATE_PERIOD_MS = 1000  # ticker, miniTicker, ticker_<w>, the all-market arrays (as Binance)


def parse_stream(name: str, markets: dict[str, int]) -> tuple:
    """The topic `(market id, kind, param)` of a stream name; `markets` maps
    every accepted spelling of a symbol (BTC-USD, btcusd, ...) to its id.
    All-market streams (`!ticker@arr`) have market None. The param of
    `depth` is its update speed in ms, of `depthN` `(levels, speed)`."""
    if not isinstance(name, str) or not 0 < len(name) <= 100:
        raise StreamError("INVALID_STREAM", f"stream name {name!r} is not a string of 1..100 characters")
    if name in ALL_MARKET_STREAMS:
        return (None, ALL_MARKET_STREAMS[name], None)
    sym, sep, rest = name.partition("@")
    if not sep:
        raise StreamError("INVALID_STREAM", f"stream {name!r}: expected <symbol>@<kind>, e.g. btcusd@trade "
                          "(or a live listenKey, in the URL)")
    mk = markets.get(sym)
    if mk is None:
        mk = markets.get(sym.upper())
    if mk is None:
        mk = markets.get(sym.lower())
    if mk is None:
        raise StreamError("UNKNOWN_MARKET", f"stream {name!r}: no market {sym!r}")
    speed = None
    for suffix, ms in (("@100ms", 100), ("@1000ms", 1000)):
        if rest.endswith(suffix):
            rest, speed = rest[: -len(suffix)], ms
    if rest in ("trade", "trades", "aggTrade", "bookTicker", "ticker", "miniTicker") and speed is None:
        return (mk, rest, None)
    if rest == "depth":
        return (mk, "depth", speed or 1000)
    if rest.startswith("depth") and rest[5:].isdigit() and int(rest[5:]) in PARTIAL_LEVELS:
        return (mk, "depthN", (int(rest[5:]), speed or 1000))
    if rest.startswith("kline_") and speed is None:
        iv = rest[6:]
        if iv in KLINE_INTERVALS:
            return (mk, "kline", iv)
        raise StreamError("INVALID_STREAM", f"stream {name!r}: interval {iv!r} is not one of "
                          + " ".join(KLINE_INTERVALS))
    if rest.startswith("ticker_") and speed is None:
        w = rest[7:]
        if w in TICKER_WINDOWS:
            return (mk, "windowTicker", w)
        raise StreamError("INVALID_STREAM", f"stream {name!r}: ticker window {w!r} is not one of 1h..23h, 1d")
    kind = rest + (f"@{speed}ms" if speed else "")
    raise StreamError("INVALID_STREAM", f"stream {name!r}: unknown stream kind {kind!r} "
                      "(trade, trades, aggTrade, depth, depth5/10/20 (each with @100ms or @1000ms), "
                      "kline_<interval>, bookTicker, ticker, ticker_<window>, miniTicker)")


# -- listen keys (Binance's user data stream) --------------------------------------------------------------
NATIVE, BINANCE = "native", "binance"


class ListenKeys:
    """The node's live listen keys: one per user (Binance's rule: creating
    one while the user has one returns it, kept alive), valid `ttl_s`
    seconds from its creation or last keepalive. `binance.py` creates, keeps
    alive and closes them (REST `/api/v3/userDataStream`); the hub serves
    `/ws/<listenKey>` and tells its connections when a key goes. Thread-safe."""

    def __init__(self, ttl_s: float, clock=time.monotonic) -> None:
        self.ttl_s, self.clock = float(ttl_s), clock
        self._lock = threading.Lock()
        self._keys: dict[str, list] = {}      # key -> [user, expires_at]
        self._of_user: dict[int, str] = {}
        self._watchers: dict[str, set] = {}   # key -> {(loop, asyncio.Event)}

    def _live(self, key: str):
        e = self._keys.get(key)
        if e is not None and e[1] <= self.clock():
            del self._keys[key]
            if self._of_user.get(e[0]) == key:
                del self._of_user[e[0]]
            self._notify(key)
            return None
        return e

    def create(self, user: int) -> str:
        with self._lock:
            key = self._of_user.get(user)
            if key is not None and self._live(key) is not None:
                self._keys[key][1] = self.clock() + self.ttl_s
                return key
            key = secrets.token_hex(32)
            self._keys[key] = [user, self.clock() + self.ttl_s]
            self._of_user[user] = key
            return key

    def keepalive(self, key: str, user: int) -> bool:
        """Extends the key's life; False if the user has no such live key."""
        with self._lock:
            e = self._live(key)
            if e is None or e[0] != user:
                return False
            e[1] = self.clock() + self.ttl_s
            self._notify(key)
            return True

    def close(self, key: str, user: int) -> bool:
        """Ends the key now (its streams get listenKeyExpired); False if the user has no such live key."""
        with self._lock:
            e = self._live(key)
            if e is None or e[0] != user:
                return False
            del self._keys[key]
            self._of_user.pop(user, None)
            self._notify(key)
            return True

    def user_of(self, key: str) -> int | None:
        with self._lock:
            e = self._live(key)
            return None if e is None else e[0]

    def expires_at(self, key: str) -> float | None:
        with self._lock:
            e = self._live(key)
            return None if e is None else e[1]

    def watch(self, key: str, loop, event) -> None:
        with self._lock:
            self._watchers.setdefault(key, set()).add((loop, event))

    def unwatch(self, key: str, loop, event) -> None:
        with self._lock:
            w = self._watchers.get(key)
            if w is not None:
                w.discard((loop, event))
                if not w:
                    del self._watchers[key]

    def _notify(self, key: str) -> None:
        for loop, event in self._watchers.get(key, ()):
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop is closed
                pass


_registries: "weakref.WeakKeyDictionary[Node, ListenKeys]" = weakref.WeakKeyDictionary()
_registries_lock = threading.Lock()


def listen_keys(node: Node) -> ListenKeys:
    """The node's listen keys (one registry per node, shared by the REST API and the hub)."""
    with _registries_lock:
        reg = _registries.get(node)
        if reg is None:
            reg = _registries[node] = ListenKeys(node.config.api.listen_key_ttl_s)
        return reg


class Request(msgspec.Struct, forbid_unknown_fields=True):
    method: str
    params: list[str] | dict[str, Any] | None = None
    id: int | str | None = None


_req_decoder = msgspec.json.Decoder(Request)


# -- the conversion of batches into messages (worker thread) ------------------------------------
def _events_array(events) -> np.ndarray:
    """A list of core `Event`s as one EVENT_DTYPE array."""
    return np.array([(e.kind, e.reason, e.side, e.order_type, 0, e.market, e.order_id, e.owner, e.other_id,
                      e.other_owner, e.price, e.qty, e.remaining, e.other_remaining) for e in events], EVENT_DTYPE)


_EMPTY = np.zeros(0, EVENT_DTYPE)


class _Candle:
    __slots__ = ("start", "o", "h", "l", "c", "v", "q", "n", "first", "last", "seq", "sent")

    def __init__(self, start, o, h, lo, c, v, q, n, first, last, seq) -> None:
        self.start, self.o, self.h, self.l, self.c, self.v, self.q, self.n = start, o, h, lo, c, v, q, n
        self.first, self.last, self.seq, self.sent = first, last, seq, False


class _Sync:
    """A queue marker: start over from the state at `seq`."""

    __slots__ = ("seq", "trade_ids")

    def __init__(self, seq: int, trade_ids: dict[int, int]) -> None:
        self.seq, self.trade_ids = seq, trade_ids


class _Ord:
    """What a Binance executionReport says about an order that the events
    do not: kept by the converter for the open orders of users on a
    Binance user stream, from their placement on (or from the first event
    the stream saw, for an order placed before)."""

    __slots__ = ("cid", "side", "type", "tif", "q", "p", "P", "F", "O", "W", "V", "z", "Z", "working", "owner")

    def __init__(self, owner, cid, side, otype, tif, q, p, stop, iceberg, created, stp, working) -> None:
        self.owner, self.cid, self.side, self.type, self.tif = owner, cid, side, otype, tif
        self.q, self.p, self.P, self.F, self.O, self.V = q, p, stop, iceberg, created, stp
        self.working = working
        self.W = created if working else None
        self.z = self.Z = 0


_BINANCE_TYPES = {int(OrderType.LIMIT): "LIMIT", int(OrderType.MARKET): "MARKET",
                  int(OrderType.STOP_MARKET): "STOP_LOSS", int(OrderType.STOP_LIMIT): "STOP_LOSS_LIMIT",
                  int(OrderType.TAKE_PROFIT_MARKET): "TAKE_PROFIT",
                  int(OrderType.TAKE_PROFIT_LIMIT): "TAKE_PROFIT_LIMIT", int(OrderType.TRAILING_STOP): "STOP_LOSS"}
_BINANCE_STP = {int(Stp.NONE): "NONE", int(Stp.CANCEL_TAKER): "EXPIRE_TAKER", int(Stp.CANCEL_MAKER): "EXPIRE_MAKER",
                int(Stp.CANCEL_BOTH): "EXPIRE_BOTH", int(Stp.DECREMENT): "DECREMENT"}
_STP_NAMES = {"none": "NONE", "cancel_taker": "EXPIRE_TAKER", "cancel_maker": "EXPIRE_MAKER",
              "cancel_both": "EXPIRE_BOTH", "decrement": "DECREMENT"}
_EXPIRING = {int(Reason.IOC), int(Reason.FOK), int(Reason.MARKET_REMAINDER), int(Reason.EXPIRED),
             int(Reason.POST_ONLY)}
_ZERO = Decimal(0)


class Converter:
    """Turns sequencer batches into encoded messages. One per hub, used only
    by its worker thread; it reads the exchange (under `node.lock`) only for
    state that events do not carry: trade ids at the start, the current
    candle, partial depth, BBO, tickers, balances and fill fees.

    Throttled streams (`@depth` 1000 ms, `@depth@100ms`, partial depth,
    tickers: `SPEEDS`, `STATE_PERIOD_MS`) accumulate between emissions: a
    stream goes out at once when its period has passed since its last
    message, else when it has (`next_due`)."""

    def __init__(self, node: Node, keys: ListenKeys | None = None, clock=time.monotonic) -> None:
        self.node = node
        self.keys = keys
        self.clock = clock
        self.skip_until = -1
        self.trade_id: dict[int, int] = {}
        self.candles: dict[tuple[int, str], _Candle] = {}
        self.bbo: dict[int, tuple] = {}
        self.pending_depth: dict[tuple, list] = {}   # depth topic -> [first id, last id, {(side, price): qty}, ts]
        self.pending_state: dict[tuple, int] = {}    # throttled state topic -> ts of its latest change
        self.pending_arr: dict[tuple, set] = {}      # all-market topic -> markets changed
        self.last_emit: dict[tuple, float] = {}
        self.orders: dict[int, _Ord] = {}            # open orders of users on a Binance stream
        self._binance_users: frozenset = frozenset()

    @staticmethod
    def read_sync(ex) -> tuple[int, dict[int, int]]:
        """`(last seq, {market: last trade id})` of the exchange (call under `node.lock`)."""
        ids = {}
        for m in ex._market_by_id:
            t = ex.core.trades(m.id, 1)
            ids[m.id] = t[-1][0] if t else 0
        return ex.last_seq, ids

    def reset(self, seq: int, trade_ids: dict[int, int]) -> None:
        """Starts over from the state at `seq`: batches up to it are
        skipped, trade ids continue from the exchange's."""
        self.skip_until = seq
        self.trade_id = dict(trade_ids)
        self.candles.clear()
        self.bbo.clear()
        self.pending_depth.clear()
        self.pending_state.clear()
        self.pending_arr.clear()
        self.last_emit.clear()
        self.orders.clear()

    @staticmethod
    def period(topic: tuple) -> float:
        """Seconds between two messages of a throttled topic."""
        _, kind, p = topic
        if kind == "depth":
            return p / 1000
        if kind == "depthN":
            return p[1] / 1000
        return STATE_PERIOD_MS / 1000

    def next_due(self) -> float | None:
        """When (monotonic) the earliest accumulated throttled message is due; None if none is."""
        due = None
        for d in (self.pending_depth, self.pending_state):
            for t in d:
                at = self.last_emit.get(t, float("-inf")) + self.period(t)
                if due is None or at < due:
                    due = at
        return due

    def convert(self, batches: list, topics: set, users: set) -> tuple[dict, dict]:
        """`({topic: [message, ...]}, {(user_id, flavour): [message, ...]})`
        for the subscribed `topics` and `users` (`(user id, NATIVE or
        BINANCE)`), from a list of batches (none: only what is due)."""
        node = self.node
        ex = node.exchange
        mkts = ex._market_by_id
        want: dict[int, dict[str, set]] = {}
        want_all: set[str] = set()
        for mk, kind, param in topics:
            if mk is None:
                want_all.add(kind)
            else:
                want.setdefault(mk, {}).setdefault(kind, set()).add(param)
        self._init_candles(want)
        native = frozenset(u for u, f in users if f == NATIVE)
        binance = frozenset(u for u, f in users if f == BINANCE)
        if binance != self._binance_users:  # forget the orders of users who left
            self.orders = {oid: o for oid, o in self.orders.items() if o.owner in binance}
            self._binance_users = binance
        uids = native | binance
        users_arr = np.fromiter(uids, np.uint64, len(uids)) if uids else None
        fills_of: dict[int, list] = {}       # market -> [(tid, ts, seq, price, qty, side, taker oid, maker oid)]
        diffs: dict[int, list] = {}           # market -> [first id, last id, {(side, price): qty}, ts]
        traded: dict[int, int] = {}           # market -> ts
        depth_touched: dict[int, int] = {}    # market -> ts
        private: dict[tuple, list] = {}       # (user, flavour) -> [message]
        touched_assets: dict[int, set] = {}   # user -> asset ids
        fee_slots: list = []                  # (user, Binance TRADE message, (order id, price, qty, maker))
        last_ts = 0
        for pairs in batches:
            for cmd, out in pairs:
                seq = out.seq
                if seq <= self.skip_until:
                    continue
                ts = cmd.ts
                last_ts = ts
                for events in (out.clock_events, out.events):
                    if isinstance(events, np.ndarray):
                        arr = events
                    else:
                        arr = _events_array(events) if events else _EMPTY
                    if not len(arr):
                        continue
                    kind = arr["kind"]
                    fmask = kind == FILL
                    tids = None
                    if fmask.any():
                        fills = arr[fmask]
                        fm = fills["market"]
                        tids = np.empty(len(fills), np.int64)
                        for mk in np.unique(fm).tolist():
                            idx = np.flatnonzero(fm == mk)
                            start = self.trade_id.get(mk, 0)
                            tids[idx] = np.arange(start + 1, start + 1 + len(idx))
                            self.trade_id[mk] = start + len(idx)
                            traded[mk] = ts
                            w = want.get(mk)
                            if w and ("trade" in w or "trades" in w or "aggTrade" in w or "kline" in w):
                                acc = fills_of.setdefault(mk, [])
                                sub = fills[idx]
                                for tid, p, q, s, o, oo in zip(tids[idx].tolist(), sub["price"].tolist(),
                                                               sub["qty"].tolist(), sub["side"].tolist(),
                                                               sub["order_id"].tolist(), sub["other_id"].tolist()):
                                    acc.append((tid, ts, seq, p, q, s, o, oo))
                    dmask = kind == DEPTH
                    if dmask.any():
                        d = arr[dmask]
                        dm = d["market"]
                        for mk in np.unique(dm).tolist():
                            depth_touched[mk] = ts
                            w = want.get(mk)
                            if not w or "depth" not in w:
                                continue
                            sub = d[dm == mk]
                            ids = sub["order_id"]
                            acc = diffs.get(mk)
                            if acc is None:
                                acc = diffs[mk] = [int(ids[0]), 0, {}, ts]
                            acc[1], acc[3] = int(ids[-1]), ts
                            levels = acc[2]
                            for s, p, q in zip(sub["side"].tolist(), sub["price"].tolist(), sub["qty"].tolist()):
                                levels[(s, p)] = q
                    if users_arr is not None:
                        self._private(arr, kind, fmask, tids, users_arr, native, binance, ts, seq, cmd, mkts,
                                      private, touched_assets, fee_slots)
                if users_arr is not None:
                    self._private_command(cmd, out, native, binance, ts, private, touched_assets)
        topic_msgs: dict[tuple, list[str]] = {}
        for mk, acc in fills_of.items():
            self._trade_messages(mk, acc, want[mk], mkts[mk], topic_msgs)
        # accumulate the throttled streams, drop what nobody wants any more, emit what is due
        for mk, (first, last, levels, ts) in diffs.items():
            for speed in want[mk]["depth"]:
                p = self.pending_depth.get((mk, "depth", speed))
                if p is None:
                    self.pending_depth[(mk, "depth", speed)] = [first, last, dict(levels), ts]
                else:
                    p[1], p[3] = last, ts
                    p[2].update(levels)
        for mk, ts in depth_touched.items():
            for p in want.get(mk, {}).get("depthN", ()):
                self.pending_state[(mk, "depthN", p)] = ts
        for mk, ts in traded.items():
            w = want.get(mk, {})
            for k in ("ticker", "miniTicker"):
                if k in w:
                    self.pending_state[(mk, k, None)] = ts
            for win in w.get("windowTicker", ()):
                self.pending_state[(mk, "windowTicker", win)] = ts
        if traded:
            for k in want_all:
                t = (None, k, None)
                self.pending_state[t] = last_ts
                self.pending_arr.setdefault(t, set()).update(traded)
        for d in (self.pending_depth, self.pending_state, self.pending_arr, self.last_emit):
            if len(d) and any(t not in topics for t in d):
                for t in [t for t in d if t not in topics]:
                    del d[t]
        now = self.clock()
        for t in [t for t in self.pending_depth if now >= self.last_emit.get(t, float("-inf")) + self.period(t)]:
            first, last, levels, ts = self.pending_depth.pop(t)
            self.last_emit[t] = now
            m = mkts[t[0]]
            tick, lot = m.tick_size, m.lot_size
            bids = [[p * tick, q * lot] for (s, p), q in sorted(levels.items(), key=lambda kv: -kv[0][1]) if s == 0]
            asks = [[p * tick, q * lot] for (s, p), q in sorted(levels.items()) if s == 1]
            topic_msgs[t] = [_enc.encode({
                "e": "depthUpdate", "E": ts, "s": m.symbol, "U": first, "u": last, "b": bids, "a": asks}).decode()]
        self._state_messages(want, depth_touched, now, mkts, topic_msgs)
        if touched_assets or fee_slots:
            self._account_reads(touched_assets, fee_slots, last_ts, native, binance, mkts, private)
        for key, msgs in private.items():  # Binance reports wait for their fees: encoded last
            if key[1] == BINANCE:
                private[key] = [m if isinstance(m, str) else _enc.encode(m).decode() for m in msgs]
        return topic_msgs, private

    # -- klines and trades ---------------------------------------------------------------------
    def _init_candles(self, want: dict) -> None:
        new = [(mk, iv) for mk, w in want.items() for iv in w.get("kline", ()) if (mk, iv) not in self.candles]
        if not new:
            return
        with self.node.lock:
            ex = self.node.exchange
            seq = ex.last_seq
            for mk, iv in new:
                c = ex.core.candles(mk, iv, 0, 1)
                t = ex.core.trades(mk, 1)
                last = t[-1][0] if t else 0
                if c:
                    start, o, h, lo, cl, v, q, n = c[-1]
                    self.candles[(mk, iv)] = _Candle(start, o, h, lo, cl, v, q, n, last - n + 1, last, seq)
                else:
                    self.candles[(mk, iv)] = _Candle(-1, 0, 0, 0, 0, 0, 0, 0, 0, 0, seq)

    def _trade_messages(self, mk: int, acc: list, w: dict, m, out: dict) -> None:
        tick, lot, sym = m.tick_size, m.lot_size, m.symbol
        if "trade" in w:
            msgs = out.setdefault((mk, "trade", None), [])
            for tid, ts, _, p, q, s, o, oo in acc:
                buyer, seller = (o, oo) if s == 0 else (oo, o)
                msgs.append(_enc.encode({"e": "trade", "E": ts, "s": sym, "t": tid, "p": p * tick, "q": q * lot,
                                         "T": ts, "m": s == 1, "b": buyer, "a": seller}).decode())
        if "aggTrade" in w:
            # As GET /api/v3/aggTrades (`Exchange.agg_trades`): consecutive trades of one taker order at one price
            # in the same command are one aggregate, whose id is its first trade's.
            msgs = out.setdefault((mk, "aggTrade", None), [])
            agg: list = []
            for tid, ts, seq, p, q, s, o, _ in acc:
                if agg and agg[2] == seq and agg[6] == o and agg[3] == p:
                    agg[1], agg[4] = tid, agg[4] + q
                    continue
                if agg:
                    msgs.append(self._agg_trade(sym, tick, lot, agg))
                agg = [tid, tid, seq, p, q, s, o, ts]
            if agg:
                msgs.append(self._agg_trade(sym, tick, lot, agg))
        if "trades" in w:
            out[(mk, "trades", None)] = [_enc.encode({"e": "trades", "E": acc[-1][1], "s": sym, "trades": [
                {"t": tid, "p": p * tick, "q": q * lot, "T": ts, "m": s == 1, "b": o if s == 0 else oo,
                 "a": oo if s == 0 else o} for tid, ts, _, p, q, s, o, oo in acc]}).decode()]
        for iv in w.get("kline", ()):
            c = self.candles[(mk, iv)]
            msgs = []
            for tid, ts, seq, p, q, _, _, _ in acc:
                if seq <= c.seq:
                    continue
                start = interval_start(iv, ts)
                if start != c.start:
                    if c.sent and start > c.start:
                        msgs.append(self._kline(m, iv, c, ts, closed=True))
                    c.start, c.o, c.h, c.l, c.v, c.q, c.n, c.first = start, p, p, p, 0, 0, 0, tid
                    c.sent = False
                c.h, c.l, c.c = max(c.h, p), min(c.l, p), p
                c.v += q
                c.q += p * q
                c.n += 1
                c.last = tid
            # (a candle read from the exchange after these fills already holds them)
            if c.start >= 0:
                msgs.append(self._kline(m, iv, c, acc[-1][1], closed=False))
                c.sent = True
            if msgs:
                out[(mk, "kline", iv)] = msgs

    @staticmethod
    def _agg_trade(sym: str, tick, lot, agg: list) -> str:
        first, last, _, p, q, s, _, ts = agg
        return _enc.encode({"e": "aggTrade", "E": ts, "s": sym, "a": first, "p": p * tick, "q": q * lot,
                            "f": first, "l": last, "T": ts, "m": s == 1, "M": True}).decode()

    @staticmethod
    def _kline(m, iv: str, c: _Candle, ts: int, closed: bool) -> str:
        tick, lot = m.tick_size, m.lot_size
        return _enc.encode({"e": "kline", "E": ts, "s": m.symbol, "k": {
            "t": c.start, "T": interval_end(iv, c.start), "s": m.symbol, "i": iv, "f": c.first, "L": c.last,
            "o": c.o * tick, "c": c.c * tick, "h": c.h * tick, "l": c.l * tick, "v": c.v * lot,
            "n": c.n, "x": closed, "q": c.q * tick * lot}}).decode()

    # -- state read from the exchange: partial depth, BBO, tickers --------------------------------
    def _state_messages(self, want: dict, depth_touched: dict, now: float, mkts, out: dict) -> None:
        depth_n: dict[int, int] = {}   # market -> levels to read
        tickers: set[int] = set()
        windows: set[tuple] = set()
        for mk in depth_touched:
            if "bookTicker" in want.get(mk, ()):
                depth_n[mk] = 1
        due = [t for t in self.pending_state if now >= self.last_emit.get(t, float("-inf")) + self.period(t)]
        for t in due:
            mk, kind, p = t
            if kind == "depthN":
                depth_n[mk] = max(depth_n.get(mk, 0), p[0])
            elif kind in ("ticker", "miniTicker"):
                tickers.add(mk)
            elif kind == "windowTicker":
                windows.add((mk, p))
            else:
                tickers.update(self.pending_arr.get(t, ()))
        if not depth_n and not tickers and not windows:
            return
        with self.node.lock:
            core = self.node.exchange.core
            books = {mk: core.depth_snapshot(mk, n) for mk, n in depth_n.items()}
            tks = {mk: core.ticker(mk) for mk in tickers}
            cs = {}
            for mk, win in windows:
                ts = self.pending_state[(mk, "windowTicker", win)]
                since = interval_start("1m", ts) - TICKER_WINDOWS[win] + _MINUTE
                cs[(mk, win)] = (since, core.candles(mk, "1m", since, 1440))
        for mk in depth_touched:
            if "bookTicker" in want.get(mk, ()):
                m = mkts[mk]
                uid, bids, asks = books[mk]
                top = (bids[0][:2] if bids else None, asks[0][:2] if asks else None)
                if self.bbo.get(mk) != top:
                    self.bbo[mk] = top
                    (b, a) = top
                    out[(mk, "bookTicker", None)] = [_enc.encode({
                        "e": "bookTicker", "E": depth_touched[mk], "u": uid, "s": m.symbol,
                        "b": b[0] * m.tick_size if b else None, "B": b[1] * m.lot_size if b else None,
                        "a": a[0] * m.tick_size if a else None, "A": a[1] * m.lot_size if a else None}).decode()]
        for t in due:
            mk, kind, p = t
            ts = self.pending_state.pop(t)
            self.last_emit[t] = now
            if kind == "depthN":
                m = mkts[mk]
                uid, bids, asks = books[mk]
                n = p[0]
                out[t] = [_enc.encode({
                    "e": "depthPartial", "E": ts, "s": m.symbol, "lastUpdateId": uid,
                    "bids": [[px * m.tick_size, q * m.lot_size] for px, q, _ in bids[:n]],
                    "asks": [[px * m.tick_size, q * m.lot_size] for px, q, _ in asks[:n]]}).decode()]
            elif kind in ("ticker", "miniTicker"):
                msg = self._ticker(mkts[mk], tks[mk], ts, mini=kind == "miniTicker")
                if msg is not None:
                    out[t] = [_enc.encode(msg).decode()]
            elif kind == "windowTicker":
                msg = self._window_ticker(mkts[mk], p, *cs[(mk, p)], ts)
                if msg is not None:
                    out[t] = [_enc.encode(msg).decode()]
            else:
                rows = [self._ticker(mkts[x], tks[x], ts, mini=kind == "allMiniTicker")
                        for x in sorted(self.pending_arr.pop(t, ()))]
                rows = [r for r in rows if r is not None]
                if rows:
                    out[t] = [_enc.encode(rows).decode()]

    @staticmethod
    def _ticker(m, r, ts: int, mini: bool) -> dict | None:
        """A `24hrTicker` (or `24hrMiniTicker`) from the core's rolling 24 h ticker."""
        if r is None:
            return None
        tick, lot = m.tick_size, m.lot_size
        o, h, lo, last, v, qv, n = r
        if mini:
            return {"e": "24hrMiniTicker", "E": ts, "s": m.symbol, "c": last * tick, "o": o * tick, "h": h * tick,
                    "l": lo * tick, "v": v * lot, "q": qv * tick * lot}
        return {"e": "24hrTicker", "E": ts, "s": m.symbol, "p": (last - o) * tick,
                "P": (Decimal(last - o) * 100 / o).quantize(Decimal("0.01")) if o else _ZERO,
                "o": o * tick, "h": h * tick, "l": lo * tick, "c": last * tick, "v": v * lot,
                "q": qv * tick * lot, "n": n}

    def _window_ticker(self, m, win: str, since: int, candles: list, ts: int) -> dict | None:
        """A rolling-window ticker (`1hTicker`, `1dTicker`, ...) from the 1 m candles since `since`."""
        if not candles:
            return None
        tick, lot = m.tick_size, m.lot_size
        o, c = candles[0][1], candles[-1][4]
        h = max(x[2] for x in candles)
        lo = min(x[3] for x in candles)
        v = sum(x[5] for x in candles)
        qv = sum(x[6] for x in candles)
        n = sum(x[7] for x in candles)
        last_id = self.trade_id.get(m.id, 0)
        return {"e": f"{win}Ticker", "E": ts, "s": m.symbol, "p": (c - o) * tick,
                "P": (Decimal(c - o) * 100 / o).quantize(Decimal("0.01")) if o else _ZERO,
                "o": o * tick, "h": h * tick, "l": lo * tick, "c": c * tick,
                "w": (Decimal(qv) * tick / v).quantize(tick) if v else _ZERO, "v": v * lot, "q": qv * tick * lot,
                "O": since, "C": ts, "F": last_id - n + 1 if n else -1, "L": last_id if n else -1, "n": n}

    # -- private streams -------------------------------------------------------------------------
    def _private(self, arr, kind, fmask, tids, users_arr, native, binance, ts: int, seq: int, cmd, mkts,
                 private: dict, touched: dict, fee_slots: list) -> None:
        """executionReport messages for subscribed users' events in `arr`:
        ours for `native` users, Binance's for `binance` ones."""
        own = np.isin(arr["owner"], users_arr) & (kind != DEPTH) & (kind != REJECTED)
        other = fmask & np.isin(arr["other_owner"], users_arr)
        records = cmd if isinstance(cmd, C.Records) else None
        rows = np.frombuffer(records.data, COMMAND_DTYPE) if records is not None else None
        rej = None
        if rows is not None and (kind == REJECTED).any():
            # a Records row's REJECTED event names its row; the row says whose it was
            ri = np.flatnonzero(kind == REJECTED)
            rrows = rows[arr["cmd_index"][ri]]
            keep = (rrows["kind"] == CommandKind.SUBMIT) & np.isin(rrows["owner"], users_arr)
            if keep.any():
                rej = [(int(i), r) for i, r in zip(ri[keep].tolist(), rrows[keep])]
        if not own.any() and not other.any() and not rej:
            return
        tid_full = None
        if tids is not None:
            tid_full = np.zeros(len(arr), np.int64)
            tid_full[fmask] = tids
        for i in np.flatnonzero(own | other).tolist():
            e = arr[i]
            k, mk = int(e["kind"]), int(e["market"])
            m = mkts[mk]
            tick, lot = m.tick_size, m.lot_size
            owner, other_owner = int(e["owner"]), int(e["other_owner"])
            side, otype = int(e["side"]), int(e["order_type"])
            if k == FILL:
                parties = []
                if own[i]:
                    parties.append((owner, int(e["order_id"]), side, int(e["remaining"]), False))
                if other[i]:
                    parties.append((other_owner, int(e["other_id"]), 1 - side, int(e["other_remaining"]), True))
                for uid, oid, s, rem, maker in parties:
                    if uid in native:
                        msg = {"e": "executionReport", "E": ts, "s": m.symbol, "i": oid, "S": Side(s).name,
                               "x": "TRADE", "X": "FILLED" if rem == 0 else "PARTIALLY_FILLED",
                               "l": int(e["qty"]) * lot, "L": int(e["price"]) * tick, "rq": rem * lot,
                               "t": int(tid_full[i]), "m": maker, "T": ts}
                        if not maker:
                            msg["o"] = OrderType(otype).name
                        private.setdefault((uid, NATIVE), []).append(_enc.encode(msg).decode())
                    if uid in binance:
                        q, p = int(e["qty"]), int(e["price"])
                        o = self._order(oid, uid, s, otype if not maker else int(OrderType.LIMIT), p, q + rem, ts,
                                        cmd, rows, e)
                        o.z += q
                        o.Z += q * p
                        msg = self._bx(m, o, oid, ts, seq, "TRADE", "FILLED" if rem == 0 else "PARTIALLY_FILLED",
                                       last=(q, p), t=int(tid_full[i]), maker=maker)
                        private.setdefault((uid, BINANCE), []).append(msg)
                        fee_slots.append((uid, msg, (oid, p, q, maker), m))
                        if rem == 0:
                            self.orders.pop(oid, None)
                    touched.setdefault(uid, set()).update((m.base.id, m.quote.id))
                continue
            if owner in native:
                msg = {"e": "executionReport", "E": ts, "s": m.symbol, "i": int(e["order_id"]), "S": Side(side).name,
                       "o": OrderType(otype).name, "p": int(e["price"]) * tick, "q": int(e["qty"]) * lot}
                if k == EventKind.ACCEPTED:
                    msg |= {"x": "NEW", "X": "PENDING_TRIGGER" if otype in _CONDITIONAL else "NEW"}
                elif k == EventKind.CANCELLED:
                    rem = int(e["remaining"])
                    msg |= {"x": "CANCELED", "X": "CANCELED" if rem == 0 else "PARTIALLY_CANCELED",
                            "r": Reason(int(e["reason"])).name, "rq": rem * lot}
                elif k == EventKind.AMENDED:
                    msg |= {"x": "AMENDED", "X": "NEW", "rq": int(e["qty"]) * lot}
                elif k == EventKind.TRIGGERED:
                    msg |= {"x": "TRIGGERED", "X": "NEW"}
                elif k == EventKind.ACTIVATED:
                    msg |= {"x": "ACTIVATED", "X": "NEW"}
                else:  # pragma: no cover - every kind that names an owner is above
                    continue
                private.setdefault((owner, NATIVE), []).append(_enc.encode(msg).decode())
            if owner in binance:
                msg = self._binance_order_event(k, e, m, owner, side, otype, ts, seq, cmd, rows)
                if msg is not None:
                    private.setdefault((owner, BINANCE), []).append(msg)
            touched.setdefault(owner, set()).add(m.quote.id if side == 0 else m.base.id)
        for i, r in rej or ():
            mk = int(r["market"])
            m = mkts[mk] if mk < len(mkts) else None
            uid = int(r["owner"])
            if uid in native:
                private.setdefault((uid, NATIVE), []).append(_enc.encode({
                    "e": "executionReport", "E": ts, "s": m.symbol if m else None, "i": int(r["order_id"]),
                    "S": Side(int(r["side"]) & 1).name, "x": "REJECTED", "X": "REJECTED",
                    "r": Reason(int(arr["reason"][i])).name}).decode())
            if uid in binance and m is not None:
                oid = int(r["order_id"])
                o = self._row_order(uid, oid, r, ts)
                private.setdefault((uid, BINANCE), []).append(
                    self._bx(m, o, oid, ts, seq, "REJECTED", "REJECTED", reason=Reason(int(arr["reason"][i])).name))

    # -- Binance executionReports ------------------------------------------------------------------
    def _client_id(self, oid: int) -> str:
        """An order's client id as `/api/v3` reports it: the one it was placed with while it is open, else
        `lx<order id>` (read once per order the stream sees first without its placement)."""
        with self.node.lock:
            cid = self.node.exchange.client_order_id(oid)
        return cid or f"lx{oid}"

    def _row_order(self, uid: int, oid: int, r, ts: int) -> _Ord:
        """An order's Binance fields from its binary-gateway row (COMMAND_DTYPE)."""
        otype = int(r["order_type"])
        post = bool(int(r["flags"]) & Flags.POST_ONLY)
        tif = int(r["tif"])
        return _Ord(uid, self._client_id(oid), Side(int(r["side"]) & 1).name,
                    "LIMIT_MAKER" if post and otype == OrderType.LIMIT else _BINANCE_TYPES.get(otype, "LIMIT"),
                    ("GTC", "IOC", "FOK", "GTD")[tif] if tif < 4 else "GTC", int(r["qty"]), int(r["price"]),
                    max(int(r["trigger_price"]), 0), max(int(r["display_qty"]), 0), ts,
                    _BINANCE_STP.get(int(r["stp"]), "NONE"), otype not in _CONDITIONAL)

    def _order(self, oid: int, uid: int, side: int, otype: int, price: int, qty: int, ts: int, cmd, rows, e) -> _Ord:
        """The tracked order `oid`, made (from its command, else from this event) if new."""
        o = self.orders.get(oid)
        if o is not None:
            return o
        m = self.node.exchange._market_by_id[int(e["market"])]
        if rows is not None and e["owner"] == uid and int(e["cmd_index"]) < len(rows) \
                and rows[int(e["cmd_index"])]["kind"] == CommandKind.SUBMIT:
            o = self._row_order(uid, oid, rows[int(e["cmd_index"])], ts)
            o.q, o.p = qty, price
        elif isinstance(cmd, C.PlaceOrder) and cmd.account == uid and e["owner"] == uid:
            cid = cmd.client_id  # (journaled with the order)
            stop = int(Decimal(cmd.trigger_price) / m.tick_size) if cmd.trigger_price else 0
            iceberg = int(Decimal(cmd.display_qty) / m.lot_size) if cmd.display_qty else 0
            btype = _BINANCE_TYPES.get(otype, "LIMIT")
            if cmd.post_only and otype == OrderType.LIMIT:
                btype = "LIMIT_MAKER"
            o = _Ord(uid, cid or f"lx{oid}", Side(side).name, btype,
                     (cmd.tif or "gtc").upper(), qty, price, stop, iceberg, ts, _STP_NAMES.get(cmd.stp, "NONE"),
                     otype not in _CONDITIONAL)
        else:  # placed before this stream saw it: what the event says
            o = _Ord(uid, self._client_id(oid), Side(side).name,
                     _BINANCE_TYPES.get(otype, "LIMIT"), "GTC", qty, price, 0, 0, ts, "NONE", True)
        self.orders[oid] = o
        return o

    def _binance_order_event(self, k: int, e, m, uid: int, side: int, otype: int, ts: int, seq: int, cmd, rows):
        oid, price, qty = int(e["order_id"]), int(e["price"]), int(e["qty"])
        if k == EventKind.ACCEPTED:
            o = self._order(oid, uid, side, otype, price, qty, ts, cmd, rows, e)
            return self._bx(m, o, oid, ts, seq, "NEW", "NEW")
        o = self._order(oid, uid, side, otype, price, qty + int(e["remaining"]) if k == EventKind.CANCELLED else qty,
                        ts, cmd, rows, e)
        open_status = "PARTIALLY_FILLED" if o.z else "NEW"
        if k == EventKind.CANCELLED:
            reason, rem = int(e["reason"]), int(e["remaining"])
            if reason == Reason.STP and rem:  # a decrement: the order lives on, smaller
                o.q -= qty
                return self._bx(m, o, oid, ts, seq, "TRADE_PREVENTION", open_status)
            self.orders.pop(oid, None)
            if reason == Reason.STP:
                return self._bx(m, o, oid, ts, seq, "TRADE_PREVENTION", "EXPIRED_IN_MATCH", orig=o.cid)
            if reason in _EXPIRING:
                return self._bx(m, o, oid, ts, seq, "EXPIRED", "EXPIRED", orig=o.cid)
            return self._bx(m, o, oid, ts, seq, "CANCELED", "CANCELED", orig=o.cid)
        if k == EventKind.AMENDED:
            o.p, o.q = price, o.z + qty
            return self._bx(m, o, oid, ts, seq, "REPLACED", open_status)
        if k == EventKind.TRIGGERED:
            o.working, o.W = True, ts
            return self._bx(m, o, oid, ts, seq, "NEW", open_status)
        return None  # ACTIVATED (a trailing stop starts trailing): Binance has no such report

    @staticmethod
    def _bx(m, o: _Ord, oid: int, ts: int, seq: int, x: str, X: str, *, last=(0, 0), t: int = -1,
            maker: bool = False, reason: str = "NONE", orig: str = "") -> dict:
        tick, lot = m.tick_size, m.lot_size
        lq, lp = last
        msg = {"e": "executionReport", "E": ts, "s": m.symbol.replace("-", ""), "c": o.cid, "S": o.side,
               "o": o.type, "f": o.tif, "q": o.q * lot, "p": o.p * tick, "P": o.P * tick, "F": o.F * lot, "g": -1,
               "C": orig, "x": x, "X": X, "r": reason, "i": oid, "l": lq * lot, "z": o.z * lot, "L": lp * tick,
               "n": _ZERO, "N": None, "T": ts, "t": t, "I": seq,
               "w": o.working and X in ("NEW", "PARTIALLY_FILLED"), "m": maker, "M": False, "O": o.O,
               "Z": o.Z * tick * lot, "Y": lq * lp * tick * lot, "Q": _ZERO, "V": o.V}
        if o.W is not None:
            msg["W"] = o.W
        return msg

    # -- messages that come from the command --------------------------------------------------------
    @staticmethod
    def _private_command(cmd, out, native, binance, ts: int, private: dict, touched: dict) -> None:
        """Messages that come from the command rather than its events:
        rejected orders (ours only: Binance's REST caller has its error),
        money moves, notifications (ours only)."""
        if out.error is not None:
            if isinstance(cmd, C.PlaceOrder) and cmd.account in native:
                private.setdefault((cmd.account, NATIVE), []).append(_enc.encode({
                    "e": "executionReport", "E": ts, "s": cmd.market, "i": None, "S": str(cmd.side).upper(),
                    "o": str(cmd.order_type).upper(), "x": "REJECTED", "X": "REJECTED", "r": out.error["reason"],
                    "msg": out.error["message"]}).decode())
            return
        moves = []
        if isinstance(cmd, (C.Deposit, C.Withdraw)):
            moves.append((cmd.account, "-" if isinstance(cmd, C.Withdraw) else ""))
        elif isinstance(cmd, C.Transfer):
            moves += [(cmd.from_account, "-"), (cmd.to_account, "")]
        for acct, sign in moves:
            if acct in native or acct in binance:
                msg = _enc.encode({"e": "balanceUpdate", "E": ts, "a": cmd.asset, "d": sign + str(cmd.amount),
                                   "T": ts}).decode()
                for fl, group in ((NATIVE, native), (BINANCE, binance)):
                    if acct in group:
                        private.setdefault((acct, fl), []).append(msg)
                touched.setdefault(acct, set()).add(cmd.asset)
        for n in out.notices:
            if n.get("type") == "notification" and n.get("user_id") in native:
                private.setdefault((n["user_id"], NATIVE), []).append(_enc.encode({
                    "e": "notification", "E": ts, "id": n["notification_id"], "kind": n["kind"],
                    "payload": n["payload"], "ts": n["ts"]}).decode())

    def _account_reads(self, touched: dict, fee_slots: list, ts: int, native, binance, mkts, private: dict) -> None:
        """outboundAccountPosition for the users whose balances the events
        touched, and the fees of Binance TRADE reports (from the core's
        recent fills of the user): one read under the node's lock."""
        ex = self.node.exchange
        by_id = {a.id: a for a in ex._assets.values()}
        out = []
        fee_users = {uid for uid, _, _, _ in fee_slots}
        recent: dict[int, list] = {}
        with self.node.lock:
            for uid, assets in touched.items():
                rows = []
                for a in sorted(assets, key=str):
                    info = ex._assets.get(a) if isinstance(a, str) else by_id.get(a)
                    if info is None:
                        continue
                    try:
                        free, held = ex.core.balance(uid, info.id)
                    except Exception:  # an account that does not exist (a rejected command named it)
                        continue
                    rows.append((info, free, held))
                out.append((uid, rows))
            for uid in fee_users:
                try:
                    recent[uid] = ex.core.recent_fills(uid)
                except ValueError:  # no such account
                    pass
        fees: dict[int, dict] = {}
        for uid, fills in recent.items():  # (ts, order id, market, side, maker, price, qty, fee), oldest first
            fees[uid] = {(f[1], f[5], f[6], f[4]): f[7] for f in fills}
        for uid, msg, key, m in fee_slots:
            fee = fees.get(uid, {}).get(key)
            if fee is None:  # more than the core's last 100 fills of the user came since: unknown here
                msg["n"] = None
            else:
                msg["n"] = Decimal(fee).scaleb(-m.quote.decimals)
                msg["N"] = m.quote.symbol
        for uid, rows in out:
            if rows:
                msg = _enc.encode({
                    "e": "outboundAccountPosition", "E": ts, "u": ts,
                    "B": [{"a": a.symbol, "f": Decimal(f).scaleb(-a.decimals), "l": Decimal(h).scaleb(-a.decimals)}
                          for a, f, h in rows]}).decode()
                for fl, group in ((NATIVE, native), (BINANCE, binance)):
                    if uid in group:
                        private.setdefault((uid, fl), []).append(msg)


# -- connections (event loop) -------------------------------------------------------------------
def text_frame(payload: bytes) -> bytes:
    """A whole, unmasked WebSocket text frame (RFC 6455 §5.2), as a server
    sends it: the same bytes for every connection. (With permessage-deflate
    negotiated it is an uncompressed message, RSV1 clear, which RFC 7692
    allows.)"""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


def _direct_protocol(ws: WebSocket):
    """uvicorn's websockets-sansio protocol of a connection, when the server
    is uvicorn with it (the default with `websockets` installed): its
    transport, write-flow event and close state let the gateway write
    pre-framed messages itself. None elsewhere (the ASGI send is used)."""
    send = ws.scope.get("lxdex.server_send")
    proto = getattr(send, "__self__", None)
    if (proto is not None and isinstance(getattr(proto, "writable", None), asyncio.Event)
            and hasattr(proto, "transport") and hasattr(proto, "close_sent")):
        return proto
    return None


class _Conn:
    """One WebSocket connection: its subscriptions, its bounded queue of
    messages and the task that sends them.

    On uvicorn (`direct`) the queue holds whole frames (bytes, built once
    per message for all connections) written straight to the transport, in
    one write per delivery when the connection keeps up; otherwise it holds
    text sent through the ASGI `send`."""

    __slots__ = ("hub", "ws", "loop", "wrap", "names", "user", "user_name", "q", "wake", "task", "closing",
                 "tokens", "refilled", "reason", "proto", "direct", "watch", "sig", "write", "is_closing")

    def __init__(self, hub: "WsHub", ws: WebSocket, wrap: bool) -> None:
        self.hub, self.ws, self.wrap = hub, ws, wrap
        self.loop = asyncio.get_running_loop()
        self.names: dict[tuple, str] = {}
        #: the private stream: (user id, NATIVE or BINANCE), and its name in combined streams
        #: ("user", or the listenKey)
        self.user: tuple[int, str] | None = None
        self.user_name = "user"
        self.watch: asyncio.Task | None = None  # a listenKey's expiry watch
        self.q: deque = deque()
        self.wake: asyncio.Future | None = None
        self.task: asyncio.Task | None = None
        self.closing = False
        self.tokens = float(hub.limits.request_burst)
        self.refilled = time.monotonic()
        self.reason: str | None = None
        self.proto = _direct_protocol(ws) if hub.direct else None
        self.direct = self.proto is not None
        #: the group of connections with the same subscriptions (`_LoopFanout`): their messages are built once
        self.sig: _Sig | None = None
        if self.direct:
            t = self.proto.transport
            # The node's HTTP server wraps transports to coalesce a response's writes until the end of the
            # loop iteration (fasthttp.CoalescingTransport); a frame goes out at once, in order after them.
            self.write = getattr(t, "write_now", None) or t.write
            self.is_closing = t.is_closing

    def push(self, msgs: list) -> None:
        """Queues (or writes) one delivery's messages: frames (bytes) on a
        direct connection, text otherwise. A subscriber still holding more
        than `max_queue` messages of earlier deliveries is not keeping up:
        it is disconnected (one delivery may be large under load, so the
        bound applies to what is left over, not to the burst)."""
        if self.closing:
            return
        q = self.q
        if len(q) > self.hub.limits.max_queue:
            self.drop("slow consumer")
            return
        if self.direct and not q:
            proto = self.proto
            if proto.writable.is_set() and not proto.close_sent and not self.is_closing():
                self.write(msgs[0] if len(msgs) == 1 else b"".join(msgs))
                self.hub.sent += len(msgs)
                return
        q.extend(msgs)
        w = self.wake
        if w is not None and not w.done():
            w.set_result(None)

    def push_frames(self, data: bytes, frames: list) -> None:
        """`push` of a direct connection's delivery: `data` is `frames`
        joined (built once for every connection of the same subscriptions)."""
        if self.closing:
            return
        q = self.q
        if not q:
            proto = self.proto
            if proto.writable.is_set() and not proto.close_sent and not self.is_closing():
                self.write(data)
                self.hub.sent += len(frames)
                return
        elif len(q) > self.hub.limits.max_queue:
            self.drop("slow consumer")
            return
        q.extend(frames)
        w = self.wake
        if w is not None and not w.done():
            w.set_result(None)

    async def sender(self) -> None:
        q = self.q
        try:
            if self.direct:
                proto = self.proto
                while True:
                    while not q:
                        self.wake = self.loop.create_future()
                        await self.wake
                    if not proto.writable.is_set():  # the client is behind: wait for its buffer to drain
                        await proto.writable.wait()
                    if proto.close_sent or proto.transport.is_closing():
                        raise ConnectionError("closed")
                    n = len(q)
                    data = b"".join(q)
                    q.clear()
                    self.write(data)
                    self.hub.sent += n
            send = self.ws.send
            while True:
                while not q:
                    self.wake = self.loop.create_future()
                    await self.wake
                while q:
                    await send({"type": "websocket.send", "text": q.popleft()})
                    self.hub.sent += 1
        except asyncio.CancelledError:
            raise
        except Exception:  # the client went away: the receive loop sees the disconnect
            self.closing = True
            self.q.clear()
            self.hub._unsubscribe_all(self)

    def drop(self, reason: str) -> None:
        """Disconnects with 1008 `reason` (slow consumer, too many requests)."""
        if self.closing:
            return
        self.closing, self.reason = True, reason
        if reason == "slow consumer":
            self.hub.slow_consumers += 1
        log.info("ws: disconnecting %s: %s", self.ws.client, reason)
        self.q.clear()
        self.hub._unsubscribe_all(self)
        if self.task is not None:
            self.task.cancel()
        self.loop.create_task(self._close(reason))

    async def _close(self, reason: str) -> None:
        try:
            await asyncio.wait_for(self.ws.close(1008, reason), self.hub.limits.close_timeout)
        except Exception:
            # The client does not read: its close frame cannot be sent either.
            # Abort the TCP connection (where the server lets us reach it).
            transport = self.transport()
            if transport is not None:
                transport.abort()

    def transport(self):
        """The connection's asyncio transport where the server exposes it
        (uvicorn: its `send` is a method of the protocol that holds it), else None."""
        send = self.ws.scope.get("lxdex.server_send")
        return getattr(getattr(send, "__self__", None), "transport", None)

    def reply(self, msg: dict) -> None:
        data = _enc.encode(msg)
        self.push([text_frame(data) if self.direct else data.decode()])

    def allow_request(self) -> bool:
        lim = self.hub.limits
        now = time.monotonic()
        self.tokens = min(lim.request_burst, self.tokens + (now - self.refilled) * lim.request_rate)
        self.refilled = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class _Handover:
    """One delivery handed to `n` event loops; `event` is set when all took it."""

    __slots__ = ("n", "lock", "event")

    def __init__(self, n: int) -> None:
        self.n, self.lock, self.event = n, threading.Lock(), threading.Event()
        if n <= 0:
            self.event.set()

    def done(self) -> None:
        with self.lock:
            self.n -= 1
            if self.n <= 0:
                self.event.set()


#: A delivery is written to at most this many connections per event-loop
#: iteration. uvloop sends the writes of an iteration in one native callback
#: that holds the GIL (~20-30 µs per loopback send on the 2-core machine of
#: BENCHMARKS.md): 1,000 subscribers in one go kept the sequencer, the
#: journal and the gateways off the GIL for tens of milliseconds.
DELIVERY_CHUNK = 128


class _Sig:
    """The connections of one event loop with the same subscriptions
    (topics with their names, private stream, framing): a delivery's bytes
    for them are built once."""

    __slots__ = ("key", "names", "user", "user_name", "wrap", "direct", "conns")

    def __init__(self, key: tuple, names: dict, user, user_name: str, wrap: bool, direct: bool) -> None:
        self.key, self.names, self.user, self.user_name, self.wrap, self.direct = (
            key, names, user, user_name, wrap, direct)
        self.conns: dict[_Conn, None] = {}


class _LoopFanout:
    """The subscribers on one event loop, by topic and by user, grouped by
    identical subscriptions (`_Sig`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.topics: dict[tuple, dict[_Conn, None]] = {}
        self.users: dict[tuple[int, str], dict[_Conn, None]] = {}
        self.sigs: dict[tuple, _Sig] = {}
        self.topic_sigs: dict[tuple, dict[_Sig, None]] = {}
        self.user_sigs: dict[tuple[int, str], dict[_Sig, None]] = {}
        self.pending: deque = deque()  # deliveries being written: [conns, next index, built, topic_msgs, ...]
        self.pumping = False

    def regroup(self, c: _Conn) -> None:
        """After `c`'s subscriptions changed (on its loop): moves it to its group."""
        old = c.sig
        user = c.user
        key = (frozenset(c.names.items()), user, c.user_name if user is not None else None, c.wrap, c.direct)
        if old is not None:
            if old.key == key:
                return
            old.conns.pop(c, None)
            if not old.conns:
                del self.sigs[old.key]
                for t in old.names:
                    d = self.topic_sigs.get(t)
                    if d is not None:
                        d.pop(old, None)
                        if not d:
                            del self.topic_sigs[t]
                if old.user is not None:
                    d = self.user_sigs.get(old.user)
                    if d is not None:
                        d.pop(old, None)
                        if not d:
                            del self.user_sigs[old.user]
        c.sig = None
        if not c.names and user is None:
            return
        sig = self.sigs.get(key)
        if sig is None:
            sig = self.sigs[key] = _Sig(key, dict(c.names), user, c.user_name, c.wrap, c.direct)
            for t in sig.names:
                self.topic_sigs.setdefault(t, {})[sig] = None
            if user is not None:
                self.user_sigs.setdefault(user, {})[sig] = None
        sig.conns[c] = None
        c.sig = sig

    def deliver(self, topic_msgs: dict, user_msgs: dict, done) -> None:
        """On the loop: the same messages to every subscriber, built once
        per group of identical subscriptions (frames built once per message,
        wrapped once per stream name for combined-stream connections),
        written `DELIVERY_CHUNK` connections per loop iteration; deliveries
        go out in order."""
        try:
            affected: dict[_Sig, None] = {}
            for topic in topic_msgs:
                ss = self.topic_sigs.get(topic)
                if ss:
                    affected.update(ss)
            for ukey in user_msgs:
                ss = self.user_sigs.get(ukey)
                if ss:
                    affected.update(ss)
            conns = [c for sig in affected for c in sig.conns]
        except BaseException:
            self.loop.call_soon(done)
            raise
        self.pending.append([conns, 0, {}, {}, topic_msgs, user_msgs, done])
        if not self.pumping:
            self.pumping = True
            self._pump()

    def _pump(self) -> None:
        budget = DELIVERY_CHUNK
        pending = self.pending
        try:
            while pending and budget > 0:
                d = pending[0]
                conns, i, built, frames_of, topic_msgs, user_msgs, done = d
                stop = min(len(conns), i + budget)
                try:
                    for c in conns[i:stop]:
                        sig = c.sig
                        if sig is None:  # unsubscribed since the delivery started
                            continue
                        b = built.get(sig)
                        if b is None:
                            b = built[sig] = self._build(sig, topic_msgs, user_msgs, frames_of)
                        if b[1]:
                            if sig.direct:
                                c.push_frames(b[0], b[1])
                            else:
                                c.push(b[1])
                except BaseException:
                    log.exception("ws: a delivery failed")
                    stop = len(conns)
                budget -= stop - i
                if stop < len(conns):
                    d[1] = stop
                else:
                    pending.popleft()
                    # after the sender tasks woken above have had their turn
                    self.loop.call_soon(done)
        finally:
            if pending:
                self.loop.call_soon(self._pump)
            else:
                self.pumping = False

    @staticmethod
    def _build(sig: _Sig, topic_msgs: dict, user_msgs: dict, frames_of: dict) -> tuple[bytes, list]:
        """A group's delivery: `(frames joined, frames)` on a direct
        connection, `(b"", texts)` otherwise. Topics in the delivery's order,
        then the private stream."""
        out: list = []
        names = sig.names
        wrap, direct = sig.wrap, sig.direct
        parts = [(t, names[t] if wrap else None) for t in topic_msgs if t in names] if len(names) >= len(
            topic_msgs) else sorted(((t, names[t] if wrap else None) for t in names if t in topic_msgs),
                                    key=_order_of(topic_msgs))
        for topic, name in parts:
            key = (topic, name, direct)
            msgs = frames_of.get(key)
            if msgs is None:
                msgs = topic_msgs[topic]
                if name is not None:
                    msgs = [f'{{"stream":"{name}","data":{m}}}' for m in msgs]
                if direct:
                    msgs = [text_frame(m.encode()) for m in msgs]
                frames_of[key] = msgs
            out.extend(msgs)
        if sig.user is not None:
            msgs = user_msgs.get(sig.user)
            if msgs:
                name = sig.user_name if wrap else None
                key = (("user", sig.user), name, direct)
                got = frames_of.get(key)
                if got is None:
                    got = [f'{{"stream":"{name}","data":{m}}}' for m in msgs] if wrap else msgs
                    if direct:
                        got = [text_frame(m.encode()) for m in got]
                    frames_of[key] = got
                out.extend(got)
        if direct:
            return (out[0] if len(out) == 1 else b"".join(out)), out
        return b"", out


def _order_of(topic_msgs: dict):
    pos = {t: i for i, t in enumerate(topic_msgs)}
    return lambda p: pos[p[0]]


class WsHub:
    """The node's WebSocket gateway: routes, subscriptions and the fan-out
    worker. `build_app` makes one per app; `close()` detaches it."""

    def __init__(self, node: Node, limits: WsLimits | None = None, direct: bool = True) -> None:
        self.node = node
        self.limits = limits or WsLimits()
        #: write pre-framed messages to uvicorn's transports (False: always the ASGI send)
        self.direct = direct
        self.keys = listen_keys(node)
        self.converter = Converter(node, self.keys)
        self._lock = threading.Lock()
        self._topic_count: dict[tuple, int] = {}
        self._user_count: dict[tuple[int, str], int] = {}
        self._nsubs = 0
        self._queue: deque = deque()
        self._cv = threading.Condition(threading.Lock())
        self._worker: threading.Thread | None = None
        self._closed = False
        self._loops: dict[asyncio.AbstractEventLoop, _LoopFanout] = {}
        self._markets: dict[str, int] = {}
        self._nmarkets = -1
        # counters
        self.connections = 0
        self.refused_origins = 0
        self.slow_consumers = 0
        self.sent = 0
        self.deliveries = 0
        self.batches = 0
        node.listeners.append(self._on_batch)

    # -- the sequencer side -----------------------------------------------------------------------
    def _on_batch(self, pairs: list) -> None:
        """Called on the sequencer thread: O(1), never blocks. Nothing at
        all while nobody subscribes."""
        if self._nsubs == 0:
            return
        with self._cv:
            self._queue.append(pairs)
            self._cv.notify()

    def _activate(self) -> None:
        """The first subscription after none (under self._lock): the worker
        starts over from the state now. The state is read and the marker
        queued under `node.lock`, so that every batch applied after it is
        queued after the marker, and every one before it is skipped."""
        with self.node.lock:
            seq, ids = Converter.read_sync(self.node.exchange)
            with self._cv:
                self._queue.append(_Sync(seq, ids))
                self._cv.notify()
        if self._worker is None and not self._closed:
            self._worker = threading.Thread(target=self._work, name="lxdex-ws-fanout", daemon=True)
            self._worker.start()

    def close(self) -> None:
        """Detaches from the node and stops the worker."""
        self._closed = True
        if self._on_batch in self.node.listeners:
            self.node.listeners.remove(self._on_batch)
        with self._cv:
            self._cv.notify()
        w = self._worker
        if w is not None:
            w.join(timeout=5)

    # -- the worker ---------------------------------------------------------------------------------
    def _work(self) -> None:
        conv = self.converter
        try:
            while not self._closed:
                due = conv.next_due()
                with self._cv:
                    if not self._queue and not self._closed:
                        wait = 1.0 if due is None else min(1.0, max(0.0, due - time.monotonic()))
                        if wait > 0:
                            self._cv.wait(wait)
                    items = list(self._queue)
                    self._queue.clear()
                if self._closed:
                    return
                due = conv.next_due()
                if not items and (due is None or due > time.monotonic()):
                    if due is None:
                        with self._lock:  # (never _cv then _lock: _activate takes them the other way)
                            if self._nsubs == 0 and not self._queue:
                                self._worker = None
                                return
                    continue
                batches = []
                for item in items:
                    if type(item) is _Sync:  # what came before it is history
                        conv.reset(item.seq, item.trade_ids)
                        batches = []
                    else:
                        batches.append(item)
                if items and not batches:
                    continue
                with self._lock:
                    topics, users = set(self._topic_count), set(self._user_count)
                    loops = list(self._loops.values())
                self.batches += len(batches)
                try:
                    topic_msgs, user_msgs = conv.convert(batches, topics, users)
                except Exception:
                    log.exception("ws: converting a batch failed; starting over from the current state")
                    with self.node.lock:
                        conv.reset(*Converter.read_sync(self.node.exchange))
                    continue
                if not topic_msgs and not user_msgs:
                    continue
                # one hand-over per loop; wait (bounded) until the loops have
                # taken it, so that batches queued meanwhile coalesce
                handover = _Handover(len(loops))
                for f in loops:
                    try:
                        f.loop.call_soon_threadsafe(f.deliver, topic_msgs, user_msgs, handover.done)
                    except RuntimeError:  # that loop is closed: its connections are gone
                        handover.done()
                        with self._lock:
                            self._loops.pop(f.loop, None)
                self.deliveries += 1
                handover.event.wait(1.0)
        except Exception:  # pragma: no cover - a bug; never take the node down
            log.exception("ws: fan-out worker failed")
            with self._lock:
                self._worker = None

    # -- subscriptions (event loop) -----------------------------------------------------------------
    def _fanout(self, loop) -> _LoopFanout:
        f = self._loops.get(loop)
        if f is None:
            with self._lock:
                f = self._loops[loop] = _LoopFanout(loop)
        return f

    def market_names(self) -> dict[str, int]:
        ms = self.node.exchange._market_by_id
        if len(ms) != self._nmarkets:
            names = {}
            for m in list(ms):
                names[m.symbol] = m.id
                names[m.symbol.replace("-", "").lower()] = m.id
                names[m.symbol.replace("-", "").upper()] = m.id
            self._markets, self._nmarkets = names, len(ms)
        return self._markets

    def _subscribe(self, conn: _Conn, topics: list[tuple[tuple, str]]) -> None:
        f = self._fanout(conn.loop)
        with self._lock:
            was = self._nsubs
            for topic, name in topics:
                if topic in conn.names:
                    conn.names[topic] = name
                    continue
                conn.names[topic] = name
                f.topics.setdefault(topic, {})[conn] = None
                self._topic_count[topic] = self._topic_count.get(topic, 0) + 1
                self._nsubs += 1
            f.regroup(conn)
            if was == 0 and self._nsubs:
                self._activate()

    def _unsubscribe(self, conn: _Conn, topics: list[tuple]) -> None:
        f = self._fanout(conn.loop)
        with self._lock:
            for topic in topics:
                if conn.names.pop(topic, None) is None:
                    continue
                conns = f.topics.get(topic)
                if conns is not None:
                    conns.pop(conn, None)
                    if not conns:
                        del f.topics[topic]
                n = self._topic_count[topic] - 1
                if n:
                    self._topic_count[topic] = n
                else:
                    del self._topic_count[topic]
                self._nsubs -= 1
            f.regroup(conn)

    def _set_user(self, conn: _Conn, user: tuple[int, str] | None, name: str = "user") -> None:
        """Sets the connection's private stream: `(user id, NATIVE or BINANCE)`, or None."""
        f = self._fanout(conn.loop)
        with self._lock:
            if conn.user is not None:
                old = conn.user
                conns = f.users.get(old)
                if conns is not None:
                    conns.pop(conn, None)
                    if not conns:
                        del f.users[old]
                n = self._user_count[old] - 1
                if n:
                    self._user_count[old] = n
                else:
                    del self._user_count[old]
                self._nsubs -= 1
                conn.user = None
            if user is not None:
                conn.user, conn.user_name = user, name
                f.users.setdefault(user, {})[conn] = None
                self._user_count[user] = self._user_count.get(user, 0) + 1
                self._nsubs += 1
                if self._nsubs == 1:
                    self._activate()
            f.regroup(conn)

    def _unsubscribe_all(self, conn: _Conn) -> None:
        self._unsubscribe(conn, list(conn.names))
        if conn.user is not None:
            self._set_user(conn, None)

    # -- requests ---------------------------------------------------------------------------------------
    def _parse_all(self, names: list) -> list[tuple[tuple, str]]:
        markets = self.market_names()
        out = []
        for i, name in enumerate(names):
            try:
                out.append((parse_stream(name, markets), name))
            except StreamError as e:
                e.field = f"params[{i}]"
                raise
        return out

    def handle(self, conn: _Conn, text: str | None, ip: str | None) -> None:
        """One client request: a reply frame, and nothing changes on an error."""
        rid = None
        try:
            if text is None:
                raise StreamError("INVALID_REQUEST", "requests are JSON text frames, not binary")
            if len(text) > self.limits.max_request_bytes:
                raise StreamError("TOO_LARGE", f"a request is at most {self.limits.max_request_bytes} bytes")
            try:
                req = _req_decoder.decode(text)
            except msgspec.ValidationError as e:
                raise StreamError("INVALID_REQUEST", str(e)) from None
            except msgspec.DecodeError as e:
                raise StreamError("INVALID_JSON", str(e)) from None
            rid = req.id
            result = self._dispatch(conn, req, ip)
        except StreamError as e:
            err = {"code": e.code, "message": str(e)}
            if e.field:
                err["field"] = e.field
            conn.reply({"id": rid, "error": err})
            return
        conn.reply({"id": rid, "result": result})

    def _dispatch(self, conn: _Conn, req: Request, ip: str | None):
        m = req.method
        if m in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(req.params, list) or not req.params:
                raise StreamError("INVALID_REQUEST", f"{m}: params must be a non-empty list of stream names",
                                  "params")
            parsed = self._parse_all(req.params)
            if m == "SUBSCRIBE":
                new = {t for t, _ in parsed if t not in conn.names}
                if len(conn.names) + len(new) > self.limits.max_streams:
                    raise StreamError("TOO_MANY_STREAMS", f"a connection has at most {self.limits.max_streams} streams",
                                      "params")
                self._subscribe(conn, parsed)
            else:
                self._unsubscribe(conn, [t for t, _ in parsed])
            return None
        if m == "LIST_SUBSCRIPTIONS":
            return sorted(conn.names.values())
        if m == "userDataStream.subscribe":
            uid = self._authenticate(req.params, ip)
            if conn.user is not None and conn.user != (uid, NATIVE):
                raise StreamError("INVALID_REQUEST", "this connection already has another user stream (another "
                                  "user's, or a listenKey's); userDataStream.unsubscribe first")
            if conn.user is None:
                self._set_user(conn, (uid, NATIVE))
            return {"userId": uid}
        if m == "userDataStream.unsubscribe":
            if conn.user is None:
                raise StreamError("INVALID_REQUEST", "no user stream on this connection")
            self._set_user(conn, None)
            if conn.watch is not None:
                conn.watch.cancel()
                conn.watch = None
            return None
        raise StreamError("UNKNOWN_METHOD", f"method {m!r} is not one of SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, "
                          "userDataStream.subscribe, userDataStream.unsubscribe", "method")

    def _authenticate(self, params, ip: str | None) -> int:
        node = self.node
        if params is None or params == {}:
            if not node.config.demo:
                raise StreamError("UNAUTHORIZED", "userDataStream.subscribe needs apiKey, timestamp and signature "
                                  "(the demo account without them only on a node in demo mode)", "params")
            if not node.config.accounts:
                raise StreamError("UNAUTHORIZED", "this node has no demo account", "params")
            return 0
        if not isinstance(params, dict):
            raise StreamError("INVALID_REQUEST", "params: an object with apiKey, timestamp, signature", "params")
        extra = set(params) - {"apiKey", "timestamp", "signature", "recvWindow"}
        if extra:
            raise StreamError("INVALID_REQUEST", f"params: unknown field {sorted(extra)[0]!r}", sorted(extra)[0])
        for k, typ in (("apiKey", str), ("timestamp", int), ("signature", str)):
            v = params.get(k)
            if not isinstance(v, typ) or isinstance(v, bool):
                raise StreamError("INVALID_REQUEST", f"params.{k}: required ({typ.__name__})", k)
        window = params.get("recvWindow", 5000)
        if not isinstance(window, int) or isinstance(window, bool) or not 0 < window <= self.limits.max_recv_window:
            raise StreamError("INVALID_REQUEST", f"params.recvWindow: an integer in 1..{self.limits.max_recv_window}",
                              "recvWindow")
        now = int(time.time() * 1000)
        ts = params["timestamp"]
        if ts > now + 1000 or now - ts > window:
            raise StreamError("UNAUTHORIZED", f"timestamp {ts} is outside the recvWindow of {window} ms "
                              f"around the server time {now}", "timestamp")
        payload = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "signature")
        try:
            with node.lock:
                return node.exchange.accounts.verify_request(params["apiKey"], payload.encode(), params["signature"],
                                                             ip, "read")
        except AuthError as e:
            code = "FORBIDDEN" if e.reason in (AuthFailure.IP_NOT_ALLOWED, AuthFailure.PERMISSION_DENIED) \
                else "UNAUTHORIZED"
            raise StreamError(code, f"{e.reason}: {e}", e.field) from None

    # -- endpoints -------------------------------------------------------------------------------------
    def origin_allowed(self, origin: str | None, host: str | None) -> bool:
        """A browser page may open a connection if it is one of the node's
        own pages (its Origin's host:port is the Host it connects to) or an
        origin in `[api] ws_allowed_origins`; a client that sends no Origin
        (not a browser) may always."""
        if origin is None:
            return True
        allowed = self.node.config.api.ws_allowed_origins
        if "*" in allowed or origin in allowed:
            return True
        try:
            u = urlsplit(origin)
            if u.scheme not in ("http", "https") or not u.hostname or not host:
                return False
            port = u.port or (443 if u.scheme == "https" else 80)
            h = urlsplit("//" + host)
            return (u.hostname.lower() == (h.hostname or "").lower()
                    and port == (h.port or (443 if u.scheme == "https" else 80)))
        except ValueError:  # not a URL (a port out of range, ...)
            return False

    async def _serve(self, ws: WebSocket, wrap: bool, initial: list[str]) -> None:
        if not self.origin_allowed(ws.headers.get("origin"), ws.headers.get("host")):
            # before the handshake completes: the client gets HTTP 403
            log.info("ws: refused a connection from origin %r (host %r)", ws.headers.get("origin"),
                     ws.headers.get("host"))
            self.refused_origins += 1
            await ws.close(1008)
            return
        await ws.accept()
        if self.connections >= self.limits.max_connections:
            await ws.close(1013, "too many connections")
            return
        self.connections += 1
        conn = _Conn(self, ws, wrap)
        conn.task = asyncio.create_task(conn.sender())
        ip = ws.client.host if ws.client else None
        try:
            if initial:
                try:
                    key, user, names = None, None, []
                    for name in initial:
                        if "@" in name:
                            names.append(name)
                            continue
                        uid = self.keys.user_of(name)
                        if uid is None:
                            raise StreamError("INVALID_STREAM", f"{name!r} is neither a stream (<symbol>@<kind>) nor "
                                              "a live listenKey (POST /api/v3/userDataStream makes one; it lives "
                                              f"{self.keys.ttl_s:g} s after its creation or last keepalive)")
                        if key is not None and key != name:
                            raise StreamError("INVALID_STREAM", "one listenKey per connection")
                        key, user = name, uid
                    parsed = self._parse_all(names)
                    if len(parsed) > self.limits.max_streams:
                        raise StreamError("TOO_MANY_STREAMS", f"at most {self.limits.max_streams} streams")
                except StreamError as e:
                    conn.task.cancel()
                    await ws.send({"type": "websocket.send", "text": _enc.encode(
                        {"id": None, "error": {"code": e.code, "message": str(e)}}).decode()})
                    await ws.close(1008, e.code)
                    return
                if parsed:
                    self._subscribe(conn, parsed)
                if key is not None:
                    self._set_user(conn, (user, BINANCE), key)
                    conn.watch = asyncio.create_task(self._watch_listen_key(conn, key))
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect" or conn.closing:
                    break
                if not conn.allow_request():
                    conn.drop("too many requests")
                    break
                self.handle(conn, msg.get("text"), ip)
            if conn.closing:  # dropped: let the close run, read until the client goes
                while (await ws.receive())["type"] != "websocket.disconnect":
                    pass
        except Exception:
            pass
        finally:
            self.connections -= 1
            conn.closing = True
            self._unsubscribe_all(conn)
            if conn.task is not None:
                conn.task.cancel()
            if conn.watch is not None:
                conn.watch.cancel()

    async def _watch_listen_key(self, conn: _Conn, key: str) -> None:
        """Until the listenKey expires (or is closed): then the connection's
        user stream ends with Binance's `listenKeyExpired` (the connection
        and its other streams stay)."""
        event = asyncio.Event()
        loop = asyncio.get_running_loop()
        self.keys.watch(key, loop, event)
        try:
            while True:
                exp = self.keys.expires_at(key)
                now = time.monotonic()
                if exp is None or exp <= now:
                    break
                event.clear()
                try:
                    await asyncio.wait_for(event.wait(), exp - now + 0.001)
                except asyncio.TimeoutError:
                    pass
            if conn.closing or conn.user_name != key:
                return
            self._set_user(conn, None)
            msg = _enc.encode({"e": "listenKeyExpired", "E": int(time.time() * 1000), "listenKey": key}).decode()
            if conn.wrap:
                msg = f'{{"stream":"{key}","data":{msg}}}'
            conn.push([text_frame(msg.encode()) if conn.direct else msg])
        finally:
            self.keys.unwatch(key, loop, event)
            if conn.watch is asyncio.current_task():
                conn.watch = None

    async def ws_endpoint(self, ws: WebSocket) -> None:
        streams = ws.path_params.get("streams", "")
        await self._serve(ws, False, [s for s in streams.split("/") if s])

    async def stream_endpoint(self, ws: WebSocket) -> None:
        streams = ws.query_params.get("streams", "")
        await self._serve(ws, True, [s for s in streams.split("/") if s])

    def routes(self) -> list[WebSocketRoute]:
        return [
            WebSocketRoute("/ws", self.ws_endpoint),
            WebSocketRoute("/ws/{streams:path}", self.ws_endpoint),
            WebSocketRoute("/stream", self.stream_endpoint),
        ]

    def stats(self) -> dict:
        with self._lock:
            return {"connections": self.connections, "subscriptions": self._nsubs, "topics": len(self._topic_count),
                    "users": len(self._user_count), "slow_consumers": self.slow_consumers,
                    "refused_origins": self.refused_origins, "sent": self.sent,
                    "deliveries": self.deliveries, "batches": self.batches}
