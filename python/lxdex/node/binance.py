"""A Binance-compatible subset of the spot REST API under `/api/v3`.

Binance's parameter names (query string or form body), enum values, symbol
names without the dash (`BTCUSD` is the market `BTC-USD`), numbers as
decimal strings, errors as `{"code": -1121, "msg": "Invalid symbol."}` with
Binance's codes, and HMAC-SHA256 signed requests: `X-MBX-APIKEY` header,
`timestamp` and optional `recvWindow` parameters, `signature` = hex
HMAC-SHA256 of the secret over the query string concatenated with the body
(the `signature` parameter itself left out), verified with the exchange's
API keys. `docs/api.md` lists what is and is not supported.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import time
from decimal import Decimal
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import commands as C
from ..accounts import AccountError
from ..enums import EventKind, Reason
from ..exchange import CLIENT_ID
from .api import DEFAULT_RECV_WINDOW, ApiContext, ApiError, api_endpoint, cancelled_ids, order_owner
from .http import JSON

log = logging.getLogger("lxdex.node.binance")


class BError(Exception):
    """A Binance error reply: `{"code", "msg"}` (and `data` where Binance has one: cancelReplace)."""

    def __init__(self, code: int, msg: str, status: int = 400, headers: dict | None = None,
                 data: dict | None = None) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status, self.headers, self.data = code, msg, status, headers or {}, data


def _berror_dict(e: BError) -> dict:
    return {"code": e.code, "msg": e.msg}


def _mandatory(name: str) -> BError:
    return BError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def _bad_param(name: str, why: str = "") -> BError:
    return BError(-1100, f"Illegal characters found in parameter '{name}'{'; ' + why if why else ''}.")


# Binance's spot order types and ours (type, post_only)
_TYPES = {
    "LIMIT": ("limit", False), "LIMIT_MAKER": ("limit", True), "MARKET": ("market", False),
    "STOP_LOSS": ("stop_market", False), "STOP_LOSS_LIMIT": ("stop_limit", False),
    "TAKE_PROFIT": ("take_profit_market", False), "TAKE_PROFIT_LIMIT": ("take_profit_limit", False),
}
_OUR_TYPES = {"limit": "LIMIT", "market": "MARKET", "stop_market": "STOP_LOSS", "stop_limit": "STOP_LOSS_LIMIT",
              "take_profit_market": "TAKE_PROFIT", "take_profit_limit": "TAKE_PROFIT_LIMIT",
              "trailing_stop": "STOP_LOSS"}
_STP = {"NONE": "none", "EXPIRE_TAKER": "cancel_taker", "EXPIRE_MAKER": "cancel_maker",
        "EXPIRE_BOTH": "cancel_both", "DECREMENT": "decrement"}
_OUR_STP = {v: k for k, v in _STP.items()}
_TIFS = ("GTC", "IOC", "FOK")
ORDER_TYPES = ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"]
_KLINE_INTERVALS = ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "1w", "1M")

#: Parameters accepted everywhere a signed request is (and ignored where they mean nothing here).
_SIGNED = {"timestamp", "recvWindow", "signature"}


def _fmt(d: Decimal | int | str | None, places: int = 8) -> str:
    """Binance's number strings: fixed point with 8 decimals (more when the value has more)."""
    if d is None:
        d = Decimal(0)
    elif not isinstance(d, Decimal):
        d = Decimal(d)
    if d.as_tuple().exponent >= -places:  # the common case: no normalize()
        return f"{d:.{places}f}"
    n = d.normalize()
    exp = n.as_tuple().exponent
    if isinstance(exp, int) and -exp > places:
        return f"{n:f}"
    return f"{d:.{places}f}"


_FIXED: dict = {}


def _fixed(step: Decimal, places: int = 8) -> Callable[[int], str]:
    """`n -> _fmt(n * step)` for integer counts of `step` (a tick or lot
    size), without Decimal arithmetic: the common case, where `step` has at
    most `places` decimals, is integer division and string formatting."""
    f = _FIXED.get((step, places))
    if f is not None:
        return f
    sign, digits, exp = step.as_tuple()
    if sign or not isinstance(exp, int) or -exp > places:
        def f(n: int) -> str:
            return _fmt(n * step, places)
    else:
        mant = int("".join(map(str, digits))) * 10 ** max(exp, 0)
        k = max(-exp, 0)
        scale, pad = 10 ** k, "0" * (places - k)

        def f(n: int) -> str:
            v = n * mant
            if v < 0:
                return "-" + f(-n)
            return f"{v // scale}.{v % scale:0{k}d}{pad}" if k else f"{v}.{pad}"
    _FIXED[(step, places)] = f
    return f


def _side(p: dict) -> str:
    """The `side` parameter: BUY or SELL (Binance's -1102 / -1117 otherwise)."""
    side = p.get("side")
    if not side:
        raise _mandatory("side")
    if side not in ("BUY", "SELL"):
        raise BError(-1117, "Invalid side.")
    return side


def _status(status: str, reason: str | None) -> str:
    if status == "new":
        return "NEW"
    if status == "partially_filled":
        return "PARTIALLY_FILLED"
    if status == "filled":
        return "FILLED"
    if status == "expired" or reason in ("ioc", "fok", "market_remainder", "expired", "post_only"):
        return "EXPIRED"
    if reason == "stp":
        return "EXPIRED_IN_MATCH"
    return "CANCELED"


