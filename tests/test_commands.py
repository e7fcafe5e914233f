"""The command log: `lxdex.commands` values applied by `Exchange.execute`
under sequence numbers; users wired into the exchange (suspension, system
cancel notifications, price alerts); snapshot + replay equality."""

import random
from decimal import Decimal

import msgspec
import numpy as np
import pytest

pytest.importorskip("lxdex._core")

from lxdex import Exchange  # noqa: E402
from lxdex import commands as C  # noqa: E402
from lxdex.accounts import generate_key_material, sign_request  # noqa: E402
from lxdex.enums import COMMAND_DTYPE, CommandKind, EventKind, Reason, Side, TimeInForce  # noqa: E402

KEY = bytes(range(32))
ALICE = {"display_name": "Alice", "email": "alice@example.com", "country": "DE"}
BOB = {"display_name": "Bob", "email": "bob@example.com", "country": "US"}

SETUP = [
    C.AddAsset(symbol="BTC", decimals=8),
    C.AddAsset(symbol="USD", decimals=2),
    C.AddMarket(symbol="BTC-USD", base="BTC", quote="USD", tick_size="1", lot_size="0.01", maker_bps=-1,
                taker_bps=5),
    C.CreateUser(profile=ALICE, ts=1_000),
    C.CreateUser(profile=BOB, ts=1_000),
    C.Deposit(account=0, asset="USD", amount="100000", ts=1_000),
    C.Deposit(account=1, asset="BTC", amount="10", ts=1_000),
]


def run(cmds, ex=None):
    ex = ex or Exchange(KEY)
    return ex, [ex.execute(c) for c in cmds]


def core_state(ex):
    """Everything but the sequence number (a rejected command takes one)."""
    return ex.core.snapshot(), ex.accounts.snapshot()


def test_every_command_round_trips_through_msgpack_and_json():
    cmds = SETUP + [
        C.SetFeeTiers(market="BTC-USD", tiers=[("1000", -1, 4)]),
        C.SetMarketStatus(market="BTC-USD", status="halted"),
        C.CreateAccount(), C.UpdateProfile(user_id=0, changes={"country": "FR"}),
        C.SetKyc(user_id=0, status="verified", level=2), C.SetUserStatus(user_id=1, status="suspended"),
        C.CreateApiKey(user_id=0, api_key="k" * 20, sealed_secret=b"\x01" * 60, permissions=["read"]),
        C.RevokeApiKey(user_id=0, api_key="k" * 20),
        C.AddPriceAlert(user_id=0, market="BTC-USD", condition="above", price="1"),
        C.CancelPriceAlert(user_id=0, alert_id=1), C.MarkRead(user_id=0),
        C.Withdraw(account=0, asset="USD", amount="1"), C.Transfer(from_account=0, to_account=1, asset="USD", amount="1"),
        C.PlaceOrder(account=0, market="BTC-USD", side="buy", qty="1", price="10", tif="gtd", expire_ts=5),
        C.PlaceOrder(account=0, market="BTC-USD", side="buy", qty="1", price="10", client_id="my-order.1:a/b"),
        C.PlaceOrder(account=0, market="BTC-USD", side="buy", order_type="market", quote_qty="250.5"),
        C.CancelReplace(order_id=1, new=C.PlaceOrder(account=0, market="BTC-USD", side="sell", qty="1", price="9",
                                                     client_id="x"), allow_failure=True, ts=7),
        C.PlaceOco(account=1, market="BTC-USD", side="sell", qty="1", tp_trigger="120", tp_price="120",
                   sl_trigger="80", tp_client_id="tp1"),
        C.PlaceBracket(account=0, market="BTC-USD", side="buy", qty="1", price="100", tp_trigger="110",
                       sl_trigger="90", sl_price="89", tif="gtc", client_id="b1"),
        C.CancelOrder(account=0, order_id=1), C.AmendOrder(account=0, order_id=1, qty="0.5"),
        C.CancelAll(account=0), C.ObservePrice(market="BTC-USD", price="5"), C.Tick(ts=9),
        C.Records(data=bytes(120)),
    ]
    assert {type(c) for c in cmds} == set(C.AnyCommand.__args__), "every command kind is covered"
    for c in cmds:
        assert C.decode(C.encode(c)) == c
        assert C.from_json(msgspec.json.encode(c)) == c


