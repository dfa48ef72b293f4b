//! Logging setup and every metric galley exports, in one place so that
//! dashboards, alerts, tests and the README agree on them.
//!
//! Names follow Prometheus conventions: a `galley_` prefix, snake_case, base
//! units in the name (`_seconds`), `_total` on counters and only on
//! counters. Labels come only from small fixed sets (topic, partition, event
//! type, outcome, reason, error class, statement, step, route template,
//! status class), never from ids, keys or error text, so that the number of
//! series stays bounded whatever the input.
//!
//! # What happens to an input event
//! Every input event taken from Kafka is counted once in
//! [`EVENTS_CONSUMED_TOTAL`] when it is polled, and, once its batch is
//! committed, in exactly one of four outcome counters:
//! [`EVENTS_APPLIED_TOTAL`] (a handler accepted it and its effects were
//! written), [`EVENTS_REJECTED_TOTAL`] (a business rule refused it; a result
//! event says so), [`EVENTS_DUPLICATE_TOTAL`] (already applied, or a repeat
//! the handler ignores by design) and [`EVENTS_DEAD_LETTERED_TOTAL`] (poison,
//! sent to the dead-letter topic). Once a process has caught up, the four sum
//! to the consumed count. Counters restart from zero with the process, as
//! Prometheus expects; a batch redone after a crash is counted again by the
//! process that redoes it, mostly as duplicates.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

use crate::config::{LogConfig, LogFormat};

