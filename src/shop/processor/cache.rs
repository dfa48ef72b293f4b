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
//!
//! With exactly-once delivery a committed batch's rows reach the database
//! only when the changelog sink applies them, later. Until then the cache
//! may not simply forget them: a later batch would read the older version
//! the database still holds. So the rows each such batch changed are also
//! kept aside, per partition, in a queue eviction never touches, until the
//! sink reports them applied; a batch that misses the cache looks there,
//! newest batch first, before it asks the database. Each row is kept once,
//! by the newest batch that changed it: an older version is never read.
//! The queue is not part of the cache's byte budget: what it holds is
//! bounded by how far the sink may lag (`pipeline.max_batches_awaiting_sink`
//! batches and `pipeline.max_bytes_awaiting_sink` bytes of these rows).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::Arc;

use crate::domain::inventory::{Reservation, Stock};
use crate::domain::order::Order;
use crate::shop::rows::SalesCell;
use crate::store::cache::RowCache;
use crate::store::known_keys::PartitionKeys;
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
    /// The rows of committed batches the sink has not applied yet, oldest
    /// batch first. A row is held once, by the newest batch that changed
    /// it: reads take the newest version, so older ones would only use up
    /// `pipeline.max_bytes_awaiting_sink`.
    awaiting_sink: VecDeque<AwaitingSink>,
    /// Which awaiting batch holds each row awaiting the sink.
    holders: Holders,
}

/// Per table, each row awaiting the sink and the batch holding it (by the
/// batch's `next_offset`).
#[derive(Default)]
struct Holders {
    orders: HashMap<String, i64>,
    stock: HashMap<String, i64>,
    reservations: HashMap<ReservationKey, i64>,
    sku_sales: HashMap<(String, i64), i64>,
    minute_sales: HashMap<i64, i64>,
}

/// The rows one committed batch changed in a partition, kept until the sink
/// has applied every record below `next_offset`.
struct AwaitingSink {
    next_offset: i64,
    rows: BatchRows,
    bytes: usize,
}

/// Where a batch finds a row of one table before it asks the database: the
/// partition's cache, else the rows awaiting the sink.
pub(super) struct Held<'a, K, V> {
    cache: &'a mut RowCache<K, V>,
    awaiting_sink: &'a VecDeque<AwaitingSink>,
    table: fn(&BatchRows) -> &HashMap<K, V>,
}

impl<K: Clone + Eq + Hash, V> Held<'_, K, V> {
    fn get(&mut self, key: &K) -> Option<&V> {
        // The cache, when it has the row, has the newest version: it adopts
        // every committed batch's rows, those awaiting the sink included.
        if let Some(value) = self.cache.get(key) {
            return Some(value);
        }
        let table = self.table;
        self.awaiting_sink
            .iter()
            .rev()
            .find_map(|batch| table(&batch.rows).get(key))
    }
}

// What each table's rows hold on the heap, for the cache's byte bound and
// the gauge of rows awaiting the sink.

fn order_row_heap_bytes(id: &String, row: &Option<Versioned<Order>>) -> usize {
    id.capacity() + row.as_ref().map_or(0, |o| order_heap_bytes(&o.value))
}

fn stock_row_heap_bytes(sku: &String, row: &Option<Versioned<Stock>>) -> usize {
    sku.capacity() + row.as_ref().map_or(0, |s| s.value.sku.capacity())
}

fn reservation_row_heap_bytes(
    (sku, order): &ReservationKey,
    row: &Option<Versioned<Reservation>>,
) -> usize {
    sku.capacity() + order.capacity() + row.as_ref().map_or(0, |r| r.value.order_id.capacity())
}

fn sku_cell_heap_bytes((sku, _): &(String, i64), _: &Versioned<SalesCell>) -> usize {
    sku.capacity()
}

fn minute_cell_heap_bytes(_: &i64, _: &Versioned<SalesCell>) -> usize {
    0
}

/// Approximate bytes one row of a batch holds, counted as the cache counts
/// its entries.
fn row_bytes<K, V>(key: &K, value: &V, heap_bytes: fn(&K, &V) -> usize) -> usize {
    std::mem::size_of::<(K, V, usize)>() + heap_bytes(key, value)
}

