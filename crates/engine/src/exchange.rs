//! The exchange core: markets (each a [`Book`]), accounts with balances and
//! holds ([`Ledger`]), fees and settlement of every fill. See
//! `docs/exchange.md` for the rules (units, holds, fee rounding).
//!
//! Order ids are assigned by the exchange in sequence (global across
//! markets); books see them as their caller-assigned ids and accounts as
//! owners. A rejected command returns `Err` and changes nothing.

use rustc_hash::FxHashMap;

use crate::book::Book;
use crate::idmap::{prefetch, DenseIdMap, Vacant};
use crate::ledger::{Ledger, LedgerError};
use crate::codec::{bad, Reader, SnapshotError, Writer};
use crate::compact::{get_delta, get_u128, get_u64, unzigzag, zigzag, DeltaLog, Enc, Row};
use crate::marketdata::MarketData;
use crate::record::{kind, CommandRecord, COMMAND_RECORD_SIZE};
use crate::types::*;

/// A market's trading status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum MarketStatus {
    Trading = 0,
    /// Cancels only.
    Halted = 1,
    /// Only post-only limit orders (and cancels).
    PostOnly = 2,
    /// Nothing; resting orders were cancelled when it closed.
    Closed = 3,
}

impl MarketStatus {
    /// From its wire number.
    pub fn from_u8(v: u8) -> Option<MarketStatus> {
        Some(match v {
            0 => MarketStatus::Trading,
            1 => MarketStatus::Halted,
            2 => MarketStatus::PostOnly,
            3 => MarketStatus::Closed,
            _ => return None,
        })
    }
}

/// A market's fixed parameters, in integer units (docs/exchange.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarketConfig {
    pub base: u32,
    pub quote: u32,
    /// Base units per lot.
    pub lot_units: i64,
    /// Quote units per tick per lot.
    pub tick_units: i64,
    /// Smallest order quantity, in lots (≥ 1).
    pub min_qty: i64,
    /// Smallest notional of a priced order, in quote units (0: none).
    pub min_notional: i64,
    /// Orders priced further than this from the last price are rejected (0: no band).
    pub band_bps: i64,
    pub maker_bps: i64,
    pub taker_bps: i64,
}

/// A volume discount: from `min_volume` (quote units traded over the last
/// 30 days of exchange time, in the market's quote asset) these rates apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeeTier {
    pub min_volume: i64,
    pub maker_bps: i64,
    pub taker_bps: i64,
}

/// Days in the fee-volume window.
pub const VOLUME_DAYS: usize = 30;

/// An account's traded volume in one quote asset, per day, over the window.
#[derive(Clone, Debug)]
struct VolumeWindow {
    /// Day number (exchange time / 1 day) of the newest bucket.
    day: u64,
    /// `buckets[d % VOLUME_DAYS]` is the volume of day d.
    buckets: [i64; VOLUME_DAYS],
    total: i128,
}

impl VolumeWindow {
    fn roll(&mut self, day: u64) {
        if day <= self.day {
            return;
        }
        if day - self.day >= VOLUME_DAYS as u64 {
            self.buckets = [0; VOLUME_DAYS];
            self.total = 0;
        } else {
            for d in self.day + 1..=day {
                let b = &mut self.buckets[(d % VOLUME_DAYS as u64) as usize];
                self.total -= *b as i128;
                *b = 0;
            }
        }
        self.day = day;
    }
}

#[derive(Clone, Debug)]
struct Market {
    cfg: MarketConfig,
    /// Discount tiers by ascending `min_volume` (rates at most the base rates).
    tiers: Vec<FeeTier>,
    status: MarketStatus,
    book: Book,
    md: MarketData,
    /// Last depth update id (one per changed level, from 1).
    depth_id: u64,
}

/// What an open order reserves: `held` of the market's quote asset (a
/// buy) or base asset (a sell). 24 bytes: one per open order, 2.1 million
/// at the memory design point.
#[derive(Clone, Copy, Debug, Default)]
struct Hold {
    held: i64,
    /// Hold per remaining lot; 0 for a market buy (held by a book walk and
    /// released when it ends).
    per_lot: i64,
    account: u32,
    /// `market << 1 | side`.
    market_side: u32,
    /// Where the order is in its account's `open` list (not part of the
    /// state: rebuilt on restore), so that closing it is O(1) whatever the
    /// number of orders a market maker keeps open.
    open_idx: u32,
}

const _: () = assert!(std::mem::size_of::<Hold>() == 32);

/// A free slot of the holds table: no open order holds a negative amount.
impl Vacant for Hold {
    const VACANT: Hold = Hold { held: i64::MIN, per_lot: 0, account: 0, market_side: 0, open_idx: 0 };
    #[inline]
    fn is_vacant(&self) -> bool {
        self.held == i64::MIN
    }
}

/// The prefetch pipeline of [`Exchange::apply_records`]: `(stage, rows ahead)`.
const PREFETCH_STAGES: [(u8, usize); 2] = [(0, 12), (1, 6)];
/// Open orders from which [`Exchange::apply_records`] prefetches (below it
/// holds, slots and index buckets, a few MB, stay in the core's caches).
/// (Debug builds always prefetch, so that the tests run the pipeline.)
const PREFETCH_MIN_ORDERS: usize = 1 << 16;

/// Markets are numbered below this (a hold packs the side beside it).
const MAX_MARKETS: usize = 1 << 31;

impl Hold {
    #[inline]
    fn new(account: u32, market: u32, side: Side, held: i64, per_lot: i64, open_idx: u32) -> Hold {
        debug_assert!((market as usize) < MAX_MARKETS);
        Hold { held, per_lot, account, market_side: market << 1 | side as u32, open_idx }
    }
    #[inline]
    fn market(&self) -> u32 {
        self.market_side >> 1
    }
    #[inline]
    fn side(&self) -> Side {
        if self.market_side & 1 == 0 { Side::Buy } else { Side::Sell }
    }
    /// The asset it holds, in a market with config `cfg`.
    #[inline]
    fn asset(&self, cfg: &MarketConfig) -> u32 {
        match self.side() {
            Side::Buy => cfg.quote,
            Side::Sell => cfg.base,
        }
    }
}

/// A bracket or OCO group as the exchange sees it (docs/exchange.md,
/// "Linked orders"): one of its exit legs, the carrier, holds the group's
/// whole reservation and the other holds 0. Only linked orders have one, so
/// ordinary orders keep their 32-byte [`Hold`] and nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Link {
    /// The bracket's entry while it is live; 0 for an OCO pair, or once the
    /// entry has left the book.
    entry: u64,
    tp: u64,
    sl: u64,
    /// `tp` or `sl`: the leg with the larger per-lot hold (`tp` on a tie).
    carrier: u64,
    /// Per lot of the exits: the larger of the two legs' per-lot holds.
    max_per_lot: i64,
    /// Per unfilled entry lot: what the exits may need beyond what the
    /// entry's fill of that lot brings (buy exits of a sell entry), held
    /// from placement; 0 for OCO pairs and buy entries.
    deficit: i64,
}

impl Link {
    /// What the exits gain per filled entry lot: taken from what that fill
    /// brought (it brings at least this).
    #[inline]
    fn grow_per_lot(&self) -> i64 {
        self.max_per_lot - self.deficit
    }
}

/// The exchange core.
#[derive(Clone, Debug, Default)]
pub struct Exchange {
    ledger: Ledger,
    suspended: Vec<bool>,
    markets: Vec<Market>,
    holds: DenseIdMap<Hold>,
    next_order_id: u64,
    now: u64,
    touched: Vec<(Side, i64, i64)>,
    /// 30-day traded volume per (account, quote asset), for fee tiers; kept
    /// for the quote assets of markets that have tiers, from when the first
    /// such market got them.
    volumes: FxHashMap<(u32, u32), VolumeWindow>,
    tiered_quotes: Vec<u32>,
    /// Per account: its open order ids (unordered) and its recent fills
    /// (delta-encoded; none until its first fill: most accounts never trade).
    open: Vec<Vec<u64>>,
    history: Vec<Option<Box<DeltaLog<FillRecord>>>>,
    /// Bracket and OCO groups by group id (the entry's id for a bracket,
    /// the take-profit leg's for an OCO), and each linked order's group.
    links: FxHashMap<u64, Link>,
    linked: FxHashMap<u64, u64>,
}

/// Version of [`Exchange::snapshot`]'s format (2: trade tapes, candle rings
/// and fill histories delta-encoded, see `compact.rs`; 3: linked-order
/// groups at the end; 4: trade tapes mark trades taken by the same order as
/// the trade before, in a bit that was always 0). Versions 2 and 3 are
/// still read (their trades are each their own aggregate).
const SNAPSHOT_VERSION: u16 = 4;

/// How many fills each account's recent history keeps.
pub const HISTORY_KEPT: usize = 100;

/// One fill as the account that took part in it sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FillRecord {
    pub ts: u64,
    pub order_id: u64,
    pub market: u32,
    pub side: Side,
    pub maker: bool,
    pub price: i64,
    pub qty: i64,
    /// Fee paid in the quote asset (negative: a rebate received).
    pub fee: i64,
}

