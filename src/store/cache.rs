//! A cache of rows a partition's owner has read or written, bounded by
//! bytes, so that a hot key costs one database read per ownership instead
//! of one per batch.
//!
//! Two generations approximate LRU without bookkeeping per hit: entries live
//! in `hot`; when adding one would take `hot` past its byte bound, it becomes
//! `cold` and the old `cold` is dropped; a hit in `cold` moves the entry back
//! to `hot`. So the cache holds at most two bounds' worth (an entry larger
//! than the bound forms a generation of one). Evicting is always safe: the
//! cache only holds rows already written, so a miss just reads them again.
//!
//! Sizes are approximate: the caller's `size` function counts what a key and
//! value hold on the heap, and the cache adds the entry's own size in the map.

use std::collections::HashMap;
use std::hash::Hash;

/// Bytes a key and value hold on the heap (strings, vectors), not counting
/// their inline size.
pub type HeapSize<K, V> = fn(&K, &V) -> usize;

#[derive(Debug)]
pub struct RowCache<K, V> {
    hot: HashMap<K, (V, usize)>,
    cold: HashMap<K, (V, usize)>,
    hot_bytes: usize,
    cold_bytes: usize,
    generation_max_bytes: usize,
    heap_size: HeapSize<K, V>,
}

impl<K: Eq + Hash, V> RowCache<K, V> {
    pub fn new(generation_max_bytes: usize, heap_size: HeapSize<K, V>) -> Self {
        Self {
            hot: HashMap::new(),
            cold: HashMap::new(),
            hot_bytes: 0,
            cold_bytes: 0,
            generation_max_bytes: generation_max_bytes.max(1),
            heap_size,
        }
    }

    pub fn get(&mut self, key: &K) -> Option<&V>
    where
        K: Clone,
    {
        if !self.hot.contains_key(key) {
            let (value, bytes) = self.cold.remove(key)?;
            self.cold_bytes -= bytes;
            self.insert_sized(key.clone(), value, bytes);
        }
        self.hot.get(key).map(|(value, _)| value)
    }

    pub fn insert(&mut self, key: K, value: V) {
        let bytes = std::mem::size_of::<(K, V, usize)>() + (self.heap_size)(&key, &value);
        self.insert_sized(key, value, bytes);
    }

    fn insert_sized(&mut self, key: K, value: V, bytes: usize) {
        if let Some((_, old)) = self.hot.remove(&key) {
            self.hot_bytes -= old;
        } else if let Some((_, old)) = self.cold.remove(&key) {
            self.cold_bytes -= old;
        }
        if self.hot_bytes + bytes > self.generation_max_bytes && !self.hot.is_empty() {
            self.rotate();
        }
        self.hot.insert(key, (value, bytes));
        self.hot_bytes += bytes;
    }

    /// `hot` becomes `cold`; the old `cold` is dropped.
    fn rotate(&mut self) {
        self.cold = std::mem::take(&mut self.hot);
        self.cold_bytes = std::mem::replace(&mut self.hot_bytes, 0);
    }

    /// Changes the bound of each generation, evicting at once what a
    /// smaller bound leaves no room for: a `hot` too large becomes `cold`,
    /// and a `cold` too large keeps only as many entries as fit (any: the
    /// map keeps no order among them).
    pub fn set_generation_max_bytes(&mut self, bytes: usize) {
        let max = bytes.max(1);
        self.generation_max_bytes = max;
        if self.hot_bytes > max {
            self.rotate();
        }
        if self.cold_bytes > max {
            let mut kept = 0;
            self.cold.retain(|_, (_, entry)| {
                let fits = kept + *entry <= max;
                if fits {
                    kept += *entry;
                }
                fits
            });
            self.cold_bytes = kept;
        }
    }

    /// Approximate bytes held, both generations.
    pub fn bytes(&self) -> usize {
        self.hot_bytes + self.cold_bytes
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

    fn no_heap<K, V>(_: &K, _: &V) -> usize {
        0
    }

    fn vec_len(_: &u32, v: &Vec<u8>) -> usize {
        v.capacity()
    }

    /// Room for exactly `n` entries of `RowCache<u32, u32>` per generation.
    fn room_for(n: usize) -> usize {
        n * std::mem::size_of::<(u32, u32, usize)>()
    }

    #[test]
    fn never_holds_more_than_two_generations() {
        let mut cache = RowCache::new(room_for(3), no_heap);
        for i in 0..100 {
            cache.insert(i, i * 10);
            assert!(cache.len() <= 6);
            assert!(cache.bytes() <= 2 * room_for(3));
        }
        assert_eq!(cache.get(&99), Some(&990));
        assert_eq!(cache.get(&0), None);
    }

    #[test]
    fn a_hit_in_the_cold_generation_survives_the_next_rotation() {
        let mut cache = RowCache::new(room_for(2), no_heap);
        cache.insert(1, 1);
        cache.insert(2, 2);
        cache.insert(3, 3); // rotates: cold = {1, 2}
        assert_eq!(cache.get(&1), Some(&1)); // promoted: hot = {3, 1}
        cache.insert(4, 4); // rotates: cold = {3, 1}, hot = {4}
        assert_eq!(cache.get(&1), Some(&1));
        assert_eq!(cache.get(&2), None);
    }

    #[test]
    fn large_values_are_bounded_by_bytes_not_by_count() {
        let bound = 1024 * 1024;
        let mut cache = RowCache::new(bound, vec_len);
        for i in 0..100 {
            cache.insert(i, vec![0u8; 100 * 1024]);
            assert!(cache.bytes() <= 2 * bound, "{} bytes", cache.bytes());
        }
        assert!(cache.len() <= 20, "{} entries", cache.len());
        // One value larger than the bound is a generation of its own.
        cache.insert(1000, vec![0u8; 2 * bound]);
        assert!(cache.get(&1000).is_some());
    }

    #[test]
    fn a_smaller_bound_evicts_at_once() {
        let mut cache = RowCache::new(room_for(10), no_heap);
        for i in 0..15 {
            cache.insert(i, i);
        }
        cache.set_generation_max_bytes(room_for(2));
        assert!(cache.bytes() <= 2 * room_for(2), "{} bytes", cache.bytes());
        assert_eq!(cache.len(), 2, "what fits is kept");
        cache.set_generation_max_bytes(room_for(20));
        cache.insert(100, 100);
        assert_eq!(cache.get(&100), Some(&100));
    }
}
