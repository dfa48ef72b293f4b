//! Reads for the query API: prepared statements that each name a whole
//! partition key, so that no read scans the cluster and none needs
//! `ALLOW FILTERING`. Paged reads resume from the database's own paging
//! state; what a caller does with it (the API's opaque cursor) is not this
//! module's business.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use futures::stream::{self, StreamExt, TryStreamExt};
use scylla::client::session::Session;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::response::{PagingState, PagingStateResponse};
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;

use super::projections::{self, day_of};
use super::record_statement;
use crate::domain::order::Order;

/// Day partitions of one time window read at once.
const DAY_READS_IN_FLIGHT: usize = 8;

/// Why a read failed. The API answers 503, 400 and 500 respectively.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The database did not answer, or answered with an error of its own.
    #[error("CQL read `{statement}` failed: {message}")]
    Unavailable {
        statement: &'static str,
        message: String,
    },
    /// The database refused the paging state the caller handed back.
    #[error("the database refused the paging state: {0}")]
    BadPagingState(String),
    /// A stored row does not have the shape galley writes.
    #[error("row of {table} could not be read: {message}")]
    Row {
        table: &'static str,
        message: String,
    },
}

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
    pub status: String,
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
    pub status: String,
}

/// Sales of one minute, summed over the sub-rows of every source partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MinuteSales {
    pub units: i64,
    pub revenue_cents: i64,
    /// Orders that shipped in the minute (overall sales only; 0 per SKU).
    pub orders: i64,
}

/// One page of a paged read, and where the next one starts (`None`: the last page).
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Vec<u8>>,
}

/// Newest applied event time of one input partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressRow {
    pub partition: i32,
    pub newest_event_time_ms: Option<i64>,
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
    progress: PreparedStatement,
}

type OrderColumns = projections::OrderColumns<i32>;

