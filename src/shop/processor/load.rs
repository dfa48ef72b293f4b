//! Brings the rows a batch needs into its [`BatchRows`]: from the partition's
//! cache when it holds them, or from the rows awaiting the changelog sink,
//! otherwise from the database.
//!
//! Each step reads everything it misses in one wave of concurrent reads, so
//! a batch waits for the slowest read once, not once per row or per table;
//! keys that share a statement's other columns go in one read of up to
//! [`KEYS_PER_READ`]: orders by id, one order's reservations across its
//! SKUs, one minute's SKU cells.

use std::collections::{BTreeMap, HashSet};

use futures::future::{BoxFuture, FutureExt};
use futures::stream::{self, StreamExt, TryStreamExt};

use super::cache::{stage, BatchRows, PartitionCache, PartitionKey, ReservationKey};
use super::decode::Decoded;
use super::sales::SaleContribution;
use super::ShopProcessor;
use crate::codec::EventSet;
use crate::domain::inventory::{Reservation, Stock};
use crate::domain::order::Order;
use crate::domain::InventoryEvent;
use crate::pipeline::InputRecord;
use crate::shop::projections::{ProjectionStore, KEYS_PER_READ};
use crate::shop::rows::SalesCell;
use crate::store::{StoreError, Versioned};

/// The order, stock and reservation rows a batch needs and the cache lacks.
#[derive(Default)]
struct MissingEntityRows {
    orders: HashSet<String>,
    stock: HashSet<String>,
    reservations: HashSet<ReservationKey>,
}

/// Rows read for a batch, with their keys (`None`: the row does not exist).
enum LoadedRows {
    Orders(Vec<(String, Option<Versioned<Order>>)>),
    Stock(Option<Versioned<Stock>>, String),
    Reservations(Vec<(ReservationKey, Option<Versioned<Reservation>>)>),
}

/// The sales cells a batch needs and the cache lacks.
#[derive(Default)]
struct MissingCells {
    sku: HashSet<(String, i64)>,
    minute: HashSet<i64>,
}

/// A SKU's sales cell of one minute (epoch milliseconds).
type SkuMinute = (String, i64);

/// Sales cells read for a batch, with their keys.
enum LoadedCells {
    Sku(Vec<(SkuMinute, Option<Versioned<SalesCell>>)>),
    Minute(Option<Versioned<SalesCell>>, i64),
}

/// `keys` grouped by what they share besides their own part, each group
/// cut into reads of at most [`KEYS_PER_READ`] keys. Sorted, so that the
/// same set of keys always makes the same reads.
fn grouped_reads<G: Ord + Clone, K: Ord>(
    keys: impl IntoIterator<Item = (G, K)>,
) -> Vec<(G, Vec<K>)> {
    let mut groups: BTreeMap<G, Vec<K>> = BTreeMap::new();
    for (group, key) in keys {
        groups.entry(group).or_default().push(key);
    }
    let mut reads = Vec::new();
    for (group, mut keys) in groups {
        keys.sort();
        while !keys.is_empty() {
            let rest = keys.split_off(keys.len().min(KEYS_PER_READ));
            reads.push((group.clone(), std::mem::replace(&mut keys, rest)));
        }
    }
    reads
}

/// The order whose reservation an inventory event concerns, if any.
pub(super) fn reservation_order(event: &InventoryEvent) -> Option<&str> {
    match event {
        InventoryEvent::ReservationRequested(e) => Some(&e.order_id),
        InventoryEvent::ReleaseRequested(e) => Some(&e.order_id),
        InventoryEvent::FulfilmentRequested(e) => Some(&e.order_id),
        InventoryEvent::Received(_) | InventoryEvent::Adjusted(_) => None,
    }
}

impl ShopProcessor {
    /// Fills `rows` with every order, stock and reservation row the events
    /// will touch, from the cache or else from the database.
    pub(super) async fn load_entity_rows(
        &mut self,
        part: &PartitionKey,
        events: &[(&InputRecord, Decoded)],
        rows: &mut BatchRows,
    ) -> Result<(), StoreError> {
        let missing = stage_entity_rows(self.caches.cache(part), events, rows);
        let limit = self.settings.max_concurrent_statements;
        read_entity_rows(&self.store, missing, limit, rows).await
    }

    /// Fills `rows` with every sales cell the sales will add to, from the
    /// cache or else from the database.
    pub(super) async fn load_sales_rows(
        &mut self,
        part: &PartitionKey,
        sales: &[SaleContribution],
        rows: &mut BatchRows,
    ) -> Result<(), StoreError> {
        let missing = stage_sales_cells(self.caches.cache(part), sales, rows);
        let limit = self.settings.max_concurrent_statements;
        read_sales_cells(&self.store, missing, part.1, limit, rows).await
    }
}

fn stage_entity_rows(
    cache: &mut PartitionCache,
    events: &[(&InputRecord, Decoded)],
    rows: &mut BatchRows,
) -> MissingEntityRows {
    let mut missing = MissingEntityRows::default();
    for (_, event) in events {
        match event {
            Decoded::Order(e) => {
                let id = e.key().to_string();
                stage(
                    &mut rows.orders,
                    cache.held_orders(),
                    &mut missing.orders,
                    id,
                );
            }
            Decoded::Inventory(e) => {
                let sku = e.key().to_string();
                if let Some(order_id) = reservation_order(e) {
                    let key = (sku.clone(), order_id.to_string());
                    stage(
                        &mut rows.reservations,
                        cache.held_reservations(),
                        &mut missing.reservations,
                        key,
                    );
                }
                stage(&mut rows.stock, cache.held_stock(), &mut missing.stock, sku);
            }
        }
    }
    missing
}

