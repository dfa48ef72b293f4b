//! The shop's projection rows as the database stores them: the values each
//! write binds, built by pure functions so that what the driver serializes
//! can be measured without a session (`benches/hot_path.rs`). The order by
//! id is one JSON document: see [`order`].
//!
//! Every write carries the Kafka offset of the last event applied to the row
//! both as `applied_offset` and as the cell timestamp (see
//! [`Versioned`]).

pub mod order;

use scylla::value::CqlTimestamp;
use scylla::SerializeRow;
use serde::{Deserialize, Serialize};

use crate::domain::inventory::{Reservation, Stock};
use crate::domain::order::Order;
use crate::store::Versioned;

pub use order::{order_document_values, parse_document, OrderDocumentValues};

/// Units and revenue of one (minute, source partition) sales cell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesCell {
    pub units: i64,
    pub revenue_cents: i64,
    /// Orders paid in this minute (kept for the overall table only).
    pub orders: i64,
    pub updated_at_ms: i64,
}

/// Days since the Unix epoch: the partition bucket of the sales tables.
pub fn day_of(minute_ms: i64) -> i32 {
    minute_ms.div_euclid(86_400_000) as i32
}

// The values each write binds: one struct per statement, its fields in the
// statement's order and named as its bind markers (the derive checks both
// when it serializes, so a struct that drifts from its statement fails
// loudly), built by pure functions so that what the driver serializes can be
// measured without a session (`benches/hot_path.rs`). The database names the
// `USING TIMESTAMP ?` marker `[timestamp]`.

/// Bound values of the `orders_by_customer` upsert: an order's entry in its
/// customer's list.
#[derive(Debug, Clone, PartialEq, SerializeRow)]
#[scylla(flavor = "enforce_order")]
pub struct OrderIndexValues<'a> {
    pub customer_id: &'a str,
    pub placed_at: CqlTimestamp,
    pub order_id: &'a str,
    pub status: &'static str,
    pub currency: &'a str,
    pub total_cents: i64,
    pub updated_at: CqlTimestamp,
    pub applied_offset: i64,
    #[scylla(rename = "[timestamp]")]
    pub write_timestamp: i64,
}

pub fn order_index_values(order: &Versioned<Order>) -> OrderIndexValues<'_> {
    let o = &order.value;
    OrderIndexValues {
        customer_id: &o.customer_id,
        placed_at: CqlTimestamp(o.placed_at_ms),
        order_id: &o.order_id,
        status: o.status.into_str(),
        currency: &o.currency,
        total_cents: o.total_cents,
        updated_at: CqlTimestamp(o.updated_at_ms),
        applied_offset: order.applied_offset,
        write_timestamp: order.applied_offset,
    }
}

/// Bound values of the `sales_by_sku_minute` upsert: one (SKU, minute,
/// source partition) sub-row.
#[derive(Debug, Clone, PartialEq, SerializeRow)]
#[scylla(flavor = "enforce_order")]
pub struct SkuSalesValues<'a> {
    pub sku: &'a str,
    pub day: i32,
    pub minute: CqlTimestamp,
    pub source_partition: i32,
    pub units: i64,
    pub revenue_cents: i64,
    pub updated_at: CqlTimestamp,
    pub applied_offset: i64,
    #[scylla(rename = "[timestamp]")]
    pub write_timestamp: i64,
}

pub fn sku_sales_values<'a>(
    sku: &'a str,
    minute_ms: i64,
    partition: i32,
    cell: &Versioned<SalesCell>,
) -> SkuSalesValues<'a> {
    SkuSalesValues {
        sku,
        day: day_of(minute_ms),
        minute: CqlTimestamp(minute_ms),
        source_partition: partition,
        units: cell.value.units,
        revenue_cents: cell.value.revenue_cents,
        updated_at: CqlTimestamp(cell.value.updated_at_ms),
        applied_offset: cell.applied_offset,
        write_timestamp: cell.applied_offset,
    }
}

/// Bound values of the `sales_by_minute` upsert: one (minute, source
/// partition) sub-row of the overall sales.
#[derive(Debug, Clone, PartialEq, SerializeRow)]
#[scylla(flavor = "enforce_order")]
pub struct MinuteSalesValues {
    pub day: i32,
    pub minute: CqlTimestamp,
    pub source_partition: i32,
    pub units: i64,
    pub revenue_cents: i64,
    pub orders: i64,
    pub updated_at: CqlTimestamp,
    pub applied_offset: i64,
    #[scylla(rename = "[timestamp]")]
    pub write_timestamp: i64,
}

pub fn minute_sales_values(
    minute_ms: i64,
    partition: i32,
    cell: &Versioned<SalesCell>,
) -> MinuteSalesValues {
    MinuteSalesValues {
        day: day_of(minute_ms),
        minute: CqlTimestamp(minute_ms),
        source_partition: partition,
        units: cell.value.units,
        revenue_cents: cell.value.revenue_cents,
        orders: cell.value.orders,
        updated_at: CqlTimestamp(cell.value.updated_at_ms),
        applied_offset: cell.applied_offset,
        write_timestamp: cell.applied_offset,
    }
}

/// Bound values of the stock upsert of `inventory` (the partition's static
/// columns). Owned, because a batch keeps its values boxed for the whole call.
#[derive(Debug, Clone, PartialEq, SerializeRow)]
#[scylla(flavor = "enforce_order")]
pub struct StockValues {
    pub sku: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub stock_updated_at: CqlTimestamp,
    pub stock_applied_offset: i64,
    pub source_partition: i32,
    #[scylla(rename = "[timestamp]")]
    pub write_timestamp: i64,
}

pub fn stock_values(stock: &Versioned<Stock>, partition: i32) -> StockValues {
    let s = &stock.value;
    StockValues {
        sku: s.sku.clone(),
        on_hand: s.on_hand,
        reserved: s.reserved,
        stock_updated_at: CqlTimestamp(s.updated_at_ms),
        stock_applied_offset: stock.applied_offset,
        source_partition: partition,
        write_timestamp: stock.applied_offset,
    }
}

/// Bound values of the reservation upsert of `inventory` (one clustering
/// row). Owned, like [`StockValues`].
#[derive(Debug, Clone, PartialEq, SerializeRow)]
#[scylla(flavor = "enforce_order")]
pub struct ReservationValues {
    pub sku: String,
    pub order_id: String,
    pub reservation_quantity: i32,
    pub reservation_status: &'static str,
    pub reservation_applied_offset: i64,
    #[scylla(rename = "[timestamp]")]
    pub write_timestamp: i64,
}

pub fn reservation_values(sku: &str, reservation: &Versioned<Reservation>) -> ReservationValues {
    ReservationValues {
        sku: sku.to_owned(),
        order_id: reservation.value.order_id.clone(),
        reservation_quantity: reservation.value.quantity,
        reservation_status: reservation.value.status.into_str(),
        reservation_applied_offset: reservation.applied_offset,
        write_timestamp: reservation.applied_offset,
    }
}
