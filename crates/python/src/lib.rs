//! `lxdex._core`: Python bindings of `lxdex-engine`.
//!
//! Two ways in: per-call methods on `Book` (readable; rejections raise
//! `lxdex.OrderRejected`) and `Book.process`, which takes a numpy array of
//! `COMMAND_DTYPE` records and returns a numpy array of `EVENT_DTYPE` records,
//! with the GIL released while it matches.

use std::time::Instant;

mod exchange;
mod gateway;
mod historydb;
mod histrows;
mod journal;
mod ordjson;

use lxdex_engine::record::{records, COMMAND_RECORD_SIZE};
use lxdex_engine::{
    apply_record, apply_records, Book, BracketRequest, Event, EventKind, ExitLegs, OcoRequest,
    OrderRequest, OrderStatus, OrderType, Reason, Reject, Side, Stp, Tif, FLAG_POST_ONLY,
    FLAG_TRAIL_BPS,
};
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyTuple, PyType};

/// One event; see docs/engine.md for which fields each kind fills.
#[pyclass(name = "Event", module = "lxdex._core", frozen, get_all, eq)]
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PyEvent {
    kind: u8,
    reason: u8,
    side: u8,
    order_type: u8,
    /// Market index (0 for a standalone book).
    market: u32,
    order_id: u64,
    owner: u64,
    other_id: u64,
    other_owner: u64,
    price: i64,
    qty: i64,
    remaining: i64,
    other_remaining: i64,
}

impl From<&Event> for PyEvent {
    fn from(e: &Event) -> Self {
        PyEvent {
            kind: e.kind as u8,
            reason: e.reason as u8,
            side: e.side as u8,
            order_type: e.order_type as u8,
            market: e.market,
            order_id: e.order_id,
            owner: e.owner,
            other_id: e.other_id,
            other_owner: e.other_owner,
            price: e.price,
            qty: e.qty,
            remaining: e.remaining,
            other_remaining: e.other_remaining,
        }
    }
}

#[pymethods]
impl PyEvent {
    /// `(kind, reason, side, order_type, order_id, owner, other_id,
    /// other_owner, price, qty, remaining, other_remaining)`
    #[allow(clippy::type_complexity)]
    fn astuple(&self) -> (u8, u8, u8, u8, u64, u64, u64, u64, i64, i64, i64, i64) {
        (
            self.kind,
            self.reason,
            self.side,
            self.order_type,
            self.order_id,
            self.owner,
            self.other_id,
            self.other_owner,
            self.price,
            self.qty,
            self.remaining,
            self.other_remaining,
        )
    }

    fn __repr__(&self) -> String {
        let kind = EventKind::from_u8(self.kind).map_or("?".into(), |k| upper_snake(k.name()));
        let side = Side::from_u8(self.side).map_or("?".into(), |s| upper_snake(s.name()));
        let otype = OrderType::from_u8(self.order_type).map_or("?".into(), |s| upper_snake(s.name()));
        let mut s = format!("Event({kind} id={} owner={} {side} {otype}", self.order_id, self.owner);
        if self.reason != 0 {
            s += &format!(" reason={}", Reason::from_u8(self.reason).map_or("?".into(), |r| upper_snake(r.name())));
        }
        if self.other_id != 0 {
            s += &format!(" other={}/{}", self.other_id, self.other_owner);
        }
        s += &format!(
            " price={} qty={} remaining={} other_remaining={})",
            self.price, self.qty, self.remaining, self.other_remaining
        );
        s
    }
}

static REJECTED_CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static COMMAND_DTYPE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static EVENT_DTYPE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn enums_attr<'py>(py: Python<'py>, cell: &'static PyOnceLock<Py<PyAny>>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    cell.get_or_try_init(py, || Ok::<_, PyErr>(py.import("lxdex.enums")?.getattr(name)?.unbind()))
        .map(|v| v.bind(py).clone())
}

