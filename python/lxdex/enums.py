"""The matching engine's vocabulary: enums, flags and the batch record layouts.

These numbers are the wire/ABI values shared with the Rust core
(`crates/engine/src/types.rs`); `tests/test_enums.py` checks that both sides
agree.  Everything that talks to a book imports them from here.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

import numpy as np


class Side(IntEnum):
    BUY = 0
    SELL = 1


class OrderType(IntEnum):
    LIMIT = 0
    MARKET = 1
    STOP_MARKET = 2
    STOP_LIMIT = 3
    TAKE_PROFIT_MARKET = 4
    TAKE_PROFIT_LIMIT = 5
    TRAILING_STOP = 6  # triggers a market order


class TimeInForce(IntEnum):
    GTC = 0
    IOC = 1
    FOK = 2
    GTD = 3


class Stp(IntEnum):
    """Self-trade prevention mode, chosen by the taker."""

    NONE = 0
    CANCEL_TAKER = 1
    CANCEL_MAKER = 2
    CANCEL_BOTH = 3
    DECREMENT = 4


class Flags(IntFlag):
    NONE = 0
    POST_ONLY = 1
    TRAIL_BPS = 2  # trailing amount is in basis points, not a price distance


class CommandKind(IntEnum):
    SUBMIT = 0
    CANCEL = 1
    AMEND = 2
    MASS_CANCEL = 3
    ADVANCE_TIME = 4
    OBSERVE_PRICE = 5
    BRACKET = 6
    OCO = 7


class EventKind(IntEnum):
    ACCEPTED = 0
    REJECTED = 1
    FILL = 2
    CANCELLED = 3
    AMENDED = 4
    TRIGGERED = 5
    ACTIVATED = 6
    DEPTH = 7  # exchange only: a level's visible qty now; order_id = depth update id


class Reason(IntEnum):
    """Why an order was cancelled (1..31) or a command rejected (32..)."""

    NONE = 0
    # cancel reasons
    USER = 1
    IOC = 2
    FOK = 3
    MARKET_REMAINDER = 4
    STP = 5
    EXPIRED = 6
    POST_ONLY = 7
    OCO = 8
    PARENT = 9
    # reject reasons
    INVALID_SIDE = 32
    INVALID_ORDER_TYPE = 33
    INVALID_TIF = 34
    INVALID_STP = 35
    INVALID_QUANTITY = 36
    OFF_LOT_GRID = 37
    INVALID_PRICE = 38
    OFF_TICK_GRID = 39
    INVALID_TRIGGER = 40
    INVALID_DISPLAY = 41
    INVALID_FLAGS = 42
    INVALID_EXPIRY = 43
    DUPLICATE_ID = 44
    UNKNOWN_ORDER = 45
    NOT_AMENDABLE = 46
    INVALID_AMEND = 47
    WOULD_TAKE = 48
    INVALID_TIME = 49
    INVALID_BRACKET = 50
    INVALID_COMMAND = 51
    # exchange-level reject reasons
    UNKNOWN_MARKET = 52
    MARKET_NOT_TRADING = 53
    UNKNOWN_ACCOUNT = 54
    ACCOUNT_SUSPENDED = 55
    INSUFFICIENT_FUNDS = 56
    BELOW_MIN_QUANTITY = 57
    BELOW_MIN_NOTIONAL = 58
    PRICE_OUT_OF_BAND = 59
    PROTECTION_REQUIRED = 60
    NOT_SUPPORTED = 61
    UNKNOWN_ASSET = 62
    INVALID_AMOUNT = 63
    OVERFLOW = 64
    INVALID_MARKET_CONFIG = 65


def parse_enum(cls: type[IntEnum], value: IntEnum | str | int, field: str) -> int:
    """An enum argument given as a member, its int value, or its name
    (case-insensitive, e.g. ``"buy"``); a bad name raises ValueError naming
    the field and the allowed values."""
    if isinstance(value, str):
        table = _NAMES.get(cls)
        if table is None:
            table = _NAMES[cls] = {m.name: m for m in cls} | {m.name.lower(): m for m in cls}
        member = table.get(value)
        if member is None:
            member = table.get(value.upper())
            if member is None:
                names = ", ".join(m.name.lower() for m in cls)
                raise ValueError(f"{field}: {value!r} is not one of {names}")
        return member
    return int(value)


_NAMES: dict = {}  # enum class -> {name and lower-case name: member}: parse_enum's fast path


#: Upper bounds of prices (in ticks' integer units) and quantities (in lot units).
MAX_PRICE = 10**15
MAX_QTY = 10**12
MAX_TRAIL_BPS = 9_999

#: One command of a batch: 120 bytes, little endian, 8-byte aligned.
COMMAND_DTYPE = np.dtype(
    {
        "names": [
            "kind", "side", "order_type", "tif", "stp", "flags", "market",
            "order_id", "owner", "price", "qty", "trigger_price", "display_qty",
            "expire_ts", "tp_id", "tp_trigger", "tp_price", "sl_id", "sl_trigger",
            "sl_price",
        ],
        "formats": [
            "u1", "u1", "u1", "u1", "u1", "u1", "<u4",
            "<u8", "<u8", "<i8", "<i8", "<i8", "<i8",
            "<u8", "<u8", "<i8", "<i8", "<u8", "<i8",
            "<i8",
        ],
        "offsets": [
            0, 1, 2, 3, 4, 5, 8,
            16, 24, 32, 40, 48, 56,
            64, 72, 80, 88, 96, 104,
            112,
        ],
        "itemsize": 120,
    }
)

#: One event of a batch's output: 80 bytes, little endian, 8-byte aligned.
EVENT_DTYPE = np.dtype(
    {
        "names": [
            "kind", "reason", "side", "order_type", "cmd_index", "market",
            "order_id", "owner", "other_id", "other_owner", "price", "qty",
            "remaining", "other_remaining",
        ],
        "formats": [
            "u1", "u1", "u1", "u1", "<u4", "<u4",
            "<u8", "<u8", "<u8", "<u8", "<i8", "<i8",
            "<i8", "<i8",
        ],
        "offsets": [0, 1, 2, 3, 8, 12, 16, 24, 32, 40, 48, 56, 64, 72],
        "itemsize": 80,
    }
)
