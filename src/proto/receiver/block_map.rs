//! [`BlockMap`]: the few blocks an object holds in memory (collecting symbols, or handed out for
//! decoding), keyed by block number, in two sorted arrays: the keys, then the values.
//!
//! It replaces a `BTreeMap` on the path every data datagram takes. A B-tree leaf keeps its
//! length at its end and its values (a collector is about 190 bytes) between its keys and that
//! length, so finding one block read two or three cache lines before the collector's own; and a
//! `HashSet` of the blocks being decoded hashed every datagram's block number. Here the keys of
//! a receiver's window fit in a line or two that stay in cache while it handles a batch of
//! datagrams, and a lookup is a scan of them: with thousands of simulated receivers, each
//! handling a datagram for another block of its window every time, that is what the copy costs
//! (`sim::harness::window`). The map holds at most the receiver's block slots, so inserting
//! and removing, which move the tail of the arrays, stay cheap; both are once per block.

/// Values keyed by block number, in block order.
#[derive(Debug, Clone)]
pub struct BlockMap<V> {
    keys: Vec<u32>,
    vals: Vec<V>,
}

impl<V> Default for BlockMap<V> {
    fn default() -> Self {
        BlockMap { keys: Vec::new(), vals: Vec::new() }
    }
}

/// A place in a [`BlockMap`], held or free ([`BlockMap::entry`]).
pub enum Entry<'a, V> {
    /// The block has a value.
    Occupied(OccupiedEntry<'a, V>),
    /// The block has none.
    Vacant(VacantEntry<'a, V>),
}

/// A block with a value.
pub struct OccupiedEntry<'a, V> {
    map: &'a mut BlockMap<V>,
    at: usize,
}

/// A block without a value, and where its value would go.
pub struct VacantEntry<'a, V> {
    map: &'a mut BlockMap<V>,
    at: usize,
    key: u32,
}

impl<'a, V> OccupiedEntry<'a, V> {
    /// The value, for as long as the map is borrowed.
    pub fn into_mut(self) -> &'a mut V {
        &mut self.map.vals[self.at]
    }
}

impl<'a, V> VacantEntry<'a, V> {
    /// Put `value` at the block; returns it in place.
    pub fn insert(self, value: V) -> &'a mut V {
        self.map.keys.insert(self.at, self.key);
        self.map.vals.insert(self.at, value);
        &mut self.map.vals[self.at]
    }
}

impl<'a, V> Entry<'a, V> {
    /// The value, made with `make` if the block had none.
    pub fn or_insert_with(self, make: impl FnOnce() -> V) -> &'a mut V {
        match self {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(make()),
        }
    }
}

impl<V> BlockMap<V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Where `key` is (`Ok`) or would go (`Err`). A forward scan: the map holds a window of
    /// blocks, a few dozen at most, whose keys share a cache line or two.
    fn find(&self, key: u32) -> Result<usize, usize> {
        match self.keys.iter().position(|&k| k >= key) {
            Some(i) if self.keys[i] == key => Ok(i),
            Some(i) => Err(i),
            None => Err(self.keys.len()),
        }
    }

    /// Blocks held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no block is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether `key` is held.
    pub fn contains_key(&self, key: &u32) -> bool {
        self.find(*key).is_ok()
    }

    /// The value of `key`.
    pub fn get(&self, key: &u32) -> Option<&V> {
        self.find(*key).ok().map(|i| &self.vals[i])
    }

    /// The value of `key`, to change.
    pub fn get_mut(&mut self, key: &u32) -> Option<&mut V> {
        self.find(*key).ok().map(|i| &mut self.vals[i])
    }

    /// The place of `key`, held or free.
    pub fn entry(&mut self, key: u32) -> Entry<'_, V> {
        match self.find(key) {
            Ok(at) => Entry::Occupied(OccupiedEntry { map: self, at }),
            Err(at) => Entry::Vacant(VacantEntry { map: self, at, key }),
        }
    }

    /// Set `key`'s value; returns the one it replaced.
    pub fn insert(&mut self, key: u32, value: V) -> Option<V> {
        match self.find(key) {
            Ok(i) => Some(std::mem::replace(&mut self.vals[i], value)),
            Err(i) => {
                self.keys.insert(i, key);
                self.vals.insert(i, value);
                None
            }
        }
    }

    /// Take `key`'s value out.
    pub fn remove(&mut self, key: &u32) -> Option<V> {
        let i = self.find(*key).ok()?;
        self.keys.remove(i);
        Some(self.vals.remove(i))
    }

    /// Keep only the blocks for which `keep` says so.
    pub fn retain(&mut self, mut keep: impl FnMut(&u32, &mut V) -> bool) {
        let mut i = 0;
        while i < self.keys.len() {
            if keep(&self.keys[i], &mut self.vals[i]) {
                i += 1;
            } else {
                self.keys.remove(i);
                self.vals.remove(i);
            }
        }
    }

    /// The blocks and their values, in block order.
    pub fn iter(&self) -> impl Iterator<Item = (&u32, &V)> {
        self.keys.iter().zip(&self.vals)
    }

    /// The blocks held, in order.
    pub fn keys(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.iter().copied()
    }
}

