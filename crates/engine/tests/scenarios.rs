//! Hand-checked scenarios, one per behaviour (the Python suite runs many more
//! against both this book and the reference model).

use lxdex_engine::*;

const B: Side = Side::Buy;
const S: Side = Side::Sell;

fn run(book: &mut Book, cmd: Command) -> Vec<Event> {
    let mut out = Vec::new();
    book.apply(&cmd, &mut out).expect("command accepted");
    out
}

fn submit(book: &mut Book, r: OrderRequest) -> Vec<Event> {
    run(book, Command::Submit(r))
}

fn kinds(evs: &[Event]) -> Vec<(EventKind, u64)> {
    evs.iter().map(|e| (e.kind, e.order_id)).collect()
}

fn fills(evs: &[Event]) -> Vec<(u64, u64, i64, i64)> {
    evs.iter().filter(|e| e.kind == EventKind::Fill).map(|e| (e.order_id, e.other_id, e.price, e.qty)).collect()
}

#[test]
fn price_time_priority_and_maker_price() {
    let mut b = Book::default();
    submit(&mut b, OrderRequest::limit(1, 1, S, 101, 2));
    submit(&mut b, OrderRequest::limit(2, 2, S, 100, 2));
    submit(&mut b, OrderRequest::limit(3, 3, S, 100, 2));
    let ev = submit(&mut b, OrderRequest::limit(4, 4, B, 105, 5));
    assert_eq!(fills(&ev), vec![(4, 2, 100, 2), (4, 3, 100, 2), (4, 1, 101, 1)]);
    assert_eq!(b.best_ask(), Some(101));
    assert_eq!(b.volume_at(S, 101), 1);
    assert_eq!(b.last_price(), Some(101));
    b.check_invariants();
}

#[test]
fn ioc_and_market_remainders_are_cancelled() {
    let mut b = Book::default();
    submit(&mut b, OrderRequest::limit(1, 1, S, 100, 2));
    let ev = submit(&mut b, OrderRequest::limit(2, 2, B, 100, 5).with_tif(Tif::Ioc));
    assert_eq!(ev.last().unwrap().reason, Reason::Ioc);
    assert_eq!(ev.last().unwrap().qty, 3);
    let ev = submit(&mut b, OrderRequest::market(3, 2, B, 4));
    assert_eq!(kinds(&ev), vec![(EventKind::Accepted, 3), (EventKind::Cancelled, 3)]);
    assert_eq!(ev[1].reason, Reason::MarketRemainder);
    assert!(b.is_empty());
}

#[test]
fn fok_is_all_or_nothing() {
    let mut b = Book::default();
    submit(&mut b, OrderRequest::limit(1, 1, S, 100, 2));
    submit(&mut b, OrderRequest::limit(2, 2, S, 101, 2));
    let ev = submit(&mut b, OrderRequest::limit(3, 3, B, 101, 5).with_tif(Tif::Fok));
    assert_eq!(kinds(&ev), vec![(EventKind::Accepted, 3), (EventKind::Cancelled, 3)]);
    assert_eq!(ev[1].reason, Reason::Fok);
    assert_eq!(b.len(), 2);
    let ev = submit(&mut b, OrderRequest::limit(4, 3, B, 101, 4).with_tif(Tif::Fok));
    assert_eq!(fills(&ev), vec![(4, 1, 100, 2), (4, 2, 101, 2)]);
}

#[test]
fn fok_counts_iceberg_hidden_quantity_but_not_behind_a_self_order() {
    let mut b = Book::default();
    submit(&mut b, OrderRequest::limit(1, 1, S, 100, 10).iceberg(2));
    submit(&mut b, OrderRequest::limit(2, 7, S, 100, 1));
    // Other owner: the whole iceberg is reachable.
    let mut c = b.clone();
    let ev = submit(&mut c, OrderRequest::limit(3, 9, B, 100, 11).with_tif(Tif::Fok));
    assert_eq!(ev.iter().filter(|e| e.kind == EventKind::Fill).map(|e| e.qty).sum::<i64>(), 11);
    // Owner 7 with cancel-taker: only the 2 visible ahead of its own order.
    let ev = submit(&mut b.clone(), OrderRequest::limit(4, 7, B, 100, 3).with_tif(Tif::Fok).with_stp(Stp::CancelTaker));
    assert_eq!(ev[1].reason, Reason::Fok);
    let ev = submit(&mut b, OrderRequest::limit(5, 7, B, 100, 2).with_tif(Tif::Fok).with_stp(Stp::CancelTaker));
    assert_eq!(fills(&ev), vec![(5, 1, 100, 2)]);
}

