"""Simulated traders for `lxdex demo`: market makers quoting ladders around
a random-walk mid price, and takers crossing the spread, so that books,
trades and candles move. They trade through the node's command log like
any client (`Node.submit`), as the config's bot accounts."""

from __future__ import annotations

import logging
import random
import threading
from decimal import Decimal

from .. import commands as C
from .config import DEFAULT_ACCOUNTS, Config
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
    from the web UI without an API key) plus the bots' funded accounts."""
    cfg = Config(demo=True)
    cfg.accounts = [dict(a) for a in DEFAULT_ACCOUNTS] + [dict(a) for a in BOT_ACCOUNTS]
    return cfg


class Bots:
    def __init__(self, node: Node, seed: int = 7, rate: float = 5.0) -> None:
        self.node, self.rng, self.rate = node, random.Random(seed), rate
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
        self._pending: list = []

    def start(self) -> None:
        if not self.makers or not self.takers:
            log.warning("bots: the config has no maker-*/taker-* accounts; not trading")
            return
        self.thread = threading.Thread(target=self._run, name="lxdex-bots", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout=5)

    def _submit(self, cmd) -> None:
        self._pending.append(self.node.submit(cmd))

    def _run(self) -> None:
        period = 1.0 / self.rate
        while not self.stop_event.wait(period):
            self._pending = []
            for m in self.markets:
                self._step(m)
            # one group commit for the whole step, then count
            for fut in self._pending:
                try:
                    out = fut.result(timeout=10)
                except NodeStopped:
                    self.stop_event.set()
                    return
                if out.ok:
                    self.placed += 1
                else:
                    self.failed += 1

    def _step(self, m) -> None:
        rng = self.rng
        mid = self.mids[m.symbol]
        mid = max(m.tick_size * 100, mid * (1 + Decimal(rng.gauss(0, 0.0008)).quantize(Decimal("0.000001"))))
        self.mids[m.symbol] = mid
        maker = rng.choice(self.makers)
        self._submit(C.CancelAll(account=maker, market=m.symbol))
        spread = mid * Decimal("0.0004")
        for level in range(5):
            gap = spread * (1 + level) + m.tick_size
            qty = (m.lot_size * rng.randint(5, 60) * max(1, int(Decimal(1000) / mid / m.lot_size / 20)))
            for side, price in (("buy", mid - gap), ("sell", mid + gap)):
                price = (price / m.tick_size).to_integral_value() * m.tick_size
                self._submit(C.PlaceOrder(account=maker, market=m.symbol, side=side, qty=str(qty),
                                          price=str(price)))
        if rng.random() < 0.7:
            taker = rng.choice(self.takers)
            qty = m.lot_size * rng.randint(1, 40) * max(1, int(Decimal(1000) / mid / m.lot_size / 40))
            self._submit(C.PlaceOrder(account=taker, market=m.symbol, side=rng.choice(("buy", "sell")),
                                      qty=str(qty), order_type="market"))
