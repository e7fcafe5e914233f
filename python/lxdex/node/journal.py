"""The node's journal: an append-only, checksummed, group-committed log.

Layout (docs/journal.md has the details)::

    DIR/journal/00000000000000000001.seg     segment files, named by the seq
    DIR/journal/00000000000000250001.seg     of their first record
    DIR/journal/LOCK                         held (flock) by the one writer

A segment starts with a 24-byte header (magic ``LXJ1``, version, first seq,
CRC32C of the header), then records framed as
``u32 payload length | u32 CRC32C(seq ++ payload) | u64 seq | payload``
(little-endian). Sequence numbers are consecutive from 1 (or ``start_seq``)
across segments. Framing and scanning run in Rust (`lxdex._core`).

`Journal.append` writes one batch with one ``os.write`` and, under the default
``sync="fdatasync"``, one ``os.fdatasync``: when it returns, the batch is
durable (group commit). On open, a torn or corrupt *tail* of the last segment
(what a crash in the middle of a write leaves) is truncated to the last good
record and logged; damage anywhere else raises `JournalCorrupt`, because the
records after it were acknowledged.

A `Journal` is for one thread: it has no internal locking.
"""

from __future__ import annotations

import bisect
import logging
import mmap
import os
import re
import struct
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, NoReturn

from .. import _core

try:  # POSIX only; elsewhere the single-writer rule is not enforced.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_SEGMENT_BYTES",
    "RECORD_HEADER_LEN",
    "SEGMENT_HEADER_LEN",
    "Journal",
    "JournalCorrupt",
    "JournalError",
]

log = logging.getLogger("lxdex.node.journal")

SEGMENT_MAGIC = b"LXJ1"
SEGMENT_VERSION = 1
_SEG_HEADER = struct.Struct("<4sIQI")  # magic, version, first seq, reserved; then u32 CRC32C
SEGMENT_HEADER_LEN = _SEG_HEADER.size + 4
RECORD_HEADER_LEN = 16
DEFAULT_SEGMENT_BYTES = 64 << 20
_SEG_NAME = re.compile(r"^(\d{20})\.seg$")

SyncPolicy = Literal["fdatasync", "none"]

_REASONS = {
    "partial_header": "record header cut short",
    "short_payload": "record payload cut short",
    "bad_length": "impossible record length",
    "bad_crc": "CRC32C mismatch",
    "wrong_seq": "unexpected sequence number",
}


class JournalError(Exception):
    """The journal cannot do what was asked (closed, locked, failed write, compacted range)."""


class JournalCorrupt(JournalError):
    """Damage that is not a torn tail: opening would drop acknowledged records.

    `path`, `offset` (bytes into that file) and `reason` say where and what.
    """

    def __init__(self, path: Path | str, offset: int, reason: str) -> None:
        self.path = Path(path)
        self.offset = offset
        self.reason = reason
        super().__init__(f"journal corrupt: {self.path} at offset {offset}: {reason}")


def segment_name(first_seq: int) -> str:
    """The file name of the segment whose first record is `first_seq`."""
    return f"{first_seq:020d}.seg"


def _segment_header(first_seq: int) -> bytes:
    head = _SEG_HEADER.pack(SEGMENT_MAGIC, SEGMENT_VERSION, first_seq, 0)
    return head + struct.pack("<I", _core.crc32c(head))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_datasync = getattr(os, "fdatasync", os.fsync)