#[test]
fn post_only_never_takes() {
    let mut b = Book::default();
    submit(&mut b, OrderRequest::limit(1, 1, S, 100, 2));
    let ev = submit(&mut b, OrderRequest::limit(2, 2, B, 100, 1).post_only());
    assert_eq!(ev[1].reason, Reason::PostOnly);
    submit(&mut b, OrderRequest::limit(3, 2, B, 99, 1).post_only());
    assert_eq!(b.best_bid(), Some(99));
}

#[test]
fn self_trade_prevention_modes() {
    let setup = || {
        let mut b = Book::default();
        submit(&mut b, OrderRequest::limit(1, 7, S, 100, 3));
        submit(&mut b, OrderRequest::limit(2, 8, S, 100, 3));
        b
    };
    let taker = |stp| OrderRequest::limit(9, 7, B, 100, 4).with_stp(stp);

    let ev = submit(&mut setup(), taker(Stp::None));
    assert_eq!(fills(&ev), vec![(9, 1, 100, 3), (9, 2, 100, 1)]);

    let ev = submit(&mut setup(), taker(Stp::CancelTaker));
    assert_eq!(kinds(&ev), vec![(EventKind::Accepted, 9), (EventKind::Cancelled, 9)]);

    let ev = submit(&mut setup(), taker(Stp::CancelMaker));
    assert_eq!(kinds(&ev), vec![(EventKind::Accepted, 9), (EventKind::Cancelled, 1), (EventKind::Fill, 9)]);
    let mut b = setup();
    submit(&mut b, taker(Stp::CancelMaker));
    assert_eq!(b.best_bid(), Some(100)); // remainder 1 rests after the cancelled maker and the fill

    let ev = submit(&mut setup(), taker(Stp::CancelBoth));
    assert_eq!(kinds(&ev), vec![(EventKind::Accepted, 9), (EventKind::Cancelled, 1), (EventKind::Cancelled, 9)]);

    let mut b = setup();
    let ev = submit(&mut b, taker(Stp::Decrement));
    // 3 decremented against the own maker (gone), then 1 trades with owner 8.
    assert_eq!(ev[1].kind, EventKind::Cancelled);
    assert_eq!((ev[1].order_id, ev[1].qty, ev[1].remaining), (1, 3, 0));
    assert_eq!((ev[2].order_id, ev[2].qty, ev[2].remaining), (9, 3, 1));
    assert_eq!(fills(&ev), vec![(9, 2, 100, 1)]);
    assert_eq!(b.volume_at(S, 100), 2);
}

#[test]
fn iceberg_refills_to_the_back() {
    let mut b = Book::default();
    submit(&mut b, OrderRequest::limit(1, 1, S, 100, 5).iceberg(2));
    submit(&mut b, OrderRequest::limit(2, 2, S, 100, 2));
    assert_eq!(b.volume_at(S, 100), 4);
    let ev = submit(&mut b, OrderRequest::limit(3, 3, B, 100, 3));
    assert_eq!(fills(&ev), vec![(3, 1, 100, 2), (3, 2, 100, 1)]);
    let l3: Vec<_> = b.l3().iter().map(|o| (o.order_id, o.visible, o.hidden)).collect();
    assert_eq!(l3, vec![(2, 1, 0), (1, 2, 1)]);
}

