"""WebSocket streams of a node: public market data and private user streams.

Routes (Starlette `WebSocketRoute`s, mounted by `build_app`):

- `/ws`                  a connection that subscribes with `SUBSCRIBE`;
  payloads arrive raw;
- `/ws/<stream>[/<stream>...]`  subscribed to those streams from the start
  (Binance's raw streams), payloads raw;
- `/stream?streams=a/b`  Binance's combined streams: every payload is
  wrapped as `{"stream": <name>, "data": <payload>}`.

Stream names follow Binance (`btcusd@trade`, `btcusd@depth`,
`btcusd@depth20`, `btcusd@kline_1m`, `btcusd@bookTicker`, `btcusd@ticker`);
our own symbols work too (`BTC-USD@trade`). Requests on a connection:
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
node never waits for a client. (Nothing checks the Origin of a connection:
on a demo node any page the browser opens can read the demo account's
stream, as it can POST orders for it.)
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import msgspec
import numpy as np
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from .. import commands as C
from ..accounts import AuthError, AuthFailure
from ..enums import COMMAND_DTYPE, EVENT_DTYPE, CommandKind, EventKind, OrderType, Reason, Side
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


def parse_stream(name: str, markets: dict[str, int]) -> tuple:
    """The topic `(market id, kind, param)` of a stream name; `markets` maps
    every accepted spelling of a symbol (BTC-USD, btcusd, ...) to its id."""
    if not isinstance(name, str) or not 0 < len(name) <= 100:
        raise StreamError("INVALID_STREAM", f"stream name {name!r} is not a string of 1..100 characters")
    sym, sep, rest = name.partition("@")
    if not sep:
        raise StreamError("INVALID_STREAM", f"stream {name!r}: expected <symbol>@<kind>, e.g. btcusd@trade")
    mk = markets.get(sym)
    if mk is None:
        mk = markets.get(sym.upper())
    if mk is None:
        mk = markets.get(sym.lower())
    if mk is None:
        raise StreamError("UNKNOWN_MARKET", f"stream {name!r}: no market {sym!r}")
    speed = None
    for suffix in ("@100ms", "@1000ms"):
        if rest.endswith(suffix):
            rest, speed = rest[: -len(suffix)], suffix
    if rest in ("trade", "trades", "bookTicker", "ticker") and speed is None:
        return (mk, rest, None)
    if rest == "depth":
        return (mk, "depth", None)
    if rest.startswith("depth") and rest[5:].isdigit() and int(rest[5:]) in PARTIAL_LEVELS:
        return (mk, "depthN", int(rest[5:]))
    if rest.startswith("kline_") and speed is None:
        iv = rest[6:]
        if iv in KLINE_INTERVALS:
            return (mk, "kline", iv)
        raise StreamError("INVALID_STREAM", f"stream {name!r}: interval {iv!r} is not one of "
                          + " ".join(KLINE_INTERVALS))
    raise StreamError("INVALID_STREAM", f"stream {name!r}: unknown stream kind {rest + (speed or '')!r} "
                      "(trade, trades, depth, depth5/10/20, kline_<interval>, bookTicker, ticker)")


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


class Converter:
    """Turns sequencer batches into encoded messages. One per hub, used only
    by its worker thread; it reads the exchange (under `node.lock`) only for
    state that events do not carry: trade ids at the start, the current
    candle, partial depth, BBO, the 24 h ticker and balances."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.skip_until = -1
        self.trade_id: dict[int, int] = {}
        self.candles: dict[tuple[int, str], _Candle] = {}
        self.bbo: dict[int, tuple] = {}

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

    def convert(self, batches: list, topics: set, users: set) -> tuple[dict, dict]:
        """`({topic: [message, ...]}, {user_id: [message, ...]})` for the
        subscribed `topics` and `users`, from a list of batches."""
        node = self.node
        ex = node.exchange
        mkts = ex._market_by_id
        want: dict[int, dict[str, set]] = {}
        for mk, kind, param in topics:
            want.setdefault(mk, {}).setdefault(kind, set()).add(param)
        self._init_candles(want)
        users_arr = np.fromiter(users, np.uint64, len(users)) if users else None
        fills_of: dict[int, list] = {}       # market -> [(tid, ts, seq, price, qty, side, taker oid, maker oid)]
        diffs: dict[int, list] = {}           # market -> [first id, last id, {(side, price): qty}, ts]
        traded: set[int] = set()
        depth_touched: set[int] = set()
        private: dict[int, list] = {}         # user -> [message]
        touched_assets: dict[int, set] = {}   # user -> asset ids
        last_ts = 0
        for pairs in batches:
            for cmd, out in pairs:
                seq = out.seq
                if seq <= self.skip_until:
                    continue
                ts = cmd.ts
                last_ts = ts
                is_records = isinstance(cmd, C.Records)
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
                            traded.add(mk)
                            w = want.get(mk)
                            if w and ("trade" in w or "trades" in w or "kline" in w):
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
                            depth_touched.add(mk)
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
                        self._private(arr, kind, fmask, tids, users_arr, ts, cmd if is_records else None, mkts,
                                      private, touched_assets)
                if users_arr is not None:
                    self._private_command(cmd, out, users, ts, mkts, private, touched_assets)
        topic_msgs: dict[tuple, list[str]] = {}
        for mk, acc in fills_of.items():
            self._trade_messages(mk, acc, want[mk], mkts[mk], topic_msgs)
        for mk, (first, last, levels, ts) in diffs.items():
            m = mkts[mk]
            tick, lot = m.tick_size, m.lot_size
            bids = [[p * tick, q * lot] for (s, p), q in sorted(levels.items(), key=lambda kv: -kv[0][1]) if s == 0]
            asks = [[p * tick, q * lot] for (s, p), q in sorted(levels.items()) if s == 1]
            topic_msgs[(mk, "depth", None)] = [_enc.encode({
                "e": "depthUpdate", "E": ts, "s": m.symbol, "U": first, "u": last, "b": bids, "a": asks}).decode()]
        self._state_messages(want, traded, depth_touched, last_ts, mkts, topic_msgs)
        if touched_assets:
            self._balances(touched_assets, last_ts, private)
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
    def _kline(m, iv: str, c: _Candle, ts: int, closed: bool) -> str:
        tick, lot = m.tick_size, m.lot_size
        return _enc.encode({"e": "kline", "E": ts, "s": m.symbol, "k": {
            "t": c.start, "T": interval_end(iv, c.start), "s": m.symbol, "i": iv, "f": c.first, "L": c.last,
            "o": c.o * tick, "c": c.c * tick, "h": c.h * tick, "l": c.l * tick, "v": c.v * lot,
            "n": c.n, "x": closed, "q": c.q * tick * lot}}).decode()

    # -- state read from the exchange: partial depth, BBO, ticker --------------------------------
    def _state_messages(self, want: dict, traded: set, depth_touched: set, ts: int, mkts, out: dict) -> None:
        reads = []
        for mk, w in want.items():
            n = max(w.get("depthN", ()), default=0)
            if mk in depth_touched and (n or "bookTicker" in w):
                reads.append((mk, "depth", max(n, 1)))
            if mk in traded and "ticker" in w:
                reads.append((mk, "ticker", 0))
        if not reads:
            return
        got = []
        with self.node.lock:
            core = self.node.exchange.core
            for mk, what, n in reads:
                got.append(core.depth_snapshot(mk, n) if what == "depth" else core.ticker(mk))
        for (mk, what, _), r in zip(reads, got):
            m, w = mkts[mk], want[mk]
            tick, lot = m.tick_size, m.lot_size
            if what == "depth":
                uid, bids, asks = r
                for n in w.get("depthN", ()):
                    out[(mk, "depthN", n)] = [_enc.encode({
                        "e": "depthPartial", "E": ts, "s": m.symbol, "lastUpdateId": uid,
                        "bids": [[p * tick, q * lot] for p, q, _ in bids[:n]],
                        "asks": [[p * tick, q * lot] for p, q, _ in asks[:n]]}).decode()]
                if "bookTicker" in w:
                    top = (bids[0][:2] if bids else None, asks[0][:2] if asks else None)
                    if self.bbo.get(mk) != top:
                        self.bbo[mk] = top
                        (b, a) = top
                        out[(mk, "bookTicker", None)] = [_enc.encode({
                            "e": "bookTicker", "E": ts, "u": uid, "s": m.symbol,
                            "b": b[0] * tick if b else None, "B": b[1] * lot if b else None,
                            "a": a[0] * tick if a else None, "A": a[1] * lot if a else None}).decode()]
            elif r is not None:
                o, h, lo, last, v, qv, n = r
                out[(mk, "ticker", None)] = [_enc.encode({
                    "e": "24hrTicker", "E": ts, "s": m.symbol, "p": (last - o) * tick,
                    "P": (Decimal(last - o) * 100 / o).quantize(Decimal("0.01")) if o else Decimal(0),
                    "o": o * tick, "h": h * tick, "l": lo * tick, "c": last * tick, "v": v * lot,
                    "q": qv * tick * lot, "n": n}).decode()]

    # -- private streams -------------------------------------------------------------------------
    def _private(self, arr, kind, fmask, tids, users_arr, ts: int, records: C.Records | None, mkts,
                 private: dict, touched: dict) -> None:
        """executionReport messages for subscribed users' events in `arr`."""
        own = np.isin(arr["owner"], users_arr) & (kind != DEPTH) & (kind != REJECTED)
        other = fmask & np.isin(arr["other_owner"], users_arr)
        rej = None
        if records is not None and (kind == REJECTED).any():
            # a Records row's REJECTED event names its row; the row says whose it was
            rows = np.frombuffer(records.data, COMMAND_DTYPE)
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
                    msg = {"e": "executionReport", "E": ts, "s": m.symbol, "i": oid, "S": Side(s).name, "x": "TRADE",
                           "X": "FILLED" if rem == 0 else "PARTIALLY_FILLED", "l": int(e["qty"]) * lot,
                           "L": int(e["price"]) * tick, "rq": rem * lot, "t": int(tid_full[i]), "m": maker, "T": ts}
                    if not maker:
                        msg["o"] = OrderType(otype).name
                    private.setdefault(uid, []).append(_enc.encode(msg).decode())
                    touched.setdefault(uid, set()).update((m.base.id, m.quote.id))
                continue
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
            private.setdefault(owner, []).append(_enc.encode(msg).decode())
            touched.setdefault(owner, set()).add(m.quote.id if side == 0 else m.base.id)
        for i, r in rej or ():
            mk = int(r["market"])
            sym = mkts[mk].symbol if mk < len(mkts) else None
            private.setdefault(int(r["owner"]), []).append(_enc.encode({
                "e": "executionReport", "E": ts, "s": sym, "i": int(r["order_id"]), "S": Side(int(r["side"]) & 1).name,
                "x": "REJECTED", "X": "REJECTED", "r": Reason(int(arr["reason"][i])).name}).decode())

    @staticmethod
    def _private_command(cmd, out, users: set, ts: int, mkts, private: dict, touched: dict) -> None:
        """Messages that come from the command rather than its events:
        rejected orders, money moves, notifications."""
        if out.error is not None:
            if isinstance(cmd, C.PlaceOrder) and cmd.account in users:
                private.setdefault(cmd.account, []).append(_enc.encode({
                    "e": "executionReport", "E": ts, "s": cmd.market, "i": None, "S": str(cmd.side).upper(),
                    "o": str(cmd.order_type).upper(), "x": "REJECTED", "X": "REJECTED", "r": out.error["reason"],
                    "msg": out.error["message"]}).decode())
            return
        if isinstance(cmd, (C.Deposit, C.Withdraw)) and cmd.account in users:
            sign = "-" if isinstance(cmd, C.Withdraw) else ""
            private.setdefault(cmd.account, []).append(_enc.encode({
                "e": "balanceUpdate", "E": ts, "a": cmd.asset, "d": sign + str(cmd.amount), "T": ts}).decode())
            touched.setdefault(cmd.account, set()).add(cmd.asset)
        elif isinstance(cmd, C.Transfer):
            for acct, sign in ((cmd.from_account, "-"), (cmd.to_account, "")):
                if acct in users:
                    private.setdefault(acct, []).append(_enc.encode({
                        "e": "balanceUpdate", "E": ts, "a": cmd.asset, "d": sign + str(cmd.amount), "T": ts}).decode())
                    touched.setdefault(acct, set()).add(cmd.asset)
        for n in out.notices:
            if n.get("type") == "notification" and n.get("user_id") in users:
                private.setdefault(n["user_id"], []).append(_enc.encode({
                    "e": "notification", "E": ts, "id": n["notification_id"], "kind": n["kind"],
                    "payload": n["payload"], "ts": n["ts"]}).decode())

    def _balances(self, touched: dict, ts: int, private: dict) -> None:
        ex = self.node.exchange
        by_id = {a.id: a for a in ex._assets.values()}
        out = []
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
        for uid, rows in out:
            if rows:
                private.setdefault(uid, []).append(_enc.encode({
                    "e": "outboundAccountPosition", "E": ts, "u": ts,
                    "B": [{"a": a.symbol, "f": Decimal(f).scaleb(-a.decimals), "l": Decimal(h).scaleb(-a.decimals)}
                          for a, f, h in rows]}).decode())


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

    __slots__ = ("hub", "ws", "loop", "wrap", "names", "user", "q", "wake", "task", "closing", "tokens",
                 "refilled", "reason", "proto", "direct")

    def __init__(self, hub: "WsHub", ws: WebSocket, wrap: bool) -> None:
        self.hub, self.ws, self.wrap = hub, ws, wrap
        self.loop = asyncio.get_running_loop()
        self.names: dict[tuple, str] = {}
        self.user: int | None = None
        self.q: deque = deque()
        self.wake: asyncio.Future | None = None
        self.task: asyncio.Task | None = None
        self.closing = False
        self.tokens = float(hub.limits.request_burst)
        self.refilled = time.monotonic()
        self.reason: str | None = None
        self.proto = _direct_protocol(ws) if hub.direct else None
        self.direct = self.proto is not None

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
            if proto.writable.is_set() and not proto.close_sent and not proto.transport.is_closing():
                proto.transport.write(msgs[0] if len(msgs) == 1 else b"".join(msgs))
                self.hub.sent += len(msgs)
                return
        q.extend(msgs)
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
                    proto.transport.write(data)
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


