//! The shop's projection statements, prepared once at startup: the reads
//! of the rows a batch needs, and the writes of the rows it changed, each
//! stamped with `USING TIMESTAMP <offset>` (see [`Versioned`]).

use std::sync::Arc;
use std::time::Instant;

use scylla::client::session::Session;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;
use scylla::DeserializeRow;

use super::rows::{
    day_of, minute_sales_values, order, order_document_values, order_index_values, parse_document,
    reservation_values, sku_sales_values, stock_values, SalesCell,
};
use crate::domain::inventory::{Reservation, ReservationStatus, Stock};
use crate::domain::order::Order;
use crate::store::known_keys::{KnownKeysStore, PartitionKeys};
use crate::store::marks::RecordMark;
use crate::store::progress::ProgressStore;
use crate::store::{self, read, record_statement, StoreError, Versioned};

/// Every table the shop derives from the input topics, in the order
/// `galley rebuild` empties them. They are emptied together because they
/// depend on each other: an order row's watermark decides whether an order
/// event is applied at all, and only an applied event writes the customer
/// list and the sales, so truncating those alone and replaying leaves them
/// empty. A table whose watermarks decide whether another is written comes
/// before it, so that a rebuild that stops half-way leaves rows that a
/// replay completes (derived rows skip what they already hold) rather than
/// truncated rows that nothing writes again.
///
/// Not here: `orders`, which galley no longer writes (migration 0002), so
/// that a rebuild does not lose rows it cannot derive again.
pub const DERIVED_TABLES: &[&str] = &[
    order::TABLE,
    "inventory",
    "orders_by_customer",
    "sales_by_sku_minute",
    "sales_by_minute",
];

/// The prepared statements of every projection, prepared once at startup.
pub struct ProjectionStore {
    session: Arc<Session>,
    keyspace: String,
    select_order: PreparedStatement,
    upsert_order: PreparedStatement,
    upsert_customer_order: PreparedStatement,
    select_sku_sales: PreparedStatement,
    upsert_sku_sales: PreparedStatement,
    select_minute_sales: PreparedStatement,
    upsert_minute_sales: PreparedStatement,
    select_stock: PreparedStatement,
    select_reservation: PreparedStatement,
    upsert_stock: PreparedStatement,
    upsert_reservation: PreparedStatement,
    progress: ProgressStore,
    known_keys: KnownKeysStore,
}

type BoxedRow = Box<dyn SerializeRow + Send + Sync>;

// What each read of the processor selects, in its statement's order; every
// column but a clustering key may be null in a row the database returns.

/// `select_order`: an order's document (see [`order`]) and its watermark.
#[derive(Debug, DeserializeRow)]
#[scylla(flavor = "enforce_order")]
struct StoredOrder {
    document: Option<String>,
    applied_offset: Option<i64>,
}

/// `select_sku_sales`: a (SKU, minute, source partition) sub-row.
#[derive(Debug, DeserializeRow)]
#[scylla(flavor = "enforce_order")]
struct StoredSkuSales {
    units: Option<i64>,
    revenue_cents: Option<i64>,
    updated_at: Option<CqlTimestamp>,
    applied_offset: Option<i64>,
}

/// `select_minute_sales`: a (minute, source partition) sub-row.
#[derive(Debug, DeserializeRow)]
#[scylla(flavor = "enforce_order")]
struct StoredMinuteSales {
    units: Option<i64>,
    revenue_cents: Option<i64>,
    orders: Option<i64>,
    updated_at: Option<CqlTimestamp>,
    applied_offset: Option<i64>,
}

/// `select_stock`: the static columns of a SKU's inventory partition.
#[derive(Debug, DeserializeRow)]
#[scylla(flavor = "enforce_order")]
struct StoredStock {
    on_hand: Option<i64>,
    reserved: Option<i64>,
    stock_updated_at: Option<CqlTimestamp>,
    stock_applied_offset: Option<i64>,
}

/// `select_reservation`: one order's reservation of a SKU.
#[derive(Debug, DeserializeRow)]
#[scylla(flavor = "enforce_order")]
struct StoredReservation {
    reservation_quantity: Option<i32>,
    reservation_status: Option<String>,
    reservation_applied_offset: Option<i64>,
}

