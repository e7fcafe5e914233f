"""The history store (python/lxdex/node/history.py) against a real Exchange,
on SQLite and on a real PostgreSQL server (tests/node/conftest.py).

Commands go through `Exchange.execute`; their (command, Outcome) pairs are fed
to the store as the node's sequencer would; what the store returns is checked
against what the exchange itself reports (`recent_fills`, `open_orders`,
`candles`).
"""

from __future__ import annotations

import sqlite3
import threading
import os
import time
from decimal import Decimal

import numpy as np
import pytest

from lxdex import commands as C
from lxdex.enums import COMMAND_DTYPE, EventKind, OrderType, Side, TimeInForce
from lxdex.exchange import Exchange
from lxdex.node import history as H
from lxdex.node.history import ACCOUNT_BLOCK, HistoryStore, _fee

MIN = 60_000
T0 = 1_700_000_000_000  # a Tuesday, mid-month: candles cross minutes, hours, a day


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path):
    """`(url, data_dir)` for a fresh, empty history database."""
    if request.param == "sqlite":
        return None, tmp_path
    server = request.getfixturevalue("pg_server")
    return server.create_db(), tmp_path


def _open(backend, ex):
    url, data_dir = backend
    return HistoryStore.open(url, data_dir, lambda i: ex._market_by_id[i])


class Run:
    """An exchange and the (command, outcome) pairs it produced."""

    def __init__(self) -> None:
        self.ex = Exchange()
        self.pairs: list = []
        self.ts = T0

    def do(self, cmd, dt: int = 1_000):
        self.ts += dt
        out = self.ex.execute(C.with_ts(cmd, self.ts))
        self.pairs.append((cmd if cmd.ts else C.with_ts(cmd, self.ts), out))
        return out

    def place(self, account, market, side, qty, price=None, dt=1_000, **kw):
        out = self.do(C.PlaceOrder(account=account, market=market, side=side, qty=qty, price=price, **kw), dt)
        return out.value["order_id"] if out.ok else out


def _records(rows: list[dict]) -> bytes:
    a = np.zeros(len(rows), COMMAND_DTYPE)
    for i, r in enumerate(rows):
        for k, v in r.items():
            a[i][k] = v
    return a.tobytes()


def scenario() -> tuple[Run, dict]:
    """Assets, markets, accounts, deposits; orders that trade (partial fills,
    several makers, both sides), IOC and market remainders, post-only, amends,
    cancels, a GTD expiry, a triggered stop, a self-trade decrement, a Records
    batch with a rejected row, and fee tiers on one market."""
    r = Run()
    ids: dict = {}
    for c in [C.AddAsset(symbol="BTC", decimals=8), C.AddAsset(symbol="ETH", decimals=8),
              C.AddAsset(symbol="USD", decimals=6),
              C.AddMarket(symbol="BTC-USD", base="BTC", quote="USD", tick_size="0.01", lot_size="0.0001",
                          maker_bps=-1, taker_bps=5),
              C.AddMarket(symbol="ETH-USD", base="ETH", quote="USD", tick_size="0.01", lot_size="0.001",
                          maker_bps=2, taker_bps=7)]:
        assert r.do(c).ok
    for _ in range(4):
        r.do(C.CreateAccount())
    for a in range(4):
        for asset, amount in (("BTC", "10"), ("ETH", "100"), ("USD", "1000000")):
            assert r.do(C.Deposit(account=a, asset=asset, amount=amount)).ok
    # Makers at several prices; a taker sweeps two levels and rests its remainder.
    ids["s1"] = r.place(0, "BTC-USD", "sell", "0.5", "50000")
    ids["s2"] = r.place(1, "BTC-USD", "sell", "0.3", "50001.5")
    ids["s3"] = r.place(0, "BTC-USD", "sell", "1", "50100")
    ids["b1"] = r.place(2, "BTC-USD", "buy", "1", "50050", dt=MIN)   # fills s1 + s2, rests 0.2
    ids["b2"] = r.place(3, "BTC-USD", "buy", "0.4", "50200", tif="ioc")  # 0.4 of s3
    ids["m1"] = r.place(1, "BTC-USD", "sell", "0.5", order_type="market", dt=MIN)  # hits b1 0.2, rest cancelled
    ids["po"] = r.place(2, "BTC-USD", "buy", "0.1", "50200", post_only=True)  # would take: cancelled
    ids["a1"] = r.place(3, "BTC-USD", "buy", "0.2", "49000")
    assert r.do(C.AmendOrder(account=3, order_id=ids["a1"], qty="0.1")).ok
    assert r.do(C.AmendOrder(account=3, order_id=ids["a1"], price="49500", qty="0.3")).ok
    ids["c1"] = r.place(2, "BTC-USD", "buy", "0.1", "48000")
    assert r.do(C.CancelOrder(account=2, order_id=ids["c1"])).ok
    ids["gtd"] = r.place(2, "BTC-USD", "buy", "0.1", "47000", tif="gtd", expire_ts=r.ts + 30_000)
    ids["stop"] = r.place(1, "BTC-USD", "buy", "0.2", "50150", order_type="stop_limit", trigger_price="50100")
    r.do(C.Tick(), dt=60 * MIN)  # the GTD order expires (a clock event)
    # The stop triggers on a trade at 50100 and buys the rest of s3 at 50100.
    ids["t1"] = r.place(2, "BTC-USD", "buy", "0.1", "50100")
    # Self-trade prevention by decrement: account 3 sells into its own resting a1.
    ids["d1"] = r.place(3, "BTC-USD", "sell", "0.1", "49500", stp="decrement")
    # A partially filled order that is then cancelled.
    ids["p1"] = r.place(0, "BTC-USD", "sell", "0.4", "49400", dt=MIN)   # takes 0.2 of a1 at 49500, rests 0.2
    ids["p1x"] = r.place(1, "BTC-USD", "buy", "0.05", "49400")
    assert r.do(C.CancelOrder(account=0, order_id=ids["p1"])).ok
    # A rejected placement changes nothing and gets no id.
    rej = r.place(1, "BTC-USD", "buy", "1000", "50000")
    assert not isinstance(rej, int) and rej.error["reason"] == "INSUFFICIENT_FUNDS"
    # ETH-USD trades at positive maker fees, then gets volume tiers: fees unknown from then on.
    ids["e1"] = r.place(0, "ETH-USD", "sell", "2", "3000", dt=DAY_MS)
    ids["e2"] = r.place(1, "ETH-USD", "buy", "1.5", "3000")
    assert r.do(C.SetFeeTiers(market="ETH-USD", tiers=[("1000", 1, 5)])).ok
    ids["e3"] = r.place(2, "ETH-USD", "buy", "0.5", "3000")
    # A Records batch: a deposit, two submits that trade, a rejected row, a cancel.
    btc = r.ex.market("BTC-USD")
    base = r.ex._assets["BTC"].id
    data = _records([
        {"kind": 8, "owner": 3, "order_id": base, "qty": 10**8},  # deposit 1 BTC to account 3
        {"kind": 0, "market": btc.id, "owner": 3, "side": Side.SELL, "order_type": OrderType.LIMIT,
         "tif": TimeInForce.GTC, "price": 5_000_000, "qty": 3_000},            # sell 0.3 at 50000
        {"kind": 0, "market": btc.id, "owner": 0, "side": Side.BUY, "order_type": OrderType.LIMIT,
         "tif": TimeInForce.IOC, "price": 5_001_000, "qty": 1_000},            # buys 0.1
        {"kind": 0, "market": btc.id, "owner": 99, "side": Side.BUY, "order_type": OrderType.LIMIT,
         "tif": TimeInForce.GTC, "price": 5_001_000, "qty": 1_000},            # unknown account: rejected
        {"kind": 0, "market": btc.id, "owner": 1, "side": Side.BUY, "order_type": OrderType.LIMIT,
         "tif": TimeInForce.GTC, "price": 5_000_000, "qty": 500, "display_qty": 0},  # buys 0.05
    ])
    out = r.do(C.Records(data=data), dt=MIN)
    ev = out.events
    assert (ev["kind"] == EventKind.REJECTED).sum() == 1
    acc = ev[ev["kind"] == EventKind.ACCEPTED]
    ids["r_sell"] = int(acc["order_id"][0])
    data = _records([{"kind": 1, "owner": 3, "order_id": ids["r_sell"]}])  # cancel the rest of it
    assert not (r.do(C.Records(data=data)).events["kind"] == EventKind.REJECTED).any()
    return r, ids


