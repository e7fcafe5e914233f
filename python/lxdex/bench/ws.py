"""`lxdex bench ws`: WebSocket fan-out under an order flow, on a real node
process, everything over loopback.

- The node: `lxdex node` (journal fdatasync'd by default), 200 funded accounts,
  with its history store (`history=False`: `--no-history`).
- The flow: one ZeroMQ client process paces `rate` order rows per second
  into BTC-USD (requests of `rows` rows; 70% limit orders around the mid,
  a quarter of them crossing; 30% cancels of its own resting orders).
- The subscribers: `subscribers` WebSocket connections spread over `procs`
  client processes, each subscribed to a depth stream (`btcusd@depth@100ms`
  by default: Binance's 100 ms diff stream; `btcusd@depth` is the 1000 ms
  one) and to the trade stream (`btcusd@trades`, one frame per delivery; or `btcusd@trade`, one
  frame per trade). Each one records every message's lag (arrival time
  minus the event time `E`, the sequencer's timestamp of the batch: one
  clock, one machine), checks that its depth diffs are contiguous
  (`U` = previous `u` + 1: a gap would be a lost message), notes whether
  it was disconnected (1008 slow consumer), and at the end whether it
  caught up with the book (its last `u` is the book's `last_update_id`).
- The probe: another process POSTs a small market buy (`POST /order`) five
  times a second and times it until the trade with its order id arrives on
  its own WebSocket subscription to the trade stream: the end-to-end
  latency from an order to another client seeing its fill.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .node import _config, _cpu_seconds, _fs, _start

MID = 5_000_000  # BTC-USD 50000.00 in ticks
_DEPTH = re.compile(r'"E":(\d+),"s":"[^"]*","U":(\d+),"u":(\d+)')
_E = re.compile(r'"E":(\d+)')


# -- the order flow ----------------------------------------------------------------------------------
def _flow(endpoint: str, rate: float, rows: int, t_start: float, t_end: float, seed: int, q) -> None:
    from ..enums import COMMAND_DTYPE, CommandKind
    from ..node.zmq_client import ZmqClient

    rng = np.random.default_rng(seed)
    c = ZmqClient(endpoint)
    pool = []
    for _ in range(64):
        r = np.zeros(rows, COMMAND_DTYPE)
        side = rng.integers(0, 2, rows)
        off = rng.integers(-20, 60, rows)  # a quarter of the limit orders cross
        r["kind"] = np.where(rng.random(rows) < 0.3, CommandKind.CANCEL, CommandKind.SUBMIT)
        r["market"], r["side"] = 0, side
        r["owner"] = rng.integers(0, 150, rows)
        r["price"] = np.where(side == 0, MID - off, MID + off)
        r["qty"] = rng.integers(1, 20, rows) * 10
        pool.append(r)
    resting: list[tuple[int, int]] = []
    period = rows / rate
    sent = acked = 0
    inflight: dict[int, np.ndarray] = {}
    while time.time() < t_start:
        time.sleep(0.001)
    t0 = time.perf_counter()
    k = 0
    behind = 0.0
    while True:
        now = time.perf_counter()
        due = t0 + k * period
        if time.time() < t_end and now >= due:
            r = pool[k % len(pool)].copy()
            for i in np.flatnonzero(r["kind"] == CommandKind.CANCEL).tolist():
                if resting:
                    oid, owner = resting.pop(random.randrange(len(resting)))
                    r[i]["order_id"], r[i]["owner"] = oid, owner
                else:
                    r[i]["kind"] = CommandKind.SUBMIT
            rid = c.send(r)
            inflight[rid] = r
            sent += rows
            behind = max(behind, now - due)
            k += 1
            continue
        if time.time() >= t_end and not inflight:
            break
        if c.sock.poll(max(0, int((due - time.perf_counter()) * 1000)) if time.time() < t_end else 1000):
            got, _, acks = c.recv()
            req = inflight.pop(got)
            acked += len(acks)
            live = (acks["status"] == 0) & (acks["kind"] == CommandKind.SUBMIT) & (acks["done"] == 0)
            if live.any() and len(resting) < 50_000:
                for i in np.flatnonzero(live).tolist():
                    resting.append((int(acks["order_id"][i]), int(req["owner"][i])))
        elif time.time() >= t_end + 30:
            break
    c.close()
    q.put({"who": "flow", "rows": acked, "sent": sent, "seconds": time.perf_counter() - t0,
           "max_behind_s": round(behind, 3)})


# -- the latency probe -------------------------------------------------------------------------------
def _probe(url: str, http_url: str, trade_stream: str, t_start: float, t_end: float, q) -> None:
    asyncio.run(_probe_async(url, http_url, trade_stream, t_start, t_end, q))


async def _probe_async(url, http_url, trade_stream, t_start, t_end, q) -> None:
    import httpx
    from websockets.asyncio.client import connect

    seen: dict[int, float] = {}
    waiters: dict[int, asyncio.Future] = {}
    conn = await connect(f"{url}/ws/btcusd@{trade_stream}", max_queue=None, ping_interval=None)

    async def listen():
        async for raw in conn:
            t = time.perf_counter()
            m = json.loads(raw)
            trades = m["trades"] if "trades" in m else [m]
            for tr in trades:
                for oid in (tr["b"], tr["a"]):
                    seen[oid] = t
                    w = waiters.pop(oid, None)
                    if w is not None and not w.done():
                        w.set_result(t)

    task = asyncio.create_task(listen())
    lat, misses = [], 0
    body = json.dumps({"symbol": "BTC-USD", "side": "buy", "type": "market", "size": "0.001", "account": 199})
    async with httpx.AsyncClient(base_url=http_url, timeout=30) as http:
        while time.time() * 1000 < t_start:
            await asyncio.sleep(0.01)
        while time.time() * 1000 < t_end:
            t0 = time.perf_counter()
            r = (await http.post("/order", content=body)).json()
            oid = r.get("order_id")
            if oid is None or not r.get("fills"):
                misses += 1
            else:
                t = seen.get(oid)
                if t is None:
                    fut = asyncio.get_running_loop().create_future()
                    waiters[oid] = fut
                    try:
                        t = await asyncio.wait_for(fut, 30)
                    except asyncio.TimeoutError:
                        t = None
                if t is None:
                    misses += 1
                else:
                    lat.append(t - t0)
            await asyncio.sleep(max(0.0, 0.2 - (time.perf_counter() - t0)))
    task.cancel()
    await conn.close()
    q.put({"who": "probe", "lat_s": lat, "misses": misses})


def _children_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each live child process of `pid` (the history writer)."""
    out = {}
    try:
        kids = set()
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                kids.update(int(x) for x in fh.read().split())
        for k in kids:
            out[k] = _cpu_seconds(k)
    except OSError:
        pass
    return out


