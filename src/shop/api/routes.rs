//! The shop's query routes under /v1, each with its OpenAPI operation: an
//! order, a customer's orders, a SKU's stock and reservations, and sales.
//!
//! Every /v1 answer carries a `freshness` object: the newest applied event
//! time and the consumer lag of the input partitions behind it (an order:
//! its orders partition; inventory: its inventory partition; customer lists
//! and sales: every orders partition).

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;

use super::views::{CustomerOrdersPage, InventoryView, OrderView, SalesView, SkuSalesView};
use crate::api::cursor::{self, CursorSigner, ListKind, Page};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::freshness::FreshnessView;
use crate::api::params::{check_id, Limits, PageParams, WindowParams};
use crate::shop::queries::QueryStore;

/// What the query routes read.
#[derive(Clone)]
pub struct QueryState {
    pub store: Arc<QueryStore>,
    pub freshness: FreshnessView,
    pub limits: Limits,
    pub cursors: Arc<CursorSigner>,
    pub orders_topic: Arc<str>,
    pub inventory_topic: Arc<str>,
}

fn invalid_cursor(err: cursor::CursorError) -> ApiError {
    ApiError::bad_request(
        "invalid_cursor",
        format!("{err}; pass next_cursor from the previous page unchanged, or no cursor"),
    )
}

/// The paging state a client's cursor carries for `list`, if it sent one.
fn resume_from(
    cursors: &CursorSigner,
    list: Page<'_>,
    cursor: Option<&str>,
) -> Result<Option<Vec<u8>>, ApiError> {
    cursor
        .map(|c| cursors.decode(list, c, SystemTime::now()))
        .transpose()
        .map_err(invalid_cursor)
}

