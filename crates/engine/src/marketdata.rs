//! Per-market data derived from trades: the recent-trade tape, OHLCV candles
//! and the rolling 24 h ticker.
//!
//! Timestamps are milliseconds of the exchange clock. Candles are stored at
//! four base resolutions (1 s, 1 m, 1 h, 1 d) in bounded rings; every other
//! interval is aggregated from the finest base that divides it at query time
//! (3m…30m from 1m, 2h…12h from 1h, 1w and 1M from 1d). Only intervals in
//! which something traded have a candle.

use std::collections::VecDeque;

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

#[derive(Clone, Debug)]
struct Ring {
    len: u64,
    keep: usize,
    candles: VecDeque<Candle>,
}

impl Ring {
    fn new(len: u64, keep: usize) -> Ring {
        Ring { len, keep, candles: VecDeque::new() }
    }
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

/// Trades, candles and ticker of one market.
#[derive(Clone, Debug)]
pub struct MarketData {
    next_trade_id: u64,
    tape: VecDeque<Trade>,
    rings: [Ring; 4],
}

impl Default for MarketData {
    fn default() -> Self {
        MarketData {
            next_trade_id: 1,
            tape: VecDeque::new(),
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
        let id = self.next_trade_id;
        self.next_trade_id += 1;
        if self.tape.len() == TRADES_KEPT {
            self.tape.pop_front();
        }
        self.tape.push_back(Trade { id, ts, price, qty, taker_side });
        for r in &mut self.rings {
            r.add(ts, price, qty);
        }
        id
    }

    /// The most recent trades, newest last (at most `limit`).
    pub fn trades(&self, limit: usize) -> impl Iterator<Item = &Trade> {
        self.tape.iter().skip(self.tape.len().saturating_sub(limit))
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

    /// Statistics over the 1-minute candles of the 24 hours up to `now`.
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
        pub(crate) fn encode(&self, w: &mut Writer) {
            w.u64(self.next_trade_id);
            w.u64(self.tape.len() as u64);
            for t in &self.tape {
                w.u64(t.id);
                w.u64(t.ts);
                w.i64(t.price);
                w.i64(t.qty);
                w.u8(t.taker_side as u8);
            }
            for ring in &self.rings {
                w.u64(ring.candles.len() as u64);
                for c in &ring.candles {
                    put_candle(w, c);
                }
            }
        }

        pub(crate) fn decode(r: &mut Reader<'_>) -> Result<MarketData, SnapshotError> {
            let mut md = MarketData { next_trade_id: r.u64()?, ..MarketData::default() };
            let n = r.count(33)?;
            if n > TRADES_KEPT {
                return bad("trade tape longer than kept");
            }
            for _ in 0..n {
                let (id, ts, price, qty) = (r.u64()?, r.u64()?, r.i64()?, r.i64()?);
                let taker_side = r.enum_(Side::from_u8, "taker side")?;
                md.tape.push_back(Trade { id, ts, price, qty, taker_side });
            }
            for ring in &mut md.rings {
                let n = r.count(72)?;
                if n > ring.keep {
                    return bad("candle ring longer than kept");
                }
                for _ in 0..n {
                    ring.candles.push_back(get_candle(r)?);
                }
            }
            Ok(md)
        }
    }
}
