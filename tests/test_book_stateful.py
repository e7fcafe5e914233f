"""The fast book (lxdex.Book) against the reference book
(tests/reference/book.py), on random command sequences.

- A hypothesis state machine sends the same per-call commands of every kind
  to both books (small price range and quantities, few owners: lots of
  crossing, self-trades, triggers) and compares the events, or the rejection
  reason, after every step, and the whole visible state after every step.
- Random batches through the fast book's `process` equal the reference's
  `process_commands`, field by field (cmd_index and market included), and
  the fast book's batch and per-call APIs agree.
- The fast book's batch output is byte-identical across runs and processes.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

try:
    import lxdex._core  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the build
    pytest.skip(f"the fast book lxdex._core is not built (run `make build`): {e}", allow_module_level=True)

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule  # noqa: E402

import lxdex  # noqa: E402
from lxdex.enums import COMMAND_DTYPE, EVENT_DTYPE, CommandKind, EventKind, Stp  # noqa: E402

from tests.book_events import (  # noqa: E402
    EVENT_FIELDS,
    FOK,
    GTC,
    GTD,
    IOC,
    LIM,
    MKT,
    SLM,
    SM,
    TPL,
    TPM,
    TS,
    tuples,
)
from tests.reference.book import Book as RefBook  # noqa: E402
from tests.reference.book import Rejected  # noqa: E402

ids = st.integers(1, 30)
owners = st.integers(1, 3)
sides = st.sampled_from([0, 1] * 6 + [2])  # now and then an invalid side
prices = st.integers(95, 105)
qtys = st.sampled_from([1, 1, 2, 2, 3, 3, 4, 5, 7, 0])
tifs = st.sampled_from([GTC, GTC, GTC, IOC, FOK, GTD])
market_tifs = st.sampled_from([IOC, IOC, FOK] * 4 + [GTC])  # GTC: invalid for market types
stps = st.sampled_from(list(Stp))
displays = st.sampled_from([0, 0, 0, 1, 2])
lifetimes = st.sampled_from([1, 2, 3, 5, 10, 0])  # 0 makes a GTD order invalid


def outcome(call):
    """('ok', event tuples) or ('rejected', reason) of a per-call command."""
    try:
        return ("ok", tuples(call()))
    except (Rejected, lxdex.OrderRejected) as e:
        return ("rejected", int(e.reason))


class BookMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.fast = lxdex.Book()
        self.ref = RefBook()

    def both(self, method, *args, **kwargs):
        fast = outcome(lambda: getattr(self.fast, method)(*args, **kwargs))
        ref = outcome(lambda: getattr(self.ref, method)(*args, **kwargs))
        assert fast == ref, f"{method}{args}{kwargs}"

    def expiry(self, tif, lifetime):
        return self.ref.now + lifetime if tif == GTD else 0

    # -- orders -----------------------------------------------------------
    @rule(i=ids, o=owners, side=sides, q=qtys, p=prices, tif=tifs, stp=stps, post=st.booleans(),
          display=displays, life=lifetimes)
    def limit(self, i, o, side, q, p, tif, stp, post, display, life):
        self.both("submit", i, o, side, q, p, LIM, tif, stp, post, display, 0, False, self.expiry(tif, life))

    @rule(i=ids, o=owners, side=st.sampled_from([0, 1]), q=st.integers(1, 5), p=prices,
          display=st.sampled_from([0, 0, 0, 1]))
    def plain_limit(self, i, o, side, q, p, display):
        """A plain GTC limit order: keeps the book from running dry."""
        self.both("submit", i, o, side, q, p, LIM, GTC, Stp.NONE, False, display if q > 1 else 0)

    @rule(i=ids, o=owners, side=sides, q=qtys, protect=st.sampled_from([0, 0, 0, 97, 100, 103]), tif=market_tifs,
          stp=stps)
    def market(self, i, o, side, q, protect, tif, stp):
        self.both("submit", i, o, side, q, protect, MKT, tif, stp)

    @rule(i=ids, o=owners, side=sides, q=qtys, trigger=prices, limit=st.sampled_from([0, 0, 96, 100, 104]),
          take_profit=st.booleans(), tif=tifs, mtif=market_tifs, stp=stps, display=displays, life=lifetimes)
    def stop_or_take_profit(self, i, o, side, q, trigger, limit, take_profit, tif, mtif, stp, display, life):
        if limit == 0:
            otype, tif, display = (TPM if take_profit else SM), mtif, 0
        else:
            otype = TPL if take_profit else SLM
        self.both("submit", i, o, side, q, limit, otype, tif, stp, False, display, trigger, False,
                  self.expiry(tif, life))

    @rule(i=ids, o=owners, side=sides, q=qtys, distance=st.integers(1, 4),
          bps=st.sampled_from([0, 0, 50, 100, 200, 300, 500]), protect=st.sampled_from([0, 0, 0, 97, 103]),
          tif=market_tifs, stp=stps)
    def trailing_stop(self, i, o, side, q, distance, bps, protect, tif, stp):
        self.both("submit", i, o, side, q, protect, TS, tif, stp, False, 0, bps or distance, bps != 0)

    @rule(i=ids, o=owners, side=sides, q=qtys, p=st.sampled_from([0, 0, 97, 99, 100, 101, 103]),
          tp_id=ids, sl_id=ids, tp_off=st.sampled_from([1, 2, 3, 4, 0]), sl_off=st.sampled_from([1, 2, 3, 4, 0]),
          tp_limit=st.sampled_from([0, 0, 1, -1]), sl_limit=st.sampled_from([0, 0, 1, -1]),
          tif=tifs, mtif=market_tifs, stp=stps, post=st.sampled_from([False, False, False, True]), life=lifetimes)
    def bracket(self, i, o, side, q, p, tp_id, sl_id, tp_off, sl_off, tp_limit, sl_limit, tif, mtif, stp, post,
                life):
        ref = p or 100
        sign = 1 if side == 0 else -1
        tp, sl = ref + sign * tp_off, ref - sign * sl_off
        if p == 0:
            tif = mtif
        tp_price = tp + tp_limit if tp_limit else 0
        sl_price = sl + sl_limit if sl_limit else 0
        self.both("bracket", i, o, side, q, p, tp_id, tp, sl_id, sl, tp_price, sl_price, tif, stp, post,
                  self.expiry(tif, life))

    @rule(o=owners, side=sides, q=qtys, tp_id=ids, sl_id=ids, tp_off=st.sampled_from([0, 1, 2, 4, -1]),
          sl_off=st.sampled_from([1, 2, 4]), tp_limit=st.sampled_from([0, 0, 1, -1]),
          sl_limit=st.sampled_from([0, 0, 1, -1]), stp=stps)
    def oco(self, o, side, q, tp_id, sl_id, tp_off, sl_off, tp_limit, sl_limit, stp):
        sign = 1 if side == 1 else -1  # a SELL OCO protects a long: tp above, sl below
        tp, sl = 100 + sign * tp_off, 100 - sign * sl_off
        self.both("oco", o, side, q, tp_id, tp, sl_id, sl, tp + tp_limit if tp_limit else 0,
                  sl + sl_limit if sl_limit else 0, stp)

    @rule(i=ids, o=owners, side=st.integers(0, 3), otype=st.integers(0, 8), tif=st.integers(0, 4),
          stp=st.integers(0, 5), q=st.integers(-1, 6), p=st.integers(-1, 106),
          trigger=st.sampled_from([0, -1, 3, 99, 101]), display=st.integers(-1, 3),
          expire=st.sampled_from([0, 0, 1, 5, 20]), post=st.booleans(), trail=st.booleans())
    def anything(self, i, o, side, otype, tif, stp, q, p, trigger, display, expire, post, trail):
        """Arbitrary field values: mostly rejections, in validation order."""
        self.both("submit", i, o, side, q, p, otype, tif, stp, post, display, trigger, trail, expire)

    # -- other commands -----------------------------------------------------
    @rule(i=st.integers(0, 32))
    def cancel(self, i):
        self.both("cancel", i)

    @rule(i=ids, p=st.sampled_from([0, 0, 0, 95, 97, 99, 100, 101, 103, 105, -5]),
          q=st.sampled_from([0, 0, 1, 2, 3, 5, 8, -1]))
    def amend(self, i, p, q):
        self.both("amend", i, p, q)

    @precondition(lambda self: len(self.ref) > 0)
    @rule(data=st.data())
    def amend_resting(self, data):
        """Amend an order that rests (the plain amend rule mostly misses)."""
        order_id = data.draw(st.sampled_from([row[0] for row in self.ref.l3()]))
        p = data.draw(st.sampled_from([0, 0, 96, 98, 100, 102, 104]))
        q = data.draw(st.sampled_from([0, 1, 2, 4, 6]))
        self.both("amend", order_id, p, q)

    @rule(o=st.integers(1, 4))
    def mass_cancel(self, o):
        self.both("mass_cancel", o)

    @rule(dt=st.sampled_from([0, 1, 1, 2, 3, 5, 10, -1]))
    def advance_time(self, dt):
        self.both("advance_time", max(0, self.ref.now + dt))

    @rule(p=st.sampled_from([93, 95, 96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 107, 0]))
    def observe_price(self, p):
        self.both("observe_price", p)

    # -- state --------------------------------------------------------------
    @invariant()
    def same_state(self):
        assert self.fast.l3() == self.ref.l3()
        assert self.fast.pending() == self.ref.pending()
        assert (self.fast.best_bid, self.fast.best_ask, self.fast.last_price, self.fast.now) == (
            self.ref.best_bid, self.ref.best_ask, self.ref.last_price, self.ref.now)
        assert self.fast.depth(5) == self.ref.depth(5)
        assert len(self.fast) == len(self.ref)
        for side in (0, 1):
            for p in (97, 100, 103):
                assert self.fast.volume_at(side, p) == self.ref.volume_at(side, p)
        if hasattr(self.fast, "check_invariants"):
            self.fast.check_invariants()


BookMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])
TestFastBookAgainstReference = BookMachine.TestCase


# -- batch API ----------------------------------------------------------------

K = CommandKind

records = st.fixed_dictionaries({
    "kind": st.sampled_from([K.SUBMIT] * 8 + [K.CANCEL] * 2 + [K.AMEND, K.AMEND, K.MASS_CANCEL, K.ADVANCE_TIME,
                            K.OBSERVE_PRICE, K.OBSERVE_PRICE, K.BRACKET, K.BRACKET, K.OCO, 8, 255]),
    "side": st.sampled_from([0, 1] * 5 + [2, 255]),
    "order_type": st.sampled_from([0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7]),
    "tif": st.sampled_from([0, 0, 1, 1, 2, 3, 4]),
    "stp": st.sampled_from([0, 0, 0, 1, 2, 3, 4, 5]),
    "flags": st.sampled_from([0, 0, 0, 0, 1, 2, 3, 4, 8]),
    "market": st.sampled_from([0, 0, 7]),
    "order_id": st.integers(0, 20),
    "owner": st.integers(1, 3),
    "price": st.sampled_from([0, 0, -1]) | st.integers(96, 104),
    "qty": st.integers(1, 5) | st.sampled_from([0, -1]),
    "trigger_price": st.sampled_from([0, 0, 0, 2, 100, -1]) | st.integers(96, 104),
    "display_qty": st.sampled_from([0, 0, 0, 1, 2]),
    "expire_ts": st.sampled_from([0, 0, 0, 2, 5, 9, 50]),
    "tp_id": st.integers(0, 24), "tp_trigger": st.integers(94, 106), "tp_price": st.sampled_from([0, 0, 99, 105]),
    "sl_id": st.integers(0, 24), "sl_trigger": st.integers(94, 106), "sl_price": st.sampled_from([0, 0, 95, 101]),
})


def to_array(recs) -> np.ndarray:
    arr = np.zeros(len(recs), COMMAND_DTYPE)
    for i, r in enumerate(recs):
        for k, v in r.items():
            arr[i][k] = v
    return arr


def reference_batch(arr: np.ndarray) -> list[tuple]:
    """The reference's events of a batch, each as (cmd_index, market, *fields)."""
    book, out = RefBook(), []
    for i, rec in enumerate(arr):
        out += [(i, int(rec["market"])) + t for t in tuples(book.process_commands([rec]))]
    return out


