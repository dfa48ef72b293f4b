//! What a batch reports once it is done: its metrics (consumed, dead
//! letters, end-to-end latency), its warnings, and the compact description
//! of its records that every batch log line carries.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::warn;

use super::step::Step;
use super::{DeadLetter, InputRecord};
use crate::telemetry as t;

/// Creates the series that must exist before anything happens, so that
/// `rate()` and `increase()` see their first increment and dashboards show
/// a zero rather than no data.
pub(super) fn register_metrics() {
    for step in Step::ALL {
        metrics::counter!(t::BATCH_RETRIES_TOTAL, "step" => step.label()).increment(0);
    }
    metrics::counter!(t::CONSUMER_ERRORS_TOTAL).increment(0);
    metrics::counter!(t::BATCHES_DEFERRED_TOTAL).increment(0);
    metrics::gauge!(t::EVENTS_IN_FLIGHT).set(0.0);
}

/// Adds each record to `counter`, labelled by topic. Records arrive in runs
/// of one topic, so this touches the registry once per run, not per record.
pub(super) fn count_by_topic(batch: &[InputRecord], counter: &'static str) {
    for run in batch.chunk_by(|a, b| Arc::ptr_eq(&a.topic, &b.topic) || a.topic == b.topic) {
        metrics::counter!(counter, "topic" => run[0].topic.to_string()).increment(run.len() as u64);
    }
}

/// Counts and logs each dead letter once its batch is done: one warning per
/// poison event, naming where it came from and why, never its content (the
/// full error message travels in the dead letter's headers).
pub(super) fn report_dead_letters(dead_letters: &[DeadLetter], dead_letter_topic: &str) {
    let mut counts: BTreeMap<(&str, &'static str, &'static str), u64> = BTreeMap::new();
    for d in dead_letters {
        warn!(
            topic = %d.topic,
            partition = d.partition,
            offset = d.offset,
            error_class = d.error_class.as_str(),
            stage = d.stage.as_str(),
            event_type = d.event_type,
            dead_letter_topic,
            "poison event sent to the dead-letter topic"
        );
        *counts
            .entry((&d.topic, d.event_type, d.error_class.as_str()))
            .or_default() += 1;
    }
    for ((topic, event_type, error_class), n) in counts {
        metrics::counter!(
            t::EVENTS_DEAD_LETTERED_TOTAL,
            "topic" => topic.to_string(),
            "event_type" => event_type,
            "error_class" => error_class
        )
        .increment(n);
    }
}

/// Records, for every event of a finished batch that has a Kafka timestamp,
/// the time from that timestamp to now, when its rows are written.
pub(super) fn record_end_to_end_latency(batch: &[InputRecord], now_ms: i64) {
    // One histogram handle per topic; a batch holds very few topics.
    let mut handles: Vec<(&Arc<str>, metrics::Histogram)> = Vec::new();
    for record in batch {
        let Some(ts) = record.timestamp_ms else {
            continue;
        };
        let secs = (now_ms - ts).max(0) as f64 / 1000.0;
        let index = match handles.iter().position(|(t, _)| **t == record.topic) {
            Some(i) => i,
            None => {
                let handle = metrics::histogram!(
                    t::END_TO_END_LATENCY_SECONDS,
                    "topic" => record.topic.to_string()
                );
                handles.push((&record.topic, handle));
                handles.len() - 1
            }
        };
        handles[index].1.record(secs);
    }
}

/// Displays a batch as `topic[partition]@first..=last` per partition, for logs.
pub(super) struct BatchSpan<'a>(pub(super) &'a [InputRecord]);

impl std::fmt::Display for BatchSpan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        /// Enough partitions to locate a problem without flooding the line.
        const SHOWN: usize = 12;
        let mut ranges: BTreeMap<(&str, i32), (i64, i64)> = BTreeMap::new();
        for r in self.0 {
            let range = ranges
                .entry((&r.topic, r.partition))
                .or_insert((r.offset, r.offset));
            range.0 = range.0.min(r.offset);
            range.1 = range.1.max(r.offset);
        }
        for (i, ((topic, partition), (first, last))) in ranges.iter().enumerate() {
            if i == SHOWN {
                return write!(f, " (+{} more partitions)", ranges.len() - SHOWN);
            }
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{topic}[{partition}]@{first}..={last}")?;
        }
        Ok(())
    }
}
