"""The commands of the exchange state machine: everything that changes state.

Every change of an :class:`~lxdex.exchange.Exchange` is one of these values,
applied with :meth:`Exchange.execute` under a sequence number. They are
msgspec structs, so a command log is just their msgpack encoding
(:func:`encode` / :func:`decode`), and gateways build them from JSON or from
the binary order messages without touching exchange state.

Each command carries ``ts``: the exchange time in milliseconds, stamped by the
sequencer (never read from a clock inside the state machine). Executing a
command first moves the exchange clock to ``ts`` when it is later than the
clock (GTD orders expire then, as part of that command's events).

Amounts, prices and quantities are decimal strings, as in the Python API;
``PlaceRecord`` is the compact integer form the binary gateway uses (ticks,
lots, the market's id).
"""

from __future__ import annotations

from typing import Any, Union

import msgspec

# `kw_only` so that `ts` can default; `tag` names the command in the log and on
# the wire; `forbid_unknown_fields` so a typo in a field name is an error.
_OPTS = dict(kw_only=True, tag_field="cmd", forbid_unknown_fields=True, frozen=True)


class Command(msgspec.Struct, **_OPTS):
    """Base of every command. `ts` is the sequencer's exchange time (ms)."""

    ts: int = 0


# -- registry ------------------------------------------------------------------


class AddAsset(Command, tag="add_asset"):
    symbol: str
    decimals: int


class AddMarket(Command, tag="add_market"):
    symbol: str
    base: str
    quote: str
    tick_size: str
    lot_size: str
    min_qty: str | None = None
    min_notional: str = "0"
    band_bps: int = 0
    maker_bps: int = 0
    taker_bps: int = 0


class SetFeeTiers(Command, tag="set_fee_tiers"):
    market: str
    tiers: list[tuple[str, int, int]]


class SetMarketStatus(Command, tag="set_market_status"):
    market: str
    status: str


# -- users and accounts --------------------------------------------------------


class CreateAccount(Command, tag="create_account"):
    """A ledger account with no user profile (market makers, system accounts)."""


class CreateUser(Command, tag="create_user"):
    """A user with a profile and its ledger account (same id)."""

    profile: dict[str, Any]


class UpdateProfile(Command, tag="update_profile"):
    user_id: int
    changes: dict[str, Any]


class SetKyc(Command, tag="set_kyc"):
    user_id: int
    status: str
    level: int


class SetUserStatus(Command, tag="set_user_status"):
    """`active` or `suspended`; mirrored into the ledger (a suspended user
    cannot place or amend orders)."""

    user_id: int
    status: str


class CreateApiKey(Command, tag="create_api_key"):
    """Key material made by the gateway (`accounts.generate_key_material`):
    the log holds only the sealed secret."""

    user_id: int
    api_key: str
    sealed_secret: bytes
    permissions: list[str]
    ip_allow: list[str] | None = None
    label: str = ""


class RevokeApiKey(Command, tag="revoke_api_key"):
    user_id: int
    api_key: str


class AddPriceAlert(Command, tag="add_price_alert"):
    user_id: int
    market: str
    condition: str
    price: str


class CancelPriceAlert(Command, tag="cancel_price_alert"):
    user_id: int
    alert_id: int


class MarkRead(Command, tag="mark_read"):
    user_id: int
    notification_ids: list[int] | None = None


# -- money -----------------------------------------------------------------------


class Deposit(Command, tag="deposit"):
    account: int
    asset: str
    amount: str


class Withdraw(Command, tag="withdraw"):
    account: int
    asset: str
    amount: str


class Transfer(Command, tag="transfer"):
    from_account: int
    to_account: int
    asset: str
    amount: str


# -- trading -----------------------------------------------------------------------


class PlaceOrder(Command, tag="place", omit_defaults=True):
    """An order. `client_id` is the caller's name for it (1 to 36 of
    [A-Za-z0-9-_.:/]), kept in the exchange state while the order is open:
    an account cannot have two open orders with the same one
    (`DUPLICATE_ID`). Fields left at their defaults are left out of the
    encoding (the journal), so an order without a client id costs nothing
    for it.

    `quote_qty` sizes a market order by an amount of the quote asset instead
    of `qty` (exactly one of them): the state machine walks the book for the
    whole lots a buy gets for at most that amount, fee included, or that a
    sell gets at most that amount for (docs/exchange.md); the amount not
    spent stays available."""

    account: int
    market: str
    side: str
    qty: str | None = None
    price: str | None = None
    order_type: str = "limit"
    tif: str | None = None
    stp: str = "none"
    post_only: bool = False
    display_qty: str | None = None
    trigger_price: str | None = None
    expire_ts: int = 0
    client_id: str | None = None
    quote_qty: str | None = None


