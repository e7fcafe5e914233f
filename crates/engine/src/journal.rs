//! Journal record framing: CRC32C, batch framing and validating scans.
//!
//! The node's journal (python/lxdex/node/journal.py, docs/journal.md) is a
//! sequence of segment files; after a small segment header each file holds
//! records framed as
//!
//! ```text
//! u32 payload length | u32 CRC32C | u64 seq | payload        (little-endian)
//! ```
//!
//! where the CRC32C (Castagnoli) covers the eight `seq` bytes followed by the
//! payload, so a record copied to another position is detected too. This
//! module is pure Rust: it frames batches and scans buffers; file handling,
//! sync policy and recovery decisions live in Python.
//!
//! ```
//! use lxdex_engine::journal::{frame_batch, scan, ScanStop};
//!
//! let mut buf = Vec::new();
//! frame_batch(&mut buf, 7, [&b"hello"[..], &b"world"[..]]);
//! let s = scan(&buf, 0, 7, 0, usize::MAX, true);
//! assert_eq!(s.stop, ScanStop::End);
//! assert_eq!(s.records.len(), 2);
//! assert_eq!(s.last_seq, 8);
//! let (seq, start, end) = s.records[1];
//! assert_eq!((seq, &buf[start..end]), (8, &b"world"[..]));
//! ```

/// Bytes of a record header: length, CRC32C, seq.
pub const RECORD_HEADER_LEN: usize = 16;

/// The largest payload a record may carry (1 GiB). A length above it is
/// reported as [`ScanStop::BadLength`] rather than waited for.
pub const MAX_PAYLOAD_LEN: usize = 1 << 30;

// ---------------------------------------------------------------------------
// CRC32C (Castagnoli, reflected polynomial 0x82F63B78)

const POLY: u32 = 0x82F6_3B78;

const fn make_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut j = 1;
        while j < 8 {
            let prev = t[j - 1][i];
            t[j][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            j += 1;
        }
        i += 1;
    }
    t
}

static TABLES: [[u32; 256]; 8] = make_tables();

/// Portable slicing-by-8 update of a raw (not inverted) CRC state.
fn update_portable(mut crc: u32, data: &[u8]) -> u32 {
    let t = &TABLES;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) ^ crc;
        let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
        crc = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][(hi & 0xff) as usize]
            ^ t[2][((hi >> 8) & 0xff) as usize]
            ^ t[1][((hi >> 16) & 0xff) as usize]
            ^ t[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        crc = (crc >> 8) ^ t[0][((crc ^ b as u32) & 0xff) as usize];
    }
    crc
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn update_sse42(crc: u32, data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let mut c = crc as u64;
    let mut chunks = data.chunks_exact(8);
    for ch in &mut chunks {
        c = _mm_crc32_u64(c, u64::from_le_bytes(ch.try_into().unwrap()));
    }
    let mut c = c as u32;
    for &b in chunks.remainder() {
        c = _mm_crc32_u8(c, b);
    }
    c
}

#[inline]
fn update(crc: u32, data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU supports SSE4.2 (checked just above).
            return unsafe { update_sse42(crc, data) };
        }
    }
    update_portable(crc, data)
}

/// CRC32C of `data` continuing from a previous result `crc` (0 to start):
/// `crc32c_append(crc32c(a), b) == crc32c(a ++ b)`.
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    !update(!crc, data)
}

/// CRC32C (Castagnoli) of `data`; `crc32c(b"123456789") == 0xE306_9283`.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c_append(0, data)
}

/// The portable implementation, exposed so tests can compare it with the
/// hardware path.
pub fn crc32c_portable(data: &[u8]) -> u32 {
    !update_portable(!0, data)
}

/// The CRC of one record: over the little-endian `seq` then the payload.
#[inline]
pub fn record_crc(seq: u64, payload: &[u8]) -> u32 {
    !update(update(!0, &seq.to_le_bytes()), payload)
}

// ---------------------------------------------------------------------------
// Framing

/// Appends one framed record to `out`.
#[inline]
pub fn frame_record(out: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    assert!(payload.len() <= MAX_PAYLOAD_LEN, "journal record payload over 1 GiB");
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&record_crc(seq, payload).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Frames `payloads` as consecutive records from `first_seq`, appending to
/// `out`; returns the number of records framed.
pub fn frame_batch<'a, I>(out: &mut Vec<u8>, first_seq: u64, payloads: I) -> u64
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut seq = first_seq;
    for p in payloads {
        frame_record(out, seq, p);
        seq += 1;
    }
    seq - first_seq
}