@pytest.mark.parametrize("raw, field", [
    (b'{"cmd":"deposit","account":"0","asset":"USD","amount":"1"}', "account"),
    (b'{"cmd":"deposit","account":0,"asset":"USD"}', "amount"),
    (b'{"cmd":"deposit","account":0,"asset":"USD","amount":"1","amont":"2"}', "amont"),
    (b'{"cmd":"launch_rockets"}', "cmd"),
    (b'{"cmd":"place","account":0,"market":"BTC-USD","side":"buy","qty":1}', "qty"),
])
def test_malformed_commands_are_refused_naming_the_field(raw, field):
    with pytest.raises(msgspec.ValidationError, match=field):
        C.from_json(raw)


def test_sequence_numbers_are_consecutive_and_enforced():
    ex, outs = run(SETUP)
    assert [o.seq for o in outs] == list(range(1, len(SETUP) + 1)) and ex.last_seq == len(SETUP)
    with pytest.raises(ValueError, match="seq: expected 8, got 9"):
        ex.execute(C.Tick(), seq=9)
    assert ex.execute(C.Tick(), seq=8).ok


@pytest.mark.parametrize("bad, reason", [
    (C.Deposit(account=0, asset="EUR", amount="1"), "UNKNOWN_ASSET"),
    (C.Deposit(account=0, asset="USD", amount="0.001"), "INVALID_AMOUNT"),
    (C.Withdraw(account=1, asset="USD", amount="1"), "INSUFFICIENT_FUNDS"),
    (C.Transfer(from_account=0, to_account=99, asset="USD", amount="1"), "UNKNOWN_ACCOUNT"),
    (C.PlaceOrder(account=0, market="ETH-USD", side="buy", qty="1", price="1"), "UNKNOWN_MARKET"),
    (C.PlaceOrder(account=0, market="BTC-USD", side="buy", qty="1", price="1000000"), "INSUFFICIENT_FUNDS"),
    (C.PlaceOrder(account=0, market="BTC-USD", side="up", qty="1", price="1"), "INVALID_COMMAND"),
    (C.CancelOrder(account=0, order_id=42), "UNKNOWN_ORDER"),
    (C.CreateUser(profile={"display_name": "X", "email": "not-an-email", "country": "DE"}), "INVALID_COMMAND"),
    (C.SetKyc(user_id=7, status="verified", level=1), "INVALID_COMMAND"),
    (C.AddMarket(symbol="BTC-USD", base="BTC", quote="USD", tick_size="1", lot_size="1"), "INVALID_COMMAND"),
    (C.AddPriceAlert(user_id=0, market="NOPE-USD", condition="above", price="1"), "UNKNOWN_MARKET"),
    (C.Records(data=b"\x00" * 7), "INVALID_COMMAND"),
])
def test_rejected_commands_take_a_seq_and_change_nothing(bad, reason):
    ex, _ = run(SETUP)
    before = core_state(ex)
    out = ex.execute(bad)
    assert not out.ok and out.error["reason"] == reason and out.error["message"]
    assert out.seq == len(SETUP) + 1 and ex.last_seq == out.seq
    assert core_state(ex) == before


def test_rejected_user_names_the_field():
    ex, _ = run(SETUP)
    out = ex.execute(C.PlaceOrder(account=0, market="BTC-USD", side="up", qty="1", price="1"))
    assert out.error["field"] == "side" and "buy, sell" in out.error["message"]
    out = ex.execute(C.CreateUser(profile={"display_name": "", "email": "e@example.com", "country": "DE"}))
    assert out.error["field"] == "display_name"
    assert ex.core.account_count == 2, "no ledger account without its user"


