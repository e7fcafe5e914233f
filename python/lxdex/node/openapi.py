"""The OpenAPI 3.1 document of the native REST API (`/api/v1`), served at
`/openapi.json`. Hand-written next to the handlers in `lxdex.node.api`;
`tests/node/test_api_schema.py` checks every response against it
(schemathesis) and that every route has an operation here.

The Binance-compatible `/api/v3` is described by Binance's own
documentation and `docs/api.md`, not here.
"""

from __future__ import annotations

from typing import Any

DEC = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$", "description": "a decimal number as a string"}
DEC_OR_NULL = {"anyOf": [DEC, {"type": "null"}]}
NUM_IN = {"anyOf": [{"type": "string", "maxLength": 64}, {"type": "number"}],
          "description": "a decimal string (preferred) or a JSON number"}
INT = {"type": "integer", "minimum": 0}
INT_OR_NULL = {"anyOf": [INT, {"type": "null"}]}
STR = {"type": "string"}
MARKET_NAME = {"type": "string", "description": "market symbol, BASE-QUOTE (e.g. BTC-USD)",
               "examples": ["BTC-USD", "ETH-USD"]}


LEVEL = {"type": "array", "items": {"anyOf": [DEC, INT]}, "minItems": 3, "maxItems": 3,
         "description": "[price, quantity, orders at the level]: two decimal strings and an integer"}


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(props: dict, required: list | None = None, extra: bool = False) -> dict:
    return {"type": "object", "properties": props,
            "required": list(props) if required is None else required, "additionalProperties": extra}


def arr(item: dict) -> dict:
    return {"type": "array", "items": item}