/// An order: status, lines, totals and timeline.
#[utoipa::path(
    get,
    path = "/v1/orders/{order_id}",
    tag = "orders",
    params(("order_id" = String, Path, description = "The order's id, as upstream sent it")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 400, description = "Malformed id (`invalid_id`, `invalid_path`)", body = ErrorBody),
        (status = 401, description = "No token or an unknown one (`unauthorized`)", body = ErrorBody),
        (status = 404, description = "No such order (`not_found`)", body = ErrorBody),
        (status = 413, description = "A request body over api.max_request_body_bytes (`body_too_large`)", body = ErrorBody),
        (status = 429, description = "Over the token's rate limit, or too many failed token checks from this address (`rate_limited`)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The database did not answer (`unavailable`), or the request took longer than api.request_timeout (`timeout`)", body = ErrorBody),
    )
)]
pub(super) async fn get_order(
    State(state): State<QueryState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<OrderView>, ApiError> {
    let Path(order_id) = path?;
    check_id("order id", &order_id)?;
    let Some(row) = state.store.order(&order_id).await? else {
        return Err(ApiError::not_found(format!(
            "order {order_id} does not exist"
        )));
    };
    let freshness = match row.source_partition {
        Some(p) => state.freshness.partition(&state.orders_topic, p),
        None => state.freshness.topic(&state.orders_topic),
    };
    Ok(Json(OrderView {
        order: row.order,
        freshness,
    }))
}

/// A customer's orders, newest first, a page at a time. A customer without
/// orders has an empty list.
#[utoipa::path(
    get,
    path = "/v1/customers/{customer_id}/orders",
    tag = "orders",
    params(("customer_id" = String, Path, description = "The customer's id"), PageParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of orders", body = CustomerOrdersPage),
        (status = 400, description = "Malformed id, limit or cursor (`invalid_id`, `invalid_limit`, \
            `page_too_large` naming api.max_page_size, `invalid_cursor`, `invalid_query`)", body = ErrorBody),
        (status = 401, description = "No token or an unknown one (`unauthorized`)", body = ErrorBody),
        (status = 413, description = "A request body over api.max_request_body_bytes (`body_too_large`)", body = ErrorBody),
        (status = 429, description = "Over the token's rate limit, or too many failed token checks from this address (`rate_limited`)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The database did not answer (`unavailable`), or the request took longer than api.request_timeout (`timeout`)", body = ErrorBody),
    )
)]
pub(super) async fn customer_orders(
    State(state): State<QueryState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<CustomerOrdersPage>, ApiError> {
    let Path(customer_id) = path?;
    check_id("customer id", &customer_id)?;
    let Query(page) = query?;
    let size = page.page_size(&state.limits)?;
    let list = Page {
        kind: ListKind::CustomerOrders,
        key: &customer_id,
        size,
    };
    let resume = resume_from(&state.cursors, list, page.cursor.as_deref())?;
    let rows = state
        .store
        .customer_orders(&customer_id, size, resume)
        .await?;
    let next_cursor = rows
        .next
        .map(|next| state.cursors.encode(list, &next, SystemTime::now()));
    Ok(Json(CustomerOrdersPage {
        orders: rows.items.into_iter().map(Into::into).collect(),
        customer_id,
        next_cursor,
        freshness: state.freshness.topic(&state.orders_topic),
    }))
}

/// A SKU's stock (on hand, reserved, available) and a page of its
/// reservations by order id.
#[utoipa::path(
    get,
    path = "/v1/inventory/{sku}",
    tag = "inventory",
    params(("sku" = String, Path, description = "The SKU"), PageParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Stock and one page of reservations", body = InventoryView),
        (status = 400, description = "Malformed SKU, limit or cursor (`invalid_id`, `invalid_limit`, \
            `page_too_large` naming api.max_page_size, `invalid_cursor`, `invalid_query`)", body = ErrorBody),
        (status = 401, description = "No token or an unknown one (`unauthorized`)", body = ErrorBody),
        (status = 404, description = "Nothing was ever recorded for this SKU (`not_found`)", body = ErrorBody),
        (status = 413, description = "A request body over api.max_request_body_bytes (`body_too_large`)", body = ErrorBody),
        (status = 429, description = "Over the token's rate limit, or too many failed token checks from this address (`rate_limited`)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The database did not answer (`unavailable`), or the request took longer than api.request_timeout (`timeout`)", body = ErrorBody),
    )
)]
pub(super) async fn inventory(
    State(state): State<QueryState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<InventoryView>, ApiError> {
    let Path(sku) = path?;
    check_id("SKU", &sku)?;
    let Query(page) = query?;
    let size = page.page_size(&state.limits)?;
    let list = Page {
        kind: ListKind::Reservations,
        key: &sku,
        size,
    };
    let resume = resume_from(&state.cursors, list, page.cursor.as_deref())?;
    let resumed = resume.is_some();
    let (stock, reservations) = futures::try_join!(
        state.store.stock(&sku),
        state.store.reservations(&sku, size, resume)
    )?;
    if stock.is_none() && reservations.items.is_empty() && !resumed {
        return Err(ApiError::not_found(format!(
            "nothing was ever recorded for SKU {sku}"
        )));
    }
    let freshness = match stock.and_then(|s| s.source_partition) {
        Some(p) => state.freshness.partition(&state.inventory_topic, p),
        None => state.freshness.topic(&state.inventory_topic),
    };
    let next_cursor = reservations
        .next
        .map(|next| state.cursors.encode(list, &next, SystemTime::now()));
    Ok(Json(InventoryView::new(
        sku,
        stock,
        reservations.items,
        next_cursor,
        freshness,
    )))
}

/// A SKU's sales per minute, for minutes starting in `[from, to)`, summed
/// over every orders partition. Minutes without sales are left out.
#[utoipa::path(
    get,
    path = "/v1/sales/skus/{sku}",
    tag = "sales",
    params(("sku" = String, Path, description = "The SKU"), WindowParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Sales per minute", body = SkuSalesView),
        (status = 400, description = "Malformed SKU or window (`invalid_id`, `missing_parameter`, `invalid_time`, \
            `invalid_time_range`, `window_too_large` naming api.max_time_window, `invalid_query`)", body = ErrorBody),
        (status = 401, description = "No token or an unknown one (`unauthorized`)", body = ErrorBody),
        (status = 413, description = "A request body over api.max_request_body_bytes (`body_too_large`)", body = ErrorBody),
        (status = 429, description = "Over the token's rate limit, or too many failed token checks from this address (`rate_limited`)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The database did not answer (`unavailable`), or the request took longer than api.request_timeout (`timeout`)", body = ErrorBody),
    )
)]
pub(super) async fn sku_sales(
    State(state): State<QueryState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<WindowParams>, QueryRejection>,
) -> Result<Json<SkuSalesView>, ApiError> {
    let Path(sku) = path?;
    check_id("SKU", &sku)?;
    let Query(window) = query?;
    let (from, to) = window.window(&state.limits)?;
    let minutes = state.store.sku_sales(&sku, from, to).await?;
    Ok(Json(SkuSalesView::new(
        sku,
        from,
        to,
        minutes,
        state.freshness.topic(&state.orders_topic),
    )))
}

/// Overall sales per minute (units, revenue, orders shipped), for minutes
/// starting in `[from, to)`, summed over every orders partition. Minutes
/// without sales are left out.
#[utoipa::path(
    get,
    path = "/v1/sales",
    tag = "sales",
    params(WindowParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Sales per minute", body = SalesView),
        (status = 400, description = "Malformed window (`missing_parameter`, `invalid_time`, \
            `invalid_time_range`, `window_too_large` naming api.max_time_window, `invalid_query`)", body = ErrorBody),
        (status = 401, description = "No token or an unknown one (`unauthorized`)", body = ErrorBody),
        (status = 413, description = "A request body over api.max_request_body_bytes (`body_too_large`)", body = ErrorBody),
        (status = 429, description = "Over the token's rate limit, or too many failed token checks from this address (`rate_limited`)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The database did not answer (`unavailable`), or the request took longer than api.request_timeout (`timeout`)", body = ErrorBody),
    )
)]
pub(super) async fn sales(
    State(state): State<QueryState>,
    query: Result<Query<WindowParams>, QueryRejection>,
) -> Result<Json<SalesView>, ApiError> {
    let Query(window) = query?;
    let (from, to) = window.window(&state.limits)?;
    let minutes = state.store.minute_sales(from, to).await?;
    Ok(Json(SalesView::new(
        from,
        to,
        minutes,
        state.freshness.topic(&state.orders_topic),
    )))
}