/// Input events polled from Kafka. Labels: topic.
pub const EVENTS_CONSUMED_TOTAL: &str = "galley_events_consumed_total";
/// Input events a handler accepted, with their effects written. Labels: topic, event_type.
pub const EVENTS_APPLIED_TOTAL: &str = "galley_events_applied_total";
/// Input events a business rule refused. Labels: topic, event_type, reason.
pub const EVENTS_REJECTED_TOTAL: &str = "galley_events_rejected_total";
/// Input events skipped as repeats. Labels: topic, event_type.
pub const EVENTS_DUPLICATE_TOTAL: &str = "galley_events_duplicate_total";
/// Poison input events sent to the dead-letter topic. Labels: topic,
/// event_type (`unknown` when the bytes could not be decoded), error_class.
pub const EVENTS_DEAD_LETTERED_TOTAL: &str = "galley_events_dead_lettered_total";
/// Messages galley published and the broker acknowledged. Labels: topic, event_type.
pub const EVENTS_PUBLISHED_TOTAL: &str = "galley_events_published_total";
/// Events per processed batch (histogram).
pub const BATCH_SIZE_EVENTS: &str = "galley_batch_size_events";
/// Time from a batch's start of processing to its offsets stored (histogram).
pub const BATCH_DURATION_SECONDS: &str = "galley_batch_duration_seconds";
/// Time one step of a batch took, from its first attempt to its success,
/// retries included (histogram). Labels: step (check, restore, prepare,
/// publish, write).
pub const BATCH_STEP_DURATION_SECONDS: &str = "galley_batch_step_duration_seconds";
/// Failed batch steps that were retried. Labels: step (check, restore, prepare, publish, write, sink).
pub const BATCH_RETRIES_TOTAL: &str = "galley_batch_retries_total";
/// Time the pure handlers took to decide one partition's share of a batch
/// (histogram). Labels: topic.
pub const HANDLER_DURATION_SECONDS: &str = "galley_handler_duration_seconds";
/// From an event's Kafka timestamp to its projection rows written (histogram). Labels: topic.
pub const END_TO_END_LATENCY_SECONDS: &str = "galley_end_to_end_latency_seconds";
/// CQL statement latency (histogram). Labels: statement.
pub const DB_STATEMENT_DURATION_SECONDS: &str = "galley_db_statement_duration_seconds";
/// CQL statements that failed. Labels: statement.
pub const DB_ERRORS_TOTAL: &str = "galley_db_errors_total";
/// Publishes the broker did not acknowledge (the batch retries them). Labels: topic.
pub const PUBLISH_ERRORS_TOTAL: &str = "galley_publish_errors_total";
/// Producers replaced after librdkafka declared the one in use dead, or
/// after a publish whose messages timed out.
pub const PRODUCER_REPLACEMENTS_TOTAL: &str = "galley_producer_replacements_total";
/// Transactions committed only to release committed offsets that a
/// transaction of galley's own producer held (see `pipeline::held_offsets`).
pub const HELD_OFFSETS_RELEASES_TOTAL: &str = "galley_held_offsets_releases_total";
/// Kafka clients given `kafka.brokers` again after no broker answered them
/// for a while (see `kafka::reconnect`). Labels: client.
pub const KAFKA_BROKERS_READDED_TOTAL: &str = "galley_kafka_brokers_readded_total";
/// Errors the consumer reported while polling (broker unreachable and the like).
pub const CONSUMER_ERRORS_TOTAL: &str = "galley_consumer_errors_total";
/// Input records found on another partition than their key's under
/// `kafka.partitioner`, dead-lettered as `wrong_partition`. Labels: topic, partition.
pub const WRONG_PARTITION_EVENTS_TOTAL: &str = "galley_wrong_partition_events_total";
/// Records between the group's committed position and the end of a
/// partition, refreshed from the broker's watermarks. Labels: topic, partition.
pub const CONSUMER_LAG_RECORDS: &str = "galley_consumer_lag_records";
/// Seconds the newest applied event of a lagging partition is behind the
/// wall clock (0 when the partition has no lag). Labels: topic, partition.
pub const CONSUMER_LAG_SECONDS: &str = "galley_consumer_lag_seconds";
/// Consumer group rebalances seen. Labels: kind (assign, revoke).
pub const REBALANCES_TOTAL: &str = "galley_rebalances_total";
/// Input partitions this process owns now.
pub const PARTITIONS_OWNED: &str = "galley_partitions_owned";
/// Events of the batch being processed (polled, not yet committed).
pub const EVENTS_IN_FLIGHT: &str = "galley_events_in_flight";
/// Approximate bytes the processor's row caches hold (bounded by
/// `shop.row_cache_max_bytes`).
pub const ROW_CACHE_BYTES: &str = "galley_row_cache_bytes";
/// Approximate bytes of rows committed batches changed that the changelog
/// sink has not applied yet, kept in memory until it has (exactly-once
/// delivery only; not part of `shop.row_cache_max_bytes`: bounded by
/// `pipeline.max_bytes_awaiting_sink`).
pub const ROWS_AWAITING_SINK_BYTES: &str = "galley_rows_awaiting_sink_bytes";
/// Row reads a batch did not make because the row's key was surely never
/// written (see `store::known_keys`).
pub const ROW_READS_SKIPPED_TOTAL: &str = "galley_row_reads_skipped_total";
/// Keys the owned partitions know to exist, held in memory (8 bytes and a
/// little more each).
pub const KNOWN_ROW_KEYS: &str = "galley_known_row_keys";
/// HTTP requests answered. Labels: listener (api, admin), route (the matched
/// route template, or `unmatched`), method (GET, HEAD, POST, PUT, DELETE,
/// PATCH, OPTIONS, CONNECT, TRACE, or `other`), status_class (2xx, 4xx, 5xx).
pub const HTTP_REQUESTS_TOTAL: &str = "galley_http_requests_total";
/// HTTP request latency (histogram). Labels: listener, route, method.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "galley_http_request_duration_seconds";
/// Connections a listener holds open now. Labels: listener (api, admin).
pub const LISTENER_CONNECTIONS_OPEN: &str = "galley_listener_connections_open";
/// Token checks run on /v1 requests. Labels: outcome (valid, invalid).
pub const API_AUTH_CHECKS_TOTAL: &str = "galley_api_auth_checks_total";
/// /v1 requests refused with 429 before any token check, because their
/// client IP failed the check too often (`api.unauthenticated_rate_limit_*`).
pub const API_UNAUTHENTICATED_THROTTLED_TOTAL: &str = "galley_api_unauthenticated_throttled_total";
/// `exactly_once`: committed batches of this process whose row changes the
/// sink has not applied to the database yet.
pub const SINK_AWAITING_BATCHES: &str = "galley_sink_awaiting_batches";
/// `exactly_once`: batches that waited for the sink in vain and gave way,
/// their records rewound to be read again after a poll.
pub const BATCHES_DEFERRED_TOTAL: &str = "galley_batches_deferred_total";
/// `exactly_once`: Kafka transactions ended. Labels: outcome (committed, aborted).
pub const TRANSACTIONS_TOTAL: &str = "galley_transactions_total";
/// `exactly_once`: time one part of a batch's transaction took, from its
/// start. Labels: call (records, changelog, offsets, commit).
pub const TRANSACTION_CALL_DURATION_SECONDS: &str = "galley_transaction_call_duration_seconds";
/// 1 when /readyz would answer 200, else 0.
pub const READY: &str = "galley_ready";
/// Readiness checks run (a database ping and a Kafka metadata fetch each).
pub const READINESS_CHECKS_TOTAL: &str = "galley_readiness_checks_total";
/// Build information; value 1. Labels: version.
pub const BUILD_INFO: &str = "galley_build_info";

