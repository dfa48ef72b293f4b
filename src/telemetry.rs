//! Logging setup and every metric name galley exports, in one place so that
//! dashboards, alerts and tests agree on them.
//!
//! Names follow Prometheus conventions: a `galley_` prefix, snake_case, base
//! units in the name, `_total` on counters. Labels come only from small fixed
//! sets (topic, partition, event type, outcome, statement, route, status
//! class), never from ids or error text.

use std::io::IsTerminal;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

use crate::config::LogConfig;

/// Input events taken from Kafka. Labels: topic, event_type.
pub const EVENTS_CONSUMED_TOTAL: &str = "galley_events_consumed_total";
/// Input events whose effects were written. Labels: topic, event_type, outcome.
pub const EVENTS_APPLIED_TOTAL: &str = "galley_events_applied_total";
/// Business rejections. Labels: topic, event_type, reason.
pub const EVENTS_REJECTED_TOTAL: &str = "galley_events_rejected_total";
/// Poison events sent to the dead-letter topic. Labels: topic, error_class.
pub const EVENTS_DEAD_LETTERED_TOTAL: &str = "galley_events_dead_lettered_total";
/// Events galley published. Labels: topic, event_type.
pub const EVENTS_PUBLISHED_TOTAL: &str = "galley_events_published_total";
/// Batches processed, and their size. Histogram of events per batch.
pub const BATCH_EVENTS: &str = "galley_batch_events";
/// Time from poll to offsets stored for a batch.
pub const BATCH_DURATION_SECONDS: &str = "galley_batch_duration_seconds";
/// Time spent in pure handlers per batch.
pub const HANDLER_DURATION_SECONDS: &str = "galley_handler_duration_seconds";
/// Event timestamp to projection written.
pub const END_TO_END_LATENCY_SECONDS: &str = "galley_end_to_end_latency_seconds";
/// CQL statement latency. Labels: statement.
pub const DB_STATEMENT_DURATION_SECONDS: &str = "galley_db_statement_duration_seconds";
/// CQL statement failures. Labels: statement.
pub const DB_ERRORS_TOTAL: &str = "galley_db_errors_total";
/// Publish failures that were retried. Labels: topic.
pub const PUBLISH_ERRORS_TOTAL: &str = "galley_publish_errors_total";
/// Records between the committed position and the end of a partition. Labels: topic, partition.
pub const CONSUMER_LAG_RECORDS: &str = "galley_consumer_lag_records";
/// Seconds the newest applied event of a lagging partition is behind the
/// wall clock (0 when the partition has no lag). Labels: topic, partition.
pub const CONSUMER_LAG_SECONDS: &str = "galley_consumer_lag_seconds";
/// HTTP requests answered. Labels: listener (api, admin), route (the matched
/// route template, or `unmatched`), method, status_class (2xx, 4xx, 5xx).
pub const HTTP_REQUESTS_TOTAL: &str = "galley_http_requests_total";
/// HTTP request latency. Labels: listener, route, method.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "galley_http_request_duration_seconds";
/// Rebalances seen. Labels: kind (assign, revoke).
pub const REBALANCES_TOTAL: &str = "galley_rebalances_total";
/// Partitions this process owns now.
pub const PARTITIONS_OWNED: &str = "galley_partitions_owned";
/// Events polled but not yet committed.
pub const EVENTS_IN_FLIGHT: &str = "galley_events_in_flight";
/// Build information; value 1. Labels: version.
pub const BUILD_INFO: &str = "galley_build_info";

/// Buckets for latencies from a millisecond to tens of seconds.
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const BATCH_BUCKETS: &[f64] = &[
    1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];

/// Installs the tracing subscriber: human-readable text or JSON lines.
pub fn init_logging(cfg: &LogConfig) {
    // librdkafka and the CQL driver are chatty at debug; keep them at warn unless asked.
    let filter = EnvFilter::try_new(&cfg.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = if cfg.format == "json" {
        registry
            .with(fmt::layer().json().with_current_span(false))
            .try_init()
    } else {
        // Colour only for a person at a terminal, never into files or pipes.
        let ansi = std::io::stderr().is_terminal() && std::io::stdout().is_terminal();
        registry
            .with(fmt::layer().with_target(false).with_ansi(ansi))
            .try_init()
    };
    // A second init (tests, embedded use) keeps the first subscriber.
    let _ = result;
}

/// Installs the global metrics recorder and returns the handle the admin
/// listener renders from.
pub fn init_metrics() -> anyhow::Result<PrometheusHandle> {
    use metrics_exporter_prometheus::Matcher;
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS_SECONDS)?
        .set_buckets_for_metric(Matcher::Full(BATCH_EVENTS.into()), BATCH_BUCKETS)?
        .install_recorder()?;
    describe_metrics();
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}

fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(EVENTS_CONSUMED_TOTAL, "Input events taken from Kafka.");
    describe_counter!(
        EVENTS_APPLIED_TOTAL,
        "Input events whose effects were written and offsets stored."
    );
    describe_counter!(
        EVENTS_REJECTED_TOTAL,
        "Input events refused by a business rule."
    );
    describe_counter!(
        EVENTS_DEAD_LETTERED_TOTAL,
        "Poison input events sent to the dead-letter topic."
    );
    describe_counter!(EVENTS_PUBLISHED_TOTAL, "Events galley published to Kafka.");
    describe_histogram!(BATCH_EVENTS, "Events per processed batch.");
    describe_histogram!(
        BATCH_DURATION_SECONDS,
        Unit::Seconds,
        "Time to process one batch, from its first poll to offsets stored."
    );
    describe_histogram!(
        HANDLER_DURATION_SECONDS,
        Unit::Seconds,
        "Time spent in pure handlers for one batch."
    );
    describe_histogram!(
        END_TO_END_LATENCY_SECONDS,
        Unit::Seconds,
        "Time from an event's timestamp to its projection rows written."
    );
    describe_histogram!(
        DB_STATEMENT_DURATION_SECONDS,
        Unit::Seconds,
        "CQL statement latency."
    );
    describe_counter!(DB_ERRORS_TOTAL, "CQL statements that failed.");
    describe_counter!(
        PUBLISH_ERRORS_TOTAL,
        "Kafka publishes that failed and were retried."
    );
    describe_gauge!(
        CONSUMER_LAG_RECORDS,
        "Records not yet committed, per partition."
    );
    describe_gauge!(
        CONSUMER_LAG_SECONDS,
        "How far behind the wall clock a lagging partition's newest applied event is."
    );
    describe_counter!(HTTP_REQUESTS_TOTAL, "HTTP requests answered.");
    describe_histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "HTTP request latency."
    );
    describe_counter!(REBALANCES_TOTAL, "Consumer group rebalances seen.");
    describe_gauge!(PARTITIONS_OWNED, "Input partitions this process owns.");
    describe_gauge!(EVENTS_IN_FLIGHT, "Events polled and not yet committed.");
    describe_gauge!(BUILD_INFO, "Build information; the value is always 1.");
}
