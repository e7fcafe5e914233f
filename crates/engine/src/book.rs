//! One market's order book: price-time priority matching with every order
//! type of `docs/engine.md`.
//!
//! Layout, chosen for a flow where most activity is near the top of book:
//! - resting orders live in a slab (`Vec<Order>` + free list) and each price
//!   level is an intrusive doubly linked FIFO through the slab; a slot is
//!   64 bytes, the fields only some orders have (iceberg display size, GTD
//!   expiry, bracket/OCO group) in a parallel `extras` vector;
//! - each side keeps its levels in a sorted `Vec`, best level *last*, so the
//!   common operations (match at the top, add near the top) touch the end;
//! - order ids map to slab slots through an `IdMap` (`idmap.rs`) (open addressing,
//!   id and slot inline: one cache miss a lookup, prefetchable);
//! - conditional orders (stops, take-profits, trailing stops, bracket
//!   children) wait in a `BTreeMap` by arrival sequence, indexed by trigger
//!   price, so a price observation costs one range probe when nothing fires.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rustc_hash::FxHashMap;

use crate::idmap::{prefetch, IdMap};

use crate::types::*;

mod snapshot;
pub use crate::codec::SnapshotError;

const NIL: u32 = u32::MAX;

/// A resting order in the slab: 64 bytes. What only some orders have (an
/// iceberg's display size, a GTD expiry, a bracket or OCO group) is in
/// `Book::extras` at the same slot, flagged by `extra`.
#[derive(Clone, Debug)]
struct Order {
    id: u64, // 0 marks a free slab slot
    owner: u64,
    price: i64,
    visible: i64,
    hidden: i64,
    seq: u64,
    prev: u32,
    next: u32,
    side: Side,
    tif: Tif,
    stp: Stp,
    post_only: bool,
    extra: bool,
}

const _: () = assert!(std::mem::size_of::<Order>() == 64);

/// The rarely set fields of a resting order (all 0: none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Extra {
    display: i64,
    expire_ts: u64,
    group: u64,
}

#[derive(Clone, Copy, Debug)]
struct Level {
    head: u32,
    tail: u32,
    count: u32,
    visible: i64,
}

/// One side's levels, sorted by key ascending with the best level last.
/// The key is the price for bids and the negated price for asks.
#[derive(Clone, Debug, Default)]
struct Ladder {
    keys: Vec<i64>,
    levels: Vec<Level>,
    /// Empty placeholder levels (never the last one).
    empty: usize,
}

impl Ladder {
    #[inline]
    fn key(side: Side, price: i64) -> i64 {
        match side {
            Side::Buy => price,
            Side::Sell => -price,
        }
    }
    #[inline]
    fn price(side: Side, key: i64) -> i64 {
        match side {
            Side::Buy => key,
            Side::Sell => -key,
        }
    }
    /// A level emptied. The best level (the last) and any empty levels
    /// behind it are dropped at once, so the last level is never empty; an
    /// empty level deeper in the book stays as a placeholder (no memmove of
    /// the levels above it) to be reused if its price comes back, and the
    /// placeholders are swept when they outnumber the live levels.
    fn remove_empty(&mut self, li: usize) {
        if li + 1 == self.levels.len() {
            self.levels.pop();
            self.keys.pop();
            while self.levels.last().is_some_and(|l| l.count == 0) {
                self.levels.pop();
                self.keys.pop();
                self.empty -= 1;
            }
        } else {
            self.empty += 1;
            if self.empty > 64 && self.empty * 2 > self.levels.len() {
                let mut k = 0;
                for i in 0..self.levels.len() {
                    if self.levels[i].count > 0 {
                        self.levels[k] = self.levels[i];
                        self.keys[k] = self.keys[i];
                        k += 1;
                    }
                }
                self.levels.truncate(k);
                self.keys.truncate(k);
                self.empty = 0;
            }
        }
    }

    /// Levels with orders, best first.
    fn live_levels(&self) -> impl Iterator<Item = (&i64, &Level)> {
        self.keys.iter().zip(&self.levels).rev().filter(|(_, l)| l.count > 0)
    }

    #[inline]
    fn find(&self, key: i64) -> Result<usize, usize> {
        // Most lookups are at or near the top (the end): try it first.
        match self.keys.last() {
            Some(&k) if k == key => Ok(self.keys.len() - 1),
            Some(&k) if k < key => Err(self.keys.len()),
            _ => self.keys.binary_search(&key),
        }
    }
}

/// A waiting conditional order or bracket child.
#[derive(Clone, Debug)]
struct Cond {
    id: u64,
    owner: u64,
    side: Side,
    order_type: OrderType,
    price: i64,
    qty: i64,
    tif: Tif,
    stp: Stp,
    expire_ts: u64,
    seq: u64,
    /// Trigger price, or a trailing stop's amount.
    trigger: i64,
    trail_bps: bool,
    /// A trailing stop's peak (sell) or trough (buy); 0 while unset.
    reference: i64,
    /// Iceberg display quantity once triggered (limit types), else 0.
    display: i64,
    active: bool,
    queued: bool,
    group: u64,
}

impl Cond {
    /// Whether it fires on `P >= trigger` (else on `P <= trigger`).
    #[inline]
    fn fires_upward(&self) -> bool {
        match self.order_type {
            OrderType::StopMarket | OrderType::StopLimit | OrderType::TrailingStop => {
                self.side == Side::Buy
            }
            _ => self.side == Side::Sell,
        }
    }
    /// The current trigger price (a trailing stop's moves), 0 if none yet.
    fn trigger_price(&self) -> i64 {
        if self.order_type != OrderType::TrailingStop {
            return self.trigger;
        }
        if self.reference == 0 {
            return 0;
        }
        let offset = if self.trail_bps {
            ((self.reference as i128 * self.trigger as i128) / 10_000).max(1) as i64
        } else {
            self.trigger
        };
        match self.side {
            Side::Sell => self.reference - offset,
            Side::Buy => self.reference.saturating_add(offset),
        }
    }
    #[inline]
    fn holds(&self, p: i64) -> bool {
        let t = self.trigger_price();
        if self.order_type == OrderType::TrailingStop && self.reference == 0 {
            return false;
        }
        if self.fires_upward() {
            p >= t
        } else {
            p <= t
        }
    }
}

/// A bracket (entry + two children) or an OCO pair (two legs).
#[derive(Clone, Debug)]
struct Group {
    /// The entry's order id while it is live, else 0.
    entry: u64,
    filled: i64,
    /// Seq of the take-profit child/leg while live, else 0.
    tp: u64,
    /// Seq of the stop-loss child/leg while live, else 0.
    sl: u64,
}

/// An order executing against the book.
#[derive(Clone, Debug)]
struct Taker {
    id: u64,
    owner: u64,
    side: Side,
    /// `Limit` or `Market`.
    order_type: OrderType,
    /// Limit price; 0 for market orders.
    price: i64,
    /// Worst price it may trade at.
    bound: i64,
    remaining: i64,
    display: i64,
    tif: Tif,
    stp: Stp,
    expire_ts: u64,
    seq: u64,
    group: u64,
    post_only: bool,
}

/// A resting order as seen by queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestingOrder {
    pub order_id: u64,
    pub owner: u64,
    pub side: Side,
    pub price: i64,
    pub visible: i64,
    pub hidden: i64,
}

/// A waiting conditional order (or bracket child) as seen by queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingOrder {
    pub order_id: u64,
    pub owner: u64,
    pub side: Side,
    pub order_type: OrderType,
    /// Current trigger price (trailing stops: from their reference; 0 if none yet).
    pub trigger: i64,
    /// Limit price, 0 for market-type.
    pub price: i64,
    pub qty: i64,
    /// False for a bracket child whose entry has not filled yet.
    pub active: bool,
}

