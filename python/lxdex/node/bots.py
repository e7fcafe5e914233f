"""Simulated traders for `lxdex demo`: market makers quoting ladders around
a random-walk mid price, and takers crossing the spread, so that books,
trades and candles move. They are API clients like any bot: each trades as
one of the config's bot users through the node's REST API with the Python
SDK (`lxdex.client.AsyncClient`, signed requests), with an API key the demo
operator gives it at start (a `create_api_key` command, as the admin
endpoint makes)."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from decimal import Decimal

import httpx

from .. import commands as C
from ..accounts import generate_key_material
from ..client import ApiError, AsyncClient
from .config import DEFAULT_ACCOUNTS, ApiConfig, Config
from .server import Node, NodeStopped

log = logging.getLogger("lxdex.node.bots")

#: Starting mid prices of the default markets.
START_MIDS = {"BTC-USD": Decimal("60000"), "ETH-USD": Decimal("3000"), "SOL-USD": Decimal("150")}

BOT_ACCOUNTS = [
    {"name": f"maker-{i}", "deposits": {"USD": "50000000", "BTC": "500", "ETH": "5000", "SOL": "500000"}}
    for i in (1, 2)
] + [
    {"name": f"taker-{i}", "deposits": {"USD": "50000000", "BTC": "500", "ETH": "5000", "SOL": "500000"}}
    for i in (1, 2)
]


def demo_config() -> Config:
    """The default config in demo mode (the demo trader, account 0, trades
    from the web UI without an API key) plus the bots' funded accounts. The
    bots and the browser share the loopback address: its per-IP rate limit
    is raised so that the bots never crowd out the page."""
    cfg = Config(demo=True)
    cfg.accounts = [dict(a) for a in DEFAULT_ACCOUNTS] + [dict(a) for a in BOT_ACCOUNTS]
    cfg.api = ApiConfig(rate_per_ip=2_000.0, burst_per_ip=4_000, rate_per_key=200.0, burst_per_key=400)
    return cfg


class Bots:
    """The demo's makers and takers (module docstring): `start()` runs them
    on a thread with its own event loop, `stop()` ends them. `placed` and
    `failed` count the orders the node accepted and refused."""

    LEVELS = 3  # maker levels a side

    def __init__(self, node: Node, base_url: str, seed: int = 7, rate: float = 2.0) -> None:
        self.node, self.base_url, self.rng, self.rate = node, base_url, random.Random(seed), rate
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        names = [str(a.get("name")) for a in node.config.accounts]
        self.makers = [i for i, n in enumerate(names) if n.startswith("maker-")]
        self.takers = [i for i, n in enumerate(names) if n.startswith("taker-")]
        with node.lock:
            self.markets = [node.exchange.market(m["symbol"]) for m in node.config.markets]
            mids = {}
            for m in self.markets:
                t = node.exchange.ticker(m.symbol)
                mids[m.symbol] = t["last"] if t else START_MIDS.get(m.symbol, Decimal(100))
        self.mids = mids
        self.placed = self.failed = 0
        self.error: BaseException | None = None

    def start(self) -> None:
        if not self.makers or not self.takers:
            log.warning("bots: the config has no maker-*/taker-* accounts; not trading")
            return
        self.thread = threading.Thread(target=self._thread, name="lxdex-bots", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout=10)

    def _key(self, user: int) -> tuple[str, str]:
        """A read+trade API key for a bot user: `(api_key, secret)`."""
        km = generate_key_material(self.node.master_key, user)
        out = self.node.submit(C.CreateApiKey(user_id=user, api_key=km.api_key, sealed_secret=km.sealed_secret,
                                              permissions=["read", "trade"], label="demo bot")).result(timeout=30)
        if not out.ok:
            raise RuntimeError(f"bots: no API key for user {user}: {out.error}")
        return km.api_key, out.value["secret"]

    def _thread(self) -> None:
        try:
            asyncio.run(self._run())
        except NodeStopped:
            pass
        except httpx.TransportError as e:  # the node's HTTP server went away (the demo is shutting down)
            log.info("bots: stopped, the node's HTTP server is gone (%s)", type(e).__name__)
        except Exception as e:  # the demo goes on without its bots; say why
            self.error = e
            log.exception("bots stopped")

    async def _run(self) -> None:
        clients = {u: AsyncClient(self.base_url, *self._key(u)) for u in self.makers + self.takers}
        try:
            period = 1.0 / self.rate
            while not self.stop_event.is_set():
                started = asyncio.get_running_loop().time()
                await asyncio.gather(*(self._step(m, clients) for m in self.markets))
                await asyncio.sleep(max(0.0, period - (asyncio.get_running_loop().time() - started)))
        finally:
            for c in clients.values():
                await c.aclose()

    async def _order(self, client: AsyncClient, *args, **kw) -> None:
        try:
            await client.place_order(*args, **kw)
            self.placed += 1
        except ApiError as e:  # refused (funds, bands, ...): counted, the demo goes on
            self.failed += 1
            if e.status >= 500 and e.status != 503:
                raise

    async def _step(self, m, clients: dict) -> None:
        rng = self.rng
        mid = self.mids[m.symbol]
        mid = max(m.tick_size * 100, mid * (1 + Decimal(rng.gauss(0, 0.0008)).quantize(Decimal("0.000001"))))
        self.mids[m.symbol] = mid
        maker = clients[rng.choice(self.makers)]
        await maker.cancel_all(m.symbol)
        spread = mid * Decimal("0.0004")
        orders = []
        for level in range(self.LEVELS):
            gap = spread * (1 + level) + m.tick_size
            qty = (m.lot_size * rng.randint(5, 60) * max(1, int(Decimal(1000) / mid / m.lot_size / 20)))
            for side, price in (("buy", mid - gap), ("sell", mid + gap)):
                price = (price / m.tick_size).to_integral_value() * m.tick_size
                orders.append(self._order(maker, m.symbol, side, str(qty), str(price)))
        if rng.random() < 0.7:
            taker = clients[rng.choice(self.takers)]
            qty = m.lot_size * rng.randint(1, 40) * max(1, int(Decimal(1000) / mid / m.lot_size / 40))
            orders.append(self._order(taker, m.symbol, rng.choice(("buy", "sell")), str(qty), type="market"))
        await asyncio.gather(*orders)


