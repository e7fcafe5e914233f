"""The node journal: framing, rollover, recovery of torn tails, refusal of other damage, compaction."""

from __future__ import annotations

import logging
import os
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lxdex import _core
from lxdex.node.journal import (
    RECORD_HEADER_LEN,
    SEGMENT_HEADER_LEN,
    Journal,
    JournalCorrupt,
    JournalError,
    segment_name,
)

LOGGER = "lxdex.node.journal"


def payload(seq: int, size: int | None = None) -> bytes:
    """A payload that says which seq it belongs to, of varying length."""
    size = (seq * 7) % 50 if size is None else size
    head = f"rec{seq}:".encode()
    return (head + bytes((seq + i) % 256 for i in range(size)))


def fill(j: Journal, n: int, batch: int = 7) -> None:
    seq = j.last_seq
    while seq < n:
        k = min(batch, n - seq)
        assert j.append([payload(s) for s in range(seq + 1, seq + k + 1)]) == seq + k
        seq += k


def check_all(j: Journal, first: int, last: int) -> None:
    got = list(j.read(first))
    assert [s for s, _ in got] == list(range(first, last + 1))
    for s, p in got:
        assert p == payload(s)


def record_offsets(path) -> list[tuple[int, int, int]]:
    """(seq, record_start, record_end) of each record of a segment file."""
    buf = path.read_bytes()
    first = struct.unpack_from("<Q", buf, 8)[0]
    recs, end, status = _core.journal_scan(buf, first, SEGMENT_HEADER_LEN)
    assert status == "end" and end == len(buf)
    return [(s, a - RECORD_HEADER_LEN, b) for s, a, b in recs]


# -- the native helpers ----------------------------------------------------------------------


def test_crc32c_known_vector():
    assert _core.crc32c(b"123456789") == 0xE3069283
    assert _core.crc32c(b"456789", _core.crc32c(b"123")) == 0xE3069283
    assert _core.crc32c(bytearray(32)) == 0x8A9136AA


def test_frame_layout_and_scan():
    buf = _core.journal_frame([b"abc", bytearray(b""), memoryview(b"xy")], 41)
    n, crc, seq = struct.unpack_from("<IIQ", buf)
    assert (n, seq, buf[16:19]) == (3, 41, b"abc")
    assert crc == _core.crc32c(struct.pack("<Q", 41) + b"abc")
    recs, end, status = _core.journal_scan(buf, 41)
    assert [(s, buf[a:b]) for s, a, b in recs] == [(41, b"abc"), (42, b""), (43, b"xy")]
    assert (end, status) == (len(buf), "end")
    assert _core.journal_read(buf, 41, 0, 42, 1) == ([(42, b"")], 42, 35, "limit")
    assert _core.journal_frame_fixed(b"abcdef", 3, 5) == _core.journal_frame([b"abc", b"def"], 5)
    with pytest.raises(ValueError):
        _core.journal_frame_fixed(b"abcde", 3, 5)
    # A record moved to another seq fails its CRC.
    moved = bytearray(buf[:19])
    moved[8:16] = struct.pack("<Q", 42)
    assert _core.journal_check(bytes(moved), 42) == (0, 41, 0, "bad_crc")


# -- round trips, rollover, reopen -----------------------------------------------------------


def test_round_trip_and_reopen(tmp_path):
    with Journal.open(tmp_path) as j:
        assert (j.first_seq, j.last_seq) == (1, 0)
        assert j.append([]) == 0
        assert j.append([b"a"]) == 1
        assert j.append([b"b", b"", b"c" * 1000]) == 4
        assert list(j.read()) == [(1, b"a"), (2, b"b"), (3, b""), (4, b"c" * 1000)]
        assert list(j.read(3)) == [(3, b""), (4, b"c" * 1000)]
        assert list(j.read(5)) == []
    with Journal.open(tmp_path) as j:
        assert (j.first_seq, j.last_seq) == (1, 4)
        assert j.append(iter([b"d"])) == 5
        assert [s for s, _ in j.read()] == [1, 2, 3, 4, 5]
    assert [p.name for p in (tmp_path / "journal").glob("*.seg")] == [segment_name(1)]


