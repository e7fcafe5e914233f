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
//! - the oldest rows are dropped in batches of a sixteenth of the rows
//!   kept: they are decoded against the row before them (kept decoded as
//!   `base`) in one pass, and cut off the front of the buffer; the buffer
//!   grows to about the size its rows need, not by doubling;
//! - reading decodes from the oldest row forward (the queries that read
//!   these histories want all of them, or the newest ones, anyway).
//!
//! Every encoding is exact for all values of its fields (deltas wrap, so
//! nothing can overflow), and [`DeltaLog::encode`]'s bytes depend only on
//! the rows kept, which is what the canonical snapshots need.

use crate::codec::{bad, Reader, SnapshotError, Writer};

/// A row's encoding being built, on the stack (rows are short; the log
/// appends it to its buffer in one copy, knowing its exact size).
pub struct Enc {
    buf: [std::mem::MaybeUninit<u8>; Enc::CAP],
    n: usize,
}

impl Default for Enc {
    fn default() -> Self {
        Enc { buf: [std::mem::MaybeUninit::uninit(); Enc::CAP], n: 0 }
    }
}

impl Enc {
    /// The longest row encoding allowed (`Row::MAX_BYTES` at most this).
    pub const CAP: usize = 128;

    /// An empty encoding.
    #[inline(always)]
    pub fn new() -> Enc {
        Enc::default()
    }

    /// The bytes written.
    #[inline(always)]
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `buf[..n]` was written by `u8` (and `n <= CAP`).
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr().cast::<u8>(), self.n) }
    }

    /// Appends a byte.
    #[inline(always)]
    pub fn u8(&mut self, v: u8) {
        self.buf[self.n].write(v);
        self.n += 1;
    }

    /// Appends `v` as unsigned LEB128.
    #[inline(always)]
    pub fn u64(&mut self, mut v: u64) {
        // The position in a local: LLVM cannot tell that the byte stores
        // leave `self.n` alone, and would reload and store it per byte.
        let mut n = self.n;
        while v >= 0x80 {
            self.buf[n].write(v as u8 | 0x80);
            v >>= 7;
            n += 1;
        }
        self.buf[n].write(v as u8);
        self.n = n + 1;
    }

    /// Appends `v` as unsigned LEB128 (up to 19 bytes).
    #[inline(always)]
    pub fn u128(&mut self, v: u128) {
        if v <= u64::MAX as u128 {
            return self.u64(v as u64);
        }
        let (mut v, mut n) = (v, self.n);
        while v >= 0x80 {
            self.buf[n].write(v as u8 | 0x80);
            v >>= 7;
            n += 1;
        }
        self.buf[n].write(v as u8);
        self.n = n + 1;
    }

    /// Appends `zigzag(a - b)` (wrapping): exact for any two values.
    #[inline(always)]
    pub fn delta(&mut self, a: i64, b: i64) {
        self.u64(zigzag(a.wrapping_sub(b)));
    }
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

/// Reads a value written by [`Enc::u64`]; `None` as [`get_varint`] says.
#[inline(always)]
pub fn get_u64(buf: &[u8], at: &mut usize) -> Option<u64> {
    let b = *buf.get(*at)?;
    if b < 0x80 {
        *at += 1;
        return Some(b as u64);
    }
    get_u64_long(buf, at)
}

#[inline]
fn get_u64_long(buf: &[u8], at: &mut usize) -> Option<u64> {
    let rest = &buf[*at..];
    let n = rest.len().min(10);
    let mut v = 0u64;
    let mut i = 0;
    while i < n {
        let b = rest[i];
        v |= ((b & 0x7f) as u64) << (7 * i);
        if b < 0x80 {
            // Shortest form (no final 0 byte), and the tenth byte holds bit 63 only.
            if b == 0 || (i == 9 && b > 1) {
                return None;
            }
            *at += i + 1;
            return Some(v);
        }
        i += 1;
    }
    None
}