#[test]
fn amend_keeps_or_loses_priority() {
    let mut b = Book::default();
    submit(&mut b, OrderRequest::limit(1, 1, B, 99, 5));
    submit(&mut b, OrderRequest::limit(2, 2, B, 99, 5));
    run(&mut b, Command::Amend { order_id: 1, price: 0, qty: 3 });
    assert_eq!(b.l3()[0].order_id, 1);
    run(&mut b, Command::Amend { order_id: 1, price: 0, qty: 4 });
    assert_eq!(b.l3()[0].order_id, 2);
    submit(&mut b, OrderRequest::limit(3, 3, S, 101, 2));
    let ev = run(&mut b, Command::Amend { order_id: 2, price: 102, qty: 0 });
    assert_eq!(ev[0].kind, EventKind::Amended);
    assert_eq!(fills(&ev), vec![(2, 3, 101, 2)]);
    assert_eq!(b.best_bid(), Some(102));
    let mut out = Vec::new();
    assert_eq!(b.amend(42, 1, 1, &mut out), Err(Reject { reason: Reason::UnknownOrder }));
}

#[test]
fn stops_cascade_in_arrival_order() {
    let mut b = Book::default();
    for (i, p) in [(1, 101), (2, 102), (3, 103)] {
        submit(&mut b, OrderRequest::limit(i, 1, S, p, 1));
    }
    submit(&mut b, OrderRequest::stop(10, 2, B, 102, 0, 1));
    submit(&mut b, OrderRequest::stop(11, 3, B, 101, 0, 1));
    let ev = submit(&mut b, OrderRequest::limit(20, 4, B, 101, 1));
    // Trade at 101 fires stop 11 (>= 101); its fill at 102 fires stop 10.
    let trig: Vec<_> = ev.iter().filter(|e| e.kind == EventKind::Triggered).map(|e| (e.order_id, e.price)).collect();
    assert_eq!(trig, vec![(11, 101), (10, 102)]);
    assert_eq!(fills(&ev), vec![(20, 1, 101, 1), (11, 2, 102, 1), (10, 3, 103, 1)]);
}

#[test]
fn trailing_stop_follows_the_peak() {
    let mut b = Book::default();
    run(&mut b, Command::ObservePrice { price: 100 });
    submit(&mut b, OrderRequest::trailing_stop(1, 1, S, 5, false, 1));
    run(&mut b, Command::ObservePrice { price: 110 });
    assert_eq!(b.pending()[0].trigger, 105);
    assert!(run(&mut b, Command::ObservePrice { price: 106 }).is_empty());
    let ev = run(&mut b, Command::ObservePrice { price: 105 });
    assert_eq!(kinds(&ev), vec![(EventKind::Triggered, 1), (EventKind::Cancelled, 1)]);
    let mut b = Book::default();
    run(&mut b, Command::ObservePrice { price: 1000 });
    submit(&mut b, OrderRequest::trailing_stop(2, 1, B, 100, true, 1)); // 1%
    run(&mut b, Command::ObservePrice { price: 900 });
    assert_eq!(b.pending()[0].trigger, 909);
}

#[test]
fn bracket_children_follow_entry_fills() {
    let mut b = Book::default();
    let mut out = Vec::new();
    b.bracket(&BracketRequest {
        order_id: 1, owner: 1, side: 0, price: 100, qty: 10,
        exits: ExitLegs { tp_id: 2, tp_trigger: 110, tp_price: 0, sl_id: 3, sl_trigger: 90, sl_price: 0 },
        ..Default::default()
    }, &mut out).unwrap();
    assert_eq!(b.pending().iter().map(|p| (p.qty, p.active)).collect::<Vec<_>>(), vec![(0, false), (0, false)]);
    let ev = submit(&mut b, OrderRequest::limit(4, 2, S, 100, 4));
    assert_eq!(kinds(&ev)[2..], [(EventKind::Activated, 2), (EventKind::Activated, 3)]);
    assert_eq!(b.pending().iter().map(|p| (p.qty, p.active)).collect::<Vec<_>>(), vec![(4, true), (4, true)]);
    // The stop-loss fires: take-profit and the resting entry remainder go.
    submit(&mut b, OrderRequest::limit(5, 3, B, 90, 4));
    let ev = run(&mut b, Command::ObservePrice { price: 90 });
    assert_eq!(kinds(&ev)[..3], [(EventKind::Triggered, 3), (EventKind::Cancelled, 2), (EventKind::Cancelled, 1)]);
    assert_eq!(fills(&ev), vec![(3, 5, 90, 4)]);
    assert!(b.pending().is_empty());
}