def test_many_batches_across_rollovers(tmp_path):
    rng = random.Random(3)
    with Journal.open(tmp_path, segment_bytes=2000) as j:
        seq = 0
        for _ in range(300):
            k = rng.randint(1, 12)
            seq = j.append([payload(s) for s in range(seq + 1, seq + k + 1)])
        assert j.last_seq == seq
        segs = j.segments
        assert len(segs) > 20
        check_all(j, 1, seq)
        batches = list(j.read_batches(1, max_records=5))
        assert all(0 < len(b) <= 5 for b in batches)
        assert [s for b in batches for s, _ in b] == list(range(1, seq + 1))
        assert [s for s, _ in j.read(seq - 3)] == list(range(seq - 3, seq + 1))
        fast = list(j.read_payloads(5, max_records=9))
        assert all(0 < len(p) <= 9 for _, p in fast)
        assert [(f + i, x) for f, ps in fast for i, x in enumerate(ps)] == list(j.read(5))
    for p in segs:
        # Named by first seq, each rolled over only once it reached segment_bytes.
        first = int(p.name[:20])
        assert record_offsets(p)[0][0] == first
    for p in segs[:-1]:
        assert p.stat().st_size >= 2000
    with Journal.open(tmp_path, segment_bytes=2000) as j:
        assert j.last_seq == seq
        fill(j, seq + 50)
        check_all(j, 1, seq + 50)


def test_append_fixed_matches_append(tmp_path):
    np = pytest.importorskip("numpy")
    data = np.arange(60, dtype=np.uint8).reshape(10, 6)
    with Journal.open(tmp_path) as j:
        assert j.append_fixed(data, 6) == 10
        assert j.append_fixed(b"", 6) == 10
        with pytest.raises(ValueError):
            j.append_fixed(b"12345", 6)
        assert list(j.read()) == [(i + 1, bytes(data[i])) for i in range(10)]


def test_start_seq_and_single_writer(tmp_path):
    with Journal.open(tmp_path, start_seq=101) as j:
        assert (j.first_seq, j.last_seq) == (101, 100)
        assert j.append([b"x"]) == 101
        with pytest.raises(JournalError, match="another writer"):
            Journal.open(tmp_path)
    with Journal.open(tmp_path, start_seq=7) as j:  # start_seq only applies to a new journal
        assert (j.first_seq, j.last_seq) == (101, 101)
    with pytest.raises(JournalError, match="closed"):
        j.append([b"y"])