def _pct(a, ps=(50, 90, 99, 99.9)) -> dict:
    if len(a) == 0:
        return {}
    v = np.percentile(np.asarray(a, dtype=np.float64), ps)
    return {f"p{str(p).replace('.', '')}": round(float(x), 1) for p, x in zip(ps, v)} | {
        "max": round(float(np.max(a)), 1)}


def run(subscribers: int = 1000, rate: float = 10_000, seconds: float = 20.0, procs: int = 4, rows: int = 100,
        trade_stream: str = "trades", sync: str = "fdatasync", dir: Path | None = None,
        progress: Callable[[str], None] = lambda m: None, depth_stream: str = "depth@100ms",
        history: bool = True) -> dict:
    if trade_stream not in ("trades", "trade"):
        raise ValueError("trade_stream: trades or trade")
    if depth_stream not in ("depth@100ms", "depth", "depth@1000ms"):
        raise ValueError("depth_stream: depth@100ms, depth or depth@1000ms")
    root = Path(tempfile.mkdtemp(prefix="lxdex-bench-ws-", dir=dir))
    cfg = root / "node.toml"
    _config(cfg)
    log = open(root / "node.log", "ab")
    result: dict = {"subscribers": subscribers, "target_orders_per_s": rate, "seconds": seconds,
                    "client_procs": procs, "rows_per_request": rows, "trade_stream": f"btcusd@{trade_stream}",
                    "depth_stream": f"btcusd@{depth_stream}", "history": history, "sync": sync, "data_dir_fs": _fs(root)}
    import httpx

    proc = None
    try:
        proc, http, zmq_port = _start(root / "data", cfg, sync, log, history)
        base, ws = f"http://127.0.0.1:{http}", f"ws://127.0.0.1:{http}"
        ctx = mp.get_context("spawn")
        q, ready = ctx.Queue(), ctx.Queue()
        progress(f"node up (http {http}); connecting {subscribers} subscribers in {procs} processes")
        t_conn = time.time()
        share = [subscribers // procs + (1 if i < subscribers % procs else 0) for i in range(procs)]
        win_file = root / "window.json"
        subs = []
        for n in share:
            p = ctx.Process(target=_subscribers, args=(ws, n, depth_stream, trade_stream, ready, str(win_file),
                                                       f"{base}/book/BTC-USD?depth=1", q))
            p.start()
            subs.append(p)
        connected = sum(ready.get(timeout=600) for _ in subs)
        result["connect_seconds"] = round(time.time() - t_conn, 2)
        progress(f"{connected} connected in {result['connect_seconds']} s; flow of {rate:,.0f} orders/s for "
                 f"{seconds} s")
        t_start = time.time() + 1.0
        t_end = t_start + seconds
        tmp = win_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"start_ms": int(t_start * 1000), "end_ms": int(t_end * 1000)}))
        tmp.rename(win_file)
        stats0 = httpx.get(f"{base}/stats/ws", timeout=120).json()
        cpu0, kids0 = _cpu_seconds(proc.pid), _children_cpu(proc.pid)
        flow = ctx.Process(target=_flow, args=(f"tcp://127.0.0.1:{zmq_port}", rate, rows, t_start, t_end, 7, q))
        probe = ctx.Process(target=_probe, args=(ws, base, trade_stream, int(t_start * 1000) + 2000,
                                                 int(t_end * 1000), q))
        flow.start()
        probe.start()
        got = {}
        subs_out = []
        for _ in range(len(subs) + 2):
            r = q.get(timeout=seconds + 900)
            if r["who"] == "subs":
                subs_out.append(r)
            else:
                got[r["who"]] = r
            if r["who"] == "flow":
                cpu = _cpu_seconds(proc.pid) - cpu0
                kids = {k: v - kids0.get(k, 0.0) for k, v in _children_cpu(proc.pid).items()}
                stats1 = httpx.get(f"{base}/stats/ws", timeout=120).json()
        for p in [*subs, flow, probe]:
            p.join(30)
        f = got["flow"]
        result["flow"] = {"orders": f["rows"], "orders_per_s": round(f["rows"] / f["seconds"]),
                          "max_behind_schedule_s": f["max_behind_s"]}
        st = [s for r in subs_out for s in r["stats"]]
        lags = np.concatenate([r["lags"] for r in subs_out]) if subs_out else np.zeros(0)
        final_u = max(r["final_u"] for r in subs_out)
        closed = [s["closed"] for s in st if s["closed"] and s["closed"][0] != 1000]
        result["fanout"] = {
            "connected": sum(r["connected"] for r in subs_out),
            "messages": sum(s["msgs"] for s in st),
            "messages_per_s_per_subscriber": round(float(np.mean([s["msgs"] for s in st])) / seconds, 1),
            "mb_received": round(sum(s["bytes"] for s in st) / 1e6, 1),
            "depth_gaps": sum(s["gaps"] for s in st),
            "disconnected": len(closed),
            "disconnect_reasons": sorted({f"{c} {r}" for c, r in closed}),
            "caught_up": sum(1 for s in st if s["last_u"] == final_u and not s["closed"]),
            "lag_ms": _pct(lags),
        }
        result["server"] = {k: stats1[k] - stats0[k] for k in ("sent", "deliveries", "batches", "slow_consumers")}
        result["server"]["deliveries_per_s"] = round(result["server"]["deliveries"] / seconds, 1)
        result["server"]["node_cpu_s"] = round(cpu, 2)
        # The node's child processes (the history writer) are not in its own CPU time.
        result["server"]["children_cpu_s"] = round(sum(kids.values()), 2)
        n_orders = max(1, f["rows"])
        result["server"]["node_cpu_us_per_order"] = round(cpu / n_orders * 1e6, 1)
        result["server"]["children_cpu_us_per_order"] = round(sum(kids.values()) / n_orders * 1e6, 1)
        result["server"]["node_cpu_us_per_frame"] = round(cpu / max(1, result["server"]["sent"]) * 1e6, 2)
        pr = got["probe"]
        result["e2e_order_to_fill_on_stream_ms"] = _pct([x * 1000 for x in pr["lat_s"]], (50, 99)) | {
            "samples": len(pr["lat_s"]), "misses": pr["misses"]}
        progress("done")
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except Exception:
                proc.kill()
        log.close()
        shutil.rmtree(root, ignore_errors=True)
    return result


