//! A batch under `pipeline.delivery = "exactly_once"`: one Kafka
//! transaction holds its result events, dead letters, row changes and
//! input offsets.
//!
//! # Order of effects, and what it guarantees
//! For every batch:
//! 1. each input partition the batch holds that is new to this process
//!    waits until the sink has applied its changelog up to the committed
//!    input offset (the batch's first record of it): the database then
//!    holds every change its earlier owners committed, and nothing they
//!    did not (the sink reads `read_committed`). A batch that waited
//!    [`SINK_WAIT_SLICE`] in vain gives way: its records are rewound and
//!    the consumer polled, so that a rebalance never waits on the sink;
//! 2. the processor decodes and computes (`prepare`), reading rows from its
//!    memory or, for rows it does not hold, from the database;
//! 3. one transaction: results, re-keyed events and dead letters; the row
//!    changes as records of each input partition's changelog partition, the
//!    last of each partition carrying the batch's next input offset (its
//!    checkpoint); the input offsets, sent to the group's coordinator with
//!    the consumer's current group metadata; then commit;
//! 4. the processor adopts the batch's rows, and keeps those the sink has
//!    not applied yet in memory until it has (the database would answer a
//!    read of them with an older version).
//!
//! A crash anywhere before the commit leaves nothing visible: the
//! transaction is aborted (by the broker at `kafka.transaction_timeout`, or
//! at once when the process restarts with the same transactional id), the
//! committed input offsets are those of the last committed batch, and the
//! database receives only committed row changes. A zombie (a process that
//! stalled past its session timeout while its partitions moved on) fails
//! at `send_offsets_to_transaction` with a stale generation, aborts, and
//! leaves the batch to the new owner: its row changes are never applied
//! and its results never become visible to read_committed consumers.
//!
//! The row watermarks stay: events repeated by an upstream producer are
//! still skipped, and at_least_once history in the same keyspace still
//! converges.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, warn};

use super::held_offsets::HeldOffsets;
use super::publish::{ChangelogRecord, Publisher, Transaction};
use super::quiet_markers::QuietMarkers;
use super::rewind::{partition_spans, rewind, PartitionSpans};
use super::sink::Sink;
use super::step::{Step, StepRetry};
use super::{
    record_end_to_end_latency, report_dead_letters, unix_ms, BatchContext, BatchOutcome, BatchSpan,
    BatchSteps, InputRecord, Outbox, PipelineContext, PipelineHealth, Processor, StepError,
};
use crate::config::PipelineConfig;
use crate::kafka;
use crate::telemetry as t;

/// What `exactly_once` delivery needs beside the consumer and producer.
pub struct ExactlyOnce {
    pub sink: Sink,
    /// Largest changelog value the processor may produce (below
    /// `kafka.message_max_bytes`, with room for the record's headers).
    pub changelog_max_bytes: usize,
    /// Reads the group's settled committed offsets (see
    /// [`kafka::settled_offsets_reader_config`]).
    pub settled_offsets_reader: Arc<BaseConsumer>,
}

/// The pipeline's state for `exactly_once` delivery.
pub(super) struct Transactional {
    sink: Sink,
    changelog_max_bytes: usize,
    /// Input partitions restored since they were (last) assigned.
    restored: HashSet<(Arc<str>, i32)>,
    changelog_topics: HashMap<Arc<str>, String>,
    /// Assigned partitions the sink does not follow yet.
    to_follow: Vec<(String, i32)>,
    /// Input partitions waiting to be restored, since their first batch
    /// began to wait.
    waiting_since: HashMap<(Arc<str>, i32), Instant>,
    /// When a wait for the sink was last reported.
    reported_at: Option<Instant>,
    held_offsets: HeldOffsets,
    quiet_markers: QuietMarkers,
}

impl Transactional {
    pub(super) fn new(eos: ExactlyOnce) -> Self {
        Self {
            sink: eos.sink,
            changelog_max_bytes: eos.changelog_max_bytes,
            restored: HashSet::new(),
            changelog_topics: HashMap::new(),
            to_follow: Vec::new(),
            waiting_since: HashMap::new(),
            reported_at: None,
            held_offsets: HeldOffsets::new(eos.settled_offsets_reader),
            quiet_markers: QuietMarkers::default(),
        }
    }

