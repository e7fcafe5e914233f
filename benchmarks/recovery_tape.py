"""Turns a node journal (e.g. the one `lxdex bench recovery --keep DIR`
builds) into a *tape* for the Rust-only replay driver
`crates/engine/examples/replay_tape.rs`, so that the core's per-row apply
can be profiled (callgrind, perf) without Python in the loop.

    .venv/bin/python benchmarks/recovery_tape.py /tmp/rec-4m/data /tmp/rec-4m.tape

The journal is replayed through `lxdex.exchange.Exchange.execute` (the
general path). The commands before the first `Records` batch (assets,
markets, accounts, deposits) are applied here and the core's snapshot at
that point heads the tape; from there on every order command becomes an
entry `(ts, rows)`: a `Records` batch as its rows, a JSON-form `PlaceOrder`
or `CancelOrder` as the one equivalent SUBMIT or CANCEL row (the same
integer conversions as `Exchange.order_record`), so that order ids stay
those of the journal. Any other command after the first batch is refused.

Tape format (little endian): b"LXTP", u64 snapshot length, the snapshot;
then entries of u64 ts, u32 row count, the rows (120 bytes each). The SHA-256
of the core's snapshot after the whole journal is printed (and written to
`<tape>.sha256`): the driver's final snapshot must hash the same.
"""

from __future__ import annotations

import hashlib
import struct
import sys
from pathlib import Path

from lxdex import commands as C
from lxdex.enums import CommandKind
from lxdex.exchange import Exchange
from lxdex.node.journal import Journal

_CANCEL = struct.Struct("<BBBBBBxxIxxxxQQ").pack


def main(data_dir: str, tape_path: str) -> None:
    data = Path(data_dir)
    ex = Exchange((data / "master.key").read_bytes())
    j = Journal.open(data, sync="none")
    out = open(tape_path, "wb")
    started = False
    entries = rows = 0
    try:
        for seq, payload in j.read(1):
            cmd = C.decode(payload)
            if isinstance(cmd, C.Records) and not started:
                snap = ex.core.snapshot()
                out.write(b"LXTP" + struct.pack("<Q", len(snap)) + snap)
                started = True
            if started:
                if isinstance(cmd, C.Records):
                    body = bytes(cmd.data)
                elif isinstance(cmd, C.PlaceOrder):
                    body = ex.order_record(cmd.account, cmd.market, cmd.side, cmd.qty, cmd.price,
                                           order_type=cmd.order_type, tif=cmd.tif, stp=cmd.stp,
                                           post_only=cmd.post_only, display_qty=cmd.display_qty,
                                           trigger_price=cmd.trigger_price, expire_ts=cmd.expire_ts)
                    assert cmd.client_id is None, "client ids have no row form"
                elif isinstance(cmd, C.CancelOrder):
                    body = _CANCEL(CommandKind.CANCEL, 0, 0, 0, 0, 0, 0, cmd.order_id, cmd.account).ljust(120, b"\0")
                else:
                    raise SystemExit(f"seq {seq}: {type(cmd).__name__} after the first batch has no tape form")
                assert len(body) % 120 == 0
                out.write(struct.pack("<QI", cmd.ts, len(body) // 120) + body)
                entries += 1
                rows += len(body) // 120
            o = ex.execute(cmd, seq)
            if o.error and not started:
                raise SystemExit(f"seq {seq}: setup command rejected: {o.error}")
    finally:
        out.close()
        j.close()
    h = hashlib.sha256(ex.core.snapshot()).hexdigest()
    Path(tape_path + ".sha256").write_text(h + "\n")
    print(f"{entries:,} entries, {rows:,} rows; final core snapshot sha256 {h}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