impl Row for FillRecord {
    const ORIGIN: FillRecord =
        FillRecord { ts: 0, order_id: 0, market: 0, side: Side::Buy, maker: false, price: 0, qty: 0, fee: 0 };
    const MAX_BYTES: usize = 10 * 4 + 19 + 5;

    /// Deltas from the account's previous fill (time, order id, price,
    /// fee), then quantity, side, maker and "other market" flags in one
    /// varint, then the market delta if it changed: about 9 bytes where
    /// the struct takes 48.
    #[inline]
    fn put(&self, prev: &FillRecord, out: &mut Enc) {
        let market = self.market.wrapping_sub(prev.market) as i32;
        out.u64(self.ts.wrapping_sub(prev.ts));
        out.delta(self.order_id as i64, prev.order_id as i64);
        out.delta(self.price, prev.price);
        out.delta(self.fee, prev.fee);
        out.u128((zigzag(self.qty) as u128) << 3 | ((market != 0) as u128) << 2 | (self.side as u128) << 1 | self.maker as u128);
        if market != 0 {
            out.u64(zigzag(market as i64));
        }
    }

    #[inline]
    fn get(prev: &FillRecord, buf: &[u8], at: &mut usize) -> Option<FillRecord> {
        let ts = prev.ts.wrapping_add(get_u64(buf, at)?);
        let order_id = get_delta(buf, at, prev.order_id as i64)? as u64;
        let price = get_delta(buf, at, prev.price)?;
        let fee = get_delta(buf, at, prev.fee)?;
        let v = get_u128(buf, at)?;
        if v >> 67 != 0 {
            return None;
        }
        let market = if v & 4 == 0 {
            prev.market
        } else {
            // A flagged delta is never 0 (one encoding per record).
            let d = unzigzag(get_u64(buf, at)?);
            if d == 0 || i32::try_from(d).is_err() {
                return None;
            }
            prev.market.wrapping_add(d as i32 as u32)
        };
        let side = if v & 2 == 0 { Side::Buy } else { Side::Sell };
        Some(FillRecord { ts, order_id, market, side, maker: v & 1 == 1, price, qty: unzigzag((v >> 3) as u64), fee })
    }
}

fn ledger_reason(e: LedgerError) -> Reject {
    Reject {
        reason: match e {
            LedgerError::UnknownAccount => Reason::UnknownAccount,
            LedgerError::UnknownAsset => Reason::UnknownAsset,
            LedgerError::InvalidAmount => Reason::InvalidAmount,
            LedgerError::InsufficientFunds => Reason::InsufficientFunds,
            LedgerError::Overflow => Reason::Overflow,
        },
    }
}

/// `ceil(n * bps / 10000)` for a fee (bps ≥ 0), `-floor(n * |bps| / 10000)`
/// for a rebate (bps < 0): rounded against the payer, in the exchange's favour.
#[inline]
pub fn fee(notional: i128, bps: i64) -> i64 {
    let x = notional * bps.unsigned_abs() as i128;
    if let Ok(x) = u64::try_from(x) {
        // The same quotients in 64 bits (an i128 division is a libcall):
        // ceil(x / 10000) = x / 10000 + (x % 10000 != 0).
        let q = x / 10_000;
        return if bps >= 0 { (q + (x % 10_000 != 0) as u64) as i64 } else { -(q as i64) };
    }
    if bps >= 0 {
        ((x + 9_999) / 10_000) as i64
    } else {
        -((x / 10_000) as i64)
    }
}

impl Exchange {
    /// An exchange with no assets, markets or accounts. Order ids start at 1.
    pub fn new() -> Exchange {
        Exchange { next_order_id: 1, ..Default::default() }
    }

    /// The balances.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }
    /// A market's book.
    pub fn book(&self, market: u32) -> Option<&Book> {
        self.markets.get(market as usize).map(|m| &m.book)
    }
    /// A market's configuration and status.
    pub fn market(&self, market: u32) -> Option<(MarketConfig, MarketStatus)> {
        self.markets.get(market as usize).map(|m| (m.cfg, m.status))
    }
    /// Number of markets.
    pub fn market_count(&self) -> usize {
        self.markets.len()
    }
    /// The id the next accepted order gets.
    pub fn next_order_id(&self) -> u64 {
        self.next_order_id
    }
    /// The exchange clock.
    pub fn now(&self) -> u64 {
        self.now
    }
    /// An open order's `(account, market, asset it holds, amount held)`.
    pub fn order_hold(&self, order_id: u64) -> Option<(u32, u32, u32, i64)> {
        self.holds.get(order_id).map(|h| (h.account, h.market(), h.asset(&self.markets[h.market() as usize].cfg), h.held))
    }

    /// Adds an asset; returns its id.
    pub fn add_asset(&mut self) -> u32 {
        self.ledger.add_asset()
    }

    /// Adds a market; returns its id.
    pub fn add_market(&mut self, cfg: MarketConfig) -> Result<u32, Reject> {
        let n = self.ledger.asset_count() as u32;
        let ok = cfg.base < n
            && cfg.quote < n
            && cfg.base != cfg.quote
            && cfg.lot_units >= 1
            && cfg.tick_units >= 1
            && cfg.min_qty >= 1
            && cfg.min_notional >= 0
            && (0..=10_000).contains(&cfg.band_bps)
            && (0..=10_000).contains(&cfg.taker_bps)
            && (-10_000..=10_000).contains(&cfg.maker_bps)
            && cfg.maker_bps >= -cfg.taker_bps;
        if !ok || self.markets.len() >= MAX_MARKETS {
            return Err(Reason::InvalidMarketConfig.into());
        }
        let mut book = Book::new(1, 1);
        book.set_depth_tracking(true);
        self.markets.push(Market { cfg, tiers: Vec::new(), status: MarketStatus::Trading, book, md: MarketData::default(), depth_id: 0 });
        Ok((self.markets.len() - 1) as u32)
    }

    /// Sets a market's volume discount tiers (replacing any). Tiers are
    /// discounts: every rate is at most the market's base rate (so holds,
    /// taken at the base rates, always cover), thresholds strictly increase
    /// from above 0, and no maker rebate can exceed any taker fee.
    pub fn set_fee_tiers(&mut self, market: u32, tiers: &[FeeTier]) -> Result<(), Reject> {
        let m = self.markets.get_mut(market as usize).ok_or(Reason::UnknownMarket)?;
        let c = m.cfg;
        let min_taker = tiers.iter().map(|t| t.taker_bps).min().unwrap_or(c.taker_bps).min(c.taker_bps);
        let ok = tiers.windows(2).all(|w| w[0].min_volume < w[1].min_volume)
            && tiers.iter().all(|t| {
                t.min_volume > 0
                    && (0..=c.taker_bps).contains(&t.taker_bps)
                    && t.maker_bps <= c.maker_bps
                    && t.maker_bps >= -min_taker
            })
            && c.maker_bps >= -min_taker;
        if !ok {
            return Err(Reason::InvalidMarketConfig.into());
        }
        m.tiers = tiers.to_vec();
        let quote = m.cfg.quote;
        if !tiers.is_empty() && !self.tiered_quotes.contains(&quote) {
            self.tiered_quotes.push(quote);
            self.tiered_quotes.sort_unstable();
        }
        Ok(())
    }

    /// An account's traded volume in a quote asset over the last 30 days.
    pub fn volume_30d(&self, account: u32, quote: u32) -> i128 {
        let day = self.now / crate::marketdata::DAY;
        match self.volumes.get(&(account, quote)) {
            Some(w) if day < w.day + VOLUME_DAYS as u64 => {
                let mut w = w.clone();
                w.roll(day);
                w.total
            }
            _ => 0,
        }
    }

    /// The (maker, taker) rates an account pays in a market now.
    fn rates(&self, m: &Market, account: u32) -> (i64, i64) {
        if m.tiers.is_empty() {
            return (m.cfg.maker_bps, m.cfg.taker_bps);
        }
        let v = self.volume_30d(account, m.cfg.quote);
        match m.tiers.iter().rev().find(|t| t.min_volume as i128 <= v) {
            Some(t) => (t.maker_bps, t.taker_bps),
            None => (m.cfg.maker_bps, m.cfg.taker_bps),
        }
    }

    fn add_volume(&mut self, account: u32, quote: u32, notional: i64) {
        let day = self.now / crate::marketdata::DAY;
        let w = self.volumes.entry((account, quote)).or_insert(VolumeWindow { day, buckets: [0; VOLUME_DAYS], total: 0 });
        w.roll(day);
        let b = &mut w.buckets[(day % VOLUME_DAYS as u64) as usize];
        *b = b.saturating_add(notional);
        w.total += notional as i128;
    }

    /// Changes a market's status; closing cancels every order in it.
    pub fn set_market_status(&mut self, market: u32, status: MarketStatus, out: &mut Vec<Event>) -> Result<(), Reject> {
        let m = self.markets.get_mut(market as usize).ok_or(Reason::UnknownMarket)?;
        m.status = status;
        if status == MarketStatus::Closed {
            let mut owners: Vec<u64> = m.book.l3().iter().map(|o| o.owner).chain(m.book.pending().iter().map(|p| p.owner)).collect();
            owners.sort_unstable();
            owners.dedup();
            let start = out.len();
            for owner in owners {
                m.book.mass_cancel(owner, out).expect("mass cancel never fails");
            }
            self.settle(market, start, out);
        }
        Ok(())
    }

