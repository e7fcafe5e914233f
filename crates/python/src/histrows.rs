//! The history writer's hot conversions (python/lxdex/node/history.py),
//! events to rows, done here instead of in numpy for the common case:
//!
//! - `history_records_run`: a run of `Records` commands (binary order
//!   batches) to the events the history keeps, with each event's seq and
//!   time and each accepted order's submit parameters
//!   (`_Writer._records_run`);
//! - `HistoryRows.order_rows`: a group's kept events to the rows of the
//!   orders it placed and the changes to older ones (`_Writer._order_rows`).
//!
//! The first is checked against the numpy path (still the path of runs it
//! leaves), the second against a per-event reference model
//! (tests/reference/history_rows.py), both in tests/node/test_history_rows.py;
//! the whole conversion against the writer's per-event loop
//! (tests/node/test_history.py).

use lxdex_engine::record::{kind, COMMAND_RECORD_SIZE, EVENT_RECORD_SIZE};
use lxdex_engine::{EventKind, Reason};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::journal::View;
use crate::ordjson::{i64_at, u32_at, u64_at};

/// `history._PARAMS_DTYPE`: tif u1, stp u1, flags u1, trigger_price i8,
/// display_qty i8, expire_ts u8, packed.
const PARAMS_SIZE: usize = 27;

const ACCEPTED: u8 = EventKind::Accepted as u8;
const REJECTED: u8 = EventKind::Rejected as u8;
const FILL: u8 = EventKind::Fill as u8;
const CANCELLED: u8 = EventKind::Cancelled as u8;
const AMENDED: u8 = EventKind::Amended as u8;
const TRIGGERED: u8 = EventKind::Triggered as u8;
const ACTIVATED: u8 = EventKind::Activated as u8;
const DEPTH: u8 = EventKind::Depth as u8;
const EXPIRED: u8 = Reason::Expired as u8;

/// Event record fields (offsets of `EVENT_DTYPE`).
mod ev {
    pub const KIND: usize = 0;
    pub const REASON: usize = 1;
    pub const SIDE: usize = 2;
    pub const ORDER_TYPE: usize = 3;
    pub const CMD_INDEX: usize = 8;
    pub const MARKET: usize = 12;
    pub const ORDER_ID: usize = 16;
    pub const OWNER: usize = 24;
    pub const OTHER_ID: usize = 32;
    pub const PRICE: usize = 48;
    pub const QTY: usize = 56;
    pub const REMAINING: usize = 64;
    pub const OTHER_REMAINING: usize = 72;
}

/// Command record fields (offsets of `COMMAND_DTYPE`).
mod cmd {
    pub const TIF: usize = 3;
    pub const STP: usize = 4;
    pub const FLAGS: usize = 5;
    pub const TRIGGER_PRICE: usize = 48;
    pub const DISPLAY_QTY: usize = 56;
    pub const EXPIRE_TS: usize = 64;
}

fn i64_bytes<'py>(py: Python<'py>, v: &[i64]) -> Bound<'py, PyBytes> {
    PyBytes::new_with(py, v.len() * 8, |out| {
        for (o, x) in out.chunks_exact_mut(8).zip(v) {
            o.copy_from_slice(&x.to_le_bytes());
        }
        Ok(())
    })
    .expect("allocating bytes")
}