pub(crate) fn rejected(py: Python<'_>, what: &str, id: u64, r: Reject) -> PyErr {
    let class = REJECTED_CLASS.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.import("lxdex.errors")?.getattr("OrderRejected")?.cast_into::<PyType>()?.unbind())
    });
    let message = format!("{what} {id} rejected: {} [{}]", r.reason.describe(), upper_snake(r.reason.name()));
    match class {
        Ok(class) => match class.bind(py).call1((message, r.reason as u8)) {
            Ok(exc) => PyErr::from_value(exc),
            Err(e) => e,
        },
        Err(e) => e,
    }
}

/// An enum argument as its wire byte (out-of-range values become invalid, so
/// the engine rejects them with the field's reason).
#[inline]
pub(crate) fn wire(v: i64) -> u8 {
    if (0..=254).contains(&v) {
        v as u8
    } else {
        255
    }
}

/// An order request from per-call arguments (enum arguments as wire bytes).
#[allow(clippy::too_many_arguments)]
pub(crate) fn order_request(
    order_id: u64,
    owner: u64,
    side: i64,
    qty: i64,
    price: i64,
    order_type: i64,
    tif: i64,
    stp: i64,
    post_only: bool,
    display_qty: i64,
    trigger_price: i64,
    trail_bps: bool,
    expire_ts: u64,
) -> OrderRequest {
    OrderRequest {
        order_id,
        owner,
        side: wire(side),
        order_type: wire(order_type),
        tif: wire(tif),
        stp: wire(stp),
        flags: if post_only { FLAG_POST_ONLY } else { 0 } | if trail_bps { FLAG_TRAIL_BPS } else { 0 },
        price,
        qty,
        trigger_price,
        display_qty,
        expire_ts,
    }
}

/// A contiguous byte view of a `COMMAND_DTYPE` numpy array.
pub(crate) fn command_buffer<'py>(py: Python<'py>, commands: &Bound<'py, PyAny>) -> PyResult<PyBuffer<u8>> {
    let dtype = enums_attr(py, &COMMAND_DTYPE, "COMMAND_DTYPE")?;
    let theirs = commands
        .getattr("dtype")
        .map_err(|_| PyTypeError::new_err("commands: expected a numpy array of lxdex.enums.COMMAND_DTYPE"))?;
    if !theirs.eq(&dtype)? {
        return Err(PyTypeError::new_err(format!(
            "commands: dtype must be lxdex.enums.COMMAND_DTYPE, got {}",
            theirs.repr()?
        )));
    }
    let np = py.import("numpy")?;
    let flat = np.call_method1("ascontiguousarray", (commands,))?.call_method1("view", ("u1",))?;
    let buf = PyBuffer::<u8>::get(&flat)?;
    if !buf.is_c_contiguous() || buf.len_bytes() % COMMAND_RECORD_SIZE != 0 {
        return Err(PyValueError::new_err("commands: expected whole, contiguous command records"));
    }
    Ok(buf)
}

pub(crate) struct SendPtr(pub(crate) *const u8, pub(crate) usize);
unsafe impl Send for SendPtr {}
impl SendPtr {
    /// SAFETY: the buffer it was taken from must outlive the slice.
    pub(crate) unsafe fn slice<'a>(&self) -> &'a [u8] {
        std::slice::from_raw_parts(self.0, self.1)
    }
}

pub(crate) fn events_to_numpy<'py>(py: Python<'py>, events: &[Event]) -> PyResult<Bound<'py, PyAny>> {
    let dtype = enums_attr(py, &EVENT_DTYPE, "EVENT_DTYPE")?;
    let bytes = PyByteArray::new(py, lxdex_engine::record::events_as_bytes(events));
    py.import("numpy")?.call_method1("frombuffer", (bytes, dtype))
}

/// One market's order book (price-time priority, integer ticks and lots).
#[pyclass(name = "Book", module = "lxdex._core", subclass)]
struct PyBook {
    book: Book,
    out: Vec<Event>,
}

