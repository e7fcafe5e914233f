"""The node: one `Exchange`, fed by one sequencer through a durable journal.

```
gateways (HTTP, ZeroMQ)  --submit(cmd)-->  queue  -->  sequencer thread
                                                         | stamp ts, number (seq)
                                                         | journal.append(batch)   <- durable (group commit),
                                                         |   on the journal thread, while
                                                         | exchange.execute(...)   <- under `lock`
                                                         | resolve futures (acks), listeners (PUB, history)
                                                         | snapshot every N, compact the journal
```

Gateways only decode and validate the shape of a request; every state change
is a `lxdex.commands` value that the sequencer journals (on the journal
thread, while it applies the batch). A command is acknowledged (its future
resolved) and published only after the batch it is in is durable under the
sync policy. Readers take `lock` to look at the exchange
between batches.

Recovery (`open`): the newest valid snapshot is loaded, then the journal tail
after it is replayed; the log says what was recovered. A fresh data dir is
bootstrapped from the config through the same log.
"""

from __future__ import annotations

import logging
import os
import queue
import struct
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .. import commands as C
from ..enums import EventKind
from ..exchange import Exchange, Outcome
from .config import Config
from .journal import Journal
from .snapshots import SnapshotStore

log = logging.getLogger("lxdex.node")
_FILL = int(EventKind.FILL)

Listener = Callable[[list[tuple[C.Command, Outcome]]], None]


class Sink:
    """Receives the outcomes of commands queued with `Node.submit_to`."""

    def deliver(self, items: list) -> None:  # pragma: no cover - interface
        raise NotImplementedError


def _resolve(batch: list, results: list) -> None:
    """Hands each command's result (an Outcome, or an exception) to its
    future or sink; sinks get one call per batch."""
    sinks: dict = {}
    for (_, dest), res in zip(batch, results):
        if type(dest) is tuple:
            sinks.setdefault(dest[0], []).append((dest[1], res))
        elif isinstance(res, BaseException):
            dest.set_exception(res)
        else:
            dest.set_result(res)
    for sink, items in sinks.items():
        try:
            sink.deliver(items)
        except Exception:  # a gateway's failure never stops the sequencer
            log.exception("sink %r failed", sink)


class NodeStopped(RuntimeError):
    """The node is not accepting commands (stopped, or its journal failed)."""


@dataclass
class Recovery:
    snapshot_seq: int
    replayed: int
    last_seq: int
    seconds: float
    state_hash: str


