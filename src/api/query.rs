//! The dashboards' query API: JSON reads of the projections by primary key,
//! on its own listener. Every error is `{"error": code, "message": text}`
//! with a 4xx for bad input and a 503 when the database cannot answer.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use tracing::warn;

use crate::domain::order::{Order, OrderLineState, TimelineEntry};
use crate::store::projections::ProjectionStore;

/// What the query routes read.
#[derive(Clone)]
pub struct QueryState {
    pub store: Arc<ProjectionStore>,
}

/// A failed query, rendered as `{"error", "message"}` with its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
        }
    }

    pub fn unavailable(err: impl std::fmt::Display) -> Self {
        warn!(error = %err, "query failed: database unavailable");
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            message: "the database did not answer; try again shortly".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.code, "message": self.message})),
        )
            .into_response()
    }
}

pub fn router(state: QueryState) -> Router {
    Router::new()
        .route("/v1/orders/{order_id}", get(get_order))
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            super::http_metrics::Listener("api"),
            super::http_metrics::track,
        ))
}

/// An order as dashboards see it.
#[derive(Debug, Serialize)]
pub struct OrderView {
    pub order_id: String,
    pub customer_id: String,
    pub status: &'static str,
    pub currency: String,
    pub total_cents: i64,
    pub paid_cents: i64,
    pub lines: Vec<OrderLineState>,
    pub timeline: Vec<TimelineEntry>,
    pub placed_at_ms: i64,
    pub updated_at_ms: i64,
}

impl From<Order> for OrderView {
    fn from(o: Order) -> Self {
        Self {
            status: o.status.as_str(),
            order_id: o.order_id,
            customer_id: o.customer_id,
            currency: o.currency,
            total_cents: o.total_cents,
            paid_cents: o.paid_cents,
            lines: o.lines,
            timeline: o.timeline,
            placed_at_ms: o.placed_at_ms,
            updated_at_ms: o.updated_at_ms,
        }
    }
}

/// Ids are opaque text from upstream; refuse what no upstream id looks like.
fn check_id(kind: &str, id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 128 || id.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_id",
            format!("{kind} id must be 1 to 128 printable characters"),
        ));
    }
    Ok(())
}

async fn get_order(
    State(state): State<QueryState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<OrderView>, ApiError> {
    let Path(order_id) = path.map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
    check_id("order", &order_id)?;
    match state.store.load_order(&order_id).await {
        Ok(Some(order)) => Ok(Json(order.value.into())),
        Ok(None) => Err(ApiError::not_found(format!(
            "order {order_id} does not exist"
        ))),
        Err(e) => Err(ApiError::unavailable(e)),
    }
}