/// One aggregated price level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepthLevel {
    pub price: i64,
    pub visible: i64,
    pub count: u32,
}

/// Where a live order is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderStatus {
    Resting(RestingOrder),
    Pending(PendingOrder),
}

pub(crate) struct Validated {
    id: u64,
    owner: u64,
    side: Side,
    order_type: OrderType,
    tif: Tif,
    stp: Stp,
    post_only: bool,
    trail_bps: bool,
    price: i64,
    qty: i64,
    trigger: i64,
    display: i64,
    expire_ts: u64,
}

/// One market's order book. Deterministic: the same commands give the same
/// events, byte for byte.
#[derive(Clone, Debug)]
pub struct Book {
    tick_size: i64,
    lot_size: i64,
    now: u64,
    last_price: Option<i64>,
    next_seq: u64,
    bids: Ladder,
    asks: Ladder,
    orders: Vec<Order>,
    /// `extras[i]` belongs to `orders[i]` where that has `extra` set (the
    /// vector reaches only as far as the last such slot).
    extras: Vec<Extra>,
    free: Vec<u32>,
    index: IdMap<u32>,
    conds: BTreeMap<u64, Cond>,
    cond_ids: FxHashMap<u64, u64>,
    /// The largest id ever put in `index` or `cond_ids` (not part of the
    /// state): a larger id is not live without a lookup, which is every
    /// new order of the exchange (its ids only grow).
    max_id: u64,
    fire_up: BTreeSet<(i64, u64)>,
    fire_down: BTreeSet<(i64, u64)>,
    trailing: BTreeSet<u64>,
    groups: FxHashMap<u64, Group>,
    expiry: BTreeSet<(u64, u64, u64)>,
    queue: VecDeque<(u64, i64)>,
    scratch: Vec<u64>,
    /// Levels whose visible quantity changed, while depth tracking is on.
    dirty: Option<Vec<(Side, i64)>>,
}

impl Default for Book {
    fn default() -> Self {
        Book::new(1, 1)
    }
}

#[inline]
fn ev(kind: EventKind, id: u64, owner: u64, side: Side, order_type: OrderType) -> Event {
    Event { order_id: id, owner, side, order_type, ..Event::new(kind) }
}

impl Book {
    /// A book whose prices are multiples of `tick_size` and quantities
    /// multiples of `lot_size` (both ≥ 1).
    pub fn new(tick_size: i64, lot_size: i64) -> Book {
        assert!(tick_size >= 1 && lot_size >= 1, "tick_size and lot_size must be >= 1");
        Book {
            tick_size,
            lot_size,
            now: 0,
            last_price: None,
            next_seq: 1,
            bids: Ladder::default(),
            asks: Ladder::default(),
            orders: Vec::new(),
            extras: Vec::new(),
            free: Vec::new(),
            index: IdMap::default(),
            conds: BTreeMap::new(),
            cond_ids: FxHashMap::default(),
            max_id: 0,
            fire_up: BTreeSet::new(),
            fire_down: BTreeSet::new(),
            trailing: BTreeSet::new(),
            groups: FxHashMap::default(),
            expiry: BTreeSet::new(),
            queue: VecDeque::new(),
            scratch: Vec::new(),
            dirty: None,
        }
    }

    // ------------------------------------------------------------------
    // Commands
    // ------------------------------------------------------------------

    /// Applies any command. On rejection nothing changes and the error says why.
    pub fn apply(&mut self, cmd: &Command, out: &mut Vec<Event>) -> Result<(), Reject> {
        match *cmd {
            Command::Submit(ref r) => self.submit(r, out),
            Command::Bracket(ref r) => self.bracket(r, out),
            Command::Oco(ref r) => self.oco(r, out),
            Command::Cancel { order_id } => self.cancel(order_id, out),
            Command::Amend { order_id, price, qty } => self.amend(order_id, price, qty, out),
            Command::MassCancel { owner } => self.mass_cancel(owner, out),
            Command::AdvanceTime { ts } => self.advance_time(ts, out),
            Command::ObservePrice { price } => self.observe_price(price, out),
        }
    }

    /// Submits a new order (any type).
    pub fn submit(&mut self, req: &OrderRequest, out: &mut Vec<Event>) -> Result<(), Reject> {
        let v = self.validate(req)?;
        self.submit_validated(v, out);
        Ok(())
    }

    /// Validates an order as [`Book::submit`] would, changing nothing; the
    /// result is for [`Book::submit_validated`] while the book is unchanged.
    pub(crate) fn validated(&self, req: &OrderRequest) -> Result<Validated, Reject> {
        self.validate(req)
    }

    /// [`Book::submit`] of an order [`Book::validated`] accepted, the book
    /// not having changed since (the exchange checks, then takes the hold,
    /// then submits: one validation, not two).
    pub(crate) fn submit_validated(&mut self, v: Validated, out: &mut Vec<Event>) {
        let seq = self.take_seq();
        out.push(Event {
            price: if v.order_type.is_market_type() { 0 } else { v.price },
            qty: v.qty,
            ..ev(EventKind::Accepted, v.id, v.owner, v.side, v.order_type)
        });
        if v.order_type.is_conditional() {
            let c = Cond {
                id: v.id,
                owner: v.owner,
                side: v.side,
                order_type: v.order_type,
                price: v.price,
                qty: v.qty,
                tif: v.tif,
                stp: v.stp,
                expire_ts: v.expire_ts,
                seq,
                trigger: v.trigger,
                trail_bps: v.trail_bps,
                reference: 0,
                display: v.display,
                active: true,
                queued: false,
                group: 0,
            };
            self.place_cond(c);
            self.check_at_placement(seq);
        } else {
            let t = self.taker_from(&v, seq, 0);
            self.run_new(t, out);
        }
        self.process_triggers(out);
    }

    /// Checks a bracket as [`Book::bracket`] would, changing nothing.
    pub fn check_bracket(&self, r: &BracketRequest) -> Result<(), Reject> {
        self.check_bracket_validated(r).map(|_| ())
    }

    fn check_bracket_validated(&self, r: &BracketRequest) -> Result<Validated, Reject> {
        let entry = OrderRequest {
            order_id: r.order_id,
            owner: r.owner,
            side: r.side,
            order_type: if r.price > 0 { OrderType::Limit as u8 } else { OrderType::Market as u8 },
            tif: r.tif,
            stp: r.stp,
            flags: r.flags & !FLAG_TRAIL_BPS,
            price: r.price,
            qty: r.qty,
            trigger_price: 0,
            display_qty: 0,
            expire_ts: r.expire_ts,
        };
        let v = self.validate(&entry)?;
        let legs = &r.exits;
        self.validate_legs(legs, &[v.id])?;
        let child_side = v.side.opposite();
        if !legs_ordered(child_side, legs) {
            return Err(Reason::InvalidBracket.into());
        }
        if v.order_type == OrderType::Limit {
            let ok = match v.side {
                Side::Buy => legs.sl_trigger < v.price && v.price < legs.tp_trigger,
                Side::Sell => legs.tp_trigger < v.price && v.price < legs.sl_trigger,
            };
            if !ok {
                return Err(Reason::InvalidBracket.into());
            }
        }
        Ok(v)
    }