def test_users_share_ids_with_ledger_accounts_and_suspension_is_mirrored():
    ex, outs = run(SETUP)
    assert outs[3].value == {"user_id": 0} and outs[4].value == {"user_id": 1}
    assert outs[3].notices[0]["type"] == "user_created"
    place = C.PlaceOrder(account=1, market="BTC-USD", side="sell", qty="1", price="100", ts=2_000)
    assert ex.execute(place).ok
    assert ex.execute(C.SetUserStatus(user_id=1, status="suspended", ts=2_000)).ok
    out = ex.execute(place)
    assert out.error["reason"] == "ACCOUNT_SUSPENDED"
    assert ex.execute(C.CancelAll(account=1)).ok, "a suspended user can still cancel"
    assert ex.execute(C.SetUserStatus(user_id=1, status="active")).ok
    assert ex.execute(place).ok
    # The Python API path mirrors too.
    ex.suspend(0)
    assert ex.accounts.user(0)["status"] == "suspended"
    assert not ex.execute(C.PlaceOrder(account=0, market="BTC-USD", side="buy", qty="1", price="1")).ok


def test_system_cancels_notify_the_user_but_own_cancels_do_not():
    ex, _ = run(SETUP)
    ex.execute(C.PlaceOrder(account=0, market="BTC-USD", side="buy", qty="1", price="100", tif="gtd",
                            expire_ts=5_000, ts=2_000))
    ex.execute(C.PlaceOrder(account=0, market="BTC-USD", side="buy", qty="1", price="90", ts=2_000))
    assert ex.execute(C.CancelOrder(account=0, order_id=2, ts=2_000)).notices == []
    out = ex.execute(C.Tick(ts=6_000))
    assert [e.reason for e in out.clock_events if e.kind == EventKind.CANCELLED] == [Reason.EXPIRED]
    [n] = out.notices
    assert n["user_id"] == 0 and n["kind"] == "order_cancelled"
    assert n["payload"] == {"order_id": 1, "market": "BTC-USD", "reason": "expired", "qty": "1.00"}
    assert ex.accounts.notifications(0)[0]["notification_id"] == n["notification_id"]
    # Self-trade prevention cancelling a resting order is a system cancel too.
    ex.execute(C.Deposit(account=0, asset="BTC", amount="1"))
    ex.execute(C.PlaceOrder(account=0, market="BTC-USD", side="sell", qty="1", price="100"))
    out = ex.execute(C.PlaceOrder(account=0, market="BTC-USD", side="buy", qty="1", price="100", stp="cancel_maker"))
    assert [n["payload"]["reason"] for n in out.notices] == ["stp"]
    # Closing a market notifies every owner of a cancelled order.
    ex.execute(C.PlaceOrder(account=1, market="BTC-USD", side="sell", qty="2", price="120"))
    out = ex.execute(C.SetMarketStatus(market="BTC-USD", status="closed"))
    assert sorted((n["user_id"], n["payload"]["reason"]) for n in out.notices) == [(0, "market_closed"), (1, "market_closed")]


def test_trades_and_observed_prices_fire_price_alerts_once():
    ex, _ = run(SETUP)
    ex.execute(C.AddPriceAlert(user_id=1, market="BTC-USD", condition="above", price="95"))
    ex.execute(C.AddPriceAlert(user_id=0, market="BTC-USD", condition="below", price="50"))
    ex.execute(C.PlaceOrder(account=1, market="BTC-USD", side="sell", qty="1", price="100"))
    out = ex.execute(C.PlaceOrder(account=0, market="BTC-USD", side="buy", qty="0.5", price="100"))
    assert [(n["user_id"], n["payload"]["observed_price"]) for n in out.notices] == [(1, "100")]
    assert ex.execute(C.PlaceOrder(account=0, market="BTC-USD", side="buy", qty="0.5", price="100")).notices == []
    out = ex.execute(C.ObservePrice(market="BTC-USD", price="40"))
    assert [(n["user_id"], n["kind"]) for n in out.notices] == [(0, "price_alert")]


def test_api_keys_through_commands_verify_signed_requests():
    ex, _ = run(SETUP)
    km = generate_key_material(KEY, 0)
    out = ex.execute(C.CreateApiKey(user_id=0, api_key=km.api_key, sealed_secret=km.sealed_secret,
                                    permissions=["read", "trade"], ts=2_000))
    assert out.ok and out.value["secret"] == km.secret
    assert km.secret not in repr(out.notices) and km.secret.encode() not in ex.snapshot()
    payload = "symbol=BTC-USD&timestamp=2000"
    assert ex.accounts.verify_request(km.api_key, payload, sign_request(km.secret, payload), None, "trade") == 0
    # A restored exchange with the same master key still verifies it.
    ex2 = Exchange.restore(ex.snapshot(), KEY)
    assert ex2.accounts.verify_request(km.api_key, payload, sign_request(km.secret, payload), None, "trade") == 0


