//! Per-market data derived from trades: the recent-trade tape, OHLCV candles
//! and the rolling 24 h ticker.
//!
//! Timestamps are milliseconds of the exchange clock. Candles are stored at
//! four base resolutions (1 s, 1 m, 1 h, 1 d) in bounded rings; every other
//! interval is aggregated from the finest base that divides it at query time
//! (3m…30m from 1m, 2h…12h from 1h, 1w and 1M from 1d). Only intervals in
//! which something traded have a candle.

use crate::compact::{get_delta, get_u128, get_u64, zigzag, DeltaLog, Enc, Row};
use crate::types::Side;

pub const SECOND: u64 = 1_000;
pub const MINUTE: u64 = 60 * SECOND;
pub const HOUR: u64 = 60 * MINUTE;
pub const DAY: u64 = 24 * HOUR;
pub const WEEK: u64 = 7 * DAY;

/// Ring sizes: recent trades, and candles per base resolution.
pub const TRADES_KEPT: usize = 1_000;
const KEEP_1S: usize = 300;
const KEEP_1M: usize = 1_440;
const KEEP_1H: usize = 24 * 31;
const KEEP_1D: usize = 400;

/// One trade of the tape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trade {
    /// Per-market trade id, from 1.
    pub id: u64,
    pub ts: u64,
    pub price: i64,
    pub qty: i64,
    pub taker_side: Side,
    /// Taken by the same order as the trade before it, in the same command
    /// (one taker sweeping makers): what Binance's aggregate trades group,
    /// with the price.
    pub same_taker: bool,
}

/// An OHLCV candle; volume in lots, quote volume in ticks x lots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candle {
    /// Start of the interval (ms).
    pub start: u64,
    pub open: i64,
    pub high: i64,
    pub low: i64,
    pub close: i64,
    pub volume: i64,
    pub quote_volume: i128,
    pub trades: u64,
}

impl Candle {
    fn new(start: u64, price: i64, qty: i64) -> Candle {
        Candle {
            start,
            open: price,
            high: price,
            low: price,
            close: price,
            volume: qty,
            quote_volume: price as i128 * qty as i128,
            trades: 1,
        }
    }
    fn add(&mut self, price: i64, qty: i64) {
        self.high = self.high.max(price);
        self.low = self.low.min(price);
        self.close = price;
        self.volume += qty;
        self.quote_volume += price as i128 * qty as i128;
        self.trades += 1;
    }
    fn merge(&mut self, later: &Candle) {
        self.high = self.high.max(later.high);
        self.low = self.low.min(later.low);
        self.close = later.close;
        self.volume += later.volume;
        self.quote_volume += later.quote_volume;
        self.trades += later.trades;
    }
}

/// A candle interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interval {
    /// A fixed length in ms (aligned to the Unix epoch).
    Fixed(u64),
    /// Weeks starting Monday 00:00.
    Week,
    /// Calendar months.
    Month,
}

impl Interval {
    /// Parses Binance-style names: 1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 1w 1M.
    pub fn parse(s: &str) -> Option<Interval> {
        Some(match s {
            "1s" => Interval::Fixed(SECOND),
            "1m" => Interval::Fixed(MINUTE),
            "3m" => Interval::Fixed(3 * MINUTE),
            "5m" => Interval::Fixed(5 * MINUTE),
            "15m" => Interval::Fixed(15 * MINUTE),
            "30m" => Interval::Fixed(30 * MINUTE),
            "1h" => Interval::Fixed(HOUR),
            "2h" => Interval::Fixed(2 * HOUR),
            "4h" => Interval::Fixed(4 * HOUR),
            "6h" => Interval::Fixed(6 * HOUR),
            "8h" => Interval::Fixed(8 * HOUR),
            "12h" => Interval::Fixed(12 * HOUR),
            "1d" => Interval::Fixed(DAY),
            "1w" => Interval::Week,
            "1M" => Interval::Month,
            _ => return None,
        })
    }

