"""Hand-checked scenarios of docs/engine.md, each run against both books: the
reference (tests/reference/book.py) and the fast Rust book (lxdex.Book).
Every expected event tuple was worked out from the spec by hand."""

from __future__ import annotations

import pytest

from lxdex.enums import MAX_PRICE, MAX_QTY, CommandKind, Flags, Reason, Stp

from tests.book_events import (
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
    B,
    S,
    accepted,
    activated,
    amended,
    cancelled,
    commands,
    fill,
    rejected,
    rejects,
    run_batch,
    state,
    triggered,
    tuples,
)


@pytest.fixture(params=["reference", "fast"])
def make_book(request):
    """A factory of empty books of one implementation: make_book(tick_size, lot_size)."""
    if request.param == "reference":
        from tests.reference.book import Book
    else:
        try:
            import lxdex._core  # noqa: F401
        except ImportError as e:
            pytest.skip(f"the fast book lxdex._core is not built (run `make build`): {e}")
        from lxdex import Book
    return lambda tick_size=1, lot_size=1: Book(tick_size, lot_size)


@pytest.fixture
def book(make_book):
    return make_book()


# ---------------------------------------------------------------------------
# limit orders, priority, queries
# ---------------------------------------------------------------------------

def test_limit_orders_rest_and_trade_at_the_makers_price(book):
    assert tuples(book.submit(1, 10, S, 5, 101)) == [accepted(1, 10, S, LIM, 101, 5)]
    assert tuples(book.submit(2, 11, S, 3, 100)) == [accepted(2, 11, S, LIM, 100, 3)]
    assert (book.best_bid, book.best_ask, book.last_price, len(book)) == (None, 100, None, 2)
    assert tuples(book.submit(3, 12, B, 6, 102)) == [
        accepted(3, 12, B, LIM, 102, 6),
        fill(3, 12, B, LIM, 2, 11, 100, 3, 3, 0),
        fill(3, 12, B, LIM, 1, 10, 101, 3, 0, 2),
    ]
    assert book.l3() == [(1, 10, S, 101, 2, 0)]
    assert book.depth(5) == ([], [(101, 2, 1)])
    assert (book.best_bid, book.best_ask, book.last_price, len(book)) == (None, 101, 101, 1)


def test_price_time_priority_depth_and_l3(book):
    book.submit(1, 1, B, 2, 99)
    book.submit(2, 2, B, 3, 100)
    book.submit(3, 3, B, 4, 100)
    book.submit(4, 1, S, 5, 102)
    book.submit(5, 2, S, 1, 101)
    assert book.l3() == [(2, 2, B, 100, 3, 0), (3, 3, B, 100, 4, 0), (1, 1, B, 99, 2, 0),
                         (5, 2, S, 101, 1, 0), (4, 1, S, 102, 5, 0)]
    assert book.depth(5) == ([(100, 7, 2), (99, 2, 1)], [(101, 1, 1), (102, 5, 1)])
    assert book.depth(1) == ([(100, 7, 2)], [(101, 1, 1)])
    assert (book.volume_at(B, 100), book.volume_at(B, 99), book.volume_at(S, 103)) == (7, 2, 0)
    assert tuples(book.submit(6, 4, S, 4, 99)) == [
        accepted(6, 4, S, LIM, 99, 4),
        fill(6, 4, S, LIM, 2, 2, 100, 3, 1, 0),
        fill(6, 4, S, LIM, 3, 3, 100, 1, 0, 3),
    ]
    assert book.l3()[:2] == [(3, 3, B, 100, 3, 0), (1, 1, B, 99, 2, 0)]


def test_gtc_remainder_rests_at_the_back_of_its_level(book):
    book.submit(1, 1, S, 4, 100)
    assert tuples(book.submit(2, 2, B, 10, 100)) == [accepted(2, 2, B, LIM, 100, 10),
                                                     fill(2, 2, B, LIM, 1, 1, 100, 4, 6, 0)]
    book.submit(3, 3, B, 1, 100)
    assert book.l3() == [(2, 2, B, 100, 6, 0), (3, 3, B, 100, 1, 0)]


def test_order_ids_can_be_reused_once_the_order_left(book):
    book.submit(1, 1, S, 2, 100)
    rejects(lambda: book.submit(1, 1, S, 2, 100), Reason.DUPLICATE_ID)
    book.submit(2, 2, B, 2, 100)  # fills 1 completely
    assert tuples(book.submit(1, 1, S, 2, 101)) == [accepted(1, 1, S, LIM, 101, 2)]
    book.cancel(1)
    assert tuples(book.submit(1, 1, B, 2, 99)) == [accepted(1, 1, B, LIM, 99, 2)]


# ---------------------------------------------------------------------------
# time in force
# ---------------------------------------------------------------------------

def test_ioc_cancels_the_remainder(book):
    book.submit(1, 1, S, 3, 100)
    assert tuples(book.submit(2, 2, B, 5, 101, tif=IOC)) == [
        accepted(2, 2, B, LIM, 101, 5),
        fill(2, 2, B, LIM, 1, 1, 100, 3, 2, 0),
        cancelled(2, 2, B, LIM, 101, 2, Reason.IOC),
    ]
    assert tuples(book.submit(3, 2, B, 5, 99, tif=IOC)) == [
        accepted(3, 2, B, LIM, 99, 5), cancelled(3, 2, B, LIM, 99, 5, Reason.IOC)]
    assert len(book) == 0


def test_fok_fills_completely_or_does_nothing(book):
    book.submit(1, 1, S, 3, 100)
    book.submit(2, 1, S, 2, 101)
    before = state(book)
    assert tuples(book.submit(3, 2, B, 6, 101, tif=FOK)) == [
        accepted(3, 2, B, LIM, 101, 6), cancelled(3, 2, B, LIM, 101, 6, Reason.FOK)]
    assert tuples(book.submit(4, 2, B, 5, 100, tif=FOK)) == [
        accepted(4, 2, B, LIM, 100, 5), cancelled(4, 2, B, LIM, 100, 5, Reason.FOK)]
    assert state(book) == before
    assert tuples(book.submit(5, 2, B, 5, 101, tif=FOK)) == [
        accepted(5, 2, B, LIM, 101, 5),
        fill(5, 2, B, LIM, 1, 1, 100, 3, 2, 0),
        fill(5, 2, B, LIM, 2, 1, 101, 2, 0, 0),
    ]
    assert len(book) == 0 and book.last_price == 101


def test_fok_with_self_trade_prevention_is_atomic(book):
    book.submit(1, 10, S, 2, 100)
    book.submit(2, 11, S, 5, 101)
    before = state(book)
    # the own order would stop the taker (or eat into it): no full fill by trades
    for oid, stp in ((3, Stp.CANCEL_TAKER), (4, Stp.DECREMENT), (5, Stp.CANCEL_BOTH)):
        assert tuples(book.submit(oid, 10, B, 3, 101, tif=FOK, stp=stp)) == [
            accepted(oid, 10, B, LIM, 101, 3), cancelled(oid, 10, B, LIM, 101, 3, Reason.FOK)]
        assert state(book) == before
    # cancel-maker, but the others' 5 are not enough for 6: the own maker stays
    assert tuples(book.submit(6, 10, B, 6, 101, tif=FOK, stp=Stp.CANCEL_MAKER)) == [
        accepted(6, 10, B, LIM, 101, 6), cancelled(6, 10, B, LIM, 101, 6, Reason.FOK)]
    assert state(book) == before
    # cancel-maker and enough: the own maker goes, the rest trades
    assert tuples(book.submit(7, 10, B, 3, 101, tif=FOK, stp=Stp.CANCEL_MAKER)) == [
        accepted(7, 10, B, LIM, 101, 3),
        cancelled(1, 10, S, LIM, 100, 2, Reason.STP),
        fill(7, 10, B, LIM, 2, 11, 101, 3, 0, 2),
    ]
    assert book.l3() == [(2, 11, S, 101, 2, 0)]


def test_fok_kill_leaves_last_price_and_trailing_references_alone(book):
    book.submit(1, 1, S, 1, 100)
    book.submit(2, 1, S, 5, 110)
    book.observe_price(105)
    book.submit(3, 2, S, 1, order_type=TS, tif=IOC, trigger_price=5)
    book.submit(4, 2, B, 1, order_type=TS, tif=IOC, trigger_price=5)
    assert book.pending() == [(3, 2, S, TS, 100, 0, 1, True), (4, 2, B, TS, 110, 0, 1, True)]
    before = state(book)
    assert tuples(book.submit(5, 3, B, 7, 110, tif=FOK)) == [
        accepted(5, 3, B, LIM, 110, 7), cancelled(5, 3, B, LIM, 110, 7, Reason.FOK)]
    assert state(book) == before


def test_fok_counts_iceberg_hidden_quantity(book):
    book.submit(1, 1, S, 10, 100, display_qty=2)
    book.submit(2, 2, S, 3, 100)
    assert tuples(book.submit(3, 3, B, 6, 100, tif=FOK)) == [
        accepted(3, 3, B, LIM, 100, 6),
        fill(3, 3, B, LIM, 1, 1, 100, 2, 4, 8),  # 1 refills and goes behind 2
        fill(3, 3, B, LIM, 2, 2, 100, 3, 1, 0),
        fill(3, 3, B, LIM, 1, 1, 100, 1, 0, 7),
    ]
    assert book.l3() == [(1, 1, S, 100, 1, 6)]
    assert tuples(book.submit(4, 3, B, 8, 100, tif=FOK)) == [
        accepted(4, 3, B, LIM, 100, 8), cancelled(4, 3, B, LIM, 100, 8, Reason.FOK)]
    assert tuples(book.submit(5, 3, B, 7, 100, tif=FOK)) == [
        accepted(5, 3, B, LIM, 100, 7),
        fill(5, 3, B, LIM, 1, 1, 100, 1, 6, 6),
        fill(5, 3, B, LIM, 1, 1, 100, 2, 4, 4),
        fill(5, 3, B, LIM, 1, 1, 100, 2, 2, 2),
        fill(5, 3, B, LIM, 1, 1, 100, 2, 0, 0),
    ]
    assert len(book) == 0


