//! The shop's reads for the query API: prepared statements that each name a
//! whole partition key, so that no read scans the cluster and none needs
//! `ALLOW FILTERING`. Paged reads resume from the database's own paging
//! state (see [`crate::store::read`]).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;
use scylla::DeserializeRow;

use super::rows::{day_of, order, parse_document};
use crate::domain::inventory::ReservationStatus;
use crate::domain::order::{Order, OrderStatus};
use crate::store::read::{self, Page, ReadError};
use crate::store::{self, StoreError};

/// Day partitions of one time window read at once.
const DAY_READS_IN_FLIGHT: usize = 8;

/// An order with the input partition that owns its row.
#[derive(Debug, Clone)]
pub struct OrderRow {
    pub order: Order,
    pub source_partition: Option<i32>,
}

/// One entry of a customer's order list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerOrderRow {
    pub order_id: String,
    pub placed_at_ms: i64,
    pub status: OrderStatus,
    pub currency: String,
    pub total_cents: i64,
    pub updated_at_ms: i64,
}

/// A SKU's stock (the inventory partition's static columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockRow {
    pub on_hand: i64,
    pub reserved: i64,
    pub updated_at_ms: Option<i64>,
    pub source_partition: Option<i32>,
}

/// One reservation of a SKU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationRow {
    pub order_id: String,
    pub quantity: i32,
    pub status: ReservationStatus,
}

/// Sales of one minute, summed over the sub-rows of every source partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MinuteSales {
    pub units: i64,
    pub revenue_cents: i64,
    /// Orders that shipped in the minute (overall sales only; 0 per SKU).
    pub orders: i64,
}

// What each read selects, in its statement's order. These are the read
// side's own types: a write's values ([`super::rows`]) never come back.

/// `api_order`: an order's document (see [`order`]) and the input partition
/// that owns it. Public so that `make bench` reads raw CQL into the same type.
#[derive(Debug, DeserializeRow)]
#[scylla(flavor = "enforce_order")]
pub struct OrderDocumentColumns {
    document: Option<String>,
    source_partition: Option<i32>,
}

/// `api_customer_orders`: an entry of a customer's list.
#[derive(Debug, DeserializeRow)]
#[scylla(flavor = "enforce_order")]
struct CustomerOrderColumns {
    placed_at: CqlTimestamp,
    order_id: String,
    status: Option<String>,
    currency: Option<String>,
    total_cents: Option<i64>,
    updated_at: Option<CqlTimestamp>,
}

/// `api_stock`: the static columns of a SKU's inventory partition.
#[derive(Debug, DeserializeRow)]
#[scylla(flavor = "enforce_order")]
struct StockColumns {
    on_hand: Option<i64>,
    reserved: Option<i64>,
    stock_updated_at: Option<CqlTimestamp>,
    source_partition: Option<i32>,
}

/// `api_reservations`: a row of a SKU's inventory partition; without an
/// order id when the partition holds stock only.
#[derive(Debug, DeserializeRow)]
#[scylla(flavor = "enforce_order")]
struct ReservationColumns {
    order_id: Option<String>,
    reservation_quantity: Option<i32>,
    reservation_status: Option<String>,
}

/// `api_sku_sales`: a (SKU, minute, source partition) sub-row.
#[derive(Debug, DeserializeRow)]
#[scylla(flavor = "enforce_order")]
struct SkuMinuteColumns {
    minute: CqlTimestamp,
    units: Option<i64>,
    revenue_cents: Option<i64>,
}

/// `api_minute_sales`: a (minute, source partition) sub-row.
#[derive(Debug, DeserializeRow)]
#[scylla(flavor = "enforce_order")]
struct MinuteColumns {
    minute: CqlTimestamp,
    units: Option<i64>,
    revenue_cents: Option<i64>,
    orders: Option<i64>,
}

/// The query API's prepared statements, prepared once at startup.
pub struct QueryStore {
    session: Arc<Session>,
    order: PreparedStatement,
    customer_orders: PreparedStatement,
    stock: PreparedStatement,
    reservations: PreparedStatement,
    sku_sales: PreparedStatement,
    minute_sales: PreparedStatement,
}