    /// Partitions taken from this process: their changelogs are left to the
    /// next owner's sink, and a later assignment restores them again.
    pub(super) fn revoked(&mut self, partitions: &[(String, i32)]) {
        self.sink.unfollow(partitions);
        self.quiet_markers.forget(partitions);
        self.to_follow.retain(|p| !partitions.contains(p));
        let kept = |(topic, p): &(Arc<str>, i32)| {
            !partitions
                .iter()
                .any(|(t, q)| q == p && t.as_str() == &**topic)
        };
        self.restored.retain(kept);
        self.waiting_since.retain(|part, _| kept(part));
    }

    /// Warns, at most every [`SINK_WAIT_REPORT_EVERY`], of partitions whose
    /// restore has waited that long: nothing of them is processed until the
    /// sink has applied their changelogs up to the committed offsets.
    fn report_waiting(&mut self, waiting: &[((Arc<str>, i32), i64)]) {
        let longest = waiting
            .iter()
            .filter_map(|(part, _)| self.waiting_since.get(part))
            .map(Instant::elapsed)
            .max()
            .unwrap_or_default();
        let due = self
            .reported_at
            .is_none_or(|at| at.elapsed() >= SINK_WAIT_REPORT_EVERY);
        if longest < SINK_WAIT_REPORT_EVERY || !due {
            return;
        }
        self.reported_at = Some(Instant::now());
        let partitions: Vec<String> = waiting
            .iter()
            .map(|((topic, partition), committed)| format!("{topic}[{partition}]@{committed}"))
            .collect();
        warn!(
            waiting_seconds = longest.as_secs(),
            ?partitions,
            "partitions wait for the sink to apply their changelogs up to their committed \
             offsets; they are not processed meanwhile"
        );
    }

    /// What the loop does after every poll, batch or none: the sink
    /// follows newly assigned partitions at once, so it applies what
    /// earlier owners committed whether or not records follow; and rows
    /// held for the sink are let go, since once input stops no batch
    /// follows to pass the sink's last applied rounds on; and committed
    /// offsets that a transaction holds for good are released (see
    /// [`super::held_offsets`]). When `idle` (no batch follows this poll),
    /// offsets are committed past the markers that end quiet partitions
    /// (see [`super::quiet_markers`]).
    pub(super) async fn between_batches<P: Processor>(
        &mut self,
        events: &super::GroupEvents,
        processor: &mut P,
        consumer: &Arc<StreamConsumer<PipelineContext>>,
        publisher: &Publisher,
        idle: bool,
    ) {
        self.follow_assigned(events).await;
        pass_on_applied(&self.sink, processor);
        self.held_offsets
            .release_if_held(consumer, publisher, &self.sink)
            .await;
        if idle {
            self.commit_past_quiet_markers(consumer, publisher).await;
        }
    }

    /// One transaction of checkpoints and offsets for the partitions whose
    /// position passed their committed offset over markers alone.
    async fn commit_past_quiet_markers(
        &mut self,
        consumer: &Arc<StreamConsumer<PipelineContext>>,
        publisher: &Publisher,
    ) {
        let spans = self.quiet_markers.due(consumer);
        if spans.is_empty() {
            return;
        }
        let records = changelog_records(self, Vec::new(), &spans);
        let Ok(offsets) = next_offsets(&spans) else {
            return;
        };
        match publisher
            .commit_offsets(&borrowed(&records), &offsets, consumer)
            .await
        {
            Ok(Transaction::Committed) => {
                debug!(
                    partitions = spans.len(),
                    "committed past quiet partitions' markers"
                );
                self.note_committed(&spans);
            }
            Ok(Transaction::GroupMovedOn(reason)) => {
                debug!(%reason, "not committed past markers: the group moved on");
            }
            Err(e) => {
                warn!(error = %e, "committing past quiet partitions' markers failed; trying again later")
            }
        }
    }

    /// What a committed transaction took its partitions to: the sink awaits
    /// their checkpoints, and quiet partitions are measured from there.
    fn note_committed(&mut self, spans: &PartitionSpans) {
        for ((topic, partition), (_, next)) in spans {
            self.sink.committed(topic, *partition, *next);
        }
        self.quiet_markers.committed(spans);
    }

