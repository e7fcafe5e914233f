"""The node's web UI: a trading page at `/` (static files in `web/`, shipped
as package data) and the few read endpoints it needs that the node's REST
API does not have yet (to be reconciled with /api/v1):

- `GET /ui/api/klines/{symbol}?interval=1m&limit=300`: candles, oldest first;
- `GET /ui/api/tickers`: every market's 24 h ticker;
- `GET /ui/api/demo`: the demo account's balances, open orders and last fills
  (only on a node in demo mode; 404 otherwise);
- `GET /stats/ws`: the WebSocket gateway's counters.

Everything live on the page comes over the WebSocket (docs/ws.md); orders go
through `POST /order` and `DELETE /order`, which place them as the demo
account when no account is named.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .http import JSON, error
from .server import Node
from .ws import KLINE_INTERVALS, WsHub

WEB_DIR = Path(__file__).parent / "web"


def ui_routes(node: Node, hub: WsHub | None = None) -> list:
    async def index(request: Request) -> Response:
        return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    async def klines(request: Request) -> Response:
        symbol = request.path_params["symbol"]
        interval = request.query_params.get("interval", "1m")
        if interval not in KLINE_INTERVALS:
            return error(400, "INVALID_REQUEST", f"interval: one of {' '.join(KLINE_INTERVALS)}", "interval")
        raw = request.query_params.get("limit", "300")
        if not raw.isdigit() or not 1 <= int(raw) <= 1000:
            return error(400, "INVALID_REQUEST", "limit: an integer in 1..1000", "limit")
        with node.lock:
            ex = node.exchange
            if symbol not in ex._markets:
                return error(404, "UNKNOWN_MARKET", f"market: no market {symbol!r}", "symbol")
            candles = ex.candles(symbol, interval, 0, int(raw))
        return JSON([[c["start"], c["open"], c["high"], c["low"], c["close"], c["volume"], c["trades"]]
                     for c in candles])

    async def tickers(request: Request) -> Response:
        out = []
        with node.lock:
            ex = node.exchange
            for m in ex._market_by_id:
                t = ex.ticker(m.symbol)
                row = {"symbol": m.symbol}
                if t is not None:
                    row |= {"last": t["last"], "open": t["open"], "high": t["high"], "low": t["low"],
                            "volume": t["volume"], "change": t["change"], "change_pct": t["change_pct"]}
                out.append(row)
        return JSON(out)

    async def demo(request: Request) -> Response:
        if not node.config.demo or not node.config.accounts:
            return error(404, "NOT_FOUND", "this node is not in demo mode")
        account = 0
        with node.lock:
            ex = node.exchange
            by_id = {a.id: a for a in ex._assets.values()}
            balances = [{"asset": by_id[a].symbol, "free": Decimal(f).scaleb(-by_id[a].decimals),
                         "locked": Decimal(h).scaleb(-by_id[a].decimals)}
                        for a, f, h in ex.core.balances(account) if a in by_id]
            orders = ex.open_orders(account)
            fills = ex.recent_fills(account)
            name = ex.accounts.user(account)["display_name"] if account in ex.accounts else "demo"
        return JSON({"account": account, "name": name, "balances": balances, "open_orders": orders,
                     "fills": fills[::-1]})

    async def ws_stats(request: Request) -> Response:
        return JSON(hub.stats() if hub is not None else {})

    return [
        Route("/", index, methods=["GET"]),
        Route("/ui/api/klines/{symbol}", klines, methods=["GET"]),
        Route("/ui/api/tickers", tickers, methods=["GET"]),
        Route("/ui/api/demo", demo, methods=["GET"]),
        Route("/stats/ws", ws_stats, methods=["GET"]),
        Mount("/web", app=StaticFiles(directory=WEB_DIR), name="web"),
    ]
