"""The node's HTTP endpoints (Starlette routes; the load-carrying ones are
also fast handlers that the node's HTTP protocol answers itself: `fasthttp`).

- `POST /order`: the product description's JSON,
  `{"symbol":"BTC-USD","side":0,"price":50000,"size":1}` (side 0 = buy,
  1 = sell), or the readable form (`"side":"buy"`, `"type"`, `"tif"`,
  `"post_only"`, `"stp"`, `"trigger_price"`, `"display_size"`,
  `"expire_ts"`, `"account"`). Without `account` the config's first account
  places it (the demo trader). Replies with the order id, the command's
  sequence number, status and fills once the command is durable.
- `DELETE /order`: `{"order_id": 7, "account": 0}`.
- `GET /orders?account=0`, `GET /book/{symbol}?depth=20`,
  `GET /trades/{symbol}?limit=100`, `GET /markets`.
- `GET /stats`, `GET /health` (200 only while the node applies commands),
  `GET /metrics` (Prometheus).
- `POST /command`: any `lxdex.commands` value as JSON (`{"cmd": "deposit",
  ...}`), only with `Authorization: Bearer <admin_token>` from the config.

Every error is JSON `{"error": {"code", "message", "field"?}}` with a 4xx
status (503 when the node is not applying commands); a bad request changes
nothing.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from decimal import Decimal

import msgspec
import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import _core
from .. import commands as C
from ..enums import EVENT_DTYPE, CommandKind, EventKind, OrderType, Reason, Side, Stp, TimeInForce
from ..errors import OrderRejected
from ..exchange import _FLAG_POST_ONLY, _step_parts
from .fasthttp import FastRequest, Later, Pending, fast_route
from .metrics import Metrics
from .server import Node, NodeStopped, Sink

log = logging.getLogger("lxdex.node.http")

Number = int | float | str


class OrderBody(msgspec.Struct, forbid_unknown_fields=True):
    symbol: str
    side: int | str
    size: Number
    price: Number | None = None
    type: str = "limit"
    tif: str | None = None
    account: int | None = None
    post_only: bool = False
    stp: str = "none"
    trigger_price: Number | None = None
    display_size: Number | None = None
    expire_ts: int = 0


class CancelBody(msgspec.Struct, forbid_unknown_fields=True):
    order_id: int
    account: int | None = None


_order_decoder = msgspec.json.Decoder(OrderBody)
_cancel_decoder = msgspec.json.Decoder(CancelBody)
_command_decoder = msgspec.json.Decoder(C.AnyCommand)
_json = msgspec.json.Encoder(decimal_format="string")


def _num(v: Number | None) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        raise ValueError("a number, not a boolean")
    return repr(v) if isinstance(v, float) else str(v)


class JSON(Response):
    media_type = "application/json"

    def render(self, content) -> bytes:
        return _json.encode(content)


def error(status: int, code: str, message: str, field: str | None = None) -> JSON:
    body = {"code": code, "message": message}
    if field:
        body["field"] = field
    return JSON({"error": body}, status_code=status)


def msgspec_field(msg: str) -> str | None:
    """The request field a msgspec decode error names, if any."""
    if "`$." in msg:
        return msg.split("`$.", 1)[1].split("`", 1)[0].split("[", 1)[0]
    if ("unknown field" in msg or "missing required field" in msg) and "`" in msg:
        return msg.split("`")[1]
    return None


def _validation_error(e: msgspec.ValidationError | msgspec.DecodeError) -> JSON:
    msg = str(e)
    # (msgspec.ValidationError is a DecodeError too: a well-formed JSON of the wrong shape)
    code = "INVALID_REQUEST" if isinstance(e, msgspec.ValidationError) else "INVALID_JSON"
    return error(400, code, msg, msgspec_field(msg))


def _outcome_error(out) -> JSON:
    e = out.error
    status = 404 if e["reason"] in ("UNKNOWN_MARKET", "UNKNOWN_ORDER", "UNKNOWN_ACCOUNT") else 400
    return error(status, e["reason"], e["message"], e.get("field"))


class _LoopSink(Sink):
    """Outcomes for requests waiting on one event loop: one wake-up of the
    loop per sequencer batch, whatever the number of requests in it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def deliver(self, items: list) -> None:
        try:
            self.loop.call_soon_threadsafe(_set_results, items)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass


def _set_results(items: list) -> None:
    for token, res in items:
        if type(token) is _RowBatch:
            token.resolve(res)
        elif not token.done():  # the client may have gone away
            token.set_result(res)


class _RowBatch:
    """The futures of the POST /order requests in one `Records` command."""

    __slots__ = ("owner", "futs")

    def __init__(self, owner: "_OrderRows", futs: list) -> None:
        self.owner, self.futs = owner, futs

    def resolve(self, res) -> None:
        """Each request gets its reply body, built in Rust from the batch's
        events (`_OrderJson.replies`), or `(seq, the events of its row)`
        where the Python path answers (rejections), or the NodeStopped. The
        next batch is queued first, so the sequencer works on it while the
        replies to this one are written."""
        futs = self.futs
        owner = self.owner
        owner.done(len(futs))
        if isinstance(res, BaseException):
            for fut in futs:
                fut.set(res)
            return
        ev = res.events
        seq = res.seq
        try:
            replies = owner.order_json.replies(ev, len(futs), seq)
        except Exception:  # never leave the batch's requests waiting: the Python path answers them all
            log.exception("building POST /order replies in Rust failed; answering through the Python path")
            replies = [None] * len(futs)
        rows = None
        for i, (fut, body) in enumerate(zip(futs, replies)):
            if body is None:
                if rows is None:  # the batch's events split by row, once
                    rows = [[] for _ in futs]
                    n = len(rows)
                    for e in (ev.tolist() if len(ev) else []):  # (kind, reason, side, order_type, cmd_index, ...)
                        if e[4] < n:
                            rows[e[4]].append(e)
                body = (seq, rows[i])
            fut.set(body)  # the reply is written here (fasthttp's callback)


class _OrderRows:
    """POST /order requests as `Records` commands: the orders take the
    binary rows' path through the sequencer, the journal and a replay. One
    batch is in flight at a time; requests that arrive meanwhile wait for it
    and go together in the next, so the batch grows with the load."""

    def __init__(self, node: Node, sink: "_LoopSink", order_json: "_OrderJson") -> None:
        self.node, self.sink, self.loop, self.order_json = node, sink, sink.loop, order_json
        self.rows: list[bytes] = []
        self.futs: list = []
        self.inflight = False
        self.scheduled = False

    def add(self, row: bytes) -> Pending:
        fut = Pending()
        self.rows.append(row)
        self.futs.append(fut)
        if not self.inflight and not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.flush)  # after the other requests of this loop iteration
        return fut

    LINGER_S = 0.0005

    def done(self, size: int = 0) -> None:
        """The batch in flight (`size` requests) is answered. The waiting
        requests go at once when they are at least half as many; fewer wait
        up to `LINGER_S` for the clients just answered to send their next
        ones (group commit's commit delay: fewer, fuller batches under load,
        no wait when idle)."""
        self.inflight = False
        if self.rows and not self.scheduled:
            if 2 * len(self.rows) >= size:
                self.flush()
            else:
                self.scheduled = True
                self.loop.call_later(self.LINGER_S, self.flush)

    def flush(self) -> None:
        self.scheduled = False
        if self.inflight or not self.rows:
            return
        rows, futs = self.rows, self.futs
        self.rows, self.futs = [], []
        self.inflight = True
        if not self.node.submit_to(C.Records(data=b"".join(rows)), self.sink, _RowBatch(self, futs)):
            self.inflight = False
            for f in futs:
                f.set(NodeStopped("node is not accepting commands"))


#: Where the core's rejection of an order row points in the request.
_REJECT_FIELDS = {
    Reason.UNKNOWN_ACCOUNT: "account", Reason.ACCOUNT_SUSPENDED: "account", Reason.MARKET_NOT_TRADING: "symbol",
    Reason.INVALID_PRICE: "price", Reason.PRICE_OUT_OF_BAND: "price", Reason.PROTECTION_REQUIRED: "price",
    Reason.INVALID_QUANTITY: "size", Reason.BELOW_MIN_QUANTITY: "size", Reason.BELOW_MIN_NOTIONAL: "size",
    Reason.INVALID_TRIGGER: "trigger_price", Reason.INVALID_DISPLAY: "display_size",
    Reason.INVALID_EXPIRY: "expire_ts", Reason.WOULD_TAKE: "post_only", Reason.INVALID_TIF: "tif",
    Reason.INVALID_STP: "stp", Reason.INVALID_ORDER_TYPE: "type",
}
_REJECT_TEXT = {
    Reason.INSUFFICIENT_FUNDS: "the account's available balance does not cover the order (price x size + fee, "
                               "or the base asset for a sell)",
    Reason.UNKNOWN_ACCOUNT: "no such account",
    Reason.ACCOUNT_SUSPENDED: "the account is suspended",
    Reason.MARKET_NOT_TRADING: "the market is not trading",
    Reason.WOULD_TAKE: "a post-only order would trade on arrival",
}