def test_gtd_orders_expire_in_expiry_then_seq_order(book):
    book.submit(1, 1, B, 1, 100, tif=GTD, expire_ts=20)
    book.submit(2, 1, B, 1, 99, tif=GTD, expire_ts=10)
    book.submit(3, 2, S, 1, 105, tif=GTD, expire_ts=10)
    book.submit(4, 2, S, 1, 106)
    book.submit(5, 3, B, 1, 111, order_type=SLM, tif=GTD, trigger_price=110, expire_ts=15)
    assert tuples(book.advance_time(9)) == [] and book.now == 9
    assert tuples(book.advance_time(10)) == [
        cancelled(2, 1, B, LIM, 99, 1, Reason.EXPIRED),
        cancelled(3, 2, S, LIM, 105, 1, Reason.EXPIRED),
    ]
    assert tuples(book.advance_time(25)) == [
        cancelled(5, 3, B, SLM, 111, 1, Reason.EXPIRED),
        cancelled(1, 1, B, LIM, 100, 1, Reason.EXPIRED),
    ]
    assert book.l3() == [(4, 2, S, 106, 1, 0)] and book.pending() == [] and book.now == 25
    rejects(lambda: book.advance_time(24), Reason.INVALID_TIME)
    assert tuples(book.advance_time(25)) == []
    rejects(lambda: book.submit(6, 1, B, 1, 100, tif=GTD, expire_ts=25), Reason.INVALID_EXPIRY)
    assert tuples(book.submit(6, 1, B, 1, 100, tif=GTD, expire_ts=26)) == [accepted(6, 1, B, LIM, 100, 1)]


def test_post_only(book):
    book.submit(1, 1, S, 5, 101)
    assert tuples(book.submit(2, 2, B, 3, 101, post_only=True)) == [
        accepted(2, 2, B, LIM, 101, 3), cancelled(2, 2, B, LIM, 101, 3, Reason.POST_ONLY)]
    assert tuples(book.submit(3, 2, B, 3, 100, post_only=True)) == [accepted(3, 2, B, LIM, 100, 3)]
    assert tuples(book.submit(4, 1, S, 2, 100, post_only=True)) == [
        accepted(4, 1, S, LIM, 100, 2), cancelled(4, 1, S, LIM, 100, 2, Reason.POST_ONLY)]
    assert tuples(book.submit(5, 1, S, 2, 102, post_only=True, tif=GTD, expire_ts=5)) == [
        accepted(5, 1, S, LIM, 102, 2)]
    before = state(book)
    rejects(lambda: book.amend(3, price=101), Reason.WOULD_TAKE)
    rejects(lambda: book.amend(5, price=100, qty=1), Reason.WOULD_TAKE)
    assert state(book) == before
    assert tuples(book.amend(3, qty=5)) == [amended(3, 2, B, LIM, 100, 5)]
    assert book.l3() == [(3, 2, B, 100, 5, 0), (1, 1, S, 101, 5, 0), (5, 1, S, 102, 2, 0)]


# ---------------------------------------------------------------------------
# market orders
# ---------------------------------------------------------------------------

def test_market_order_remainder_is_cancelled(book):
    book.submit(1, 1, S, 3, 100)
    book.submit(2, 1, S, 2, 102)
    assert tuples(book.submit(3, 2, B, 10, order_type=MKT, tif=IOC)) == [
        accepted(3, 2, B, MKT, 0, 10),
        fill(3, 2, B, MKT, 1, 1, 100, 3, 7, 0),
        fill(3, 2, B, MKT, 2, 1, 102, 2, 5, 0),
        cancelled(3, 2, B, MKT, 0, 5, Reason.MARKET_REMAINDER),
    ]
    assert tuples(book.submit(4, 2, S, 1, order_type=MKT, tif=IOC)) == [
        accepted(4, 2, S, MKT, 0, 1), cancelled(4, 2, S, MKT, 0, 1, Reason.MARKET_REMAINDER)]


def test_market_protection_price(book):
    book.submit(1, 1, S, 3, 100)
    book.submit(2, 1, S, 2, 102)
    assert tuples(book.submit(3, 2, B, 10, 101, order_type=MKT, tif=IOC)) == [
        accepted(3, 2, B, MKT, 0, 10),
        fill(3, 2, B, MKT, 1, 1, 100, 3, 7, 0),
        cancelled(3, 2, B, MKT, 0, 7, Reason.MARKET_REMAINDER),
    ]
    assert book.l3() == [(2, 1, S, 102, 2, 0)]
    book.submit(4, 3, B, 3, 100)
    book.submit(5, 3, B, 2, 98)
    assert tuples(book.submit(6, 2, S, 4, 99, order_type=MKT, tif=IOC)) == [
        accepted(6, 2, S, MKT, 0, 4),
        fill(6, 2, S, MKT, 4, 3, 100, 3, 1, 0),
        cancelled(6, 2, S, MKT, 0, 1, Reason.MARKET_REMAINDER),
    ]
    # the protection price itself may trade
    assert tuples(book.submit(7, 2, S, 1, 98, order_type=MKT, tif=IOC)) == [
        accepted(7, 2, S, MKT, 0, 1), fill(7, 2, S, MKT, 5, 3, 98, 1, 0, 1)]


def test_market_fok(book):
    book.submit(1, 1, S, 3, 100)
    assert tuples(book.submit(2, 2, B, 4, order_type=MKT, tif=FOK)) == [
        accepted(2, 2, B, MKT, 0, 4), cancelled(2, 2, B, MKT, 0, 4, Reason.FOK)]
    assert tuples(book.submit(3, 2, B, 3, order_type=MKT, tif=FOK)) == [
        accepted(3, 2, B, MKT, 0, 3), fill(3, 2, B, MKT, 1, 1, 100, 3, 0, 0)]


# ---------------------------------------------------------------------------
# self-trade prevention
# ---------------------------------------------------------------------------

def test_stp_none_allows_self_trades(book):
    book.submit(1, 10, S, 2, 100)
    assert tuples(book.submit(2, 10, B, 2, 100)) == [
        accepted(2, 10, B, LIM, 100, 2), fill(2, 10, B, LIM, 1, 10, 100, 2, 0, 0)]


def test_stp_cancel_taker(book):
    book.submit(1, 11, S, 2, 100)
    book.submit(2, 10, S, 3, 100)
    book.submit(4, 11, S, 1, 100)
    assert tuples(book.submit(3, 10, B, 5, 100, stp=Stp.CANCEL_TAKER)) == [
        accepted(3, 10, B, LIM, 100, 5),
        fill(3, 10, B, LIM, 1, 11, 100, 2, 3, 0),
        cancelled(3, 10, B, LIM, 100, 3, Reason.STP),
    ]
    assert book.l3() == [(2, 10, S, 100, 3, 0), (4, 11, S, 100, 1, 0)]
    assert tuples(book.submit(5, 10, B, 3, order_type=MKT, tif=IOC, stp=Stp.CANCEL_TAKER)) == [
        accepted(5, 10, B, MKT, 0, 3), cancelled(5, 10, B, MKT, 0, 3, Reason.STP)]


def test_stp_cancel_maker(book):
    book.submit(1, 10, S, 2, 100)
    book.submit(2, 11, S, 3, 100)
    assert tuples(book.submit(3, 10, B, 4, 100, stp=Stp.CANCEL_MAKER)) == [
        accepted(3, 10, B, LIM, 100, 4),
        cancelled(1, 10, S, LIM, 100, 2, Reason.STP),
        fill(3, 10, B, LIM, 2, 11, 100, 3, 1, 0),
    ]
    assert book.l3() == [(3, 10, B, 100, 1, 0)]
    # an iceberg maker is cancelled whole (visible + hidden)
    book.submit(4, 11, S, 6, 101, display_qty=2)
    assert tuples(book.submit(5, 11, B, 1, 101, stp=Stp.CANCEL_MAKER)) == [
        accepted(5, 11, B, LIM, 101, 1),
        cancelled(4, 11, S, LIM, 101, 6, Reason.STP),
    ]
    assert book.l3() == [(5, 11, B, 101, 1, 0), (3, 10, B, 100, 1, 0)]


def test_stp_cancel_both(book):
    book.submit(1, 11, S, 1, 100)
    book.submit(2, 10, S, 2, 100)
    book.submit(4, 11, S, 5, 100)
    assert tuples(book.submit(3, 10, B, 4, 100, stp=Stp.CANCEL_BOTH)) == [
        accepted(3, 10, B, LIM, 100, 4),
        fill(3, 10, B, LIM, 1, 11, 100, 1, 3, 0),
        cancelled(2, 10, S, LIM, 100, 2, Reason.STP),
        cancelled(3, 10, B, LIM, 100, 3, Reason.STP),
    ]
    assert book.l3() == [(4, 11, S, 100, 5, 0)]


def test_stp_decrement(book):
    book.submit(1, 10, S, 5, 100)
    assert tuples(book.submit(2, 10, B, 3, 100, stp=Stp.DECREMENT)) == [
        accepted(2, 10, B, LIM, 100, 3),
        cancelled(1, 10, S, LIM, 100, 3, Reason.STP, remaining=2),
        cancelled(2, 10, B, LIM, 100, 3, Reason.STP, remaining=0),
    ]
    assert book.l3() == [(1, 10, S, 100, 2, 0)] and book.last_price is None


