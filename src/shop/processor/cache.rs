//! The rows a partition's owner keeps between batches, and the rows one batch
//! works on.
//!
//! A batch copies the rows it needs out of the partition's cache into its own
//! [`BatchRows`] and changes only those; the cache adopts them once the batch
//! is committed. A batch that fails to write therefore leaves in the cache
//! nothing the database does not hold, and its retry starts from the same rows.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;

use super::ShopProcessor;
use crate::domain::inventory::{Reservation, Stock};
use crate::domain::order::Order;
use crate::shop::rows::SalesCell;
use crate::store::cache::RowCache;
use crate::store::Versioned;

/// Rows of one generation of a partition's cache, per table.
const CACHE_GENERATION_ROWS: usize = 10_000;

/// An input partition: its topic and number.
pub(super) type PartitionKey = (Arc<str>, i32);
/// A reservation row's key: its SKU and its order.
pub(super) type ReservationKey = (String, String);

/// The rows of one input partition its owner has read or written.
pub(super) struct PartitionCache {
    pub(super) orders: RowCache<String, Option<Versioned<Order>>>,
    pub(super) stock: RowCache<String, Option<Versioned<Stock>>>,
    pub(super) reservations: RowCache<ReservationKey, Option<Versioned<Reservation>>>,
    pub(super) sku_sales: RowCache<(String, i64), Versioned<SalesCell>>,
    pub(super) minute_sales: RowCache<i64, Versioned<SalesCell>>,
}

impl PartitionCache {
    fn new() -> Self {
        Self {
            orders: RowCache::new(CACHE_GENERATION_ROWS),
            stock: RowCache::new(CACHE_GENERATION_ROWS),
            reservations: RowCache::new(CACHE_GENERATION_ROWS),
            sku_sales: RowCache::new(CACHE_GENERATION_ROWS),
            minute_sales: RowCache::new(CACHE_GENERATION_ROWS),
        }
    }
}

/// The rows of one partition a batch read or computed.
#[derive(Default)]
pub(super) struct BatchRows {
    pub(super) orders: HashMap<String, Option<Versioned<Order>>>,
    pub(super) stock: HashMap<String, Option<Versioned<Stock>>>,
    pub(super) reservations: HashMap<ReservationKey, Option<Versioned<Reservation>>>,
    pub(super) sku_sales: HashMap<(String, i64), Versioned<SalesCell>>,
    pub(super) minute_sales: HashMap<i64, Versioned<SalesCell>>,
}

/// Takes a row into the batch from the cache, or notes that it must be read.
pub(super) fn stage<K, V>(
    rows: &mut HashMap<K, V>,
    cache: &mut RowCache<K, V>,
    want: &mut HashSet<K>,
    key: K,
) where
    K: Clone + Eq + Hash,
    V: Clone,
{
    if let Entry::Vacant(slot) = rows.entry(key) {
        match cache.get(slot.key()) {
            Some(value) => {
                slot.insert(value.clone());
            }
            None => {
                want.insert(slot.into_key());
            }
        }
    }
}

impl ShopProcessor {
    pub(super) fn cache(&mut self, key: &PartitionKey) -> &mut PartitionCache {
        self.caches
            .entry(key.clone())
            .or_insert_with(PartitionCache::new)
    }

    /// Makes a committed batch's rows the cached state of their partitions.
    pub(super) fn adopt(&mut self, batch_rows: HashMap<PartitionKey, BatchRows>) {
        for (part, rows) in batch_rows {
            let cache = self.cache(&part);
            for (k, v) in rows.orders {
                cache.orders.insert(k, v);
            }
            for (k, v) in rows.stock {
                cache.stock.insert(k, v);
            }
            for (k, v) in rows.reservations {
                cache.reservations.insert(k, v);
            }
            for (k, v) in rows.sku_sales {
                cache.sku_sales.insert(k, v);
            }
            for (k, v) in rows.minute_sales {
                cache.minute_sales.insert(k, v);
            }
        }
    }

    /// Drops the caches of partitions another process now owns: its writes
    /// would make them stale.
    pub(super) fn forget_partitions(&mut self, partitions: &[(String, i32)]) {
        self.caches.retain(|(topic, p), _| {
            !partitions
                .iter()
                .any(|(t, q)| q == p && t.as_str() == &**topic)
        });
    }
}
