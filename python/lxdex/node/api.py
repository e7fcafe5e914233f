"""The public REST API: the native API under `/api/v1`, a Binance-compatible
subset under `/api/v3` (`lxdex.node.binance`) and its OpenAPI document at
`/openapi.json` (`lxdex.node.openapi`). `docs/api.md` describes all of it.

Like every gateway, the API never touches the exchange: a state change is a
`lxdex.commands` value queued with `node.submit_to`, answered once the
command is durable and applied; reads take `node.lock` for the time of one
query (order and trade history come from the history store, outside it).

Authentication (native API):

- signed requests carry `X-LX-APIKEY`, `X-LX-TIMESTAMP` (ms),
  `X-LX-SIGNATURE` and optionally `X-LX-RECV-WINDOW` (ms, default 5000);
  the signature is the lowercase hex `HMAC-SHA256(secret, payload)` with
  `payload = timestamp + "\\n" + METHOD + "\\n" + path + "\\n" + query + "\\n" + body`
  (the raw query string without `?`, the raw body bytes), verified with
  `Accounts.verify_request` (key, IP allow-list, permission). The account is
  always the key's user. A signature is accepted once (a replayed state
  change is refused);
- admin requests carry `Authorization: Bearer <admin_token>`.

Every request is counted against a token bucket of its client IP, and a
signed one also against its API key's (the `[api]` table of the config);
an empty bucket answers 429 with `Retry-After`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import threading
import time
from collections import OrderedDict
from decimal import Decimal
from typing import Annotated, Any, Awaitable, Callable

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from .. import commands as C
from ..accounts import AccountError, AuthError, AuthFailure, generate_key_material
from ..enums import EventKind, Reason
from ..exchange import check_client_id
from .fasthttp import FastRequest, fast_endpoint
from .http import JSON, _LoopSink, _json, _num, _order_reply, msgspec_field
from .server import Node, NodeStopped

log = logging.getLogger("lxdex.node.api")

DEFAULT_RECV_WINDOW = 5000
#: How far ahead of the server's clock a request's timestamp may be (ms).
MAX_CLOCK_AHEAD = 1000
PERMISSIONS = ("read", "trade", "withdraw")


class ApiError(Exception):
    """A request the API refuses; rendered by each API in its own shape."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers or {}


# -- rate limits --------------------------------------------------------------------------------------------------


class TokenBuckets:
    """One token bucket per key (an IP, an API key): `rate` tokens a second
    up to `burst`. `take(key)` spends a token and returns 0, or returns the
    seconds until one is there (nothing spent). Thread-safe; at most
    `max_keys` buckets are kept (the least recently used go first: a
    forgotten bucket is a full one)."""

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.max_keys, self.clock = float(rate), float(burst), max_keys, clock
        self._b: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str, cost: float = 1.0) -> float:
        now = self.clock()
        with self._lock:
            tokens, last = self._b.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= cost:
                tokens -= cost
                wait = 0.0
            else:
                wait = (cost - tokens) / self.rate
            self._b[key] = (tokens, now)
            if len(self._b) > self.max_keys:
                self._b.popitem(last=False)
        return wait


# -- the context both APIs share ----------------------------------------------------------------------------------


