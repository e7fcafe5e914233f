"""The node's web UI: a trading page at `/` (static files in `web/`, shipped
as package data). The page reads market data from the public REST API
(`/api/v1`, docs/api.md) and the WebSocket streams (docs/ws.md); the only
endpoints of its own are

- `GET /ui/api/demo`: the demo account's balances, open orders and last fills
  (only on a node in demo mode; 404 otherwise): the one place where the
  demo account stands in for credentials. Balances and open orders are what
  `/api/v1/balances` and `/api/v1/orders/open` answer (the same functions);
  the fills are the core's last ones with their fees (`/api/v1/fills` reads
  the history store, which a node may not keep);
- `GET /stats/ws`: the WebSocket gateway's counters.

Orders go through `POST /order` and `DELETE /order`, which place them as
the demo account when no account is named.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .api import balances_view, open_orders_view
from .http import JSON, error
from .server import Node
from .ws import WsHub

WEB_DIR = Path(__file__).parent / "web"

#: the account the page trades as on a node in demo mode
DEMO_ACCOUNT = 0


def ui_routes(node: Node, hub: WsHub | None = None) -> list:
    async def index(request: Request) -> Response:
        return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    async def demo(request: Request) -> Response:
        if not node.config.demo or not node.config.accounts:
            return error(404, "NOT_FOUND", "this node is not in demo mode")
        account = DEMO_ACCOUNT
        with node.lock:
            ex = node.exchange
            balances = balances_view(ex, account)
            orders = open_orders_view(ex, account)
            fills = ex.recent_fills(account)
            name = ex.accounts.user(account)["display_name"] if account in ex.accounts else "demo"
        return JSON({"account": account, "name": name, "balances": balances, "open_orders": orders,
                     "fills": fills[::-1]})

    async def ws_stats(request: Request) -> Response:
        return JSON(hub.stats() if hub is not None else {})

    return [
        Route("/", index, methods=["GET"]),
        Route("/ui/api/demo", demo, methods=["GET"]),
        Route("/stats/ws", ws_stats, methods=["GET"]),
        Mount("/web", app=StaticFiles(directory=WEB_DIR), name="web"),
    ]
