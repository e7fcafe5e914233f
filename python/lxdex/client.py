"""Python clients of the native REST API (`/api/v1`, docs/api.md): `Client`
(sync) and `AsyncClient` (asyncio), both on httpx, both signing requests.

>>> c = Client("http://127.0.0.1:8080", api_key="...", secret="...")  # doctest: +SKIP
>>> c.depth("BTC-USD", limit=5)["bids"]                               # doctest: +SKIP
[['50000.00', '1.0000', 1]]
>>> c.place_order("BTC-USD", "buy", qty="0.5", price="49000")["status"]  # doctest: +SKIP
'new'

Prices and quantities go out as decimal strings and come back as decimal
strings (convert with `decimal.Decimal`). An error reply raises `ApiError`
with the HTTP status, the code, the message and the field to blame.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from decimal import Decimal
from typing import Any, Literal, TypedDict
from urllib.parse import urlencode

import httpx

__all__ = ["ApiError", "AsyncClient", "Client", "sign"]

Num = str | int | Decimal


class ApiError(Exception):
    """An error reply: `status` (HTTP), `code` (e.g. INSUFFICIENT_FUNDS),
    `message`, `field` (the request field to blame, if any) and, for 429,
    `retry_after` (seconds)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.field, self.retry_after = status, code, message, field, retry_after


# -- reply shapes (see /openapi.json for every field) --------------------------------------------------------------


class Market(TypedDict):
    market: str
    base: str
    quote: str
    tick_size: str
    lot_size: str
    maker_bps: int
    taker_bps: int
    base_decimals: int
    quote_decimals: int


class Depth(TypedDict):
    market: str
    last_update_id: int
    bids: list[list]
    asks: list[list]


class Trade(TypedDict):
    id: int
    ts: int
    price: str
    qty: str
    taker_side: str


class Candle(TypedDict):
    start: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    quote_volume: str
    trades: int


class Ticker(TypedDict):
    market: str
    open: str | None
    high: str | None
    low: str | None
    last: str | None
    volume: str
    quote_volume: str
    trades: int
    change: str | None
    change_pct: str | None
    best_bid: str | None
    best_bid_qty: str | None
    best_ask: str | None
    best_ask_qty: str | None


class Balance(TypedDict):
    asset: str
    available: str
    held: str


class OrderReply(TypedDict, total=False):
    order_id: int
    seq: int
    market: str
    status: str
    filled: str
    fills: list[dict]
    cancel_reason: str
    client_order_id: str


class OpenOrder(TypedDict, total=False):
    order_id: int
    market: str
    side: str
    status: str
    price: str
    remaining_qty: str
    visible_qty: str
    type: str
    trigger_price: str


class OrderPage(TypedDict):
    orders: list[dict]
    next_from_id: int | None


class FillPage(TypedDict):
    fills: list[dict]
    next_from_id: int | None


class ApiKey(TypedDict, total=False):
    user_id: int
    api_key: str
    permissions: list[str]
    ip_allow: list[str]
    label: str
    created_at: int
    revoked_at: int | None
    secret: str


def sign(secret: str, timestamp: str, method: str, path: str, query: str, body: bytes) -> str:
    """The native API's signature: hex HMAC-SHA256, keyed with the secret's
    characters, of `timestamp\\nMETHOD\\npath\\nquery\\nbody`."""
    payload = b"\n".join([timestamp.encode(), method.encode(), path.encode(), query.encode(), body])
    return hmac.digest(secret.encode(), payload, "sha256").hex()


def _s(v: Num | None) -> str | None:
    if v is None:
        return None
    if isinstance(v, float):
        raise TypeError("pass prices and quantities as decimal strings or Decimal, not float")
    return str(v)