impl PyBook {
    fn finish<'py>(&mut self, py: Python<'py>, what: &str, id: u64, r: Result<(), Reject>) -> PyResult<Bound<'py, PyList>> {
        match r {
            Ok(()) => {
                let list = PyList::new(py, self.out.iter().map(PyEvent::from))?;
                self.out.clear();
                Ok(list)
            }
            Err(e) => {
                self.out.clear();
                Err(rejected(py, what, id, e))
            }
        }
    }
}

fn side_name(s: Side) -> u8 {
    s as u8
}

#[pymethods]
impl PyBook {
    #[new]
    #[pyo3(signature = (tick_size = 1, lot_size = 1))]
    fn new(tick_size: i64, lot_size: i64) -> PyResult<Self> {
        if tick_size < 1 {
            return Err(PyValueError::new_err(format!("tick_size: must be >= 1, got {tick_size}")));
        }
        if lot_size < 1 {
            return Err(PyValueError::new_err(format!("lot_size: must be >= 1, got {lot_size}")));
        }
        Ok(PyBook { book: Book::new(tick_size, lot_size), out: Vec::new() })
    }

    /// Submits an order of any type; returns its events. Raises
    /// `lxdex.OrderRejected` (nothing changed) on bad input.
    #[pyo3(signature = (order_id, owner, side, qty, price = 0, order_type = 0, tif = 0, stp = 0,
                        post_only = false, display_qty = 0, trigger_price = 0, trail_bps = false, expire_ts = 0))]
    #[allow(clippy::too_many_arguments)]
    fn submit<'py>(
        &mut self,
        py: Python<'py>,
        order_id: u64,
        owner: u64,
        side: i64,
        qty: i64,
        price: i64,
        order_type: i64,
        tif: i64,
        stp: i64,
        post_only: bool,
        display_qty: i64,
        trigger_price: i64,
        trail_bps: bool,
        expire_ts: u64,
    ) -> PyResult<Bound<'py, PyList>> {
        let req = order_request(
            order_id, owner, side, qty, price, order_type, tif, stp, post_only, display_qty, trigger_price,
            trail_bps, expire_ts,
        );
        let r = self.book.submit(&req, &mut self.out);
        self.finish(py, "order", order_id, r)
    }

    /// Submits a bracket: an entry (price 0: market) whose fills activate a
    /// take-profit and a stop-loss child, one-cancels-other.
    #[pyo3(signature = (order_id, owner, side, qty, price, tp_id, tp_trigger, sl_id, sl_trigger,
                        tp_price = 0, sl_price = 0, tif = 0, stp = 0, post_only = false, expire_ts = 0))]
    #[allow(clippy::too_many_arguments)]
    fn bracket<'py>(
        &mut self,
        py: Python<'py>,
        order_id: u64,
        owner: u64,
        side: i64,
        qty: i64,
        price: i64,
        tp_id: u64,
        tp_trigger: i64,
        sl_id: u64,
        sl_trigger: i64,
        tp_price: i64,
        sl_price: i64,
        tif: i64,
        stp: i64,
        post_only: bool,
        expire_ts: u64,
    ) -> PyResult<Bound<'py, PyList>> {
        let req = BracketRequest {
            order_id,
            owner,
            side: wire(side),
            price,
            qty,
            tif: wire(tif),
            stp: wire(stp),
            flags: if post_only { FLAG_POST_ONLY } else { 0 },
            expire_ts,
            exits: ExitLegs { tp_id, tp_trigger, tp_price, sl_id, sl_trigger, sl_price },
        };
        let r = self.book.bracket(&req, &mut self.out);
        self.finish(py, "bracket", order_id, r)
    }

    /// Submits a one-cancels-other pair (take-profit + stop-loss) on `side`.
    #[pyo3(signature = (owner, side, qty, tp_id, tp_trigger, sl_id, sl_trigger, tp_price = 0, sl_price = 0, stp = 0))]
    #[allow(clippy::too_many_arguments)]
    fn oco<'py>(
        &mut self,
        py: Python<'py>,
        owner: u64,
        side: i64,
        qty: i64,
        tp_id: u64,
        tp_trigger: i64,
        sl_id: u64,
        sl_trigger: i64,
        tp_price: i64,
        sl_price: i64,
        stp: i64,
    ) -> PyResult<Bound<'py, PyList>> {
        let req = OcoRequest {
            owner,
            side: wire(side),
            qty,
            stp: wire(stp),
            legs: ExitLegs { tp_id, tp_trigger, tp_price, sl_id, sl_trigger, sl_price },
        };
        let r = self.book.oco(&req, &mut self.out);
        self.finish(py, "oco", tp_id, r)
    }

    /// Cancels a live order.
    fn cancel<'py>(&mut self, py: Python<'py>, order_id: u64) -> PyResult<Bound<'py, PyList>> {
        let r = self.book.cancel(order_id, &mut self.out);
        self.finish(py, "cancel of order", order_id, r)
    }

    /// Amends a resting order: new price and/or new remaining quantity (0 keeps).
    #[pyo3(signature = (order_id, price = 0, qty = 0))]
    fn amend<'py>(&mut self, py: Python<'py>, order_id: u64, price: i64, qty: i64) -> PyResult<Bound<'py, PyList>> {
        let r = self.book.amend(order_id, price, qty, &mut self.out);
        self.finish(py, "amend of order", order_id, r)
    }

    /// Cancels every live order of an owner.
    fn mass_cancel<'py>(&mut self, py: Python<'py>, owner: u64) -> PyResult<Bound<'py, PyList>> {
        let r = self.book.mass_cancel(owner, &mut self.out);
        self.finish(py, "mass cancel of owner", owner, r)
    }

    /// Moves the book's clock (expires GTD orders).
    fn advance_time<'py>(&mut self, py: Python<'py>, ts: u64) -> PyResult<Bound<'py, PyList>> {
        let r = self.book.advance_time(ts, &mut self.out);
        self.finish(py, "advance_time to", ts, r)
    }

    /// Observes an external price (e.g. a mark price) for stop triggers.
    fn observe_price<'py>(&mut self, py: Python<'py>, price: i64) -> PyResult<Bound<'py, PyList>> {
        let r = self.book.observe_price(price, &mut self.out);
        self.finish(py, "observe_price", price.max(0) as u64, r)
    }

    /// Applies a numpy array of `COMMAND_DTYPE` records; returns a numpy array
    /// of `EVENT_DTYPE` records (rejections are `REJECTED` events). The GIL is
    /// released while the book works.
    fn process<'py>(&mut self, py: Python<'py>, commands: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let buf = command_buffer(py, commands)?;
        let ptr = SendPtr(buf.buf_ptr() as *const u8, buf.len_bytes());
        let book = &mut self.book;
        let events = py.detach(move || {
            // SAFETY: `buf` holds the exporter's buffer alive until after this closure.
            let bytes = unsafe { ptr.slice() };
            let mut events = Vec::with_capacity(bytes.len() / COMMAND_RECORD_SIZE * 3 / 2 + 16);
            apply_records(book, bytes, &mut events);
            events
        });
        drop(buf);
        let arr = events_to_numpy(py, &events);
        arr
    }

    #[getter]
    fn tick_size(&self) -> i64 {
        self.book.tick_size()
    }
    #[getter]
    fn lot_size(&self) -> i64 {
        self.book.lot_size()
    }
    #[getter]
    fn now(&self) -> u64 {
        self.book.now()
    }
    #[getter]
    fn best_bid(&self) -> Option<i64> {
        self.book.best_bid()
    }
    #[getter]
    fn best_ask(&self) -> Option<i64> {
        self.book.best_ask()
    }
    #[getter]
    fn last_price(&self) -> Option<i64> {
        self.book.last_price()
    }
    fn __len__(&self) -> usize {
        self.book.len()
    }
    /// Number of waiting conditional orders and bracket children.
    #[getter]
    fn pending_count(&self) -> usize {
        self.book.pending_len()
    }
    /// Visible quantity resting at `price` on `side`.
    fn volume_at(&self, side: i64, price: i64) -> PyResult<i64> {
        let side = Side::from_u8(wire(side)).ok_or_else(|| PyValueError::new_err("side: must be 0 (buy) or 1 (sell)"))?;
        Ok(self.book.volume_at(side, price))
    }
    /// `(bids, asks)`: the best `n` levels of each side as `(price, visible, count)`.
    #[pyo3(signature = (n = 10))]
    #[allow(clippy::type_complexity)]
    fn depth(&self, n: usize) -> (Vec<(i64, i64, u32)>, Vec<(i64, i64, u32)>) {
        let f = |s| self.book.depth(s, n).into_iter().map(|l| (l.price, l.visible, l.count)).collect();
        (f(Side::Buy), f(Side::Sell))
    }
    /// Every resting order `(order_id, owner, side, price, visible, hidden)`,
    /// bids best to worst then asks, each level in queue order.
    fn l3(&self) -> Vec<(u64, u64, u8, i64, i64, i64)> {
        self.book.l3().into_iter().map(|o| (o.order_id, o.owner, side_name(o.side), o.price, o.visible, o.hidden)).collect()
    }
    /// Every waiting conditional order and bracket child
    /// `(order_id, owner, side, order_type, trigger, price, qty, active)`, in arrival order.
    #[allow(clippy::type_complexity)]
    fn pending(&self) -> Vec<(u64, u64, u8, u8, i64, i64, i64, bool)> {
        self.book
            .pending()
            .into_iter()
            .map(|p| (p.order_id, p.owner, p.side as u8, p.order_type as u8, p.trigger, p.price, p.qty, p.active))
            .collect()
    }
    /// The live order with this id as a dict, or None.
    fn order<'py>(&self, py: Python<'py>, order_id: u64) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(status) = self.book.order(order_id) else { return Ok(None) };
        let d = PyDict::new(py);
        match status {
            OrderStatus::Resting(o) => {
                d.set_item("status", "resting")?;
                d.set_item("order_id", o.order_id)?;
                d.set_item("owner", o.owner)?;
                d.set_item("side", o.side as u8)?;
                d.set_item("price", o.price)?;
                d.set_item("visible", o.visible)?;
                d.set_item("hidden", o.hidden)?;
            }
            OrderStatus::Pending(p) => {
                d.set_item("status", if p.active { "pending" } else { "inactive" })?;
                d.set_item("order_id", p.order_id)?;
                d.set_item("owner", p.owner)?;
                d.set_item("side", p.side as u8)?;
                d.set_item("order_type", p.order_type as u8)?;
                d.set_item("trigger", p.trigger)?;
                d.set_item("price", p.price)?;
                d.set_item("qty", p.qty)?;
            }
        }
        Ok(Some(d))
    }
    /// The book's whole state as canonical bytes: equal states give equal
    /// bytes, so `hashlib.sha256(book.snapshot())` is a state hash.
    fn snapshot<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.book.snapshot())
    }

    /// Replaces this book's state with a snapshot's (ValueError if the bytes
    /// are not a valid snapshot; the book is then unchanged).
    fn load_snapshot(&mut self, data: &[u8]) -> PyResult<()> {
        self.book = Book::restore(data).map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(())
    }

    /// Checks the book's internal invariants (raises AssertionError if broken). For tests.
    fn check_invariants(&self) -> PyResult<()> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.book.check_invariants())).map_err(|e| {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            pyo3::exceptions::PyAssertionError::new_err(format!("book invariant broken: {msg}"))
        })
    }
}

