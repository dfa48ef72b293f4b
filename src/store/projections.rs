//! The shop's projection rows: prepared statements, reads by primary key, and
//! writes stamped with `USING TIMESTAMP <offset>`.
//!
//! Every write carries the Kafka offset of the last event applied to the row
//! both as `applied_offset` (read back to skip events already applied) and as
//! the cell timestamp (so that of two writers of one row, the one further
//! along its partition wins, whatever order the writes arrive in).

use std::sync::Arc;
use std::time::Instant;

use scylla::client::session::Session;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;

use super::{record_statement, StoreError};
use crate::domain::inventory::{Reservation, ReservationStatus, Stock};
use crate::domain::order::{Order, OrderStatus};

/// A row value together with the offset of the last event applied to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub applied_offset: i64,
}

/// Units and revenue of one (minute, source partition) sales cell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SalesCell {
    pub units: i64,
    pub revenue_cents: i64,
    /// Orders paid in this minute (kept for the overall table only).
    pub orders: i64,
    pub updated_at_ms: i64,
}

/// The columns of an order row that every reader selects, in this order:
/// customer_id, status, currency, total_cents, paid_cents, lines, timeline,
/// placed_at, updated_at, then one column of the reader's own choosing.
pub type OrderColumns<Extra> = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<CqlTimestamp>,
    Option<CqlTimestamp>,
    Option<Extra>,
);

/// Rebuilds an order from its row; the error says what is malformed.
pub(crate) fn order_from_columns<Extra>(
    order_id: &str,
    columns: OrderColumns<Extra>,
) -> Result<(Order, Option<Extra>), String> {
    let (customer, status, currency, total, paid, lines, timeline, placed, updated, extra) =
        columns;
    let status = status.unwrap_or_default();
    let order = Order {
        order_id: order_id.to_string(),
        customer_id: customer.unwrap_or_default(),
        status: OrderStatus::parse(&status)
            .ok_or_else(|| format!("order {order_id}: unknown status `{status}`"))?,
        lines: serde_json::from_str(lines.as_deref().unwrap_or("[]"))
            .map_err(|e| format!("order {order_id}: lines: {e}"))?,
        currency: currency.unwrap_or_default(),
        total_cents: total.unwrap_or(0),
        paid_cents: paid.unwrap_or(0),
        placed_at_ms: placed.map(|t| t.0).unwrap_or(0),
        updated_at_ms: updated.map(|t| t.0).unwrap_or(0),
        timeline: serde_json::from_str(timeline.as_deref().unwrap_or("[]"))
            .map_err(|e| format!("order {order_id}: timeline: {e}"))?,
    };
    Ok((order, extra))
}

/// Days since the Unix epoch: the partition bucket of the sales tables.
pub fn day_of(minute_ms: i64) -> i32 {
    minute_ms.div_euclid(86_400_000) as i32
}

// The values each write binds, built by pure functions so that what the
// driver serializes can be measured without a session (`benches/hot_path.rs`).
// Each is the statement's columns in order, then `USING TIMESTAMP`.

/// `orders_by_customer`: customer_id, placed_at, order_id, status, currency,
/// total_cents, updated_at, applied_offset, timestamp.
pub fn order_index_values(order: &Versioned<Order>) -> impl SerializeRow + Send + Sync + '_ {
    let o = &order.value;
    (
        o.customer_id.as_str(),
        CqlTimestamp(o.placed_at_ms),
        o.order_id.as_str(),
        o.status.as_str(),
        o.currency.as_str(),
        o.total_cents,
        CqlTimestamp(o.updated_at_ms),
        order.applied_offset,
        order.applied_offset,
    )
}

/// `orders`: order_id, customer_id, status, currency, total_cents,
/// paid_cents, lines (JSON), timeline (JSON), placed_at, updated_at,
/// source_partition, applied_offset, timestamp. Fails only if `lines` or
/// `timeline` cannot be encoded as JSON.
pub fn order_values(
    order: &Versioned<Order>,
    partition: i32,
) -> Result<impl SerializeRow + Send + Sync + '_, StoreError> {
    let o = &order.value;
    let encode = |what: &str, r: serde_json::Result<String>| {
        r.map_err(|e| StoreError::Row {
            table: "orders",
            message: format!("order {}: cannot encode {what}: {e}", o.order_id),
        })
    };
    let lines = encode("lines", serde_json::to_string(&o.lines))?;
    let timeline = encode("timeline", serde_json::to_string(&o.timeline))?;
    Ok((
        o.order_id.as_str(),
        o.customer_id.as_str(),
        o.status.as_str(),
        o.currency.as_str(),
        o.total_cents,
        o.paid_cents,
        lines,
        timeline,
        CqlTimestamp(o.placed_at_ms),
        CqlTimestamp(o.updated_at_ms),
        partition,
        order.applied_offset,
        order.applied_offset,
    ))
}