def test_sync_none_warns(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        with Journal.open(tmp_path, sync="none") as j:
            j.append([b"x"])
    assert "NOT durable" in caplog.text
    with pytest.raises(ValueError):
        Journal.open(tmp_path, sync="fsync-sometimes")


# -- torn tails: truncated to the last good record, with a log line ------------------------


def _journal_with_records(path, n=5, segment_bytes=1 << 20):
    with Journal.open(path, segment_bytes=segment_bytes) as j:
        fill(j, n, batch=2)
        return j.segments[-1]


def test_truncation_at_every_offset_of_the_last_record(tmp_path, caplog):
    seg = _journal_with_records(tmp_path / "src")
    original = seg.read_bytes()
    _, last_start, last_end = record_offsets(seg)[-1]
    assert last_end == len(original) and last_end - last_start > RECORD_HEADER_LEN + 5
    d = tmp_path / "cut"
    target = d / "journal" / seg.name
    for cut in range(last_start + 1, last_end):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(original[:cut])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            with Journal.open(d) as j:
                assert j.last_seq == 4
                check_all(j, 1, 4)
                assert j.append([payload(5)]) == 5
                check_all(j, 1, 5)
        why = "record header cut short" if cut - last_start < RECORD_HEADER_LEN else "record payload cut short"
        msgs = [r.getMessage() for r in caplog.records if r.name == LOGGER]
        assert msgs == [f"journal {target}: truncated torn tail at offset {last_start}: "
                        f"dropped {cut - last_start} bytes ({why})"], cut
    # Cut exactly at a record boundary: nothing to repair, nothing logged.
    target.write_bytes(original[:last_start])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        with Journal.open(d) as j:
            assert j.last_seq == 4
    assert not caplog.records


@pytest.mark.parametrize("where", ["length", "crc", "seq", "payload"])
def test_bad_last_record_is_truncated(tmp_path, caplog, where):
    seg = _journal_with_records(tmp_path)
    buf = bytearray(seg.read_bytes())
    _, start, end = record_offsets(seg)[-1]
    pos = {"length": start, "crc": start + 4, "seq": start + 8, "payload": end - 1}[where]
    buf[pos] ^= 0x10
    seg.write_bytes(bytes(buf))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        with Journal.open(tmp_path) as j:
            assert j.last_seq == 4
            check_all(j, 1, 4)
    assert f"truncated torn tail at offset {start}: dropped {end - start} bytes" in caplog.text
    assert seg.stat().st_size == start


def test_wrong_seq_at_tail_is_truncated(tmp_path, caplog):
    seg = _journal_with_records(tmp_path)
    # A valid record with a seq that does not follow (a stale duplicate of seq 3).
    with open(seg, "ab") as f:
        f.write(_core.journal_frame([payload(3)], 3))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        with Journal.open(tmp_path) as j:
            assert j.last_seq == 5
    assert "unexpected sequence number (expected 6)" in caplog.text


@settings(max_examples=40, deadline=None)
@given(garbage=st.binary(min_size=1, max_size=300))
def test_garbage_appended_is_truncated(tmp_path_factory, garbage):
    d = tmp_path_factory.mktemp("garbage")
    seg = _journal_with_records(d)
    size = seg.stat().st_size
    with open(seg, "ab") as f:
        f.write(garbage)
    logger = logging.getLogger(LOGGER)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        with Journal.open(d) as j:
            assert j.last_seq == 5
            check_all(j, 1, 5)
    finally:
        logger.removeHandler(handler)
    assert seg.stat().st_size == size
    assert len(records) == 1 and f"dropped {len(garbage)} bytes" in records[0].getMessage()


def test_unfinished_segment_file_is_removed(tmp_path, caplog):
    _journal_with_records(tmp_path)
    stray = tmp_path / "journal" / (segment_name(6) + ".tmp")
    stray.write_bytes(b"LXJ")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        with Journal.open(tmp_path) as j:
            assert j.last_seq == 5
    assert not stray.exists()
    assert "unfinished segment" in caplog.text


# -- damage that is not a torn tail: refuse to open ----------------------------------------


def test_corruption_in_the_middle_refuses(tmp_path):
    seg = _journal_with_records(tmp_path)
    buf = bytearray(seg.read_bytes())
    _, start, _ = record_offsets(seg)[2]  # seq 3 of 5
    buf[start + RECORD_HEADER_LEN] ^= 0xFF
    seg.write_bytes(bytes(buf))
    with pytest.raises(JournalCorrupt) as e:
        Journal.open(tmp_path)
    assert e.value.path == seg and e.value.offset == start
    assert "CRC32C mismatch, followed by valid records" in str(e.value)
    assert str(seg) in str(e.value)
    assert seg.read_bytes() == bytes(buf)  # nothing was truncated
    # The operator's override truncates at the damage.
    with Journal.open(tmp_path, recover="truncate") as j:
        assert j.last_seq == 2


def test_missing_bytes_in_the_middle_refuses(tmp_path):
    seg = _journal_with_records(tmp_path)
    buf = seg.read_bytes()
    _, start, _ = record_offsets(seg)[1]
    seg.write_bytes(buf[:start + 5] + buf[start + 9:])  # four bytes of record 2 lost
    with pytest.raises(JournalCorrupt, match="followed by valid records"):
        Journal.open(tmp_path)


def test_corruption_in_an_older_segment_refuses(tmp_path):
    with Journal.open(tmp_path, segment_bytes=300) as j:
        fill(j, 60, batch=3)
        segs = j.segments
    assert len(segs) >= 3
    buf = bytearray(segs[0].read_bytes())
    _, start, end = record_offsets(segs[0])[-1]  # even the last record of an older segment
    buf[end - 1] ^= 1
    segs[0].write_bytes(bytes(buf))
    with pytest.raises(JournalCorrupt, match="not the last") as e:
        Journal.open(tmp_path)
    assert (e.value.path, e.value.offset) == (segs[0], start)
    # A torn older segment is no better.
    segs[0].write_bytes(bytes(buf[:end - 1]))
    with pytest.raises(JournalCorrupt, match="not the last"):
        Journal.open(tmp_path)


def test_sequence_gap_between_segments_refuses(tmp_path):
    with Journal.open(tmp_path, segment_bytes=300) as j:
        fill(j, 60, batch=3)
        segs = j.segments
    segs[1].unlink()
    with pytest.raises(JournalCorrupt, match="sequence gap") as e:
        Journal.open(tmp_path)
    assert e.value.path == segs[2]


def test_bad_segment_header_refuses(tmp_path):
    seg = _journal_with_records(tmp_path)
    buf = bytearray(seg.read_bytes())
    buf[0] = ord("X")
    seg.write_bytes(bytes(buf))
    with pytest.raises(JournalCorrupt, match="bad segment magic"):
        Journal.open(tmp_path)
    buf[0] = ord("L")
    buf[9] ^= 1  # first seq in the header
    seg.write_bytes(bytes(buf))
    with pytest.raises(JournalCorrupt, match="header CRC32C"):
        Journal.open(tmp_path)
    renamed = seg.with_name(segment_name(2))
    seg.write_bytes(bytes(buf[:9]) + bytes([buf[9] ^ 1]) + bytes(buf[10:]))
    seg.rename(renamed)
    with pytest.raises(JournalCorrupt, match="file name 2"):
        Journal.open(tmp_path)


# -- compaction -----------------------------------------------------------------------------


def test_compaction_keeps_everything_after_upto(tmp_path):
    with Journal.open(tmp_path, segment_bytes=400) as j:
        fill(j, 200, batch=4)
        segs = j.segments
        firsts = [int(p.name[:20]) for p in segs]
        upto = 97
        removed = j.compact(upto)
        assert removed == sum(1 for f in firsts[1:] if f - 1 <= upto)
        assert j.first_seq <= upto + 1
        assert j.first_seq == max(f for f in firsts if f - 1 <= upto)
        check_all(j, upto + 1, 200)
        check_all(j, j.first_seq, 200)
        with pytest.raises(JournalError, match="compacted"):
            next(j.read(1))
        # Never the active segment, even when everything is covered.
        j.compact(10**9)
        assert j.segments == [segs[-1]]
        fill(j, 210)
        check_all(j, j.first_seq, 210)
    with Journal.open(tmp_path, segment_bytes=400) as j:
        assert (j.first_seq, j.last_seq) == (firsts[-1], 210)


def test_failed_append_poisons_the_journal(tmp_path, monkeypatch):
    import lxdex.node.journal as jmod

    j = Journal.open(tmp_path)
    j.append([b"a"])

    def failing(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(jmod, "_datasync", failing)
    with pytest.raises(JournalError, match="append failed"):
        j.append([b"b"])
    with pytest.raises(JournalError, match="earlier write or sync failed"):
        j.append([b"c"])
    monkeypatch.undo()
    j.close()
    with Journal.open(tmp_path) as j:
        assert j.last_seq == 1


def test_append_begin_end_matches_append(tmp_path):
    """The two-step append (written on the journal's thread) gives the same
    records, across rollovers, as `append`; empty batches too."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    batches = [[payload(s) for s in range(k * 9 + 1, k * 9 + 10)] for k in range(60)]
    with Journal.open(tmp_path / "a", segment_bytes=1024) as a, Journal.open(tmp_path / "b", segment_bytes=1024) as b:
        for batch in batches:
            a.append(batch)
            first = b.append_begin(batch)
            assert first == b.last_seq + 1  # not counted until it is done
            assert b.append_end() == first + len(batch) - 1
            assert b.append_begin([]) == b.last_seq + 1
            assert b.append_end() == a.last_seq
        assert len(b.segments) == len(a.segments) > 1
        assert list(b.read()) == list(a.read())
    with Journal.open(tmp_path / "b") as b:
        assert b.last_seq == 540 and list(b.read())[-1] == (540, payload(540))


def test_one_batch_in_flight(tmp_path):
    with Journal.open(tmp_path) as j:
        with pytest.raises(JournalError, match="no batch"):
            j.append_end()
        j.append_begin([b"a"])
        with pytest.raises(JournalError, match="being appended"):
            j.append_begin([b"b"])
        with pytest.raises(JournalError, match="being appended"):
            j.append([b"b"])
        assert j.append_end() == 1
        assert j.append([b"b"]) == 2


def test_close_waits_for_the_batch_in_flight(tmp_path):
    j = Journal.open(tmp_path)
    j.append([b"a"])
    j.append_begin([b"b", b"c"])
    j.close()  # never acknowledged, but written whole: the next open finds it
    with Journal.open(tmp_path) as j:
        assert list(j.read()) == [(1, b"a"), (2, b"b"), (3, b"c")]


def test_a_failed_background_write_poisons_the_journal(tmp_path):
    """A real write failure on the journal's thread (the segment's
    descriptor swapped for /dev/full: ENOSPC) fails the batch, and every
    later append; what was durable before stays."""
    j = Journal.open(tmp_path)
    j.append([b"a"])
    segment_fd, j._fd = j._fd, os.open("/dev/full", os.O_WRONLY)
    j.append_begin([b"b"])
    with pytest.raises(JournalError, match="No space left on device"):
        j.append_end()
    assert j.last_seq == 1
    with pytest.raises(JournalError, match="earlier write or sync failed"):
        j.append_begin([b"c"])
    j.close()
    os.close(segment_fd)
    with Journal.open(tmp_path) as j:
        assert list(j.read()) == [(1, b"a")]