SCHEMAS: dict[str, Any] = {
    "Error": obj({"error": obj({"code": STR, "message": STR, "field": STR}, ["code", "message"])}),
    "Time": obj({"server_time": INT}),
    "Asset": obj({"asset": STR, "decimals": INT}),
    "Market": obj({"market": MARKET_NAME, "base": STR, "quote": STR, "tick_size": DEC, "lot_size": DEC,
                   "maker_bps": {"type": "integer"}, "taker_bps": {"type": "integer"}, "base_decimals": INT,
                   "quote_decimals": INT}),
    "Depth": obj({"market": MARKET_NAME, "last_update_id": INT,
                  "bids": arr(LEVEL), "asks": arr(LEVEL)}),
    "Trade": obj({"id": INT, "ts": INT, "price": DEC, "qty": DEC, "taker_side": {"enum": ["buy", "sell"]}}),
    "Candle": obj({"start": INT, "open": DEC, "high": DEC, "low": DEC, "close": DEC, "volume": DEC,
                   "quote_volume": DEC, "trades": INT}),
    "Ticker": obj({"market": MARKET_NAME, "open": DEC_OR_NULL, "high": DEC_OR_NULL, "low": DEC_OR_NULL,
                   "last": DEC_OR_NULL, "volume": DEC, "quote_volume": DEC, "trades": INT, "change": DEC_OR_NULL,
                   "change_pct": DEC_OR_NULL, "best_bid": DEC_OR_NULL, "best_bid_qty": DEC_OR_NULL,
                   "best_ask": DEC_OR_NULL, "best_ask_qty": DEC_OR_NULL}),
    "Balance": obj({"asset": STR, "available": DEC, "held": DEC}),
    "User": obj({"user_id": INT, "display_name": STR, "email": STR, "country": STR, "created_at": INT,
                 "kyc_status": {"enum": ["none", "pending", "verified", "rejected"]}, "kyc_level": INT,
                 "status": {"enum": ["active", "suspended"]}}),
    "Account": obj({"user_id": INT, "display_name": STR, "email": STR, "country": STR, "created_at": INT,
                    "kyc_status": STR, "kyc_level": INT, "status": STR, "balances": arr(ref("Balance")),
                    "unread_notifications": INT}),
    "AdminUser": obj({"user_id": INT, "display_name": STR, "email": STR, "country": STR, "created_at": INT,
                      "kyc_status": STR, "kyc_level": INT, "status": STR, "balances": arr(ref("Balance")),
                      "api_keys": arr(ref("ApiKey"))}),
    "CreatedUser": obj({"seq": INT, "user_id": INT, "display_name": STR, "email": STR, "country": STR,
                        "created_at": INT, "kyc_status": STR, "kyc_level": INT, "status": STR}),
    "OrderIn": obj({
        "market": MARKET_NAME, "side": {"enum": ["buy", "sell"]}, "qty": NUM_IN, "price": NUM_IN,
        "type": {"enum": ["limit", "market", "stop_market", "stop_limit", "take_profit_market", "take_profit_limit",
                          "trailing_stop"], "default": "limit"},
        "tif": {"enum": ["gtc", "ioc", "fok", "gtd"], "description": "default gtc (ioc for market types)"},
        "post_only": {"type": "boolean", "default": False},
        "stp": {"enum": ["none", "cancel_taker", "cancel_maker", "cancel_both", "decrement"], "default": "none"},
        "trigger_price": NUM_IN, "display_qty": NUM_IN,
        "expire_ts": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
        "client_order_id": {"type": "string", "pattern": "^[A-Za-z0-9_.:/-]{1,36}$",
                            "description": "your name for the order: journaled, kept with the order (also in the "
                                           "history); unique among your open orders (else 400 DUPLICATE_ID)"},
        "quote_qty": NUM_IN | {"description": "instead of qty, for a market order: an amount of the quote asset. "
                                              "The exchange buys the whole lots it pays for, taker fee included, "
                                              "or sells the whole lots whose proceeds (before the fee) it covers; "
                                              "the rest is not spent"},
    }, ["market", "side"]) | {"examples": [{"market": "BTC-USD", "side": "buy", "qty": "0.01", "price": "100"},
                                           {"market": "BTC-USD", "side": "buy", "type": "market", "quote_qty": "250"},
                                                  {"market": "ETH-USD", "side": "sell", "qty": "0.5", "price": "90000",
                                                   "type": "limit", "tif": "gtc"}]},
    "LegIn": obj({"trigger_price": NUM_IN, "price": NUM_IN,
                  "client_order_id": {"type": "string", "pattern": "^[A-Za-z0-9_.:/-]{1,36}$"}}, ["trigger_price"]),
    "OrderListIn": obj({
        "type": {"enum": ["oco", "bracket"]}, "market": MARKET_NAME, "side": {"enum": ["buy", "sell"]},
        "qty": NUM_IN, "take_profit": ref("LegIn"), "stop_loss": ref("LegIn"),
        "price": {**NUM_IN, "description": "bracket only: the entry's limit price (none: a market entry)"},
        "tif": {"enum": ["gtc", "ioc", "fok", "gtd"], "description": "bracket only: the entry's"},
        "post_only": {"type": "boolean", "default": False},
        "stp": {"enum": ["none", "cancel_taker", "cancel_maker", "cancel_both", "decrement"], "default": "none"},
        "expire_ts": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
        "client_order_id": {"type": "string", "pattern": "^[A-Za-z0-9_.:/-]{1,36}$",
                            "description": "bracket only: the entry's client id"},
    }, ["type", "market", "side", "qty", "take_profit", "stop_loss"]) | {"examples": [
        {"type": "oco", "market": "BTC-USD", "side": "sell", "qty": "0.5",
         "take_profit": {"trigger_price": "70000", "price": "70000"}, "stop_loss": {"trigger_price": "50000"}}]},
    "OrderListReply": obj({"order_list_id": INT, "type": {"enum": ["oco", "bracket"]}, "seq": INT,
                           "order_ids": arr(INT), "status": {"enum": ["executing", "done"]}},
                          ["order_list_id", "type", "seq", "order_ids", "status"]),
    "OrderList": obj({"order_list_id": INT, "type": {"enum": ["oco", "bracket"]},
                      "entry": INT_OR_NULL, "tp": INT, "sl": INT, "orders": arr(ref("OpenOrder"))},
                     ["order_list_id", "type", "entry", "tp", "sl", "orders"]),
    "OrderListCancelReply": obj({"order_list_id": INT, "seq": INT, "status": {"const": "cancelled"},
                                 "cancelled": arr(INT)}),
    "Fill": obj({"price": DEC, "qty": DEC, "maker_order_id": INT}),
    "OrderReply": obj({"order_id": INT, "seq": INT, "market": MARKET_NAME,
                       "status": {"enum": ["new", "partially_filled", "filled", "cancelled", "pending_trigger"]},
                       "filled": DEC, "fills": arr(ref("Fill")), "cancel_reason": STR, "client_order_id": STR},
                      ["order_id", "seq", "market", "status", "filled", "fills"]),
    "AmendIn": obj({"price": NUM_IN, "qty": NUM_IN}, []),
    "AmendReply": obj({"order_id": INT, "seq": INT, "status": {"enum": ["open", "filled"]},
                       "order": {"anyOf": [ref("OpenOrder"), {"type": "null"}]}, "fills": INT}),
    "CancelReply": obj({"order_id": INT, "seq": INT, "status": {"const": "cancelled"}}),
    "CancelAllReply": obj({"seq": INT, "cancelled": arr(INT)}),
    "OpenOrder": obj({"order_id": INT, "market": MARKET_NAME, "side": {"enum": ["buy", "sell"]},
                      "status": {"enum": ["open", "pending_trigger"]}, "price": DEC, "remaining_qty": DEC,
                      "visible_qty": DEC, "type": STR, "trigger_price": DEC, "client_order_id": STR,
                      "order_list_id": INT},
                     ["order_id", "market", "side", "status", "price", "remaining_qty"]),
    "HistoryOrder": obj({
        "order_id": INT, "account": INT, "market": MARKET_NAME, "side": {"enum": ["buy", "sell"]}, "type": STR,
        "tif": STR, "stp": STR, "post_only": {"type": "boolean"}, "price": DEC_OR_NULL, "qty": DEC,
        "filled_qty": DEC, "remaining_qty": DEC, "quote_qty": DEC, "avg_price": DEC_OR_NULL,
        "status": {"enum": ["new", "partially_filled", "filled", "cancelled", "expired"]},
        "reason": {"anyOf": [STR, {"type": "null"}]}, "created_ts": INT, "updated_ts": INT, "created_seq": INT,
        "updated_seq": INT, "trail_bps": INT, "trigger_price": DEC, "triggered_ts": INT, "display_qty": DEC,
        "expire_ts": INT, "client_order_id": STR, "order_list_id": INT, "contingency": {"enum": ["oco", "bracket"]},
    }, ["order_id", "account", "market", "side", "type", "tif", "stp", "post_only", "price", "qty", "filled_qty",
        "remaining_qty", "quote_qty", "avg_price", "status", "reason", "created_ts", "updated_ts", "created_seq",
        "updated_seq"]),
    "OrderPage": obj({"orders": arr(ref("HistoryOrder")), "next_from_id": INT_OR_NULL}),
    "HistoryOrderList": obj({"order_list_id": INT, "type": {"enum": ["oco", "bracket"]}, "market": MARKET_NAME,
                             "status": {"enum": ["executing", "done"]}, "created_ts": INT, "updated_ts": INT,
                             "entry": INT_OR_NULL, "tp": INT, "sl": INT, "orders": arr(ref("HistoryOrder"))}),
    "OrderListPage": obj({"order_lists": arr(ref("HistoryOrderList")), "next_from_id": INT_OR_NULL}),
    "HistoryFill": obj({"id": INT, "seq": INT, "ts": INT, "market": MARKET_NAME, "order_id": INT,
                        "other_order_id": INT, "side": {"enum": ["buy", "sell"]}, "maker": {"type": "boolean"},
                        "taker_side": {"enum": ["buy", "sell"]}, "price": DEC, "qty": DEC, "quote_qty": DEC,
                        "fee": DEC_OR_NULL, "fee_asset": STR}),
    "FillPage": obj({"fills": arr(ref("HistoryFill")), "next_from_id": INT_OR_NULL}),
    "MoneyIn": obj({"asset": STR, "amount": NUM_IN}) | {"examples": [{"asset": "USD", "amount": "1"}]},
    "AdminMoneyIn": obj({"account": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}, "asset": STR, "amount": NUM_IN})
    | {"examples": [{"account": 0, "asset": "USD", "amount": "10"}]},
    "MoneyReply": obj({"seq": INT, "account": INT, "asset": STR, "amount": DEC}),
    "UserIn": obj({"display_name": {"type": "string", "maxLength": 64}, "email": STR,
                   "country": {"type": "string", "default": "US"}}, ["display_name", "email"]),
    "KeyIn": obj({"permissions": arr({"enum": ["read", "trade", "withdraw"]}),
                  "ip_allow": {"anyOf": [arr(STR), {"type": "null"}]}, "label": {"type": "string", "maxLength": 64}},
                 ["permissions"]),
    "ApiKey": obj({"user_id": INT, "api_key": STR, "permissions": arr({"enum": ["read", "trade", "withdraw"]}),
                   "ip_allow": arr(STR), "label": STR, "created_at": INT, "revoked_at": INT_OR_NULL}),
    "ApiKeyCreated": obj({"user_id": INT, "api_key": STR, "permissions": arr(STR), "ip_allow": arr(STR),
                          "label": STR, "created_at": INT, "revoked_at": INT_OR_NULL,
                          "secret": {"type": "string", "description": "shown once: keep it, it is never shown again"}}),
    "RevokeReply": obj({"seq": INT, "api_key": STR, "revoked": {"const": True}}),
    "AlertIn": obj({"market": MARKET_NAME, "condition": {"enum": ["above", "below"]}, "price": NUM_IN})
    | {"examples": [{"market": "BTC-USD", "condition": "above", "price": "70000"}]},
    "Alert": obj({"alert_id": INT, "user_id": INT, "market": MARKET_NAME, "condition": {"enum": ["above", "below"]},
                  "price": DEC, "created_at": INT}),
    "AlertReply": obj({"seq": INT, "alert_id": INT, "market": MARKET_NAME, "condition": {"enum": ["above", "below"]},
                       "price": DEC}),
    "AlertCancelled": obj({"seq": INT, "alert_id": INT, "cancelled": {"const": True}}),
    "Notification": obj({"notification_id": INT, "kind": STR, "payload": {"type": "object"}, "ts": INT,
                         "read": {"type": "boolean"}}),
    "MarkReadIn": obj({"notification_ids": {"anyOf": [arr({"type": "integer", "minimum": 1, "maximum": 2**63 - 1}),
                                                       {"type": "null"}]}},
                      []),
    "MarkReadReply": obj({"seq": INT, "marked_read": arr(INT)}),
}

