"""`lxdex bench node`: a real node process, loaded from separate client
processes over loopback, with the journal fdatasync'd (the default).

- ZeroMQ: each client process keeps `window` requests of `rows` order rows
  in flight (70% limit orders around a mid price, some crossing; 30%
  cancels of the client's own resting orders) and times every request from
  send to ack.
- HTTP: each client process keeps `connections` keep-alive connections,
  one `POST /order` outstanding on each (closed loop), timed from send to
  the complete response.
- Recovery: the node is killed (SIGKILL), and the journal it left is
  replayed by `Node.open()` in this process, timed.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

ACCOUNTS = 200
MID = {0: 5_000_000, 1: 300_000, 2: 150_000}  # ticks: BTC 50000.00, ETH 3000.00, SOL 150.000


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(path: Path) -> None:
    lines = ["snapshot_every = 1000000000", "max_body_bytes = 65536"]
    for i in range(ACCOUNTS):
        lines += ["[[accounts]]", f'name = "bench-{i}"',
                  'deposits = { USD = "1000000000", BTC = "100000", ETH = "1000000", SOL = "10000000" }']
    path.write_text("\n".join(lines) + "\n")


def _start(data: Path, cfg: Path, sync: str, log, history: bool = True,
           zmq: bool = True) -> tuple[subprocess.Popen, int, int | None]:
    """Starts `lxdex node` on free loopback ports and waits for /health:
    `(process, http port, zmq port or None)`."""
    http, zmq_port, pub = _port(), (_port() if zmq else 0), _port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lxdex", "node", "--data-dir", str(data), "--config", str(cfg), "--http-port",
         str(http), "--zmq-port", str(zmq_port), "--pub-port", str(pub), "--sync", sync,
         "--history" if history else "--no-history"],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, LXDEX_NO_REEXEC="1", OPENBLAS_NUM_THREADS="1"))
    import httpx

    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"node exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{http}/health", timeout=1).status_code == 200:
                return proc, http, (zmq_port if zmq else None)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError("node did not become healthy")


# -- ZeroMQ client process ---------------------------------------------------------------
def _zmq_client(endpoint: str, seconds: float, rows: int, window: int, seed: int, q) -> None:
    """One pipelined ZeroMQ client: `window` requests of `rows` orders in
    flight, ~30% of them cancels of random orders of its own that rest. The
    load generator shares the machine with the node, so it does little per
    request: the messages are built in place in one buffer per request in
    flight, from 64 prepared ones."""
    from ..enums import COMMAND_DTYPE, CommandKind
    from ..node.zmq_client import ZmqClient
    from ..node.zmq_gateway import REQ_HEADER, REQ_MAGIC, decode_reply

    rng = np.random.default_rng(seed)
    c = ZmqClient(endpoint)
    n_pool = 64
    pool, pool_cancels = [], []
    for _ in range(n_pool):
        r = np.zeros(rows, COMMAND_DTYPE)
        market = rng.integers(0, 3, rows)
        side = rng.integers(0, 2, rows)
        mids = np.array([MID[m] for m in market.tolist()])
        off = rng.integers(-20, 60, rows)  # mostly resting, some crossing (off < 0)
        r["kind"] = np.where(rng.random(rows) < 0.3, CommandKind.CANCEL, CommandKind.SUBMIT)
        r["market"], r["side"] = market, side
        r["owner"] = rng.integers(0, ACCOUNTS, rows)
        r["price"] = np.where(side == 0, mids - off, mids + off)
        r["qty"] = rng.integers(1, 20, rows) * np.array([10, 1, 1])[market]
        pool.append(r)
        pool_cancels.append(np.flatnonzero(r["kind"] == CommandKind.CANCEL))
    pool_bytes = [r.view(np.uint8) for r in pool]  # (a structured copy goes field by field: 20x slower)
    pool_owner = [np.ascontiguousarray(r["owner"], np.int64) for r in pool]
    pool_market = [np.ascontiguousarray(r["market"], np.int64) for r in pool]
    # One request buffer per slot in flight (a slot is reused once its reply came: sent by then).
    hdr = REQ_HEADER.size
    bufs = [bytearray(hdr + rows * COMMAND_DTYPE.itemsize) for _ in range(window)]
    views = [np.frombuffer(memoryview(b)[hdr:], COMMAND_DTYPE) for b in bufs]
    view_bytes = [np.frombuffer(memoryview(b)[hdr:], np.uint8) for b in bufs]
    free = list(range(window))
    slot_of: dict[int, int] = {}
    submit, cancel = int(CommandKind.SUBMIT), int(CommandKind.CANCEL)
    # the client's resting orders as a bag of (order id, owner, market): random
    # ones are cancelled, their slots refilled from the end of the bag
    cap = 1 << 17
    bag_id = np.zeros(cap, np.uint64)
    bag_owner = np.zeros(cap, np.int64)
    bag_market = np.zeros(cap, np.int64)
    size = 0
    sent_at: dict[int, int] = {}
    lat: list[int] = []
    acked_rows = rejected = cancelled = 0
    rid = 0
    inflight = 0
    t_end = time.perf_counter() + seconds
    t0 = time.perf_counter()
    sock = c.sock  # (the socket itself: `ZmqClient.send` would build and copy each message again)
    while True:
        now = time.perf_counter()
        while inflight < window and now < t_end:
            rid += 1
            slot = free.pop()
            r, buf = views[slot], bufs[slot]
            p = rid % n_pool
            np.copyto(view_bytes[slot], pool_bytes[p])
            cancels = pool_cancels[p]
            k = min(len(cancels), size)
            if k:  # cancel k random resting orders, taking them out of the bag
                pick = rng.choice(size, k, replace=False)
                ci = cancels[:k]
                r["order_id"][ci] = bag_id[pick]
                r["owner"][ci] = bag_owner[pick]
                r["market"][ci] = bag_market[pick]
                # fill the holes below the new size with the tail's entries that were not picked
                new = size - k
                tail_keep = np.ones(k, bool)
                tail_keep[pick[pick >= new] - new] = False
                holes = pick[pick < new]
                for a in (bag_id, bag_owner, bag_market):
                    a[holes] = a[new:size][tail_keep]
                size = new
            if k < len(cancels):
                r["kind"][cancels[k:]] = submit
            REQ_HEADER.pack_into(buf, 0, REQ_MAGIC, rows, rid)
            sock.send(buf)
            sent_at[rid] = time.perf_counter_ns()
            slot_of[rid] = slot
            inflight += 1
        if inflight == 0:
            break
        if not sock.poll(30_000):
            raise TimeoutError("no reply from the gateway in 30 s")
        got, _, acks = decode_reply(sock.recv())
        lat.append(time.perf_counter_ns() - sent_at.pop(got))
        free.append(slot_of.pop(got))
        inflight -= 1
        acked_rows += len(acks)
        ok = acks["status"] == 0
        rejected += len(acks) - int(np.count_nonzero(ok))
        kind = acks["kind"]
        cancelled += int(np.count_nonzero(ok & (kind == cancel)))
        live = np.flatnonzero(ok & (kind == submit) & (acks["done"] == 0))
        n = len(live)
        if n and size + n <= cap:
            p = got % n_pool
            bag_id[size:size + n] = acks["order_id"][live]
            bag_owner[size:size + n] = pool_owner[p][live]
            bag_market[size:size + n] = pool_market[p][live]
            size += n
    elapsed = time.perf_counter() - t0
    c.close()
    q.put({"rows": acked_rows, "rejected": rejected, "cancelled": cancelled, "requests": len(lat), "seconds": elapsed,
           "lat_ns": lat})


# -- HTTP client process -----------------------------------------------------------------
def http_closed_loop(port: int, requests: list[bytes], seconds: float, connections: int) -> dict:
    """`connections` keep-alive connections to 127.0.0.1:`port`, one request
    in flight on each (taken in turn from `requests`, whole HTTP/1.1
    requests), for `seconds`; each timed from send to the complete reply."""
    import selectors

    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(connections):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        socks.append(s)
    state = {}
    lat: list[int] = []
    errors = n = k = 0
    t0 = time.perf_counter()
    t_end = t0 + seconds

    def send(s):
        nonlocal k
        k += 1
        s.sendall(requests[k % len(requests)])
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
    return {"requests": len(lat), "errors": errors, "seconds": time.perf_counter() - t0, "lat_ns": lat,
            "reply_bytes": n}


def _http_client(port: int, seconds: float, connections: int, seed: int, q) -> None:
    rng = random.Random(seed)
    requests = []
    for i in range(512):
        side = rng.randrange(2)
        mid = 50_000
        off = rng.randint(-5, 30)
        price = mid - off if side == 0 else mid + off
        body = json.dumps({"symbol": "BTC-USD", "side": side, "price": price, "size": rng.randint(1, 20) / 1000,
                           "account": rng.randrange(ACCOUNTS)}).encode()
        requests.append(b"POST /order HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    q.put(http_closed_loop(port, requests, seconds, connections))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu(pid: int) -> float:
    """User + system CPU seconds of the node's child processes (the history
    store's writer): its work per order counts as much as the node's own."""
    total = 0.0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return total
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/children") as f:
                kids = [int(k) for k in f.read().split()]
        except OSError:
            continue
        for k in kids:
            try:
                total += _cpu_seconds(k)
            except OSError:
                pass
    return total


def _thread_cpu(port: int) -> dict[str, float]:
    """The node's CPU seconds per thread name (its /metrics)."""
    import httpx

    out = {}
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        if line.startswith("lxdex_thread_cpu_seconds_total{"):
            name = line.split('thread="', 1)[1].split('"', 1)[0]
            out[name] = float(line.rsplit(" ", 1)[1])
    return out