/// Approximate bytes a table of a batch's rows holds.
fn table_bytes<K, V>(table: &HashMap<K, V>, heap_bytes: fn(&K, &V) -> usize) -> usize {
    table.iter().map(|(k, v)| row_bytes(k, v, heap_bytes)).sum()
}

/// Takes from older awaiting batches the rows of one table that the batch
/// ending before `next_offset` changed again (`newer`), and notes that
/// batch as their holder.
fn supersede<K: Clone + Eq + Hash, V>(
    awaiting: &mut VecDeque<AwaitingSink>,
    holders: &mut HashMap<K, i64>,
    newer: &HashMap<K, V>,
    (table, heap_bytes): TableOf<K, V>,
    next_offset: i64,
) {
    for key in newer.keys() {
        let Some(older) = holders.insert(key.clone(), next_offset) else {
            continue;
        };
        // Batches are held in commit order, so their offsets ascend.
        if let Ok(at) = awaiting.binary_search_by_key(&older, |b| b.next_offset) {
            let batch = &mut awaiting[at];
            if let Some((k, v)) = table(&mut batch.rows).remove_entry(key) {
                batch.bytes = batch.bytes.saturating_sub(row_bytes(&k, &v, heap_bytes));
            }
        }
    }
}

/// Forgets the holder of each row of one table of an applied batch.
fn release<K: Eq + Hash, V>(holders: &mut HashMap<K, i64>, rows: &HashMap<K, V>, next_offset: i64) {
    for key in rows.keys() {
        if holders.get(key) == Some(&next_offset) {
            holders.remove(key);
        }
    }
}

/// A table of [`BatchRows`], and what its rows hold on the heap.
type TableOf<K, V> = (
    fn(&mut BatchRows) -> &mut HashMap<K, V>,
    fn(&K, &V) -> usize,
);

impl BatchRows {
    /// Approximate bytes held by all five tables.
    fn bytes(&self) -> usize {
        table_bytes(&self.orders, order_row_heap_bytes)
            + table_bytes(&self.stock, stock_row_heap_bytes)
            + table_bytes(&self.reservations, reservation_row_heap_bytes)
            + table_bytes(&self.sku_sales, sku_cell_heap_bytes)
            + table_bytes(&self.minute_sales, minute_cell_heap_bytes)
    }
}

impl PartitionCache {
    fn new(generation_max_bytes: usize) -> Self {
        Self {
            orders: RowCache::new(generation_max_bytes, order_row_heap_bytes),
            stock: RowCache::new(generation_max_bytes, stock_row_heap_bytes),
            reservations: RowCache::new(generation_max_bytes, reservation_row_heap_bytes),
            sku_sales: RowCache::new(generation_max_bytes, sku_cell_heap_bytes),
            minute_sales: RowCache::new(generation_max_bytes, minute_cell_heap_bytes),
            awaiting_sink: VecDeque::new(),
            holders: Holders::default(),
        }
    }

