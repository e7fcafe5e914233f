"""A writer SIGKILLed at random moments loses no acknowledged record."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from lxdex.node.journal import Journal

CHILD = textwrap.dedent("""
    import random, sys
    from lxdex.node.journal import Journal

    def payload(seq):
        return seq.to_bytes(8, "little") * (1 + seq % 15)

    j = Journal.open(sys.argv[1], segment_bytes=int(sys.argv[2]))
    rng = random.Random(int(sys.argv[3]))
    seq = j.last_seq
    while True:
        k = rng.choice((1, 2, 5, 64, 300))
        seq = j.append([payload(s) for s in range(seq + 1, seq + k + 1)])
        sys.stdout.write(f"{seq}\\n")
        sys.stdout.flush()
""")


def payload(seq: int) -> bytes:
    return seq.to_bytes(8, "little") * (1 + seq % 15)


@pytest.mark.slow
def test_sigkill_loses_no_acknowledged_record(tmp_path):
    rng = random.Random()
    acked = 0
    for round_ in range(8):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), "20000", str(round_)],
                                 stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + rng.uniform(0.3, 1.5)
        lines = 0
        assert child.stdout is not None
        while time.monotonic() < deadline or lines < 3:
            line = child.stdout.readline()
            assert line, "writer exited early"
            acked = max(acked, int(line))
            lines += 1
        os.kill(child.pid, signal.SIGKILL)
        # What it acknowledged before dying is still in the pipe: read it all.
        for line in child.stdout:
            acked = max(acked, int(line))
        child.wait()
        with Journal.open(tmp_path, segment_bytes=20000) as j:
            assert j.last_seq >= acked, f"round {round_}: acknowledged {acked}, journal ends at {j.last_seq}"
            n = 0
            for seq, p in j.read(1):
                n += 1
                assert seq == n and p == payload(seq)
            assert n == j.last_seq
            acked = j.last_seq
        assert len(list((tmp_path / "journal").glob("*.seg"))) > 1