DAY_MS = 24 * 60 * MIN


def _fill_key(f: dict):
    return (f["ts"], f["order_id"], f["market"], f["side"], f["maker"], Decimal(f["price"]), Decimal(f["qty"]))


def check_against_exchange(store: HistoryStore, r: Run, ids: dict) -> None:
    ex = r.ex
    n_fill_events = 0
    for _, out in r.pairs:
        ev = out.events
        if isinstance(ev, np.ndarray):
            n_fill_events += int((ev["kind"] == EventKind.FILL).sum())
        else:
            n_fill_events += sum(1 for e in ev if e.kind == EventKind.FILL)
        n_fill_events += sum(1 for e in out.clock_events if e.kind == EventKind.FILL)
    seen_ids = set()
    for account in range(4):
        got = store.fills(account, limit=5000)
        want = ex.recent_fills(account)
        assert len(want) < 100  # the exchange keeps the last 100: all of them here
        assert [_fill_key(f) for f in got] == [
            (w["ts"], w["order_id"], w["market"], w["side"], w["maker"], w["price"], w["qty"]) for w in want]
        for f, w in zip(got, want):
            if f["market"] == "ETH-USD" and f["seq"] > _tiers_seq(r):
                assert f["fee"] is None  # tiered: the store cannot know the rate
            else:
                assert Decimal(f["fee"]) == w["fee"], (f, w)
            assert Decimal(f["quote_qty"]) == Decimal(f["price"]) * Decimal(f["qty"])
            assert f["fee_asset"] == "USD"
        seen_ids |= {f["id"] for f in got}
    assert seen_ids == set(range(1, n_fill_events + 1))
    # Orders: the open ones match the exchange's view; the closed ones have the right status.
    open_ids = set()
    for account in range(4):
        orders = {o["order_id"]: o for o in store.orders(account, limit=5000)}
        for o in ex.open_orders(account):
            h = orders[o["order_id"]]
            open_ids.add(o["order_id"])
            assert h["status"] in ("new", "partially_filled"), h
            assert Decimal(h["price"] or 0) == o["price"]  # a market exit waiting for its trigger: price 0
            assert Decimal(h["remaining_qty"]) == o["qty"], (h, o)
        for h in orders.values():
            assert h["account"] == account
            fills = [f for f in store.fills(account, limit=5000) if f["order_id"] == h["order_id"]]
            assert Decimal(h["filled_qty"]) == sum((Decimal(f["qty"]) for f in fills), Decimal(0))
            assert Decimal(h["quote_qty"]) == sum((Decimal(f["quote_qty"]) for f in fills), Decimal(0))
            if h["order_id"] not in open_ids:
                assert h["status"] in ("filled", "cancelled", "expired"), h
                assert Decimal(h["remaining_qty"]) == 0
    o = store.order
    assert o(ids["s1"])["status"] == "filled" and o(ids["s1"])["avg_price"] == "50000.00"
    b1 = o(ids["b1"])
    assert (b1["status"], b1["filled_qty"], b1["remaining_qty"]) == ("filled", "1.0000", "0.0000")
    # 0.5 at 50000 + 0.3 at 50001.50 + 0.2 at 50050 (as the maker of m1)
    assert Decimal(b1["quote_qty"]) == Decimal("0.5") * 50000 + Decimal("0.3") * Decimal("50001.5") + Decimal("0.2") * 50050
    assert Decimal(b1["avg_price"]) == (Decimal(b1["quote_qty"]) / 1).quantize(Decimal("0.00000001"))
    assert o(ids["b2"])["status"] == "filled" and o(ids["b2"])["tif"] == "ioc"
    m1 = o(ids["m1"])
    assert (m1["status"], m1["reason"], m1["type"], m1["price"]) == ("cancelled", "market_remainder", "market", None)
    assert m1["filled_qty"] == "0.2000" and m1["qty"] == "0.5000"
    po = o(ids["po"])
    assert (po["status"], po["reason"], po["post_only"], po["filled_qty"]) == ("cancelled", "post_only", True, "0.0000")
    a1 = o(ids["a1"])  # amended to 0.1 then to 0.3 at 49500; 0.1 decremented by STP; 0.2 filled by p1
    assert (a1["price"], a1["qty"], a1["filled_qty"], a1["status"]) == ("49500.00", "0.3000", "0.2000", "filled")
    assert o(ids["c1"])["status"] == "cancelled" and o(ids["c1"])["reason"] == "user"
    gtd = o(ids["gtd"])
    assert (gtd["status"], gtd["reason"], gtd["tif"]) == ("expired", "expired", "gtd")
    assert gtd["expire_ts"] == gtd["created_ts"] + 29_000 and gtd["updated_ts"] > gtd["expire_ts"]
    stop = o(ids["stop"])
    assert (stop["type"], stop["trigger_price"], stop["status"]) == ("stop_limit", "50100.00", "filled")
    assert stop["triggered_ts"] == o(ids["t1"])["created_ts"]
    d1 = o(ids["d1"])
    assert (d1["status"], d1["reason"], d1["stp"], d1["filled_qty"]) == ("cancelled", "stp", "decrement", "0.0000")
    p1 = o(ids["p1"])
    assert (p1["status"], p1["filled_qty"], p1["remaining_qty"]) == ("cancelled", "0.2500", "0.0000")
    assert o(ids["e1"])["status"] == "filled"
    rs = o(ids["r_sell"])
    assert (rs["status"], rs["filled_qty"], rs["reason"]) == ("cancelled", "0.1500", "user")
    assert o(10**9) is None
    # Candles: every interval the history serves, against the exchange's own.
    for market in ("BTC-USD", "ETH-USD"):
        for iv in ("1m", "3m", "5m", "15m", "1h", "4h", "1d", "1w", "1M"):
            got = store.candles(market, iv, limit=1000)
            want = ex.candles(market, iv, limit=1000)
            assert [{k: (Decimal(v) if isinstance(v, str) else v) for k, v in c.items()} for c in got] == want, iv


def _tiers_seq(r: Run) -> int:
    return next(out.seq for cmd, out in r.pairs if isinstance(cmd, C.SetFeeTiers))


def test_history_matches_the_exchange(backend):
    r, ids = scenario()
    store = _open(backend, r.ex)
    try:
        # As the sequencer would: in batches of a few commands.
        for i in range(0, len(r.pairs), 7):
            store(r.pairs[i : i + 7])
        store.flush()
        assert store.last_seq == r.ex.last_seq and store.lag == 0
        check_against_exchange(store, r, ids)
    finally:
        store.close()


def test_fees_match_the_core_rounding():
    # fee() of crates/engine/src/exchange.rs: fees up, rebates toward zero.
    assert _fee(10_001, 5) == 6 and _fee(10_000, 5) == 5 and _fee(0, 5) == 0
    assert _fee(10_001, -1) == -1 and _fee(9_999, -1) == 0 and _fee(29_999, -3) == -8


def test_refeeding_old_seqs_changes_nothing(backend):
    r, ids = scenario()
    store = _open(backend, r.ex)
    try:
        half = len(r.pairs) // 2
        store(r.pairs[:half])
        store(r.pairs[:half])           # the same batch again
        store(r.pairs[half - 3 : half + 5])  # overlapping the end
        store(r.pairs)                  # everything, as a replay after a crash would
        store(r.pairs[-2:])
        store.flush()
        assert store.last_seq == r.ex.last_seq
        check_against_exchange(store, r, ids)
    finally:
        store.close()


