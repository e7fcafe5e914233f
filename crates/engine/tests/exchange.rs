//! The exchange core: settlement, fees, holds, market rules; and a property
//! test that random multi-account flows conserve every asset and keep holds
//! exactly equal to what open orders reserve.

use lxdex_engine::*;
use proptest::prelude::*;

const B: Side = Side::Buy;
const S: Side = Side::Sell;

fn cfg(base: u32, quote: u32) -> MarketConfig {
    MarketConfig {
        base,
        quote,
        lot_units: 1_000,  // 1 lot = 1000 base units
        tick_units: 10,    // 1 tick x 1 lot = 10 quote units
        min_qty: 1,
        min_notional: 0,
        band_bps: 0,
        maker_bps: -2,
        taker_bps: 10,
    }
}

/// BTC (0), USD (1); market 0 = BTC/USD; accounts 0 and 1 funded.
fn setup() -> Exchange {
    let mut x = Exchange::new();
    let (btc, usd) = (x.add_asset(), x.add_asset());
    x.add_market(cfg(btc, usd)).unwrap();
    for _ in 0..2 {
        let a = x.add_account();
        x.deposit(a, btc, 1_000_000).unwrap();
        x.deposit(a, usd, 10_000_000).unwrap();
    }
    x
}

fn bal(x: &Exchange, a: u32, asset: u32) -> (i64, i64) {
    let b = x.ledger().balance(a, asset).unwrap();
    (b.available, b.held)
}

#[test]
fn fill_settles_base_quote_and_fees() {
    let mut x = setup();
    let mut out = Vec::new();
    // Seller rests 5 lots at 1000 ticks: holds 5000 base units.
    x.place(0, 0, &OrderRequest::limit(0, 0, S, 1_000, 5), &mut out).unwrap();
    assert_eq!(bal(&x, 0, 0), (995_000, 5_000));
    // Buyer takes 3 lots at a limit of 1100: pays the maker's price.
    x.place(1, 0, &OrderRequest::limit(0, 0, B, 1_100, 3), &mut out).unwrap();
    let notional = 1_000 * 3 * 10; // 30_000
    let taker_fee = 30; // ceil(30_000 * 10 / 10_000)
    let rebate = 6; // floor(30_000 * 2 / 10_000)
    assert_eq!(bal(&x, 1, 0), (1_000_000 + 3_000, 0));
    assert_eq!(bal(&x, 1, 1), (10_000_000 - notional - taker_fee, 0));
    assert_eq!(bal(&x, 0, 0), (995_000, 2_000));
    assert_eq!(bal(&x, 0, 1), (10_000_000 + notional + rebate, 0));
    assert_eq!(x.ledger().fees(1).unwrap(), taker_fee - rebate);
    let seller = x.recent_fills(0).unwrap();
    assert_eq!(seller.len(), 1);
    assert_eq!((seller[0].side, seller[0].maker, seller[0].qty, seller[0].fee), (S, true, 3, -rebate));
    let buyer = x.recent_fills(1).unwrap();
    assert_eq!((buyer[0].side, buyer[0].maker, buyer[0].fee), (B, false, taker_fee));
    assert_eq!(x.open_orders(0).unwrap(), vec![1]);
    assert!(x.open_orders(1).unwrap().is_empty());
    x.check_invariants();
}

#[test]
fn resting_buy_releases_price_improvement_and_leftovers() {
    let mut x = setup();
    let mut out = Vec::new();
    let id = x.place(1, 0, &OrderRequest::limit(0, 0, B, 1_000, 4), &mut out).unwrap();
    // per lot: 1000*10 + ceil(10000 * 10 / 10000) = 10_010
    assert_eq!(bal(&x, 1, 1), (10_000_000 - 40_040, 40_040));
    x.amend(1, id, 0, 2, &mut out).unwrap();
    assert_eq!(bal(&x, 1, 1), (10_000_000 - 20_020, 20_020));
    x.cancel(1, id, &mut out).unwrap();
    assert_eq!(bal(&x, 1, 1), (10_000_000, 0));
    x.check_invariants();
}

#[test]
fn market_buy_holds_the_book_walk_and_releases_the_rest() {
    let mut x = setup();
    let mut out = Vec::new();
    x.place(0, 0, &OrderRequest::limit(0, 0, S, 1_000, 2), &mut out).unwrap();
    x.place(0, 0, &OrderRequest::limit(0, 0, S, 1_200, 2), &mut out).unwrap();
    x.place(1, 0, &OrderRequest::market(0, 0, B, 10), &mut out).unwrap();
    let cost = 2 * 1_000 * 10 + 2 * 1_200 * 10;
    let fees = 20 + 24; // per fill: ceil(20_000*10/1e4), ceil(24_000*10/1e4)
    assert_eq!(bal(&x, 1, 1), (10_000_000 - cost - fees, 0));
    assert_eq!(bal(&x, 1, 0), (1_004_000, 0));
    x.check_invariants();
}

