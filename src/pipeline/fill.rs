//! Filling a batch from the consumer, and applying to it the revocations
//! that librdkafka's rebalance callbacks report while it fills.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::consumer::StreamConsumer;
use tokio::sync::watch;
use tracing::warn;

use super::{
    count_by_topic, unix_ms, GroupEvents, InputRecord, PipelineContext, PipelineHealth, Processor,
    Transactional,
};
use crate::config::PipelineConfig;
use crate::telemetry as t;

/// A batch being filled, with what a revocation must reach.
pub(super) struct Filling<'a, P> {
    pub(super) batch: &'a mut Vec<InputRecord>,
    pub(super) events: &'a GroupEvents,
    pub(super) processor: &'a mut P,
    pub(super) health: &'a PipelineHealth,
    /// `exactly_once` delivery's state, which revocations reach too.
    pub(super) transactional: Option<&'a mut Transactional>,
}

impl<P: Processor> Filling<'_, P> {
    /// The bytes the batch holds (see [`InputRecord::held_bytes`]).
    fn bytes(&self) -> usize {
        self.batch.iter().map(InputRecord::held_bytes).sum()
    }

    /// Adds a record the consumer returned. Revocations seen before it are
    /// applied first: librdkafka runs the rebalance callback inside the poll,
    /// in order with the records, so whatever the batch holds of a partition
    /// revoked since was fetched before the revocation, and this record,
    /// even of that same partition, after it (a partition revoked and
    /// assigned again within one filling is fetched again from its committed
    /// offset). Dropping only the former keeps the latter: the fetch
    /// position has moved past them, and the batch's stored offsets would
    /// otherwise skip them for good.
    pub(super) fn push(&mut self, record: InputRecord) {
        if self.events.has_news() {
            self.apply_revocations();
        }
        self.batch.push(record);
    }

    /// Ends the filling: applies the revocations seen since the last record.
    pub(super) fn finish(&mut self) {
        self.apply_revocations();
        count_by_topic(self.batch, t::EVENTS_CONSUMED_TOTAL);
    }

    /// Applies revocations seen by the rebalance callback: drops unprocessed
    /// records of revoked partitions (counted as consumed all the same) and
    /// tells the processor to forget them.
    fn apply_revocations(&mut self) {
        let (revoked, owned) = self.events.take();
        self.health
            .has_assignment
            .store(owned > 0, Ordering::Relaxed);
        if revoked.is_empty() {
            return;
        }
        let is_revoked = |r: &InputRecord| {
            revoked
                .iter()
                .any(|(t, p)| *p == r.partition && t.as_str() == &*r.topic)
        };
        let (dropped, kept): (Vec<InputRecord>, Vec<InputRecord>) =
            std::mem::take(self.batch).into_iter().partition(is_revoked);
        *self.batch = kept;
        count_by_topic(&dropped, t::EVENTS_CONSUMED_TOTAL);
        self.processor.partitions_revoked(&revoked);
        if let Some(eos) = self.transactional.as_deref_mut() {
            eos.revoked(&revoked);
        }
    }
}

/// Polls until the batch is full (`batch_max_events` records, or
/// `batch_max_bytes` of them), its linger has passed, or shutdown is asked.
/// Returns whether shutdown was asked.
pub(super) async fn fill_batch<P: Processor>(
    consumer: &StreamConsumer<PipelineContext>,
    cfg: &PipelineConfig,
    filling: &mut Filling<'_, P>,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let mut linger_until: Option<tokio::time::Instant> = None;
    // An idle consumer still wakes up now and then, so that revocations seen
    // by the callback reach the processor without waiting for a message.
    let idle_wake = tokio::time::Instant::now() + Duration::from_millis(500);
    // The record that reaches the byte bound is the last one taken, so a
    // batch holds at most `batch_max_bytes` plus one record. Revocations can
    // only shrink the batch, so a running sum is an upper bound.
    let mut bytes = filling.bytes();
    let stopping = loop {
        if filling.batch.len() >= cfg.batch_max_events || bytes >= cfg.batch_max_bytes {
            break false;
        }
        let wake_at = linger_until.unwrap_or(idle_wake);
        tokio::select! {
            biased;
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break true;
                }
            }
            received = consumer.recv() => match received {
                Ok(msg) => {
                    filling.health.consumer_errors.record_received();
                    let record = InputRecord::copy_of(&msg, filling.batch.last());
                    bytes += record.held_bytes();
                    filling.push(record);
                    if linger_until.is_none() {
                        linger_until = Some(tokio::time::Instant::now() + cfg.batch_linger);
                    }
                }
                Err(e) => {
                    metrics::counter!(t::CONSUMER_ERRORS_TOTAL).increment(1);
                    warn!(error = %e, "consumer error; continuing");
                    filling.health.consumer_errors.record_error(unix_ms(), e.to_string());
                }
            },
            _ = tokio::time::sleep_until(wake_at) => {
                if linger_until.is_some() || filling.batch.is_empty() {
                    break false;
                }
            }
        }
    };
    filling.finish();
    stopping
}

#[cfg(test)]
#[path = "fill_tests.rs"]
mod tests;