    /// Submits a bracket: an entry whose fills activate a take-profit and a
    /// stop-loss child (one-cancels-other) on the opposite side.
    pub fn bracket(&mut self, r: &BracketRequest, out: &mut Vec<Event>) -> Result<(), Reject> {
        let v = self.check_bracket_validated(r)?;
        let legs = &r.exits;
        let child_side = v.side.opposite();
        let seq = self.take_seq();
        let (tp_seq, sl_seq) = (self.take_seq(), self.take_seq());
        out.push(Event {
            price: v.price,
            qty: v.qty,
            ..ev(EventKind::Accepted, v.id, v.owner, v.side, v.order_type)
        });
        let (tp, sl) = self.exit_conds(legs, v.owner, child_side, 0, v.stp, tp_seq, sl_seq, seq, false);
        for c in [tp, sl] {
            out.push(Event {
                price: c.price,
                ..ev(EventKind::Accepted, c.id, c.owner, c.side, c.order_type)
            });
            self.place_cond(c);
        }
        self.groups.insert(seq, Group { entry: v.id, filled: 0, tp: tp_seq, sl: sl_seq });
        let t = self.taker_from(&v, seq, seq);
        self.run_new(t, out);
        self.process_triggers(out);
        Ok(())
    }

    /// Checks a one-cancels-other pair as [`Book::oco`] would, changing
    /// nothing; returns its side and self-trade prevention mode.
    pub fn check_oco(&self, r: &OcoRequest) -> Result<(Side, Stp), Reject> {
        let side = Side::from_u8(r.side).ok_or(Reason::InvalidSide)?;
        let stp = Stp::from_u8(r.stp).ok_or(Reason::InvalidStp)?;
        self.check_qty(r.qty)?;
        self.validate_legs(&r.legs, &[])?;
        if !legs_ordered(side, &r.legs) {
            return Err(Reason::InvalidBracket.into());
        }
        Ok((side, stp))
    }

    /// Submits a one-cancels-other pair: a take-profit and a stop-loss on `side`.
    pub fn oco(&mut self, r: &OcoRequest, out: &mut Vec<Event>) -> Result<(), Reject> {
        let (side, stp) = self.check_oco(r)?;
        let legs = &r.legs;
        let (tp_seq, sl_seq) = (self.take_seq(), self.take_seq());
        let (tp, sl) = self.exit_conds(legs, r.owner, side, r.qty, stp, tp_seq, sl_seq, tp_seq, true);
        for c in [tp, sl] {
            out.push(Event {
                price: c.price,
                qty: c.qty,
                ..ev(EventKind::Accepted, c.id, c.owner, c.side, c.order_type)
            });
            self.place_cond(c);
        }
        self.groups.insert(tp_seq, Group { entry: 0, filled: 0, tp: tp_seq, sl: sl_seq });
        self.check_at_placement(tp_seq);
        self.check_at_placement(sl_seq);
        self.process_triggers(out);
        Ok(())
    }

    /// Cancels a live order (resting, conditional, or bracket child).
    pub fn cancel(&mut self, order_id: u64, out: &mut Vec<Event>) -> Result<(), Reject> {
        if let Some(idx) = self.index.get(order_id) {
            self.cancel_resting(idx, Reason::User, out);
        } else if let Some(&seq) = self.cond_ids.get(&order_id) {
            self.cancel_cond(seq, Reason::User, true, out);
        } else {
            return Err(Reason::UnknownOrder.into());
        }
        self.process_triggers(out);
        Ok(())
    }

    /// Amends a resting order's price and/or remaining quantity (0 keeps it).
    /// Lowering the quantity at the same price keeps queue priority; anything
    /// else re-enters the order at the back (trading first if it crosses).
    pub fn amend(&mut self, order_id: u64, price: i64, qty: i64, out: &mut Vec<Event>) -> Result<(), Reject> {
        let (idx, new_price, new_qty) = self.check_amend(order_id, price, qty)?;
        let o = &self.orders[idx as usize];
        let total = o.visible + o.hidden;
        out.push(Event {
            price: new_price,
            qty: new_qty,
            ..ev(EventKind::Amended, o.id, o.owner, o.side, OrderType::Limit)
        });
        if new_price == o.price && new_qty <= total {
            let (side, old_visible) = (o.side, o.visible);
            let new_visible = old_visible.min(new_qty);
            let o = &mut self.orders[idx as usize];
            o.visible = new_visible;
            o.hidden = new_qty - new_visible;
            let ladder = self.ladder_mut(side);
            let li = ladder.find(Ladder::key(side, new_price)).expect("resting order has a level");
            ladder.levels[li].visible += new_visible - old_visible;
            self.touch(side, new_price);
        } else {
            let (o, x) = self.unlink_resting(idx);
            let t = Taker {
                id: o.id,
                owner: o.owner,
                side: o.side,
                order_type: OrderType::Limit,
                price: new_price,
                bound: new_price,
                remaining: new_qty,
                display: x.display,
                tif: o.tif,
                stp: o.stp,
                expire_ts: x.expire_ts,
                seq: o.seq,
                group: x.group,
                post_only: o.post_only,
            };
            self.execute(t, out);
        }
        self.process_triggers(out);
        Ok(())
    }

    /// Validates an amend as `amend` would, without changing anything.
    /// Returns the order's slot, its new price and its new remaining quantity.
    pub fn check_amend(&self, order_id: u64, price: i64, qty: i64) -> Result<(u32, i64, i64), Reject> {
        let idx = match self.index.get(order_id) {
            Some(idx) => idx,
            None if self.cond_ids.contains_key(&order_id) => return Err(Reason::NotAmendable.into()),
            None => return Err(Reason::UnknownOrder.into()),
        };
        if price == 0 && qty == 0 {
            return Err(Reason::InvalidAmend.into());
        }
        if price != 0 {
            self.check_price(price)?;
        }
        if qty != 0 {
            self.check_qty(qty)?;
        }
        let o = &self.orders[idx as usize];
        let new_price = if price == 0 { o.price } else { price };
        let new_qty = if qty == 0 { o.visible + o.hidden } else { qty };
        if o.post_only && self.crosses(o.side, new_price) {
            return Err(Reason::WouldTake.into());
        }
        Ok((idx, new_price, new_qty))
    }

    /// Cancels every live order of `owner`, in arrival order.
    pub fn mass_cancel(&mut self, owner: u64, out: &mut Vec<Event>) -> Result<(), Reject> {
        let mut live: Vec<(u64, u64)> = self
            .orders
            .iter()
            .filter(|o| o.id != 0 && o.owner == owner)
            .map(|o| (o.seq, o.id))
            .chain(self.conds.values().filter(|c| c.owner == owner).map(|c| (c.seq, c.id)))
            .collect();
        live.sort_unstable();
        for (seq, id) in live {
            self.cancel_if_live(id, seq, Reason::User, out);
        }
        self.process_triggers(out);
        Ok(())
    }

    /// Cancels order `id` (with cascades) if it is still the live order that
    /// arrived as `seq` (an earlier cascade may have taken it, or the id may
    /// have been reused).
    fn cancel_if_live(&mut self, id: u64, seq: u64, reason: Reason, out: &mut Vec<Event>) {
        if let Some(idx) = self.index.get(id) {
            if self.orders[idx as usize].seq == seq {
                self.cancel_resting(idx, reason, out);
            }
        } else if self.cond_ids.get(&id) == Some(&seq) {
            self.cancel_cond(seq, reason, true, out);
        }
    }

    /// Moves the book's clock to `ts`, expiring GTD orders with `expire_ts <= ts`.
    pub fn advance_time(&mut self, ts: u64, out: &mut Vec<Event>) -> Result<(), Reject> {
        if ts < self.now {
            return Err(Reason::InvalidTime.into());
        }
        self.now = ts;
        while let Some(&(exp, seq, id)) = self.expiry.first() {
            if exp > ts {
                break;
            }
            self.expiry.pop_first();
            self.cancel_if_live(id, seq, Reason::Expired, out);
        }
        self.process_triggers(out);
        Ok(())
    }

    /// Observes an external price (e.g. a mark price) for triggers.
    pub fn observe_price(&mut self, price: i64, out: &mut Vec<Event>) -> Result<(), Reject> {
        if !(1..=MAX_PRICE).contains(&price) {
            return Err(Reason::InvalidPrice.into());
        }
        self.observe(price);
        self.process_triggers(out);
        Ok(())
    }