def fast_batch(arr: np.ndarray) -> list[tuple]:
    events = lxdex.Book().process(arr)
    assert events.dtype == EVENT_DTYPE
    return [(int(e["cmd_index"]), int(e["market"])) + tuple(int(e[f]) for f in EVENT_FIELDS) for e in events]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records, min_size=1, max_size=80))
def test_batch_api_matches_the_reference(recs):
    arr = to_array(recs)
    assert fast_batch(arr) == reference_batch(arr)


def per_call(book, r) -> list[tuple]:
    """One record through the fast book's per-call API, as the event tuples
    the batch API would give for it (a rejection as its REJECTED tuple)."""
    kind, g = int(r["kind"]), lambda k: int(r[k])
    owner = g("owner") if kind in (K.SUBMIT, K.BRACKET, K.OCO, K.MASS_CANCEL) else 0
    order_id = {K.SUBMIT: g("order_id"), K.BRACKET: g("order_id"), K.CANCEL: g("order_id"),
                K.AMEND: g("order_id"), K.OCO: g("tp_id")}.get(kind, 0)
    try:
        if kind == K.SUBMIT:
            events = book.submit(g("order_id"), g("owner"), g("side"), g("qty"), g("price"), g("order_type"),
                                 g("tif"), g("stp"), bool(g("flags") & 1), g("display_qty"), g("trigger_price"),
                                 bool(g("flags") & 2), g("expire_ts"))
        elif kind == K.CANCEL:
            events = book.cancel(g("order_id"))
        elif kind == K.AMEND:
            events = book.amend(g("order_id"), g("price"), g("qty"))
        elif kind == K.MASS_CANCEL:
            events = book.mass_cancel(g("owner"))
        elif kind == K.ADVANCE_TIME:
            events = book.advance_time(g("expire_ts"))
        elif kind == K.OBSERVE_PRICE:
            events = book.observe_price(g("price"))
        elif kind == K.BRACKET:
            events = book.bracket(g("order_id"), g("owner"), g("side"), g("qty"), g("price"), g("tp_id"),
                                  g("tp_trigger"), g("sl_id"), g("sl_trigger"), g("tp_price"), g("sl_price"),
                                  g("tif"), g("stp"), bool(g("flags") & 1), g("expire_ts"))
        else:
            events = book.oco(g("owner"), g("side"), g("qty"), g("tp_id"), g("tp_trigger"), g("sl_id"),
                              g("sl_trigger"), g("tp_price"), g("sl_price"), g("stp"))
    except lxdex.OrderRejected as e:
        return [(int(EventKind.REJECTED), int(e.reason), 0, 0, order_id, owner, 0, 0, 0, 0, 0, 0)]
    return tuples(events)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records, min_size=1, max_size=60))