/// Runs `commands` (`COMMAND_DTYPE`) through a fresh Rust book with no Python
/// in the loop. Returns `(elapsed_ns, n_events, latencies)`, where latencies
/// is a uint64 array of per-command nanoseconds when `timed`, else None.
#[pyfunction]
#[pyo3(signature = (commands, tick_size = 1, lot_size = 1, timed = false))]
fn bench_replay<'py>(
    py: Python<'py>,
    commands: &Bound<'py, PyAny>,
    tick_size: i64,
    lot_size: i64,
    timed: bool,
) -> PyResult<(u64, u64, Option<Bound<'py, PyAny>>)> {
    if tick_size < 1 || lot_size < 1 {
        return Err(PyValueError::new_err("tick_size and lot_size must be >= 1"));
    }
    let buf = command_buffer(py, commands)?;
    let ptr = SendPtr(buf.buf_ptr() as *const u8, buf.len_bytes());
    let (elapsed, n_events, lat) = py.detach(move || {
        // SAFETY: `buf` outlives this closure.
        let bytes = unsafe { ptr.slice() };
        let mut book = Book::new(tick_size, lot_size);
        let mut out: Vec<Event> = Vec::with_capacity(256);
        let mut n_events = 0u64;
        let mut lat: Vec<u64> = Vec::new();
        let start = Instant::now();
        if timed {
            lat.reserve(bytes.len() / COMMAND_RECORD_SIZE);
            for rec in records(bytes) {
                let t = Instant::now();
                apply_record(&mut book, &rec, &mut out);
                lat.push(t.elapsed().as_nanos() as u64);
                n_events += out.len() as u64;
                out.clear();
            }
        } else {
            for rec in records(bytes) {
                apply_record(&mut book, &rec, &mut out);
                n_events += out.len() as u64;
                out.clear();
            }
        }
        let elapsed = start.elapsed().as_nanos() as u64;
        std::hint::black_box(&book);
        (elapsed, n_events, lat)
    });
    drop(buf);
    let lat = if timed {
        let bytes = PyByteArray::new(py, unsafe {
            std::slice::from_raw_parts(lat.as_ptr() as *const u8, lat.len() * 8)
        });
        Some(py.import("numpy")?.call_method1("frombuffer", (bytes, "<u8"))?)
    } else {
        None
    };
    Ok((elapsed, n_events, lat))
}