def test_stp_decrement_partial_then_trade_then_rest(book):
    book.submit(1, 10, S, 2, 100)
    book.submit(2, 11, S, 3, 100)
    assert tuples(book.submit(3, 10, B, 6, 101, stp=Stp.DECREMENT)) == [
        accepted(3, 10, B, LIM, 101, 6),
        cancelled(1, 10, S, LIM, 100, 2, Reason.STP, remaining=0),
        cancelled(3, 10, B, LIM, 101, 2, Reason.STP, remaining=4),
        fill(3, 10, B, LIM, 2, 11, 100, 3, 1, 0),
    ]
    assert book.l3() == [(3, 10, B, 101, 1, 0)]


def test_stp_decrement_iceberg_maker_refills_to_the_back(book):
    book.submit(1, 10, S, 6, 100, display_qty=2)
    book.submit(2, 11, S, 1, 100)
    assert tuples(book.submit(3, 10, B, 3, 100, stp=Stp.DECREMENT)) == [
        accepted(3, 10, B, LIM, 100, 3),
        cancelled(1, 10, S, LIM, 100, 2, Reason.STP, remaining=4),
        cancelled(3, 10, B, LIM, 100, 2, Reason.STP, remaining=1),
        fill(3, 10, B, LIM, 2, 11, 100, 1, 0, 0),
    ]
    assert book.l3() == [(1, 10, S, 100, 2, 2)]


# ---------------------------------------------------------------------------
# icebergs
# ---------------------------------------------------------------------------

def test_iceberg_refill_goes_to_the_back_of_the_queue(book):
    book.submit(1, 1, S, 10, 100, display_qty=2)
    book.submit(2, 2, S, 3, 100)
    assert book.l3() == [(1, 1, S, 100, 2, 8), (2, 2, S, 100, 3, 0)]
    assert book.depth(1) == ([], [(100, 5, 2)]) and book.volume_at(S, 100) == 5
    assert tuples(book.submit(3, 3, B, 2, 100)) == [accepted(3, 3, B, LIM, 100, 2),
                                                    fill(3, 3, B, LIM, 1, 1, 100, 2, 0, 8)]
    assert book.l3() == [(2, 2, S, 100, 3, 0), (1, 1, S, 100, 2, 6)]
    assert tuples(book.submit(4, 3, B, 4, 100)) == [
        accepted(4, 3, B, LIM, 100, 4),
        fill(4, 3, B, LIM, 2, 2, 100, 3, 1, 0),
        fill(4, 3, B, LIM, 1, 1, 100, 1, 0, 7),
    ]
    assert book.l3() == [(1, 1, S, 100, 1, 6)]


def test_iceberg_last_refill_is_what_is_left(book):
    book.submit(1, 1, S, 5, 100, display_qty=2)
    assert tuples(book.submit(2, 2, B, 4, 100)) == [
        accepted(2, 2, B, LIM, 100, 4),
        fill(2, 2, B, LIM, 1, 1, 100, 2, 2, 3),
        fill(2, 2, B, LIM, 1, 1, 100, 2, 0, 1),
    ]
    assert book.l3() == [(1, 1, S, 100, 1, 0)]


def test_iceberg_taker_matches_its_whole_quantity(book):
    book.submit(1, 1, S, 5, 100)
    assert tuples(book.submit(2, 2, B, 8, 100, display_qty=2)) == [
        accepted(2, 2, B, LIM, 100, 8), fill(2, 2, B, LIM, 1, 1, 100, 5, 3, 0)]
    assert book.l3() == [(2, 2, B, 100, 2, 1)]
    assert book.depth(1) == ([(100, 2, 1)], [])


# ---------------------------------------------------------------------------
# amend
# ---------------------------------------------------------------------------

def test_amend_keeps_or_loses_priority(book):
    book.submit(1, 1, B, 5, 100)
    book.submit(2, 2, B, 5, 100)
    assert tuples(book.amend(1, qty=3)) == [amended(1, 1, B, LIM, 100, 3)]
    assert book.l3() == [(1, 1, B, 100, 3, 0), (2, 2, B, 100, 5, 0)]
    assert tuples(book.amend(1, price=100)) == [amended(1, 1, B, LIM, 100, 3)]
    assert tuples(book.amend(1, price=100, qty=3)) == [amended(1, 1, B, LIM, 100, 3)]
    assert book.l3() == [(1, 1, B, 100, 3, 0), (2, 2, B, 100, 5, 0)]
    assert tuples(book.amend(1, qty=4)) == [amended(1, 1, B, LIM, 100, 4)]
    assert book.l3() == [(2, 2, B, 100, 5, 0), (1, 1, B, 100, 4, 0)]
    assert tuples(book.amend(2, price=99)) == [amended(2, 2, B, LIM, 99, 5)]
    assert tuples(book.amend(2, price=100)) == [amended(2, 2, B, LIM, 100, 5)]
    assert book.l3() == [(1, 1, B, 100, 4, 0), (2, 2, B, 100, 5, 0)]


def test_amend_that_crosses_trades_at_the_makers_prices(book):
    book.submit(5, 9, S, 3, 101)
    book.submit(6, 9, S, 3, 103)
    book.submit(1, 1, B, 5, 100)
    assert tuples(book.amend(1, price=102)) == [
        amended(1, 1, B, LIM, 102, 5), fill(1, 1, B, LIM, 5, 9, 101, 3, 2, 0)]
    assert book.l3() == [(1, 1, B, 102, 2, 0), (6, 9, S, 103, 3, 0)]
    assert tuples(book.amend(1, price=104, qty=4)) == [
        amended(1, 1, B, LIM, 104, 4), fill(1, 1, B, LIM, 6, 9, 103, 3, 1, 0)]
    assert book.l3() == [(1, 1, B, 104, 1, 0)] and book.last_price == 103


def test_amend_iceberg(book):
    book.submit(1, 1, S, 10, 100, display_qty=4)
    book.submit(2, 2, S, 1, 100)
    assert tuples(book.amend(1, qty=6)) == [amended(1, 1, S, LIM, 100, 6)]
    assert book.l3() == [(1, 1, S, 100, 4, 2), (2, 2, S, 100, 1, 0)]
    assert tuples(book.amend(1, qty=3)) == [amended(1, 1, S, LIM, 100, 3)]
    assert book.l3() == [(1, 1, S, 100, 3, 0), (2, 2, S, 100, 1, 0)]
    assert tuples(book.amend(1, qty=9)) == [amended(1, 1, S, LIM, 100, 9)]
    assert book.l3() == [(2, 2, S, 100, 1, 0), (1, 1, S, 100, 4, 5)]


def test_amend_reenters_with_its_own_stp(book):
    book.submit(1, 10, S, 2, 101)
    book.submit(2, 10, B, 3, 100, stp=Stp.CANCEL_TAKER)
    assert tuples(book.amend(2, price=101)) == [
        amended(2, 10, B, LIM, 101, 3), cancelled(2, 10, B, LIM, 101, 3, Reason.STP)]
    assert book.l3() == [(1, 10, S, 101, 2, 0)]


def test_amend_rejections(make_book):
    book = make_book(tick_size=5, lot_size=2)
    book.submit(1, 1, B, 4, 100)
    book.submit(2, 1, B, 4, 100, order_type=SLM, trigger_price=110)
    before = state(book)
    rejects(lambda: book.amend(99, price=105), Reason.UNKNOWN_ORDER)
    rejects(lambda: book.amend(2, price=105), Reason.NOT_AMENDABLE)
    rejects(lambda: book.amend(2), Reason.NOT_AMENDABLE)
    rejects(lambda: book.amend(1), Reason.INVALID_AMEND)
    rejects(lambda: book.amend(1, price=-5), Reason.INVALID_PRICE)
    rejects(lambda: book.amend(1, price=MAX_PRICE + 5), Reason.INVALID_PRICE)
    rejects(lambda: book.amend(1, price=101), Reason.OFF_TICK_GRID)
    rejects(lambda: book.amend(1, price=101, qty=3), Reason.OFF_TICK_GRID)
    rejects(lambda: book.amend(1, qty=-2), Reason.INVALID_QUANTITY)
    rejects(lambda: book.amend(1, qty=MAX_QTY + 2), Reason.INVALID_QUANTITY)
    rejects(lambda: book.amend(1, qty=3), Reason.OFF_LOT_GRID)
    assert state(book) == before


# ---------------------------------------------------------------------------
# stops, take-profits, trailing stops
# ---------------------------------------------------------------------------

def test_stop_market_triggered_by_a_fill(book):
    book.submit(1, 1, S, 2, 100)
    book.submit(2, 1, S, 5, 101)
    assert tuples(book.submit(3, 2, B, 3, order_type=SM, tif=IOC, trigger_price=100)) == [
        accepted(3, 2, B, SM, 0, 3)]
    assert book.pending() == [(3, 2, B, SM, 100, 0, 3, True)]
    assert book.depth(5) == ([], [(100, 2, 1), (101, 5, 1)]) and len(book) == 2
    assert tuples(book.submit(4, 3, B, 2, 100)) == [
        accepted(4, 3, B, LIM, 100, 2),
        fill(4, 3, B, LIM, 1, 1, 100, 2, 0, 0),
        triggered(3, 2, B, SM, 100, 3),
        fill(3, 2, B, MKT, 2, 1, 101, 3, 0, 2),
    ]
    assert book.pending() == [] and book.last_price == 101 and book.l3() == [(2, 1, S, 101, 2, 0)]


def test_stop_market_triggered_by_observe_price(book):
    book.submit(1, 1, B, 5, 95)
    book.submit(2, 2, S, 2, order_type=SM, tif=IOC, trigger_price=98)
    assert tuples(book.observe_price(99)) == [] and book.last_price == 99
    assert tuples(book.observe_price(98)) == [
        triggered(2, 2, S, SM, 98, 2), fill(2, 2, S, MKT, 1, 1, 95, 2, 0, 3)]
    assert book.last_price == 95


