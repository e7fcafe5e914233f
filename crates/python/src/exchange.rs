//! `lxdex._core.ExchangeCore`: the exchange core (markets, accounts, holds,
//! settlement) at integer level. `lxdex.exchange.Exchange` wraps it with
//! symbols and decimal amounts.

use lxdex_engine::marketdata::Interval;
use lxdex_engine::record::COMMAND_RECORD_SIZE;
use lxdex_engine::replay::replay_records;
use lxdex_engine::{
    BracketRequest, Event, EventKind, Exchange, ExitLegs, FeeTier, MarketConfig, MarketStatus, OcoRequest, OrderStatus,
    Reject, Side, FLAG_POST_ONLY, FLAG_QUOTE_QTY,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::journal::View;
use crate::{command_buffer, events_to_numpy, order_request, rejected, wire, PyEvent, SendPtr};

/// `(price, visible, count)` levels, best first.
type Levels = Vec<(i64, i64, u32)>;
/// `(order_id, owner, side, price, visible, hidden)`.
type L3Row = (u64, u64, u8, i64, i64, i64);

#[pyclass(name = "ExchangeCore", module = "lxdex._core", subclass)]
pub struct PyExchange {
    x: Exchange,
    out: Vec<Event>,
}

fn done<'py>(py: Python<'py>, out: &mut Vec<Event>, what: &str, id: u64, r: Result<(), Reject>) -> PyResult<Bound<'py, PyList>> {
    match r {
        Ok(()) => {
            let list = PyList::new(py, out.iter().map(PyEvent::from))?;
            out.clear();
            Ok(list)
        }
        Err(e) => {
            out.clear();
            Err(rejected(py, what, id, e))
        }
    }
}

fn plain(py: Python<'_>, what: &str, id: u64, r: Result<(), Reject>) -> PyResult<()> {
    r.map_err(|e| rejected(py, what, id, e))
}

#[pymethods]
impl PyExchange {
    #[new]
    fn new() -> Self {
        PyExchange { x: Exchange::new(), out: Vec::new() }
    }

    /// Adds an asset; returns its id.
    fn add_asset(&mut self) -> u32 {
        self.x.add_asset()
    }

    /// Adds a market (integer units, docs/exchange.md); returns its id.
    #[pyo3(signature = (base, quote, lot_units, tick_units, min_qty = 1, min_notional = 0, band_bps = 0, maker_bps = 0, taker_bps = 0))]
    #[allow(clippy::too_many_arguments)]
    fn add_market(
        &mut self,
        py: Python<'_>,
        base: u32,
        quote: u32,
        lot_units: i64,
        tick_units: i64,
        min_qty: i64,
        min_notional: i64,
        band_bps: i64,
        maker_bps: i64,
        taker_bps: i64,
    ) -> PyResult<u32> {
        let cfg = MarketConfig { base, quote, lot_units, tick_units, min_qty, min_notional, band_bps, maker_bps, taker_bps };
        self.x.add_market(cfg).map_err(|e| rejected(py, "market", 0, e))
    }

    /// Sets a market's volume discount tiers: `[(min_volume, maker_bps, taker_bps)]`.
    fn set_fee_tiers(&mut self, py: Python<'_>, market: u32, tiers: Vec<(i64, i64, i64)>) -> PyResult<()> {
        let tiers: Vec<FeeTier> = tiers.into_iter().map(|(min_volume, maker_bps, taker_bps)| FeeTier { min_volume, maker_bps, taker_bps }).collect();
        plain(py, "fee tiers of market", market as u64, self.x.set_fee_tiers(market, &tiers))
    }

    /// An account's 30-day traded volume in a quote asset (quote units).
    fn volume_30d(&self, account: u32, quote: u32) -> i128 {
        self.x.volume_30d(account, quote)
    }