def _subscribers(url: str, n: int, depth_stream: str, trade_stream: str, ready, win_file: str, book_url: str,
                 q) -> None:
    asyncio.run(_subscribers_async(url, n, depth_stream, trade_stream, ready, Path(win_file), book_url, q))


async def _subscribers_async(url, n, depth_stream, trade_stream, ready, win_file: Path, book_url, q) -> None:
    """`n` connections; they connect, say so, then learn the measurement
    window (known only once every process has connected) from `win_file`."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    lags: list[int] = []
    win = {"start": 1 << 62, "end": 1 << 62}

    async def one(conn) -> dict:
        st = {"msgs": 0, "depth": 0, "gaps": 0, "last_u": None, "closed": None, "bytes": 0}
        last_u = None
        try:
            async for raw in conn:
                now = int(time.time() * 1000)
                st["msgs"] += 1
                st["bytes"] += len(raw)
                m = _DEPTH.search(raw, 0, 160)
                if m is not None:
                    e, u0, u1 = int(m.group(1)), int(m.group(2)), int(m.group(3))
                    st["depth"] += 1
                    if last_u is not None and u0 != last_u + 1:
                        st["gaps"] += 1
                    last_u = u1
                else:
                    e = int(_E.search(raw).group(1))
                if win["start"] <= now <= win["end"] + 3000:
                    lags.append(now - e)
        except ConnectionClosed as exc:
            st["closed"] = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (1006, "")
        st["last_u"] = last_u
        return st

    conns = []
    for _ in range(n):
        for attempt in range(20):
            try:
                conns.append(await connect(f"{url}/ws/btcusd@{depth_stream}/btcusd@{trade_stream}", max_queue=64,
                                           ping_interval=None, open_timeout=30, close_timeout=1))
                break
            except (OSError, asyncio.TimeoutError):
                await asyncio.sleep(0.1 * (attempt + 1))
    tasks = [asyncio.create_task(one(c)) for c in conns]
    ready.put(len(conns))
    while not win_file.exists():
        await asyncio.sleep(0.05)
    w = json.loads(win_file.read_text())
    win["start"], win["end"] = w["start_ms"], w["end_ms"]
    await asyncio.sleep(max(0.0, w["end_ms"] / 1000 - time.time()) + 3)  # the flow, then 3 s to catch up
    import httpx

    async with httpx.AsyncClient(timeout=120) as http:
        final = (await http.get(book_url)).json()["last_update_id"]
    await asyncio.sleep(2)  # the last diffs
    for c in conns:
        await c.close()
    stats = await asyncio.gather(*tasks)
    q.put({"who": "subs", "connected": len(conns), "final_u": final, "stats": stats,
           "lags": np.array(lags, dtype=np.int64)})
