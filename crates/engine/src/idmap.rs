//! Maps keyed by order id, laid out so that a lookup of an order that is
//! not in cache costs one cache miss, and so that the next lookups can be
//! prefetched.
//!
//! - [`IdMap`]: open addressing with linear probing, keys and values inline
//!   (no separate control bytes, whose miss a SwissTable lookup pays before
//!   the bucket's), Fibonacci hashing, backward-shift deletion (no
//!   tombstones). The book's order index uses it.
//! - [`DenseIdMap`]: for ids handed out in increasing order (the exchange's
//!   order ids): a window of slots indexed by `id - base`, no key stored,
//!   new ids appended at its end; ids that fall behind a window grown too
//!   sparse move to an [`IdMap`]. The exchange's holds use it.
//!
//! Neither is ever iterated in hash order where the order could matter:
//! [`DenseIdMap::iter`] goes by ascending id; [`IdMap::iter`] (table order)
//! only feeds it and order-independent folds.

use std::collections::VecDeque;

/// A hint to bring the cache line at `p` in (nothing else; never faults).
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint; it does not dereference `p` in the
    // language's sense and cannot fault, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Order id -> `V`, for nonzero ids (0 marks an empty slot; no order has
/// id 0). At most 7/8 full, like `hashbrown`'s maps, in power-of-two
/// tables: the same number of 16-byte buckets for a `u32` value, without
/// the control bytes.
#[derive(Clone, Debug)]
pub struct IdMap<V: Copy + Default> {
    slots: Vec<(u64, V)>,
    len: usize,
    /// `64 - log2(slots.len())`: the hash's top bits pick the home slot.
    shift: u32,
}

impl<V: Copy + Default> Default for IdMap<V> {
    fn default() -> Self {
        IdMap { slots: Vec::new(), len: 0, shift: 64 }
    }
}

const FIB: u64 = 0x9E37_79B9_7F4A_7C15;