def test_reopen_keeps_last_seq_and_continues(backend):
    r, ids = scenario()
    cut = len(r.pairs) - 12
    store = _open(backend, r.ex)
    store(r.pairs[:cut])
    store.flush()
    first = store.last_seq
    n_fills = {a: len(store.fills(a, limit=5000)) for a in range(4)}
    store.close()
    assert first == r.pairs[cut - 1][1].seq
    store = _open(backend, r.ex)
    try:
        assert store.last_seq == first
        assert {a: len(store.fills(a, limit=5000)) for a in range(4)} == n_fills
        store(r.pairs)  # a replay from the start: only seq > last_seq is taken
        store.flush()
        assert store.last_seq == r.ex.last_seq
        check_against_exchange(store, r, ids)
    finally:
        store.close()


def test_pagination(backend):
    r, ids = scenario()
    store = _open(backend, r.ex)
    try:
        store(r.pairs)
        store.flush()
        everything = store.fills(0, limit=5000)
        assert len(everything) >= 6
        # from_id walks forward, oldest first.
        page, got = store.fills(0, from_id=0, limit=2), []
        while page:
            got += page
            page = store.fills(0, from_id=page[-1]["id"] + 1, limit=2)
        assert got == everything
        # No from_id: the most recent `limit`, still oldest first.
        assert store.fills(0, limit=3) == everything[-3:]
        # Time window and market filter.
        ts = everything[2]["ts"]
        assert store.fills(0, start_ts=ts, limit=5000) == [f for f in everything if f["ts"] >= ts]
        assert store.fills(0, end_ts=ts, limit=5000) == [f for f in everything if f["ts"] <= ts]
        assert store.fills(0, market="ETH-USD", limit=5000) == [f for f in everything if f["market"] == "ETH-USD"]
        orders = store.orders(3, limit=5000)
        assert [o["order_id"] for o in orders] == sorted(o["order_id"] for o in orders)
        page, got = store.orders(3, from_id=0, limit=1), []
        while page:
            got += page
            page = store.orders(3, from_id=page[-1]["order_id"] + 1, limit=1)
        assert got == orders
        assert store.orders(3, limit=2) == orders[-2:]
        assert store.orders(3, market="ETH-USD") == []
        c = store.candles("BTC-USD", "1m", limit=1000)
        assert store.candles("BTC-USD", "1m", limit=2) == c[-2:]
        assert store.candles("BTC-USD", "1m", start_ts=c[1]["start"], limit=2) == c[1:3]
        assert store.candles("BTC-USD", "1m", start_ts=c[1]["start"] - 1, end_ts=c[1]["start"]) == [c[1]]
    finally:
        store.close()


def test_bad_queries_name_the_field(tmp_path):
    r, _ = scenario()
    store = _open((None, tmp_path), r.ex)
    try:
        store(r.pairs)
        store.flush()
        with pytest.raises(ValueError, match=r"^market: no market 'DOGE-USD'"):
            store.fills(0, market="DOGE-USD")
        with pytest.raises(ValueError, match=r"^market: "):
            store.orders(0, market="DOGE-USD")
        with pytest.raises(ValueError, match=r"^market: "):
            store.candles("DOGE-USD")
        with pytest.raises(ValueError, match=r"^interval: '7m' is not one of"):
            store.candles("BTC-USD", "7m")
        with pytest.raises(ValueError, match=r"^limit: "):
            store.fills(0, limit=0)
        with pytest.raises(ValueError, match=r"^limit: "):
            store.orders(0, limit=10**6)
        with pytest.raises(ValueError, match=r"^start_ts: "):
            store.fills(0, start_ts=10, end_ts=5)
        with pytest.raises(ValueError, match=r"^account: "):
            store.fills(-1)
        with pytest.raises(ValueError, match=r"^from_id: "):
            store.orders(0, from_id="x")
        with pytest.raises(ValueError, match=r"^order_id: "):
            store.order(-3)
    finally:
        store.close()


def test_bad_urls(tmp_path):
    with pytest.raises(ValueError, match="^history_url: "):
        HistoryStore.open("mysql://x", tmp_path, lambda i: None)
    with pytest.raises(ValueError, match="^history_url: "):
        HistoryStore.open("sqlite:///:memory:", tmp_path, lambda i: None)