class ApiContext:
    """What the API handlers need of the node: command submission, locked
    reads, the history store, authentication and rate limits."""

    def __init__(self, node: Node, history=None) -> None:
        self.node = node
        self.cfg = node.config.api
        self.max_body = node.config.max_body_bytes
        self._history = history
        self.ip_buckets = TokenBuckets(self.cfg.rate_per_ip, self.cfg.burst_per_ip)
        self.key_buckets = TokenBuckets(self.cfg.rate_per_key, self.cfg.burst_per_key)
        self._sinks: dict = {}
        self._seen: OrderedDict[str, float] = OrderedDict()  # signatures of state changes, for replay refusal
        self._seen_lock = threading.Lock()
        self._replies: dict = {}  # (path, query string) -> reply bytes, every one built at exchange seq _replies_seq
        self._replies_seq = -1

    @property
    def history(self):
        return self._history if self._history is not None else getattr(self.node, "history", None)

    # -- commands and reads --
    async def run(self, cmd: C.Command):
        """The command's Outcome once durable and applied (ApiError 503 if the node is not taking commands)."""
        loop = asyncio.get_running_loop()
        sink = self._sinks.get(loop)
        if sink is None:
            sink = self._sinks[loop] = _LoopSink(loop)
        fut = loop.create_future()
        if not self.node.submit_to(cmd, sink, fut):
            raise ApiError(503, "UNAVAILABLE", "node is not accepting commands")
        out = await fut
        if isinstance(out, NodeStopped):
            raise ApiError(503, "UNAVAILABLE", str(out))
        return out

    MAX_CACHED_REPLIES = 4096

    def cached_reply(self, request, build: Callable[[], bytes]) -> bytes:
        """`build()` (a public market-data reply, a function of the exchange
        state only), or the bytes it gave for the same path and query since
        the exchange last changed. The state's version is its last applied
        sequence number: the entries all belong to one version and go when
        it moves on. (A reply built while a batch was applied shows that
        batch or not; either way it is stored under the older version and
        never served after it.) Off with `[api] reply_cache = false`."""
        if not self.cfg.reply_cache:
            return build()
        seq = self.node.exchange.last_seq
        if seq != self._replies_seq:
            self._replies.clear()
            self._replies_seq = seq
        key = (request.url.path, request.scope.get("query_string", b""))
        hit = self._replies.get(key)
        if hit is None:
            hit = build()
            if len(self._replies) < self.MAX_CACHED_REPLIES:
                self._replies[key] = hit
        return hit

    def read(self, fn: Callable[..., Any], *args):
        """`fn(exchange, *args)` under the node's lock."""
        with self.node.lock:
            return fn(self.node.exchange, *args)

    async def history_query(self, fn: Callable[..., Any], *args, **kw):
        """A history store query on a worker thread, once the store holds
        every command the node had applied when the request arrived (waits at
        most `history_wait_s`; ApiError 503 without a store or if it failed)."""
        store = self.history
        if store is None:
            raise ApiError(503, "HISTORY_UNAVAILABLE", "this node keeps no history store")
        target = self.node.exchange.last_seq

        def call():
            store.wait_for(target, self.cfg.history_wait_s)
            if store.failed is not None and store.last_seq < target:
                raise ApiError(503, "HISTORY_UNAVAILABLE", f"the history store failed: {store.failed}")
            try:
                return fn(store, *args, **kw)
            except ValueError as e:
                msg = str(e)
                field = msg.split(":", 1)[0] if ":" in msg and " " not in msg.split(":", 1)[0] else None
                if field == "market" and "no market" in msg:
                    return []  # a market nobody has traded on yet: no history
                raise ApiError(400, "INVALID_REQUEST", msg, field) from None

        return await run_in_threadpool(call)

    # -- limits --
    @staticmethod
    def client_ip(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def limit_ip(self, request: Request) -> None:
        wait = self.ip_buckets.take(self.client_ip(request))
        if wait:
            raise _too_many("IP", wait)

    def limit_key(self, api_key: str) -> None:
        wait = self.key_buckets.take(api_key)
        if wait:
            raise _too_many("API key", wait)

    async def body(self, request: Request) -> bytes:
        n = request.headers.get("content-length")
        if n is None and "transfer-encoding" not in request.headers:
            return b""  # no body (a GET): do not wait on the ASGI receive channel
        if n is not None and (not n.isdigit() or int(n) > self.max_body):
            raise ApiError(413, "TOO_LARGE", f"request body over {self.max_body} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise ApiError(413, "TOO_LARGE", f"request body over {self.max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def check_query(self, request: Request) -> bytes:
        raw = request.scope.get("query_string", b"")
        if len(raw) > self.cfg.max_query_bytes:
            raise ApiError(414, "TOO_LARGE", f"query string over {self.cfg.max_query_bytes} bytes")
        return raw

    # -- authentication --
    def check_timestamp(self, ts_raw: str | None, window_raw: str | None, field_ts: str, field_window: str) -> None:
        if ts_raw is None or not ts_raw.isdigit() or len(ts_raw) > 15:
            raise ApiError(401, "INVALID_TIMESTAMP", f"{field_ts}: required, milliseconds since the epoch", field_ts)
        window = DEFAULT_RECV_WINDOW
        if window_raw is not None:
            if not window_raw.isdigit() or not 0 < int(window_raw) <= self.cfg.recv_window_max_ms:
                raise ApiError(400, "INVALID_RECV_WINDOW",
                               f"{field_window}: must be an integer in 1..{self.cfg.recv_window_max_ms}", field_window)
            window = int(window_raw)
        now = int(time.time() * 1000)
        ts = int(ts_raw)
        if ts > now + MAX_CLOCK_AHEAD:
            raise ApiError(401, "INVALID_TIMESTAMP", f"{field_ts}: {ts} is more than {MAX_CLOCK_AHEAD} ms ahead of "
                           f"the server's time {now}", field_ts)
        if now - ts > window:
            raise ApiError(401, "INVALID_TIMESTAMP", f"{field_ts}: {ts} is outside the receive window of {window} ms "
                           f"(server time {now})", field_ts)

    def verify(self, api_key: str | None, payload: bytes, signature: str | None, ip: str, permission: str) -> int:
        """The key's user id; ApiError 401/403 naming what failed."""
        if not api_key:
            raise ApiError(401, "UNAUTHORIZED", "api_key: this endpoint needs a signed request (X-LX-APIKEY)",
                           "api_key")
        if not signature:
            raise ApiError(401, "INVALID_SIGNATURE", "signature: missing", "signature")
        try:
            with self.node.lock:
                return self.node.exchange.accounts.verify_request(api_key, payload, signature, ip, permission)
        except AuthError as e:
            status = 403 if e.reason in (AuthFailure.IP_NOT_ALLOWED, AuthFailure.PERMISSION_DENIED) else 401
            code = {AuthFailure.UNKNOWN_KEY: "INVALID_API_KEY", AuthFailure.REVOKED: "INVALID_API_KEY",
                    AuthFailure.BAD_SIGNATURE: "INVALID_SIGNATURE", AuthFailure.IP_NOT_ALLOWED: "IP_NOT_ALLOWED",
                    AuthFailure.PERMISSION_DENIED: "PERMISSION_DENIED"}[e.reason]
            field = "permission" if e.field == "required_permission" else e.field
            msg = str(e)
            if e.field == "required_permission":
                msg = f"permission: {permission!r} is needed for this endpoint; {msg.split(': ', 1)[1]}"
            raise ApiError(status, code, msg, field) from None

    def once(self, signature: str, window_ms: int) -> None:
        """Refuses a signature seen before within its window (replay of a state change)."""
        now = time.monotonic()
        with self._seen_lock:
            while self._seen:
                sig, exp = next(iter(self._seen.items()))
                if exp > now and len(self._seen) < 1_000_000:
                    break
                self._seen.popitem(last=False)
            if signature in self._seen:
                raise ApiError(401, "REPLAYED", "signature: this signed request was already received", "signature")
            self._seen[signature] = now + window_ms / 1000 + MAX_CLOCK_AHEAD / 1000

    def check_admin(self, request: Request) -> None:
        token = self.node.config.admin_token
        if token is None:
            raise ApiError(403, "ADMIN_DISABLED", "admin endpoints are disabled (no admin_token in the config)")
        auth = request.headers.get("authorization", "")
        if not hmac.compare_digest(auth.encode(), f"Bearer {token}".encode()):
            raise ApiError(401, "UNAUTHORIZED", "authorization: admin endpoints need Authorization: Bearer "
                           "<admin_token>", "authorization")



def _too_many(what: str, wait: float) -> ApiError:
    secs = max(1, math.ceil(wait))
    return ApiError(429, "RATE_LIMITED", f"too many requests for this {what}; retry after {secs} s",
                    headers={"Retry-After": str(secs)})


# -- shared views of the exchange state ---------------------------------------------------------------------------


def market_view(m) -> dict:
    return {"market": m.symbol, "base": m.base.symbol, "quote": m.quote.symbol, "tick_size": m.tick_size,
            "lot_size": m.lot_size, "maker_bps": m.maker_bps, "taker_bps": m.taker_bps,
            "base_decimals": m.base.decimals, "quote_decimals": m.quote.decimals}


def balances_view(ex, account: int) -> list[dict]:
    assets = sorted(ex._assets.values(), key=lambda a: a.id)
    have = {a: (av, h) for a, av, h in ex.core.balances(account)}
    out = []
    for a in assets:
        av, h = have.get(a.id, (0, 0))
        out.append({"asset": a.symbol, "available": f"{Decimal(av).scaleb(-a.decimals):f}",
                    "held": f"{Decimal(h).scaleb(-a.decimals):f}"})
    return out


def ticker_view(ex, m) -> dict:
    t = ex.ticker(m.symbol)
    bids, asks = ex.depth(m.symbol, 1)
    d = {"market": m.symbol, "open": None, "high": None, "low": None, "last": None, "volume": Decimal(0),
         "quote_volume": Decimal(0), "trades": 0, "change": None, "change_pct": None}
    if t is not None:
        d.update(t)
    d["best_bid"] = bids[0][0] if bids else None
    d["best_bid_qty"] = bids[0][1] if bids else None
    d["best_ask"] = asks[0][0] if asks else None
    d["best_ask_qty"] = asks[0][1] if asks else None
    return d


_LIVE_STATUS = {"resting": None, "pending": "pending_trigger", "inactive": "pending_trigger"}


def open_orders_view(ex, account: int, market: str | None = None) -> list[dict]:
    """The account's open orders from the core (the live truth)."""
    out = []
    for o in ex.open_orders(account):
        if market is not None and o["market"] != market:
            continue
        row = {"order_id": o["order_id"], "market": o["market"], "side": o["side"],
               "status": "open" if o["status"] == "resting" else "pending_trigger",
               "price": o["price"], "remaining_qty": o["qty"]}
        cid = ex.client_order_id(o["order_id"])
        if cid is not None:
            row["client_order_id"] = cid
        if o["status"] == "resting":
            row["visible_qty"] = o["visible_qty"]
        else:
            row["type"] = o["order_type"]
            row["trigger_price"] = o["trigger_price"]
        if "order_list_id" in o:
            row["order_list_id"] = o["order_list_id"]
        out.append(row)
    return out


def order_owner(ex, order_id: int) -> int | None:
    hold = ex.core.order_hold(order_id)
    return None if hold is None else hold[0]


def outcome_error(out) -> ApiError:
    e = out.error
    reason = e["reason"]
    status = 404 if reason in ("UNKNOWN_MARKET", "UNKNOWN_ORDER", "UNKNOWN_ACCOUNT", "UNKNOWN_ASSET") else 400
    if reason == "INSUFFICIENT_FUNDS":
        status = 400
    return ApiError(status, reason, e["message"], e.get("field"))


def cancelled_ids(events) -> list[int]:
    return [e.order_id for e in events if e.kind == EventKind.CANCELLED]


# -- the native API (/api/v1) -------------------------------------------------------------------------------------


class _Req:
    """A request as a handler sees it: the authenticated user (None for
    public and admin endpoints), the body and the query parameters."""

    __slots__ = ("request", "user", "body", "perms")

    def __init__(self, request: Request, user: int | None, body: bytes) -> None:
        self.request, self.user, self.body = request, user, body

    @property
    def path(self) -> dict:
        return self.request.path_params

    def q_str(self, name: str, default: str | None = None, choices: tuple | None = None) -> str | None:
        v = self.request.query_params.get(name)
        if v is None:
            return default
        if choices is not None and v not in choices:
            raise ApiError(400, "INVALID_REQUEST", f"{name}: {v!r} is not one of {', '.join(choices)}", name)
        return v

    def q_int(self, name: str, default: int | None, lo: int, hi: int) -> int | None:
        raw = self.request.query_params.get(name)
        if raw is None:
            return default
        if not raw.isdigit() or len(raw) > 19 or not lo <= int(raw) <= hi:
            raise ApiError(400, "INVALID_REQUEST", f"{name}: {raw!r} is not an integer in {lo}..{hi}", name)
        return int(raw)

    def q_bool(self, name: str, default: bool) -> bool:
        raw = self.request.query_params.get(name)
        if raw is None:
            return default
        if raw not in ("true", "false"):
            raise ApiError(400, "INVALID_REQUEST", f"{name}: {raw!r} is not true or false", name)
        return raw == "true"

    def decode(self, decoder: msgspec.json.Decoder):
        if not self.body:
            raise ApiError(400, "INVALID_JSON", "body: a JSON object is required", "body")
        try:
            return decoder.decode(self.body)
        except msgspec.ValidationError as e:
            raise _invalid(e, "INVALID_REQUEST") from None
        except msgspec.DecodeError as e:
            raise _invalid(e, "INVALID_JSON") from None


def _invalid(e: Exception, code: str) -> ApiError:
    msg = str(e)
    return ApiError(400, code, msg, msgspec_field(msg))


Number = int | float | str
I63 = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
U32 = Annotated[int, msgspec.Meta(ge=0, lt=2**32)]

_Struct = dict(forbid_unknown_fields=True)


class OrderIn(msgspec.Struct, **_Struct):
    """`qty`, or for a market order `quote_qty` (an amount of the quote asset to spend on a buy, fee
    included, or to take in for a sell): exactly one."""

    market: str
    side: str
    qty: Number | None = None
    price: Number | None = None
    type: str = "limit"
    tif: str | None = None
    post_only: bool = False
    stp: str = "none"
    trigger_price: Number | None = None
    display_qty: Number | None = None
    expire_ts: I63 = 0
    client_order_id: str | None = None
    quote_qty: Number | None = None


class LegIn(msgspec.Struct, **_Struct):
    trigger_price: Number
    price: Number | None = None
    client_order_id: str | None = None


class OrderListIn(msgspec.Struct, **_Struct):
    """An OCO pair (`type` "oco": two legs on `side`) or a bracket ("bracket": an entry on `side`, limit at
    `price` or market without one, with exits on the other side)."""

    type: str
    market: str
    side: str
    qty: Number
    take_profit: LegIn
    stop_loss: LegIn
    price: Number | None = None
    tif: str | None = None
    post_only: bool = False
    stp: str = "none"
    expire_ts: I63 = 0
    client_order_id: str | None = None


class AmendIn(msgspec.Struct, **_Struct):
    price: Number | None = None
    qty: Number | None = None


class MoneyIn(msgspec.Struct, **_Struct):
    asset: str
    amount: Number


class AdminMoneyIn(msgspec.Struct, **_Struct):
    account: U32
    asset: str
    amount: Number


class UserIn(msgspec.Struct, **_Struct):
    display_name: str
    email: str
    country: str = "US"


class KeyIn(msgspec.Struct, **_Struct):
    permissions: list[str]
    ip_allow: list[str] | None = None
    label: str = ""


class AlertIn(msgspec.Struct, **_Struct):
    market: str
    condition: str
    price: Number


class MarkReadIn(msgspec.Struct, **_Struct):
    notification_ids: list[Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]] | None = None


_dec = {t: msgspec.json.Decoder(t) for t in (OrderIn, OrderListIn, AmendIn, MoneyIn, AdminMoneyIn, UserIn, KeyIn, AlertIn,
                                           MarkReadIn)}


def _number(v: Number | None, field: str) -> str | None:
    try:
        return _num(v)
    except ValueError as e:
        raise ApiError(400, "INVALID_REQUEST", f"{field}: {e}", field) from None


class _NotCached(Exception):
    """A reply that is not the plain bytes of a success (kept out of the cache)."""

    def __init__(self, response: Response) -> None:
        self.response = response


def _bytes_or_raise(res: bytes | Response) -> bytes:
    if type(res) is not bytes:
        raise _NotCached(res)
    return res


def _error_response(e: ApiError) -> JSON:
    body = {"code": e.code, "message": e.message}
    if e.field:
        body["field"] = e.field
    return JSON({"error": body}, status_code=e.status, headers=e.headers or None)


Handler = Callable[[_Req], Awaitable[Any] | Any]


def api_endpoint(ctx: ApiContext, fn: Callable, call: Callable[[Any, bytes, bytes], Any],
                 failed: Callable[[Any, Exception], Response], cache: bool = False,
                 too_large: Response | None = None):
    """The Starlette endpoint of an API handler `fn`, run as
    `call(request, query string, body)` (the API's own checks, then `fn`)
    after the per-IP rate limit and the query-size check; `failed` turns
    what it raised into the API's error reply. A plain (not async) `fn` is
    also a fast handler of the HTTP protocol (`fasthttp`) with the same
    checks in the same order; with `cache`, its replies to body-less
    requests are `ApiContext.cached_reply`s (public replies that depend on
    the exchange state only). `too_large`: the API's reply to a body over
    the limit on the fast path."""
    if not asyncio.iscoroutinefunction(fn):
        def build(request, body: bytes) -> bytes | Response:
            result = call(request, ctx.check_query(request), body)
            return result if isinstance(result, Response) else _json.encode(result)

        def fast(request: FastRequest):
            try:
                ctx.limit_ip(request)
                if cache and not request.body:
                    ctx.check_query(request)
                    return ctx.cached_reply(request, lambda: _bytes_or_raise(build(request, b"")))
                return build(request, request.body)
            except _NotCached as e:
                return e.response
            except Exception as e:
                return failed(request, e)

        fast.too_large = too_large  # type: ignore[attr-defined]
        return fast_endpoint(fast, ctx.max_body)

    async def handler(request: Request) -> Response:
        try:
            ctx.limit_ip(request)
            query = ctx.check_query(request)
            body = await ctx.body(request)
            result = await call(request, query, body)
            return result if isinstance(result, Response) else JSON(result)
        except Exception as e:
            return failed(request, e)

    return handler


def native_routes(ctx: ApiContext) -> list:
    """The `/api/v1` routes."""
    node = ctx.node

    def endpoint(fn: Handler, auth: str | None = None, cache: bool = False):
        """auth: None (public), "admin", or a permission (signed). A plain
        (not async) `fn` is also served on the HTTP protocol's fast path
        (`fasthttp`), with the same checks in the same order. `cache`: a
        public reply that depends on the exchange state only
        (`ApiContext.cached_reply`)."""

        def authorized(request, query: bytes, body: bytes) -> _Req:
            user = None
            if auth == "admin":
                ctx.check_admin(request)
            elif auth is not None:
                user = _authenticate(request, query, body, auth)
            return _Req(request, user, body)

        def failed(request, e: Exception) -> Response:
            if isinstance(e, ApiError):
                return _error_response(e)
            log.error("%s %s failed", request.method, request.url.path, exc_info=e)
            return _error_response(ApiError(500, "INTERNAL", "internal error (logged)"))

        return api_endpoint(ctx, fn, lambda request, query, body: fn(authorized(request, query, body)), failed,
                            cache)

    def _authenticate(request: Request, query: bytes, body: bytes, permission: str) -> int:
        h = request.headers
        api_key = h.get("x-lx-apikey")
        ts, window = h.get("x-lx-timestamp"), h.get("x-lx-recv-window")
        sig = h.get("x-lx-signature")
        if not api_key:
            raise ApiError(401, "UNAUTHORIZED", "api_key: this endpoint needs a signed request (X-LX-APIKEY)",
                           "api_key")
        ctx.check_timestamp(ts, window, "timestamp", "recv_window")
        payload = b"\n".join([ts.encode(), request.method.encode(), request.url.path.encode(), query, body])
        user = ctx.verify(api_key, payload, sig, ctx.client_ip(request), permission)
        ctx.limit_key(api_key)
        if request.method != "GET":
            ctx.once(sig, int(window) if window else DEFAULT_RECV_WINDOW)
        return user

    def market_of(ex, symbol: str):
        m = ex._markets.get(symbol)
        if m is None:
            raise ApiError(404, "UNKNOWN_MARKET", f"market: no market {symbol!r}", "market")
        return m

    async def submit(cmd: C.Command):
        out = await ctx.run(cmd)
        if not out.ok:
            raise outcome_error(out)
        return out

    # -- public --
    def get_time(r: _Req):
        return {"server_time": int(time.time() * 1000)}

    def get_assets(r: _Req):
        return ctx.read(lambda ex: [{"asset": a.symbol, "decimals": a.decimals}
                                    for a in sorted(ex._assets.values(), key=lambda a: a.id)])

    def get_markets(r: _Req):
        return ctx.read(lambda ex: [market_view(m) for m in ex._market_by_id])

    def get_market(r: _Req):
        return ctx.read(lambda ex: market_view(market_of(ex, r.path["market"])))

    def get_depth(r: _Req):
        limit = r.q_int("limit", 100, 1, 5000)

        def f(ex):
            m = market_of(ex, r.path["market"])
            uid, bids, asks = ex.depth_snapshot(m.symbol, limit)
            return {"market": m.symbol, "last_update_id": uid, "bids": [list(lv) for lv in bids],
                    "asks": [list(lv) for lv in asks]}
        return ctx.read(f)

    def get_trades(r: _Req):
        limit = r.q_int("limit", 100, 1, 1000)
        return ctx.read(lambda ex: ex.trades(market_of(ex, r.path["market"]).symbol, limit))

    def get_candles(r: _Req):
        interval = r.q_str("interval", "1m", choices=INTERVALS)
        start = r.q_int("start_ts", 0, 0, 2**63 - 1)
        limit = r.q_int("limit", 500, 1, 1000)
        return ctx.read(lambda ex: ex.candles(market_of(ex, r.path["market"]).symbol, interval, start, limit))

    def get_tickers(r: _Req):
        return ctx.read(lambda ex: [ticker_view(ex, m) for m in ex._market_by_id])

    def get_ticker(r: _Req):
        return ctx.read(lambda ex: ticker_view(ex, market_of(ex, r.path["market"])))

    # -- account (signed) --
    def get_account(r: _Req):
        def f(ex):
            user = ex.accounts.user(r.user)
            return {**user, "balances": balances_view(ex, r.user),
                    "unread_notifications": ex.accounts.unread_count(r.user)}
        return ctx.read(f)

    def get_balances(r: _Req):
        return ctx.read(balances_view, r.user)

    async def post_order(r: _Req):
        o: OrderIn = r.decode(_dec[OrderIn])
        if o.client_order_id is not None:
            try:
                check_client_id(o.client_order_id, "client_order_id")
            except ValueError as e:
                raise ApiError(400, "INVALID_REQUEST", str(e), "client_order_id") from None
        if (o.qty is None) == (o.quote_qty is None):
            field = "qty" if o.qty is None else "quote_qty"
            raise ApiError(400, "INVALID_REQUEST", f"{field}: give qty, or quote_qty for a market order "
                                                   "(exactly one)", field)
        if o.quote_qty is not None and o.type != "market":
            raise ApiError(400, "INVALID_REQUEST", "quote_qty: only market orders are sized by a quote amount",
                           "quote_qty")
        ctx.read(market_of, o.market)
        cmd = C.PlaceOrder(account=r.user, market=o.market, side=o.side, qty=_number(o.qty, "qty"),
                           price=_number(o.price, "price"), order_type=o.type, tif=o.tif, stp=o.stp,
                           post_only=o.post_only, display_qty=_number(o.display_qty, "display_qty"),
                           trigger_price=_number(o.trigger_price, "trigger_price"), expire_ts=o.expire_ts,
                           client_id=o.client_order_id, quote_qty=_number(o.quote_qty, "quote_qty"))
        out = await ctx.run(cmd)
        if not out.ok:
            e = outcome_error(out)
            if e.code == "DUPLICATE_ID":
                e.field = "client_order_id"
            raise e
        m = node.exchange._markets[o.market]
        reply = _order_reply(out, m)
        reply["market"] = reply.pop("symbol")
        if o.client_order_id is not None:
            reply["client_order_id"] = o.client_order_id
        return reply

    async def post_order_list(r: _Req):
        o: OrderListIn = r.decode(_dec[OrderListIn])
        if o.type not in ("oco", "bracket"):
            raise ApiError(400, "INVALID_REQUEST", f"type: {o.type!r} must be oco or bracket", "type")
        for name, cid in (("client_order_id", o.client_order_id),
                          ("take_profit.client_order_id", o.take_profit.client_order_id),
                          ("stop_loss.client_order_id", o.stop_loss.client_order_id)):
            if cid is not None:
                try:
                    check_client_id(cid, name)
                except ValueError as e:
                    raise ApiError(400, "INVALID_REQUEST", str(e), name) from None
        ctx.read(market_of, o.market)
        tp, sl = o.take_profit, o.stop_loss
        legs = dict(tp_trigger=_number(tp.trigger_price, "take_profit.trigger_price"),
                    tp_price=_number(tp.price, "take_profit.price"),
                    sl_trigger=_number(sl.trigger_price, "stop_loss.trigger_price"),
                    sl_price=_number(sl.price, "stop_loss.price"), tp_client_id=tp.client_order_id,
                    sl_client_id=sl.client_order_id)
        qty = _number(o.qty, "qty")
        if o.type == "oco":
            for name in ("price", "tif", "client_order_id"):
                if getattr(o, name) is not None:
                    raise ApiError(400, "INVALID_REQUEST", f"{name}: an oco pair has no entry order", name)
            if o.post_only or o.expire_ts:
                raise ApiError(400, "INVALID_REQUEST", "post_only: an oco pair has no entry order", "post_only")
            cmd = C.PlaceOco(account=r.user, market=o.market, side=o.side, qty=qty, stp=o.stp, **legs)
        else:
            cmd = C.PlaceBracket(account=r.user, market=o.market, side=o.side, qty=qty,
                                 price=_number(o.price, "price"), tif=o.tif, stp=o.stp, post_only=o.post_only,
                                 expire_ts=o.expire_ts, client_id=o.client_order_id, **legs)
        out = await ctx.run(cmd)
        if not out.ok:
            raise outcome_error(out)
        lid = out.value["order_list_id"]
        return {"order_list_id": lid, "type": o.type, "seq": out.seq, "order_ids": out.value["order_ids"],
                "status": "executing" if ctx.read(lambda ex: ex.order_list(lid)) is not None else "done"}

    def _order_lists(ex, user: int) -> list[dict]:
        lists: dict[int, dict] = {}
        for o in open_orders_view(ex, user):
            lid = o.get("order_list_id")
            if lid is not None:
                g = lists.setdefault(lid, {"order_list_id": lid, **{k: v for k, v in ex.order_list(o["order_id"]).items()
                                                                    if k != "order_list_id"}, "orders": []})
                g["orders"].append(o)
        return [lists[k] for k in sorted(lists)]

    def _live_list(ex, lid: int) -> dict | None:
        """The live list `lid`, or None once it ended (an OCO's id is its take-profit leg's; a bracket's, its
        entry's, whose exits, the next two ids, outlive it in the list)."""
        for oid in (lid, lid + 1):
            link = ex.order_list(oid)
            if link is not None and link["order_list_id"] == lid:
                return link
        return None

    async def get_order_lists(r: _Req):
        status = r.q_str("status", "open", ("open", "all"))
        if status == "open":
            for name in ("market", "start_ts", "end_ts", "from_id", "limit"):
                if r.q_str(name) is not None:
                    raise ApiError(400, "INVALID_REQUEST", f"{name}: only with status=all (the history)", name)
            rows = ctx.read(lambda ex: _order_lists(ex, r.user))
            for g in rows:
                g["type"] = g.pop("contingency")
            return rows
        # Live and ended lists, from the history, paginated as GET /orders.
        kw = history_args(r)
        lists = await ctx.history_query(lambda s: s.order_lists(r.user, **kw))
        live = ctx.read(lambda ex: {g["order_list_id"] for g in lists if _live_list(ex, g["order_list_id"])})
        rows = []
        for g in lists:
            lid, bracket = g["order_list_id"], g["contingency"] == "bracket"
            rows.append({"order_list_id": lid, "type": g["contingency"], "market": g["market"],
                         "status": "executing" if lid in live else "done", "created_ts": g["created_ts"],
                         "updated_ts": g["updated_ts"], "entry": lid if bracket else None,
                         "tp": lid + 1 if bracket else lid, "sl": lid + 2 if bracket else lid + 1,
                         "orders": g["orders"]})
        return {"order_lists": rows,
                "next_from_id": (rows[-1]["order_list_id"] + 1) if len(rows) == kw["limit"] else None}

    async def delete_order_list(r: _Req):
        raw = r.path["order_list_id"]
        if not raw.isdigit() or len(raw) > 19:
            raise ApiError(400, "INVALID_REQUEST", f"order_list_id: {raw!r} is not an order list id", "order_list_id")
        lid = int(raw)

        def find(ex):
            link = _live_list(ex, lid)
            return link if link is not None and order_owner(ex, link["tp"]) == r.user else None

        link = ctx.read(find)
        if link is None:
            raise ApiError(404, "UNKNOWN_ORDER", f"order_list_id: you have no live order list {lid}", "order_list_id")
        # The exits first (one cancels both), then a bracket's live entry: two commands.
        out = await submit(C.CancelOrder(account=r.user, order_id=link["tp"]))
        cancelled = cancelled_ids(out.events)
        if link["entry"] is not None and ctx.read(lambda ex: order_owner(ex, link["entry"])) == r.user:
            out = await submit(C.CancelOrder(account=r.user, order_id=link["entry"]))
            cancelled += cancelled_ids(out.events)
        return {"order_list_id": lid, "seq": out.seq, "status": "cancelled", "cancelled": cancelled}

    def own_open_order(order_id: int, user: int) -> None:
        if ctx.read(order_owner, order_id) != user:
            raise ApiError(404, "UNKNOWN_ORDER", f"order_id: you have no open order {order_id}", "order_id")

    def path_order_id(r: _Req) -> int:
        raw = r.path["order_id"]
        if not raw.isdigit() or len(raw) > 19:
            raise ApiError(400, "INVALID_REQUEST", f"order_id: {raw!r} is not an order id", "order_id")
        return int(raw)

    async def delete_order(r: _Req):
        oid = path_order_id(r)
        own_open_order(oid, r.user)
        out = await submit(C.CancelOrder(account=r.user, order_id=oid))
        return {"order_id": oid, "seq": out.seq, "status": "cancelled"}

    async def patch_order(r: _Req):
        oid = path_order_id(r)
        a: AmendIn = r.decode(_dec[AmendIn])
        if a.price is None and a.qty is None:
            raise ApiError(400, "INVALID_REQUEST", "body: give price, qty or both", "price")
        own_open_order(oid, r.user)
        out = await submit(C.AmendOrder(account=r.user, order_id=oid, price=_number(a.price, "price"),
                                        qty=_number(a.qty, "qty")))
        live = ctx.read(lambda ex: [o for o in open_orders_view(ex, r.user) if o["order_id"] == oid])
        fills = [e for e in out.events if e.kind == EventKind.FILL and e.order_id == oid]
        return {"order_id": oid, "seq": out.seq, "status": "open" if live else "filled",
                "order": live[0] if live else None, "fills": len(fills)}

    async def delete_orders(r: _Req):
        market = r.q_str("market")
        if market is not None:
            ctx.read(market_of, market)
        out = await submit(C.CancelAll(account=r.user, market=market))
        return {"seq": out.seq, "cancelled": cancelled_ids(out.events)}

    def get_open_orders(r: _Req):
        market = r.q_str("market")
        if market is not None:
            ctx.read(market_of, market)
        return ctx.read(open_orders_view, r.user, market)

    def history_args(r: _Req) -> dict:
        kw = {"market": r.q_str("market"), "start_ts": r.q_int("start_ts", None, 0, 2**62),
              "end_ts": r.q_int("end_ts", None, 0, 2**62), "from_id": r.q_int("from_id", None, 0, 2**62),
              "limit": r.q_int("limit", 100, 1, 1000)}
        if kw["market"] is not None:
            ctx.read(market_of, kw["market"])
        if kw["start_ts"] is not None and kw["end_ts"] is not None and kw["start_ts"] > kw["end_ts"]:
            raise ApiError(400, "INVALID_REQUEST", "start_ts: after end_ts", "start_ts")
        return kw

    async def get_orders(r: _Req):
        kw = history_args(r)
        rows = await ctx.history_query(lambda s: s.orders(r.user, **kw))
        return {"orders": rows, "next_from_id": (rows[-1]["order_id"] + 1) if len(rows) == kw["limit"] else None}

    async def get_order(r: _Req):
        oid = path_order_id(r)
        row = None
        if ctx.history is not None:
            row = await ctx.history_query(lambda s: s.order(oid))
        if row is None or row["account"] != r.user:
            live = ctx.read(lambda ex: [o for o in open_orders_view(ex, r.user) if o["order_id"] == oid])
            if not live:
                raise ApiError(404, "UNKNOWN_ORDER", f"order_id: you have no order {oid}", "order_id")
            return live[0]
        return row

    async def get_fills(r: _Req):
        kw = history_args(r)
        rows = await ctx.history_query(lambda s: s.fills(r.user, **kw))
        return {"fills": rows, "next_from_id": (rows[-1]["id"] + 1) if len(rows) >= kw["limit"] else None}

    async def post_withdrawal(r: _Req):
        w: MoneyIn = r.decode(_dec[MoneyIn])
        out = await submit(C.Withdraw(account=r.user, asset=w.asset, amount=_number(w.amount, "amount")))
        return {"seq": out.seq, "account": r.user, "asset": w.asset,
                "amount": f"{Decimal(_number(w.amount, 'amount')):f}"}

    # -- API keys (signed: a key manages only keys whose permissions it holds itself) --
    def caller_permissions(r: _Req) -> set[str]:
        api_key = r.request.headers.get("x-lx-apikey")
        return set(ctx.read(lambda ex: ex.accounts.api_key(api_key))["permissions"])

    def get_keys(r: _Req):
        return ctx.read(lambda ex: ex.accounts.api_keys(r.user))

    async def create_key(user: int, k: KeyIn) -> dict:
        bad = [p for p in k.permissions if p not in PERMISSIONS]
        if bad or not k.permissions:
            raise ApiError(400, "INVALID_REQUEST", f"permissions: must be a non-empty list of {', '.join(PERMISSIONS)}",
                           "permissions")
        if not ctx.read(lambda ex: user in ex.accounts):
            raise ApiError(404, "UNKNOWN_ACCOUNT", f"user_id: no user {user}", "user_id")
        km = generate_key_material(node.master_key, user)
        out = await submit(C.CreateApiKey(user_id=user, api_key=km.api_key, sealed_secret=km.sealed_secret,
                                          permissions=list(k.permissions), ip_allow=k.ip_allow, label=k.label))
        info = ctx.read(lambda ex: ex.accounts.api_key(km.api_key))
        return {**info, "secret": out.value["secret"]}

    async def post_key(r: _Req):
        k: KeyIn = r.decode(_dec[KeyIn])
        missing = set(k.permissions) - caller_permissions(r)
        if missing & set(PERMISSIONS):
            raise ApiError(403, "PERMISSION_DENIED", f"permissions: this key cannot grant {', '.join(sorted(missing))} "
                           "(it does not hold it)", "permissions")
        return await create_key(r.user, k)

    async def delete_key(r: _Req):
        target = r.path["api_key"]
        try:
            info = ctx.read(lambda ex: ex.accounts.api_key(target))
        except AccountError:
            info = None
        if info is None or info["user_id"] != r.user:
            raise ApiError(404, "UNKNOWN_API_KEY", "api_key: you have no such API key", "api_key")
        missing = set(info["permissions"]) - caller_permissions(r)
        if missing:
            raise ApiError(403, "PERMISSION_DENIED", f"api_key: revoking a key with {', '.join(sorted(missing))} "
                           "needs a key that holds it", "api_key")
        out = await submit(C.RevokeApiKey(user_id=r.user, api_key=target))
        return {"seq": out.seq, "api_key": target, "revoked": True}

    # -- price alerts and notifications (signed, read) --
    def get_alerts(r: _Req):
        return ctx.read(lambda ex: ex.accounts.price_alerts(r.user))

    async def post_alert(r: _Req):
        a: AlertIn = r.decode(_dec[AlertIn])
        ctx.read(market_of, a.market)
        out = await submit(C.AddPriceAlert(user_id=r.user, market=a.market, condition=a.condition,
                                           price=_number(a.price, "price")))
        n = out.notices[0]
        return {"seq": out.seq, "alert_id": n["alert_id"], "market": n["market"], "condition": n["condition"],
                "price": n["price"]}

    async def delete_alert(r: _Req):
        raw = r.path["alert_id"]
        if not raw.isdigit() or len(raw) > 18 or int(raw) < 1:
            raise ApiError(400, "INVALID_REQUEST", f"alert_id: {raw!r} is not an alert id", "alert_id")
        aid = int(raw)
        if not any(a["alert_id"] == aid for a in ctx.read(lambda ex: ex.accounts.price_alerts(r.user))):
            raise ApiError(404, "UNKNOWN_ALERT", f"alert_id: you have no active price alert {aid}", "alert_id")
        out = await submit(C.CancelPriceAlert(user_id=r.user, alert_id=aid))
        return {"seq": out.seq, "alert_id": aid, "cancelled": True}

    def get_notifications(r: _Req):
        unread = r.q_bool("unread_only", False)
        limit = r.q_int("limit", 100, 1, 1000)
        return ctx.read(lambda ex: ex.accounts.notifications(r.user, unread_only=unread, limit=limit))

    async def post_mark_read(r: _Req):
        m: MarkReadIn = r.decode(_dec[MarkReadIn]) if r.body else MarkReadIn()
        out = await submit(C.MarkRead(user_id=r.user, notification_ids=m.notification_ids))
        changed = out.notices[0]["notification_ids"] if out.notices else []
        return {"seq": out.seq, "marked_read": changed}

    # -- admin (bearer token) --
    async def admin_post_user(r: _Req):
        u: UserIn = r.decode(_dec[UserIn])
        out = await submit(C.CreateUser(profile={"display_name": u.display_name, "email": u.email,
                                                 "country": u.country}))
        return {"seq": out.seq, **ctx.read(lambda ex: ex.accounts.user(out.value["user_id"]))}

    def path_user(r: _Req) -> int:
        raw = r.path["user_id"]
        if not raw.isdigit() or len(raw) > 10:
            raise ApiError(400, "INVALID_REQUEST", f"user_id: {raw!r} is not a user id", "user_id")
        uid = int(raw)
        if not ctx.read(lambda ex: uid in ex.accounts):
            raise ApiError(404, "UNKNOWN_ACCOUNT", f"user_id: no user {uid}", "user_id")
        return uid

    def admin_get_user(r: _Req):
        uid = path_user(r)
        return ctx.read(lambda ex: {**ex.accounts.user(uid), "balances": balances_view(ex, uid),
                                    "api_keys": ex.accounts.api_keys(uid, include_revoked=True)})

    async def admin_post_key(r: _Req):
        uid = path_user(r)
        return await create_key(uid, r.decode(_dec[KeyIn]))

    def admin_money(cls):
        async def f(r: _Req):
            m: AdminMoneyIn = r.decode(_dec[AdminMoneyIn])
            if m.account >= ctx.read(lambda ex: ex.core.account_count):
                raise ApiError(404, "UNKNOWN_ACCOUNT", f"account: no account {m.account}", "account")
            amount = _number(m.amount, "amount")
            out = await submit(cls(account=m.account, asset=m.asset, amount=amount))
            return {"seq": out.seq, "account": m.account, "asset": m.asset, "amount": f"{Decimal(amount):f}"}
        return f

    R = Route
    e = endpoint
    return [
        R("/time", e(get_time), methods=["GET"]),
        R("/assets", e(get_assets), methods=["GET"]),
        R("/markets", e(get_markets), methods=["GET"]),
        R("/markets/{market}", e(get_market), methods=["GET"]),
        R("/markets/{market}/depth", e(get_depth, cache=True), methods=["GET"]),
        R("/markets/{market}/trades", e(get_trades, cache=True), methods=["GET"]),
        R("/markets/{market}/candles", e(get_candles, cache=True), methods=["GET"]),
        R("/markets/{market}/ticker", e(get_ticker, cache=True), methods=["GET"]),
        R("/tickers", e(get_tickers, cache=True), methods=["GET"]),
        R("/account", e(get_account, "read"), methods=["GET"]),
        R("/balances", e(get_balances, "read"), methods=["GET"]),
        R("/orders", e(post_order, "trade"), methods=["POST"]),
        R("/orders", e(get_orders, "read"), methods=["GET"]),
        R("/orders", e(delete_orders, "trade"), methods=["DELETE"]),
        R("/orders/open", e(get_open_orders, "read"), methods=["GET"]),
        R("/order-lists", e(post_order_list, "trade"), methods=["POST"]),
        R("/order-lists", e(get_order_lists, "read"), methods=["GET"]),
        R("/order-lists/{order_list_id}", e(delete_order_list, "trade"), methods=["DELETE"]),
        R("/orders/{order_id}", e(get_order, "read"), methods=["GET"]),
        R("/orders/{order_id}", e(delete_order, "trade"), methods=["DELETE"]),
        R("/orders/{order_id}", e(patch_order, "trade"), methods=["PATCH"]),
        R("/fills", e(get_fills, "read"), methods=["GET"]),
        R("/withdrawals", e(post_withdrawal, "withdraw"), methods=["POST"]),
        R("/api-keys", e(get_keys, "read"), methods=["GET"]),
        R("/api-keys", e(post_key, "read"), methods=["POST"]),
        R("/api-keys/{api_key}", e(delete_key, "read"), methods=["DELETE"]),
        R("/alerts", e(get_alerts, "read"), methods=["GET"]),
        R("/alerts", e(post_alert, "read"), methods=["POST"]),
        R("/alerts/{alert_id}", e(delete_alert, "read"), methods=["DELETE"]),
        R("/notifications", e(get_notifications, "read"), methods=["GET"]),
        R("/notifications/read", e(post_mark_read, "read"), methods=["POST"]),
        R("/admin/users", e(admin_post_user, "admin"), methods=["POST"]),
        R("/admin/users/{user_id}", e(admin_get_user, "admin"), methods=["GET"]),
        R("/admin/users/{user_id}/api-keys", e(admin_post_key, "admin"), methods=["POST"]),
        R("/admin/deposits", e(admin_money(C.Deposit), "admin"), methods=["POST"]),
        R("/admin/withdrawals", e(admin_money(C.Withdraw), "admin"), methods=["POST"]),
    ]


INTERVALS = ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "1w", "1M")


def api_routes(node: Node, history=None) -> list:
    """Every route of the public API, for `build_app`: `/api/v1/...`,
    `/api/v3/...` (Binance-compatible) and `/openapi.json`."""
    from . import binance, openapi

    ctx = ApiContext(node, history)
    spec = openapi.document()

    async def get_openapi(request: Request) -> Response:
        return JSON(spec)

    return [
        Mount("/api/v1", routes=native_routes(ctx)),
        Mount("/api/v3", routes=binance.routes(ctx)),
        Route("/openapi.json", get_openapi, methods=["GET"]),
    ]


__all__ = ["ApiContext", "ApiError", "TokenBuckets", "api_routes", "native_routes", "Reason"]
