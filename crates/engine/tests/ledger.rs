//! Random ledger operations keep every asset conserved and no balance
//! negative; refused operations change nothing.

use lxdex_engine::ledger::Ledger;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Deposit(u32, u32, i64),
    Withdraw(u32, u32, i64),
    Transfer(u32, u32, u32, i64),
    Hold(u32, u32, i64),
    Release(u32, u32, i64),
    Settle(u32, u32, u32, i64, i64),
}

fn op() -> impl Strategy<Value = Op> {
    let acct = 0u32..5; // 4 accounts + one unknown
    let asset = 0u32..3; // 2 assets + one unknown
    let amount = prop_oneof![-5i64..1_000, Just(i64::MAX)];
    prop_oneof![
        (acct.clone(), asset.clone(), amount.clone()).prop_map(|(a, s, n)| Op::Deposit(a, s, n)),
        (acct.clone(), asset.clone(), amount.clone()).prop_map(|(a, s, n)| Op::Withdraw(a, s, n)),
        (acct.clone(), acct.clone(), asset.clone(), amount.clone()).prop_map(|(a, b, s, n)| Op::Transfer(a, b, s, n)),
        (acct.clone(), asset.clone(), amount.clone()).prop_map(|(a, s, n)| Op::Hold(a, s, n)),
        (acct.clone(), asset.clone(), 1i64..500).prop_map(|(a, s, n)| Op::Release(a, s, n)),
        (acct.clone(), acct, asset, 1i64..500, -3i64..10).prop_map(|(a, b, s, n, f)| Op::Settle(a, b, s, n, f)),
    ]
}

proptest! {
    #[test]
    fn conservation_holds(ops in prop::collection::vec(op(), 1..200)) {
        let mut l = Ledger::new();
        l.add_asset();
        l.add_asset();
        for _ in 0..4 {
            l.add_account();
        }
        for op in ops {
            let before = format!("{l:?}");
            let result = match op {
                Op::Deposit(a, s, n) => l.deposit(a, s, n),
                Op::Withdraw(a, s, n) => l.withdraw(a, s, n),
                Op::Transfer(a, b, s, n) => l.transfer(a, b, s, n),
                Op::Hold(a, s, n) => l.hold(a, s, n),
                Op::Release(a, s, n) => {
                    // Only release what is held (the exchange guarantees it).
                    match l.balance(a, s) {
                        Ok(b) if b.held >= n => { l.release(a, s, n); Ok(()) }
                        _ => Ok(()),
                    }
                }
                Op::Settle(a, b, s, n, f) => {
                    let fees = l.fees(s).unwrap_or(0);
                    match (l.balance(a, s), l.balance(b, s)) {
                        (Ok(x), Ok(_)) if x.held >= n && fees + f >= 0 && f <= n => {
                            l.settle_from_held(a, b, s, n, f);
                            Ok(())
                        }
                        _ => Ok(()),
                    }
                }
            };
            if result.is_err() {
                prop_assert_eq!(before, format!("{l:?}"), "a refused operation changes nothing");
            }
            prop_assert_eq!(l.check_conservation(), Ok(()));
        }
    }
}
