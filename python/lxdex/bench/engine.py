"""The matching-engine benchmark (`lxdex bench engine`).

On the same generated flow (`lxdex.bench.workload`, one market) it measures:

- the Rust crate alone: `lxdex._core.bench_replay` runs the records through a
  fresh Rust book with no Python in the loop; throughput from untimed passes
  (best of 3), per-message latency from a pass that times each message;
- the Python batch API: `Book.process` on chunks of 4,096 records
  (throughput and per-chunk latency) and on the whole array at once;
- the Python per-call API: a plain Python loop of `submit` / `cancel` /
  `amend` calls over every command (rejections caught as `OrderRejected`);
  throughput from an untimed pass, per-call latency from a second pass with
  `time.perf_counter_ns` around each call;
- other order books from PyPI, the same flow through their per-call Python
  APIs, side by side with lxdex's per-call API on the same commands:
  orderly-chaos (C++) and nanobook (Rust). nanobook 0.19.2 cannot run this
  flow (see `nanobook_defect`): it is run in a child process under a
  watchdog and reported as hung, and it is also compared on the flow's
  submit-only part, which it can run;
- memory: RSS growth per empty `Book` and per resting order.

Every figure is measured when the command runs; nothing is hard-coded.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

from .. import Book, OrderRejected, bench_replay
from ..enums import COMMAND_DTYPE, CommandKind, OrderType, TimeInForce
from .workload import SCENARIOS, WORST_CASE, describe, generate, workload_params

BATCH = 4_096
CALL_CHUNK = 200_000  # commands converted to Python lists at a time (outside the timing)


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
        "numpy": np.__version__,
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "unset"),
    }


def percentiles(ns: np.ndarray) -> dict:
    p50, p99, p999 = np.percentile(ns, [50, 99, 99.9])
    return {"p50_ns": int(p50), "p99_ns": int(p99), "p999_ns": int(p999), "max_ns": int(ns.max())}


# --- lxdex -----------------------------------------------------------------

def rust_alone(cmds: np.ndarray, repeats: int = 3) -> dict:
    runs = [bench_replay(cmds, 1, 1, False) for _ in range(repeats)]
    best = min(r[0] for r in runs)
    _, n_events, lat = bench_replay(cmds, 1, 1, True)
    return {"msgs_per_s": len(cmds) / best * 1e9, "elapsed_ns": int(best), "events": int(n_events),
            **percentiles(lat)}


def python_batch(cmds: np.ndarray, chunk: int = BATCH) -> dict:
    book = Book(tick_size=1, lot_size=1)
    lat = []
    clock = time.perf_counter_ns
    t0 = clock()
    for i in range(0, len(cmds), chunk):
        t = clock()
        book.process(cmds[i : i + chunk])
        lat.append(clock() - t)
    total = clock() - t0
    del book
    gc.collect()
    book = Book(tick_size=1, lot_size=1)
    t = clock()
    book.process(cmds)
    whole = clock() - t
    return {"msgs_per_s": len(cmds) / total * 1e9, "chunk": chunk,
            **{f"batch_{k}": v for k, v in percentiles(np.asarray(lat)).items()},
            "whole_array_msgs_per_s": len(cmds) / whole * 1e9}


def _columns(cmds: np.ndarray) -> tuple:
    return tuple(cmds[f].tolist() for f in ("kind", "order_id", "owner", "side", "qty", "price", "order_type",
                                            "tif", "display_qty", "trigger_price"))


def _lxdex_loop(book, cols, lat: np.ndarray | None, at: int, extras: bool) -> int:
    """One pass of per-call API calls over `cols`; returns its duration (ns).
    With `lat`, times each call into lat[at:]. With `extras`, submits pass
    display_qty and trigger_price too (icebergs and stops)."""
    submit, cancel, amend = book.submit, book.cancel, book.amend
    clock = time.perf_counter_ns
    kind_l, oid_l, owner_l, side_l, qty_l, price_l, otype_l, tif_l, disp_l, trig_l = cols
    if lat is None and not extras:  # the throughput pass: nothing but the calls
        t0 = clock()
        for kind, oid, owner, side, qty, price, otype, tif in zip(kind_l, oid_l, owner_l, side_l, qty_l,
                                                                  price_l, otype_l, tif_l):
            try:
                if kind == 0:
                    submit(oid, owner, side, qty, price, otype, tif)
                elif kind == 1:
                    cancel(oid)
                else:
                    amend(oid, price, qty)
            except OrderRejected:
                pass
        return clock() - t0
    rows = zip(kind_l, oid_l, owner_l, side_l, qty_l, price_l, otype_l, tif_l, disp_l, trig_l)
    if lat is None:  # the throughput pass with extras
        t0 = clock()
        for kind, oid, owner, side, qty, price, otype, tif, disp, trig in rows:
            try:
                if kind == 0:
                    submit(oid, owner, side, qty, price, otype, tif, 0, False, disp, trig)
                elif kind == 1:
                    cancel(oid)
                else:
                    amend(oid, price, qty)
            except OrderRejected:
                pass
        return clock() - t0
    t0 = clock()
    for j, (kind, oid, owner, side, qty, price, otype, tif, disp, trig) in enumerate(rows, at):
        t = clock()
        try:
            if kind == 0:
                if extras:
                    submit(oid, owner, side, qty, price, otype, tif, 0, False, disp, trig)
                else:
                    submit(oid, owner, side, qty, price, otype, tif)
            elif kind == 1:
                cancel(oid)
            else:
                amend(oid, price, qty)
        except OrderRejected:
            pass
        lat[j] = clock() - t
    return clock() - t0


def python_per_call(cmds: np.ndarray, extras: bool = False, timed: bool = True) -> dict:
    """Throughput of the per-call API over all of `cmds` (an untimed pass),
    and per-call latency percentiles (a second, timed pass)."""
    def one_pass(lat):
        book = Book(tick_size=1, lot_size=1)
        total = 0
        for i in range(0, len(cmds), CALL_CHUNK):
            cols = _columns(cmds[i : i + CALL_CHUNK])  # list conversion: not timed
            total += _lxdex_loop(book, cols, lat, i, extras)
        return total

    total = one_pass(None)
    out = {"msgs_per_s": len(cmds) / total * 1e9, "commands": len(cmds)}
    if timed:
        lat = np.empty(len(cmds), np.int64)
        one_pass(lat)
        out.update(percentiles(lat))
    return out


# --- other order books ------------------------------------------------------

ORDERLY_CHAOS_NOTES = (
    "orderly-chaos: no IOC, so an IOC is its limit order plus a cancel of any rest (two calls); "
    "a quantity-down amend is its reduce() (keeps priority, as in lxdex); a re-price is cancel + "
    "new limit with the same id; no owners or self-trade prevention."
)

NANOBOOK_NOTES = (
    "nanobook: it assigns its own order ids (the adapter maps ours to its, a dict lookup per cancel/"
    "amend inside the timing; lxdex takes the caller's ids); modify() is cancel-and-replace under a "
    "new id and loses queue priority even for a quantity-down amend (lxdex keeps priority there); no "
    "owners or self-trade prevention; it keeps every order, trade and command in in-memory histories "
    "(trades and order history are cleared every 100,000 commands inside the timing, its event log "
    "cannot be cleared)."
)


def orderly_per_call(cmds: np.ndarray) -> dict | None:
    """The flow through orderly-chaos (PyPI; a C++ price-time book with a
    Python API). See ORDERLY_CHAOS_NOTES for how commands map."""
    try:
        import orderly_chaos as oc
    except ImportError:
        return None
    kind_l, oid_l, _, side_l, qty_l, price_l, otype_l, tif_l, _, _ = _columns(cmds)
    book = oc.LimitOrderBook()
    limit, market, cancel, reduce, get, has = book.limit, book.market, book.cancel, book.reduce, book.get, book.has
    unknown = oc.UnknownOrderIdError
    sides = (oc.Side.BUY, oc.Side.SELL)
    t0 = time.perf_counter_ns()
    for kind, oid, side, qty, price, otype, tif in zip(kind_l, oid_l, side_l, qty_l, price_l, otype_l, tif_l):
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
    return {"msgs_per_s": len(cmds) / total * 1e9, "commands": len(cmds),
            "version": _version("orderly-chaos")}


def _version(dist: str) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # noqa: BLE001
        return "?"


def _nanobook_run(cmds: np.ndarray, done=None) -> dict:
    """The flow through nanobook's Python API (see NANOBOOK_NOTES)."""
    import nanobook

    kind_l, oid_l, _, side_l, qty_l, price_l, otype_l, tif_l, _, _ = _columns(cmds)
    ex = nanobook.Exchange()
    submit_limit, submit_market, cancel, modify = ex.submit_limit, ex.submit_market, ex.cancel, ex.modify
    ids: dict[int, int] = {}  # our id -> nanobook's id of the order now resting
    last: dict[int, tuple[int, int]] = {}  # our id -> (price, qty) as last set
    sides = ("buy", "sell")
    tifs = {TimeInForce.GTC: "gtc", TimeInForce.IOC: "ioc", TimeInForce.FOK: "fok"}
    t0 = time.perf_counter_ns()
    for i, (kind, oid, side, qty, price, otype, tif) in enumerate(
            zip(kind_l, oid_l, side_l, qty_l, price_l, otype_l, tif_l)):
        if kind == CommandKind.SUBMIT:
            if otype == OrderType.MARKET:
                submit_market(sides[side], qty)
            else:
                res = submit_limit(sides[side], price, qty, tifs[tif])
                if tif == TimeInForce.GTC:
                    ids[oid] = res.order_id
                    last[oid] = (price, qty)
        elif kind == CommandKind.CANCEL:
            nid = ids.pop(oid, None)
            if nid is not None:
                cancel(nid)  # a filled order: nanobook reports failure, like lxdex's UNKNOWN_ORDER
        else:
            nid = ids.get(oid)
            if nid is not None:
                old_price, old_qty = last[oid]
                new = (price or old_price, qty or old_qty)
                res = modify(nid, *new)
                if res.success and res.new_order_id is not None:
                    ids[oid] = res.new_order_id
                last[oid] = new
        if i % 100_000 == 99_999:
            ex.clear_trades()
            ex.clear_order_history()
        if done is not None and i & 63 == 0:
            done.value = i
    total = time.perf_counter_ns() - t0
    return {"msgs_per_s": len(cmds) / total * 1e9, "commands": len(cmds), "version": _version("nanobook")}


