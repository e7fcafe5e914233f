//! The delta-encoded fill history: any fill records round-trip (the
//! encoding is exact for every field value), and an account keeps exactly
//! its last 100 fills, as the FILL events report them.

use std::collections::VecDeque;

use lxdex_engine::compact::DeltaLog;
use lxdex_engine::exchange::{FillRecord, HISTORY_KEPT};
use lxdex_engine::*;
use proptest::prelude::*;

fn fill() -> impl Strategy<Value = FillRecord> {
    let small = (0u64..5, 0u64..3, 0u32..3, any::<bool>(), any::<bool>(), 99i64..102, 1i64..5, -2i64..3);
    let any_ = (any::<u64>(), any::<u64>(), any::<u32>(), any::<bool>(), any::<bool>(), any::<i64>(), any::<i64>(), any::<i64>());
    prop_oneof![small, any_].prop_map(|(ts, order_id, market, sell, maker, price, qty, fee)| FillRecord {
        ts,
        order_id,
        market,
        side: if sell { Side::Sell } else { Side::Buy },
        maker,
        price,
        qty,
        fee,
    })
}

proptest! {
    #[test]
    fn fill_records_round_trip(fills in prop::collection::vec(fill(), 0..300)) {
        let mut log = DeltaLog::new(HISTORY_KEPT);
        let mut model = VecDeque::new();
        for f in fills {
            log.push(f);
            if model.len() == HISTORY_KEPT {
                model.pop_front();
            }
            model.push_back(f);
            prop_assert_eq!(log.last(), model.back());
        }
        prop_assert!(log.iter().eq(model.iter().copied()));
    }
}

#[test]
fn an_account_keeps_its_last_100_fills() {
    let mut x = Exchange::new();
    let (base, quote) = (x.add_asset(), x.add_asset());
    let cfg = MarketConfig {
        base, quote, lot_units: 1, tick_units: 1, min_qty: 1, min_notional: 0, band_bps: 0, maker_bps: -1, taker_bps: 7,
    };
    x.add_market(cfg).unwrap();
    x.add_market(cfg).unwrap();
    for a in 0..3 {
        x.add_account();
        x.deposit(a, base, 1 << 40).unwrap();
        x.deposit(a, quote, 1 << 50).unwrap();
    }
    let mut model: Vec<VecDeque<FillRecord>> = vec![VecDeque::new(); 3];
    let mut out = Vec::new();
    for i in 0..700u64 {
        x.advance_time(i * 61_003, &mut out).unwrap();
        let (maker, taker, m) = ((i % 3) as u32, ((i + 1) % 3) as u32, (i % 2) as u32);
        let price = 1_000 + (i * 37 % 23) as i64;
        let side = if i % 5 < 2 { Side::Sell } else { Side::Buy };
        let qty = 1 + (i * 13 % 400) as i64;
        x.place(maker, m, &OrderRequest::limit(0, 0, side, price, qty), &mut out).unwrap();
        out.clear();
        let mut taker_req = OrderRequest::limit(0, 0, side.opposite(), price, qty);
        taker_req.tif = Tif::Ioc as u8;
        x.place(taker, m, &taker_req, &mut out).unwrap();
        for e in out.iter().filter(|e| e.kind == EventKind::Fill) {
            let taker_fee = exchange::fee(e.price as i128 * e.qty as i128, 7);
            let maker_fee = exchange::fee(e.price as i128 * e.qty as i128, -1);
            for (owner, order_id, side, is_maker, fee) in [
                (e.owner, e.order_id, e.side, false, taker_fee),
                (e.other_owner, e.other_id, e.side.opposite(), true, maker_fee),
            ] {
                let h = &mut model[owner as usize];
                if h.len() == HISTORY_KEPT {
                    h.pop_front();
                }
                h.push_back(FillRecord { ts: x.now(), order_id, market: m, side, maker: is_maker, price: e.price, qty: e.qty, fee });
            }
        }
        out.clear();
    }
    for a in 0..3u32 {
        assert_eq!(x.recent_fills(a).unwrap(), Vec::from(model[a as usize].clone()), "account {a}");
    }
    let y = Exchange::restore(&x.snapshot()).unwrap();
    for a in 0..3u32 {
        assert_eq!(y.recent_fills(a), x.recent_fills(a));
    }
    assert_eq!(x.recent_fills(3), None);
}