class _LoopFanout:
    """The subscribers on one event loop, by topic and by user."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.topics: dict[tuple, dict[_Conn, None]] = {}
        self.users: dict[int, dict[_Conn, None]] = {}

    def deliver(self, topic_msgs: dict, user_msgs: dict, done) -> None:
        """On the loop: the same messages to every subscriber, as text or
        as frames built once (wrapped once per stream name for
        combined-stream connections)."""
        try:
            per_conn: dict[_Conn, list] = {}
            cache: dict[tuple, list] = {}

            def add(c: _Conn, out: list) -> None:
                have = per_conn.get(c)
                if have is None:
                    per_conn[c] = out
                else:
                    if not isinstance(have, _Own):
                        have = per_conn[c] = _Own(have)
                    have.extend(out)

            for topic, msgs in topic_msgs.items():
                conns = self.topics.get(topic)
                if not conns:
                    continue
                for c in conns:
                    name = c.names[topic] if c.wrap else None
                    key = (topic, name, c.direct)
                    out = cache.get(key)
                    if out is None:
                        out = msgs if name is None else [f'{{"stream":"{name}","data":{m}}}' for m in msgs]
                        if c.direct:
                            out = [text_frame(m.encode()) for m in out]
                        cache[key] = out
                    add(c, out)
            for uid, msgs in user_msgs.items():
                conns = self.users.get(uid)
                if not conns:
                    continue
                for c in conns:
                    key = (("user", uid), c.wrap, c.direct)
                    out = cache.get(key)
                    if out is None:
                        out = [f'{{"stream":"user","data":{m}}}' for m in msgs] if c.wrap else msgs
                        if c.direct:
                            out = [text_frame(m.encode()) for m in out]
                        cache[key] = out
                    add(c, out)
            for c, msgs in per_conn.items():
                c.push(msgs)
        finally:
            # after the sender tasks woken above have had their turn
            self.loop.call_soon(done)


class _Own(list):
    """A connection's own list of messages (the shared per-topic lists are never extended)."""