    /// Adds an account; returns its id.
    pub fn add_account(&mut self) -> u32 {
        self.suspended.push(false);
        self.open.push(Vec::new());
        self.history.push(None);
        self.ledger.add_account()
    }

    /// Suspends or reactivates an account.
    pub fn set_account_suspended(&mut self, account: u32, suspended: bool) -> Result<(), Reject> {
        *self.suspended.get_mut(account as usize).ok_or(Reason::UnknownAccount)? = suspended;
        Ok(())
    }

    /// Credits a deposit.
    pub fn deposit(&mut self, account: u32, asset: u32, amount: i64) -> Result<(), Reject> {
        self.ledger.deposit(account, asset, amount).map_err(ledger_reason)
    }
    /// Pays out a withdrawal from available funds.
    pub fn withdraw(&mut self, account: u32, asset: u32, amount: i64) -> Result<(), Reject> {
        self.ledger.withdraw(account, asset, amount).map_err(ledger_reason)
    }
    /// Moves available funds between accounts.
    pub fn transfer(&mut self, from: u32, to: u32, asset: u32, amount: i64) -> Result<(), Reject> {
        self.ledger.transfer(from, to, asset, amount).map_err(ledger_reason)
    }

    fn check_account(&self, account: u32) -> Result<(), Reject> {
        match self.suspended.get(account as usize) {
            None => Err(Reason::UnknownAccount.into()),
            Some(true) => Err(Reason::AccountSuspended.into()),
            Some(false) => Ok(()),
        }
    }

    /// Hold per lot of a buy at price p: notional plus the maximum fee.
    fn buy_per_lot(cfg: &MarketConfig, price: i64) -> i64 {
        let n = price as i128 * cfg.tick_units as i128;
        let max_bps = cfg.taker_bps.max(cfg.maker_bps).max(0);
        (n + fee(n, max_bps) as i128).min(i64::MAX as i128) as i64
    }

    /// Sell proceeds per lot at price p, at least: notional less the
    /// highest fee (a fill of n lots at p' >= p brings at least n times it).
    fn sell_proceeds_per_lot(cfg: &MarketConfig, price: i64) -> i64 {
        let n = price as i128 * cfg.tick_units as i128;
        let max_bps = cfg.taker_bps.max(cfg.maker_bps).max(0);
        (n - fee(n, max_bps) as i128).clamp(0, i64::MAX as i128) as i64
    }

    /// The market rules on an order's limit or protection price: minimum
    /// notional and the price band.
    fn price_rules(m: &Market, qty: i64, price: i64) -> Result<(), Reject> {
        let cfg = &m.cfg;
        let notional = price as i128 * qty as i128 * cfg.tick_units as i128;
        if notional < cfg.min_notional as i128 {
            return Err(Reason::BelowMinNotional.into());
        }
        if cfg.band_bps > 0 {
            if let Some(last) = m.book.last_price() {
                let dev = (price as i128 - last as i128).abs() * 10_000;
                if dev > last as i128 * cfg.band_bps as i128 {
                    return Err(Reason::PriceOutOfBand.into());
                }
            }
        }
        Ok(())
    }

    /// What an order reserves: `(asset, amount, per-lot hold)` (per lot 0:
    /// a market buy, held by a book walk). Checks its price against the
    /// market rules first.
    fn order_hold_of(m: &Market, account: u32, side: Side, otype: OrderType, req: &OrderRequest) -> Result<(u32, i64, i64), Reject> {
        let cfg = m.cfg;
        // The price an order may trade at (its limit or protection price), if any.
        let priced = req.price;
        if priced > 0 {
            Self::price_rules(m, req.qty, priced)?;
        }
        let (asset, held, per_lot) = match side {
            Side::Sell => {
                let held = req.qty as i128 * cfg.lot_units as i128;
                (cfg.base, held, cfg.lot_units)
            }
            Side::Buy if priced > 0 => {
                let per_lot = Self::buy_per_lot(&cfg, priced);
                (cfg.quote, req.qty as i128 * per_lot as i128, per_lot)
            }
            Side::Buy if otype.is_conditional() => return Err(Reason::ProtectionRequired.into()),
            Side::Buy => {
                // A market buy holds what filling it could cost at most: the
                // book walk with the per-lot hold at each level's price.
                let skip_own = req.stp != Stp::None as u8;
                let (_, cost) = m.book.cost_to_fill(side, req.qty, i64::MAX, account as u64, skip_own, |p| {
                    Self::buy_per_lot(&cfg, p) as i128
                });
                (cfg.quote, cost, 0)
            }
        };
        if held > i64::MAX as i128 {
            return Err(Reason::InsufficientFunds.into());
        }
        Ok((asset, held as i64, per_lot))
    }

    /// Records an accepted order's hold and lists it among its account's
    /// open orders (`h.open_idx` is set here).
    #[inline]
    fn add_hold(&mut self, id: u64, mut h: Hold) {
        let open = &mut self.open[h.account as usize];
        h.open_idx = open.len() as u32;
        self.holds.insert(id, h);
        if open.len() == open.capacity() {
            // 3, then grow by half, not `Vec`'s 4 then doubling: most
            // accounts have one to three open orders (a 32-byte allocation,
            // not 48).
            open.reserve_exact((open.len() / 2).max(3));
        }
        open.push(id);
    }

    /// Places an order for `account` in `market`. `req.order_id` is ignored:
    /// the exchange assigns the next id (reported in the events).
    pub fn place(&mut self, account: u32, market: u32, req: &OrderRequest, out: &mut Vec<Event>) -> Result<u64, Reject> {
        let m = self.markets.get(market as usize).ok_or(Reason::UnknownMarket)?;
        let post_only = req.flags & FLAG_POST_ONLY != 0;
        match m.status {
            MarketStatus::Trading => {}
            MarketStatus::PostOnly if post_only => {}
            _ => return Err(Reason::MarketNotTrading.into()),
        }
        self.check_account(account)?;
        if req.flags & FLAG_QUOTE_QTY != 0 {
            return self.place_quote(account, market, req, out);
        }
        let id = self.next_order_id;
        let req = OrderRequest { order_id: id, owner: account as u64, ..*req };
        let v = m.book.validated(&req)?;
        let (cfg, side) = (m.cfg, Side::from_u8(req.side).expect("checked by the book"));
        let otype = OrderType::from_u8(req.order_type).expect("checked by the book");
        if req.qty < cfg.min_qty {
            return Err(Reason::BelowMinQuantity.into());
        }
        let (asset, held, per_lot) = Self::order_hold_of(m, account, side, otype, &req)?;
        self.ledger.hold(account, asset, held).map_err(ledger_reason)?;
        self.add_hold(id, Hold::new(account, market, side, held, per_lot, 0));
        self.next_order_id += 1;
        let start = out.len();
        self.markets[market as usize].book.submit_validated(v, out);
        self.settle(market, start, out);
        Ok(id)
    }

    /// The highest taker rate `account` can pay in `m` during one command:
    /// its tier's now, or a higher tier's that the command's own volume may
    /// reach (tiers are discounts, but not necessarily in order).
    fn max_taker_bps(&self, m: &Market, account: u32) -> i64 {
        let (_, now) = self.rates(m, account);
        if m.tiers.is_empty() {
            return now.max(0);
        }
        let v = self.volume_30d(account, m.cfg.quote);
        m.tiers.iter().filter(|t| t.min_volume as i128 > v).map(|t| t.taker_bps).fold(now, i64::max).max(0)
    }

