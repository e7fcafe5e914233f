"""The matching-engine benchmark (`lxdex bench engine`).

On the same generated flow (lxdex.bench.workload) it measures:
- the Rust crate alone: `lxdex._core.bench_replay` runs the records through a
  fresh Rust book with no Python in the loop (throughput from an untimed pass,
  per-message latency from a second pass that times each message);
- the Python batch API: `Book.process` on chunks of records;
- the Python per-call API: a plain loop of `submit`/`cancel`/`amend` calls;
- other order books from PyPI, the same flow through their per-call Python
  APIs, for side-by-side ratios: orderly-chaos (C++ via ctypes) and nanobook
  (Rust via PyO3; it hangs on this flow, which the run reports).
Plus the memory cost of empty books and of resting orders (RSS deltas).
"""

from __future__ import annotations

import gc
import os
import platform
import time

import numpy as np

from .. import Book, OrderRejected, bench_replay
from ..enums import CommandKind, OrderType, TimeInForce
from .workload import SCENARIOS, describe, generate


def machine() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "unset"),
    }


def percentiles(ns: np.ndarray) -> dict:
    p50, p99, p999 = np.percentile(ns, [50, 99, 99.9])
    return {"p50_ns": int(p50), "p99_ns": int(p99), "p999_ns": int(p999), "max_ns": int(ns.max())}


def rust_alone(cmds: np.ndarray, repeats: int = 3) -> dict:
    best = min(bench_replay(cmds)[0] for _ in range(repeats))
    _, _, lat = bench_replay(cmds, timed=True)
    return {"msgs_per_s": len(cmds) / best * 1e9, **percentiles(lat)}


def python_batch(cmds: np.ndarray, chunk: int = 4096) -> dict:
    book = Book()
    lat = []
    t0 = time.perf_counter_ns()
    for i in range(0, len(cmds), chunk):
        t = time.perf_counter_ns()
        book.process(cmds[i : i + chunk])
        lat.append(time.perf_counter_ns() - t)
    total = time.perf_counter_ns() - t0
    per_batch = percentiles(np.asarray(lat))
    return {"msgs_per_s": len(cmds) / total * 1e9, "chunk": chunk,
            **{f"batch_{k}": v for k, v in per_batch.items()}}


def _per_call_loop(rows, timed: bool):
    book = Book()
    submit, cancel, amend = book.submit, book.cancel, book.amend
    lat = np.empty(len(rows), dtype=np.int64) if timed else None
    clock = time.perf_counter_ns
    t0 = clock()
    for i, r in enumerate(rows):
        kind = r[0]
        t = clock() if timed else 0
        try:
            if kind == 0:
                submit(r[7], r[8], r[1], r[10], r[9], r[2], r[3])
            elif kind == 1:
                cancel(r[7])
            else:
                amend(r[7], r[9], r[10])
        except OrderRejected:
            pass
        if timed:
            lat[i] = clock() - t
    return clock() - t0, lat


def python_per_call(cmds: np.ndarray) -> dict:
    rows = cmds.tolist()  # (kind, side, order_type, tif, stp, flags, market, order_id, owner, price, qty, ...)
    total, _ = _per_call_loop(rows, timed=False)
    _, lat = _per_call_loop(rows, timed=True)
    return {"msgs_per_s": len(rows) / total * 1e9, **percentiles(lat)}


def nanobook_per_call(cmds: np.ndarray, stall_s: float = 30.0) -> dict | None:
    """The same flow through nanobook's Python API, in a child process: if
    nanobook stops making progress for `stall_s` seconds the run is reported
    as hung at the last command it reached, never as a figure."""
    try:
        import nanobook  # noqa: F401
    except ImportError:
        return None
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    done, result = ctx.Value("q", 0), ctx.Queue()
    child = ctx.Process(target=_nanobook_child, args=(cmds, done, result), daemon=True)
    child.start()
    last, last_change = -1, time.monotonic()
    while child.is_alive():
        child.join(0.5)
        if done.value != last:
            last, last_change = done.value, time.monotonic()
        elif time.monotonic() - last_change > stall_s:
            child.kill()
            child.join()
            return {"hung_at_command": int(done.value), "commands": len(cmds),
                    "note": f"no progress for {stall_s:.0f} s; killed (a nanobook bug on this flow)"}
    return result.get(timeout=5) if not result.empty() else {"failed": f"exit code {child.exitcode}"}