def load_master_key(data_dir: Path) -> bytes:
    """The node's master key (seals API key secrets): `DIR/master.key`,
    created (mode 0600) with 32 random bytes if missing."""
    path = data_dir / "master.key"
    if path.exists():
        key = path.read_bytes()
        if len(key) != 32:
            raise ValueError(f"{path}: a master key is 32 bytes, this file has {len(key)}")
        return key
    key = os.urandom(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


class Node:
    def __init__(self, data_dir: str | os.PathLike, config: Config | None = None, *, sync: str = "fdatasync",
                 master_key: bytes | None = None, history: bool = False) -> None:
        self.data_dir = Path(data_dir)
        self.config = config or Config()
        self.sync = sync
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.master_key = master_key or load_master_key(self.data_dir)
        self.lock = threading.Lock()
        self.exchange: Exchange | None = None
        self.journal: Journal | None = None
        self.snapshots = SnapshotStore(self.data_dir)
        self.listeners: list[Listener] = []
        #: Listeners that also see the outcomes of the journal replay in
        #: `open()` (a derived store catching up after a crash; it skips the
        #: sequence numbers it already has).
        self.replay_listeners: list[Listener] = []
        self.recovery: Recovery | None = None
        #: The history store (fills, orders, candles in SQL), when `history=True`.
        self.with_history = history
        self.history = None
        self.started_at = time.time()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._failed: BaseException | None = None
        self._last_ts = 0
        self._snapshot_seq = 0
        self._last_batch_at = time.monotonic()
        # counters (read without the lock: ints are updated atomically under the GIL)
        self.commands = 0
        self.orders = 0
        self.trades = 0
        self.batches = 0
        self._rate: deque[tuple[float, int]] = deque(maxlen=64)
        self._hash_cache: tuple[int, str] | None = None

    # -- lifecycle ----------------------------------------------------------------
    def open(self) -> Recovery:
        """Recovers the state (snapshot + journal tail) and bootstraps a fresh
        one from the config. Idempotent per process: call once."""
        t0 = time.perf_counter()
        opened_history = self.with_history and self.history is None
        try:
            return self._open(t0)
        except BaseException:
            if opened_history and self.history is not None:  # its writer process and threads
                self.history.close()
                self.listeners.remove(self.history)
                self.replay_listeners.remove(self.history)
                self.history = None
            raise

    def _open(self, t0: float) -> Recovery:
        if self.with_history and self.history is None:
            from .history import HistoryStore

            # (its sender thread reads market sizes from self.exchange, set below before any replay)
            self.history = HistoryStore.open(self.config.history_url, self.data_dir, self._market_info,
                                             max_backlog_bytes=self.config.history_max_backlog_mb << 20)
            self.listeners.append(self.history)
            self.replay_listeners.append(self.history)
        snap = self.snapshots.latest()
        newest = snap[0] if snap is not None else 0
        self.journal = Journal.open(self.data_dir, sync=self.sync, start_seq=newest + 1,
                                    segment_bytes=self.config.journal_segment_bytes)
        j = self.journal
        if self.history is not None and self.history.last_seq < newest:
            # The history store has not written everything up to the newest
            # snapshot (it commits a little behind the journal): start from an
            # older snapshot (kept for it, see _snapshot) so that the replay
            # gives it the outcomes it lacks.
            h = self.history.last_seq
            older = self.snapshots.latest(at_most=h, at_least=j.first_seq - 1)
            if older is not None or j.first_seq == 1:
                snap = older
                log.info("history store is at seq %d, behind the newest snapshot (%d): recovering from %s",
                         h, newest, f"snapshot {older[0]}" if older is not None else "the journal's start")
            else:
                log.warning("history store is at seq %d, the newest snapshot at %d: commands %d..%d are not in "
                            "the history (neither the journal nor a snapshot reaches back to them)", h, newest,
                            h + 1, newest)
        if snap is None:
            ex, snap_seq = Exchange(self.master_key), 0
        else:
            snap_seq, data = snap
            ex = Exchange.restore(data, self.master_key)
            if ex.last_seq != snap_seq:
                raise RuntimeError(f"snapshot {snap_seq} holds state at seq {ex.last_seq}")
        if j.last_seq < snap_seq:
            raise RuntimeError(f"journal ends at seq {j.last_seq}, before the snapshot at {snap_seq}: "
                               "the journal directory does not belong to this snapshot")
        if j.last_seq > snap_seq and j.first_seq > snap_seq + 1:
            raise RuntimeError(f"journal starts at seq {j.first_seq}: records {snap_seq + 1}..{j.first_seq - 1} "
                               f"after snapshot {snap_seq} are missing")
        self.exchange = ex
        replayed = self._replay(ex, j, snap_seq + 1) if j.last_seq > snap_seq else 0
        self._snapshot_seq = snap_seq
        self._last_ts = max(self._last_ts, ex.core.now)
        h = ex.state_hash()
        self._hash_cache = (ex.last_seq, h)
        self.recovery = Recovery(snap_seq, replayed, ex.last_seq, time.perf_counter() - t0, h)
        log.info("recovered: snapshot at seq %d, %d journal records replayed, last seq %d, state hash %s "
                 "(%.3f s)", snap_seq, replayed, ex.last_seq, h[:16], self.recovery.seconds)
        return self.recovery

    def _replay(self, ex: Exchange, j: Journal, from_seq: int) -> int:
        """Applies the journal from `from_seq` on; returns how many records.

        Binary order batches (`Records`) go straight from the mapped journal
        into the core (`Exchange.replay_records`); any other command is
        decoded and executed, and the replay listeners get ``(command,
        outcome)`` for every seq from the lowest one they still need (a
        listener's `replay_from`; 1, i.e. all, for one without it), so that
        part goes the general way."""
        catch_up = self.replay_listeners
        need = min((getattr(listener, "replay_from", 1) for listener in catch_up), default=None)
        decode, execute, span = C.decode, ex.execute, struct.Struct("<QQ").unpack_from
        replayed, last_ts = 0, self._last_ts
        for first, buf, spans in j.read_spans(from_seq):
            n = len(spans) // 16
            fast_end = n if need is None else max(0, min(n, need - first))  # records [0, fast_end) need no outcome
            fast_spans = memoryview(spans)[:16 * fast_end]
            pairs = []
            i = 0
            while i < n:
                if i < fast_end:
                    k, ts = ex.replay_records(buf, fast_spans, i, first + i)
                    if k:
                        i += k
                        last_ts = max(last_ts, ts)
                        continue
                a, b = span(spans, 16 * i)
                c = decode(bytes(buf[a:b]))
                out = execute(c, first + i)
                if need is not None and first + i >= need:
                    pairs.append((c, out))
                last_ts = max(last_ts, c.ts)
                i += 1
            if pairs:
                for listener in catch_up:
                    listener(pairs)
            replayed += n
        self._last_ts = last_ts
        return replayed

    def start(self) -> None:
        """Opens (if not yet), starts the sequencer, and applies the config's
        bootstrap commands through the log."""
        if self.exchange is None:
            self.open()
        self._thread = threading.Thread(target=self._run, name="lxdex-sequencer", daemon=True)
        self._thread.start()
        ex = self.exchange
        boot = self.config.bootstrap(set(ex._assets), set(ex._markets), fresh=ex.last_seq == 0)
        for fut in [self.submit(c) for c in boot]:
            out = fut.result()
            if not out.ok:
                raise RuntimeError(f"bootstrap command rejected: {out.error}")
        if boot:
            log.info("bootstrap: %d commands from the config applied", len(boot))

    def stop(self, snapshot: bool = True) -> None:
        """Finishes the queued commands, writes a snapshot, closes the journal."""
        if self._thread is None:
            return
        self._stopping.set()
        self._queue.put(None)
        self._thread.join()
        self._thread = None
        while True:  # a submit that raced with the stop: refuse it rather than leave it waiting
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                _resolve([item], [NodeStopped("node is not accepting commands")])
        if snapshot and self._failed is None and self.exchange.last_seq > self._snapshot_seq:
            self._snapshot()
        self.journal.close()
        if self.history is not None:
            self.history.close()
        log.info("stopped at seq %d", self.exchange.last_seq)

    # -- commands ---------------------------------------------------------------------
    def submit(self, cmd: C.Command) -> Future:
        """Queues a command; the future resolves to its `Outcome` once it is
        durable and applied (NodeStopped if the node cannot take it)."""
        fut: Future = Future()
        if self._stopping.is_set() or self._failed is not None or self._thread is None:
            fut.set_exception(NodeStopped("node is not accepting commands"
                                          + (f": {self._failed}" if self._failed else "")))
            return fut
        self._queue.put((cmd, fut))
        return fut

    def submit_to(self, cmd: C.Command, sink: "Sink", token) -> bool:
        """Queues a command whose outcome goes to `sink.deliver([(token,
        outcome or NodeStopped), ...])`, called on the sequencer thread once
        per batch for all of the sink's commands in it (a gateway wakes its
        own thread once per batch instead of once per command). False (and
        nothing queued) if the node is not accepting commands."""
        if self._stopping.is_set() or self._failed is not None or self._thread is None:
            return False
        self._queue.put((cmd, (sink, token)))
        return True

    def execute(self, cmd: C.Command, timeout: float = 30.0) -> Outcome:
        return self.submit(cmd).result(timeout)

    def _run(self) -> None:
        q, batch_max = self._queue, self.config.batch_max
        try:
            while True:
                item = q.get()
                if item is None:
                    if self._drain_done():
                        return
                    continue
                batch = [item]
                while len(batch) < batch_max:
                    try:
                        item = q.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        q.put(None)  # handle the stop after this batch
                        break
                    batch.append(item)
                self._apply(batch)
        except BaseException as e:  # the journal failed: stop taking commands, never apply unjournaled ones
            self._failed = e
            log.exception("sequencer stopped: %s", e)
            # Keep answering until stop(): a submit that checked the flag just
            # before it was set still gets its refusal instead of waiting forever.
            while True:
                if self._stopping.is_set():
                    try:
                        item = q.get_nowait()
                    except queue.Empty:
                        break
                else:
                    item = q.get()
                if item is not None:
                    _resolve([item], [NodeStopped(f"node failed: {e}")])

    def _drain_done(self) -> bool:
        return self._stopping.is_set() and self._queue.empty()

    def _apply(self, batch: list) -> None:
        ts = max(int(time.time() * 1000), self._last_ts)
        self._last_ts = ts
        cmds = [C.with_ts(c, ts) for c, _ in batch]
        try:
            payloads = [C.encode(c) for c in cmds]
        except (OverflowError, TypeError, ValueError):
            # A command that cannot be encoded (an integer beyond 64 bits from a gateway that did not bound
            # it) is refused here, unjournaled; it must not stop the sequencer.
            batch, cmds, payloads = self._drop_unencodable(batch, cmds)
            if not batch:
                return
        first = self.journal.last_seq + 1
        # The batch is written and fdatasync'd on the journal thread while it
        # is applied here; nothing is acknowledged or published before both
        # are done. If the write fails, the applied batch is never
        # acknowledged and the node stops: a restart rebuilds the state from
        # what the journal holds.
        try:
            self.journal.append_begin(payloads)  # written and synced on the journal's thread meanwhile
        except BaseException as e:
            self._refuse(batch, f"journal append failed: {e}", e)
            raise
        ex = self.exchange
        try:
            with self.lock:
                outs = [ex.execute(c, first + i) for i, c in enumerate(cmds)]
        except BaseException as e:  # a bug in the state machine: never acknowledged; the node stops
            self._refuse(batch, f"applying the batch failed: {e}", e)
            try:
                self.journal.append_end()
            except BaseException:
                pass
            raise
        try:
            last = self.journal.append_end()
        except BaseException as e:
            self._refuse(batch, f"journal append failed: {e}", e)
            raise
        if last != first + len(cmds) - 1:  # pragma: no cover - the journal has one writer
            raise RuntimeError(f"journal numbered the batch {last - len(cmds) + 1}..{last}, expected {first}..")
        _resolve(batch, outs)
        self._count(cmds, outs)
        if self.listeners:
            pairs = list(zip(cmds, outs))
            for listener in self.listeners:
                try:
                    listener(pairs)
                except Exception:  # a listener never stops the sequencer
                    log.exception("listener %r failed", listener)
        if ex.last_seq - self._snapshot_seq >= self.config.snapshot_every:
            self._snapshot()

    def _refuse(self, batch: list, why: str, e: BaseException) -> None:
        """The batch failed: the node stops (unhealthy before anyone hears
        of it), and every command of the batch is refused, never acknowledged."""
        self._failed = e
        _resolve(batch, [NodeStopped(why)] * len(batch))

    @staticmethod
    def _drop_unencodable(batch: list, cmds: list) -> tuple[list, list, list]:
        keep, kept_cmds, payloads = [], [], []
        for item, c in zip(batch, cmds):
            try:
                payloads.append(C.encode(c))
            except (OverflowError, TypeError, ValueError) as e:
                log.warning("refused a command that cannot be encoded (%s): %r", e, c)
                _resolve([item], [Outcome(0, error={"reason": "INVALID_COMMAND",
                                                    "message": f"the command cannot be encoded: {e}"})])
                continue
            keep.append(item)
            kept_cmds.append(c)
        return keep, kept_cmds, payloads

    def _count(self, cmds: list, outs: list) -> None:
        n_orders = n_trades = 0
        for c, o in zip(cmds, outs):
            if type(c) is C.Records:
                ev = o.events
                if len(ev):
                    n_trades += int(np.count_nonzero(ev["kind"] == _FILL))
                n_orders += len(c.data) // 120  # every row is an order command (or a money one)
            else:
                if isinstance(c, (C.PlaceOrder, C.CancelReplace)):
                    n_orders += 1
                n_trades += sum(1 for e in o.events if e.kind == _FILL)
        self.commands += len(cmds)
        self.orders += n_orders
        self.trades += n_trades
        self.batches += 1
        now = time.monotonic()
        self._last_batch_at = now
        self._rate.append((now, self.commands))

    def _snapshot(self) -> None:
        with self.lock:
            seq = self.exchange.last_seq
            data = self.exchange.snapshot()
        t0 = time.perf_counter()
        # Keep the newest snapshot at or before the history store's durable
        # seq too (unless the store has failed): recovery starts from it when
        # the history is behind the newest snapshot.
        h = self.history
        pin = h.last_seq if h is not None and h.failed is None else None
        self.snapshots.save(seq, data, pin=pin)
        # Keep the journal from the oldest kept snapshot on: if the newest
        # snapshot is found damaged on start, an older one plus a longer
        # journal tail still recovers the state (and the history its outcomes).
        # While the history is behind every snapshot, its catch-up needs the
        # journal from its start: nothing is compacted then.
        seqs = self.snapshots.seqs()
        behind = pin is not None and not any(s <= pin for s in seqs)
        removed = 0 if behind else self.journal.compact(min(seqs))
        self._snapshot_seq = seq
        log.info("snapshot at seq %d (%d bytes, %.3f s); %d journal segment(s) compacted", seq, len(data),
                 time.perf_counter() - t0, removed)

    def _market_info(self, market_id: int):
        return self.exchange._market_by_id[market_id]

    # -- status -----------------------------------------------------------------------
    def state_hash(self) -> tuple[int, str]:
        """`(seq, SHA-256 of the state)` between batches (cached per seq)."""
        with self.lock:
            seq = self.exchange.last_seq
            if self._hash_cache is None or self._hash_cache[0] != seq:
                self._hash_cache = (seq, self.exchange.state_hash())
            return self._hash_cache

    def throughput(self, window: float = 5.0) -> float:
        """Commands per second over about the last `window` seconds."""
        now = time.monotonic()
        pts = [p for p in list(self._rate) if now - p[0] <= window]
        if len(pts) < 2:
            return 0.0
        (t0, c0), (t1, c1) = pts[0], pts[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0

    @property
    def healthy(self) -> bool:
        """Applying commands: the sequencer runs, its journal has not failed,
        and it is not stuck (work queued but no batch for 5 s)."""
        if self._thread is None or not self._thread.is_alive() or self._failed is not None:
            return False
        return self._queue.empty() or time.monotonic() - self._last_batch_at < 5.0

    def stats(self) -> dict:
        seq, h = self.state_hash()
        return {
            "node_id": self.config.node_id,
            "uptime_s": round(time.time() - self.started_at, 3),
            "commands": self.commands,
            "orders": self.orders,
            "trades": self.trades,
            "batches": self.batches,
            "throughput": round(self.throughput(), 1),
            "journal_seq": self.journal.last_seq if self.journal else 0,
            "applied_seq": seq,
            "snapshot_seq": self._snapshot_seq,
            "state_hash": h,
            "sync": self.sync,
            "healthy": self.healthy,
            "history": ({"last_seq": self.history.last_seq, "lag": self.history.lag,
                         "backlog_bytes": self.history.backlog_bytes, "stalls": self.history.stalls,
                         "stalled_s": self.history.stalled_s, "transactions": self.history.transactions,
                         "failed": str(self.history.failed) if self.history.failed else None}
                        if self.history is not None else None),
            # Consensus fields: a single node orders commands itself; the cluster fills these.
            "vertices": 0,
            "finalized": seq,
            "fpc_enabled": False,
            "vote_threshold": None,
        }
