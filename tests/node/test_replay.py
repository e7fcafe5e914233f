"""Recovery's fast path: `Node.open`'s replay of binary batches straight into the core
(`Exchange.replay_records`) leaves the state that executing each decoded
command leaves: clock moves, GTD expiries, self-trade cancels and price
alerts with their notifications, non-canonical and malformed batches."""

from __future__ import annotations

import random
import struct

import msgspec
import numpy as np
import pytest

from lxdex import commands as C
from lxdex.enums import COMMAND_DTYPE, CommandKind, EventKind
from lxdex.exchange import Exchange
from lxdex.node.journal import Journal
from lxdex.node.server import Node, load_master_key

from .nodeutil import two_accounts_config


def _rows(ex: Exchange, rng: random.Random, ts: int, live: list[tuple[int, int]], n: int) -> bytes:
    """`n` rows: limit orders of both users around 50000 (some GTD, some
    with self-trade prevention, many crossing), cancels of live ones, and a
    few rows the core rejects."""
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.25 and live:
            oid, acct = live.pop(rng.randrange(len(live)))
            row = np.zeros(1, COMMAND_DTYPE)
            row["kind"], row["order_id"], row["owner"], row["market"] = CommandKind.CANCEL, oid, acct, 0
            out.append(row.tobytes())
        elif r < 0.28:
            row = np.zeros(1, COMMAND_DTYPE)  # unknown order: rejected
            row["kind"], row["order_id"], row["owner"] = CommandKind.CANCEL, 10**9, 0
            out.append(row.tobytes())
        else:
            side = rng.choice(["buy", "sell"])
            price = str(50_000 + rng.randint(-10, 10))
            gtd = rng.random() < 0.2
            out.append(ex.order_record(rng.randrange(2), "BTC-USD", side, qty=f"{rng.randint(1, 30) / 100:.2f}",
                                       price=price, tif="gtd" if gtd else "gtc",
                                       expire_ts=ts + rng.randint(1, 40) if gtd else 0,
                                       stp=rng.choice(["none", "none", "cancel_taker", "cancel_maker",
                                                       "cancel_both", "decrement"])))
    return b"".join(out)


def _journal(tmp_path, n_batches: int = 120, seed: int = 1) -> tuple[Exchange, list[C.Command]]:
    """Builds, by executing, a journal of setup commands, binary batches,
    price alerts and a few other commands; returns the exchange it left."""
    rng = random.Random(seed)
    ex = Exchange(load_master_key(tmp_path))
    cfg = two_accounts_config()
    cmds: list = cfg.bootstrap(set(), set(), fresh=True)
    ts = 1_000
    payloads = []

    def run(c):
        c = C.with_ts(c, ts)
        out = ex.execute(c, ex.last_seq + 1)
        payloads.append(C.encode(c))
        return out

    for c in cmds:
        run(c)
    live: list[tuple[int, int]] = []
    for b in range(n_batches):
        ts += rng.choice([0, 1, 5, 20])
        if b % 15 == 3:
            for user in (0, 1):
                run(C.AddPriceAlert(user_id=user, market="BTC-USD", condition=rng.choice(["above", "below"]),
                                    price=str(50_000 + rng.randint(-8, 8))))
        if b % 40 == 7:
            run(C.PlaceOrder(account=1, market="BTC-USD", side="buy", qty="0.05", price="49995"))
        out = run(C.Records(data=_rows(ex, rng, ts, live, rng.randint(1, 40))))
        ev = out.events
        acc = ev[ev["kind"] == EventKind.ACCEPTED]
        for oid, i in zip(acc["order_id"].tolist(), acc["cmd_index"].tolist()):
            if ex.core.order_hold(oid) is not None:
                live.append((oid, ex.core.order_hold(oid)[0]))
    # a batch whose length is not whole rows (rejected, clock still moves), and
    # a batch in another msgpack layout (decoded the general way)
    ts += 50
    payloads.append(C.encode(C.Records(ts=ts, data=b"\x00" * 7)))
    ex.execute(C.decode(payloads[-1]), ex.last_seq + 1)
    ts += 50
    rows = _rows(ex, rng, ts, live, 10)
    payloads.append(msgspec.msgpack.encode({"ts": ts, "cmd": "records", "data": rows}))
    ex.execute(C.decode(payloads[-1]), ex.last_seq + 1)
    with Journal.open(tmp_path, sync="none", segment_bytes=8192) as j:
        for i in range(0, len(payloads), 7):
            j.append(payloads[i:i + 7])
    return ex


def test_node_open_replays_binary_batches_in_the_core_to_the_same_state(tmp_path, monkeypatch):
    ex = _journal(tmp_path)
    notices = ex.accounts.snapshot()
    fast = []
    orig = Exchange.replay_records

    def counting(self, *a):
        n, ts = orig(self, *a)
        fast.append(n)
        return n, ts

    monkeypatch.setattr(Exchange, "replay_records", counting)
    node = Node(tmp_path, two_accounts_config(), sync="none")
    rec = node.open()
    node.journal.close()
    assert sum(fast) > 100  # the binary batches went the fast way
    assert (rec.last_seq, rec.state_hash) == (ex.last_seq, ex.state_hash())
    assert node.exchange.accounts.snapshot() == notices
    assert node._last_ts == ex.core.now


def test_fast_replay_owes_the_notifications_of_system_cancels_and_alerts(tmp_path):
    ex = _journal(tmp_path, n_batches=200, seed=4)
    inbox = [(u, n["kind"] if "kind" in n else n) for u in (0, 1) for n in ex.accounts.notifications(u)]
    kinds = {str(k) for _, k in inbox}
    assert any("order_cancelled" in k for k in kinds) and any("alert" in k for k in kinds), kinds
    node = Node(tmp_path, two_accounts_config(), sync="none")
    node.open()
    node.journal.close()
    assert node.exchange.state_hash() == ex.state_hash()
    assert [(u, n["kind"] if "kind" in n else n) for u in (0, 1)
            for n in node.exchange.accounts.notifications(u)] == inbox


def test_replay_listeners_get_every_outcome_from_where_they_need_it(tmp_path):
    ex = _journal(tmp_path, n_batches=30)
    want_from = ex.last_seq // 2

    class Listener:
        replay_from = want_from

        def __init__(self):
            self.seqs = []

        def __call__(self, pairs):
            self.seqs += [o.seq for _, o in pairs]

    class Everything(Listener):
        replay_from = 1

    a, b = Listener(), Everything()
    node = Node(tmp_path, two_accounts_config(), sync="none")
    node.replay_listeners += [a, b]
    rec = node.open()
    node.journal.close()
    assert rec.state_hash == ex.state_hash()
    assert a.seqs == b.seqs == list(range(1, ex.last_seq + 1))  # the lowest need decides for all

    alone = Listener()
    node = Node(tmp_path, two_accounts_config(), sync="none")
    node.replay_listeners.append(alone)
    assert node.open().state_hash == ex.state_hash()
    node.journal.close()
    assert alone.seqs == list(range(want_from, ex.last_seq + 1))


def test_replay_records_stops_at_other_commands(tmp_path):
    ex = Exchange()
    payload = C.encode(C.Tick(ts=5))
    spans = struct.pack("<QQ", 0, len(payload))
    assert ex.replay_records(payload, spans, 0, 1) == (0, 0)
    assert ex.last_seq == 0 and ex.core.now == 0
    with pytest.raises(ValueError, match="seq"):
        ex.replay_records(payload, spans, 0, 2)
    with pytest.raises(ValueError, match="outside buf"):
        ex.replay_records(payload, struct.pack("<QQ", 0, len(payload) + 1), 0, 1)
