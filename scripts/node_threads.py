"""Where a node's CPU goes under the ZeroMQ load of `lxdex bench node`.

Starts a node (journal fdatasync, history store on unless --no-history),
runs the same ZeroMQ load generator for --seconds, waits for the history
store to catch up, and prints: orders/s during the load and with the
history complete, the machine's idle CPU-seconds over that time, the load
generator's CPU, and each node and writer thread's CPU, time spent waiting
to run (/proc/PID/task/TID/schedstat) and context switches. Linux only.

    .venv/bin/python scripts/node_threads.py --seconds 30
    .venv/bin/python scripts/node_threads.py --seconds 30 --keep /tmp/zdata

--keep DIR keeps the node's data directory (journal, history database) for
scripts/history_replay.py. BENCHMARKS.md cites its figures.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import httpx

from lxdex.bench import node as B

HZ = os.sysconf("SC_CLK_TCK")


def _threads(pid: int) -> dict:
    """(pid, tid, name) -> (CPU s, run-queue wait s, voluntary, involuntary switches)."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tids:
        try:
            st = open(f"/proc/{pid}/task/{t}/stat").read()
            status = open(f"/proc/{pid}/task/{t}/status").read()
            wait_ns = int(open(f"/proc/{pid}/task/{t}/schedstat").read().split()[1])
        except OSError:
            continue
        name = st[st.index("(") + 1 : st.rindex(")")]
        f = st[st.rindex(")") + 2 :].split()
        vol = int(status.split("\nvoluntary_ctxt_switches:")[1].split()[0])
        nonvol = int(status.split("nonvoluntary_ctxt_switches:")[1].split()[0])
        out[(pid, int(t), name)] = ((int(f[11]) + int(f[12])) / HZ, wait_ns / 1e9, vol, nonvol)
    return out


def _children(pid: int) -> list[int]:
    kids = []
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            kids += [int(x) for x in open(f"/proc/{pid}/task/{t}/children").read().split()]
        except OSError:
            pass
    return kids


def _idle() -> tuple[float, float]:
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return (f[3] + f[4]) / HZ, sum(f) / HZ


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, exited but not reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--no-history", action="store_true")
    ap.add_argument("--backlog-mb", type=int, help="history_max_backlog_mb of the node (default: its own)")
    ap.add_argument("--keep", type=Path, help="keep the node's data directory here")
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="lxdex-threads-"))
    cfg = root / "node.toml"
    B._config(cfg)
    if a.backlog_mb:
        cfg.write_text(f"history_max_backlog_mb = {a.backlog_mb}\n" + cfg.read_text())
    data = root / "data"
    with open(root / "node.log", "ab") as log:
        proc, http, zmq_port = B._start(data, cfg, "fdatasync", log, not a.no_history)
        try:
            time.sleep(1)
            pids = [proc.pid, *_children(proc.pid)]
            t0 = {k: v for p in pids for k, v in _threads(p).items()}
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            i0, all0 = _idle()
            r = B._zmq_load(proc, zmq_port, a.seconds, 1, 256, 16, http)  # waits for the history too
            i1, all1 = _idle()
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t1 = {k: v for p in pids for k, v in _threads(p).items()}
            hist = httpx.get(f"http://127.0.0.1:{http}/stats").json().get("history")
        finally:
            # Killed, as `lxdex bench node` does: a clean stop would snapshot and compact the journal,
            # which history_replay.py reads from its start.
            proc.kill()
            proc.wait()
    n = r["orders"]
    client = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
    print(f"{n:,} orders in {r['seconds']} s: {r['orders_per_s']:,} orders/s during the load", end="")
    if not a.no_history:
        print(f", {r['orders_per_s_history_complete']:,} with the history complete "
              f"(caught up {r['history_catch_up_s']} s after)", end="")
    print(f"; p50 {r['latency']['p50_ms']} ms, p99 {r['latency']['p99_ms']} ms")
    print(f"machine idle {i1 - i0:.1f} of {all1 - all0:.1f} CPU-s; load generator {client:.2f} CPU-s "
          f"({client / n * 1e6:.2f} us/order)")
    print(f"{'pid':>8} {'tid':>8} {'thread':24s} {'CPU s':>7} {'us/order':>8} {'wait s':>7} {'vol':>7} {'invol':>7}")
    rows = []
    for k, v in t1.items():
        d = tuple(x - y for x, y in zip(v, t0.get(k, (0, 0, 0, 0))))
        if d[0] >= 0.05:
            rows.append((k, d))
    for (pid, tid, name), (cpu, wait, vol, nonvol) in sorted(rows, key=lambda x: -x[1][0]):
        print(f"{pid:>8} {tid:>8} {name:24s} {cpu:7.2f} {cpu / n * 1e6:8.2f} {wait:7.2f} {vol:7d} {nonvol:7d}")
    if hist:
        print("history:", hist)
    if a.keep:
        # The history writer (the node's child) closes its database once the node is gone: copy after.
        deadline = time.monotonic() + 60
        while any(_alive(p) for p in pids[1:]) and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.copytree(data, a.keep, dirs_exist_ok=True)
        print("data directory kept in", a.keep)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