def test_stop_market_with_protection_price(book):
    book.submit(1, 1, S, 2, 100)
    book.submit(2, 1, S, 2, 103)
    assert tuples(book.submit(3, 2, B, 4, 102, order_type=SM, tif=IOC, trigger_price=100)) == [
        accepted(3, 2, B, SM, 0, 4)]
    assert book.pending() == [(3, 2, B, SM, 100, 0, 4, True)]  # market-type: price 0, as in events
    assert tuples(book.observe_price(100)) == [
        triggered(3, 2, B, SM, 100, 4),
        fill(3, 2, B, MKT, 1, 1, 100, 2, 2, 0),
        cancelled(3, 2, B, MKT, 0, 2, Reason.MARKET_REMAINDER),
    ]


def test_stop_limit_rests_as_a_limit_order_iceberg_kept(book):
    assert tuples(book.submit(1, 2, B, 3, 99, order_type=SLM, trigger_price=100, display_qty=1)) == [
        accepted(1, 2, B, SLM, 99, 3)]
    assert book.pending() == [(1, 2, B, SLM, 100, 99, 3, True)]
    assert tuples(book.observe_price(100)) == [triggered(1, 2, B, SLM, 100, 3)]
    assert book.l3() == [(1, 2, B, 99, 1, 2)] and book.pending() == []
    assert tuples(book.cancel(1)) == [cancelled(1, 2, B, LIM, 99, 3, Reason.USER)]


def test_stop_limit_ioc_and_fok_after_triggering(book):
    book.submit(1, 1, S, 1, 101)
    book.submit(2, 2, B, 3, 101, order_type=SLM, tif=FOK, trigger_price=100)
    book.submit(3, 2, B, 3, 101, order_type=SLM, tif=IOC, trigger_price=100)
    assert tuples(book.observe_price(100)) == [
        triggered(2, 2, B, SLM, 100, 3),
        cancelled(2, 2, B, LIM, 101, 3, Reason.FOK),
        triggered(3, 2, B, SLM, 100, 3),
        fill(3, 2, B, LIM, 1, 1, 101, 1, 2, 0),
        cancelled(3, 2, B, LIM, 101, 2, Reason.IOC),
    ]


def test_conditional_triggers_at_placement_when_last_price_already_satisfies_it(book):
    book.submit(1, 1, S, 5, 106)
    book.observe_price(105)
    assert tuples(book.submit(2, 2, B, 2, order_type=SM, tif=IOC, trigger_price=100)) == [
        accepted(2, 2, B, SM, 0, 2),
        triggered(2, 2, B, SM, 105, 2),
        fill(2, 2, B, MKT, 1, 1, 106, 2, 0, 3),
    ]
    # the last price is now 106: a stop at 107 waits
    assert tuples(book.submit(3, 2, B, 2, order_type=SM, tif=IOC, trigger_price=107)) == [
        accepted(3, 2, B, SM, 0, 2)]
    assert book.pending() == [(3, 2, B, SM, 107, 0, 2, True)]


def test_take_profit_orders(book):
    book.submit(1, 1, B, 5, 100)
    book.submit(2, 2, S, 3, order_type=TPM, tif=IOC, trigger_price=105)  # sell: P >= 105
    book.submit(3, 2, B, 1, 96, order_type=TPL, trigger_price=95)  # buy: P <= 95
    assert tuples(book.observe_price(104)) == []
    assert tuples(book.observe_price(105)) == [
        triggered(2, 2, S, TPM, 105, 3), fill(2, 2, S, MKT, 1, 1, 100, 3, 0, 2)]
    assert tuples(book.observe_price(96)) == []
    assert tuples(book.observe_price(95)) == [triggered(3, 2, B, TPL, 95, 1)]
    assert book.l3() == [(1, 1, B, 100, 2, 0), (3, 2, B, 96, 1, 0)]


def test_cascading_stops_trigger_in_seq_order_then_fifo(book):
    book.submit(1, 1, S, 1, 101)
    book.submit(2, 1, S, 1, 102)
    book.submit(3, 1, S, 1, 103)
    book.submit(4, 1, S, 5, 104)
    book.submit(10, 2, B, 1, order_type=SM, tif=IOC, trigger_price=101)
    book.submit(11, 2, B, 1, order_type=SM, tif=IOC, trigger_price=100)
    book.submit(12, 2, B, 1, order_type=SM, tif=IOC, trigger_price=102)
    assert tuples(book.submit(20, 3, B, 1, 101)) == [
        accepted(20, 3, B, LIM, 101, 1),
        fill(20, 3, B, LIM, 1, 1, 101, 1, 0, 0),  # 101 queues 10 and 11, in seq order
        triggered(10, 2, B, SM, 101, 1),
        fill(10, 2, B, MKT, 2, 1, 102, 1, 0, 0),  # 102 queues 12, behind 11
        triggered(11, 2, B, SM, 101, 1),
        fill(11, 2, B, MKT, 3, 1, 103, 1, 0, 0),
        triggered(12, 2, B, SM, 102, 1),
        fill(12, 2, B, MKT, 4, 1, 104, 1, 0, 4),
    ]


def test_trailing_stop_by_distance(book):
    book.submit(1, 1, B, 5, 95)
    assert tuples(book.submit(2, 2, S, 2, order_type=TS, tif=IOC, trigger_price=3)) == [
        accepted(2, 2, S, TS, 0, 2)]
    assert book.pending() == [(2, 2, S, TS, 0, 0, 2, True)]
    assert tuples(book.observe_price(100)) == []
    assert book.pending() == [(2, 2, S, TS, 97, 0, 2, True)]
    assert tuples(book.observe_price(104)) == []
    assert book.pending() == [(2, 2, S, TS, 101, 0, 2, True)]
    assert tuples(book.observe_price(102)) == []
    assert book.pending() == [(2, 2, S, TS, 101, 0, 2, True)]
    assert tuples(book.observe_price(101)) == [
        triggered(2, 2, S, TS, 101, 2), fill(2, 2, S, MKT, 1, 1, 95, 2, 0, 3)]
    assert book.pending() == []


def test_trailing_stop_takes_last_price_as_reference(book):
    book.observe_price(100)
    book.submit(1, 1, B, 2, order_type=TS, tif=IOC, trigger_price=3)
    assert book.pending() == [(1, 1, B, TS, 103, 0, 2, True)]
    assert tuples(book.observe_price(98)) == []
    assert book.pending() == [(1, 1, B, TS, 101, 0, 2, True)]
    assert tuples(book.observe_price(100)) == []
    assert tuples(book.observe_price(101)) == [
        triggered(1, 1, B, TS, 101, 2), cancelled(1, 1, B, MKT, 0, 2, Reason.MARKET_REMAINDER)]


def test_trailing_stop_by_basis_points(book):
    book.submit(1, 1, S, 5, 1100)
    book.submit(2, 2, B, 2, order_type=TS, tif=IOC, trigger_price=500, trail_bps=True)
    book.observe_price(1000)
    assert book.pending() == [(2, 2, B, TS, 1050, 0, 2, True)]
    book.observe_price(980)  # offset 980 * 500 // 10000 = 49
    assert book.pending() == [(2, 2, B, TS, 1029, 0, 2, True)]
    assert tuples(book.observe_price(1028)) == []
    assert tuples(book.observe_price(1029)) == [
        triggered(2, 2, B, TS, 1029, 2), fill(2, 2, B, MKT, 1, 1, 1100, 2, 0, 3)]
    # an offset under one tick is one
    book.observe_price(100)
    book.submit(3, 2, S, 1, order_type=TS, tif=FOK, trigger_price=1, trail_bps=True)
    assert book.pending() == [(3, 2, S, TS, 99, 0, 1, True)]
    assert tuples(book.observe_price(99)) == [
        triggered(3, 2, S, TS, 99, 1), cancelled(3, 2, S, MKT, 0, 1, Reason.FOK)]


def test_trailing_stop_extremes(book):
    book.observe_price(MAX_PRICE)
    assert tuples(book.submit(1, 1, S, 5, order_type=TS, tif=IOC, trigger_price=9999, trail_bps=True)) == [
        accepted(1, 1, S, TS, 0, 5)]
    book.submit(2, 1, B, 5, order_type=TS, tif=IOC, trigger_price=9999, trail_bps=True)
    book.submit(3, 1, B, 5, order_type=TS, tif=IOC, trigger_price=MAX_PRICE)
    # 10^15 * 9999 does not fit in 63 bits: the offset must still be exact
    assert book.pending() == [(1, 1, S, TS, 10**11, 0, 5, True), (2, 1, B, TS, 1_999_900_000_000_000, 0, 5, True),
                              (3, 1, B, TS, 2 * MAX_PRICE, 0, 5, True)]
    assert tuples(book.observe_price(1)) == [
        triggered(1, 1, S, TS, 1, 5), cancelled(1, 1, S, MKT, 0, 5, Reason.MARKET_REMAINDER)]
    assert book.pending() == [(2, 1, B, TS, 2, 0, 5, True), (3, 1, B, TS, MAX_PRICE + 1, 0, 5, True)]
    assert tuples(book.observe_price(MAX_PRICE)) == [
        triggered(2, 1, B, TS, MAX_PRICE, 5), cancelled(2, 1, B, MKT, 0, 5, Reason.MARKET_REMAINDER)]


def test_triggered_stop_limit_iceberg_amends_and_expires_like_a_limit(book):
    book.submit(1, 2, B, 4, 99, order_type=SLM, tif=GTD, trigger_price=100, display_qty=1, expire_ts=10)
    assert tuples(book.observe_price(100)) == [triggered(1, 2, B, SLM, 100, 4)]
    assert book.l3() == [(1, 2, B, 99, 1, 3)]
    assert tuples(book.amend(1, price=98)) == [amended(1, 2, B, LIM, 98, 4)]
    assert book.l3() == [(1, 2, B, 98, 1, 3)]
    assert tuples(book.advance_time(10)) == [cancelled(1, 2, B, LIM, 98, 4, Reason.EXPIRED)]