def test_fast_batch_and_per_call_apis_agree(recs):
    # the per-call API has no unknown command kinds or flag bits to send
    recs = [r for r in recs if r["kind"] <= K.OCO and not r["flags"] & ~3]
    arr = to_array(recs)
    book = lxdex.Book()
    calls = [(i, int(r["market"])) + t for i, r in enumerate(arr) for t in per_call(book, r)]
    assert fast_batch(arr) == calls


# -- long sequences and determinism ---------------------------------------------

def random_batch(n: int, seed: int) -> np.ndarray:
    """n commands of every kind, mostly valid, over a few owners and prices."""
    rng = np.random.default_rng(seed)
    arr = np.zeros(n, COMMAND_DTYPE)
    arr["kind"] = rng.choice([0] * 10 + [1, 1, 2, 2, 3, 4, 5, 6, 7], n)
    arr["side"] = rng.integers(0, 2, n)
    arr["order_type"] = rng.choice([0] * 8 + [1, 1, 2, 3, 4, 5, 6], n)
    market_type = np.isin(arr["order_type"], [1, 2, 4, 6])
    arr["tif"] = np.where(market_type, rng.choice([1, 1, 2], n), rng.choice([0, 0, 0, 1, 2, 3], n))
    arr["stp"] = rng.integers(0, 5, n)
    arr["order_id"] = rng.integers(1, 400, n)
    arr["owner"] = rng.integers(1, 20, n)
    arr["price"] = np.where(market_type & (rng.random(n) < 0.7), 0, rng.integers(990, 1011, n))
    # buyers a bit lower than sellers: a book with depth, and still crossing
    arr["price"] = np.where(arr["price"] > 0, arr["price"] + np.where(arr["side"] == 0, -3, 3), 0)
    arr["price"] = np.where(arr["kind"] == 5, rng.integers(985, 1016, n), arr["price"])
    # cancels and amends mostly name an order submitted a little earlier
    earlier = np.maximum(np.arange(n) - rng.integers(1, 60, n), 0)
    arr["order_id"] = np.where(np.isin(arr["kind"], [1, 2]) & (rng.random(n) < 0.8), arr["order_id"][earlier],
                               arr["order_id"])
    amend = arr["kind"] == 2
    arr["price"] = np.where(amend & (rng.random(n) < 0.5), 0, arr["price"])
    arr["qty"] = rng.integers(1, 20, n)
    arr["qty"] = np.where(amend & (arr["price"] != 0) & (rng.random(n) < 0.5), 0, arr["qty"])
    trailing = arr["order_type"] == 6
    arr["flags"] = np.where(trailing & (rng.random(n) < 0.5), 2, 0)
    arr["flags"] = np.where((arr["order_type"] == 0) & (arr["tif"] != 1) & (arr["tif"] != 2)
                            & (rng.random(n) < 0.1), 1, arr["flags"])
    conditional = np.isin(arr["order_type"], [2, 3, 4, 5])
    arr["trigger_price"] = np.where(conditional, rng.integers(990, 1011, n), 0)
    arr["trigger_price"] = np.where(trailing, np.where(arr["flags"] == 2, rng.integers(5, 60, n),
                                                       rng.integers(1, 6, n)), arr["trigger_price"])
    arr["display_qty"] = np.where((arr["tif"] != 1) & (arr["tif"] != 2) & ~market_type & (rng.random(n) < 0.2),
                                  rng.integers(1, 4, n), 0)
    clock = np.cumsum(np.where(arr["kind"] == 4, rng.integers(0, 3, n), 0))
    arr["expire_ts"] = np.where(arr["tif"] == 3, clock + rng.integers(1, 10, n), 0)
    arr["expire_ts"] = np.where(arr["kind"] == 4, clock, arr["expire_ts"])
    # brackets around their entry price; OCOs around 1000
    centre = np.where(arr["kind"] == 6, np.where(arr["price"] > 0, arr["price"], 1000), 1000)
    up, down = centre + rng.integers(1, 8, n), centre - rng.integers(1, 8, n)
    buy_side = (arr["side"] == 0) == (arr["kind"] == 6)  # bracket BUY / OCO SELL: tp above
    arr["tp_trigger"], arr["sl_trigger"] = np.where(buy_side, up, down), np.where(buy_side, down, up)
    arr["tp_price"] = np.where(rng.random(n) < 0.3, arr["tp_trigger"], 0)
    arr["sl_price"] = np.where(rng.random(n) < 0.3, arr["sl_trigger"], 0)
    arr["tp_id"], arr["sl_id"] = rng.integers(400, 800, n), rng.integers(800, 1200, n)
    return arr


def test_long_random_batch_matches_the_reference():
    arr = random_batch(3_000, seed=5)
    fast, ref = fast_batch(arr), reference_batch(arr)
    assert fast == ref
    kinds = {t[2] for t in ref}
    assert kinds >= {0, 1, 2, 3, 4, 5, 6}, kinds  # every event kind happened


DETERMINISM_SCRIPT = """
import sys, numpy as np, lxdex
arr = np.frombuffer(sys.stdin.buffer.read(), dtype=lxdex.COMMAND_DTYPE)
sys.stdout.buffer.write(lxdex.Book().process(arr).tobytes())
"""


def test_event_stream_is_byte_identical_across_runs_and_processes():
    arr = random_batch(30_000, seed=11)
    first = lxdex.Book().process(arr).tobytes()
    assert lxdex.Book().process(arr).tobytes() == first
    out = subprocess.run([sys.executable, "-c", DETERMINISM_SCRIPT], input=arr.tobytes(), capture_output=True,
                         check=True).stdout
    assert out == first
    assert len(first) > EVENT_DTYPE.itemsize * len(arr)  # it did real work: more events than commands
