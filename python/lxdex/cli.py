"""The `lxdex` command line: `lxdex demo`, `lxdex bench engine|exchange|journal|memory|history`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="lxdex: an open exchange engine.", no_args_is_help=True, add_completion=False)
bench_app = typer.Typer(help="Measure lxdex (figures go to BENCHMARKS.md with the command).",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")
console = Console(stderr=True)


def _single_threaded_blas() -> None:
    """numpy's OpenBLAS spins worker threads that steal a core from the
    engine on small machines; lxdex uses no BLAS, so benchmarks run with one.
    The variable must be set before numpy loads: re-run ourselves with it."""
    if os.environ.get("OPENBLAS_NUM_THREADS") is None and os.environ.get("LXDEX_NO_REEXEC") is None:
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", LXDEX_NO_REEXEC="1")
        os.execve(sys.executable, [sys.executable, "-m", "lxdex", *sys.argv[1:]], env)


def _emit(result: dict, as_json: bool, output: Path | None, *tables: Table, notes: list[str] = ()) -> None:
    if output:
        output.write_text(json.dumps(result, indent=2) + "\n")
        console.print(f"wrote {output}")
    if as_json:
        print(json.dumps(result))
        return
    out = Console() if sys.stdout.isatty() else Console(width=160)
    for t in tables:
        out.print(t)
    for note in notes:
        out.print(f"- {note}", highlight=False)


@bench_app.command("engine")
def bench_engine(
    commands: int = typer.Option(2_000_000, help="commands per scenario"),
    scenario: list[str] = typer.Option(None, help="scenario(s): deep_static, balanced, fast_moving (default all)"),
    per_call: int = typer.Option(300_000, help="commands (a prefix of each flow) for the comparison with other order books"),
    others: bool = typer.Option(True, "--others/--no-others", help="also run the flow through other order books (orderly-chaos, nanobook)"),
    nanobook: bool = typer.Option(True, "--nanobook/--no-nanobook", help="include nanobook in the comparison"),
    memory: bool = typer.Option(True, help="measure bytes per empty book and per resting order"),
    extras: bool = typer.Option(False, "--extras", help="add stop orders and icebergs to the flow (lxdex only: no comparison)"),
    seed: int = typer.Option(1, help="workload seed"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    output: Path = typer.Option(None, help="also write the JSON to this file"),
) -> None:
    """The matching engine: Rust alone, Python batch and per-call APIs, other order books side by side."""
    _single_threaded_blas()
    from .bench import engine

    try:
        result = engine.run(commands, scenario or None, min(per_call, commands), seed=seed, with_others=others,
                            with_memory=memory, extras=extras, with_nanobook=nanobook,
                            progress=lambda m: console.log(m))
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    m = result["machine"]
    t = Table(title=f"lxdex engine, {commands:,} commands per scenario — {m['cpu']} ({m['cores']} cores), Python {m['python']}")
    for col in ("scenario", "Rust msgs/s", "Rust p50/p99/p99.9/max ns", "Py batch msgs/s", "batch p50/p99 µs",
                "Py call msgs/s", "call p50/p99 ns", "fills", "rejected"):
        t.add_column(col, justify="right")
    for name, r in result["scenarios"].items():
        rust, b, c = r["rust"], r["py_batch"], r["py_call"]
        t.add_row(name, f"{rust['msgs_per_s']:,.0f}",
                  f"{rust['p50_ns']:,}/{rust['p99_ns']:,}/{rust['p999_ns']:,}/{rust['max_ns']:,}",
                  f"{b['msgs_per_s']:,.0f}", f"{b['batch_p50_ns'] / 1e3:,.0f}/{b['batch_p99_ns'] / 1e3:,.0f}",
                  f"{c['msgs_per_s']:,.0f}", f"{c['p50_ns']:,}/{c['p99_ns']:,}",
                  f"{r['mix']['fills']:,}", f"{r['mix']['rejected_commands_share']:.2%}")
    t.caption = (f"worst: Rust {result['rust_msgs_per_s']:,} msgs/s, batch {result['py_batch_msgs_per_s']:,}, "
                 f"per-call {result['py_call_msgs_per_s']:,}, Rust p99 {result['rust_p99_ns']:,} ns")
    if "memory" in result:
        mem = result["memory"]
        t.caption += (f"; {mem['bytes_per_empty_book']:,} bytes per empty book, "
                      f"{mem['bytes_per_resting_order']:,} per resting order")
    tables = [t]
    if any("comparison" in r for r in result["scenarios"].values()):
        k = result["workload"]["comparison_commands"]
        t2 = Table(title=f"Same commands (first {k:,} of each flow), per-call Python APIs, msgs/s")
        for col in ("scenario", "lxdex", "orderly-chaos", "lxdex/orderly", "nanobook (full flow)",
                    "submit-only: lxdex", "nanobook", "lxdex/nanobook"):
            t2.add_column(col, justify="right")
        for name, r in result["scenarios"].items():
            c = r["comparison"]
            oc, nb, so = c.get("orderly_chaos"), c.get("nanobook_full_flow"), c.get("submit_only", {})
            nbs = so.get("nanobook")
            t2.add_row(name, f"{c['lxdex_py_call']['msgs_per_s']:,.0f}",
                       f"{oc['msgs_per_s']:,.0f}" if oc else "-", f"{c.get('lxdex_vs_orderly_chaos', '-')}",
                       _nanobook_cell(nb),
                       f"{so['lxdex_py_call']['msgs_per_s']:,.0f}" if so else "-",
                       _nanobook_cell(nbs), f"{so.get('lxdex_vs_nanobook', '-')}")
        tables.append(t2)
    _emit(result, as_json, output, *tables, notes=result.get("notes", []))


def _nanobook_cell(nb: dict | None) -> str:
    if not nb:
        return "-"
    if "msgs_per_s" in nb:
        return f"{nb['msgs_per_s']:,.0f}"
    if "hung_at_command" in nb:
        return f"hung at #{nb['hung_at_command']:,}"
    return nb.get("failed", "failed")


@bench_app.command("exchange")
def bench_exchange(
    commands: int = typer.Option(2_000_000, help="commands"),
    markets: int = typer.Option(100, help="markets"),
    accounts: int = typer.Option(10_000, help="funded accounts"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    output: Path = typer.Option(None, help="also write the JSON to this file"),
) -> None:
    """The full per-order path in process: holds, matching, settlement, fees, market data."""
    _single_threaded_blas()
    from .bench import exchange
    from .bench.engine import machine

    result = {"machine": machine(), **exchange.run(commands, markets, accounts, progress=lambda m: console.log(m))}
    t = Table(title=f"lxdex exchange core — {result['machine']['cpu']}")
    for col in ("commands", "markets", "accounts", "commands/s", "fills", "rejected"):
        t.add_column(col, justify="right")
    t.add_row(f"{commands:,}", str(markets), f"{accounts:,}", f"{result['exchange_cmds_per_s']:,}",
              f"{result['events']['fills']:,}", f"{result['events']['rejected']:,}")
    _emit(result, as_json, output, t)


@bench_app.command("journal")
def bench_journal(
    payload: int = typer.Option(120, help="payload bytes per record"),
    seconds: float = typer.Option(3.0, help="seconds per append case"),
    read_records: int = typer.Option(2_000_000, help="records written, then read back"),
    dir: Path = typer.Option(None, help="where to put the journal (default: the system temp dir)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    output: Path = typer.Option(None, help="also write the JSON to this file"),
) -> None:
    """The node journal: group-commit appends under fdatasync and none, framing, open and replay."""
    _single_threaded_blas()
    from .bench import journal
    from .bench.engine import machine

    result = {"machine": machine(), **journal.run(payload, seconds=seconds, read_records=read_records, dir=dir,
                                                  progress=lambda m: console.log(m))}
    m = result["machine"]
    t = Table(title=f"lxdex journal appends, {payload}-byte payloads — {m['cpu']} ({m['cores']} cores), "
                    f"{result['filesystem']}")
    for col in ("sync", "batch", "records/s", "payload MB/s", "batch p50 µs", "batch p99 µs"):
        t.add_column(col, justify="right")
    for r in result["append"]:
        t.add_row(r["sync"], str(r["batch"]), f"{r['records_per_s']:,}", f"{r['payload_mb_per_s']:,}",
                  f"{r['batch_p50_us']:,}", f"{r['batch_p99_us']:,}")
    rd = result["read"]
    t2 = Table(title=f"lxdex journal reads, {rd['records']:,} records ({rd['bytes'] / 1e6:,.0f} MB)")
    for col in ("operation", "records/s", "MB/s"):
        t2.add_column(col, justify="right")
    t2.add_row("open (validate all)", f"{rd['records'] / rd['open_s']:,.0f}", f"{rd['open_mb_per_s']:,}")
    for name in ("read_payloads", "read_batches", "read"):
        t2.add_row(name, f"{rd[name]['records_per_s']:,}", f"{rd[name]['mb_per_s']:,}")
    for f in result["frame"]:
        t2.add_row(f"frame only, batch {f['batch']}", f"{f['records_per_s']:,}", f"{f['mb_per_s']:,}")
    _emit(result, as_json, output, t, t2)


@bench_app.command("history")
def bench_history(
    batches: int = typer.Option(1_000, help="Records batches in the workload"),
    makers: int = typer.Option(512, help="resting orders per batch (each filled by the next batch's takers)"),
    markets: int = typer.Option(8, help="markets"),
    accounts: int = typer.Option(10_000, help="accounts"),
    postgres: bool = typer.Option(False, "--postgres", help="start a throwaway PostgreSQL server (Debian's "
                                  "postgresql package, durable defaults) and measure it too"),
    dir: Path = typer.Option(None, help="where the SQLite file goes (default: the system temp dir)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    output: Path = typer.Option(None, help="also write the JSON to this file"),
) -> None:
    """The node's history store: fills and orders written per second, and what it costs the sequencer."""
    _single_threaded_blas()
    from .bench import history
    from .bench.engine import machine

    runs = [history.run(lambda: None, batches, makers, markets, accounts, dir=dir,
                        progress=lambda m: console.log(m))]
    if postgres:
        from .bench.pgserver import PgServer, pg_bindir

        bindir = pg_bindir()
        if bindir is None:
            raise typer.BadParameter("no /usr/lib/postgresql/*/bin/initdb: run scripts/setup-system.sh as root")
        server = PgServer(bindir, durable=True)
        server.start()
        try:
            runs.append(history.run(server.create_db, batches, makers, markets, accounts,
                                    progress=lambda m: console.log(m)))
        finally:
            server.stop()
    result = {"machine": machine(), "runs": runs}
    m = result["machine"]
    w = runs[0]["workload"]
    t = Table(title=f"lxdex history writer — {w['fills']:,} fills, {w['orders']:,} orders in {w['commands']:,} "
                    f"commands; {m['cpu']} ({m['cores']} cores)")
    for col in ("backend", "fills/s", "orders/s", "seconds", "transactions", "convert s", "write s",
                "listener µs/cmd", "exchange alone s", "exchange + history s"):
        t.add_column(col, justify="right")
    for r in runs:
        t.add_row(r["backend"], f"{r['fills_per_s']:,}", f"{r['orders_per_s']:,}", str(r["seconds"]),
                  str(r["transactions"]), str(r["convert_s"]), str(r["write_s"]), str(r["listener_us_per_command"]),
                  str(r["sequencer_alone_s"]), str(r["sequencer_with_history_s"]))
    _emit(result, as_json, output, t)


