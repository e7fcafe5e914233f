//! Journal replay of binary order batches without leaving Rust.
//!
//! The node journals a binary order batch as the msgpack encoding of the
//! `records` command of `python/lxdex/commands.py` (`Records(ts, data)`):
//!
//! ```text
//! 83                      map of 3
//! a3 "cmd" a7 "records"   the tag
//! a4 "data" c4|c5|c6 len  bin 8/16/32 (big-endian length), then the rows
//! a2 "ts"   int           positive fixint, or uint 8/16/32/64 (cc..cf)
//! ```
//!
//! which is exactly what `msgspec` writes for it. [`records_command`]
//! recognises that canonical form and nothing else: any other encoding
//! (another key order, a signed integer, trailing bytes, another command)
//! returns `None`, and the caller decodes the payload the general way
//! (Python's msgspec), so this parser never has to agree with a decoder on
//! anything but the one layout the encoder produces.
//!
//! ```
//! use lxdex_engine::replay::records_command;
//!
//! let mut p = b"\x83\xa3cmd\xa7records\xa4data\xc4\x02ab\xa2ts".to_vec();
//! p.push(0x05);
//! assert_eq!(records_command(&p), Some((5, &b"ab"[..])));
//! p.push(0x00); // trailing byte: not the canonical form
//! assert_eq!(records_command(&p), None);
//! ```

use crate::record::COMMAND_RECORD_SIZE;
use crate::{Event, Exchange};

const HEAD: &[u8] = b"\x83\xa3cmd\xa7records\xa4data";
const TS_KEY: &[u8] = b"\xa2ts";

/// `(ts, rows)` of a `records` command payload in its canonical msgpack
/// encoding (module docs), or `None` for any other bytes.
pub fn records_command(p: &[u8]) -> Option<(u64, &[u8])> {
    let rest = p.strip_prefix(HEAD)?;
    let (&tag, rest) = rest.split_first()?;
    let (len, rest) = match tag {
        0xc4 => (*rest.first()? as usize, rest.get(1..)?),
        0xc5 => (u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize, rest.get(2..)?),
        0xc6 => (u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize, rest.get(4..)?),
        _ => return None,
    };
    let data = rest.get(..len)?;
    let rest = rest[len..].strip_prefix(TS_KEY)?;
    let (&tag, rest) = rest.split_first()?;
    let (ts, rest) = match tag {
        0x00..=0x7f => (tag as u64, rest),
        0xcc => (*rest.first()? as u64, rest.get(1..)?),
        0xcd => (u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as u64, rest.get(2..)?),
        0xce => (u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as u64, rest.get(4..)?),
        0xcf => (u64::from_be_bytes(rest.get(..8)?.try_into().ok()?), rest.get(8..)?),
        _ => return None,
    };
    rest.is_empty().then_some((ts, data))
}

/// The canonical encoding of `records_command`'s input (for tests and
/// tools): the smallest integer form of `ts` and of the bin length, as
/// msgpack encoders (msgspec among them) write them.
pub fn encode_records_command(ts: u64, data: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(data.len() + 40);
    p.extend_from_slice(HEAD);
    let n = data.len();
    if n <= u8::MAX as usize {
        p.extend_from_slice(&[0xc4, n as u8]);
    } else if n <= u16::MAX as usize {
        p.push(0xc5);
        p.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        p.push(0xc6);
        p.extend_from_slice(&(u32::try_from(n).expect("payload under 4 GiB")).to_be_bytes());
    }
    p.extend_from_slice(data);
    p.extend_from_slice(TS_KEY);
    if ts < 0x80 {
        p.push(ts as u8);
    } else if ts <= u8::MAX as u64 {
        p.extend_from_slice(&[0xcc, ts as u8]);
    } else if ts <= u16::MAX as u64 {
        p.push(0xcd);
        p.extend_from_slice(&(ts as u16).to_be_bytes());
    } else if ts <= u32::MAX as u64 {
        p.push(0xce);
        p.extend_from_slice(&(ts as u32).to_be_bytes());
    } else {
        p.push(0xcf);
        p.extend_from_slice(&ts.to_be_bytes());
    }
    p
}

