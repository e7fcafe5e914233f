"""Node recovery in process: snapshots plus journal tail give back the same
state hash; a torn journal tail is cut to the last good record; a damaged
newest snapshot falls back to an older one and a longer journal tail; a
state that cannot be recovered is refused with a clear error."""

from __future__ import annotations

import logging
import os
import random
import signal

import pytest

from lxdex import commands as C
from lxdex.exchange import Exchange
from lxdex.node.journal import Journal
from lxdex.node.server import Node

from .nodeutil import two_accounts_config


def _load(node: Node, n: int, seed: int = 3) -> None:
    rng = random.Random(seed)
    futs = []
    for _ in range(n):
        acct = rng.randrange(2)
        if rng.random() < 0.8:
            futs.append(node.submit(C.PlaceOrder(account=acct, market="BTC-USD", side=rng.choice(["buy", "sell"]),
                                                 qty=f"{rng.randint(1, 50) / 100:.2f}",
                                                 price=str(rng.randint(49_900, 50_100)))))
        else:
            futs.append(node.submit(C.CancelAll(account=acct, market="BTC-USD")))
    for f in futs:
        f.result(10)


def _cfg(**kw):
    return two_accounts_config(snapshot_every=300, batch_max=64, journal_segment_bytes=16 << 10, **kw)


def _reopen(path) -> Node:
    n = Node(path, _cfg(), sync="none")
    n.open()
    return n


def test_snapshots_compact_the_journal_and_recovery_gives_the_same_hash(tmp_path):
    node = Node(tmp_path, _cfg(), sync="none")
    node.start()
    _load(node, 2_000)
    seq, h = node.state_hash()
    node._thread, thread = None, node._thread  # simulate a crash: no final snapshot
    node._stopping.set()
    node._queue.put(None)
    thread.join()
    node.journal.close()
    assert len(node.snapshots.seqs()) == 3 and node.journal.first_seq > 1  # compacted
    again = _reopen(tmp_path)
    assert again.recovery.snapshot_seq == max(node.snapshots.seqs()) and again.recovery.replayed > 0
    assert again.state_hash() == (seq, h)
    again.journal.close()


def _crash(node: Node) -> None:
    """Stops the sequencer as a crash would: no final snapshot, the history
    writer killed without committing what it has not committed yet."""
    node._thread, thread = None, node._thread
    node._stopping.set()
    node._queue.put(None)
    thread.join()
    node.journal.close()
    if node.history is not None:
        node.history._proc.kill()
        node.history._proc.wait()


def _history_order_ids(node: Node) -> set[int]:
    ids: set[int] = set()
    for account in (0, 1):
        from_id = 0
        while page := node.history.orders(account, from_id=from_id, limit=1000):
            ids |= {o["order_id"] for o in page}
            from_id = page[-1]["order_id"] + 1
    return ids


@pytest.mark.parametrize("before", [400, 0], ids=["behind-the-newest", "behind-every-snapshot"])
def test_a_history_store_behind_the_newest_snapshot_gets_what_it_lacks(tmp_path, caplog, before):
    """The history store commits a little behind the journal; a crash right
    after snapshots leaves it behind the newest one. The node keeps a
    snapshot at or before the history's seq (and the journal from there) and
    recovers from it, so that the replay hands the history every outcome it
    has not written: no order missing from it after the restart. Behind
    every snapshot, the journal is kept from its start."""
    node = Node(tmp_path, _cfg(), sync="none", history=True)
    node.start()
    _load(node, before)
    node.history.flush()
    behind = node.history.last_seq
    os.kill(node.history._proc.pid, signal.SIGSTOP)  # the writer stops committing (a slow disk, a long transaction)
    try:
        _load(node, 1_500, seed=4)  # several snapshots, the journal compacted behind them
        assert node.history.last_seq == behind
        if before:
            assert min(node.snapshots.seqs()) <= behind < max(node.snapshots.seqs())
        else:
            assert behind < min(node.snapshots.seqs()) and node.journal.first_seq == 1
        seq, h = node.state_hash()
        ids = {o["order_id"] for a in (0, 1) for o in node.exchange.open_orders(a)}
    finally:
        os.kill(node.history._proc.pid, signal.SIGCONT)
    _crash(node)
    caplog.set_level(logging.INFO)
    again = Node(tmp_path, _cfg(), sync="none", history=True)
    again.open()
    try:
        assert again.state_hash() == (seq, h)
        assert again.recovery.snapshot_seq <= behind
        assert any("behind the newest snapshot" in r.getMessage() for r in caplog.records)
        assert not any("are not in the history" in r.getMessage() for r in caplog.records)
        again.history.flush()
        assert again.history.last_seq == seq
        assert ids <= _history_order_ids(again)
    finally:
        again.history.close()
        again.journal.close()