    /// A market order sized by a quote amount (`req.qty`, flag
    /// [`FLAG_QUOTE_QTY`]; docs/exchange.md). The book is walked for the
    /// whole lots the amount covers: a buy pays at most the amount,
    /// notional and taker fee (each maker order's fill at the highest taker
    /// rate the account can pay during the order, rounded up as settlement
    /// rounds it), a sell's notional is at most the amount.
    /// The order is then a market order of that many lots; a buy holds the
    /// whole amount and releases what it did not spend when it ends.
    fn place_quote(&mut self, account: u32, market: u32, req: &OrderRequest, out: &mut Vec<Event>) -> Result<u64, Reject> {
        let m = &self.markets[market as usize];
        if req.order_type != OrderType::Market as u8 {
            return Err(Reason::InvalidFlags.into());
        }
        let amount = req.qty;
        if amount <= 0 {
            return Err(Reason::InvalidAmount.into());
        }
        let id = self.next_order_id;
        let mut req = OrderRequest { order_id: id, owner: account as u64, flags: req.flags & !FLAG_QUOTE_QTY, qty: 1, ..*req };
        m.book.check(&req)?;
        let (cfg, side) = (m.cfg, Side::from_u8(req.side).expect("checked by the book"));
        let skip_own = req.stp != Stp::None as u8;
        let tick = cfg.tick_units as i128;
        let (lots, _) = match side {
            Side::Buy => {
                // A fill of n lots at p costs n×p×tick_units plus its fee,
                // rounded up per fill: exact for a plain maker order (one
                // fill), rounded up per lot for an iceberg (one fill per slice).
                let bps = self.max_taker_bps(m, account);
                let bound = if req.price > 0 { req.price } else { i64::MAX };
                m.book.lots_within(side, amount as i128, bound, account as u64, skip_own, MAX_QTY, |p, n, iceberg| {
                    let unit = p as i128 * tick;
                    if iceberg {
                        (unit + fee(unit, bps) as i128) * n as i128
                    } else {
                        unit * n as i128 + fee(unit * n as i128, bps) as i128
                    }
                })
            }
            Side::Sell => {
                m.book.lots_within(side, amount as i128, req.price, account as u64, skip_own, MAX_QTY, |p, n, _| {
                    p as i128 * tick * n as i128
                })
            }
        };
        if lots < cfg.min_qty {
            return Err(Reason::BelowMinQuantity.into());
        }
        req.qty = lots;
        if req.price > 0 {
            Self::price_rules(m, lots, req.price)?;
        }
        let (asset, held, per_lot) = match side {
            Side::Buy => (cfg.quote, amount as i128, 0),
            Side::Sell => (cfg.base, lots as i128 * cfg.lot_units as i128, cfg.lot_units),
        };
        if held > i64::MAX as i128 {
            return Err(Reason::InsufficientFunds.into());
        }
        self.ledger.hold(account, asset, held as i64).map_err(ledger_reason)?;
        self.add_hold(id, Hold::new(account, market, side, held as i64, per_lot, 0));
        self.next_order_id += 1;
        let start = out.len();
        self.markets[market as usize].book.submit(&req, out).expect("validated above");
        self.settle(market, start, out);
        Ok(id)
    }

    /// Per-lot holds of exit legs on `side` (take-profit, stop-loss): base
    /// per lot for sells, the buy hold at each leg's limit price for buys
    /// (a market-type buy leg has no price to hold at: `PROTECTION_REQUIRED`).
    fn leg_per_lots(cfg: &MarketConfig, side: Side, legs: &ExitLegs) -> Result<(i64, i64), Reject> {
        match side {
            Side::Sell => Ok((cfg.lot_units, cfg.lot_units)),
            Side::Buy if legs.tp_price > 0 && legs.sl_price > 0 => {
                Ok((Self::buy_per_lot(cfg, legs.tp_price), Self::buy_per_lot(cfg, legs.sl_price)))
            }
            Side::Buy => Err(Reason::ProtectionRequired.into()),
        }
    }

    /// Market status and account for a linked order (its legs trade when
    /// they trigger: only a trading market takes one).
    fn check_linked_account(&self, account: u32, m: &Market) -> Result<(), Reject> {
        if m.status != MarketStatus::Trading {
            return Err(Reason::MarketNotTrading.into());
        }
        self.check_account(account)
    }

    /// Minimum quantity and the legs' price rules for a linked order of `qty` lots.
    fn check_linked(m: &Market, qty: i64, legs: &ExitLegs) -> Result<(), Reject> {
        if qty < m.cfg.min_qty {
            return Err(Reason::BelowMinQuantity.into());
        }
        for p in [legs.tp_price, legs.sl_price] {
            if p > 0 {
                Self::price_rules(m, qty, p)?;
            }
        }
        Ok(())
    }

    /// Places a one-cancels-other pair (a take-profit and a stop-loss leg,
    /// both on `r.side`, both waiting for their trigger) for `account`;
    /// returns the take-profit leg's id (the stop-loss leg's is the next).
    /// The pair holds once, for the larger leg (docs/exchange.md). The
    /// request's owner and leg ids are ignored.
    pub fn place_oco(&mut self, account: u32, market: u32, r: &OcoRequest, out: &mut Vec<Event>) -> Result<u64, Reject> {
        let m = self.markets.get(market as usize).ok_or(Reason::UnknownMarket)?;
        let (tp_id, sl_id) = (self.next_order_id, self.next_order_id + 1);
        let req = OcoRequest { owner: account as u64, legs: ExitLegs { tp_id, sl_id, ..r.legs }, ..*r };
        self.check_linked_account(account, m)?;
        let (side, _) = m.book.check_oco(&req)?;
        Self::check_linked(m, req.qty, &req.legs)?;
        let cfg = m.cfg;
        let (tp_lot, sl_lot) = Self::leg_per_lots(&cfg, side, &req.legs)?;
        let max_per_lot = tp_lot.max(sl_lot);
        let pool = req.qty as i128 * max_per_lot as i128;
        if pool > i64::MAX as i128 {
            return Err(Reason::InsufficientFunds.into());
        }
        let pool = pool as i64;
        let asset = if side == Side::Buy { cfg.quote } else { cfg.base };
        self.ledger.hold(account, asset, pool).map_err(ledger_reason)?;
        let carrier = if sl_lot > tp_lot { sl_id } else { tp_id };
        for (id, per_lot) in [(tp_id, tp_lot), (sl_id, sl_lot)] {
            let held = if id == carrier { pool } else { 0 };
            self.add_hold(id, Hold::new(account, market, side, held, per_lot, 0));
            self.linked.insert(id, tp_id);
        }
        self.links.insert(tp_id, Link { entry: 0, tp: tp_id, sl: sl_id, carrier, max_per_lot, deficit: 0 });
        self.next_order_id += 2;
        let start = out.len();
        self.markets[market as usize].book.oco(&req, out).expect("validated above");
        self.settle(market, start, out);
        Ok(tp_id)
    }

    /// Places a bracket for `account`: an entry (limit, or market when
    /// `r.price` is 0) whose fills activate a take-profit and a stop-loss
    /// exit (one-cancels-other) on the opposite side. Returns the entry's
    /// id; the take-profit and stop-loss exits get the next two. The entry
    /// holds as an ordinary order; the exits hold what the entry's fills
    /// bring, plus, for buy exits, any shortfall up front
    /// (docs/exchange.md). The request's owner and ids are ignored.
    pub fn place_bracket(&mut self, account: u32, market: u32, r: &BracketRequest, out: &mut Vec<Event>) -> Result<u64, Reject> {
        let m = self.markets.get(market as usize).ok_or(Reason::UnknownMarket)?;
        let id = self.next_order_id;
        let req = BracketRequest {
            order_id: id,
            owner: account as u64,
            exits: ExitLegs { tp_id: id + 1, sl_id: id + 2, ..r.exits },
            ..*r
        };
        self.check_linked_account(account, m)?;
        m.book.check_bracket(&req)?;
        Self::check_linked(m, req.qty, &req.exits)?;
        let cfg = m.cfg;
        let side = Side::from_u8(req.side).expect("checked by the book");
        let entry = OrderRequest {
            order_id: id,
            owner: account as u64,
            side: req.side,
            order_type: if req.price > 0 { OrderType::Limit as u8 } else { OrderType::Market as u8 },
            tif: req.tif,
            stp: req.stp,
            flags: req.flags,
            price: req.price,
            qty: req.qty,
            trigger_price: 0,
            display_qty: 0,
            expire_ts: req.expire_ts,
        };
        let otype = OrderType::from_u8(entry.order_type).expect("a known type");
        let exit_side = side.opposite();
        let (tp_lot, sl_lot) = Self::leg_per_lots(&cfg, exit_side, &req.exits)?;
        let max_per_lot = tp_lot.max(sl_lot);
        // What a filled entry lot brings at least: its base (a buy), or the
        // sale's proceeds at the entry's limit less the highest fee (a sell;
        // nothing is assured for a market sell).
        let brings = match side {
            Side::Buy => cfg.lot_units,
            Side::Sell if req.price > 0 => Self::sell_proceeds_per_lot(&cfg, req.price),
            Side::Sell => 0,
        };
        let deficit = (max_per_lot - brings).max(0);
        let (asset, held, per_lot) = Self::order_hold_of(m, account, side, otype, &entry)?;
        if req.qty as i128 * max_per_lot as i128 > i64::MAX as i128 {
            return Err(Reason::InsufficientFunds.into());
        }
        let reserve = req.qty * deficit;
        let exit_asset = if exit_side == Side::Buy { cfg.quote } else { cfg.base };
        self.ledger.hold(account, asset, held).map_err(ledger_reason)?;
        if let Err(e) = self.ledger.hold(account, exit_asset, reserve) {
            self.ledger.release(account, asset, held);
            return Err(ledger_reason(e));
        }
        let (tp_id, sl_id) = (id + 1, id + 2);
        let carrier = if sl_lot > tp_lot { sl_id } else { tp_id };
        self.add_hold(id, Hold::new(account, market, side, held, per_lot, 0));
        for (leg, leg_lot) in [(tp_id, tp_lot), (sl_id, sl_lot)] {
            let held = if leg == carrier { reserve } else { 0 };
            self.add_hold(leg, Hold::new(account, market, exit_side, held, leg_lot, 0));
        }
        for o in [id, tp_id, sl_id] {
            self.linked.insert(o, id);
        }
        self.links.insert(id, Link { entry: id, tp: tp_id, sl: sl_id, carrier, max_per_lot, deficit });
        self.next_order_id += 3;
        let start = out.len();
        self.markets[market as usize].book.bracket(&req, out).expect("validated above");
        self.settle(market, start, out);
        Ok(id)
    }