impl QueryStore {
    pub async fn prepare(session: Arc<Session>, keyspace: &str) -> Result<Self, StoreError> {
        let ks = keyspace;
        let prep = |cql: String| {
            let session = session.clone();
            async move { store::prepare(&session, &cql).await }
        };
        Ok(Self {
            order: prep(format!(
                "SELECT document, source_partition FROM {ks}.order_documents WHERE order_id = ?"
            ))
            .await?,
            // Clustering order is placed_at DESC: newest first without sorting.
            customer_orders: prep(format!(
                "SELECT placed_at, order_id, status, currency, total_cents, updated_at \
                 FROM {ks}.orders_by_customer WHERE customer_id = ?"
            ))
            .await?,
            stock: prep(format!(
                "SELECT on_hand, reserved, stock_updated_at, source_partition \
                 FROM {ks}.inventory WHERE sku = ? LIMIT 1"
            ))
            .await?,
            reservations: prep(format!(
                "SELECT order_id, reservation_quantity, reservation_status \
                 FROM {ks}.inventory WHERE sku = ?"
            ))
            .await?,
            sku_sales: prep(format!(
                "SELECT minute, units, revenue_cents FROM {ks}.sales_by_sku_minute \
                 WHERE sku = ? AND day = ? AND minute >= ? AND minute < ?"
            ))
            .await?,
            minute_sales: prep(format!(
                "SELECT minute, units, revenue_cents, orders FROM {ks}.sales_by_minute \
                 WHERE day = ? AND minute >= ? AND minute < ?"
            ))
            .await?,
            session,
        })
    }

    pub async fn order(&self, order_id: &str) -> Result<Option<OrderRow>, ReadError> {
        let row: Option<OrderDocumentColumns> = read::select_one(
            &self.session,
            "api_order",
            order::TABLE,
            &self.order,
            (order_id,),
        )
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let order = parse_document(order_id, row.document.as_deref())
            .map_err(|message| ReadError::row(order::TABLE, message))?;
        Ok(Some(OrderRow {
            order,
            source_partition: row.source_partition,
        }))
    }

    /// One page of a customer's orders, newest first.
    pub async fn customer_orders(
        &self,
        customer_id: &str,
        page_size: u32,
        resume: Option<Vec<u8>>,
    ) -> Result<Page<CustomerOrderRow>, ReadError> {
        let page = read::select_page::<CustomerOrderColumns>(
            &self.session,
            "api_customer_orders",
            "orders_by_customer",
            &self.customer_orders,
            (customer_id,),
            page_size,
            resume,
        )
        .await?;
        let items = page
            .items
            .into_iter()
            .map(|row| {
                Ok(CustomerOrderRow {
                    status: status("orders_by_customer", &row.order_id, row.status.as_deref())?,
                    order_id: row.order_id,
                    placed_at_ms: row.placed_at.0,
                    currency: row.currency.unwrap_or_default(),
                    total_cents: row.total_cents.unwrap_or(0),
                    updated_at_ms: row.updated_at.map_or(row.placed_at.0, |t| t.0),
                })
            })
            .collect::<Result<_, ReadError>>()?;
        Ok(Page {
            items,
            next: page.next,
        })
    }

    /// The stock of a SKU; `None` when its partition does not exist at all.
    pub async fn stock(&self, sku: &str) -> Result<Option<StockRow>, ReadError> {
        let row: Option<StockColumns> =
            read::select_one(&self.session, "api_stock", "inventory", &self.stock, (sku,)).await?;
        Ok(row.map(|row| StockRow {
            on_hand: row.on_hand.unwrap_or(0),
            reserved: row.reserved.unwrap_or(0),
            updated_at_ms: row.stock_updated_at.map(|t| t.0),
            source_partition: row.source_partition,
        }))
    }

