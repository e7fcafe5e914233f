"""The Rust book against the reference book (tests/reference/book.py):
random command sequences of every order type, compared event by event and
state by state after every step; the batch API against the per-call API;
and byte-identical determinism across processes."""

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("lxdex._core")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule  # noqa: E402

import lxdex  # noqa: E402
from lxdex.enums import COMMAND_DTYPE, CommandKind, OrderType, Stp, TimeInForce  # noqa: E402
from tests.reference.book import Book as RefBook  # noqa: E402
from tests.reference.book import Rejected  # noqa: E402

ids = st.integers(1, 30)
owners = st.integers(1, 3)
sides = st.sampled_from([0, 1, 0, 1, 0, 1, 2])  # now and then an invalid side
prices = st.integers(96, 104)
qtys = st.sampled_from([1, 2, 3, 4, 5, 8, 1, 2, 3, 2, 0, -1])
tifs = st.sampled_from([TimeInForce.GTC] * 3 + [TimeInForce.IOC, TimeInForce.FOK, TimeInForce.GTD])
stps = st.sampled_from(list(Stp))


def run(fn):
    try:
        return ("ok", [e.astuple() for e in fn()])
    except Rejected as e:
        return ("rejected", int(e.reason))
    except lxdex.OrderRejected as e:
        return ("rejected", int(e.reason))


class BookMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.fast = lxdex.Book()
        self.ref = RefBook()

    def both(self, name, *args, **kw):
        f = run(lambda: getattr(self.fast, name)(*args, **kw))
        r = run(lambda: getattr(self.ref, name)(*args, **kw))
        assert f == r, (name, args, kw)

    def expiry(self, tif, dt):
        return self.ref.now + dt if tif == TimeInForce.GTD else 0

    @rule(i=ids, o=owners, side=sides, q=qtys, p=prices, tif=tifs, stp=stps, post=st.booleans(),
          display=st.sampled_from([0, 0, 0, 1, 2]), dt=st.integers(0, 20))
    def limit(self, i, o, side, q, p, tif, stp, post, display, dt):
        self.both("submit", i, o, side, q, p, OrderType.LIMIT, tif, stp, post, display, 0, False,
                  self.expiry(tif, dt))

    @rule(i=ids, o=owners, side=sides, q=qtys, protect=st.sampled_from([0, 0, 99, 101]),
          tif=st.sampled_from([TimeInForce.IOC, TimeInForce.FOK, TimeInForce.GTC]), stp=stps)
    def market(self, i, o, side, q, protect, tif, stp):
        self.both("submit", i, o, side, q, protect, OrderType.MARKET, tif, stp)

    @rule(i=ids, o=owners, side=sides, q=qtys, trigger=prices, limit=st.sampled_from([0, 95, 100, 105]),
          tp=st.booleans(), tif=tifs, stp=stps, display=st.sampled_from([0, 0, 1]), dt=st.integers(1, 20))
    def conditional(self, i, o, side, q, trigger, limit, tp, tif, stp, display, dt):
        if limit == 0:
            otype = OrderType.TAKE_PROFIT_MARKET if tp else OrderType.STOP_MARKET
            tif = TimeInForce.IOC if tif != TimeInForce.FOK else tif
        else:
            otype = OrderType.TAKE_PROFIT_LIMIT if tp else OrderType.STOP_LIMIT
        self.both("submit", i, o, side, q, limit, otype, tif, stp, False, display if limit else 0, trigger,
                  False, self.expiry(tif, dt))

    @rule(i=ids, o=owners, side=sides, q=qtys, amount=st.integers(1, 4), bps=st.booleans(), stp=stps)
    def trailing(self, i, o, side, q, amount, bps, stp):
        self.both("submit", i, o, side, q, 0, OrderType.TRAILING_STOP, TimeInForce.IOC, stp, False, 0,
                  amount * (100 if bps else 1), bps)

    @rule(i=ids, o=owners, side=st.sampled_from([0, 1]), q=qtys, p=st.sampled_from([0, 99, 100, 101]),
          tp_off=st.integers(1, 4), sl_off=st.integers(1, 4), tp_limit=st.booleans(), sl_limit=st.booleans(),
          tif=st.sampled_from([TimeInForce.GTC, TimeInForce.IOC]), stp=stps)
    def bracket(self, i, o, side, q, p, tp_off, sl_off, tp_limit, sl_limit, tif, stp):
        ref = p or 100
        sign = 1 if side == 0 else -1
        tp, sl = ref + sign * tp_off, ref - sign * sl_off
        if p == 0:
            tif = TimeInForce.IOC
        self.both("bracket", i, o, side, q, p, i + 100, tp, i + 200, sl, tp if tp_limit else 0,
                  sl if sl_limit else 0, tif, stp)

    @rule(i=ids, o=owners, side=st.sampled_from([0, 1]), q=qtys, tp_off=st.integers(0, 4),
          sl_off=st.integers(1, 4), tp_limit=st.booleans(), stp=stps)
    def oco(self, i, o, side, q, tp_off, sl_off, tp_limit, stp):
        sign = 1 if side == 1 else -1
        tp, sl = 100 + sign * tp_off, 100 - sign * sl_off
        self.both("oco", o, side, q, i + 300, tp, i + 400, sl, tp if tp_limit else 0, 0, stp)

    @rule(i=st.integers(1, 430))
    def cancel(self, i):
        self.both("cancel", i)

    @rule(i=ids, p=st.sampled_from([0, 0, 97, 100, 103, -5]), q=st.sampled_from([0, 0, 1, 3, 9, -1]))
    def amend(self, i, p, q):
        self.both("amend", i, p, q)

    @rule(o=owners)
    def mass_cancel(self, o):
        self.both("mass_cancel", o)

    @rule(dt=st.sampled_from([0, 1, 5, 20, -1]))
    def advance_time(self, dt):
        self.both("advance_time", max(0, self.ref.now + dt) if dt >= 0 else max(0, self.ref.now - 1))

    @rule(p=st.sampled_from([95, 97, 99, 100, 101, 103, 105, 0]))
    def observe_price(self, p):
        self.both("observe_price", p)

    @invariant()
    def same_state(self):
        assert self.fast.l3() == self.ref.l3()
        assert self.fast.pending() == self.ref.pending()
        assert (self.fast.best_bid, self.fast.best_ask, self.fast.last_price) == (
            self.ref.best_bid, self.ref.best_ask, self.ref.last_price)
        assert self.fast.depth(5) == self.ref.depth(5)
        assert len(self.fast) == len(self.ref)
        self.fast.check_invariants()