    /// Start of the interval containing `ts`.
    pub fn start_of(self, ts: u64) -> u64 {
        match self {
            Interval::Fixed(len) => ts - ts % len,
            // 1970-01-01 was a Thursday; Monday 1970-01-05 starts week 0.
            Interval::Week => {
                let shifted = ts + 3 * DAY;
                (shifted - shifted % WEEK).saturating_sub(3 * DAY)
            }
            Interval::Month => {
                let (y, m, _) = civil_from_days((ts / DAY) as i64);
                days_from_civil(y, m, 1) as u64 * DAY
            }
        }
    }
}

/// (year, month 1..=12, day 1..=31) of a day number since 1970-01-01
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = y - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A candle stored in a ring: `start` counted in intervals of the ring's
/// length (consecutive candles differ by 1), prices as deltas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slotted(Candle);

impl Slotted {
    fn of(c: Candle, len: u64) -> Slotted {
        debug_assert_eq!(c.start % len, 0);
        Slotted(Candle { start: c.start / len, ..c })
    }
    fn candle(self, len: u64) -> Candle {
        Candle { start: self.0.start.wrapping_mul(len), ..self.0 }
    }
}

/// Flags of a candle row: which of the fields that are usually zero follow.
const HIGH: u8 = 1; // high - open
const LOW: u8 = 2; // open - low
const CLOSE: u8 = 4; // close - low
const VOLUME: u8 = 8; // volume - 1
const QUOTE: u8 = 16; // quote_volume - low x volume
const TRADES: u8 = 32; // trades - 1
const NEXT: u8 = 64; // the candle follows the previous one (slot delta 1, not written)

impl Row for Slotted {
    const ORIGIN: Slotted =
        Slotted(Candle { start: 0, open: 0, high: 0, low: 0, close: 0, volume: 0, quote_volume: 0, trades: 0 });
    const MAX_BYTES: usize = 1 + 10 * 7 + 19;

    /// A flags byte, the slot delta (unless it is 1), the open as a delta
    /// from the previous close, then the flagged fields: a one-trade
    /// candle right after the previous one takes 2-4 bytes.
    #[inline]
    fn put(&self, prev: &Slotted, out: &mut Enc) {
        let (c, p) = (&self.0, &prev.0);
        let high = c.high.wrapping_sub(c.open) as u64;
        let low = c.open.wrapping_sub(c.low) as u64;
        let close = c.close.wrapping_sub(c.low) as u64;
        let volume = c.volume.wrapping_sub(1) as u64;
        let quote = c.quote_volume.wrapping_sub(c.low as i128 * c.volume as i128) as u128;
        let trades = c.trades.wrapping_sub(1);
        let flag = |v: bool, f: u8| if v { f } else { 0 };
        let flags = flag(high != 0, HIGH)
            | flag(low != 0, LOW)
            | flag(close != 0, CLOSE)
            | flag(volume != 0, VOLUME)
            | flag(quote != 0, QUOTE)
            | flag(trades != 0, TRADES)
            | flag(c.start.wrapping_sub(p.start) == 1, NEXT);
        out.u8(flags);
        if flags & NEXT == 0 {
            out.u64(c.start.wrapping_sub(p.start));
        }
        out.delta(c.open, p.close);
        for (f, v) in [(HIGH, high), (LOW, low), (CLOSE, close), (VOLUME, volume)] {
            if flags & f != 0 {
                out.u64(v);
            }
        }
        if flags & QUOTE != 0 {
            out.u128(quote);
        }
        if flags & TRADES != 0 {
            out.u64(trades);
        }
    }

    #[inline]
    fn get(prev: &Slotted, buf: &[u8], at: &mut usize) -> Option<Slotted> {
        let flags = *buf.get(*at)?;
        *at += 1;
        if flags >= 128 {
            return None;
        }
        let step = if flags & NEXT != 0 { 1 } else { get_u64(buf, at).filter(|&d| d != 1)? };
        let start = prev.0.start.wrapping_add(step);
        let open = get_delta(buf, at, prev.0.close)?;
        let mut field = |f: u8| -> Option<u64> {
            if flags & f == 0 {
                return Some(0);
            }
            // A flagged field is never 0: one encoding per candle.
            get_u64(buf, at).filter(|&v| v != 0)
        };
        let high = open.wrapping_add(field(HIGH)? as i64);
        let low = open.wrapping_sub(field(LOW)? as i64);
        let close = low.wrapping_add(field(CLOSE)? as i64);
        let volume = (field(VOLUME)? as i64).wrapping_add(1);
        let quote = if flags & QUOTE != 0 { get_u128(buf, at).filter(|&v| v != 0)? } else { 0 };
        let quote_volume = (low as i128 * volume as i128).wrapping_add(quote as i128);
        let trades = if flags & TRADES != 0 { get_u64(buf, at).filter(|&v| v != 0)? } else { 0 }.wrapping_add(1);
        Some(Slotted(Candle { start, open, high, low, close, volume, quote_volume, trades }))
    }
}