/// `sales_by_sku_minute`: sku, day, minute, source_partition, units,
/// revenue_cents, updated_at, applied_offset, timestamp.
pub fn sku_sales_values<'a>(
    sku: &'a str,
    minute_ms: i64,
    partition: i32,
    cell: &Versioned<SalesCell>,
) -> impl SerializeRow + Send + Sync + 'a {
    (
        sku,
        day_of(minute_ms),
        CqlTimestamp(minute_ms),
        partition,
        cell.value.units,
        cell.value.revenue_cents,
        CqlTimestamp(cell.value.updated_at_ms),
        cell.applied_offset,
        cell.applied_offset,
    )
}

/// `sales_by_minute`: day, minute, source_partition, units, revenue_cents,
/// orders, updated_at, applied_offset, timestamp.
pub fn minute_sales_values(
    minute_ms: i64,
    partition: i32,
    cell: &Versioned<SalesCell>,
) -> impl SerializeRow + Send + Sync {
    (
        day_of(minute_ms),
        CqlTimestamp(minute_ms),
        partition,
        cell.value.units,
        cell.value.revenue_cents,
        cell.value.orders,
        CqlTimestamp(cell.value.updated_at_ms),
        cell.applied_offset,
        cell.applied_offset,
    )
}

/// A stock row of `inventory`: sku, on_hand, reserved, stock_updated_at,
/// stock_applied_offset, source_partition, timestamp. Owned, because a batch
/// keeps its values boxed for the whole call.
pub fn stock_values(
    stock: &Versioned<Stock>,
    partition: i32,
) -> impl SerializeRow + Send + Sync + 'static {
    let s = &stock.value;
    (
        s.sku.clone(),
        s.on_hand,
        s.reserved,
        CqlTimestamp(s.updated_at_ms),
        stock.applied_offset,
        partition,
        stock.applied_offset,
    )
}

/// A reservation row of `inventory`: sku, order_id, reservation_quantity,
/// reservation_status, reservation_applied_offset, timestamp. Owned, like
/// [`stock_values`].
pub fn reservation_values(
    sku: &str,
    reservation: &Versioned<Reservation>,
) -> impl SerializeRow + Send + Sync + 'static {
    (
        sku.to_owned(),
        reservation.value.order_id.clone(),
        reservation.value.quantity,
        reservation.value.status.as_str(),
        reservation.applied_offset,
        reservation.applied_offset,
    )
}

/// `partition_progress`: topic, partition, applied_offset,
/// newest_event_time, updated_at, timestamp.
pub fn progress_values(
    topic: &str,
    partition: i32,
    applied_offset: i64,
    newest_event_ms: i64,
    now_ms: i64,
) -> impl SerializeRow + Send + Sync + '_ {
    (
        topic,
        partition,
        applied_offset,
        CqlTimestamp(newest_event_ms),
        CqlTimestamp(now_ms),
        applied_offset,
    )
}

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
    upsert_progress: PreparedStatement,
}

type BoxedRow = Box<dyn SerializeRow + Send + Sync>;
/// units or on_hand, revenue or reserved, updated_at, applied_offset.
type FourColumns = (Option<i64>, Option<i64>, Option<CqlTimestamp>, Option<i64>);