BookMachine.TestCase.settings = settings(max_examples=400, stateful_step_count=60, deadline=None)
TestBookAgainstReference = BookMachine.TestCase


# -- batch API ------------------------------------------------------------

record = st.fixed_dictionaries({
    "kind": st.sampled_from([CommandKind.SUBMIT] * 6 + [CommandKind.CANCEL] * 2 + [
        CommandKind.AMEND, CommandKind.MASS_CANCEL, CommandKind.ADVANCE_TIME, CommandKind.OBSERVE_PRICE,
        CommandKind.BRACKET, CommandKind.OCO, 9]),
    "side": st.sampled_from([0, 1, 0, 1, 3]),
    "order_type": st.sampled_from([0, 0, 0, 1, 2, 3, 4, 5, 6, 8]),
    "tif": st.sampled_from([0, 0, 1, 2, 3]),
    "stp": st.integers(0, 4),
    "flags": st.sampled_from([0, 0, 1, 2, 4]),
    "order_id": st.integers(0, 20),
    "owner": st.integers(1, 3),
    "price": st.integers(97, 103) | st.just(0),
    "qty": st.integers(1, 6) | st.just(0),
    "trigger_price": st.just(0) | st.integers(97, 103),
    "display_qty": st.sampled_from([0, 0, 1]),
    "expire_ts": st.sampled_from([0, 0, 5, 50]),
    "tp_id": st.integers(21, 40), "tp_trigger": st.integers(95, 106), "tp_price": st.sampled_from([0, 104]),
    "sl_id": st.integers(41, 60), "sl_trigger": st.integers(95, 106), "sl_price": st.sampled_from([0, 96]),
})


