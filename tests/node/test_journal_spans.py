"""`Journal.read_spans` (mapped segments, payload offsets, no copies) reads
what `read_payloads` reads: across segments, from any seq, in chunks of any
size, after a torn or corrupt tail was cut at open, and it raises the same
`JournalCorrupt` for damage found while reading."""

from __future__ import annotations

import os
import random
import struct

import pytest

from lxdex.node.journal import SEGMENT_HEADER_LEN, Journal, JournalCorrupt


def _spans_payloads(j: Journal, from_seq: int, max_records: int = 65536) -> list[tuple[int, bytes]]:
    out = []
    for first, buf, spans in j.read_spans(from_seq, max_records):
        for i, (a, b) in enumerate(struct.iter_unpack("<QQ", spans)):
            out.append((first + i, bytes(buf[a:b])))
    return out


def _payloads(j: Journal, from_seq: int, max_records: int = 65536) -> list[tuple[int, bytes]]:
    return [(first + i, p) for first, ps in j.read_payloads(from_seq, max_records) for i, p in enumerate(ps)]


def test_read_spans_reads_what_read_payloads_reads(tmp_path):
    rng = random.Random(5)
    with Journal.open(tmp_path, sync="none", segment_bytes=4096) as j:
        seq = 0
        for _ in range(60):
            batch = [os.urandom(rng.randrange(0, 300)) for _ in range(rng.randrange(1, 9))]
            seq = j.append(batch)
        assert len(j.segments) > 5
        for from_seq in (1, 2, seq // 2, seq - 1, seq):
            for max_records in (1, 3, 65536):
                assert _spans_payloads(j, from_seq, max_records) == _payloads(j, from_seq, max_records)
        assert [s for s, _ in _spans_payloads(j, 1)] == list(range(1, seq + 1))


@pytest.mark.parametrize("damage", ["torn", "crc"])
def test_read_spans_after_a_damaged_tail_was_cut(tmp_path, damage):
    with Journal.open(tmp_path, sync="none") as j:
        for k in range(20):
            j.append([bytes([k]) * 50] * 3)
        path = j.segments[-1]
    data = bytearray(path.read_bytes())
    if damage == "torn":
        data = data[:-20]
    else:
        data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with Journal.open(tmp_path, sync="none") as j:
        assert j.last_seq == 59
        assert _spans_payloads(j, 1) == _payloads(j, 1) and len(_payloads(j, 1)) == 59


def test_read_spans_raises_on_damage_found_while_reading(tmp_path):
    with Journal.open(tmp_path, sync="none", segment_bytes=2048) as j:
        for k in range(40):
            j.append([bytes([k]) * 100])
        first = j.segments[0]
        data = bytearray(first.read_bytes())
        data[SEGMENT_HEADER_LEN + 30] ^= 0x01  # a payload byte of the first record: its CRC no longer matches
        first.write_bytes(bytes(data))
        with pytest.raises(JournalCorrupt, match="CRC32C mismatch"):
            _payloads(j, 1)
        with pytest.raises(JournalCorrupt, match="CRC32C mismatch"):
            _spans_payloads(j, 1)