    /// Cancels an order of `account` (another account's order is unknown to it).
    pub fn cancel(&mut self, account: u32, order_id: u64, out: &mut Vec<Event>) -> Result<(), Reject> {
        let h = match self.holds.get(order_id) {
            Some(h) if h.account == account => *h,
            _ => return Err(Reason::UnknownOrder.into()),
        };
        let start = out.len();
        self.markets[h.market() as usize].book.cancel(order_id, out)?;
        self.settle(h.market(), start, out);
        Ok(())
    }

    /// Amends an order of `account` (price and/or remaining quantity; 0 keeps).
    pub fn amend(&mut self, account: u32, order_id: u64, price: i64, qty: i64, out: &mut Vec<Event>) -> Result<(), Reject> {
        let h = match self.holds.get(order_id) {
            Some(h) if h.account == account => *h,
            _ => return Err(Reason::UnknownOrder.into()),
        };
        self.check_account(account)?;
        let m = &self.markets[h.market() as usize];
        let asset = h.asset(&m.cfg);
        if m.status != MarketStatus::Trading {
            return Err(Reason::MarketNotTrading.into());
        }
        let (_, new_price, new_qty) = m.book.check_amend(order_id, price, qty)?;
        if self.linked.contains_key(&order_id) {
            // A bracket entry's size and price are what its exits' hold was
            // sized for (cancel it and place a new bracket instead).
            return Err(Reason::NotAmendable.into());
        }
        if new_qty < m.cfg.min_qty {
            return Err(Reason::BelowMinQuantity.into());
        }
        let per_lot = match h.side() {
            Side::Sell => h.per_lot,
            Side::Buy => Self::buy_per_lot(&m.cfg, new_price),
        };
        let need = new_qty as i128 * per_lot as i128;
        if need > i64::MAX as i128 {
            return Err(Reason::InsufficientFunds.into());
        }
        let need = need as i64;
        let extra = need - h.held;
        if extra > 0 {
            let avail = self.ledger.balance(account, asset).map_err(ledger_reason)?.available;
            if avail < extra {
                return Err(Reason::InsufficientFunds.into());
            }
        }
        let start = out.len();
        self.markets[h.market() as usize].book.amend(order_id, price, qty, out).expect("checked above");
        // The book accepted: take or give back the difference, then settle.
        if extra > 0 {
            self.ledger.hold(account, asset, extra).expect("checked above");
        } else {
            self.ledger.release(account, asset, -extra);
        }
        let hold = self.holds.get_mut(order_id).expect("open order");
        hold.held = need;
        hold.per_lot = per_lot;
        self.settle(h.market(), start, out);
        Ok(())
    }

    /// Cancels every order of `account`, in one market or all.
    pub fn cancel_all(&mut self, account: u32, market: Option<u32>, out: &mut Vec<Event>) -> Result<(), Reject> {
        if account as usize >= self.suspended.len() {
            return Err(Reason::UnknownAccount.into());
        }
        let markets: Vec<u32> = match market {
            Some(m) if (m as usize) < self.markets.len() => vec![m],
            Some(_) => return Err(Reason::UnknownMarket.into()),
            None => {
                let mut v: Vec<u32> = self.holds.values().filter(|h| h.account == account).map(|h| h.market()).collect();
                v.sort_unstable();
                v.dedup();
                v
            }
        };
        for m in markets {
            let start = out.len();
            self.markets[m as usize].book.mass_cancel(account as u64, out)?;
            self.settle(m, start, out);
        }
        Ok(())
    }

    /// Moves the clock: GTD orders expire in every market, in market order.
    pub fn advance_time(&mut self, ts: u64, out: &mut Vec<Event>) -> Result<(), Reject> {
        if ts < self.now {
            return Err(Reason::InvalidTime.into());
        }
        self.now = ts;
        for m in 0..self.markets.len() {
            let start = out.len();
            self.markets[m].book.advance_time(ts, out)?;
            self.settle(m as u32, start, out);
        }
        Ok(())
    }

    /// Observes an external price (a mark price) in a market, for triggers.
    pub fn observe_price(&mut self, market: u32, price: i64, out: &mut Vec<Event>) -> Result<(), Reject> {
        let m = self.markets.get_mut(market as usize).ok_or(Reason::UnknownMarket)?;
        if m.status != MarketStatus::Trading {
            return Err(Reason::MarketNotTrading.into());
        }
        let start = out.len();
        m.book.observe_price(price, out)?;
        self.settle(market, start, out);
        Ok(())
    }

    /// Moves funds for the events `out[start..]` of one market (fills settle
    /// with fees, ended orders release what they still hold), records its
    /// trades, and appends a `DEPTH` event per price level that changed.
    fn settle(&mut self, market: u32, start: usize, out: &mut Vec<Event>) {
        let cfg = self.markets[market as usize].cfg;
        let tiered = !self.markets[market as usize].tiers.is_empty();
        for e in out[start..].iter_mut() {
            e.market = market;
        }
        // The taker of the previous fill (a fill's order_id) in this step: consecutive fills of one taker
        // are one aggregate trade for Binance's aggTrades.
        let mut prev_taker = 0;
        for e in &out[start..] {
            match e.kind {
                EventKind::Fill => {
                    self.settle_fill(market, &cfg, tiered, e);
                    let same = e.order_id == prev_taker;
                    prev_taker = e.order_id;
                    self.markets[market as usize].md.record_trade(self.now, e.price, e.qty, e.side, same);
                    if !self.linked.is_empty() {
                        self.entry_filled(e.order_id, e.qty, e.remaining);
                        self.entry_filled(e.other_id, e.qty, e.other_remaining);
                    }
                }
                EventKind::Cancelled => {
                    if !self.linked.is_empty() {
                        self.linked_cancelled(e);
                    }
                    self.after_reduce(&cfg, e.order_id, 0, e.remaining)
                }
                EventKind::Triggered if !self.linked.is_empty() => self.linked_triggered(e),
                _ => {}
            }
        }
        let m = &mut self.markets[market as usize];
        let mut touched = std::mem::take(&mut self.touched);
        touched.clear();
        m.book.take_touched_levels(&mut touched);
        for &(side, price, qty) in &touched {
            m.depth_id += 1;
            out.push(Event { market, side, price, qty, order_id: m.depth_id, ..Event::new(EventKind::Depth) });
        }
        self.touched = touched;
    }

    /// A bracket entry filled `n` lots (and has `remaining` left): its
    /// exits' hold grows by `n × (max_per_lot − deficit)`, taken from what
    /// the fill just brought to available.
    fn entry_filled(&mut self, order_id: u64, n: i64, remaining: i64) {
        let Some(&g) = self.linked.get(&order_id) else { return };
        let l = self.links.get_mut(&g).expect("a linked order has its group");
        if l.entry != order_id {
            return; // a leg trades only once triggered, when it is no longer linked
        }
        let grow = n * l.grow_per_lot();
        let carrier = l.carrier;
        if remaining == 0 {
            l.entry = 0;
            self.linked.remove(&order_id);
        }
        let h = self.holds.get_mut(carrier).expect("a group's legs are open");
        h.held += grow;
        let (account, asset) = (h.account, h.asset(&self.markets[h.market() as usize].cfg));
        self.ledger.hold(account, asset, grow).expect("an entry fill brings at least what its exits hold for it");
    }

    /// A linked order is cancelled (`e`): a bracket entry's unfilled lots
    /// give back their deficit reserve; a leg takes its group with it (the
    /// book cancels the other leg in the same step), releasing the pool.
    fn linked_cancelled(&mut self, e: &Event) {
        let Some(&g) = self.linked.get(&e.order_id) else { return };
        let l = self.links[&g];
        if l.entry != e.order_id {
            self.dissolve(g, 0, 0);
            return;
        }
        let free = e.qty * l.deficit;
        let h = self.holds.get_mut(l.carrier).expect("a group's legs are open");
        h.held -= free;
        debug_assert!(h.held >= 0, "group {g} released more than it held");
        let (account, asset) = (h.account, h.asset(&self.markets[h.market() as usize].cfg));
        self.ledger.release(account, asset, free);
        if e.remaining == 0 {
            self.links.get_mut(&g).expect("group").entry = 0;
            self.linked.remove(&e.order_id);
        }
    }

    /// A linked leg triggered (`e`): it takes from the group's pool exactly
    /// what it needs as an ordinary order; the rest is released and the
    /// group ends (the book cancels the other leg, and a live entry, next).
    fn linked_triggered(&mut self, e: &Event) {
        let Some(&g) = self.linked.get(&e.order_id) else { return };
        let need = e.qty * self.holds.get(e.order_id).expect("a triggered leg holds").per_lot;
        self.dissolve(g, e.order_id, need);
    }

