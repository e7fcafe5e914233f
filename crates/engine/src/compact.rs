//! Compact storage for the append-only histories the exchange keeps: each
//! market's trade tape and candle rings, and each account's recent fills.
//!
//! At the design point (21,000 markets with 1,000 trades and 1,740 candles
//! each, 100,000 accounts with 100 fills each) these rows dominate memory
//! when stored as plain structs (40-byte trades, 80-byte candles, 48-byte
//! fills, in power-of-two `VecDeque`s). Consecutive rows differ little
//! (timestamps and prices move by small steps, most candles of a quiet
//! market hold one trade), so a [`DeltaLog`] stores each row as the
//! difference from the row before it, in LEB128 varints, in one byte
//! buffer:
//!
//! - appending encodes the row against the newest one (kept decoded);
//! - dropping the oldest row decodes it against the row before it (kept
//!   decoded as `base`) and moves a start offset; the dead prefix is cut off
//!   once it is an eighth of the buffer, so a bounded log costs about
//!   1.25x its encoded size at most;
//! - reading decodes from the oldest row forward (the queries that read
//!   these histories want all of them, or the newest ones, anyway).
//!
//! Every encoding is exact for all values of its fields (deltas wrap, so
//! nothing can overflow), and [`DeltaLog::encode`]'s bytes depend only on
//! the rows kept, which is what the canonical snapshots need.

use crate::codec::{bad, Reader, SnapshotError, Writer};

/// Appends `v` as unsigned LEB128.
#[inline]
pub fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `v` as unsigned LEB128 (up to 19 bytes).
#[inline]
pub fn put_u128(out: &mut Vec<u8>, v: u128) {
    if v <= u64::MAX as u128 {
        return put_u64(out, v as u64);
    }
    let mut v = v;
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads an unsigned LEB128 value of at most `bits` bits from `buf[*at..]`.
/// `None` if it is truncated, too long for the type, or not in its shortest
/// form (so each value has exactly one encoding).
#[inline]
fn get_varint(buf: &[u8], at: &mut usize, bits: u32) -> Option<u128> {
    let mut v: u128 = 0;
    let mut shift = 0u32;
    loop {
        let b = *buf.get(*at)?;
        *at += 1;
        let part = (b & 0x7f) as u128;
        if shift >= bits || (shift > 0 && b == 0) || (bits - shift < 7 && part >> (bits - shift) != 0) {
            return None;
        }
        v |= part << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
    }
}

/// Reads a value written by [`put_u64`].
#[inline]
pub fn get_u64(buf: &[u8], at: &mut usize) -> Option<u64> {
    // Fast path: one byte.
    if let Some(&b) = buf.get(*at) {
        if b < 0x80 {
            *at += 1;
            return Some(b as u64);
        }
    }
    get_varint(buf, at, 64).map(|v| v as u64)
}

/// Reads a value written by [`put_u128`].
#[inline]
pub fn get_u128(buf: &[u8], at: &mut usize) -> Option<u128> {
    get_varint(buf, at, 128)
}

/// Maps signed to unsigned so that small magnitudes get small codes.
#[inline]
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The inverse of [`zigzag`].
#[inline]
pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// `zigzag(a - b)` with wrapping subtraction: exact for any two values.
#[inline]
pub fn put_delta(out: &mut Vec<u8>, a: i64, b: i64) {
    put_u64(out, zigzag(a.wrapping_sub(b)));
}

/// The inverse of [`put_delta`]: `b + delta`.
#[inline]
pub fn get_delta(buf: &[u8], at: &mut usize, b: i64) -> Option<i64> {
    Some(b.wrapping_add(unzigzag(get_u64(buf, at)?)))
}

/// A row that can be stored as its difference from the row before it.
pub trait Row: Copy {
    /// The row before the first one (all deltas of the first row are taken
    /// from it).
    const ORIGIN: Self;
    /// The longest encoding of a row, in bytes.
    const MAX_BYTES: usize;
    /// Appends the encoding of `self` following `prev`.
    fn put(&self, prev: &Self, out: &mut Vec<u8>);
    /// Decodes the row following `prev` at `buf[*at..]`, advancing `at`;
    /// `None` if the bytes are not a valid encoding.
    fn get(prev: &Self, buf: &[u8], at: &mut usize) -> Option<Self>;
}

/// A FIFO of rows stored delta-encoded in one byte buffer (see the module
/// documentation).
#[derive(Clone, Debug)]
pub struct DeltaLog<T: Row> {
    /// The row before the oldest kept one (`T::ORIGIN` if none was dropped).
    base: T,
    /// The newest row (`base` when empty).
    last: T,
    len: u32,
    /// Offset in `buf` of the oldest kept row.
    start: u32,
    buf: Vec<u8>,
}

impl<T: Row> Default for DeltaLog<T> {
    fn default() -> Self {
        DeltaLog { base: T::ORIGIN, last: T::ORIGIN, len: 0, start: 0, buf: Vec::new() }
    }
}

impl<T: Row> DeltaLog<T> {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rows kept.
    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether no row is kept.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The newest row.
    #[inline]
    pub fn last(&self) -> Option<&T> {
        (self.len > 0).then_some(&self.last)
    }

    /// Bytes of heap memory the log holds (its buffer's capacity).
    pub fn heap_bytes(&self) -> usize {
        self.buf.capacity()
    }

    /// Appends a row.
    #[inline]
    pub fn push(&mut self, row: T) {
        if self.buf.capacity() - self.buf.len() < T::MAX_BYTES {
            // Grow by an eighth (not the doubling of `Vec`): these logs are
            // many and long-lived, and a bounded one stops growing.
            self.buf.reserve_exact(T::MAX_BYTES.max(self.buf.len() / 8));
        }
        row.put(&self.last, &mut self.buf);
        self.last = row;
        self.len += 1;
    }

    /// Appends a row, first dropping the oldest if `keep` rows are kept.
    #[inline]
    pub fn push_bounded(&mut self, row: T, keep: usize) {
        if self.len() >= keep {
            self.pop_front();
        }
        self.push(row);
    }

    /// Removes and returns the oldest row.
    pub fn pop_front(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        let mut at = self.start as usize;
        let row = T::get(&self.base, &self.buf, &mut at).expect("a log decodes what it encoded");
        self.len -= 1;
        self.base = row;
        if self.len == 0 {
            self.buf.clear();
            self.start = 0;
        } else if at >= 64 && at * 8 >= self.buf.len() {
            self.buf.drain(..at);
            self.start = 0;
        } else {
            self.start = at as u32;
        }
        Some(row)
    }

    /// The rows, oldest first.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { prev: self.base, buf: &self.buf, at: self.start as usize, left: self.len }
    }

    /// Writes the rows canonically: their count, then their encoding with
    /// the first row taken from `T::ORIGIN` (so the bytes do not depend on
    /// rows dropped before it).
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u64(self.len as u64);
        if self.len == 0 {
            return;
        }
        let mut at = self.start as usize;
        let first = T::get(&self.base, &self.buf, &mut at).expect("a log decodes what it encoded");
        let mut bytes = Vec::with_capacity(T::MAX_BYTES + self.buf.len() - at);
        first.put(&T::ORIGIN, &mut bytes);
        bytes.extend_from_slice(&self.buf[at..]);
        w.bytes(&bytes);
    }

    /// Reads what [`DeltaLog::encode`] wrote; at most `max` rows.
    pub(crate) fn decode(r: &mut Reader<'_>, max: usize, what: &str) -> Result<Self, SnapshotError> {
        let n = r.u64()?;
        let mut log = DeltaLog::new();
        if n == 0 {
            return Ok(log);
        }
        if n > max as u64 {
            return bad(format!("{what}: {n} rows, at most {max} kept"));
        }
        let bytes = r.bytes()?;
        if n > bytes.len() as u64 {
            return bad(format!("{what}: {n} rows in {} bytes", bytes.len()));
        }
        log.buf.reserve_exact(bytes.len());
        let (mut prev, mut at) = (T::ORIGIN, 0);
        for _ in 0..n {
            prev = match T::get(&prev, bytes, &mut at) {
                Some(row) => row,
                None => return bad(format!("{what}: invalid row encoding at byte {at}")),
            };
            log.push(prev);
        }
        if at != bytes.len() {
            return bad(format!("{what}: trailing bytes"));
        }
        Ok(log)
    }
}