def routes(ctx: ApiContext) -> list:
    node = ctx.node

    def endpoint(fn: Callable[..., Awaitable[Any]], security: str | None = None,
                 allowed: frozenset = frozenset(), cache: bool = False):
        """security: None (public), "key" (MARKET_DATA: an API key, no signature), "read" (USER_DATA) or
        "trade" (TRADE). `cache`: a public reply that depends on the exchange state only
        (`ApiContext.cached_reply`)."""
        allowed = frozenset(allowed) | (_SIGNED if security not in (None, "key") else frozenset())

        def checked(request, query: bytes, body: bytes) -> tuple[dict, int | None]:
            """The parameters and the user, once the request passed the checks."""
            params = _params(query, body)
            unknown = sorted(set(params) - allowed)
            if unknown:
                raise BError(-1104, f"Not all sent parameters were read; unknown parameter(s): "
                             f"{', '.join(unknown)}.")
            user = None
            if security == "key":
                user = _api_key_only(request)
            elif security is not None:
                user = _authenticate(request, query, body, params, security)
                params["_api_key"] = request.headers["x-mbx-apikey"]
            return params, user

        def failed(request, e: Exception) -> Response:
            if isinstance(e, ApiError):
                e = _from_api_error(e)
            if isinstance(e, BError):
                body = _berror_dict(e)
                if e.data is not None:
                    body["data"] = e.data
                return JSON(body, status_code=e.status, headers=e.headers or None)
            log.error("%s %s failed", request.method, request.url.path, exc_info=e)
            return JSON({"code": -1000, "msg": "An unknown error occurred while processing the request."},
                        status_code=500)

        too_large = failed(None, _from_api_error(ApiError(413, "TOO_LARGE", f"request body over {ctx.max_body} bytes")))
        return api_endpoint(ctx, fn, lambda request, query, body: fn(*checked(request, query, body)), failed, cache,
                            too_large)

    def _params(query: bytes, body: bytes) -> dict[str, str]:
        try:
            q = parse_qsl(query.decode(), keep_blank_values=True, strict_parsing=False)
            b = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False) if body else []
        except UnicodeDecodeError:
            raise BError(-1100, "Illegal characters found in a parameter.") from None
        out: dict[str, str] = {}
        for k, v in b + q:  # the query string wins over the body (Binance's rule)
            out[k] = v
        if len(q) + len(b) > 64:
            raise BError(-1101, "Too many parameters sent for this endpoint.")
        return out

    def _authenticate(request: Request, query: bytes, body: bytes, params: dict, permission: str) -> int:
        api_key = request.headers.get("x-mbx-apikey")
        if not api_key:
            raise BError(-2014, "API-key format invalid.", 401)
        sig = params.get("signature")
        if not sig:
            raise _mandatory("signature")
        try:
            ctx.check_timestamp(params.get("timestamp"), params.get("recvWindow"), "timestamp", "recvWindow")
        except ApiError as e:
            if e.code == "INVALID_RECV_WINDOW":
                raise BError(-1131, "recvWindow must be less than 60000 and more than 0.") from None
            if params.get("timestamp") is None or not params["timestamp"].isdigit():
                raise _mandatory("timestamp") from None
            if "ahead" in e.message:
                raise BError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.") from None
            raise BError(-1021, "Timestamp for this request is outside of the recvWindow.") from None
        payload = _strip_signature(query) + _strip_signature(body)
        try:
            user = ctx.verify(api_key, payload, sig, ctx.client_ip(request), permission)
        except ApiError as e:
            if e.code == "INVALID_SIGNATURE":
                raise BError(-1022, "Signature for this request is not valid.") from None
            raise BError(-2015, "Invalid API-key, IP, or permissions for action.", 401) from None
        try:
            ctx.limit_key(api_key)
        except ApiError as e:
            raise _from_api_error(e) from None
        return user

    def _api_key_only(request: Request) -> int:
        """MARKET_DATA security: a valid, unrevoked API key (from an allowed IP); no signature."""
        api_key = request.headers.get("x-mbx-apikey")
        if not api_key:
            raise BError(-2014, "API-key format invalid.", 401)
        try:
            with node.lock:
                info = node.exchange.accounts.api_key(api_key)
        except AccountError:
            info = None
        if info is None or info["revoked_at"] is not None or (
                info["ip_allow"] and not _ip_allowed(ctx.client_ip(request), info["ip_allow"])):
            raise BError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        try:
            ctx.limit_key(api_key)
        except ApiError as e:
            raise _from_api_error(e) from None
        return info["user_id"]

    def market_of(symbol: str | None):
        if not symbol:
            raise _mandatory("symbol")
        m = _symbols().get(symbol)
        if m is None:
            raise BError(-1121, "Invalid symbol.")
        return m

    def _symbols() -> dict:
        ex = node.exchange
        cache = getattr(ctx, "_binance_symbols", None)
        if cache is None or len(cache) != len(ex._market_by_id):
            cache = {m.symbol.replace("-", ""): m for m in list(ex._market_by_id)}
            ctx._binance_symbols = cache
        return cache

    def int_param(p: dict, name: str, default: int | None, lo: int, hi: int, required: bool = False) -> int | None:
        raw = p.get(name)
        if raw is None or raw == "":
            if required:
                raise _mandatory(name)
            return default
        if not raw.isdigit() or len(raw) > 19:
            raise _mandatory(name)
        v = int(raw)
        if not lo <= v <= hi:
            raise BError(-1130, f"Invalid data sent for a parameter: {name} must be in {lo}..{hi}.")
        return v

    def dec_param(p: dict, name: str, required: bool = False) -> str | None:
        raw = p.get(name)
        if raw is None or raw == "":
            if required:
                raise _mandatory(name)
            return None
        try:
            d = Decimal(raw)
        except Exception:
            raise _mandatory(name) from None
        if not d.is_finite() or d <= 0 or len(raw) > 40:
            raise _mandatory(name)
        return raw

    # -- general and market data --
    def ping(p, user):
        return {}

    def server_time(p, user):
        return {"serverTime": int(time.time() * 1000)}

    def symbol_info(m) -> dict:
        return {
            "symbol": m.symbol.replace("-", ""), "status": "TRADING", "baseAsset": m.base.symbol,
            "baseAssetPrecision": m.base.decimals, "quoteAsset": m.quote.symbol, "quotePrecision": m.quote.decimals,
            "quoteAssetPrecision": m.quote.decimals, "baseCommissionPrecision": m.base.decimals,
            "quoteCommissionPrecision": m.quote.decimals, "orderTypes": ORDER_TYPES, "icebergAllowed": True,
            "ocoAllowed": False, "otoAllowed": False, "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": False, "cancelReplaceAllowed": True, "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False, "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": _fmt(m.tick_size), "maxPrice": "0.00000000",
                 "tickSize": _fmt(m.tick_size)},
                {"filterType": "LOT_SIZE", "minQty": _fmt(m.lot_size), "maxQty": _fmt(m.lot_size * 10**12),
                 "stepSize": _fmt(m.lot_size)},
            ],
            "permissions": [], "permissionSets": [["SPOT"]], "defaultSelfTradePreventionMode": "NONE",
            "allowedSelfTradePreventionModes": list(_STP),
        }

    def exchange_info(p, user):
        syms = _symbols()
        wanted = None
        if "symbol" in p:
            wanted = [p["symbol"]]
        elif "symbols" in p:
            raw = p["symbols"]
            try:
                wanted = json.loads(raw)
                assert isinstance(wanted, list) and all(isinstance(s, str) for s in wanted)
            except Exception:
                raise _mandatory("symbols") from None
        if wanted is not None:
            for s in wanted:
                if s not in syms:
                    raise BError(-1121, "Invalid symbol.")
        ms = [syms[s] for s in wanted] if wanted is not None else list(syms.values())
        cfg = ctx.cfg
        return {
            "timezone": "UTC", "serverTime": int(time.time() * 1000),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "SECOND", "intervalNum": 1,
                 "limit": int(cfg.rate_per_ip)},
                {"rateLimitType": "RAW_REQUESTS", "interval": "SECOND", "intervalNum": 1,
                 "limit": int(cfg.rate_per_key)},
            ],
            "exchangeFilters": [],
            "symbols": [symbol_info(m) for m in ms],
        }

    def depth(p, user):
        m = market_of(p.get("symbol"))
        limit = int_param(p, "limit", 100, 1, 5000)
        with node.lock:
            uid, bids, asks = node.exchange.core.depth_snapshot(m.id, limit)  # integer ticks and lots
        fp, fq = _fixed(m.tick_size), _fixed(m.lot_size)
        return {"lastUpdateId": uid, "bids": [[fp(px), fq(q)] for px, q, _ in bids],
                "asks": [[fp(px), fq(q)] for px, q, _ in asks]}

    def trades(p, user):
        m = market_of(p.get("symbol"))
        limit = int_param(p, "limit", 500, 1, 1000)
        with node.lock:
            ts = node.exchange.trades(m.symbol, limit)
        return [_trade_row(t) for t in ts]

    def agg_trades(p, user):
        """Aggregate trades: consecutive trades of one taker order at one price (`Exchange.agg_trades`, the
        core's tape); the aggregate id is its first trade's id."""
        m = market_of(p.get("symbol"))
        from_id = int_param(p, "fromId", None, 0, 2**63 - 1)
        start = int_param(p, "startTime", None, 0, 2**62)
        end = int_param(p, "endTime", None, 0, 2**62)
        limit = int_param(p, "limit", 500, 1, 1000)
        if from_id is not None and (start is not None or end is not None):
            raise BError(-1128, "Combination of optional parameters invalid: fromId with startTime/endTime.")
        if start is not None and end is not None and start > end:
            raise BError(-1128, "Combination of optional parameters invalid: startTime after endTime.")
        with node.lock:
            rows = node.exchange.agg_trades(m.symbol, from_id=from_id, start=start, end=end, limit=limit)
        return [{"a": t["id"], "p": _fmt(t["price"]), "q": _fmt(t["qty"]), "f": t["first_id"], "l": t["last_id"],
                 "T": t["ts"], "m": t["taker_side"] == "sell", "M": True} for t in rows]

    def klines(p, user):
        from .history import _next_start

        m = market_of(p.get("symbol"))
        interval = p.get("interval")
        if not interval:
            raise _mandatory("interval")
        if interval not in _KLINE_INTERVALS:
            raise BError(-1120, "Invalid interval.")
        start = int_param(p, "startTime", 0, 0, 2**62)
        end = int_param(p, "endTime", None, 0, 2**62)
        limit = int_param(p, "limit", 500, 1, 1000)
        if end is not None and start > end:
            raise BError(-1128, "Combination of optional parameters invalid: startTime after endTime.")
        with node.lock:
            cs = node.exchange.candles(m.symbol, interval, start, limit if end is None else 1000)
        if end is not None:
            cs = [c for c in cs if c["start"] <= end][:limit]
        out = []
        for c in cs:
            close_time = (c["start"] + 1000 if interval == "1s" else _next_start(interval, c["start"])) - 1
            out.append([c["start"], _fmt(c["open"]), _fmt(c["high"]), _fmt(c["low"]), _fmt(c["close"]),
                        _fmt(c["volume"]), close_time, _fmt(c["quote_volume"]), c["trades"], "0", "0", "0"])
        return out

    def _ticker_rows(p) -> tuple[list, bool]:
        if "symbol" in p and "symbols" in p:
            raise BError(-1128, "Combination of optional parameters invalid: symbol and symbols.")
        if "symbol" in p:
            return [market_of(p["symbol"])], True
        if "symbols" in p:
            try:
                names = json.loads(p["symbols"])
                assert isinstance(names, list) and names and all(isinstance(s, str) for s in names)
            except Exception:
                raise _mandatory("symbols") from None
            return [market_of(s) for s in names], False
        return list(_symbols().values()), False

    def ticker_24hr(p, user):
        ms, one = _ticker_rows(p)
        mini = ticker_type(p) == "MINI"
        now = int(time.time() * 1000)
        rows = []
        with node.lock:
            ex = node.exchange
            for m in ms:
                t = ex.ticker(m.symbol)
                bids, asks = ex.depth(m.symbol, 1)
                last_trades = ex.trades(m.symbol, 1)
                zero = Decimal(0)
                o = t["open"] if t else zero
                rows.append({
                    "symbol": m.symbol.replace("-", ""),
                    "priceChange": _fmt(t["change"] if t else zero),
                    "priceChangePercent": f"{t['change_pct'] if t else zero:.3f}",
                    "weightedAvgPrice": _fmt((t["quote_volume"] / t["volume"]).quantize(m.tick_size)
                                             if t and t["volume"] else zero),
                    "prevClosePrice": _fmt(o), "lastPrice": _fmt(t["last"] if t else zero),
                    "lastQty": _fmt(last_trades[-1]["qty"] if last_trades else zero),
                    "bidPrice": _fmt(bids[0][0] if bids else zero), "bidQty": _fmt(bids[0][1] if bids else zero),
                    "askPrice": _fmt(asks[0][0] if asks else zero), "askQty": _fmt(asks[0][1] if asks else zero),
                    "openPrice": _fmt(o), "highPrice": _fmt(t["high"] if t else zero),
                    "lowPrice": _fmt(t["low"] if t else zero), "volume": _fmt(t["volume"] if t else zero),
                    "quoteVolume": _fmt(t["quote_volume"] if t else zero), "openTime": now - 86_400_000,
                    "closeTime": now, "firstId": -1, "lastId": last_trades[-1]["id"] if last_trades else -1,
                    "count": t["trades"] if t else 0,
                })
        if mini:
            rows = [{k: r[k] for k in _MINI} for r in rows]
        return rows[0] if one else rows

    def ticker_price(p, user):
        ms, one = _ticker_rows(p)
        with node.lock:
            ex = node.exchange
            rows = []
            for m in ms:
                last = ex.core.book_last_price(m.id)
                rows.append({"symbol": m.symbol.replace("-", ""),
                             "price": _fmt(last * m.tick_size if last is not None else Decimal(0))})
        return rows[0] if one else rows

    def book_ticker(p, user):
        ms, one = _ticker_rows(p)
        with node.lock:
            ex = node.exchange
            rows = []
            for m in ms:
                bids, asks = ex.depth(m.symbol, 1)
                z = Decimal(0)
                rows.append({"symbol": m.symbol.replace("-", ""),
                             "bidPrice": _fmt(bids[0][0] if bids else z), "bidQty": _fmt(bids[0][1] if bids else z),
                             "askPrice": _fmt(asks[0][0] if asks else z), "askQty": _fmt(asks[0][1] if asks else z)})
        return rows[0] if one else rows

    def historical_trades(p, user):
        """Older trades by id (MARKET_DATA: an API key). The core keeps each market's last 1,000 trades: a
        `fromId` before them starts at the oldest kept."""
        m = market_of(p.get("symbol"))
        limit = int_param(p, "limit", 500, 1, 1000)
        from_id = int_param(p, "fromId", None, 0, 2**63 - 1)
        with node.lock:
            ts = node.exchange.trades(m.symbol, 1000 if from_id is not None else limit)
        if from_id is not None:
            ts = [t for t in ts if t["id"] >= from_id][:limit]
        return [_trade_row(t) for t in ts]

    def avg_price(p, user):
        """The volume-weighted average price of the last 5 minutes (from the core's 1 s candles); with no
        trade in them, the last trade's price. `closeTime` is the last trade's time."""
        m = market_of(p.get("symbol"))
        now = int(time.time() * 1000)
        with node.lock:
            ex = node.exchange
            cs = ex.candles(m.symbol, "1s", now - 300_000, 300)
            last = ex.trades(m.symbol, 1)
        vol = sum(c["volume"] for c in cs)
        if vol:
            price = sum(c["quote_volume"] for c in cs) / vol
        else:
            price = last[-1]["price"] if last else Decimal(0)
        return {"mins": 5, "price": _fmt(_round_price(price, m)), "closeTime": last[-1]["ts"] if last else 0}

    def ticker_type(p) -> str:
        t = p.get("type", "FULL")
        if t not in ("FULL", "MINI"):
            raise BError(-1130, "Invalid data sent for a parameter: type.")
        return t

    def rolling_ticker(p, user):
        """Rolling window statistics (`windowSize` 1m..59m, 1h..23h, 1d..7d; default 1d) from the core's
        candles: 1 m candles for windows up to a day (the window starts on a minute), 1 h candles for longer
        ones (it starts on an hour)."""
        if "symbol" not in p and "symbols" not in p:
            raise BError(-1102, "Parameter 'symbol' or 'symbols' must be sent, but both were empty/null!")
        ms, one = _ticker_rows(p)
        if len(ms) > 100:
            raise BError(-1101, "Too many values sent for parameter 'symbols', maximum allowed up to 100.")
        window = _window(p.get("windowSize", "1d"))
        if window is None:
            raise BError(-1130, "Invalid data sent for a parameter: windowSize must be 1m..59m, 1h..23h or "
                                "1d..7d.")
        kind = ticker_type(p)
        now = int(time.time() * 1000)
        base, interval = (60_000, "1m") if window <= 86_400_000 else (3_600_000, "1h")
        open_time = (now - window) - (now - window) % base
        rows = []
        with node.lock:
            ex = node.exchange
            for m in ms:
                cs = ex.candles(m.symbol, interval, open_time, 1441)
                last = ex.trades(m.symbol, 1)
                rows.append(_window_row(m, cs, last, open_time, now, kind))
        return rows[0] if one else rows

    def _window_row(m, cs: list, last: list, open_time: int, close_time: int, kind: str) -> dict:
        zero = Decimal(0)
        n = sum(c["trades"] for c in cs)
        vol = sum((c["volume"] for c in cs), zero)
        qvol = sum((c["quote_volume"] for c in cs), zero)
        o = cs[0]["open"] if cs else zero
        close = cs[-1]["close"] if cs else zero
        last_id = last[-1]["id"] if n and last else -1
        row = {"symbol": m.symbol.replace("-", "")}
        if kind == "FULL":
            row |= {"priceChange": _fmt(close - o),
                    "priceChangePercent": f"{(close - o) * 100 / o if o else zero:.3f}",
                    "weightedAvgPrice": _fmt(_round_price(qvol / vol, m) if vol else zero)}
        row |= {"openPrice": _fmt(o), "highPrice": _fmt(max((c["high"] for c in cs), default=zero)),
                "lowPrice": _fmt(min((c["low"] for c in cs), default=zero)), "lastPrice": _fmt(close),
                "volume": _fmt(vol), "quoteVolume": _fmt(qvol), "openTime": open_time, "closeTime": close_time,
                "firstId": last_id - n + 1 if n else -1, "lastId": last_id, "count": n}
        return row

    # -- trading and account (signed) --
    def parse_order(p, user) -> tuple:
        """The new order of a request (`order`, `order/test`, `order/cancelReplace`): `(market, PlaceOrder,
        Binance type, response type)`; BError naming what is wrong."""
        m = market_of(p.get("symbol"))
        side = _side(p)
        btype = p.get("type")
        if not btype:
            raise _mandatory("type")
        if btype not in _TYPES:
            raise BError(-1116, "Invalid orderType.")
        otype, post_only = _TYPES[btype]
        tif = p.get("timeInForce")
        if tif is not None and tif not in _TIFS:
            raise BError(-1115, "Invalid timeInForce.")
        limit_like = btype in ("LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")
        if limit_like and tif is None:
            raise _mandatory("timeInForce")
        if not limit_like and tif is not None and btype != "LIMIT_MAKER":
            raise BError(-1106, "Parameter 'timeInForce' sent when not required.")
        quote_qty = None
        if p.get("quoteOrderQty") not in (None, ""):
            # A MARKET order sized by a quote amount: the state machine walks the book when it applies it
            # (docs/exchange.md), so the size is what the match sees.
            if btype != "MARKET":
                raise BError(-1106, "Parameter 'quoteOrderQty' sent when not required.")
            if p.get("quantity") not in (None, ""):
                raise BError(-1128, "Combination of optional parameters invalid. Send quantity or "
                                    "quoteOrderQty, not both.")
            quote_qty = dec_param(p, "quoteOrderQty")
            if Decimal(quote_qty).as_tuple().exponent < -m.quote.decimals and \
                    Decimal(quote_qty).normalize().as_tuple().exponent < -m.quote.decimals:
                raise BError(-1111, f"Parameter 'quoteOrderQty' has too much precision (at most "
                                    f"{m.quote.decimals} decimals of {m.quote.symbol}).")
        qty = None if quote_qty is not None else dec_param(p, "quantity", required=True)
        price = dec_param(p, "price", required=limit_like or btype == "LIMIT_MAKER")
        if price is not None and not (limit_like or btype == "LIMIT_MAKER"):
            raise BError(-1106, "Parameter 'price' sent when not required.")
        stop = dec_param(p, "stopPrice", required=btype in ("STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT",
                                                             "TAKE_PROFIT_LIMIT"))
        if stop is not None and btype in ("LIMIT", "LIMIT_MAKER", "MARKET"):
            raise BError(-1106, "Parameter 'stopPrice' sent when not required.")
        iceberg = dec_param(p, "icebergQty")
        stp = p.get("selfTradePreventionMode", "NONE")
        if stp not in _STP:
            raise BError(-1130, "Invalid data sent for a parameter: selfTradePreventionMode.")
        resp_type = p.get("newOrderRespType", "FULL" if btype in ("MARKET", "LIMIT") else "ACK")
        if resp_type not in ("ACK", "RESULT", "FULL"):
            raise BError(-1130, "Invalid data sent for a parameter: newOrderRespType.")
        client_id = client_id_param(p, "newClientOrderId")
        cmd = C.PlaceOrder(account=user, market=m.symbol, side=side.lower(), qty=qty, price=price,
                           order_type=otype, tif=tif.lower() if tif else None, stp=_STP[stp], post_only=post_only,
                           display_qty=iceberg, trigger_price=stop, client_id=client_id, quote_qty=quote_qty)
        return m, cmd, btype, resp_type

    def client_id_param(p: dict, name: str) -> str | None:
        cid = p.get(name)
        if cid is not None and not CLIENT_ID.fullmatch(cid):
            raise _bad_param(name, "legal range is '^[a-zA-Z0-9-_.:/]{1,36}$'")
        return cid

    async def run(cmd: C.Command):
        try:
            return await ctx.run(cmd)
        except ApiError as e:
            raise _from_api_error(e) from None

    async def new_order(p, user):
        m, cmd, btype, resp_type = parse_order(p, user)
        out = await run(cmd)
        if not out.ok:
            raise _order_reject(out.error)
        return order_result(out.events, out.value["order_id"], m, cmd, btype, resp_type, user)

    def order_result(events, oid: int, m, cmd: C.PlaceOrder, btype: str, resp_type: str, user: int) -> dict:
        """The reply to a placed order (ACK, RESULT or FULL) from its command's events."""
        client_id = cmd.client_id or f"lx{oid}"
        now = int(time.time() * 1000)
        ack = {"symbol": m.symbol.replace("-", ""), "orderId": oid, "orderListId": -1, "clientOrderId": client_id,
               "transactTime": now}
        filled, quote, fills, status, reason = 0, Decimal(0), [], None, None
        conditional, orig_lots = False, None
        for e in events:
            if e.order_id != oid:
                continue
            if e.kind == EventKind.FILL:
                px, q = e.price * m.tick_size, e.qty * m.lot_size
                filled += e.qty
                quote += px * q
                fills.append({"price": _fmt(px), "qty": _fmt(q), "commission": None,
                              "commissionAsset": m.quote.symbol, "tradeId": -1})
                if e.remaining == 0:
                    status = "filled"
            elif e.kind == EventKind.CANCELLED:
                status, reason = "cancelled", Reason(e.reason).name.lower()
            elif e.kind == EventKind.ACCEPTED:
                conditional = cmd.order_type not in ("limit", "market")
                orig_lots = e.qty
        if btype == "LIMIT_MAKER" and reason == "post_only":  # Binance rejects it rather than expire it
            raise BError(-2010, "Order would immediately match and take.")
        if resp_type == "ACK":
            return ack
        if status is None:
            status = "partially_filled" if filled else "new"
        if fills:
            with node.lock:
                mine = [f for f in node.exchange.recent_fills(user) if f["order_id"] == oid]
            for f, mf in zip(fills, mine):
                f["commission"] = _fmt(mf["fee"])
            for f in fills:
                if f["commission"] is None:
                    f["commission"] = _fmt(0)
        # A quoteOrderQty order's quantity is what the state machine sized it to (its ACCEPTED event).
        orig = cmd.qty if cmd.quote_qty is None else (orig_lots or 0) * m.lot_size
        result = {**ack, "price": _fmt(cmd.price or 0), "origQty": _fmt(orig), "executedQty":
                  _fmt(filled * m.lot_size), "origQuoteOrderQty": _fmt(cmd.quote_qty or 0),
                  "cummulativeQuoteQty": _fmt(quote),
                  "status": "NEW" if conditional and not filled and status == "new" else _status(status, reason),
                  "timeInForce": (cmd.tif or "gtc").upper(), "type": btype, "side": cmd.side.upper(),
                  "workingTime": now, "selfTradePreventionMode": _OUR_STP[cmd.stp]}
        if cmd.trigger_price is not None:
            result["stopPrice"] = _fmt(cmd.trigger_price)
        if cmd.display_qty is not None:
            result["icebergQty"] = _fmt(cmd.display_qty)
        if resp_type == "FULL":
            result["fills"] = fills
        return result

    def test_order(p, user):
        """`order/test`: everything `order` checks before the exchange (and the market's tick and lot grid),
        without placing anything."""
        m, cmd, _, _ = parse_order(p, user)
        rates = p.get("computeCommissionRates", "false")
        if rates not in ("true", "false"):
            raise BError(-1130, "Invalid data sent for a parameter: computeCommissionRates.")
        try:
            with node.lock:
                amount = node.exchange._quote_amount(cmd.market, cmd.qty, cmd.quote_qty, cmd.order_type)
                node.exchange._order_args(cmd.market, cmd.side, "0" if amount else cmd.qty, cmd.price,
                                          cmd.order_type, cmd.tif, cmd.stp, cmd.display_qty, cmd.trigger_price)
        except ValueError as e:  # OrderRejected is one
            reason = getattr(e, "reason", None)
            raise _order_reject({"reason": reason.name if reason is not None else "INVALID_COMMAND",
                                 "message": str(e)}) from None
        if rates == "false":
            return {}
        bps = Decimal("0.0001")
        zero = _fmt(0)
        return {"standardCommissionForOrder": {"maker": _fmt(m.maker_bps * bps), "taker": _fmt(m.taker_bps * bps)},
                "specialCommissionForOrder": {"maker": zero, "taker": zero},
                "taxCommissionForOrder": {"maker": zero, "taker": zero},
                "discount": {"enabledForAccount": False, "enabledForSymbol": False, "discountAsset": "",
                             "discount": zero}}

    async def cancel_replace(p, user):
        """`order/cancelReplace`: one `CancelReplace` command (the cancel and the new order take one sequence
        number; nothing can come between them)."""
        mode = p.get("cancelReplaceMode")
        if not mode:
            raise _mandatory("cancelReplaceMode")
        if mode not in ("STOP_ON_FAILURE", "ALLOW_FAILURE"):
            raise BError(-1130, "Invalid data sent for a parameter: cancelReplaceMode.")
        m, cmd, btype, resp_type = parse_order(p, user)
        cancel_new_cid = client_id_param(p, "cancelNewClientOrderId")
        client_id_param(p, "cancelOrigClientOrderId")
        cancel_oid = await _order_id(p, user, m, "cancelOrderId", "cancelOrigClientOrderId", missing=0)
        orig_cid = _open_client_id(cancel_oid)
        out = await run(C.CancelReplace(order_id=cancel_oid, new=cmd, allow_failure=mode == "ALLOW_FAILURE"))
        unknown = {"code": -2011, "msg": "Unknown order sent."}
        if not out.ok:  # nothing was done
            err = out.error
            place = err.get("place")
            return _cancel_replace_failed(-2022, "Order cancel-replace failed.", 400, {
                "cancelResult": "FAILURE", "newOrderResult": "NOT_ATTEMPTED" if place is None else "FAILURE",
                "cancelResponse": unknown,
                "newOrderResponse": None if place is None else _berror_dict(_order_reject(place))})
        v = out.value
        cancel_resp = unknown
        if v["cancelled"]:
            cancel_resp = await _cancel_response(cancel_oid, m, orig_cid, cancel_new_cid)
        new_resp, new_ok = None, False
        if v["place_error"] is not None:
            new_resp = _berror_dict(_order_reject(v["place_error"]))
        else:
            try:
                new_resp = order_result(out.events, v["order_id"], m, cmd, btype, resp_type, user)
                new_ok = True
            except BError as e:  # a LIMIT_MAKER that would take: placed and at once expired
                new_resp = _berror_dict(e)
        data = {"cancelResult": "SUCCESS" if v["cancelled"] else "FAILURE",
                "newOrderResult": "SUCCESS" if new_ok else "FAILURE",
                "cancelResponse": cancel_resp, "newOrderResponse": new_resp}
        if v["cancelled"] and new_ok:
            return data
        return _cancel_replace_failed(-2021, "Order cancel-replace partially failed.", 409, data)

    def _cancel_replace_failed(code: int, msg: str, status: int, data: dict):
        raise BError(code, msg, status, data=data)

    def _open_client_id(oid: int) -> str | None:
        with node.lock:
            return node.exchange.client_order_id(oid)

    async def _cancel_response(oid: int, m, orig_cid: str | None, new_cid: str | None) -> dict:
        """The reply to a done cancel (`DELETE order`, and the cancel of `order/cancelReplace`)."""
        now = int(time.time() * 1000)
        if ctx.history is not None:
            o = await _history(lambda s: s.order(oid))
            if o is not None:
                row = _order_row(o, m)
                row["origClientOrderId"] = row["clientOrderId"]
                row["clientOrderId"] = new_cid or row["clientOrderId"]
                row["transactTime"] = now
                return row
        orig = orig_cid or f"lx{oid}"
        return {"symbol": m.symbol.replace("-", ""), "orderId": oid, "orderListId": -1, "status": "CANCELED",
                "origClientOrderId": orig, "clientOrderId": new_cid or orig, "transactTime": now}

    async def _order_id(p, user, m, id_name: str = "orderId", cid_name: str = "origClientOrderId",
                        missing: int | None = None) -> int:
        """The order a request names by id or by client order id: an open one of the user with that client id,
        else the latest in the history with it, else `lx<orderId>` (the id given to orders placed without one).
        An unknown client id is -2013, or `missing` when given."""
        oid = int_param(p, id_name, None, 0, 2**63 - 1)
        if oid is not None:
            return oid
        cid = p.get(cid_name)
        if not cid:
            raise BError(-1102, f"Param '{cid_name}' or '{id_name}' must be sent, but both were empty/null!")
        with node.lock:
            oid = node.exchange.order_by_client_id(user, cid)
        if oid is None and ctx.history is not None:
            o = await _history(lambda s: s.order_by_client_id(user, cid))
            if o is not None and o["market"] == m.symbol:
                oid = o["order_id"]
        if oid is None and cid.startswith("lx") and cid[2:].isdigit() and len(cid) <= 21:
            oid = int(cid[2:])
        if oid is None:
            if missing is not None:
                return missing
            raise BError(-2013, "Order does not exist.")
        return oid

    def _order_row(o: dict, m) -> dict:
        """A history order (docs/history.md) in Binance's shape."""
        price = Decimal(o["price"]) if o.get("price") else Decimal(0)
        btype = _OUR_TYPES.get(o["type"], "LIMIT")
        if btype == "LIMIT" and o.get("post_only"):
            btype = "LIMIT_MAKER"
        cid = o.get("client_order_id") or f"lx{o['order_id']}"
        status = _status(o["status"], o.get("reason"))
        if o["status"] == "new" and o.get("trigger_price") and "triggered_ts" not in o:
            status = "NEW"
        return {
            "symbol": m.symbol.replace("-", ""), "orderId": o["order_id"], "orderListId": -1,
            "clientOrderId": cid, "price": _fmt(price), "origQty": _fmt(o["qty"]),
            "executedQty": _fmt(o["filled_qty"]), "cummulativeQuoteQty": _fmt(o["quote_qty"]),
            "status": status, "timeInForce": o["tif"].upper() if o["tif"] in ("gtc", "ioc", "fok") else "GTC",
            "type": btype, "side": o["side"].upper(), "stopPrice": _fmt(o.get("trigger_price") or 0),
            "icebergQty": _fmt(o.get("display_qty") or 0), "time": o["created_ts"], "updateTime": o["updated_ts"],
            "isWorking": o["status"] in ("new", "partially_filled"), "workingTime": o.get("triggered_ts",
                                                                                          o["created_ts"]),
            "origQuoteOrderQty": _fmt(0), "selfTradePreventionMode": _OUR_STP.get(o.get("stp"), "NONE"),
        }

    def _live_row(o: dict, m, user: int) -> dict:
        """An open order as the core knows it (when the history has no row for it)."""
        cid = o.get("client_order_id") or f"lx{o['order_id']}"
        return {"symbol": m.symbol.replace("-", ""), "orderId": o["order_id"], "orderListId": -1,
                "clientOrderId": cid, "price": _fmt(o["price"]), "origQty": _fmt(o["remaining_qty"]),
                "executedQty": _fmt(0), "cummulativeQuoteQty": _fmt(0), "status": "NEW", "timeInForce": "GTC",
                "type": _OUR_TYPES.get(o.get("type", "limit"), "LIMIT"), "side": o["side"].upper(),
                "stopPrice": _fmt(o.get("trigger_price") or 0), "icebergQty": _fmt(0), "time": 0, "updateTime": 0,
                "isWorking": True, "workingTime": 0, "origQuoteOrderQty": _fmt(0),
                "selfTradePreventionMode": "NONE"}

    async def _history(fn):
        try:
            return await ctx.history_query(fn)
        except ApiError as e:
            raise _from_api_error(e) from None

    async def query_order(p, user):
        m = market_of(p.get("symbol"))
        oid = await _order_id(p, user, m)
        if ctx.history is not None:
            o = await _history(lambda s: s.order(oid))
            if o is not None and o["account"] == user and o["market"] == m.symbol:
                return _order_row(o, m)
        from .api import open_orders_view

        with node.lock:
            live = [o for o in open_orders_view(node.exchange, user, m.symbol) if o["order_id"] == oid]
        if not live:
            raise BError(-2013, "Order does not exist.")
        return _live_row(live[0], m, user)

    async def cancel_order(p, user):
        m = market_of(p.get("symbol"))
        new_cid = client_id_param(p, "newClientOrderId")
        oid = await _order_id(p, user, m)
        with node.lock:
            hold = node.exchange.core.order_hold(oid)
            orig_cid = node.exchange.client_order_id(oid)
        if hold is None or hold[0] != user or hold[1] != m.id:
            raise BError(-2011, "Unknown order sent.")
        out = await run(C.CancelOrder(account=user, order_id=oid))
        if not out.ok:
            raise BError(-2011, "Unknown order sent.")
        return await _cancel_response(oid, m, orig_cid, new_cid)

    async def cancel_open_orders(p, user):
        m = market_of(p.get("symbol"))
        with node.lock:  # their client ids: the exchange forgets them as they are cancelled
            ex = node.exchange
            cids = {o["order_id"]: ex.client_order_id(o["order_id"]) for o in ex.open_orders(user)
                    if o["market"] == m.symbol}
        out = await run(C.CancelAll(account=user, market=m.symbol))
        if not out.ok:
            raise BError(-2011, "Unknown order sent.")
        ids = cancelled_ids(out.events)
        return [{"symbol": m.symbol.replace("-", ""), "orderId": i, "orderListId": -1, "status": "CANCELED",
                 "origClientOrderId": cids.get(i) or f"lx{i}", "clientOrderId": cids.get(i) or f"lx{i}"}
                for i in ids]

    async def open_orders(p, user):
        from .api import open_orders_view

        m = market_of(p["symbol"]) if "symbol" in p else None
        with node.lock:
            live = open_orders_view(node.exchange, user, m.symbol if m else None)
            markets = dict(node.exchange._markets)
        out = []
        for o in live:
            mk = markets[o["market"]]
            h = await _history(lambda s: s.order(o["order_id"])) if ctx.history is not None else None
            out.append(_order_row(h, mk) if h is not None else _live_row(o, mk, user))
        return out

    async def all_orders(p, user):
        m = market_of(p.get("symbol"))
        kw = {"market": m.symbol, "from_id": int_param(p, "orderId", None, 0, 2**62),
              "start_ts": int_param(p, "startTime", None, 0, 2**62), "end_ts": int_param(p, "endTime", None, 0, 2**62),
              "limit": int_param(p, "limit", 500, 1, 1000)}
        if kw["start_ts"] is not None and kw["end_ts"] is not None and kw["start_ts"] > kw["end_ts"]:
            raise BError(-1128, "Combination of optional parameters invalid: startTime after endTime.")
        rows = await _history(lambda s: s.orders(user, **kw))
        return [_order_row(o, m) for o in rows]

    def account(p, user):
        omit_zero = p.get("omitZeroBalances", "false")
        if omit_zero not in ("true", "false"):
            raise BError(-1130, "Invalid data sent for a parameter: omitZeroBalances.")
        with node.lock:
            ex = node.exchange
            have = {a: (av, h) for a, av, h in ex.core.balances(user)}
            assets = sorted(ex._assets.values(), key=lambda a: a.id)
            key = ex.accounts.api_key(p["_api_key"])
            u = ex.accounts.user(user)
        balances = []
        for a in assets:
            av, h = have.get(a.id, (0, 0))
            if omit_zero == "true" and not av and not h:
                continue
            balances.append({"asset": a.symbol, "free": _fmt(Decimal(av).scaleb(-a.decimals)),
                             "locked": _fmt(Decimal(h).scaleb(-a.decimals))})
        perms = set(key["permissions"])
        active = u["status"] == "active"
        return {"makerCommission": 0, "takerCommission": 0, "buyerCommission": 0, "sellerCommission": 0,
                "commissionRates": {"maker": "0.00000000", "taker": "0.00000000", "buyer": "0.00000000",
                                    "seller": "0.00000000"},
                "canTrade": active and "trade" in perms, "canWithdraw": active and "withdraw" in perms,
                "canDeposit": True, "brokered": False, "requireSelfTradePrevention": False, "preventSor": False,
                "updateTime": int(time.time() * 1000), "accountType": "SPOT", "balances": balances,
                "permissions": ["SPOT"], "uid": user}

    async def my_trades(p, user):
        m = market_of(p.get("symbol"))
        order_id = int_param(p, "orderId", None, 0, 2**63 - 1)
        kw = {"market": m.symbol, "from_id": int_param(p, "fromId", None, 0, 2**62),
              "start_ts": int_param(p, "startTime", None, 0, 2**62), "end_ts": int_param(p, "endTime", None, 0, 2**62)}
        limit = int_param(p, "limit", 500, 1, 1000)
        if order_id is not None and kw["from_id"] is not None:
            raise BError(-1128, "Combination of optional parameters invalid: orderId and fromId.")
        rows = await _history(lambda s: s.fills(user, limit=5000 if order_id is not None else limit, **kw))
        if order_id is not None:
            rows = [f for f in rows if f["order_id"] == order_id][:limit]
        return [{"symbol": m.symbol.replace("-", ""), "id": f["id"], "orderId": f["order_id"], "orderListId": -1,
                 "price": _fmt(f["price"]), "qty": _fmt(f["qty"]), "quoteQty": _fmt(f["quote_qty"]),
                 "commission": _fmt(f["fee"] or 0), "commissionAsset": f["fee_asset"], "time": f["ts"],
                 "isBuyer": f["side"] == "buy", "isMaker": f["maker"], "isBestMatch": True} for f in rows]

    # -- user data stream (listenKey): USER_STREAM security, the API key only, no signature --
    from .ws import listen_keys

    stream_keys = listen_keys(node)

    def user_stream_endpoint(fn):
        async def handler(request: Request) -> Response:
            try:
                try:
                    ctx.limit_ip(request)
                    params = _params(ctx.check_query(request), await ctx.body(request))
                except ApiError as e:
                    raise _from_api_error(e) from None
                allowed = {"listenKey"} if request.method != "POST" else set()
                unknown = sorted(set(params) - allowed)
                if unknown:
                    raise BError(-1104, f"Not all sent parameters were read; unknown parameter(s): "
                                 f"{', '.join(unknown)}.")
                api_key = request.headers.get("x-mbx-apikey")
                if not api_key:
                    raise BError(-2014, "API-key format invalid.", 401)
                user = _stream_key_user(api_key, ctx.client_ip(request))
                try:
                    ctx.limit_key(api_key)
                except ApiError as e:
                    raise _from_api_error(e) from None
                return JSON(fn(params, user))
            except BError as e:
                return JSON({"code": e.code, "msg": e.msg}, status_code=e.status, headers=e.headers or None)
            except Exception:
                log.exception("%s %s failed", request.method, request.url.path)
                return JSON({"code": -1000, "msg": "An unknown error occurred while processing the request."},
                            status_code=500)

        return handler

    def _stream_key_user(api_key: str, ip: str) -> int:
        """The key's user: the key exists, is not revoked, allows this IP and has `read` (the stream shows the
        account); -2015 otherwise, as Binance."""
        import ipaddress

        from ..accounts import AccountError

        try:
            with node.lock:
                info = node.exchange.accounts.api_key(api_key)
        except AccountError:
            raise BError(-2015, "Invalid API-key, IP, or permissions for action.", 401) from None
        ok = info["revoked_at"] is None and "read" in info["permissions"]
        if ok and info["ip_allow"]:
            try:
                addr = ipaddress.ip_address(ip)
                ok = any(addr in ipaddress.ip_network(n, strict=False) for n in info["ip_allow"])
            except ValueError:
                ok = False
        if not ok:
            raise BError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        return info["user_id"]

    def _listen_key(p) -> str:
        key = p.get("listenKey")
        if not key:
            raise _mandatory("listenKey")
        return key

    def stream_start(p, user):
        return {"listenKey": stream_keys.create(user)}

    def stream_keepalive(p, user):
        if not stream_keys.keepalive(_listen_key(p), user):
            raise BError(-1125, "This listenKey does not exist.")
        return {}

    def stream_close(p, user):
        if not stream_keys.close(_listen_key(p), user):
            raise BError(-1125, "This listenKey does not exist.")
        return {}

    user_stream_routes = [
        Route("/userDataStream", user_stream_endpoint(stream_start), methods=["POST"]),
        Route("/userDataStream", user_stream_endpoint(stream_keepalive), methods=["PUT"]),
        Route("/userDataStream", user_stream_endpoint(stream_close), methods=["DELETE"]),
    ]

    # -- order lists (OCO) --
    _ABOVE_BELOW = {  # side -> (types of the take-profit leg's position, of the stop-loss leg's)
        "SELL": ("above", "below"), "BUY": ("below", "above")}
    _TP_TYPES = ("LIMIT_MAKER", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")
    _SL_TYPES = ("STOP_LOSS", "STOP_LOSS_LIMIT")

    def _oco_leg(p: dict, pos: str, types: tuple) -> tuple[str, str, str | None, str | None]:
        """One leg of `orderList/oco` (`pos` above or below): `(type, trigger, limit price or None, client id)`."""
        btype = p.get(f"{pos}Type")
        if not btype:
            raise _mandatory(f"{pos}Type")
        if btype not in types:
            raise BError(-1130, f"Invalid data sent for a parameter: {pos}Type.")
        price = dec_param(p, f"{pos}Price", required=btype in ("LIMIT_MAKER", "TAKE_PROFIT_LIMIT", "STOP_LOSS_LIMIT"))
        stop = dec_param(p, f"{pos}StopPrice", required=btype != "LIMIT_MAKER")
        if btype == "LIMIT_MAKER" and stop is not None:
            raise BError(-1106, f"Parameter '{pos}StopPrice' sent when not required.")
        if btype in ("TAKE_PROFIT", "STOP_LOSS") and price is not None:
            raise BError(-1106, f"Parameter '{pos}Price' sent when not required.")
        tif = p.get(f"{pos}TimeInForce")
        if tif is not None and (tif != "GTC" or btype not in ("TAKE_PROFIT_LIMIT", "STOP_LOSS_LIMIT")):
            raise BError(-1130, f"Invalid data sent for a parameter: {pos}TimeInForce.")
        for unsupported in (f"{pos}IcebergQty", f"{pos}TrailingDelta", f"{pos}StrategyId", f"{pos}StrategyType"):
            if unsupported in p:
                raise BError(-1106, f"Parameter '{unsupported}' sent when not required.")
        trigger = price if btype == "LIMIT_MAKER" else stop
        return btype, trigger, price, client_id_param(p, f"{pos}ClientOrderId")

    def _oco_command(p: dict, user: int, legs: dict) -> tuple:
        m = market_of(p.get("symbol"))
        side = _side(p)
        qty = dec_param(p, "quantity", required=True)
        stp = p.get("selfTradePreventionMode", "NONE")
        if stp not in _STP:
            raise BError(-1130, "Invalid data sent for a parameter: selfTradePreventionMode.")
        resp_type = p.get("newOrderRespType", "ACK")
        if resp_type not in ("ACK", "RESULT", "FULL"):
            raise BError(-1130, "Invalid data sent for a parameter: newOrderRespType.")
        tp_type, tp_trigger, tp_price, tp_cid = legs["tp"]
        sl_type, sl_trigger, sl_price, sl_cid = legs["sl"]
        cmd = C.PlaceOco(account=user, market=m.symbol, side=side.lower(), qty=qty, tp_trigger=tp_trigger,
                         sl_trigger=sl_trigger, tp_price=tp_price, sl_price=sl_price, stp=_STP[stp],
                         tp_client_id=tp_cid, sl_client_id=sl_cid)
        return m, cmd, (tp_type, sl_type), resp_type

    async def _place_oco(p: dict, user: int, m, cmd: C.PlaceOco, types: tuple, resp_type: str) -> dict:
        list_cid = client_id_param(p, "listClientOrderId")
        out = await run(cmd)
        if not out.ok:
            raise _order_reject(out.error)
        tp, sl = out.value["order_ids"]
        reports = []
        for oid, btype, trigger, price, cid in ((sl, types[1], cmd.sl_trigger, cmd.sl_price, cmd.sl_client_id),
                                                 (tp, types[0], cmd.tp_trigger, cmd.tp_price, cmd.tp_client_id)):
            leg = C.PlaceOrder(account=user, market=m.symbol, side=cmd.side, qty=cmd.qty, price=price,
                               order_type="limit" if btype == "LIMIT_MAKER" else "stop_limit", tif="gtc",
                               stp=cmd.stp, trigger_price=None if btype == "LIMIT_MAKER" else trigger, client_id=cid)
            reports.append(order_result(out.events, oid, m, leg, btype, "RESULT", user))
        return _list_row(m, out.value["order_list_id"], [(r["orderId"], r["clientOrderId"]) for r in reports],
                         _list_done(out.value["order_list_id"]), list_cid,
                         reports if resp_type != "ACK" else None)

    def _live_link(ex, list_id: int) -> dict | None:
        """The live list `list_id` (`Exchange.order_list`), or None once it ended: an OCO's id is its take-profit
        leg's, a bracket's its entry's (whose exits, the next two ids, outlive it in the list)."""
        for oid in (list_id, list_id + 1):
            link = ex.order_list(oid)
            if link is not None and link["order_list_id"] == list_id:
                return link
        return None

    def _list_done(list_id: int) -> bool:
        with node.lock:
            return _live_link(node.exchange, list_id) is None

    #: Our contingencies as Binance names them (a bracket is Binance's OTOCO, whose contingencyType is OTO).
    _CONTINGENCY = {"oco": "OCO", "bracket": "OTO"}

    def _list_row(m, list_id: int, orders: list, done: bool, list_cid: str | None, reports: list | None,
                  contingency: str = "oco", ts: int | None = None) -> dict:
        row = {"orderListId": list_id, "contingencyType": _CONTINGENCY[contingency],
               "listStatusType": "ALL_DONE" if done else "EXEC_STARTED",
               "listOrderStatus": "ALL_DONE" if done else "EXECUTING",
               "listClientOrderId": list_cid or f"lxl{list_id}",
               "transactionTime": int(time.time() * 1000) if ts is None else ts,
               "symbol": m.symbol.replace("-", ""),
               "orders": [{"symbol": m.symbol.replace("-", ""), "orderId": oid, "clientOrderId": cid}
                          for oid, cid in orders]}
        if reports is not None:
            row["orderReports"] = [{**r, "orderListId": list_id} for r in reports]
        return row

    async def new_oco_list(p, user):
        """`POST orderList/oco`: above and below legs; a SELL list takes profit above and stops below."""
        side = p.get("side")
        tp_pos, sl_pos = _ABOVE_BELOW.get(side, ("above", "below"))
        legs = {"tp": _oco_leg(p, tp_pos, _TP_TYPES), "sl": _oco_leg(p, sl_pos, _SL_TYPES)}
        m, cmd, types, resp_type = _oco_command(p, user, legs)
        return await _place_oco(p, user, m, cmd, types, resp_type)

    async def new_oco_legacy(p, user):
        """`POST order/oco` (deprecated by Binance): a LIMIT_MAKER leg at `price` and a STOP_LOSS(_LIMIT) leg
        at `stopPrice` (limit `stopLimitPrice`)."""
        price = dec_param(p, "price", required=True)
        stop = dec_param(p, "stopPrice", required=True)
        stop_limit = dec_param(p, "stopLimitPrice")
        tif = p.get("stopLimitTimeInForce")
        if tif is not None and (stop_limit is None or tif != "GTC"):
            raise BError(-1130, "Invalid data sent for a parameter: stopLimitTimeInForce.")
        for unsupported in ("limitIcebergQty", "stopIcebergQty", "trailingDelta"):
            if unsupported in p:
                raise BError(-1106, f"Parameter '{unsupported}' sent when not required.")
        legs = {"tp": ("LIMIT_MAKER", price, price, client_id_param(p, "limitClientOrderId")),
                "sl": ("STOP_LOSS_LIMIT" if stop_limit else "STOP_LOSS", stop, stop_limit,
                       client_id_param(p, "stopClientOrderId"))}
        m, cmd, types, resp_type = _oco_command(p, user, legs)
        return await _place_oco(p, user, m, cmd, types, resp_type)

    def _live_lists(user: int, m=None) -> list[tuple]:
        """The user's live order lists: `(market, list id, [(order id, client id)], contingency)`, by list id."""
        with node.lock:
            ex = node.exchange
            seen: dict[int, tuple] = {}
            for o in ex.open_orders(user):
                lid = o.get("order_list_id")
                if lid is None or lid in seen or (m is not None and o["market"] != m.symbol):
                    continue
                link = ex.order_list(o["order_id"])
                ids = [i for i in (link["entry"], link["sl"], link["tp"]) if i is not None]  # as POST lists them
                seen[lid] = (ex._markets[o["market"]], lid, [(i, ex.client_order_id(i) or f"lx{i}") for i in ids],
                             link["contingency"])
        return [seen[k] for k in sorted(seen)]

    def _list_id(p: dict) -> int:
        lid = int_param(p, "orderListId", None, 0, 2**63 - 1)
        if lid is None:
            cid = p.get("origClientOrderId") or p.get("listClientOrderId")
            if cid and cid.startswith("lxl") and cid[3:].isdigit() and len(cid) <= 22:
                return int(cid[3:])
            if cid:
                raise BError(-2011, "Order list does not exist.")
            raise BError(-1102, "Param 'origClientOrderId' or 'orderListId' must be sent, but both were empty/null!")
        return lid

    def _history_list_row(g: dict) -> dict:
        """A history order list (`HistoryStore.order_lists`) in Binance's shape; its orders as POST lists them
        (entry, stop-loss, take-profit)."""
        with node.lock:
            m = node.exchange._markets[g["market"]]
            done = _live_link(node.exchange, g["order_list_id"]) is None
        legs = g["orders"]
        if g["contingency"] == "oco":
            legs = legs[::-1]
        else:
            legs = legs[:1] + legs[1:][::-1]
        orders = [(o["order_id"], o.get("client_order_id") or f"lx{o['order_id']}") for o in legs]
        return _list_row(m, g["order_list_id"], orders, done, None, None, g["contingency"], g["created_ts"])

    async def query_order_list(p, user):
        """`GET orderList`: a live list as the exchange has it, else an ended one from the history."""
        lid = _list_id(p)
        for mk, i, orders, contingency in _live_lists(user):
            if i == lid:
                return _list_row(mk, i, orders, False, None, None, contingency)
        if ctx.history is not None:
            g = await _history(lambda s: s.order_list(user, lid))
            if g is not None:
                return _history_list_row(g)
        raise BError(-2011, "Order list does not exist.")

    def open_order_lists(p, user):
        return [_list_row(mk, i, orders, False, None, None, contingency)
                for mk, i, orders, contingency in _live_lists(user)]

    async def all_order_lists(p, user):
        """`GET allOrderList`: the user's lists, live and ended, from the history; `fromId` a list id (and then
        no time window), `startTime`/`endTime` on the list's creation time."""
        kw = {"from_id": int_param(p, "fromId", None, 0, 2**62),
              "start_ts": int_param(p, "startTime", None, 0, 2**62), "end_ts": int_param(p, "endTime", None, 0, 2**62),
              "limit": int_param(p, "limit", 500, 1, 1000)}
        if kw["from_id"] is not None and (kw["start_ts"] is not None or kw["end_ts"] is not None):
            raise BError(-1128, "Combination of optional parameters invalid: fromId with startTime or endTime.")
        if kw["start_ts"] is not None and kw["end_ts"] is not None and kw["start_ts"] > kw["end_ts"]:
            raise BError(-1128, "Combination of optional parameters invalid: startTime after endTime.")
        rows = await _history(lambda s: s.order_lists(user, **kw))
        return [_history_list_row(g) for g in rows]

    async def cancel_order_list(p, user):
        m = market_of(p.get("symbol"))
        lid = _list_id(p)
        live = [x for x in _live_lists(user, m) if x[1] == lid]
        if not live:
            raise BError(-2011, "Order list does not exist.")
        _, _, orders, contingency = live[0]
        out = await run(C.CancelOrder(account=user, order_id=orders[-1][0]))
        if not out.ok:
            raise BError(-2011, "Order list does not exist.")
        reports = []
        for oid, cid in orders:
            r = {"symbol": m.symbol.replace("-", ""), "origClientOrderId": cid, "orderId": oid, "orderListId": lid,
                 "clientOrderId": cid, "status": "CANCELED", "transactTime": int(time.time() * 1000)}
            reports.append(r)
        row = _list_row(m, lid, orders, True, None, reports, contingency)
        row["listStatusType"] = "ALL_DONE"
        return row

    S = frozenset
    E = endpoint
    order_params = S({"symbol", "side", "type", "timeInForce", "quantity", "quoteOrderQty", "price",
                      "newClientOrderId", "stopPrice", "icebergQty", "newOrderRespType", "selfTradePreventionMode",
                      "strategyId", "strategyType"})
    query_params = S({"symbol", "orderId", "origClientOrderId"})
    cancel_params = S({"symbol", "orderId", "origClientOrderId", "newClientOrderId", "cancelRestrictions"})

    return [
        Route("/ping", E(ping), methods=["GET"]),
        Route("/time", E(server_time), methods=["GET"]),
        Route("/exchangeInfo", E(exchange_info, None, S({"symbol", "symbols", "permissions", "showPermissionSets",
                                                         "symbolStatus"})), methods=["GET"]),
        Route("/depth", E(depth, None, S({"symbol", "limit"}), cache=True), methods=["GET"]),
        Route("/trades", E(trades, None, S({"symbol", "limit"}), cache=True), methods=["GET"]),
        Route("/aggTrades", E(agg_trades, None, S({"symbol", "fromId", "startTime", "endTime", "limit"}),
                              cache=True),
              methods=["GET"]),
        Route("/klines", E(klines, None, S({"symbol", "interval", "startTime", "endTime", "limit", "timeZone"}),
                           cache=True),
              methods=["GET"]),
        Route("/historicalTrades", E(historical_trades, "key", S({"symbol", "limit", "fromId"})), methods=["GET"]),
        Route("/avgPrice", E(avg_price, None, S({"symbol"})), methods=["GET"]),
        Route("/ticker", E(rolling_ticker, None, S({"symbol", "symbols", "windowSize", "type"})), methods=["GET"]),
        Route("/ticker/24hr", E(ticker_24hr, None, S({"symbol", "symbols", "type"})), methods=["GET"]),
        Route("/ticker/price", E(ticker_price, None, S({"symbol", "symbols"}), cache=True), methods=["GET"]),
        Route("/ticker/bookTicker", E(book_ticker, None, S({"symbol", "symbols"}), cache=True), methods=["GET"]),
        Route("/order", E(new_order, "trade", order_params), methods=["POST"]),
        Route("/order/test", E(test_order, "trade", order_params | {"computeCommissionRates"}), methods=["POST"]),
        Route("/order/cancelReplace", E(cancel_replace, "trade", order_params | {
            "cancelReplaceMode", "cancelOrderId", "cancelOrigClientOrderId", "cancelNewClientOrderId"}),
            methods=["POST"]),
        Route("/order", E(query_order, "read", query_params), methods=["GET"]),
        Route("/order", E(cancel_order, "trade", cancel_params), methods=["DELETE"]),
        Route("/openOrders", E(open_orders, "read", S({"symbol"})), methods=["GET"]),
        Route("/openOrders", E(cancel_open_orders, "trade", S({"symbol"})), methods=["DELETE"]),
        Route("/allOrders", E(all_orders, "read", S({"symbol", "orderId", "startTime", "endTime", "limit"})),
              methods=["GET"]),
        Route("/orderList/oco", E(new_oco_list, "trade", S({
            "symbol", "listClientOrderId", "side", "quantity", "newOrderRespType", "selfTradePreventionMode"}
            | {f"{pos}{f}" for pos in ("above", "below") for f in (
                "Type", "ClientOrderId", "IcebergQty", "Price", "StopPrice", "TrailingDelta", "TimeInForce",
                "StrategyId", "StrategyType")})), methods=["POST"]),
        Route("/order/oco", E(new_oco_legacy, "trade", S({
            "symbol", "listClientOrderId", "side", "quantity", "limitClientOrderId", "price", "limitIcebergQty",
            "stopClientOrderId", "stopPrice", "stopLimitPrice", "stopIcebergQty", "stopLimitTimeInForce",
            "trailingDelta", "newOrderRespType", "selfTradePreventionMode"})), methods=["POST"]),
        Route("/orderList", E(query_order_list, "read", S({"orderListId", "origClientOrderId"})), methods=["GET"]),
        Route("/orderList", E(cancel_order_list, "trade", S({"symbol", "orderListId", "listClientOrderId",
                                                             "newClientOrderId"})), methods=["DELETE"]),
        Route("/openOrderList", E(open_order_lists, "read", S()), methods=["GET"]),
        Route("/allOrderList", E(all_order_lists, "read", S({"fromId", "startTime", "endTime", "limit"})),
              methods=["GET"]),
        Route("/account", E(account, "read", S({"omitZeroBalances"})), methods=["GET"]),
        Route("/myTrades", E(my_trades, "read", S({"symbol", "orderId", "startTime", "endTime", "fromId", "limit"})),
              methods=["GET"]),
        *user_stream_routes,
    ]


def _trade_row(t: dict) -> dict:
    return {"id": t["id"], "price": _fmt(t["price"]), "qty": _fmt(t["qty"]), "quoteQty": _fmt(t["price"] * t["qty"]),
            "time": t["ts"], "isBuyerMaker": t["taker_side"] == "sell", "isBestMatch": True}


def _round_price(d: Decimal, m) -> Decimal:
    """An average price: to 8 decimals, or the tick's precision when finer."""
    step = min(m.tick_size, Decimal("0.00000001"))
    return d.quantize(step)


def _ip_allowed(ip: str, allow: list[str]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in ipaddress.ip_network(n, strict=False) for n in allow)


def _window(raw: str) -> int | None:
    """A rolling ticker's windowSize (1m..59m, 1h..23h, 1d..7d) in ms, or None."""
    m = _WINDOW.fullmatch(raw)
    if m is None:
        return None
    n, unit = int(m.group(1)), m.group(2)
    top, ms = {"m": (59, 60_000), "h": (23, 3_600_000), "d": (7, 86_400_000)}[unit]
    return n * ms if 1 <= n <= top else None


#: The fields of a `type=MINI` ticker.
_MINI = ("symbol", "openPrice", "highPrice", "lowPrice", "lastPrice", "volume", "quoteVolume", "openTime", "closeTime",
         "firstId", "lastId", "count")
_WINDOW = re.compile(r"([0-9]{1,2})([mhd])")


def _strip_signature(raw: bytes) -> bytes:
    """The bytes that were signed: `raw` without its `signature=` parameter."""
    if b"signature=" not in raw:
        return raw
    return b"&".join(p for p in raw.split(b"&") if not p.startswith(b"signature="))


def _from_api_error(e: ApiError) -> BError:
    if e.status == 429:
        return BError(-1003, f"Too many requests; {e.message}.", 429, e.headers)
    if e.status == 413 or e.status == 414:
        return BError(-1101, f"Too many parameters sent for this endpoint ({e.message}).", e.status)
    if e.status == 503:
        return BError(-1016, "This service is no longer available." if e.code == "UNAVAILABLE"
                      else f"Service unavailable: {e.message}.", 503)
    return BError(-1000, e.message, e.status)


def _order_reject(err: dict) -> BError:
    reason, msg = err["reason"], err["message"]
    if reason == "OFF_TICK_GRID" or reason == "PRICE_OUT_OF_BAND" or reason == "INVALID_PRICE":
        return BError(-1013, f"Filter failure: PRICE_FILTER ({msg})")
    if reason in ("OFF_LOT_GRID", "BELOW_MIN_QUANTITY", "INVALID_QUANTITY"):
        return BError(-1013, f"Filter failure: LOT_SIZE ({msg})")
    if reason == "BELOW_MIN_NOTIONAL":
        return BError(-1013, f"Filter failure: NOTIONAL ({msg})")
    if reason == "INSUFFICIENT_FUNDS":
        return BError(-2010, "Account has insufficient balance for requested action.")
    if reason == "WOULD_TAKE":
        return BError(-2010, "Order would immediately match and take.")
    if reason == "MARKET_NOT_TRADING":
        return BError(-2010, "Market is closed.")
    if reason == "UNKNOWN_MARKET":
        return BError(-1121, "Invalid symbol.")
    if reason == "DUPLICATE_ID":
        return BError(-2010, "Duplicate order sent.")
    if reason == "INVALID_BRACKET":
        return BError(-2010, "The relationship of the prices for the orders is not correct.")
    return BError(-2010, f"New order rejected: {msg}")


_ = DEFAULT_RECV_WINDOW, order_owner
