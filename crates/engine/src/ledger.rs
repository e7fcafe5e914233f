//! Balances: every account's available and held amount of every asset, the
//! fee account, and the totals that conservation is checked against.
//!
//! Amounts are integers in an asset's smallest unit (`i64`, checked: an
//! operation that would overflow or go negative is refused and changes
//! nothing). Account and asset ids are dense indices handed out in order, so
//! iteration is deterministic and storage is a plain `Vec`.

/// Why a ledger operation was refused; nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LedgerError {
    UnknownAccount,
    UnknownAsset,
    /// The amount must be positive.
    InvalidAmount,
    InsufficientFunds,
    /// The result would not fit the balance type.
    Overflow,
}

impl LedgerError {
    /// A sentence naming the field and the rule.
    pub fn describe(self) -> &'static str {
        match self {
            LedgerError::UnknownAccount => "account: no such account",
            LedgerError::UnknownAsset => "asset: no such asset",
            LedgerError::InvalidAmount => "amount: must be a positive integer of the asset's smallest unit",
            LedgerError::InsufficientFunds => "amount: more than the account's available balance",
            LedgerError::Overflow => "amount: the asset's total supply would exceed 2^63 - 1 units",
        }
    }
}

impl std::fmt::Display for LedgerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

impl std::error::Error for LedgerError {}

/// One account's balance of one asset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Balance {
    pub asset: u32,
    pub available: i64,
    pub held: i64,
}

#[derive(Clone, Debug, Default)]
struct AssetTotals {
    deposited: i128,
    withdrawn: i128,
    fees: i64,
}

/// Accounts' balances plus the fee account, per asset.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    assets: Vec<AssetTotals>,
    /// Per account, its non-empty balances sorted by asset.
    accounts: Vec<Vec<Balance>>,
}

type R<T = ()> = Result<T, LedgerError>;