def test_conditional_orders_cancel_and_are_not_amendable(book):
    book.submit(1, 1, S, 2, order_type=SM, tif=IOC, trigger_price=90)
    rejects(lambda: book.amend(1, qty=1), Reason.NOT_AMENDABLE)
    rejects(lambda: book.submit(1, 1, S, 2, 100), Reason.DUPLICATE_ID)
    assert tuples(book.cancel(1)) == [cancelled(1, 1, S, SM, 0, 2, Reason.USER)]
    rejects(lambda: book.cancel(1), Reason.UNKNOWN_ORDER)
    assert book.pending() == []


# ---------------------------------------------------------------------------
# brackets
# ---------------------------------------------------------------------------

def test_bracket_partial_fills_size_children_and_a_trigger_cancels_sibling_and_entry(book):
    book.submit(20, 9, B, 10, 95)
    assert tuples(book.bracket(1, 7, B, 10, 100, 2, 110, 3, 90)) == [
        accepted(1, 7, B, LIM, 100, 10), accepted(2, 7, S, TPM, 0, 0), accepted(3, 7, S, SM, 0, 0)]
    assert book.pending() == [(2, 7, S, TPM, 110, 0, 0, False), (3, 7, S, SM, 90, 0, 0, False)]
    assert tuples(book.observe_price(90)) == []  # inactive children do not trigger
    assert tuples(book.submit(10, 8, S, 4, 100)) == [
        accepted(10, 8, S, LIM, 100, 4),
        fill(10, 8, S, LIM, 1, 7, 100, 4, 0, 6),
        activated(2, 7, S, TPM, 1, 4),
        activated(3, 7, S, SM, 1, 4),
    ]
    assert tuples(book.submit(11, 8, S, 1, 99)) == [
        accepted(11, 8, S, LIM, 99, 1),
        fill(11, 8, S, LIM, 1, 7, 100, 1, 0, 5),
        activated(2, 7, S, TPM, 1, 5),
        activated(3, 7, S, SM, 1, 5),
    ]
    assert book.pending() == [(2, 7, S, TPM, 110, 0, 5, True), (3, 7, S, SM, 90, 0, 5, True)]
    assert tuples(book.observe_price(90)) == [
        triggered(3, 7, S, SM, 90, 5),
        cancelled(2, 7, S, TPM, 0, 5, Reason.OCO),
        cancelled(1, 7, B, LIM, 100, 5, Reason.OCO),
        fill(3, 7, S, MKT, 20, 9, 95, 5, 0, 5),
    ]
    assert book.pending() == [] and book.l3() == [(20, 9, B, 95, 5, 0)]


def test_bracket_unfilled_entry_cancel_cancels_children(book):
    book.bracket(1, 7, B, 10, 100, 2, 110, 3, 90, tp_price=111, sl_price=89)
    assert book.pending() == [(2, 7, S, TPL, 110, 111, 0, False), (3, 7, S, SLM, 90, 89, 0, False)]
    rejects(lambda: book.submit(2, 7, S, 1, 120), Reason.DUPLICATE_ID)
    assert tuples(book.cancel(1)) == [
        cancelled(1, 7, B, LIM, 100, 10, Reason.USER),
        cancelled(2, 7, S, TPL, 111, 0, Reason.PARENT),
        cancelled(3, 7, S, SLM, 89, 0, Reason.PARENT),
    ]
    assert book.pending() == [] and len(book) == 0
    assert len(book.bracket(1, 7, B, 10, 100, 2, 110, 3, 90)) == 3  # the ids are free again


def test_bracket_entry_with_fills_leaves_children_active(book):
    book.bracket(1, 7, B, 10, 100, 2, 110, 3, 90, tp_price=111)
    assert tuples(book.submit(10, 8, S, 3, 100)) == [
        accepted(10, 8, S, LIM, 100, 3),
        fill(10, 8, S, LIM, 1, 7, 100, 3, 0, 7),
        activated(2, 7, S, TPL, 1, 3),
        activated(3, 7, S, SM, 1, 3),
    ]
    assert tuples(book.cancel(1)) == [cancelled(1, 7, B, LIM, 100, 7, Reason.USER)]
    assert book.pending() == [(2, 7, S, TPL, 110, 111, 3, True), (3, 7, S, SM, 90, 0, 3, True)]
    assert tuples(book.observe_price(110)) == [
        triggered(2, 7, S, TPL, 110, 3), cancelled(3, 7, S, SM, 0, 3, Reason.OCO)]
    assert book.l3() == [(2, 7, S, 111, 3, 0)]
    # a triggered child is a plain limit order now: no cascade
    assert tuples(book.cancel(2)) == [cancelled(2, 7, S, LIM, 111, 3, Reason.USER)]


def test_bracket_market_entry(book):
    book.submit(10, 8, S, 3, 100)
    assert tuples(book.bracket(1, 7, B, 5, 0, 2, 110, 3, 90, tif=IOC)) == [
        accepted(1, 7, B, MKT, 0, 5),
        accepted(2, 7, S, TPM, 0, 0),
        accepted(3, 7, S, SM, 0, 0),
        fill(1, 7, B, MKT, 10, 8, 100, 3, 2, 0),
        activated(2, 7, S, TPM, 1, 3),
        activated(3, 7, S, SM, 1, 3),
        cancelled(1, 7, B, MKT, 0, 2, Reason.MARKET_REMAINDER),
    ]
    assert book.pending() == [(2, 7, S, TPM, 110, 0, 3, True), (3, 7, S, SM, 90, 0, 3, True)]
    # a sell bracket whose market entry finds nothing
    assert tuples(book.bracket(4, 7, S, 5, 0, 5, 90, 6, 110, tif=IOC)) == [
        accepted(4, 7, S, MKT, 0, 5),
        accepted(5, 7, B, TPM, 0, 0),
        accepted(6, 7, B, SM, 0, 0),
        cancelled(4, 7, S, MKT, 0, 5, Reason.MARKET_REMAINDER),
        cancelled(5, 7, B, TPM, 0, 0, Reason.PARENT),
        cancelled(6, 7, B, SM, 0, 0, Reason.PARENT),
    ]


@pytest.mark.parametrize("how", ["post_only", "fok", "ioc", "stp", "expiry"])
def test_bracket_entry_leaving_without_fills_cancels_children(book, how):
    book.submit(10, 7, S, 3, 100)
    kw = {"post_only": dict(post_only=True), "fok": dict(tif=FOK), "ioc": dict(tif=IOC, price=99),
          "stp": dict(stp=Stp.CANCEL_TAKER), "expiry": dict(tif=GTD, expire_ts=10, price=99)}[how]
    price = kw.pop("price", 100)
    owner = 7 if how == "stp" else 8
    qty = 5
    events = tuples(book.bracket(1, owner, B, qty, price, 2, 110, 3, 90, **kw))
    head = [accepted(1, owner, B, LIM, price, qty), accepted(2, owner, S, TPM, 0, 0),
            accepted(3, owner, S, SM, 0, 0)]
    children = [cancelled(2, owner, S, TPM, 0, 0, Reason.PARENT), cancelled(3, owner, S, SM, 0, 0, Reason.PARENT)]
    reason = {"post_only": Reason.POST_ONLY, "fok": Reason.FOK, "ioc": Reason.IOC, "stp": Reason.STP,
              "expiry": Reason.EXPIRED}[how]
    if how == "expiry":
        assert events == head
        events = tuples(book.advance_time(10))
        head = []
    assert events == head + [cancelled(1, owner, B, LIM, price, qty, reason)] + children
    assert book.pending() == [] and book.l3() == [(10, 7, S, 100, 3, 0)]


def test_bracket_entry_as_maker_decremented_away_cancels_children(book):
    book.bracket(1, 7, B, 2, 100, 2, 110, 3, 90)
    assert tuples(book.submit(10, 7, S, 5, 100, stp=Stp.DECREMENT)) == [
        accepted(10, 7, S, LIM, 100, 5),
        cancelled(1, 7, B, LIM, 100, 2, Reason.STP, remaining=0),
        cancelled(2, 7, S, TPM, 0, 0, Reason.PARENT),
        cancelled(3, 7, S, SM, 0, 0, Reason.PARENT),
        cancelled(10, 7, S, LIM, 100, 2, Reason.STP, remaining=3),
    ]
    assert book.l3() == [(10, 7, S, 100, 3, 0)] and book.pending() == []


def test_bracket_entry_as_taker_decremented_away_cancels_children(book):
    book.submit(10, 7, S, 5, 100)
    assert tuples(book.bracket(1, 7, B, 3, 100, 2, 110, 3, 90, stp=Stp.DECREMENT)) == [
        accepted(1, 7, B, LIM, 100, 3),
        accepted(2, 7, S, TPM, 0, 0),
        accepted(3, 7, S, SM, 0, 0),
        cancelled(10, 7, S, LIM, 100, 3, Reason.STP, remaining=2),
        cancelled(1, 7, B, LIM, 100, 3, Reason.STP, remaining=0),
        cancelled(2, 7, S, TPM, 0, 0, Reason.PARENT),
        cancelled(3, 7, S, SM, 0, 0, Reason.PARENT),
    ]
    assert book.l3() == [(10, 7, S, 100, 2, 0)]