def _nanobook_child(cmds, done, result) -> None:
    result.put(_nanobook_run(cmds, done))


def _nanobook_run(cmds: np.ndarray, done=None) -> dict:
    """Differences from lxdex: nanobook assigns its own order ids (mapped
    here), its modify is cancel-and-replace with a new id (lxdex's
    quantity-down amend keeps priority), and it keeps a trade/event history,
    cleared every 100k commands inside the timing. nanobook 0.19.2 can loop
    forever matching against the tombstones its cancels leave behind (seen
    on every scenario of this flow within the first thousand commands), so
    `compact()` is called after every cancel and modify, inside the timing."""
    import nanobook

    rows = cmds.tolist()
    ex = nanobook.Exchange()
    ids: dict[int, int] = {}
    last: dict[int, tuple[int, int]] = {}
    sides = ("buy", "sell")
    tifs = {TimeInForce.GTC: "gtc", TimeInForce.IOC: "ioc", TimeInForce.FOK: "fok"}
    t0 = time.perf_counter_ns()
    for i, r in enumerate(rows):
        kind, side, otype, tif, oid, price, qty = r[0], r[1], r[2], r[3], r[7], r[9], r[10]
        if kind == CommandKind.SUBMIT:
            if otype == OrderType.MARKET:
                ex.submit_market(sides[side], qty)
            else:
                res = ex.submit_limit(sides[side], price, qty, tifs[tif])
                ids[oid] = res.order_id
                last[oid] = (price, qty)
        elif kind == CommandKind.CANCEL:
            nid = ids.pop(oid, None)
            if nid is not None:
                ex.cancel(nid)
                ex.compact()
        else:
            nid = ids.get(oid)
            if nid is not None:
                old_price, old_qty = last[oid]
                res = ex.modify(nid, price or old_price, qty or old_qty)
                if res.success and res.new_order_id is not None:
                    ids[oid] = res.new_order_id
                ex.compact()
                last[oid] = (price or old_price, qty or old_qty)
        if i % 100_000 == 99_999:
            ex.clear_trades()
            ex.clear_order_history()
        if done is not None and i & 63 == 0:
            done.value = i
    total = time.perf_counter_ns() - t0
    return {"msgs_per_s": len(rows) / total * 1e9, "version": getattr(nanobook, "__version__", "?"),
            "note": "compact() after every cancel/modify (it hangs on tombstones otherwise)"}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory(n_books: int = 21_000, n_orders: int = 1_000_000) -> dict:
    """RSS growth per empty book and per resting order, measured in a fresh
    interpreter (in this one, memory freed by earlier runs would be reused
    and hide the growth)."""
    import json
    import subprocess
    import sys

    code = f"import json; from lxdex.bench.engine import _memory; print(json.dumps(_memory({n_books}, {n_orders})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def _memory(n_books: int, n_orders: int) -> dict:
    gc.collect()
    before = _rss()
    books = [Book() for _ in range(n_books)]
    per_book = (_rss() - before) / n_books
    del books
    gc.collect()
    rng = np.random.default_rng(3)
    from ..enums import COMMAND_DTYPE

    cmds = np.zeros(n_orders, COMMAND_DTYPE)
    cmds["order_id"] = np.arange(1, n_orders + 1)
    cmds["owner"] = rng.integers(1, 1_000, n_orders)
    cmds["side"] = np.arange(n_orders) % 2
    cmds["qty"] = rng.integers(1, 100, n_orders)
    depth = rng.integers(0, 2_000, n_orders)
    cmds["price"] = np.where(cmds["side"] == 0, 100_000 - 1 - depth, 100_000 + 1 + depth)
    book = Book()
    gc.collect()
    before = _rss()
    for i in range(0, n_orders, 65_536):
        book.process(cmds[i : i + 65_536])
    per_order = (_rss() - before) / n_orders
    assert len(book) == n_orders
    return {"bytes_per_empty_book": round(per_book), "bytes_per_resting_order": round(per_order),
            "books_measured": n_books, "orders_measured": n_orders}