async fn read_entity_rows(
    store: &ProjectionStore,
    missing: MissingEntityRows,
    limit: usize,
    rows: &mut BatchRows,
) -> Result<(), StoreError> {
    let order_reads = grouped_reads(missing.orders.into_iter().map(|id| ((), id)));
    let reservation_reads = grouped_reads(
        missing
            .reservations
            .into_iter()
            .map(|(sku, order_id)| (order_id, sku)),
    );
    let reads: Vec<BoxFuture<'_, Result<LoadedRows, StoreError>>> = order_reads
        .into_iter()
        .map(|((), ids)| {
            async move {
                let mut found = store.load_orders(&ids).await?;
                let rows = ids.into_iter().map(|id| {
                    let row = found.remove(&id);
                    (id, row)
                });
                Ok(LoadedRows::Orders(rows.collect()))
            }
            .boxed()
        })
        .chain(missing.stock.into_iter().map(|sku| {
            async move { Ok(LoadedRows::Stock(store.load_stock(&sku).await?, sku)) }.boxed()
        }))
        .chain(reservation_reads.into_iter().map(|(order_id, skus)| {
            async move {
                let mut found = store.load_reservations(&order_id, &skus).await?;
                let rows = skus.into_iter().map(|sku| {
                    let row = found.remove(&sku);
                    ((sku, order_id.clone()), row)
                });
                Ok(LoadedRows::Reservations(rows.collect()))
            }
            .boxed()
        }))
        .collect();
    let mut loaded = stream::iter(reads).buffer_unordered(limit.max(1));
    while let Some(read) = loaded.try_next().await? {
        match read {
            LoadedRows::Orders(orders) => rows.orders.extend(orders),
            LoadedRows::Stock(v, sku) => {
                rows.stock.insert(sku, v);
            }
            LoadedRows::Reservations(reservations) => rows.reservations.extend(reservations),
        }
    }
    Ok(())
}

fn stage_sales_cells(
    cache: &mut PartitionCache,
    sales: &[SaleContribution],
    rows: &mut BatchRows,
) -> MissingCells {
    let mut missing = MissingCells::default();
    for sale in sales {
        let key = (sale.sku.clone(), sale.minute_ms);
        stage(
            &mut rows.sku_sales,
            cache.held_sku_sales(),
            &mut missing.sku,
            key,
        );
        stage(
            &mut rows.minute_sales,
            cache.held_minute_sales(),
            &mut missing.minute,
            sale.minute_ms,
        );
    }
    missing
}

async fn read_sales_cells(
    store: &ProjectionStore,
    missing: MissingCells,
    partition: i32,
    limit: usize,
    rows: &mut BatchRows,
) -> Result<(), StoreError> {
    let sku_reads = grouped_reads(missing.sku.into_iter().map(|(sku, minute)| (minute, sku)));
    let reads: Vec<BoxFuture<'_, Result<LoadedCells, StoreError>>> = sku_reads
        .into_iter()
        .map(|(minute, skus)| {
            async move {
                let mut found = store.load_sku_sales(&skus, minute, partition).await?;
                let cells = skus.into_iter().map(|sku| {
                    let cell = found.remove(&sku);
                    ((sku, minute), cell)
                });
                Ok(LoadedCells::Sku(cells.collect()))
            }
            .boxed()
        })
        .chain(missing.minute.into_iter().map(|minute| {
            async move {
                let cell = store.load_minute_sales(minute, partition).await?;
                Ok(LoadedCells::Minute(cell, minute))
            }
            .boxed()
        }))
        .collect();
    let mut loaded = stream::iter(reads).buffer_unordered(limit.max(1));
    while let Some(read) = loaded.try_next().await? {
        match read {
            LoadedCells::Sku(cells) => rows
                .sku_sales
                .extend(cells.into_iter().map(|(key, cell)| (key, or_empty(cell)))),
            LoadedCells::Minute(v, minute) => {
                rows.minute_sales.insert(minute, or_empty(v));
            }
        }
    }
    Ok(())
}

/// A cell never written counts nothing and holds no event yet.
fn or_empty(cell: Option<Versioned<SalesCell>>) -> Versioned<SalesCell> {
    cell.unwrap_or(Versioned {
        value: SalesCell::default(),
        applied_offset: -1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_reads_name_every_key_once_in_reads_of_one_group_each_within_the_limit() {
        let keys: Vec<(u8, u32)> = (0..200u32).map(|k| ((k % 3) as u8, k)).collect();
        let reads = grouped_reads(keys.clone());
        let mut named: Vec<(u8, u32)> = Vec::new();
        for (group, keys) in &reads {
            assert!(!keys.is_empty() && keys.len() <= KEYS_PER_READ, "{keys:?}");
            named.extend(keys.iter().map(|k| (*group, *k)));
        }
        named.sort();
        let mut expected = keys;
        expected.sort();
        assert_eq!(named, expected);
        // 67, 67 and 66 keys per group, cut into as few reads as the limit allows.
        let fewest: usize = [67usize, 67, 66]
            .iter()
            .map(|n| n.div_ceil(KEYS_PER_READ))
            .sum();
        assert_eq!(reads.len(), fewest);
    }
}