def test_stp_cancel_both_between_two_unfilled_bracket_entries(book):
    book.bracket(1, 7, S, 2, 100, 2, 90, 3, 110)
    assert tuples(book.bracket(4, 7, B, 3, 100, 5, 110, 6, 90, stp=Stp.CANCEL_BOTH)) == [
        accepted(4, 7, B, LIM, 100, 3),
        accepted(5, 7, S, TPM, 0, 0),
        accepted(6, 7, S, SM, 0, 0),
        cancelled(1, 7, S, LIM, 100, 2, Reason.STP),
        cancelled(2, 7, B, TPM, 0, 0, Reason.PARENT),
        cancelled(3, 7, B, SM, 0, 0, Reason.PARENT),
        cancelled(4, 7, B, LIM, 100, 3, Reason.STP),
        cancelled(5, 7, S, TPM, 0, 0, Reason.PARENT),
        cancelled(6, 7, S, SM, 0, 0, Reason.PARENT),
    ]
    assert len(book) == 0 and book.pending() == []


def test_bracket_fok_entry_that_fills(book):
    book.submit(10, 8, S, 5, 100)
    assert tuples(book.bracket(1, 7, B, 5, 100, 2, 110, 3, 90, tif=FOK)) == [
        accepted(1, 7, B, LIM, 100, 5),
        accepted(2, 7, S, TPM, 0, 0),
        accepted(3, 7, S, SM, 0, 0),
        fill(1, 7, B, LIM, 10, 8, 100, 5, 0, 0),
        activated(2, 7, S, TPM, 1, 5),
        activated(3, 7, S, SM, 1, 5),
    ]


def test_amended_bracket_entry_that_trades_sizes_its_children(book):
    book.submit(10, 8, S, 3, 101)
    book.bracket(1, 7, B, 5, 100, 2, 110, 3, 90)
    assert tuples(book.amend(1, price=101)) == [
        amended(1, 7, B, LIM, 101, 5),
        fill(1, 7, B, LIM, 10, 8, 101, 3, 2, 0),
        activated(2, 7, S, TPM, 1, 3),
        activated(3, 7, S, SM, 1, 3),
    ]
    assert book.l3() == [(1, 7, B, 101, 2, 0)]


def test_bracket_child_triggered_by_the_entrys_own_fill(book):
    book.submit(10, 8, S, 3, 89)
    assert tuples(book.bracket(1, 7, B, 10, 100, 2, 110, 3, 90)) == [
        accepted(1, 7, B, LIM, 100, 10),
        accepted(2, 7, S, TPM, 0, 0),
        accepted(3, 7, S, SM, 0, 0),
        fill(1, 7, B, LIM, 10, 8, 89, 3, 7, 0),
        activated(2, 7, S, TPM, 1, 3),
        activated(3, 7, S, SM, 1, 3),
        triggered(3, 7, S, SM, 89, 3),
        cancelled(2, 7, S, TPM, 0, 3, Reason.OCO),
        cancelled(1, 7, B, LIM, 100, 7, Reason.OCO),
        cancelled(3, 7, S, MKT, 0, 3, Reason.MARKET_REMAINDER),
    ]
    assert len(book) == 0 and book.pending() == []


def test_cancelling_a_child_cancels_its_sibling_not_the_entry(book):
    book.bracket(1, 7, B, 10, 100, 2, 110, 3, 90)
    assert tuples(book.cancel(3)) == [
        cancelled(3, 7, S, SM, 0, 0, Reason.USER), cancelled(2, 7, S, TPM, 0, 0, Reason.OCO)]
    assert book.l3() == [(1, 7, B, 100, 10, 0)] and book.pending() == []
    assert tuples(book.submit(10, 8, S, 4, 100)) == [
        accepted(10, 8, S, LIM, 100, 4), fill(10, 8, S, LIM, 1, 7, 100, 4, 0, 6)]
    assert tuples(book.cancel(1)) == [cancelled(1, 7, B, LIM, 100, 6, Reason.USER)]


def test_queued_order_cancelled_before_its_turn_is_skipped(book):
    book.bracket(1, 7, B, 10, 100, 2, 110, 3, 90)
    book.submit(10, 8, S, 1, 100)  # entry fills 1: children active with 1
    book.submit(11, 9, B, 2, 111)
    book.submit(12, 9, B, 5, 89)
    assert tuples(book.submit(13, 8, S, 12, 89)) == [
        accepted(13, 8, S, LIM, 89, 12),
        fill(13, 8, S, LIM, 11, 9, 111, 2, 10, 0),  # 111 queues the take-profit child
        fill(13, 8, S, LIM, 1, 7, 100, 9, 1, 0),
        activated(2, 7, S, TPM, 1, 10),
        activated(3, 7, S, SM, 1, 10),
        fill(13, 8, S, LIM, 12, 9, 89, 1, 0, 4),  # 89 queues the stop-loss child
        triggered(2, 7, S, TPM, 111, 10),
        cancelled(3, 7, S, SM, 0, 10, Reason.OCO),  # ... so it is skipped later
        fill(2, 7, S, MKT, 12, 9, 89, 4, 6, 0),
        cancelled(2, 7, S, MKT, 0, 6, Reason.MARKET_REMAINDER),
    ]
    assert len(book) == 0 and book.pending() == []


def test_mass_cancel_with_a_bracket_cascades(book):
    book.submit(1, 1, B, 1, 99)
    book.submit(2, 2, B, 1, 98)
    book.submit(3, 1, S, 1, order_type=SM, tif=IOC, trigger_price=90)
    book.submit(4, 1, S, 2, 105)
    book.bracket(5, 1, B, 1, 97, 6, 110, 7, 90)
    book.oco(1, S, 1, 8, 120, 9, 80)
    book.amend(1, price=100)  # moves it in the queue, not in seq
    assert tuples(book.mass_cancel(1)) == [
        cancelled(1, 1, B, LIM, 100, 1, Reason.USER),
        cancelled(3, 1, S, SM, 0, 1, Reason.USER),
        cancelled(4, 1, S, LIM, 105, 2, Reason.USER),
        cancelled(5, 1, B, LIM, 97, 1, Reason.USER),
        cancelled(6, 1, S, TPM, 0, 0, Reason.PARENT),
        cancelled(7, 1, S, SM, 0, 0, Reason.PARENT),
        cancelled(8, 1, S, TPM, 0, 1, Reason.USER),
        cancelled(9, 1, S, SM, 0, 1, Reason.OCO),
    ]
    assert book.l3() == [(2, 2, B, 98, 1, 0)] and book.pending() == []
    assert tuples(book.mass_cancel(1)) == [] and tuples(book.mass_cancel(42)) == []


def test_mass_cancel_of_a_filled_bracket(book):
    book.bracket(1, 1, B, 4, 100, 2, 110, 3, 90)
    book.submit(10, 2, S, 1, 100)
    assert tuples(book.mass_cancel(1)) == [
        cancelled(1, 1, B, LIM, 100, 3, Reason.USER),
        cancelled(2, 1, S, TPM, 0, 1, Reason.USER),
        cancelled(3, 1, S, SM, 0, 1, Reason.OCO),
    ]


# ---------------------------------------------------------------------------
# OCO
# ---------------------------------------------------------------------------

def test_oco_trigger_cancels_the_other_leg(book):
    book.submit(20, 9, B, 10, 95)
    assert tuples(book.oco(7, S, 5, 3, 110, 4, 90)) == [accepted(3, 7, S, TPM, 0, 5), accepted(4, 7, S, SM, 0, 5)]
    assert book.pending() == [(3, 7, S, TPM, 110, 0, 5, True), (4, 7, S, SM, 90, 0, 5, True)]
    assert tuples(book.observe_price(110)) == [
        triggered(3, 7, S, TPM, 110, 5),
        cancelled(4, 7, S, SM, 0, 5, Reason.OCO),
        fill(3, 7, S, MKT, 20, 9, 95, 5, 0, 5),
    ]
    assert book.pending() == []


def test_oco_cancel_one_leg_cancels_the_other(book):
    book.oco(7, B, 2, 3, 90, 4, 110, tp_price=91, sl_price=111)
    assert book.pending() == [(3, 7, B, TPL, 90, 91, 2, True), (4, 7, B, SLM, 110, 111, 2, True)]
    assert tuples(book.cancel(4)) == [
        cancelled(4, 7, B, SLM, 111, 2, Reason.USER), cancelled(3, 7, B, TPL, 91, 2, Reason.OCO)]
    assert book.pending() == []


def test_oco_triggers_at_placement(book):
    book.observe_price(85)
    assert tuples(book.oco(7, B, 2, 3, 90, 4, 110, tp_price=91, sl_price=111)) == [
        accepted(3, 7, B, TPL, 91, 2),
        accepted(4, 7, B, SLM, 111, 2),
        triggered(3, 7, B, TPL, 85, 2),
        cancelled(4, 7, B, SLM, 111, 2, Reason.OCO),
    ]
    assert book.l3() == [(3, 7, B, 91, 2, 0)] and book.pending() == []


# ---------------------------------------------------------------------------
# rejections
# ---------------------------------------------------------------------------