/// The candles of one base resolution: the closed ones delta-encoded, the
/// open (newest) one as a plain struct, since every trade updates it.
#[derive(Clone, Debug)]
struct Ring {
    len: u64,
    keep: usize,
    closed: DeltaLog<Slotted>,
    open: Option<Candle>,
}

impl Ring {
    fn new(len: u64, keep: usize) -> Ring {
        debug_assert!(keep >= 2);
        Ring { len, keep, closed: DeltaLog::new(keep - 1), open: None }
    }
    #[inline]
    fn add(&mut self, ts: u64, price: i64, qty: i64) {
        let start = ts - ts % self.len;
        match &mut self.open {
            Some(c) if c.start == start => c.add(price, qty),
            _ => {
                if let Some(c) = self.open.take() {
                    self.closed.push(Slotted::of(c, self.len));
                }
                self.open = Some(Candle::new(start, price, qty));
            }
        }
    }
    /// The candles, oldest first.
    fn iter(&self) -> impl Iterator<Item = Candle> + '_ {
        let len = self.len;
        self.closed.iter().map(move |s| s.candle(len)).chain(self.open)
    }
}

/// The rolling 24 h statistics of a market.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ticker {
    pub open: i64,
    pub high: i64,
    pub low: i64,
    pub last: i64,
    pub volume: i64,
    pub quote_volume: i128,
    pub trades: u64,
}

/// A trade as the tape stores it: its id is its position (ids are
/// consecutive), the rest deltas from the trade before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TapeRow {
    ts: u64,
    price: i64,
    qty: i64,
    taker_side: Side,
    same_taker: bool,
}

impl Row for TapeRow {
    const ORIGIN: TapeRow = TapeRow { ts: 0, price: 0, qty: 0, taker_side: Side::Buy, same_taker: false };
    const MAX_BYTES: usize = 10 + 10 + 19;

    /// Time delta, price delta, then quantity, "same taker" and side in one
    /// varint: 4-6 bytes for a trade a minute after the last at a nearby
    /// price. A trade's quantity is positive, so its zigzag form is even
    /// and its low bit is free: it carries "same taker" (0 in tapes written
    /// before it did: each trade its own aggregate), at no cost in bytes.
    #[inline]
    fn put(&self, prev: &TapeRow, out: &mut Enc) {
        out.u64(self.ts.wrapping_sub(prev.ts));
        out.delta(self.price, prev.price);
        let same = (self.same_taker && self.qty > 0) as u64;
        out.u128(((zigzag(self.qty) | same) as u128) << 1 | self.taker_side as u128);
    }

    #[inline]
    fn get(prev: &TapeRow, buf: &[u8], at: &mut usize) -> Option<TapeRow> {
        let ts = prev.ts.wrapping_add(get_u64(buf, at)?);
        let price = get_delta(buf, at, prev.price)?;
        let v = get_u128(buf, at)?;
        if v >> 65 != 0 {
            return None;
        }
        let taker_side = if v & 1 == 0 { Side::Buy } else { Side::Sell };
        let q = (v >> 1) as u64;
        let (qty, same_taker) = ((q >> 1) as i64, q & 1 == 1);
        if same_taker && qty == 0 {
            return None; // never written: one encoding per row
        }
        Some(TapeRow { ts, price, qty, taker_side, same_taker })
    }
}

/// Trades, candles and ticker of one market.
#[derive(Clone, Debug)]
pub struct MarketData {
    next_trade_id: u64,
    tape: DeltaLog<TapeRow>,
    rings: [Ring; 4],
}

