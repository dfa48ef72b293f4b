//! The admin listener: /healthz (the process lives), /readyz (Kafka and the
//! database answer, the consumer holds an assignment, and no partition
//! lately received records keyed for another), /metrics
//! (Prometheus exposition). It never shares the query API's port. Consumer
//! lag, which /metrics shows, is refreshed by [`super::freshness`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use rdkafka::producer::{FutureProducer, Producer};
use scylla::client::session::Session;
use serde_json::json;

use crate::pipeline::PipelineHealth;

/// What the admin routes read.
#[derive(Clone)]
pub struct AdminState {
    pub metrics: PrometheusHandle,
    pub health: Arc<PipelineHealth>,
    pub session: Arc<Session>,
    pub producer: FutureProducer,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            super::http_metrics::Listener("admin"),
            super::http_metrics::track,
        ))
}

async fn metrics(State(state): State<AdminState>) -> Response {
    state.metrics.run_upkeep();
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// The process lives, unless its pipeline stopped on a fatal error (it is
/// then on its way out, and a supervisor should not wait for it).
async fn healthz(State(state): State<AdminState>) -> Response {
    if state.health.fatal.load(Ordering::Relaxed) {
        let body = json!({"status": "failed", "reason": "the pipeline stopped on a fatal error"});
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let reasons = not_ready_reasons(&state).await;
    crate::telemetry::set_ready(reasons.is_empty());
    if reasons.is_empty() {
        (StatusCode::OK, Json(json!({"status": "ready"}))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "reasons": reasons})),
        )
            .into_response()
    }
}

/// How often `galley_ready` is refreshed without a request to /readyz.
pub const READINESS_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Runs the readiness check every `interval` until shutdown and keeps the
/// `galley_ready` gauge current, so that Prometheus sees readiness even when
/// nothing polls /readyz.
pub async fn watch_readiness(
    state: AdminState,
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let reasons = not_ready_reasons(&state).await;
        crate::telemetry::set_ready(reasons.is_empty());
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// Why galley is not ready; empty when it is.
async fn not_ready_reasons(state: &AdminState) -> Vec<String> {
    let mut reasons: Vec<String> = Vec::new();
    let db = tokio::time::timeout(Duration::from_secs(2), crate::store::ping(&state.session)).await;
    match db {
        Ok(Ok(())) => {}
        Ok(Err(e)) => reasons.push(format!("database: {e}")),
        Err(_) => reasons.push("database: no answer within 2s".into()),
    }
    let producer = state.producer.clone();
    let kafka = tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(None, Duration::from_secs(2))
            .map(|_| ())
    })
    .await;
    match kafka {
        Ok(Ok(())) => {}
        Ok(Err(e)) => reasons.push(format!("kafka: {e}")),
        Err(e) => reasons.push(format!("kafka: check failed: {e}")),
    }
    if !state.health.has_assignment.load(Ordering::Relaxed) {
        reasons.push("consumer: no partitions assigned yet".into());
    }
    if !state.health.db_ok.load(Ordering::Relaxed) {
        reasons.push("pipeline: the last database write failed; retrying".into());
    }
    if !state.health.kafka_ok.load(Ordering::Relaxed) {
        reasons.push("pipeline: the last publish failed; retrying".into());
    }
    let misplaced = state
        .health
        .wrong_partitions
        .recent(crate::pipeline::unix_ms());
    if !misplaced.is_empty() {
        reasons.push(format!(
            "kafka.partitioner: {} received records keyed for another partition in the last \
             {}s (dead-lettered as wrong_partition); a producer partitions keys differently \
             from kafka.partitioner",
            misplaced.join(", "),
            crate::pipeline::partitioning::WRONG_PARTITION_UNREADY_FOR.as_secs()
        ));
    }
    reasons
}
