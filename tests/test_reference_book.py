"""Things only the reference book (tests/reference/book.py) has or promises:
its exception and event types, its internal counters, the batch entry point
against its own per-call API. The behaviour shared with the fast book is in
test_book_scenarios.py, which runs against both."""

from __future__ import annotations

import dataclasses
import pathlib
import random

import numpy as np
import pytest

from lxdex.enums import COMMAND_DTYPE, CommandKind, EventKind, OrderType, Reason, Side, Stp, TimeInForce

from tests.book_events import B, S, SM, commands, rejected, state, tuples
from tests.reference.book import Book, Event, Rejected


def test_event_defaults_and_astuple_order():
    e = Event(kind=EventKind.FILL, order_id=3, price=100, other_remaining=7)
    assert e.astuple() == (EventKind.FILL, 0, 0, 0, 3, 0, 0, 0, 100, 0, 0, 7)
    assert [f.name for f in dataclasses.fields(Event)] == [
        "kind", "reason", "side", "order_type", "order_id", "owner", "other_id", "other_owner", "price", "qty",
        "remaining", "other_remaining"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.qty = 1  # type: ignore[misc]


def test_rejected_says_which_field_and_why():
    book = Book(tick_size=5)
    with pytest.raises(Rejected) as info:
        book.submit(1, 1, 7, 1, 100)
    assert info.value.reason is Reason.INVALID_SIDE and "side 7" in str(info.value)
    with pytest.raises(Rejected) as info:
        book.submit(1, 1, Side.BUY, 1, 101)
    assert info.value.reason is Reason.OFF_TICK_GRID and "price 101" in str(info.value)
    with pytest.raises(Rejected) as info:
        book.amend(9, qty=1)
    assert info.value.reason is Reason.UNKNOWN_ORDER and "9" in str(info.value)


def test_bad_book_parameters():
    with pytest.raises(ValueError):
        Book(tick_size=0)
    with pytest.raises(ValueError):
        Book(lot_size=0)


def test_seq_numbers_brackets_take_three_oco_two_rejections_none():
    book = Book()
    book.submit(1, 1, B, 1, 100)
    assert book._next_seq == 2
    book.submit(2, 1, B, 1, 101, post_only=True, tif=TimeInForce.GTC)  # accepted (rests)
    book.submit(3, 1, B, 5, 99, tif=TimeInForce.FOK)  # accepted, then killed: still a seq
    assert book._next_seq == 4
    book.bracket(4, 1, B, 1, 98, 5, 110, 6, 90)
    assert book._next_seq == 7
    book.oco(1, S, 1, 7, 120, 8, 80)
    assert book._next_seq == 9
    with pytest.raises(Rejected):
        book.bracket(9, 1, B, 1, 98, 10, 90, 11, 110)
    with pytest.raises(Rejected):
        book.oco(1, S, 1, 12, 80, 13, 120)
    assert book._next_seq == 9
    assert sorted(o.seq for o in book.resting + book.conditionals) == [1, 2, 4, 5, 6, 7, 8]


def test_rejection_changes_nothing_inside():
    book = Book()
    book.submit(1, 1, S, 5, 101)
    book.submit(2, 2, B, 2, order_type=SM, tif=TimeInForce.IOC, trigger_price=90)
    book.bracket(3, 1, B, 2, 100, 4, 110, 5, 90)
    before = (state(book), book._next_seq, book._next_queue_pos, [o.seq for o in book.conditionals])
    for call in (lambda: book.submit(6, 1, S, 1, 101, stp=9),
                 lambda: book.bracket(6, 1, B, 1, 100, 4, 110, 7, 90),
                 lambda: book.oco(1, S, 1, 7, 90, 8, 110),
                 lambda: book.amend(2, qty=1),
                 lambda: book.cancel(77),
                 lambda: book.advance_time(-1),
                 lambda: book.observe_price(0)):
        with pytest.raises(Rejected):
            call()
        assert (state(book), book._next_seq, book._next_queue_pos, [o.seq for o in book.conditionals]) == before


def test_order_lookup():
    book = Book()
    book.submit(1, 1, S, 5, 101, display_qty=2)
    o = book.order(1)
    assert (o.order_id, o.visible, o.qty, o.display_qty) == (1, 2, 5, 2)
    assert book.order(2) is None


def test_reused_id_is_not_confused_with_the_old_bracket_entry():
    """A bracket's entry leaves (filled); its id is reused by a new resting
    order; when a child triggers, the new order must not be cancelled as the
    entry."""
    book = Book()
    book.bracket(1, 7, B, 2, 100, 2, 110, 3, 90)
    book.submit(10, 8, S, 2, 100)  # fills the entry completely
    book.submit(1, 7, B, 1, 95)  # a new, unrelated order 1
    events = book.observe_price(110)
    assert [(e.kind, e.order_id) for e in events] == [
        (EventKind.TRIGGERED, 2), (EventKind.CANCELLED, 3), (EventKind.FILL, 2), (EventKind.CANCELLED, 2)]
    assert book.l3() == []  # order 1 was the only bid: the take-profit sold into it ...
    assert events[2].other_id == 1 and events[2].qty == 1


def test_the_source_is_plain_python():
    source = (pathlib.Path(__file__).parent / "reference" / "book.py").read_text()
    assert "numpy" not in source


def random_records(seed: int, n: int) -> np.ndarray:
    rng = random.Random(seed)
    arr = np.zeros(n, COMMAND_DTYPE)
    clock = 0
    for r in arr:
        r["kind"] = rng.choice([0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8])
        r["side"] = rng.choice([0, 1, 0, 1, 2])
        r["order_type"] = rng.choice([0, 0, 0, 1, 2, 3, 4, 5, 6])
        r["tif"] = rng.choice([0, 0, 1, 2, 3])
        r["stp"] = rng.randint(0, 4)
        r["flags"] = rng.choice([0, 0, 0, 1, 2, 4])
        r["order_id"] = rng.randint(0, 25)
        r["owner"] = rng.randint(1, 3)
        r["price"] = rng.choice([0, 97, 98, 99, 100, 101, 102, 103])
        r["qty"] = rng.choice([1, 2, 3, 5, 0])
        r["trigger_price"] = rng.choice([0, 0, 2, 98, 100, 102])
        r["display_qty"] = rng.choice([0, 0, 0, 1])
        r["expire_ts"] = rng.choice([0, 0, 3, 8])
        r["tp_id"], r["sl_id"] = rng.randint(26, 40), rng.randint(41, 55)
        r["tp_trigger"], r["sl_trigger"] = rng.randint(95, 106), rng.randint(95, 106)
        r["tp_price"], r["sl_price"] = rng.choice([0, 104]), rng.choice([0, 96])
        if rng.random() < 0.7:  # mostly sensible orders, so that there is trading
            market = r["order_type"] in (1, 2, 4, 6)
            if market:
                r["tif"] = rng.choice([1, 1, 2])
                r["price"] = rng.choice([0, 0, 99, 101])
            else:
                r["price"] = rng.randint(97, 103)
                if r["tif"] != 3:
                    r["expire_ts"] = 0
            if r["order_type"] in (0, 1):
                r["trigger_price"] = 0
            elif r["trigger_price"] == 0:
                r["trigger_price"] = rng.randint(97, 103)
            r["flags"] &= 2 if r["order_type"] == 6 else 1
            r["side"] &= 1
            r["qty"] = rng.randint(1, 5)
            if r["display_qty"] >= r["qty"]:
                r["display_qty"] = 0
            if r["tif"] == 3:
                r["expire_ts"] = clock + rng.randint(1, 6)
        if r["kind"] == CommandKind.ADVANCE_TIME:
            r["expire_ts"] = max(0, clock + rng.choice([-1, 0, 1, 2, 3]))
            clock = max(clock, int(r["expire_ts"]))
    return arr


def per_call(book: Book, r) -> list[tuple]:
    """One record through the per-call API; a rejection as its REJECTED tuple."""
    g = lambda k: int(r[k])  # noqa: E731
    kind = g("kind")
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
        elif kind == CommandKind.BRACKET:
            events = book.bracket(g("order_id"), g("owner"), g("side"), g("qty"), g("price"), g("tp_id"),
                                  g("tp_trigger"), g("sl_id"), g("sl_trigger"), g("tp_price"), g("sl_price"),
                                  g("tif"), g("stp"), bool(g("flags") & 1), g("expire_ts"))
        elif kind == CommandKind.OCO:
            events = book.oco(g("owner"), g("side"), g("qty"), g("tp_id"), g("tp_trigger"), g("sl_id"),
                              g("sl_trigger"), g("tp_price"), g("sl_price"), g("stp"))
        else:
            return [rejected(g("order_id"), g("owner"), Reason.INVALID_COMMAND)]
    except Rejected as e:
        oid = {CommandKind.CANCEL: g("order_id"), CommandKind.AMEND: g("order_id"), CommandKind.OCO: g("tp_id"),
               CommandKind.SUBMIT: g("order_id"), CommandKind.BRACKET: g("order_id")}.get(kind, 0)
        owner = g("owner") if kind in (CommandKind.SUBMIT, CommandKind.BRACKET, CommandKind.OCO,
                                        CommandKind.MASS_CANCEL) else 0
        return [rejected(oid, owner, e.reason)]
    return tuples(events)


@pytest.mark.parametrize("seed", range(8))
def test_process_commands_equals_the_per_call_api(seed):
    arr = random_records(seed, 300)
    arr["flags"] &= 3  # the per-call API has no way to send unknown flag bits
    batch = tuples(Book().process_commands(arr))
    book = Book()
    calls = [t for r in arr for t in per_call(book, r)]
    assert batch == calls
    assert any(t[0] == EventKind.FILL for t in batch) and any(t[0] == EventKind.REJECTED for t in batch)


def test_process_commands_takes_dicts_too():
    arr = commands(dict(kind=CommandKind.SUBMIT, order_id=1, owner=1, side=1, qty=2, price=100),
                   dict(kind=CommandKind.SUBMIT, order_id=2, owner=2, side=0, qty=1, price=100))
    as_dicts = [{name: arr[i][name] for name in COMMAND_DTYPE.names} for i in range(len(arr))]
    assert tuples(Book().process_commands(as_dicts)) == tuples(Book().process_commands(arr))


def test_enum_members_and_plain_ints_are_the_same_input():
    a, b = Book(), Book()
    a.submit(1, 1, Side.SELL, 3, 100, OrderType.LIMIT, TimeInForce.GTC, Stp.NONE)
    b.submit(1, 1, 1, 3, 100, 0, 0, 0)
    assert a.l3() == b.l3()