def submit_rejections():
    """(kwargs for submit on a tick 5 / lot 2 book, reason); defaults: a valid
    GTC limit buy of 4 at 100 with id 50 by owner 1."""
    big = MAX_QTY + 2
    return [
        (dict(side=2), Reason.INVALID_SIDE),
        (dict(side=7, order_type=9, tif=9, qty=0), Reason.INVALID_SIDE),
        (dict(order_type=7), Reason.INVALID_ORDER_TYPE),
        (dict(order_type=7, tif=9), Reason.INVALID_ORDER_TYPE),
        (dict(tif=4), Reason.INVALID_TIF),
        (dict(tif=4, stp=9), Reason.INVALID_TIF),
        (dict(order_type=MKT, price=0), Reason.INVALID_TIF),
        (dict(order_type=SM, price=0, trigger_price=110), Reason.INVALID_TIF),
        (dict(order_type=TPM, price=0, tif=GTD, trigger_price=110, expire_ts=5), Reason.INVALID_TIF),
        (dict(order_type=TS, price=0, trigger_price=5), Reason.INVALID_TIF),
        (dict(stp=5), Reason.INVALID_STP),
        (dict(stp=5, post_only=True, tif=IOC), Reason.INVALID_STP),
        (dict(post_only=True, tif=IOC), Reason.INVALID_FLAGS),
        (dict(post_only=True, tif=FOK), Reason.INVALID_FLAGS),
        (dict(post_only=True, order_type=MKT, price=0, tif=IOC), Reason.INVALID_FLAGS),
        (dict(post_only=True, order_type=SLM, trigger_price=110), Reason.INVALID_FLAGS),
        (dict(trail_bps=True), Reason.INVALID_FLAGS),
        (dict(trail_bps=True, order_type=SM, tif=IOC, price=0, trigger_price=110), Reason.INVALID_FLAGS),
        (dict(trail_bps=True, qty=0), Reason.INVALID_FLAGS),
        (dict(qty=0), Reason.INVALID_QUANTITY),
        (dict(qty=-2), Reason.INVALID_QUANTITY),
        (dict(qty=big), Reason.INVALID_QUANTITY),
        (dict(qty=0, price=0), Reason.INVALID_QUANTITY),
        (dict(qty=3), Reason.OFF_LOT_GRID),
        (dict(qty=3, price=101), Reason.OFF_LOT_GRID),
        (dict(price=0), Reason.INVALID_PRICE),
        (dict(price=-5), Reason.INVALID_PRICE),
        (dict(price=MAX_PRICE + 5), Reason.INVALID_PRICE),
        (dict(price=0, trigger_price=5), Reason.INVALID_PRICE),
        (dict(price=101), Reason.OFF_TICK_GRID),
        (dict(order_type=SLM, price=0, trigger_price=110), Reason.INVALID_PRICE),
        (dict(order_type=TPL, price=101, trigger_price=110), Reason.OFF_TICK_GRID),
        (dict(order_type=MKT, tif=IOC, price=-5), Reason.INVALID_PRICE),
        (dict(order_type=MKT, tif=IOC, price=101), Reason.OFF_TICK_GRID),
        (dict(order_type=SM, tif=IOC, price=0, trigger_price=0), Reason.INVALID_TRIGGER),
        (dict(order_type=SM, tif=IOC, price=0, trigger_price=-5), Reason.INVALID_TRIGGER),
        (dict(order_type=TPM, tif=IOC, price=0, trigger_price=MAX_PRICE + 5), Reason.INVALID_TRIGGER),
        (dict(order_type=SLM, trigger_price=101), Reason.OFF_TICK_GRID),
        (dict(trigger_price=100), Reason.INVALID_TRIGGER),
        (dict(order_type=MKT, tif=IOC, price=0, trigger_price=100), Reason.INVALID_TRIGGER),
        (dict(trigger_price=100, display_qty=4), Reason.INVALID_TRIGGER),
        (dict(order_type=TS, tif=IOC, price=0, trigger_price=0), Reason.INVALID_TRIGGER),
        (dict(order_type=TS, tif=IOC, price=0, trigger_price=-5), Reason.INVALID_TRIGGER),
        (dict(order_type=TS, tif=IOC, price=0, trigger_price=101), Reason.OFF_TICK_GRID),
        (dict(order_type=TS, tif=IOC, price=0, trigger_price=MAX_PRICE + 5), Reason.INVALID_TRIGGER),
        (dict(order_type=TS, tif=IOC, price=0, trigger_price=10_000, trail_bps=True), Reason.INVALID_TRIGGER),
        (dict(order_type=TS, tif=IOC, price=0, trigger_price=0, trail_bps=True), Reason.INVALID_TRIGGER),
        (dict(display_qty=4), Reason.INVALID_DISPLAY),
        (dict(display_qty=6), Reason.INVALID_DISPLAY),
        (dict(display_qty=-2), Reason.INVALID_DISPLAY),
        (dict(display_qty=1), Reason.INVALID_DISPLAY),
        (dict(display_qty=2, tif=IOC), Reason.INVALID_DISPLAY),
        (dict(display_qty=2, tif=FOK), Reason.INVALID_DISPLAY),
        (dict(display_qty=2, order_type=MKT, tif=IOC, price=0), Reason.INVALID_DISPLAY),
        (dict(display_qty=2, order_type=SM, tif=IOC, price=0, trigger_price=110), Reason.INVALID_DISPLAY),
        (dict(display_qty=4, expire_ts=5), Reason.INVALID_DISPLAY),
        (dict(tif=GTD), Reason.INVALID_EXPIRY),
        (dict(expire_ts=5), Reason.INVALID_EXPIRY),
        (dict(tif=IOC, expire_ts=5), Reason.INVALID_EXPIRY),
        (dict(order_type=SM, tif=IOC, price=0, trigger_price=110, expire_ts=5), Reason.INVALID_EXPIRY),
        (dict(expire_ts=5, order_id=0), Reason.INVALID_EXPIRY),
        (dict(order_id=0), Reason.DUPLICATE_ID),
        (dict(order_id=1), Reason.DUPLICATE_ID),
        (dict(order_id=2), Reason.DUPLICATE_ID),
        (dict(order_id=4, side=1, price=200), Reason.DUPLICATE_ID),
    ]


@pytest.mark.parametrize("kwargs,reason", submit_rejections())
def test_submit_rejections_in_validation_order(make_book, kwargs, reason):
    book = make_book(tick_size=5, lot_size=2)
    book.submit(1, 1, S, 2, 200)  # a resting order
    book.submit(2, 1, S, 2, order_type=SM, tif=IOC, trigger_price=90)  # a waiting conditional
    book.bracket(3, 1, B, 2, 50, 4, 60, 5, 40)  # an inactive child 4
    before = state(book)
    args = dict(order_id=50, owner=1, side=B, qty=4, price=100, order_type=LIM, tif=GTC, stp=Stp.NONE,
                post_only=False, display_qty=0, trigger_price=0, trail_bps=False, expire_ts=0)
    args.update(kwargs)
    rejects(lambda: book.submit(**args), reason)
    assert state(book) == before


def test_valid_edge_values_are_accepted(make_book):
    book = make_book(tick_size=5, lot_size=2)
    assert tuples(book.submit(1, 1, B, MAX_QTY, 5)) == [accepted(1, 1, B, LIM, 5, MAX_QTY)]
    assert tuples(book.submit(2, 1, S, 2, MAX_PRICE)) == [accepted(2, 1, S, LIM, MAX_PRICE, 2)]
    # trailing bps are not on the tick grid; iceberg stop-limit; GTD stop-limit
    assert len(book.submit(3, 1, S, 2, order_type=TS, tif=IOC, trigger_price=101, trail_bps=True)) == 1
    assert len(book.submit(4, 1, B, 4, 100, order_type=SLM, trigger_price=200, display_qty=2)) == 1
    assert len(book.submit(5, 1, B, 4, 100, order_type=TPL, tif=GTD, trigger_price=50, expire_ts=1)) == 1
    assert len(book.submit(6, 1, S, 4, 100, order_type=SLM, tif=FOK, trigger_price=50)) == 1
    assert len(book.submit(7, 1, S, 4, order_type=TPM, tif=FOK, trigger_price=500)) == 1


def bracket_rejections():
    """(kwargs for bracket, reason); defaults: BUY 4 at 100, tp 2 @110, sl 3 @90."""
    return [
        (dict(side=2), Reason.INVALID_SIDE),
        (dict(price=0), Reason.INVALID_TIF),  # a market entry needs IOC / FOK
        (dict(price=-1), Reason.INVALID_TIF),  # price <= 0 makes it a market entry
        (dict(price=-1, tif=IOC), Reason.INVALID_PRICE),
        (dict(tif=9), Reason.INVALID_TIF),
        (dict(stp=7), Reason.INVALID_STP),
        (dict(post_only=True, tif=IOC), Reason.INVALID_FLAGS),
        (dict(post_only=True, price=0, tif=IOC), Reason.INVALID_FLAGS),
        (dict(qty=0), Reason.INVALID_QUANTITY),
        (dict(price=MAX_PRICE + 1), Reason.INVALID_PRICE),
        (dict(tif=GTD), Reason.INVALID_EXPIRY),
        (dict(expire_ts=3), Reason.INVALID_EXPIRY),
        (dict(order_id=0), Reason.DUPLICATE_ID),
        (dict(order_id=1), Reason.DUPLICATE_ID),
        (dict(order_id=1, tp_id=0), Reason.DUPLICATE_ID),
        (dict(tp_id=0), Reason.INVALID_BRACKET),
        (dict(sl_id=0), Reason.INVALID_BRACKET),
        (dict(tp_id=3), Reason.INVALID_BRACKET),
        (dict(tp_id=50), Reason.INVALID_BRACKET),
        (dict(sl_id=50), Reason.INVALID_BRACKET),
        (dict(tp_id=1), Reason.INVALID_BRACKET),
        (dict(sl_id=20), Reason.INVALID_BRACKET),  # a live conditional
        (dict(tp_trigger=0), Reason.INVALID_BRACKET),
        (dict(sl_trigger=-5), Reason.INVALID_BRACKET),
        (dict(tp_trigger=MAX_PRICE + 1), Reason.INVALID_BRACKET),
        (dict(tp_price=-1), Reason.INVALID_BRACKET),
        (dict(sl_price=MAX_PRICE + 1), Reason.INVALID_BRACKET),
        (dict(tp_trigger=100), Reason.INVALID_BRACKET),
        (dict(sl_trigger=100), Reason.INVALID_BRACKET),
        (dict(tp_trigger=95, sl_trigger=105), Reason.INVALID_BRACKET),
        (dict(price=0, tif=IOC, tp_trigger=90, sl_trigger=90), Reason.INVALID_BRACKET),
        (dict(price=0, tif=IOC, tp_trigger=90, sl_trigger=110), Reason.INVALID_BRACKET),
        (dict(side=S), Reason.INVALID_BRACKET),  # a sell needs tp < price < sl
    ]