/// A run of Records commands: `datas[i]` its command records, `events[i]`
/// the events it made, `seqs[i]` its seq and `nows[i]` the clock its events
/// happen at. Returns `(kept events, seq per event (i64), time per event
/// (i64), the accepted orders' parameters (`_PARAMS_DTYPE`))`: the events
/// but DEPTH and REJECTED, in order, each `cmd_index` counting rows from
/// the run's first; or None when a row is an ADVANCE_TIME (its time moves
/// within the command), a BRACKET or an OCO (its orders are a list): the
/// caller's general path takes those.
#[pyfunction]
fn history_records_run<'py>(
    py: Python<'py>,
    datas: &Bound<'py, PyList>,
    events: &Bound<'py, PyList>,
    seqs: Vec<i64>,
    nows: Vec<i64>,
) -> PyResult<Option<(Bound<'py, PyBytes>, Bound<'py, PyBytes>, Bound<'py, PyBytes>, Bound<'py, PyBytes>)>> {
    let n = datas.len();
    if events.len() != n || seqs.len() != n || nows.len() != n {
        return Err(PyValueError::new_err("datas, events, seqs and nows must be as long as each other"));
    }
    // The items are held here as long as the views into them (the lists could change meanwhile).
    let mut items = Vec::with_capacity(2 * n);
    for i in 0..n {
        items.push(datas.get_item(i)?);
        items.push(events.get_item(i)?);
    }
    let mut views = Vec::with_capacity(2 * n);
    for (i, item) in items.iter().enumerate() {
        views.push(View::new(item, if i % 2 == 0 { "datas" } else { "events" })?);
    }
    let mut kept: Vec<u8> = Vec::new();
    let mut s_out: Vec<i64> = Vec::new();
    let mut t_out: Vec<i64> = Vec::new();
    let mut params: Vec<u8> = Vec::new();
    let mut row0: u32 = 0;
    for i in 0..n {
        // SAFETY: the views live until the end of this function, with the GIL held.
        let rows = unsafe { views[2 * i].slice() };
        let evs = unsafe { views[2 * i + 1].slice() };
        if rows.len() % COMMAND_RECORD_SIZE != 0 {
            return Err(PyValueError::new_err(format!("datas[{i}]: not a whole number of command records")));
        }
        if evs.len() % EVENT_RECORD_SIZE != 0 {
            return Err(PyValueError::new_err(format!("events[{i}]: not a whole number of events")));
        }
        let n_rows = rows.len() / COMMAND_RECORD_SIZE;
        for r in rows.chunks_exact(COMMAND_RECORD_SIZE) {
            if matches!(r[0], kind::ADVANCE_TIME | kind::BRACKET | kind::OCO) {
                return Ok(None);
            }
        }
        for e in evs.chunks_exact(EVENT_RECORD_SIZE) {
            let k = e[ev::KIND];
            if k == DEPTH || k == REJECTED {
                continue;
            }
            let ci = u32_at(e, ev::CMD_INDEX) as usize;
            if k == ACCEPTED {
                if ci >= n_rows {
                    return Err(PyValueError::new_err(format!(
                        "events[{i}]: an ACCEPTED event names row {ci} of {n_rows}"
                    )));
                }
                let r = &rows[ci * COMMAND_RECORD_SIZE..(ci + 1) * COMMAND_RECORD_SIZE];
                params.extend_from_slice(&[r[cmd::TIF], r[cmd::STP], r[cmd::FLAGS]]);
                params.extend_from_slice(&r[cmd::TRIGGER_PRICE..cmd::TRIGGER_PRICE + 8]);
                params.extend_from_slice(&r[cmd::DISPLAY_QTY..cmd::DISPLAY_QTY + 8]);
                params.extend_from_slice(&r[cmd::EXPIRE_TS..cmd::EXPIRE_TS + 8]);
            }
            let at = kept.len();
            kept.extend_from_slice(e);
            let global = (ci as u32).wrapping_add(row0);
            kept[at + ev::CMD_INDEX..at + ev::CMD_INDEX + 4].copy_from_slice(&global.to_le_bytes());
            s_out.push(seqs[i]);
            t_out.push(nows[i]);
        }
        row0 = row0.wrapping_add(n_rows as u32);
    }
    debug_assert_eq!(params.len() % PARAMS_SIZE, 0);
    Ok(Some((PyBytes::new(py, &kept), i64_bytes(py, &s_out), i64_bytes(py, &t_out), PyBytes::new(py, &params))))
}

/// Hashes order ids (u64 keys, mostly consecutive) with one multiply: the
/// default SipHash cost more than the rest of the conversion.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        // Fibonacci hashing; the table takes the high bits well enough after the rotate.
        let h = v.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 32);
    }
}

type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// The orders a group's events name, each once, in the order first named.
/// Order ids are handed out in sequence, so nearly all of a group's are
/// within a few times its event count below the highest: those are found
/// by their offset in a table (a hash map's random probes into tens of MB
/// cost a cache miss each, more than the rest of the conversion), the
/// older ones in a hash map.
struct Orders {
    lo: u64,
    slots: Vec<u32>,
    older: IdMap<u32>,
    list: Vec<(u64, Touched)>,
}