def _nanobook_child(cmds, done, result) -> None:
    result.put(_nanobook_run(cmds, done))


def nanobook_per_call(cmds: np.ndarray, stall_s: float = 10.0) -> dict | None:
    """nanobook on `cmds` in a child process: if it stops making progress for
    `stall_s` seconds (no single call of a working book takes that long) the
    run is reported as hung at the last command it reached, never as a
    figure."""
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
    while True:
        try:
            return result.get(timeout=0.5)
        except Exception:  # noqa: BLE001 (queue.Empty)
            pass
        if not child.is_alive():
            return {"failed": f"exit code {child.exitcode}", "commands": len(cmds)}
        if done.value != last:
            last, last_change = done.value, time.monotonic()
        elif time.monotonic() - last_change > stall_s:
            child.kill()
            child.join()
            return {"hung_at_command": int(done.value), "commands": len(cmds),
                    "note": f"no progress for {stall_s:.0f} s; killed"}


# The smallest command sequence (found by delta debugging the benchmark flow)
# on which nanobook 0.19.2 never returns; run in a child with a timeout.
_NANOBOOK_REPRO = """
import nanobook
ex = nanobook.Exchange()
a = ex.submit_limit("buy", 100, 2, "gtc").order_id
b = ex.submit_limit("buy", 100, 3, "gtc").order_id
ex.submit_limit("sell", 100, 2, "ioc")    # fills a; a leaves the front of the level's queue
ex.cancel(b)                              # b is cancelled ...
print("depth after cancelling b:", [(l.price, l.quantity, l.order_count) for l in ex.full_book().bids], flush=True)
c = ex.submit_limit("buy", 100, 4, "gtc").order_id
r = ex.submit_limit("sell", 100, 1, "ioc")
print("trades (qty, maker id):", [(t.quantity, t.passive_order_id) for t in r.trades], flush=True)
ex.cancel(c)
ex.submit_limit("sell", 100, 1, "ioc")    # never returns
print("returned")
"""