impl BlockMap<()> {
    /// Hold `key` (a set of blocks); returns whether it was new.
    pub fn insert_key(&mut self, key: u32) -> bool {
        self.insert(key, ()).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u32, u8),
        Remove(u32),
        Entry(u32, u8),
        Bump(u32),
        RetainBelow(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Keys from a small range, so that hits, misses and both ends are all common.
        prop_oneof![
            (0u32..24, any::<u8>()).prop_map(|(k, v)| Op::Insert(k, v)),
            (0u32..24).prop_map(Op::Remove),
            (0u32..24, any::<u8>()).prop_map(|(k, v)| Op::Entry(k, v)),
            (0u32..24).prop_map(Op::Bump),
            any::<u8>().prop_map(Op::RetainBelow),
        ]
    }

    proptest! {
        /// The map answers like a `BTreeMap` (the reference) after any sequence of changes.
        #[test]
        fn behaves_like_a_btree_map(ops in proptest::collection::vec(op(), 0..200)) {
            let mut map = BlockMap::new();
            let mut model = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => prop_assert_eq!(map.insert(k, v), model.insert(k, v)),
                    Op::Remove(k) => prop_assert_eq!(map.remove(&k), model.remove(&k)),
                    Op::Entry(k, v) => {
                        let got = *map.entry(k).or_insert_with(|| v);
                        prop_assert_eq!(got, *model.entry(k).or_insert_with(|| v));
                    }
                    Op::Bump(k) => {
                        if let Some(v) = map.get_mut(&k) {
                            *v = v.wrapping_add(1);
                        }
                        if let Some(v) = model.get_mut(&k) {
                            *v = v.wrapping_add(1);
                        }
                    }
                    Op::RetainBelow(limit) => {
                        map.retain(|_, v| *v < limit);
                        model.retain(|_, v| *v < limit);
                    }
                }
                prop_assert_eq!(map.len(), model.len());
                prop_assert_eq!(map.is_empty(), model.is_empty());
                let got: Vec<_> = map.iter().map(|(k, v)| (*k, *v)).collect();
                let want: Vec<_> = model.iter().map(|(k, v)| (*k, *v)).collect();
                prop_assert_eq!(got, want);
                for k in 0..25 {
                    prop_assert_eq!(map.contains_key(&k), model.contains_key(&k));
                    prop_assert_eq!(map.get(&k), model.get(&k));
                }
            }
        }
    }

    #[test]
    fn a_set_of_blocks_says_what_was_new() {
        let mut set = BlockMap::new();
        assert!(set.insert_key(7));
        assert!(!set.insert_key(7));
        assert!(set.insert_key(3));
        assert_eq!(set.keys().collect::<Vec<_>>(), [3, 7]);
        assert_eq!(set.remove(&7), Some(()));
        assert_eq!(set.remove(&7), None);
    }
}