    pub(super) fn held_orders(&mut self) -> Held<'_, String, Option<Versioned<Order>>> {
        Held {
            cache: &mut self.orders,
            awaiting_sink: &self.awaiting_sink,
            table: |rows| &rows.orders,
        }
    }

    pub(super) fn held_stock(&mut self) -> Held<'_, String, Option<Versioned<Stock>>> {
        Held {
            cache: &mut self.stock,
            awaiting_sink: &self.awaiting_sink,
            table: |rows| &rows.stock,
        }
    }

    pub(super) fn held_reservations(
        &mut self,
    ) -> Held<'_, ReservationKey, Option<Versioned<Reservation>>> {
        Held {
            cache: &mut self.reservations,
            awaiting_sink: &self.awaiting_sink,
            table: |rows| &rows.reservations,
        }
    }

    pub(super) fn held_sku_sales(&mut self) -> Held<'_, (String, i64), Versioned<SalesCell>> {
        Held {
            cache: &mut self.sku_sales,
            awaiting_sink: &self.awaiting_sink,
            table: |rows| &rows.sku_sales,
        }
    }

    pub(super) fn held_minute_sales(&mut self) -> Held<'_, i64, Versioned<SalesCell>> {
        Held {
            cache: &mut self.minute_sales,
            awaiting_sink: &self.awaiting_sink,
            table: |rows| &rows.minute_sales,
        }
    }

    /// Approximate bytes of the rows awaiting the sink.
    fn awaiting_sink_bytes(&self) -> usize {
        self.awaiting_sink.iter().map(|batch| batch.bytes).sum()
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

    /// Approximate bytes held by all five tables' caches (not counting the
    /// rows awaiting the sink).
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
    /// The keys each owned partition knows to exist (see
    /// [`crate::store::known_keys`]), read when the partition's first batch
    /// starts and dropped with its cache.
    pub(super) known_keys: HashMap<PartitionKey, PartitionKeys>,
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

/// Takes a row into the batch from the cache or the rows awaiting the sink,
/// or notes that it must be read.
pub(super) fn stage<K, V>(
    rows: &mut HashMap<K, V>,
    mut held: Held<'_, K, V>,
    want: &mut HashSet<K>,
    key: K,
) where
    K: Clone + Eq + Hash,
    V: Clone,
{
    if let Entry::Vacant(slot) = rows.entry(key) {
        match held.get(slot.key()) {
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
            known_keys: HashMap::new(),
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

    /// Approximate bytes held by the rows awaiting the sink, all partitions.
    pub(super) fn awaiting_sink_bytes(&self) -> usize {
        self.caches
            .values()
            .map(PartitionCache::awaiting_sink_bytes)
            .sum()
    }

    /// Keeps `rows`, changed by a committed batch of `part` that ends before
    /// `next_offset`, until the sink has applied them (see [`Self::applied`]).
    pub(super) fn hold_until_applied(
        &mut self,
        part: &PartitionKey,
        next_offset: i64,
        rows: BatchRows,
    ) {
        let cache = self.cache(part);
        let (awaiting, holders) = (&mut cache.awaiting_sink, &mut cache.holders);
        // Rows and holders name their tables alike.
        macro_rules! supersede_in {
            ($table:ident, $heap_bytes:expr) => {{
                let table: TableOf<_, _> = (|r| &mut r.$table, $heap_bytes);
                let held = &mut holders.$table;
                supersede(awaiting, held, &rows.$table, table, next_offset);
            }};
        }
        supersede_in!(orders, order_row_heap_bytes);
        supersede_in!(stock, stock_row_heap_bytes);
        supersede_in!(reservations, reservation_row_heap_bytes);
        supersede_in!(sku_sales, sku_cell_heap_bytes);
        supersede_in!(minute_sales, minute_cell_heap_bytes);
        let bytes = rows.bytes();
        awaiting.push_back(AwaitingSink {
            next_offset,
            rows,
            bytes,
        });
    }

    /// Lets go of the rows of `topic[partition]` that the sink has applied:
    /// those of batches ending at or before `next_offset`. The database now
    /// holds them (or something newer), so reading them there is right again.
    pub(super) fn applied(&mut self, topic: &str, partition: i32, next_offset: i64) {
        let key: PartitionKey = (Arc::from(topic), partition);
        if let Some(cache) = self.caches.get_mut(&key) {
            // Batches are held in commit order: the applied ones lead.
            let (awaiting, holders) = (&mut cache.awaiting_sink, &mut cache.holders);
            while awaiting
                .front()
                .is_some_and(|b| b.next_offset <= next_offset)
            {
                let Some(batch) = awaiting.pop_front() else {
                    break;
                };
                let (rows, at) = (&batch.rows, batch.next_offset);
                release(&mut holders.orders, &rows.orders, at);
                release(&mut holders.stock, &rows.stock, at);
                release(&mut holders.reservations, &rows.reservations, at);
                release(&mut holders.sku_sales, &rows.sku_sales, at);
                release(&mut holders.minute_sales, &rows.minute_sales, at);
            }
        }
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

    /// Drops the caches of partitions another process now owns, and their
    /// rows awaiting the sink: its writes would make them stale.
    pub(super) fn forget_partitions(&mut self, partitions: &[(String, i32)]) {
        let kept = |(topic, p): &PartitionKey| {
            !partitions
                .iter()
                .any(|(t, q)| q == p && t.as_str() == &**topic)
        };
        self.caches.retain(|part, _| kept(part));
        self.known_keys.retain(|part, _| kept(part));
        self.reshare();
    }
}