impl QueryStore {
    pub async fn prepare(session: Arc<Session>, keyspace: &str) -> Result<Self, ReadError> {
        let ks = keyspace;
        let prep = |name: &'static str, cql: String| {
            let session = session.clone();
            async move {
                session
                    .prepare(cql.as_str())
                    .await
                    .map_err(|e| unavailable(name, e))
            }
        };
        Ok(Self {
            order: prep(
                "api_order",
                format!(
                    "SELECT customer_id, status, currency, total_cents, paid_cents, lines, \
                     timeline, placed_at, updated_at, source_partition FROM {ks}.orders \
                     WHERE order_id = ?"
                ),
            )
            .await?,
            // Clustering order is placed_at DESC: newest first without sorting.
            customer_orders: prep(
                "api_customer_orders",
                format!(
                    "SELECT placed_at, order_id, status, currency, total_cents, updated_at \
                     FROM {ks}.orders_by_customer WHERE customer_id = ?"
                ),
            )
            .await?,
            stock: prep(
                "api_stock",
                format!(
                    "SELECT on_hand, reserved, stock_updated_at, source_partition \
                     FROM {ks}.inventory WHERE sku = ? LIMIT 1"
                ),
            )
            .await?,
            reservations: prep(
                "api_reservations",
                format!(
                    "SELECT order_id, reservation_quantity, reservation_status \
                     FROM {ks}.inventory WHERE sku = ?"
                ),
            )
            .await?,
            sku_sales: prep(
                "api_sku_sales",
                format!(
                    "SELECT minute, units, revenue_cents FROM {ks}.sales_by_sku_minute \
                     WHERE sku = ? AND day = ? AND minute >= ? AND minute < ?"
                ),
            )
            .await?,
            minute_sales: prep(
                "api_minute_sales",
                format!(
                    "SELECT minute, units, revenue_cents, orders FROM {ks}.sales_by_minute \
                     WHERE day = ? AND minute >= ? AND minute < ?"
                ),
            )
            .await?,
            progress: prep(
                "api_progress",
                format!(
                    "SELECT partition, newest_event_time FROM {ks}.partition_progress \
                     WHERE topic = ?"
                ),
            )
            .await?,
            session,
        })
    }

    pub async fn order(&self, order_id: &str) -> Result<Option<OrderRow>, ReadError> {
        let row: Option<OrderColumns> = self
            .select_one("api_order", "orders", &self.order, (order_id,))
            .await?;
        row.map(|columns| order_from_columns(order_id, columns))
            .transpose()
    }

    /// Runs a statement that names a whole primary key and reads its row, if any.
    async fn select_one<R>(
        &self,
        name: &'static str,
        table: &'static str,
        statement: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<Option<R>, ReadError>
    where
        R: for<'f> scylla::deserialize::row::DeserializeRow<'f, 'f>,
    {
        let started = Instant::now();
        let result = self.session.execute_unpaged(statement, values).await;
        record_statement(name, started, result.is_ok());
        let rows = result
            .map_err(|e| unavailable(name, e))?
            .into_rows_result()
            .map_err(|e| unavailable(name, e))?;
        rows.maybe_first_row::<R>().map_err(|e| bad_row(table, e))
    }

    /// One page of a customer's orders, newest first.
    pub async fn customer_orders(
        &self,
        customer_id: &str,
        page_size: u32,
        resume: Option<Vec<u8>>,
    ) -> Result<Page<CustomerOrderRow>, ReadError> {
        type Row = (
            CqlTimestamp,
            String,
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<CqlTimestamp>,
        );
        let (rows, next) = self
            .single_page::<Row>(
                "api_customer_orders",
                "orders_by_customer",
                &self.customer_orders,
                (customer_id,),
                page_size,
                resume,
            )
            .await?;
        let items = rows
            .into_iter()
            .map(
                |(placed, order_id, status, currency, total, updated)| CustomerOrderRow {
                    order_id,
                    placed_at_ms: placed.0,
                    status: status.unwrap_or_default(),
                    currency: currency.unwrap_or_default(),
                    total_cents: total.unwrap_or(0),
                    updated_at_ms: updated.map(|t| t.0).unwrap_or(placed.0),
                },
            )
            .collect();
        Ok(Page { items, next })
    }

    /// The stock of a SKU; `None` when its partition does not exist at all.
    pub async fn stock(&self, sku: &str) -> Result<Option<StockRow>, ReadError> {
        type Row = (Option<i64>, Option<i64>, Option<CqlTimestamp>, Option<i32>);
        let row: Option<Row> = self
            .select_one("api_stock", "inventory", &self.stock, (sku,))
            .await?;
        Ok(row.map(|(on_hand, reserved, updated, partition)| StockRow {
            on_hand: on_hand.unwrap_or(0),
            reserved: reserved.unwrap_or(0),
            updated_at_ms: updated.map(|t| t.0),
            source_partition: partition,
        }))
    }

    /// One page of a SKU's reservations, by order id.
    pub async fn reservations(
        &self,
        sku: &str,
        page_size: u32,
        resume: Option<Vec<u8>>,
    ) -> Result<Page<ReservationRow>, ReadError> {
        type Row = (Option<String>, Option<i32>, Option<String>);
        let (rows, next) = self
            .single_page::<Row>(
                "api_reservations",
                "inventory",
                &self.reservations,
                (sku,),
                page_size,
                resume,
            )
            .await?;
        // A partition holding only stock comes back as one row without a
        // clustering key; it is not a reservation.
        let items = rows
            .into_iter()
            .filter_map(|(order_id, quantity, status)| {
                Some(ReservationRow {
                    order_id: order_id?,
                    quantity: quantity.unwrap_or(0),
                    status: status?,
                })
            })
            .collect();
        Ok(Page { items, next })
    }

    /// A SKU's sales per minute for minutes starting in `[from_ms, to_ms)`,
    /// reading each day partition the window touches.
    pub async fn sku_sales(
        &self,
        sku: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<BTreeMap<i64, MinuteSales>, ReadError> {
        type Row = (CqlTimestamp, Option<i64>, Option<i64>);
        let reads = days(from_ms, to_ms).map(|day| async move {
            self.all_rows::<Row>(
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
            for (minute, units, revenue) in rows? {
                let cell = out.entry(minute.0).or_default();
                cell.units += units.unwrap_or(0);
                cell.revenue_cents += revenue.unwrap_or(0);
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
        type Row = (CqlTimestamp, Option<i64>, Option<i64>, Option<i64>);
        let reads = days(from_ms, to_ms).map(|day| async move {
            self.all_rows::<Row>(
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
            for (minute, units, revenue, orders) in rows? {
                let cell = out.entry(minute.0).or_default();
                cell.units += units.unwrap_or(0);
                cell.revenue_cents += revenue.unwrap_or(0);
                cell.orders += orders.unwrap_or(0);
            }
        }
        Ok(out)
    }

    /// Newest applied event time of every partition of `topic` that has applied one.
    pub async fn progress(&self, topic: &str) -> Result<Vec<ProgressRow>, ReadError> {
        type Row = (i32, Option<CqlTimestamp>);
        let rows = self
            .all_rows::<Row>(
                "api_progress",
                "partition_progress",
                &self.progress,
                (topic,),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(partition, newest)| ProgressRow {
                partition,
                newest_event_time_ms: newest.map(|t| t.0),
            })
            .collect())
    }

    /// Runs a statement for one page of `page_size` rows, resuming from
    /// `resume` (raw paging state) when given.
    async fn single_page<R>(
        &self,
        name: &'static str,
        table: &'static str,
        statement: &PreparedStatement,
        values: impl SerializeRow,
        page_size: u32,
        resume: Option<Vec<u8>>,
    ) -> Result<(Vec<R>, Option<Vec<u8>>), ReadError>
    where
        R: for<'f> scylla::deserialize::row::DeserializeRow<'f, 'f>,
    {
        // Page size is a property of the statement; a clone shares the
        // prepared id and metadata, so this costs no round trip.
        let mut statement = statement.clone();
        statement.set_page_size(i32::try_from(page_size.max(1)).unwrap_or(i32::MAX));
        let resumed = resume.is_some();
        let state = match resume {
            Some(bytes) => PagingState::new_from_raw_bytes(bytes),
            None => PagingState::start(),
        };
        let started = Instant::now();
        let result = self
            .session
            .execute_single_page(&statement, values, state)
            .await;
        record_statement(name, started, result.is_ok());
        let (result, paging) = match result {
            Ok(ok) => ok,
            Err(e) if resumed && refused_request(&e) => {
                return Err(ReadError::BadPagingState(e.to_string()))
            }
            Err(e) => return Err(unavailable(name, e)),
        };
        let rows = result
            .into_rows_result()
            .map_err(|e| unavailable(name, e))?;
        let items = rows
            .rows::<R>()
            .map_err(|e| bad_row(table, e))?
            .collect::<Result<Vec<R>, _>>()
            .map_err(|e| bad_row(table, e))?;
        let next = match paging {
            PagingStateResponse::HasMorePages { state } => {
                state.as_bytes_slice().map(|bytes| bytes.to_vec())
            }
            PagingStateResponse::NoMorePages => None,
        };
        Ok((items, next))
    }

    /// Every row a statement returns, fetched page by page.
    async fn all_rows<R>(
        &self,
        name: &'static str,
        table: &'static str,
        statement: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<Vec<R>, ReadError>
    where
        R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm> + Send + 'static,
    {
        let started = Instant::now();
        let pager = self.session.execute_iter(statement.clone(), values).await;
        let rows = match pager {
            Ok(pager) => match pager.rows_stream::<R>() {
                Ok(rows) => rows
                    .try_collect::<Vec<R>>()
                    .await
                    .map_err(|e| unavailable(name, e)),
                Err(e) => Err(bad_row(table, e)),
            },
            Err(e) => Err(unavailable(name, e)),
        };
        record_statement(name, started, rows.is_ok());
        rows
    }
}

/// Day partitions (days since the epoch) holding minutes in `[from_ms, to_ms)`.
fn days(from_ms: i64, to_ms: i64) -> impl Iterator<Item = i32> {
    let first = day_of(from_ms);
    let last = day_of(to_ms.saturating_sub(1).max(from_ms));
    first..=last
}

fn order_from_columns(order_id: &str, columns: OrderColumns) -> Result<OrderRow, ReadError> {
    let (order, source_partition) =
        projections::order_from_columns(order_id, columns).map_err(|message| ReadError::Row {
            table: "orders",
            message,
        })?;
    Ok(OrderRow {
        order,
        source_partition,
    })
}

/// Whether the database refused the request itself (rather than failing to
/// serve it): the answer to a paging state it cannot use.
fn refused_request(err: &ExecutionError) -> bool {
    matches!(
        err,
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::ProtocolError | DbError::Invalid | DbError::SyntaxError,
            _
        ))
    )
}

fn unavailable(statement: &'static str, err: impl std::fmt::Display) -> ReadError {
    ReadError::Unavailable {
        statement,
        message: err.to_string(),
    }
}

fn bad_row(table: &'static str, err: impl std::fmt::Display) -> ReadError {
    ReadError::Row {
        table,
        message: err.to_string(),
    }
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