impl Default for MarketData {
    fn default() -> Self {
        MarketData {
            next_trade_id: 1,
            tape: DeltaLog::new(TRADES_KEPT),
            rings: [
                Ring::new(SECOND, KEEP_1S),
                Ring::new(MINUTE, KEEP_1M),
                Ring::new(HOUR, KEEP_1H),
                Ring::new(DAY, KEEP_1D),
            ],
        }
    }
}

impl MarketData {
    /// Records a trade at the exchange time `ts`; returns its trade id.
    pub fn record(&mut self, ts: u64, price: i64, qty: i64, taker_side: Side) -> u64 {
        self.record_trade(ts, price, qty, taker_side, false)
    }

    /// Records a trade as [`MarketData::record`], saying whether the same
    /// order took in the trade before it (in the same command).
    pub fn record_trade(&mut self, ts: u64, price: i64, qty: i64, taker_side: Side, same_taker: bool) -> u64 {
        let id = self.next_trade_id;
        self.next_trade_id += 1;
        self.tape.push(TapeRow { ts, price, qty, taker_side, same_taker });
        for r in &mut self.rings {
            r.add(ts, price, qty);
        }
        id
    }

    /// The most recent trades, newest last (at most `limit`).
    pub fn trades(&self, limit: usize) -> impl Iterator<Item = Trade> + '_ {
        let n = self.tape.len();
        let first_id = self.next_trade_id - n as u64;
        self.tape.iter().enumerate().skip(n.saturating_sub(limit)).map(move |(i, t)| Trade {
            id: first_id + i as u64,
            ts: t.ts,
            price: t.price,
            qty: t.qty,
            taker_side: t.taker_side,
            same_taker: t.same_taker,
        })
    }

    /// Candles of `interval` starting at or after `since` (ms), oldest first,
    /// the newest `limit` of them.
    pub fn candles(&self, interval: Interval, since: u64, limit: usize) -> Vec<Candle> {
        let base = match interval {
            Interval::Fixed(len) if len < MINUTE => &self.rings[0],
            Interval::Fixed(len) if len < HOUR => &self.rings[1],
            Interval::Fixed(len) if len < DAY => &self.rings[2],
            _ => &self.rings[3],
        };
        let mut out: Vec<Candle> = Vec::new();
        for c in base.iter() {
            let start = interval.start_of(c.start);
            match out.last_mut() {
                Some(last) if last.start == start => last.merge(&c),
                _ => out.push(Candle { start, ..c }),
            }
        }
        out.retain(|c| c.start >= since);
        let skip = out.len().saturating_sub(limit);
        out.drain(..skip);
        out
    }

    /// Statistics over the 1-minute candles of the 24 hours up to `now`.
    pub fn ticker(&self, now: u64) -> Option<Ticker> {
        let from = now.saturating_sub(DAY - MINUTE);
        let from = from - from % MINUTE;
        let mut window = self.rings[1].iter().filter(|c| c.start >= from);
        let first = window.next()?;
        let mut t = Ticker {
            open: first.open,
            high: first.high,
            low: first.low,
            last: first.close,
            volume: first.volume,
            quote_volume: first.quote_volume,
            trades: first.trades,
        };
        for c in window {
            t.high = t.high.max(c.high);
            t.low = t.low.min(c.low);
            t.last = c.close;
            t.volume += c.volume;
            t.quote_volume += c.quote_volume;
            t.trades += c.trades;
        }
        Some(t)
    }

    /// Trades recorded so far.
    pub fn trade_count(&self) -> u64 {
        self.next_trade_id - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_round_trip() {
        for z in -800_000..800_000 {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    }

    #[test]
    fn week_and_month_starts() {
        // 2024-01-03 (a Wednesday) is in the week starting Monday 2024-01-01.
        let wed = days_from_civil(2024, 1, 3) as u64 * DAY + 5 * HOUR;
        assert_eq!(Interval::Week.start_of(wed), days_from_civil(2024, 1, 1) as u64 * DAY);
        let mid_feb = days_from_civil(2024, 2, 29) as u64 * DAY + HOUR;
        assert_eq!(Interval::Month.start_of(mid_feb), days_from_civil(2024, 2, 1) as u64 * DAY);
        // Before the first Monday the week starts at the epoch (no underflow).
        assert_eq!(Interval::Week.start_of(0), 0);
    }

    /// The previous, plain implementation (a `VecDeque` of structs per
    /// ring and for the tape), kept as the model the compact one must match.
    mod plain {
        use super::super::*;
        use std::collections::VecDeque;

        pub struct Ring {
            pub len: u64,
            pub keep: usize,
            pub candles: VecDeque<Candle>,
        }
        impl Ring {
            fn add(&mut self, ts: u64, price: i64, qty: i64) {
                let start = ts - ts % self.len;
                match self.candles.back_mut() {
                    Some(c) if c.start == start => c.add(price, qty),
                    _ => {
                        if self.candles.len() == self.keep {
                            self.candles.pop_front();
                        }
                        self.candles.push_back(Candle::new(start, price, qty));
                    }
                }
            }
        }
        pub struct MarketData {
            pub next_trade_id: u64,
            pub tape: VecDeque<Trade>,
            pub rings: [Ring; 4],
        }
        impl Default for MarketData {
            fn default() -> Self {
                let ring = |len, keep| Ring { len, keep, candles: VecDeque::new() };
                MarketData {
                    next_trade_id: 1,
                    tape: VecDeque::new(),
                    rings: [ring(SECOND, KEEP_1S), ring(MINUTE, KEEP_1M), ring(HOUR, KEEP_1H), ring(DAY, KEEP_1D)],
                }
            }
        }
        impl MarketData {
            pub fn record(&mut self, ts: u64, price: i64, qty: i64, taker_side: Side, same_taker: bool) -> u64 {
                let id = self.next_trade_id;
                self.next_trade_id += 1;
                if self.tape.len() == TRADES_KEPT {
                    self.tape.pop_front();
                }
                self.tape.push_back(Trade { id, ts, price, qty, taker_side, same_taker });
                for r in &mut self.rings {
                    r.add(ts, price, qty);
                }
                id
            }
            pub fn trades(&self, limit: usize) -> Vec<Trade> {
                self.tape.iter().skip(self.tape.len().saturating_sub(limit)).copied().collect()
            }
            pub fn candles(&self, interval: Interval, since: u64, limit: usize) -> Vec<Candle> {
                let base = match interval {
                    Interval::Fixed(len) if len < MINUTE => &self.rings[0],
                    Interval::Fixed(len) if len < HOUR => &self.rings[1],
                    Interval::Fixed(len) if len < DAY => &self.rings[2],
                    _ => &self.rings[3],
                };
                let mut out: Vec<Candle> = Vec::new();
                for c in &base.candles {
                    let start = interval.start_of(c.start);
                    match out.last_mut() {
                        Some(last) if last.start == start => last.merge(c),
                        _ => out.push(Candle { start, ..*c }),
                    }
                }
                out.retain(|c| c.start >= since);
                let skip = out.len().saturating_sub(limit);
                out.drain(..skip);
                out
            }
            pub fn ticker(&self, now: u64) -> Option<Ticker> {
                let from = now.saturating_sub(DAY - MINUTE);
                let from = from - from % MINUTE;
                let mut window = self.rings[1].candles.iter().filter(|c| c.start >= from);
                let first = window.next()?;
                let mut t = Ticker {
                    open: first.open,
                    high: first.high,
                    low: first.low,
                    last: first.close,
                    volume: first.volume,
                    quote_volume: first.quote_volume,
                    trades: first.trades,
                };
                for c in window {
                    t.high = t.high.max(c.high);
                    t.low = t.low.min(c.low);
                    t.last = c.close;
                    t.volume += c.volume;
                    t.quote_volume += c.quote_volume;
                    t.trades += c.trades;
                }
                Some(t)
            }
        }
    }

    fn snapshot_round_trip(md: &MarketData) -> MarketData {
        let mut w = crate::codec::Writer(Vec::new());
        md.encode(&mut w);
        let mut r = crate::codec::Reader { b: &w.0, at: 0 };
        let back = MarketData::decode(&mut r).unwrap();
        r.done().unwrap();
        let mut w2 = crate::codec::Writer(Vec::new());
        back.encode(&mut w2);
        assert_eq!(w.0, w2.0, "snapshot bytes are canonical");
        back
    }

    fn assert_same(md: &MarketData, model: &plain::MarketData, now: u64) {
        assert_eq!(md.trade_count(), model.next_trade_id - 1);
        for limit in [0, 1, 7, TRADES_KEPT, usize::MAX] {
            assert_eq!(md.trades(limit).collect::<Vec<_>>(), model.trades(limit));
        }
        for name in ["1s", "1m", "3m", "1h", "2h", "1d", "1w", "1M"] {
            let iv = Interval::parse(name).unwrap();
            for (since, limit) in [(0, usize::MAX), (now.saturating_sub(HOUR), 5)] {
                assert_eq!(md.candles(iv, since, limit), model.candles(iv, since, limit), "{name}");
            }
        }
        assert_eq!(md.ticker(now), model.ticker(now));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// The compact market data answers every query as the plain model
        /// does, for trades at any gaps, prices and sizes (ring edges
        /// included), and its snapshot restores the same answers.
        #[test]
        fn compact_market_data_matches_the_plain_model(
            trades in proptest::collection::vec(
                (proptest::prop_oneof![0u64..3, 0u64..2_000, 0u64..200_000, 0u64..3 * DAY],
                 proptest::prop_oneof![90i64..110, 1i64..i64::MAX],
                 proptest::prop_oneof![1i64..4, 1i64..1_000_000_000_000],
                 proptest::bool::ANY, proptest::bool::ANY),
                0..2_500),
            start in proptest::prop_oneof![proptest::strategy::Just(0u64), 0u64..4_000_000_000_000],
        ) {
            let (mut md, mut model) = (MarketData::default(), plain::MarketData::default());
            let mut ts = start;
            for (i, &(gap, price, qty, sell, same)) in trades.iter().enumerate() {
                ts += gap;
                let side = if sell { Side::Sell } else { Side::Buy };
                proptest::prop_assert_eq!(md.record_trade(ts, price, qty, side, same), model.record(ts, price, qty, side, same));
                if i % 500 == 0 {
                    assert_same(&md, &model, ts);
                }
            }
            assert_same(&md, &model, ts);
            assert_same(&md, &model, ts + 5 * HOUR);
            assert_same(&snapshot_round_trip(&md), &model, ts);
        }
    }

    #[test]
    fn compact_market_data_at_the_design_point() {
        // One trade a minute for two days: the tape and the 1 s and 1 m rings
        // are full; every answer matches the model and memory stays small.
        let (mut md, mut model) = (MarketData::default(), plain::MarketData::default());
        let start = 1_700_000_000_000 - 1_700_000_000_000 % DAY;
        for minute in 0..2 * 1_440u64 {
            let ts = start + minute * MINUTE + 1;
            let price = 1_000 + (minute % 7) as i64;
            md.record_trade(ts, price, 1, Side::Buy, minute % 3 == 1);
            model.record(ts, price, 1, Side::Buy, minute % 3 == 1);
        }
        assert_same(&md, &model, start + 2 * DAY);
        assert_eq!(md.rings[1].iter().count(), KEEP_1M);
        let heap = md.tape.heap_bytes() + md.rings.iter().map(|r| r.closed.heap_bytes()).sum::<usize>();
        // 1,000 trades + 1,740 candles: ~5 and 2-3 bytes each here, with
        // the slack (the plain structs took 40 and 80, in power-of-two
        // rings: ~250 KB).
        assert!(heap < 12_000, "{heap} bytes");
        assert_same(&snapshot_round_trip(&md), &model, start + 2 * DAY);
    }

    #[test]
    fn corrupt_market_data_is_refused() {
        let mut md = MarketData::default();
        for i in 0..50u64 {
            md.record(i * 700, 100 + (i % 3) as i64, 1 + (i % 2) as i64, Side::Sell);
        }
        let mut w = crate::codec::Writer(Vec::new());
        md.encode(&mut w);
        // Every truncation and every single-byte change is refused or
        // restores something; none panics.
        for cut in 0..w.0.len() {
            let mut r = crate::codec::Reader { b: &w.0[..cut], at: 0 };
            assert!(MarketData::decode(&mut r).and_then(|_| r.done()).is_err());
        }
        for i in 0..w.0.len() {
            for bit in 0..8 {
                let mut b = w.0.clone();
                b[i] ^= 1 << bit;
                let mut r = crate::codec::Reader { b: &b, at: 0 };
                let _ = MarketData::decode(&mut r);
            }
        }
    }

    #[test]
    fn candles_aggregate_like_brute_force() {
        let mut md = MarketData::default();
        let mut trades = Vec::new();
        let mut ts = 1_700_000_000_000u64;
        for i in 0..5_000u64 {
            ts += (i * 7_919) % 90_000;
            let price = 100 + ((i * 31) % 17) as i64;
            let qty = 1 + (i % 5) as i64;
            md.record(ts, price, qty, Side::Buy);
            trades.push((ts, price, qty));
        }
        for name in ["1m", "5m", "15m", "1h", "4h", "1d"] {
            let iv = Interval::parse(name).unwrap();
            let got = md.candles(iv, 0, usize::MAX);
            // Brute force over trades still covered by the base ring.
            let first = got.first().unwrap().start;
            let mut want: Vec<Candle> = Vec::new();
            for &(t, p, q) in trades.iter().filter(|(t, _, _)| iv.start_of(*t) >= first) {
                let start = iv.start_of(t);
                match want.last_mut() {
                    Some(c) if c.start == start => c.add(p, q),
                    _ => want.push(Candle::new(start, p, q)),
                }
            }
            // The oldest aggregated candle may be cut by the ring's edge.
            assert_eq!(got[1..], want[1..], "interval {name}");
        }
    }
}

mod encoding {
    use super::*;
    use crate::codec::{bad, Reader, SnapshotError, Writer};

    fn put_candle(w: &mut Writer, c: &Candle) {
        w.u64(c.start);
        for v in [c.open, c.high, c.low, c.close, c.volume] {
            w.i64(v);
        }
        w.i128(c.quote_volume);
        w.u64(c.trades);
    }

    fn get_candle(r: &mut Reader<'_>) -> Result<Candle, SnapshotError> {
        Ok(Candle {
            start: r.u64()?,
            open: r.i64()?,
            high: r.i64()?,
            low: r.i64()?,
            close: r.i64()?,
            volume: r.i64()?,
            quote_volume: r.i128()?,
            trades: r.u64()?,
        })
    }

    impl MarketData {
        /// The next trade id, the tape and each ring's closed candles as
        /// [`DeltaLog`]s (canonical: the bytes depend only on the rows kept),
        /// then the ring's open candle.
        pub(crate) fn encode(&self, w: &mut Writer) {
            w.u64(self.next_trade_id);
            self.tape.encode(w);
            for ring in &self.rings {
                ring.closed.encode(w);
                match &ring.open {
                    None => w.u8(0),
                    Some(c) => {
                        w.u8(1);
                        put_candle(w, c);
                    }
                }
            }
        }

        pub(crate) fn decode(r: &mut Reader<'_>) -> Result<MarketData, SnapshotError> {
            let mut md = MarketData { next_trade_id: r.u64()?, ..MarketData::default() };
            md.tape = DeltaLog::decode(r, TRADES_KEPT, "trade tape")?;
            if md.next_trade_id == 0 || md.next_trade_id - 1 < md.tape.len() as u64 {
                return bad("trade tape longer than the trades recorded");
            }
            for ring in &mut md.rings {
                ring.closed = DeltaLog::decode(r, ring.keep - 1, "candle ring")?;
                ring.open = if r.flag("open candle")? { Some(get_candle(r)?) } else { None };
                if ring.open.is_none() && !ring.closed.is_empty() {
                    return bad("candle ring without an open candle");
                }
                if ring.closed.iter().any(|s| s.0.start.checked_mul(ring.len).is_none())
                    || ring.open.is_some_and(|c| c.start % ring.len != 0)
                {
                    return bad("candle start out of range");
                }
            }
            Ok(md)
        }
    }
}