#[test]
fn funds_and_market_rules_are_enforced() {
    let mut x = setup();
    let mut out = Vec::new();
    let r = |e: Result<u64, Reject>| e.unwrap_err().reason;
    assert_eq!(r(x.place(1, 0, &OrderRequest::limit(0, 0, B, 1_000_000, 10), &mut out)), Reason::InsufficientFunds);
    assert_eq!(r(x.place(0, 0, &OrderRequest::limit(0, 0, S, 1_000, 1_001), &mut out)), Reason::InsufficientFunds);
    assert_eq!(r(x.place(9, 0, &OrderRequest::limit(0, 0, S, 1_000, 1), &mut out)), Reason::UnknownAccount);
    assert_eq!(r(x.place(0, 4, &OrderRequest::limit(0, 0, S, 1_000, 1), &mut out)), Reason::UnknownMarket);
    assert_eq!(r(x.place(0, 0, &OrderRequest::limit(0, 0, S, 0, 1), &mut out)), Reason::InvalidPrice);
    assert_eq!(r(x.place(1, 0, &OrderRequest::stop(0, 0, B, 1_000, 0, 1), &mut out)), Reason::ProtectionRequired);
    x.set_account_suspended(1, true).unwrap();
    assert_eq!(r(x.place(1, 0, &OrderRequest::limit(0, 0, B, 900, 1), &mut out)), Reason::AccountSuspended);
    x.set_market_status(0, MarketStatus::PostOnly, &mut out).unwrap();
    assert_eq!(r(x.place(0, 0, &OrderRequest::limit(0, 0, S, 1_000, 1), &mut out)), Reason::MarketNotTrading);
    x.place(0, 0, &OrderRequest::limit(0, 0, S, 1_000, 1).post_only(), &mut out).unwrap();
    x.set_market_status(0, MarketStatus::Closed, &mut out).unwrap();
    assert_eq!(bal(&x, 0, 0), (1_000_000, 0), "closing released every hold");
    x.check_invariants();
}

#[test]
fn trades_feed_the_tape_candles_and_ticker() {
    let mut x = setup();
    let mut out = Vec::new();
    x.advance_time(1_700_000_000_000, &mut out).unwrap();
    x.place(0, 0, &OrderRequest::limit(0, 0, S, 1_000, 5), &mut out).unwrap();
    x.place(1, 0, &OrderRequest::limit(0, 0, B, 1_000, 2), &mut out).unwrap();
    x.advance_time(1_700_000_070_000, &mut out).unwrap();
    x.place(1, 0, &OrderRequest::market(0, 0, B, 1), &mut out).unwrap();
    let md = x.market_data(0).unwrap();
    let tape: Vec<_> = md.trades(10).map(|t| (t.id, t.price, t.qty)).collect();
    assert_eq!(tape, vec![(1, 1_000, 2), (2, 1_000, 1)]);
    let iv = marketdata::Interval::parse("1m").unwrap();
    let candles = md.candles(iv, 0, 10);
    assert_eq!(candles.len(), 2);
    assert_eq!((candles[0].volume, candles[1].volume), (2, 1));
    let t = md.ticker(x.now()).unwrap();
    assert_eq!((t.open, t.last, t.volume, t.trades), (1_000, 1_000, 3, 2));
    let depth: Vec<_> = out.iter().filter(|e| e.kind == EventKind::Depth).map(|e| (e.order_id, e.price, e.qty)).collect();
    assert_eq!(depth, vec![(1, 1_000, 5), (2, 1_000, 3), (3, 1_000, 2)]);
}

#[test]
fn volume_tiers_lower_fees_within_the_30_day_window() {
    let mut x = setup();
    let mut out = Vec::new();
    let tier = FeeTier { min_volume: 50_000, maker_bps: -3, taker_bps: 4 };
    x.set_fee_tiers(0, &[tier]).unwrap();
    // Tiers are discounts: a taker rate above the base is refused.
    assert_eq!(x.set_fee_tiers(0, &[FeeTier { taker_bps: 11, ..tier }]).unwrap_err().reason, Reason::InvalidMarketConfig);
    assert_eq!(x.set_fee_tiers(0, &[FeeTier { maker_bps: -5, ..tier }]).unwrap_err().reason, Reason::InvalidMarketConfig);
    let day = marketdata::DAY;
    x.advance_time(day, &mut out).unwrap();
    let trade = |x: &mut Exchange, out: &mut Vec<Event>| {
        x.place(0, 0, &OrderRequest::limit(0, 0, S, 1_000, 3), out).unwrap();
        let before = x.ledger().balance(1, 1).unwrap().available;
        x.place(1, 0, &OrderRequest::limit(0, 0, B, 1_000, 3), out).unwrap();
        before - x.ledger().balance(1, 1).unwrap().available - 30_000 // the taker's fee
    };
    assert_eq!(trade(&mut x, &mut out), 30); // 10 bps on 30_000; volume now 30_000
    assert_eq!(trade(&mut x, &mut out), 30); // still below 50_000 before this fill
    assert_eq!(x.volume_30d(1, 1), 60_000);
    assert_eq!(trade(&mut x, &mut out), 12); // tier: 4 bps
    x.advance_time(day + 29 * day, &mut out).unwrap();
    assert_eq!(x.volume_30d(1, 1), 90_000, "day 1 is still inside the window on day 30");
    x.advance_time(day + 30 * day, &mut out).unwrap();
    assert_eq!(x.volume_30d(1, 1), 0, "day 1's volume left the window on day 31");
    assert_eq!(trade(&mut x, &mut out), 30);
    x.check_invariants();
    let y = Exchange::restore(&x.snapshot()).unwrap();
    assert_eq!(y.volume_30d(1, 1), 30_000);
}