/// The Prometheus type of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One exported metric: its name, type, the only labels it may carry, and
/// its help text.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

const fn def(
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    help: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        kind,
        labels,
        help,
    }
}

/// Every metric galley exports. The exposition's HELP lines come from here,
/// and the tests hold dashboards, alerts and the live exposition to it.
pub const METRICS: &[MetricDef] = &[
    def(EVENTS_CONSUMED_TOTAL, Kind::Counter, &["topic"], "Input events polled from Kafka."),
    def(
        EVENTS_APPLIED_TOTAL,
        Kind::Counter,
        &["topic", "event_type"],
        "Input events a handler accepted, with their effects published and written.",
    ),
    def(
        EVENTS_REJECTED_TOTAL,
        Kind::Counter,
        &["topic", "event_type", "reason"],
        "Input events refused by a business rule (published as a rejection result).",
    ),
    def(
        EVENTS_DUPLICATE_TOTAL,
        Kind::Counter,
        &["topic", "event_type"],
        "Input events skipped as repeats: already applied, or a repeated request.",
    ),
    def(
        EVENTS_DEAD_LETTERED_TOTAL,
        Kind::Counter,
        &["topic", "event_type", "error_class"],
        "Poison input events sent to the dead-letter topic.",
    ),
    def(
        EVENTS_PUBLISHED_TOTAL,
        Kind::Counter,
        &["topic", "event_type"],
        "Messages galley published that the broker acknowledged.",
    ),
    def(BATCH_SIZE_EVENTS, Kind::Histogram, &[], "Events per processed batch."),
    def(
        BATCH_DURATION_SECONDS,
        Kind::Histogram,
        &[],
        "Time to process one batch, from decoding to offsets stored.",
    ),
    def(
        BATCH_STEP_DURATION_SECONDS,
        Kind::Histogram,
        &["step"],
        "Time one step of a batch took (check, restore, prepare, publish, write), retries included.",
    ),
    def(
        BATCH_RETRIES_TOTAL,
        Kind::Counter,
        &["step"],
        "Batch steps (check, restore, prepare, publish, write) and sink rounds that failed and were retried.",
    ),
    def(
        HANDLER_DURATION_SECONDS,
        Kind::Histogram,
        &["topic"],
        "Time the pure handlers took to decide one partition's share of a batch.",
    ),
    def(
        END_TO_END_LATENCY_SECONDS,
        Kind::Histogram,
        &["topic"],
        "Time from an event's Kafka timestamp to its projection rows written.",
    ),
    def(
        DB_STATEMENT_DURATION_SECONDS,
        Kind::Histogram,
        &["statement"],
        "CQL statement latency, by statement.",
    ),
    def(DB_ERRORS_TOTAL, Kind::Counter, &["statement"], "CQL statements that failed, by statement."),
    def(
        PUBLISH_ERRORS_TOTAL,
        Kind::Counter,
        &["topic"],
        "Publishes the broker did not acknowledge; their batch retries them.",
    ),
    def(
        PRODUCER_REPLACEMENTS_TOTAL,
        Kind::Counter,
        &[],
        "Kafka producers replaced after a fatal librdkafka error or a publish that timed out.",
    ),
    def(
        HELD_OFFSETS_RELEASES_TOTAL,
        Kind::Counter,
        &[],
        "Transactions committed only to release committed offsets a transaction held.",
    ),
    def(
        KAFKA_BROKERS_READDED_TOTAL,
        Kind::Counter,
        &["client"],
        "Kafka clients given kafka.brokers again after no broker answered them for 10 s.",
    ),
    def(
        CONSUMER_ERRORS_TOTAL,
        Kind::Counter,
        &[],
        "Errors the Kafka consumer reported while polling.",
    ),
    def(
        WRONG_PARTITION_EVENTS_TOTAL,
        Kind::Counter,
        &["topic", "partition"],
        "Input records on another partition than their key's under kafka.partitioner (dead-lettered).",
    ),
    def(
        CONSUMER_LAG_RECORDS,
        Kind::Gauge,
        &["topic", "partition"],
        "Records between the group's committed offset and the end of the partition.",
    ),
    def(
        CONSUMER_LAG_SECONDS,
        Kind::Gauge,
        &["topic", "partition"],
        "How far behind the wall clock a lagging partition's newest applied event is (0 without lag).",
    ),
    def(
        REBALANCES_TOTAL,
        Kind::Counter,
        &["kind"],
        "Consumer group rebalances seen, by kind (assign, revoke).",
    ),
    def(PARTITIONS_OWNED, Kind::Gauge, &[], "Input partitions this process owns."),
    def(
        EVENTS_IN_FLIGHT,
        Kind::Gauge,
        &[],
        "Events of the batch being processed, polled and not yet committed.",
    ),
    def(
        ROW_CACHE_BYTES,
        Kind::Gauge,
        &[],
        "Approximate bytes the row caches of the owned partitions hold.",
    ),
    def(
        ROW_READS_SKIPPED_TOTAL,
        Kind::Counter,
        &[],
        "Row reads not made because the key was surely never written.",
    ),
    def(
        KNOWN_ROW_KEYS,
        Kind::Gauge,
        &[],
        "Keys of rows the owned partitions know to exist, held in memory.",
    ),
    def(
        ROWS_AWAITING_SINK_BYTES,
        Kind::Gauge,
        &[],
        "Approximate bytes of committed rows kept in memory until the changelog sink applies them.",
    ),
    def(
        SINK_AWAITING_BATCHES,
        Kind::Gauge,
        &[],
        "Committed batches whose row changes the sink has not applied to the database yet.",
    ),
    def(
        BATCHES_DEFERRED_TOTAL,
        Kind::Counter,
        &[],
        "Batches that waited 2 s for the sink in vain and gave way, to be read again after a poll.",
    ),
    def(
        TRANSACTIONS_TOTAL,
        Kind::Counter,
        &["outcome"],
        "Kafka transactions ended, by outcome (committed, aborted).",
    ),
    def(
        TRANSACTION_CALL_DURATION_SECONDS,
        Kind::Histogram,
        &["call"],
        "Time one part of a batch's transaction took: its records, changelog and offsets acknowledged (they overlap), then the commit.",
    ),
    def(
        HTTP_REQUESTS_TOTAL,
        Kind::Counter,
        &["listener", "route", "method", "status_class"],
        "HTTP requests answered, by listener, route template, method and status class.",
    ),
    def(
        HTTP_REQUEST_DURATION_SECONDS,
        Kind::Histogram,
        &["listener", "route", "method"],
        "HTTP request latency, by listener, route template and method.",
    ),
    def(
        LISTENER_CONNECTIONS_OPEN,
        Kind::Gauge,
        &["listener"],
        "Connections a listener holds open now, by listener; at most its max_connections.",
    ),
    def(
        API_AUTH_CHECKS_TOTAL,
        Kind::Counter,
        &["outcome"],
        "Bearer tokens checked on /v1 requests, by outcome (valid, invalid).",
    ),
    def(
        API_UNAUTHENTICATED_THROTTLED_TOTAL,
        Kind::Counter,
        &[],
        "/v1 requests refused with 429 before the token check: their client IP failed it too often.",
    ),
    def(
        READY,
        Kind::Gauge,
        &[],
        "1 when galley is ready (Kafka and the database answer, partitions held, last writes fine), else 0.",
    ),
    def(
        READINESS_CHECKS_TOTAL,
        Kind::Counter,
        &[],
        "Readiness checks run, each a database ping and a Kafka metadata fetch.",
    ),
    def(BUILD_INFO, Kind::Gauge, &["version"], "Build information; the value is always 1."),
];

