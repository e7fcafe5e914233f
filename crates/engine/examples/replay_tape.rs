//! Replays a recovery *tape* (`benchmarks/recovery_tape.py` makes one from a
//! node journal) through the exchange core alone: restore the snapshot at its
//! head, then for each entry move the clock to its `ts` if later and apply
//! its rows, as journal replay does (`lxdex_engine::replay::replay_records`).
//! For profiling the per-row apply without Python:
//!
//! ```text
//! cargo run --release -p lxdex-engine --example replay_tape -- TAPE [MAX_ROWS] [SNAPSHOT_OUT]
//! valgrind --tool=callgrind target/release/examples/replay_tape TAPE 400000
//! ```
//!
//! Prints the rows applied, the time to apply them and to take the final
//! snapshot; writes that snapshot to SNAPSHOT_OUT if given (its SHA-256
//! must equal the one the tape script printed, when the whole tape is run).

use std::time::Instant;

use lxdex_engine::record::COMMAND_RECORD_SIZE;
use lxdex_engine::Exchange;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).expect("usage: replay_tape TAPE [MAX_ROWS] [SNAPSHOT_OUT]");
    let max_rows: usize = args.get(2).map_or(usize::MAX, |s| s.parse().expect("MAX_ROWS: a number"));
    let tape = std::fs::read(path).expect("read the tape");
    assert_eq!(&tape[..4], b"LXTP", "not a tape");
    let n = u64::from_le_bytes(tape[4..12].try_into().unwrap()) as usize;
    let mut x = Exchange::restore(&tape[12..12 + n]).expect("the tape's snapshot restores");
    let mut at = 12 + n;
    let (mut rows, mut entries, mut rejected, mut fills) = (0usize, 0usize, 0usize, 0usize);
    let (mut clock, mut events) = (Vec::new(), Vec::with_capacity(8192));
    let t0 = Instant::now();
    while at < tape.len() && rows < max_rows {
        let ts = u64::from_le_bytes(tape[at..at + 8].try_into().unwrap());
        let k = u32::from_le_bytes(tape[at + 8..at + 12].try_into().unwrap()) as usize;
        let body = &tape[at + 12..at + 12 + k * COMMAND_RECORD_SIZE];
        at += 12 + k * COMMAND_RECORD_SIZE;
        clock.clear();
        events.clear();
        if ts > x.now() {
            x.advance_time(ts, &mut clock).expect("the clock moves forward");
        }
        x.apply_records(body, &mut events);
        for e in &events {
            match e.kind {
                lxdex_engine::EventKind::Rejected => rejected += 1,
                lxdex_engine::EventKind::Fill => fills += 1,
                _ => {}
            }
        }
        rows += k;
        entries += 1;
    }
    let apply = t0.elapsed();
    let t1 = Instant::now();
    let snap = x.snapshot();
    let snap_time = t1.elapsed();
    let resting: usize = (0..x.market_count() as u32).map(|m| x.book(m).unwrap().len()).sum();
    println!(
        "{entries} entries, {rows} rows ({rejected} rejected, {fills} fills), {resting} resting at the end\n\
         apply {:.3} s ({:.0} ns/row, {:.2} M rows/s); snapshot {:.3} s ({} bytes)",
        apply.as_secs_f64(),
        apply.as_nanos() as f64 / rows as f64,
        rows as f64 / apply.as_secs_f64() / 1e6,
        snap_time.as_secs_f64(),
        snap.len()
    );
    if let Some(out) = args.get(3) {
        std::fs::write(out, &snap).expect("write the snapshot");
    }
}
