//! Property tests: random command streams keep the book's invariants, the
//! events account for every unit of quantity, and replay is deterministic.

use std::collections::BTreeMap;

use lxdex_engine::*;
use proptest::prelude::*;

fn arb_command() -> impl Strategy<Value = Command> {
    let id = 1u64..40;
    let owner = 1u64..4;
    let side = 0u8..2;
    let price = 95i64..106;
    let qty = 1i64..8;
    prop_oneof![
        6 => (id.clone(), owner.clone(), side.clone(), price.clone(), qty.clone(), 0u8..4, 0u8..5, 0u8..2, 0i64..4)
            .prop_map(|(id, owner, side, price, qty, tif, stp, post, display)| {
                let tif = if tif == 3 { 0 } else { tif };
                let display = if display > 0 && display < qty && tif == 0 { display } else { 0 };
                let post = post == 1 && tif == 0 && display == 0;
                Command::Submit(OrderRequest {
                    order_id: id, owner, side, order_type: 0, tif, stp,
                    flags: if post { FLAG_POST_ONLY } else { 0 },
                    price, qty, display_qty: display, ..Default::default()
                })
            }),
        2 => (id.clone(), owner.clone(), side.clone(), qty.clone(), 1u8..3, 0u8..5, prop::bool::ANY)
            .prop_map(|(id, owner, side, qty, tif, stp, protect)| Command::Submit(OrderRequest {
                order_id: id, owner, side, order_type: 1, tif, stp,
                price: if protect { 100 } else { 0 }, qty, ..Default::default()
            })),
        2 => (id.clone(), owner.clone(), side.clone(), price.clone(), price.clone(), qty.clone(), 2u8..7, prop::bool::ANY)
            .prop_map(|(id, owner, side, trig, limit, qty, ot, bps)| {
                let ot = OrderType::from_u8(ot).unwrap();
                let mut r = OrderRequest { order_id: id, owner, side, order_type: ot as u8, qty, ..Default::default() };
                if ot == OrderType::TrailingStop {
                    r.tif = 1;
                    r.trigger_price = if bps { 50 } else { (trig - 94).max(1) };
                    r.flags = if bps { FLAG_TRAIL_BPS } else { 0 };
                } else {
                    r.trigger_price = trig;
                    if ot.is_market_type() { r.tif = 1 } else { r.price = limit }
                }
                Command::Submit(r)
            }),
        1 => (id.clone(), owner.clone(), side.clone(), qty.clone(), 96i64..99, 99i64..102, 102i64..105, prop::bool::ANY)
            .prop_map(|(id, owner, side, qty, lo, mid, hi, market)| {
                let (tp, sl) = if side == 0 { (hi, lo) } else { (lo, hi) };
                Command::Bracket(BracketRequest {
                    order_id: id, owner, side, qty, price: if market { 0 } else { mid },
                    tif: if market { 1 } else { 0 },
                    exits: ExitLegs { tp_id: id + 100, tp_trigger: tp, tp_price: 0, sl_id: id + 200, sl_trigger: sl, sl_price: if market { sl } else { 0 } },
                    ..Default::default()
                })
            }),
        1 => (id.clone(), owner.clone(), side.clone(), qty.clone(), 96i64..100, 101i64..105)
            .prop_map(|(id, owner, side, qty, lo, hi)| {
                let (tp, sl) = if side == 1 { (hi, lo) } else { (lo, hi) };
                Command::Oco(OcoRequest { owner, side, qty, stp: 0,
                    legs: ExitLegs { tp_id: id + 300, tp_trigger: tp, tp_price: 0, sl_id: id + 400, sl_trigger: sl, sl_price: 0 } })
            }),
        3 => (1u64..440).prop_map(|order_id| Command::Cancel { order_id }),
        2 => (id.clone(), prop_oneof![Just(0i64), price.clone()], 0i64..8)
            .prop_map(|(order_id, price, qty)| Command::Amend { order_id, price, qty }),
        1 => owner.prop_map(|owner| Command::MassCancel { owner }),
        1 => price.prop_map(|price| Command::ObservePrice { price }),
    ]
}

/// Tracks each live order's open quantity from the events alone.
#[derive(Default)]
struct Ledger {
    open: BTreeMap<u64, i64>,
}

