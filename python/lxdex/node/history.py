"""The node's history store: fills, orders and 1-minute candles in SQL.

```
 node process                                                     writer process (nice 10)
  sequencer thread       sender thread                              converts events to rows in numpy,
  store(pairs) --queue--> plain tuples, numpy arrays --pipe-->        writes a group of batches per
  (skips seq <= fed;       (pickled, framed)                          transaction with last_seq in it,
   no I/O, no conversion)                          <--pipe-- reports  reports each commit
  callers (HTTP API): fills() orders() order() candles(), each thread with its own DB connection
```

The store is a listener of the node (`node.listeners`): the sequencer hands
it each batch's `(command, Outcome)` pairs after applying them; it only
drops the pairs it already has (by sequence number) and queues the rest. A
sender thread turns them into plain data and pipes them to a writer
*process*, so that neither the database's I/O nor the conversion's Python
work holds the sequencer's GIL. The writer turns events into rows and
writes a group of batches in one transaction, together with the highest
command sequence number it covers (`last_seq`): after a crash the node
re-feeds the outcomes of its journal replay, and everything after `last_seq`
is written again, exactly once.

Backends: SQLite (stdlib; the default, `DATA_DIR/history.sqlite3`, WAL,
synchronous=NORMAL) or PostgreSQL (psycopg 3) for a `postgresql://` URL.
Prices and quantities are stored as integers (ticks, lots, the quote asset's
units for fees) with the market's sizes in the `markets` table; queries
return decimal strings. docs/history.md has the schema and the rules.
"""

from __future__ import annotations

import calendar
import collections
import contextlib
import json
import logging
import os
import pickle
import queue
import select
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from .. import _core
from .. import commands as C
from ..enums import COMMAND_DTYPE, EVENT_DTYPE, CommandKind, EventKind, Flags, OrderType, Reason, Side, Stp, TimeInForce

log = logging.getLogger("lxdex.node.history")

#: 2: `orders.client_order_id`; 3: `orders.list_id` and `orders.contingency` (the OCO pair or bracket an
#: order was placed in); 4: `order_updates` (changes to orders are appended there, not applied to their rows)
#: and `account_orders` (an account's order ids, instead of an index on `orders(account)`); 5:
#: `account_fills` (an account's fill ids, instead of indexes on the fills' accounts; version 4 was on main
#: for a few commits with one or none of the two `account_*` tables); 6: `min_ts`, `max_ts` of the
#: `account_*` rows (NULL in the rows of before: never skipped).
#: An older database is migrated on open: the columns are added, NULL for its orders; its orders' rows
#: already hold all changes before the migration; the `account_*` tables are built from what it has.
SCHEMA_VERSION = 6
DEFAULT_FILE = "history.sqlite3"

#: A writer transaction takes queued batches until it has about this many
#: commands + events (a Records command weighs as its events).
GROUP_MAX = 600_000
#: ... and the store sends it messages of about this many commands + events.
SEND_MAX = 2_048
#: The sender thread gathers what the sequencer queues for this long after
#: the first batch (unless a reader waits or the store closes) before it
#: pipes it on: waking once per sequencer batch (hundreds of times a second
#: under a POST /order flow) cost the node more CPU in thread switches and
#: GIL hand-offs than the sending itself. The writer groups for longer anyway.
SEND_WINDOW_S = 0.02
#: How long the writer gathers a group (from its first message) before
#: writing it, unless it is full or a reader waits (`flush()` asks for an
#: early commit). A transaction costs about the same whatever its size up to
#: a point (measured before schema 4, with account indexes and orders updated
#: in place): the account indexes took entries at ~one page per account per
#: transaction, and COMMIT writes every dirty page to the WAL; one
#: transaction per sequencer batch (~30 per second under a 10,000 orders/s
#: flow) spent most of the writer's CPU on those pages. Under a heavy flow the
#: pages of resting orders are rewritten by every transaction (a fill or
#: cancel updates its order's row), so longer groups write less: replaying a
#: ZeroMQ load, 0.25 s groups wrote 822 bytes per order to disk, 1 s groups
#: (and the checkpoint below) 278.
GROUP_WINDOW_S = 1.0
#: The nice value of the writer's reading and converting thread (lower CPU
#: priority than the node). Its SQL thread keeps the node's: under a flow
#: faster than the history, the node waits for that thread anyway, and
#: niced it got a smaller share of the cores (30 s ZeroMQ loads: ~230k
#: orders/s written niced, ~248k not).
WRITER_NICE = 10
#: How often the writer looks whether its SQL thread is free, while a group
#: that is ready waits for it (and gathers what comes meanwhile).
SQL_POLL_S = 0.005
MAX_LIMIT = 5_000
#: At most this many ids in one `account_orders` / `account_fills` row (32 KiB).
ACCOUNT_BLOCK = 4_096

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK = 7 * DAY
#: Intervals served (Binance names); every one is aggregated from the 1m candles.
INTERVALS = {"1m": MINUTE, "3m": 3 * MINUTE, "5m": 5 * MINUTE, "15m": 15 * MINUTE, "30m": 30 * MINUTE,
             "1h": HOUR, "2h": 2 * HOUR, "4h": 4 * HOUR, "6h": 6 * HOUR, "8h": 8 * HOUR, "12h": 12 * HOUR,
             "1d": DAY, "1w": WEEK, "1M": 31 * DAY}

_FILL, _ACCEPTED, _CANCELLED, _AMENDED, _TRIGGERED, _ACTIVATED, _REJECTED, _DEPTH = (
    int(EventKind.FILL), int(EventKind.ACCEPTED), int(EventKind.CANCELLED), int(EventKind.AMENDED),
    int(EventKind.TRIGGERED), int(EventKind.ACTIVATED), int(EventKind.REJECTED), int(EventKind.DEPTH))
#: Records rows that place an order list, and the contingency each makes.
_LIST_KINDS = {int(CommandKind.BRACKET): "bracket", int(CommandKind.OCO): "oco"}
_EXPIRED = int(Reason.EXPIRED)
_REASON_NAMES = {int(r): r.name.lower() for r in Reason}
_SIDE_NAMES = {int(s): s.name.lower() for s in Side}
_TYPE_NAMES = {int(t): t.name.lower() for t in OrderType}
_TIF_NAMES = {int(t): t.name.lower() for t in TimeInForce}
_STP_NAMES = {int(t): t.name.lower() for t in Stp}
_MARKET_TYPES = {int(OrderType.MARKET), int(OrderType.STOP_MARKET), int(OrderType.TAKE_PROFIT_MARKET),
                 int(OrderType.TRAILING_STOP)}
_ADVANCE_TIME = int(CommandKind.ADVANCE_TIME)
#: Status by code (0: unchanged, 5: new) and reason name by Reason value (255: none), for numpy indexing.
_STATUS_OF = np.array([None, "partially_filled", "filled", "cancelled", "expired", "new"], dtype=object)
_REASON_OF = np.array([_REASON_NAMES.get(i, str(i)) if i != 255 else None for i in range(256)], dtype=object)
_STATUS_LIST, _REASON_LIST = _STATUS_OF.tolist(), _REASON_OF.tolist()
#: What the history keeps of an order's submit parameters.
_PARAMS_DTYPE = np.dtype([("tif", "u1"), ("stp", "u1"), ("flags", "u1"), ("trigger_price", "<i8"),
                          ("display_qty", "<i8"), ("expire_ts", "<u8")])

# Order state, as the writer keeps it for the orders a group creates (one row to insert).
(O_ID, O_ACCOUNT, O_MARKET, O_SIDE, O_TYPE, O_TIF, O_STP, O_FLAGS, O_PRICE, O_TRIGGER, O_DISPLAY, O_EXPIRE, O_QTY,
 O_FILLED, O_QUOTE, O_REMAINING, O_STATUS, O_REASON, O_CREATED_TS, O_UPDATED_TS, O_CREATED_SEQ, O_UPDATED_SEQ,
 O_TRIGGERED_TS, O_CLIENT_ID, O_LIST_ID, O_CONTINGENCY) = range(26)
# ... and the change to an order an earlier group created (one UPDATE).
(D_FILLED, D_QUOTE, D_REMAINING, D_STATUS, D_REASON, D_PRICE, D_QTY_FROM_FILLED, D_TRIGGERED_TS, D_UPDATED_TS,
 D_UPDATED_SEQ) = range(10)

_ORDER_COLUMNS = ("order_id", "account", "market", "side", "order_type", "tif", "stp", "flags", "price",
                  "trigger_price", "display_qty", "expire_ts", "qty", "filled_qty", "filled_quote", "remaining",
                  "status", "reason", "created_ts", "updated_ts", "created_seq", "updated_seq", "triggered_ts",
                  "client_order_id", "list_id", "contingency")
#: The columns of an order placed with no trigger, display size, expiry, client id or list, and not closed
#: with a reason (most orders): `_Backend.insert_plain_orders` binds only these (each bound parameter costs
#: the sqlite3 module ~0.2 us; the others are constants of the statement).
_PLAIN_ORDER_COLUMNS = ("order_id", "account", "market", "side", "order_type", "tif", "stp", "flags", "price", "qty",
                        "filled_qty", "filled_quote", "remaining", "status", "created_ts", "updated_ts",
                        "created_seq", "updated_seq")
_PLAIN_ORDER_CONSTANTS = {"trigger_price": "0", "display_qty": "0", "expire_ts": "0", "reason": "NULL",
                          "triggered_ts": "NULL", "client_order_id": "NULL", "list_id": "NULL", "contingency": "NULL"}
_FILL_COLUMNS = ("id", "seq", "ts", "market", "taker_order", "taker_account", "maker_order", "maker_account",
                 "taker_side", "price", "qty", "taker_fee", "maker_fee")
#: A change to an order that an earlier transaction wrote (`order_updates`, the writer's delta rows):
#: the lots and quote filled since, then the new values (NULL: unchanged) and when.
_UPDATE_COLUMNS = ("add_filled_qty", "add_filled_quote", "remaining", "status", "reason", "price", "qty_from_filled",
                   "triggered_ts", "updated_ts", "updated_seq", "order_id")
_CANDLE_COLUMNS = ("market", "start", "open", "high", "low", "close", "volume", "quote_volume", "trades")


#: The columns of `account_orders` and `account_fills`.
_ACCOUNT_COLUMNS = ("account", "first_id", "ids", "min_ts", "max_ts")


def _account_blocks(ids: np.ndarray, accounts: np.ndarray, ts: np.ndarray, block: int = ACCOUNT_BLOCK) -> list[tuple]:
    """`account_orders` rows `(account, first_id, ids, min_ts, max_ts)` for orders `ids` of
    `accounts` (`account_orders`; `account_fills` with each fill's ids twice,
    as its taker's and maker's): each account's ids ascending and once, as
    int64 little-endian bytes, at most `block` to a row; `min_ts`, `max_ts`
    the least and greatest of their `ts` (orders: created_ts; fills: ts)."""
    if not len(ids):
        return []
    order = np.lexsort((ids, accounts))
    ids, accounts = ids[order].astype("<i8"), accounts[order]
    ts = np.asarray(ts, np.int64)[order]
    keep = np.ones(len(ids), bool)  # (a self-trade's fill is the account's once)
    keep[1:] = (ids[1:] != ids[:-1]) | (accounts[1:] != accounts[:-1])
    if not keep.all():
        ids, accounts, ts = ids[keep], accounts[keep], ts[keep]
    cuts = (np.flatnonzero(accounts[1:] != accounts[:-1]) + 1).tolist()
    out = []
    for lo, hi in zip([0, *cuts], [*cuts, len(ids)]):
        a = int(accounts[lo])
        for k in range(lo, hi, block):
            chunk = ids[k : min(hi, k + block)]
            t = ts[k : min(hi, k + block)]
            out.append((a, int(chunk[0]), chunk.tobytes(), int(t.min()), int(t.max())))
    return out


def _account_order_rows(g: "_Group", block: int = ACCOUNT_BLOCK) -> list[tuple]:
    """The `account_orders` rows of the orders a group places."""
    ids, accounts, ts = [], [], []
    if g.order_rows:
        ids.append(np.array([r[O_ID] for r in g.order_rows], np.int64))
        accounts.append(np.array([r[O_ACCOUNT] for r in g.order_rows], np.int64))
        ts.append(np.array([r[O_CREATED_TS] for r in g.order_rows], np.int64))
    p = g.plain_order_rows  # (`_Cols`, the column-wise path's, or empty)
    if len(p):
        ids.append(p.cols[0])
        accounts.append(p.cols[1])
        ts.append(p.cols[_PLAIN_ORDER_COLUMNS.index("created_ts")])
    if not ids:
        return []
    return _account_blocks(np.concatenate(ids), np.concatenate(accounts), np.concatenate(ts), block)


def _account_fill_rows(g: "_Group", block: int = ACCOUNT_BLOCK) -> list[tuple]:
    """The `account_fills` rows of a group's fills (each fill under its taker's and its maker's account)."""
    f = g.fill_rows
    if isinstance(f, _Cols):
        if not len(f):
            return []
        ids, ts, taker, maker = f.cols[0], f.cols[2], f.cols[5], f.cols[7]
    elif f:
        ids = np.array([r[0] for r in f], np.int64)
        ts = np.array([r[2] for r in f], np.int64)
        taker = np.array([r[5] for r in f], np.int64)
        maker = np.array([r[7] for r in f], np.int64)
    else:
        return []
    return _account_blocks(np.concatenate((ids, ids)), np.concatenate((taker, maker)), np.concatenate((ts, ts)),
                           block)


def _orders_now_sql(select: str) -> str:
    """`select` (an `orders` query of `_ORDER_COLUMNS`, with its ORDER BY
    and LIMIT) joined with the `order_updates` of its orders, for
    `_fold_updates`: one statement, so one snapshot of both tables."""
    upd = ", ".join(f"u.{c}" for c in _UPDATE_COLUMNS[:-1])
    return (f"SELECT o.*, {upd} FROM ({select}) AS o "
            f"LEFT JOIN order_updates AS u ON u.order_id = o.order_id")