impl<T: Row + PartialEq> PartialEq for DeltaLog<T> {
    /// Equal when the same rows are kept.
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

/// Decoding iterator over a [`DeltaLog`], oldest row first.
pub struct Iter<'a, T: Row> {
    prev: T,
    buf: &'a [u8],
    at: usize,
    left: u32,
}

impl<T: Row> Iterator for Iter<'_, T> {
    type Item = T;
    #[inline]
    fn next(&mut self) -> Option<T> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        self.prev = T::get(&self.prev, self.buf, &mut self.at).expect("a log decodes what it encoded");
        Some(self.prev)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

impl<T: Row> ExactSizeIterator for Iter<'_, T> {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A row with every kind of field the real rows have.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct R {
        a: u64,
        b: i64,
        c: i128,
    }

    impl Row for R {
        const ORIGIN: R = R { a: 0, b: 0, c: 0 };
        const MAX_BYTES: usize = 10 + 10 + 19;
        fn put(&self, prev: &R, out: &mut Vec<u8>) {
            put_u64(out, self.a.wrapping_sub(prev.a));
            put_delta(out, self.b, prev.b);
            put_u128(out, self.c.wrapping_sub(prev.c) as u128);
        }
        fn get(prev: &R, buf: &[u8], at: &mut usize) -> Option<R> {
            Some(R {
                a: prev.a.wrapping_add(get_u64(buf, at)?),
                b: get_delta(buf, at, prev.b)?,
                c: prev.c.wrapping_add(get_u128(buf, at)? as i128),
            })
        }
    }

    fn row() -> impl Strategy<Value = R> {
        prop_oneof![
            (0u64..1000, -50i64..50, -5i128..5).prop_map(|(a, b, c)| R { a, b, c }),
            (any::<u64>(), any::<i64>(), any::<i128>()).prop_map(|(a, b, c)| R { a, b, c }),
        ]
    }

    #[test]
    fn varints_round_trip_at_the_edges() {
        let mut vals: Vec<u64> = vec![0, 1, 127, 128, 16_383, 16_384, u64::MAX - 1, u64::MAX];
        vals.extend((0..64).map(|s| 1u64 << s));
        vals.extend((1..64).map(|s| (1u64 << s) - 1));
        for v in vals {
            let mut b = Vec::new();
            put_u64(&mut b, v);
            let mut at = 0;
            assert_eq!(get_u64(&b, &mut at), Some(v));
            assert_eq!(at, b.len());
            assert_eq!(b.len(), ((64 - v.leading_zeros()).max(1) as usize).div_ceil(7));
            let mut b2 = Vec::new();
            put_u128(&mut b2, v as u128);
            assert_eq!(b, b2);
        }
        for v in [u128::MAX, u64::MAX as u128 + 1, 1u128 << 127] {
            let mut b = Vec::new();
            put_u128(&mut b, v);
            let mut at = 0;
            assert_eq!(get_u128(&b, &mut at), Some(v));
            assert_eq!(at, b.len());
        }
        for v in [0, 1, -1, i64::MIN, i64::MAX, 63, -64] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!((zigzag(0), zigzag(-1), zigzag(1), zigzag(-2)), (0, 1, 2, 3));
    }

    #[test]
    fn varints_reject_bad_bytes() {
        let get = |b: &[u8]| get_u64(b, &mut 0);
        assert_eq!(get(&[]), None); // empty
        assert_eq!(get(&[0x80]), None); // truncated
        assert_eq!(get(&[0x80, 0x00]), None); // not the shortest form
        assert_eq!(get(&[0xff; 10]), None); // more than 64 bits
        let mut max = vec![0xff; 9];
        max.push(0x01);
        assert_eq!(get(&max), Some(u64::MAX));
        max[9] = 0x02; // bit 64
        assert_eq!(get(&max), None);
        assert_eq!(get_u128(&[0xff; 19], &mut 0), None);
    }

    #[test]
    fn small_rows_take_few_bytes() {
        let mut log = DeltaLog::new();
        for i in 0..1000u64 {
            log.push(R { a: i, b: (i % 7) as i64, c: 3 });
        }
        // 3 bytes a row, 1 per field, plus the growth slack.
        assert!(log.heap_bytes() <= 3 * 1000 * 9 / 8 + R::MAX_BYTES + 8, "{}", log.heap_bytes());
    }

    #[test]
    fn bounded_log_memory_stays_bounded() {
        let mut log = DeltaLog::new();
        for i in 0..100_000u64 {
            log.push_bounded(R { a: i * 60_000, b: (i % 13) as i64, c: 0 }, 1000);
        }
        assert_eq!(log.len(), 1000);
        let live: usize = {
            let mut w = Writer(Vec::new());
            log.encode(&mut w);
            w.0.len() - 16
        };
        assert!(log.heap_bytes() <= live * 5 / 4 + 2 * R::MAX_BYTES, "{} for {live} live bytes", log.heap_bytes());
        assert_eq!(log.iter().next().unwrap().a, 99_000 * 60_000);
    }

    proptest! {
        /// A log behaves as a `VecDeque` of its rows under any sequence of
        /// pushes and pops, and its snapshot restores the same rows.
        #[test]
        fn log_matches_a_plain_queue(ops in proptest::collection::vec((row(), 0u8..4), 0..400), keep in 1usize..50) {
            let mut log = DeltaLog::new();
            let mut model = std::collections::VecDeque::new();
            for (r, op) in ops {
                match op {
                    0 => prop_assert_eq!(log.pop_front(), model.pop_front()),
                    1 => {
                        log.push(r);
                        model.push_back(r);
                    }
                    _ => {
                        log.push_bounded(r, keep);
                        if model.len() >= keep {
                            model.pop_front();
                        }
                        model.push_back(r);
                    }
                }
                prop_assert_eq!(log.len(), model.len());
                prop_assert_eq!(log.last(), model.back());
            }
            prop_assert!(log.iter().eq(model.iter().copied()));
            let mut w = Writer(Vec::new());
            log.encode(&mut w);
            let mut r = Reader { b: &w.0, at: 0 };
            let back: DeltaLog<R> = DeltaLog::decode(&mut r, usize::MAX, "test").unwrap();
            r.done().unwrap();
            prop_assert!(back.iter().eq(model.iter().copied()));
            // Canonical: the restored log encodes to the same bytes.
            let mut w2 = Writer(Vec::new());
            back.encode(&mut w2);
            prop_assert_eq!(w.0, w2.0);
        }

        /// Corrupt snapshot bytes give an error, never a panic.
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), n in 0u64..8) {
            let mut w = Writer(Vec::new());
            w.u64(n);
            w.bytes(&bytes);
            let _ = DeltaLog::<R>::decode(&mut Reader { b: &w.0, at: 0 }, 100, "test");
        }
    }
}
