//! A bounded cache of rows a partition's owner has read or written, so that
//! a hot key costs one database read per ownership instead of one per batch.
//!
//! Two generations approximate LRU without bookkeeping per hit: entries live
//! in `hot`; when it fills, it becomes `cold` and the old `cold` is dropped; a
//! hit in `cold` moves the entry back to `hot`. Evicting is always safe: the
//! cache only holds rows already written, so a miss just reads them again.

use std::collections::HashMap;
use std::hash::Hash;

#[derive(Debug)]
pub struct RowCache<K, V> {
    hot: HashMap<K, V>,
    cold: HashMap<K, V>,
    generation_capacity: usize,
}

impl<K: Eq + Hash, V> RowCache<K, V> {
    pub fn new(generation_capacity: usize) -> Self {
        Self {
            hot: HashMap::new(),
            cold: HashMap::new(),
            generation_capacity: generation_capacity.max(1),
        }
    }

    pub fn get(&mut self, key: &K) -> Option<&V>
    where
        K: Clone,
    {
        if !self.hot.contains_key(key) {
            let value = self.cold.remove(key)?;
            self.insert(key.clone(), value);
        }
        self.hot.get(key)
    }

    pub fn insert(&mut self, key: K, value: V) {
        if self.hot.len() >= self.generation_capacity && !self.hot.contains_key(&key) {
            self.cold = std::mem::take(&mut self.hot);
        }
        self.cold.remove(&key);
        self.hot.insert(key, value);
    }

    pub fn len(&self) -> usize {
        self.hot.len() + self.cold.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_holds_more_than_two_generations() {
        let mut cache = RowCache::new(3);
        for i in 0..100 {
            cache.insert(i, i * 10);
            assert!(cache.len() <= 6);
        }
        assert_eq!(cache.get(&99), Some(&990));
        assert_eq!(cache.get(&0), None);
    }

    #[test]
    fn a_hit_in_the_cold_generation_survives_the_next_rotation() {
        let mut cache = RowCache::new(2);
        cache.insert("a", 1);
        cache.insert("b", 2);
        cache.insert("c", 3); // rotates: cold = {a, b}
        assert_eq!(cache.get(&"a"), Some(&1)); // promoted: hot = {c, a}
        cache.insert("d", 4); // rotates: cold = {c, a}, hot = {d}
        assert_eq!(cache.get(&"a"), Some(&1));
        assert_eq!(cache.get(&"b"), None);
    }
}
