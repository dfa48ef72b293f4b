//! The shop's projection rows as the database stores them: the values each
//! write binds, built by pure functions so that what the driver serializes
//! can be measured without a session (`benches/hot_path.rs`), and how an
//! order comes back from its row.
//!
//! Every write carries the Kafka offset of the last event applied to the row
//! both as `applied_offset` and as the cell timestamp (see
//! [`Versioned`]).

use scylla::serialize::row::SerializeRow;
use scylla::value::CqlTimestamp;

use crate::domain::inventory::{Reservation, Stock};
use crate::domain::order::{Order, OrderStatus};
use crate::store::{StoreError, Versioned};

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