def _fold_updates(rows: Iterable) -> list[tuple]:
    """Orders as they are now, by id, from the
    rows of `_orders_now_sql`: each order's row as the transaction that
    created it wrote it, then its `order_updates` in `updated_seq` order,
    applied as the writer's delta rows mean them: filled lots and quote
    added, a NULL leaves the column, `qty` = filled before the update +
    `qty_from_filled` (an amend's new size, or a bracket exit's on ACTIVATED)."""
    n = len(_ORDER_COLUMNS)
    base: dict[int, list] = {}
    updates: dict[int, list] = {}
    for r in rows:
        oid = r[0]
        if oid not in base:
            base[oid] = r[:n]
        if r[n + 9] is not None:  # (updated_seq: NULL when the order has no updates)
            updates.setdefault(oid, []).append(r[n:])
    for oid, ups in updates.items():
        o = base[oid] = list(base[oid])
        ups.sort(key=lambda u: u[9])
        for add_filled, add_quote, remaining, status, reason, price, qty_from_filled, triggered, ts, seq in ups:
            before = o[O_FILLED]
            o[O_FILLED] = before + add_filled
            o[O_QUOTE] += add_quote
            if remaining is not None:
                o[O_REMAINING] = remaining
            if status is not None:
                o[O_STATUS] = status
            if reason is not None:
                o[O_REASON] = reason
            if price is not None:
                o[O_PRICE] = price
            if qty_from_filled is not None:
                o[O_QTY] = before + qty_from_filled
            if triggered is not None:
                o[O_TRIGGERED_TS] = triggered
            o[O_UPDATED_TS], o[O_UPDATED_SEQ] = ts, seq
    return [tuple(base[k]) if k in updates else base[k] for k in sorted(base)]


def _schema(big: str, rowid: bool = False, blob: str = "BLOB") -> list[str]:
    """The tables (`big` is the 64-bit integer type's name, `blob` the
    binary one's). `rowid` (SQLite): the `account_*` tables are `WITHOUT
    ROWID`, clustered by their key."""
    return [
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value {big} NOT NULL)",
        "CREATE TABLE IF NOT EXISTS markets (id INTEGER PRIMARY KEY, symbol TEXT NOT NULL UNIQUE, "
        "base TEXT NOT NULL, quote TEXT NOT NULL, base_decimals INTEGER NOT NULL, quote_decimals INTEGER NOT NULL, "
        "tick_size TEXT NOT NULL, lot_size TEXT NOT NULL, maker_bps INTEGER NOT NULL, taker_bps INTEGER NOT NULL, "
        "fee_mode TEXT NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS fills (id {big} PRIMARY KEY, seq {big} NOT NULL, ts {big} NOT NULL, "
        f"market INTEGER NOT NULL, taker_order {big} NOT NULL, taker_account {big} NOT NULL, "
        f"maker_order {big} NOT NULL, maker_account {big} NOT NULL, taker_side SMALLINT NOT NULL, "
        f"price {big} NOT NULL, qty {big} NOT NULL, taker_fee {big}, maker_fee {big})",
        f"CREATE TABLE IF NOT EXISTS account_fills (account {big} NOT NULL, first_id {big} NOT NULL, "
        f"ids {blob} NOT NULL, min_ts {big}, max_ts {big}, PRIMARY KEY (account, first_id))"
        f"{' WITHOUT ROWID' if rowid else ''}",
        f"CREATE TABLE IF NOT EXISTS orders (order_id {big} PRIMARY KEY, account {big} NOT NULL, "
        f"market INTEGER NOT NULL, side SMALLINT NOT NULL, order_type SMALLINT NOT NULL, tif SMALLINT NOT NULL, "
        f"stp SMALLINT NOT NULL, flags SMALLINT NOT NULL, price {big} NOT NULL, trigger_price {big} NOT NULL, "
        f"display_qty {big} NOT NULL, expire_ts {big} NOT NULL, qty {big} NOT NULL, filled_qty {big} NOT NULL, "
        f"filled_quote {big} NOT NULL, remaining {big} NOT NULL, status TEXT NOT NULL, reason TEXT, "
        f"created_ts {big} NOT NULL, updated_ts {big} NOT NULL, created_seq {big} NOT NULL, "
        f"updated_seq {big} NOT NULL, triggered_ts {big}, client_order_id TEXT, list_id {big}, contingency TEXT)",
        f"CREATE TABLE IF NOT EXISTS account_orders (account {big} NOT NULL, first_id {big} NOT NULL, "
        f"ids {blob} NOT NULL, min_ts {big}, max_ts {big}, PRIMARY KEY (account, first_id))"
        f"{' WITHOUT ROWID' if rowid else ''}",
        f"CREATE TABLE IF NOT EXISTS order_updates (order_id {big} NOT NULL, add_filled_qty {big} NOT NULL, "
        f"add_filled_quote {big} NOT NULL, remaining {big}, status TEXT, reason TEXT, price {big}, "
        f"qty_from_filled {big}, triggered_ts {big}, updated_ts {big} NOT NULL, updated_seq {big} NOT NULL)",
        "CREATE INDEX IF NOT EXISTS order_updates_order ON order_updates (order_id)",
        f"CREATE TABLE IF NOT EXISTS candles_1m (market INTEGER NOT NULL, start {big} NOT NULL, "
        f"open {big} NOT NULL, high {big} NOT NULL, low {big} NOT NULL, close {big} NOT NULL, "
        f"volume {big} NOT NULL, quote_volume {big} NOT NULL, trades {big} NOT NULL, PRIMARY KEY (market, start))",
        f"CREATE TABLE IF NOT EXISTS gaps (first_seq {big} NOT NULL, last_seq {big} NOT NULL, "
        f"detected_at {big} NOT NULL)",
    ]


# -- backends -----------------------------------------------------------------------------------------------


class _Cols:
    """Rows given as columns, for bulk statements: each column an integer
    array, `("null_if_negative", array)` (NULL where negative: absent),
    `("lookup", codes, values)` (`values[code]`) or a list of values.
    The writer's SQLite connection binds them as they are; `rows()` makes
    tuples for the other connections."""

    __slots__ = ("cols", "n")

    def __init__(self, *cols) -> None:
        self.cols = [self._norm(c) for c in cols]
        c0 = self.cols[0]
        self.n = len(c0) if isinstance(c0, (list, np.ndarray)) else len(c0[1])

    @staticmethod
    def _ints(a: np.ndarray) -> np.ndarray:
        if a.dtype == np.uint64 and len(a) and int(a.max()) >= 2**63:
            raise OverflowError(f"{int(a.max())} does not fit a 64-bit signed integer")
        # (aligned too: a one-element view of a packed record's field counts as contiguous)
        return np.require(a, np.int64, ("C", "A"))

    @classmethod
    def _norm(cls, c):
        if isinstance(c, np.ndarray):
            return cls._ints(c)
        if isinstance(c, tuple):
            return (c[0], cls._ints(c[1]), *c[2:])
        return c

    def __len__(self) -> int:
        return self.n

    def rows(self) -> list[tuple]:
        out = []
        for c in self.cols:
            if isinstance(c, list):
                out.append(c)
            elif isinstance(c, np.ndarray):
                out.append(c.tolist())
            elif c[0] == "null_if_negative":
                out.append(_none_if_negative(c[1]))
            else:
                out.append([c[2][k] for k in c[1].tolist()])
        return list(zip(*out))


def _tuples_of(rows) -> list:
    return rows.rows() if isinstance(rows, _Cols) else rows


def _executemany(cur, sql: str, rows) -> None:
    """`cur.executemany(sql, rows)`; the writer's SQLite connection binds
    `_Cols` from their arrays."""
    if isinstance(rows, _Cols) and isinstance(cur, _FastSQLite):
        cur.insert_columns(sql, rows)
    else:
        cur.executemany(sql, _tuples_of(rows))


class _FastSQLite:
    """`_core.HistoryDb` with the few `sqlite3.Connection` (and cursor)
    methods the writer uses."""

    def __init__(self, db) -> None:
        self._db = db
        self._rows: list = []
        self._at = 0

    def execute(self, sql: str, params=()) -> "_FastSQLite":
        self._rows, self._at = self._db.execute(sql, params), 0
        return self

    def fetchall(self) -> list:
        rows, self._rows = self._rows[self._at :], []
        return rows

    def fetchone(self):
        if self._at >= len(self._rows):
            return None
        self._at += 1
        return self._rows[self._at - 1]

    def cursor(self) -> "_FastSQLite":
        return self

    def executemany(self, sql: str, rows: list) -> None:
        self._db.executemany(sql, rows)  # (`_executemany` sends `_Cols` to insert_columns)

    def insert_columns(self, sql: str, rows: _Cols) -> None:
        self._db.insert_columns(sql, rows.cols)

    def close(self) -> None:
        self._db.close()


class _Backend:
    """What differs between SQLite and PostgreSQL: connecting, parameter
    style, a few functions, and how rows are bulk-inserted."""

    name = ""
    big = "BIGINT"
    blob = "BLOB"
    greatest = "max"
    least = "min"
    def connect(self, writer: bool):
        raise NotImplementedError

    def transient(self, e: BaseException) -> bool:
        """Whether a failed write is worth retrying (the database went away,
        is busy or full) rather than a bug."""
        return False

    def sql(self, s: str) -> str:
        return s

    def month_start(self, col: str) -> str:
        raise NotImplementedError

    def connect_writer(self):
        """The writer process's connection."""
        return self.connect(writer=True)

    def insert_many(self, cur, table: str, columns: tuple[str, ...], rows) -> None:
        _executemany(cur, self.sql(f"INSERT INTO {table} ({', '.join(columns)}) "
                                   f"VALUES ({', '.join('?' * len(columns))})"), rows)

    def insert_plain_orders(self, cur, rows) -> None:
        """Orders as `_PLAIN_ORDER_COLUMNS` rows; the other columns take their constants."""
        values = ", ".join(_PLAIN_ORDER_CONSTANTS.get(c, "?") for c in _ORDER_COLUMNS)
        _executemany(cur, self.sql(f"INSERT INTO orders ({', '.join(_ORDER_COLUMNS)}) VALUES ({values})"), rows)

    def begin(self, conn) -> None:
        pass

    def describe(self) -> str:
        raise NotImplementedError

    def config(self) -> dict:
        """What `_backend_from_config` rebuilds it from (in the writer process)."""
        raise NotImplementedError