impl Orders {
    /// Empties it for ids `lo..=hi` (mostly), keeping its memory: a fresh
    /// table's pages cost a page fault each, every group.
    fn reset(&mut self, lo: u64, hi: u64) {
        for &(oid, _) in &self.list {
            if oid >= self.lo && ((oid - self.lo) as usize) < self.slots.len() {
                self.slots[(oid - self.lo) as usize] = u32::MAX;
            }
        }
        self.list.clear();
        self.older.clear();
        self.lo = lo;
        let span = (hi - lo + 1) as usize;
        if self.slots.len() < span {
            self.slots.resize(span, u32::MAX);
        }
    }

    fn get(&mut self, oid: u64) -> &mut Touched {
        let list = &mut self.list;
        let slot = if oid >= self.lo && ((oid - self.lo) as usize) < self.slots.len() {
            &mut self.slots[(oid - self.lo) as usize]
        } else {
            self.older.entry(oid).or_insert(u32::MAX)
        };
        if *slot == u32::MAX {
            *slot = list.len() as u32;
            list.push((oid, Touched::new()));
        }
        &mut list[*slot as usize].1
    }

    fn find(&self, oid: u64) -> Option<&Touched> {
        let slot = if oid >= self.lo && ((oid - self.lo) as usize) < self.slots.len() {
            self.slots[(oid - self.lo) as usize]
        } else {
            *self.older.get(&oid)?
        };
        (slot != u32::MAX).then(|| &self.list[slot as usize].1)
    }
}

/// What a group's events did to one order (`_Writer._order_rows`).
#[derive(Clone, Copy)]
struct Touched {
    /// Placed (ACCEPTED) in the group: a new row, not a delta.
    placed: bool,
    /// Changed by an event of the group.
    hit: bool,
    filled: i64,
    quote: i64,
    remaining: i64,
    ts: i64,
    seq: i64,
    /// 1 partially filled, 2 filled, 3 cancelled, 4 expired, 0 unchanged.
    code: i64,
    /// The reason of the final CANCELLED, 255 none.
    reason: i64,
    /// The last AMENDED's price, -1 none.
    price: i64,
    /// Filled in the group up to the last AMENDED or ACTIVATED, plus its quantity; -1 none.
    qty_from_filled: i64,
    /// The last TRIGGERED's time, -1 none.
    triggered: i64,
}