def _per_thread(before: dict, after: dict, n: int) -> dict[str, float]:
    """Microseconds of CPU per order of each thread between two `_thread_cpu` readings."""
    return {k: round((v - before.get(k, 0.0)) / n * 1e6, 1) for k, v in sorted(after.items())
            if n and v - before.get(k, 0.0) > 0.005}


def _lat(ns: list[int]) -> dict:
    a = np.array(ns, dtype=np.int64) / 1e6
    p50, p90, p99, p999 = np.percentile(a, [50, 90, 99, 99.9])
    return {"p50_ms": round(p50, 3), "p90_ms": round(p90, 3), "p99_ms": round(p99, 3), "p999_ms": round(p999, 3),
            "max_ms": round(float(a.max()), 3)}


def _run_clients(target, args_list) -> list[dict]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, q)) for a in args_list]
    for p in procs:
        p.start()
    out = [q.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(30)
    return out


def run(seconds: float = 10.0, zmq_clients: int = 1, rows: int = 256, window: int = 16, http_clients: int = 1,
        connections: int = 32, sync: str = "fdatasync", dir: Path | None = None,
        progress: Callable[[str], None] = lambda m: None, history: bool = True) -> dict:
    root = Path(tempfile.mkdtemp(prefix="lxdex-bench-node-", dir=dir))
    cfg = root / "node.toml"
    _config(cfg)
    data = root / "data"
    log = open(root / "node.log", "ab")
    result: dict = {"sync": sync, "history": history, "accounts": ACCOUNTS, "markets": 3, "data_dir_fs": _fs(root)}
    try:
        proc, http, zmq_port = _start(data, cfg, sync, log, history)
        if zmq_clients:
            progress(f"node up (http {http}, zmq {zmq_port}, sync {sync}); ZeroMQ load for {seconds} s")
            result["zmq"] = _zmq_load(proc, zmq_port, seconds, zmq_clients, rows, window, http)
            if not history:
                del result["zmq"]["orders_per_s_history_complete"]
            progress(f"zmq: {result['zmq']['orders_per_s']:,} orders/s, p99 {result['zmq']['latency']['p99_ms']} ms"
                     + (f"; HTTP load for {seconds} s" if http_clients else ""))
        if http_clients:
            cpu0, kids0, threads0 = _cpu_seconds(proc.pid), _children_cpu(proc.pid), _thread_cpu(http)
            res = _run_clients(_http_client, [(http, seconds, connections, 21 + i) for i in range(http_clients)])
            threads1 = _thread_cpu(http)
            cpu = _cpu_seconds(proc.pid) - cpu0
            _history_caught_up(http)
            kids = _children_cpu(proc.pid) - kids0
            n = sum(r["requests"] for r in res)
            secs = max(r["seconds"] for r in res)
            result["http"] = {"clients": http_clients, "connections": connections * http_clients, "requests": n,
                              "errors": sum(r["errors"] for r in res), "seconds": round(secs, 3),
                              "orders_per_s": round(n / secs), "latency": _lat([x for r in res for x in r["lat_ns"]])}
            result["http"] |= {"node_cpu_s": round(cpu, 2), "orders_per_node_cpu_s": round(n / cpu),
                               "writer_cpu_s": round(kids, 2), "orders_per_cpu_s_with_writer": round(n / (cpu + kids)),
                               "cpu_us_per_order_by_thread": _per_thread(threads0, threads1, n)}
            progress(f"http: {result['http']['orders_per_s']:,} orders/s, p99 {result['http']['latency']['p99_ms']} ms; "
                     "killing the node and timing recovery")
        import httpx

        stats = httpx.get(f"http://127.0.0.1:{http}/stats").json()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        result["recovery"] = _recover(data, stats)
        progress(f"recovery: {result['recovery']['records_per_s']:,} journal records/s, "
                 f"{result['recovery']['orders_per_s']:,} order commands/s")
    finally:
        log.close()
        shutil.rmtree(root, ignore_errors=True)
    return result


def _history_caught_up(http: int, timeout: float = 300.0) -> float:
    """Waits until the history store has written everything applied;
    returns how long that took (0 without a history store). Raises
    RuntimeError if it has not within `timeout` seconds, or failed."""
    import httpx

    t0 = time.perf_counter()
    while True:
        h = httpx.get(f"http://127.0.0.1:{http}/stats", timeout=10).json().get("history")
        if not h or h["lag"] == 0:
            return time.perf_counter() - t0
        if h.get("failed") or time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"the history store did not catch up within {timeout} s: {h}")
        time.sleep(0.1)