def run(commands: int = 2_000_000, scenarios: list[str] | None = None, per_call: int = 300_000,
        seed: int = 1, with_nanobook: bool = True, with_memory: bool = True, progress=None) -> dict:
    scenarios = scenarios or list(SCENARIOS)
    result: dict = {"machine": machine(), "workload": {"commands": commands, "seed": seed,
                                                        "per_call_commands": per_call}, "scenarios": {}}
    for name in scenarios:
        if progress:
            progress(f"generating {commands:,} commands ({name})")
        cmds = generate(commands, name, seed)
        calls = cmds[: min(per_call, commands)]
        row = {"mix": describe(cmds)}
        if progress:
            progress(f"{name}: Rust crate alone")
        row["rust"] = rust_alone(cmds)
        if progress:
            progress(f"{name}: Python batch API")
        row["py_batch"] = python_batch(cmds)
        if progress:
            progress(f"{name}: Python per-call API ({len(calls):,} commands)")
        row["py_call"] = python_per_call(calls)
        if with_nanobook:
            if progress:
                progress(f"{name}: orderly-chaos ({len(calls):,} commands)")
            oc = orderly_per_call(calls)
            if oc:
                row["orderly_chaos"] = oc
                row["py_call_vs_orderly_chaos"] = round(row["py_call"]["msgs_per_s"] / oc["msgs_per_s"], 2)
            if progress:
                progress(f"{name}: nanobook ({len(calls):,} commands)")
            nb = nanobook_per_call(calls)
            if nb:
                row["nanobook"] = nb
                if "msgs_per_s" in nb:
                    row["py_call_vs_nanobook"] = round(row["py_call"]["msgs_per_s"] / nb["msgs_per_s"], 2)
        result["scenarios"][name] = row
    rows = result["scenarios"].values()
    worst = lambda key: min(r[key]["msgs_per_s"] for r in rows)  # noqa: E731
    result["worst_scenario"] = min(result["scenarios"], key=lambda k: result["scenarios"][k]["rust"]["msgs_per_s"])
    result["rust_msgs_per_s"] = round(worst("rust"))
    result["py_batch_msgs_per_s"] = round(worst("py_batch"))
    result["py_call_msgs_per_s"] = round(worst("py_call"))
    result["rust_p99_ns"] = max(r["rust"]["p99_ns"] for r in rows)
    if with_memory:
        if progress:
            progress("memory: 21,000 empty books and 1,000,000 resting orders")
        result["memory"] = memory()
    return result


def orderly_per_call(cmds: np.ndarray) -> dict | None:
    """The same flow through orderly-chaos (PyPI; a C++ price-time book with
    a Python API). Differences: it has no IOC, so an IOC is a limit order
    followed by a cancel of any rest (two calls); a quantity-down amend is
    its `reduce` (keeps priority, like lxdex); a re-price is cancel + new
    limit with the same id."""
    try:
        import orderly_chaos as oc
    except ImportError:
        return None
    rows = cmds.tolist()
    book = oc.LimitOrderBook()
    limit, market, cancel, reduce, get, has = book.limit, book.market, book.cancel, book.reduce, book.get, book.has
    unknown = oc.UnknownOrderIdError
    sides = (oc.Side.BUY, oc.Side.SELL)
    t0 = time.perf_counter_ns()
    for r in rows:
        kind, side, otype, tif, oid, price, qty = r[0], r[1], r[2], r[3], r[7], r[9], r[10]
        if kind == CommandKind.SUBMIT:
            if otype == OrderType.MARKET:
                market(sides[side], oid, qty)
            else:
                limit(sides[side], oid, qty, price)
                if tif != TimeInForce.GTC and has(oid):
                    cancel(oid)
        elif kind == CommandKind.CANCEL:
            try:
                cancel(oid)
            except unknown:
                pass
        else:
            if not has(oid):
                continue
            o = get(oid)
            if price == 0 and qty < o.quantity:
                reduce(oid, o.quantity - qty)
            else:
                cancel(oid)
                limit(o.side, oid, qty or o.quantity, price or o.price)
    total = time.perf_counter_ns() - t0
    return {"msgs_per_s": len(rows) / total * 1e9, "version": getattr(oc, "__version__", "?")}
