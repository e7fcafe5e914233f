"""`lxdex bench journal`: append, framing, open (validating scan) and replay
throughput of the node journal (python/lxdex/node/journal.py).

Appends are timed end to end through `Journal.append`: framing in Rust, one
``os.write`` and, under ``sync="fdatasync"``, one ``os.fdatasync`` per batch.
Reads are timed through `Journal.read_batches` (recovery replay) and
`Journal.read`. The journal lives in a fresh directory under `dir` (default:
the system temp dir); the result names that directory's file system, since
fdatasync cost is a property of the disk, not of lxdex.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .. import _core
from ..node.journal import RECORD_HEADER_LEN, Journal


def _filesystem(path: Path) -> str:
    """`type (device)` of the mount holding `path`, from /proc/mounts."""
    best, found = "", "unknown"
    try:
        real = str(path.resolve())
        with open("/proc/mounts") as f:
            for line in f:
                dev, mnt, fstype = line.split()[:3]
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, found = mnt, f"{fstype} ({dev})"
    except OSError:
        pass
    return found


def _payloads(n: int, size: int) -> list[bytes]:
    rng = np.random.default_rng(1)
    return [bytes(row) for row in rng.integers(0, 256, (n, size), dtype=np.uint8)]


def _append(root: Path, sync: str, batch: int, size: int, seconds: float, max_records: int) -> dict:
    d = Path(tempfile.mkdtemp(prefix=f"append-{sync}-{batch}-", dir=root))
    pool = _payloads(max(batch, 1024), size)
    batches = [pool[i % (len(pool) - batch + 1):][:batch] for i in range(64)]
    lat: list[int] = []
    try:
        with Journal.open(d, sync=sync) as j:  # type: ignore[arg-type]
            j.append(batches[0])  # warm up: file created, first sync done
            n = 0
            t0 = time.perf_counter_ns()
            end = t0 + int(seconds * 1e9)
            i = 0
            now = t0
            while now < end and n < max_records:
                b = batches[i & 63]
                j.append(b)
                t1 = time.perf_counter_ns()
                lat.append(t1 - now)
                now = t1
                n += batch
                i += 1
            elapsed = (now - t0) / 1e9
    finally:
        shutil.rmtree(d, ignore_errors=True)
    a = np.array(lat)
    return {
        "sync": sync,
        "batch": batch,
        "records": n,
        "seconds": round(elapsed, 3),
        "records_per_s": round(n / elapsed),
        "payload_mb_per_s": round(n * size / elapsed / 1e6, 1),
        "written_mb_per_s": round(n * (size + RECORD_HEADER_LEN) / elapsed / 1e6, 1),
        "batch_p50_us": round(float(np.percentile(a, 50)) / 1e3, 1),
        "batch_p99_us": round(float(np.percentile(a, 99)) / 1e3, 1),
    }


def _frame(size: int, batch: int, rounds: int) -> dict:
    pool = _payloads(batch, size)
    _core.journal_frame(pool, 1)
    t0 = time.perf_counter_ns()
    for r in range(rounds):
        _core.journal_frame(pool, 1 + r * batch)
    elapsed = (time.perf_counter_ns() - t0) / 1e9
    n = rounds * batch
    return {"batch": batch, "records_per_s": round(n / elapsed),
            "mb_per_s": round(n * (size + RECORD_HEADER_LEN) / elapsed / 1e6, 1)}


def _read(root: Path, records: int, size: int, progress: Callable[[str], None]) -> dict:
    d = Path(tempfile.mkdtemp(prefix="read-", dir=root))
    try:
        pool = _payloads(1024, size)
        with Journal.open(d, sync="none") as j:
            for _ in range(records // 1024):
                j.append(pool)
            j.flush()
            n = j.last_seq
            nbytes = sum(p.stat().st_size for p in j.segments)
            segments = len(j.segments)
        progress(f"journal read: {n:,} records, {nbytes / 1e6:,.0f} MB in {segments} segments")
        out: dict = {"records": n, "bytes": nbytes, "segments": segments}
        # Open = read every segment and validate every record (CRC32C) in Rust.
        t0 = time.perf_counter()
        j = Journal.open(d)
        out["open_s"] = round(time.perf_counter() - t0, 3)
        out["open_mb_per_s"] = round(nbytes / out["open_s"] / 1e6)
        with j:
            for name, fn in (("read_payloads", lambda: sum(len(p) for _, p in j.read_payloads(1))),
                             ("read_batches", lambda: sum(len(b) for b in j.read_batches(1))),
                             ("read", lambda: sum(1 for _ in j.read(1)))):
                t0 = time.perf_counter()
                got = fn()
                el = time.perf_counter() - t0
                assert got == n
                out[name] = {"seconds": round(el, 3), "records_per_s": round(n / el),
                             "mb_per_s": round(nbytes / el / 1e6)}
        return out
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run(
    payload_size: int = 120,
    batches: tuple[int, ...] = (1, 64, 1024),
    seconds: float = 3.0,
    read_records: int = 2_000_000,
    dir: Path | None = None,
    progress: Callable[[str], None] = lambda m: None,
) -> dict:
    root = Path(tempfile.mkdtemp(prefix="lxdex-bench-journal-", dir=dir))
    try:
        result: dict = {
            "workload": {"payload_bytes": payload_size, "record_bytes": payload_size + RECORD_HEADER_LEN,
                         "batches": list(batches), "seconds_per_case": seconds, "read_records": read_records},
            "dir": str(root),
            "filesystem": _filesystem(root),
            "append": [],
        }
        for sync in ("fdatasync", "none"):
            for batch in batches:
                r = _append(root, sync, batch, payload_size, seconds, max_records=20_000_000)
                progress(f"append sync={sync} batch={batch}: {r['records_per_s']:,} records/s")
                result["append"].append(r)
        result["frame"] = [_frame(payload_size, b, max(1, 2_000_000 // b)) for b in (64, 1024)]
        result["read"] = _read(root, read_records, payload_size, progress)
        return result
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(run(progress=print), indent=2))
    os._exit(0)