@bench_app.command("memory")
def bench_memory(
    scale: float = typer.Option(1.0, help="fraction of the design point (1.0 = 1M users, 21,000 markets)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    output: Path = typer.Option(None, help="also write the JSON to this file"),
) -> None:
    """Resident memory at the design point, with a measured per-component breakdown."""
    _single_threaded_blas()
    from .bench import memory
    from .bench.engine import machine

    result = {"machine": machine(), **memory.run(scale, progress=lambda m: console.log(m))}
    t = Table(title=f"lxdex memory at scale {scale} ({result['users']:,} users, {result['markets']:,} markets)")
    t.add_column("component")
    t.add_column("RSS growth", justify="right")
    for name, b in result["breakdown_bytes"].items():
        t.add_row(name, f"{b / 2**20:,.1f} MiB")
    t.add_row("interpreter and libraries", f"{result['interpreter_and_libraries_bytes'] / 2**20:,.1f} MiB")
    t.add_row("total RSS", f"{result['rss_bytes'] / 2**20:,.1f} MiB")
    _emit(result, as_json, output, t)


@app.command()
def demo(seconds: float = typer.Option(20.0, help="how long to run"),
         seed: int = typer.Option(7, help="random seed")) -> None:
    """A live simulated market on one book: depth ladder and trades."""
    from .demo import run

    run(seconds=seconds, seed=seed)


def main() -> None:
    app()
