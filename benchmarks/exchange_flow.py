"""The `lxdex bench exchange` flow on a file, for instruction counts.

    .venv/bin/python benchmarks/exchange_flow.py gen 400000 /tmp/exflow.npy
    valgrind --tool=callgrind --toggle-collect='*PyExchange*__pymethod_process__*' \\
        .venv/bin/python benchmarks/exchange_flow.py run 400000 /tmp/exflow.npy

`gen` writes the first N commands of the benchmark's flow (100 markets,
10,000 accounts, seed 7); `run` builds the same funded exchange and applies
them in batches of 4,096, so that callgrind, collecting only inside
`ExchangeCore.process`, counts the core's instructions for them.
"""

import sys

import numpy as np

from lxdex.bench.exchange import build, flow


def main(mode: str, n: int, path: str) -> None:
    if mode == "gen":
        np.save(path, flow(n, 100, 10_000))
        return
    x = build(100, 10_000)
    cmds = np.load(path)[:n]
    events = 0
    for i in range(0, len(cmds), 4096):
        events += len(x.process(cmds[i:i + 4096]))
    print(f"{len(cmds):,} commands, {events:,} events")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
