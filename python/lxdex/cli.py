"""The `lxdex` command line: `lxdex node`, `lxdex demo`, `lxdex book-demo`,
`lxdex bench engine|exchange|journal|node|recovery|ws|memory|history|api`."""

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


@bench_app.command("node")
def bench_node(
    seconds: float = typer.Option(10.0, help="seconds of each load (ZeroMQ, then HTTP)"),
    zmq_clients: int = typer.Option(1, help="ZeroMQ client processes (0: no ZeroMQ load)"),
    rows: int = typer.Option(256, help="order rows per ZeroMQ request"),
    window: int = typer.Option(16, help="ZeroMQ requests in flight per client"),
    http_clients: int = typer.Option(1, help="HTTP client processes (0: no HTTP load)"),
    connections: int = typer.Option(32, help="keep-alive connections per HTTP client (one request in flight each)"),
    sync: str = typer.Option("fdatasync", help="journal sync of the node: fdatasync or none"),
    history: bool = typer.Option(True, "--history/--no-history", help="run the node with its history store"),
    dir: Path = typer.Option(None, help="where the node's data dir goes (default: the system temp dir)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    output: Path = typer.Option(None, help="also write the JSON to this file"),
) -> None:
    """A node process under load from separate client processes: ZeroMQ and POST /order throughput and
    latency (send to ack), then recovery replay after a SIGKILL."""
    _single_threaded_blas()
    from .bench import node as bnode
    from .bench.engine import machine

    result = {"machine": machine(), **bnode.run(seconds, zmq_clients, rows, window, http_clients, connections, sync,
                                                dir, progress=lambda m: console.log(m), history=history)}
    m = result["machine"]
    t = Table(title=f"lxdex node, journal sync {sync}, history store {'on' if history else 'off'} — {m['cpu']} "
                    f"({m['cores']} cores), {result['data_dir_fs']}")
    for col in ("path", "orders/s", "orders per node CPU-s", "with the writer", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "load"):
        t.add_column(col, justify="right")
    z, h = result.get("zmq"), result.get("http", {})
    paths = [("POST /order", h, f"{h['connections']} connections, 1 in flight each")] if h else []
    if z:
        paths.insert(0, ("ZeroMQ", z, f"{z['clients']} client(s), {z['rows_per_request']} rows x {z['window']} in flight"))
    for name, r, load in paths:
        la = r["latency"]
        t.add_row(name, f"{r['orders_per_s']:,}", f"{r['orders_per_node_cpu_s']:,}",
                  f"{r['orders_per_cpu_s_with_writer']:,}", str(la["p50_ms"]), str(la["p90_ms"]), str(la["p99_ms"]),
                  str(la["p999_ms"]), str(la["max_ms"]), load)
    rc = result["recovery"]
    per = ", ".join(f"{k} {v}" for k, v in h.get("cpu_us_per_order_by_thread", {}).items())
    sustained = (f"ZeroMQ with the history complete: {z['orders_per_s_history_complete']:,} orders/s (its writer "
                 f"caught up {z['history_catch_up_s']} s after the load)\n" if z and history else "")
    t.caption = (sustained + (f"POST /order: node CPU µs per order by thread: {per}\n" if h else "")
                 + f"recovery after SIGKILL: {rc['records']:,} journal records ({rc['order_commands']:,} order commands) "
                 f"in {rc['seconds']} s = {rc['orders_per_s']:,} order commands/s overall; binary batches "
                 f"{rc['binary_rows_per_s']:,} rows/s, single (JSON-form) commands {rc['single_commands_per_s']:,}/s; "
                 f"state hash {'matches' if rc['hash_matches'] else 'DIFFERS'}")
    _emit(result, as_json, output, t)


@bench_app.command("recovery")
def bench_recovery(
    commands: int = typer.Option(4_000_000, help="order commands in the journal"),
    rows: int = typer.Option(512, help="order rows per binary Records batch"),
    single_every: int = typer.Option(16, help="after every this many batches, 5 single JSON-form commands"),
    repeat: int = typer.Option(3, help="timed Node.open runs"),
    seed: int = typer.Option(7, help="workload seed"),
    dir: Path = typer.Option(None, help="where the data dir goes (default: the system temp dir)"),
    keep: Path = typer.Option(None, help="build the journal in this dir and keep it; reuse it if it is there"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    output: Path = typer.Option(None, help="also write the JSON to this file"),
) -> None:
    """Recovery replay: Node.open over a journal of mixed order commands built through a real node."""
    _single_threaded_blas()
    from .bench import recovery
    from .bench.engine import machine

    result = {"machine": machine(), **recovery.run(commands, rows, single_every, repeat, seed, dir, keep,
                                                   progress=lambda m: console.log(m))}
    m, j = result["machine"], result["journal"]
    t = Table(title=f"lxdex recovery (Node.open) — {m['cpu']} ({m['cores']} cores); journal of "
                    f"{j['order_commands']:,} order commands in {j['last_seq']:,} records "
                    f"({j['binary_rows']:,} binary rows, {j['single_commands']:,} single commands)")
    for col in ("run", "seconds", "CPU s", "order commands/s", "per CPU-s", "state hash"):
        t.add_column(col, justify="right")
    for i, r in enumerate(result["runs"]):
        t.add_row(str(i + 1), str(r["seconds"]), str(r["cpu_seconds"]), f"{r['orders_per_s']:,}",
                  f"{r['orders_per_cpu_s']:,}", "matches" if r["hash_matches"] else "DIFFERS")
    _emit(result, as_json, output, t)


@bench_app.command("ws")
def bench_ws(
    subscribers: int = typer.Option(1000, help="WebSocket subscribers (each: the depth stream and the trade stream)"),
    rate: float = typer.Option(10_000, help="order rows per second into BTC-USD through the ZeroMQ gateway"),
    seconds: float = typer.Option(20.0, help="how long the flow runs"),
    procs: int = typer.Option(4, help="client processes the subscribers are spread over"),
    trade_stream: str = typer.Option("trades", help="trades (one frame per delivery) or trade (one per trade)"),
    depth_stream: str = typer.Option("depth@100ms", help="depth@100ms (Binance's 100 ms diffs) or depth (1000 ms)"),
    history: bool = typer.Option(True, "--history/--no-history", help="the node keeps its history store (the "
                                 "default node does)"),
    sync: str = typer.Option("fdatasync", help="journal sync of the node: fdatasync or none"),
    dir: Path = typer.Option(None, help="where the node's data dir goes (default: the system temp dir)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    output: Path = typer.Option(None, help="also write the JSON to this file"),
) -> None:
    """WebSocket fan-out of depth and trades to many subscribers during an order flow: lag, drops, catch-up,
    and the latency from POST /order to the fill on another client's stream."""
    _single_threaded_blas()
    from .bench import ws as bws
    from .bench.engine import machine

    result = {"machine": machine(), **bws.run(subscribers, rate, seconds, procs, trade_stream=trade_stream,
                                               sync=sync, dir=dir, progress=lambda m: console.log(m),
                                               depth_stream=depth_stream, history=history)}
    m, f, s = result["machine"], result["fanout"], result["server"]
    t = Table(title=f"lxdex WebSocket fan-out: {f['connected']:,} subscribers x ({result['depth_stream']} + "
                    f"{result['trade_stream']}), history {'on' if history else 'off'}, "
                    f"{result['flow']['orders_per_s']:,} orders/s — {m['cpu']} "
                    f"({m['cores']} cores)")
    for col in ("measure", "value"):
        t.add_column(col)
    la, e2e = f["lag_ms"], result["e2e_order_to_fill_on_stream_ms"]
    rows = [
        ("order flow achieved", f"{result['flow']['orders_per_s']:,} orders/s (target {rate:,.0f})"),
        ("server deliveries", f"{s['deliveries_per_s']} per s ({s['batches']:,} sequencer batches coalesced into "
                              f"{s['deliveries']:,})"),
        ("frames sent by the node", f"{s['sent']:,} ({s['sent'] / seconds:,.0f} per s)"),
        ("frames per subscriber", f"{f['messages_per_s_per_subscriber']} per s"),
        ("lag, event to arrival (ms)", f"p50 {la.get('p50')}  p90 {la.get('p90')}  p99 {la.get('p99')}  "
                                      f"max {la.get('max')}"),
        ("depth gaps (lost messages)", str(f["depth_gaps"])),
        ("disconnected", f"{f['disconnected']} {', '.join(f['disconnect_reasons'])}"),
        ("caught up with the book at the end", f"{f['caught_up']:,} of {f['connected']:,}"),
        ("POST /order to fill on another stream (ms)", f"p50 {e2e.get('p50')}  p99 {e2e.get('p99')}  "
                                                      f"({e2e['samples']} samples, {e2e['misses']} misses)"),
        ("node CPU during the flow", f"{s['node_cpu_s']} s over {seconds} s ({s['node_cpu_us_per_order']} µs per "
                                     f"order, {s['node_cpu_us_per_frame']} µs per frame sent)"),
        ("history writer process CPU", f"{s['children_cpu_s']} s ({s['children_cpu_us_per_order']} µs per order)"),
    ]
    for r in rows:
        t.add_row(*r)
    _emit(result, as_json, output, t)


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


@bench_app.command("api")
def bench_api(
    seconds: float = typer.Option(5.0, help="seconds per endpoint"),
    connections: int = typer.Option(16, help="keep-alive connections of the client process (one GET in flight each)"),
    levels: int = typer.Option(200, help="resting orders a side on BTC-USD before the runs"),
    trades: int = typer.Option(200, help="trades on BTC-USD before the runs"),
    reply_cache: bool = typer.Option(True, "--reply-cache/--no-reply-cache",
                                     help="the node's market-data reply cache (idle sequencer: all hits)"),
    dir: Path = typer.Option(None, help="where the node's data dir goes (default: the system temp dir)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    output: Path = typer.Option(None, help="also write the JSON to this file"),
) -> None:
    """GET market data (depth, trades, ticker) from a node process's REST API: requests/s and requests per node
    CPU-second."""
    _single_threaded_blas()
    from .bench import api as bapi
    from .bench.engine import machine

    result = {"machine": machine(), **bapi.run(seconds, connections, levels, trades, dir,
                                               progress=lambda m: console.log(m), reply_cache=reply_cache)}
    m = result["machine"]
    t = Table(title=f"lxdex REST API, GET market data — {m['cpu']} ({m['cores']} cores); {connections} connections, "
                    f"{seconds} s each; book {levels} levels a side; reply cache {'on' if reply_cache else 'off'}")
    for col in ("endpoint", "req/s", "req per node CPU-s", "p50 ms", "p99 ms", "reply bytes", "errors"):
        t.add_column(col, justify="right")
    for r in result["runs"]:
        la = r["latency"]
        t.add_row(r["endpoint"], f"{r['requests_per_s']:,}", f"{r['requests_per_node_cpu_s']:,}",
                  str(la["p50_ms"]), str(la["p99_ms"]), str(r["reply_bytes"]), str(r["errors"]))
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


@app.command("book-demo")
def book_demo(seconds: float = typer.Option(20.0, help="how long to run"),
              seed: int = typer.Option(7, help="random seed")) -> None:
    """A live simulated market on one in-process book, in the terminal: depth ladder and trades."""
    from .demo import run

    run(seconds=seconds, seed=seed)


def _node_options(data_dir, config, http_host, http_port, zmq_host, zmq_port, pub_port, sync):
    from .node.main import NodeOptions

    if sync not in ("fdatasync", "none"):
        raise typer.BadParameter(f"--sync: {sync!r} is not fdatasync or none")
    return NodeOptions(data_dir=data_dir, config=config, http_host=http_host, http_port=http_port,
                       zmq_host=zmq_host, zmq_port=None if zmq_port == 0 else zmq_port, pub_port=pub_port,
                       sync=sync)


_DATA_DIR = typer.Option(Path("lxdex-data"), "--data-dir", help="where the journal, snapshots and history live (created if missing)")
_CONFIG = typer.Option(None, "--config", help="TOML config (markets, fees, accounts, limits); defaults without one")
_HTTP_HOST = typer.Option("127.0.0.1", "--http-host", help="HTTP listen address")
_HTTP_PORT = typer.Option(8080, "--http-port", help="HTTP port")
_ZMQ_HOST = typer.Option("127.0.0.1", "--zmq-host", help="ZeroMQ listen address (the gateway trusts its clients: keep it private)")
_ZMQ_PORT = typer.Option(5555, "--zmq-port", help="ZeroMQ order gateway port (ROUTER); 0 turns the gateway off")
_PUB_PORT = typer.Option(None, "--pub-port", help="ZeroMQ market data port (PUB); default --zmq-port + 1")
_SYNC = typer.Option("fdatasync", "--sync", help="journal durability: fdatasync (per batch) or none (benchmarks only: "
                     "a crash loses acknowledged commands)")
_LOG = typer.Option("json", "--log-format", help="json (one object per line) or text")


@app.command()
def node(data_dir: Path = _DATA_DIR, config: Path = _CONFIG, http_host: str = _HTTP_HOST, http_port: int = _HTTP_PORT,
         zmq_host: str = _ZMQ_HOST, zmq_port: int = _ZMQ_PORT, pub_port: int = _PUB_PORT, sync: str = _SYNC,
         history: bool = typer.Option(True, "--history/--no-history",
                                      help="keep fills, orders and candles in the history store (SQL)"),
         log_format: str = _LOG) -> None:
    """Run a node: journal, snapshots and recovery in --data-dir, the HTTP API and the ZeroMQ gateway."""
    _single_threaded_blas()  # idle OpenBLAS threads would take CPU from the sequencer (lxdex uses no BLAS)
    from .node.config import ConfigError
    from .node.main import NodeProcess, setup_logging

    setup_logging(log_format)
    opts = _node_options(data_dir, config, http_host, http_port, zmq_host, zmq_port, pub_port, sync)
    opts.history = history
    try:
        proc = NodeProcess(opts)
    except ConfigError as e:
        console.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from None
    raise typer.Exit(proc.serve())


@app.command()
def demo(data_dir: Path = typer.Option(None, "--data-dir", help="keep the demo's state here (default: a fresh temporary dir)"),
         http_host: str = _HTTP_HOST, http_port: int = _HTTP_PORT, zmq_port: int = _ZMQ_PORT,
         sync: str = _SYNC, seconds: float = typer.Option(0, help="stop after this many seconds (0: until Ctrl-C)"),
         rate: float = typer.Option(2.0, help="bot steps per second (each re-quotes every market)"),
         seed: int = typer.Option(7, help="bots' random seed"), log_format: str = typer.Option("text", "--log-format")) -> None:
    """A node with simulated market makers and takers, so that books, trades and candles move."""
    _single_threaded_blas()
    import tempfile
    import threading

    from .node.bots import Bots, demo_config
    from .node.main import NodeProcess, setup_logging

    setup_logging(log_format)
    tmp = None
    if data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="lxdex-demo-")
        data_dir = Path(tmp.name)
    opts = _node_options(data_dir, None, http_host, http_port, "127.0.0.1", zmq_port, None, sync)
    proc = NodeProcess(opts, demo_config())
    bots: list[Bots] = []

    def started(p: NodeProcess) -> None:
        base = f"http://{http_host}:{http_port}"
        b = Bots(p.node, base, seed=seed, rate=rate)
        b.start()
        bots.append(b)
        print(f"lxdex demo node is running (data in {data_dir}).\n"
              f"Trading page (the demo account, live over WebSocket): {base}/\n"
              f"WebSocket streams: ws://{http_host}:{http_port}/stream?streams=btcusd@trade/btcusd@depth (docs/ws.md)\n"
              f"Look at:\n"
              f"  {base}/stats\n  {base}/book/BTC-USD\n  {base}/trades/BTC-USD\n  {base}/markets\n"
              f"  {base}/metrics\nplace an order as the demo trader:\n"
              f"  curl -s -X POST {base}/order -d '{{\"symbol\":\"BTC-USD\",\"side\":0,\"price\":50000,\"size\":1}}'\n"
              "Ctrl-C stops it.", flush=True)
        if seconds > 0:
            threading.Timer(seconds, p.request_stop).start()

    proc.on_started.append(started)
    try:
        rc = proc.serve()
    finally:
        for b in bots:
            b.stop()
        if tmp is not None:
            tmp.cleanup()
    raise typer.Exit(rc)


def main() -> None:
    app()