    /// Sets a market's status (0 trading, 1 halted, 2 post-only, 3 closed).
    fn set_market_status<'py>(&mut self, py: Python<'py>, market: u32, status: i64) -> PyResult<Bound<'py, PyList>> {
        let status = MarketStatus::from_u8(wire(status)).ok_or_else(|| PyValueError::new_err("status: must be 0..=3"))?;
        let r = self.x.set_market_status(market, status, &mut self.out);
        done(py, &mut self.out, "status of market", market as u64, r)
    }

    /// Adds an account; returns its id.
    fn add_account(&mut self) -> u32 {
        self.x.add_account()
    }

    fn set_account_suspended(&mut self, py: Python<'_>, account: u32, suspended: bool) -> PyResult<()> {
        plain(py, "account", account as u64, self.x.set_account_suspended(account, suspended))
    }

    fn deposit(&mut self, py: Python<'_>, account: u32, asset: u32, amount: i64) -> PyResult<()> {
        plain(py, "deposit to account", account as u64, self.x.deposit(account, asset, amount))
    }

    fn withdraw(&mut self, py: Python<'_>, account: u32, asset: u32, amount: i64) -> PyResult<()> {
        plain(py, "withdrawal from account", account as u64, self.x.withdraw(account, asset, amount))
    }

    fn transfer(&mut self, py: Python<'_>, from_account: u32, to_account: u32, asset: u32, amount: i64) -> PyResult<()> {
        plain(py, "transfer from account", from_account as u64, self.x.transfer(from_account, to_account, asset, amount))
    }

    /// Places an order; returns `(order_id, events)`. `quote_qty` (quote
    /// units, with `qty` 0) sizes a market order by a quote amount: the core
    /// walks the book for the whole lots it buys (fees included) or sells.
    #[pyo3(signature = (account, market, side, qty, price = 0, order_type = 0, tif = 0, stp = 0,
                        post_only = false, display_qty = 0, trigger_price = 0, trail_bps = false, expire_ts = 0,
                        quote_qty = 0))]
    #[allow(clippy::too_many_arguments)]
    fn place<'py>(
        &mut self,
        py: Python<'py>,
        account: u32,
        market: u32,
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
        quote_qty: i64,
    ) -> PyResult<(u64, Bound<'py, PyList>)> {
        if quote_qty != 0 && qty != 0 {
            return Err(PyValueError::new_err("quote_qty: give qty or quote_qty, not both"));
        }
        let mut req = order_request(
            0, account as u64, side, qty, price, order_type, tif, stp, post_only, display_qty, trigger_price,
            trail_bps, expire_ts,
        );
        if quote_qty != 0 {
            req.qty = quote_qty;
            req.flags |= FLAG_QUOTE_QTY;
        }
        let r = self.x.place(account, market, &req, &mut self.out);
        let id = *r.as_ref().unwrap_or(&0);
        let events = done(py, &mut self.out, "order of account", account as u64, r.map(|_| ()))?;
        Ok((id, events))
    }

    /// Places a one-cancels-other pair (take-profit and stop-loss legs on
    /// `side`, prices 0: market); returns `(take-profit id, events)`, the
    /// stop-loss leg's id is the next.
    #[pyo3(signature = (account, market, side, qty, tp_trigger, tp_price, sl_trigger, sl_price, stp = 0))]
    #[allow(clippy::too_many_arguments)]
    fn place_oco<'py>(
        &mut self,
        py: Python<'py>,
        account: u32,
        market: u32,
        side: i64,
        qty: i64,
        tp_trigger: i64,
        tp_price: i64,
        sl_trigger: i64,
        sl_price: i64,
        stp: i64,
    ) -> PyResult<(u64, Bound<'py, PyList>)> {
        let req = OcoRequest {
            owner: account as u64,
            side: wire(side),
            qty,
            stp: wire(stp),
            legs: ExitLegs { tp_id: 0, tp_trigger, tp_price, sl_id: 0, sl_trigger, sl_price },
        };
        let r = self.x.place_oco(account, market, &req, &mut self.out);
        let id = *r.as_ref().unwrap_or(&0);
        let events = done(py, &mut self.out, "oco of account", account as u64, r.map(|_| ()))?;
        Ok((id, events))
    }

    /// Places a bracket (an entry, price 0: market, whose fills activate
    /// take-profit and stop-loss exits); returns `(entry id, events)`, the
    /// exits' ids are the next two.
    #[pyo3(signature = (account, market, side, qty, price, tp_trigger, tp_price, sl_trigger, sl_price,
                        tif = 0, stp = 0, post_only = false, expire_ts = 0))]
    #[allow(clippy::too_many_arguments)]
    fn place_bracket<'py>(
        &mut self,
        py: Python<'py>,
        account: u32,
        market: u32,
        side: i64,
        qty: i64,
        price: i64,
        tp_trigger: i64,
        tp_price: i64,
        sl_trigger: i64,
        sl_price: i64,
        tif: i64,
        stp: i64,
        post_only: bool,
        expire_ts: u64,
    ) -> PyResult<(u64, Bound<'py, PyList>)> {
        let req = BracketRequest {
            order_id: 0,
            owner: account as u64,
            side: wire(side),
            price,
            qty,
            tif: wire(tif),
            stp: wire(stp),
            flags: if post_only { FLAG_POST_ONLY } else { 0 },
            expire_ts,
            exits: ExitLegs { tp_id: 0, tp_trigger, tp_price, sl_id: 0, sl_trigger, sl_price },
        };
        let r = self.x.place_bracket(account, market, &req, &mut self.out);
        let id = *r.as_ref().unwrap_or(&0);
        let events = done(py, &mut self.out, "bracket of account", account as u64, r.map(|_| ()))?;
        Ok((id, events))
    }

    /// A linked order's group: `(group id, entry, take-profit, stop-loss)`
    /// (entry 0: an OCO pair, or the entry has left); None when the order is
    /// not in a live group.
    fn order_link(&self, order_id: u64) -> Option<(u64, u64, u64, u64)> {
        self.x.order_link(order_id)
    }

    fn cancel<'py>(&mut self, py: Python<'py>, account: u32, order_id: u64) -> PyResult<Bound<'py, PyList>> {
        let r = self.x.cancel(account, order_id, &mut self.out);
        done(py, &mut self.out, "cancel of order", order_id, r)
    }

    #[pyo3(signature = (account, order_id, price = 0, qty = 0))]
    fn amend<'py>(&mut self, py: Python<'py>, account: u32, order_id: u64, price: i64, qty: i64) -> PyResult<Bound<'py, PyList>> {
        let r = self.x.amend(account, order_id, price, qty, &mut self.out);
        done(py, &mut self.out, "amend of order", order_id, r)
    }

    #[pyo3(signature = (account, market = None))]
    fn cancel_all<'py>(&mut self, py: Python<'py>, account: u32, market: Option<u32>) -> PyResult<Bound<'py, PyList>> {
        let r = self.x.cancel_all(account, market, &mut self.out);
        done(py, &mut self.out, "cancel-all of account", account as u64, r)
    }

    fn advance_time<'py>(&mut self, py: Python<'py>, ts: u64) -> PyResult<Bound<'py, PyList>> {
        let r = self.x.advance_time(ts, &mut self.out);
        done(py, &mut self.out, "advance_time to", ts, r)
    }

    fn observe_price<'py>(&mut self, py: Python<'py>, market: u32, price: i64) -> PyResult<Bound<'py, PyList>> {
        let r = self.x.observe_price(market, price, &mut self.out);
        done(py, &mut self.out, "observe_price in market", market as u64, r)
    }

    /// Applies `COMMAND_DTYPE` records (docs/exchange.md); returns `EVENT_DTYPE` records.
    fn process<'py>(&mut self, py: Python<'py>, commands: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let buf = command_buffer(py, commands)?;
        let ptr = SendPtr(buf.buf_ptr() as *const u8, buf.len_bytes());
        let x = &mut self.x;
        let events = py.detach(move || {
            // SAFETY: `buf` outlives this closure.
            let bytes = unsafe { ptr.slice() };
            let mut events = Vec::with_capacity(bytes.len() / COMMAND_RECORD_SIZE * 3 / 2 + 16);
            x.apply_records(bytes, &mut events);
            events
        });
        drop(buf);
        events_to_numpy(py, &events)
    }

    /// Journal replay: applies the journal records of `buf` whose payloads
    /// `spans` (little-endian `u64` start/end offset pairs, from
    /// `journal_read_spans`) lists, from the `index`-th on, for as long as
    /// each is a `Records` command in its canonical msgpack form, as
    /// `Exchange.execute` would, without building their events. Returns
    /// `(count, max_ts, flagged)`: `flagged` is `[(index, ts, clock_events,
    /// events)]` (`EVENT_DTYPE` arrays) for each command with an event that
    /// is a `CANCELLED` whose reason is in `system_cancels`, or a `FILL`
    /// when `fills` is true: the ones whose notifications the caller owes.
    fn replay_records<'py>(
        &mut self,
        py: Python<'py>,
        buf: &Bound<'py, PyAny>,
        spans: &Bound<'py, PyAny>,
        index: usize,
        system_cancels: Vec<u8>,
        fills: bool,
    ) -> PyResult<(usize, u64, Bound<'py, PyList>)> {
        let b = View::new(buf, "buf")?;
        let sp = View::new(spans, "spans")?;
        let (bytes, spans) = unsafe { (b.slice(), sp.slice()) };
        if spans.len() % 16 != 0 {
            return Err(PyValueError::new_err("spans: expected pairs of u64 offsets"));
        }
        let n = spans.len() / 16;
        let mut ranges = Vec::with_capacity(n.saturating_sub(index));
        for k in index..n {
            let at = |i: usize| u64::from_le_bytes(spans[i..i + 8].try_into().unwrap()) as usize;
            let (a, e) = (at(k * 16), at(k * 16 + 8));
            if a > e || e > bytes.len() {
                return Err(PyValueError::new_err(format!("spans: record {k} is outside buf")));
            }
            ranges.push((a, e));
        }
        let mut lut = [false; 256];
        for r in system_cancels {
            lut[r as usize] = true;
        }
        let (bp, x) = (SendPtr(bytes.as_ptr(), bytes.len()), &mut self.x);
        let r = py.detach(move || {
            // SAFETY: `b` keeps the buffer alive until after this closure.
            let bytes = unsafe { bp.slice() };
            let flag = |e: &Event| match e.kind {
                EventKind::Cancelled => lut[e.reason as usize],
                EventKind::Fill => fills,
                _ => false,
            };
            replay_records(x, ranges.iter().map(|&(a, e)| &bytes[a..e]), flag)
        });
        let flagged = PyList::empty(py);
        for f in &r.flagged {
            flagged.append((index + f.index, f.ts, events_to_numpy(py, &f.clock)?, events_to_numpy(py, &f.events)?))?;
        }
        Ok((r.count, r.max_ts, flagged))
    }

    /// `(available, held)` of an account in an asset.
    fn balance(&self, py: Python<'_>, account: u32, asset: u32) -> PyResult<(i64, i64)> {
        let b = self.x.ledger().balance(account, asset).map_err(|e| rejected(py, "balance of account", account as u64, ledger_reject(e)))?;
        Ok((b.available, b.held))
    }

    /// Every non-empty balance of an account: `[(asset, available, held)]`.
    fn balances(&self, py: Python<'_>, account: u32) -> PyResult<Vec<(u32, i64, i64)>> {
        let b = self.x.ledger().balances(account).map_err(|e| rejected(py, "balances of account", account as u64, ledger_reject(e)))?;
        Ok(b.iter().map(|b| (b.asset, b.available, b.held)).collect())
    }

    /// Fees collected in an asset.
    fn fees(&self, py: Python<'_>, asset: u32) -> PyResult<i64> {
        self.x.ledger().fees(asset).map_err(|e| rejected(py, "fees of asset", asset as u64, ledger_reject(e)))
    }

    /// An open order's `(account, market, asset held, amount held)`, or None.
    fn order_hold(&self, order_id: u64) -> Option<(u32, u32, u32, i64)> {
        self.x.order_hold(order_id)
    }

    #[getter]
    fn market_count(&self) -> usize {
        self.x.market_count()
    }
    #[getter]
    fn account_count(&self) -> usize {
        self.x.ledger().account_count()
    }
    #[getter]
    fn now(&self) -> u64 {
        self.x.now()
    }

    fn book_depth(&self, market: u32, n: usize) -> PyResult<(Levels, Levels)> {
        let b = self.book(market)?;
        let f = |s| b.depth(s, n).into_iter().map(|l| (l.price, l.visible, l.count)).collect();
        Ok((f(Side::Buy), f(Side::Sell)))
    }
    fn book_l3(&self, market: u32) -> PyResult<Vec<L3Row>> {
        Ok(self.book(market)?.l3().into_iter().map(|o| (o.order_id, o.owner, o.side as u8, o.price, o.visible, o.hidden)).collect())
    }
    fn book_last_price(&self, market: u32) -> PyResult<Option<i64>> {
        Ok(self.book(market)?.last_price())
    }
    /// Canonical bytes of a market's book (for state hashes).
    fn book_snapshot(&self, market: u32) -> PyResult<Vec<u8>> {
        Ok(self.book(market)?.snapshot())
    }

    /// `(last depth update id, bids, asks)`: the resync snapshot for DEPTH diffs.
    #[pyo3(signature = (market, n = 100))]
    fn depth_snapshot(&self, market: u32, n: usize) -> PyResult<(u64, Levels, Levels)> {
        let (id, bids, asks) = self.x.depth_snapshot(market, n).ok_or_else(|| unknown_market(market))?;
        let f = |v: Vec<lxdex_engine::DepthLevel>| v.into_iter().map(|l| (l.price, l.visible, l.count)).collect();
        Ok((id, f(bids), f(asks)))
    }

    /// Recent trades `(id, ts, price, qty, taker_side)`, oldest first.
    #[pyo3(signature = (market, limit = 500))]
    #[allow(clippy::type_complexity)]
    fn trades(&self, market: u32, limit: usize) -> PyResult<Vec<(u64, u64, i64, i64, u8)>> {
        let md = self.x.market_data(market).ok_or_else(|| unknown_market(market))?;
        Ok(md.trades(limit).map(|t| (t.id, t.ts, t.price, t.qty, t.taker_side as u8)).collect())
    }

    /// Recent trades `(id, ts, price, qty, taker_side, same_taker)`, oldest
    /// first: `same_taker` when the order that took it also took the trade
    /// before it, in the same command (Binance's aggregate trades).
    #[pyo3(signature = (market, limit = 500))]
    #[allow(clippy::type_complexity)]
    fn tape(&self, market: u32, limit: usize) -> PyResult<Vec<(u64, u64, i64, i64, u8, bool)>> {
        let md = self.x.market_data(market).ok_or_else(|| unknown_market(market))?;
        Ok(md.trades(limit).map(|t| (t.id, t.ts, t.price, t.qty, t.taker_side as u8, t.same_taker)).collect())
    }

    /// Candles `(start_ms, open, high, low, close, volume, quote_volume, trades)`
    /// of a Binance-style interval (1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 1w 1M).
    #[pyo3(signature = (market, interval, since = 0, limit = 500))]
    #[allow(clippy::type_complexity)]
    fn candles(&self, market: u32, interval: &str, since: u64, limit: usize) -> PyResult<Vec<(u64, i64, i64, i64, i64, i64, i128, u64)>> {
        let md = self.x.market_data(market).ok_or_else(|| unknown_market(market))?;
        let iv = Interval::parse(interval).ok_or_else(|| {
            PyValueError::new_err(format!("interval: {interval:?} is not one of 1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 1w 1M"))
        })?;
        Ok(md.candles(iv, since, limit).into_iter().map(|c| (c.start, c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.trades)).collect())
    }

    /// The rolling 24 h ticker `(open, high, low, last, volume, quote_volume, trades)`, or None.
    #[allow(clippy::type_complexity)]
    fn ticker(&self, market: u32) -> PyResult<Option<(i64, i64, i64, i64, i64, i128, u64)>> {
        let md = self.x.market_data(market).ok_or_else(|| unknown_market(market))?;
        Ok(md.ticker(self.x.now()).map(|t| (t.open, t.high, t.low, t.last, t.volume, t.quote_volume, t.trades)))
    }

    /// An account's open orders as dicts (market, and the book's view of the order).
    fn open_orders<'py>(&self, py: Python<'py>, account: u32) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let ids = self.x.open_orders(account).ok_or_else(|| PyValueError::new_err(format!("account: no account {account}")))?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let (_, market, _, held) = self.x.order_hold(id).expect("open order has a hold");
            let d = PyDict::new(py);
            d.set_item("order_id", id)?;
            d.set_item("market", market)?;
            d.set_item("held", held)?;
            match self.x.book(market).and_then(|b| b.order(id)) {
                Some(OrderStatus::Resting(o)) => {
                    d.set_item("status", "resting")?;
                    d.set_item("side", o.side as u8)?;
                    d.set_item("price", o.price)?;
                    d.set_item("visible", o.visible)?;
                    d.set_item("hidden", o.hidden)?;
                }
                Some(OrderStatus::Pending(p)) => {
                    d.set_item("status", if p.active { "pending" } else { "inactive" })?;
                    d.set_item("side", p.side as u8)?;
                    d.set_item("order_type", p.order_type as u8)?;
                    d.set_item("trigger", p.trigger)?;
                    d.set_item("price", p.price)?;
                    d.set_item("qty", p.qty)?;
                }
                None => unreachable!("open order is in its book"),
            }
            out.push(d);
        }
        Ok(out)
    }

    /// An account's recent fills `(ts, order_id, market, side, maker, price, qty, fee)`, oldest first.
    #[allow(clippy::type_complexity)]
    fn recent_fills(&self, account: u32) -> PyResult<Vec<(u64, u64, u32, u8, bool, i64, i64, i64)>> {
        let h = self.x.recent_fills(account).ok_or_else(|| PyValueError::new_err(format!("account: no account {account}")))?;
        Ok(h.iter().map(|f| (f.ts, f.order_id, f.market, f.side as u8, f.maker, f.price, f.qty, f.fee)).collect())
    }

    /// The whole state as canonical bytes (equal states, equal bytes).
    fn snapshot<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.x.snapshot())
    }

    /// Replaces the state with a snapshot's (ValueError if invalid; unchanged then).
    fn load_snapshot(&mut self, data: &[u8]) -> PyResult<()> {
        self.x = Exchange::restore(data).map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(())
    }

    fn check_invariants(&self) -> PyResult<()> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.x.check_invariants()))
            .map_err(|_| pyo3::exceptions::PyAssertionError::new_err("exchange invariant broken (see stderr)"))
    }
}

fn unknown_market(market: u32) -> PyErr {
    PyValueError::new_err(format!("market: no market {market}"))
}

impl PyExchange {
    fn book(&self, market: u32) -> PyResult<&lxdex_engine::Book> {
        self.x.book(market).ok_or_else(|| PyValueError::new_err(format!("market: no market {market}")))
    }
}

fn ledger_reject(e: lxdex_engine::ledger::LedgerError) -> Reject {
    use lxdex_engine::ledger::LedgerError as L;
    use lxdex_engine::Reason as R;
    Reject {
        reason: match e {
            L::UnknownAccount => R::UnknownAccount,
            L::UnknownAsset => R::UnknownAsset,
            L::InvalidAmount => R::InvalidAmount,
            L::InsufficientFunds => R::InsufficientFunds,
            L::Overflow => R::Overflow,
        },
    }
}