    // ------------------------------------------------------------------
    // Queries
    // ------------------------------------------------------------------

    /// Price unit every price must be a multiple of.
    pub fn tick_size(&self) -> i64 {
        self.tick_size
    }
    /// Quantity unit every quantity must be a multiple of.
    pub fn lot_size(&self) -> i64 {
        self.lot_size
    }
    /// The book's clock.
    pub fn now(&self) -> u64 {
        self.now
    }
    /// The most recent observed price (trade or `observe_price`).
    pub fn last_price(&self) -> Option<i64> {
        self.last_price
    }
    /// Highest bid price.
    pub fn best_bid(&self) -> Option<i64> {
        self.bids.keys.last().map(|&k| Ladder::price(Side::Buy, k))
    }
    /// Lowest ask price.
    pub fn best_ask(&self) -> Option<i64> {
        self.asks.keys.last().map(|&k| Ladder::price(Side::Sell, k))
    }
    /// Number of orders resting in the book.
    pub fn len(&self) -> usize {
        self.index.len()
    }
    /// Whether no order rests in the book.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
    /// Number of waiting conditional orders and bracket children.
    pub fn pending_len(&self) -> usize {
        self.conds.len()
    }
    /// Visible quantity resting at `price` on `side`.
    pub fn volume_at(&self, side: Side, price: i64) -> i64 {
        let ladder = self.ladder(side);
        match ladder.find(Ladder::key(side, price)) {
            Ok(i) => ladder.levels[i].visible,
            Err(_) => 0,
        }
    }
    /// The best `n` levels of a side, best first.
    pub fn depth(&self, side: Side, n: usize) -> Vec<DepthLevel> {
        let ladder = self.ladder(side);
        ladder
            .live_levels()
            .take(n)
            .map(|(&k, l)| DepthLevel { price: Ladder::price(side, k), visible: l.visible, count: l.count })
            .collect()
    }
    /// Every resting order: bids best to worst, then asks, each level in queue order.
    pub fn l3(&self) -> Vec<RestingOrder> {
        let mut all = Vec::with_capacity(self.index.len());
        for side in [Side::Buy, Side::Sell] {
            for (_, level) in self.ladder(side).live_levels() {
                let mut i = level.head;
                while i != NIL {
                    all.push(self.resting(i));
                    i = self.orders[i as usize].next;
                }
            }
        }
        all
    }
    /// Every waiting conditional order and bracket child, in arrival order.
    pub fn pending(&self) -> Vec<PendingOrder> {
        self.conds.values().map(pending_of).collect()
    }
    /// The live order with this id.
    pub fn order(&self, order_id: u64) -> Option<OrderStatus> {
        if let Some(idx) = self.index.get(order_id) {
            Some(OrderStatus::Resting(self.resting(idx)))
        } else {
            self.cond_ids.get(&order_id).map(|seq| OrderStatus::Pending(pending_of(&self.conds[seq])))
        }
    }

    fn resting(&self, idx: u32) -> RestingOrder {
        let o = &self.orders[idx as usize];
        RestingOrder { order_id: o.id, owner: o.owner, side: o.side, price: o.price, visible: o.visible, hidden: o.hidden }
    }