#[test]
fn price_band_and_minimums() {
    let mut x = Exchange::new();
    let (a, b) = (x.add_asset(), x.add_asset());
    x.add_market(MarketConfig { min_qty: 2, min_notional: 50_000, band_bps: 1_000, ..cfg(a, b) }).unwrap();
    let (s, t) = (x.add_account(), x.add_account());
    x.deposit(s, a, 1_000_000).unwrap();
    x.deposit(t, b, 100_000_000).unwrap();
    let mut out = Vec::new();
    let r = |e: Result<u64, Reject>| e.unwrap_err().reason;
    assert_eq!(r(x.place(s, 0, &OrderRequest::limit(0, 0, S, 1_000, 1), &mut out)), Reason::BelowMinQuantity);
    assert_eq!(r(x.place(s, 0, &OrderRequest::limit(0, 0, S, 1_000, 2), &mut out)), Reason::BelowMinNotional);
    x.place(s, 0, &OrderRequest::limit(0, 0, S, 3_000, 2), &mut out).unwrap();
    x.place(t, 0, &OrderRequest::limit(0, 0, B, 3_000, 2), &mut out).unwrap();
    // Last price 3000: band ±10%.
    assert_eq!(r(x.place(t, 0, &OrderRequest::limit(0, 0, B, 2_600, 2), &mut out)), Reason::PriceOutOfBand);
    x.place(t, 0, &OrderRequest::limit(0, 0, B, 2_700, 2), &mut out).unwrap();
    x.check_invariants();
}

#[derive(Clone, Debug)]
enum Op {
    Deposit(u32, u32, i64),
    Withdraw(u32, u32, i64),
    Place(u32, u32, OrderRequest),
    Cancel(u32, u64),
    Amend(u32, u64, i64, i64),
    CancelAll(u32),
    Observe(u32, i64),
    Time(u64),
    Status(u32, u8),
    Oco(u32, u32, OcoRequest),
    Bracket(u32, u32, BracketRequest),
}

/// Exit legs with triggers `lo < hi` placed for exits on `side` (a sell
/// exit: stop-loss below, take-profit above) and limit prices (0: market).
fn legs(side: Side, lo: i64, hi: i64, tp_price: i64, sl_price: i64) -> ExitLegs {
    let (tp_trigger, sl_trigger) = if side == S { (hi, lo) } else { (lo, hi) };
    ExitLegs { tp_id: 0, tp_trigger, tp_price, sl_id: 0, sl_trigger, sl_price }
}

fn op() -> impl Strategy<Value = Op> {
    let acct = 0u32..4;
    let market = 0u32..2;
    let side = 0u8..2;
    prop_oneof![
        1 => (acct.clone(), 0u32..3, 1i64..200_000).prop_map(|(a, s, n)| Op::Deposit(a, s, n)),
        1 => (acct.clone(), 0u32..3, 1i64..200_000).prop_map(|(a, s, n)| Op::Withdraw(a, s, n)),
        8 => (acct.clone(), market.clone(), side, 95i64..106, 1i64..6, 0u8..4, 0u8..5, 0u8..10)
            .prop_map(|(a, m, side, price, qty, tif, stp, kind)| {
                let side = if side == 0 { B } else { S };
                let r = match kind {
                    0 => OrderRequest::market(0, 0, side, qty),
                    1 => OrderRequest::stop(0, 0, side, price, if side == B { 110 } else { 0 }, qty),
                    2 => OrderRequest { price: 108, ..OrderRequest::stop(0, 0, side, price, 0, qty) },
                    3 => OrderRequest::limit(0, 0, side, price, qty).iceberg(1.min(qty - 1)),
                    4 => OrderRequest::limit(0, 0, side, price, qty).post_only(),
                    // Sized by a quote amount: the ledger's whole range, an unaffordable one.
                    8 => OrderRequest::market_quote(0, 0, side, price * qty * 97),
                    9 => OrderRequest { price: if side == B { 104 } else { 97 }, ..OrderRequest::market_quote(0, 0, side, 60_000 + price) },
                    _ => OrderRequest { tif: tif % 3, ..OrderRequest::limit(0, 0, side, price, qty) },
                };
                Op::Place(a, m, r.with_stp(Stp::from_u8(stp).unwrap()))
            }),
        3 => (acct.clone(), 1u64..60).prop_map(|(a, id)| Op::Cancel(a, id)),
        2 => (acct.clone(), 1u64..60, prop_oneof![Just(0i64), 95i64..106], 0i64..6).prop_map(|(a, id, p, q)| Op::Amend(a, id, p, q)),
        1 => acct.clone().prop_map(Op::CancelAll),
        1 => (market.clone(), 95i64..106).prop_map(|(m, p)| Op::Observe(m, p)),
        1 => (0u64..100).prop_map(Op::Time),
        1 => (market.clone(), 0u8..4).prop_map(|(m, s)| Op::Status(m, s)),
        3 => (acct.clone(), market.clone(), 0u8..2, 1i64..6, 94i64..100, 1i64..10, prop_oneof![Just(0i64), 90i64..112],
              prop_oneof![Just(0i64), 90i64..112], 0u8..5)
            .prop_map(|(a, m, side, qty, lo, gap, tp_price, sl_price, stp)| {
                let side = if side == 0 { B } else { S };
                let r = OcoRequest { owner: 0, side: side as u8, qty, stp, legs: legs(side, lo, lo + gap, tp_price, sl_price) };
                Op::Oco(a, m, r)
            }),
        3 => (acct, market, 0u8..2, prop_oneof![Just(0i64), 97i64..104], 1i64..6, 1i64..5, 1i64..5, 0u8..4,
              prop_oneof![Just(0i64), 90i64..112], prop_oneof![Just(0i64), 90i64..112], 0u8..5)
            .prop_map(|(a, m, side, price, qty, dlo, dhi, tif, tp_price, sl_price, stp)| {
                let side = if side == 0 { B } else { S };
                let mid = if price == 0 { 100 } else { price };
                let tif = if price == 0 { 1 + tif % 2 } else { tif % 3 };
                let r = BracketRequest {
                    order_id: 0, owner: 0, side: side as u8, price, qty, tif, stp, flags: 0, expire_ts: 0,
                    exits: legs(side.opposite(), mid - dlo, mid + dhi, tp_price, sl_price),
                };
                Op::Bracket(a, m, r)
            }),
    ]
}