impl ProjectionStore {
    pub async fn prepare(session: Arc<Session>, keyspace: &str) -> Result<Self, StoreError> {
        let ks = keyspace;
        let prep = |cql: String| {
            let session = session.clone();
            async move { store::prepare(&session, &cql).await }
        };
        Ok(Self {
            select_order: prep(format!(
                "SELECT document, applied_offset FROM {ks}.order_documents WHERE order_id = ?"
            ))
            .await?,
            upsert_order: prep(format!(
                "INSERT INTO {ks}.order_documents (order_id, document, source_partition, \
                 applied_offset) VALUES (?, ?, ?, ?) USING TIMESTAMP ?"
            ))
            .await?,
            upsert_customer_order: prep(format!(
                "INSERT INTO {ks}.orders_by_customer (customer_id, placed_at, order_id, status, \
                 currency, total_cents, updated_at, applied_offset) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ))
            .await?,
            select_sku_sales: prep(format!(
                "SELECT units, revenue_cents, updated_at, applied_offset FROM {ks}.sales_by_sku_minute \
                 WHERE sku = ? AND day = ? AND minute = ? AND source_partition = ?"
            ))
            .await?,
            upsert_sku_sales: prep(format!(
                "INSERT INTO {ks}.sales_by_sku_minute (sku, day, minute, source_partition, units, \
                 revenue_cents, updated_at, applied_offset) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
                 USING TIMESTAMP ?"
            ))
            .await?,
            select_minute_sales: prep(format!(
                "SELECT units, revenue_cents, orders, updated_at, applied_offset FROM {ks}.sales_by_minute \
                 WHERE day = ? AND minute = ? AND source_partition = ?"
            ))
            .await?,
            upsert_minute_sales: prep(format!(
                "INSERT INTO {ks}.sales_by_minute (day, minute, source_partition, units, revenue_cents, \
                 orders, updated_at, applied_offset) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ))
            .await?,
            select_stock: prep(format!(
                "SELECT on_hand, reserved, stock_updated_at, stock_applied_offset FROM {ks}.inventory \
                 WHERE sku = ? LIMIT 1"
            ))
            .await?,
            select_reservation: prep(format!(
                "SELECT reservation_quantity, reservation_status, reservation_applied_offset \
                 FROM {ks}.inventory WHERE sku = ? AND order_id = ?"
            ))
            .await?,
            upsert_stock: prep(format!(
                "INSERT INTO {ks}.inventory (sku, on_hand, reserved, stock_updated_at, \
                 stock_applied_offset, source_partition) VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ))
            .await?,
            upsert_reservation: prep(format!(
                "INSERT INTO {ks}.inventory (sku, order_id, reservation_quantity, reservation_status, \
                 reservation_applied_offset) VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ))
            .await?,
            progress: ProgressStore::prepare(session.clone(), keyspace).await?,
            known_keys: KnownKeysStore::prepare(session.clone(), keyspace).await?,
            session,
            keyspace: keyspace.to_string(),
        })
    }

    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    pub fn keyspace(&self) -> &str {
        &self.keyspace
    }

    pub async fn load_order(&self, order_id: &str) -> Result<Option<Versioned<Order>>, StoreError> {
        let row: Option<StoredOrder> = self
            .select_one(
                "select_order",
                order::TABLE,
                &self.select_order,
                (order_id,),
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let value = parse_document(order_id, row.document.as_deref()).map_err(|message| {
            StoreError::Row {
                table: order::TABLE,
                message,
            }
        })?;
        Ok(Some(Versioned {
            value,
            applied_offset: row.applied_offset.unwrap_or(-1),
        }))
    }

    pub async fn load_sku_sales(
        &self,
        sku: &str,
        minute_ms: i64,
        partition: i32,
    ) -> Result<Option<Versioned<SalesCell>>, StoreError> {
        let row: Option<StoredSkuSales> = self
            .select_one(
                "select_sku_sales",
                "sales_by_sku_minute",
                &self.select_sku_sales,
                (sku, day_of(minute_ms), CqlTimestamp(minute_ms), partition),
            )
            .await?;
        Ok(row.map(|row| Versioned {
            value: SalesCell {
                units: row.units.unwrap_or(0),
                revenue_cents: row.revenue_cents.unwrap_or(0),
                orders: 0,
                updated_at_ms: row.updated_at.map(|t| t.0).unwrap_or(0),
            },
            applied_offset: row.applied_offset.unwrap_or(-1),
        }))
    }

    pub async fn load_minute_sales(
        &self,
        minute_ms: i64,
        partition: i32,
    ) -> Result<Option<Versioned<SalesCell>>, StoreError> {
        let row: Option<StoredMinuteSales> = self
            .select_one(
                "select_minute_sales",
                "sales_by_minute",
                &self.select_minute_sales,
                (day_of(minute_ms), CqlTimestamp(minute_ms), partition),
            )
            .await?;
        Ok(row.map(|row| Versioned {
            value: SalesCell {
                units: row.units.unwrap_or(0),
                revenue_cents: row.revenue_cents.unwrap_or(0),
                orders: row.orders.unwrap_or(0),
                updated_at_ms: row.updated_at.map(|t| t.0).unwrap_or(0),
            },
            applied_offset: row.applied_offset.unwrap_or(-1),
        }))
    }

    /// The stock of a SKU (the partition's static columns), if any was ever written.
    pub async fn load_stock(&self, sku: &str) -> Result<Option<Versioned<Stock>>, StoreError> {
        let row: Option<StoredStock> = self
            .select_one("select_stock", "inventory", &self.select_stock, (sku,))
            .await?;
        Ok(row.and_then(|row| {
            // A partition holding only reservation rows has no stock yet.
            let offset = row.stock_applied_offset?;
            Some(Versioned {
                value: Stock {
                    sku: sku.to_string(),
                    on_hand: row.on_hand.unwrap_or(0),
                    reserved: row.reserved.unwrap_or(0),
                    updated_at_ms: row.stock_updated_at.map(|t| t.0).unwrap_or(0),
                },
                applied_offset: offset,
            })
        }))
    }

    pub async fn load_reservation(
        &self,
        sku: &str,
        order_id: &str,
    ) -> Result<Option<Versioned<Reservation>>, StoreError> {
        let row: Option<StoredReservation> = self
            .select_one(
                "select_reservation",
                "inventory",
                &self.select_reservation,
                (sku, order_id),
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let Some(status) = row.reservation_status else {
            return Ok(None);
        };
        let status = status
            .parse::<ReservationStatus>()
            .map_err(|_| StoreError::Row {
                table: "inventory",
                message: format!("reservation {sku}/{order_id}: unknown status `{status}`"),
            })?;
        Ok(Some(Versioned {
            value: Reservation {
                order_id: order_id.to_string(),
                quantity: row.reservation_quantity.unwrap_or(0),
                status,
            },
            applied_offset: row.reservation_applied_offset.unwrap_or(-1),
        }))
    }

    /// Writes an order's entry in its customer's list.
    pub async fn write_order_index(&self, order: &Versioned<Order>) -> Result<(), StoreError> {
        let values = order_index_values(order);
        self.execute("upsert_customer_order", &self.upsert_customer_order, values)
            .await
    }

    /// Writes an order's document (see [`order`]).
    pub async fn write_order(
        &self,
        order: &Versioned<Order>,
        partition: i32,
    ) -> Result<(), StoreError> {
        let values = order_document_values(order, partition)?;
        self.execute("upsert_order", &self.upsert_order, values)
            .await
    }

    pub async fn write_sku_sales(
        &self,
        sku: &str,
        minute_ms: i64,
        partition: i32,
        cell: &Versioned<SalesCell>,
    ) -> Result<(), StoreError> {
        let values = sku_sales_values(sku, minute_ms, partition, cell);
        self.execute("upsert_sku_sales", &self.upsert_sku_sales, values)
            .await
    }

    pub async fn write_minute_sales(
        &self,
        minute_ms: i64,
        partition: i32,
        cell: &Versioned<SalesCell>,
    ) -> Result<(), StoreError> {
        let values = minute_sales_values(minute_ms, partition, cell);
        self.execute("upsert_minute_sales", &self.upsert_minute_sales, values)
            .await
    }

    /// Writes a SKU's stock and the given reservations as one single-partition
    /// batch, which the database applies atomically.
    pub async fn write_inventory(
        &self,
        stock: &Versioned<Stock>,
        reservations: &[&Versioned<Reservation>],
        partition: i32,
    ) -> Result<(), StoreError> {
        let mut batch = Batch::new(BatchType::Unlogged);
        let mut values: Vec<BoxedRow> = Vec::with_capacity(reservations.len() + 1);
        batch.append_statement(self.upsert_stock.clone());
        values.push(Box::new(stock_values(stock, partition)));
        for r in reservations {
            batch.append_statement(self.upsert_reservation.clone());
            values.push(Box::new(reservation_values(&stock.value.sku, r)));
        }
        let started = Instant::now();
        let result = self.session.batch(&batch, values).await;
        record_statement("write_inventory", started, result.is_ok());
        result
            .map(|_| ())
            .map_err(|e| StoreError::query("inventory batch", e))
    }

    pub async fn write_progress(
        &self,
        topic: &str,
        partition: i32,
        newest: &RecordMark,
        newest_event_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.progress
            .write(topic, partition, newest, newest_event_ms, now_ms)
            .await
    }

    /// The keys recorded for `topic[partition]` (see [`crate::store::known_keys`]).
    pub async fn load_known_keys(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<PartitionKeys, StoreError> {
        let has_progress = async {
            let applied = self.progress.applied_offsets(topic).await?;
            Ok(applied.iter().any(|(p, _)| *p == partition))
        };
        self.known_keys.load(topic, partition, has_progress).await
    }

    /// `row_keys`, for recording the keys batches create.
    pub fn known_keys(&self) -> &KnownKeysStore {
        &self.known_keys
    }

    /// Reads the row a statement naming a whole primary key selects, if any.
    async fn select_one<R>(
        &self,
        name: &'static str,
        table: &'static str,
        statement: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<Option<R>, StoreError>
    where
        R: for<'f> scylla::deserialize::row::DeserializeRow<'f, 'f>,
    {
        Ok(read::select_one(&self.session, name, table, statement, values).await?)
    }

    async fn execute(
        &self,
        name: &'static str,
        statement: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<(), StoreError> {
        store::execute(&self.session, name, statement, values).await
    }
}

#[cfg(test)]
#[path = "projections_tests.rs"]
mod tests;
