"""Prometheus metrics of a node (`GET /metrics`).

Counters the sequencer keeps (commands, orders, trades, batches, journal and
applied sequence numbers) are read at scrape time by a collector, so the
sequencer's hot path does no metrics work; gateways count their requests in
plain integers (one writer thread each), also read at scrape time. Each
thread's CPU time (`lxdex_thread_cpu_seconds_total{thread=...}`, from
/proc on Linux) says where a node's CPU goes: the event loop, the sequencer,
the journal, the history sender, the gateways.
"""

from __future__ import annotations

import os
import threading

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class _NodeCollector:
    def __init__(self, node) -> None:
        self.node = node

    def collect(self):
        n = self.node
        for name, doc, value in (
            ("lxdex_commands", "Commands applied", n.commands),
            ("lxdex_orders", "Order commands applied", n.orders),
            ("lxdex_trades", "Trades (fills)", n.trades),
            ("lxdex_batches", "Journal batches (group commits)", n.batches),
        ):
            c = CounterMetricFamily(name, doc)
            c.add_metric([], value)
            yield c
        for name, doc, value in (
            ("lxdex_journal_seq", "Last durable sequence number", n.journal.last_seq if n.journal else 0),
            ("lxdex_applied_seq", "Last applied sequence number", n.exchange.last_seq if n.exchange else 0),
            ("lxdex_snapshot_seq", "Sequence number of the newest snapshot", n._snapshot_seq),
            ("lxdex_throughput", "Commands per second over the last 5 s", n.throughput()),
            ("lxdex_healthy", "1 while the node applies commands", 1 if n.healthy else 0),
        ):
            g = GaugeMetricFamily(name, doc)
            g.add_metric([], value)
            yield g


class Count:
    """A counter written by one thread (a gateway's), read at scrape time."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, n: int = 1) -> None:
        self.value += n


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) of each live thread of this process, by
    thread name (threads of one name summed): Python threads by their
    `threading` name, the others (the journal's writer, ZeroMQ's I/O
    threads, ...) by their kernel name; {} off Linux."""
    out: dict[str, float] = {}
    names = {t.native_id: t.name for t in threading.enumerate()}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
        except OSError:  # the thread ended meanwhile
            continue
        fields = rest.split()
        name = names.get(int(tid)) or head.split("(", 1)[1]
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / _TICK
    return out


class _GatewayCollector:
    def __init__(self, m: "Metrics") -> None:
        self.m = m

    def collect(self):
        for name, doc, count in (("lxdex_http_orders", "Orders received on POST /order", self.m.http_orders),
                                 ("lxdex_zmq_messages", "Order messages received on the ZeroMQ gateway",
                                  self.m.zmq_messages)):
            c = CounterMetricFamily(name, doc)
            c.add_metric([], count.value)
            yield c
        c = CounterMetricFamily("lxdex_thread_cpu_seconds", "CPU seconds used by each thread of the node",
                                labels=["thread"])
        for thread, secs in sorted(thread_cpu_seconds().items()):
            c.add_metric([thread], secs)
        yield c


class Metrics:
    def __init__(self, node) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_NodeCollector(node))
        self.http_orders = Count()
        self.zmq_messages = Count()
        self.registry.register(_GatewayCollector(self))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