impl Touched {
    fn new() -> Self {
        Touched {
            placed: false,
            hit: false,
            filled: 0,
            quote: 0,
            remaining: 0,
            ts: 0,
            seq: 0,
            code: 0,
            reason: 255,
            price: -1,
            qty_from_filled: -1,
            triggered: -1,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn touch(&mut self, k: u8, remaining: i64, filled: i64, quote: i64, reason: u8, price: i64, ts: i64, seq: i64) {
        self.hit = true;
        self.filled = self.filled.wrapping_add(filled);
        self.quote = self.quote.wrapping_add(quote);
        self.remaining = remaining;
        self.ts = ts;
        self.seq = seq;
        let code = match k {
            FILL => {
                if remaining == 0 {
                    2
                } else {
                    1
                }
            }
            CANCELLED if remaining == 0 => {
                if reason == EXPIRED {
                    4
                } else {
                    3
                }
            }
            _ => 0,
        };
        if code != 0 {
            self.code = code;
            self.reason = if code >= 3 { reason as i64 } else { 255 };
        }
        if k == AMENDED {
            self.price = price;
        }
        if k == AMENDED || k == ACTIVATED {
            self.qty_from_filled = self.filled.wrapping_add(remaining);
        }
        if k == TRIGGERED && ts > self.triggered {
            self.triggered = ts;
        }
    }
}

/// New orders' columns, in the order `HistoryRows.order_rows` returns them.
const NEW_COLUMNS: usize = 23;
/// Older orders' delta columns.
const DELTA_COLUMNS: usize = 11;

/// Converts groups' events to order rows, keeping its working memory from
/// one group to the next (`_Writer` holds one).
///
/// `order_rows(events, seqs, times, params)`: a group's kept events `events` (EVENT_DTYPE, in order) with their seq
/// and time (i64 each) and the parameters of its ACCEPTED events
/// (`_PARAMS_DTYPE`, in order) to rows: `(new, n_new, deltas, n_deltas)`,
/// each a column-major block of i64 (`NEW_COLUMNS` x n_new: order id,
/// account, market, side, type, tif, stp, flags, price, qty, filled,
/// filled quote, remaining, status code (5 new), created ts, updated ts,
/// created seq, updated seq, trigger price, display qty, expire ts, reason
/// (255 none), triggered ts (-1 none); `DELTA_COLUMNS` x n_deltas by order
/// id: filled, filled quote, remaining, status code (0 unchanged), reason,
/// price (-1 unchanged), qty (-1 unchanged), triggered ts (-1), updated ts,
/// updated seq, order id).
#[pyclass(name = "HistoryRows", module = "lxdex._core", unsendable)]
pub(crate) struct HistoryRows {
    /// The orders the group names (reset, not freed, between groups).
    orders: Orders,
    accepted: Vec<usize>,
}

#[pymethods]
impl HistoryRows {
    #[new]
    fn new() -> Self {
        HistoryRows {
            orders: Orders { lo: 0, slots: Vec::new(), older: IdMap::default(), list: Vec::new() },
            accepted: Vec::new(),
        }
    }

    fn order_rows<'py>(
        &mut self,
        py: Python<'py>,
        events: &Bound<'py, PyAny>,
        seqs: &Bound<'py, PyAny>,
        times: &Bound<'py, PyAny>,
        params: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyBytes>, usize, Bound<'py, PyBytes>, usize)> {
        order_rows(self, py, events, seqs, times, params)
    }
}

fn order_rows<'py>(
    scratch: &mut HistoryRows,
    py: Python<'py>,
    events: &Bound<'py, PyAny>,
    seqs: &Bound<'py, PyAny>,
    times: &Bound<'py, PyAny>,
    params: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyBytes>, usize, Bound<'py, PyBytes>, usize)> {
    let (ev_v, s_v, t_v, p_v) =
        (View::new(events, "events")?, View::new(seqs, "seqs")?, View::new(times, "times")?, View::new(params, "params")?);
    // SAFETY: the views live until the end of this function, with the GIL held.
    let (evs, sb, tb, pb) = unsafe { (ev_v.slice(), s_v.slice(), t_v.slice(), p_v.slice()) };
    if evs.len() % EVENT_RECORD_SIZE != 0 {
        return Err(PyValueError::new_err("events: not a whole number of events"));
    }
    let n = evs.len() / EVENT_RECORD_SIZE;
    if sb.len() != 8 * n || tb.len() != 8 * n {
        return Err(PyValueError::new_err("seqs and times: one int64 per event"));
    }
    if pb.len() % PARAMS_SIZE != 0 {
        return Err(PyValueError::new_err("params: not a whole number of parameter records"));
    }
    let mut hi = 0u64;
    for e in evs.chunks_exact(EVENT_RECORD_SIZE) {
        hi = hi.max(u64_at(e, ev::ORDER_ID));
        if e[ev::KIND] == FILL {
            hi = hi.max(u64_at(e, ev::OTHER_ID));
        }
    }
    let HistoryRows { orders: touched, accepted } = scratch;
    touched.reset(hi.saturating_sub(4 * n as u64 + 1024), hi);
    accepted.clear();
    for (i, e) in evs.chunks_exact(EVENT_RECORD_SIZE).enumerate() {
        let k = e[ev::KIND];
        let (ts, seq) = (i64_at(tb, 8 * i), i64_at(sb, 8 * i));
        let (price, qty) = (i64_at(e, ev::PRICE), i64_at(e, ev::QTY));
        match k {
            ACCEPTED => {
                accepted.push(i);
                touched.get(u64_at(e, ev::ORDER_ID)).placed = true;
            }
            FILL | CANCELLED | AMENDED | TRIGGERED | ACTIVATED => {
                let remaining = if matches!(k, AMENDED | TRIGGERED | ACTIVATED) { qty } else { i64_at(e, ev::REMAINING) };
                let (filled, quote) = if k == FILL { (qty, price.wrapping_mul(qty)) } else { (0, 0) };
                touched.get(u64_at(e, ev::ORDER_ID)).touch(
                    k,
                    remaining,
                    filled,
                    quote,
                    e[ev::REASON],
                    price,
                    ts,
                    seq,
                );
                if k == FILL {
                    touched.get(u64_at(e, ev::OTHER_ID)).touch(
                        FILL,
                        i64_at(e, ev::OTHER_REMAINING),
                        qty,
                        price.wrapping_mul(qty),
                        0,
                        0,
                        ts,
                        seq,
                    );
                }
            }
            _ => {}
        }
    }
    if pb.len() != accepted.len() * PARAMS_SIZE {
        return Err(PyValueError::new_err(format!(
            "params: {} records for {} ACCEPTED events",
            pb.len() / PARAMS_SIZE,
            accepted.len()
        )));
    }
    let na = accepted.len();
    let new = PyBytes::new_with(py, NEW_COLUMNS * na * 8, |out| {
    for (j, &i) in accepted.iter().enumerate() {
        let e = &evs[i * EVENT_RECORD_SIZE..(i + 1) * EVENT_RECORD_SIZE];
        let p = &pb[j * PARAMS_SIZE..(j + 1) * PARAMS_SIZE];
        let oid = u64_at(e, ev::ORDER_ID);
        let (c_ts, c_seq) = (i64_at(tb, 8 * i), i64_at(sb, 8 * i));
        let (a_price, a_qty) = (i64_at(e, ev::PRICE), i64_at(e, ev::QTY));
        // (an order only placed has nothing to change: its ACCEPTED event's values)
        let t = touched.find(oid).filter(|t| t.hit);
        let col = |c: usize| 8 * (c * na + j);
        let vals: [i64; NEW_COLUMNS] = [
            oid as i64,
            u64_at(e, ev::OWNER) as i64,
            u32_at(e, ev::MARKET) as i64,
            e[ev::SIDE] as i64,
            e[ev::ORDER_TYPE] as i64,
            p[0] as i64,
            p[1] as i64,
            p[2] as i64,
            t.filter(|t| t.price >= 0).map_or(a_price, |t| t.price),
            t.filter(|t| t.qty_from_filled >= 0).map_or(a_qty, |t| t.qty_from_filled),
            t.map_or(0, |t| t.filled),
            t.map_or(0, |t| t.quote),
            t.map_or(a_qty, |t| t.remaining),
            match t.map_or(0, |t| t.code) {
                0 => 5,
                c => c,
            },
            c_ts,
            t.map_or(c_ts, |t| t.ts),
            c_seq,
            t.map_or(c_seq, |t| t.seq),
            i64_at(p, 3),
            i64_at(p, 11),
            i64_at(p, 19),
            t.map_or(255, |t| t.reason),
            t.map_or(-1, |t| t.triggered),
        ];
        for (c, v) in vals.into_iter().enumerate() {
            out[col(c)..col(c) + 8].copy_from_slice(&v.to_le_bytes());
        }
    }
    Ok(())
    })?;
    let mut old: Vec<(u64, Touched)> = touched.list.iter().filter(|(_, t)| !t.placed).copied().collect();
    old.sort_unstable_by_key(|(oid, _)| *oid);
    let nd = old.len();
    let mut deltas = vec![0i64; DELTA_COLUMNS * nd];
    for (j, (oid, t)) in old.iter().enumerate() {
        let vals: [i64; DELTA_COLUMNS] = [
            t.filled,
            t.quote,
            t.remaining,
            t.code,
            t.reason,
            t.price,
            t.qty_from_filled,
            t.triggered,
            t.ts,
            t.seq,
            *oid as i64,
        ];
        for (c, v) in vals.into_iter().enumerate() {
            deltas[c * nd + j] = v;
        }
    }
    Ok((new, na, i64_bytes(py, &deltas), nd))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(history_records_run, m)?)?;
    m.add_class::<HistoryRows>()?;
    Ok(())
}
