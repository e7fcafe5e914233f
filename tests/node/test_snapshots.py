"""Snapshots: atomic save, verified load, fallback past corrupt ones, pruning, temp clean-up."""

from __future__ import annotations

import logging
import os

import pytest

from lxdex.node.snapshots import SNAPSHOT_HEADER_LEN, SnapshotCorrupt, SnapshotStore

LOGGER = "lxdex.node.snapshots"


def test_save_and_latest(tmp_path):
    s = SnapshotStore(tmp_path)
    assert s.latest() is None
    p = s.save(10, b"state-10")
    assert p == tmp_path / "snapshots" / "00000000000000000010.snap"
    assert p.stat().st_size == SNAPSHOT_HEADER_LEN + 8
    s.save(25, b"state-25")
    s.save(0, b"")
    assert s.latest() == (25, b"state-25")
    assert s.load(0) == b""
    assert SnapshotStore(tmp_path).latest() == (25, b"state-25")
    # No temp file is left by a save.
    assert sorted(f.name for f in (tmp_path / "snapshots").iterdir()) == [
        "00000000000000000000.snap", "00000000000000000010.snap", "00000000000000000025.snap"]


def test_save_is_atomic_when_the_write_fails(tmp_path, monkeypatch):
    s = SnapshotStore(tmp_path)
    s.save(1, b"good")

    def fail(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError):
        s.save(2, b"never")
    monkeypatch.undo()
    assert s.seqs() == [1]
    assert [f.name for f in (tmp_path / "snapshots").iterdir()] == ["00000000000000000001.snap"]
    assert s.latest() == (1, b"good")


@pytest.mark.parametrize("damage", ["truncate_payload", "truncate_header", "flip_payload", "flip_seq",
                                    "bad_magic", "empty"])
def test_latest_skips_a_corrupt_newest(tmp_path, caplog, damage):
    s = SnapshotStore(tmp_path)
    s.save(5, b"older state")
    newest = s.save(9, b"newest state" * 10)
    data = bytearray(newest.read_bytes())
    if damage == "truncate_payload":
        data = data[:-1]
    elif damage == "truncate_header":
        data = data[:SNAPSHOT_HEADER_LEN - 3]
    elif damage == "flip_payload":
        data[-5] ^= 1
    elif damage == "flip_seq":
        data[8] ^= 1
    elif damage == "bad_magic":
        data[0:4] = b"XXXX"
    else:
        data = bytearray()
    newest.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert s.latest() == (5, b"older state")
    assert f"skipping {newest}" in caplog.text
    with pytest.raises(SnapshotCorrupt):
        s.load(9)


def test_all_corrupt_gives_none(tmp_path):
    s = SnapshotStore(tmp_path)
    s.save(3, b"x").write_bytes(b"junk")
    assert s.latest() is None


def test_keep_prunes_oldest(tmp_path):
    s = SnapshotStore(tmp_path, keep=2)
    for seq in (10, 30, 20, 40):
        s.save(seq, f"s{seq}".encode())
    assert s.seqs() == [40, 30]
    assert s.latest() == (40, b"s40")
    s3 = SnapshotStore(tmp_path)  # default keep=3
    s3.save(50, b"s50")
    assert s3.seqs() == [50, 40, 30]
    s3.save(60, b"s60")
    assert s3.seqs() == [60, 50, 40]
    with pytest.raises(ValueError):
        SnapshotStore(tmp_path, keep=0)


def test_the_newest_at_or_before_the_pin_is_kept_too(tmp_path):
    s = SnapshotStore(tmp_path, keep=2)
    for seq in (10, 20, 30):
        s.save(seq, f"s{seq}".encode(), pin=15)
    assert s.seqs() == [30, 20, 10]  # 10 is the newest <= 15
    s.save(40, b"s40", pin=25)
    assert s.seqs() == [40, 30, 20]  # 20 now; 10 goes
    s.save(50, b"s50", pin=45)
    assert s.seqs() == [50, 40]  # the pinned one is among the newest two
    s.save(60, b"s60", pin=5)
    assert s.seqs() == [60, 50]  # none at or before the pin: nothing extra kept
    s.save(70, b"s70")
    assert s.seqs() == [70, 60]


def test_latest_within_bounds(tmp_path):
    s = SnapshotStore(tmp_path, keep=5)
    for seq in (10, 20, 30, 40):
        s.save(seq, f"s{seq}".encode())
    assert s.latest(at_most=35) == (30, b"s30")
    assert s.latest(at_most=30) == (30, b"s30")
    assert s.latest(at_most=35, at_least=31) is None
    assert s.latest(at_least=20) == (40, b"s40")
    assert s.latest(at_most=9) is None
    s.file_for(30).write_bytes(b"garbage")  # a damaged one is skipped for an older one within the bounds
    assert s.latest(at_most=35) == (20, b"s20")
    assert s.latest(at_most=35, at_least=25) is None


def test_stray_temp_files_removed_at_open(tmp_path, caplog):
    SnapshotStore(tmp_path).save(1, b"one")
    stray = tmp_path / "snapshots" / ".00000000000000000002.snap.1234.tmp"
    stray.write_bytes(b"half a snapshot")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        s = SnapshotStore(tmp_path)
    assert not stray.exists()
    assert "unfinished snapshot" in caplog.text
    assert s.latest() == (1, b"one")
