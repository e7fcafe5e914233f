"""The command line: the demo runs without a terminal, the benchmarks print
the keys BENCHMARKS.md and the issue ask for (smoke sizes, not figures)."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("lxdex._core")

ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lxdex", *args], capture_output=True, text=True,
                          env=ENV, timeout=300, check=True)


def test_demo_prints_snapshots_without_a_terminal():
    out = run("book-demo", "--seconds", "1").stdout
    assert "lxdex demo" in out and "depth" in out and "trades" in out


def test_bench_engine_json_has_the_headline_keys():
    out = run("bench", "engine", "--commands", "20000", "--per-call", "5000", "--no-others",
              "--no-memory", "--scenario", "fast_moving", "--json").stdout
    result = json.loads(out)
    for key in ("rust_msgs_per_s", "py_batch_msgs_per_s", "py_call_msgs_per_s", "rust_p99_ns"):
        assert result[key] > 0, key
    mix = result["scenarios"]["fast_moving"]["mix"]
    assert mix["commands"] == 20000 and mix["fills"] > 0


def test_bench_exchange_json():
    out = run("bench", "exchange", "--commands", "20000", "--markets", "10", "--accounts", "1000",
              "--json").stdout
    result = json.loads(out)
    assert result["exchange_cmds_per_s"] > 0 and result["events"]["fills"] > 0


def test_bench_recovery_json_small():
    result = json.loads(run("bench", "recovery", "--commands", "20000", "--rows", "256", "--repeat", "1",
                            "--json").stdout)
    assert result["hash_matches"] and result["best_orders_per_s"] > 0
    j = result["journal"]
    assert j["order_commands"] >= 20000 and j["binary_rows"] > 0 and j["single_commands"] > 0


def test_bench_node_zeromq_only_small(tmp_path):
    """`lxdex bench node` with the ZeroMQ load alone (`--http-clients 0`): a
    real node with its history store, the sustained figure, recovery; the
    table without a POST /order row, the JSON in `--output`."""
    out = run("bench", "node", "--seconds", "1", "--http-clients", "0", "--output", str(tmp_path / "r.json")).stdout
    assert "ZeroMQ with the history complete" in out and "POST /order" not in out
    result = json.loads((tmp_path / "r.json").read_text())
    z = result["zmq"]
    assert z["orders"] > 0 and z["orders_per_s_history_complete"] > 0 and "http" not in result
    assert result["recovery"]["hash_matches"]


def test_bench_memory_json_small_scale():
    result = json.loads(run("bench", "memory", "--scale", "0.002", "--json").stdout)
    assert result["rss_bytes"] > 0 and result["users"] == 2_000
    assert set(result["breakdown_bytes"]) == {"ledger", "users", "markets", "market data and fill history",
                                              "resting orders"}


def test_bench_api_json_small():
    result = json.loads(run("bench", "api", "--seconds", "0.3", "--connections", "2", "--levels", "3", "--trades",
                            "2", "--json").stdout)
    assert [r["errors"] for r in result["runs"]] == [0] * len(result["runs"])
    assert all(r["requests"] > 0 and r["requests_per_node_cpu_s"] for r in result["runs"])
