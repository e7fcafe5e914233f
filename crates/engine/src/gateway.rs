//! Per-row acknowledgements of a batch of command records, for the node's
//! binary gateway (python/lxdex/node/zmq_gateway.py, docs/node.md).
//!
//! An ack is 32 bytes, little endian: `status` u8 (0 applied, 1 rejected),
//! `reason` u8 (the reject reason, or the cancel reason when the row's
//! order ended cancelled), `kind` u8 (the row's), `done` u8 (1 when the
//! row's order is no longer live after the row: filled or cancelled),
//! `fills` u32, `order_id` u64 (the new order's id for a submit, the row's
//! own otherwise), `filled` i64 (lots the row's order traded in the row),
//! `remaining` i64 (its quantity left after its last fill or cancel in the
//! row; 0 when nothing happened to it).

use crate::record::COMMAND_RECORD_SIZE;
use crate::EventKind;

pub const ACK_SIZE: usize = 32;
const EVENT_SIZE: usize = 80;

#[inline]
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[inline]
fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The acks of every record in `records` (whole 120-byte records) given the
/// events the batch produced (whole 80-byte EVENT_DTYPE rows, in order,
/// each naming its record in `cmd_index`). Events naming no record of the
/// batch are ignored.
pub fn acks(records: &[u8], events: &[u8]) -> Vec<u8> {
    let n = records.len() / COMMAND_RECORD_SIZE;
    let mut out = vec![0u8; n * ACK_SIZE];
    for i in 0..n {
        let r = &records[i * COMMAND_RECORD_SIZE..];
        let a = &mut out[i * ACK_SIZE..(i + 1) * ACK_SIZE];
        a[2] = r[0];
        a[8..16].copy_from_slice(&r[16..24]);
    }
    const ACCEPTED: u8 = EventKind::Accepted as u8;
    const REJECTED: u8 = EventKind::Rejected as u8;
    const FILL: u8 = EventKind::Fill as u8;
    const CANCELLED: u8 = EventKind::Cancelled as u8;
    for e in events.chunks_exact(EVENT_SIZE) {
        let i = u32::from_le_bytes(e[8..12].try_into().unwrap()) as usize;
        if i >= n {
            continue;
        }
        let a = &mut out[i * ACK_SIZE..(i + 1) * ACK_SIZE];
        let order_id = u64_at(e, 16);
        match e[0] {
            ACCEPTED => a[8..16].copy_from_slice(&e[16..24]),
            REJECTED => {
                a[0] = 1;
                a[1] = e[1];
            }
            FILL if order_id == u64_at(a, 8) => {
                let filled = i64_at(a, 16) + i64_at(e, 56);
                a[16..24].copy_from_slice(&filled.to_le_bytes());
                let fills = u32::from_le_bytes(a[4..8].try_into().unwrap()) + 1;
                a[4..8].copy_from_slice(&fills.to_le_bytes());
                let remaining = i64_at(e, 64);
                a[24..32].copy_from_slice(&remaining.to_le_bytes());
                if remaining == 0 {
                    a[3] = 1;
                }
            }
            CANCELLED if order_id == u64_at(a, 8) => {
                a[3] = 1;
                a[1] = e[1];
                a[24..32].copy_from_slice(&0i64.to_le_bytes());
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{kind, CommandRecord};
    use crate::{Event, EventKind, Reason};

    fn rec(k: u8, order_id: u64) -> CommandRecord {
        CommandRecord { kind: k, order_id, ..Default::default() }
    }

    fn ev(kind: EventKind, cmd_index: u32, order_id: u64, qty: i64, remaining: i64) -> Event {
        let mut e = Event::new(kind);
        e.cmd_index = cmd_index;
        e.order_id = order_id;
        e.qty = qty;
        e.remaining = remaining;
        e
    }

    fn bytes_of<T>(v: &[T]) -> &[u8] {
        // SAFETY: plain-old-data repr(C) structs viewed as bytes.
        unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
    }

    fn field(a: &[u8], i: usize) -> (u8, u8, u8, u8, u32, u64, i64, i64) {
        let a = &a[i * ACK_SIZE..];
        (a[0], a[1], a[2], a[3], u32::from_le_bytes(a[4..8].try_into().unwrap()), u64_at(a, 8), i64_at(a, 16), i64_at(a, 24))
    }

    #[test]
    fn acks_follow_the_events_of_each_row() {
        let recs = [rec(kind::SUBMIT, 0), rec(kind::SUBMIT, 0), rec(kind::CANCEL, 7), rec(kind::SUBMIT, 0)];
        let mut rej = Event::new(EventKind::Rejected);
        rej.cmd_index = 3;
        rej.reason = Reason::InsufficientFunds;
        let mut cancel = ev(EventKind::Cancelled, 2, 7, 4, 0);
        cancel.reason = Reason::User;
        let evs = [
            ev(EventKind::Accepted, 0, 7, 10, 10),
            ev(EventKind::Accepted, 1, 8, 6, 6),
            ev(EventKind::Fill, 1, 8, 2, 4), // taker 8 against maker 7
            ev(EventKind::Fill, 1, 8, 4, 0),
            ev(EventKind::Fill, 1, 99, 1, 0), // another order's fill in the row: not the row's own
            cancel,
            rej,
            ev(EventKind::Fill, 9, 1, 1, 1), // names no row: ignored
        ];
        let a = acks(bytes_of(&recs), bytes_of(&evs));
        assert_eq!(a.len(), 4 * ACK_SIZE);
        assert_eq!(field(&a, 0), (0, 0, kind::SUBMIT, 0, 0, 7, 0, 0));
        assert_eq!(field(&a, 1), (0, 0, kind::SUBMIT, 1, 2, 8, 6, 0));
        assert_eq!(field(&a, 2), (0, Reason::User as u8, kind::CANCEL, 1, 0, 7, 0, 0));
        assert_eq!(field(&a, 3), (1, Reason::InsufficientFunds as u8, kind::SUBMIT, 0, 0, 0, 0, 0));
    }

    #[test]
    fn empty_batches() {
        assert!(acks(&[], &[]).is_empty());
        let recs = [rec(kind::AMEND, 5)];
        assert_eq!(field(&acks(bytes_of(&recs), &[]), 0), (0, 0, kind::AMEND, 0, 0, 5, 0, 0));
    }
}
