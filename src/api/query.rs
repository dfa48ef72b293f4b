//! The dashboards' query API, on its own listener: JSON reads of every
//! projection under /v1 (bearer token required), and the OpenAPI document
//! at /openapi.json (public), generated from the handlers below.
//!
//! Every /v1 answer carries a `freshness` object: the newest applied event
//! time and the consumer lag of the input partitions behind it (an order:
//! its orders partition; inventory: its inventory partition; customer lists
//! and sales: every orders partition). Every failure is
//! `{"error": code, "message": text}`: 4xx for anything about the request,
//! 503 when the database cannot answer.
//!
//! Layers, outermost first: CORS (only with `api.cors_allowed_origins`),
//! request metrics, the body limit, then on /v1 the token check and the
//! per-token rate limit.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use futures::StreamExt;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{self, Gate};
use super::cursor::{self, ListKind};
use super::error::{self, ApiError, ErrorBody};
use super::freshness::FreshnessView;
use super::params::{check_id, Limits, PageParams, WindowParams};
use super::views::{CustomerOrdersPage, InventoryView, OrderView, SalesView, SkuSalesView};
use crate::config::ApiConfig;
use crate::store::queries::QueryStore;

/// What the query routes read.
#[derive(Clone)]
pub struct QueryState {
    pub store: Arc<QueryStore>,
    pub freshness: FreshnessView,
    pub limits: Limits,
    pub orders_topic: Arc<str>,
    pub inventory_topic: Arc<str>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "galley query API",
        description = "Read-only JSON views of galley's projections, for dashboards. \
            Every /v1 route needs `Authorization: Bearer <token>`. Every answer says how \
            fresh it is; every error is {\"error\": code, \"message\": text}."
    ),
    modifiers(&BearerScheme),
    components(schemas(ErrorBody)),
    tags(
        (name = "orders", description = "Orders by id and by customer"),
        (name = "inventory", description = "Stock and reservations per SKU"),
        (name = "sales", description = "Sales per minute"),
        (name = "meta", description = "This document")
    )
)]
struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token whose SHA-256 is listed in api.tokens (see `galley hash-token`).",
                    ))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document, serialized once at startup.
#[derive(Clone)]
struct OpenApiJson(Arc<str>);

/// The query API's routes and layers.
pub fn router(state: QueryState, cfg: &ApiConfig) -> anyhow::Result<Router> {
    let limits = state.limits;
    let gate = Arc::new(Gate::from_config(cfg));
    let (app, doc) = routes(gate).with_state(state).split_for_parts();
    let doc = OpenApiJson(Arc::from(doc.to_json()?));
    let mut app = app
        .layer(Extension(doc))
        .fallback(error::unknown_route)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(from_fn_with_state(
            limits.max_request_body_bytes,
            limit_body,
        ))
        .layer(from_fn_with_state(
            super::http_metrics::Listener("api"),
            super::http_metrics::track,
        ));
    if let Some(cors) = cors_layer(&cfg.cors_allowed_origins) {
        app = app.layer(cors);
    }
    Ok(app)
}

/// Every route, each registered together with its OpenAPI operation, so
/// that the document cannot drift from what is served.
fn routes(gate: Arc<Gate>) -> OpenApiRouter<QueryState> {
    let v1 = OpenApiRouter::new()
        .routes(routes!(get_order))
        .routes(routes!(customer_orders))
        .routes(routes!(inventory))
        .routes(routes!(sku_sales))
        .routes(routes!(sales))
        .route_layer(from_fn_with_state(gate, auth::require_token));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(openapi_json))
        .merge(v1)
}

/// The OpenAPI document the query listener serves at /openapi.json.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes(Arc::new(Gate::from_config(&ApiConfig::default()))).into_openapi()
}

/// CORS for the listed origins only; none listed, no CORS headers at all.
fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if allowed.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(allowed))
            .allow_methods([Method::GET, Method::HEAD])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    )
}

