"""The Python vocabulary (lxdex.enums) and the Rust engine agree."""

import numpy as np
import pytest

lxdex = pytest.importorskip("lxdex")
from lxdex import _core, enums  # noqa: E402


@pytest.mark.parametrize(
    "name, py_enum",
    [
        ("Side", enums.Side),
        ("OrderType", enums.OrderType),
        ("TimeInForce", enums.TimeInForce),
        ("Stp", enums.Stp),
        ("EventKind", enums.EventKind),
        ("Reason", enums.Reason),
    ],
)
def test_enum_values_match_the_engine(name, py_enum):
    assert _core.wire_enums()[name] == {m.name: m.value for m in py_enum}


def test_limits_and_flags_match():
    assert _core.MAX_PRICE == enums.MAX_PRICE
    assert _core.MAX_QTY == enums.MAX_QTY
    assert _core.MAX_TRAIL_BPS == enums.MAX_TRAIL_BPS
    assert _core.FLAG_POST_ONLY == enums.Flags.POST_ONLY
    assert _core.FLAG_TRAIL_BPS == enums.Flags.TRAIL_BPS


def test_record_sizes():
    assert enums.COMMAND_DTYPE.itemsize == _core.COMMAND_RECORD_SIZE == 120
    assert enums.EVENT_DTYPE.itemsize == 80


def test_process_rejects_a_wrong_dtype_with_a_clear_error():
    book = lxdex.Book()
    with pytest.raises(TypeError, match="COMMAND_DTYPE"):
        book.process(np.zeros(3, dtype=np.int64))
    with pytest.raises(TypeError, match="COMMAND_DTYPE"):
        book.process([1, 2, 3])


def test_per_call_rejection_message_names_the_field():
    book = lxdex.Book(tick_size=5)
    with pytest.raises(lxdex.OrderRejected, match="price: must be a multiple of the book's tick_size") as e:
        book.submit(1, 1, lxdex.Side.BUY, 1, price=7)
    assert e.value.reason == lxdex.Reason.OFF_TICK_GRID
    assert len(book) == 0


def test_book_rejects_bad_construction():
    with pytest.raises(ValueError, match="tick_size"):
        lxdex.Book(tick_size=0)
    with pytest.raises(ValueError, match="lot_size"):
        lxdex.Book(lot_size=-1)