/// Frames every `record_size` bytes of `data` as one record (the fixed-size
/// command records of the engine, for instance). `data.len()` must be a
/// multiple of `record_size` (> 0).
pub fn frame_fixed(out: &mut Vec<u8>, first_seq: u64, data: &[u8], record_size: usize) -> u64 {
    assert!(record_size > 0 && data.len() % record_size == 0, "frame_fixed: data is not whole records");
    out.reserve(data.len() / record_size * (RECORD_HEADER_LEN + record_size));
    frame_batch(out, first_seq, data.chunks_exact(record_size))
}

// ---------------------------------------------------------------------------
// Scanning

/// Why a scan stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanStop {
    /// The buffer ended exactly after a valid record.
    End,
    /// `max_records` records were returned; more may follow.
    Limit,
    /// Fewer than 16 bytes left: a record header was cut short.
    PartialHeader,
    /// The header announces more payload bytes than the buffer holds.
    ShortPayload,
    /// The length is over [`MAX_PAYLOAD_LEN`].
    BadLength,
    /// The CRC32C does not match the seq and payload.
    BadCrc,
    /// A valid record, but not the next sequence number.
    WrongSeq,
}

impl ScanStop {
    /// A short name: `end`, `limit`, `partial_header`, `short_payload`,
    /// `bad_length`, `bad_crc`, `wrong_seq`.
    pub fn as_str(self) -> &'static str {
        match self {
            ScanStop::End => "end",
            ScanStop::Limit => "limit",
            ScanStop::PartialHeader => "partial_header",
            ScanStop::ShortPayload => "short_payload",
            ScanStop::BadLength => "bad_length",
            ScanStop::BadCrc => "bad_crc",
            ScanStop::WrongSeq => "wrong_seq",
        }
    }

    /// True for the stops that mean the data ends in something that is not
    /// a valid record (`End` and `Limit` are clean).
    pub fn is_error(self) -> bool {
        !matches!(self, ScanStop::End | ScanStop::Limit)
    }
}

/// The result of [`scan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan {
    /// `(seq, payload_start, payload_end)` of each valid record returned
    /// (empty unless asked to collect). The header is the 16 bytes before
    /// `payload_start`.
    pub records: Vec<(u64, usize, usize)>,
    /// Valid records passed (returned or skipped for being below `from_seq`).
    pub count: u64,
    /// The seq of the last valid record passed, or `expected_first_seq - 1`.
    pub last_seq: u64,
    /// The offset just after the last valid record passed: where the valid
    /// prefix ends, and where a further scan would start.
    pub valid_end: usize,
    /// Why the scan stopped at `valid_end`.
    pub stop: ScanStop,
}