_ACCEPTED, _REJECTED, _FILL, _CANCELLED = (int(k) for k in (EventKind.ACCEPTED, EventKind.REJECTED, EventKind.FILL,
                                                              EventKind.CANCELLED))
_CONDITIONAL_TYPES = frozenset(int(t) for t in OrderType) - {int(OrderType.LIMIT), int(OrderType.MARKET)}


def _order_row(ex, data: bytes, default_account) -> tuple[bytes, object] | JSON:
    """POST /order's body to `(SUBMIT record, MarketInfo)` the general way
    (msgspec, then `Exchange.order_record`: every field and form the API
    takes), or the error reply naming the field. `default_account(None)` is
    the account of an order that names none."""
    try:
        o = _order_decoder.decode(data)
        side = {0: "buy", 1: "sell"}.get(o.side, o.side) if isinstance(o.side, int) else o.side
        if isinstance(side, int):
            return error(400, "INVALID_REQUEST", f"side: {o.side} is not 0 (buy) or 1 (sell)", "side")
        fields = {}
        for name in ("size", "price", "trigger_price", "display_size"):
            try:
                fields[name] = _num(getattr(o, name))
            except ValueError as e:
                return error(400, "INVALID_REQUEST", f"{name}: {e}", name)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        return _validation_error(e)
    account = default_account(o.account)
    if account is None:
        return error(400, "INVALID_REQUEST", "account: required (this node has no default account)", "account")
    try:  # the decimal-to-integer conversion happens here, beside the sequencer; errors name the field
        row = ex.order_record(account, o.symbol, side, fields["size"], fields["price"], order_type=o.type,
                              tif=o.tif, stp=o.stp, post_only=o.post_only, display_qty=fields["display_size"],
                              trigger_price=fields["trigger_price"], expire_ts=o.expire_ts)
    except OrderRejected as e:
        r = Reason(e.reason)
        msg = str(e)
        field = msg.split(":", 1)[0] if ":" in msg else None
        return error(404 if r == Reason.UNKNOWN_MARKET else 400, r.name, msg,
                     {"qty": "size", "display_qty": "display_size", "market": "symbol"}.get(field, field))
    except ValueError as e:
        msg = str(e)
        return error(400, "INVALID_COMMAND", msg, msg.split(":", 1)[0] if ":" in msg else None)
    return row, ex._markets[o.symbol]  # markets are immutable once added: no lock needed