#[test]
fn unfilled_bracket_entry_takes_its_children_along() {
    let mut b = Book::default();
    let mut out = Vec::new();
    b.bracket(&BracketRequest {
        order_id: 1, owner: 1, side: 1, price: 100, qty: 10,
        exits: ExitLegs { tp_id: 2, tp_trigger: 90, tp_price: 0, sl_id: 3, sl_trigger: 110, sl_price: 0 },
        ..Default::default()
    }, &mut out).unwrap();
    let ev = run(&mut b, Command::Cancel { order_id: 1 });
    assert_eq!(ev.iter().map(|e| (e.order_id, e.reason)).collect::<Vec<_>>(), vec![(1, Reason::User), (2, Reason::Parent), (3, Reason::Parent)]);
}

#[test]
fn oco_one_cancels_the_other() {
    let mut b = Book::default();
    let mut out = Vec::new();
    b.oco(&OcoRequest { owner: 1, side: 1, qty: 2, stp: 0,
        legs: ExitLegs { tp_id: 1, tp_trigger: 110, tp_price: 110, sl_id: 2, sl_trigger: 90, sl_price: 0 } }, &mut out).unwrap();
    let ev = run(&mut b, Command::ObservePrice { price: 111 });
    assert_eq!(kinds(&ev), vec![(EventKind::Triggered, 1), (EventKind::Cancelled, 2)]);
    assert_eq!(b.best_ask(), Some(110)); // the take-profit limit now rests
}

#[test]
fn gtd_orders_expire_with_the_clock() {
    let mut b = Book::default();
    submit(&mut b, OrderRequest::limit(1, 1, B, 99, 1).good_till(50));
    submit(&mut b, OrderRequest::limit(2, 1, B, 98, 1).good_till(40));
    assert!(run(&mut b, Command::AdvanceTime { ts: 39 }).is_empty());
    let ev = run(&mut b, Command::AdvanceTime { ts: 60 });
    assert_eq!(ev.iter().map(|e| (e.order_id, e.reason)).collect::<Vec<_>>(), vec![(2, Reason::Expired), (1, Reason::Expired)]);
    let mut out = Vec::new();
    assert_eq!(b.advance_time(10, &mut out).unwrap_err().reason, Reason::InvalidTime);
    assert_eq!(b.submit(&OrderRequest::limit(3, 1, B, 99, 1).good_till(60), &mut out).unwrap_err().reason, Reason::InvalidExpiry);
}

#[test]
fn mass_cancel_takes_every_order_of_the_owner() {
    let mut b = Book::default();
    submit(&mut b, OrderRequest::limit(1, 1, B, 99, 1));
    submit(&mut b, OrderRequest::limit(2, 2, B, 98, 1));
    submit(&mut b, OrderRequest::stop(3, 1, S, 90, 0, 1));
    submit(&mut b, OrderRequest::limit(4, 1, S, 105, 1));
    let ev = run(&mut b, Command::MassCancel { owner: 1 });
    assert_eq!(ev.iter().map(|e| e.order_id).collect::<Vec<_>>(), vec![1, 3, 4]);
    assert_eq!(b.len(), 1);
}