def _records(rows):
    a = np.zeros(len(rows), COMMAND_DTYPE)
    for i, r in enumerate(rows):
        for k, v in r.items():
            a[i][k] = v
    return a.tobytes()


def test_records_batch_is_one_command_and_events_name_their_row():
    ex, _ = run(SETUP)
    data = _records([
        {"kind": CommandKind.SUBMIT, "owner": 1, "market": 0, "side": Side.SELL, "price": 100, "qty": 100,
         "tif": TimeInForce.GTC},
        {"kind": CommandKind.SUBMIT, "owner": 0, "market": 0, "side": Side.BUY, "price": 100, "qty": 40,
         "tif": TimeInForce.GTC},
        {"kind": CommandKind.CANCEL, "owner": 0, "market": 0, "order_id": 999},
    ])
    out = ex.execute(C.Records(data=data, ts=2_000))
    assert out.ok and out.seq == len(SETUP) + 1
    ev = out.events
    assert ev.dtype.names[4] == "cmd_index"
    fills = ev[ev["kind"] == EventKind.FILL]
    assert len(fills) == 1 and fills["cmd_index"][0] == 1 and fills["qty"][0] == 40
    rej = ev[ev["kind"] == EventKind.REJECTED]
    assert rej["cmd_index"].tolist() == [2] and rej["reason"][0] == Reason.UNKNOWN_ORDER
    assert ex.balance(0, "BTC") == (ex.balance(0, "BTC")[0], 0) and str(ex.balance(0, "BTC")[0]) == "0.4"


def _random_log(rng: random.Random, n: int) -> list:
    cmds = list(SETUP) + [C.CreateAccount(), C.Deposit(account=2, asset="USD", amount="5000"),
                          C.Deposit(account=2, asset="BTC", amount="3")]
    ts = 1_000
    for _ in range(n):
        ts += rng.choice([0, 0, 1, 250, 1_000])
        acct = rng.randrange(3)
        r = rng.random()
        if r < 0.55:
            cmds.append(C.PlaceOrder(
                account=acct, market="BTC-USD", side=rng.choice(["buy", "sell"]),
                qty=f"{rng.randint(1, 300) / 100:.2f}", price=str(rng.randint(90, 110)),
                tif=rng.choice(["gtc", "ioc", "gtd"]) if r < 0.5 else "gtc",
                expire_ts=0, ts=ts, client_id=rng.choice([None, None, "a", "b", "c"])))
            if cmds[-1].tif == "gtd":
                cmds[-1] = msgspec.structs.replace(cmds[-1], expire_ts=ts + rng.randint(1, 3_000))
            if rng.random() < 0.15:
                cmds[-1] = C.CancelReplace(order_id=rng.randint(1, 60), allow_failure=rng.random() < 0.5,
                                           new=msgspec.structs.replace(cmds[-1], ts=0), ts=ts)
        elif r < 0.62:
            lo, hi = rng.randint(90, 99), rng.randint(102, 110)
            if rng.random() < 0.5:
                side = rng.choice(["buy", "sell"])
                tp, sl = (hi, lo) if side == "sell" else (lo, hi)
                cmds.append(C.PlaceOco(account=acct, market="BTC-USD", side=side, qty=f"{rng.randint(1, 200) / 100:.2f}",
                                       tp_trigger=str(tp), sl_trigger=str(sl), tp_price=str(tp),
                                       sl_price=rng.choice([None, str(sl)]) if side == "sell" else str(sl + 1), ts=ts))
            else:
                side = rng.choice(["buy", "sell"])
                tp, sl = (hi, lo) if side == "buy" else (lo, hi)
                cmds.append(C.PlaceBracket(account=acct, market="BTC-USD", side=side, qty=f"{rng.randint(1, 200) / 100:.2f}",
                                           price=str(rng.randint(lo + 1, hi - 1)), tp_trigger=str(tp), sl_trigger=str(sl),
                                           tp_price=str(tp), sl_price=str(sl), ts=ts))
        elif r < 0.75:
            cmds.append(C.CancelOrder(account=acct, order_id=rng.randint(1, 60), ts=ts))
        elif r < 0.8:
            cmds.append(C.AmendOrder(account=acct, order_id=rng.randint(1, 60), qty="0.01", ts=ts))
        elif r < 0.85:
            cmds.append(C.CancelAll(account=acct, ts=ts))
        elif r < 0.9:
            cmds.append(C.AddPriceAlert(user_id=rng.randrange(2), market="BTC-USD",
                                        condition=rng.choice(["above", "below"]), price=str(rng.randint(90, 110)),
                                        ts=ts))
        elif r < 0.93:
            cmds.append(C.SetUserStatus(user_id=rng.randrange(2), status=rng.choice(["active", "active", "active", "suspended"]), ts=ts))
        elif r < 0.96:
            cmds.append(C.Withdraw(account=acct, asset="USD", amount=str(rng.randint(1, 500)), ts=ts))
        else:
            cmds.append(C.Tick(ts=ts))
    return cmds