    /// Ends group `g`: its legs hold 0, except `survivor` (if not 0) which
    /// holds `need`; the rest of the pool is released.
    fn dissolve(&mut self, g: u64, survivor: u64, need: i64) {
        let l = self.links.remove(&g).expect("group");
        for id in [l.entry, l.tp, l.sl] {
            if id != 0 {
                self.linked.remove(&id);
            }
        }
        let (mut pool, mut who) = (0, None);
        for id in [l.tp, l.sl] {
            let h = self.holds.get_mut(id).expect("a group's legs are open");
            pool += h.held;
            h.held = 0;
            who = Some((h.account, h.asset(&self.markets[h.market() as usize].cfg)));
        }
        if survivor != 0 {
            self.holds.get_mut(survivor).expect("leg").held = need;
        }
        debug_assert!(pool >= need, "group {g} pool {pool} below the triggered leg's need {need}");
        let (account, asset) = who.expect("two legs");
        self.ledger.release(account, asset, pool - need);
    }

    /// The group of a linked order: `(group id, entry, take-profit,
    /// stop-loss)`, entry 0 for an OCO pair or once the entry has left; None
    /// once the group has ended (a leg triggered or the legs were cancelled).
    pub fn order_link(&self, order_id: u64) -> Option<(u64, u64, u64, u64)> {
        let g = *self.linked.get(&order_id)?;
        let l = &self.links[&g];
        Some((g, l.entry, l.tp, l.sl))
    }

    /// A market's last depth update id, with its best `n` levels per side.
    pub fn depth_snapshot(&self, market: u32, n: usize) -> Option<(u64, Vec<crate::DepthLevel>, Vec<crate::DepthLevel>)> {
        let m = self.markets.get(market as usize)?;
        Some((m.depth_id, m.book.depth(Side::Buy, n), m.book.depth(Side::Sell, n)))
    }

    /// A market's trades, candles and ticker.
    pub fn market_data(&self, market: u32) -> Option<&MarketData> {
        self.markets.get(market as usize).map(|m| &m.md)
    }

    fn settle_fill(&mut self, market: u32, cfg: &MarketConfig, tiered: bool, e: &Event) {
        let notional = e.price as i128 * e.qty as i128 * cfg.tick_units as i128;
        let (buyer, seller, buyer_rem, seller_rem) = match e.side {
            Side::Buy => (e.order_id, e.other_id, e.remaining, e.other_remaining),
            Side::Sell => (e.other_id, e.order_id, e.other_remaining, e.remaining),
        };
        let b = *self.holds.get(buyer).expect("buyer holds");
        let s = *self.holds.get(seller).expect("seller holds");
        let taker_is_buyer = e.side == Side::Buy;
        let ((b_maker, b_taker), (s_maker, s_taker)) = if tiered {
            let m = &self.markets[market as usize];
            (self.rates(m, b.account), self.rates(m, s.account))
        } else {
            ((cfg.maker_bps, cfg.taker_bps), (cfg.maker_bps, cfg.taker_bps))
        };
        let buyer_fee = fee(notional, if taker_is_buyer { b_taker } else { b_maker });
        let seller_fee = fee(notional, if taker_is_buyer { s_maker } else { s_taker });
        let base = e.qty * cfg.lot_units;
        let notional = notional as i64;
        // Collect fees before paying rebates so the fee account never dips.
        if buyer_fee > 0 {
            self.ledger.charge_from_held(b.account, cfg.quote, buyer_fee);
        }
        self.ledger.settle_from_held(s.account, b.account, cfg.base, base, 0);
        self.ledger.settle_from_held(b.account, s.account, cfg.quote, notional, seller_fee);
        if buyer_fee < 0 {
            self.ledger.pay_rebate(b.account, cfg.quote, -buyer_fee);
        }
        let spent = notional + buyer_fee.max(0);
        self.after_reduce(cfg, buyer, spent, buyer_rem);
        self.after_reduce(cfg, seller, base, seller_rem);
        if self.tiered_quotes.contains(&cfg.quote) {
            self.add_volume(b.account, cfg.quote, notional);
            self.add_volume(s.account, cfg.quote, notional);
        }
        for (h, order_id, side, fee, maker) in [
            (b, buyer, Side::Buy, buyer_fee, !taker_is_buyer),
            (s, seller, Side::Sell, seller_fee, taker_is_buyer),
        ] {
            let hist = self.history[h.account as usize].get_or_insert_with(|| Box::new(DeltaLog::new(HISTORY_KEPT)));
            hist.push(FillRecord { ts: self.now, order_id, market: h.market(), side, maker, price: e.price, qty: e.qty, fee });
        }
    }

    /// An account's open order ids, ascending.
    pub fn open_orders(&self, account: u32) -> Option<Vec<u64>> {
        let mut v = self.open.get(account as usize)?.clone();
        v.sort_unstable();
        Some(v)
    }

    /// An account's most recent fills (at most [`HISTORY_KEPT`]), oldest first.
    pub fn recent_fills(&self, account: u32) -> Option<Vec<FillRecord>> {
        let hist = self.history.get(account as usize)?;
        Some(hist.as_ref().map_or_else(Vec::new, |h| h.iter().collect()))
    }

    /// An order used `used` of its hold (a fill's settlement took it) and
    /// its remaining quantity is now `remaining`: release what it no longer
    /// needs (all of it once it is gone). One lookup of its hold for both.
    /// `cfg` is the config of the order's market.
    fn after_reduce(&mut self, cfg: &MarketConfig, order_id: u64, used: i64, remaining: i64) {
        let Some(h) = self.holds.get_mut(order_id) else {
            debug_assert_eq!(used, 0, "order {order_id} settled a fill without a hold");
            return;
        };
        h.held -= used;
        let keep = if remaining == 0 {
            0
        } else if h.per_lot == 0 {
            h.held // a market buy keeps its walk hold until it ends
        } else {
            remaining * h.per_lot
        };
        let excess = h.held - keep;
        debug_assert!(excess >= 0, "order {order_id} holds {} but needs {keep}", h.held);
        let (account, asset) = (h.account, h.asset(cfg));
        if remaining == 0 {
            let i = h.open_idx as usize;
            self.holds.remove(order_id);
            let open = &mut self.open[account as usize];
            debug_assert_eq!(open[i], order_id, "open order is listed where its hold says");
            open.swap_remove(i);
            if let Some(&moved) = open.get(i) {
                self.holds.get_mut(moved).expect("open orders have holds").open_idx = i as u32;
            }
        } else {
            h.held = keep;
        }
        self.ledger.release(account, asset, excess);
    }

    /// Consistency of everything the exchange keeps, as an error message.
    fn verify(&self) -> Result<(), String> {
        if let Err(asset) = self.ledger.check_conservation() {
            return Err(format!("asset {asset} not conserved"));
        }
        let mut held: std::collections::BTreeMap<(u32, u32), i64> = Default::default();
        for (id, h) in self.holds.iter() {
            let m = self.markets.get(h.market() as usize).ok_or("hold in unknown market")?;
            *held.entry((h.account, h.asset(&m.cfg))).or_default() += h.held;
            let (owner, side) = match m.book.order(id) {
                Some(crate::OrderStatus::Resting(o)) => (o.owner, o.side),
                Some(crate::OrderStatus::Pending(p)) => (p.owner, p.side),
                None => return Err(format!("order {id} holds funds but is not in its book")),
            };
            if owner != h.account as u64 || side != h.side() || h.held < 0 || h.per_lot < 0 {
                return Err(format!("order {id}: owner, side or hold inconsistent"));
            }
        }
        for account in 0..self.ledger.account_count() as u32 {
            for b in self.ledger.balances(account).map_err(|e| e.to_string())? {
                let want = held.get(&(account, b.asset)).copied().unwrap_or(0);
                if b.held != want {
                    return Err(format!("account {account} asset {}: ledger holds {} but orders {want}", b.asset, b.held));
                }
            }
        }
        let live: usize = self.markets.iter().map(|m| m.book.len() + m.book.pending_len()).sum();
        if live != self.holds.len() {
            return Err(format!("{live} live orders but {} holds", self.holds.len()));
        }
        let listed: usize = self.open.iter().map(|v| v.len()).sum();
        if listed != self.holds.len() {
            return Err("open-order lists do not match the holds".into());
        }
        self.verify_links()?;
        for (a, v) in self.open.iter().enumerate() {
            for (i, id) in v.iter().enumerate() {
                match self.holds.get(*id) {
                    Some(h) if h.account == a as u32 && h.open_idx as usize == i => {}
                    Some(h) if h.account == a as u32 => {
                        return Err(format!("order {id} is at {i} in account {a}'s open list, its hold says {}", h.open_idx));
                    }
                    _ => return Err(format!("account {a} lists an order that is not its own")),
                }
            }
        }
        Ok(())
    }

