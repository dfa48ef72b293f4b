//! The admin listener: /healthz (the process lives), /readyz (Kafka and the
//! database answer, the consumer holds an assignment and reports no
//! persistent errors, and no partition lately received records keyed for
//! another), /metrics
//! (Prometheus exposition). It never shares the query API's port. Consumer
//! lag, which /metrics shows, is refreshed by [`super::freshness`].
//!
//! /readyz answers from the state [`watch_readiness`] keeps, refreshed every
//! [`READINESS_CHECK_INTERVAL`]: a check costs a CQL round trip and a Kafka
//! metadata fetch, which a flood of probes must not multiply. Until the
//! first check has run, /readyz says not ready.

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use rdkafka::producer::Producer;
use scylla::client::session::Session;
use serde_json::json;

use crate::pipeline::{PipelineHealth, Publisher};

/// What the admin routes read.
#[derive(Clone)]
pub struct AdminState {
    pub metrics: PrometheusHandle,
    pub health: Arc<PipelineHealth>,
    pub session: Arc<Session>,
    /// Metadata is read through the producer in use now: one replaced
    /// because it was stuck or dead would keep failing the check.
    pub publisher: Publisher,
    pub readiness: Readiness,
}

/// The outcome of the latest readiness check: `None` before the first,
/// else the reasons galley is not ready (empty when it is).
#[derive(Clone, Default)]
pub struct Readiness(Arc<RwLock<Option<Vec<String>>>>);

impl Readiness {
    fn latest(&self) -> Option<Vec<String>> {
        // A poisoned lock only means a panic mid-write of a plain value.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, reasons: Vec<String>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(reasons);
    }
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
    readiness_answer(&state.readiness)
}

/// /readyz's answer from the latest check; never ready before the first.
fn readiness_answer(readiness: &Readiness) -> Response {
    let reasons = readiness
        .latest()
        .unwrap_or_else(|| vec!["readiness: the first check has not finished yet".into()]);
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

/// How often readiness is checked: /readyz is at most this stale, plus
/// the check's own time (at most [`CHECK_TIMEOUT`]).
pub const READINESS_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How long each of the database and Kafka checks may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the readiness check every `interval` until shutdown, keeps the
/// state /readyz answers from and the `galley_ready` gauge current.
pub async fn watch_readiness(
    state: AdminState,
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let reasons = not_ready_reasons(&state).await;
        crate::telemetry::set_ready(reasons.is_empty());
        state.readiness.set(reasons);
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// Why galley is not ready; empty when it is.
async fn not_ready_reasons(state: &AdminState) -> Vec<String> {
    metrics::counter!(crate::telemetry::READINESS_CHECKS_TOTAL).increment(1);
    let mut reasons: Vec<String> = Vec::new();
    // Both at once, so that an outage of one does not delay news of the other.
    let producer = state.publisher.producer();
    let (db, kafka) = tokio::join!(
        tokio::time::timeout(CHECK_TIMEOUT, crate::store::ping(&state.session)),
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, CHECK_TIMEOUT)
                .map(|_| ())
        })
    );
    match db {
        Ok(Ok(())) => {}
        Ok(Err(e)) => reasons.push(format!("database: {e}")),
        Err(_) => reasons.push(format!(
            "database: no answer within {}s",
            CHECK_TIMEOUT.as_secs()
        )),
    }
    match kafka {
        Ok(Ok(())) => {}
        Ok(Err(e)) => reasons.push(format!("kafka: {e}")),
        Err(e) => reasons.push(format!("kafka: check failed: {e}")),
    }
    reasons.extend(pipeline_reasons(&state.health, crate::pipeline::unix_ms()));
    reasons
}

/// What the pipeline itself reports that makes galley unready at `now_ms`.
fn pipeline_reasons(health: &PipelineHealth, now_ms: i64) -> Vec<String> {
    let mut reasons: Vec<String> = Vec::new();
    if !health.has_assignment.load(Ordering::Relaxed) {
        reasons.push("consumer: no partitions assigned yet".into());
    }
    if !health.db_ok.load(Ordering::Relaxed) {
        reasons.push("pipeline: the last database write failed; retrying".into());
    }
    if !health.kafka_ok.load(Ordering::Relaxed) {
        reasons.push("pipeline: the last publish failed; retrying".into());
    }
    let awaiting_sink = health.sink_full.load(Ordering::Relaxed);
    if awaiting_sink > 0 {
        reasons.push(format!(
            "sink: {awaiting_sink} committed batches await the database \
             (pipeline.max_batches_awaiting_sink, pipeline.max_bytes_awaiting_sink); \
             processing waits for the sink"
        ));
    }
    let misplaced = health.wrong_partitions.recent(now_ms);
    if !misplaced.is_empty() {
        reasons.push(format!(
            "kafka.partitioner: {} received records keyed for another partition in the last \
             {}s (dead-lettered as wrong_partition); a producer partitions keys differently \
             from kafka.partitioner",
            misplaced.join(", "),
            crate::pipeline::partitioning::WRONG_PARTITION_UNREADY_FOR.as_secs()
        ));
    }
    if let Some(error) = health.consumer_errors.persisting(now_ms) {
        reasons.push(format!("kafka: consumer errors: {error}"));
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistent_consumer_errors_make_galley_unready() {
        let health = PipelineHealth::new();
        health.has_assignment.store(true, Ordering::Relaxed);
        assert_eq!(pipeline_reasons(&health, 1_000), Vec::<String>::new());
        let error = "Fetch from broker 1 failed: Local: Decompression failed";
        health.consumer_errors.record_error(1_000, error.into());
        let reasons = pipeline_reasons(&health, 2_000);
        assert!(
            reasons
                .iter()
                .any(|r| r.starts_with(&format!("kafka: consumer errors: {error}"))),
            "{reasons:?}"
        );
    }

    #[test]
    fn a_sink_that_holds_processing_back_makes_galley_unready() {
        let health = PipelineHealth::new();
        health.has_assignment.store(true, Ordering::Relaxed);
        health.sink_full.store(64, Ordering::Relaxed);
        let reasons = pipeline_reasons(&health, 1_000);
        assert!(
            reasons
                .iter()
                .any(|r| r.starts_with("sink: 64 committed batches await the database")),
            "{reasons:?}"
        );
        health.sink_full.store(0, Ordering::Relaxed);
        assert_eq!(pipeline_reasons(&health, 1_000), Vec::<String>::new());
    }

    #[test]
    fn not_ready_until_the_first_check_then_as_the_latest_check_says() {
        let readiness = Readiness::default();
        assert_eq!(
            readiness_answer(&readiness).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        readiness.set(Vec::new());
        assert_eq!(readiness_answer(&readiness).status(), StatusCode::OK);
        readiness.set(vec!["database: no answer within 2s".into()]);
        assert_eq!(
            readiness_answer(&readiness).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