def open_client_ids(ex) -> dict:
    """{order id: (account, client id)} of the open orders with a client id, checked against the core."""
    live = {o["order_id"] for a in range(ex.core.account_count) for o in ex.open_orders(a)}
    assert set(ex._cid_of) <= live, "a closed order's client id was kept"
    assert {v: k for k, v in ex._cid_of.items()} == ex._cid_order
    return dict(ex._cid_of)


@pytest.mark.parametrize("seed", range(4))
def test_replay_from_a_snapshot_reaches_the_same_state(seed):
    log = [C.decode(C.encode(c)) for c in _random_log(random.Random(seed), 400)]
    full, outs = run(log)
    seen_cids = 0
    check, _ = run(log[:len(SETUP)])
    for c in log[len(SETUP):]:
        check.execute(c)
        seen_cids += bool(open_client_ids(check))
    assert seen_cids > 20 and any(isinstance(c, C.CancelReplace) and o.ok for c, o in zip(log, outs))
    assert any(isinstance(c, C.PlaceOco) and o.ok for c, o in zip(log, outs))
    assert any(isinstance(c, C.PlaceBracket) and o.ok for c, o in zip(log, outs))
    assert sum(o.ok for o in outs) > 150 and any(e.kind == EventKind.FILL for o in outs for e in o.events)
    again, outs2 = run(log)
    assert again.state_hash() == full.state_hash()
    assert [(o.seq, o.error, o.notices) for o in outs] == [(o.seq, o.error, o.notices) for o in outs2]
    cut = random.Random(seed).randrange(len(SETUP), len(log))
    part, _ = run(log[:cut])
    restored = Exchange.restore(part.snapshot(), KEY)
    assert restored.last_seq == cut and restored.state_hash() == part.state_hash()
    for c in log[cut:]:
        restored.execute(c)
    assert restored.state_hash() == full.state_hash()
    assert restored.accounts == full.accounts
    assert open_client_ids(restored) == open_client_ids(full)


def test_snapshot_rejects_corruption():
    ex, _ = run(SETUP)
    snap = ex.snapshot()
    with pytest.raises(ValueError):
        Exchange.restore(snap[:30], KEY)
    with pytest.raises(ValueError):
        Exchange.restore(b"XXXX" + snap[4:], KEY)


# -- client order ids and cancel-replace ------------------------------------------------------------------------


def place(account=0, side="buy", qty="1", price="10", **kw):
    return C.PlaceOrder(account=account, market="BTC-USD", side=side, qty=qty, price=price, **kw)