/// The definition of an exported metric, by its name.
pub fn metric(name: &str) -> Option<&'static MetricDef> {
    METRICS.iter().find(|m| m.name == name)
}

/// Buckets for latencies from a millisecond to tens of seconds.
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Buckets for the end-to-end latency, each about 1.25-1.5 times the one
/// before, from a millisecond to a minute: its p50/p99/p99.9 are what the
/// service promises, so they must be readable to within a bucket's width
/// (the coarse latency buckets would put p99 somewhere between 100 and 250 ms).
pub const END_TO_END_LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0065, 0.008, 0.01, 0.0125, 0.015, 0.02, 0.025,
    0.03, 0.04, 0.05, 0.065, 0.08, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.65, 0.8, 1.0, 1.5,
    2.0, 3.0, 5.0, 10.0, 30.0, 60.0,
];
/// Buckets for batch sizes, up to well past the largest `batch_max_events` in use.
const BATCH_SIZE_BUCKETS: &[f64] = &[
    1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];
/// How often histogram samples are folded into their buckets when nobody
/// scrapes; without it they would pile up in memory between scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Targets of the client libraries, kept at warn unless the filter names them:
/// at debug they are chatty, and librdkafka's debug contexts describe
/// connections and configuration in detail.
const QUIET_TARGETS: &[&str] = &["librdkafka", "rdkafka", "scylla"];