class _OrderJson:
    """POST /order's common case in Rust (`_core.OrderJson`): a plain limit
    or market order's JSON to its SUBMIT record in one call, exactly as the
    Python path (msgspec, `Exchange.order_record`) makes it; None for
    anything else, which the Python path then answers with its errors.
    A market is registered the first time the Python path takes an order
    for it (markets are immutable once added)."""

    def __init__(self) -> None:
        self.rust = _core.OrderJson(
            {m.name.lower(): int(m) for m in Side},
            {"limit": int(OrderType.LIMIT), "market": int(OrderType.MARKET)},
            {m.name.lower(): int(m) for m in TimeInForce},
            {m.name.lower(): int(m) for m in Stp},
            {int(OrderType.LIMIT): int(TimeInForce.GTC), int(OrderType.MARKET): int(TimeInForce.IOC)},
            int(CommandKind.SUBMIT), _FLAG_POST_ONLY)
        self.rust.set_reply_tables(
            EVENT_DTYPE.itemsize, {name: EVENT_DTYPE.fields[name][1] for name in _REPLY_FIELDS},
            (_ACCEPTED, _REJECTED, _FILL, _CANCELLED), {int(r): r.name.lower() for r in Reason},
            sorted(_CONDITIONAL_TYPES))
        self.parse = self.rust.parse
        self.known: set[int] = set()

    def replies(self, events, n_rows: int, seq: int) -> list:
        """The reply bodies of a batch's `n_rows` orders (None: the Python path answers that row)."""
        if events.dtype != EVENT_DTYPE or not events.flags.c_contiguous:  # (the core's arrays always are)
            events = np.ascontiguousarray(events, EVENT_DTYPE)
        return self.rust.replies(events.view(np.uint8), n_rows, seq)

    def learn(self, m) -> None:
        """Registers market `m` (a `MarketInfo`): for orders, if its sizes are
        decimal steps; for replies, its symbol and sizes as `Decimal` holds them."""
        if m.id in self.known:
            return
        self.known.add(m.id)
        tick, lot = _step_parts(m.tick_size), _step_parts(m.lot_size)
        if tick and lot:
            self.rust.add_market(m.symbol, m.id, tick, lot)
        t, q = m.tick_size.as_tuple(), m.lot_size.as_tuple()
        if not t.sign and not q.sign and isinstance(t.exponent, int) and isinstance(q.exponent, int):
            self.rust.add_reply_market(m.id, m.symbol, (int("".join(map(str, t.digits))), t.exponent),
                                       (int("".join(map(str, q.digits))), q.exponent))


_REPLY_FIELDS = ("kind", "reason", "order_type", "cmd_index", "market", "order_id", "other_id", "price", "qty",
                 "remaining")


def _row_reply(seq: int, events: list, m) -> dict | JSON:
    """The reply to one POST /order from its row's events (as tuples:
    kind, reason, side, order_type, cmd_index, market, order_id, owner,
    other_id, ..., price, qty, remaining, ...) in the batch `seq`."""
    for e in events:
        if e[0] == _REJECTED:
            r = Reason(e[1])
            status_code = 404 if r in (Reason.UNKNOWN_ACCOUNT, Reason.UNKNOWN_MARKET) else 400
            field = _REJECT_FIELDS.get(r)
            text = _REJECT_TEXT.get(r, r.name.lower().replace("_", " "))
            return error(status_code, r.name, f"{field}: {text}" if field else text, field)
    oid = next((e[6] for e in events if e[0] == _ACCEPTED), None)
    # (kind, reason, order_type, order_id, other_id, price, qty, remaining)
    return _reply(((e[0], e[1], e[3], e[6], e[8], e[10], e[11], e[12]) for e in events), oid, seq, m)


def _reply(events, oid: int, seq: int, m) -> dict:
    """The reply to an order: its status, fills and filled quantity, from
    `(kind, reason, order_type, order_id, other_id, price, qty, remaining)`
    of the events of the command that placed it."""
    fills, filled, status, reason, conditional, done = [], 0, None, None, False, False
    for kind, why, otype, order_id, other_id, price, qty, remaining in events:
        if order_id != oid:
            continue
        if kind == _ACCEPTED:
            conditional = otype in _CONDITIONAL_TYPES
        elif kind == _FILL:
            fills.append({"price": price * m.tick_size, "qty": qty * m.lot_size, "maker_order_id": other_id})
            filled += qty
            done = remaining == 0
        elif kind == _CANCELLED:
            status, reason = "cancelled", Reason(why).name.lower()
    if status is None:
        if conditional and not fills:
            status = "pending_trigger"
        else:
            status = "filled" if done else ("partially_filled" if fills else "new")
    reply = {"order_id": oid, "seq": seq, "symbol": m.symbol, "status": status,
             "filled": Decimal(filled) * m.lot_size, "fills": fills}
    if reason:
        reply["cancel_reason"] = reason
    return reply