def test_client_ids_are_unique_among_open_orders_and_freed_when_they_close():
    ex, _ = run(SETUP)
    first = ex.execute(place(client_id="bot-1"))
    assert first.ok and ex.order_by_client_id(0, "bot-1") == first.value["order_id"]
    assert ex.client_order_id(first.value["order_id"]) == "bot-1"
    before = (core_state(ex), dict(ex._cid_of))
    dup = ex.execute(place(price="11", client_id="bot-1"))
    assert dup.error["reason"] == "DUPLICATE_ID" and "client_id" in dup.error["message"]
    assert (core_state(ex), dict(ex._cid_of)) == before
    assert ex.open_orders(0)[0]["order_id"] == first.value["order_id"] and len(ex.open_orders(0)) == 1
    # another account may use the same client id
    assert ex.execute(place(account=1, side="sell", price="100", client_id="bot-1")).ok
    # bad client ids are refused naming the field
    for bad in ("", "x" * 37, "a b", "é", "a\n"):
        out = ex.execute(place(client_id=bad))
        assert out.error["reason"] == "INVALID_COMMAND" and out.error["field"] == "client_id", bad
    # filled by someone else's order: the id is free again (and gone from the state)
    taker = ex.execute(place(account=1, side="sell", price="10"))
    assert taker.ok and ex.order_by_client_id(0, "bot-1") is None and first.value["order_id"] not in ex._cid_of
    assert ex.execute(place(client_id="bot-1")).ok
    # an order that does not rest (IOC, nothing to match) keeps nothing
    ioc = ex.execute(place(price="1", tif="ioc", client_id="ioc-1"))
    assert ioc.ok and ex.order_by_client_id(0, "ioc-1") is None


def test_no_client_ids_leave_the_snapshot_as_it_was():
    """Orders placed without a client id store nothing: the snapshot has no client id entry at all."""
    ex, _ = run(SETUP + [place(), place(price="11")])
    assert b"client_ids" not in ex.snapshot()
    ex.execute(place(price="12", client_id="k"))
    assert b"client_ids" in ex.snapshot()
    ex.execute(C.CancelAll(account=0))
    assert b"client_ids" not in ex.snapshot() and not ex._cid_of and not ex._cid_order


def test_client_ids_closed_by_expiry_and_records_batches_are_pruned():
    ex, _ = run(SETUP)
    gtd = ex.execute(place(tif="gtd", expire_ts=5_000, client_id="gtd", ts=2_000))
    rest = ex.execute(place(price="100", qty="0.5", client_id="maker", ts=2_000))
    assert gtd.ok and rest.ok and len(ex._cid_of) == 2
    ex.execute(C.Tick(ts=6_000))  # expires the GTD order
    assert ex.order_by_client_id(0, "gtd") is None and list(ex._cid_of) == [rest.value["order_id"]]
    data = _records([{"kind": CommandKind.SUBMIT, "owner": 1, "market": 0, "side": Side.SELL, "price": 100,
                      "qty": 50, "tif": TimeInForce.IOC}])
    assert ex.execute(C.Records(data=data, ts=7_000)).ok
    assert not ex._cid_of and ex.order_by_client_id(0, "maker") is None


def test_cancel_replace_is_one_command():
    ex, _ = run(SETUP)
    old = ex.execute(place(client_id="q")).value["order_id"]
    out = ex.execute(C.CancelReplace(order_id=old, new=place(price="11", client_id="q")))
    assert out.ok and out.value["cancelled"] and out.value["place_error"] is None
    new = out.value["order_id"]
    assert [o["order_id"] for o in ex.open_orders(0)] == [new] and ex.order_by_client_id(0, "q") == new
    kinds = [(e.kind, e.order_id) for e in out.events]
    assert kinds[0] == (EventKind.CANCELLED, old) and (EventKind.ACCEPTED, new) in kinds
    # STOP_ON_FAILURE: an unknown order to cancel stops it; nothing changes
    before = core_state(ex)
    out = ex.execute(C.CancelReplace(order_id=999, new=place(price="12")))
    assert out.error["reason"] == "UNKNOWN_ORDER" and out.error["cancel"]["reason"] == "UNKNOWN_ORDER"
    assert out.error["place"] is None and core_state(ex) == before
    # another account's order cannot be cancelled through it
    out = ex.execute(C.CancelReplace(order_id=new, new=place(account=1, side="sell", price="500")))
    assert out.error["reason"] == "UNKNOWN_ORDER" and core_state(ex) == before
    # ALLOW_FAILURE: the new order is placed anyway
    out = ex.execute(C.CancelReplace(order_id=999, new=place(price="12"), allow_failure=True))
    assert out.ok and not out.value["cancelled"] and out.value["cancel_error"]["reason"] == "UNKNOWN_ORDER"
    assert len(ex.open_orders(0)) == 2
    # both fail: rejected, nothing changed, both errors told
    before = core_state(ex)
    out = ex.execute(C.CancelReplace(order_id=999, new=place(qty="0.001"), allow_failure=True))
    assert out.error["cancel"]["reason"] == "UNKNOWN_ORDER" and out.error["place"]["reason"] == "OFF_LOT_GRID"
    assert core_state(ex) == before
    # the cancel done, the new order refused: the cancel stands
    out = ex.execute(C.CancelReplace(order_id=new, new=place(qty="100000")))
    assert out.ok and out.value["cancelled"] and out.value["place_error"]["reason"] == "INSUFFICIENT_FUNDS"
    assert new not in [o["order_id"] for o in ex.open_orders(0)] and ex.order_by_client_id(0, "q") is None
    # a duplicate client id of another open order fails the placement
    keep = ex.open_orders(0)[0]["order_id"]
    ex.execute(place(price="13", client_id="taken"))
    out = ex.execute(C.CancelReplace(order_id=keep, new=place(price="14", client_id="taken")))
    assert out.ok and out.value["place_error"]["reason"] == "DUPLICATE_ID"


