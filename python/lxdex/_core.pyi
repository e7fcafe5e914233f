"""Type stubs of the Rust extension `lxdex._core` (see crates/python/src/lib.rs)."""

import numpy as np
import numpy.typing as npt

MAX_PRICE: int
MAX_QTY: int
MAX_TRAIL_BPS: int
FLAG_POST_ONLY: int
FLAG_TRAIL_BPS: int
COMMAND_RECORD_SIZE: int

class Event:
    """One event; docs/engine.md says which fields each kind fills."""

    kind: int
    reason: int
    side: int
    order_type: int
    market: int
    order_id: int
    owner: int
    other_id: int
    other_owner: int
    price: int
    qty: int
    remaining: int
    other_remaining: int
    def astuple(self) -> tuple[int, int, int, int, int, int, int, int, int, int, int, int]: ...

class Book:
    def __init__(self, tick_size: int = 1, lot_size: int = 1) -> None: ...
    def submit(
        self,
        order_id: int,
        owner: int,
        side: int,
        qty: int,
        price: int = 0,
        order_type: int = 0,
        tif: int = 0,
        stp: int = 0,
        post_only: bool = False,
        display_qty: int = 0,
        trigger_price: int = 0,
        trail_bps: bool = False,
        expire_ts: int = 0,
    ) -> list[Event]: ...
    def bracket(
        self,
        order_id: int,
        owner: int,
        side: int,
        qty: int,
        price: int,
        tp_id: int,
        tp_trigger: int,
        sl_id: int,
        sl_trigger: int,
        tp_price: int = 0,
        sl_price: int = 0,
        tif: int = 0,
        stp: int = 0,
        post_only: bool = False,
        expire_ts: int = 0,
    ) -> list[Event]: ...
    def oco(
        self,
        owner: int,
        side: int,
        qty: int,
        tp_id: int,
        tp_trigger: int,
        sl_id: int,
        sl_trigger: int,
        tp_price: int = 0,
        sl_price: int = 0,
        stp: int = 0,
    ) -> list[Event]: ...
    def cancel(self, order_id: int) -> list[Event]: ...
    def amend(self, order_id: int, price: int = 0, qty: int = 0) -> list[Event]: ...
    def mass_cancel(self, owner: int) -> list[Event]: ...
    def advance_time(self, ts: int) -> list[Event]: ...
    def observe_price(self, price: int) -> list[Event]: ...
    def process(self, commands: npt.NDArray[np.void]) -> npt.NDArray[np.void]: ...
    @property
    def tick_size(self) -> int: ...
    @property
    def lot_size(self) -> int: ...
    @property
    def now(self) -> int: ...
    @property
    def best_bid(self) -> int | None: ...
    @property
    def best_ask(self) -> int | None: ...
    @property
    def last_price(self) -> int | None: ...
    @property
    def pending_count(self) -> int: ...
    def __len__(self) -> int: ...
    def volume_at(self, side: int, price: int) -> int: ...
    def depth(self, n: int = 10) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]: ...
    def l3(self) -> list[tuple[int, int, int, int, int, int]]: ...
    def pending(self) -> list[tuple[int, int, int, int, int, int, int, bool]]: ...
    def order(self, order_id: int) -> dict[str, int | str] | None: ...
    def snapshot(self) -> bytes: ...
    def load_snapshot(self, data: bytes) -> None: ...
    def check_invariants(self) -> None: ...

def bench_replay(
    commands: npt.NDArray[np.void], tick_size: int = 1, lot_size: int = 1, timed: bool = False
) -> tuple[int, int, npt.NDArray[np.uint64] | None]: ...
def wire_enums() -> dict[str, dict[str, int]]: ...

# -- journal framing (crates/python/src/journal.rs; used by lxdex.node.journal) --

JOURNAL_RECORD_HEADER_LEN: int
"""16: u32 payload length | u32 CRC32C(seq ++ payload) | u64 seq, little-endian."""

def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC32C (Castagnoli) of `data`, continuing from `crc` (0 to start)."""

def journal_frame(payloads: list[bytes] | tuple[bytes, ...], first_seq: int) -> bytes:
    """Frames `payloads` as consecutive records numbered from `first_seq`."""

def journal_frame_fixed(data: object, record_size: int, first_seq: int) -> bytes:
    """Frames every `record_size` bytes of the buffer `data` as one record."""

def journal_check(buf: object, expected_first_seq: int, start: int = 0) -> tuple[int, int, int, str]:
    """Validates records from `start`: `(count, last_seq, valid_end, status)`; status is
    'end', 'partial_header', 'short_payload', 'bad_length', 'bad_crc' or 'wrong_seq'."""

def journal_scan(
    buf: object, expected_first_seq: int, start: int = 0, max_records: int | None = None
) -> tuple[list[tuple[int, int, int]], int, str]:
    """`(records, valid_end, status)`: one `(seq, payload_start, payload_end)` per valid record;
    status as `journal_check`, or 'limit' after `max_records`."""

def journal_read(
    buf: object, expected_first_seq: int, start: int = 0, from_seq: int = 0, max_records: int | None = None
) -> tuple[list[tuple[int, bytes]], int, int, str]:
    """`(records, last_seq, valid_end, status)`: `(seq, payload)` of the valid records with
    `seq >= from_seq` (at most `max_records`); continue from `valid_end` with `last_seq + 1`."""

def journal_read_payloads(
    buf: object, expected_first_seq: int, start: int = 0, from_seq: int = 0, max_records: int | None = None
) -> tuple[int, list[bytes], int, int, str]:
    """`(first_seq, payloads, last_seq, valid_end, status)`: as `journal_read`, payload `i` being
    record `first_seq + i`; no per-record tuples (the fast replay path)."""

def journal_find_valid(buf: object, start: int, min_seq: int) -> int | None:
    """The first offset >= `start` where a CRC-valid record with `seq >= min_seq` begins."""