    /// Checks every internal invariant; panics with a description if one is
    /// broken. For tests.
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        let mut seen = 0usize;
        for side in [Side::Buy, Side::Sell] {
            let ladder = self.ladder(side);
            assert_eq!(ladder.keys.len(), ladder.levels.len());
            assert!(ladder.keys.windows(2).all(|w| w[0] < w[1]), "levels sorted");
            for (&k, level) in ladder.keys.iter().zip(&ladder.levels) {
                let price = Ladder::price(side, k);
                let (mut count, mut visible, mut prev, mut i) = (0u32, 0i64, NIL, level.head);
                while i != NIL {
                    let o = &self.orders[i as usize];
                    assert!(o.id != 0 && o.side == side && o.price == price);
                    assert!(o.visible > 0 && o.hidden >= 0, "resting order has visible quantity");
                    assert!(!o.extra || (i as usize) < self.extras.len(), "extra fields stored");
                    let display = self.extra(i).display;
                    assert!(display == 0 || o.visible <= display);
                    assert_eq!(o.prev, prev);
                    assert_eq!(self.index.get(o.id), Some(i));
                    count += 1;
                    visible += o.visible;
                    prev = i;
                    i = o.next;
                }
                assert_eq!(level.tail, prev);
                assert!(count == level.count, "level count");
                assert_eq!(visible, level.visible, "level visible total");
                seen += count as usize;
            }
        }
        assert_eq!(seen, self.index.len(), "every indexed order is in a level");
        for side in [Side::Buy, Side::Sell] {
            let ladder = self.ladder(side);
            assert!(ladder.levels.last().is_none_or(|l| l.count > 0), "the best level is never empty");
            assert_eq!(ladder.empty, ladder.levels.iter().filter(|l| l.count == 0).count(), "empty placeholders counted");
        }
        assert_eq!(self.orders.iter().filter(|o| o.id != 0).count(), seen);
        if let (Some(b), Some(a)) = (self.best_bid(), self.best_ask()) {
            assert!(b < a, "book crossed: bid {b} >= ask {a}");
        }
        assert_eq!(self.conds.len(), self.cond_ids.len());
        for (&seq, c) in &self.conds {
            assert_eq!(self.cond_ids.get(&c.id), Some(&seq));
            assert!(!self.index.contains_key(c.id));
            let indexed = if c.order_type == OrderType::TrailingStop {
                self.trailing.contains(&seq)
            } else if c.fires_upward() {
                self.fire_up.contains(&(c.trigger, seq))
            } else {
                self.fire_down.contains(&(c.trigger, seq))
            };
            assert_eq!(indexed, c.active && !c.queued, "trigger index of {}", c.id);
        }
        assert_eq!(self.fire_up.len() + self.fire_down.len() + self.trailing.len(),
                   self.conds.values().filter(|c| c.active && !c.queued).count());
        assert!(self.queue.is_empty(), "trigger queue drained between commands");
    }

    /// Validates an order as `submit` would, without changing anything.
    pub fn check(&self, req: &OrderRequest) -> Result<(), Reject> {
        self.validate(req).map(|_| ())
    }

    /// Walks the side opposite to `side` from the best level, within `bound`
    /// (buy: prices <= bound; sell: >= bound), over visible and hidden
    /// quantity, skipping `owner`'s orders when `skip_owner`, until `qty`
    /// lots are covered. Returns `(lots covered, sum of price x lots)`: an
    /// upper bound of what a taker of `qty` would pay (its own orders are
    /// skipped or stop it; neither makes it pay more). `per_lot(price)` is
    /// the cost of one lot at a price (e.g. price alone, or with a fee).
    pub fn cost_to_fill(
        &self,
        side: Side,
        qty: i64,
        bound: i64,
        owner: u64,
        skip_owner: bool,
        per_lot: impl Fn(i64) -> i128,
    ) -> (i64, i128) {
        let opp = side.opposite();
        let ladder = self.ladder(opp);
        let (mut need, mut cost) = (qty, 0i128);
        for (&key, level) in ladder.keys.iter().zip(&ladder.levels).rev() {
            let price = Ladder::price(opp, key);
            let crosses = match side {
                Side::Buy => price <= bound,
                Side::Sell => price >= bound,
            };
            if !crosses || need == 0 {
                break;
            }
            let mut i = level.head;
            while i != NIL && need > 0 {
                let o = &self.orders[i as usize];
                if !(skip_owner && o.owner == owner) {
                    let n = need.min(o.visible + o.hidden);
                    need -= n;
                    cost += per_lot(price) * n as i128;
                }
                i = o.next;
            }
        }
        (qty - need, cost)
    }

    /// Walks the side opposite to `side` from the best level as
    /// [`Book::cost_to_fill`] does, and counts the lots a taker can take
    /// for at most `budget`, the best lots first (a taker of n lots takes
    /// the best n): from each resting order the most lots `n` with
    /// `cost(price, n, iceberg)` within what is left, stopping at the first
    /// order it cannot take whole. `cost` must grow with `n`; a taker fills a
    /// plain order in one fill, an iceberg in slices (`iceberg` true). At
    /// most `max_qty` lots. Returns `(lots, their cost)`.
    #[allow(clippy::too_many_arguments)]
    pub fn lots_within(
        &self,
        side: Side,
        budget: i128,
        bound: i64,
        owner: u64,
        skip_owner: bool,
        max_qty: i64,
        cost: impl Fn(i64, i64, bool) -> i128,
    ) -> (i64, i128) {
        let opp = side.opposite();
        let ladder = self.ladder(opp);
        let (mut lots, mut spent) = (0i64, 0i128);
        for (&key, level) in ladder.keys.iter().zip(&ladder.levels).rev() {
            let price = Ladder::price(opp, key);
            let crosses = match side {
                Side::Buy => price <= bound,
                Side::Sell => price >= bound,
            };
            if !crosses {
                break;
            }
            let mut i = level.head;
            while i != NIL {
                let o = &self.orders[i as usize];
                if !(skip_owner && o.owner == owner) {
                    let whole = o.visible + o.hidden;
                    let iceberg = o.hidden > 0;
                    // The most lots of this order that fit: binary search on a growing cost.
                    let (mut lo, mut hi) = (0i64, whole.min(max_qty - lots));
                    while lo < hi {
                        let mid = lo + (hi - lo + 1) / 2;
                        if spent + cost(price, mid, iceberg) <= budget {
                            lo = mid;
                        } else {
                            hi = mid - 1;
                        }
                    }
                    if lo > 0 {
                        lots += lo;
                        spent += cost(price, lo, iceberg);
                    }
                    if lo < whole {
                        return (lots, spent);
                    }
                }
                i = o.next;
            }
        }
        (lots, spent)
    }

    // ------------------------------------------------------------------
    // Cache hints (no effect on the state)
    // ------------------------------------------------------------------

    /// Brings in what a coming command on live order `id` will read, one
    /// step of a pipeline run over the next rows of a batch: `stage` 0 its
    /// index bucket; 1 its slot (reading the index, in cache by then).
    #[inline]
    pub(crate) fn prefetch_order(&self, id: u64, stage: u8) {
        if stage == 0 {
            self.index.prefetch(id);
            return;
        }
        if let Some(idx) = self.index.get(id) {
            prefetch(self.orders.as_ptr().wrapping_add(idx as usize));
        }
    }

    /// Brings in what a coming new order `id` (a guess: a hint either
    /// way) will write if it rests: stage 0 its index bucket, stage 1 the
    /// slab slot it would take.
    #[inline]
    pub(crate) fn prefetch_new(&self, id: u64, stage: u8) {
        match stage {
            0 => self.index.prefetch(id),
            1 => {
                if let Some(&slot) = self.free.last() {
                    prefetch(self.orders.as_ptr().wrapping_add(slot as usize));
                }
            }
            _ => {}
        }
    }

    // ------------------------------------------------------------------
    // Validation
    // ------------------------------------------------------------------

    fn is_live(&self, id: u64) -> bool {
        id <= self.max_id && (self.index.contains_key(id) || self.cond_ids.contains_key(&id))
    }

    fn check_qty(&self, qty: i64) -> Result<(), Reject> {
        if !(1..=MAX_QTY).contains(&qty) {
            return Err(Reason::InvalidQuantity.into());
        }
        if qty % self.lot_size != 0 {
            return Err(Reason::OffLotGrid.into());
        }
        Ok(())
    }

    fn check_price(&self, price: i64) -> Result<(), Reject> {
        if !(1..=MAX_PRICE).contains(&price) {
            return Err(Reason::InvalidPrice.into());
        }
        if price % self.tick_size != 0 {
            return Err(Reason::OffTickGrid.into());
        }
        Ok(())
    }

    fn validate(&self, r: &OrderRequest) -> Result<Validated, Reject> {
        let side = Side::from_u8(r.side).ok_or(Reason::InvalidSide)?;
        let order_type = OrderType::from_u8(r.order_type).ok_or(Reason::InvalidOrderType)?;
        let tif = Tif::from_u8(r.tif).ok_or(Reason::InvalidTif)?;
        let market_type = order_type.is_market_type();
        if market_type && !matches!(tif, Tif::Ioc | Tif::Fok) {
            return Err(Reason::InvalidTif.into());
        }
        let stp = Stp::from_u8(r.stp).ok_or(Reason::InvalidStp)?;
        if !r.flags_known() {
            return Err(Reason::InvalidFlags.into());
        }
        let post_only = r.flags & FLAG_POST_ONLY != 0;
        let trail_bps = r.flags & FLAG_TRAIL_BPS != 0;
        let resting_tif = matches!(tif, Tif::Gtc | Tif::Gtd);
        if post_only && !(order_type == OrderType::Limit && resting_tif) {
            return Err(Reason::InvalidFlags.into());
        }
        if trail_bps && order_type != OrderType::TrailingStop {
            return Err(Reason::InvalidFlags.into());
        }
        self.check_qty(r.qty)?;
        if !(market_type && r.price == 0) {
            self.check_price(r.price)?;
        }
        if order_type.has_trigger_price() {
            if !(1..=MAX_PRICE).contains(&r.trigger_price) {
                return Err(Reason::InvalidTrigger.into());
            }
            if r.trigger_price % self.tick_size != 0 {
                return Err(Reason::OffTickGrid.into());
            }
        } else if order_type == OrderType::TrailingStop {
            let max = if trail_bps { MAX_TRAIL_BPS } else { MAX_PRICE };
            if !(1..=max).contains(&r.trigger_price) {
                return Err(Reason::InvalidTrigger.into());
            }
            if !trail_bps && r.trigger_price % self.tick_size != 0 {
                return Err(Reason::OffTickGrid.into());
            }
        } else if r.trigger_price != 0 {
            return Err(Reason::InvalidTrigger.into());
        }
        if r.display_qty != 0 {
            let ok = !market_type
                && resting_tif
                && r.display_qty >= 1
                && r.display_qty < r.qty
                && r.display_qty % self.lot_size == 0;
            if !ok {
                return Err(Reason::InvalidDisplay.into());
            }
        }
        let expiry_ok = if tif == Tif::Gtd { r.expire_ts > self.now } else { r.expire_ts == 0 };
        if !expiry_ok {
            return Err(Reason::InvalidExpiry.into());
        }
        if r.order_id == 0 || self.is_live(r.order_id) {
            return Err(Reason::DuplicateId.into());
        }
        Ok(Validated {
            id: r.order_id,
            owner: r.owner,
            side,
            order_type,
            tif,
            stp,
            post_only,
            trail_bps,
            price: r.price,
            qty: r.qty,
            trigger: r.trigger_price,
            display: r.display_qty,
            expire_ts: r.expire_ts,
        })
    }

    fn validate_legs(&self, legs: &ExitLegs, other_ids: &[u64]) -> Result<(), Reject> {
        let bad = Err(Reason::InvalidBracket.into());
        let ids_ok = legs.tp_id != 0
            && legs.sl_id != 0
            && legs.tp_id != legs.sl_id
            && !other_ids.contains(&legs.tp_id)
            && !other_ids.contains(&legs.sl_id)
            && !self.is_live(legs.tp_id)
            && !self.is_live(legs.sl_id);
        if !ids_ok {
            return bad;
        }
        for p in [legs.tp_trigger, legs.sl_trigger] {
            if self.check_price(p).is_err() {
                return bad;
            }
        }
        for p in [legs.tp_price, legs.sl_price] {
            if p != 0 && self.check_price(p).is_err() {
                return bad;
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn exit_conds(
        &self,
        legs: &ExitLegs,
        owner: u64,
        side: Side,
        qty: i64,
        stp: Stp,
        tp_seq: u64,
        sl_seq: u64,
        group: u64,
        active: bool,
    ) -> (Cond, Cond) {
        let leg = |id, seq, trigger, price: i64, market, limit| Cond {
            id,
            owner,
            side,
            order_type: if price == 0 { market } else { limit },
            price,
            qty,
            tif: if price == 0 { Tif::Ioc } else { Tif::Gtc },
            stp,
            expire_ts: 0,
            seq,
            trigger,
            trail_bps: false,
            reference: 0,
            display: 0,
            active,
            queued: false,
            group,
        };
        (
            leg(legs.tp_id, tp_seq, legs.tp_trigger, legs.tp_price, OrderType::TakeProfitMarket, OrderType::TakeProfitLimit),
            leg(legs.sl_id, sl_seq, legs.sl_trigger, legs.sl_price, OrderType::StopMarket, OrderType::StopLimit),
        )
    }

    fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    // ------------------------------------------------------------------
    // Execution
    // ------------------------------------------------------------------

    fn taker_from(&self, v: &Validated, seq: u64, group: u64) -> Taker {
        let market = v.order_type == OrderType::Market;
        let bound = match (market, v.side) {
            (false, _) => v.price,
            (true, _) if v.price > 0 => v.price,
            (true, Side::Buy) => i64::MAX,
            (true, Side::Sell) => i64::MIN,
        };
        Taker {
            id: v.id,
            owner: v.owner,
            side: v.side,
            order_type: v.order_type,
            price: if market { 0 } else { v.price },
            bound,
            remaining: v.qty,
            display: v.display,
            tif: v.tif,
            stp: v.stp,
            expire_ts: v.expire_ts,
            seq,
            group,
            post_only: v.post_only,
        }
    }

    #[inline]
    fn crosses(&self, side: Side, bound: i64) -> bool {
        match side {
            Side::Buy => self.best_ask().is_some_and(|a| a <= bound),
            Side::Sell => self.best_bid().is_some_and(|b| b >= bound),
        }
    }

    fn taker_cancelled(&mut self, t: &Taker, reason: Reason, qty: i64, remaining: i64, out: &mut Vec<Event>) {
        out.push(Event {
            reason,
            price: t.price,
            qty,
            remaining,
            ..ev(EventKind::Cancelled, t.id, t.owner, t.side, t.order_type)
        });
    }

    /// A newly submitted (non-conditional) order, after `ACCEPTED`.
    fn run_new(&mut self, t: Taker, out: &mut Vec<Event>) {
        if t.post_only && self.crosses(t.side, t.bound) {
            self.taker_cancelled(&t, Reason::PostOnly, t.remaining, 0, out);
            self.order_left(t.group, out);
            return;
        }
        self.run_from_fok(t, out);
    }

    /// Spec step 3 on: the FOK check, the match, and the remainder.
    fn run_from_fok(&mut self, t: Taker, out: &mut Vec<Event>) {
        if t.tif == Tif::Fok && !self.fok_fillable(&t) {
            self.taker_cancelled(&t, Reason::Fok, t.remaining, 0, out);
            self.order_left(t.group, out);
            return;
        }
        self.execute(t, out);
    }

    /// Matches the taker, then rests or cancels what is left.
    fn execute(&mut self, mut t: Taker, out: &mut Vec<Event>) {
        if self.match_taker(&mut t, out) {
            self.order_left(t.group, out);
            return;
        }
        if t.remaining == 0 {
            self.order_left(t.group, out);
            return;
        }
        let reason = if t.order_type == OrderType::Market {
            Reason::MarketRemainder
        } else {
            match t.tif {
                Tif::Gtc | Tif::Gtd => {
                    self.rest(&t);
                    return;
                }
                Tif::Ioc => Reason::Ioc,
                Tif::Fok => unreachable!("a FOK order that passed its check fills completely"),
            }
        };
        self.taker_cancelled(&t, reason, t.remaining, 0, out);
        self.order_left(t.group, out);
    }

    /// Runs the taker against the book. Returns true if self-trade prevention
    /// cancelled the taker (its remaining quantity is then 0).
    fn match_taker(&mut self, t: &mut Taker, out: &mut Vec<Event>) -> bool {
        let opp = t.side.opposite();
        while t.remaining > 0 {
            let ladder = self.ladder(opp);
            let Some(&key) = ladder.keys.last() else { return false };
            let price = Ladder::price(opp, key);
            let crosses = match t.side {
                Side::Buy => price <= t.bound,
                Side::Sell => price >= t.bound,
            };
            if !crosses {
                return false;
            }
            let head = ladder.levels[ladder.levels.len() - 1].head;
            let m = &self.orders[head as usize];
            if m.owner == t.owner && t.stp != Stp::None {
                match t.stp {
                    Stp::CancelTaker => {
                        self.taker_cancelled(t, Reason::Stp, t.remaining, 0, out);
                        t.remaining = 0;
                        return true;
                    }
                    Stp::CancelMaker => {
                        self.cancel_resting(head, Reason::Stp, out);
                    }
                    Stp::CancelBoth => {
                        self.cancel_resting(head, Reason::Stp, out);
                        self.taker_cancelled(t, Reason::Stp, t.remaining, 0, out);
                        t.remaining = 0;
                        return true;
                    }
                    Stp::Decrement => {
                        let n = t.remaining.min(m.visible);
                        let (maker_left, mid, mowner, mside, mprice) =
                            (m.visible + m.hidden - n, m.id, m.owner, m.side, m.price);
                        out.push(Event {
                            reason: Reason::Stp,
                            price: mprice,
                            qty: n,
                            remaining: maker_left,
                            ..ev(EventKind::Cancelled, mid, mowner, mside, OrderType::Limit)
                        });
                        if let Some(group) = self.consume_head(opp, n) {
                            self.order_left(group, out);
                        }
                        t.remaining -= n;
                        self.taker_cancelled(t, Reason::Stp, n, t.remaining, out);
                        if t.remaining == 0 {
                            return true;
                        }
                    }
                    Stp::None => unreachable!(),
                }
                continue;
            }
            let n = t.remaining.min(m.visible);
            t.remaining -= n;
            out.push(Event {
                other_id: m.id,
                other_owner: m.owner,
                price,
                qty: n,
                remaining: t.remaining,
                other_remaining: m.visible + m.hidden - n,
                ..ev(EventKind::Fill, t.id, t.owner, t.side, t.order_type)
            });
            let maker_group = if m.extra { self.extras[head as usize].group } else { 0 };
            let maker_left = self.consume_head(opp, n);
            if maker_group != 0 {
                self.activate(maker_group, n, out);
            }
            if t.group != 0 {
                self.activate(t.group, n, out);
            }
            if let Some(group) = maker_left {
                self.order_left(group, out);
            }
            self.observe(price);
        }
        false
    }

    /// Takes `n` from the visible part of the best order on `side`, refilling
    /// an iceberg to the back of its level or removing an exhausted order.
    /// Returns `Some(group)` when the order left the book.
    fn consume_head(&mut self, side: Side, n: i64) -> Option<u64> {
        let li = self.ladder(side).levels.len() - 1;
        let head = self.ladder(side).levels[li].head;
        self.ladder_mut(side).levels[li].visible -= n;
        self.touch(side, Ladder::price(side, self.ladder(side).keys[li]));
        let o = &mut self.orders[head as usize];
        o.visible -= n;
        if o.visible > 0 {
            return None;
        }
        if o.hidden > 0 {
            debug_assert!(o.extra, "only icebergs hide quantity");
            let refill = self.extras[head as usize].display.min(o.hidden);
            o.hidden -= refill;
            o.visible = refill;
            let level = &mut self.ladder_mut(side).levels[li];
            level.visible += refill;
            if level.count > 1 {
                self.move_to_back(side, li, head);
            }
            return None;
        }
        let (_, x) = self.unlink_resting(head);
        Some(x.group)
    }

    fn move_to_back(&mut self, side: Side, li: usize, idx: u32) {
        // Unlink the head and append it at the tail of the same level.
        let next = self.orders[idx as usize].next;
        let tail = self.ladder(side).levels[li].tail;
        self.orders[next as usize].prev = NIL;
        self.orders[tail as usize].next = idx;
        let o = &mut self.orders[idx as usize];
        o.prev = tail;
        o.next = NIL;
        let level = &mut self.ladder_mut(side).levels[li];
        level.head = next;
        level.tail = idx;
    }

    /// Whether a FOK taker would fill completely through trades.
    fn fok_fillable(&self, t: &Taker) -> bool {
        let opp = t.side.opposite();
        let ladder = self.ladder(opp);
        let mut need = t.remaining;
        let stp = t.stp != Stp::None;
        for (&key, level) in ladder.keys.iter().zip(&ladder.levels).rev() {
            let price = Ladder::price(opp, key);
            let crosses = match t.side {
                Side::Buy => price <= t.bound,
                Side::Sell => price >= t.bound,
            };
            if !crosses {
                return false;
            }
            // What the taker can take at this level before self-trade
            // prevention stops it: with CANCEL_MAKER self orders are skipped;
            // with the other modes the first self order ends the fill, and
            // only the visible parts ahead of it are reachable (refills go
            // behind it).
            let (mut all, mut ahead, mut blocked) = (0i64, 0i64, false);
            let mut i = level.head;
            while i != NIL {
                let o = &self.orders[i as usize];
                let own = stp && o.owner == t.owner;
                if own && t.stp != Stp::CancelMaker && !blocked {
                    blocked = true;
                }
                if !own {
                    all += o.visible + o.hidden;
                    if !blocked {
                        ahead += o.visible;
                    }
                }
                i = o.next;
            }
            if blocked {
                return need <= ahead;
            }
            if need <= all {
                return true;
            }
            need -= all;
        }
        false
    }

    fn rest(&mut self, t: &Taker) {
        let visible = if t.display > 0 { t.display.min(t.remaining) } else { t.remaining };
        let x = Extra { display: t.display, expire_ts: t.expire_ts, group: t.group };
        let has_extra = x != Extra::default();
        let order = Order {
            id: t.id,
            owner: t.owner,
            price: t.price,
            visible,
            hidden: t.remaining - visible,
            seq: t.seq,
            prev: NIL,
            next: NIL,
            side: t.side,
            tif: t.tif,
            stp: t.stp,
            post_only: t.post_only,
            extra: has_extra,
        };
        let idx = match self.free.pop() {
            Some(i) => {
                self.orders[i as usize] = order;
                i
            }
            None => {
                self.orders.push(order);
                (self.orders.len() - 1) as u32
            }
        };
        if has_extra {
            if self.extras.len() <= idx as usize {
                self.extras.resize(idx as usize + 1, Extra::default());
            }
            self.extras[idx as usize] = x;
        }
        self.index.insert(t.id, idx);
        self.max_id = self.max_id.max(t.id);
        if t.tif == Tif::Gtd {
            self.expiry.insert((t.expire_ts, t.seq, t.id));
        }
        let side = t.side;
        let ladder = self.ladder_mut(side);
        let key = Ladder::key(side, t.price);
        let li = match ladder.find(key) {
            Ok(i) => {
                if ladder.levels[i].count == 0 {
                    ladder.empty -= 1;
                }
                i
            }
            Err(i) => {
                ladder.keys.insert(i, key);
                ladder.levels.insert(i, Level { head: NIL, tail: NIL, count: 0, visible: 0 });
                i
            }
        };
        let level = &mut ladder.levels[li];
        let tail = level.tail;
        level.count += 1;
        level.visible += visible;
        level.tail = idx;
        if tail == NIL {
            level.head = idx;
        }
        if tail != NIL {
            self.orders[tail as usize].next = idx;
        }
        self.orders[idx as usize].prev = tail;
        self.touch(side, t.price);
    }

    /// The rarely set fields of the order in slot `idx`.
    #[inline]
    fn extra(&self, idx: u32) -> Extra {
        if self.orders[idx as usize].extra {
            self.extras[idx as usize]
        } else {
            Extra::default()
        }
    }

    /// Removes a resting order from its level, the index and the expiry set,
    /// frees its slot and returns it.
    fn unlink_resting(&mut self, idx: u32) -> (Order, Extra) {
        let x = self.extra(idx);
        let slot = &mut self.orders[idx as usize];
        let o = slot.clone();
        // A free slot is one with id 0; nothing reads its other fields.
        (slot.id, slot.extra) = (0, false);
        if o.prev != NIL {
            self.orders[o.prev as usize].next = o.next;
        }
        if o.next != NIL {
            self.orders[o.next as usize].prev = o.prev;
        }
        let ladder = self.ladder_mut(o.side);
        let li = ladder.find(Ladder::key(o.side, o.price)).expect("resting order has a level");
        let level = &mut ladder.levels[li];
        if level.head == idx {
            level.head = o.next;
        }
        if level.tail == idx {
            level.tail = o.prev;
        }
        level.count -= 1;
        level.visible -= o.visible;
        if level.count == 0 {
            ladder.remove_empty(li);
        }
        self.index.remove(o.id);
        if o.tif == Tif::Gtd {
            self.expiry.remove(&(x.expire_ts, o.seq, o.id));
        }
        self.free.push(idx);
        self.touch(o.side, o.price);
        (o, x)
    }

    fn cancel_resting(&mut self, idx: u32, reason: Reason, out: &mut Vec<Event>) {
        let (o, x) = self.unlink_resting(idx);
        out.push(Event {
            reason,
            price: o.price,
            qty: o.visible + o.hidden,
            ..ev(EventKind::Cancelled, o.id, o.owner, o.side, OrderType::Limit)
        });
        self.order_left(x.group, out);
    }

    // ------------------------------------------------------------------
    // Conditional orders, brackets and OCO
    // ------------------------------------------------------------------

    fn place_cond(&mut self, c: Cond) {
        let seq = c.seq;
        self.cond_ids.insert(c.id, seq);
        self.max_id = self.max_id.max(c.id);
        if c.tif == Tif::Gtd {
            self.expiry.insert((c.expire_ts, seq, c.id));
        }
        let mut c = c;
        if c.order_type == OrderType::TrailingStop {
            c.reference = self.last_price.unwrap_or(0);
        }
        if c.active {
            self.index_cond(&c);
        }
        self.conds.insert(seq, c);
    }

    fn index_cond(&mut self, c: &Cond) {
        if c.order_type == OrderType::TrailingStop {
            self.trailing.insert(c.seq);
        } else if c.fires_upward() {
            self.fire_up.insert((c.trigger, c.seq));
        } else {
            self.fire_down.insert((c.trigger, c.seq));
        }
    }

    fn unindex_cond(&mut self, c: &Cond) {
        if c.order_type == OrderType::TrailingStop {
            self.trailing.remove(&c.seq);
        } else if c.fires_upward() {
            self.fire_up.remove(&(c.trigger, c.seq));
        } else {
            self.fire_down.remove(&(c.trigger, c.seq));
        }
    }

    /// Queues a just-placed conditional order if `last_price` already fires it.
    fn check_at_placement(&mut self, seq: u64) {
        let Some(p) = self.last_price else { return };
        let c = &self.conds[&seq];
        if c.active && !c.queued && c.holds(p) {
            let c = c.clone();
            self.unindex_cond(&c);
            self.conds.get_mut(&seq).unwrap().queued = true;
            self.queue.push_back((seq, p));
        }
    }

    /// A price was observed: trailing references move and conditions fire.
    fn observe(&mut self, p: i64) {
        self.last_price = Some(p);
        if self.conds.is_empty() {
            return;
        }
        let mut fired = std::mem::take(&mut self.scratch);
        fired.clear();
        fired.extend(self.fire_up.range(..=(p, u64::MAX)).map(|&(_, s)| s));
        fired.extend(self.fire_down.range((p, 0)..).map(|&(_, s)| s));
        for &seq in &self.trailing {
            let c = self.conds.get_mut(&seq).expect("indexed trailing stop exists");
            c.reference = match (c.reference, c.side) {
                (0, _) => p,
                (r, Side::Sell) => r.max(p),
                (r, Side::Buy) => r.min(p),
            };
            if c.holds(p) {
                fired.push(seq);
            }
        }
        fired.sort_unstable();
        for &seq in &fired {
            let c = self.conds.get_mut(&seq).expect("fired order exists");
            c.queued = true;
            let c = c.clone();
            self.unindex_cond(&c);
            self.queue.push_back((seq, p));
        }
        self.scratch = fired;
    }

    fn process_triggers(&mut self, out: &mut Vec<Event>) {
        while let Some((seq, p)) = self.queue.pop_front() {
            let Some(c) = self.conds.remove(&seq) else { continue };
            self.cond_ids.remove(&c.id);
            if c.tif == Tif::Gtd {
                self.expiry.remove(&(c.expire_ts, seq, c.id));
            }
            out.push(Event { price: p, qty: c.qty, ..ev(EventKind::Triggered, c.id, c.owner, c.side, c.order_type) });
            if c.group != 0 {
                if let Some(g) = self.groups.remove(&c.group) {
                    let sibling = if g.tp == seq { g.sl } else { g.tp };
                    if sibling != 0 && self.conds.contains_key(&sibling) {
                        self.cancel_cond(sibling, Reason::Oco, false, out);
                    }
                    if g.entry != 0 {
                        if let Some(idx) = self.index.get(g.entry) {
                            if self.extra(idx).group == c.group {
                                self.extras[idx as usize].group = 0;
                                self.cancel_resting(idx, Reason::Oco, out);
                            }
                        }
                    }
                }
            }
            let market = c.order_type.is_market_type();
            let t = Taker {
                id: c.id,
                owner: c.owner,
                side: c.side,
                order_type: if market { OrderType::Market } else { OrderType::Limit },
                price: if market { 0 } else { c.price },
                bound: match (market, c.side) {
                    (false, _) => c.price,
                    (true, _) if c.price > 0 => c.price,
                    (true, Side::Buy) => i64::MAX,
                    (true, Side::Sell) => i64::MIN,
                },
                remaining: c.qty,
                display: c.display,
                tif: c.tif,
                stp: c.stp,
                expire_ts: c.expire_ts,
                seq,
                group: 0,
                post_only: false,
            };
            self.run_from_fok(t, out);
        }
    }

    /// Removes a waiting order with a `CANCELLED` event; with `cascade`, its
    /// OCO sibling goes too.
    fn cancel_cond(&mut self, seq: u64, reason: Reason, cascade: bool, out: &mut Vec<Event>) {
        let c = self.conds.remove(&seq).expect("cancelled order exists");
        self.cond_ids.remove(&c.id);
        if c.active && !c.queued {
            self.unindex_cond(&c);
        }
        if c.tif == Tif::Gtd {
            self.expiry.remove(&(c.expire_ts, seq, c.id));
        }
        out.push(Event {
            reason,
            price: if c.order_type.is_market_type() { 0 } else { c.price },
            qty: c.qty,
            ..ev(EventKind::Cancelled, c.id, c.owner, c.side, c.order_type)
        });
        if c.group == 0 {
            return;
        }
        let Some(g) = self.groups.get_mut(&c.group) else { return };
        let sibling = if g.tp == seq {
            g.tp = 0;
            g.sl
        } else {
            g.sl = 0;
            g.tp
        };
        if cascade && sibling != 0 {
            self.cancel_cond(sibling, Reason::Oco, false, out);
        }
        if let Some(g) = self.groups.get(&c.group) {
            if g.entry == 0 && g.tp == 0 && g.sl == 0 {
                self.groups.remove(&c.group);
            }
        }
    }

    /// Fills of a bracket entry size its children.
    fn activate(&mut self, gid: u64, n: i64, out: &mut Vec<Event>) {
        let Some(g) = self.groups.get_mut(&gid) else { return };
        g.filled += n;
        let (entry, tp, sl) = (g.entry, g.tp, g.sl);
        for seq in [tp, sl] {
            if seq == 0 {
                continue;
            }
            let Some(c) = self.conds.get_mut(&seq) else { continue };
            c.qty += n;
            let newly = !c.active;
            c.active = true;
            out.push(Event {
                other_id: entry,
                qty: c.qty,
                ..ev(EventKind::Activated, c.id, c.owner, c.side, c.order_type)
            });
            if newly {
                let c = c.clone();
                self.index_cond(&c);
            }
        }
    }

    /// A bracket entry left the system: without fills its children go too.
    fn order_left(&mut self, gid: u64, out: &mut Vec<Event>) {
        if gid == 0 {
            return;
        }
        let Some(g) = self.groups.get_mut(&gid) else { return };
        g.entry = 0;
        let (filled, tp, sl) = (g.filled, g.tp, g.sl);
        if filled == 0 {
            for seq in [tp, sl] {
                if seq != 0 && self.conds.contains_key(&seq) {
                    self.cancel_cond(seq, Reason::Parent, false, out);
                }
            }
            self.groups.remove(&gid);
        } else if tp == 0 && sl == 0 {
            self.groups.remove(&gid);
        }
    }

    #[inline]
    fn touch(&mut self, side: Side, price: i64) {
        if let Some(d) = &mut self.dirty {
            d.push((side, price));
        }
    }

    /// Turns depth tracking on or off: while on, every level whose visible
    /// quantity may have changed is recorded for [`Book::take_touched_levels`].
    pub fn set_depth_tracking(&mut self, on: bool) {
        self.dirty = on.then(Vec::new);
    }

    /// The levels touched since the last call, each once, sorted by side
    /// then price; with their visible quantity now (0: the level is gone).
    pub fn take_touched_levels(&mut self, out: &mut Vec<(Side, i64, i64)>) {
        let Some(mut d) = self.dirty.take() else { return };
        d.sort_unstable();
        d.dedup();
        out.extend(d.iter().map(|&(s, p)| (s, p, self.volume_at(s, p))));
        d.clear();
        self.dirty = Some(d);
    }

    #[inline]
    fn ladder(&self, side: Side) -> &Ladder {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }
    #[inline]
    fn ladder_mut(&mut self, side: Side) -> &mut Ladder {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }
}

fn pending_of(c: &Cond) -> PendingOrder {
    PendingOrder {
        order_id: c.id,
        owner: c.owner,
        side: c.side,
        order_type: c.order_type,
        trigger: c.trigger_price(),
        price: if c.order_type.is_market_type() { 0 } else { c.price },
        qty: c.qty,
        active: c.active,
    }
}

/// Whether take-profit and stop-loss triggers are on the right sides of each
/// other for exit legs of `side` (a SELL exit protects a long: stop below,
/// take-profit above).
fn legs_ordered(side: Side, legs: &ExitLegs) -> bool {
    match side {
        Side::Sell => legs.sl_trigger < legs.tp_trigger,
        Side::Buy => legs.tp_trigger < legs.sl_trigger,
    }
}