class _SQLite(_Backend):
    name = "sqlite"
    big = "INTEGER"  # SQLite integers are 64-bit; INTEGER PRIMARY KEY is the rowid

    def __init__(self, path: Path) -> None:
        self.path = path

    def connect(self, writer: bool):
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        conn.execute("PRAGMA busy_timeout = 30000")
        if writer:
            self._writer_pragmas(conn)
        return conn

    def _writer_pragmas(self, conn) -> None:
        # 8 KiB pages for a new database (an existing one keeps its own): half the WAL frames, and so half
        # the write and read calls, for what the writer appends.
        conn.execute("PRAGMA page_size = 8192")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise RuntimeError(f"{self.path}: SQLite refused WAL mode (journal_mode is {mode})")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA cache_size = -65536")  # 64 MiB
        # Checkpoint every ~200 MB of WAL (of 8 KiB pages) rather than 4 MB: `order_updates`' index and the
        # `account_*` rows take inserts at random places, and a page changed by many transactions is then
        # copied back once.
        conn.execute("PRAGMA wal_autocheckpoint = 25000")

    def connect_writer(self):
        """The writer's connection: SQLite compiled into `lxdex._core`, which
        binds `_Cols` straight from their arrays (only the writer process
        opens the file with it; readers use the `sqlite3` module)."""
        conn = _FastSQLite(_core.HistoryDb(str(self.path), 30_000))
        try:
            self._writer_pragmas(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def begin(self, conn) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def transient(self, e: BaseException) -> bool:
        msg = str(e).lower()
        return isinstance(e, sqlite3.OperationalError) and any(
            w in msg for w in ("locked", "busy", "disk", "i/o", "full", "unable to open"))

    def month_start(self, col: str) -> str:
        return f"CAST(strftime('%s', {col} / 1000, 'unixepoch', 'start of month') AS INTEGER) * 1000"

    def describe(self) -> str:
        return f"sqlite:///{self.path}"

    def config(self) -> dict:
        return {"kind": "sqlite", "path": str(self.path)}


class _Postgres(_Backend):
    name = "postgresql"
    blob = "BYTEA"
    greatest = "GREATEST"
    least = "LEAST"

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError as e:  # pragma: no cover - psycopg is a dependency
            raise RuntimeError("a postgresql:// history URL needs psycopg 3 (pip install 'psycopg[binary]')") from e
        self.psycopg = psycopg
        self.url = url

    def connect(self, writer: bool):
        from psycopg.types.numeric import Int8Dumper

        conn = self.psycopg.connect(self.url, autocommit=True)
        # Every integer we send fits 64 bits: one parameter type, one prepared plan.
        conn.adapters.register_dumper(int, Int8Dumper)
        if writer:
            # One writer per database: a second node writing the same history would corrupt it.
            if not conn.execute("SELECT pg_try_advisory_lock(hashtext('lxdex-history'))").fetchone()[0]:
                conn.close()
                raise RuntimeError(f"history database {self.describe()} is being written by another lxdex "
                                   "(its advisory lock is held)")
        return conn

    def transient(self, e: BaseException) -> bool:
        return isinstance(e, self.psycopg.OperationalError)

    def sql(self, s: str) -> str:
        return s.replace("%", "%%").replace("?", "%s")

    def begin(self, conn) -> None:
        conn.execute("BEGIN")

    def month_start(self, col: str) -> str:
        return (f"CAST(EXTRACT(EPOCH FROM date_trunc('month', to_timestamp({col} / 1000) AT TIME ZONE 'UTC')) "
                f"AS BIGINT) * 1000")

    def insert_many(self, cur, table: str, columns: tuple[str, ...], rows) -> None:
        with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
            for r in _tuples_of(rows):
                cp.write_row(r)

    def insert_plain_orders(self, cur, rows) -> None:
        # COPY takes every column; binding costs little there
        self.insert_many(cur, "orders", _ORDER_COLUMNS, [_full_order_row(r) for r in _tuples_of(rows)])

    def describe(self) -> str:
        try:
            from psycopg.conninfo import conninfo_to_dict

            d = conninfo_to_dict(self.url)
            return f"postgresql://{d.get('host', '')}:{d.get('port', '')}/{d.get('dbname', '')}"
        except Exception:
            return "postgresql://..."

    def config(self) -> dict:
        return {"kind": "postgresql", "url": self.url}


def _backend_from_config(cfg: dict) -> _Backend:
    return _SQLite(Path(cfg["path"])) if cfg["kind"] == "sqlite" else _Postgres(cfg["url"])


#: Only orders placed with a client order id are in this index (lookups by account and client id).
_CLIENT_ID_INDEX = ("CREATE INDEX IF NOT EXISTS orders_client ON orders (account, client_order_id) "
                    "WHERE client_order_id IS NOT NULL")
#: Only the orders of an order list are in this one (an account's lists by id).
_LIST_INDEX = "CREATE INDEX IF NOT EXISTS orders_list ON orders (account, list_id) WHERE list_id IS NOT NULL"
#: What each older schema version lacks, added in the opening transaction (NULL for the orders it has).
_MIGRATIONS = {
    1: ["ALTER TABLE orders ADD COLUMN client_order_id TEXT"],
    2: ["ALTER TABLE orders ADD COLUMN list_id {big}", "ALTER TABLE orders ADD COLUMN contingency TEXT"],
    # (`order_updates` is created with the other tables, empty: the orders' rows are up to date)
    3: [],
    4: [lambda c, b: _add_ts_columns(c, b), lambda c, b: _build_account_ids(c, b),
        "DROP INDEX IF EXISTS orders_account", "DROP INDEX IF EXISTS fills_taker", "DROP INDEX IF EXISTS fills_maker"],
    5: [lambda c, b: _add_ts_columns(c, b)],
}


def _add_ts_columns(c, b: _Backend) -> None:
    """`min_ts` and `max_ts` on `account_*` tables made before version 6."""
    for table in ("account_orders", "account_fills"):
        cur = c.execute(f"SELECT * FROM {table} LIMIT 0")
        if "min_ts" not in [d[0] for d in cur.description]:
            c.execute(f"ALTER TABLE {table} ADD COLUMN min_ts {b.big}")
            c.execute(f"ALTER TABLE {table} ADD COLUMN max_ts {b.big}")


def _build_account_ids(c, b: _Backend) -> None:
    """`account_orders` and `account_fills` from the `orders` and `fills` of a
    database before version 5 (one account at a time, through the account
    indexes it had), each unless it has rows already (a version 4 database
    may have `account_orders`)."""
    for table, accounts_sql, ids_sql in (
            ("account_orders", "SELECT DISTINCT account FROM orders",
             "SELECT order_id, created_ts FROM orders WHERE account = ? ORDER BY order_id"),
            ("account_fills", "SELECT DISTINCT taker_account FROM fills UNION SELECT DISTINCT maker_account FROM fills",
             "SELECT id, ts FROM fills WHERE taker_account = ? UNION SELECT id, ts FROM fills WHERE maker_account = ? "
             "ORDER BY 1")):
        if c.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
            continue
        accounts = sorted(r[0] for r in c.execute(accounts_sql).fetchall())
        n = 0
        for a in accounts:
            got = np.array(c.execute(b.sql(ids_sql), (a,) * ids_sql.count("?")).fetchall(), np.int64).reshape(-1, 2)
            ids = got[:, 0]
            for row in _account_blocks(ids, np.full(len(ids), a, np.int64), got[:, 1]):
                c.execute(b.sql(f"INSERT INTO {table} ({', '.join(_ACCOUNT_COLUMNS)}) VALUES (?, ?, ?, ?, ?)"), row)
            n += len(ids)
        log.info("history: %d ids of %d accounts into %s", n, len(accounts), table)


def _init_schema(c, b: _Backend) -> None:
    """Creates the tables if missing; migrates a database of an older
    version (adds the columns it lacks, `_MIGRATIONS`, in the same
    transaction); refuses another schema version."""
    b.begin(c)
    try:
        for stmt in _schema(b.big, rowid=b.name == "sqlite", blob=b.blob):
            c.execute(stmt)
        rows = c.execute("SELECT version FROM schema_version").fetchall()
        if not rows:
            c.execute(b.sql("INSERT INTO schema_version (version) VALUES (?)"), (SCHEMA_VERSION,))
        elif rows[0][0] in _MIGRATIONS:
            for v in range(rows[0][0], SCHEMA_VERSION):
                for stmt in _MIGRATIONS[v]:
                    if callable(stmt):
                        stmt(c, b)
                    else:
                        c.execute(stmt.format(big=b.big))
            c.execute(b.sql("UPDATE schema_version SET version = ?"), (SCHEMA_VERSION,))
            log.info("history database %s migrated from schema version %d to %d", b.describe(), rows[0][0],
                     SCHEMA_VERSION)
        elif rows[0][0] != SCHEMA_VERSION:
            raise RuntimeError(f"history database {b.describe()} has schema version {rows[0][0]}; "
                               f"this lxdex writes version {SCHEMA_VERSION}")
        c.execute(_CLIENT_ID_INDEX)
        c.execute(_LIST_INDEX)
        c.execute("COMMIT")
    except BaseException:
        c.execute("ROLLBACK")
        raise


def _backend_for(url: str | None, data_dir: Path | None) -> _Backend:
    if url is not None and url.startswith(("postgresql://", "postgres://")):
        return _Postgres(url)
    if data_dir is None:
        raise ValueError("data_dir: SQLite history needs the node's data directory")
    if url is None or url in ("", "sqlite://", "sqlite:///"):
        return _SQLite(Path(data_dir) / DEFAULT_FILE)
    if url.startswith("sqlite:///"):
        rest = url[len("sqlite:///"):]
        if rest == ":memory:" or rest.startswith("file:"):
            raise ValueError("history_url: an in-memory SQLite database cannot be shared between threads")
        p = Path(rest)
        return _SQLite(p if p.is_absolute() else Path(data_dir) / p)
    if url.startswith(("postgresql://", "postgres://")):
        return _Postgres(url)
    raise ValueError(f"history_url: {url!r} is not sqlite:///PATH or postgresql://...")


# -- market facts the writer and the queries need ------------------------------------------------------------


@dataclass(frozen=True)
class _Market:
    id: int
    symbol: str
    quote: str
    quote_decimals: int
    tick_size: Decimal
    lot_size: Decimal
    maker_bps: int
    taker_bps: int
    tick_units: int  # quote units per tick per lot


def _market_from_row(r) -> _Market:
    mid, symbol, _base, quote, _bd, qd, tick, lot, maker, taker = r[:10]
    tick, lot = Decimal(tick), Decimal(lot)
    return _Market(mid, symbol, quote, qd, tick, lot, maker, taker, int(tick * lot * Decimal(10) ** qd))


def _fee(notional: int, bps: int) -> int:
    """The core's fee rounding (crates/engine/src/exchange.rs `fee`): fees round
    up (against the payer), rebates toward zero."""
    if bps >= 0:
        return -((-notional * bps) // 10_000)
    return -((notional * -bps) // 10_000)


def _dec(n: int, step: Decimal) -> str:
    return f"{n * step:f}"


# -- the store ------------------------------------------------------------------------------------------------


class HistoryStore:
    """Fills, orders and candles of the exchange, written by a separate
    process so that the sequencer never waits for it (not for I/O, and not
    for the GIL either).

    Use `HistoryStore.open(url, data_dir, exchange_markets)`; add the store
    to `node.listeners`. `exchange_markets(market_id)` returns the exchange's
    `MarketInfo` (called the first time a market shows up)."""

    def __init__(self, backend: _Backend, exchange_markets: Callable[[int], Any], *, vectorized: bool = True,
                 start_timeout: float = 60.0, max_backlog_bytes: int = 256 << 20,
                 account_block: int = ACCOUNT_BLOCK) -> None:
        if not isinstance(account_block, int) or account_block < 1:
            raise ValueError(f"account_block: {account_block!r} is not a positive integer")
        self._b = backend
        self._exchange_markets = exchange_markets
        conn = backend.connect(writer=True)
        try:
            _init_schema(conn, backend)
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            known = [r[0] for r in conn.execute("SELECT id FROM markets").fetchall()]
        finally:
            conn.close()
        #: Highest command seq durably written (updated as the writer commits).
        self.last_seq: int = int(meta.get("last_seq", 0))
        self._fed_seq = self.last_seq  # highest seq queued (sequencer thread)
        self._queued = 0               # commands queued (sequencer thread)
        self._written = 0              # commands the writer reports written
        #: The backlog's bound (bytes of commands and events held for the writer): past it the listener
        #: waits for the writer, i.e. the sequencer does. Memory stays bounded when orders come faster
        #: than the history is written (bursts below the bound are absorbed).
        self.max_backlog_bytes = max_backlog_bytes
        self._queued_bytes = 0         # sequencer thread
        self._written_bytes = 0        # receiver thread
        self._marks: collections.deque = collections.deque()  # (queued commands, queued bytes) per call
        self._stalls = 0
        self._stalled_s = 0.0
        self._sent_markets: set[int] = set(known)  # sender thread
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._flush_asked = False  # a flush marker is on its way to the writer
        self._hurry = threading.Event()  # cuts the sender's gathering window short (flush, close)
        self._cond = threading.Condition()
        self._failed: BaseException | None = None
        self._dropped = 0
        self._closed = False
        self._stats: dict = {"groups": 0, "fills": 0, "orders": 0, "write_s": 0.0, "convert_s": 0.0}
        self._local = threading.local()
        self._query_conns: list = []
        self._query_lock = threading.Lock()
        self._qmarkets: dict[int, _Market] = {}
        self._qsymbols: dict[str, int] = {}
        # The writer process: commands in on one pipe, reports out on another.
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        import lxdex

        env = dict(os.environ)
        root = str(Path(lxdex.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        cfg = json.dumps({"in": to_r, "out": from_w})  # the rest goes through the pipe: no password in `ps`
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", "from lxdex.node.history import _writer_main; _writer_main()", cfg],
                pass_fds=(to_r, from_w), env=env, stdin=subprocess.DEVNULL)
        finally:
            os.close(to_r)
            os.close(from_w)
        self._out = os.fdopen(to_w, "wb", buffering=1 << 20)
        self._in = os.fdopen(from_r, "rb", buffering=0)
        try:
            _write_message(self._out, ("config", backend.config(), vectorized, account_block))
            self._out.flush()
        except OSError:
            pass  # it died at once: the read below says so
        first = _read_message(self._in, start_timeout)
        if first is None or first[0] != "ready":
            self._proc.kill()
            self._proc.wait()
            self._out.close()
            self._in.close()
            why = first[1] if first is not None and len(first) > 1 else "it exited"
            raise RuntimeError(f"history writer for {backend.describe()} did not start: {why}")
        self._sender = threading.Thread(target=self._send_loop, name="lxdex-history-send", daemon=True)
        self._receiver = threading.Thread(target=self._receive_loop, name="lxdex-history-recv", daemon=True)
        self._sender.start()
        self._receiver.start()
        log.info("history store %s: last seq %d (writer pid %d)", backend.describe(), self.last_seq, self._proc.pid)

    @classmethod
    def open(cls, url: str | None, data_dir: Path, exchange_markets: Callable[[int], Any], *,
             vectorized: bool = True, max_backlog_bytes: int = 256 << 20,
             account_block: int = ACCOUNT_BLOCK) -> "HistoryStore":
        """A store on `url`: None (or `sqlite:///PATH`, relative to
        `data_dir`) for SQLite, `postgresql://...` for PostgreSQL. Creates the
        schema if missing; refuses a database of another schema version.
        (`vectorized=False` converts through the plain per-event loop, and
        `account_block` sets the ids per `account_orders` row: tests.)"""
        backend = _backend_for(url, Path(data_dir) if data_dir is not None else None)
        if isinstance(backend, _SQLite):
            backend.path.parent.mkdir(parents=True, exist_ok=True)
        return cls(backend, exchange_markets, vectorized=vectorized, max_backlog_bytes=max_backlog_bytes,
                   account_block=account_block)

    # -- the listener (sequencer thread) ----------------------------------------------------------------------
    def __call__(self, pairs: list) -> None:
        """Queues the pairs this store does not have yet (seq > last fed).
        No I/O, no conversion (the sender thread does that); it waits only
        while the backlog is over `max_backlog_bytes` (the writer is far
        behind), until the writer has brought it under 90% of that."""
        if not pairs:
            return
        hi = self._fed_seq
        if pairs[0][1].seq <= hi:
            pairs = [p for p in pairs if p[1].seq > hi]
            if not pairs:
                return
        if self._failed is not None or self._closed:
            self._dropped += len(pairs)
            return
        if self._queued_bytes - self._written_bytes > self.max_backlog_bytes:
            self._wait_for_writer()
            if self._failed is not None or self._closed:
                self._dropped += len(pairs)
                return
        size = 0
        for c, o in pairs:
            # (a rejected Records command's events are an empty list)
            size += len(c.data) + getattr(o.events, "nbytes", 0) if type(c) is C.Records else 256
        self._fed_seq = pairs[-1][1].seq
        self._queued += len(pairs)
        self._queued_bytes += size
        self._marks.append((self._queued, self._queued_bytes))
        self._q.put(pairs)

    def _wait_for_writer(self) -> None:
        """Waits until the backlog is under 90% of its bound. A backlog that
        large fills the writer's groups, which it commits as they fill; only
        when that has not happened soon (a bound smaller than a group) is it
        asked to commit what it has: an early commit is a small transaction,
        and small transactions are what make the writer slow."""
        t0 = time.monotonic()
        self._stalls += 1
        with self._cond:
            while (self._queued_bytes - self._written_bytes > self.max_backlog_bytes * 9 // 10
                   and self._failed is None and not self._closed):
                if time.monotonic() - t0 > GROUP_WINDOW_S / 4:
                    self._ask_flush()
                self._cond.wait(0.05)
        self._stalled_s += time.monotonic() - t0

    def _ask_flush(self) -> None:
        """The writer gathers commands for up to GROUP_WINDOW_S (and the
        sender for SEND_WINDOW_S): ask both to pass on and commit what they
        have now."""
        if not self._flush_asked:
            self._flush_asked = True
            self._q.put(_FLUSH)
            self._hurry.set()

    @property
    def stalls(self) -> int:
        """How many times the sequencer waited for the writer (backlog over its bound)."""
        return self._stalls

    @property
    def stalled_s(self) -> float:
        """Seconds the sequencer spent waiting for the writer."""
        return round(self._stalled_s, 3)

    @property
    def transactions(self) -> int:
        """The writer's commits so far (this process)."""
        return self._stats.get("groups", 0)

    @property
    def backlog_bytes(self) -> int:
        """Bytes of commands and events queued for the writer, not yet written."""
        return self._queued_bytes - self._written_bytes

    @property
    def replay_from(self) -> int:
        """The first seq it needs from the node's journal replay (it skips
        the ones it has): the node replays the ones before without
        building their outcomes."""
        return self._fed_seq + 1

    @property
    def lag(self) -> int:
        """Commands queued but not yet written."""
        return self._queued - self._written

    @property
    def failed(self) -> BaseException | None:
        """The error that stopped the writer (None while it works)."""
        return self._failed

    def flush(self, timeout: float = 10.0) -> None:
        """Waits until everything queued so far is written (TimeoutError if
        not within `timeout` seconds; RuntimeError if the writer failed)."""
        target = self._queued
        deadline = time.monotonic() + timeout
        if self._written < target and not self._closed and self._failed is None:
            self._ask_flush()
        with self._cond:
            while self._written < target and self._failed is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"history: {target - self._written} commands still queued after {timeout} s")
                self._cond.wait(left)
        if self._failed is not None and self._written < target:
            raise RuntimeError(f"history writer failed: {self._failed}") from self._failed

    def wait_for(self, seq: int, timeout: float) -> bool:
        """Waits (at most `timeout` seconds) until the store holds every
        command up to `seq` (a node's applied seq when a read arrived: the
        node acknowledges a command before handing it to the store, so
        `flush()` alone may not cover what a client was just told). Returns
        whether it does; never raises (a failed store: False)."""
        deadline = time.monotonic() + timeout
        while self.last_seq < seq and self._failed is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                self.flush(min(left, 0.5))
            except (TimeoutError, RuntimeError):
                pass
            if self.last_seq < seq:
                time.sleep(0.002)
        return self.last_seq >= seq

    def close(self, timeout: float = 60.0) -> None:
        """Writes what is queued, stops the writer (killed after `timeout`
        seconds: what it had not written is re-fed from the journal at the
        next start), closes every connection."""
        if self._closed:
            return
        self._closed = True
        self._q.put(None)
        self._hurry.set()
        self._sender.join(timeout)
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("history writer did not finish within %.0f s; killing it (pid %d)", timeout, self._proc.pid)
            self._proc.kill()
            self._proc.wait()
        self._receiver.join(timeout)
        self._in.close()
        for conn in self._query_conns:
            try:
                conn.close()
            except Exception:  # pragma: no cover
                pass
        self._query_conns.clear()

    def __enter__(self) -> "HistoryStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def stats(self) -> dict:
        """Writer counters: groups (transactions), fills and orders written, seconds spent."""
        return dict(self._stats, last_seq=self.last_seq, lag=self.lag, dropped=self._dropped,
                    backlog_bytes=self.backlog_bytes, stalls=self._stalls, stalled_s=round(self._stalled_s, 3),
                    failed=str(self._failed) if self._failed else None)

    # -- to and from the writer process ---------------------------------------------------------------------
    def _send_loop(self) -> None:
        """Takes what the listener queued, turns it into plain tuples and
        bytes (`_wire`) and pipes it to the writer."""
        q, out = self._q, self._out
        stop = False
        try:
            while not stop:
                batches = [q.get()]
                if batches[0] is not None and batches[0] is not _FLUSH:
                    self._hurry.wait(SEND_WINDOW_S)  # gather (a flush or close cuts it short)
                self._hurry.clear()
                while True:
                    try:
                        batches.append(q.get_nowait())
                    except queue.Empty:
                        break
                items: list = []
                weight = 0
                flush = False
                for pairs in batches:
                    if pairs is None:
                        stop = True
                        break
                    if pairs is _FLUSH:
                        flush = True
                        continue
                    for pair in pairs:
                        it = self._wire(pair, out)
                        items.append(it)
                        weight += _weight(it)
                        if weight >= SEND_MAX:  # messages stay small: the writer groups them as it likes
                            _write_message(out, ("batch", len(items), items))
                            items, weight = [], 0
                        elif len(items) % 64 == 0:
                            # Let the sequencer have the GIL: it must never wait for this thread long.
                            time.sleep(0)
                if items:
                    _write_message(out, ("batch", len(items), items))
                if flush:
                    self._flush_asked = False
                    _write_message(out, ("flush",))
                out.flush()
            _write_message(out, ("close",))
            out.flush()
        except Exception as e:  # the writer is gone (its failure is reported by the receiver)
            if not isinstance(e, (BrokenPipeError, OSError)):
                log.exception("history sender failed")
                self._fail(e)
        finally:
            try:
                out.close()
            except OSError:
                pass

    def _wire(self, pair: tuple, out) -> tuple:
        """One command as the writer needs it: `(seq, ts)` when it changes
        no history, else `(seq, ts, rejected, tag, payload, events, clock
        events)` with events as EVENT_DTYPE tuples (struct commands) or the
        EVENT_DTYPE array's raw bytes (Records: pickling the array itself
        costs ~30 us a batch). Tags: 0 events only, 1 Records, 2 a
        placement's parameters, 3 AddMarket, 4 SetFeeTiers, 5 an order list
        (`(contingency, list id, {order id: parameters})`)."""
        cmd, o = pair
        seq, ts = o.seq, cmd.ts
        clock = _tuples(o.clock_events) if len(o.clock_events) else ()
        err = o.error is not None
        tp = type(cmd)
        ev = o.events
        if err:
            return (seq, ts, True, 0, None, (), clock) if clock else (seq, ts)
        if tp is C.Records:
            if not len(ev):
                return (seq, ts, False, 0, None, (), clock) if clock else (seq, ts)
            k = ev["kind"]
            mk = ev["market"][(k == _FILL) | (k == _ACCEPTED)]
            if len(mk):
                self._need_markets(np.unique(mk).tolist(), out)
            return (seq, ts, False, 1, cmd.data, ev.tobytes(), clock)
        tuples = _tuples(ev) if len(ev) else ()
        if tuples:
            self._need_markets({t[5] for t in tuples if t[0] == _FILL or t[0] == _ACCEPTED}, out)
        if tp is C.PlaceOrder or tp is C.CancelReplace:
            p = cmd if tp is C.PlaceOrder else cmd.new
            return (seq, ts, False, 2, (p.tif, p.stp, p.post_only, p.display_qty, p.trigger_price, p.expire_ts,
                                        p.client_id), tuples, clock)
        if tp is C.PlaceOco or tp is C.PlaceBracket:
            # Each order's placement parameters, as a PlaceOrder's, and the list they make.
            exits = [(None, cmd.stp, False, None, cmd.tp_trigger, 0, cmd.tp_client_id),
                     (None, cmd.stp, False, None, cmd.sl_trigger, 0, cmd.sl_client_id)]
            if tp is C.PlaceBracket:
                legs = [(cmd.tif, cmd.stp, cmd.post_only, None, None, cmd.expire_ts, cmd.client_id), *exits]
            else:
                legs = exits
            lid = o.value["order_list_id"]
            return (seq, ts, False, 5, ("oco" if tp is C.PlaceOco else "bracket", lid,
                                        dict(zip(o.value["order_ids"], legs))), tuples, clock)
        if tp is C.AddMarket:
            mid = o.value["market_id"]
            self._need_markets([mid], out)
            return (seq, ts, False, 3, mid, (), clock)
        if tp is C.SetFeeTiers:
            return (seq, ts, False, 4, (cmd.market, bool(cmd.tiers)), (), clock)
        if tuples or clock:
            return (seq, ts, False, 0, None, tuples, clock)
        return (seq, ts)

    def _need_markets(self, mids: Iterable[int], out) -> None:
        for mid in mids:
            if mid not in self._sent_markets:
                info = self._exchange_markets(mid)
                _write_message(out, ("market", (info.id, info.symbol, info.base.symbol, info.base.decimals,
                                                info.quote.symbol, info.quote.decimals, str(info.tick_size),
                                                str(info.lot_size), info.maker_bps, info.taker_bps)))
                self._sent_markets.add(mid)

    def _receive_loop(self) -> None:
        while True:
            try:
                msg = _read_message(self._in)
            except (OSError, ValueError):
                msg = None
            if msg is None:
                if not self._closed or self._written < self._queued:
                    self._fail(RuntimeError(f"history writer exited (code {self._proc.poll()})"))
                return
            if msg[0] == "written":
                _, last_seq, written, stats = msg
                with self._cond:
                    self.last_seq = last_seq
                    self._written = written
                    marks = self._marks
                    while marks and marks[0][0] <= written:
                        self._written_bytes = marks.popleft()[1]
                    self._stats = stats
                    self._cond.notify_all()
            elif msg[0] == "failed":
                self._fail(RuntimeError(msg[1]))
            elif msg[0] == "closed":
                return

    def _fail(self, e: BaseException) -> None:
        with self._cond:
            if self._failed is None:
                self._failed = e
                log.error("history writer failed: %s (later commands are not written; they are re-fed from the "
                          "journal at the next start)", e)
            self._cond.notify_all()

    # -- queries (caller's thread, own connection) ------------------------------------------------------------
    def _qconn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise RuntimeError("history store is closed")
            conn = self._b.connect(writer=False)
            self._local.conn = conn
            with self._query_lock:
                self._query_conns.append(conn)
        return conn

    def _query(self, sql: str, params: Iterable) -> list:
        conn = self._qconn()
        if self._b.name == "sqlite":
            return conn.execute(sql, tuple(params)).fetchall()
        with conn.cursor() as cur:
            cur.execute(self._b.sql(sql), tuple(params))
            return cur.fetchall()

    def _qmarket(self, mid: int) -> _Market:
        m = self._qmarkets.get(mid)
        if m is None:
            self._refresh_markets()
            m = self._qmarkets[mid]
        return m

    def _refresh_markets(self) -> None:
        for r in self._query("SELECT id, symbol, base, quote, base_decimals, quote_decimals, tick_size, lot_size, "
                             "maker_bps, taker_bps FROM markets", ()):
            m = _market_from_row(r)
            self._qmarkets[m.id] = m
            self._qsymbols[m.symbol] = m.id

    def _market_id(self, symbol: str) -> int:
        if not isinstance(symbol, str):
            raise ValueError(f"market: {symbol!r} is not a market symbol")
        mid = self._qsymbols.get(symbol)
        if mid is None:
            self._refresh_markets()
            mid = self._qsymbols.get(symbol)
            if mid is None:
                raise ValueError(f"market: no market {symbol!r} in the history")
        return mid

    @staticmethod
    def _check(account: int | None, start_ts, end_ts, from_id, limit) -> None:
        for name, v in (("account", account), ("start_ts", start_ts), ("end_ts", end_ts), ("from_id", from_id)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise ValueError(f"{name}: {v!r} is not a non-negative integer")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit: {limit!r} is not an integer in 1..{MAX_LIMIT}")
        if start_ts is not None and end_ts is not None and start_ts > end_ts:
            raise ValueError(f"start_ts: {start_ts} is after end_ts {end_ts}")

    def _filters(self, market, start_ts, end_ts, from_id, ts_col: str, id_col: str) -> tuple[list, list]:
        """The WHERE conditions and parameters of a paginated history query."""
        where, params = [], []
        for cond, value in (("market = ?", None if market is None else self._market_id(market)),
                            (f"{ts_col} >= ?", start_ts), (f"{ts_col} <= ?", end_ts), (f"{id_col} >= ?", from_id)):
            if value is not None:
                where.append(cond)
                params.append(value)
        return where, params

    def fills(self, account: int, market: str | None = None, start_ts: int | None = None,
              end_ts: int | None = None, from_id: int | None = None, limit: int = 500) -> list[dict]:
        """The account's fills, oldest first: from `from_id` (a fill id) or
        `start_ts` onward, else the most recent `limit`. A self-trade (the
        account on both sides) is two entries with the same id. `fee` is in
        the market's quote asset (negative: a rebate), None where the store
        cannot know it (docs/history.md)."""
        self._check(account, start_ts, end_ts, from_id, limit)
        where, params = self._filters(market, start_ts, end_ts, None, "ts", "id")
        cond = "".join(f" AND {w}" for w in where)
        forward = from_id is not None or start_ts is not None
        cols = "id, seq, ts, market, taker_order, taker_account, maker_order, maker_account, taker_side, price, qty, " \
               "taker_fee, maker_fee"
        # The account's fill ids from `account_fills` (a self-trade's once); the fills by id, filtered; an
        # entry as taker and one as maker where the account is (a self-trade: both, buyer first, as the
        # core lists it).
        def entries(f: tuple) -> list[tuple]:
            out = []
            if f[5] == account:
                out.append((*f, 0, f[8]))
            if f[7] == account:
                out.append((*f, 1, 1 - f[8]))
            out.sort(key=lambda e: e[-1], reverse=not forward)
            return out

        rows = self._by_account(
            "account_fills", account, from_id, forward, limit,
            lambda ids: self._query(f"SELECT {cols} FROM fills WHERE id IN ({ids}){cond} ORDER BY id", params),
            entries, start_ts, end_ts)
        out = []
        for (fid, seq, ts, mid, t_order, _t_acc, m_order, _m_acc, t_side, price, qty, t_fee, m_fee, role,
             _vside) in rows:
            m = self._qmarket(mid)
            maker = role == 1
            fee = m_fee if maker else t_fee
            side = t_side ^ 1 if maker else t_side
            out.append({
                "id": fid, "seq": seq, "ts": ts, "market": m.symbol,
                "order_id": m_order if maker else t_order, "other_order_id": t_order if maker else m_order,
                "side": _SIDE_NAMES[side], "maker": maker, "taker_side": _SIDE_NAMES[t_side],
                "price": _dec(price, m.tick_size), "qty": _dec(qty, m.lot_size),
                "quote_qty": _dec(price * qty, m.tick_size * m.lot_size),
                "fee": None if fee is None else f"{Decimal(fee).scaleb(-m.quote_decimals):f}",
                "fee_asset": m.quote,
            })
        return out

    def _order_dict(self, r) -> dict:
        (oid, account, mid, side, otype, tif, stp, flags, price, trigger, display, expire, qty, filled, fquote,
         remaining, status, reason, created_ts, updated_ts, created_seq, updated_seq, triggered_ts, client_id,
         list_id, contingency) = r
        m = self._qmarket(mid)
        fquote = int(fquote)
        avg = None
        if filled:
            # Exact at the tick's precision when it can be; else 6 more digits (the sum is in quote_qty).
            q = (Decimal(fquote) * m.tick_size / Decimal(filled)).quantize(m.tick_size.scaleb(-6)).normalize()
            if q.as_tuple().exponent > m.tick_size.as_tuple().exponent:
                q = q.quantize(m.tick_size)
            avg = f"{q:f}"
        d = {
            "order_id": oid, "account": account, "market": m.symbol, "side": _SIDE_NAMES[side],
            "type": _TYPE_NAMES.get(otype, str(otype)), "tif": _TIF_NAMES.get(tif, str(tif)),
            "stp": _STP_NAMES.get(stp, str(stp)), "post_only": bool(flags & Flags.POST_ONLY),
            "price": _dec(price, m.tick_size) if price else None,
            "qty": _dec(qty, m.lot_size), "filled_qty": _dec(filled, m.lot_size),
            "remaining_qty": _dec(remaining, m.lot_size),
            "quote_qty": _dec(fquote, m.tick_size * m.lot_size), "avg_price": avg,
            "status": status, "reason": reason,
            "created_ts": created_ts, "updated_ts": updated_ts, "created_seq": created_seq,
            "updated_seq": updated_seq,
        }
        if otype in (OrderType.TRAILING_STOP,) and flags & Flags.TRAIL_BPS:
            d["trail_bps"] = trigger
        elif trigger:
            d["trigger_price"] = _dec(trigger, m.tick_size)
        if triggered_ts is not None:
            d["triggered_ts"] = triggered_ts
        if display:
            d["display_qty"] = _dec(display, m.lot_size)
        if expire:
            d["expire_ts"] = expire
        if client_id is not None:
            d["client_order_id"] = client_id
        if list_id is not None:
            d["order_list_id"] = list_id
            d["contingency"] = contingency
        return d

    def orders(self, account: int, market: str | None = None, start_ts: int | None = None,
               end_ts: int | None = None, from_id: int | None = None, limit: int = 500) -> list[dict]:
        """The account's orders (open and closed), by id: from `from_id` (an
        order id) or `start_ts` (creation time) onward, else the most recent
        `limit`."""
        self._check(account, start_ts, end_ts, from_id, limit)
        where, params = self._filters(market, start_ts, end_ts, None, "created_ts", "order_id")
        cond = "".join(f" AND {w}" for w in where)
        forward = from_id is not None or start_ts is not None
        rows = self._by_account(
            "account_orders", account, from_id, forward, limit,
            lambda ids: self._orders_now(f"SELECT {', '.join(_ORDER_COLUMNS)} FROM orders WHERE order_id IN ({ids})"
                                         f"{cond}", params), None, start_ts, end_ts)
        return [self._order_dict(r) for r in rows]

    def _by_account(self, table: str, account: int, from_id: int | None, forward: bool, limit: int,
                    fetch: Callable[[str], list], expand: Callable[[tuple], list] | None = None,
                    start_ts: int | None = None, end_ts: int | None = None) -> list[tuple]:
        """At most `limit` rows of the account's ids in `table` (`_account_ids`), oldest first: the
        first ones from `from_id` (forward), else the newest. `fetch(ids)` gets the rows of some ids
        (a comma-separated list, at most 1,000), filtered, ascending; `expand(row)` makes a row's
        entries, in query order (default: the row); `start_ts`, `end_ts`: rows of ids to pass over
        (`_account_ids`; `fetch` still filters). One read transaction."""
        rows: list = []
        with self._snapshot():
            for ids in self._account_ids(table, account, from_id, forward, start_ts, end_ts):
                k = 0
                while k < len(ids):
                    # As many as are still wanted (a filter may pass over some: then more), at most 1,000.
                    n = min(1_000, max(64, limit - len(rows)))
                    got = fetch(", ".join(map(str, ids[k : k + n].tolist())))
                    k += n
                    for r in (got if forward else got[::-1]):
                        if expand is None:
                            rows.append(r)
                        else:
                            rows.extend(expand(r))
                    if len(rows) >= limit:
                        break
                if len(rows) >= limit:
                    break
        rows = rows[:limit]
        if not forward:
            rows.reverse()
        return rows

    def _account_ids(self, table: str, account: int, from_id: int | None, forward: bool,
                     start_ts: int | None = None, end_ts: int | None = None):
        """The account's ids (int64 arrays) from `table` (`account_orders`, `account_fills`):
        ascending from `from_id` (forward), else descending from the newest; rows whose ids are
        all before `start_ts` or all after `end_ts` are passed over (rows of before schema 6,
        without their times, are not)."""
        skip, skip_params = "", []
        if start_ts is not None:
            skip += " AND (max_ts IS NULL OR max_ts >= ?)"
            skip_params.append(start_ts)
        if end_ts is not None:
            skip += " AND (min_ts IS NULL OR min_ts <= ?)"
            skip_params.append(end_ts)
        if forward:
            at = self._query(f"SELECT max(first_id) FROM {table} WHERE account = ? AND first_id <= ?",
                             [account, from_id or 0])[0][0]
            if at is None:  # (no block starts at or before from_id: from the first)
                at = 0
            while True:
                blocks = self._query(f"SELECT first_id, ids FROM {table} WHERE account = ? AND first_id >= ?{skip} "
                                     "ORDER BY first_id LIMIT 16", [account, at, *skip_params])
                for _, b in blocks:
                    ids = np.frombuffer(b, "<i8")
                    yield ids[ids >= from_id] if from_id else ids
                if len(blocks) < 16:
                    return
                at = blocks[-1][0] + 1
        else:
            at = 2**63 - 1
            while True:
                blocks = self._query(f"SELECT first_id, ids FROM {table} WHERE account = ? AND first_id < ?{skip} "
                                     "ORDER BY first_id DESC LIMIT 16", [account, at, *skip_params])
                for _, b in blocks:
                    yield np.frombuffer(b, "<i8")[::-1]
                if len(blocks) < 16:
                    return
                at = blocks[-1][0]

    @contextlib.contextmanager
    def _snapshot(self):
        """The queries inside see one snapshot of the database (a read transaction)."""
        conn = self._qconn()
        if self._b.name == "sqlite":
            conn.execute("BEGIN")
            try:
                yield
            except BaseException:
                if conn.in_transaction:  # (SQLite may have rolled it back itself: keep the real error)
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        else:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                yield

    def _orders_now(self, select: str, params: list) -> list[tuple]:
        """The orders `select` picks, as they are now (`_fold_updates`), by id."""
        return _fold_updates(self._query(_orders_now_sql(select), params))

    def order(self, order_id: int) -> dict | None:
        """One order by id, or None if the history has no such order."""
        if not isinstance(order_id, int) or isinstance(order_id, bool) or order_id < 0:
            raise ValueError(f"order_id: {order_id!r} is not a non-negative integer")
        rows = self._orders_now(f"SELECT {', '.join(_ORDER_COLUMNS)} FROM orders WHERE order_id = ?", [order_id])
        return self._order_dict(rows[0]) if rows else None

    def order_by_client_id(self, account: int, client_order_id: str) -> dict | None:
        """The account's latest order placed with `client_order_id` (open or
        closed; a client id may be reused once its order closed), or None."""
        self._check(account, None, None, None, 1)
        if not isinstance(client_order_id, str) or not client_order_id:
            raise ValueError(f"client_order_id: {client_order_id!r} is not a client order id")
        rows = self._orders_now(f"SELECT {', '.join(_ORDER_COLUMNS)} FROM orders WHERE account = ? AND "
                                "client_order_id = ? ORDER BY order_id DESC LIMIT 1", [account, client_order_id])
        return self._order_dict(rows[0]) if rows else None

    def order_lists(self, account: int, market: str | None = None, start_ts: int | None = None,
                    end_ts: int | None = None, from_id: int | None = None, limit: int = 500) -> list[dict]:
        """The account's order lists (OCO pairs and brackets, live and
        finished), by list id: from `from_id` (a list id) or `start_ts` (the
        list's creation time) onward, else the most recent `limit`. Each:
        `{order_list_id, contingency, market, created_ts, updated_ts,
        orders}` with `orders` its orders as `orders()` gives them (a
        bracket's entry, take-profit, stop-loss; an OCO's take-profit,
        stop-loss), each with `order_list_id` and `contingency`. Whether a
        list is still live is the exchange's to say (`Exchange.order_list`)."""
        self._check(account, start_ts, end_ts, from_id, limit)
        where, params = self._filters(market, start_ts, end_ts, from_id, "created_ts", "list_id")
        # A list's first order (its id is the list's) stands for the list.
        where, params = ["account = ?", "list_id = order_id", *where], [account, *params]
        forward = from_id is not None or start_ts is not None
        heads = [r[0] for r in self._query(f"SELECT list_id FROM orders WHERE {' AND '.join(where)} "
                                           f"ORDER BY list_id {'ASC' if forward else 'DESC'} LIMIT ?",
                                           [*params, limit])]
        if not heads:
            return []
        lo, hi = min(heads), max(heads)
        rows = self._orders_now(f"SELECT {', '.join(_ORDER_COLUMNS)} FROM orders WHERE account = ? "
                                f"AND list_id >= ? AND list_id <= ?", [account, lo, hi])
        want = set(heads)
        lists: dict[int, dict] = {}
        for r in rows:
            o = self._order_dict(r)
            lid = o["order_list_id"]
            if lid not in want:
                continue
            g = lists.get(lid)
            if g is None:
                g = lists[lid] = {"order_list_id": lid, "contingency": o["contingency"], "market": o["market"],
                                  "created_ts": o["created_ts"], "updated_ts": o["updated_ts"], "orders": []}
            g["updated_ts"] = max(g["updated_ts"], o["updated_ts"])
            g["orders"].append(o)
        return [lists[k] for k in sorted(lists)]

    def order_list(self, account: int, list_id: int) -> dict | None:
        """One of the account's order lists (as `order_lists` gives them), or None."""
        self._check(account, None, None, None, 1)
        if not isinstance(list_id, int) or isinstance(list_id, bool) or list_id < 0:
            raise ValueError(f"list_id: {list_id!r} is not a non-negative integer")
        got = self.order_lists(account, from_id=list_id, limit=1)
        return got[0] if got and got[0]["order_list_id"] == list_id else None

    def candles(self, market: str, interval: str = "1m", start_ts: int | None = None, end_ts: int | None = None,
                limit: int = 500) -> list[dict]:
        """OHLCV candles of `market` (start in ms, oldest first; only
        intervals with trades), aggregated from the 1m candles: from
        `start_ts` onward (candles starting at or after it), else the most
        recent `limit`; `end_ts` bounds the candles' start."""
        self._check(None, start_ts, end_ts, None, limit)
        if interval not in INTERVALS:
            raise ValueError(f"interval: {interval!r} is not one of {', '.join(INTERVALS)}")
        mid = self._market_id(market)
        m = self._qmarket(mid)
        forward = start_ts is not None
        order = "ASC" if forward else "DESC"
        lo = 0 if start_ts is None else start_ts
        hi = None if end_ts is None else _next_start(interval, end_ts)
        cond = " AND start >= ?" + ("" if hi is None else " AND start < ?")
        params: list = [mid, lo] + ([] if hi is None else [hi])
        if interval == "1m":
            rows = self._query(f"SELECT start, open, high, low, close, volume, quote_volume, trades FROM candles_1m "
                               f"WHERE market = ?{cond} ORDER BY start {order} LIMIT ?", [*params, limit])
        else:
            bucket = self._bucket_sql(interval)
            sql = (f"WITH g AS (SELECT {bucket} AS bucket, MIN(start) AS first, MAX(start) AS last, "
                   f"MAX(high) AS high, MIN(low) AS low, SUM(volume) AS volume, SUM(quote_volume) AS qv, "
                   f"SUM(trades) AS trades FROM candles_1m WHERE market = ?{cond} GROUP BY {bucket}) "
                   f"SELECT g.bucket, o.open, g.high, g.low, c.close, g.volume, g.qv, g.trades FROM g "
                   f"JOIN candles_1m o ON o.market = ? AND o.start = g.first "
                   f"JOIN candles_1m c ON c.market = ? AND c.start = g.last "
                   f"WHERE g.bucket >= ? ORDER BY g.bucket {order} LIMIT ?")
            rows = self._query(sql, [*params, mid, mid, lo, limit])
        if not forward:
            rows.reverse()
        tick, lot = m.tick_size, m.lot_size
        qv = tick * lot
        return [{"start": int(s), "open": _dec(o, tick), "high": _dec(h, tick), "low": _dec(lw, tick),
                 "close": _dec(c, tick), "volume": _dec(int(v), lot), "quote_volume": _dec(int(q), qv),
                 "trades": int(n)} for s, o, h, lw, c, v, q, n in rows]

    def _bucket_sql(self, interval: str) -> str:
        if interval == "1M":
            return self._b.month_start("start")
        if interval == "1w":
            # Weeks start on Monday; 1970-01-01 was a Thursday (as the core: docs/exchange.md).
            s = f"(start + {3 * DAY})"
            return f"{self._b.greatest}({s} - {s} % {WEEK} - {3 * DAY}, 0)"
        n = INTERVALS[interval]
        return f"(start - start % {n})"




class _Writer:
    """The writer process: turns commands' events into rows and writes them,
    a group of batches per transaction, with the last seq in it."""

    def __init__(self, backend: _Backend, vectorized: bool, inp, out, nice: int = 0,
                 account_block: int = ACCOUNT_BLOCK) -> None:
        self._b = backend
        self._nice = nice
        self._vec = vectorized
        self._account_block = account_block
        self._inp = inp
        self._out = out
        self._conn = backend.connect_writer()
        meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        self.last_seq = int(meta.get("last_seq", 0))
        self._now = int(meta.get("now", 0))
        self._next_fill_id = int(meta.get("next_fill_id", 1))
        self._processed_seq = self.last_seq
        self._written = 0
        self._infos: dict[int, tuple] = {}
        self._markets: dict[int, _Market] = {}
        self._fee_mode: dict[int, str] = {}
        self._symbols: dict[str, int] = {}
        # The same per market id, as arrays for the column-wise conversion.
        self._flat = np.zeros(0, bool)
        self._registered = np.zeros(0, bool)
        self._tick_units = self._taker_bps = self._maker_bps = np.zeros(0, np.int64)
        for r in self._conn.execute(
                "SELECT id, symbol, base, quote, base_decimals, quote_decimals, tick_size, lot_size, maker_bps, "
                "taker_bps, fee_mode FROM markets").fetchall():
            self._remember_market(_market_from_row(r), r[10])
        self._stats = {"groups": 0, "fills": 0, "orders": 0, "write_s": 0.0, "convert_s": 0.0}
        self._rows = _core.HistoryRows()

    def run(self) -> None:
        """Reads until "close" (or the end of the pipe: the node is gone),
        writing as it goes; every commit is reported. A group is written by
        the SQL thread (`_sql_loop`: SQLite runs without the GIL) while this
        thread reads the next one, and converts it if it fills up (under a
        heavy flow: it is then handed over the moment the SQL thread is
        free); a group that closes by its window or a flush is converted
        once the SQL thread is free (`_read_loop`)."""
        self._sql_q: queue.SimpleQueue = queue.SimpleQueue()
        self._sql_idle = threading.Event()
        self._sql_idle.set()
        sql = threading.Thread(target=self._sql_loop, name="history-sql", daemon=True)
        sql.start()
        # Background work, but not all of it: the SQL thread (started above, at the node's priority) is
        # what the history's pace is when the node is busy; this one (reading, converting) yields.
        # (Linux: a thread's nice value is its own.)
        if self._nice:
            os.nice(self._nice)
        try:
            self._read_loop()
        finally:
            self._sql_idle.wait()
            self._sql_q.put(None)
            sql.join()
        self._conn.close()

    def _sql_loop(self) -> None:
        """Writes the groups handed over, one at a time, and reports each
        commit. A failure is the writer's end: it is reported from here
        (the reading thread may be waiting for input) and the process exits."""
        while True:
            item = self._sql_q.get()
            if item is None:
                return
            g, n = item
            try:
                t1 = time.perf_counter()
                self._write_with_retry(g)
                self._stats["write_s"] += time.perf_counter() - t1
                self.last_seq = g.last_seq
                self._written += n
                _write_message(self._out, ("written", self.last_seq, self._written, self._stats))
                self._out.flush()
            except BaseException as e:
                log.exception("history writer stopped")
                try:
                    _write_message(self._out, ("failed", f"{type(e).__name__}: {e}"))
                    self._out.flush()
                finally:
                    os._exit(1)
            self._sql_idle.set()

    def _read_loop(self) -> None:
        pending: list = []  # "batch" messages read, not yet written
        weight = 0
        done = False
        urgent = False  # a reader waits: write what has come without waiting for the window
        due = 0.0       # when the group's window closes
        while not done or pending:
            if not done:
                # Block for input when there is nothing to write; else gather until the group is full, or
                # until its window has closed (fewer, larger transactions rewrite fewer index pages per
                # row) or a reader asked (a "flush" follows everything it waits for in the pipe) *and* the
                # SQL thread is free: what comes while it writes the group before joins this one (it could
                # not be written sooner; a group cut there was a small transaction, and the SQL thread
                # then waited for the next group to be read and converted).
                ready = urgent or time.monotonic() >= due
                if not pending:
                    wait = None
                elif weight >= GROUP_MAX or (ready and self._sql_idle.is_set()):
                    wait = 0.0
                elif ready:
                    wait = SQL_POLL_S
                else:
                    wait = max(0.0, due - time.monotonic())
                msgs = self._inp.available(wait)
                for msg in msgs:
                    if msg is None or msg[0] == "close":
                        done = True
                    elif msg[0] == "market":
                        self._infos[msg[1][0]] = msg[1]
                    elif msg[0] == "flush":
                        urgent = True
                    elif msg[0] == "batch":
                        if not pending:
                            due = time.monotonic() + GROUP_WINDOW_S
                        pending.append(msg)
                        weight += sum(_weight(it) for it in msg[2])
                if not pending:
                    urgent = False  # what the reader waited for is written
                    continue
                ready = urgent or time.monotonic() >= due
                if not done and weight < GROUP_MAX and not (ready and self._sql_idle.is_set()):
                    continue  # more may be on its way: group it
            if not pending:
                continue
            t0 = time.perf_counter()
            g = self._convert([it for m in pending for it in m[2]])
            self._stats["convert_s"] += time.perf_counter() - t0
            self._sql_idle.wait()  # one group in the SQL thread at a time
            self._sql_idle.clear()
            self._sql_q.put((g, sum(m[1] for m in pending)))
            pending, weight, urgent = [], 0, False

    def _write_with_retry(self, g: "_Group") -> None:
        delay = 0.2
        while True:
            try:
                self._write(g)
                return
            except Exception as e:
                if not self._b.transient(e):
                    raise
                log.warning("history write failed (%s); retrying in %.1f s", e, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                try:
                    self._conn.close()
                except Exception:
                    pass
                try:
                    self._conn = self._b.connect_writer()
                    # The commit may have landed before the connection broke.
                    row = self._conn.execute(self._b.sql("SELECT value FROM meta WHERE key = ?"),
                                             ("last_seq",)).fetchone()
                    if row is not None and row[0] >= g.last_seq:
                        return
                except Exception as e2:
                    if not self._b.transient(e2) and not isinstance(e2, RuntimeError):
                        raise
                    log.warning("history reconnect failed: %s", e2)

    def _write(self, g: "_Group") -> None:
        b, conn = self._b, self._conn
        sql = b.sql
        b.begin(conn)
        try:
            cur = conn.cursor()
            if g.markets:
                cur.executemany(sql(
                    "INSERT INTO markets (id, symbol, base, quote, base_decimals, quote_decimals, tick_size, "
                    "lot_size, maker_bps, taker_bps, fee_mode) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (id) DO NOTHING"), g.markets)
            if g.fee_modes:
                cur.executemany(sql("UPDATE markets SET fee_mode = ? WHERE id = ?"),
                                [(mode, mid) for mid, mode in g.fee_modes.items()])
            if g.fill_rows:
                b.insert_many(cur, "fills", _FILL_COLUMNS, g.fill_rows)
            if g.order_rows:
                b.insert_many(cur, "orders", _ORDER_COLUMNS, g.order_rows)
            if g.plain_order_rows:
                b.insert_plain_orders(cur, g.plain_order_rows)
            if g.account_order_rows:
                b.insert_many(cur, "account_orders", _ACCOUNT_COLUMNS, g.account_order_rows)
            if g.account_fill_rows:
                b.insert_many(cur, "account_fills", _ACCOUNT_COLUMNS, g.account_fill_rows)
            if g.delta_rows:
                # Appended, not applied to the orders' rows: see `_fold_updates`.
                b.insert_many(cur, "order_updates", _UPDATE_COLUMNS, g.delta_rows)
            if g.candle_rows:
                hi, lo = b.greatest, b.least
                cur.executemany(sql(
                    f"INSERT INTO candles_1m ({', '.join(_CANDLE_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    f"ON CONFLICT (market, start) DO UPDATE SET high = {hi}(candles_1m.high, excluded.high), "
                    f"low = {lo}(candles_1m.low, excluded.low), close = excluded.close, "
                    f"volume = candles_1m.volume + excluded.volume, "
                    f"quote_volume = candles_1m.quote_volume + excluded.quote_volume, "
                    f"trades = candles_1m.trades + excluded.trades"),
                    g.candle_rows)
            if g.gaps:
                cur.executemany(sql("INSERT INTO gaps (first_seq, last_seq, detected_at) VALUES (?, ?, ?)"),
                                [(a, z, int(time.time() * 1000)) for a, z in g.gaps])
            cur.executemany(sql("INSERT INTO meta (key, value) VALUES (?, ?) "
                                "ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
                            [("last_seq", g.last_seq), ("now", g.now), ("next_fill_id", g.next_fill_id)])
            conn.execute("COMMIT")
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except Exception:
                pass
            raise
        st = self._stats
        st["groups"] += 1
        st["fills"] += len(g.fill_rows)
        st["orders"] += len(g.order_rows) + len(g.plain_order_rows)

    # -- events to rows (writer thread) ----------------------------------------------------------------------
    def _remember_market(self, m: _Market, mode: str) -> None:
        mid = m.id
        self._markets[mid] = m
        self._symbols[m.symbol] = mid
        self._fee_mode[mid] = mode
        if mid >= len(self._flat):
            self._grow_market_arrays(mid + 1)
        self._registered[mid] = True
        self._flat[mid] = mode == "flat"
        self._tick_units[mid], self._taker_bps[mid], self._maker_bps[mid] = m.tick_units, m.taker_bps, m.maker_bps

    def _market(self, mid: int, g: "_Group", seen_added: bool = False) -> _Market:
        """The market's facts; the first time, from the exchange (its fees are
        known only if the store saw it being added: no tiers were set unseen)."""
        m = self._markets.get(mid)
        if m is None:
            info = self._infos.get(mid)
            if info is None:
                raise RuntimeError(f"market {mid}: its facts were never sent to the history writer")
            _, symbol, base, base_dec, quote, quote_dec, tick, lot, maker, taker = info
            row = (mid, symbol, base, quote, base_dec, quote_dec, tick, lot, maker, taker)
            m = _market_from_row(row)
            mode = "flat" if seen_added else "unknown"
            self._remember_market(m, mode)
            g.markets.append((*row, mode))
        return m

    def _convert(self, items: list) -> "_Group":
        """Rows for `items` (`HistoryStore._wire` tuples, in seq order)."""
        g = _Group()
        now = self._now
        vec = self._vec
        run: list = []  # consecutive plain Records commands, converted together (column-wise path)
        for it in items:
            seq = it[0]
            if seq > self._processed_seq + 1:
                if run:  # what came before the gap is converted with the fee modes of before it
                    now = self._records_run(g, run, now)
                    run = []
                self._gap(g, self._processed_seq + 1, seq - 1)
            self._processed_seq = seq
            if len(it) == 2:
                if it[1] > now and not run:
                    now = it[1]
                elif it[1] > now:
                    run.append((it[1], seq, None, None))  # only moves the clock, in its turn
                continue
            _, _, rejected, tag, payload, events, clock = it
            if vec and tag == 1 and not clock and not rejected:
                run.append((it[1], seq, payload, events))
                continue
            if run:
                now = self._records_run(g, run, now)
                run = []
            if it[1] > now:
                now = it[1]
            if clock:
                self._struct_events(g, clock, now, seq, None, vec)
            if rejected:
                continue
            if tag == 1:
                now = self._records(g, payload, np.frombuffer(events, EVENT_DTYPE), now, seq, vec)
            elif tag == 3:
                self._market(payload, g, seen_added=True)
            elif tag == 4:
                mid = self._symbols.get(payload[0])
                if mid is not None:
                    self._set_fee_mode(g, mid, "tiered" if payload[1] else "flat")
            elif events:
                if tag == 5:
                    contingency, lid, places = payload
                    for oid in places:
                        g.lists[oid] = (lid, contingency)
                    payload = places
                self._struct_events(g, events, now, seq, payload if tag in (2, 5) else None, vec)
        if run:
            now = self._records_run(g, run, now)
        if vec:
            self._finish_columns(g)
        else:
            self._finish_loop(g)
        g.account_order_rows = _account_order_rows(g, self._account_block)
        g.account_fill_rows = _account_fill_rows(g, self._account_block)
        self._now = now
        g.last_seq = self._processed_seq
        g.now = now
        g.next_fill_id = self._next_fill_id
        return g

    def _set_fee_mode(self, g: "_Group", mid: int, mode: str) -> None:
        self._fee_mode[mid] = mode
        g.fee_modes[mid] = mode
        self._flat[mid] = mode == "flat"

    def _gap(self, g: "_Group", first: int, last: int) -> None:
        log.warning("history: commands %d..%d were never fed to the store; their fills and orders are missing, "
                    "and fees are not computed from here on until a market's fee tiers are set again", first, last)
        g.gaps.append((first, last))
        for mid in list(self._fee_mode):  # fee tiers may have been set in the gap
            if self._fee_mode[mid] != "unknown":
                self._set_fee_mode(g, mid, "unknown")

    def _struct_events(self, g: "_Group", events: list, ts: int, seq: int, place, vec: bool) -> None:
        """Events of a struct command (EVENT_DTYPE tuples); `place` is a
        PlaceOrder's parameters, or an order list's by order id."""
        if not vec:
            self._events(g, events, ts, seq, place, None)
            return
        params = []
        for e in events:
            if e[0] == _ACCEPTED:
                p = place.get(e[6]) if isinstance(place, dict) else place
                params.append(_place_params(p, self._market(e[5], g), e[3]))
                if p is not None and p[6] is not None:
                    g.client_ids[e[6]] = p[6]
        self._add_chunk(g, np.array(events, dtype=EVENT_DTYPE), ts, seq,
                        np.array(params, dtype=_PARAMS_DTYPE) if params else None)

    def _records(self, g: "_Group", data: bytes, ev: np.ndarray, now: int, seq: int, vec: bool) -> int:
        """A Records batch: the events (EVENT_DTYPE) name their row in `cmd_index`."""
        rows = np.frombuffer(data, COMMAND_DTYPE)
        kinds = ev["kind"]
        ts_of_row = None
        adv = rows["kind"] == _ADVANCE_TIME
        if adv.any():
            # Rows that moved the clock (ADVANCE_TIME, not rejected): later rows' events happen then.
            ok = adv.copy()
            ok[ev["cmd_index"][kinds == _REJECTED]] = False
            t = np.where(ok, rows["expire_ts"].astype(np.int64), 0)
            t[0] = max(int(t[0]), now)
            ts_of_row = np.maximum.accumulate(t)
            now = int(ts_of_row[-1])
        keep = ev[(kinds != _DEPTH) & (kinds != _REJECTED)]
        if not len(keep):
            return now
        if vec:
            self._records_chunk(g, rows, keep, now if ts_of_row is None else ts_of_row[keep["cmd_index"]], seq)
        else:
            acc_idx = keep["cmd_index"][keep["kind"] == _ACCEPTED]
            legs = self._record_lists(g, rows, keep[keep["kind"] == _ACCEPTED]) if len(acc_idx) else {}
            sub = rows[acc_idx]
            params = dict(zip(acc_idx.tolist(), zip(
                sub["tif"].tolist(), sub["stp"].tolist(), sub["flags"].tolist(), sub["trigger_price"].tolist(),
                sub["display_qty"].tolist(), sub["expire_ts"].tolist())))
            acc_ids = keep["order_id"][keep["kind"] == _ACCEPTED].tolist()
            self._events(g, keep.tolist(), now, seq, None, params, ts_of_row,
                         {acc_ids[j]: leg for j, leg in legs.items()})
        return now

    def _records_run(self, g: "_Group", run: list, now: int) -> int:
        """Consecutive Records commands, `(ts, seq, data, events)` each (data
        None: a command that only moves the clock), converted as one: what
        `_records` does per command, with numpy's per-call cost paid once per
        run instead of once per command (a POST /order batch is a command of
        a few rows). A run with ADVANCE_TIME rows goes command by command.
        `_core.history_records_run` does it for runs without ADVANCE_TIME,
        BRACKET and OCO rows (nearly all): what follows is the rest's path."""
        datas, evts, seqs, nows = [], [], [], []
        t = now
        for ts, seq, data, events in run:
            t = max(t, ts)
            if data is not None:
                datas.append(data)
                evts.append(events)
                seqs.append(seq)
                nows.append(t)
        if not datas:
            return t
        done = _core.history_records_run(datas, evts, seqs, nows)
        if done is not None:
            kept, S, T, P = done
            if kept:
                self._add_chunk(g, np.frombuffer(kept, EVENT_DTYPE), np.frombuffer(T, np.int64),
                                np.frombuffer(S, np.int64), np.frombuffer(P, _PARAMS_DTYPE) if P else None)
            return t
        cmds = [r for r in run if r[2] is not None]
        rows = np.frombuffer(b"".join(r[2] for r in cmds), COMMAND_DTYPE) if cmds else None
        if rows is None or (rows["kind"] == _ADVANCE_TIME).any():
            for ts, seq, data, events in run:
                now = max(now, ts)
                if data is not None:
                    now = self._records(g, data, np.frombuffer(events, EVENT_DTYPE), now, seq, True)
            return now
        evs, seqs, nows, offsets = [], [], [], []
        off = 0
        for ts, seq, data, events in run:
            now = max(now, ts)
            if data is None:
                continue
            evs.append(np.frombuffer(events, EVENT_DTYPE))
            seqs.append(seq)
            nows.append(now)
            offsets.append(off)
            off += len(data) // COMMAND_DTYPE.itemsize
        lens = [len(e) for e in evs]
        ev = np.concatenate(evs, dtype=EVENT_DTYPE) if len(evs) > 1 else evs[0].copy()
        if not len(ev):
            return now
        ev["cmd_index"] += np.repeat(np.array(offsets, np.uint32), lens)  # row numbers within `rows`
        kinds = ev["kind"]
        mask = (kinds != _DEPTH) & (kinds != _REJECTED)
        keep = ev[mask]
        if not len(keep):
            return now
        S = np.repeat(np.array(seqs, np.int64), lens)[mask]
        T = np.repeat(np.array(nows, np.int64), lens)[mask]
        self._records_chunk(g, rows, keep, T, S)
        return now

    def _records_chunk(self, g: "_Group", rows: np.ndarray, keep: np.ndarray, ts, seq) -> None:
        """Queues the kept events of Records rows (`cmd_index` indexing
        `rows`) with the submit parameters of the orders they accepted (an
        order list's exits get theirs from the row)."""
        accm = keep["kind"] == _ACCEPTED
        acc_idx = keep["cmd_index"][accm]
        params = None
        if len(acc_idx):
            params = rows[acc_idx][list(_PARAMS_DTYPE.names)].astype(_PARAMS_DTYPE)
            for j, leg in self._record_lists(g, rows, keep[accm]).items():
                params[j] = leg
        self._add_chunk(g, keep, ts, seq, params)

    @staticmethod
    def _record_lists(g: "_Group", rows: np.ndarray, acc: np.ndarray) -> dict[int, tuple]:
        """The order lists a Records batch placed (BRACKET and OCO rows; their orders are ACCEPTED in order:
        a bracket's entry, take-profit, stop-loss; an OCO's take-profit, stop-loss, the first one's id being the
        list id) into `g.lists`. Returns the exits' parameters by position among `acc` (the ACCEPTED events):
        the row's tp/sl trigger, GTC (IOC for a market exit), no display, no expiry."""
        ci = acc["cmd_index"]
        kinds = rows["kind"][ci]
        out: dict[int, tuple] = {}
        where = np.flatnonzero((kinds == CommandKind.BRACKET) | (kinds == CommandKind.OCO))
        if not len(where):
            return out
        pos_in_row = 0
        prev = -1
        lid = 0
        for j in where.tolist():
            row = int(ci[j])
            if row != prev:
                prev, pos_in_row, lid = row, 0, int(acc["order_id"][j])
            else:
                pos_in_row += 1
            r = rows[row]
            k = int(r["kind"])
            g.lists[int(acc["order_id"][j])] = (lid, _LIST_KINDS[k])
            leg = pos_in_row - (1 if k == CommandKind.BRACKET else 0)  # 0 take-profit, 1 stop-loss, -1 entry
            if leg >= 0:
                market_type = int(acc["order_type"][j]) in _MARKET_TYPES
                tif = int(TimeInForce.IOC) if market_type else int(TimeInForce.GTC)
                out[j] = (tif, int(r["stp"]), 0, int(r["tp_trigger"] if leg == 0 else r["sl_trigger"]), 0, 0)
        return out

    def _add_chunk(self, g: "_Group", ev: np.ndarray, ts, seq, params: np.ndarray | None) -> None:
        """Queues one command's events (or a run's: `ts` and `seq` then one
        per event) for `_finish_columns`; registers the
        markets they name, and notes which fills' fees are knowable now
        (fee tiers may change later in the group)."""
        mk = ev["market"]
        top = int(mk.max())
        if top >= len(self._flat):
            self._grow_market_arrays(top + 1)
        if not self._registered[mk].all():
            for mid in np.unique(mk).tolist():
                if not self._registered[mid]:
                    self._market(mid, g)
        fm = ev["kind"] == _FILL
        g.evs.append(ev)
        g.ts.append(ts)
        g.lens.append(len(ev))
        g.seqs.append(seq)
        g.known.append(self._flat[mk[fm]])
        if params is not None:
            g.params.append(params)

    def _grow_market_arrays(self, n: int) -> None:
        n = max(n, 2 * len(self._flat), 16)
        for name, dt in (("_flat", bool), ("_registered", bool), ("_tick_units", np.int64), ("_taker_bps", np.int64),
                         ("_maker_bps", np.int64)):
            old = getattr(self, name)
            new = np.zeros(n, dt)
            new[: len(old)] = old
            setattr(self, name, new)

    def _finish_columns(self, g: "_Group") -> None:
        """The group's rows from its events, column-wise (numpy): the same rows
        as `_finish_loop` (tests check that), at a fraction of the cost."""
        if not g.evs:
            return
        # (EVENT_DTYPE kept: numpy would promote to a packed layout, and `_core` reads the record as laid out)
        E = np.concatenate(g.evs, dtype=EVENT_DTYPE) if len(g.evs) > 1 else g.evs[0]
        lens = np.array(g.lens)
        if all(isinstance(q, int) for q in g.seqs):
            S = np.repeat(np.array(g.seqs, np.int64), lens)
        else:  # a run of Records commands (`_records_run`) has one seq per event
            S = np.concatenate([np.full(n, q, np.int64) if isinstance(q, int) else q for q, n in zip(g.seqs, g.lens)])
        if all(isinstance(t, int) for t in g.ts):
            T = np.repeat(np.array(g.ts, np.int64), lens)
        else:
            T = np.concatenate([np.full(n, t, np.int64) if isinstance(t, int) else t.astype(np.int64)
                                for t, n in zip(g.ts, g.lens)])
        kind = E["kind"]
        self._fill_rows(g, E, kind, S, T)
        self._order_rows(g, E, S, T)

    def _fill_rows(self, g: "_Group", E: np.ndarray, kind: np.ndarray, S: np.ndarray, T: np.ndarray) -> None:
        fm = kind == _FILL
        F = E[fm]
        nf = len(F)
        if not nf:
            return
        price, qty = F["price"], F["qty"]
        mkt = F["market"].astype(np.int64)
        known = np.concatenate(g.known)
        pq = price * qty
        notional = pq * self._tick_units[mkt]  # quote units: fits i64 (the core settles it as i64)
        if known.any() and int(np.abs(notional).max()) <= (2**63 - 1) // 10_000:
            def fee(bps):
                return np.where(bps >= 0, -((-notional * bps) // 10_000), -((notional * -bps) // 10_000))

            tfee, mfee = fee(self._taker_bps[mkt]), fee(self._maker_bps[mkt])
            if not known.all():
                tfee, mfee = tfee.astype(object), mfee.astype(object)
                tfee[~known] = None
                mfee[~known] = None
                tfee, mfee = tfee.tolist(), mfee.tolist()
        else:  # nothing knowable, or products too large for int64: Python integers
            nl, kl = notional.tolist(), known.tolist()
            tfee = [_fee(n, b) if k else None for n, b, k in zip(nl, self._taker_bps[mkt].tolist(), kl)]
            mfee = [_fee(n, b) if k else None for n, b, k in zip(nl, self._maker_bps[mkt].tolist(), kl)]
        fid = self._next_fill_id
        ts = T[fm]
        g.fill_rows = _Cols(np.arange(fid, fid + nf, dtype=np.int64), S[fm], ts, mkt, F["order_id"], F["owner"],
                            F["other_id"], F["other_owner"], F["side"], price, qty, tfee, mfee)
        self._next_fill_id = fid + nf
        # 1m candles per (market, minute), trades in event order.
        minute = ts - ts % MINUTE
        key = mkt * (1 << 44) + minute // MINUTE  # minutes since 1970 fit 44 bits until year 35,000
        order = np.argsort(key, kind="stable")
        ks = key[order]
        starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
        ends = np.r_[starts[1:], nf] - 1
        p_s, q_s, pq_s = price[order], qty[order], pq[order]
        g.candle_rows = list(zip(
            mkt[order][starts].tolist(), minute[order][starts].tolist(), p_s[starts].tolist(),
            np.maximum.reduceat(p_s, starts).tolist(), np.minimum.reduceat(p_s, starts).tolist(),
            p_s[ends].tolist(), np.add.reduceat(q_s, starts).tolist(), np.add.reduceat(pq_s, starts).tolist(),
            (ends - starts + 1).tolist()))

    def _order_rows(self, g: "_Group", E: np.ndarray, S: np.ndarray, T: np.ndarray) -> None:
        """New orders (ACCEPTED in this group) as whole rows; changes to older
        orders as deltas (`_core.HistoryRows.order_rows`). Per order, over its
        events in order: fills add up, the last event gives `remaining` (an
        AMENDED one: its new quantity; a TRIGGERED one: its quantity), the
        last FILL or final CANCELLED gives the status, the last AMENDED the
        price and `qty` (filled so far + the new remaining)."""
        P = (np.concatenate(g.params, dtype=_PARAMS_DTYPE) if len(g.params) > 1 else g.params[0]) if g.params else None
        # `_core` reads the records as laid out in EVENT_DTYPE and _PARAMS_DTYPE (numpy's concatenation of
        # structured arrays makes a packed layout of the same fields)
        if E.dtype != EVENT_DTYPE:
            E = E.astype(EVENT_DTYPE)
        if P is not None and P.dtype != _PARAMS_DTYPE:
            P = P.astype(_PARAMS_DTYPE)
        new, na, deltas, nd = self._rows.order_rows(
            _bytes_view(E), _bytes_view(S), _bytes_view(T), _bytes_view(P) if P is not None else b"")
        if na:
            (a_id, owner, market, side, otype, tif, stp, flags, price, qty, filled, quote, rem, st_code, c_ts, u_ts,
             c_seq, u_seq, trigger, display, expire, reason, triggered) = np.frombuffer(new, np.int64).reshape(-1, na)
            if (expire < 0).any():  # (u64 in the command; the column is a signed 64-bit integer, as in the loop)
                raise OverflowError(f"expire_ts: {int(expire[expire < 0][0]) + 2**64} does not fit a signed "
                                    "64-bit integer")
            plain = (trigger == 0) & (display == 0) & (expire == 0) & (reason == 255) & (triggered < 0)
            if g.client_ids or g.lists:
                plain &= np.array([i not in g.client_ids and i not in g.lists for i in a_id.tolist()], bool)
            if plain.all():
                pick = slice(None)
            else:
                pick = plain
                full = ~plain
                ids = a_id[full].tolist()
                g.order_rows = list(zip(
                    ids, owner[full].tolist(), market[full].tolist(), side[full].tolist(), otype[full].tolist(),
                    tif[full].tolist(), stp[full].tolist(), flags[full].tolist(), price[full].tolist(),
                    trigger[full].tolist(), display[full].tolist(), expire[full].tolist(), qty[full].tolist(),
                    filled[full].tolist(), quote[full].tolist(), rem[full].tolist(), _STATUS_OF[st_code[full]].tolist(),
                    _REASON_OF[reason[full]].tolist(), c_ts[full].tolist(), u_ts[full].tolist(), c_seq[full].tolist(),
                    u_seq[full].tolist(), _none_if_negative(triggered[full]), [g.client_ids.get(i) for i in ids],
                    [g.lists[i][0] if i in g.lists else None for i in ids],
                    [g.lists[i][1] if i in g.lists else None for i in ids]))
            g.plain_order_rows = _Cols(
                a_id[pick], owner[pick], market[pick], side[pick], otype[pick], tif[pick], stp[pick], flags[pick],
                price[pick], qty[pick], filled[pick], quote[pick], rem[pick], ("lookup", st_code[pick], _STATUS_LIST),
                c_ts[pick], u_ts[pick], c_seq[pick], u_seq[pick])
        if nd:
            (d_filled, d_quote, d_rem, d_code, d_reason, d_price, d_qty, d_triggered, d_ts, d_seq,
             d_oid) = np.frombuffer(deltas, np.int64).reshape(-1, nd)
            g.delta_rows = _Cols(
                d_filled, d_quote, d_rem, ("lookup", d_code, _STATUS_LIST), ("lookup", d_reason, _REASON_LIST),
                ("null_if_negative", d_price), ("null_if_negative", d_qty), ("null_if_negative", d_triggered), d_ts,
                d_seq, d_oid)

    def _finish_loop(self, g: "_Group") -> None:
        """The rows from the per-event loop's dicts (the reference path)."""
        g.fill_rows = g.fills
        g.order_rows = [tuple(o) for o in g.new_orders.values()]
        g.delta_rows = [(d[D_FILLED], d[D_QUOTE], d[D_REMAINING], d[D_STATUS], d[D_REASON], d[D_PRICE],
                         d[D_QTY_FROM_FILLED], d[D_TRIGGERED_TS], d[D_UPDATED_TS], d[D_UPDATED_SEQ], oid)
                        for oid, d in sorted(g.deltas.items())]
        g.candle_rows = [(m, s, *c) for (m, s), c in sorted(g.candles.items())]

    def _events(self, g: "_Group", events, ts: int, seq: int, place, params, ts_of_row=None,
                leg_params: dict | None = None) -> None:
        """The reference conversion: applies events (EVENT_DTYPE tuples) one
        by one to the group's running state. ACCEPTED orders' parameters come
        from `params` (Records: by row; `leg_params` by order id for an order
        list's exits) or `place` (a PlaceOrder's, or an order list's by order
        id)."""
        new_orders, deltas, fills, candles = g.new_orders, g.deltas, g.fills, g.candles
        markets, fee_mode = self._markets, self._fee_mode
        fill_id = self._next_fill_id
        market_of = self._market
        for e in events:
            kind, reason, side, otype, cmd_index, market, oid, owner, other, other_owner, price, qty, rem, orem = e
            if ts_of_row is not None:
                ts = int(ts_of_row[cmd_index])
            if kind == _FILL:
                m = markets.get(market) or market_of(market, g)
                if fee_mode[market] == "flat":
                    n = price * qty * m.tick_units
                    tb, mb = m.taker_bps, m.maker_bps
                    tfee = -((-n * tb) // 10_000) if tb >= 0 else -((n * -tb) // 10_000)
                    mfee = -((-n * mb) // 10_000) if mb >= 0 else -((n * -mb) // 10_000)
                else:
                    tfee = mfee = None
                fills.append((fill_id, seq, ts, market, oid, owner, other, other_owner, side, price, qty, tfee, mfee))
                fill_id += 1
                pq = price * qty
                for order_id, left in ((oid, rem), (other, orem)):
                    o = new_orders.get(order_id)
                    status = "filled" if left == 0 else "partially_filled"
                    if o is not None:
                        o[O_FILLED] += qty
                        o[O_QUOTE] += pq
                        o[O_REMAINING] = left
                        o[O_STATUS] = status
                        o[O_UPDATED_TS] = ts
                        o[O_UPDATED_SEQ] = seq
                    else:
                        d = deltas.get(order_id)
                        if d is None:
                            deltas[order_id] = [qty, pq, left, status, None, None, None, None, ts, seq]
                        else:
                            d[D_FILLED] += qty
                            d[D_QUOTE] += pq
                            d[D_REMAINING] = left
                            d[D_STATUS] = status
                            d[D_UPDATED_TS] = ts
                            d[D_UPDATED_SEQ] = seq
                key = (market, ts - ts % MINUTE)
                c = candles.get(key)
                if c is None:
                    candles[key] = [price, price, price, price, qty, pq, 1]
                else:
                    if price > c[1]:
                        c[1] = price
                    if price < c[2]:
                        c[2] = price
                    c[3] = price
                    c[4] += qty
                    c[5] += pq
                    c[6] += 1
            elif kind == _ACCEPTED:
                p = place.get(oid) if isinstance(place, dict) else place
                if params is None:
                    m = markets.get(market) or market_of(market, g)
                    tif, stp, flags, trigger, display, expire = _place_params(p, m, otype)
                else:
                    tif, stp, flags, trigger, display, expire = (
                        leg_params.get(oid) if leg_params and oid in leg_params
                        else params.get(cmd_index, (0, 0, 0, 0, 0, 0)))
                    if market not in markets:
                        market_of(market, g)
                lid, contingency = g.lists.get(oid, (None, None))
                new_orders[oid] = [oid, owner, market, side, otype, tif, stp, flags, price, trigger, display, expire,
                                   qty, 0, 0, qty, "new", None, ts, ts, seq, seq, None,
                                   p[6] if params is None and p is not None else None, lid, contingency]
            elif kind == _CANCELLED:
                status = reason_name = None
                if rem == 0:
                    status = "expired" if reason == _EXPIRED else "cancelled"
                    reason_name = _REASON_NAMES.get(reason, str(reason))
                o = new_orders.get(oid)
                if o is not None:
                    o[O_REMAINING] = rem
                    if status is not None:
                        o[O_STATUS] = status
                        o[O_REASON] = reason_name
                    o[O_UPDATED_TS] = ts
                    o[O_UPDATED_SEQ] = seq
                else:
                    d = deltas.get(oid)
                    if d is None:
                        deltas[oid] = [0, 0, rem, status, reason_name, None, None, None, ts, seq]
                    else:
                        d[D_REMAINING] = rem
                        if status is not None:
                            d[D_STATUS] = status
                            d[D_REASON] = reason_name
                        d[D_UPDATED_TS] = ts
                        d[D_UPDATED_SEQ] = seq
            elif kind == _AMENDED or kind == _ACTIVATED:
                # a new remaining quantity (ACTIVATED: a bracket exit sized by its entry's fills, none of its
                # own yet; AMENDED: also a new price)
                new_price = price if kind == _AMENDED else None
                o = new_orders.get(oid)
                if o is not None:
                    if new_price is not None:
                        o[O_PRICE] = new_price
                    o[O_REMAINING] = qty
                    o[O_QTY] = o[O_FILLED] + qty
                    o[O_UPDATED_TS] = ts
                    o[O_UPDATED_SEQ] = seq
                else:
                    d = deltas.get(oid)
                    if d is None:
                        deltas[oid] = [0, 0, qty, None, None, new_price, qty, None, ts, seq]
                    else:
                        d[D_REMAINING] = qty
                        if new_price is not None:
                            d[D_PRICE] = new_price
                        d[D_QTY_FROM_FILLED] = d[D_FILLED] + qty
                        d[D_UPDATED_TS] = ts
                        d[D_UPDATED_SEQ] = seq
            elif kind == _TRIGGERED:
                o = new_orders.get(oid)
                if o is not None:
                    o[O_TRIGGERED_TS] = ts
                    o[O_UPDATED_TS] = ts
                    o[O_UPDATED_SEQ] = seq
                else:
                    d = deltas.get(oid)
                    if d is None:
                        deltas[oid] = [0, 0, None, None, None, None, None, ts, ts, seq]
                    else:
                        d[D_TRIGGERED_TS] = ts
                        d[D_UPDATED_TS] = ts
                        d[D_UPDATED_SEQ] = seq
        self._next_fill_id = fill_id


def _next_start(interval: str, ts: int) -> int:
    """The start of the interval after the one containing `ts` (ms)."""
    if interval == "1M":
        d = datetime.fromtimestamp(ts // 1000, timezone.utc)
        y, mo = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
        return calendar.timegm((y, mo, 1, 0, 0, 0)) * 1000
    if interval == "1w":
        s = ts + 3 * DAY
        return s - s % WEEK - 3 * DAY + WEEK
    n = INTERVALS[interval]
    return ts - ts % n + n


def _place_params(place, m: _Market, otype: int) -> tuple[int, int, int, int, int, int]:
    """(tif, stp, flags, trigger ticks, display lots, expire_ts) of a placed
    order from its PlaceOrder's `(tif, stp, post_only, display_qty,
    trigger_price, expire_ts)` (the exchange accepted them: they are valid)."""
    if place is None:  # pragma: no cover - only placements are accepted
        return 0, 0, 0, 0, 0, 0
    tif_s, stp_s, post_only, display_qty, trigger_price, expire_ts = place[:6]
    if tif_s is None:
        tif = int(TimeInForce.IOC) if otype in _MARKET_TYPES else int(TimeInForce.GTC)
    else:
        tif = int(TimeInForce[tif_s.upper()])
    stp = int(Stp[stp_s.upper()]) if isinstance(stp_s, str) else int(stp_s)
    flags = int(Flags.POST_ONLY) if post_only else 0
    trigger = 0 if trigger_price is None else int(Decimal(trigger_price) / m.tick_size)
    display = 0 if display_qty is None else int(Decimal(display_qty) / m.lot_size)
    return tif, stp, flags, trigger, display, expire_ts


_KEEP = frozenset({_ACCEPTED, _FILL, _CANCELLED, _AMENDED, _TRIGGERED, _ACTIVATED})


def _tuples(events) -> list[tuple]:
    """Core Event objects as EVENT_DTYPE tuples, only the kinds the history uses."""
    out = []
    for e in events:
        k = e.kind
        if k in _KEEP:
            t = e.astuple()
            out.append((k, t[1], t[2], t[3], 0, e.market, t[4], t[5], t[6], t[7], t[8], t[9], t[10], t[11]))
    return out


# -- the pipes between the store and its writer process -----------------------------------------------------
_HEADER = struct.Struct("<Q")
#: Queued by `flush()` for the sender: the writer commits what it has at once.
_FLUSH = object()


def _write_message(f, msg) -> None:
    data = pickle.dumps(msg, protocol=5)
    f.write(_HEADER.pack(len(data)))
    f.write(data)


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        c = os.read(fd, n - got)
        if not c:
            return None
        chunks.append(c)
        got += len(c)
    return b"".join(chunks)


def _weight(it: tuple) -> int:
    """A wired command's weight for grouping: 1 + its events (a Records
    command's events travel as raw EVENT_DTYPE bytes)."""
    if len(it) == 2:
        return 1
    return 1 + (len(it[5]) // EVENT_DTYPE.itemsize if it[3] == 1 else len(it[5]))


def _read_message(f, timeout: float | None = None):
    """The next message from `f` (None at the end of the pipe or after `timeout` s)."""
    fd = f.fileno()
    if timeout is not None and not select.select([fd], [], [], timeout)[0]:
        return None
    head = _read_exact(fd, _HEADER.size)
    if head is None:
        return None
    body = _read_exact(fd, _HEADER.unpack(head)[0])
    return None if body is None else pickle.loads(body)


class _Reader:
    """Reads framed messages from a pipe: whatever is complete, blocking or not."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = bytearray()
        self.pos = 0
        self.eof = False

    def _parse(self) -> list:
        msgs, buf, pos = [], self.buf, self.pos
        while len(buf) - pos >= _HEADER.size:
            n = _HEADER.unpack_from(buf, pos)[0]
            if len(buf) - pos - _HEADER.size < n:
                break
            start = pos + _HEADER.size
            msgs.append(pickle.loads(memoryview(buf)[start : start + n]))
            pos = start + n
        if pos > (1 << 20) or pos == len(buf):  # (small: growing a large buffer copies all of it)
            del buf[:pos]
            pos = 0
        self.pos = pos
        return msgs

    def available(self, wait: float | None) -> list:
        """Complete messages (None for the end of the pipe); waits at most
        `wait` seconds for one (None: as long as it takes)."""
        msgs = self._parse()
        while not msgs:
            if self.eof:
                return [None]
            if not select.select([self.fd], [], [], wait)[0]:
                return []
            chunk = os.read(self.fd, 1 << 22)
            if not chunk:
                self.eof = True
                return [None]
            self.buf += chunk
            msgs = self._parse()
        return msgs


def _writer_main() -> None:
    """The writer process (`HistoryStore` starts it with its config as argv[1])."""
    import signal

    # A Ctrl-C (SIGINT to the terminal's process group) or a SIGTERM to the node's whole group (a service
    # manager's stop) is the node's to handle: its graceful shutdown flushes and closes the pipe, and the
    # writer ends at the pipe's end (also when the node itself is killed).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The SQL thread takes the GIL back between statements: a short interval keeps it from waiting
    # on the converting thread.
    sys.setswitchinterval(0.0005)
    cfg = json.loads(sys.argv[1])
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s (writer process): %(message)s")
    out = os.fdopen(cfg["out"], "wb")
    reader = _Reader(cfg["in"])
    try:
        first = reader.available(None)
        if not first or first[0] is None or first[0][0] != "config" or len(first) > 1:
            raise RuntimeError("expected the config message first")
        _, backend_cfg, vectorized, account_block = first[0]
        w = _Writer(_backend_from_config(backend_cfg), vectorized, reader, out, nice=WRITER_NICE,
                    account_block=account_block)
    except Exception as e:
        _write_message(out, ("failed", f"{type(e).__name__}: {e}"))
        out.flush()
        sys.exit(1)
    _write_message(out, ("ready",))
    out.flush()
    try:
        w.run()
    except Exception as e:
        log.exception("history writer stopped")
        _write_message(out, ("failed", f"{type(e).__name__}: {e}"))
        out.flush()
        sys.exit(1)
    _write_message(out, ("closed",))
    out.flush()


_PLAIN_AT = [_PLAIN_ORDER_COLUMNS.index(c) if c in _PLAIN_ORDER_COLUMNS else None for c in _ORDER_COLUMNS]
_PLAIN_VALUE = {"0": 0, "NULL": None}


def _full_order_row(r: tuple) -> tuple:
    """A `_PLAIN_ORDER_COLUMNS` row as an `_ORDER_COLUMNS` row."""
    return tuple(r[i] if i is not None else _PLAIN_VALUE[_PLAIN_ORDER_CONSTANTS[c]]
                 for i, c in zip(_PLAIN_AT, _ORDER_COLUMNS))


def _bytes_view(a: np.ndarray) -> np.ndarray:
    """A contiguous array's bytes (for `_core`, which reads raw records)."""
    return np.ascontiguousarray(a).view(np.uint8)


def _none_if_negative(a: np.ndarray) -> list:
    """The values as Python ints, None where negative (absent)."""
    out = a.tolist()
    if (a < 0).any():
        out = [None if v < 0 else v for v in out]
    return out


class _Group:
    """One writer transaction: what it was made from, and its rows."""

    __slots__ = ("evs", "ts", "lens", "seqs", "known", "params", "fills", "new_orders", "deltas", "candles",
                 "fill_rows", "order_rows", "plain_order_rows", "delta_rows", "candle_rows", "account_order_rows",
                 "account_fill_rows", "markets", "new_market_ids", "fee_modes",
                 "gaps", "last_seq", "now", "next_fill_id", "client_ids", "lists")

    def __init__(self) -> None:
        # Column-wise path: each command's kept events, ts (an int or one per event), seq, which fills'
        # fees are knowable, and the ACCEPTED orders' submit parameters.
        self.evs: list[np.ndarray] = []
        self.ts: list = []
        self.lens: list[int] = []
        self.seqs: list[int] = []
        self.known: list[np.ndarray] = []
        self.params: list[np.ndarray] = []
        # Client order ids of the orders placed in the group (order id -> client id; most have none).
        self.client_ids: dict[int, str] = {}
        # The order list of each order placed in one in the group: order id -> (list id, contingency).
        self.lists: dict[int, tuple[int, str]] = {}
        # Per-event loop (reference) path: its running state.
        self.fills: list[tuple] = []
        self.new_orders: dict[int, list] = {}
        self.deltas: dict[int, list] = {}
        self.candles: dict[tuple[int, int], list] = {}
        # The rows written.
        # (tuples from the per-event loop; `_Cols` from the column-wise path, except `order_rows`)
        self.fill_rows: list[tuple] | _Cols = []
        self.order_rows: list[tuple] = []
        self.plain_order_rows: list[tuple] | _Cols = []  # `_PLAIN_ORDER_COLUMNS` (column-wise path)
        self.delta_rows: list[tuple] | _Cols = []
        self.candle_rows: list[tuple] = []
        self.account_order_rows: list[tuple] = []  # `account_orders` rows of the orders placed
        self.account_fill_rows: list[tuple] = []  # `account_fills` rows of the fills
        self.markets: list[tuple] = []
        self.new_market_ids: list[int] = []
        self.fee_modes: dict[int, str] = {}
        self.gaps: list[tuple[int, int]] = []
        self.last_seq = 0
        self.now = 0
        self.next_fill_id = 1