def _zmq_load(proc, zmq_port: int, seconds: float, zmq_clients: int, rows: int, window: int, http: int) -> dict:
    cpu0, kids0 = _cpu_seconds(proc.pid), _children_cpu(proc.pid)
    res = _run_clients(_zmq_client, [(f"tcp://127.0.0.1:{zmq_port}", seconds, rows, window, 11 + i)
                                     for i in range(zmq_clients)])
    n_rows = sum(r["rows"] for r in res)
    secs = max(r["seconds"] for r in res)
    cpu = _cpu_seconds(proc.pid) - cpu0
    # The writer's share of these orders: its CPU until it has caught up (so the HTTP load after this starts
    # with the writer idle).
    catch_up = _history_caught_up(http)
    kids = _children_cpu(proc.pid) - kids0
    return {"clients": zmq_clients, "history_catch_up_s": round(catch_up, 2), "rows_per_request": rows, "window": window,
            "orders": n_rows, "rejected": sum(r["rejected"] for r in res),
            "cancels": sum(r["cancelled"] for r in res), "seconds": round(secs, 3),
            "orders_per_s": round(n_rows / secs),
            # Sustained with the history: the orders over the time until the history store had them all.
            "orders_per_s_history_complete": round(n_rows / (secs + catch_up)),
            "requests_per_s": round(sum(r["requests"] for r in res) / secs),
            "latency": _lat([x for r in res for x in r["lat_ns"]]),
            "node_cpu_s": round(cpu, 2), "orders_per_node_cpu_s": round(n_rows / cpu),
            "writer_cpu_s": round(kids, 2), "orders_per_cpu_s_with_writer": round(n_rows / (cpu + kids))}