    /// Moves the consumer back over a batch that gave way or was abandoned;
    /// its partitions stop counting as quiet until a batch of theirs commits.
    async fn rewind(
        &mut self,
        consumer: &Arc<StreamConsumer<PipelineContext>>,
        spans: &PartitionSpans,
    ) -> Result<(), String> {
        self.quiet_markers.forget_rewound(spans);
        rewind(consumer, spans).await
    }

    /// Makes the sink follow the changelogs of partitions assigned since
    /// the last call (and of those it could not follow then, the database
    /// being away), so that it applies what their earlier owners committed.
    async fn follow_assigned(&mut self, events: &super::GroupEvents) {
        let assigned = events.take_assigned();
        self.quiet_markers.forget(&assigned);
        self.to_follow.extend(assigned);
        let mut failed = Vec::new();
        for (topic, partition) in std::mem::take(&mut self.to_follow) {
            let input: Arc<str> = Arc::from(topic.as_str());
            if let Err(e) = self.sink.follow(&input, partition).await {
                warn!(error = %e, topic, partition, "the sink cannot follow the partition yet");
                failed.push((topic, partition));
            }
        }
        self.to_follow = failed;
    }

    fn changelog_topic(&mut self, input: &Arc<str>) -> &str {
        self.changelog_topics
            .entry(input.clone())
            .or_insert_with(|| kafka::changelog_topic(input))
    }
}

/// Moves each partition's next offset past the transaction markers that
/// follow the batch's last record, where the consumer has already stepped
/// over them: galley's own re-keyed events reach its input topics in
/// transactions, and an offset committed short of their markers would show
/// a lag that never goes away. Safe because every record the consumer
/// delivered is in the batch (those of revoked partitions aside, which the
/// batch no longer holds): the position can lead the batch only by markers.
fn past_markers(consumer: &StreamConsumer<PipelineContext>, spans: &mut PartitionSpans) {
    let Ok(positions) = consumer.position() else {
        return;
    };
    for ((topic, partition), (_, next)) in spans.iter_mut() {
        if let Some(Offset::Offset(position)) = positions
            .find_partition(topic, *partition)
            .map(|e| e.offset())
        {
            *next = (*next).max(position);
        }
    }
}

pub(super) async fn process_batch<P: Processor>(
    ctx: BatchContext<'_>,
    processor: &mut P,
    eos: &mut Transactional,
) -> BatchOutcome {
    let (steps, mut retry) = ctx.start();
    let BatchSteps {
        consumer,
        publisher,
        check,
        cfg,
        health,
        batch,
        started,
        // A zombie's transaction fails the group's generation check.
        polled_from: _,
    } = steps;
    // Logged before anything of the batch can reach the broker: the fault
    // suite freezes a member here to know that its offsets were not sent.
    debug!(records = %BatchSpan(batch), "batch started");
    if let Some(reason) = eos.sink.fatal() {
        return BatchOutcome::Fatal(format!("sink: {reason}"));
    }
    let mut spans = partition_spans(batch);
    past_markers(consumer, &mut spans);

    match wait_for_sink(&mut retry, processor, eos, &spans, health, cfg).await {
        BatchOutcome::Done => {}
        BatchOutcome::Deferred => {
            metrics::counter!(t::BATCHES_DEFERRED_TOTAL).increment(1);
            metrics::gauge!(t::EVENTS_IN_FLIGHT).set(0.0);
            return match eos.rewind(consumer, &spans).await {
                Ok(()) => BatchOutcome::Deferred,
                Err(reason) => BatchOutcome::Fatal(reason),
            };
        }
        ended => return ended,
    }

    let (placed, misplaced) = until_done!(retry, Step::Check, check.split(consumer, batch));
    let mut effects = until_done!(retry, Step::Prepare, processor.prepare(&placed));
    effects.dead_letters.extend(misplaced);
    let entries = match processor.changelog(&effects.writes, eos.changelog_max_bytes) {
        Ok(entries) => entries,
        Err(e) => return BatchOutcome::Fatal(format!("changelog: {e}")),
    };
    let records = changelog_records(eos, entries, &spans);
    let offsets = match next_offsets(&spans) {
        Ok(offsets) => offsets,
        Err(e) => return BatchOutcome::Fatal(format!("offsets: {e}")),
    };
    let mut outbox = Outbox::new(&effects.messages, &effects.dead_letters);
    let records = borrowed(&records);
    debug!(records = %BatchSpan(batch), "batch prepared");
    let ended = until_done!(
        retry,
        Step::Publish,
        publisher.commit_batch(&mut outbox, &records, &offsets, consumer)
    );
    if let Transaction::GroupMovedOn(reason) = ended {
        warn!(
            reason,
            records = %BatchSpan(batch),
            "the group moved on during the batch; its transaction was aborted"
        );
        metrics::gauge!(t::EVENTS_IN_FLIGHT).set(0.0);
        return match eos.rewind(consumer, &spans).await {
            Ok(()) => BatchOutcome::Done,
            Err(reason) => BatchOutcome::Fatal(reason),
        };
    }
    debug!(records = %BatchSpan(batch), "batch committed");
    processor.committed(effects.writes, true);
    eos.note_committed(&spans);
    report_done(batch, &effects.dead_letters, publisher, health, started);
    BatchOutcome::Done
}

