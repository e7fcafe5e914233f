"""Market data and fill-history queries answer exactly as before the compact
encoding (crates/engine/src/compact.rs).

The digest below was recorded with the previous implementation (plain
structs in `VecDeque` rings, commit 0dfc29e) on the same deterministic
flow: trades with irregular gaps (sub-second to days, so every ring wraps
and the 1 s, 1 m, 1 h and 1 d rings disagree), in a few markets, many of
them in one candle. Every query of every market and account is hashed.
"""

import hashlib

import numpy as np
import pytest

pytest.importorskip("lxdex._core")

from lxdex import _core  # noqa: E402
from lxdex.enums import COMMAND_DTYPE, CommandKind, Side, TimeInForce  # noqa: E402

DEPOSIT = 8
INTERVALS = ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "1w", "1M")
#: sha256 of every answer below, from the plain (pre-compact) implementation.
RECORDED = "969aa3d44a6cf5d96ba0a09969501ad42285f4292ecc774290b2dd8ed95b5dbf"


def _flow(x, n_markets: int, n_accounts: int, steps: int, seed: int = 11) -> int:
    rng = np.random.default_rng(seed)
    ts = 1_700_000_000_000
    for step in range(steps):
        gap = int(rng.choice([0, 1, 250, 999, 30_000, 61_000, 3_600_000, 90_000_000]))
        ts += gap
        clock = np.zeros(1, COMMAND_DTYPE)
        clock["kind"] = CommandKind.ADVANCE_TIME
        clock["expire_ts"] = ts
        x.process(clock)
        n = int(rng.integers(1, 12))
        c = np.zeros(n, COMMAND_DTYPE)
        c["kind"] = CommandKind.SUBMIT
        c["market"] = rng.integers(0, n_markets, n)
        c["owner"] = rng.integers(0, n_accounts, n)
        c["side"] = rng.integers(0, 2, n)
        mid = 10_000 + (step % 50) * 3
        c["price"] = mid + rng.integers(-20, 21, n)
        c["qty"] = rng.integers(1, 9, n) * (1 + 1000 * (rng.random(n) < 0.05))
        c["tif"] = np.where(rng.random(n) < 0.4, TimeInForce.IOC, TimeInForce.GTC)
        x.process(c)
    return ts


def _answers(x, n_markets: int, n_accounts: int) -> bytes:
    out = []
    for m in range(n_markets):
        out.append(("trades", m, x.trades(m, 5_000)))
        out.append(("trades", m, x.trades(m, 17)))
        out.append(("ticker", m, x.ticker(m)))
        for iv in INTERVALS:
            out.append(("candles", m, iv, x.candles(m, iv, 0, 100_000)))
            out.append(("candles", m, iv, x.candles(m, iv, 1_700_500_000_000, 9)))
    for a in range(n_accounts):
        out.append(("fills", a, x.recent_fills(a)))
    return repr(out).encode()


def build(n_markets=4, n_accounts=30, steps=5_000):
    x = _core.ExchangeCore()
    quote = x.add_asset()
    bases = [x.add_asset() for _ in range(n_markets)]
    for b in bases:
        x.add_market(b, quote, lot_units=1, tick_units=1, min_qty=1, maker_bps=-1, taker_bps=5)
    for _ in range(n_accounts):
        x.add_account()
    fund = np.zeros(n_accounts * (1 + n_markets), COMMAND_DTYPE)
    fund["kind"] = DEPOSIT
    fund["owner"] = np.repeat(np.arange(n_accounts), 1 + n_markets)
    fund["order_id"] = np.tile([quote, *bases], n_accounts)
    fund["qty"] = 10**15
    x.process(fund)
    ts = _flow(x, n_markets, n_accounts, steps)
    return x, ts


def test_queries_answer_as_the_plain_implementation_did():
    x, _ = build()
    answers = _answers(x, 4, 30)
    # The flow exercises what it should: full tapes and wrapped rings.
    assert len(x.trades(0, 5_000)) == 1_000
    for iv, kept in (("1s", 300), ("1m", 1_440), ("1h", 744), ("1d", 400)):
        assert len(x.candles(0, iv, 0, 100_000)) == kept
    assert x.ticker(0) is not None
    assert any(len(f) == 100 for f in (x.recent_fills(a) for a in range(30)))
    assert hashlib.sha256(answers).hexdigest() == RECORDED


def test_restored_exchange_answers_the_same():
    x, _ = build(steps=800)
    y = _core.ExchangeCore()
    y.load_snapshot(x.snapshot())
    assert _answers(y, 4, 30) == _answers(x, 4, 30)
    assert y.snapshot() == x.snapshot()