fn positive(amount: i64) -> R {
    if amount > 0 {
        Ok(())
    } else {
        Err(LedgerError::InvalidAmount)
    }
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Ledger {
        Ledger::default()
    }
    /// Adds an asset; returns its id.
    pub fn add_asset(&mut self) -> u32 {
        self.assets.push(AssetTotals::default());
        (self.assets.len() - 1) as u32
    }
    /// Number of assets.
    pub fn asset_count(&self) -> usize {
        self.assets.len()
    }
    /// Adds an account; returns its id.
    pub fn add_account(&mut self) -> u32 {
        self.accounts.push(Vec::new());
        (self.accounts.len() - 1) as u32
    }
    /// Number of accounts.
    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    fn check_asset(&self, asset: u32) -> R {
        if (asset as usize) < self.assets.len() {
            Ok(())
        } else {
            Err(LedgerError::UnknownAsset)
        }
    }

    fn slot(&mut self, account: u32, asset: u32) -> R<&mut Balance> {
        self.check_asset(asset)?;
        let balances = self.accounts.get_mut(account as usize).ok_or(LedgerError::UnknownAccount)?;
        let i = match balances.binary_search_by_key(&asset, |b| b.asset) {
            Ok(i) => i,
            Err(i) => {
                // Grow by a quarter, not `Vec`'s doubling to 4: a million
                // accounts with three balances each is the design point.
                if balances.len() == balances.capacity() {
                    balances.reserve_exact(1 + balances.len() / 4);
                }
                balances.insert(i, Balance { asset, available: 0, held: 0 });
                i
            }
        };
        Ok(&mut balances[i])
    }

    /// An account's balance of an asset (zero if it never had any).
    pub fn balance(&self, account: u32, asset: u32) -> R<Balance> {
        let balances = self.accounts.get(account as usize).ok_or(LedgerError::UnknownAccount)?;
        self.check_asset(asset)?;
        Ok(match balances.binary_search_by_key(&asset, |b| b.asset) {
            Ok(i) => balances[i],
            Err(_) => Balance { asset, available: 0, held: 0 },
        })
    }

    /// Every non-empty balance of an account, by asset.
    pub fn balances(&self, account: u32) -> R<&[Balance]> {
        self.accounts.get(account as usize).map(|v| v.as_slice()).ok_or(LedgerError::UnknownAccount)
    }

    /// Fees collected in an asset (rebates already paid out).
    pub fn fees(&self, asset: u32) -> R<i64> {
        self.check_asset(asset)?;
        Ok(self.assets[asset as usize].fees)
    }

    /// Credits a deposit to available. The asset's total supply (deposits −
    /// withdrawals) is kept within `i64`, so no balance anywhere can overflow.
    pub fn deposit(&mut self, account: u32, asset: u32, amount: i64) -> R {
        let current = self.balance(account, asset)?.available;
        positive(amount)?;
        let t = &self.assets[asset as usize];
        if t.deposited - t.withdrawn + amount as i128 > i64::MAX as i128 {
            return Err(LedgerError::Overflow);
        }
        let available = current + amount;
        self.slot(account, asset)?.available = available;
        self.assets[asset as usize].deposited += amount as i128;
        Ok(())
    }

    /// Pays a withdrawal out of available.
    pub fn withdraw(&mut self, account: u32, asset: u32, amount: i64) -> R {
        let available = self.balance(account, asset)?.available;
        positive(amount)?;
        if available < amount {
            return Err(LedgerError::InsufficientFunds);
        }
        self.slot(account, asset)?.available -= amount;
        self.assets[asset as usize].withdrawn += amount as i128;
        Ok(())
    }

    /// Moves available funds from one account to another.
    pub fn transfer(&mut self, from: u32, to: u32, asset: u32, amount: i64) -> R {
        if from as usize >= self.accounts.len() || to as usize >= self.accounts.len() {
            return Err(LedgerError::UnknownAccount);
        }
        let src = self.balance(from, asset)?;
        positive(amount)?;
        if src.available < amount {
            return Err(LedgerError::InsufficientFunds);
        }
        if from == to {
            return Ok(());
        }
        self.slot(from, asset)?.available -= amount;
        self.slot(to, asset)?.available += amount;
        Ok(())
    }

    /// Moves `amount` from available to held (for an order).
    pub fn hold(&mut self, account: u32, asset: u32, amount: i64) -> R {
        if amount == 0 {
            return Ok(());
        }
        positive(amount)?;
        self.check_asset(asset)?;
        let balances = self.accounts.get_mut(account as usize).ok_or(LedgerError::UnknownAccount)?;
        // One lookup; a missing balance is zero, so the hold fails without
        // inserting anything.
        match balances.binary_search_by_key(&asset, |b| b.asset) {
            Ok(i) if balances[i].available >= amount => {
                let b = &mut balances[i];
                b.held += amount;
                b.available -= amount;
                Ok(())
            }
            _ => Err(LedgerError::InsufficientFunds),
        }
    }

    /// Moves `amount` from held back to available.
    ///
    /// # Panics
    /// If the account does not hold that much: the caller's bookkeeping is broken.
    pub fn release(&mut self, account: u32, asset: u32, amount: i64) {
        if amount == 0 {
            return;
        }
        let b = self.slot(account, asset).expect("release: known account and asset");
        assert!(amount > 0 && b.held >= amount, "release of {amount} exceeds held {}", b.held);
        b.held -= amount;
        b.available += amount;
    }

    /// Settles a transfer out of `from`'s held funds: `to` receives
    /// `amount - fee` in available and the fee account `fee` (a negative fee
    /// is a rebate paid by the fee account to `to`).
    ///
    /// # Panics
    /// If `from` does not hold `amount`, or the fee account cannot pay a
    /// rebate: the caller's bookkeeping is broken.
    pub fn settle_from_held(&mut self, from: u32, to: u32, asset: u32, amount: i64, fee: i64) {
        let src = self.slot(from, asset).expect("settle: known account and asset");
        assert!(amount >= 0 && src.held >= amount, "settle of {amount} exceeds held {}", src.held);
        src.held -= amount;
        let dst = self.slot(to, asset).expect("settle: known account and asset");
        dst.available += amount - fee;
        let fees = &mut self.assets[asset as usize].fees;
        *fees += fee;
        assert!(*fees >= 0, "fee account went negative");
    }

    /// Pays a rebate from the fee account to `account`'s available funds.
    ///
    /// # Panics
    /// If the fee account holds less: the caller's bookkeeping is broken.
    pub fn pay_rebate(&mut self, account: u32, asset: u32, amount: i64) {
        let fees = &mut self.assets[asset as usize].fees;
        assert!(amount >= 0 && *fees >= amount, "rebate {amount} exceeds collected fees {fees}");
        *fees -= amount;
        self.slot(account, asset).expect("rebate: known account and asset").available += amount;
    }

    /// Takes a fee from `account`'s held funds into the fee account.
    ///
    /// # Panics
    /// If the account does not hold it.
    pub fn charge_from_held(&mut self, account: u32, asset: u32, fee: i64) {
        if fee == 0 {
            return;
        }
        let b = self.slot(account, asset).expect("charge: known account and asset");
        assert!(fee > 0 && b.held >= fee, "fee {fee} exceeds held {}", b.held);
        b.held -= fee;
        self.assets[asset as usize].fees += fee;
    }

    /// Checks conservation for every asset: Σ(available + held) + fees =
    /// deposits − withdrawals, and that no balance is negative. Returns the
    /// first asset that breaks it.
    pub fn check_conservation(&self) -> Result<(), u32> {
        let mut sums = vec![0i128; self.assets.len()];
        for balances in &self.accounts {
            for b in balances {
                if b.available < 0 || b.held < 0 {
                    return Err(b.asset);
                }
                sums[b.asset as usize] += b.available as i128 + b.held as i128;
            }
        }
        for (i, t) in self.assets.iter().enumerate() {
            if t.fees < 0 || sums[i] + t.fees as i128 != t.deposited - t.withdrawn {
                return Err(i as u32);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deposit_hold_settle_release_conserve() {
        let mut l = Ledger::new();
        let usd = l.add_asset();
        let (a, b) = (l.add_account(), l.add_account());
        l.deposit(a, usd, 1_000).unwrap();
        l.hold(a, usd, 600).unwrap();
        assert_eq!(l.hold(a, usd, 401), Err(LedgerError::InsufficientFunds));
        l.settle_from_held(a, b, usd, 500, 5);
        l.release(a, usd, 100);
        assert_eq!(l.balance(a, usd).unwrap(), Balance { asset: usd, available: 500, held: 0 });
        assert_eq!(l.balance(b, usd).unwrap().available, 495);
        assert_eq!(l.fees(usd).unwrap(), 5);
        l.withdraw(b, usd, 495).unwrap();
        assert_eq!(l.withdraw(b, usd, 1), Err(LedgerError::InsufficientFunds));
        l.check_conservation().unwrap();
    }

    #[test]
    fn refused_operations_change_nothing() {
        let mut l = Ledger::new();
        let btc = l.add_asset();
        let a = l.add_account();
        l.deposit(a, btc, i64::MAX).unwrap();
        assert_eq!(l.deposit(a, btc, 1), Err(LedgerError::Overflow));
        assert_eq!(l.deposit(a, btc, 0), Err(LedgerError::InvalidAmount));
        assert_eq!(l.deposit(a, 9, 1), Err(LedgerError::UnknownAsset));
        assert_eq!(l.deposit(7, btc, 1), Err(LedgerError::UnknownAccount));
        assert_eq!(l.transfer(a, 7, btc, 1), Err(LedgerError::UnknownAccount));
        assert_eq!(l.balance(a, btc).unwrap().available, i64::MAX);
        l.check_conservation().unwrap();
    }
}

mod encoding {
    use super::*;
    use crate::codec::{bad, Reader, SnapshotError, Writer};

    impl Ledger {
        pub(crate) fn encode(&self, w: &mut Writer) {
            w.u64(self.assets.len() as u64);
            for t in &self.assets {
                w.i128(t.deposited);
                w.i128(t.withdrawn);
                w.i64(t.fees);
            }
            w.u64(self.accounts.len() as u64);
            for balances in &self.accounts {
                w.u64(balances.len() as u64);
                for b in balances {
                    w.u32(b.asset);
                    w.i64(b.available);
                    w.i64(b.held);
                }
            }
        }

        pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Ledger, SnapshotError> {
            let mut l = Ledger::new();
            for _ in 0..r.count(40)? {
                let (deposited, withdrawn, fees) = (r.i128()?, r.i128()?, r.i64()?);
                l.assets.push(AssetTotals { deposited, withdrawn, fees });
            }
            for _ in 0..r.count(8)? {
                let n = r.count(20)?;
                let mut balances = Vec::with_capacity(n);
                for _ in 0..n {
                    let b = Balance { asset: r.u32()?, available: r.i64()?, held: r.i64()? };
                    if b.asset as usize >= l.assets.len() || balances.last().is_some_and(|p: &Balance| p.asset >= b.asset) {
                        return bad("balances: unknown asset or out of order");
                    }
                    balances.push(b);
                }
                l.accounts.push(balances);
            }
            if let Err(asset) = l.check_conservation() {
                return bad(format!("ledger: asset {asset} not conserved"));
            }
            Ok(l)
        }
    }
}
