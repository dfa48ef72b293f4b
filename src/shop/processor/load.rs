//! Brings the rows a batch needs into its [`BatchRows`]: from the partition's
//! cache when it holds them, or from the rows awaiting the changelog sink,
//! otherwise from the database.
//!
//! Each step reads everything it misses in one wave of concurrent reads, so
//! a batch waits for the slowest read once, not once per row or per table.

use std::collections::HashSet;

use futures::future::{BoxFuture, FutureExt};
use futures::stream::{self, StreamExt, TryStreamExt};

use super::cache::{stage, BatchRows, PartitionCache, PartitionKey, ReservationKey};
use super::decode::Decoded;
use super::known::{
    minute_cell_key, order_key, reservation_key, settle_absent, sku_cell_key, stock_key,
};
use super::sales::SaleContribution;
use super::ShopProcessor;
use crate::codec::EventSet;
use crate::domain::inventory::{Reservation, Stock};
use crate::domain::order::Order;
use crate::domain::InventoryEvent;
use crate::pipeline::InputRecord;
use crate::shop::projections::ProjectionStore;
use crate::shop::rows::SalesCell;
use crate::store::{StoreError, Versioned};

/// The order, stock and reservation rows a batch needs and the cache lacks.
#[derive(Default)]
struct MissingEntityRows {
    orders: HashSet<String>,
    stock: HashSet<String>,
    reservations: HashSet<ReservationKey>,
}

/// A row read for a batch, with its key.
enum LoadedRow {
    Order(Option<Versioned<Order>>, String),
    Stock(Option<Versioned<Stock>>, String),
    Reservation(Option<Versioned<Reservation>>, ReservationKey),
}

/// The sales cells a batch needs and the cache lacks.
#[derive(Default)]
struct MissingCells {
    sku: HashSet<(String, i64)>,
    minute: HashSet<i64>,
}

/// A sales cell read for a batch, with its key.
enum LoadedCell {
    Sku(Option<Versioned<SalesCell>>, (String, i64)),
    Minute(Option<Versioned<SalesCell>>, i64),
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
    /// Reads the keys `part` knows to exist, once per ownership: after the
    /// partition was taken, before its first batch reads a row.
    pub(super) async fn load_known_keys(&mut self, part: &PartitionKey) -> Result<(), StoreError> {
        if self.caches.known_keys.contains_key(part) {
            return Ok(());
        }
        let keys = self.store.load_known_keys(&part.0, part.1).await?;
        if !keys.is_complete() {
            tracing::info!(
                topic = %part.0,
                partition = part.1,
                "rows of this partition were written before their keys were recorded: \
                 every row it needs is read from the database"
            );
        }
        self.caches.known_keys.insert(part.clone(), keys);
        Ok(())
    }

    /// Fills `rows` with every order, stock and reservation row the events
    /// will touch, from the cache or else from the database.
    pub(super) async fn load_entity_rows(
        &mut self,
        part: &PartitionKey,
        events: &[(&InputRecord, Decoded)],
        rows: &mut BatchRows,
    ) -> Result<(), StoreError> {
        let mut missing = stage_entity_rows(self.caches.cache(part), events, rows);
        let known = self.caches.known_keys.get(part);
        settle_absent(
            known,
            &mut missing.orders,
            &mut rows.orders,
            |id| order_key(id),
            None,
        );
        settle_absent(
            known,
            &mut missing.stock,
            &mut rows.stock,
            |sku| stock_key(sku),
            None,
        );
        let reservation = |(sku, order): &ReservationKey| reservation_key(sku, order);
        settle_absent(
            known,
            &mut missing.reservations,
            &mut rows.reservations,
            reservation,
            None,
        );
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
        let mut missing = stage_sales_cells(self.caches.cache(part), sales, rows);
        let known = self.caches.known_keys.get(part);
        let sku_cell = |(sku, minute): &(String, i64)| sku_cell_key(sku, *minute);
        settle_absent(
            known,
            &mut missing.sku,
            &mut rows.sku_sales,
            sku_cell,
            or_empty(None),
        );
        settle_absent(
            known,
            &mut missing.minute,
            &mut rows.minute_sales,
            minute_cell_key,
            or_empty(None),
        );
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
    let reads: Vec<BoxFuture<'_, Result<LoadedRow, StoreError>>> = missing
        .orders
        .into_iter()
        .map(|id| async move { Ok(LoadedRow::Order(store.load_order(&id).await?, id)) }.boxed())
        .chain(missing.stock.into_iter().map(|sku| {
            async move { Ok(LoadedRow::Stock(store.load_stock(&sku).await?, sku)) }.boxed()
        }))
        .chain(missing.reservations.into_iter().map(|key| {
            async move {
                let row = store.load_reservation(&key.0, &key.1).await?;
                Ok(LoadedRow::Reservation(row, key))
            }
            .boxed()
        }))
        .collect();
    let mut loaded = stream::iter(reads).buffer_unordered(limit.max(1));
    while let Some(row) = loaded.try_next().await? {
        match row {
            LoadedRow::Order(v, id) => {
                rows.orders.insert(id, v);
            }
            LoadedRow::Stock(v, sku) => {
                rows.stock.insert(sku, v);
            }
            LoadedRow::Reservation(v, key) => {
                rows.reservations.insert(key, v);
            }
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
    let reads: Vec<BoxFuture<'_, Result<LoadedCell, StoreError>>> = missing
        .sku
        .into_iter()
        .map(|key| {
            async move {
                let cell = store.load_sku_sales(&key.0, key.1, partition).await?;
                Ok(LoadedCell::Sku(cell, key))
            }
            .boxed()
        })
        .chain(missing.minute.into_iter().map(|minute| {
            async move {
                let cell = store.load_minute_sales(minute, partition).await?;
                Ok(LoadedCell::Minute(cell, minute))
            }
            .boxed()
        }))
        .collect();
    let mut loaded = stream::iter(reads).buffer_unordered(limit.max(1));
    while let Some(cell) = loaded.try_next().await? {
        match cell {
            LoadedCell::Sku(v, key) => {
                rows.sku_sales.insert(key, or_empty(v));
            }
            LoadedCell::Minute(v, minute) => {
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
