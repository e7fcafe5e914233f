"""The node's ZeroMQ fast path: a ROUTER socket for binary order messages,
a PUB socket for trades and depth updates. The wire format is in
docs/node.md; in short (little endian):

request  = "LXQ1" | u32 rows | u64 request id | rows × 120-byte COMMAND_DTYPE
ack      = "LXA1" | u32 rows | u64 request id | u64 seq | rows × 32-byte ACK_DTYPE
error    = "LXE1" | u32 code | u64 request id | UTF-8 message

Rows may be SUBMIT, CANCEL, AMEND or MASS_CANCEL (money moves are admin
commands, never on this socket). The gateway thread only checks the shape of
a message; it merges the rows of every message waiting on the socket into
one `Records` command (one journal record, one sequence number), and when
the sequencer has made that command durable and applied it, it splits the
events back into one ack per message, row by row. A message that is not
well formed gets an error reply and reaches nothing.

The gateway trusts the `owner` in a row: bind it to loopback (the default)
or a private network of the operator's own order gateways.
"""

from __future__ import annotations

import logging
import os
import queue
import struct
import threading
from collections import deque

import numpy as np
import zmq

from .. import _core
from .. import commands as C
from ..enums import COMMAND_DTYPE, EVENT_DTYPE, CommandKind, EventKind
from .server import Node, NodeStopped

log = logging.getLogger("lxdex.node.zmq")

REQ_MAGIC, ACK_MAGIC, ERR_MAGIC = b"LXQ1", b"LXA1", b"LXE1"
REQ_HEADER = struct.Struct("<4sIQ")
ACK_HEADER = struct.Struct("<4sIQQ")
ERR_HEADER = struct.Struct("<4sIQ")

#: One ack per row: `status` 0 = applied, 1 = rejected (`reason` says why);
#: `done` 1 when the row's order is no longer live after it (filled or
#: cancelled; `reason` then has the cancel reason); `order_id` the new order's
#: id for a SUBMIT (the row's own for CANCEL/AMEND); `filled` the quantity
#: (lots) the row's order traded in this row; `fills` how many fills.
ACK_DTYPE = np.dtype({
    "names": ["status", "reason", "kind", "done", "fills", "order_id", "filled", "remaining"],
    "formats": ["u1", "u1", "u1", "u1", "<u4", "<u8", "<i8", "<i8"],
    "offsets": [0, 1, 2, 3, 4, 8, 16, 24],
    "itemsize": 32,
})

#: PUB payloads: topic `trades.<SYMBOL>` carries TRADE_DTYPE rows, topic
#: `depth.<SYMBOL>` DEPTH_DTYPE rows (a level's visible quantity now, 0 =
#: gone; `update_id` as in the depth snapshot protocol). Prices in ticks,
#: quantities in lots of the market (GET /markets has both).
TRADE_DTYPE = np.dtype({
    "names": ["seq", "ts", "taker_order_id", "maker_order_id", "price", "qty", "taker_side"],
    "formats": ["<u8", "<u8", "<u8", "<u8", "<i8", "<i8", "u1"],
    "offsets": [0, 8, 16, 24, 32, 40, 48],
    "itemsize": 56,
})
DEPTH_DTYPE = np.dtype({
    "names": ["update_id", "price", "qty", "side"],
    "formats": ["<u8", "<i8", "<i8", "u1"],
    "offsets": [0, 8, 16, 24],
    "itemsize": 32,
})

#: Error codes of an LXE1 reply.
ERR_MALFORMED, ERR_TOO_LARGE, ERR_KIND, ERR_UNAVAILABLE = 1, 2, 3, 4

_ALLOWED_KIND = np.zeros(256, dtype=bool)
_ALLOWED_KIND[[CommandKind.SUBMIT, CommandKind.CANCEL, CommandKind.AMEND, CommandKind.MASS_CANCEL]] = True
_ROW = COMMAND_DTYPE.itemsize


def encode_request(rows: np.ndarray, request_id: int) -> bytes:
    """A request message for `rows` (COMMAND_DTYPE)."""
    rows = np.ascontiguousarray(rows, dtype=COMMAND_DTYPE)
    return REQ_HEADER.pack(REQ_MAGIC, len(rows), request_id) + rows.tobytes()


def decode_reply(msg: bytes) -> tuple[int, int, np.ndarray] | tuple[int, int, str]:
    """`(request id, seq, ACK_DTYPE rows)` of an ack, or raises `GatewayError`
    for an error reply."""
    magic = msg[:4]
    if magic == ACK_MAGIC:
        _, n, rid, seq = ACK_HEADER.unpack_from(msg)
        acks = np.frombuffer(msg, ACK_DTYPE, n, ACK_HEADER.size)
        return rid, seq, acks
    if magic == ERR_MAGIC:
        _, code, rid = ERR_HEADER.unpack_from(msg)
        raise GatewayError(code, rid, msg[ERR_HEADER.size:].decode("utf-8", "replace"))
    raise ValueError(f"not an lxdex gateway reply (magic {magic!r})")