/// Reports a committed batch: dead letters, latency, sizes, readiness.
fn report_done(
    batch: &[InputRecord],
    dead_letters: &[super::DeadLetter],
    publisher: &super::Publisher,
    health: &PipelineHealth,
    started: Instant,
) {
    report_dead_letters(dead_letters, publisher.dead_letter_topic());
    health.wrong_partitions.record(dead_letters);
    let now_ms = unix_ms();
    record_end_to_end_latency(batch, now_ms);
    health.last_batch_ms.store(now_ms, Ordering::Relaxed);
    metrics::histogram!(t::BATCH_SIZE_EVENTS).record(batch.len() as f64);
    metrics::histogram!(t::BATCH_DURATION_SECONDS).record(started.elapsed().as_secs_f64());
    metrics::gauge!(t::EVENTS_IN_FLIGHT).set(0.0);
}

/// How long a batch waits for the sink before it gives way: its records
/// are rewound and read again after the next poll. Polling meanwhile lets
/// a rebalance finish and keeps the member within its poll interval, however
/// long the sink takes to catch up.
const SINK_WAIT_SLICE: Duration = Duration::from_secs(2);

/// How often a wait for the sink that goes on is reported.
const SINK_WAIT_REPORT_EVERY: Duration = Duration::from_secs(30);

/// Step 1 of a batch (see the module doc), then room among the batches
/// awaiting the sink. `Done` when the batch may go on; `Deferred` when it
/// waited [`SINK_WAIT_SLICE`] in vain; anything else ends the batch.
async fn wait_for_sink<P: Processor>(
    retry: &mut StepRetry<'_>,
    processor: &mut P,
    eos: &mut Transactional,
    spans: &PartitionSpans,
    health: &PipelineHealth,
    cfg: &PipelineConfig,
) -> BatchOutcome {
    let now = Instant::now();
    let to_restore: Vec<((Arc<str>, i32), i64)> = spans
        .iter()
        .filter(|(part, _)| !eos.restored.contains(*part))
        .map(|(part, (first, _))| (part.clone(), *first))
        .collect();
    if !to_restore.is_empty() {
        for (part, _) in &to_restore {
            eos.waiting_since.entry(part.clone()).or_insert(now);
        }
        let (sink, waiting_since) = (&eos.sink, &eos.waiting_since);
        let restored = until_done!(retry, Step::Restore, async {
            // The checkpoint grace runs from the first wait, not this slice.
            let restoring = to_restore.iter().map(|(part, first)| {
                let from = waiting_since.get(part).copied().unwrap_or(now);
                sink.restore(&part.0, part.1, *first, from)
            });
            within_slice(futures::future::try_join_all(restoring)).await
        });
        if !restored {
            eos.report_waiting(&to_restore);
            return BatchOutcome::Deferred;
        }
        for (part, _) in to_restore {
            eos.waiting_since.remove(&part);
            eos.restored.insert(part);
        }
    }
    pass_on_applied(&eos.sink, processor);
    let awaiting = eos.sink.awaiting();
    if !room_for_more(awaiting, processor, cfg) {
        health.sink_full.store(awaiting, Ordering::Relaxed);
        let sink = &eos.sink;
        let room = until_done!(
            retry,
            Step::Restore,
            within_slice(async {
                loop {
                    let awaiting = sink.awaiting();
                    if awaiting == 0 || room_for_more(awaiting, processor, cfg) {
                        return Ok(());
                    }
                    // Until the sink applied one more batch.
                    sink.room_for_more(awaiting).await?;
                    pass_on_applied(sink, processor);
                }
            })
        );
        if !room {
            return BatchOutcome::Deferred;
        }
    }
    health.sink_full.store(0, Ordering::Relaxed);
    BatchOutcome::Done
}