@pytest.mark.parametrize("kwargs,reason", bracket_rejections())
def test_bracket_rejections(book, kwargs, reason):
    book.submit(1, 1, S, 2, 200)
    book.submit(20, 1, S, 2, order_type=SM, tif=IOC, trigger_price=90)
    before = state(book)
    args = dict(order_id=50, owner=1, side=B, qty=4, price=100, tp_id=2, tp_trigger=110, sl_id=3, sl_trigger=90,
                tp_price=0, sl_price=0, tif=GTC, stp=Stp.NONE, post_only=False, expire_ts=0)
    args.update(kwargs)
    rejects(lambda: book.bracket(**args), reason)
    assert state(book) == before


def test_bracket_off_grid_rejections(make_book):
    book = make_book(tick_size=5, lot_size=2)
    base = dict(order_id=1, owner=1, side=B, qty=4, price=100, tp_id=2, tp_trigger=110, sl_id=3, sl_trigger=90)
    rejects(lambda: book.bracket(**{**base, "price": 101}), Reason.OFF_TICK_GRID)
    rejects(lambda: book.bracket(**{**base, "qty": 3}), Reason.OFF_LOT_GRID)
    rejects(lambda: book.bracket(**{**base, "tp_trigger": 111}), Reason.INVALID_BRACKET)
    rejects(lambda: book.bracket(**{**base, "sl_price": 89}), Reason.INVALID_BRACKET)
    assert len(book.bracket(**{**base, "sl_price": 85, "tp_price": 115})) == 3


def oco_rejections():
    """(kwargs for oco, reason); defaults: SELL 4, tp 2 @110, sl 3 @90."""
    return [
        (dict(side=2), Reason.INVALID_SIDE),
        (dict(side=2, stp=9, qty=0), Reason.INVALID_SIDE),
        (dict(stp=9), Reason.INVALID_STP),
        (dict(stp=9, qty=0), Reason.INVALID_STP),
        (dict(qty=0), Reason.INVALID_QUANTITY),
        (dict(qty=0, tp_id=0), Reason.INVALID_QUANTITY),
        (dict(qty=-1), Reason.INVALID_QUANTITY),
        (dict(tp_id=0), Reason.INVALID_BRACKET),
        (dict(sl_id=2), Reason.INVALID_BRACKET),
        (dict(tp_id=1), Reason.INVALID_BRACKET),
        (dict(sl_id=20), Reason.INVALID_BRACKET),
        (dict(tp_trigger=0), Reason.INVALID_BRACKET),
        (dict(tp_price=-1), Reason.INVALID_BRACKET),
        (dict(tp_trigger=90, sl_trigger=110), Reason.INVALID_BRACKET),
        (dict(tp_trigger=90, sl_trigger=90), Reason.INVALID_BRACKET),
        (dict(side=B), Reason.INVALID_BRACKET),  # a buy needs tp < sl
    ]


@pytest.mark.parametrize("kwargs,reason", oco_rejections())
def test_oco_rejections(book, kwargs, reason):
    book.submit(1, 1, S, 2, 200)
    book.submit(20, 1, S, 2, order_type=SM, tif=IOC, trigger_price=90)
    before = state(book)
    args = dict(owner=1, side=S, qty=4, tp_id=2, tp_trigger=110, sl_id=3, sl_trigger=90, tp_price=0, sl_price=0,
                stp=Stp.NONE)
    args.update(kwargs)
    rejects(lambda: book.oco(**args), reason)
    assert state(book) == before


def test_oco_off_lot_grid(make_book):
    book = make_book(tick_size=5, lot_size=2)
    rejects(lambda: book.oco(1, S, 3, 2, 110, 3, 90), Reason.OFF_LOT_GRID)
    rejects(lambda: book.oco(1, S, 4, 2, 111, 3, 90), Reason.INVALID_BRACKET)


def test_cancel_observe_and_time_rejections(make_book):
    book = make_book(tick_size=5)
    book.submit(1, 1, S, 2, 100)
    book.submit(2, 2, B, 2, 100)  # 1 is gone
    before = state(book)
    rejects(lambda: book.cancel(1), Reason.UNKNOWN_ORDER)
    rejects(lambda: book.cancel(99), Reason.UNKNOWN_ORDER)
    rejects(lambda: book.observe_price(0), Reason.INVALID_PRICE)
    rejects(lambda: book.observe_price(-1), Reason.INVALID_PRICE)
    rejects(lambda: book.observe_price(MAX_PRICE + 1), Reason.INVALID_PRICE)
    book.advance_time(5)
    rejects(lambda: book.advance_time(4), Reason.INVALID_TIME)
    assert state(book)[:5] == before[:5]
    assert tuples(book.observe_price(101)) == [] and book.last_price == 101  # any price, off the grid too


# ---------------------------------------------------------------------------
# the batch API: REJECTED events and record fields
# ---------------------------------------------------------------------------

def test_batch_rejections_carry_the_commands_ids(book):
    K = CommandKind
    arr = commands(
        dict(kind=K.SUBMIT, order_id=5, owner=7, side=3, qty=1, price=100),
        dict(kind=K.SUBMIT, order_id=6, owner=7, side=0, qty=1, price=100, flags=4),
        dict(kind=K.SUBMIT, order_id=6, owner=7, side=0, qty=1, price=100, flags=int(Flags.TRAIL_BPS)),
        dict(kind=K.CANCEL, order_id=9, owner=7),
        dict(kind=K.AMEND, order_id=9, owner=7, price=100),
        dict(kind=K.MASS_CANCEL, order_id=9, owner=7),
        dict(kind=K.ADVANCE_TIME, order_id=9, owner=7, expire_ts=0),
        dict(kind=K.OBSERVE_PRICE, order_id=9, owner=7, price=0),
        dict(kind=K.BRACKET, order_id=11, owner=7, side=0, qty=1, price=100, tp_id=12, tp_trigger=90,
             sl_id=13, sl_trigger=110),
        dict(kind=K.OCO, order_id=11, owner=7, side=1, qty=1, tp_id=14, tp_trigger=90, sl_id=15, sl_trigger=110),
    )
    assert run_batch(book, arr) == [
        rejected(5, 7, Reason.INVALID_SIDE),
        rejected(6, 7, Reason.INVALID_FLAGS),
        rejected(6, 7, Reason.INVALID_FLAGS),
        rejected(9, 0, Reason.UNKNOWN_ORDER),
        rejected(9, 0, Reason.UNKNOWN_ORDER),
        # mass cancel of nobody's orders is not an error
        rejected(0, 0, Reason.INVALID_PRICE),
        rejected(11, 7, Reason.INVALID_BRACKET),
        rejected(14, 7, Reason.INVALID_BRACKET),
    ]


def test_batch_advance_time_rejection_and_invalid_command(book):
    K = CommandKind
    arr = commands(
        dict(kind=K.ADVANCE_TIME, expire_ts=10),
        dict(kind=K.ADVANCE_TIME, expire_ts=9, order_id=3, owner=4),
        dict(kind=K.MASS_CANCEL, owner=4),
        dict(kind=9, order_id=3, owner=4, qty=1, price=100),
    )
    # an unknown command: the record's own order_id and owner (see the report)
    assert run_batch(book, arr) == [rejected(0, 0, Reason.INVALID_TIME), rejected(3, 4, Reason.INVALID_COMMAND)]
    assert book.now == 10


def test_batch_record_fields(book):
    """advance_time takes ts from expire_ts, observe_price its price from
    price, a trailing stop its amount from trigger_price; POST_ONLY and
    TRAIL_BPS are flag bits; a bracket ignores TRAIL_BPS."""
    K = CommandKind
    arr = commands(
        dict(kind=K.SUBMIT, order_id=1, owner=1, side=0, qty=5, price=95),
        dict(kind=K.SUBMIT, order_id=2, owner=2, side=1, order_type=TS, tif=IOC, qty=2, trigger_price=300,
             flags=int(Flags.TRAIL_BPS)),
        dict(kind=K.OBSERVE_PRICE, price=100),
        dict(kind=K.SUBMIT, order_id=3, owner=3, side=0, qty=1, price=96, flags=int(Flags.POST_ONLY)),
        dict(kind=K.BRACKET, order_id=4, owner=3, side=0, qty=1, price=94, flags=int(Flags.TRAIL_BPS),
             tp_id=5, tp_trigger=99, sl_id=6, sl_trigger=90, tif=GTD, expire_ts=50),
        dict(kind=K.ADVANCE_TIME, expire_ts=50),
        dict(kind=K.OBSERVE_PRICE, price=97),
    )
    assert run_batch(book, arr) == [
        accepted(1, 1, B, LIM, 95, 5),
        accepted(2, 2, S, TS, 0, 2),
        accepted(3, 3, B, LIM, 96, 1),
        accepted(4, 3, B, LIM, 94, 1),
        accepted(5, 3, S, TPM, 0, 0),
        accepted(6, 3, S, SM, 0, 0),
        cancelled(4, 3, B, LIM, 94, 1, Reason.EXPIRED),
        cancelled(5, 3, S, TPM, 0, 0, Reason.PARENT),
        cancelled(6, 3, S, SM, 0, 0, Reason.PARENT),
        triggered(2, 2, S, TS, 97, 2),  # 100 - 100 * 300 // 10000 = 97
        fill(2, 2, S, MKT, 3, 3, 96, 1, 1, 0),
        fill(2, 2, S, MKT, 1, 1, 95, 1, 0, 4),
    ]
    assert book.now == 50