fn random_exchange() -> Exchange {
    let mut x = Exchange::new();
    for _ in 0..3 {
        x.add_asset();
    }
    x.add_market(cfg(0, 1)).unwrap();
    x.add_market(MarketConfig { maker_bps: 5, taker_bps: 20, ..cfg(2, 1) }).unwrap();
    x.set_fee_tiers(1, &[FeeTier { min_volume: 5_000, maker_bps: 0, taker_bps: 10 }, FeeTier { min_volume: 20_000, maker_bps: -5, taker_bps: 5 }]).unwrap();
    for a in 0..3 {
        x.add_account();
        for s in 0..3 {
            x.deposit(a, s, 50_000).unwrap();
        }
    }
    x
}

fn apply(x: &mut Exchange, op: &Op, out: &mut Vec<Event>) -> Result<(), Reject> {
    match *op {
        Op::Deposit(a, s, n) => x.deposit(a, s, n),
        Op::Withdraw(a, s, n) => x.withdraw(a, s, n),
        Op::Place(a, m, r) => x.place(a, m, &r, out).map(|_| ()),
        Op::Cancel(a, id) => x.cancel(a, id, out),
        Op::Amend(a, id, p, q) => x.amend(a, id, p, q, out),
        Op::CancelAll(a) => x.cancel_all(a, None, out),
        Op::Observe(m, p) => x.observe_price(m, p, out),
        Op::Time(t) => x.advance_time(x.now() + t * 7_000, out),
        Op::Status(m, s) => x.set_market_status(m, MarketStatus::from_u8(s).unwrap(), out),
        Op::Oco(a, m, r) => x.place_oco(a, m, &r, out).map(|_| ()),
        Op::Bracket(a, m, r) => x.place_bracket(a, m, &r, out).map(|_| ()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    /// restore(snapshot(x)) is x: the same bytes and the same future.
    #[test]
    fn exchange_snapshot_restore_replay(ops in prop::collection::vec(op(), 2..120), cut in 0usize..120) {
        let cut = cut % ops.len();
        let mut x = random_exchange();
        let mut out = Vec::new();
        for op in &ops[..cut] {
            let _ = apply(&mut x, op, &mut out);
        }
        let snap = x.snapshot();
        let mut y = Exchange::restore(&snap).expect("own snapshot restores");
        prop_assert_eq!(&y.snapshot(), &snap);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for op in &ops[cut..] {
            prop_assert_eq!(apply(&mut x, op, &mut a), apply(&mut y, op, &mut b));
        }
        prop_assert_eq!(a, b);
        prop_assert_eq!(x.snapshot(), y.snapshot());
        y.check_invariants();
        // Truncated or flipped bytes are errors, never panics.
        prop_assert!(Exchange::restore(&snap[..snap.len() / 2]).is_err());
        let mut bad = snap.clone();
        let i = cut * 7919 % bad.len();
        bad[i] ^= 0x5a;
        if let Ok(z) = Exchange::restore(&bad) {
            z.check_invariants();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_flows_conserve_and_hold_exactly(ops in prop::collection::vec(op(), 1..150)) {
        let mut x = random_exchange();
        let mut out = Vec::new();
        // Depth rebuilt from DEPTH events alone, per market; and last ids.
        let mut local: [std::collections::BTreeMap<(u8, i64), i64>; 2] = Default::default();
        let mut last_id = [0u64; 2];
        for op in ops {
            out.clear();
            let before = format!("{x:?}");
            let result = apply(&mut x, &op, &mut out);
            if result.is_err() {
                prop_assert!(out.is_empty());
                prop_assert_eq!(&before, &format!("{x:?}"), "a rejected command changes nothing");
            }
            x.check_invariants();
            for e in out.iter().filter(|e| e.kind == EventKind::Depth) {
                let m = e.market as usize;
                prop_assert_eq!(e.order_id, last_id[m] + 1, "depth ids are consecutive");
                last_id[m] = e.order_id;
                if e.qty == 0 {
                    local[m].remove(&(e.side as u8, e.price));
                } else {
                    local[m].insert((e.side as u8, e.price), e.qty);
                }
            }
            for m in 0..2u32 {
                let (id, bids, asks) = x.depth_snapshot(m, usize::MAX).unwrap();
                prop_assert_eq!(id, last_id[m as usize]);
                let book: std::collections::BTreeMap<(u8, i64), i64> = bids.iter().map(|l| ((0u8, l.price), l.visible))
                    .chain(asks.iter().map(|l| ((1u8, l.price), l.visible))).collect();
                prop_assert_eq!(&book, &local[m as usize], "depth rebuilt from diffs equals the book");
            }
            for a in 0..3u32 {
                for asset in 0..3u32 {
                    let b = x.ledger().balance(a, asset).unwrap();
                    prop_assert!(b.held >= 0 && b.available >= 0, "holds never exceed the balance");
                }
            }
        }
        // Once every order (every leg of every group) is closed, nothing is held.
        for a in 0..3u32 {
            x.cancel_all(a, None, &mut out).unwrap();
        }
        x.check_invariants();
        for a in 0..3u32 {
            prop_assert!(x.open_orders(a).unwrap().is_empty());
            for asset in 0..3u32 {
                prop_assert_eq!(x.ledger().balance(a, asset).unwrap().held, 0);
            }
        }
    }
}

fn oco(side: Side, qty: i64, lo: i64, hi: i64, tp_price: i64, sl_price: i64) -> OcoRequest {
    OcoRequest { owner: 0, side: side as u8, qty, stp: 0, legs: legs(side, lo, hi, tp_price, sl_price) }
}

#[test]
fn oco_sell_holds_the_base_once_and_the_triggered_leg_keeps_it() {
    let mut x = setup();
    let mut out = Vec::new();
    // Sell 4 lots: take profit at 110 (limit 110), stop at 90 (market).
    let tp = x.place_oco(0, 0, &oco(S, 4, 90, 110, 110, 0), &mut out).unwrap();
    let sl = tp + 1;
    assert_eq!(bal(&x, 0, 0), (1_000_000 - 4_000, 4_000), "one hold for the pair, not two");
    assert_eq!(x.order_hold(tp).unwrap().3 + x.order_hold(sl).unwrap().3, 4_000);
    assert_eq!(x.order_link(sl), Some((tp, 0, tp, sl)));
    // A trade at 110 fires the take-profit: it rests as a limit sell of 4
    // lots holding its own 4,000 base; the stop is cancelled (OCO).
    x.place(1, 0, &OrderRequest::limit(0, 0, S, 110, 1), &mut out).unwrap();
    out.clear();
    x.place(1, 0, &OrderRequest::limit(0, 0, B, 110, 1), &mut out).unwrap();
    assert!(out.iter().any(|e| e.kind == EventKind::Triggered && e.order_id == tp));
    assert!(out.iter().any(|e| e.kind == EventKind::Cancelled && e.order_id == sl && e.reason == Reason::Oco));
    assert_eq!(x.order_link(tp), None);
    assert_eq!(x.order_hold(tp).unwrap().3, 4_000);
    assert_eq!(bal(&x, 0, 0), (1_000_000 - 4_000, 4_000));
    x.check_invariants();
    x.cancel(0, tp, &mut out).unwrap();
    assert_eq!(bal(&x, 0, 0), (1_000_000, 0));
    x.check_invariants();
}

#[test]
fn oco_buy_holds_the_larger_leg_and_cancel_releases_all() {
    let mut x = setup();
    let mut out = Vec::new();
    // Buy 2 lots: take profit (buy the dip) at 90 limit 90; stop at 110 limit 120.
    let tp = x.place_oco(0, 0, &oco(B, 2, 90, 110, 90, 120), &mut out).unwrap();
    // Per lot at 120: 1200 + ceil(1200 * 10 / 10000) = 1202; x2 lots.
    assert_eq!(bal(&x, 0, 1), (10_000_000 - 2_404, 2_404));
    assert_eq!(x.order_hold(tp + 1).unwrap().3, 2_404, "the stop leg (larger) carries the pool");
    // A market-type buy leg has no price to hold at.
    assert_eq!(x.place_oco(0, 0, &oco(B, 2, 90, 110, 0, 120), &mut out), Err(Reason::ProtectionRequired.into()));
    // Cancelling one leg cancels both and releases everything.
    out.clear();
    x.cancel(0, tp, &mut out).unwrap();
    assert_eq!(out.iter().filter(|e| e.kind == EventKind::Cancelled).count(), 2);
    assert_eq!(bal(&x, 0, 1), (10_000_000, 0));
    x.check_invariants();
    // Bad legs are refused naming the bracket rule, and change nothing.
    let before = format!("{x:?}");
    assert_eq!(x.place_oco(0, 0, &oco(S, 2, 110, 90, 0, 0), &mut out), Err(Reason::InvalidBracket.into()));
    assert_eq!(x.place_oco(0, 0, &oco(S, 0, 90, 110, 0, 0), &mut out), Err(Reason::InvalidQuantity.into()));
    assert_eq!(x.place_oco(0, 0, &oco(S, 2_000, 90, 110, 0, 0), &mut out), Err(Reason::InsufficientFunds.into()));
    assert_eq!(before, format!("{x:?}"));
}

#[test]
fn bracket_buy_entry_exits_hold_the_base_its_fills_bring() {
    let mut x = setup();
    let mut out = Vec::new();
    let r = BracketRequest {
        order_id: 0, owner: 0, side: B as u8, price: 100, qty: 3, tif: 0, stp: 0, flags: 0, expire_ts: 0,
        exits: legs(S, 95, 105, 105, 0),
    };
    let entry = x.place_bracket(0, 0, &r, &mut out).unwrap();
    let (tp, sl) = (entry + 1, entry + 2);
    // The entry holds as a limit buy of 3 at 100 (1001 per lot); the exits nothing yet.
    assert_eq!(bal(&x, 0, 1), (10_000_000 - 3_003, 3_003));
    assert_eq!(bal(&x, 0, 0), (1_000_000, 0));
    // 2 lots fill: the exits hold the 2,000 base that came in.
    x.place(1, 0, &OrderRequest::limit(0, 0, S, 100, 2), &mut out).unwrap();
    assert_eq!(bal(&x, 0, 0), (1_000_000, 2_000));
    x.check_invariants();
    // The stop fires at 95: it sells its 2 lots (market), the entry's last lot is cancelled (OCO).
    x.place(1, 0, &OrderRequest::limit(0, 0, B, 95, 5), &mut out).unwrap();
    out.clear();
    x.observe_price(0, 95, &mut out).unwrap();
    assert!(out.iter().any(|e| e.kind == EventKind::Triggered && e.order_id == sl));
    assert!(out.iter().any(|e| e.kind == EventKind::Cancelled && e.order_id == tp && e.reason == Reason::Oco));
    assert!(out.iter().any(|e| e.kind == EventKind::Cancelled && e.order_id == entry && e.reason == Reason::Oco));
    assert_eq!(bal(&x, 0, 0).1, 0);
    assert_eq!(bal(&x, 0, 1).1, 0);
    assert!(x.open_orders(0).unwrap().is_empty());
    x.check_invariants();
}

#[test]
fn bracket_sell_entry_reserves_the_buy_back_shortfall_up_front() {
    let mut x = setup();
    let mut out = Vec::new();
    // Sell 2 at 100; buy back at take-profit 95 (limit 95) or stop 105 (limit 110).
    let r = BracketRequest {
        order_id: 0, owner: 0, side: S as u8, price: 100, qty: 2, tif: 0, stp: 0, flags: 0, expire_ts: 0,
        exits: legs(B, 95, 105, 95, 110),
    };
    let entry = x.place_bracket(0, 0, &r, &mut out).unwrap();
    // Exits per lot: 1100 + 2 = 1102 at 110. A lot sold at >= 100 brings at
    // least 1000 - 1 = 999. Shortfall 103 per lot, held now.
    assert_eq!(bal(&x, 0, 0), (1_000_000 - 2_000, 2_000));
    assert_eq!(bal(&x, 0, 1), (10_000_000 - 206, 206));
    x.check_invariants();
    // One lot fills (maker at 100: notional 1000, rebate 0): the exits now
    // hold 1102 for it + 103 for the unfilled lot.
    x.place(1, 0, &OrderRequest::limit(0, 0, B, 100, 1), &mut out).unwrap();
    assert_eq!(bal(&x, 0, 1).1, 1_102 + 103);
    x.check_invariants();
    // Cancelling the entry frees the unfilled lot's shortfall; the exits stay.
    x.cancel(0, entry, &mut out).unwrap();
    assert_eq!(bal(&x, 0, 1).1, 1_102);
    assert_eq!(bal(&x, 0, 0).1, 0);
    assert_eq!(x.order_link(entry + 1), Some((entry, 0, entry + 1, entry + 2)));
    x.check_invariants();
    // Snapshot and restore keep the group.
    let y = Exchange::restore(&x.snapshot()).unwrap();
    assert_eq!(y.snapshot(), x.snapshot());
    assert_eq!(y.order_link(entry + 2), x.order_link(entry + 2));
    // Cancelling an exit cancels both and frees everything.
    x.cancel(0, entry + 2, &mut out).unwrap();
    assert_eq!(bal(&x, 0, 1).1, 0);
    x.check_invariants();
}

#[test]
fn bracket_entry_is_not_amendable_and_records_place_linked_orders() {
    let mut x = setup();
    let mut out = Vec::new();
    let r = BracketRequest {
        order_id: 0, owner: 0, side: B as u8, price: 100, qty: 3, tif: 0, stp: 0, flags: 0, expire_ts: 0,
        exits: legs(S, 95, 105, 0, 0),
    };
    let entry = x.place_bracket(0, 0, &r, &mut out).unwrap();
    assert_eq!(x.amend(0, entry, 99, 0, &mut out), Err(Reason::NotAmendable.into()));
    // The batch records BRACKET and OCO are applied too.
    let rec = record::CommandRecord {
        kind: record::kind::OCO, side: S as u8, owner: 1, qty: 2, tp_trigger: 110, tp_price: 110, sl_trigger: 90,
        ..Default::default()
    };
    out.clear();
    x.apply_record(&rec, 0, &mut out);
    assert!(out.iter().all(|e| e.kind != EventKind::Rejected), "{out:?}");
    assert_eq!(bal(&x, 1, 0).1, 2_000);
    x.check_invariants();
}

/// Account 0 takes with quote-sized market orders against a book that
/// accounts 1 and 2 built; the market has fee tiers so that the taker's rate
/// can change within one order.
fn quote_exchange(levels: &[(u8, i64, i64, u32)], taker_bps: i64) -> Exchange {
    let mut x = Exchange::new();
    for _ in 0..2 {
        x.add_asset();
    }
    x.add_market(MarketConfig { maker_bps: -taker_bps.min(1), taker_bps, ..cfg(0, 1) }).unwrap();
    if taker_bps >= 4 {
        let tiers = [FeeTier { min_volume: 2_000, maker_bps: -1, taker_bps: taker_bps / 2 }, FeeTier { min_volume: 6_000, maker_bps: -1, taker_bps: taker_bps / 4 }];
        x.set_fee_tiers(0, &tiers).unwrap();
    }
    for _ in 0..3 {
        let a = x.add_account();
        x.deposit(a, 0, 100_000).unwrap();
        x.deposit(a, 1, 10_000_000).unwrap();
    }
    let mut out = Vec::new();
    for &(side, price, qty, owner) in levels {
        let side = if side == 0 { B } else { S };
        let _ = x.place(owner, 0, &OrderRequest::limit(0, 0, side, price, qty), &mut out);
    }
    x
}

#[test]
fn quote_sized_buy_spends_at_most_the_amount_fee_included() {
    // Asks: 2 lots at 100 (1000 quote each + 1 fee), 3 at 101 (1010 + 2 fee at 10 bps... ceil(1.01) = 2).
    let mut x = quote_exchange(&[(1, 100, 2, 1), (1, 101, 3, 2)], 10);
    let mut out = Vec::new();
    let before = bal(&x, 0, 1);
    // 4100 buys 2 x 1001 = 2002, then 2 x 1012 = 2024: 4026 <= 4100, a fifth lot would cost 5038.
    let id = x.place(0, 0, &OrderRequest::market_quote(0, 0, B, 4_100), &mut out).unwrap();
    let acc = out.iter().find(|e| e.kind == EventKind::Accepted).unwrap();
    assert_eq!((acc.order_id, acc.qty), (id, 4));
    let filled: i64 = out.iter().filter(|e| e.kind == EventKind::Fill).map(|e| e.qty).sum();
    assert_eq!(filled, 4);
    let after = bal(&x, 0, 1);
    assert_eq!(after.1, 0, "the hold is released once the order ends");
    let spent = before.0 - after.0;
    // Real fees are per fill: 2000 notional at 10 bps -> 2; that volume
    // reaches the first tier (5 bps), so 2020 -> 2.
    assert_eq!(spent, 2_000 + 2 + 2_020 + 2);
    assert!(spent <= 4_100);
    assert_eq!(bal(&x, 0, 0).0, 100_000 + 4_000);
    x.check_invariants();
    // The whole amount is held while it walks: more than available is refused, nothing changes.
    let snap = x.snapshot();
    let r = x.place(0, 0, &OrderRequest::market_quote(0, 0, B, after.0 + 1), &mut out);
    assert_eq!(r, Err(Reason::InsufficientFunds.into()));
    assert_eq!(x.snapshot(), snap);
}

#[test]
fn quote_sized_sell_sells_whole_lots_up_to_the_amount() {
    // Bids: 2 lots at 100 (1000 each), 5 at 99 (990 each).
    let mut x = quote_exchange(&[(0, 100, 2, 1), (0, 99, 5, 2)], 10);
    let mut out = Vec::new();
    let (base0, quote0) = (bal(&x, 0, 0), bal(&x, 0, 1));
    // 3500: 2000 + 990 = 2990, a fourth lot would be 3980.
    x.place(0, 0, &OrderRequest::market_quote(0, 0, S, 3_500), &mut out).unwrap();
    assert_eq!(out.iter().find(|e| e.kind == EventKind::Accepted).unwrap().qty, 3);
    assert_eq!(bal(&x, 0, 0), (base0.0 - 3_000, 0));
    assert_eq!(bal(&x, 0, 1).0, quote0.0 + 2_000 - 2 + 990 - 1);
    x.check_invariants();
}

#[test]
fn quote_sized_orders_reject_what_they_cannot_size() {
    let mut x = quote_exchange(&[(1, 100, 2, 1)], 10);
    let mut out = Vec::new();
    let snap = x.snapshot();
    let cases = [
        // Not one lot's worth (a lot costs 1001), an empty side, a zero amount, a limit type, a bad tif.
        (OrderRequest::market_quote(0, 0, B, 1_000), Reason::BelowMinQuantity),
        (OrderRequest::market_quote(0, 0, S, 10_000), Reason::BelowMinQuantity),
        (OrderRequest::market_quote(0, 0, B, 0), Reason::InvalidAmount),
        (OrderRequest { order_type: OrderType::Limit as u8, price: 100, ..OrderRequest::market_quote(0, 0, B, 5_000) }, Reason::InvalidFlags),
        (OrderRequest::market_quote(0, 0, B, 5_000).with_tif(Tif::Gtc), Reason::InvalidTif),
        // A protection price below the best ask leaves nothing to buy.
        (OrderRequest { price: 99, ..OrderRequest::market_quote(0, 0, B, 5_000) }, Reason::BelowMinQuantity),
    ];
    for (r, want) in cases {
        assert_eq!(x.place(0, 0, &r, &mut out), Err(want.into()), "{r:?}");
        assert!(out.is_empty());
        assert_eq!(x.snapshot(), snap);
    }
    // The book alone does not know the flag.
    let mut book = Book::new(1, 1);
    assert_eq!(book.submit(&OrderRequest::market_quote(1, 1, B, 5), &mut out), Err(Reason::InvalidFlags.into()));
    // Through a batch record: the flag and the amount in `qty`.
    let rec = record::CommandRecord {
        kind: record::kind::SUBMIT, side: B as u8, order_type: OrderType::Market as u8, tif: Tif::Ioc as u8,
        flags: FLAG_QUOTE_QTY, qty: 2_002, ..Default::default()
    };
    x.apply_record(&rec, 0, &mut out);
    let acc = out.iter().find(|e| e.kind == EventKind::Accepted).expect("accepted");
    assert_eq!(acc.qty, 2);
    x.check_invariants();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// A quote-sized order never pays (buy: notional and fees) or sells for
    /// (sell: notional) more than its amount, takes the most whole lots that
    /// fit when nothing stops it early, and holds nothing once it ended.
    #[test]
    fn quote_sized_orders_stay_within_the_amount(
        levels in prop::collection::vec((0u8..2, 95i64..106, 1i64..8, 0u32..3), 0..14),
        side in 0u8..2, amount in 1i64..40_000, taker in prop_oneof![Just(0i64), Just(10), Just(37), Just(250)],
        stp in 0u8..5, protect in prop_oneof![Just(0i64), 95i64..106],
    ) {
        let mut x = quote_exchange(&levels, taker);
        let side = if side == 0 { B } else { S };
        let (b0, q0) = (bal(&x, 0, 0), bal(&x, 0, 1));
        let fees0 = x.ledger().fees(1).unwrap();
        let book_before = x.book(0).unwrap().l3();
        let mut out = Vec::new();
        let r = OrderRequest { price: protect, ..OrderRequest::market_quote(0, 0, side, amount).with_stp(Stp::from_u8(stp).unwrap()) };
        let snap = x.snapshot();
        let own = book_before.iter().any(|o| o.owner == 0);
        // The taker rate the walk costs at: the account's tier now (the setup's crossing orders may have
        // given account 0 volume already; quote_exchange's tiers only lower the rate as volume grows).
        let v0 = x.volume_30d(0, 1);
        let rate = if taker < 4 { taker } else if v0 >= 6_000 { taker / 4 } else if v0 >= 2_000 { taker / 2 } else { taker };
        match x.place(0, 0, &r, &mut out) {
            Err(_) => prop_assert_eq!(x.snapshot(), snap),
            Ok(id) => {
                x.check_invariants();
                prop_assert!(x.order_hold(id).is_none(), "the order ended and holds nothing");
                let (b1, q1) = (bal(&x, 0, 0), bal(&x, 0, 1));
                // Totals (available + held): a self-trade moves the account's own resting orders too.
                let (b0, q0, b1, q1) = ((b0.0 + b0.1, 0), (q0.0 + q0.1, 0), (b1.0 + b1.1, 0), (q1.0 + q1.1, 0));
                let fills: Vec<&Event> = out.iter().filter(|e| e.kind == EventKind::Fill).collect();
                let notional: i64 = fills.iter().map(|e| e.price * e.qty * 10).sum();
                let lots: i64 = fills.iter().map(|e| e.qty).sum();
                let accepted = out.iter().find(|e| e.kind == EventKind::Accepted).unwrap().qty;
                prop_assert!(lots <= accepted);
                if side == B {
                    let spent = q0.0 - q1.0;
                    prop_assert!(spent <= amount, "spent {} of {}", spent, amount);
                    if !own {
                        prop_assert!(spent >= notional);
                        prop_assert_eq!(b1.0 - b0.0, lots * 1_000);
                    }
                } else {
                    prop_assert!(notional <= amount, "sold for {} of {}", notional, amount);
                    prop_assert!(q1.0 - q0.0 <= notional);
                    if !own {
                        prop_assert_eq!(b0.0 - b1.0, lots * 1_000);
                    }
                }
                prop_assert!(x.ledger().fees(1).unwrap() >= fees0);
                // Without own orders in the way, one more lot would not have fit.
                let more = book_before.iter().filter(|o| o.side != side && (protect == 0 || if side == B { o.price <= protect } else { o.price >= protect }))
                    .map(|o| o.visible + o.hidden).sum::<i64>() > lots;
                if !own && more {
                    // Fills are per maker order (plain orders: one fill each), fees rounded up per fill.
                    let cost = |p: i64, n: i64| {
                        let v = p as i128 * 10 * n as i128;
                        if side == B { v + (v * rate as i128 + 9_999) / 10_000 } else { v }
                    };
                    let mut makers: Vec<(i64, i64)> = book_before.iter()
                        .filter(|o| o.side != side && (protect == 0 || if side == B { o.price <= protect } else { o.price >= protect }))
                        .map(|o| (o.price, o.visible + o.hidden)).collect();
                    makers.sort_by_key(|&(p, _)| if side == B { p } else { -p });
                    let (mut left, mut bound) = (lots, 0i128);
                    for &(p, q) in &makers {
                        if left < q {
                            prop_assert!(bound + cost(p, left) <= amount as i128);
                            prop_assert!(bound + cost(p, left + 1) > amount as i128, "lot {} would still fit", lots + 1);
                            break;
                        }
                        bound += cost(p, q);
                        left -= q;
                    }
                }
            }
        }
    }
}

#[test]
fn the_tape_marks_trades_of_the_same_taker() {
    let mut x = setup();
    let mut out = Vec::new();
    for (price, qty) in [(100, 1), (100, 2), (101, 1)] {
        x.place(0, 0, &OrderRequest::limit(0, 0, S, price, qty), &mut out).unwrap();
    }
    // One taker sweeps three makers at two prices; the next taker starts a new run.
    x.place(1, 0, &OrderRequest::limit(0, 0, B, 101, 4), &mut out).unwrap();
    x.place(0, 0, &OrderRequest::limit(0, 0, S, 101, 1), &mut out).unwrap();
    x.place(1, 0, &OrderRequest::limit(0, 0, B, 101, 1), &mut out).unwrap();
    let tape: Vec<(i64, bool)> = x.market_data(0).unwrap().trades(10).map(|t| (t.price, t.same_taker)).collect();
    assert_eq!(tape, [(100, false), (100, true), (101, true), (101, false)]);
    let y = Exchange::restore(&x.snapshot()).unwrap();
    assert_eq!(y.market_data(0).unwrap().trades(10).map(|t| t.same_taker).collect::<Vec<_>>(), [false, true, true, false]);
}