class PlaceOco(Command, tag="place_oco", omit_defaults=True):
    """A one-cancels-other pair on `side`: a take-profit leg and a stop-loss
    leg, each waiting for its trigger (a SELL pair: take-profit above, stop
    below; a BUY pair the other way round), each a limit order at its
    price once triggered, or a market order when its price is left out
    (market-type BUY legs need a price: `PROTECTION_REQUIRED`). When one
    triggers, the other is cancelled (reason `OCO`); cancelling either
    cancels both. The pair holds once, for its larger leg
    (docs/exchange.md). The value is `{"order_list_id", "order_ids":
    [tp, sl]}`; the list id is the take-profit leg's id."""

    account: int
    market: str
    side: str
    qty: str
    tp_trigger: str
    sl_trigger: str
    tp_price: str | None = None
    sl_price: str | None = None
    stp: str = "none"
    tp_client_id: str | None = None
    sl_client_id: str | None = None


class PlaceBracket(Command, tag="place_bracket", omit_defaults=True):
    """A bracket: an entry order on `side` (limit at `price`, or market when
    `price` is left out), whose fills activate a take-profit and a stop-loss
    exit on the opposite side, sized by what has filled; the exits are an
    OCO pair, and when one triggers the other and any unfilled entry are
    cancelled (`OCO`); an entry that ends without fills takes its exits
    with it (`PARENT`). The value is `{"order_list_id", "order_ids":
    [entry, tp, sl]}`; the list id is the entry's id."""

    account: int
    market: str
    side: str
    qty: str
    tp_trigger: str
    sl_trigger: str
    price: str | None = None
    tp_price: str | None = None
    sl_price: str | None = None
    tif: str | None = None
    stp: str = "none"
    post_only: bool = False
    expire_ts: int = 0
    client_id: str | None = None
    tp_client_id: str | None = None
    sl_client_id: str | None = None


class CancelOrder(Command, tag="cancel"):
    account: int
    order_id: int


class AmendOrder(Command, tag="amend"):
    account: int
    order_id: int
    price: str | None = None
    qty: str | None = None


class CancelReplace(Command, tag="cancel_replace"):
    """Cancel `order_id`, then place `new`, in one command (one sequence
    number: nothing comes between them). The account is `new.account`, and
    the order to cancel must be its and in `new.market`. When the cancel
    fails, nothing is placed unless `allow_failure`; when the placement
    fails after the cancel, the cancel stands (Binance's
    `order/cancelReplace` with `STOP_ON_FAILURE` / `ALLOW_FAILURE`). The
    new order may take the cancelled order's client id."""

    order_id: int
    new: PlaceOrder
    allow_failure: bool = False


class CancelAll(Command, tag="cancel_all"):
    account: int
    market: str | None = None


class ObservePrice(Command, tag="observe_price"):
    """An external (mark) price for a market's triggers and price alerts."""

    market: str
    price: str


class Tick(Command, tag="tick"):
    """Only moves the clock (GTD expiry without other traffic)."""


class Records(Command, tag="records"):
    """A batch of integer-form order commands (COMMAND_DTYPE rows as bytes,
    120 bytes each) from the binary gateway: submit, cancel, amend, mass
    cancel, deposit, withdraw, transfer, in ids, ticks, lots and asset units.
    The batch is one command with one sequence number; its events carry the
    row's index (`cmd_index`)."""

    data: bytes


AnyCommand = Union[
    AddAsset, AddMarket, SetFeeTiers, SetMarketStatus, CreateAccount, CreateUser, UpdateProfile, SetKyc,
    SetUserStatus, CreateApiKey, RevokeApiKey, AddPriceAlert, CancelPriceAlert, MarkRead, Deposit, Withdraw,
    Transfer, PlaceOrder, PlaceOco, PlaceBracket, CancelOrder, AmendOrder, CancelReplace, CancelAll, ObservePrice, Tick, Records,
]

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(AnyCommand)
_json_decoder = msgspec.json.Decoder(AnyCommand)


def encode(cmd: Command) -> bytes:
    """The command's msgpack bytes (its form in the journal)."""
    return _encoder.encode(cmd)


def decode(data: bytes) -> Command:
    """A command from `encode`'s bytes; msgspec.ValidationError names the
    field when they are not a valid command."""
    return _decoder.decode(data)


def from_json(data: bytes | str) -> Command:
    """A command from JSON with a `"cmd"` tag (admin tools, tests)."""
    return _json_decoder.decode(data)


def with_ts(cmd: Command, ts: int) -> Command:
    """The same command stamped with exchange time `ts`."""
    return msgspec.structs.replace(cmd, ts=ts)

