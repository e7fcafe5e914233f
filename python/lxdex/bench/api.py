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
"""

from __future__ import annotations

import selectors
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path
from typing import Callable

from .node import _cpu_seconds, _lat, _port, _run_clients

ENDPOINTS = [
    ("depth (native, 20 levels)", "/api/v1/markets/BTC-USD/depth?limit=20"),
    ("trades (native, 100)", "/api/v1/markets/BTC-USD/trades?limit=100"),
    ("ticker (native)", "/api/v1/markets/BTC-USD/ticker"),
    ("depth (Binance /api/v3, 20 levels)", "/api/v3/depth?symbol=BTCUSD&limit=20"),
    ("GET /book (docs/node.md, 20 levels)", "/book/BTC-USD?depth=20"),
]


def _config(path: Path) -> None:
    path.write_text("\n".join([
        "snapshot_every = 1000000000",
        "[api]", "rate_per_ip = 1000000000.0", "burst_per_ip = 1000000000",
        "[[accounts]]", 'name = "maker"', 'deposits = { USD = "1000000000", BTC = "100000" }',
        "[[accounts]]", 'name = "taker"', 'deposits = { USD = "1000000000", BTC = "100000" }',
    ]) + "\n")


def _start(data: Path, cfg: Path, log):
    import os
    import subprocess
    import sys

    import httpx

    port = _port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lxdex", "node", "--data-dir", str(data), "--config", str(cfg), "--http-port",
         str(port), "--zmq-port", "0", "--sync", "none"],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, LXDEX_NO_REEXEC="1", OPENBLAS_NUM_THREADS="1"))
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"node exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError("node did not become healthy")


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
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(connections):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        socks.append(s)
    state: dict = {}
    lat: list[int] = []
    errors = 0
    t0 = time.perf_counter()
    t_end = t0 + seconds

    def send(s):
        s.sendall(request)
        state[s] = [time.perf_counter_ns(), b""]

    for s in socks:
        send(s)
        sel.register(s, selectors.EVENT_READ)
    open_socks = len(socks)
    while open_socks:
        for key, _ in sel.select(timeout=30):
            s = key.fileobj
            st = state[s]
            st[1] += s.recv(1 << 20)
            buf = st[1]
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0:
                continue
            head = buf[:head_end].lower()
            i = head.find(b"content-length:")
            j = head.find(b"\r\n", i)
            n = int(head[i + 15:j if j > 0 else None])
            if len(buf) < head_end + 4 + n:
                continue
            lat.append(time.perf_counter_ns() - st[0])
            if not buf.startswith(b"HTTP/1.1 200"):
                errors += 1
            if time.perf_counter() < t_end:
                send(s)
            else:
                sel.unregister(s)
                s.close()
                open_socks -= 1
    q.put({"requests": len(lat), "errors": errors, "seconds": time.perf_counter() - t0, "lat_ns": lat,
           "reply_bytes": n})


def run(seconds: float = 5.0, connections: int = 16, levels: int = 200, trades: int = 200,
        dir: Path | None = None, progress: Callable[[str], None] = lambda m: None) -> dict:
    root = Path(tempfile.mkdtemp(prefix="lxdex-bench-api-", dir=dir))
    cfg = root / "node.toml"
    _config(cfg)
    log = open(root / "node.log", "ab")
    proc, port = _start(root / "data", cfg, log)
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
                "runs": runs}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except Exception:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