/// Checks the record header at `off`; `Ok(payload_end)` if a complete record
/// with a matching CRC is there, else why not (never `WrongSeq`).
#[inline]
fn check_at(buf: &[u8], off: usize) -> Result<(u64, usize), ScanStop> {
    let rest = &buf[off..];
    if rest.len() < RECORD_HEADER_LEN {
        return Err(ScanStop::PartialHeader);
    }
    let len = u32::from_le_bytes(rest[0..4].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(rest[4..8].try_into().unwrap());
    let seq = u64::from_le_bytes(rest[8..16].try_into().unwrap());
    if len > MAX_PAYLOAD_LEN {
        return Err(ScanStop::BadLength);
    }
    if rest.len() - RECORD_HEADER_LEN < len {
        return Err(ScanStop::ShortPayload);
    }
    let payload = &rest[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len];
    if record_crc(seq, payload) != crc {
        return Err(ScanStop::BadCrc);
    }
    Ok((seq, off + RECORD_HEADER_LEN + len))
}

/// Scans `buf` from offset `start`, expecting the record there to carry
/// `expected_first_seq` and each next one the next seq. Stops at the end of
/// the buffer, after `max_records` returned records, or at the first invalid
/// record. Records with `seq < from_seq` are validated but not returned (nor
/// counted against `max_records`); with `collect == false` nothing is
/// returned, only the counts and where the valid prefix ends.
pub fn scan(
    buf: &[u8],
    start: usize,
    expected_first_seq: u64,
    from_seq: u64,
    max_records: usize,
    collect: bool,
) -> Scan {
    let mut off = start.min(buf.len());
    let mut expected = expected_first_seq;
    let mut count = 0u64;
    let mut returned = 0usize;
    let mut records = Vec::new();
    let stop = loop {
        if off == buf.len() {
            break ScanStop::End;
        }
        if returned >= max_records {
            break ScanStop::Limit;
        }
        match check_at(buf, off) {
            Err(why) => break why,
            Ok((seq, end)) => {
                if seq != expected {
                    break ScanStop::WrongSeq;
                }
                if seq >= from_seq {
                    if collect {
                        records.push((seq, off + RECORD_HEADER_LEN, end));
                    }
                    returned += 1;
                }
                count += 1;
                expected += 1;
                off = end;
            }
        }
    };
    Scan { records, count, last_seq: expected.wrapping_sub(1), valid_end: off, stop }
}

/// The first offset at or after `start` where a complete record with a valid
/// CRC and `seq >= min_seq` begins, if any. After a scan stops at an invalid
/// record, a hit here (searching from one byte past the stop) means valid
/// data follows the damage: the damage is not a torn tail.
pub fn find_valid_record(buf: &[u8], start: usize, min_seq: u64) -> Option<usize> {
    let mut off = start;
    while off + RECORD_HEADER_LEN <= buf.len() {
        let rest = &buf[off..];
        let len = u32::from_le_bytes(rest[0..4].try_into().unwrap()) as usize;
        let seq = u64::from_le_bytes(rest[8..16].try_into().unwrap());
        // Cheap filters before the CRC: the payload fits, and the seq is no
        // further ahead than the bytes left could hold records for.
        let room = (rest.len() / RECORD_HEADER_LEN) as u64;
        if len <= rest.len() - RECORD_HEADER_LEN
            && seq >= min_seq
            && seq - min_seq <= room
            && check_at(buf, off).is_ok()
        {
            return Some(off);
        }
        off += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn crc32c_known_vectors() {
        assert_eq!(crc32c(b""), 0);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b"a"), 0xC1D0_4330);
        // RFC 3720 (iSCSI) B.4 test vectors.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
        let inc: Vec<u8> = (0u8..32).collect();
        assert_eq!(crc32c(&inc), 0x46DD_794E);
        let dec: Vec<u8> = (0u8..32).rev().collect();
        assert_eq!(crc32c(&dec), 0x113F_DB5C);
        for v in [&b""[..], b"123456789", &[0u8; 32], &inc] {
            assert_eq!(crc32c_portable(v), crc32c(v));
        }
    }

    #[test]
    fn crc32c_append_composes() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        for cut in [0, 1, 7, 8, 9, 500, 999, 1000] {
            assert_eq!(crc32c_append(crc32c(&data[..cut]), &data[cut..]), crc32c(&data));
        }
        let mut seqp = 42u64.to_le_bytes().to_vec();
        seqp.extend_from_slice(b"payload");
        assert_eq!(record_crc(42, b"payload"), crc32c(&seqp));
    }

    #[test]
    fn frame_layout() {
        let mut buf = Vec::new();
        assert_eq!(frame_batch(&mut buf, 5, [&b"abc"[..], &b""[..]]), 2);
        assert_eq!(buf.len(), 16 + 3 + 16);
        assert_eq!(&buf[0..4], &3u32.to_le_bytes());
        assert_eq!(&buf[4..8], &record_crc(5, b"abc").to_le_bytes());
        assert_eq!(&buf[8..16], &5u64.to_le_bytes());
        assert_eq!(&buf[16..19], b"abc");
        assert_eq!(&buf[19..23], &0u32.to_le_bytes());
        assert_eq!(&buf[27..35], &6u64.to_le_bytes());
        let mut fixed = Vec::new();
        frame_fixed(&mut fixed, 5, b"abcdef", 3);
        let mut each = Vec::new();
        frame_batch(&mut each, 5, [&b"abc"[..], &b"def"[..]]);
        assert_eq!(fixed, each);
    }

    #[test]
    fn scan_stops_and_skips() {
        let mut buf = Vec::new();
        let payloads: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; i as usize * 3]).collect();
        frame_batch(&mut buf, 1, payloads.iter().map(|p| p.as_slice()));
        let s = scan(&buf, 0, 1, 0, usize::MAX, true);
        assert_eq!((s.stop, s.count, s.last_seq, s.valid_end), (ScanStop::End, 10, 10, buf.len()));
        for (i, &(seq, a, b)) in s.records.iter().enumerate() {
            assert_eq!(seq, i as u64 + 1);
            assert_eq!(&buf[a..b], payloads[i].as_slice());
        }
        // from_seq skips, max_records limits, and the next scan resumes.
        let s = scan(&buf, 0, 1, 4, 3, true);
        assert_eq!(s.stop, ScanStop::Limit);
        assert_eq!(s.records.iter().map(|r| r.0).collect::<Vec<_>>(), vec![4, 5, 6]);
        let s2 = scan(&buf, s.valid_end, s.last_seq + 1, 0, usize::MAX, false);
        assert_eq!((s2.stop, s2.count, s2.last_seq), (ScanStop::End, 4, 10));
        assert!(s2.records.is_empty());
        // Wrong expected seq.
        let s = scan(&buf, 0, 2, 0, usize::MAX, true);
        assert_eq!((s.stop, s.count, s.valid_end, s.last_seq), (ScanStop::WrongSeq, 0, 0, 1));
        // Bad length.
        let mut bad = buf.clone();
        bad[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(scan(&bad, 0, 1, 0, usize::MAX, false).stop, ScanStop::BadLength);
        // Empty buffer.
        let s = scan(&[], 0, 1, 0, usize::MAX, false);
        assert_eq!((s.stop, s.count, s.last_seq), (ScanStop::End, 0, 0));
    }

    #[test]
    fn find_valid_record_after_damage() {
        let mut buf = Vec::new();
        frame_batch(&mut buf, 1, [&b"one"[..], &b"two"[..], &b"three"[..]]);
        let second = 16 + 3;
        let third = second + 16 + 3;
        buf[second + 16] ^= 1; // damage record 2's payload
        let s = scan(&buf, 0, 1, 0, usize::MAX, false);
        assert_eq!((s.stop, s.valid_end), (ScanStop::BadCrc, second));
        assert_eq!(find_valid_record(&buf, second + 1, 2), Some(third));
        assert_eq!(find_valid_record(&buf, second + 1, 4), None);
        assert_eq!(find_valid_record(&buf[..third], second + 1, 2), None);
    }

    fn framed(payloads: &[Vec<u8>]) -> (Vec<u8>, Vec<usize>) {
        let mut buf = Vec::new();
        let mut ends = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            frame_record(&mut buf, i as u64 + 1, p);
            ends.push(buf.len());
        }
        (buf, ends)
    }

    proptest! {
        #[test]
        fn portable_matches_hardware(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(crc32c_portable(&data), crc32c(&data));
        }

        /// Any truncation keeps exactly the records that fit whole, and
        /// stops with an error unless it cut at a record boundary.
        #[test]
        fn truncation_is_detected(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..12),
            cut_frac in 0.0f64..1.0,
        ) {
            let (buf, ends) = framed(&payloads);
            let cut = (cut_frac * buf.len() as f64) as usize;
            let s = scan(&buf[..cut], 0, 1, 0, usize::MAX, true);
            let whole = ends.iter().filter(|&&e| e <= cut).count();
            prop_assert_eq!(s.count as usize, whole);
            prop_assert_eq!(s.valid_end, if whole == 0 { 0 } else { ends[whole - 1] });
            prop_assert_eq!(s.stop == ScanStop::End, s.valid_end == cut);
            prop_assert_eq!(find_valid_record(&buf[..cut], s.valid_end + 1, whole as u64 + 1), None);
        }

        /// Any single bit flip stops the scan at the damaged record (or,
        /// for a flip in a length field, no later than it), never passing
        /// altered data as valid.
        #[test]
        fn bit_flip_is_detected(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..12),
            pos_frac in 0.0f64..1.0,
            bit in 0u8..8,
        ) {
            let (mut buf, ends) = framed(&payloads);
            let pos = ((pos_frac * buf.len() as f64) as usize).min(buf.len() - 1);
            buf[pos] ^= 1 << bit;
            let damaged = ends.iter().position(|&e| pos < e).unwrap();
            let s = scan(&buf, 0, 1, 0, usize::MAX, true);
            prop_assert!(s.stop.is_error());
            prop_assert_eq!(s.count as usize, damaged);
            for &(seq, a, b) in &s.records {
                prop_assert_eq!(&buf[a..b], payloads[seq as usize - 1].as_slice());
            }
        }
    }
}