def to_array(records) -> np.ndarray:
    arr = np.zeros(len(records), COMMAND_DTYPE)
    for i, r in enumerate(records):
        for k, v in r.items():
            arr[i][k] = v
    return arr


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(record, min_size=1, max_size=80))
def test_batch_api_matches_the_reference(records):
    arr = to_array(records)
    fast = lxdex.Book().process(arr)
    ref = RefBook().process_commands(arr)
    fields = ["kind", "reason", "side", "order_type", "order_id", "owner", "other_id", "other_owner",
              "price", "qty", "remaining", "other_remaining"]
    got = [tuple(int(e[f]) for f in fields) for e in fast]
    assert got == [e.astuple() for e in ref]


def per_call(book, r) -> list[tuple]:
    """One record through the per-call API, as event tuples (a rejection as
    the REJECTED tuple the batch API would give)."""
    kind, g = int(r["kind"]), lambda k: int(r[k])
    try:
        if kind == CommandKind.SUBMIT:
            events = book.submit(g("order_id"), g("owner"), g("side"), g("qty"), g("price"), g("order_type"),
                                 g("tif"), g("stp"), bool(g("flags") & 1), g("display_qty"), g("trigger_price"),
                                 bool(g("flags") & 2), g("expire_ts"))
        elif kind == CommandKind.CANCEL:
            events = book.cancel(g("order_id"))
        elif kind == CommandKind.AMEND:
            events = book.amend(g("order_id"), g("price"), g("qty"))
        elif kind == CommandKind.MASS_CANCEL:
            events = book.mass_cancel(g("owner"))
        elif kind == CommandKind.ADVANCE_TIME:
            events = book.advance_time(g("expire_ts"))
        elif kind == CommandKind.OBSERVE_PRICE:
            events = book.observe_price(g("price"))
        else:
            return None  # brackets/OCO need flags the per-call API spells differently
    except lxdex.OrderRejected as e:
        return [("rejected", int(e.reason))]
    return [e.astuple() for e in events]


@settings(max_examples=100, deadline=None)
@given(st.lists(record, min_size=1, max_size=60))
def test_batch_and_per_call_apis_agree(records):
    records = [r for r in records if r["kind"] in (0, 1, 2, 3, 4, 5) and not r["flags"] & 4]
    arr = to_array(records)
    batch = lxdex.Book().process(arr)
    book = lxdex.Book()
    fields = ["kind", "reason", "side", "order_type", "order_id", "owner", "other_id", "other_owner",
              "price", "qty", "remaining", "other_remaining"]
    for i, r in enumerate(arr):
        mine = [e for e in batch if e["cmd_index"] == i]
        calls = per_call(book, r)
        if calls and calls[0][0] == "rejected":
            assert len(mine) == 1 and mine[0]["kind"] == 1 and mine[0]["reason"] == calls[0][1]
        else:
            assert [tuple(int(e[f]) for f in fields) for e in mine] == calls


DETERMINISM_SCRIPT = """
import sys, numpy as np, lxdex
arr = np.frombuffer(sys.stdin.buffer.read(), dtype=lxdex.COMMAND_DTYPE)
sys.stdout.buffer.write(lxdex.Book().process(arr).tobytes())
"""


def test_event_stream_is_byte_identical_across_runs_and_processes():
    rng = np.random.default_rng(11)
    n = 20_000
    arr = np.zeros(n, COMMAND_DTYPE)
    arr["kind"] = rng.choice([0, 0, 0, 1, 2], n)
    arr["side"] = rng.integers(0, 2, n)
    arr["order_id"] = rng.integers(1, 2_000, n)
    arr["owner"] = rng.integers(1, 50, n)
    arr["price"] = rng.integers(990, 1010, n)
    arr["qty"] = rng.integers(1, 20, n)
    arr["stp"] = rng.integers(0, 5, n)
    arr["tif"] = rng.choice([0, 0, 1, 2], n)
    first = lxdex.Book().process(arr).tobytes()
    assert lxdex.Book().process(arr).tobytes() == first
    out = subprocess.run([sys.executable, "-c", DETERMINISM_SCRIPT], input=arr.tobytes(),
                         capture_output=True, check=True).stdout
    assert out == first
    assert len(first) > 80 * n  # it did real work: more events than commands
