"""Prometheus metrics of a node (`GET /metrics`).

Counters the sequencer keeps (commands, orders, trades, batches, journal and
applied sequence numbers) are read at scrape time by a collector, so the
sequencer's hot path does no metrics work; gateways count their requests.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest
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


class Metrics:
    def __init__(self, node) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_NodeCollector(node))
        self.http_orders = Counter("lxdex_http_orders", "Orders received on POST /order", registry=self.registry)
        self.zmq_messages = Counter("lxdex_zmq_messages", "Order messages received on the ZeroMQ gateway",
                                    registry=self.registry)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