def build_app(node: Node, metrics: Metrics | None = None, ws_limits=None):
    """The node's ASGI app (Starlette): POST /order and the GETs are fast
    handlers (`fasthttp.fast_route`), which `lxdex node`'s protocol answers
    without the ASGI layers; WebSocket streams (`ws.py`) and the web UI
    (`ui.py`) beside them. The app's `ws_hub` is the WebSocket gateway
    (`close()` detaches it); `starlette` and `max_body` are what
    `fasthttp.protocol_for` reads."""
    from .ui import ui_routes
    from .ws import WsHub

    metrics = metrics or Metrics(node)
    ws_hub = WsHub(node, ws_limits)
    max_body = node.config.max_body_bytes

    async def body(request: Request) -> bytes | JSON:
        n = request.headers.get("content-length")
        if n is not None and (not n.isdigit() or int(n) > max_body):
            return error(413, "TOO_LARGE", f"request body over {max_body} bytes")
        data = b""
        async for chunk in request.stream():
            data += chunk
            if len(data) > max_body:
                return error(413, "TOO_LARGE", f"request body over {max_body} bytes")
        return data

    sinks: dict = {}
    batches: dict = {}
    order_json = _OrderJson()

    async def run(cmd: C.Command):
        """The command's Outcome once durable and applied, or a 503 reply."""
        loop = asyncio.get_running_loop()
        sink = sinks.get(loop)
        if sink is None:
            sink = sinks[loop] = _LoopSink(loop)
        fut = loop.create_future()
        if not node.submit_to(cmd, sink, fut):
            return error(503, "UNAVAILABLE", "node is not accepting commands")
        out = await fut
        if isinstance(out, NodeStopped):
            return error(503, "UNAVAILABLE", str(out))
        return out

    def default_account(acct: int | None) -> int | None:
        if acct is not None:
            return acct
        return 0 if node.config.accounts else None

    def foreign_page(request: FastRequest) -> JSON | None:
        """The 403 for a browser page of another site: POST/DELETE /order act
        for the node's accounts without credentials (the product
        description's API), so a page may use them only if it is one of the
        node's own or its origin is in `[api] ws_allowed_origins` (as for
        WebSockets); clients that send no Origin (not browsers) may."""
        origin = host = None
        for k, v in request.raw_headers:
            if k == b"origin":
                origin = v.decode("latin-1")
            elif k == b"host":
                host = v.decode("latin-1")
        if origin is None or ws_hub.origin_allowed(origin, host):
            return None
        return error(403, "FORBIDDEN_ORIGIN", f"origin: a page from {origin} may not act for this node's "
                     "accounts (allow it with [api] ws_allowed_origins)", "origin")

    def post_order(request: FastRequest):
        """POST /order on the fast path: decoded and converted to a binary
        row here; the reply comes once its batch is durable and applied."""
        refused = foreign_page(request)
        if refused is not None:
            return refused
        data = request.body
        ex = node.exchange
        fast = order_json.parse(data, default_account(None))
        if fast is not None:
            row, mid = fast
            return _queue_row(row, ex._market_by_id[mid])
        made = _order_row(ex, data, default_account)
        if isinstance(made, JSON):
            return made
        row, market = made
        order_json.learn(market)
        return _queue_row(row, market)

    def _queue_row(row: bytes, market) -> Later:
        """The row joins this loop's next batch; the reply is made from its events."""
        loop = asyncio.get_running_loop()
        batch = batches.get(loop)
        if batch is None:
            sink = sinks.get(loop)
            if sink is None:
                sink = sinks[loop] = _LoopSink(loop)
            batch = batches[loop] = _OrderRows(node, sink, order_json)

        def reply(res):
            if type(res) is bytes:
                metrics.http_orders.inc()
                return res
            if isinstance(res, NodeStopped):
                return error(503, "UNAVAILABLE", str(res))
            metrics.http_orders.inc()
            r = _row_reply(res[0], res[1], market)
            return r if isinstance(r, Response) else _json.encode(r)

        return Later(batch.add(row), reply)

    async def delete_order(request: Request) -> Response:
        refused = foreign_page(FastRequest.of(request, b""))
        if refused is not None:
            return refused
        data = await body(request)
        if isinstance(data, Response):
            return data
        try:
            c = _cancel_decoder.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError) as e:
            return _validation_error(e)
        account = default_account(c.account)
        if account is None:
            return error(400, "INVALID_REQUEST", "account: required", "account")
        out = await run(C.CancelOrder(account=account, order_id=c.order_id))
        if isinstance(out, Response):
            return out
        if not out.ok:
            return _outcome_error(out)
        return JSON({"order_id": c.order_id, "seq": out.seq, "status": "cancelled"})

    async def post_command(request: Request) -> Response:
        token = node.config.admin_token
        if token is None:
            return error(404, "NOT_FOUND", "admin commands are disabled (no admin_token in the config)")
        auth = request.headers.get("authorization", "")
        if not hmac.compare_digest(auth.encode(), f"Bearer {token}".encode()):
            return error(401, "UNAUTHORIZED", "admin commands need Authorization: Bearer <admin_token>")
        data = await body(request)
        if isinstance(data, Response):
            return data
        try:
            cmd = _command_decoder.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError) as e:
            return _validation_error(e)
        out = await run(cmd)
        if isinstance(out, Response):
            return out
        if not out.ok:
            return _outcome_error(out)
        return JSON({"seq": out.seq, "value": out.value, "notices": out.notices})

    def _int_param(request: Request, name: str, default: int | None, lo: int, hi: int) -> int | JSON:
        raw = request.query_params.get(name)
        if raw is None:
            if default is None:
                return error(400, "INVALID_REQUEST", f"{name}: required", name)
            return default
        if not raw.isdigit() or not lo <= int(raw) <= hi:
            return error(400, "INVALID_REQUEST", f"{name}: must be an integer in {lo}..{hi}", name)
        return int(raw)

    def get_book(request: FastRequest):
        depth = _int_param(request, "depth", 20, 1, 1000)
        if isinstance(depth, Response):
            return depth
        symbol = request.path_params["symbol"]
        with node.lock:
            ex = node.exchange
            if symbol not in ex._markets:
                return error(404, "UNKNOWN_MARKET", f"market: no market {symbol!r}", "symbol")
            update_id, bids, asks = ex.depth_snapshot(symbol, depth)
        return _json.encode({"symbol": symbol, "last_update_id": update_id,
                             "bids": [[p, q] for p, q, _ in bids], "asks": [[p, q] for p, q, _ in asks]})

    def get_trades(request: FastRequest):
        limit = _int_param(request, "limit", 100, 1, 1000)
        if isinstance(limit, Response):
            return limit
        symbol = request.path_params["symbol"]
        with node.lock:
            ex = node.exchange
            if symbol not in ex._markets:
                return error(404, "UNKNOWN_MARKET", f"market: no market {symbol!r}", "symbol")
            trades = ex.trades(symbol, limit)
        return _json.encode(trades)

    def get_orders(request: FastRequest):
        account = _int_param(request, "account", None, 0, 2**32 - 1)
        if isinstance(account, Response):
            return account
        with node.lock:
            if account >= node.exchange.core.account_count:
                return error(404, "UNKNOWN_ACCOUNT", f"account: no account {account}", "account")
            orders = node.exchange.open_orders(account)
        return _json.encode(orders)

    def get_candles(request: FastRequest):
        limit = _int_param(request, "limit", 100, 1, 1000)
        if isinstance(limit, Response):
            return limit
        symbol, interval = request.path_params["symbol"], request.query_params.get("interval", "1m")
        with node.lock:
            ex = node.exchange
            if symbol not in ex._markets:
                return error(404, "UNKNOWN_MARKET", f"market: no market {symbol!r}", "symbol")
            try:
                candles = ex.candles(symbol, interval, 0, limit)
            except ValueError as e:
                return error(400, "INVALID_REQUEST", f"interval: {e}", "interval")
        return _json.encode(candles)

    def _history_params(request: Request) -> dict | JSON:
        q = request.query_params
        unknown = set(q) - {"account", "market", "start_ts", "end_ts", "from_id", "limit"}
        if unknown:
            name = sorted(unknown)[0]
            return error(400, "INVALID_REQUEST", f"{name}: unknown parameter", name)
        kw: dict = {}
        for name, default, hi in (("account", None, 2**32 - 1), ("start_ts", -1, 2**63 - 1),
                                  ("end_ts", -1, 2**63 - 1), ("from_id", -1, 2**63 - 1), ("limit", 500, 1000)):
            v = _int_param(request, name, default, 0 if name != "limit" else 1, hi)
            if isinstance(v, Response):
                return v
            if v != -1:
                kw[name] = v
        if "market" in q:
            kw["market"] = q["market"]
        return kw

    async def history_query(request: Request, what: str) -> Response:
        h = node.history
        if h is None:
            return error(404, "NOT_FOUND", "this node keeps no history store")
        kw = _history_params(request)
        if isinstance(kw, Response):
            return kw
        target = node.exchange.last_seq  # what the node had applied (and acknowledged) when this arrived

        def read():
            h.wait_for(target, node.config.api.history_wait_s)
            return getattr(h, what)(**kw)

        try:
            rows = await run_in_threadpool(read)
        except ValueError as e:
            msg = str(e)
            return error(400, "INVALID_REQUEST", msg, msg.split(":", 1)[0] if ":" in msg else None)
        return JSON(rows)

    async def get_history_fills(request: Request) -> Response:
        return await history_query(request, "fills")

    async def get_history_orders(request: Request) -> Response:
        return await history_query(request, "orders")

    async def get_history_order(request: Request) -> Response:
        h = node.history
        if h is None:
            return error(404, "NOT_FOUND", "this node keeps no history store")
        raw = request.path_params["order_id"]
        if not raw.isdigit():
            return error(400, "INVALID_REQUEST", "order_id: must be a non-negative integer", "order_id")
        target = node.exchange.last_seq

        def read():
            h.wait_for(target, node.config.api.history_wait_s)
            return h.order(int(raw))

        row = await run_in_threadpool(read)
        if row is None:
            return error(404, "UNKNOWN_ORDER", f"order_id: no order {raw} in the history", "order_id")
        return JSON(row)

    def get_markets(request: FastRequest):
        with node.lock:
            ms = [{"symbol": m.symbol, "base": m.base.symbol, "quote": m.quote.symbol, "tick_size": m.tick_size,
                   "lot_size": m.lot_size, "maker_bps": m.maker_bps, "taker_bps": m.taker_bps}
                  for m in node.exchange._market_by_id]
        return _json.encode(ms)

    def get_stats(request: FastRequest):
        return _json.encode(node.stats())

    def get_health(request: FastRequest):
        if node.healthy:
            return b'{"status":"ok","seq":%d}' % node.exchange.last_seq
        return JSON({"status": "unavailable"}, status_code=503)

    async def get_metrics(request: Request) -> Response:
        data, content_type = metrics.render()
        return Response(data, media_type=content_type)

    async def not_found(request: Request, exc) -> Response:
        return error(404, "NOT_FOUND", f"no route {request.method} {request.url.path}")

    async def bad_method(request: Request, exc) -> Response:
        return error(405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed on {request.url.path}")

    def F(path, fn, methods):
        return fast_route(path, fn, methods, max_body)

    routes = [
        F("/order", post_order, ["POST"]),
        Route("/order", delete_order, methods=["DELETE"]),
        F("/orders", get_orders, ["GET"]),
        F("/book/{symbol}", get_book, ["GET"]),
        F("/trades/{symbol}", get_trades, ["GET"]),
        F("/markets", get_markets, ["GET"]),
        F("/candles/{symbol}", get_candles, ["GET"]),
        Route("/history/fills", get_history_fills, methods=["GET"]),
        Route("/history/orders", get_history_orders, methods=["GET"]),
        Route("/history/orders/{order_id}", get_history_order, methods=["GET"]),
        F("/stats", get_stats, ["GET"]),
        F("/health", get_health, ["GET"]),
        Route("/metrics", get_metrics, methods=["GET"]),
        Route("/command", post_command, methods=["POST"]),
        *__import__("lxdex.node.api", fromlist=["api_routes"]).api_routes(node),  # /api/v1, /api/v3, /openapi.json
        *ws_hub.routes(),
        *ui_routes(node, ws_hub),
    ]
    starlette = Starlette(routes=routes, exception_handlers={404: not_found, 405: bad_method})

    async def app(scope, receive, send) -> None:
        if scope["type"] == "websocket":  # the server's own send: ws.py aborts a stalled client through it
            scope["lxdex.server_send"] = send
        return await starlette(scope, receive, send)

    app.starlette = starlette  # type: ignore[attr-defined]
    app.ws_hub = ws_hub  # type: ignore[attr-defined]
    app.max_body = max_body  # type: ignore[attr-defined]
    return app


def _order_reply(out, m) -> dict:
    """The reply to a `PlaceOrder` command's outcome (events as objects)."""
    return _reply(((e.kind, e.reason, e.order_type, e.order_id, e.other_id, e.price, e.qty, e.remaining)
                   for e in out.events), out.value["order_id"], out.seq, m)