def _refused_and_stopped(node: Node, why: str) -> None:
    """An order is refused for `why`, the node is unhealthy, and later
    commands are refused promptly, whatever path they take."""
    from lxdex.node.server import NodeStopped

    fut = node.submit(C.PlaceOrder(account=0, market="BTC-USD", side="buy", qty="0.01", price="100"))
    with pytest.raises(NodeStopped, match=why):
        fut.result(10)
    assert not node.healthy
    with pytest.raises(NodeStopped):
        node.submit(C.CancelAll(account=0)).result(10)


def test_a_batch_that_fails_to_apply_is_refused_and_stops_the_node(tmp_path):
    """A bug in the state machine (an exception while applying) never leaves
    the batch waiting: it is refused, never acknowledged, and the node stops."""
    node = Node(tmp_path, two_accounts_config(), sync="fdatasync")
    node.start()
    _load(node, 20)

    def broken(cmd, seq=None):
        raise RuntimeError("a bug")

    node.exchange.execute = broken
    _refused_and_stopped(node, "applying the batch failed: a bug")
    del node.exchange.execute
    node.stop(snapshot=False)


def test_a_torn_journal_tail_is_cut_to_the_last_good_record(tmp_path, caplog):
    node = Node(tmp_path, two_accounts_config(), sync="none")
    node.start()
    _load(node, 300)
    seq, h = node.state_hash()
    node.stop(snapshot=False)
    seg = sorted((tmp_path / "journal").glob("*.seg"))[-1]
    with open(seg, "ab") as f:
        f.write(b"\x17\x00\x00\x00half a record")
    again = Node(tmp_path, two_accounts_config(), sync="none")
    again.open()
    assert again.state_hash() == (seq, h)
    assert any("truncat" in r.getMessage() for r in caplog.records)
    again.journal.close()


def test_a_damaged_newest_snapshot_falls_back_to_an_older_one(tmp_path, caplog):
    node = Node(tmp_path, _cfg(), sync="none")
    node.start()
    _load(node, 1_500)
    seq, h = node.state_hash()
    node.stop()
    newest = node.snapshots.file_for(node.snapshots.seqs()[0])
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    again = _reopen(tmp_path)
    assert again.recovery.snapshot_seq < seq and again.recovery.replayed > 0
    assert again.state_hash() == (seq, h)
    assert any("skipping" in r.getMessage() for r in caplog.records)
    again.journal.close()


def test_unrecoverable_state_is_refused_not_started_empty(tmp_path):
    node = Node(tmp_path, _cfg(), sync="none")
    node.start()
    _load(node, 1_500)
    node.stop()
    for s in node.snapshots.seqs():
        node.snapshots.file_for(s).write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="missing"):
        _reopen(tmp_path)


def test_clean_replay_of_the_whole_journal_matches(tmp_path):
    node = Node(tmp_path, two_accounts_config(), sync="none")
    node.start()
    _load(node, 800)
    seq, h = node.state_hash()
    node.stop(snapshot=False)
    ex = Exchange(node.master_key)
    with Journal.open(tmp_path, sync="none") as j:
        for first, payloads in j.read_payloads(1):
            for i, p in enumerate(payloads):
                ex.execute(C.decode(p), first + i)
    assert (ex.last_seq, ex.state_hash()) == (seq, h)


@pytest.mark.parametrize("where", ["write", "start"])
def test_a_journal_failure_stops_the_node_and_every_later_command_is_refused(tmp_path, where):
    """`write`: the journal thread's write fails for real (the segment's
    descriptor swapped for /dev/full: ENOSPC); `start`: starting the append
    fails. Either way the batch is refused, never acknowledged."""
    from lxdex.node.server import NodeStopped

    node = Node(tmp_path, two_accounts_config(), sync="fdatasync")
    node.start()
    _load(node, 50)
    seq = node.journal.last_seq
    segment_fd = node.journal._fd
    if where == "write":
        node.journal._fd = os.open("/dev/full", os.O_WRONLY)
    else:
        def broken(payloads):
            raise OSError(28, "No space left on device")

        node.journal.append_begin = broken
    _refused_and_stopped(node, "journal append failed.*No space left on device")
    node._failed, failed = None, node._failed  # a submit that raced with the failure still gets an answer
    late = node.submit(C.CancelAll(account=0))
    node._failed = failed
    with pytest.raises(NodeStopped, match="node failed"):
        late.result(10)
    node.stop()
    assert node.journal.last_seq == seq
    if where == "write":
        os.close(segment_fd)