impl ProjectionStore {
    pub async fn prepare(session: Arc<Session>, keyspace: &str) -> Result<Self, StoreError> {
        let ks = keyspace;
        let prep = |cql: String| {
            let session = session.clone();
            async move {
                session
                    .prepare(cql.as_str())
                    .await
                    .map_err(|e| StoreError::query(&cql, e))
            }
        };
        Ok(Self {
            select_order: prep(format!(
                "SELECT customer_id, status, currency, total_cents, paid_cents, lines, timeline, \
                 placed_at, updated_at, applied_offset FROM {ks}.orders WHERE order_id = ?"
            ))
            .await?,
            upsert_order: prep(format!(
                "INSERT INTO {ks}.orders (order_id, customer_id, status, currency, total_cents, \
                 paid_cents, lines, timeline, placed_at, updated_at, source_partition, applied_offset) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
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
            upsert_progress: prep(format!(
                "INSERT INTO {ks}.partition_progress (topic, partition, applied_offset, \
                 newest_event_time, updated_at) VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ))
            .await?,
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
        let row: Option<OrderColumns<i64>> = self
            .select_one("select_order", &self.select_order, (order_id,))
            .await?;
        let Some(columns) = row else {
            return Ok(None);
        };
        let (order, offset) =
            order_from_columns(order_id, columns).map_err(|message| StoreError::Row {
                table: "orders",
                message,
            })?;
        Ok(Some(Versioned {
            value: order,
            applied_offset: offset.unwrap_or(-1),
        }))
    }

    pub async fn load_sku_sales(
        &self,
        sku: &str,
        minute_ms: i64,
        partition: i32,
    ) -> Result<Option<Versioned<SalesCell>>, StoreError> {
        let row: Option<FourColumns> = self
            .select_one(
                "select_sku_sales",
                &self.select_sku_sales,
                (sku, day_of(minute_ms), CqlTimestamp(minute_ms), partition),
            )
            .await?;
        Ok(row.map(|(units, revenue, updated, offset)| Versioned {
            value: SalesCell {
                units: units.unwrap_or(0),
                revenue_cents: revenue.unwrap_or(0),
                orders: 0,
                updated_at_ms: updated.map(|t| t.0).unwrap_or(0),
            },
            applied_offset: offset.unwrap_or(-1),
        }))
    }

    pub async fn load_minute_sales(
        &self,
        minute_ms: i64,
        partition: i32,
    ) -> Result<Option<Versioned<SalesCell>>, StoreError> {
        type Row = (
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<CqlTimestamp>,
            Option<i64>,
        );
        let row: Option<Row> = self
            .select_one(
                "select_minute_sales",
                &self.select_minute_sales,
                (day_of(minute_ms), CqlTimestamp(minute_ms), partition),
            )
            .await?;
        Ok(
            row.map(|(units, revenue, orders, updated, offset)| Versioned {
                value: SalesCell {
                    units: units.unwrap_or(0),
                    revenue_cents: revenue.unwrap_or(0),
                    orders: orders.unwrap_or(0),
                    updated_at_ms: updated.map(|t| t.0).unwrap_or(0),
                },
                applied_offset: offset.unwrap_or(-1),
            }),
        )
    }

    /// The stock of a SKU (the partition's static columns), if any was ever written.
    pub async fn load_stock(&self, sku: &str) -> Result<Option<Versioned<Stock>>, StoreError> {
        let row: Option<FourColumns> = self
            .select_one("select_stock", &self.select_stock, (sku,))
            .await?;
        Ok(row.and_then(|(on_hand, reserved, updated, offset)| {
            // A partition holding only reservation rows has no stock yet.
            let offset = offset?;
            Some(Versioned {
                value: Stock {
                    sku: sku.to_string(),
                    on_hand: on_hand.unwrap_or(0),
                    reserved: reserved.unwrap_or(0),
                    updated_at_ms: updated.map(|t| t.0).unwrap_or(0),
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
        let row: Option<(Option<i32>, Option<String>, Option<i64>)> = self
            .select_one(
                "select_reservation",
                &self.select_reservation,
                (sku, order_id),
            )
            .await?;
        let Some((quantity, status, offset)) = row else {
            return Ok(None);
        };
        let Some(status) = status else {
            return Ok(None);
        };
        let status = ReservationStatus::parse(&status).ok_or_else(|| StoreError::Row {
            table: "inventory",
            message: format!("reservation {sku}/{order_id}: unknown status `{status}`"),
        })?;
        Ok(Some(Versioned {
            value: Reservation {
                order_id: order_id.to_string(),
                quantity: quantity.unwrap_or(0),
                status,
            },
            applied_offset: offset.unwrap_or(-1),
        }))
    }

    /// Writes an order row and its entry in the customer's list.
    pub async fn write_order_index(&self, order: &Versioned<Order>) -> Result<(), StoreError> {
        let values = order_index_values(order);
        self.execute("upsert_customer_order", &self.upsert_customer_order, values)
            .await
    }

    pub async fn write_order(
        &self,
        order: &Versioned<Order>,
        partition: i32,
    ) -> Result<(), StoreError> {
        let values = order_values(order, partition)?;
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
        applied_offset: i64,
        newest_event_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let values = progress_values(topic, partition, applied_offset, newest_event_ms, now_ms);
        self.execute("upsert_progress", &self.upsert_progress, values)
            .await
    }

    async fn select_one<R>(
        &self,
        name: &'static str,
        statement: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<Option<R>, StoreError>
    where
        R: for<'f> scylla::deserialize::row::DeserializeRow<'f, 'f>,
    {
        let started = Instant::now();
        let result = self.session.execute_unpaged(statement, values).await;
        record_statement(name, started, result.is_ok());
        let rows = result
            .map_err(|e| StoreError::query(name, e))?
            .into_rows_result()
            .map_err(|e| StoreError::query(name, e))?;
        rows.maybe_first_row::<R>()
            .map_err(|e| StoreError::query(name, e))
    }

    async fn execute(
        &self,
        name: &'static str,
        statement: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.session.execute_unpaged(statement, values).await;
        record_statement(name, started, result.is_ok());
        result.map(|_| ()).map_err(|e| StoreError::query(name, e))
    }
}
