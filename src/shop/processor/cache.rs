//! The rows a partition's owner keeps between batches, and the rows one batch
//! works on.
//!
//! The caches of all owned partitions share `shop.row_cache_max_bytes`:
//! every table that holds rows, in any partition's cache, gets an equal
//! share, split again between its two generations. (A partition of the
//! orders topic never holds stock rows, nor one of the inventory topic
//! orders: an equal share for every table would leave half the budget
//! unused.) The shares are worked out again after every batch and whenever
//! a partition's cache is dropped, so the bound holds between batches; a
//! batch that brings rows into tables empty until then may overshoot it by
//! their shares until it ends.
//!
//! A batch copies the rows it needs out of the partition's cache into its own
//! [`BatchRows`] and changes only those; the cache adopts them once the batch
//! is committed. A batch that fails to write therefore leaves in the cache
//! nothing the database does not hold, and its retry starts from the same rows.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;

use crate::domain::inventory::{Reservation, Stock};
use crate::domain::order::Order;
use crate::shop::rows::SalesCell;
use crate::store::cache::RowCache;
use crate::store::Versioned;

/// The generations each table's share is split between.
const GENERATIONS: usize = 2;

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
    fn new(generation_max_bytes: usize) -> Self {
        Self {
            orders: RowCache::new(generation_max_bytes, |k, v| {
                k.capacity() + v.as_ref().map_or(0, |o| order_heap_bytes(&o.value))
            }),
            stock: RowCache::new(generation_max_bytes, |k, v| {
                k.capacity() + v.as_ref().map_or(0, |s| s.value.sku.capacity())
            }),
            reservations: RowCache::new(generation_max_bytes, |(sku, order), v| {
                sku.capacity()
                    + order.capacity()
                    + v.as_ref().map_or(0, |r| r.value.order_id.capacity())
            }),
            sku_sales: RowCache::new(generation_max_bytes, |(sku, _), _| sku.capacity()),
            minute_sales: RowCache::new(generation_max_bytes, |_, _| 0),
        }
    }

    fn set_generation_max_bytes(&mut self, bytes: usize) {
        self.orders.set_generation_max_bytes(bytes);
        self.stock.set_generation_max_bytes(bytes);
        self.reservations.set_generation_max_bytes(bytes);
        self.sku_sales.set_generation_max_bytes(bytes);
        self.minute_sales.set_generation_max_bytes(bytes);
    }

    /// How many of its tables hold rows.
    fn tables_in_use(&self) -> usize {
        [
            self.orders.is_empty(),
            self.stock.is_empty(),
            self.reservations.is_empty(),
            self.sku_sales.is_empty(),
            self.minute_sales.is_empty(),
        ]
        .iter()
        .filter(|empty| !**empty)
        .count()
    }

    /// Approximate bytes held by all five tables.
    fn bytes(&self) -> usize {
        self.orders.bytes()
            + self.stock.bytes()
            + self.reservations.bytes()
            + self.sku_sales.bytes()
            + self.minute_sales.bytes()
    }
}

/// What an order holds on the heap: its strings, lines and timeline.
fn order_heap_bytes(order: &Order) -> usize {
    let lines: usize = order.lines.iter().map(|l| l.sku.capacity()).sum();
    let timeline: usize = order
        .timeline
        .iter()
        .map(|t| t.status.capacity() + t.note.as_ref().map_or(0, String::capacity))
        .sum();
    order.order_id.capacity()
        + order.customer_id.capacity()
        + order.currency.capacity()
        + std::mem::size_of_val(order.lines.as_slice())
        + std::mem::size_of_val(order.timeline.as_slice())
        + lines
        + timeline
}

/// The caches of the partitions this process owns, within one byte budget.
pub(super) struct PartitionCaches {
    caches: HashMap<PartitionKey, PartitionCache>,
    max_bytes: usize,
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

impl PartitionCaches {
    pub(super) fn new(max_bytes: usize) -> Self {
        Self {
            caches: HashMap::new(),
            max_bytes,
        }
    }

    /// Each generation's share of the budget: tables in use times their
    /// generations split it equally. Empty tables get the same, which they
    /// start filling from.
    fn generation_share(&self) -> usize {
        let in_use: usize = self
            .caches
            .values()
            .map(PartitionCache::tables_in_use)
            .sum();
        self.max_bytes / (in_use.max(1) * GENERATIONS)
    }

    /// Works out every table's share again, evicting past it.
    fn reshare(&mut self) {
        let share = self.generation_share();
        for cache in self.caches.values_mut() {
            cache.set_generation_max_bytes(share);
        }
    }

    pub(super) fn cache(&mut self, key: &PartitionKey) -> &mut PartitionCache {
        // Worked out only for a new partition: it costs a pass over all.
        let share = if self.caches.contains_key(key) {
            0
        } else {
            self.generation_share()
        };
        self.caches
            .entry(key.clone())
            .or_insert_with(|| PartitionCache::new(share))
    }

    /// Approximate bytes held by every partition's cache.
    pub(super) fn bytes(&self) -> usize {
        self.caches.values().map(PartitionCache::bytes).sum()
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
        self.reshare();
    }

    /// Drops the caches of partitions another process now owns: its writes
    /// would make them stale.
    pub(super) fn forget_partitions(&mut self, partitions: &[(String, i32)]) {
        self.caches.retain(|(topic, p), _| {
            !partitions
                .iter()
                .any(|(t, q)| q == p && t.as_str() == &**topic)
        });
        self.reshare();
    }
}