def test_oco_and_bracket_commands_hold_once_and_release_everything():
    ex, outs = run(SETUP + [
        # Bob sells 2 BTC OCO: take profit at 120, stop at 80 (market). One hold of 2 BTC for both legs.
        C.PlaceOco(account=1, market="BTC-USD", side="sell", qty="2", tp_trigger="120", tp_price="120",
                   sl_trigger="80", tp_client_id="tp", sl_client_id="sl", ts=2_000),
        # Alice buys 1 BTC at 100 with exits at 110 / 90 (limit 89).
        C.PlaceBracket(account=0, market="BTC-USD", side="buy", qty="1", price="100", tp_trigger="110",
                       sl_trigger="90", sl_price="89", ts=2_000),
    ])
    assert [o.error for o in outs] == [None] * len(outs)
    assert outs[-2].value == {"order_list_id": 1, "order_ids": [1, 2]}
    assert outs[-1].value == {"order_list_id": 3, "order_ids": [3, 4, 5]}
    assert ex.balance(1, "BTC") == (Decimal("8"), Decimal("2"))
    assert ex.order_by_client_id(1, "sl") == 2
    assert ex.order_list(2) == {"order_list_id": 1, "contingency": "oco", "entry": None, "tp": 1, "sl": 2}
    assert [o.get("order_list_id") for o in ex.open_orders(0)] == [3, 3, 3]
    # Bad input is refused naming the field, and changes nothing.
    before = core_state(ex)
    for bad, field in [
        (C.PlaceOco(account=1, market="BTC-USD", side="sell", qty="2", tp_trigger="80", sl_trigger="120"), "bracket/oco"),
        (C.PlaceOco(account=1, market="BTC-USD", side="sell", qty="0.001", tp_trigger="120", sl_trigger="80"), "qty"),
        (C.PlaceOco(account=1, market="BTC-USD", side="sell", qty="2", tp_trigger="120.5", sl_trigger="80"), "tp_trigger"),
        (C.PlaceOco(account=1, market="BTC-USD", side="sell", qty="9", tp_trigger="120", sl_trigger="80"), "funds"),
        (C.PlaceOco(account=0, market="BTC-USD", side="buy", qty="1", tp_trigger="80", sl_trigger="120",
                    tp_price="80"), "price"),
        (C.PlaceOco(account=1, market="BTC-USD", side="sell", qty="1", tp_trigger="120", sl_trigger="80",
                    tp_client_id="tp"), "tp_client_id"),
        (C.PlaceBracket(account=0, market="BTC-USD", side="buy", qty="1", price="100", tp_trigger="95",
                        sl_trigger="90"), "bracket/oco"),
        (C.AmendOrder(account=0, order_id=3, price="99"), "order_id"),
    ]:
        out = ex.execute(bad)
        assert out.error is not None and f"{field}:" in out.error["message"], (bad, out.error)
        assert core_state(ex) == before
    # Cancelling one leg cancels both and frees all; the bracket's entry takes its exits with it (PARENT).
    ex.execute(C.CancelOrder(account=1, order_id=1))
    ex.execute(C.CancelOrder(account=0, order_id=3))
    assert ex.balance(1, "BTC") == (Decimal("10"), Decimal("0"))
    assert ex.balance(0, "USD") == (Decimal("100000"), Decimal("0"))
    assert ex.open_orders(0) == [] and ex.open_orders(1) == []
    assert ex.order_by_client_id(1, "sl") is None


