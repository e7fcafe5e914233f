"""The profiling scripts BENCHMARKS.md cites still run (smoke sizes): a
node's per-thread CPU under the ZeroMQ load, keeping its data directory,
then that journal replayed into the history writer, and the store's account
queries timed."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lxdex._core")

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1")


def script(*args: str) -> str:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=ENV, timeout=300,
                          check=True, cwd=ROOT).stdout


def test_node_threads_then_history_replay(tmp_path):
    out = script("scripts/node_threads.py", "--seconds", "1", "--keep", str(tmp_path / "data"))
    # (the per-thread table leaves out threads under 0.05 CPU-s: in a 1 s load that may be any one)
    assert "with the history complete" in out and "us/order" in out and "history: {" in out
    out = script("scripts/history_replay.py", str(tmp_path / "data"), "--group-orders", "50000")
    assert "us CPU per order" in out and "INSERT INTO orders" in out and "bytes per order" in out
    out = script("scripts/history_reads.py", str(tmp_path / "data"), "--accounts", "3", "--limit", "50")
    assert "orders from_id" in out and "(50 rows per call, 3 accounts)" in out


def test_history_index_cost():
    out = script("scripts/history_index_cost.py", "--orders", "20000", "--rounds", "1")
    assert "with an index on orders(account):" in out and "without an index on orders(account):" in out