    /// Linked groups are consistent and every order holds exactly what it
    /// needs: an ordinary (or entry) order `remaining × per_lot`, a group's
    /// carrier `exit qty × max_per_lot + unfilled entry × deficit`, the
    /// other leg 0.
    fn verify_links(&self) -> Result<(), String> {
        let remaining = |id: u64, h: &Hold| -> Result<(i64, bool), String> {
            match self.markets[h.market() as usize].book.order(id) {
                Some(crate::OrderStatus::Resting(o)) => Ok((o.visible + o.hidden, true)),
                Some(crate::OrderStatus::Pending(p)) => Ok((p.qty, false)),
                None => Err(format!("order {id} holds funds but is not in its book")),
            }
        };
        let mut members = 0;
        for (&g, l) in &self.links {
            members += 2 + (l.entry != 0) as usize;
            for id in [l.entry, l.tp, l.sl] {
                if id != 0 && self.linked.get(&id) != Some(&g) {
                    return Err(format!("order {id} of group {g} is not linked to it"));
                }
            }
            let (Some(tp), Some(sl)) = (self.holds.get(l.tp), self.holds.get(l.sl)) else {
                return Err(format!("group {g}: a leg has no hold"));
            };
            if tp.account != sl.account || tp.market_side != sl.market_side || (l.carrier != l.tp && l.carrier != l.sl) {
                return Err(format!("group {g}: legs of different accounts, markets or sides, or no carrier"));
            }
            let (q_tp, resting_tp) = remaining(l.tp, tp)?;
            let (q_sl, resting_sl) = remaining(l.sl, sl)?;
            if resting_tp || resting_sl || q_tp != q_sl || l.max_per_lot != tp.per_lot.max(sl.per_lot) || l.deficit < 0 {
                return Err(format!("group {g}: legs not waiting with equal quantities, or per-lot holds inconsistent"));
            }
            let mut want = q_tp as i128 * l.max_per_lot as i128;
            if l.entry != 0 {
                let e = self.holds.get(l.entry).ok_or(format!("group {g}: entry has no hold"))?;
                let (rem, resting) = remaining(l.entry, e)?;
                if !resting || e.account != tp.account || e.market() != tp.market() || e.side() == tp.side() {
                    return Err(format!("group {g}: entry not resting, or not the opposite side of its exits"));
                }
                want += rem as i128 * l.deficit as i128;
            }
            let (carrier, other) = if l.carrier == l.tp { (tp, sl) } else { (sl, tp) };
            if carrier.held as i128 != want || other.held != 0 {
                return Err(format!("group {g}: carrier holds {} (other {}) but needs {want}", carrier.held, other.held));
            }
        }
        if members != self.linked.len() {
            return Err("linked orders do not match the groups".into());
        }
        for (id, h) in self.holds.iter() {
            let leg = self.linked.get(&id).is_some_and(|g| self.links[g].entry != id);
            if leg || h.per_lot == 0 {
                continue;
            }
            let (rem, _) = remaining(id, h)?;
            if h.held as i128 != rem as i128 * h.per_lot as i128 {
                return Err(format!("order {id} holds {} for {rem} lots at {} per lot", h.held, h.per_lot));
            }
        }
        Ok(())
    }