def _map(path: Path, limit: int = -1) -> memoryview | bytes:
    """The segment file's bytes (the first `limit` of them, if >= 0) as a
    read-only memory map: no copy into the process and no zeroed pages to
    fill, which reading a 64 MiB segment into `bytes` costs. A file too
    short to map is read. The map is unmapped once the view is released."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if limit >= 0:
            size = min(size, limit)
        if size < SEGMENT_HEADER_LEN:
            return f.read(size)
        m = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)
    if hasattr(m, "madvise"):
        m.madvise(mmap.MADV_SEQUENTIAL)
    return memoryview(m)


class _Segment:
    __slots__ = ("first_seq", "path")

    def __init__(self, first_seq: int, path: Path) -> None:
        self.first_seq = first_seq
        self.path = path


class Journal:
    """An open journal; make one with `Journal.open`."""

    def __init__(self, *_args: object, **_kw: object) -> None:
        raise TypeError("use Journal.open(dir, ...)")

    @classmethod
    def open(
        cls,
        dir: str | os.PathLike[str],
        *,
        sync: SyncPolicy = "fdatasync",
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        start_seq: int = 1,
        recover: Literal["tail", "truncate"] = "tail",
    ) -> Journal:
        """Opens (creating if needed) the journal in ``DIR/journal``.

        Every segment is scanned. A torn or corrupt tail of the last segment
        is truncated to the last good record (logged at WARNING); any other
        damage raises `JournalCorrupt`. ``recover="truncate"`` is the
        operator's override after such an error: it truncates the last
        segment at its first bad record even when valid records follow
        (logged at ERROR with the count); damage in older segments and
        sequence gaps still raise. `start_seq` numbers the first record of a
        journal that is created empty (a node restored from a snapshot).
        """
        if sync not in ("fdatasync", "none"):
            raise ValueError(f"sync must be 'fdatasync' or 'none', not {sync!r}")
        if segment_bytes < SEGMENT_HEADER_LEN:
            raise ValueError("segment_bytes is too small")
        if start_seq < 1:
            raise ValueError("start_seq must be >= 1")
        if recover not in ("tail", "truncate"):
            raise ValueError(f"recover must be 'tail' or 'truncate', not {recover!r}")
        self = object.__new__(cls)
        self._dir = Path(dir) / "journal"
        self._sync = sync
        self._segment_bytes = segment_bytes
        self._fd = -1
        self._lock_fd = -1
        self._failed: BaseException | None = None
        self._writer = None  # _core.DurableWriter, made at the first append_begin
        self._inflight: tuple[int, int] | None = None  # (bytes, records) being appended
        self._dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self._recover(start_seq, recover)
        except BaseException:
            self._unlock()
            raise
        if sync == "none":
            log.warning("journal %s opened with sync='none': appended records are NOT durable "
                        "(for benchmarks only)", self._dir)
        return self

    # -- properties ---------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The journal directory (``DIR/journal``)."""
        return self._dir

    @property
    def sync(self) -> str:
        return self._sync

    @property
    def segment_bytes(self) -> int:
        return self._segment_bytes

    @property
    def last_seq(self) -> int:
        """The seq of the last record (0, or ``start_seq - 1``, when empty)."""
        return self._last_seq

    @property
    def first_seq(self) -> int:
        """The seq of the oldest record still held (after compaction); the
        next seq to be written when the journal is empty."""
        return self._segments[0].first_seq

    @property
    def segments(self) -> list[Path]:
        """The segment files, oldest first; the last one is being appended to."""
        return [s.path for s in self._segments]

    @property
    def closed(self) -> bool:
        return self._fd < 0

    # -- writing ------------------------------------------------------------------------------

    def append(self, payloads: Sequence[bytes] | Iterable[bytes]) -> int:
        """Appends a batch of records; returns the seq of its last record.

        Under ``sync="fdatasync"`` the batch is durable when this returns
        (one write and one fdatasync per batch). An empty batch writes
        nothing and returns `last_seq`.
        """
        self._check_writable()
        if not isinstance(payloads, (list, tuple)):
            payloads = list(payloads)
        if not payloads:
            return self._last_seq
        self._maybe_roll()
        data = _core.journal_frame(payloads, self._last_seq + 1)
        self._write(data, len(payloads))
        return self._last_seq

    def append_begin(self, payloads: Sequence[bytes]) -> int:
        """Starts appending a batch on the journal's own thread (write and,
        under ``sync="fdatasync"``, fdatasync, without the GIL) and returns
        the seq its first record gets; `append_end` waits for it. One batch
        in flight at a time: the sequencer applies a batch while it is
        written, and acknowledges it only after `append_end`."""
        self._check_writable()
        payloads = list(payloads)
        first = self._last_seq + 1
        if not payloads:
            self._inflight = (0, 0)
            return first
        self._maybe_roll()
        data = _core.journal_frame(payloads, first)
        if self._writer is None:
            self._writer = _core.DurableWriter()
        self._writer.start(self._fd, data, self._sync == "fdatasync")
        self._inflight = (len(data), len(payloads))
        return first

    def append_end(self) -> int:
        """Waits for the batch `append_begin` started; returns the seq of its
        last record once it is written (and durable under fdatasync). A
        failed write fails the journal as `append` does (JournalError)."""
        if self._inflight is None:
            raise JournalError(f"journal {self._dir}: no batch is being appended")
        size, n = self._inflight
        self._inflight = None
        if n:
            try:
                self._writer.wait()
            except OSError as e:
                self._fail_write(e)
            self._size += size
            self._last_seq += n
        return self._last_seq

    def append_fixed(self, data: object, record_size: int) -> int:
        """Appends every `record_size` bytes of `data` (any contiguous buffer,
        e.g. a numpy array of `COMMAND_DTYPE` records) as one record each;
        the fast path for fixed-size commands. Returns the last seq."""
        self._check_writable()
        size = memoryview(data).nbytes  # type: ignore[arg-type]
        if record_size <= 0 or size % record_size:
            raise ValueError(f"data: {size} bytes is not a whole number of {record_size}-byte records")
        if size == 0:
            return self._last_seq
        self._maybe_roll()
        framed = _core.journal_frame_fixed(data, record_size, self._last_seq + 1)
        self._write(framed, size // record_size)
        return self._last_seq

    def flush(self) -> None:
        """fdatasync the active segment now (whatever the sync policy)."""
        self._check_writable()
        try:
            _datasync(self._fd)
        except OSError as e:
            self._failed = e
            raise JournalError(f"journal {self._active_path}: fdatasync failed: {e}") from e

    def compact(self, upto_seq: int) -> int:
        """Deletes the segments whose records all have ``seq <= upto_seq``
        (covered by a snapshot), oldest first; never the active segment.
        Returns how many segments were deleted."""
        self._check_open()
        removed = 0
        while len(self._segments) > 1 and self._segments[1].first_seq - 1 <= upto_seq:
            seg = self._segments.pop(0)
            seg.path.unlink()
            removed += 1
        if removed:
            if self._sync != "none":
                _fsync_dir(self._dir)
            log.info("journal %s: compacted %d segment(s) up to seq %d; first seq now %d",
                     self._dir, removed, upto_seq, self.first_seq)
        return removed

    # -- reading ------------------------------------------------------------------------------

    def read(self, from_seq: int | None = None) -> Iterator[tuple[int, bytes]]:
        """Yields ``(seq, payload)`` from `from_seq` (default: the first held)
        to `last_seq` as of each segment's turn."""
        for batch in self.read_batches(from_seq):
            yield from batch

    def read_batches(self, from_seq: int | None = None, max_records: int = 65536) -> Iterator[list[tuple[int, bytes]]]:
        """Yields lists of up to `max_records` ``(seq, payload)`` in order
        (framing checks run in Rust)."""
        for _first, batch in self._read(from_seq, max_records, "records"):
            yield batch

    def read_payloads(self, from_seq: int | None = None, max_records: int = 65536) -> Iterator[tuple[int, list[bytes]]]:
        """Yields ``(first_seq, payloads)`` with up to `max_records` payloads,
        ``payloads[i]`` being record ``first_seq + i``: the fastest replay
        path (no per-record tuple)."""
        return self._read(from_seq, max_records, "payloads")

    def read_spans(self, from_seq: int | None = None,
                   max_records: int = 65536) -> Iterator[tuple[int, memoryview | bytes, bytes]]:
        """Yields ``(first_seq, buf, spans)``: up to `max_records` records
        from ``first_seq`` on, CRC-checked, as offsets into `buf` (a
        read-only map of their segment): `spans` holds a little-endian
        ``u64`` start and end offset per payload. The replay path that
        copies nothing (`lxdex._core.ExchangeCore.replay_records` applies
        binary batches straight from `buf`); ``buf[start:end]`` is a payload."""
        return self._read(from_seq, max_records, "spans")

    def _read(self, from_seq: int | None, max_records: int, mode: str) -> Iterator[tuple[int, Any]]:
        self._check_open()
        if max_records < 1:
            raise ValueError("max_records must be >= 1")
        first = self.first_seq
        if from_seq is None or from_seq < 1:
            from_seq = first
        if from_seq < first:
            raise JournalError(f"journal {self._dir}: records before seq {first} were compacted "
                               f"(asked from {from_seq})")
        segments = list(self._segments)
        i = max(0, bisect.bisect_right([s.first_seq for s in segments], from_seq) - 1)
        for seg in segments[i:]:
            if seg is self._segments[-1] and not self.closed:
                limit = self._size  # what this writer has written: no half batch
            else:
                limit = -1
            try:
                if mode == "spans":
                    buf = _map(seg.path, limit)
                else:
                    with open(seg.path, "rb") as f:
                        buf = f.read(limit)
            except FileNotFoundError:
                raise JournalError(f"journal {self._dir}: segment {seg.path.name} was compacted "
                                   "while being read") from None
            start, expected = SEGMENT_HEADER_LEN, seg.first_seq
            while True:
                if mode == "spans":
                    rfirst, spans, last, end, status = _core.journal_read_spans(
                        buf, expected, start, from_seq, max_records)
                    if spans:
                        yield rfirst, buf, spans
                    recs = None
                elif mode == "payloads":
                    rfirst, recs, last, end, status = _core.journal_read_payloads(
                        buf, expected, start, from_seq, max_records)
                else:
                    recs, last, end, status = _core.journal_read(buf, expected, start, from_seq, max_records)
                    rfirst = recs[0][0] if recs else 0
                if recs:
                    yield rfirst, recs
                if status == "limit":
                    start, expected = end, last + 1
                    continue
                if status != "end":
                    raise JournalCorrupt(seg.path, end, f"{_REASONS.get(status, status)} (found while reading)")
                break

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Closes the active segment (it was synced per batch) and releases
        the lock; a batch still being appended is waited for first (and not
        counted: it was never acknowledged)."""
        if self._writer is not None:
            self._writer.close()  # finishes the write in flight
            self._writer = None
            self._inflight = None
        if self._fd >= 0:
            try:
                if self._sync != "none" and self._failed is None:
                    _datasync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = -1
                self._unlock()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        fd = getattr(self, "_fd", -1)
        if fd >= 0:
            os.close(fd)
            self._unlock()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"seqs {self.first_seq}..{self._last_seq}"
        return f"<Journal {self._dir} {state}, {len(self._segments)} segment(s), sync={self._sync}>"

    # -- internals ----------------------------------------------------------------------------

    def _lock(self) -> None:
        if fcntl is None:  # pragma: no cover
            return
        fd = os.open(self._dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise JournalError(f"journal {self._dir} is open in another writer") from None
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = -1

    @property
    def _active_path(self) -> Path:
        return self._segments[-1].path

    def _check_open(self) -> None:
        if self._fd < 0:
            raise JournalError(f"journal {self._dir} is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self._failed is not None:
            raise JournalError(f"journal {self._dir}: an earlier write or sync failed ({self._failed}); "
                               "close and reopen it to recover")
        if self._inflight is not None:
            raise JournalError(f"journal {self._dir}: a batch is being appended (append_end first)")

    def _write(self, data: bytes, n: int) -> None:
        view = memoryview(data)
        done = 0
        try:
            while done < len(view):
                done += os.write(self._fd, view[done:])
            if self._sync == "fdatasync":
                _datasync(self._fd)
        except OSError as e:
            self._fail_write(e)
        self._size += len(view)
        self._last_seq += n

    def _fail_write(self, e: OSError) -> NoReturn:
        # After a failed write or fdatasync the file's durable state is
        # unknown (a retried fsync can report success for lost pages):
        # refuse further appends; reopening rescans and truncates.
        self._failed = e
        try:
            os.ftruncate(self._fd, self._size)
        except OSError:
            pass
        raise JournalError(f"journal {self._active_path}: append failed: {e}") from e

    def _maybe_roll(self) -> None:
        """Starts a new segment, at a batch boundary, once the active one
        has reached `segment_bytes` and holds at least one record."""
        if self._size >= self._segment_bytes and self._last_seq >= self._segments[-1].first_seq:
            self._roll()

    def _roll(self) -> None:
        seg = self._create_segment(self._last_seq + 1)
        fd = os.open(seg.path, os.O_WRONLY | os.O_APPEND)
        os.close(self._fd)
        self._fd = fd
        self._segments.append(seg)
        self._size = SEGMENT_HEADER_LEN

    def _create_segment(self, first_seq: int) -> _Segment:
        """Writes a segment with just its header: to a temp file, synced,
        then renamed, so a segment file never has a torn header."""
        path = self._dir / segment_name(first_seq)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, _segment_header(first_seq))
            if self._sync != "none":
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        if self._sync != "none":
            _fsync_dir(self._dir)
        return _Segment(first_seq, path)

    def _recover(self, start_seq: int, recover: str) -> None:
        segments: list[_Segment] = []
        for p in sorted(self._dir.iterdir()):
            m = _SEG_NAME.match(p.name)
            if m:
                segments.append(_Segment(int(m.group(1)), p))
            elif p.name.endswith(".seg.tmp"):
                log.warning("journal %s: removing unfinished segment file %s", self._dir, p.name)
                p.unlink()
        segments.sort(key=lambda s: s.first_seq)
        last_seq = None
        size = SEGMENT_HEADER_LEN
        for i, seg in enumerate(segments):
            is_last = i == len(segments) - 1
            buf = _map(seg.path)
            self._check_header(seg, buf)
            if last_seq is not None and seg.first_seq != last_seq + 1:
                raise JournalCorrupt(seg.path, 0, f"sequence gap: segment starts at seq {seg.first_seq} "
                                                  f"but the previous one ends at seq {last_seq}")
            count, seg_last, valid_end, status = _core.journal_check(buf, seg.first_seq, SEGMENT_HEADER_LEN)
            if status != "end":
                reason = _REASONS.get(status, status)
                if status == "wrong_seq":
                    reason += f" (expected {seg_last + 1})"
                if not is_last:
                    raise JournalCorrupt(seg.path, valid_end, f"{reason}, in a segment that is not the last")
                after = _core.journal_find_valid(buf, valid_end + 1, seg_last + 1)
                dropped = len(buf) - valid_end
                if after is not None:
                    if recover != "truncate":
                        raise JournalCorrupt(seg.path, valid_end,
                                             f"{reason}, followed by valid records (the next at offset {after})")
                    log.error("journal %s: recover='truncate': truncated at offset %d, dropping %d bytes "
                              "including valid records from offset %d (%s)",
                              seg.path, valid_end, dropped, after, reason)
                else:
                    log.warning("journal %s: truncated torn tail at offset %d: dropped %d bytes (%s)",
                                seg.path, valid_end, dropped, reason)
                del buf  # unmapped before the file shrinks under it
                self._truncate(seg.path, valid_end)
            last_seq = seg_last
            size = valid_end
        if not segments:
            segments.append(self._create_segment(start_seq))
            last_seq = start_seq - 1
        assert last_seq is not None
        self._segments = segments
        self._last_seq = last_seq
        self._size = size
        self._fd = os.open(segments[-1].path, os.O_WRONLY | os.O_APPEND)

    def _truncate(self, path: Path, size: int) -> None:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def _check_header(seg: _Segment, buf: bytes | memoryview) -> None:
        if len(buf) < SEGMENT_HEADER_LEN:
            raise JournalCorrupt(seg.path, 0, f"segment header cut short ({len(buf)} bytes)")
        magic, version, first, _reserved = _SEG_HEADER.unpack_from(buf)
        (crc,) = struct.unpack_from("<I", buf, _SEG_HEADER.size)
        magic = bytes(magic)
        if magic != SEGMENT_MAGIC:
            raise JournalCorrupt(seg.path, 0, f"bad segment magic {magic!r} (expected {SEGMENT_MAGIC!r})")
        if crc != _core.crc32c(buf[:_SEG_HEADER.size]):
            raise JournalCorrupt(seg.path, 0, "segment header CRC32C mismatch")
        if version != SEGMENT_VERSION:
            raise JournalCorrupt(seg.path, 0, f"unsupported segment version {version}")
        if first != seg.first_seq:
            raise JournalCorrupt(seg.path, 0, f"segment header says first seq {first}, file name {seg.first_seq}")
