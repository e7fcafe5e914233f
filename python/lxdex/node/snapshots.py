"""Snapshots of the exchange state, saved atomically and verified on load.

Layout: ``DIR/snapshots/<seq, 20 digits>.snap``, each a 56-byte header then
the payload::

    magic "LXS1" | u32 version | u64 seq | u64 payload length | SHA-256(payload)

`seq` is the last journal record the state includes: recovery loads
`SnapshotStore.latest()` and replays the journal from ``seq + 1``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import struct
from pathlib import Path

__all__ = ["SNAPSHOT_HEADER_LEN", "SnapshotCorrupt", "SnapshotStore"]

log = logging.getLogger("lxdex.node.snapshots")

SNAPSHOT_MAGIC = b"LXS1"
SNAPSHOT_VERSION = 1
_HEADER = struct.Struct("<4sIQQ32s")
SNAPSHOT_HEADER_LEN = _HEADER.size
_NAME = re.compile(r"^(\d{20})\.snap$")
_TMP_SUFFIX = ".tmp"


class SnapshotCorrupt(Exception):
    """A snapshot file that fails its checks (`path`, `reason`)."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"snapshot corrupt: {path}: {reason}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SnapshotStore:
    """The snapshots in ``DIR/snapshots``: `save`, `latest`, `load`.

    Keeps the newest `keep` snapshot files, and the newest one at or
    before the `pin` seq given to `save` (the history store's durable seq:
    recovery replays from it so that the history gets the outcomes it has
    not written). Stray temp files of an interrupted `save` are removed
    when the store is opened.
    """

    def __init__(self, dir: str | os.PathLike[str], *, keep: int = 3) -> None:
        if keep < 1:
            raise ValueError("keep must be >= 1")
        self.keep = keep
        self.path = Path(dir) / "snapshots"
        self.path.mkdir(parents=True, exist_ok=True)
        for p in self.path.iterdir():
            if p.name.endswith(_TMP_SUFFIX):
                log.warning("snapshots %s: removing unfinished snapshot %s", self.path, p.name)
                p.unlink()

    def file_for(self, seq: int) -> Path:
        return self.path / f"{seq:020d}.snap"

    def seqs(self) -> list[int]:
        """The seqs of the snapshot files present, newest first (not verified)."""
        out = [int(m.group(1)) for p in self.path.iterdir() if (m := _NAME.match(p.name))]
        return sorted(out, reverse=True)

    def save(self, seq: int, payload: bytes, *, pin: int | None = None) -> Path:
        """Writes the snapshot of the state after record `seq` atomically
        (temp file, fsync, rename, directory fsync), then prunes to the newest
        `keep` and the newest one with ``seq <= pin`` (if `pin` is given)."""
        if seq < 0:
            raise ValueError("seq must be >= 0")
        payload = bytes(payload)
        header = _HEADER.pack(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, seq, len(payload), hashlib.sha256(payload).digest())
        final = self.file_for(seq)
        tmp = final.with_name(f".{final.name}.{os.getpid()}{_TMP_SUFFIX}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(header + payload)
            done = 0
            while done < len(view):
                done += os.write(fd, view[done:])
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        os.replace(tmp, final)
        _fsync_dir(self.path)
        self._prune(pin)
        return final

    def load(self, seq: int) -> bytes:
        """The payload of snapshot `seq`; raises `SnapshotCorrupt` (or
        FileNotFoundError) if it is not there whole."""
        path = self.file_for(seq)
        data = path.read_bytes()
        if len(data) < SNAPSHOT_HEADER_LEN:
            raise SnapshotCorrupt(path, f"header cut short ({len(data)} bytes)")
        magic, version, hseq, length, digest = _HEADER.unpack_from(data)
        if magic != SNAPSHOT_MAGIC:
            raise SnapshotCorrupt(path, f"bad magic {magic!r}")
        if version != SNAPSHOT_VERSION:
            raise SnapshotCorrupt(path, f"unsupported version {version}")
        if hseq != seq:
            raise SnapshotCorrupt(path, f"header says seq {hseq}, file name {seq}")
        payload = data[SNAPSHOT_HEADER_LEN:]
        if len(payload) != length:
            raise SnapshotCorrupt(path, f"payload is {len(payload)} bytes, header says {length}")
        if hashlib.sha256(payload).digest() != digest:
            raise SnapshotCorrupt(path, "SHA-256 mismatch")
        return payload

    def latest(self, at_most: int | None = None, at_least: int = 0) -> tuple[int, bytes] | None:
        """The newest valid snapshot as ``(seq, payload)`` (with
        ``at_least <= seq <= at_most`` when given), or None. Corrupt or
        truncated ones are skipped (logged) in favour of older ones."""
        for seq in self.seqs():
            if (at_most is not None and seq > at_most) or seq < at_least:
                continue
            try:
                return seq, self.load(seq)
            except SnapshotCorrupt as e:
                log.warning("snapshots: skipping %s: %s", e.path, e.reason)
            except FileNotFoundError:
                continue
        return None

    def _prune(self, pin: int | None = None) -> None:
        seqs = self.seqs()
        pinned = next((s for s in seqs if s <= pin), None) if pin is not None else None
        for seq in seqs[self.keep:]:
            if seq != pinned:
                self.file_for(seq).unlink(missing_ok=True)
