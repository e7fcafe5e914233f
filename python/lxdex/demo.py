"""`lxdex demo`: a simulated market on one lxdex book, shown live.

Market makers quote ladders around a mid price that follows a random walk,
re-quoting as it moves; takers send market and IOC orders; a few stop orders
wait for the price. The screen shows the depth ladder, the latest trades and
counters. Without a terminal (CI, a pipe) it prints a few plain snapshots.
"""

from __future__ import annotations

import random
import sys
import time
from collections import deque

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from . import Book, EventKind, OrderRejected, OrderType, Side, TimeInForce


class Market:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.book = Book(tick_size=1, lot_size=1)
        self.mid = 10_000
        self.next_id = 1
        self.quotes: dict[int, list[int]] = {m: [] for m in range(1, 4)}  # maker -> live order ids
        self.trades: deque[tuple[int, int, str]] = deque(maxlen=12)
        self.counts = {"orders": 0, "fills": 0, "cancels": 0, "triggered": 0}

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def _record(self, events) -> None:
        for e in events:
            if e.kind == EventKind.FILL:
                self.counts["fills"] += 1
                self.trades.appendleft((e.price, e.qty, "buy" if e.side == Side.BUY else "sell"))
            elif e.kind == EventKind.CANCELLED:
                self.counts["cancels"] += 1
            elif e.kind == EventKind.TRIGGERED:
                self.counts["triggered"] += 1

    def send(self, fn, *args, **kw) -> None:
        try:
            self._record(fn(*args, **kw))
            self.counts["orders"] += 1
        except OrderRejected:
            pass

    def step(self) -> None:
        rng = self.rng
        self.mid = max(100, self.mid + rng.choice((-2, -1, -1, 0, 0, 1, 1, 2)))
        maker = rng.randint(1, 3)
        # Re-quote: cancel this maker's oldest orders, then post a fresh ladder.
        live = [oid for oid in self.quotes[maker] if self.book.order(oid)]
        while len(live) > 6:
            self.send(self.book.cancel, live.pop(0))
        for level in range(1, 4):
            for side, price in ((Side.BUY, self.mid - level * 2), (Side.SELL, self.mid + level * 2)):
                oid = self._id()
                self.send(self.book.limit, oid, maker, side, price, rng.randint(1, 20), stp="cancel_maker")
                live.append(oid)
        self.quotes[maker] = live
        # Takers.
        for _ in range(rng.randint(0, 3)):
            side = rng.choice((Side.BUY, Side.SELL))
            if rng.random() < 0.5:
                self.send(self.book.market, self._id(), 100 + rng.randint(0, 50), side, rng.randint(1, 15))
            else:
                price = self.mid + (3 if side == Side.BUY else -3)
                self.send(self.book.limit, self._id(), 100 + rng.randint(0, 50), side, price,
                          rng.randint(1, 10), tif=TimeInForce.IOC)
        if rng.random() < 0.05:
            side = rng.choice((Side.BUY, Side.SELL))
            trigger = self.mid + (10 if side == Side.BUY else -10)
            self.send(self.book.submit, self._id(), 999, side, rng.randint(5, 25), 0,
                      OrderType.STOP_MARKET, TimeInForce.IOC, 0, False, 0, trigger)

    def render(self) -> Group:
        bids, asks = self.book.depth(10)
        ladder = Table(title="depth (lxdex.Book)", expand=False)
        ladder.add_column("bid qty", justify="right", style="green")
        ladder.add_column("price", justify="right")
        ladder.add_column("ask qty", justify="right", style="red")
        for price, qty, _ in reversed(asks):
            ladder.add_row("", str(price), str(qty))
        for price, qty, _ in bids:
            ladder.add_row(str(qty), str(price), "")
        tape = Table(title="trades")
        tape.add_column("price", justify="right")
        tape.add_column("qty", justify="right")
        tape.add_column("taker")
        for price, qty, side in self.trades:
            tape.add_row(str(price), str(qty), side, style="green" if side == "buy" else "red")
        stats = " · ".join(f"{k} {v:,}" for k, v in self.counts.items())
        stats += f" · resting {len(self.book)} · stops waiting {self.book.pending_count}"
        return Group(Panel(stats, title="lxdex demo"), ladder, tape)


def run(seconds: float = 20.0, seed: int = 7) -> None:
    market = Market(seed)
    console = Console()
    end = time.monotonic() + seconds
    if not sys.stdout.isatty():
        # No terminal: a few plain snapshots, then exit.
        snapshots = 3
        for i in range(snapshots):
            while time.monotonic() < end - seconds * (snapshots - 1 - i) / snapshots:
                for _ in range(50):
                    market.step()
            console.print(market.render())
        return
    with Live(market.render(), console=console, refresh_per_second=8) as live:
        while time.monotonic() < end:
            for _ in range(20):
                market.step()
            live.update(market.render())
            time.sleep(0.05)