def test_quote_sized_market_orders_spend_at_most_the_amount():
    ex, outs = run(SETUP + [
        # Bob offers 0.5 BTC at 100 and 1 BTC at 101 (lots of 0.01 BTC: 1 USD and 1.01 USD each).
        C.PlaceOrder(account=1, market="BTC-USD", side="sell", qty="0.5", price="100", ts=2_000),
        C.PlaceOrder(account=1, market="BTC-USD", side="sell", qty="1", price="101", ts=2_000),
    ])
    assert all(o.ok for o in outs)
    plain = C.PlaceOrder(account=0, market="BTC-USD", side="buy", qty="1", price="10")
    assert b"quote_qty" not in C.encode(plain), "an unset quote_qty costs the journal nothing"
    cmd = C.PlaceOrder(account=0, market="BTC-USD", side="buy", order_type="market", quote_qty="80", ts=3_000)
    assert b"qty" in C.encode(cmd) and C.decode(C.encode(cmd)) == cmd
    out = ex.execute(cmd)
    assert out.ok, out.error
    # 50 lots at 100: 50 USD + fee 0.03 (5 bps, rounded up per fill); then 29 lots at 101: 29.29 + 0.02.
    # A 30th lot at 101 (1.01 + its fee) would pass 80 USD.
    fills = [e for e in out.events if e.kind == EventKind.FILL]
    assert [(e.price, e.qty) for e in fills] == [(100, 50), (101, 29)]
    spent = Decimal("100000") - ex.balance(0, "USD")[0]
    assert spent == Decimal("50") + Decimal("0.03") + Decimal("29.29") + Decimal("0.02") and spent <= 80
    assert ex.balance(0, "USD")[1] == 0 and ex.balance(0, "BTC") == (Decimal("0.79"), Decimal("0"))
    # A sell sized by its proceeds (before the fee): 0.2 BTC of Alice's at Bob's bid of 99.
    ex.execute(C.Deposit(account=1, asset="USD", amount="1000", ts=3_000))
    assert ex.execute(C.PlaceOrder(account=1, market="BTC-USD", side="buy", qty="1", price="99", ts=3_000)).ok
    out = ex.execute(C.PlaceOrder(account=0, market="BTC-USD", side="sell", order_type="market",
                                  quote_qty="20.5", ts=3_000))
    assert [(e.price, e.qty) for e in out.events if e.kind == EventKind.FILL] == [(99, 20)]
    # Bad input is refused naming the field, and changes nothing.
    before = core_state(ex)
    for bad, field in [
        (dict(side="buy", order_type="market", qty="1", quote_qty="10"), "quote_qty"),
        (dict(side="buy", order_type="limit", price="100", quote_qty="10"), "quote_qty"),
        (dict(side="buy", order_type="market", quote_qty="0"), "quote_qty"),
        (dict(side="buy", order_type="market", quote_qty="-3"), "quote_qty"),
        (dict(side="buy", order_type="market", quote_qty="0.001"), "quote_qty"),
        (dict(side="buy", order_type="market", quote_qty="0.5"), "quote_qty"),  # not one lot's worth
        (dict(side="buy", order_type="market", quote_qty="1000000"), "funds"),
        (dict(side="buy", order_type="market"), "qty"),
        (dict(side="buy", order_type="market", quote_qty="10", tif="gtc"), "tif"),
    ]:
        out = ex.execute(C.PlaceOrder(account=0, market="BTC-USD", ts=3_000, **bad))
        assert out.error is not None and f"{field}:" in out.error["message"], (bad, out.error)
        assert core_state(ex) == before