def test_sqlite_default_file_and_url(tmp_path):
    ex = Exchange()
    s = HistoryStore.open(None, tmp_path, lambda i: ex._market_by_id[i])
    s.close()
    assert (tmp_path / "history.sqlite3").exists()
    conn = sqlite3.connect(tmp_path / "history.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(H.SCHEMA_VERSION,)]
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(RuntimeError, match="schema version 99"):
        HistoryStore.open(None, tmp_path, lambda i: ex._market_by_id[i])
    s = HistoryStore.open("sqlite:///sub/h.db", tmp_path, lambda i: ex._market_by_id[i])
    s.close()
    assert (tmp_path / "sub" / "h.db").exists()
    s = HistoryStore.open(f"sqlite:///{tmp_path}/abs.db", tmp_path / "elsewhere", lambda i: ex._market_by_id[i])
    s.close()
    assert (tmp_path / "abs.db").exists()


def test_the_listener_does_not_wait_for_the_database(tmp_path):
    """While another connection holds SQLite's write lock, feeding returns at
    once; the writer retries and catches up when the lock goes."""
    r, ids = scenario()
    store = _open((None, tmp_path), r.ex)
    try:
        blocker = sqlite3.connect(tmp_path / "history.sqlite3", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        t0 = time.perf_counter()
        for i in range(0, len(r.pairs), 5):
            store(r.pairs[i : i + 5])
        assert time.perf_counter() - t0 < 0.5
        time.sleep(0.2)
        assert store.lag > 0 and store.last_seq < r.ex.last_seq
        with pytest.raises(TimeoutError):
            store.flush(timeout=0.2)
        blocker.execute("ROLLBACK")
        blocker.close()
        store.flush(timeout=60)
        assert store.last_seq == r.ex.last_seq and store.lag == 0
        check_against_exchange(store, r, ids)
    finally:
        store.close()


def test_a_backlog_over_its_bound_makes_the_listener_wait_for_the_writer(tmp_path):
    """Below `max_backlog_bytes` feeding never waits (the test above); past
    it (the writer stopped: a slow disk) the listener waits until the
    writer has brought the backlog under 90% of the bound, so memory stays
    bounded, and nothing is lost."""
    import signal
    import threading

    r, ids = scenario()
    store = HistoryStore.open(None, tmp_path, lambda i: r.ex._market_by_id[i], max_backlog_bytes=2_000)
    try:
        os.kill(store._proc.pid, signal.SIGSTOP)
        fed = []

        def feed():
            for i in range(len(r.pairs)):
                store(r.pairs[i : i + 1])
                fed.append(i)

        t = threading.Thread(target=feed, daemon=True)
        t.start()
        time.sleep(0.5)
        assert t.is_alive() and len(fed) < len(r.pairs)  # waiting for the writer
        assert store.backlog_bytes > 2_000 and store.stats()["stalls"] == 1
        os.kill(store._proc.pid, signal.SIGCONT)
        t.join(30)
        assert not t.is_alive() and len(fed) == len(r.pairs)
        store.flush(timeout=60)
        assert store.last_seq == r.ex.last_seq and store.backlog_bytes == 0 and store.stats()["dropped"] == 0
        check_against_exchange(store, r, ids)
    finally:
        os.kill(store._proc.pid, signal.SIGCONT)
        store.close()


def test_a_writer_that_dies_while_the_listener_waits_releases_it(tmp_path):
    import signal
    import threading

    r, _ = scenario()
    store = HistoryStore.open(None, tmp_path, lambda i: r.ex._market_by_id[i], max_backlog_bytes=2_000)
    try:
        os.kill(store._proc.pid, signal.SIGSTOP)
        t = threading.Thread(target=lambda: [store([p]) for p in r.pairs], daemon=True)
        t.start()
        time.sleep(0.3)
        assert t.is_alive()
        store._proc.kill()  # the writer dies: its failure ends the wait; the rest is dropped (the journal has it)
        t.join(30)
        assert not t.is_alive() and store.failed is not None and store.stats()["dropped"] > 0
    finally:
        store.close()


def test_a_rejected_records_command_is_fed_like_any_other(tmp_path):
    """A Records command refused whole (its data not whole rows: no events
    array) goes through the listener and the writer without a gap."""
    r, ids = scenario()
    bad = r.do(C.Records(data=b"x" * 7))
    assert bad.error is not None
    r.place(1, "BTC-USD", "buy", "0.01", "100")
    store = _open((None, tmp_path), r.ex)
    try:
        store(r.pairs)
        store.flush()
        assert store.last_seq == r.ex.last_seq and store.stats()["dropped"] == 0
        assert store.stats()["backlog_bytes"] == 0
    finally:
        store.close()


def test_a_gap_inside_a_run_of_records_commands_converts_as_the_event_loop(tmp_path):
    """The column-wise writer converts consecutive Records commands together;
    a gap among them (commands never fed) splits the run, so that the fills
    before it keep their fees, exactly as the per-event loop writes them."""
    r = _flow_run()
    recs = [i for i, (c, o) in enumerate(r.pairs) if type(c) is C.Records and o.error is None and len(o.events)]
    missing = recs[len(recs) // 2]
    pairs = [p for i, p in enumerate(r.pairs) if i != missing]
    dumps = {}
    for name, vec in (("loop", False), ("vec", True)):
        d = tmp_path / name
        store = HistoryStore.open(None, d, lambda i: r.ex._market_by_id[i], vectorized=vec)
        store(pairs)
        store.flush()
        store.close()
        dumps[name] = _dump(d / "history.sqlite3")
    assert [g[:2] for g in dumps["loop"]["gaps"]] == [g[:2] for g in dumps["vec"]["gaps"]] == [(missing + 1,) * 2]
    for table, rows in dumps["loop"].items():
        if table != "gaps":  # (its detected_at is the wall clock)
            assert dumps["vec"][table] == rows, table


def test_a_gap_is_recorded_and_fees_become_unknown(tmp_path):
    r, _ = scenario()
    store = _open((None, tmp_path), r.ex)
    try:
        n = len(r.pairs)
        first = next(i for i, (c, _) in enumerate(r.pairs) if isinstance(c, C.PlaceOrder))
        store(r.pairs[: first + 6])
        store(r.pairs[first + 9 :])  # three commands never fed
        store.flush()
        assert store.last_seq == r.ex.last_seq
        conn = sqlite3.connect(tmp_path / "history.sqlite3")
        gap = r.pairs[first + 6][1].seq, r.pairs[first + 8][1].seq
        assert conn.execute("SELECT first_seq, last_seq FROM gaps").fetchall() == [gap]
        # BTC-USD: tiers may have been set in the gap; ETH-USD got tiers after it (seen).
        assert dict(conn.execute("SELECT symbol, fee_mode FROM markets")) == {"BTC-USD": "unknown",
                                                                             "ETH-USD": "tiered"}
        conn.close()
        late = [f for f in store.fills(2, limit=5000) if f["seq"] > gap[1]]
        assert late and all(f["fee"] is None for f in late)
        assert n
    finally:
        store.close()


def test_queries_from_other_threads(backend):
    r, _ = scenario()
    store = _open(backend, r.ex)
    try:
        store(r.pairs)
        store.flush()
        want = store.fills(2, limit=5000)
        results, errors = [], []

        def q():
            try:
                for _ in range(5):
                    results.append(store.fills(2, limit=5000) == want)
            except Exception as e:  # pragma: no cover
                errors.append(e)

        threads = [threading.Thread(target=q) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and all(results) and len(results) == 15
    finally:
        store.close()


def _flow_run(n: int = 6_000, n_markets: int = 3, n_accounts: int = 60) -> Run:
    """The exchange benchmark's random flow (resting orders, IOC, market
    orders, cancels, amends) as Records batches, ticks across minutes, a
    Records batch that moves the clock itself (GTD expiries at a row's time),
    then struct commands on what rests."""
    from lxdex.bench.exchange import flow

    r = Run()
    r.do(C.AddAsset(symbol="Q", decimals=0))
    for m in range(n_markets):
        r.do(C.AddAsset(symbol=f"B{m}", decimals=3))
        r.do(C.AddMarket(symbol=f"B{m}-Q", base=f"B{m}", quote="Q", tick_size="1", lot_size="1", maker_bps=-1,
                         taker_bps=5))
    for _ in range(n_accounts):
        r.do(C.CreateAccount())
    fund = np.zeros(3 * n_accounts, COMMAND_DTYPE)
    fund["kind"] = 8
    fund["owner"] = np.repeat(np.arange(n_accounts), 3)
    bases = np.arange(1, n_markets + 1)
    a = np.arange(n_accounts)
    fund["order_id"] = np.stack([np.zeros(n_accounts, int), bases[a % n_markets],
                                 bases[(a * 7 + 3) % n_markets]], 1).ravel()
    fund["qty"] = 10**12
    assert r.do(C.Records(data=fund.tobytes())).ok
    cmds = flow(n, n_markets, n_accounts, seed=3)
    for i, lo in enumerate(range(0, n, 256)):
        r.do(C.Records(data=cmds[lo : lo + 256].tobytes()), dt=7_000)
        if i % 5 == 4:
            r.do(C.Tick(), dt=MIN)
    # GTD orders, then a batch whose ADVANCE_TIME row expires them mid-batch, and trades after it.
    t = r.ts + 1_000
    rows = [{"kind": 0, "market": 0, "owner": 1, "side": Side.BUY, "order_type": OrderType.LIMIT,
             "tif": TimeInForce.GTD, "price": 90_000, "qty": 2, "expire_ts": t + 5 * MIN}]
    r.do(C.Records(data=_records(rows)))
    rows = [{"kind": 0, "market": 0, "owner": 2, "side": Side.SELL, "order_type": OrderType.LIMIT,
             "tif": TimeInForce.GTC, "price": 200_000, "qty": 3},
            {"kind": 4, "expire_ts": t + 10 * MIN},
            {"kind": 0, "market": 0, "owner": 3, "side": Side.BUY, "order_type": OrderType.LIMIT,
             "tif": TimeInForce.IOC, "price": 200_000, "qty": 2},
            {"kind": 4, "expire_ts": t},  # earlier than now: rejected, the clock stays
            {"kind": 0, "market": 0, "owner": 4, "side": Side.BUY, "order_type": OrderType.MARKET,
             "tif": TimeInForce.IOC, "qty": 1}]
    out = r.do(C.Records(data=_records(rows)))
    ev = out.events
    assert (ev["reason"] == 6).any() and (ev["kind"] == EventKind.FILL).sum() >= 2  # expiry + trades
    # Struct commands on resting orders.
    for acc in range(5):
        for o in r.ex.open_orders(acc)[:2]:
            if o["status"] == "resting":
                r.do(C.AmendOrder(account=acc, order_id=o["order_id"], qty=str(max(1, int(o["qty"]) - 1))))
    r.do(C.CancelAll(account=5))
    r.place(6, "B0-Q", "buy", "5", order_type="market", price="200000")
    r.place(7, "B1-Q", "sell", "5", "1")
    # Client order ids: one that rests, one replaced (the new order takes it over), one that fills at once.
    keep = r.place(8, "B2-Q", "buy", "1", "1", client_id="keep-1")
    old = r.place(9, "B2-Q", "buy", "1", "2", client_id="rep:1")
    out = r.do(C.CancelReplace(order_id=old, new=C.PlaceOrder(account=9, market="B2-Q", side="buy", qty="2",
                                                                price="3", client_id="rep:1")))
    assert out.ok and out.value["cancelled"] and isinstance(keep, int)
    r.place(10, "B0-Q", "buy", "1", order_type="market", price="200000", client_id="mkt/1")
    return r


def _dump(path) -> dict:
    conn = sqlite3.connect(path)
    out = {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
           for t in ("fills", "candles_1m", "markets", "meta", "gaps")}
    # The orders as they are now: their rows hold them as of the transaction that wrote them, so
    # how the commands were grouped shows in the split between orders and order_updates, not here.
    out["orders"] = H._fold_updates(conn.execute(H._orders_now_sql("SELECT * FROM orders")).fetchall())
    conn.close()
    return out


def test_column_wise_conversion_matches_the_event_loop(tmp_path):
    """The numpy conversion (the hot path) writes exactly what the plain
    per-event loop writes, however the commands are grouped."""
    r = _flow_run()
    dumps = {}
    for name, vec, step in (("loop", False, 1), ("vec_big", True, len(r.pairs)), ("vec_small", True, 1),
                            ("vec_mixed", True, 17)):
        d = tmp_path / name
        store = HistoryStore.open(None, d, lambda i: r.ex._market_by_id[i], vectorized=vec)
        for i in range(0, len(r.pairs), step):
            store(r.pairs[i : i + step])
            if name == "vec_small" and i % 3 == 0:
                store.flush()  # many small transactions: orders cross transaction boundaries
        store.flush()
        store.close()
        dumps[name] = _dump(d / "history.sqlite3")
    assert len(dumps["loop"]["fills"]) > 1_000 and len(dumps["loop"]["orders"]) > 3_000
    assert sorted(row[23] for row in dumps["loop"]["orders"] if row[23]) == ["keep-1", "mkt/1", "rep:1", "rep:1"]
    statuses = {row[16] for row in dumps["loop"]["orders"]}
    assert statuses == {"new", "partially_filled", "filled", "cancelled", "expired"}
    for name in ("vec_big", "vec_small", "vec_mixed"):
        for table, rows in dumps["loop"].items():
            assert dumps[name][table] == rows, (name, table)


@pytest.mark.parametrize("block, step", [(3, 5), (ACCOUNT_BLOCK, None)])
def test_orders_by_account_over_many_blocks_and_transactions(tmp_path, block, step):
    """`orders()` reads an account's ids from `account_orders` (a row per account per transaction, at
    most ACCOUNT_BLOCK ids each): with blocks of 3 ids and a transaction every few commands, every query
    (newest `limit`, from an id, a time window, a market) gives what one SQL query over `orders` gives
    (the reference: as `orders()` read them before `account_orders`). And with the default blocks and
    one transaction: an account's ids in one row, read in chunks of 64 and more."""
    r = _flow_run(n=3_000, n_accounts=12)
    store = HistoryStore.open(None, tmp_path, lambda i: r.ex._market_by_id[i], account_block=block)
    step = step or len(r.pairs)
    try:
        for i in range(0, len(r.pairs), step):
            store(r.pairs[i : i + step])
            store.flush()
        conn = sqlite3.connect(tmp_path / "history.sqlite3")
        blocks = conn.execute("SELECT account, first_id, length(ids) FROM account_orders").fetchall()
        if block == 3:
            assert max(n for _, _, n in blocks) == 3 * 8 and len(blocks) > 300
        else:
            assert len(blocks) == len({a for a, _, _ in blocks}) and max(n for _, _, n in blocks) > 64 * 8

        def ref(account, market=None, start_ts=None, end_ts=None, from_id=None, limit=500):
            where, params = ["account = ?"], [account]
            for cond, v in (("market = ?", None if market is None else store._market_id(market)),
                            ("created_ts >= ?", start_ts), ("created_ts <= ?", end_ts), ("order_id >= ?", from_id)):
                if v is not None:
                    where.append(cond)
                    params.append(v)
            forward = from_id is not None or start_ts is not None
            rows = H._fold_updates(conn.execute(H._orders_now_sql(
                f"SELECT {', '.join(H._ORDER_COLUMNS)} FROM orders WHERE {' AND '.join(where)} "
                f"ORDER BY order_id {'ASC' if forward else 'DESC'} LIMIT {limit}"), params).fetchall())
            return [store._order_dict(x) for x in rows]

        def ref_fills(account, market=None, start_ts=None, end_ts=None, from_id=None, limit=500):
            # The query fills() ran over the two account indexes before `account_fills`.
            cond, params = "", []
            for c, v in (("market = ?", None if market is None else store._market_id(market)),
                         ("ts >= ?", start_ts), ("ts <= ?", end_ts), ("id >= ?", from_id)):
                if v is not None:
                    cond += f" AND {c}"
                    params.append(v)
            order = "ASC" if from_id is not None or start_ts is not None else "DESC"
            cols = ("id, seq, ts, market, taker_order, taker_account, maker_order, maker_account, taker_side, "
                    "price, qty, taker_fee, maker_fee")
            rows = conn.execute(
                f"SELECT * FROM (SELECT {cols}, 0 AS role, taker_side AS vside FROM fills "
                f"WHERE taker_account = ?{cond} ORDER BY id {order} LIMIT ?) AS t UNION ALL "
                f"SELECT * FROM (SELECT {cols}, 1 AS role, 1 - taker_side AS vside FROM fills "
                f"WHERE maker_account = ?{cond} ORDER BY id {order} LIMIT ?) AS m ORDER BY id {order}, "
                f"vside {order} LIMIT ?", [account, *params, limit, account, *params, limit, limit]).fetchall()
            return [(r[0], r[-2], r[-1]) for r in (rows if order == "ASC" else rows[::-1])]

        def got_fills(*a, **kw):
            return [(f["id"], int(f["maker"]), 0 if f["side"] == "buy" else 1) for f in store.fills(*a, **kw)]

        accounts = sorted({a for a, _, _ in blocks})
        assert conn.execute("SELECT count(*) FROM fills WHERE taker_account = maker_account").fetchone()[0] > 0
        checked = fills_checked = 0
        for a in accounts:
            all_fills = got_fills(a, limit=5000)
            assert all_fills == ref_fills(a, limit=5000) and len(all_fills) > 20
            fids = [f[0] for f in all_fills]
            fts = sorted({f["ts"] for f in store.fills(a, limit=5000)})
            for limit in (1, 2, 3, 500):
                assert got_fills(a, limit=limit) == ref_fills(a, limit=limit)
                for from_id in (0, fids[0], fids[len(fids) // 2], fids[-1], fids[-1] + 1):
                    assert got_fills(a, from_id=from_id, limit=limit) == ref_fills(a, from_id=from_id, limit=limit)
                for t in (fts[0], fts[len(fts) // 2], fts[-1]):
                    assert got_fills(a, start_ts=t, limit=limit) == ref_fills(a, start_ts=t, limit=limit)
                    assert got_fills(a, end_ts=t, limit=limit) == ref_fills(a, end_ts=t, limit=limit)
                    got = got_fills(a, market="B1-Q", start_ts=t, limit=limit)
                    assert got == ref_fills(a, market="B1-Q", start_ts=t, limit=limit)
                    fills_checked += len(got)
        assert fills_checked > 50
        for a in accounts:
            everything = store.orders(a, limit=5000)
            assert everything == ref(a, limit=5000) and len(everything) > 20
            ids = [o["order_id"] for o in everything]
            times = sorted({o["created_ts"] for o in everything})
            for limit in (1, 2, 4, 7, 500):
                assert store.orders(a, limit=limit) == ref(a, limit=limit) == everything[-limit:]
                for from_id in (0, ids[0], ids[len(ids) // 2], ids[len(ids) // 2] + 1, ids[-1], ids[-1] + 1):
                    assert store.orders(a, from_id=from_id, limit=limit) == ref(a, from_id=from_id, limit=limit)
                for t in (times[0], times[len(times) // 3], times[-1]):
                    assert store.orders(a, start_ts=t, limit=limit) == ref(a, start_ts=t, limit=limit)
                    assert store.orders(a, end_ts=t, limit=limit) == ref(a, end_ts=t, limit=limit)
                    for m in sorted({o["market"] for o in everything} | {"B0-Q"}):
                        got = store.orders(a, market=m, start_ts=t, limit=limit)
                        assert got == ref(a, market=m, start_ts=t, limit=limit)
                        checked += len(got)
        assert checked > 100
        assert store.orders(10**9) == []
        conn.close()
    finally:
        store.close()


def test_a_query_that_fails_inside_its_read_transaction_leaves_the_connection_usable(tmp_path, monkeypatch):
    r, _ = scenario()
    store = _open((None, tmp_path), r.ex)
    try:
        store(r.pairs)
        store.flush()
        want = store.orders(0)

        def boom(*a):
            raise ValueError("boom")

        monkeypatch.setattr(store, "_orders_now", boom)
        with pytest.raises(ValueError, match="boom"):
            store.orders(0)
        assert not store._qconn().in_transaction
        monkeypatch.undo()
        assert store.orders(0) == want and want
    finally:
        store.close()


def test_flow_matches_the_exchange(tmp_path):
    r = _flow_run()
    store = _open((None, tmp_path), r.ex)
    try:
        for i in range(0, len(r.pairs), 9):
            store(r.pairs[i : i + 9])
        store.flush()
        for account in range(60):
            got = store.fills(account, limit=100)
            want = r.ex.recent_fills(account)
            assert [(f["ts"], f["order_id"], f["side"], f["maker"], Decimal(f["price"]), Decimal(f["qty"]),
                     Decimal(f["fee"])) for f in got][-len(want):] == [
                (w["ts"], w["order_id"], w["side"], w["maker"], w["price"], w["qty"], w["fee"]) for w in want]
            orders = {o["order_id"]: o for o in store.orders(account, limit=5000)}
            for o in r.ex.open_orders(account):
                h = orders[o["order_id"]]
                assert h["status"] in ("new", "partially_filled")
                assert Decimal(h["remaining_qty"]) == o["qty"] and Decimal(h["price"]) == o["price"]
            open_ids = {o["order_id"] for o in r.ex.open_orders(account)}
            for h in orders.values():
                if h["order_id"] not in open_ids:
                    assert h["status"] in ("filled", "cancelled", "expired") and h["remaining_qty"] == "0", h
        for m in ("B0-Q", "B1-Q", "B2-Q"):
            for iv in ("1m", "5m", "1h"):
                got = store.candles(m, iv, limit=1000)
                assert [{k: (Decimal(v) if isinstance(v, str) else v) for k, v in c.items()} for c in got] == \
                    r.ex.candles(m, iv, limit=1000), (m, iv)
    finally:
        store.close()


def test_a_dead_writer_is_reported_and_nothing_blocks(tmp_path):
    r, _ = scenario()
    store = _open((None, tmp_path), r.ex)
    try:
        half = len(r.pairs) // 2
        store(r.pairs[:half])
        store.flush()
        store._proc.kill()  # the writer process dies (OOM killer, a bug)
        store._proc.wait()
        deadline = time.monotonic() + 10
        while store.failed is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "history writer exited" in str(store.failed)
        t0 = time.perf_counter()
        store(r.pairs[half:])  # dropped, at once: the journal has them for the next start
        assert time.perf_counter() - t0 < 0.1
        assert store.stats()["dropped"] == len(r.pairs) - half
        assert store.last_seq == r.pairs[half - 1][1].seq
    finally:
        store.close()
    # The next start catches up from last_seq.
    store = _open((None, tmp_path), r.ex)
    try:
        store(r.pairs)
        store.flush()
        assert store.last_seq == r.ex.last_seq
    finally:
        store.close()


def test_one_writer_per_postgresql_database(pg_server):
    ex = Exchange()
    url = pg_server.create_db()
    first = HistoryStore.open(url, None, lambda i: ex._market_by_id[i])
    try:
        with pytest.raises(RuntimeError, match="being written by another lxdex"):
            HistoryStore.open(url, None, lambda i: ex._market_by_id[i])
    finally:
        first.close()
    HistoryStore.open(url, None, lambda i: ex._market_by_id[i]).close()  # the lock went with the first


def test_orders_by_client_order_id(backend):
    """An order's client id is in its history row, open or closed; the latest order with it is found."""
    r, ids = scenario()
    first = r.place(0, "BTC-USD", "buy", "0.1", "40000", client_id="bot.1")
    assert r.do(C.CancelOrder(account=0, order_id=first)).ok
    again = r.place(0, "BTC-USD", "buy", "0.1", "40001", client_id="bot.1")  # reusable once closed
    store = _open(backend, r.ex)
    try:
        store(r.pairs)
        store.flush()
        assert store.order(first)["client_order_id"] == "bot.1" and store.order(first)["status"] == "cancelled"
        assert store.order_by_client_id(0, "bot.1")["order_id"] == again
        assert store.order_by_client_id(1, "bot.1") is None and store.order_by_client_id(0, "nope") is None
        assert "client_order_id" not in store.order(ids["s1"])  # none given: no key
        with pytest.raises(ValueError, match="^client_order_id: "):
            store.order_by_client_id(0, "")
    finally:
        store.close()


def _store_of_an_older_version(backend, downgrade: tuple[str, ...], more=None):
    """The scenario (and `more(run)`) written by this version, then turned into an older
    version's store by `downgrade`: `(run, its orders of account 0, backend)`."""
    from lxdex.node.history import _backend_for

    r, _ = scenario()
    if more is not None:
        more(r)
    store = _open(backend, r.ex)
    store(r.pairs)
    store.flush()
    n_orders = len(store.orders(0, limit=5000))
    store.close()
    b = _backend_for(*backend)
    conn = b.connect(writer=False)
    _as_before_version_4(conn, b)
    for stmt in downgrade:
        conn.execute(stmt)
    conn.close()
    return r, n_orders, b


def _as_before_version_4(conn, b) -> None:
    """What a store before version 4 held: each order's row up to date (its changes applied in place),
    no `order_updates`; indexes of the orders and fills by account instead of `account_orders` and
    `account_fills`."""
    cols = ("filled_qty", "filled_quote", "remaining", "status", "reason", "price", "qty", "triggered_ts",
            "updated_ts", "updated_seq")
    at = [H._ORDER_COLUMNS.index(c) for c in cols]
    rows = H._fold_updates(conn.execute(H._orders_now_sql(f"SELECT {', '.join(H._ORDER_COLUMNS)} FROM orders"))
                           .fetchall())
    for row in rows:
        conn.execute(b.sql(f"UPDATE orders SET {', '.join(c + ' = ?' for c in cols)} WHERE order_id = ?"),
                     (*(row[i] for i in at), row[0]))
    conn.execute("DROP TABLE order_updates")
    conn.execute("DROP TABLE account_orders")
    conn.execute("DROP TABLE account_fills")
    conn.execute(f"CREATE INDEX orders_account ON orders (account{'' if b.name == 'sqlite' else ', order_id'})")
    conn.execute(f"CREATE INDEX fills_taker ON fills (taker_account{'' if b.name == 'sqlite' else ', id'})")
    conn.execute(f"CREATE INDEX fills_maker ON fills (maker_account{'' if b.name == 'sqlite' else ', id'})")


def test_a_version_3_store_is_migrated(backend):
    """A version-3 store (changes applied to the orders' rows, no `order_updates`) is migrated when opened:
    its orders read as they were, and later changes to them (fills, cancels, an amend) are appended and
    read on top: every order as in a store written by this version from the start."""
    def more(r: Run) -> None:  # orders that rest, for the changes after the migration
        for a, m, side, qty, price in ((0, "BTC-USD", "buy", "0.3", "40000"), (1, "BTC-USD", "buy", "0.2", "39000"),
                                       (1, "ETH-USD", "sell", "2", "5000"), (0, "ETH-USD", "sell", "1", "5100")):
            r.place(a, m, side, qty, price)

    r, n_orders, b = _store_of_an_older_version(backend, ("UPDATE schema_version SET version = 3",), more)
    old_open = [(a, o) for a in range(4) for o in r.ex.open_orders(a) if o["status"] == "resting"]
    assert len(old_open) >= 2
    (a0, o0), (a1, o1) = old_open[0], old_open[1]
    assert r.do(C.CancelOrder(account=a0, order_id=o0["order_id"])).ok
    assert r.do(C.AmendOrder(account=a1, order_id=o1["order_id"], qty=str(Decimal(o1["qty"]) * 2))).ok
    n_fills = len(r.ex.recent_fills(2)) + len(r.ex.recent_fills(3))
    for a, side, price in ((2, "buy", "1000000"), (3, "sell", "1")):  # whatever rests gets filled
        for m in ("BTC-USD", "ETH-USD"):
            r.place(a, m, side, "0.5", order_type="market", price=price)
    assert len(r.ex.recent_fills(2)) + len(r.ex.recent_fills(3)) > n_fills
    store = _open(backend, r.ex)
    try:
        assert len(store.orders(0, limit=5000)) == n_orders
        store(r.pairs)
        store.flush()
        conn = b.connect(writer=False)
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(H.SCHEMA_VERSION,)]
        assert conn.execute("SELECT count(*) FROM order_updates").fetchone()[0] > 0
        conn.close()
        migrated = {a: store.orders(a, limit=5000) for a in range(4)}
        migrated_fills = {a: store.fills(a, limit=5000) for a in range(4)}
    finally:
        store.close()
    fresh = _open((None, backend[1] / "fresh"), r.ex)  # this version from the start (on SQLite)
    try:
        fresh(r.pairs)
        fresh.flush()
        assert {a: fresh.orders(a, limit=5000) for a in range(4)} == migrated
        assert {a: fresh.fills(a, limit=5000) for a in range(4)} == migrated_fills
        assert sum(map(len, migrated_fills.values())) > 10
        assert [o["status"] for o in migrated[a0] if o["order_id"] == o0["order_id"]] == ["cancelled"]
    finally:
        fresh.close()


def test_a_version_4_store_gets_the_account_table_it_lacks(backend):
    """Version 4 was on main with `account_orders` but the fills' account indexes (and, before that, with
    neither table): opened, it gets `account_fills` built from those indexes, which are dropped, and the
    times of version 6 (NULL in the rows it had: the time filters still find their orders)."""
    r, _ = scenario()
    store = _open(backend, r.ex)
    store(r.pairs)
    store.flush()
    want = {a: (store.orders(a, limit=5000), store.fills(a, limit=5000)) for a in range(4)}
    store.close()
    assert sum(len(f) for _, f in want.values()) > 10
    b = H._backend_for(*backend)
    conn = b.connect(writer=False)
    n_orders = conn.execute("SELECT count(*) FROM account_orders").fetchone()[0]
    conn.execute("DELETE FROM account_fills")
    for t in ("account_orders", "account_fills"):  # (version 4 had no times in these rows)
        conn.execute(f"ALTER TABLE {t} DROP COLUMN min_ts")
        conn.execute(f"ALTER TABLE {t} DROP COLUMN max_ts")
    conn.execute("CREATE INDEX fills_taker ON fills (taker_account)")
    conn.execute("CREATE INDEX fills_maker ON fills (maker_account)")
    conn.execute("UPDATE schema_version SET version = 4")
    conn.close()
    store = _open(backend, r.ex)
    try:
        assert {a: (store.orders(a, limit=5000), store.fills(a, limit=5000)) for a in range(4)} == want
        for a in range(4):
            for o in want[a][0][::3]:
                t = o["created_ts"]
                assert store.orders(a, start_ts=t, limit=5000) == [x for x in want[a][0] if x["created_ts"] >= t]
                assert store.orders(a, end_ts=t, limit=5000) == [x for x in want[a][0] if x["created_ts"] <= t]
            for f in want[a][1][::3]:
                assert store.fills(a, start_ts=f["ts"], limit=5000) == [x for x in want[a][1] if x["ts"] >= f["ts"]]
        conn = b.connect(writer=False)
        assert conn.execute("SELECT count(*) FROM account_orders").fetchone()[0] == n_orders  # (left as it was)
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(H.SCHEMA_VERSION,)]
        if b.name == "sqlite":
            assert conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN "
                                "('fills_taker', 'fills_maker')").fetchone()[0] == 0
        else:
            assert conn.execute("SELECT count(*) FROM pg_indexes WHERE indexname IN ('fills_taker', 'fills_maker')"
                                ).fetchone()[0] == 0
        conn.close()
    finally:
        store.close()


def test_a_version_1_store_is_migrated(backend):
    """A store written by schema version 1 (no client_order_id, no list columns) is migrated to the current
    version when opened: its orders keep their rows (client id NULL), new orders get theirs."""
    r, n_orders, b = _store_of_an_older_version(backend, (
        "DROP INDEX orders_client", "ALTER TABLE orders DROP COLUMN client_order_id",
        "DROP INDEX orders_list", "ALTER TABLE orders DROP COLUMN list_id",
        "ALTER TABLE orders DROP COLUMN contingency", "UPDATE schema_version SET version = 1"))
    oid = r.place(0, "BTC-USD", "buy", "0.1", "40000", client_id="after-migration")
    store = _open(backend, r.ex)
    try:
        assert len(store.orders(0, limit=5000)) == n_orders
        store(r.pairs)
        store.flush()
        assert store.order_by_client_id(0, "after-migration")["order_id"] == oid
        assert all("client_order_id" not in o for o in store.orders(0, limit=5000) if o["order_id"] != oid)
        conn = b.connect(writer=False)
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(H.SCHEMA_VERSION,)]
        conn.close()
    finally:
        store.close()


def lists_scenario() -> tuple[Run, dict]:
    """`scenario()`, then order lists: an OCO pair (client ids) whose stop triggers, an OCO cancelled by its
    owner, a bracket whose entry fills in two steps (its exits grow with each fill, then the stop-loss
    triggers), a bracket whose entry is cancelled unfilled, and a Records batch with a BRACKET row
    and an OCO row."""
    r, ids = scenario()
    oco = r.do(C.PlaceOco(account=0, market="BTC-USD", side="sell", qty="0.1", tp_trigger="60000",
                          tp_price="60000", sl_trigger="45000", sl_price="44900", tp_client_id="oco.tp",
                          sl_client_id="oco.sl"))
    assert oco.ok, oco.error
    ids["oco"] = oco.value["order_list_id"]
    oco2 = r.do(C.PlaceOco(account=1, market="BTC-USD", side="buy", qty="0.2", tp_trigger="40000", tp_price="40000",
                           sl_trigger="58000", sl_price="58100"))
    assert oco2.ok, oco2.error
    ids["oco2"] = oco2.value["order_list_id"]
    assert r.do(C.CancelOrder(account=1, order_id=ids["oco2"] + 1)).ok  # cancelling a leg cancels both
    br = r.do(C.PlaceBracket(account=2, market="BTC-USD", side="buy", qty="0.3", price="49000", tp_trigger="52000",
                             tp_price="52000", sl_trigger="47000", client_id="br.entry", tp_client_id="br.tp"))
    assert br.ok, br.error
    ids["br"] = br.value["order_list_id"]
    ids["br_cancel"] = r.do(C.PlaceBracket(account=3, market="BTC-USD", side="buy", qty="0.1", price="30000",
                                           tp_trigger="35000", sl_trigger="29000")).value["order_list_id"]
    assert r.do(C.CancelOrder(account=3, order_id=ids["br_cancel"])).ok  # the entry: its exits go with it
    r.place(1, "BTC-USD", "sell", "0.1", "49000", dt=MIN)   # the entry fills 0.1: exits of 0.1
    r.place(1, "BTC-USD", "sell", "0.2", "49000")           # 0.3 filled: exits of 0.3
    # The OCO's stop and the bracket's stop trigger (the bracket's, a market order, finds no bids).
    assert r.do(C.ObservePrice(market="BTC-USD", price="44999")).ok
    btc = r.ex.market("BTC-USD")
    data = _records([
        {"kind": 6, "market": btc.id, "owner": 0, "side": Side.BUY, "tif": TimeInForce.GTC, "price": 4_000_000,
         "qty": 1_000, "tp_trigger": 4_500_000, "tp_price": 4_500_000, "sl_trigger": 3_900_000},
        {"kind": 7, "market": btc.id, "owner": 3, "side": Side.SELL, "qty": 500, "tp_trigger": 7_000_000,
         "tp_price": 7_000_000, "sl_trigger": 3_000_000, "sl_price": 2_990_000},
    ])
    out = r.do(C.Records(data=data), dt=MIN)
    assert not (out.events["kind"] == EventKind.REJECTED).any(), out.events
    acc = out.events[out.events["kind"] == EventKind.ACCEPTED]["order_id"].tolist()
    ids["rec_br"], ids["rec_oco"] = acc[0], acc[3]
    return r, ids


def test_order_lists_are_recorded(backend):
    """Each order of an OCO pair or bracket has its list id and contingency; `order_lists` lists them with
    their orders, live and finished; a bracket's exits are sized by their entry's fills (ACTIVATED)."""
    r, ids = lists_scenario()
    store = _open(backend, r.ex)
    try:
        store(r.pairs)
        store.flush()
        check_against_exchange(store, r, ids)
        for account in range(4):  # every open order of a live list is in the history with its list id
            for o in r.ex.open_orders(account):
                if "order_list_id" in o:
                    assert store.order(o["order_id"])["order_list_id"] == o["order_list_id"]
        o = store.order
        tp, sl = o(ids["oco"]), o(ids["oco"] + 1)
        assert (tp["order_list_id"], tp["contingency"], sl["order_list_id"]) == (ids["oco"], "oco", ids["oco"])
        assert (tp["client_order_id"], sl["client_order_id"]) == ("oco.tp", "oco.sl")
        assert (tp["type"], tp["trigger_price"], tp["price"], tp["tif"]) == (
            "take_profit_limit", "60000.00", "60000.00", "gtc")
        assert (sl["type"], sl["trigger_price"], sl["price"]) == ("stop_limit", "45000.00", "44900.00")
        assert (tp["status"], tp["reason"]) == ("cancelled", "oco") and "triggered_ts" in sl
        entry, btp, bsl = (o(ids["br"] + i) for i in range(3))
        assert {x["contingency"] for x in (entry, btp, bsl)} == {"bracket"}
        assert (entry["status"], entry["filled_qty"], entry["client_order_id"]) == ("filled", "0.3000", "br.entry")
        assert (btp["qty"], btp["status"], btp["reason"], btp["client_order_id"]) == (
            "0.3000", "cancelled", "oco", "br.tp")
        assert (bsl["qty"], bsl["status"], bsl["reason"], bsl["trigger_price"], bsl["type"]) == (
            "0.3000", "cancelled", "market_remainder", "47000.00", "stop_market")
        assert bsl["tif"] == "ioc"  # a market exit
        assert [x["reason"] for x in (o(ids["br_cancel"] + i) for i in range(3))] == ["user", "parent", "parent"]
        rb = [o(ids["rec_br"] + i) for i in range(3)]
        assert [(x["order_list_id"], x["contingency"]) for x in rb] == [(ids["rec_br"], "bracket")] * 3
        assert [x.get("trigger_price") for x in rb] == [None, "45000.00", "39000.00"]
        ro = [o(ids["rec_oco"] + i) for i in range(2)]
        assert [(x["order_list_id"], x["contingency"]) for x in ro] == [(ids["rec_oco"], "oco")] * 2
        assert [x["trigger_price"] for x in ro] == ["70000.00", "30000.00"]
        assert "order_list_id" not in o(ids["s1"])
        # The account's lists, by list id; pagination by list id and creation time.
        lists = store.order_lists(0)
        assert [g["order_list_id"] for g in lists] == [ids["oco"], ids["rec_br"]]
        assert [x["order_id"] for x in lists[0]["orders"]] == [ids["oco"], ids["oco"] + 1]
        assert lists[1]["contingency"] == "bracket" and len(lists[1]["orders"]) == 3
        assert [g["order_list_id"] for g in store.order_lists(0, limit=1)] == [ids["rec_br"]]
        assert [g["order_list_id"] for g in store.order_lists(0, from_id=ids["oco"] + 1)] == [ids["rec_br"]]
        assert [g["order_list_id"] for g in store.order_lists(0, start_ts=lists[1]["created_ts"])] == [ids["rec_br"]]
        assert store.order_lists(0, market="ETH-USD") == []
        assert store.order_list(0, ids["oco"]) == lists[0]
        assert store.order_list(1, ids["oco"]) is None and store.order_list(0, ids["oco"] + 1) is None
        with pytest.raises(ValueError, match="^list_id: "):
            store.order_list(0, -1)
        with pytest.raises(ValueError, match="^limit: "):
            store.order_lists(0, limit=0)
    finally:
        store.close()


def test_order_lists_column_wise_matches_the_event_loop(tmp_path):
    r, _ = lists_scenario()
    dumps = {}
    for name, vec, step in (("loop", False, 1), ("vec_big", True, len(r.pairs)), ("vec_small", True, 1),
                            ("vec_mixed", True, 7)):
        d = tmp_path / name
        store = HistoryStore.open(None, d, lambda i: r.ex._market_by_id[i], vectorized=vec)
        for i in range(0, len(r.pairs), step):
            store(r.pairs[i : i + step])
            if name == "vec_small":
                store.flush()  # orders cross transaction boundaries: activations and triggers as deltas
        store.flush()
        store.close()
        dumps[name] = _dump(d / "history.sqlite3")
    assert sum(1 for row in dumps["loop"]["orders"] if row[24] is not None) == 15
    for name in ("vec_big", "vec_small", "vec_mixed"):
        for table, rows in dumps["loop"].items():
            assert dumps[name][table] == rows, (name, table)


def test_a_version_2_store_is_migrated(backend):
    """A version-2 store (no list columns) is migrated when opened: its orders keep their rows (no list),
    new ones get theirs; a store of an unknown version is refused."""
    r, n_orders, b = _store_of_an_older_version(backend, (
        "DROP INDEX orders_list", "ALTER TABLE orders DROP COLUMN list_id",
        "ALTER TABLE orders DROP COLUMN contingency", "UPDATE schema_version SET version = 2"))
    lid = r.do(C.PlaceOco(account=0, market="BTC-USD", side="sell", qty="0.1", tp_trigger="60000",
                          sl_trigger="45000")).value["order_list_id"]
    store = _open(backend, r.ex)
    try:
        assert len(store.orders(0, limit=5000)) == n_orders
        store(r.pairs)
        store.flush()
        assert [g["order_list_id"] for g in store.order_lists(0)] == [lid]
        assert all("order_list_id" not in o for o in store.orders(0, limit=5000) if o["order_id"] < lid)
        conn = b.connect(writer=False)
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(H.SCHEMA_VERSION,)]
        conn.execute(f"UPDATE schema_version SET version = {H.SCHEMA_VERSION + 1}")
        conn.close()
    finally:
        store.close()
    with pytest.raises(RuntimeError, match=f"has schema version {H.SCHEMA_VERSION + 1}; "
                                           f"this lxdex writes version {H.SCHEMA_VERSION}"):
        _open(backend, r.ex)


@pytest.mark.parametrize("vec", [True, False])
def test_an_expiry_past_signed_64_bits_fails_the_writer_alike_in_both_paths(tmp_path, vec):
    """The gateways refuse such an expiry (the core takes any u64): should one reach the store anyway,
    both conversions refuse it, rather than one storing a negative time."""
    r, _ = scenario()
    btc = r.ex._market_by_id[0]
    assert r.do(C.Records(data=_records([
        {"kind": 0, "market": btc.id, "owner": 3, "side": Side.SELL, "order_type": OrderType.LIMIT,
         "tif": TimeInForce.GTD, "price": 9_000_000, "qty": 1_000, "expire_ts": 2**63 + 5}]))).ok
    store = HistoryStore.open(None, tmp_path, lambda i: r.ex._market_by_id[i], vectorized=vec)
    try:
        store(r.pairs)
        with pytest.raises(RuntimeError, match="OverflowError"):
            store.flush()
    finally:
        store.close()


def test_wait_for_a_seq_fed_later(tmp_path):
    """`wait_for(seq)`: a read that arrives between the node's ack and the store being handed the command
    (the node acknowledges first) still gets it; a seq never fed times out with False."""
    import threading

    r, _ = scenario()
    store = _open((None, tmp_path), r.ex)
    try:
        half = len(r.pairs) // 2
        store(r.pairs[:half])
        last = r.pairs[-1][1].seq
        late = threading.Timer(0.3, store, [r.pairs[half:]])  # handed over after the wait began
        late.start()
        assert store.wait_for(last, 10.0) and store.last_seq >= last
        late.join()
        assert store.wait_for(last + 1, 0.3) is False
    finally:
        store.close()