impl Ledger {
    fn apply(&mut self, events: &[Event]) {
        for e in events {
            match e.kind {
                EventKind::Accepted => {
                    assert!(self.open.insert(e.order_id, e.qty).is_none(), "id accepted twice while live: {e:?}");
                }
                EventKind::Fill => {
                    let t = self.open.get_mut(&e.order_id).expect("taker is live");
                    *t -= e.qty;
                    assert_eq!(*t, e.remaining, "taker remaining in {e:?}");
                    let m = self.open.get_mut(&e.other_id).expect("maker is live");
                    *m -= e.qty;
                    assert_eq!(*m, e.other_remaining, "maker remaining in {e:?}");
                    assert!(e.qty > 0);
                    if e.other_remaining == 0 {
                        self.open.remove(&e.other_id);
                    }
                    if e.remaining == 0 {
                        self.open.remove(&e.order_id);
                    }
                }
                EventKind::Cancelled => {
                    let o = self.open.get_mut(&e.order_id).expect("cancelled order is live");
                    *o -= e.qty;
                    assert_eq!(*o, e.remaining, "cancel remaining in {e:?}");
                    if e.remaining == 0 {
                        self.open.remove(&e.order_id);
                    }
                }
                EventKind::Amended => {
                    *self.open.get_mut(&e.order_id).expect("amended order is live") = e.qty;
                }
                EventKind::Activated => {
                    *self.open.get_mut(&e.order_id).expect("activated child is live") = e.qty;
                }
                EventKind::Triggered | EventKind::Rejected | EventKind::Depth => {}
            }
        }
    }

    fn check(&self, book: &Book) {
        let mut live = BTreeMap::new();
        for o in book.l3() {
            live.insert(o.order_id, o.visible + o.hidden);
        }
        for p in book.pending() {
            live.insert(p.order_id, p.qty);
        }
        assert_eq!(live, self.open, "book's live orders match the events");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn events_account_for_every_lot(cmds in prop::collection::vec(arb_command(), 1..120)) {
        let mut book = Book::new(1, 1);
        let mut ledger = Ledger::default();
        let mut out = Vec::new();
        for cmd in &cmds {
            out.clear();
            let before = book.clone();
            match book.apply(cmd, &mut out) {
                Ok(()) => ledger.apply(&out),
                Err(_) => {
                    prop_assert!(out.is_empty(), "a rejection emits nothing");
                    prop_assert_eq!(format!("{:?}", before), format!("{:?}", book), "a rejection changes nothing");
                }
            }
            book.check_invariants();
            ledger.check(&book);
        }
    }

    #[test]
    fn replay_is_deterministic(cmds in prop::collection::vec(arb_command(), 1..120)) {
        let run = || {
            let mut book = Book::new(1, 1);
            let mut out = Vec::new();
            for cmd in &cmds {
                let _ = book.apply(cmd, &mut out);
            }
            (out, book.l3(), book.pending())
        };
        prop_assert_eq!(run(), run());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// restore(snapshot(x)) is x: same bytes, and the same future.
    #[test]
    fn snapshot_restore_replay(cmds in prop::collection::vec(arb_command(), 2..120), cut in 0usize..120) {
        let cut = cut % cmds.len();
        let mut book = Book::new(1, 1);
        let mut out = Vec::new();
        for cmd in &cmds[..cut] {
            let _ = book.apply(cmd, &mut out);
        }
        let snap = book.snapshot();
        let mut restored = Book::restore(&snap).expect("own snapshot restores");
        restored.check_invariants();
        prop_assert_eq!(&restored.snapshot(), &snap);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for cmd in &cmds[cut..] {
            let ra = book.apply(cmd, &mut a);
            let rb = restored.apply(cmd, &mut b);
            prop_assert_eq!(ra, rb);
        }
        prop_assert_eq!(a, b);
        prop_assert_eq!(book.snapshot(), restored.snapshot());
    }

    /// Corrupt snapshots are errors, never panics or broken books.
    #[test]
    fn corrupt_snapshots_are_rejected_cleanly(cmds in prop::collection::vec(arb_command(), 1..60),
                                              flips in prop::collection::vec((0usize..4096, 0u8..=255), 1..4),
                                              truncate in 0usize..4096) {
        let mut book = Book::new(1, 1);
        let mut out = Vec::new();
        for cmd in &cmds {
            let _ = book.apply(cmd, &mut out);
        }
        let mut snap = book.snapshot();
        for (at, v) in flips {
            let n = snap.len();
            snap[at % n] ^= v | 1;
        }
        if let Ok(b) = Book::restore(&snap) {
            b.check_invariants();
        }
        let t = truncate % snap.len();
        prop_assert!(Book::restore(&snap[..t]).is_err());
    }
}