    /// One page of a SKU's reservations, by order id.
    pub async fn reservations(
        &self,
        sku: &str,
        page_size: u32,
        resume: Option<Vec<u8>>,
    ) -> Result<Page<ReservationRow>, ReadError> {
        let page = read::select_page::<ReservationColumns>(
            &self.session,
            "api_reservations",
            "inventory",
            &self.reservations,
            (sku,),
            page_size,
            resume,
        )
        .await?;
        let mut items = Vec::with_capacity(page.items.len());
        for row in page.items {
            // A partition holding only stock comes back as one row without a
            // clustering key; it is not a reservation.
            let (Some(order_id), Some(text)) = (row.order_id, row.reservation_status) else {
                continue;
            };
            items.push(ReservationRow {
                status: status("inventory", &order_id, Some(&text))?,
                order_id,
                quantity: row.reservation_quantity.unwrap_or(0),
            });
        }
        Ok(Page {
            items,
            next: page.next,
        })
    }

    /// A SKU's sales per minute for minutes starting in `[from_ms, to_ms)`,
    /// reading each day partition the window touches.
    pub async fn sku_sales(
        &self,
        sku: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<BTreeMap<i64, MinuteSales>, ReadError> {
        let reads = days(from_ms, to_ms).map(|day| async move {
            read::select_all::<SkuMinuteColumns>(
                &self.session,
                "api_sku_sales",
                "sales_by_sku_minute",
                &self.sku_sales,
                (sku, day, CqlTimestamp(from_ms), CqlTimestamp(to_ms)),
            )
            .await
        });
        let mut out: BTreeMap<i64, MinuteSales> = BTreeMap::new();
        let mut pages = stream::iter(reads).buffer_unordered(DAY_READS_IN_FLIGHT);
        while let Some(rows) = pages.next().await {
            // Sub-rows of one minute come from different source partitions: sum them.
            for row in rows? {
                let cell = out.entry(row.minute.0).or_default();
                cell.units += row.units.unwrap_or(0);
                cell.revenue_cents += row.revenue_cents.unwrap_or(0);
            }
        }
        Ok(out)
    }

    /// Sales of every SKU per minute for minutes starting in `[from_ms, to_ms)`.
    pub async fn minute_sales(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<BTreeMap<i64, MinuteSales>, ReadError> {
        let reads = days(from_ms, to_ms).map(|day| async move {
            read::select_all::<MinuteColumns>(
                &self.session,
                "api_minute_sales",
                "sales_by_minute",
                &self.minute_sales,
                (day, CqlTimestamp(from_ms), CqlTimestamp(to_ms)),
            )
            .await
        });
        let mut out: BTreeMap<i64, MinuteSales> = BTreeMap::new();
        let mut pages = stream::iter(reads).buffer_unordered(DAY_READS_IN_FLIGHT);
        while let Some(rows) = pages.next().await {
            for row in rows? {
                let cell = out.entry(row.minute.0).or_default();
                cell.units += row.units.unwrap_or(0);
                cell.revenue_cents += row.revenue_cents.unwrap_or(0);
                cell.orders += row.orders.unwrap_or(0);
            }
        }
        Ok(out)
    }
}

/// Day partitions (days since the epoch) holding minutes in `[from_ms, to_ms)`.
fn days(from_ms: i64, to_ms: i64) -> impl Iterator<Item = i32> {
    let first = day_of(from_ms);
    let last = day_of(to_ms.saturating_sub(1).max(from_ms));
    first..=last
}

/// A status column read back as its enum; galley writes only known names,
/// so anything else (or none) is a malformed row.
fn status<S: FromStr>(table: &'static str, key: &str, text: Option<&str>) -> Result<S, ReadError> {
    let text = text.unwrap_or_default();
    text.parse()
        .map_err(|_| ReadError::row(table, format!("{key}: unknown status `{text}`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_reads_every_day_it_touches_and_no_more() {
        let day = 86_400_000;
        assert_eq!(days(0, day).collect::<Vec<_>>(), vec![0]);
        assert_eq!(
            days(day - 60_000, day + 60_000).collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert_eq!(days(day, 2 * day).collect::<Vec<_>>(), vec![1]);
        assert_eq!(days(5, 6).collect::<Vec<_>>(), vec![0]);
    }
}