/// A replayed command whose events the caller must look at (see
/// [`replay_records`]).
#[derive(Debug)]
pub struct Flagged {
    /// Its position in the payloads given.
    pub index: usize,
    pub ts: u64,
    /// The events of moving the clock to `ts` (GTD expiries), then the batch's.
    pub clock: Vec<Event>,
    pub events: Vec<Event>,
}

/// What [`replay_records`] did.
#[derive(Debug, Default)]
pub struct Replayed {
    /// How many payloads it applied (from the first one given).
    pub count: usize,
    /// The largest `ts` among them (0 if none).
    pub max_ts: u64,
    pub flagged: Vec<Flagged>,
}

/// Applies journal payloads in order for as long as each is a `records`
/// command in its canonical form with a whole number of rows, exactly as
/// `lxdex.exchange.Exchange.execute` applies one: the clock first moves to
/// its `ts` if that is later (a failed clock move, which the Python side
/// reports as the command's error, skips the rows), then the rows, each
/// rejection becoming a `REJECTED` event. It stops before the first other
/// payload, which the caller applies the general way.
///
/// Events are not kept, except those of a command for which `flag` is true
/// of any of its events (clock or batch): those come back in `flagged` for
/// the caller's follow-up (notifications).
pub fn replay_records<'a, I, F>(x: &mut Exchange, payloads: I, flag: F) -> Replayed
where
    I: IntoIterator<Item = &'a [u8]>,
    F: Fn(&Event) -> bool,
{
    let mut r = Replayed::default();
    let (mut clock, mut events) = (Vec::new(), Vec::with_capacity(4096));
    for (index, p) in payloads.into_iter().enumerate() {
        let Some((ts, rows)) = records_command(p) else { break };
        if rows.len() % COMMAND_RECORD_SIZE != 0 {
            break;
        }
        clock.clear();
        events.clear();
        let mut clock_ok = true;
        if ts > x.now() && x.advance_time(ts, &mut clock).is_err() {
            clock.clear();
            clock_ok = false;
        }
        if clock_ok {
            x.apply_records(rows, &mut events);
        }
        if clock.iter().any(&flag) || events.iter().any(&flag) {
            r.flagged.push(Flagged { index, ts, clock: clock.clone(), events: events.clone() });
        }
        r.max_ts = r.max_ts.max(ts);
        r.count += 1;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(ts in any::<u64>(), data in proptest::collection::vec(any::<u8>(), 0..70_000)) {
            let p = encode_records_command(ts, &data);
            prop_assert_eq!(records_command(&p), Some((ts, &data[..])));
        }

        /// Cut anywhere, the payload is refused (never a shorter `data`).
        #[test]
        fn truncated_is_refused(ts in any::<u64>(), data in proptest::collection::vec(any::<u8>(), 0..600), cut in any::<prop::sample::Index>()) {
            let p = encode_records_command(ts, &data);
            let cut = cut.index(p.len());
            prop_assert_eq!(records_command(&p[..cut]), None);
        }

        #[test]
        fn any_bytes_never_panic(p in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = records_command(&p);
        }

        /// A byte changed in the fixed framing (map, tag, key) is refused.
        #[test]
        fn framing_byte_flips_are_refused(ts in any::<u64>(), data in proptest::collection::vec(any::<u8>(), 0..300), at in any::<prop::sample::Index>(), x in 1u8..=255) {
            let p = encode_records_command(ts, &data);
            let head = HEAD.len();
            let i = at.index(head);
            let mut q = p.clone();
            q[i] ^= x;
            prop_assert_eq!(records_command(&q), None);
        }
    }

    #[test]
    fn non_canonical_forms_are_refused() {
        let good = encode_records_command(300, b"xyz");
        assert_eq!(records_command(&good), Some((300, &b"xyz"[..])));
        // a signed integer form of the ts (msgspec never writes it for ts >= 0)
        let mut p = HEAD.to_vec();
        p.extend_from_slice(b"\xc4\x03xyz\xa2ts\xd1\x01\x2c");
        assert_eq!(records_command(&p), None);
        // keys in another order
        let mut p = b"\x83\xa3cmd\xa7records\xa2ts\x05\xa4data\xc4\x00".to_vec();
        assert_eq!(records_command(&p), None);
        p.clear();
        assert_eq!(records_command(&p), None);
        // another command
        assert_eq!(records_command(b"\x82\xa3cmd\xa4tick\xa2ts\x05"), None);
    }
}