impl<V: Copy + Default> IdMap<V> {
    #[inline]
    fn home(&self, id: u64) -> usize {
        (id.wrapping_mul(FIB) >> self.shift) as usize
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// Number of entries.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where `id` is, if present.
    #[inline]
    fn find(&self, id: u64) -> Option<usize> {
        if self.len == 0 || id == 0 {
            return None;
        }
        let mask = self.mask();
        let mut i = self.home(id);
        loop {
            let k = self.slots[i].0;
            if k == id {
                return Some(i);
            }
            if k == 0 {
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    #[inline]
    pub fn get(&self, id: u64) -> Option<V> {
        self.find(id).map(|i| self.slots[i].1)
    }

    #[inline]
    pub fn get_ref(&self, id: u64) -> Option<&V> {
        self.find(id).map(|i| &self.slots[i].1)
    }

    #[inline]
    pub fn contains_key(&self, id: u64) -> bool {
        self.find(id).is_some()
    }

    /// Brings `id`'s home slot into cache.
    #[inline]
    pub fn prefetch(&self, id: u64) {
        if !self.slots.is_empty() {
            prefetch(self.slots.as_ptr().wrapping_add(self.home(id)));
        }
    }

    /// Sets `id`'s value; returns the one it replaces.
    pub fn insert(&mut self, id: u64, v: V) -> Option<V> {
        assert!(id != 0, "order id 0 is never stored");
        if (self.len + 1) * 8 > self.slots.len() * 7 {
            self.grow();
        }
        let mask = self.mask();
        let mut i = self.home(id);
        loop {
            let k = self.slots[i].0;
            if k == id {
                return Some(std::mem::replace(&mut self.slots[i].1, v));
            }
            if k == 0 {
                self.slots[i] = (id, v);
                self.len += 1;
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    /// Removes `id`; returns its value.
    pub fn remove(&mut self, id: u64) -> Option<V> {
        let mut hole = self.find(id)?;
        let v = self.slots[hole].1;
        let mask = self.mask();
        // Backward-shift deletion: move later entries of the probe run
        // into the hole when their home is not between the hole and them.
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let k = self.slots[j].0;
            if k == 0 {
                break;
            }
            let home = self.home(k);
            // `k` may move to `hole` if `hole` lies on its probe path,
            // i.e. cyclically within [home, j).
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = self.slots[j];
                hole = j;
            }
        }
        self.slots[hole] = (0, V::default());
        self.len -= 1;
        Some(v)
    }

    /// Entries in table order (which depends on the insertion history: sort
    /// before anything order-dependent).
    pub fn iter(&self) -> impl Iterator<Item = (u64, &V)> {
        self.slots.iter().filter(|e| e.0 != 0).map(|e| (e.0, &e.1))
    }

    /// The value of `id`, to change in place.
    #[inline]
    pub fn get_mut(&mut self, id: u64) -> Option<&mut V> {
        self.find(id).map(|i| &mut self.slots[i].1)
    }

    fn grow(&mut self) {
        let n = (self.slots.len() * 2).max(8);
        let old = std::mem::replace(&mut self.slots, vec![(0, V::default()); n]);
        self.shift = 64 - n.trailing_zeros();
        let mask = n - 1;
        for (k, v) in old {
            if k != 0 {
                let mut i = self.home(k);
                while self.slots[i].0 != 0 {
                    i = (i + 1) & mask;
                }
                self.slots[i] = (k, v);
            }
        }
    }
}

/// A value with a vacant form, for [`DenseIdMap`]'s empty slots.
pub trait Vacant: Copy + Default {
    const VACANT: Self;
    fn is_vacant(&self) -> bool;
}

/// Order id -> `V` for ids that are handed out in increasing order and
/// mostly end before long (the exchange's orders). Ids from `base` on are
/// in `window[id - base]` (vacant where closed); inserting an id past the
/// end appends (gaps as vacant slots). The window is kept to at most twice
/// its live entries plus [`DenseIdMap::SLACK`]: when it grows sparser, the
/// oldest slots leave it and their live entries move to `old` (long-lived
/// orders far from the market), an [`IdMap`] (one miss a lookup, and
/// prefetchable). So memory is bounded by the live entries,
/// whatever the ids, and the common lookup is an index.
#[derive(Clone, Debug)]
pub struct DenseIdMap<V: Vacant> {
    base: u64,
    window: VecDeque<V>,
    /// Live entries in the window.
    live: usize,
    old: IdMap<V>,
}

impl<V: Vacant> Default for DenseIdMap<V> {
    fn default() -> Self {
        DenseIdMap { base: 0, window: VecDeque::new(), live: 0, old: IdMap::default() }
    }
}

impl<V: Vacant> DenseIdMap<V> {
    /// Vacant slots the window may carry beyond its live entries (small
    /// under `cargo test`, so that the tests move entries to `old` often).
    pub const SLACK: usize = if cfg!(test) { 16 } else { 4096 };

    #[inline]
    fn slot(&self, id: u64) -> Option<usize> {
        let i = id.wrapping_sub(self.base);
        (id >= self.base && i < self.window.len() as u64).then_some(i as usize)
    }

    /// Number of entries.
    #[inline]
    pub fn len(&self) -> usize {
        self.live + self.old.len()
    }


    #[inline]
    pub fn get(&self, id: u64) -> Option<&V> {
        match self.slot(id) {
            Some(i) => Some(&self.window[i]).filter(|v| !v.is_vacant()),
            None if id < self.base => self.old.get_ref(id),
            None => None,
        }
    }

    #[inline]
    pub fn get_mut(&mut self, id: u64) -> Option<&mut V> {
        match self.slot(id) {
            Some(i) => Some(&mut self.window[i]).filter(|v| !v.is_vacant()),
            None if id < self.base => self.old.get_mut(id),
            None => None,
        }
    }

    #[inline]
    pub fn contains_key(&self, id: u64) -> bool {
        self.get(id).is_some()
    }

    /// Brings `id`'s slot into cache.
    #[inline]
    pub fn prefetch(&self, id: u64) {
        if let Some(i) = self.slot(id) {
            prefetch(&self.window[i]);
        } else if id < self.base {
            self.old.prefetch(id);
        }
    }

    /// Adds `id` (not present; `v` not vacant).
    pub fn insert(&mut self, id: u64, v: V) {
        assert!(!v.is_vacant(), "a vacant value is not stored");
        if let Some(i) = self.slot(id) {
            assert!(self.window[i].is_vacant(), "order id {id} is already present");
            self.window[i] = v;
            self.live += 1;
            return;
        }
        if id < self.base {
            let prev = self.old.insert(id, v);
            assert!(prev.is_none(), "order id {id} is already present");
            return;
        }
        let end = self.base + self.window.len() as u64;
        let gap = id - end;
        if self.window.is_empty() || gap > (2 * self.live + Self::SLACK) as u64 {
            // Too far ahead to fill the gap: restart the window at `id`.
            self.retire(self.window.len());
            self.base = id;
        } else {
            for _ in 0..gap {
                self.window.push_back(V::VACANT);
            }
        }
        self.window.push_back(v);
        self.live += 1;
        // Each insert retires at most a few slots on average: the window
        // grew by the one slot (or gap) it brought.
        while self.window.len() > 2 * self.live + Self::SLACK {
            self.retire(1);
        }
    }

    /// Moves the oldest `n` slots out of the window (live ones to `old`),
    /// and the vacant ones after them.
    fn retire(&mut self, n: usize) {
        for _ in 0..n {
            let v = self.window.pop_front().expect("n <= window length");
            if !v.is_vacant() {
                self.old.insert(self.base, v);
                self.live -= 1;
            }
            self.base += 1;
        }
        self.drop_vacant_front();
    }

    fn drop_vacant_front(&mut self) {
        while self.window.front().is_some_and(|v| v.is_vacant()) {
            self.window.pop_front();
            self.base += 1;
        }
        if self.window.is_empty() && self.window.capacity() > 4 * Self::SLACK {
            self.window.shrink_to(Self::SLACK);
        }
    }

    /// Removes `id`; returns its value.
    pub fn remove(&mut self, id: u64) -> Option<V> {
        match self.slot(id) {
            Some(i) => {
                let v = std::mem::replace(&mut self.window[i], V::VACANT);
                if v.is_vacant() {
                    return None;
                }
                self.live -= 1;
                if i == 0 {
                    self.drop_vacant_front();
                }
                Some(v)
            }
            None if id < self.base => self.old.remove(id),
            None => None,
        }
    }

    /// Entries by ascending id.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &V)> {
        let mut old: Vec<(u64, &V)> = self.old.iter().collect();
        old.sort_unstable_by_key(|e| e.0);
        let base = self.base;
        old.into_iter().chain(
            self.window.iter().enumerate().filter(|(_, v)| !v.is_vacant()).map(move |(i, v)| (base + i as u64, v)),
        )
    }

    /// Values, in no particular order (for order-independent folds).
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.old.iter().map(|e| e.1).chain(self.window.iter().filter(|v| !v.is_vacant()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    impl Vacant for u64 {
        const VACANT: u64 = u64::MAX;
        fn is_vacant(&self) -> bool {
            *self == u64::MAX
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64),
        Remove(u64),
        Get(u64),
    }

    fn ops(max_id: u64) -> impl Strategy<Value = Vec<Op>> {
        proptest::collection::vec(
            prop_oneof![
                (1..max_id).prop_map(Op::Insert),
                (0..max_id).prop_map(Op::Remove),
                (0..max_id).prop_map(Op::Get),
            ],
            0..2000,
        )
    }

    proptest! {
        /// IdMap behaves as a BTreeMap, with small and with wide key ranges
        /// (the first makes long probe runs and wrap-arounds).
        #[test]
        fn idmap_matches_a_btreemap(ops in ops(64), wide in ops(1 << 40)) {
            for ops in [ops, wide] {
                let (mut m, mut r) = (IdMap::<u32>::default(), BTreeMap::new());
                for (n, op) in ops.into_iter().enumerate() {
                    match op {
                        Op::Insert(k) => prop_assert_eq!(m.insert(k, n as u32), r.insert(k, n as u32)),
                        Op::Remove(k) => prop_assert_eq!(m.remove(k), r.remove(&k)),
                        Op::Get(k) => prop_assert_eq!(m.get(k), r.get(&k).copied()),
                    }
                    prop_assert_eq!(m.len(), r.len());
                }
                for (&k, &v) in &r {
                    prop_assert_eq!(m.get(k), Some(v));
                }
            }
        }

        /// DenseIdMap behaves as a BTreeMap for increasing inserts mixed
        /// with removals, iterates by id, and its window stays bounded.
        #[test]
        fn dense_matches_a_btreemap(steps in proptest::collection::vec((1u64..20_000, any::<bool>(), any::<prop::sample::Index>()), 0..3000)) {
            let (mut m, mut r) = (DenseIdMap::<u64>::default(), BTreeMap::new());
            let mut next = 1u64;
            for (step, remove, pick) in steps {
                if remove && !r.is_empty() {
                    let k = *r.keys().nth(pick.index(r.len())).unwrap();
                    prop_assert_eq!(m.remove(k), r.remove(&k));
                    prop_assert_eq!(m.remove(k), None);
                } else {
                    next += 1 + step % 7 + (step / 19_990) * 100_000; // mostly close ids, now and then a leap
                    m.insert(next, next * 3);
                    r.insert(next, next * 3);
                    // (removals leave it as long as it was: it only grows here)
                    prop_assert!(m.window.len() <= 2 * m.live + DenseIdMap::<u64>::SLACK);
                }
                prop_assert_eq!(m.len(), r.len());
            }
            let got: Vec<(u64, u64)> = m.iter().map(|(k, v)| (k, *v)).collect();
            let want: Vec<(u64, u64)> = r.iter().map(|(&k, &v)| (k, v)).collect();
            prop_assert_eq!(got, want);
            for k in 0..next + 2 {
                prop_assert_eq!(m.get(k).copied(), r.get(&k).copied());
            }
        }
    }

    #[test]
    fn dense_inserts_behind_and_inside_the_window() {
        let mut m = DenseIdMap::<u64>::default();
        m.insert(100, 1);
        m.insert(50, 2); // behind: to `old`
        m.insert(103, 3);
        m.insert(101, 4); // a vacant slot inside the window
        assert_eq!(m.iter().map(|(k, v)| (k, *v)).collect::<Vec<_>>(), vec![(50, 2), (100, 1), (101, 4), (103, 3)]);
        assert_eq!(m.remove(100), Some(1));
        assert_eq!(m.base, 101);
        m.insert(1 << 50, 5); // far ahead: the window restarts
        assert_eq!(m.len(), 4);
        assert_eq!(m.get(103), Some(&3));
    }
}
