"""The benchmark workload generator (deterministic, well-formed, the mix it
claims) and a smoke run of `lxdex bench engine` through typer's CliRunner."""

import json

import numpy as np
import pytest

pytest.importorskip("lxdex._core")  # the generator keeps a shadow lxdex book

from typer.testing import CliRunner  # noqa: E402

from lxdex.bench.workload import SCENARIOS, describe, generate  # noqa: E402
from lxdex.enums import CommandKind, OrderType, TimeInForce  # noqa: E402


@pytest.fixture(scope="module")
def flows():
    return {s: generate(40_000, s, seed=3) for s in SCENARIOS}


@pytest.mark.parametrize("extras", [False, True])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_deterministic_by_seed(scenario, extras):
    a = generate(5_000, scenario, seed=3, extras=extras)
    assert a.tobytes() == generate(5_000, scenario, seed=3, extras=extras).tobytes()
    assert a.tobytes() != generate(5_000, scenario, seed=4, extras=extras).tobytes()


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_ids_unique_and_cancels_name_created_orders(flows, scenario):
    a = flows[scenario]
    sub = a["kind"] == CommandKind.SUBMIT
    ids = a["order_id"][sub]
    assert (ids > 0).all() and len(np.unique(ids)) == len(ids), "new order ids are unique"
    # Cancels and amends only name orders submitted earlier, with their owner and side.
    row = {int(i): n for n, i in zip(np.flatnonzero(sub), ids)}
    for n in np.flatnonzero(~sub):
        oid = int(a["order_id"][n])
        assert row[oid] < n
        assert a["owner"][n] == a["owner"][row[oid]] and a["side"][n] == a["side"][row[oid]]
        assert a["tif"][row[oid]] == TimeInForce.GTC, "only resting orders are cancelled or amended"


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_only_commands_other_books_can_replay(flows, scenario):
    a = flows[scenario]
    assert set(np.unique(a["kind"]).tolist()) == {CommandKind.SUBMIT, CommandKind.CANCEL, CommandKind.AMEND}
    sub = a[a["kind"] == CommandKind.SUBMIT]
    assert set(np.unique(sub["order_type"]).tolist()) == {OrderType.LIMIT, OrderType.MARKET}
    assert set(np.unique(sub["tif"]).tolist()) == {TimeInForce.GTC, TimeInForce.IOC}
    market = sub["order_type"] == OrderType.MARKET
    assert (sub["tif"][market] == TimeInForce.IOC).all() and (sub["price"][market] == 0).all()
    assert (sub["price"][~market] > 0).all() and (sub["qty"] > 0).all()
    assert not sub["display_qty"].any() and not sub["trigger_price"].any()
    assert (a["owner"] >= 1).all() and len(np.unique(sub["owner"])) > 900  # ~1,000 accounts


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_mix_proportions(flows, scenario):
    sc = SCENARIOS[scenario]
    mix = describe(flows[scenario])
    n = mix["commands"]
    assert abs(mix["cancels"] / n - sc.cancel_share) < 0.02
    assert abs(mix["amends"] / n - sc.amend_share) < 0.02
    assert abs(mix["ioc_share_of_new"] - (sc.ioc_share + sc.market_share)) < 0.03
    assert abs(mix["market_share_of_new"] - sc.market_share) < 0.01
    assert 0.15 < mix["resting_orders_amended_share"] < 0.27  # about 20%
    assert mix["resting_orders_cancelled_share"] > (0.9 if scenario != "fast_moving" else 0.8)  # about 95%
    assert mix["fills"] > 0
    # Cancels racing a fill are the only rejects, and they are few.
    assert set(mix["rejects_by_reason"]) <= {"UNKNOWN_ORDER"}
    assert mix["rejected_commands_share"] < 0.02
    c = mix["counts"]
    assert c["amend_qty_down"] > 0 and c["amend_reprice"] > 0
    assert c["cancel"] + c["amend"] + sum(v for k, v in c.items() if k.startswith("submit_")) == n


def test_scenarios_differ_as_documented(flows):
    fills = {s: describe(a)["fills"] for s, a in flows.items()}
    assert fills["deep_static"] < fills["balanced"] < fills["fast_moving"]


def test_quantity_down_amends_never_raise_the_quantity(flows):
    a = flows["balanced"]
    sub = a["kind"] == CommandKind.SUBMIT
    qty = dict(zip(a["order_id"][sub].tolist(), a["qty"][sub].tolist()))
    down = a[(a["kind"] == CommandKind.AMEND) & (a["price"] == 0)]
    assert len(down) > 0
    assert all(q <= qty[o] for o, q in zip(down["order_id"].tolist(), down["qty"].tolist()))


def test_extras_add_stops_and_icebergs_that_replay_cleanly():
    a = generate(30_000, "fast_moving", seed=5, extras=True)
    mix = describe(a)
    c = mix["counts"]
    assert c["submit_stop_market_ioc"] > 0 and c["submit_stop_limit_gtc"] > 0
    assert c["submit_limit_gtc_iceberg"] > 0
    ice = a[a["display_qty"] > 0]
    assert (ice["display_qty"] < ice["qty"]).all()
    assert set(mix["rejects_by_reason"]) <= {"UNKNOWN_ORDER"} and mix["rejected_commands_share"] < 0.03


def test_unknown_scenario_is_an_error():
    with pytest.raises(ValueError, match="scenario"):
        generate(10, "sideways")


def test_bench_engine_json_via_cli_runner(monkeypatch):
    monkeypatch.setenv("LXDEX_NO_REEXEC", "1")  # the CLI would otherwise re-exec itself
    from lxdex.cli import app

    result = CliRunner().invoke(app, ["bench", "engine", "--commands", "20000", "--per-call", "3000",
                                      "--no-nanobook", "--no-memory", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    for key in ("rust_msgs_per_s", "py_batch_msgs_per_s", "py_call_msgs_per_s", "rust_p99_ns"):
        assert out[key] > 0, key
    assert set(out["scenarios"]) == set(SCENARIOS) and out["worst_scenario"] in SCENARIOS
    assert out["machine"]["cores"] > 0 and out["machine"]["python"]
    assert out["workload"]["commands"] == 20_000
    for name, row in out["scenarios"].items():
        assert row["mix"]["commands"] == 20_000
        assert row["rust"]["msgs_per_s"] > 0 and 0 < row["rust"]["p50_ns"] <= row["rust"]["p99_ns"] <= row["rust"]["max_ns"]
        assert row["py_batch"]["msgs_per_s"] > 0 and row["py_batch"]["batch_p99_ns"] > 0
        assert row["py_call"]["msgs_per_s"] > 0 and row["py_call"]["p99_ns"] > 0
        assert row["comparison"]["lxdex_py_call"]["msgs_per_s"] > 0
    assert out["rust_msgs_per_s"] == round(min(r["rust"]["msgs_per_s"] for r in out["scenarios"].values()))


def test_memory_figures_are_measured():
    from lxdex.bench.engine import memory

    m = memory(20_000, 50_000)  # in a fresh interpreter; ~10 MB of books so RSS must grow
    assert m["bytes_per_empty_book"] > 0 and m["bytes_per_resting_order"] > 0


def test_nanobook_runs_the_submit_only_part():
    pytest.importorskip("nanobook")
    from lxdex.bench.engine import _nanobook_run

    a = generate(5_000, "balanced", seed=2)
    r = _nanobook_run(a[a["kind"] == CommandKind.SUBMIT])
    assert r["msgs_per_s"] > 0