/// Whether another batch may join the `awaiting` ones the sink has not
/// applied: both bounds, batches and bytes, leave room.
fn room_for_more<P: Processor>(awaiting: usize, processor: &P, cfg: &PipelineConfig) -> bool {
    awaiting < cfg.max_batches_awaiting_sink
        && processor.awaiting_sink_bytes() < cfg.max_bytes_awaiting_sink
}

/// Runs one wait for the sink for at most [`SINK_WAIT_SLICE`]: true when it
/// ended in time, false when the batch should give way.
async fn within_slice<T>(
    wait: impl std::future::Future<Output = Result<T, StepError>>,
) -> Result<bool, StepError> {
    match tokio::time::timeout(SINK_WAIT_SLICE, wait).await {
        Ok(done) => done.map(|_| true),
        Err(_) => Ok(false),
    }
}

/// Tells the processor which of its committed batches the sink has applied.
pub(super) fn pass_on_applied<P: Processor>(sink: &Sink, processor: &mut P) {
    for (topic, partition, next) in sink.take_news() {
        processor.applied(&topic, partition, next);
    }
}

/// The changelog records of a batch: the processor's entries, each to the
/// changelog partition of its input partition, the last of every input
/// partition of the batch carrying the batch's checkpoint (an empty record
/// when the partition changed no row).
fn changelog_records(
    eos: &mut Transactional,
    entries: Vec<super::ChangelogEntry>,
    spans: &PartitionSpans,
) -> Vec<(String, i32, Vec<u8>, Option<i64>)> {
    let mut records: Vec<(String, i32, Vec<u8>, Option<i64>)> = Vec::with_capacity(entries.len());
    let mut last_of: HashMap<(Arc<str>, i32), usize> = HashMap::new();
    for entry in entries {
        let topic = eos.changelog_topic(&entry.topic).to_string();
        last_of.insert((entry.topic.clone(), entry.partition), records.len());
        // Moved, not copied: a batch's values can run to megabytes.
        records.push((topic, entry.partition, entry.value, None));
    }
    for ((input, partition), (_, next)) in spans {
        match last_of.get(&(input.clone(), *partition)) {
            Some(&i) => records[i].3 = Some(*next),
            None => {
                let topic = eos.changelog_topic(input).to_string();
                records.push((topic, *partition, Vec::new(), Some(*next)));
            }
        }
    }
    records
}

/// The changelog records as the publisher takes them.
fn borrowed(records: &[(String, i32, Vec<u8>, Option<i64>)]) -> Vec<ChangelogRecord<'_>> {
    records
        .iter()
        .map(|(topic, partition, value, checkpoint)| ChangelogRecord {
            topic,
            partition: *partition,
            value,
            checkpoint: *checkpoint,
        })
        .collect()
}

/// The offsets to commit: per input partition, the one after the batch's last.
fn next_offsets(spans: &PartitionSpans) -> Result<TopicPartitionList, rdkafka::error::KafkaError> {
    let mut tpl = TopicPartitionList::with_capacity(spans.len());
    for ((topic, partition), (_, next)) in spans {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
    }
    Ok(tpl)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(topic: &Arc<str>, partition: i32, offset: i64) -> InputRecord {
        InputRecord {
            topic: topic.clone(),
            partition,
            offset,
            key: None,
            payload: None,
            timestamp_ms: None,
            headers: None,
        }
    }

    #[test]
    fn spans_run_from_the_first_offset_to_the_one_after_the_last() {
        let orders: Arc<str> = Arc::from("orders");
        let batch = vec![
            record(&orders, 0, 7),
            record(&orders, 1, 3),
            record(&orders, 0, 9),
        ];
        let spans = partition_spans(&batch);
        assert_eq!(spans.get(&(orders.clone(), 0)), Some(&(7, 10)));
        assert_eq!(spans.get(&(orders, 1)), Some(&(3, 4)));
    }
}
