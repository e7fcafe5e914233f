"""The history writer's Rust conversions against slow models:
`_core.HistoryRows.order_rows` against tests/reference/history_rows.py, and
`_core.history_records_run` against the numpy path it replaces (still the
path of runs with ADVANCE_TIME, BRACKET or OCO rows)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lxdex import _core
from lxdex.enums import COMMAND_DTYPE, EVENT_DTYPE, CommandKind, EventKind
from lxdex.node import history as H
from tests.reference.history_rows import order_rows as reference_order_rows

KINDS = [int(k) for k in (EventKind.ACCEPTED, EventKind.FILL, EventKind.CANCELLED, EventKind.AMENDED,
                          EventKind.TRIGGERED, EventKind.ACTIVATED, EventKind.DEPTH)]
BIG = 2**40  # ids near the group's highest; older ones far below (the table's hash-map side)


@st.composite
def groups(draw):
    """A few groups of events naming orders placed in the group, recent orders and very old ones."""
    out = []
    next_id = BIG + draw(st.integers(0, 1000))
    for _ in range(draw(st.integers(1, 3))):
        n = draw(st.integers(0, 40))
        evs = np.zeros(n, EVENT_DTYPE)
        params = []
        placed = []
        for i in range(n):
            k = draw(st.sampled_from(KINDS))
            e = evs[i]
            e["kind"], e["reason"] = k, draw(st.sampled_from([0, 1, 6, 8]))
            e["side"], e["order_type"] = draw(st.integers(0, 1)), draw(st.integers(0, 7))
            e["market"], e["owner"] = draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**63 - 1))
            e["price"], e["qty"] = draw(st.integers(-(2**62), 2**62)), draw(st.integers(0, 2**62))
            e["remaining"], e["other_remaining"] = draw(st.sampled_from([0, 1, 5])), draw(st.sampled_from([0, 3]))
            old = st.one_of(st.integers(1, 50), st.integers(BIG - 5, next_id + 2))
            if k == int(EventKind.ACCEPTED):
                next_id += draw(st.integers(1, 3))
                e["order_id"] = next_id
                placed.append(next_id)
                params.append((draw(st.integers(0, 3)), draw(st.integers(0, 4)), draw(st.integers(0, 3)),
                               draw(st.sampled_from([0, 7])), draw(st.sampled_from([0, 2])),
                               draw(st.sampled_from([0, 2**63 + 5]))))
            else:
                e["order_id"] = draw(st.sampled_from(placed) if placed and draw(st.booleans()) else old)
                e["other_id"] = draw(old)
        seqs = np.array(draw(st.lists(st.integers(0, 2**62), min_size=n, max_size=n)), np.int64)
        times = np.array(draw(st.lists(st.integers(0, 2**62), min_size=n, max_size=n)), np.int64)
        out.append((evs, seqs, times, np.array(params, H._PARAMS_DTYPE)))
    return out


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


@settings(max_examples=300, deadline=None)
@given(groups())
def test_order_rows_match_the_reference(gs):
    rows = _core.HistoryRows()  # one for all the groups: what one group leaves must not leak into the next
    for evs, seqs, times, params in gs:
        new, na, deltas, nd = rows.order_rows(H._bytes_view(evs), H._bytes_view(seqs), H._bytes_view(times),
                                              H._bytes_view(params) if len(params) else b"")
        got_new = [tuple(r) for r in np.frombuffer(new, np.int64).reshape(-1, na).T.tolist()] if na else []
        got_deltas = [tuple(r) for r in np.frombuffer(deltas, np.int64).reshape(-1, nd).T.tolist()] if nd else []
        ev = [dict(zip(EVENT_DTYPE.names, (int(x) for x in e.tolist()))) for e in evs]
        ps = [dict(zip(H._PARAMS_DTYPE.names, (int(x) for x in p.tolist()))) for p in params]
        want_new, want_deltas = reference_order_rows(ev, seqs.tolist(), times.tolist(), ps)
        # int64 columns: the order ids and accounts as stored, expire_ts (u64) as its bits
        assert got_new == [tuple(_signed(v) if i in (1, 20) else v for i, v in enumerate(r)) for r in want_new]
        assert got_deltas == want_deltas


def test_order_rows_refuse_what_is_not_a_group():
    rows = _core.HistoryRows()
    ev = np.zeros(2, EVENT_DTYPE)  # two ACCEPTED events
    s = np.zeros(2, np.int64)
    with pytest.raises(ValueError, match="params: 1 records for 2 ACCEPTED events"):
        rows.order_rows(H._bytes_view(ev), H._bytes_view(s), H._bytes_view(s),
                        H._bytes_view(np.zeros(1, H._PARAMS_DTYPE)))
    with pytest.raises(ValueError, match="one int64 per event"):
        rows.order_rows(H._bytes_view(ev), H._bytes_view(s[:1]), H._bytes_view(s), b"")
    with pytest.raises(ValueError, match="not a whole number of events"):
        rows.order_rows(H._bytes_view(ev)[:-1], H._bytes_view(s), H._bytes_view(s), b"")


def _run_from_exchange(seed: int, n_cmds: int, kinds: list[int]):
    """Records commands executed by a real exchange: `(ts, seq, data, events)` each."""
    from lxdex import commands as C
    from lxdex.bench.exchange import flow
    from lxdex.exchange import Exchange

    ex = Exchange(b"k" * 32)
    seq = 0

    def do(c):
        nonlocal seq
        seq += 1
        o = ex.execute(C.with_ts(c, 1_700_000_000_000 + seq), seq)
        assert o.error is None
        return o

    do(C.AddAsset(symbol="Q", decimals=0))
    for m in range(2):
        do(C.AddAsset(symbol=f"B{m}", decimals=3))
        do(C.AddMarket(symbol=f"B{m}-Q", base=f"B{m}", quote="Q", tick_size="1", lot_size="1", maker_bps=-1,
                       taker_bps=5))
    for _ in range(8):
        do(C.CreateAccount())
    fund = np.zeros(24, COMMAND_DTYPE)
    fund["kind"] = 8  # a deposit row
    fund["owner"] = np.repeat(np.arange(8), 3)
    fund["order_id"] = np.tile([0, 1, 2], 8)
    fund["qty"] = 10**12
    do(C.Records(data=fund.tobytes()))
    cmds = flow(40 * n_cmds, 2, 8, seed=seed)
    cmds = cmds[np.isin(cmds["kind"], kinds)]
    run = []
    for lo in range(0, len(cmds), 40):
        c = C.Records(data=cmds[lo : lo + 40].tobytes())
        o = do(c)
        run.append((1_700_000_000_000 + seq - (lo % 3), seq, c.data, o.events.tobytes()))
    return run


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_records_runs_in_rust_match_the_numpy_path(seed, monkeypatch):
    kinds = [int(CommandKind.SUBMIT), int(CommandKind.CANCEL), int(CommandKind.AMEND)]
    run = _run_from_exchange(seed, 12, kinds)

    def chunks(use_rust: bool):
        w = H._Writer.__new__(H._Writer)
        w._flat = np.zeros(0, bool)
        w._registered = np.zeros(0, bool)
        w._tick_units = w._taker_bps = w._maker_bps = np.zeros(0, np.int64)
        w._markets, w._infos, w._fee_mode, w._symbols = {}, {}, {}, {}
        w._grow_market_arrays(4)
        w._registered[:] = True
        g = H._Group()
        if not use_rust:
            monkeypatch.setattr(H._core, "history_records_run", lambda *a: None)
        now = w._records_run(g, run, 0)
        monkeypatch.undo()
        E = np.concatenate(g.evs, dtype=EVENT_DTYPE)
        S = np.concatenate([np.broadcast_to(s, (n,)) for s, n in zip(g.seqs, g.lens)])
        T = np.concatenate([np.broadcast_to(t, (n,)) for t, n in zip(g.ts, g.lens)])
        P = np.concatenate(g.params, dtype=H._PARAMS_DTYPE)
        return now, E.tolist(), S.tolist(), T.tolist(), P.tolist()  # fields (not the records' padding bytes)

    rust, numpy_ = chunks(True), chunks(False)
    assert len(rust[1]) > 100
    assert rust == numpy_


def test_records_runs_with_brackets_or_clock_rows_are_left_to_the_numpy_path():
    row = np.zeros(1, COMMAND_DTYPE)
    for kind in (CommandKind.ADVANCE_TIME, CommandKind.BRACKET, CommandKind.OCO):
        row["kind"] = kind
        assert _core.history_records_run([row.tobytes()], [b""], [1], [0]) is None
    row["kind"] = CommandKind.SUBMIT
    kept, s, t, p = _core.history_records_run([row.tobytes()], [b""], [1], [0])
    assert (kept, s, t, p) == (b"", b"", b"", b"")
    with pytest.raises(ValueError, match="not a whole number of command records"):
        _core.history_records_run([row.tobytes()[:-1]], [b""], [1], [0])
    ev = np.zeros(1, EVENT_DTYPE)
    ev["cmd_index"] = 3  # an ACCEPTED event naming a row the command does not have
    with pytest.raises(ValueError, match="names row 3 of 1"):
        _core.history_records_run([row.tobytes()], [ev.tobytes()], [1], [0])