    /// The whole exchange state as canonical bytes: equal states give equal
    /// bytes, so a SHA-256 of them is the state hash.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        w.0.extend_from_slice(b"LXEX");
        w.0.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        w.u64(self.now);
        w.u64(self.next_order_id);
        self.ledger.encode(&mut w);
        w.u64(self.suspended.len() as u64);
        for &s in &self.suspended {
            w.u8(s as u8);
        }
        w.u64(self.markets.len() as u64);
        for m in &self.markets {
            let c = &m.cfg;
            w.u32(c.base);
            w.u32(c.quote);
            for v in [c.lot_units, c.tick_units, c.min_qty, c.min_notional, c.band_bps, c.maker_bps, c.taker_bps] {
                w.i64(v);
            }
            w.u8(m.status as u8);
            w.u64(m.depth_id);
            w.bytes(&m.book.snapshot());
            m.md.encode(&mut w);
            w.u64(m.tiers.len() as u64);
            for t in &m.tiers {
                w.i64(t.min_volume);
                w.i64(t.maker_bps);
                w.i64(t.taker_bps);
            }
        }
        w.u64(self.holds.len() as u64);
        for (id, h) in self.holds.iter() {
            w.u64(id);
            w.u32(h.account);
            w.u32(h.market());
            w.u8(h.side() as u8);
            w.u32(h.asset(&self.markets[h.market() as usize].cfg));
            w.i64(h.held);
            w.i64(h.per_lot);
        }
        for hist in &self.history {
            match hist {
                Some(h) if !h.is_empty() => h.encode(&mut w),
                _ => w.u64(0),
            }
        }
        let mut keys: Vec<&(u32, u32)> = self.volumes.keys().collect();
        keys.sort_unstable();
        w.u64(keys.len() as u64);
        for k in keys {
            let v = &self.volumes[k];
            w.u32(k.0);
            w.u32(k.1);
            w.u64(v.day);
            for b in v.buckets {
                w.i64(b);
            }
        }
        w.u64(self.tiered_quotes.len() as u64);
        for &q in &self.tiered_quotes {
            w.u32(q);
        }
        let mut gids: Vec<u64> = self.links.keys().copied().collect();
        gids.sort_unstable();
        w.u64(gids.len() as u64);
        for g in gids {
            let l = &self.links[&g];
            for v in [g, l.entry, l.tp, l.sl, l.carrier] {
                w.u64(v);
            }
            w.i64(l.max_per_lot);
            w.i64(l.deficit);
        }
        w.0
    }

    /// Rebuilds an exchange from [`Exchange::snapshot`] bytes; corrupt or
    /// inconsistent bytes give an error, never a half-built exchange.
    pub fn restore(bytes: &[u8]) -> Result<Exchange, SnapshotError> {
        let mut r = Reader { b: bytes, at: 0 };
        let magic = r.take(4)? == b"LXEX";
        let v = r.take(2)?;
        let version = u16::from_le_bytes([v[0], v[1]]);
        if !magic || !(2..=SNAPSHOT_VERSION).contains(&version) {
            return bad("not an exchange snapshot (magic or version)");
        }
        let mut x = Exchange::new();
        x.now = r.u64()?;
        x.next_order_id = r.u64()?;
        x.ledger = Ledger::decode(&mut r)?;
        let n = r.count(1)?;
        if n != x.ledger.account_count() {
            return bad("account count differs from the ledger's");
        }
        for _ in 0..n {
            x.suspended.push(r.flag("suspended")?);
            x.open.push(Vec::new());
        }
        for _ in 0..r.count(8)? {
            let (base, quote) = (r.u32()?, r.u32()?);
            let v: Vec<i64> = (0..7).map(|_| r.i64()).collect::<Result<_, _>>()?;
            let cfg = MarketConfig {
                base, quote, lot_units: v[0], tick_units: v[1], min_qty: v[2], min_notional: v[3],
                band_bps: v[4], maker_bps: v[5], taker_bps: v[6],
            };
            let status = r.enum_(MarketStatus::from_u8, "market status")?;
            let depth_id = r.u64()?;
            let mut book = Book::restore(r.bytes()?)?;
            let md = MarketData::decode(&mut r)?;
            let tiers: Vec<FeeTier> = (0..r.count(24)?)
                .map(|_| Ok(FeeTier { min_volume: r.i64()?, maker_bps: r.i64()?, taker_bps: r.i64()? }))
                .collect::<Result<_, SnapshotError>>()?;
            let id = x.add_market(cfg).map_err(|_| SnapshotError("market config invalid".into()))?;
            x.set_fee_tiers(id, &tiers).map_err(|_| SnapshotError("fee tiers invalid".into()))?;
            book.set_depth_tracking(true);
            let m = &mut x.markets[id as usize];
            (m.status, m.depth_id, m.book, m.md) = (status, depth_id, book, md);
        }
        for _ in 0..r.count(37)? {
            let id = r.u64()?;
            let (account, market) = (r.u32()?, r.u32()?);
            let side = r.enum_(Side::from_u8, "hold side")?;
            let (asset, held, per_lot) = (r.u32()?, r.i64()?, r.i64()?);
            if id == 0 || account as usize >= x.open.len() || x.holds.contains_key(id) || id >= x.next_order_id || held < 0 || per_lot < 0 {
                return bad(format!("hold of order {id} inconsistent"));
            }
            let Some(m) = x.markets.get(market as usize) else {
                return bad(format!("hold of order {id} in unknown market {market}"));
            };
            let open = &mut x.open[account as usize];
            let h = Hold::new(account, market, side, held, per_lot, open.len() as u32);
            if h.asset(&m.cfg) != asset {
                return bad(format!("hold of order {id}: asset {asset} is not the one its side holds"));
            }
            x.holds.insert(id, h);
            open.push(id);
        }
        for _ in 0..n {
            let hist: DeltaLog<FillRecord> = DeltaLog::decode(&mut r, HISTORY_KEPT, "fill history")?;
            x.history.push((!hist.is_empty()).then(|| Box::new(hist)));
        }
        let mut prev = None;
        for _ in 0..r.count(16 + 8 * VOLUME_DAYS)? {
            let key = (r.u32()?, r.u32()?);
            let day = r.u64()?;
            let mut buckets = [0i64; VOLUME_DAYS];
            for b in &mut buckets {
                *b = r.i64()?;
            }
            if prev.is_some_and(|p| p >= key) || buckets.iter().any(|&b| b < 0) {
                return bad("volume windows out of order or negative");
            }
            prev = Some(key);
            let total = buckets.iter().map(|&b| b as i128).sum();
            x.volumes.insert(key, VolumeWindow { day, buckets, total });
        }
        let quotes: Vec<u32> = (0..r.count(4)?).map(|_| r.u32()).collect::<Result<_, _>>()?;
        if !quotes.windows(2).all(|w| w[0] < w[1]) || quotes.iter().any(|&q| q as usize >= x.ledger.asset_count()) {
            return bad("tiered quote assets out of order or unknown");
        }
        x.tiered_quotes = quotes;
        if version >= 3 {
            for _ in 0..r.count(56)? {
                let (g, entry, tp, sl, carrier) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?);
                let (max_per_lot, deficit) = (r.i64()?, r.i64()?);
                if x.links.contains_key(&g) || tp == 0 || sl == 0 {
                    return bad(format!("linked group {g} repeated or without legs"));
                }
                for id in [entry, tp, sl] {
                    if id != 0 && x.linked.insert(id, g).is_some() {
                        return bad(format!("order {id} in two linked groups"));
                    }
                }
                x.links.insert(g, Link { entry, tp, sl, carrier, max_per_lot, deficit });
            }
        }
        r.done()?;
        x.verify().map_err(SnapshotError)?;
        Ok(x)
    }

    /// Applies one batch record (see `docs/exchange.md`): the record's
    /// `owner` is the account and `market` the market (`u32::MAX` in a
    /// `MASS_CANCEL`: every market). A rejection becomes a `REJECTED` event.
    /// Every event gets `cmd_index`.
    pub fn apply_record(&mut self, rec: &CommandRecord, cmd_index: u32, out: &mut Vec<Event>) {
        let start = out.len();
        if let Err(r) = self.apply_record_inner(rec, out) {
            out.truncate(start);
            let mut e = rec.rejected(r.reason);
            e.market = rec.market;
            out.push(e);
        }
        for e in &mut out[start..] {
            e.cmd_index = cmd_index;
        }
    }

    #[inline]
    fn apply_record_inner(&mut self, rec: &CommandRecord, out: &mut Vec<Event>) -> Result<(), Reject> {
        let account = u32::try_from(rec.owner).map_err(|_| Reason::UnknownAccount)?;
        let asset = || u32::try_from(rec.order_id).map_err(|_| Reject::from(Reason::UnknownAsset));
        match rec.kind {
            kind::SUBMIT => match rec.to_command()? {
                Command::Submit(r) => self.place(account, rec.market, &r, out).map(|_| ()),
                _ => unreachable!(),
            },
            kind::CANCEL => self.cancel(account, rec.order_id, out),
            kind::AMEND => self.amend(account, rec.order_id, rec.price, rec.qty, out),
            kind::MASS_CANCEL => self.cancel_all(account, (rec.market != u32::MAX).then_some(rec.market), out),
            kind::ADVANCE_TIME => self.advance_time(rec.expire_ts, out),
            kind::OBSERVE_PRICE => self.observe_price(rec.market, rec.price, out),
            kind::DEPOSIT => self.deposit(account, asset()?, rec.qty),
            kind::WITHDRAW => self.withdraw(account, asset()?, rec.qty),
            kind::TRANSFER => {
                let to = u32::try_from(rec.tp_id).map_err(|_| Reason::UnknownAccount)?;
                self.transfer(account, to, asset()?, rec.qty)
            }
            kind::BRACKET => match rec.to_command()? {
                Command::Bracket(r) => self.place_bracket(account, rec.market, &r, out).map(|_| ()),
                _ => unreachable!(),
            },
            kind::OCO => match rec.to_command()? {
                Command::Oco(r) => self.place_oco(account, rec.market, &r, out).map(|_| ()),
                _ => unreachable!(),
            },
            _ => Err(Reason::InvalidCommand.into()),
        }
    }

    /// Applies a buffer of whole command records, appending their events.
    ///
    /// With hundreds of thousands of orders resting, a cancel's lookups
    /// (its hold, the book's index, its slot, its place in the account's
    /// open list) are each a cache miss, one after the other. So while
    /// applying row `i` this brings in, as hints that change nothing, what
    /// rows `i + 6` and `i + 12` will read, one dependent step at a time
    /// (see `Exchange::prefetch_row`).
    pub fn apply_records(&mut self, bytes: &[u8], out: &mut Vec<Event>) {
        let n = bytes.len() / COMMAND_RECORD_SIZE;
        let row = |i: usize| &bytes[i * COMMAND_RECORD_SIZE..(i + 1) * COMMAND_RECORD_SIZE];
        // Few open orders: their holds, slots and index buckets stay in
        // cache, and the pipeline would only add work.
        let pipeline = cfg!(debug_assertions) || self.holds.len() >= PREFETCH_MIN_ORDERS;
        let first = PREFETCH_STAGES[0].1;
        // Submits among rows [i, i + first): the id a submit at i + first
        // will get if they are all accepted (most are).
        let mut submits = if pipeline { (0..first.min(n)).filter(|&j| row(j)[0] == kind::SUBMIT).count() as u64 } else { 0 };
        for i in 0..n {
            if pipeline {
                for (stage, ahead) in PREFETCH_STAGES {
                    if i + ahead < n {
                        self.prefetch_row(row(i + ahead), stage, self.next_order_id + submits);
                    }
                }
                if row(i)[0] == kind::SUBMIT {
                    submits -= 1;
                }
                if i + first < n && row(i + first)[0] == kind::SUBMIT {
                    submits += 1;
                }
            }
            self.apply_record(&CommandRecord::from_bytes(row(i)), i as u32, out);
        }
    }

    /// One step of the prefetch pipeline of [`Exchange::apply_records`]
    /// for a coming row (its raw bytes). A cancel or amend: stage 0 brings
    /// in its hold and the book's index bucket (the row's market is the
    /// client's word, used only as a hint); stage 1, with those in cache,
    /// the order's slot, its entry in the account's open list and the hold
    /// of the account's last open order (which moves into that entry when
    /// the order closes). A submit: stage 0 the index bucket of `guess_id`
    /// (its id if the submits before it are accepted), stage 1 the slab slot
    /// it would take.
    #[inline]
    fn prefetch_row(&self, row: &[u8], stage: u8, guess_id: u64) {
        let k = row[0];
        if k == kind::SUBMIT {
            // Its id, if the submits before it are all accepted: bring in
            // the book index bucket it will be inserted into.
            let market = u32::from_le_bytes(row[8..12].try_into().expect("4 bytes"));
            if let Some(m) = self.markets.get(market as usize) {
                m.book.prefetch_new(guess_id, stage);
            }
            return;
        }
        if k != kind::CANCEL && k != kind::AMEND {
            return;
        }
        let id = u64::from_le_bytes(row[16..24].try_into().expect("8 bytes"));
        if stage == 0 {
            self.holds.prefetch(id);
            let market = u32::from_le_bytes(row[8..12].try_into().expect("4 bytes"));
            if let Some(m) = self.markets.get(market as usize) {
                m.book.prefetch_order(id, 0);
            }
            return;
        }
        let Some(h) = self.holds.get(id) else { return };
        self.markets[h.market() as usize].book.prefetch_order(id, stage);
        let open = &self.open[h.account as usize];
        prefetch(open.as_ptr().wrapping_add(h.open_idx as usize));
        if let Some(&last) = open.last() {
            self.holds.prefetch(last);
        }
    }

    /// Checks the exchange's invariants: ledger conservation, and every open
    /// order's hold equals what the ledger holds for its account. For tests.
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        if let Err(e) = self.verify() {
            panic!("exchange invariant broken: {e}");
        }
        for m in &self.markets {
            m.book.check_invariants();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fee;
    use proptest::prelude::*;

    /// The definition in i128, for any notional and rate.
    fn fee_i128(notional: i128, bps: i64) -> i64 {
        let x = notional * bps.unsigned_abs() as i128;
        if bps >= 0 { ((x + 9_999) / 10_000) as i64 } else { -((x / 10_000) as i64) }
    }

    proptest! {
        #[test]
        fn fee_fast_path_is_exact(n in 0i128..(1i128 << 90), small in 0u64..u64::MAX / 10_000, bps in -10_000i64..=10_000) {
            prop_assert_eq!(fee(n, bps), fee_i128(n, bps));
            prop_assert_eq!(fee(small as i128, bps), fee_i128(small as i128, bps));
        }
    }

    #[test]
    fn fee_at_the_64_bit_edge() {
        for x in [0u64, 1, 9_999, 10_000, 10_001, u64::MAX / 10_000, u64::MAX - 1, u64::MAX] {
            for bps in [-10_000i64, -1, 0, 1, 7, 10_000] {
                let n = x as i128 / bps.unsigned_abs().max(1) as i128;
                assert_eq!(fee(n, bps), fee_i128(n, bps), "n {n} bps {bps}");
            }
            assert_eq!(fee(x as i128, 1), fee_i128(x as i128, 1));
        }
    }
}
