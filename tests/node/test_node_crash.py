"""Crash tests of a real node process: SIGKILL in the middle of a ZeroMQ
and HTTP load, restart, and check that every acknowledged order is there,
that no request is half applied, and that the state equals a clean replay
of the journal; then a SIGTERM shuts it down cleanly (exit 0, snapshot)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from lxdex import commands as C
from lxdex.exchange import Exchange
from lxdex.node.journal import Journal
from lxdex.node.zmq_client import GatewayError, ZmqClient, order_rows

pytestmark = pytest.mark.slow

CONFIG = """
snapshot_every = {snapshot_every}
journal_segment_bytes = {segment}
[[accounts]]
name = "alice"
deposits = {{ USD = "100000000", BTC = "1000" }}
[[accounts]]
name = "bob"
deposits = {{ USD = "100000000", BTC = "1000" }}
"""
BUY_BASE, SELL_BASE, HTTP_BASE = 1_000_000, 9_000_000, 8_000_000  # ticks of 0.01: 10000, 90000, 80000 USD


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NodeProc:
    def __init__(self, data: Path, cfg: Path) -> None:
        self.data, self.cfg = data, cfg
        self.http, self.zmq = _port(), _port()
        self.pub = _port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.log = open(self.data.parent / f"node-{self.data.name}.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lxdex", "node", "--data-dir", str(self.data), "--config", str(self.cfg),
             "--http-port", str(self.http), "--zmq-port", str(self.zmq), "--pub-port", str(self.pub)],
            stdout=self.log, stderr=subprocess.STDOUT, env=dict(os.environ, LXDEX_NO_REEXEC="1"))
        deadline = time.time() + 60
        while time.time() < deadline:
            assert self.proc.poll() is None, (self.data.parent / f"node-{self.data.name}.log").read_text()
            try:
                if httpx.get(self.url("/health"), timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError("node did not become healthy")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http}{path}"


def _zmq_load(endpoint: str, stop: threading.Event, acked: dict, sent: dict) -> None:
    with ZmqClient(endpoint) as c:
        inflight, k = 0, 0
        while not stop.is_set():
            while inflight < 8 and not stop.is_set():
                k += 1
                n = 1 + k % 4
                buy = k % 2 == 0
                rows = order_rows([{"kind": "submit", "owner": 0 if buy else 1, "market": 0,
                                    "side": "buy" if buy else "sell", "qty": 100,
                                    "price": (BUY_BASE if buy else SELL_BASE) + k}] * n)
                c.send(rows, k)
                sent[k] = n
                inflight += 1
            try:
                rid, seq, acks = c.recv(timeout=0.5)
            except (TimeoutError, GatewayError):
                continue
            inflight -= 1
            assert (acks["status"] == 0).all(), acks
            acked[rid] = acks["order_id"].tolist()


def _http_load(url: str, stop: threading.Event, acked: list) -> None:
    with httpx.Client(timeout=2) as h:
        k = 0
        while not stop.is_set():
            k += 1
            price = str(Decimal(HTTP_BASE + k) / 100)
            try:
                r = h.post(url, json={"symbol": "BTC-USD", "side": "sell", "price": price, "size": "0.01",
                                      "account": 1})
            except httpx.HTTPError:
                continue
            if r.status_code == 200:
                acked.append(r.json()["order_id"])


@pytest.mark.parametrize("snapshot_every,segment", [(10**9, 64 << 20), (40, 32 << 10)],
                         ids=["journal-only", "snapshots-and-compaction"])
def test_sigkill_under_load_loses_nothing_acknowledged(tmp_path, snapshot_every, segment):
    cfg = tmp_path / "node.toml"
    cfg.write_text(CONFIG.format(snapshot_every=snapshot_every, segment=segment))
    data = tmp_path / "data"
    node = NodeProc(data, cfg)
    node.start()
    stop = threading.Event()
    acked_zmq: dict[int, list[int]] = {}
    sent_zmq: dict[int, int] = {}
    acked_http: list[int] = []
    threads = [threading.Thread(target=_zmq_load, args=(f"tcp://127.0.0.1:{node.zmq}", stop, acked_zmq, sent_zmq)),
               threading.Thread(target=_http_load, args=(node.url("/order"), stop, acked_http))]
    for t in threads:
        t.start()
    deadline = time.time() + 30
    while (len(acked_zmq) < 1500 or len(acked_http) < 50) and time.time() < deadline:
        time.sleep(0.05)
    node.proc.send_signal(signal.SIGKILL)  # mid-load: requests are in flight
    node.proc.wait()
    stop.set()
    for t in threads:
        t.join(10)
    assert len(acked_zmq) >= 1500 and len(acked_http) >= 50
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)

    node.start()  # recovery
    stats = httpx.get(node.url("/stats")).json()
    orders = [o for a in (0, 1) for o in httpx.get(node.url(f"/orders?account={a}")).json()]
    open_ids = {o["order_id"] for o in orders}
    by_price = Counter(int(Decimal(o["price"]) * 100) for o in orders)
    # every acknowledged order is there
    for rid, ids in acked_zmq.items():
        assert set(ids) <= open_ids, f"request {rid}: acked orders {ids} lost"
    assert set(acked_http) <= open_ids
    # no request half applied: its price (unique per request) has all its rows or none
    for rid, n in sent_zmq.items():
        base = BUY_BASE if rid % 2 == 0 else SELL_BASE
        assert by_price.get(base + rid, 0) in (0, n), f"request {rid}: {by_price.get(base + rid)} of {n} rows"
        if rid in acked_zmq:
            assert by_price[base + rid] == n

    if snapshot_every == 10**9:
        # the recovered state equals a clean replay of the whole journal
        ex = Exchange((copy / "master.key").read_bytes())
        with Journal.open(copy, sync="none") as j:
            assert j.first_seq == 1
            for first, payloads in j.read_payloads(1):
                for i, p in enumerate(payloads):
                    ex.execute(C.decode(p), first + i)
        assert (ex.last_seq, ex.state_hash()) == (stats["applied_seq"], stats["state_hash"])

    # the history store caught up with the journal replay: every open order is in it exactly once
    deadline = time.time() + 60
    while time.time() < deadline:
        h = httpx.get(node.url("/stats")).json()["history"]
        if h["last_seq"] == stats["applied_seq"] and h["lag"] == 0:
            break
        time.sleep(0.2)
    assert h["last_seq"] == stats["applied_seq"], h
    seen: list[int] = []
    for account in (0, 1):
        from_id = 0
        while True:
            page = httpx.get(node.url(f"/history/orders?account={account}&from_id={from_id}&limit=1000")).json()
            seen += [o["order_id"] for o in page]
            if len(page) < 1000:
                break
            from_id = page[-1]["order_id"] + 1
    assert len(seen) == len(set(seen)), "an order written twice to the history"
    assert open_ids <= set(seen), f"{len(open_ids - set(seen))} open orders missing from the history"

    # a SIGTERM finishes, snapshots and exits 0
    node.proc.send_signal(signal.SIGTERM)
    assert node.proc.wait(30) == 0
    snaps = sorted((data / "snapshots").glob("*.snap"))
    assert snaps and int(snaps[-1].stem) == stats["applied_seq"]
    log = (tmp_path / "node-data.log").read_text()
    assert "recovered: snapshot at seq" in log and "exited cleanly" in log