def nanobook_defect(timeout_s: float = 5.0) -> dict | None:
    """Runs the reproduction of the nanobook defect that stops it on this flow
    and reports what happened (measured on the installed version)."""
    try:
        import nanobook  # noqa: F401
    except ImportError:
        return None
    try:
        out = subprocess.run([sys.executable, "-c", _NANOBOOK_REPRO], capture_output=True, text=True,
                             timeout=timeout_s)
        hung, stdout = False, out.stdout
    except subprocess.TimeoutExpired as e:
        hung = True
        stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
    return {
        "version": _version("nanobook"),
        "reproduced": hung,
        "observed": stdout.strip().splitlines(),
        "explanation": (
            "a level's queue remembers each order's position at insertion, but fills and tombstone "
            "skipping pop the front of the queue, so a later cancel marks the wrong slot (or none): "
            "the cancelled order stays in the queue with quantity 0 and its level keeps its quantity "
            "(phantom depth), the next taker trades 0 against it, and once it is the level's only "
            "entry matching loops forever. Calling compact() does not help (it shifts positions too)."
        ),
        "reproduction": _NANOBOOK_REPRO.strip(),
    }


def compare(cmds: np.ndarray, with_nanobook: bool = True, progress=None) -> dict:
    """The same commands through lxdex's per-call API and the other books."""
    say = progress or (lambda m: None)
    out: dict = {"commands": len(cmds), "lxdex_py_call": python_per_call(cmds, timed=False)}
    say(f"  orderly-chaos ({len(cmds):,} commands)")
    oc = orderly_per_call(cmds)
    if oc:
        out["orderly_chaos"] = oc
        out["lxdex_vs_orderly_chaos"] = round(out["lxdex_py_call"]["msgs_per_s"] / oc["msgs_per_s"], 2)
    if not with_nanobook:
        return out
    say(f"  nanobook, full flow ({len(cmds):,} commands)")
    nb = nanobook_per_call(cmds)
    if nb is None:
        return out
    out["nanobook_full_flow"] = nb
    if "msgs_per_s" in nb:
        out["lxdex_vs_nanobook_full_flow"] = round(out["lxdex_py_call"]["msgs_per_s"] / nb["msgs_per_s"], 2)
    sub = cmds[cmds["kind"] == CommandKind.SUBMIT]
    say(f"  nanobook, submit-only part ({len(sub):,} commands)")
    out["submit_only"] = {"commands": len(sub), "lxdex_py_call": python_per_call(sub, timed=False)}
    nb_sub = nanobook_per_call(sub)
    out["submit_only"]["nanobook"] = nb_sub
    if nb_sub and "msgs_per_s" in nb_sub:
        out["submit_only"]["lxdex_vs_nanobook"] = round(
            out["submit_only"]["lxdex_py_call"]["msgs_per_s"] / nb_sub["msgs_per_s"], 2)
    return out


