//! Canonical binary snapshots of a book.
//!
//! The encoding is canonical: resting orders in L3 order (bids best to worst,
//! then asks, each level in queue order), conditional orders in arrival
//! order, groups by key, so two books in the same state give the same bytes
//! whatever their history (slab slots and hash-map layout are not encoded).
//! That makes the bytes usable for a state hash. Little endian throughout.

use super::*;

const MAGIC: &[u8; 4] = b"LXBK";
const VERSION: u16 = 1;

use crate::codec::{bad, Reader, SnapshotError, Writer};

const ORDER_BYTES: usize = 4 + 10 * 8;
const COND_BYTES: usize = 7 + 10 * 8;
const GROUP_BYTES: usize = 5 * 8;

impl Book {
    /// The book's whole state as canonical bytes (see [`Book::restore`]).
    pub fn snapshot(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(64 + self.index.len() * ORDER_BYTES + self.conds.len() * COND_BYTES));
        w.0.extend_from_slice(MAGIC);
        w.0.extend_from_slice(&VERSION.to_le_bytes());
        w.i64(self.tick_size);
        w.i64(self.lot_size);
        w.u64(self.now);
        w.i64(self.last_price.unwrap_or(0));
        w.u64(self.next_seq);
        w.u64(self.index.len() as u64);
        for side in [Side::Buy, Side::Sell] {
            for (_, level) in self.ladder(side).live_levels() {
                let mut i = level.head;
                while i != NIL {
                    let (o, x) = (&self.orders[i as usize], self.extra(i));
                    for b in [o.side as u8, o.tif as u8, o.stp as u8, o.post_only as u8] {
                        w.u8(b);
                    }
                    for v in [o.id, o.owner] {
                        w.u64(v);
                    }
                    for v in [o.price, o.visible, o.hidden, x.display] {
                        w.i64(v);
                    }
                    for v in [o.seq, x.expire_ts, x.group] {
                        w.u64(v);
                    }
                    w.u64(0); // reserved
                    i = o.next;
                }
            }
        }
        w.u64(self.conds.len() as u64);
        for c in self.conds.values() {
            for b in [c.side as u8, c.order_type as u8, c.tif as u8, c.stp as u8, c.trail_bps as u8, c.active as u8, c.queued as u8] {
                w.u8(b);
            }
            for v in [c.id, c.owner] {
                w.u64(v);
            }
            for v in [c.price, c.qty] {
                w.i64(v);
            }
            for v in [c.expire_ts, c.seq] {
                w.u64(v);
            }
            for v in [c.trigger, c.reference] {
                w.i64(v);
            }
            w.u64(c.group);
            w.i64(c.display);
        }
        let mut groups: Vec<_> = self.groups.iter().collect();
        groups.sort_unstable_by_key(|(k, _)| **k);
        w.u64(groups.len() as u64);
        for (&k, g) in groups {
            w.u64(k);
            w.u64(g.entry);
            w.i64(g.filled);
            w.u64(g.tp);
            w.u64(g.sl);
        }
        w.0
    }

    /// Rebuilds a book from [`Book::snapshot`] bytes. Corrupt or inconsistent
    /// bytes give an error, never a half-built book.
    pub fn restore(bytes: &[u8]) -> Result<Book, SnapshotError> {
        let mut r = Reader { b: bytes, at: 0 };
        if r.take(4)? != MAGIC {
            return bad("not a book snapshot (magic)");
        }
        let version = u16::from_le_bytes(r.take(2)?.try_into().unwrap());
        if version != VERSION {
            return bad(format!("unsupported version {version}"));
        }
        let (tick, lot) = (r.i64()?, r.i64()?);
        if tick < 1 || lot < 1 {
            return bad("tick_size and lot_size must be >= 1");
        }
        let mut book = Book::new(tick, lot);
        book.now = r.u64()?;
        let last = r.i64()?;
        if !(0..=MAX_PRICE).contains(&last) {
            return bad("last price out of range");
        }
        book.last_price = (last > 0).then_some(last);
        book.next_seq = r.u64()?;
        let n = r.count(ORDER_BYTES)?;
        let mut last_key: Option<(Side, i64)> = None;
        for _ in 0..n {
            let side = r.enum_(Side::from_u8, "order side")?;
            let tif = r.enum_(Tif::from_u8, "order tif")?;
            let stp = r.enum_(Stp::from_u8, "order stp")?;
            let post_only = r.flag("post_only")?;
            let (id, owner) = (r.u64()?, r.u64()?);
            let (price, visible, hidden, display) = (r.i64()?, r.i64()?, r.i64()?, r.i64()?);
            let (seq, expire_ts, group) = (r.u64()?, r.u64()?, r.u64()?);
            r.u64()?;
            if id == 0 || book.is_live(id) {
                return bad(format!("order id {id} zero or repeated"));
            }
            if !(1..=MAX_PRICE).contains(&price) || visible < 1 || hidden < 0 || visible + hidden > MAX_QTY {
                return bad(format!("order {id}: price or quantity out of range"));
            }
            if display < 0 || (display > 0 && visible > display) || (display == 0 && hidden != 0) {
                return bad(format!("order {id}: inconsistent iceberg"));
            }
            if !matches!(tif, Tif::Gtc | Tif::Gtd) || (tif == Tif::Gtd) != (expire_ts != 0) || seq == 0 || seq >= book.next_seq {
                return bad(format!("order {id}: tif, expiry or seq inconsistent"));
            }
            // L3 order: bids by falling price, then asks by rising price.
            let key = (side, Ladder::key(side, price));
            if let Some((s, k)) = last_key {
                if s == side && k < key.1 || (s == Side::Sell && side == Side::Buy) {
                    return bad("orders not in book order");
                }
            }
            last_key = Some(key);
            let t = Taker {
                id,
                owner,
                side,
                order_type: OrderType::Limit,
                price,
                bound: price,
                remaining: visible + hidden,
                display,
                tif,
                stp,
                expire_ts,
                seq,
                group,
                post_only,
            };
            book.rest(&t);
            let idx = book.index.get(id).expect("just rested");
            let o = &mut book.orders[idx as usize];
            let delta = visible - o.visible;
            o.visible = visible;
            o.hidden = hidden;
            let ladder = book.ladder_mut(side);
            let li = ladder.find(Ladder::key(side, price)).unwrap();
            ladder.levels[li].visible += delta;
        }
        if let (Some(b), Some(a)) = (book.best_bid(), book.best_ask()) {
            if b >= a {
                return bad("book crossed");
            }
        }
        let n = r.count(COND_BYTES)?;
        let mut prev_seq = 0;
        for _ in 0..n {
            let side = r.enum_(Side::from_u8, "pending side")?;
            let order_type = r.enum_(OrderType::from_u8, "pending order type")?;
            let tif = r.enum_(Tif::from_u8, "pending tif")?;
            let stp = r.enum_(Stp::from_u8, "pending stp")?;
            let trail_bps = r.flag("trail_bps")?;
            let active = r.flag("active")?;
            let queued = r.flag("queued")?;
            let (id, owner) = (r.u64()?, r.u64()?);
            let (price, qty) = (r.i64()?, r.i64()?);
            let (expire_ts, seq) = (r.u64()?, r.u64()?);
            let (trigger, reference) = (r.i64()?, r.i64()?);
            let group = r.u64()?;
            let display = r.i64()?;
            if display < 0 || (display > 0 && (display >= qty || order_type.is_market_type())) {
                return bad(format!("pending order {id}: display quantity inconsistent"));
            }
            if !order_type.is_conditional() || queued || id == 0 || book.is_live(id) || seq <= prev_seq || seq >= book.next_seq {
                return bad(format!("pending order {id}: type, id or seq inconsistent"));
            }
            if !(0..=MAX_QTY).contains(&qty) || (active && qty == 0) || trigger < 1 || !(0..=MAX_PRICE).contains(&price) || reference < 0 {
                return bad(format!("pending order {id}: values out of range"));
            }
            if (tif == Tif::Gtd) != (expire_ts != 0) {
                return bad(format!("pending order {id}: expiry inconsistent"));
            }
            prev_seq = seq;
            let c = Cond {
                id, owner, side, order_type, price, qty, tif, stp, expire_ts, seq, trigger, trail_bps,
                reference, display, active, queued: false, group,
            };
            book.cond_ids.insert(id, seq);
            book.max_id = book.max_id.max(id);
            if tif == Tif::Gtd {
                book.expiry.insert((expire_ts, seq, id));
            }
            if active {
                book.index_cond(&c);
            }
            book.conds.insert(seq, c);
        }
        let n = r.count(GROUP_BYTES)?;
        let mut prev_key = 0;
        for _ in 0..n {
            let key = r.u64()?;
            let g = Group { entry: r.u64()?, filled: r.i64()?, tp: r.u64()?, sl: r.u64()? };
            if key <= prev_key || g.filled < 0 {
                return bad("groups out of order or negative fill");
            }
            for child in [g.tp, g.sl] {
                if child != 0 && book.conds.get(&child).is_none_or(|c| c.group != key) {
                    return bad(format!("group {key}: child {child} missing"));
                }
            }
            if g.entry != 0 && book.index.get(g.entry).is_none_or(|i| book.extra(i).group != key) {
                return bad(format!("group {key}: entry {} missing", g.entry));
            }
            prev_key = key;
            book.groups.insert(key, g);
        }
        for (i, o) in book.orders.iter().enumerate().filter(|(i, o)| o.id != 0 && book.extra(*i as u32).group != 0) {
            let group = book.extra(i as u32).group;
            if !book.groups.contains_key(&group) {
                return bad(format!("order {}: group {group} missing", o.id));
            }
        }
        for c in book.conds.values() {
            if c.group != 0 && !book.groups.contains_key(&c.group) {
                return bad(format!("pending order {}: group {} missing", c.id, c.group));
            }
        }
        if r.at != bytes.len() {
            return bad("trailing bytes");
        }
        Ok(book)
    }
}