fn upper_snake(camel: &str) -> String {
    let mut s = String::new();
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_uppercase() && i > 0 {
            s.push('_');
        }
        s.push(ch.to_ascii_uppercase());
    }
    s
}

/// `{enum name: {MEMBER: value}}` of the engine, to check lxdex.enums against.
#[pyfunction]
fn wire_enums<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    macro_rules! put {
        ($name:literal, $t:ty) => {{
            let m = PyDict::new(py);
            for v in <$t>::ALL {
                m.set_item(upper_snake(v.name()), *v as u8)?;
            }
            d.set_item($name, m)?;
        }};
    }
    put!("Side", Side);
    put!("OrderType", OrderType);
    put!("TimeInForce", Tif);
    put!("Stp", Stp);
    put!("EventKind", EventKind);
    put!("Reason", Reason);
    Ok(d)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyBook>()?;
    m.add_class::<PyEvent>()?;
    m.add_class::<exchange::PyExchange>()?;
    m.add_function(wrap_pyfunction!(bench_replay, m)?)?;
    m.add_function(wrap_pyfunction!(wire_enums, m)?)?;
    journal::register(m)?;
    ordjson::register(m)?;
    gateway::register(m)?;
    historydb::register(m)?;
    histrows::register(m)?;
    m.add("MAX_PRICE", lxdex_engine::MAX_PRICE)?;
    m.add("MAX_QTY", lxdex_engine::MAX_QTY)?;
    m.add("MAX_TRAIL_BPS", lxdex_engine::MAX_TRAIL_BPS)?;
    m.add("FLAG_POST_ONLY", FLAG_POST_ONLY)?;
    m.add("FLAG_TRAIL_BPS", FLAG_TRAIL_BPS)?;
    m.add("COMMAND_RECORD_SIZE", COMMAND_RECORD_SIZE)?;
    let _ = PyTuple::empty(m.py());
    Ok(())
}