class GatewayError(Exception):
    def __init__(self, code: int, request_id: int, message: str) -> None:
        super().__init__(f"gateway error {code} (request {request_id}): {message}")
        self.code, self.request_id, self.message = code, request_id, message


_MAX_TS = 2**63 - 1


def check_request(msg: bytes, max_rows: int) -> tuple[int, np.ndarray] | tuple[int, int, str]:
    """`(request id, rows)` of a well-formed request, else `(code, request id, message)`."""
    if len(msg) < REQ_HEADER.size:
        return ERR_MALFORMED, 0, f"message of {len(msg)} bytes is shorter than the 16-byte header"
    magic, n, rid = REQ_HEADER.unpack_from(msg)
    if magic != REQ_MAGIC:
        return ERR_MALFORMED, 0, f"magic {magic!r} is not {REQ_MAGIC!r}"
    if n == 0:
        return ERR_MALFORMED, rid, "rows: a request carries at least one row"
    if n > max_rows:
        return ERR_TOO_LARGE, rid, f"rows: {n} rows is over the limit of {max_rows} per message"
    if len(msg) != REQ_HEADER.size + n * _ROW:
        return ERR_MALFORMED, rid, (f"length: {len(msg)} bytes does not match the header's {n} rows "
                                    f"({REQ_HEADER.size + n * _ROW} bytes)")
    rows = np.frombuffer(msg, COMMAND_DTYPE, n, REQ_HEADER.size)
    ok = _ALLOWED_KIND[rows["kind"]]
    if not ok.all():
        i = int(np.argmin(ok))
        return ERR_KIND, rid, (f"rows[{i}].kind: {int(rows['kind'][i])} is not an order command "
                               "(0 submit, 1 cancel, 2 amend, 3 mass cancel)")
    late = rows["expire_ts"] > _MAX_TS
    if late.any():  # (as the HTTP API: times are signed 64-bit milliseconds everywhere else)
        i = int(np.argmax(late))
        return ERR_MALFORMED, rid, f"rows[{i}].expire_ts: {int(rows['expire_ts'][i])} is over {_MAX_TS}"
    return rid, rows


def acks(records: bytes, events: np.ndarray) -> bytes:
    """The ACK_DTYPE rows (bytes) of every record of a batch from its
    EVENT_DTYPE events (in Rust: `lxdex._core.gateway_acks`)."""
    return _core.gateway_acks(records, events.view(np.uint8) if len(events) else b"")


