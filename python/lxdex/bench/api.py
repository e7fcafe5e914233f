"""`lxdex bench api`: GET market data from the REST API of a real node
process, over loopback, from a separate client process.

The node (`lxdex node`, journal sync off: this measures reads) gets a book
of `levels` resting orders a side on BTC-USD and `trades` trades first
(through `POST /order`). Then, for each endpoint in turn, one client process
keeps `connections` keep-alive connections with one GET outstanding on each
(closed loop) for `seconds`, and counts complete 200 replies. The node's own
CPU time over each run (user + system, all threads, from /proc) gives
requests per node CPU-second: the figure that scales with cores, as far as
one node process uses one core for its event loop.

The sequencer is idle during the runs, so with the node's reply cache on
(the default, docs/api.md) every cacheable reply after the first is a cache
hit; `reply_cache=False` (`--no-reply-cache`) measures building every reply.
`/book` (docs/node.md) is never cached.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
from pathlib import Path
from typing import Callable

from .node import _cpu_seconds, _lat, _run_clients, _start, http_closed_loop

ENDPOINTS = [
    ("depth (native, 20 levels)", "/api/v1/markets/BTC-USD/depth?limit=20"),
    ("trades (native, 100)", "/api/v1/markets/BTC-USD/trades?limit=100"),
    ("ticker (native)", "/api/v1/markets/BTC-USD/ticker"),
    ("depth (Binance /api/v3, 20 levels)", "/api/v3/depth?symbol=BTCUSD&limit=20"),
    ("GET /book (docs/node.md, 20 levels)", "/book/BTC-USD?depth=20"),
]


def _config(path: Path, reply_cache: bool) -> None:
    path.write_text("\n".join([
        "snapshot_every = 1000000000",
        "[api]", "rate_per_ip = 1000000000.0", "burst_per_ip = 1000000000",
        f"reply_cache = {'true' if reply_cache else 'false'}",
        "[[accounts]]", 'name = "maker"', 'deposits = { USD = "1000000000", BTC = "100000" }',
        "[[accounts]]", 'name = "taker"', 'deposits = { USD = "1000000000", BTC = "100000" }',
    ]) + "\n")


def _fill_book(port: int, levels: int, trades: int) -> None:
    import httpx

    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
        for i in range(levels):
            for side, price in ((0, 50_000 - 1 - i), (1, 50_000 + 1 + i)):
                r = c.post("/order", json={"symbol": "BTC-USD", "side": side, "price": price, "size": "0.5",
                                           "account": 0})
                r.raise_for_status()
        for i in range(trades):
            side = i % 2
            r = c.post("/order", json={"symbol": "BTC-USD", "side": side, "price": 50_001 if side == 0 else 49_999,
                                       "size": "0.001", "account": 1})
            r.raise_for_status()


def _get_client(port: int, path: str, seconds: float, connections: int, q) -> None:
    q.put(http_closed_loop(port, [f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()], seconds, connections))


def run(seconds: float = 5.0, connections: int = 16, levels: int = 200, trades: int = 200,
        dir: Path | None = None, progress: Callable[[str], None] = lambda m: None, reply_cache: bool = True) -> dict:
    root = Path(tempfile.mkdtemp(prefix="lxdex-bench-api-", dir=dir))
    cfg = root / "node.toml"
    _config(cfg, reply_cache)
    log = open(root / "node.log", "ab")
    proc, port, _ = _start(root / "data", cfg, "none", log, zmq=False)
    try:
        progress(f"node up on port {port}; {levels} levels a side and {trades} trades on BTC-USD")
        _fill_book(port, levels, trades)
        runs = []
        for name, path in ENDPOINTS:
            progress(f"GET {path}: {connections} connections for {seconds} s")
            cpu0 = _cpu_seconds(proc.pid)
            [r] = _run_clients(_get_client, [(port, path, seconds, connections)])
            cpu = _cpu_seconds(proc.pid) - cpu0
            ok = r["requests"] - r["errors"]
            runs.append({"endpoint": name, "path": path, "requests": r["requests"], "errors": r["errors"],
                         "seconds": round(r["seconds"], 3), "requests_per_s": round(ok / r["seconds"]),
                         "node_cpu_s": round(cpu, 3), "requests_per_node_cpu_s": round(ok / cpu) if cpu else None,
                         "reply_bytes": r["reply_bytes"], "latency": _lat(r["lat_ns"])})
        return {"connections": connections, "seconds_each": seconds, "levels": levels, "trades": trades,
                "reply_cache": reply_cache, "runs": runs}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except Exception:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