_SIGNED = [{"apiKey": [], "timestamp": [], "signature": []}]
_ADMIN = [{"admin": []}]


def _op(summary: str, response: dict, *, auth: str | None = None, params: list | None = None,
        body: str | None = None, body_optional: bool = False, tag: str = "market data") -> dict:
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": {
        "200": {"description": "OK", "content": {"application/json": {"schema": response}}},
        "default": {"description": "an error: `{\"error\": {\"code\", \"message\", \"field\"?}}` (docs/api.md)",
                    "content": {"application/json": {"schema": ref("Error")}}},
    }}
    if auth == "admin":
        op["security"] = _ADMIN
        op["description"] = "Admin: `Authorization: Bearer <admin_token>`."
    elif auth:
        op["security"] = _SIGNED
        op["description"] = f"Signed; the API key needs the `{auth}` permission."
    else:
        op["security"] = []
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {"required": not body_optional,
                             "content": {"application/json": {"schema": ref(body)}}}
    return op


def _q(name: str, schema: dict, description: str = "", required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


def _p(name: str, schema: dict, description: str = "") -> dict:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


MARKET_PATH = _p("market", MARKET_NAME)
ORDER_PATH = _p("order_id", {"type": "string", "pattern": "^[0-9]{1,19}$"}, "an order id")
PAGE = [
    _q("market", MARKET_NAME, "only this market"),
    _q("start_ts", {"type": "integer", "minimum": 0}, "from this time (ms) on (creation time for orders)"),
    _q("end_ts", {"type": "integer", "minimum": 0}, "up to this time (ms)"),
    _q("from_id", {"type": "integer", "minimum": 0}, "from this id on (pagination: the previous page's next_from_id)"),
    _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
]
INTERVALS = ["1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "1w", "1M"]


def paths() -> dict:
    S = ref
    return {
        "/api/v1/time": {"get": _op("Server time (ms)", S("Time"), tag="general")},
        "/api/v1/assets": {"get": _op("Assets", arr(S("Asset")))},
        "/api/v1/markets": {"get": _op("Markets", arr(S("Market")))},
        "/api/v1/markets/{market}": {"get": _op("One market", S("Market"), params=[MARKET_PATH])},
        "/api/v1/markets/{market}/depth": {"get": _op(
            "Order book (L2) with the last depth update id", S("Depth"),
            params=[MARKET_PATH, _q("limit", {"type": "integer", "minimum": 1, "maximum": 5000, "default": 100},
                                    "price levels per side")])},
        "/api/v1/markets/{market}/trades": {"get": _op(
            "Recent trades, oldest first", arr(S("Trade")),
            params=[MARKET_PATH, _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100})])},
        "/api/v1/markets/{market}/candles": {"get": _op(
            "OHLCV candles, oldest first (the core's bounded rings)", arr(S("Candle")),
            params=[MARKET_PATH, _q("interval", {"enum": INTERVALS, "default": "1m"}),
                    _q("start_ts", {"type": "integer", "minimum": 0}, "candles starting at or after (ms)"),
                    _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 500})])},
        "/api/v1/markets/{market}/ticker": {"get": _op("Rolling 24 h ticker and best bid/ask", S("Ticker"),
                                                       params=[MARKET_PATH])},
        "/api/v1/tickers": {"get": _op("Tickers of every market", arr(S("Ticker")))},
        "/api/v1/account": {"get": _op("The key's user: profile and balances", S("Account"), auth="read",
                                       tag="account")},
        "/api/v1/balances": {"get": _op("Balances (available, held) of every asset", arr(S("Balance")),
                                        auth="read", tag="account")},
        "/api/v1/orders": {
            "post": _op("Place an order", S("OrderReply"), auth="trade", body="OrderIn", tag="trading"),
            "get": _op("Order history (open and closed), paginated; from the history store", S("OrderPage"),
                       auth="read", params=PAGE, tag="trading"),
            "delete": _op("Cancel all open orders (of one market)", S("CancelAllReply"), auth="trade",
                          params=[_q("market", MARKET_NAME)], tag="trading"),
        },
        "/api/v1/order-lists": {
            "post": _op("Place an OCO pair or a bracket (docs/exchange.md, linked orders)", S("OrderListReply"),
                        auth="trade", body="OrderListIn", tag="trading"),
            "get": _op("status=open (default): the key's live order lists with their open orders; status=all: "
                       "its lists, live and ended, with all their orders, paginated by list id, from the history "
                       "store", {"anyOf": [arr(S("OrderList")), S("OrderListPage")]}, auth="read",
                       params=[_q("status", {"enum": ["open", "all"], "default": "open"}),
                               *[{**q, "description": q["description"] + " (status=all only)"} for q in PAGE]],
                       tag="trading"),
        },
        "/api/v1/order-lists/{order_list_id}": {
            "delete": _op("Cancel a live order list (both exits; a bracket's entry too)", S("OrderListCancelReply"),
                          auth="trade", params=[_p("order_list_id", {"type": "string", "pattern": "^[0-9]{1,19}$"},
                                           "an order list id")], tag="trading"),
        },
        "/api/v1/orders/open": {"get": _op("Open orders (resting or waiting for a trigger)", arr(S("OpenOrder")),
                                           auth="read", params=[_q("market", MARKET_NAME)], tag="trading")},
        "/api/v1/orders/{order_id}": {
            "get": _op("One of the key's orders", {"anyOf": [S("HistoryOrder"), S("OpenOrder")]}, auth="read",
                       params=[ORDER_PATH], tag="trading"),
            "delete": _op("Cancel an open order", S("CancelReply"), auth="trade", params=[ORDER_PATH],
                          tag="trading"),
            "patch": _op("Amend an open order's price and/or quantity", S("AmendReply"), auth="trade",
                         params=[ORDER_PATH], body="AmendIn", tag="trading"),
        },
        "/api/v1/fills": {"get": _op("Trade history (the key's fills), paginated; from the history store",
                                     S("FillPage"), auth="read", params=PAGE, tag="trading")},
        "/api/v1/withdrawals": {"post": _op("Withdraw from the key's account", S("MoneyReply"), auth="withdraw",
                                            body="MoneyIn", tag="account")},
        "/api/v1/api-keys": {
            "get": _op("The user's active API keys (no secrets)", arr(S("ApiKey")), auth="read", tag="api keys"),
            "post": _op("Create an API key with at most the calling key's permissions; the secret is in this "
                        "reply only", S("ApiKeyCreated"), auth="read", body="KeyIn", tag="api keys"),
        },
        "/api/v1/api-keys/{api_key}": {"delete": _op(
            "Revoke one of the user's keys (the calling key must hold its permissions)", S("RevokeReply"),
            auth="read", params=[_p("api_key", {"type": "string", "maxLength": 64})], tag="api keys")},
        "/api/v1/alerts": {
            "get": _op("Active price alerts", arr(S("Alert")), auth="read", tag="alerts"),
            "post": _op("Add a one-shot price alert", S("AlertReply"), auth="read", body="AlertIn", tag="alerts"),
        },
        "/api/v1/alerts/{alert_id}": {"delete": _op(
            "Cancel a price alert", S("AlertCancelled"), auth="read",
            params=[_p("alert_id", {"type": "string", "pattern": "^[0-9]{1,18}$"})], tag="alerts")},
        "/api/v1/notifications": {"get": _op(
            "Notifications, newest first", arr(S("Notification")), auth="read", tag="alerts",
            params=[_q("unread_only", {"type": "boolean", "default": False}),
                    _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100})])},
        "/api/v1/notifications/read": {"post": _op(
            "Mark notifications read (all of them without ids)", S("MarkReadReply"), auth="read",
            body="MarkReadIn", body_optional=True, tag="alerts")},
        "/api/v1/admin/users": {"post": _op("Create a user (and its account)", S("CreatedUser"), auth="admin",
                                            body="UserIn", tag="admin")},
        "/api/v1/admin/users/{user_id}": {"get": _op(
            "A user with balances and keys", S("AdminUser"), auth="admin", tag="admin",
            params=[_p("user_id", {"type": "string", "pattern": "^[0-9]{1,10}$"})])},
        "/api/v1/admin/users/{user_id}/api-keys": {"post": _op(
            "Create an API key for a user; the secret is in this reply only", S("ApiKeyCreated"), auth="admin",
            body="KeyIn", tag="admin", params=[_p("user_id", {"type": "string", "pattern": "^[0-9]{1,10}$"})])},
        "/api/v1/admin/deposits": {"post": _op("Credit an account", S("MoneyReply"), auth="admin",
                                               body="AdminMoneyIn", tag="admin")},
        "/api/v1/admin/withdrawals": {"post": _op("Debit an account", S("MoneyReply"), auth="admin",
                                                  body="AdminMoneyIn", tag="admin")},
    }


def document() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "lxdex native REST API", "version": "1",
            "description": (
                "Signed requests: headers X-LX-APIKEY, X-LX-TIMESTAMP (ms), X-LX-SIGNATURE and optionally "
                "X-LX-RECV-WINDOW (ms, default 5000, at most the node's recv_window_max_ms); the signature is the "
                "lowercase hex HMAC-SHA256, keyed with the secret's characters, of timestamp + '\\n' + METHOD + "
                "'\\n' + path + '\\n' + raw query string + '\\n' + raw body. Rate limits per IP and per key "
                "answer 429 with Retry-After. See docs/api.md."),
        },
        "servers": [{"url": "/"}],
        "paths": paths(),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-LX-APIKEY"},
                "timestamp": {"type": "apiKey", "in": "header", "name": "X-LX-TIMESTAMP"},
                "signature": {"type": "apiKey", "in": "header", "name": "X-LX-SIGNATURE"},
                "admin": {"type": "http", "scheme": "bearer", "description": "the node config's admin_token"},
            },
        },
    }