/// Reads a value written by [`Enc::u128`].
#[inline(always)]
pub fn get_u128(buf: &[u8], at: &mut usize) -> Option<u128> {
    match buf.get(*at) {
        Some(&b) if b < 0x80 => {
            *at += 1;
            Some(b as u128)
        }
        _ => get_varint(buf, at, 128),
    }
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

/// The inverse of [`Enc::delta`]: `b + delta`.
#[inline(always)]
pub fn get_delta(buf: &[u8], at: &mut usize, b: i64) -> Option<i64> {
    Some(b.wrapping_add(unzigzag(get_u64(buf, at)?)))
}

/// A row that can be stored as its difference from the row before it.
pub trait Row: Copy {
    /// The row before the first one (all deltas of the first row are taken
    /// from it).
    const ORIGIN: Self;
    /// The longest encoding of a row, in bytes (at most [`Enc::CAP`]).
    const MAX_BYTES: usize;
    /// Writes the encoding of `self` following `prev`.
    fn put(&self, prev: &Self, out: &mut Enc);
    /// Decodes the row following `prev` at `buf[*at..]`, advancing `at`;
    /// `None` if the bytes are not a valid encoding.
    fn get(prev: &Self, buf: &[u8], at: &mut usize) -> Option<Self>;
}

/// The newest `keep` rows of an append-only sequence, stored delta-encoded
/// in one byte buffer (see the module documentation).
///
/// Dropping the oldest rows is batched: the buffer may hold up to
/// `keep / 16` (at least 1) rows more than `keep`; when it is full they are
/// decoded in one pass (to find where the first kept row starts and the row
/// before it) and cut off. The surplus is invisible: `len`, `iter` and the
/// snapshot form see the newest `keep` rows only.
#[derive(Clone, Debug)]
pub struct DeltaLog<T: Row> {
    /// The row before the first one in `buf` (`T::ORIGIN` if none was dropped).
    base: T,
    /// The newest row (`base` when empty).
    last: T,
    /// Rows in `buf`: at most `keep + slack`.
    rows: u32,
    keep: u32,
    buf: Vec<u8>,
}

impl<T: Row> DeltaLog<T> {
    /// An empty log that keeps the newest `keep` (≥ 1) rows.
    pub fn new(keep: usize) -> Self {
        assert!((1..u32::MAX as usize / 2).contains(&keep), "keep must be at least 1");
        DeltaLog { base: T::ORIGIN, last: T::ORIGIN, rows: 0, keep: keep as u32, buf: Vec::new() }
    }

    /// How many rows the log keeps.
    pub fn keep(&self) -> usize {
        self.keep as usize
    }

    #[inline]
    fn slack(&self) -> u32 {
        (self.keep / 16).max(1)
    }

    /// Rows kept (at most `keep`).
    #[inline]
    pub fn len(&self) -> usize {
        self.rows.min(self.keep) as usize
    }

    /// Whether no row is kept.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The newest row.
    #[inline]
    pub fn last(&self) -> Option<&T> {
        (self.rows > 0).then_some(&self.last)
    }

    /// Bytes of heap memory the log holds (its buffer's capacity).
    pub fn heap_bytes(&self) -> usize {
        self.buf.capacity()
    }

    /// Appends a row (dropping the oldest beyond `keep`).
    #[inline]
    pub fn push(&mut self, row: T) {
        const { assert!(T::MAX_BYTES <= Enc::CAP) };
        if self.rows == self.keep + self.slack() {
            self.drop_surplus();
        }
        let mut e = Enc::new();
        row.put(&self.last, &mut e);
        if self.buf.capacity() - self.buf.len() < e.n {
            self.grow(e.n);
        }
        self.buf.extend_from_slice(e.bytes());
        self.last = row;
        self.rows += 1;
    }

    /// Makes room for `need` more bytes. While the log fills up it
    /// doubles (from 64 bytes), but not past the room `keep + slack` rows
    /// like the ones so far need; once full it grows by a sixteenth. Not
    /// `Vec`'s doubling throughout: these logs are many and long-lived.
    #[cold]
    fn grow(&mut self, need: usize) {
        let (len, rows) = (self.buf.len(), self.rows as usize);
        let step = if rows < self.keep as usize {
            let doubling = len.max(64);
            if rows >= 16 {
                let full = len * (self.keep + self.slack()) as usize / rows;
                doubling.min((full + full / 16).saturating_sub(len))
            } else {
                doubling
            }
        } else {
            len / 16
        };
        self.buf.reserve_exact(step.max(need));
    }

    /// Cuts off the rows beyond the newest `keep`.
    #[cold]
    fn drop_surplus(&mut self) {
        let mut at = 0;
        for _ in self.keep..self.rows {
            self.base = T::get(&self.base, &self.buf, &mut at).expect("a log decodes what it encoded");
        }
        self.buf.drain(..at);
        self.rows = self.keep;
    }

    /// The kept rows, oldest first.
    pub fn iter(&self) -> Iter<'_, T> {
        let mut it = Iter { prev: self.base, buf: &self.buf, at: 0, left: self.rows };
        for _ in self.keep..self.rows {
            it.next();
        }
        it
    }

    /// Writes the kept rows canonically: their count, then their encoding
    /// with the first row taken from `T::ORIGIN` (so the bytes do not depend
    /// on rows dropped before it).
    pub(crate) fn encode(&self, w: &mut Writer) {
        let n = self.len();
        w.u64(n as u64);
        if n == 0 {
            return;
        }
        let mut it = self.iter();
        let first = it.next().expect("not empty");
        let mut e = Enc::new();
        first.put(&T::ORIGIN, &mut e);
        let mut bytes = Vec::with_capacity(e.n + self.buf.len() - it.at);
        bytes.extend_from_slice(e.bytes());
        bytes.extend_from_slice(&self.buf[it.at..]);
        w.bytes(&bytes);
    }

    /// Reads what [`DeltaLog::encode`] wrote into a log that keeps `keep`
    /// rows (more is an error).
    pub(crate) fn decode(r: &mut Reader<'_>, keep: usize, what: &str) -> Result<Self, SnapshotError> {
        let n = r.u64()?;
        let mut log = DeltaLog::new(keep);
        if n == 0 {
            return Ok(log);
        }
        if n > keep as u64 {
            return bad(format!("{what}: {n} rows, at most {keep} kept"));
        }
        let bytes = r.bytes()?;
        if n > bytes.len() as u64 {
            return bad(format!("{what}: {n} rows in {} bytes", bytes.len()));
        }
        log.buf.reserve_exact(bytes.len() + bytes.len() / 16);
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
        self.keep == other.keep && self.len() == other.len() && self.iter().eq(other.iter())
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
        fn put(&self, prev: &R, out: &mut Enc) {
            out.u64(self.a.wrapping_sub(prev.a));
            out.delta(self.b, prev.b);
            out.u128(self.c.wrapping_sub(prev.c) as u128);
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
            let mut e = Enc::new();
            e.u64(v);
            let b = e.bytes();
            let mut at = 0;
            assert_eq!(get_u64(b, &mut at), Some(v));
            assert_eq!(at, b.len());
            assert_eq!(b.len(), ((64 - v.leading_zeros()).max(1) as usize).div_ceil(7));
            let mut e2 = Enc::new();
            e2.u128(v as u128);
            assert_eq!(b, e2.bytes());
        }
        for v in [u128::MAX, u64::MAX as u128 + 1, 1u128 << 127] {
            let mut e = Enc::new();
            e.u128(v);
            let mut at = 0;
            assert_eq!(get_u128(e.bytes(), &mut at), Some(v));
            assert_eq!(at, e.bytes().len());
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
        let mut log = DeltaLog::new(1000);
        for i in 0..1000u64 {
            log.push(R { a: i, b: (i % 7) as i64, c: 3 });
        }
        // 3 bytes a row, 1 per field, plus the growth slack.
        assert!(log.heap_bytes() <= 3 * 1000 * 9 / 8 + 4 * R::MAX_BYTES, "{}", log.heap_bytes());
    }

    #[test]
    fn bounded_log_memory_stays_bounded() {
        let mut log = DeltaLog::new(1000);
        let mut peak = 0;
        for i in 0..100_000u64 {
            log.push(R { a: i * 60_000, b: (i % 13) as i64, c: 0 });
            peak = peak.max(log.heap_bytes());
        }
        assert_eq!(log.len(), 1000);
        let live: usize = {
            let mut w = Writer(Vec::new());
            log.encode(&mut w);
            w.0.len() - 16
        };
        // 1,000 rows kept plus at most 62 not yet dropped, and a sixteenth.
        assert!(peak <= live * 6 / 5 + 2 * R::MAX_BYTES, "{peak} for {live} live bytes");
        assert_eq!(log.iter().next().unwrap().a, 99_000 * 60_000);
    }

    proptest! {
        /// A log keeps the same rows as a `VecDeque` bounded to `keep`,
        /// for any rows and any sequence of pushes, and its snapshot
        /// restores the same rows, in the same bytes.
        #[test]
        fn log_matches_a_plain_queue(rows in proptest::collection::vec(row(), 0..400), keep in 1usize..70) {
            let mut log = DeltaLog::new(keep);
            let mut model = std::collections::VecDeque::new();
            for (i, r) in rows.into_iter().enumerate() {
                log.push(r);
                if model.len() == keep {
                    model.pop_front();
                }
                model.push_back(r);
                prop_assert_eq!(log.len(), model.len());
                prop_assert_eq!(log.last(), model.back());
                if i % 37 == 0 {
                    prop_assert!(log.iter().eq(model.iter().copied()));
                }
            }
            prop_assert!(log.iter().eq(model.iter().copied()));
            prop_assert_eq!(log.iter().len(), model.len());
            let mut w = Writer(Vec::new());
            log.encode(&mut w);
            let mut r = Reader { b: &w.0, at: 0 };
            let back: DeltaLog<R> = DeltaLog::decode(&mut r, keep, "test").unwrap();
            r.done().unwrap();
            prop_assert!(back.iter().eq(model.iter().copied()));
            prop_assert!(back == log);
            // Canonical: the restored log encodes to the same bytes.
            let mut w2 = Writer(Vec::new());
            back.encode(&mut w2);
            prop_assert_eq!(&w.0, &w2.0);
            // A log that keeps fewer rows refuses it.
            if keep > 1 && model.len() == keep {
                let shorter = DeltaLog::<R>::decode(&mut Reader { b: &w.0, at: 0 }, keep - 1, "test");
                prop_assert!(shorter.is_err());
            }
        }

        /// The fast 64-bit reader agrees with the general one on any bytes.
        #[test]
        fn fast_reader_agrees(bytes in proptest::collection::vec(any::<u8>(), 0..12), at in 0usize..3) {
            let (mut a, mut b) = (at, at);
            let fast = get_u64(&bytes, &mut a);
            let slow = if at <= bytes.len() { get_varint(&bytes, &mut b, 64).map(|v| v as u64) } else { None };
            prop_assert_eq!(fast, slow);
            if fast.is_some() {
                prop_assert_eq!(a, b);
            }
        }

        /// Corrupt snapshot bytes give an error, never a panic.
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), n in 0u64..8) {
            let mut w = Writer(Vec::new());
            w.u64(n);
            w.bytes(&bytes);
            let _ = DeltaLog::<R>::decode(&mut Reader { b: &w.0, at: 0 }, 5, "test");
        }
    }
}