class ZmqGateway:
    """Serves the ROUTER (orders) and PUB (market data) sockets of a node on
    two threads of its own; `start()` binds, `stop()` closes."""

    def __init__(self, node: Node, bind: str = "tcp://127.0.0.1:5555", pub_bind: str | None = None,
                 max_rows: int = 4096, batch_rows: int = 16384, max_inflight: int = 1, metrics=None) -> None:
        self.node, self.bind, self.pub_bind = node, bind, pub_bind
        self.max_rows, self.batch_rows, self.max_inflight = max_rows, batch_rows, max_inflight
        self.metrics = metrics
        self.ctx = zmq.Context.instance()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._done: deque = deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._pub_queue: queue.SimpleQueue = queue.SimpleQueue()
        self.endpoint: str | None = None
        self.pub_endpoint: str | None = None
        self.messages = self.rows = self.errors = 0
        self._subs: dict[bytes, int] = {}
        self._wanted: dict[bytes, bool] = {}

    def start(self) -> None:
        router = self.ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.ROUTER_MANDATORY, 0)
        # A message a little over the limit gets an error reply naming the
        # limit; one past this hard cap (4x, at least 1 MiB) drops the
        # connection inside ZeroMQ without reading it.
        router.setsockopt(zmq.MAXMSGSIZE, max(1 << 20, 4 * (REQ_HEADER.size + self.max_rows * _ROW)))
        router.setsockopt(zmq.RCVHWM, 10_000)
        router.setsockopt(zmq.SNDHWM, 10_000)
        router.bind(self.bind)
        self.endpoint = router.getsockopt(zmq.LAST_ENDPOINT).decode()
        self._router = router
        t = threading.Thread(target=self._serve, name="lxdex-zmq-gateway", daemon=True)
        self._threads.append(t)
        if self.pub_bind:
            # XPUB: the subscriptions reach us, so that no work is done for
            # topics nobody listens to
            pub = self.ctx.socket(zmq.XPUB)
            pub.setsockopt(zmq.LINGER, 0)
            pub.setsockopt(zmq.SNDHWM, 100_000)
            pub.bind(self.pub_bind)
            self.pub_endpoint = pub.getsockopt(zmq.LAST_ENDPOINT).decode()
            self._pub = pub
            self.node.listeners.append(self._on_batch)
            self._threads.append(threading.Thread(target=self._publish, name="lxdex-zmq-pub", daemon=True))
        for t in self._threads:
            t.start()
        log.info("zmq gateway on %s%s", self.endpoint, f", market data on {self.pub_endpoint}" if self.pub_bind else "")

    def stop(self) -> None:
        self._stop.set()
        os.write(self._wake_w, b"x")
        self._pub_queue.put(None)
        for t in self._threads:
            t.join(timeout=10)
        self._threads.clear()
        if self.pub_bind and self._pub_queue.put in self.node.listeners:
            self.node.listeners.remove(self._pub_queue.put)
        os.close(self._wake_r)
        os.close(self._wake_w)

    # -- orders ---------------------------------------------------------------------------
    def _serve(self) -> None:
        """One `Records` command in flight at a time: while the sequencer
        works on it, messages are read and checked into the next one, so
        that the batch grows with the load (up to `batch_rows` rows, then
        the socket is left unread: backpressure)."""
        router = self._router
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        inflight, reading = 0, True
        self._parts, self._pending = [], 0
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(100))
                if self._wake_r in ready:
                    self._drain_wake()
                while self._done:
                    inflight -= 1
                    self._reply(*self._done.popleft())
                if reading:
                    self._read(router)
                if inflight < self.max_inflight and self._parts:
                    self._submit()
                    inflight += 1
                want = self._pending < self.batch_rows
                if reading != want:
                    (poller.register(router, zmq.POLLIN) if want else poller.unregister(router))
                    reading = want
            if self._parts:  # read before the stop: still submitted (the node may refuse it)
                self._submit()
                inflight += 1
            while inflight:  # answer what was accepted before stopping
                if self._done:
                    inflight -= 1
                    self._reply(*self._done.popleft())
                else:
                    poller.poll(100)
                    self._drain_wake()
        finally:
            router.close(0)

    def _drain_wake(self) -> None:
        try:
            os.read(self._wake_r, 4096)
        except BlockingIOError:
            pass

    def _read(self, router) -> None:
        """Reads and checks the waiting messages into the next batch."""
        parts = self._parts
        while self._pending < self.batch_rows:
            try:
                frames = router.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                break
            self.messages += 1
            if self.metrics is not None:
                self.metrics.zmq_messages.inc()
            ident, msg = frames[0], frames[-1]
            if len(frames) != 2 and not (len(frames) == 3 and frames[1] == b""):
                self._error(router, ident, ERR_MALFORMED, 0, f"expected one message frame, got {len(frames) - 1}")
                continue
            checked = check_request(msg, self.max_rows)
            if len(checked) == 3:
                self._error(router, ident, *checked)
                continue
            rid, rows = checked
            parts.append((frames[:-1], rid, self._pending, rows))
            self._pending += len(rows)

    def _submit(self) -> None:
        """Submits the batch read so far as one `Records` command."""
        parts, total = self._parts, self._pending
        self._parts, self._pending = [], 0
        data = b"".join(r.tobytes() for *_, r in parts) if len(parts) > 1 else parts[0][3].tobytes()
        self.rows += total
        fut = self.node.submit(C.Records(data=data))

        def done(f, parts=parts, data=data):
            self._done.append((f, parts, data))
            try:
                os.write(self._wake_w, b"x")
            except OSError:  # the pipe is full (the gateway will look anyway) or closed (stopping)
                pass

        fut.add_done_callback(done)

    def _reply(self, fut, parts, data: bytes) -> None:
        router = self._router
        exc = fut.exception()
        if exc is not None:
            code, text = (ERR_UNAVAILABLE, str(exc)) if isinstance(exc, NodeStopped) else (ERR_UNAVAILABLE, repr(exc))
            for envelope, rid, _, _ in parts:
                self._send(router, envelope, ERR_HEADER.pack(ERR_MAGIC, code, rid) + text.encode())
            return
        out = fut.result()
        if out.error is not None:  # the batch as a whole was refused (cannot happen for checked rows)
            for envelope, rid, _, _ in parts:
                self._send(router, envelope, ERR_HEADER.pack(ERR_MAGIC, ERR_MALFORMED, rid)
                           + out.error["message"].encode())
            return
        ack = acks(data, out.events)
        for envelope, rid, start, rows in parts:
            n = len(rows)
            self._send(router, envelope, ACK_HEADER.pack(ACK_MAGIC, n, rid, out.seq) + ack[start * 32:(start + n) * 32])

    def _send(self, router, envelope, msg: bytes) -> None:
        try:
            router.send_multipart([*envelope, msg], zmq.NOBLOCK)
        except zmq.ZMQError:  # the client went away or stopped reading: drop its reply
            pass

    def _error(self, router, ident, code: int, rid: int, message: str) -> None:
        self.errors += 1
        self._send(router, [ident], ERR_HEADER.pack(ERR_MAGIC, code, rid) + message.encode())

    # -- market data ----------------------------------------------------------------------
    def _on_batch(self, pairs) -> None:
        """The sequencer's listener: a batch goes to the publisher thread only
        while someone is subscribed (no thread wake-up per batch otherwise)."""
        if self._subs:
            self._pub_queue.put(pairs)

    def _publish(self) -> None:
        pub, q = self._pub, self._pub_queue
        try:
            while True:
                try:
                    pairs = q.get(timeout=0.05)  # subscriptions are read at least every 50 ms
                except queue.Empty:
                    self._read_subscriptions(pub)
                    continue
                if pairs is None:
                    return
                self._read_subscriptions(pub)
                if not self._subs:
                    continue
                try:
                    self._publish_batch(pub, pairs)
                except zmq.ZMQError:
                    log.exception("publishing failed")
        finally:
            pub.close(0)

    def _read_subscriptions(self, pub) -> None:
        """Counts the subscribers per prefix from XPUB's (un)subscribe messages."""
        changed = False
        while True:
            try:
                msg = pub.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if not msg:
                continue
            prefix, n = bytes(msg[1:]), self._subs.get(bytes(msg[1:]), 0)
            n += 1 if msg[0] == 1 else -1
            if n > 0:
                self._subs[prefix] = n
            else:
                self._subs.pop(prefix, None)
            changed = True
        if changed:
            self._wanted = {}

    def _is_wanted(self, topic: bytes) -> bool:
        w = self._wanted.get(topic)
        if w is None:
            w = self._wanted[topic] = any(topic.startswith(p) for p in self._subs)
        return w

    def _publish_batch(self, pub, pairs) -> None:
        ex = self.node.exchange
        trades: dict[int, list] = {}
        depth: dict[int, list] = {}
        arrays: list = []  # (EVENT_DTYPE array, seq, ts): seq/ts scalars or per-row arrays
        py, py_seq, py_ts = [], [], []
        fill, dep = EventKind.FILL, EventKind.DEPTH
        for cmd, out in pairs:
            for events in (out.clock_events, out.events):
                if isinstance(events, np.ndarray):
                    if len(events):
                        arrays.append((events, out.seq, cmd.ts))
                    continue
                for e in events:
                    if e.kind == fill or e.kind == dep:
                        py.append((e.kind, e.reason, e.side, e.order_type, 0, e.market, e.order_id, e.owner,
                                   e.other_id, e.other_owner, e.price, e.qty, e.remaining, e.other_remaining))
                        py_seq.append(out.seq)
                        py_ts.append(cmd.ts)
        if py:  # the per-command events of the whole batch as one array
            arrays.append((np.array(py, EVENT_DTYPE), np.array(py_seq, np.uint64), np.array(py_ts, np.uint64)))
        for arr, seq, ts in arrays:
            kind = arr["kind"]
            is_fill = kind == fill
            if is_fill.any():
                fills = arr[is_fill]
                t = np.zeros(len(fills), TRADE_DTYPE)
                t["seq"] = seq if np.isscalar(seq) else seq[is_fill]
                t["ts"] = ts if np.isscalar(ts) else ts[is_fill]
                t["taker_order_id"], t["maker_order_id"] = fills["order_id"], fills["other_id"]
                t["price"], t["qty"], t["taker_side"] = fills["price"], fills["qty"], fills["side"]
                fm = fills["market"]
                for mk in np.unique(fm).tolist():
                    trades.setdefault(mk, []).append(t[fm == mk])
            is_depth = kind == dep
            if is_depth.any():
                d = arr[is_depth]
                dd = np.zeros(len(d), DEPTH_DTYPE)
                dd["update_id"], dd["price"], dd["qty"], dd["side"] = d["order_id"], d["price"], d["qty"], d["side"]
                dm = d["market"]
                for mk in np.unique(dm).tolist():
                    depth.setdefault(mk, []).append(dd[dm == mk])
        for topic, groups in ((b"trades.", trades), (b"depth.", depth)):
            for mk, chunks in groups.items():
                full = topic + ex._market_by_id[mk].symbol.encode()
                if self._is_wanted(full):
                    pub.send_multipart([full, _join(chunks).tobytes()], zmq.NOBLOCK)


def _join(chunks: list[np.ndarray]) -> np.ndarray:
    """Concatenates keeping the dtype's layout (plain np.concatenate packs
    a padded struct dtype)."""
    if len(chunks) == 1:
        return chunks[0]
    out = np.empty(sum(len(c) for c in chunks), chunks[0].dtype)
    np.concatenate(chunks, out=out)
    return out