#[test]
fn bad_input_is_rejected_and_changes_nothing() {
    let mut b = Book::new(5, 10);
    submit(&mut b, OrderRequest::limit(1, 1, B, 100, 10));
    let before = format!("{b:?}");
    let mut out = Vec::new();
    let cases = [
        (OrderRequest { side: 2, ..OrderRequest::limit(2, 1, B, 100, 10) }, Reason::InvalidSide),
        (OrderRequest { order_type: 9, ..OrderRequest::limit(2, 1, B, 100, 10) }, Reason::InvalidOrderType),
        (OrderRequest::market(2, 1, B, 10).with_tif(Tif::Gtc), Reason::InvalidTif),
        (OrderRequest::limit(2, 1, B, 100, -10), Reason::InvalidQuantity),
        (OrderRequest::limit(2, 1, B, 100, 15), Reason::OffLotGrid),
        (OrderRequest::limit(2, 1, B, 0, 10), Reason::InvalidPrice),
        (OrderRequest::limit(2, 1, B, 101, 10), Reason::OffTickGrid),
        (OrderRequest::stop(2, 1, B, 0, 0, 10), Reason::InvalidTrigger),
        (OrderRequest::limit(2, 1, B, 100, 10).iceberg(10), Reason::InvalidDisplay),
        (OrderRequest::market(2, 1, B, 10).post_only(), Reason::InvalidFlags),
        (OrderRequest::limit(1, 1, B, 100, 10), Reason::DuplicateId),
    ];
    for (req, reason) in cases {
        assert_eq!(b.submit(&req, &mut out), Err(Reject { reason }), "{req:?}");
    }
    assert_eq!(b.cancel(77, &mut out).unwrap_err().reason, Reason::UnknownOrder);
    assert!(out.is_empty());
    assert_eq!(before, format!("{b:?}"));
}

#[test]
fn stop_limit_rests_at_its_limit_once_triggered() {
    let mut b = Book::default();
    submit(&mut b, OrderRequest::limit(1, 1, S, 101, 1));
    submit(&mut b, OrderRequest::limit(2, 1, S, 105, 1));
    // Buy stop at 101 with a limit of 102: once 101 trades it buys what it
    // can up to 102 and rests the rest there.
    submit(&mut b, OrderRequest::stop(10, 2, B, 101, 102, 3));
    let ev = submit(&mut b, OrderRequest::limit(20, 3, B, 101, 1));
    let trig: Vec<_> = ev.iter().filter(|e| e.kind == EventKind::Triggered).map(|e| e.order_id).collect();
    assert_eq!(trig, vec![10]);
    assert_eq!(fills(&ev), vec![(20, 1, 101, 1)]);
    assert_eq!(b.best_bid(), Some(102));
    assert_eq!(b.volume_at(B, 102), 3);
    assert!(b.pending().is_empty());
}

#[test]
fn take_profit_sells_into_a_rising_price() {
    let mut b = Book::default();
    submit(&mut b, OrderRequest::limit(1, 1, B, 99, 5));
    submit(&mut b, OrderRequest::take_profit(10, 2, S, 110, 0, 2));
    assert!(run(&mut b, Command::ObservePrice { price: 109 }).is_empty());
    let ev = run(&mut b, Command::ObservePrice { price: 110 });
    assert_eq!(kinds(&ev), vec![(EventKind::Triggered, 10), (EventKind::Fill, 10)]);
    assert_eq!(fills(&ev), vec![(10, 1, 99, 2)]);
    // A take-profit already in the money at placement triggers at once.
    let ev = submit(&mut b, OrderRequest::take_profit(11, 2, S, 95, 0, 1));
    assert_eq!(kinds(&ev), vec![(EventKind::Accepted, 11), (EventKind::Triggered, 11), (EventKind::Fill, 11)]);
}

/// A duplicate id is refused whether it is above, below or between the ids
/// seen (the book skips the id lookup only above every id it ever held),
/// also in a book restored from a snapshot.
#[test]
fn duplicate_ids_are_refused_in_any_id_order_and_after_restore() {
    let mut b = Book::default();
    let mut out = Vec::new();
    for id in [50, 7, 900] {
        submit(&mut b, OrderRequest::limit(id, 1, S, 110, 1));
    }
    submit(&mut b, OrderRequest::stop(300, 2, B, 120, 0, 1).with_tif(Tif::Ioc));
    let mut restored = Book::restore(&b.snapshot()).unwrap();
    for book in [&mut b, &mut restored] {
        for id in [7, 50, 300, 900] {
            let r = book.submit(&OrderRequest::limit(id, 3, B, 100, 1), &mut out);
            assert_eq!(r, Err(Reject { reason: Reason::DuplicateId }), "id {id}");
        }
        assert!(book.submit(&OrderRequest::limit(901, 3, B, 100, 1), &mut out).is_ok());
        assert!(book.submit(&OrderRequest::limit(8, 3, B, 100, 1), &mut out).is_ok());
    }
}