def _clean(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


Auth = Literal["none", "signed", "admin"]


class _Spec:
    """One request: method, path, query, JSON body, auth."""

    __slots__ = ("method", "path", "query", "body", "auth")

    def __init__(self, method: str, path: str, auth: Auth = "none", query: dict | None = None,
                 body: Any = None) -> None:
        self.method, self.path, self.auth = method, path, auth
        self.query = _clean(query or {})
        self.body = body


class _Base:
    def __init__(self, base_url: str, api_key: str | None = None, secret: str | None = None,
                 admin_token: str | None = None, recv_window: int | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key, self.secret, self.admin_token, self.recv_window = api_key, secret, admin_token, recv_window
        self._last_ts = 0
        self._ts_lock = threading.Lock()

    def _timestamp(self) -> str:
        """Milliseconds, strictly increasing per client: the node refuses a
        signature it has already seen (a replay), so the same request sent
        twice within one millisecond must not sign the same timestamp."""
        with self._ts_lock:
            ts = max(int(time.time() * 1000), self._last_ts + 1)
            self._last_ts = ts
        return str(ts)

    def _prepare(self, s: _Spec) -> tuple[str, str, dict, bytes]:
        query = urlencode({k: (str(v).lower() if isinstance(v, bool) else v) for k, v in s.query.items()})
        body = b"" if s.body is None else json.dumps(s.body, separators=(",", ":")).encode()
        headers = {"content-type": "application/json"} if body else {}
        path = "/api/v1" + s.path
        if s.auth == "signed":
            if not self.api_key or not self.secret:
                raise ValueError("this endpoint needs api_key and secret")
            ts = self._timestamp()
            headers["X-LX-APIKEY"] = self.api_key
            headers["X-LX-TIMESTAMP"] = ts
            if self.recv_window:
                headers["X-LX-RECV-WINDOW"] = str(self.recv_window)
            headers["X-LX-SIGNATURE"] = sign(self.secret, ts, s.method, path, query, body)
        elif s.auth == "admin":
            if not self.admin_token:
                raise ValueError("this endpoint needs admin_token")
            headers["Authorization"] = f"Bearer {self.admin_token}"
        url = self.base_url + path + ("?" + query if query else "")
        return url, s.method, headers, body

    @staticmethod
    def _result(r: httpx.Response) -> Any:
        try:
            data = r.json()
        except ValueError:
            raise ApiError(r.status_code, "INVALID_REPLY", r.text[:200]) from None
        if r.status_code >= 400:
            err = data.get("error", {}) if isinstance(data, dict) else {}
            retry = r.headers.get("retry-after")
            raise ApiError(r.status_code, err.get("code", "HTTP_ERROR"), err.get("message", r.text[:200]),
                           err.get("field"), float(retry) if retry else None)
        return data


# The endpoints, once: each returns the _Spec of its request.
class _E:
    @staticmethod
    def time() -> _Spec:
        return _Spec("GET", "/time")

    @staticmethod
    def assets() -> _Spec:
        return _Spec("GET", "/assets")

    @staticmethod
    def markets() -> _Spec:
        return _Spec("GET", "/markets")

    @staticmethod
    def market(market: str) -> _Spec:
        return _Spec("GET", f"/markets/{market}")

    @staticmethod
    def depth(market: str, limit: int | None) -> _Spec:
        return _Spec("GET", f"/markets/{market}/depth", query={"limit": limit})

    @staticmethod
    def trades(market: str, limit: int | None) -> _Spec:
        return _Spec("GET", f"/markets/{market}/trades", query={"limit": limit})

    @staticmethod
    def candles(market: str, interval: str, start_ts: int | None, limit: int | None) -> _Spec:
        return _Spec("GET", f"/markets/{market}/candles",
                     query={"interval": interval, "start_ts": start_ts, "limit": limit})

    @staticmethod
    def ticker(market: str) -> _Spec:
        return _Spec("GET", f"/markets/{market}/ticker")

    @staticmethod
    def tickers() -> _Spec:
        return _Spec("GET", "/tickers")

    @staticmethod
    def account() -> _Spec:
        return _Spec("GET", "/account", "signed")

    @staticmethod
    def balances() -> _Spec:
        return _Spec("GET", "/balances", "signed")

    @staticmethod
    def place_order(market, side, qty, price, type, tif, post_only, stp, trigger_price, display_qty, expire_ts,
                    client_order_id, quote_qty=None) -> _Spec:
        body = _clean({"market": market, "side": side, "qty": _s(qty), "price": _s(price), "type": type,
                       "tif": tif, "post_only": post_only or None, "stp": stp, "trigger_price": _s(trigger_price),
                       "display_qty": _s(display_qty), "expire_ts": expire_ts or None,
                       "client_order_id": client_order_id, "quote_qty": _s(quote_qty)})
        return _Spec("POST", "/orders", "signed", body=body)

    @staticmethod
    def place_order_list(body: dict) -> _Spec:
        return _Spec("POST", "/order-lists", "signed", body=_clean(body))

    @staticmethod
    def order_lists() -> _Spec:
        return _Spec("GET", "/order-lists", "signed")

    @staticmethod
    def order_list_history(market, start_ts, end_ts, from_id, limit) -> _Spec:
        return _Spec("GET", "/order-lists", "signed", query={"status": "all", "market": market, "start_ts": start_ts,
                                                              "end_ts": end_ts, "from_id": from_id, "limit": limit})

    @staticmethod
    def cancel_order_list(order_list_id: int) -> _Spec:
        return _Spec("DELETE", f"/order-lists/{order_list_id}", "signed")

    @staticmethod
    def amend_order(order_id: int, price: Num | None, qty: Num | None) -> _Spec:
        return _Spec("PATCH", f"/orders/{order_id}", "signed", body=_clean({"price": _s(price), "qty": _s(qty)}))

    @staticmethod
    def cancel_order(order_id: int) -> _Spec:
        return _Spec("DELETE", f"/orders/{order_id}", "signed")

    @staticmethod
    def cancel_all(market: str | None) -> _Spec:
        return _Spec("DELETE", "/orders", "signed", query={"market": market})

    @staticmethod
    def open_orders(market: str | None) -> _Spec:
        return _Spec("GET", "/orders/open", "signed", query={"market": market})

    @staticmethod
    def order(order_id: int) -> _Spec:
        return _Spec("GET", f"/orders/{order_id}", "signed")

    @staticmethod
    def orders(market, start_ts, end_ts, from_id, limit) -> _Spec:
        return _Spec("GET", "/orders", "signed", query={"market": market, "start_ts": start_ts, "end_ts": end_ts,
                                                         "from_id": from_id, "limit": limit})

    @staticmethod
    def fills(market, start_ts, end_ts, from_id, limit) -> _Spec:
        return _Spec("GET", "/fills", "signed", query={"market": market, "start_ts": start_ts, "end_ts": end_ts,
                                                        "from_id": from_id, "limit": limit})

    @staticmethod
    def withdraw(asset: str, amount: Num) -> _Spec:
        return _Spec("POST", "/withdrawals", "signed", body={"asset": asset, "amount": _s(amount)})

    @staticmethod
    def api_keys() -> _Spec:
        return _Spec("GET", "/api-keys", "signed")

    @staticmethod
    def create_api_key(permissions: list[str], ip_allow: list[str] | None, label: str) -> _Spec:
        return _Spec("POST", "/api-keys", "signed", body={"permissions": list(permissions), "ip_allow": ip_allow,
                                                           "label": label})

    @staticmethod
    def revoke_api_key(api_key: str) -> _Spec:
        return _Spec("DELETE", f"/api-keys/{api_key}", "signed")

    @staticmethod
    def alerts() -> _Spec:
        return _Spec("GET", "/alerts", "signed")

    @staticmethod
    def add_alert(market: str, condition: str, price: Num) -> _Spec:
        return _Spec("POST", "/alerts", "signed", body={"market": market, "condition": condition, "price": _s(price)})

    @staticmethod
    def cancel_alert(alert_id: int) -> _Spec:
        return _Spec("DELETE", f"/alerts/{alert_id}", "signed")

    @staticmethod
    def notifications(unread_only: bool, limit: int | None) -> _Spec:
        return _Spec("GET", "/notifications", "signed", query={"unread_only": unread_only or None, "limit": limit})

    @staticmethod
    def mark_read(notification_ids: list[int] | None) -> _Spec:
        return _Spec("POST", "/notifications/read", "signed", body={"notification_ids": notification_ids})

    @staticmethod
    def admin_create_user(display_name: str, email: str, country: str) -> _Spec:
        return _Spec("POST", "/admin/users", "admin",
                     body={"display_name": display_name, "email": email, "country": country})

    @staticmethod
    def admin_user(user_id: int) -> _Spec:
        return _Spec("GET", f"/admin/users/{user_id}", "admin")

    @staticmethod
    def admin_create_api_key(user_id: int, permissions: list[str], ip_allow: list[str] | None,
                             label: str) -> _Spec:
        return _Spec("POST", f"/admin/users/{user_id}/api-keys", "admin",
                     body={"permissions": list(permissions), "ip_allow": ip_allow, "label": label})

    @staticmethod
    def admin_deposit(account: int, asset: str, amount: Num) -> _Spec:
        return _Spec("POST", "/admin/deposits", "admin", body={"account": account, "asset": asset,
                                                                "amount": _s(amount)})

    @staticmethod
    def admin_withdraw(account: int, asset: str, amount: Num) -> _Spec:
        return _Spec("POST", "/admin/withdrawals", "admin", body={"account": account, "asset": asset,
                                                                   "amount": _s(amount)})


class Client(_Base):
    """A synchronous client. `transport` lets tests pass an in-process
    transport (e.g. `starlette.testclient.TestClient`'s)."""

    def __init__(self, base_url: str, api_key: str | None = None, secret: str | None = None, *,
                 admin_token: str | None = None, recv_window: int | None = None, timeout: float = 10.0,
                 http: httpx.Client | None = None) -> None:
        super().__init__(base_url, api_key, secret, admin_token, recv_window)
        self._http = http or httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, s: _Spec) -> Any:
        url, method, headers, body = self._prepare(s)
        return self._result(self._http.request(method, url, headers=headers, content=body or None))

    # market data
    def server_time(self) -> dict:
        return self._call(_E.time())

    def assets(self) -> list[dict]:
        return self._call(_E.assets())

    def markets(self) -> list[Market]:
        return self._call(_E.markets())

    def market(self, market: str) -> Market:
        return self._call(_E.market(market))

    def depth(self, market: str, limit: int | None = None) -> Depth:
        return self._call(_E.depth(market, limit))

    def trades(self, market: str, limit: int | None = None) -> list[Trade]:
        return self._call(_E.trades(market, limit))

    def candles(self, market: str, interval: str = "1m", start_ts: int | None = None,
                limit: int | None = None) -> list[Candle]:
        return self._call(_E.candles(market, interval, start_ts, limit))

    def ticker(self, market: str) -> Ticker:
        return self._call(_E.ticker(market))

    def tickers(self) -> list[Ticker]:
        return self._call(_E.tickers())

    # account and trading
    def account(self) -> dict:
        return self._call(_E.account())

    def balances(self) -> list[Balance]:
        return self._call(_E.balances())

    def place_order(self, market: str, side: str, qty: Num | None, price: Num | None = None, *,
                    type: str | None = None, tif: str | None = None, post_only: bool = False,
                    stp: str | None = None, trigger_price: Num | None = None, display_qty: Num | None = None,
                    expire_ts: int = 0, client_order_id: str | None = None,
                    quote_qty: Num | None = None) -> OrderReply:
        """`qty` None and `quote_qty`: a market order sized by an amount of the quote asset."""
        return self._call(_E.place_order(market, side, qty, price, type, tif, post_only, stp, trigger_price,
                                         display_qty, expire_ts, client_order_id, quote_qty))

    def amend_order(self, order_id: int, price: Num | None = None, qty: Num | None = None) -> dict:
        return self._call(_E.amend_order(order_id, price, qty))

    def cancel_order(self, order_id: int) -> dict:
        return self._call(_E.cancel_order(order_id))

    def place_order_list(self, type: str, market: str, side: str, qty: Num, *, take_profit: dict, stop_loss: dict,
                         **kw) -> dict:
        """An OCO pair (`type` "oco") or a bracket ("bracket"; `price`, `tif`, ... for its entry); legs as
        `{"trigger_price", "price", "client_order_id"}` (docs/api.md)."""
        return self._call(_E.place_order_list({"type": type, "market": market, "side": side, "qty": _s(qty),
                                               "take_profit": take_profit, "stop_loss": stop_loss, **kw}))

    def order_lists(self) -> list[dict]:
        return self._call(_E.order_lists())

    def order_list_history(self, market: str | None = None, start_ts: int | None = None, end_ts: int | None = None,
                           from_id: int | None = None, limit: int | None = None) -> dict:
        """The key's order lists, live and ended, with all their orders (`GET /order-lists?status=all`):
        `{order_lists, next_from_id}`."""
        return self._call(_E.order_list_history(market, start_ts, end_ts, from_id, limit))

    def cancel_order_list(self, order_list_id: int) -> dict:
        return self._call(_E.cancel_order_list(order_list_id))

    def cancel_all(self, market: str | None = None) -> dict:
        return self._call(_E.cancel_all(market))

    def open_orders(self, market: str | None = None) -> list[OpenOrder]:
        return self._call(_E.open_orders(market))

    def order(self, order_id: int) -> dict:
        return self._call(_E.order(order_id))

    def orders(self, market: str | None = None, start_ts: int | None = None, end_ts: int | None = None,
               from_id: int | None = None, limit: int | None = None) -> OrderPage:
        return self._call(_E.orders(market, start_ts, end_ts, from_id, limit))

    def fills(self, market: str | None = None, start_ts: int | None = None, end_ts: int | None = None,
              from_id: int | None = None, limit: int | None = None) -> FillPage:
        return self._call(_E.fills(market, start_ts, end_ts, from_id, limit))

    def withdraw(self, asset: str, amount: Num) -> dict:
        return self._call(_E.withdraw(asset, amount))

    # API keys, alerts, notifications
    def api_keys(self) -> list[ApiKey]:
        return self._call(_E.api_keys())

    def create_api_key(self, permissions: list[str], ip_allow: list[str] | None = None, label: str = "") -> ApiKey:
        return self._call(_E.create_api_key(permissions, ip_allow, label))

    def revoke_api_key(self, api_key: str) -> dict:
        return self._call(_E.revoke_api_key(api_key))

    def alerts(self) -> list[dict]:
        return self._call(_E.alerts())

    def add_alert(self, market: str, condition: str, price: Num) -> dict:
        return self._call(_E.add_alert(market, condition, price))

    def cancel_alert(self, alert_id: int) -> dict:
        return self._call(_E.cancel_alert(alert_id))

    def notifications(self, unread_only: bool = False, limit: int | None = None) -> list[dict]:
        return self._call(_E.notifications(unread_only, limit))

    def mark_read(self, notification_ids: list[int] | None = None) -> dict:
        return self._call(_E.mark_read(notification_ids))

    # admin
    def admin_create_user(self, display_name: str, email: str, country: str = "US") -> dict:
        return self._call(_E.admin_create_user(display_name, email, country))

    def admin_user(self, user_id: int) -> dict:
        return self._call(_E.admin_user(user_id))

    def admin_create_api_key(self, user_id: int, permissions: list[str], ip_allow: list[str] | None = None,
                             label: str = "") -> ApiKey:
        return self._call(_E.admin_create_api_key(user_id, permissions, ip_allow, label))

    def admin_deposit(self, account: int, asset: str, amount: Num) -> dict:
        return self._call(_E.admin_deposit(account, asset, amount))

    def admin_withdraw(self, account: int, asset: str, amount: Num) -> dict:
        return self._call(_E.admin_withdraw(account, asset, amount))


class AsyncClient(_Base):
    """The asyncio client: the same methods as `Client`, awaitable."""

    def __init__(self, base_url: str, api_key: str | None = None, secret: str | None = None, *,
                 admin_token: str | None = None, recv_window: int | None = None, timeout: float = 10.0,
                 http: httpx.AsyncClient | None = None) -> None:
        super().__init__(base_url, api_key, secret, admin_token, recv_window)
        self._http = http or httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def _call(self, s: _Spec) -> Any:
        url, method, headers, body = self._prepare(s)
        return self._result(await self._http.request(method, url, headers=headers, content=body or None))

    async def server_time(self) -> dict:
        return await self._call(_E.time())

    async def assets(self) -> list[dict]:
        return await self._call(_E.assets())

    async def markets(self) -> list[Market]:
        return await self._call(_E.markets())

    async def market(self, market: str) -> Market:
        return await self._call(_E.market(market))

    async def depth(self, market: str, limit: int | None = None) -> Depth:
        return await self._call(_E.depth(market, limit))

    async def trades(self, market: str, limit: int | None = None) -> list[Trade]:
        return await self._call(_E.trades(market, limit))

    async def candles(self, market: str, interval: str = "1m", start_ts: int | None = None,
                      limit: int | None = None) -> list[Candle]:
        return await self._call(_E.candles(market, interval, start_ts, limit))

    async def ticker(self, market: str) -> Ticker:
        return await self._call(_E.ticker(market))

    async def tickers(self) -> list[Ticker]:
        return await self._call(_E.tickers())

    async def account(self) -> dict:
        return await self._call(_E.account())

    async def balances(self) -> list[Balance]:
        return await self._call(_E.balances())

    async def place_order(self, market: str, side: str, qty: Num | None, price: Num | None = None, *,
                          type: str | None = None, tif: str | None = None, post_only: bool = False,
                          stp: str | None = None, trigger_price: Num | None = None, display_qty: Num | None = None,
                          expire_ts: int = 0, client_order_id: str | None = None,
                          quote_qty: Num | None = None) -> OrderReply:
        return await self._call(_E.place_order(market, side, qty, price, type, tif, post_only, stp, trigger_price,
                                               display_qty, expire_ts, client_order_id, quote_qty))

    async def amend_order(self, order_id: int, price: Num | None = None, qty: Num | None = None) -> dict:
        return await self._call(_E.amend_order(order_id, price, qty))

    async def cancel_order(self, order_id: int) -> dict:
        return await self._call(_E.cancel_order(order_id))

    async def cancel_all(self, market: str | None = None) -> dict:
        return await self._call(_E.cancel_all(market))

    async def open_orders(self, market: str | None = None) -> list[OpenOrder]:
        return await self._call(_E.open_orders(market))

    async def order(self, order_id: int) -> dict:
        return await self._call(_E.order(order_id))

    async def orders(self, market: str | None = None, start_ts: int | None = None, end_ts: int | None = None,
                     from_id: int | None = None, limit: int | None = None) -> OrderPage:
        return await self._call(_E.orders(market, start_ts, end_ts, from_id, limit))

    async def fills(self, market: str | None = None, start_ts: int | None = None, end_ts: int | None = None,
                    from_id: int | None = None, limit: int | None = None) -> FillPage:
        return await self._call(_E.fills(market, start_ts, end_ts, from_id, limit))

    async def withdraw(self, asset: str, amount: Num) -> dict:
        return await self._call(_E.withdraw(asset, amount))

    async def api_keys(self) -> list[ApiKey]:
        return await self._call(_E.api_keys())

    async def create_api_key(self, permissions: list[str], ip_allow: list[str] | None = None,
                             label: str = "") -> ApiKey:
        return await self._call(_E.create_api_key(permissions, ip_allow, label))

    async def revoke_api_key(self, api_key: str) -> dict:
        return await self._call(_E.revoke_api_key(api_key))

    async def alerts(self) -> list[dict]:
        return await self._call(_E.alerts())

    async def add_alert(self, market: str, condition: str, price: Num) -> dict:
        return await self._call(_E.add_alert(market, condition, price))

    async def cancel_alert(self, alert_id: int) -> dict:
        return await self._call(_E.cancel_alert(alert_id))

    async def notifications(self, unread_only: bool = False, limit: int | None = None) -> list[dict]:
        return await self._call(_E.notifications(unread_only, limit))

    async def mark_read(self, notification_ids: list[int] | None = None) -> dict:
        return await self._call(_E.mark_read(notification_ids))

    async def admin_create_user(self, display_name: str, email: str, country: str = "US") -> dict:
        return await self._call(_E.admin_create_user(display_name, email, country))

    async def admin_user(self, user_id: int) -> dict:
        return await self._call(_E.admin_user(user_id))

    async def admin_create_api_key(self, user_id: int, permissions: list[str], ip_allow: list[str] | None = None,
                                   label: str = "") -> ApiKey:
        return await self._call(_E.admin_create_api_key(user_id, permissions, ip_allow, label))

    async def admin_deposit(self, account: int, asset: str, amount: Num) -> dict:
        return await self._call(_E.admin_deposit(account, asset, amount))

    async def admin_withdraw(self, account: int, asset: str, amount: Num) -> dict:
        return await self._call(_E.admin_withdraw(account, asset, amount))