# --- memory -----------------------------------------------------------------

def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory(n_books: int = 21_000, n_orders: int = 1_000_000) -> dict:
    """RSS growth per empty book and per resting order, measured in a fresh
    interpreter (in this one, memory freed by earlier runs would be reused
    and hide the growth)."""
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
            "books_measured": n_books, "orders_measured": n_orders,
            "method": "RSS growth (/proc/self/statm) in a fresh interpreter; Python objects and "
                      "allocator slack included; orders on 4,000 price levels"}


# --- the whole benchmark ----------------------------------------------------

def run(commands: int = 2_000_000, scenarios: list[str] | None = None, per_call: int = 300_000,
        seed: int = 1, with_others: bool = True, with_memory: bool = True, extras: bool = False,
        with_nanobook: bool = True, progress=None) -> dict:
    say = progress or (lambda m: None)
    scenarios = scenarios or list(SCENARIOS)
    for name in scenarios:
        if name not in SCENARIOS:
            raise ValueError(f"scenario: {name!r} is not one of {', '.join(SCENARIOS)}")
    others = with_others and not extras  # the other books cannot replay stops and icebergs
    result: dict = {
        "machine": machine(),
        "workload": {"commands": commands, "seed": seed, "extras": extras,
                     "comparison_commands": min(per_call, commands) if others else 0,
                     "generator": "lxdex.bench.workload.generate",
                     "designed_worst_case": WORST_CASE,
                     "scenarios": {s: workload_params(s) for s in scenarios}},
        "scenarios": {},
        "notes": [],
    }
    for name in scenarios:
        say(f"generating {commands:,} commands ({name})")
        t = time.perf_counter()
        cmds = generate(commands, name, seed, extras=extras)
        row: dict = {"generate_s": round(time.perf_counter() - t, 2)}
        row["mix"] = describe(cmds)
        say(f"{name}: Rust crate alone")
        row["rust"] = rust_alone(cmds)
        say(f"{name}: Python batch API")
        row["py_batch"] = python_batch(cmds)
        say(f"{name}: Python per-call API ({len(cmds):,} calls, twice)")
        row["py_call"] = python_per_call(cmds, extras=extras)
        if others:
            say(f"{name}: other order books, first {min(per_call, commands):,} commands")
            row["comparison"] = compare(cmds[:per_call], with_nanobook, say)
        result["scenarios"][name] = row
        del cmds
        gc.collect()

    rows = result["scenarios"]
    worst = lambda key: min(rows, key=lambda s: rows[s][key]["msgs_per_s"])  # noqa: E731
    result["worst_scenario"] = worst("rust")
    result["rust_msgs_per_s"] = round(rows[worst("rust")]["rust"]["msgs_per_s"])
    result["py_batch_msgs_per_s"] = round(rows[worst("py_batch")]["py_batch"]["msgs_per_s"])
    result["py_call_msgs_per_s"] = round(rows[worst("py_call")]["py_call"]["msgs_per_s"])
    result["rust_p99_ns"] = max(r["rust"]["p99_ns"] for r in rows.values())
    result["headline_rule"] = ("msgs/s: the minimum across scenarios; rust_p99_ns: the maximum across "
                               "scenarios; messages = commands")
    if others:
        ratios: dict = {}
        for s, r in rows.items():
            c = r["comparison"]
            for key in ("lxdex_vs_orderly_chaos", "lxdex_vs_nanobook_full_flow"):
                if key in c:
                    ratios.setdefault(key, {})[s] = c[key]
            if "lxdex_vs_nanobook" in c.get("submit_only", {}):
                ratios.setdefault("lxdex_vs_nanobook_submit_only", {})[s] = c["submit_only"]["lxdex_vs_nanobook"]
        result["ratios"] = ratios
        result["notes"].append(ORDERLY_CHAOS_NOTES)
        if with_nanobook:
            say("nanobook: checking the defect that stops it on this flow")
            result["nanobook_defect"] = nanobook_defect()
            result["notes"].append(NANOBOOK_NOTES)
            result["notes"].append(
                "nanobook on the full flow is reported as hung (with the command it reached) when it "
                "stops making progress; lxdex_vs_nanobook_submit_only compares the flow's submit-only "
                "part (limit GTC/IOC and market orders, no cancels or amends), which nanobook can run.")
    if with_memory:
        say("memory: 21,000 empty books and 1,000,000 resting orders")
        result["memory"] = memory()
    return result
