//! The admin listener: /healthz (the process lives), /readyz (Kafka and the
//! database answer and the consumer holds an assignment), /metrics
//! (Prometheus exposition). It never shares the query API's port.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, Producer};
use scylla::client::session::Session;
use serde_json::json;
use tokio::sync::watch;
use tracing::warn;

use crate::pipeline::{PipelineContext, PipelineHealth};
use crate::telemetry as t;

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
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
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

async fn readyz(State(state): State<AdminState>) -> Response {
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

/// Refreshes the lag gauges from the broker's high watermarks and the
/// group's committed offsets, every `interval`, until shutdown.
pub async fn track_lag(
    consumer: Arc<StreamConsumer<PipelineContext>>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let c = consumer.clone();
        let refreshed = tokio::task::spawn_blocking(move || refresh_lag(&c)).await;
        if let Ok(Err(e)) = refreshed {
            warn!(error = %e, "lag refresh failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

fn refresh_lag(consumer: &StreamConsumer<PipelineContext>) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(5);
    let assignment = consumer.assignment()?;
    if assignment.count() == 0 {
        return Ok(());
    }
    let committed = consumer.committed_offsets(assignment, timeout)?;
    for element in committed.elements() {
        let (low, high) =
            consumer.fetch_watermarks(element.topic(), element.partition(), timeout)?;
        let position = element.offset().to_raw().filter(|o| *o >= 0).unwrap_or(low);
        let lag = (high - position).max(0);
        metrics::gauge!(
            t::CONSUMER_LAG_RECORDS,
            "topic" => element.topic().to_string(),
            "partition" => element.partition().to_string()
        )
        .set(lag as f64);
    }
    Ok(())
}