/// Installs the tracing subscriber: human-readable text by default, JSON
/// lines when `log.format = "json"`. Log records from the `log` crate
/// (librdkafka's callback goes through it) are captured too.
pub fn init_logging(cfg: &LogConfig) {
    // Config validation has already checked the filter; fall back rather than die.
    let mut filter = EnvFilter::try_new(&cfg.level).unwrap_or_else(|_| EnvFilter::new("info"));
    for target in QUIET_TARGETS {
        if !cfg.level.contains(target) {
            if let Ok(directive) = format!("{target}=warn").parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    let registry = tracing_subscriber::registry().with(filter);
    let result = match cfg.format {
        LogFormat::Json => registry
            .with(fmt::layer().json().with_current_span(false))
            .try_init(),
        LogFormat::Text => {
            // Colour only for a person at a terminal, never into files or pipes.
            let ansi = std::io::stderr().is_terminal() && std::io::stdout().is_terminal();
            registry
                .with(fmt::layer().with_target(false).with_ansi(ansi))
                .try_init()
        }
    };
    // A second init (tests, embedded use) keeps the first subscriber.
    let _ = result;
}

/// Installs the global metrics recorder and returns the handle the admin
/// listener renders from. Also starts a thread that keeps histogram memory
/// bounded when nobody scrapes.
pub fn init_metrics() -> anyhow::Result<PrometheusHandle> {
    use metrics_exporter_prometheus::Matcher;
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS_SECONDS)?
        .set_buckets_for_metric(Matcher::Full(BATCH_SIZE_EVENTS.into()), BATCH_SIZE_BUCKETS)?
        // A full-name match wins over the `_seconds` suffix above.
        .set_buckets_for_metric(
            Matcher::Full(END_TO_END_LATENCY_SECONDS.into()),
            END_TO_END_LATENCY_BUCKETS_SECONDS,
        )?
        .install_recorder()?;
    describe_metrics();
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    // Not ready until the first readiness check says so.
    metrics::gauge!(READY).set(0.0);
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_INTERVAL);
            upkeep.run_upkeep();
        })?;
    Ok(handle)
}

fn describe_metrics() {
    for m in METRICS {
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.name, m.help),
            Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
            Kind::Histogram => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

/// Records readiness as the [`READY`] gauge.
pub fn set_ready(ready: bool) {
    metrics::gauge!(READY).set(if ready { 1.0 } else { 0.0 });
}

/// A histogram bucket's upper bound, ordered so that `+Inf` sorts last.
#[derive(Debug, Clone, Copy)]
pub struct BucketBound(pub f64);

impl PartialEq for BucketBound {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for BucketBound {}

impl PartialOrd for BucketBound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for BucketBound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The cumulative bucket counts of histogram `name` in Prometheus text,
/// summed over its label sets; for reading quantiles without a Prometheus
/// server (`make bench` does this around a measured phase).
pub fn histogram_buckets(text: &str, name: &str) -> anyhow::Result<BTreeMap<BucketBound, u64>> {
    use anyhow::Context;
    let prefix = format!("{name}_bucket{{");
    let mut out: BTreeMap<BucketBound, u64> = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with(&prefix)) {
        let le = line
            .split("le=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .with_context(|| format!("no le label in `{line}`"))?;
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().with_context(|| format!("bad le in `{line}`"))?
        };
        let count: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no count in `{line}`"))?;
        *out.entry(BucketBound(bound)).or_default() += count as u64;
    }
    Ok(out)
}

/// The `q` quantile of cumulative bucket counts `(upper bound, count)`,
/// interpolated linearly within its bucket as Prometheus'
/// `histogram_quantile` does; one in the `+Inf` bucket is the last finite bound.
pub fn histogram_quantile(cumulative: &[(f64, u64)], q: f64) -> f64 {
    let total = cumulative.last().map(|(_, c)| *c).unwrap_or(0) as f64;
    let target = q * total;
    let mut lower = (0.0, 0u64);
    for &(bound, count) in cumulative {
        if count as f64 >= target {
            if bound.is_infinite() {
                return lower.0;
            }
            let width = count.saturating_sub(lower.1) as f64;
            let into = if width > 0.0 {
                (target - lower.1 as f64) / width
            } else {
                0.0
            };
            return lower.0 + (bound - lower.0) * into;
        }
        lower = (bound, count);
    }
    lower.0
}

#[cfg(test)]
#[path = "telemetry_tests.rs"]
mod tests;