class WsHub:
    """The node's WebSocket gateway: routes, subscriptions and the fan-out
    worker. `build_app` makes one per app; `close()` detaches it."""

    def __init__(self, node: Node, limits: WsLimits | None = None, direct: bool = True) -> None:
        self.node = node
        self.limits = limits or WsLimits()
        #: write pre-framed messages to uvicorn's transports (False: always the ASGI send)
        self.direct = direct
        self.converter = Converter(node)
        self._lock = threading.Lock()
        self._topic_count: dict[tuple, int] = {}
        self._user_count: dict[int, int] = {}
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
                with self._cv:
                    if not self._queue and not self._closed:
                        self._cv.wait(1.0)
                    items = list(self._queue)
                    self._queue.clear()
                if self._closed:
                    return
                if not items:
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
                if not batches:
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

    def _set_user(self, conn: _Conn, user: int | None) -> None:
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
                conn.user = user
                f.users.setdefault(user, {})[conn] = None
                self._user_count[user] = self._user_count.get(user, 0) + 1
                self._nsubs += 1
                if self._nsubs == 1:
                    self._activate()

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
            if conn.user is not None and conn.user != uid:
                raise StreamError("INVALID_REQUEST", "this connection already has another user's stream; "
                                  "userDataStream.unsubscribe first")
            if conn.user is None:
                self._set_user(conn, uid)
            return {"userId": uid}
        if m == "userDataStream.unsubscribe":
            if conn.user is None:
                raise StreamError("INVALID_REQUEST", "no user stream on this connection")
            self._set_user(conn, None)
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
    async def _serve(self, ws: WebSocket, wrap: bool, initial: list[str]) -> None:
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
                    parsed = self._parse_all(initial)
                    if len(parsed) > self.limits.max_streams:
                        raise StreamError("TOO_MANY_STREAMS", f"at most {self.limits.max_streams} streams")
                except StreamError as e:
                    conn.task.cancel()
                    await ws.send({"type": "websocket.send", "text": _enc.encode(
                        {"id": None, "error": {"code": e.code, "message": str(e)}}).decode()})
                    await ws.close(1008, e.code)
                    return
                self._subscribe(conn, parsed)
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
                    "users": len(self._user_count), "slow_consumers": self.slow_consumers, "sent": self.sent,
                    "deliveries": self.deliveries, "batches": self.batches}