def _recover(data: Path, stats: dict) -> dict:
    """Times `Node.open()` on the journal the killed node left, then a
    second replay that splits the time between binary `Records` batches
    (rows/s) and single commands (commands/s)."""
    from .. import commands as C
    from ..exchange import Exchange
    from ..node.config import Config
    from ..node.journal import Journal
    from ..node.server import Node, load_master_key

    node = Node(data, Config(), sync="none")
    t0 = time.perf_counter()
    rec = node.open()
    secs = time.perf_counter() - t0
    node.journal.close()
    ex = Exchange(load_master_key(data))
    n_rec = n_rows = n_single = 0
    t_rec = t_single = 0.0
    with Journal.open(data, sync="none") as j:
        for first, payloads in j.read_payloads(1):
            for i, p in enumerate(payloads):
                t = time.perf_counter()
                c = C.decode(p)
                ex.execute(c, first + i)
                dt = time.perf_counter() - t
                if isinstance(c, C.Records):
                    n_rec += 1
                    n_rows += len(c.data) // 120
                    t_rec += dt
                else:
                    n_single += 1
                    t_single += dt
    records = n_rec + n_single
    return {"records": records, "seconds": round(secs, 3), "records_per_s": round(records / secs),
            "order_commands": n_rows + n_single, "orders_per_s": round((n_rows + n_single) / secs),
            "binary_batches": n_rec, "binary_rows": n_rows, "binary_rows_per_s": round(n_rows / t_rec) if t_rec else 0,
            "single_commands": n_single, "single_commands_per_s": round(n_single / t_single) if t_single else 0,
            "hash_matches": rec.state_hash == stats["state_hash"] and rec.last_seq == stats["applied_seq"]
            and ex.state_hash() == stats["state_hash"]}


def _fs(path: Path) -> str:
    from .journal import _filesystem

    return _filesystem(path)