/// Refuses bodies over `api.max_request_body_bytes` with a JSON 413. The
/// routes take no body, but a client must not be able to make galley read
/// an unbounded one. Bodies within the limit are buffered and passed on.
async fn limit_body(State(max): State<usize>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return ApiError::body_too_large(max).into_response();
    }
    let (parts, body) = request.into_parts();
    let mut stream = body.into_data_stream();
    let mut buffered: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) if buffered.len() + bytes.len() > max => {
                return ApiError::body_too_large(max).into_response();
            }
            Ok(bytes) => buffered.extend_from_slice(&bytes),
            Err(_) => {
                return ApiError::bad_request("invalid_body", "the request body could not be read")
                    .into_response();
            }
        }
    }
    next.run(Request::from_parts(parts, Body::from(buffered)))
        .await
}

fn invalid_cursor(err: cursor::CursorError) -> ApiError {
    ApiError::bad_request(
        "invalid_cursor",
        format!("{err}; pass next_cursor from the previous page unchanged, or no cursor"),
    )
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object))
)]
async fn openapi_json(Extension(doc): Extension<OpenApiJson>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.0.to_string(),
    )
        .into_response()
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
        (status = 429, description = "Over the token's rate limit (`rate_limited`)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The database did not answer (`unavailable`)", body = ErrorBody),
    )
)]
async fn get_order(
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
    Ok(Json(OrderView::new(row.order, freshness)))
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
        (status = 429, description = "Over the token's rate limit (`rate_limited`)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The database did not answer (`unavailable`)", body = ErrorBody),
    )
)]
async fn customer_orders(
    State(state): State<QueryState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<CustomerOrdersPage>, ApiError> {
    let Path(customer_id) = path?;
    check_id("customer id", &customer_id)?;
    let Query(page) = query?;
    let size = page.page_size(&state.limits)?;
    let resume = page
        .cursor
        .as_deref()
        .map(|c| cursor::decode(ListKind::CustomerOrders, &customer_id, c))
        .transpose()
        .map_err(invalid_cursor)?;
    let rows = state
        .store
        .customer_orders(&customer_id, size, resume)
        .await?;
    let next_cursor = rows
        .next
        .map(|state| cursor::encode(ListKind::CustomerOrders, &customer_id, &state));
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
        (status = 429, description = "Over the token's rate limit (`rate_limited`)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The database did not answer (`unavailable`)", body = ErrorBody),
    )
)]
async fn inventory(
    State(state): State<QueryState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<InventoryView>, ApiError> {
    let Path(sku) = path?;
    check_id("SKU", &sku)?;
    let Query(page) = query?;
    let size = page.page_size(&state.limits)?;
    let resume = page
        .cursor
        .as_deref()
        .map(|c| cursor::decode(ListKind::Reservations, &sku, c))
        .transpose()
        .map_err(invalid_cursor)?;
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
        .map(|state| cursor::encode(ListKind::Reservations, &sku, &state));
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
        (status = 429, description = "Over the token's rate limit (`rate_limited`)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The database did not answer (`unavailable`)", body = ErrorBody),
    )
)]
async fn sku_sales(
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
        (status = 429, description = "Over the token's rate limit (`rate_limited`)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The database did not answer (`unavailable`)", body = ErrorBody),
    )
)]
async fn sales(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_every_route_with_its_security_and_errors() {
        let doc = serde_json::to_value(openapi()).expect("serializable");
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["title"], "galley query API");
        let paths = doc["paths"].as_object().expect("paths");
        let mut names: Vec<&str> = paths.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "/openapi.json",
                "/v1/customers/{customer_id}/orders",
                "/v1/inventory/{sku}",
                "/v1/orders/{order_id}",
                "/v1/sales",
                "/v1/sales/skus/{sku}",
            ]
        );
        for (name, item) in paths {
            let op = &item["get"];
            if name.starts_with("/v1/") {
                assert_eq!(
                    op["security"],
                    serde_json::json!([{"bearer": []}]),
                    "{name}"
                );
                for status in ["200", "400", "401", "413", "429", "503"] {
                    assert!(op["responses"][status].is_object(), "{name} {status}");
                }
            }
        }
        // Nullable fields are always present: dashboards can rely on the keys.
        let required = &doc["components"]["schemas"]["Freshness"]["required"];
        for key in ["newest_event_time", "lag_records", "partitions"] {
            assert!(
                required
                    .as_array()
                    .is_some_and(|r| r.iter().any(|k| k == key)),
                "{key}: {required}"
            );
        }
        if std::env::var_os("GALLEY_PRINT_OPENAPI").is_some() {
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
    }
}
