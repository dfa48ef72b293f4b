//! A batch under `pipeline.delivery = "at_least_once"`: results are
//! published and acknowledged, then rows written, then offsets stored for
//! librdkafka's auto-commit (the order the engine's module doc lays out).
//!
//! # A member that stood still
//! A process frozen past its session timeout (SIGSTOP, a long GC-like
//! pause, a partition from the broker) has lost its partitions, and their
//! new owner may already cache older versions of the batch's rows. Were
//! the frozen process to write on thawing, its rows would land under the
//! new owner's cache, which then overwrites them from stale state. So
//! before every statement of a write the batch checks that the consumer
//! still holds its assignment and that the process has not stood still
//! past half the session timeout since the batch was polled
//! ([`super::pause`], [`WriteGate`]); if either fails, no further row is
//! written, the fetch positions are rewound and the batch is left to
//! whichever member owns it. What the check cannot stop is a statement
//! that passed it and had not left the process at the freeze: that one may
//! still land late. Only `exactly_once` fences such a process fully.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, warn};

use super::rewind::{partition_spans, rewind};
use super::step::Step;
use super::{
    record_end_to_end_latency, report_dead_letters, unix_ms, BatchContext, BatchOutcome, BatchSpan,
    BatchSteps, InputRecord, Outbox, PipelineContext, Processor, StepError, WriteGate,
};
use crate::telemetry as t;

/// Processes one batch: check, prepare, publish, write, store offsets.
pub(super) async fn process_batch<P: Processor>(
    ctx: BatchContext<'_>,
    processor: &mut P,
) -> BatchOutcome {
    let (steps, mut retry) = ctx.start();
    let BatchSteps {
        consumer,
        publisher,
        check,
        health,
        batch,
        started,
        polled_from,
        ..
    } = steps;

    // Each step retries on its own: a later failure never repeats an earlier success.
    let (placed, misplaced) = until_done!(retry, Step::Check, check.split(consumer, batch));
    let mut effects = until_done!(retry, Step::Prepare, processor.prepare(&placed));
    effects.dead_letters.extend(misplaced);
    let mut outbox = Outbox::new(&effects.messages, &effects.dead_letters);
    until_done!(retry, Step::Publish, publisher.publish(&mut outbox));
    debug!(records = %BatchSpan(batch), "batch published");
    // Asked before every statement of every attempt: a pause can fall
    // within the write, and what follows it would be a late write.
    let check = || may_have_lost_its_partitions(consumer, polled_from);
    let gate = WriteGate::new(&check);
    let written = until_done!(retry, Step::Write, async {
        match processor.write(&effects.writes, &gate).await {
            Ok(()) => Ok(Ok(())),
            Err(e) => match gate.closed() {
                Some(reason) => Ok(Err(reason.to_string())),
                None => Err(e),
            },
        }
    });
    if let Err(reason) = written {
        warn!(
            reason,
            records = %BatchSpan(batch),
            "this process may have lost the batch's partitions: its rows are not written, \
             and whichever member owns them reads the batch again"
        );
        metrics::gauge!(t::EVENTS_IN_FLIGHT).set(0.0);
        return match rewind(consumer, &partition_spans(batch)).await {
            Ok(()) => BatchOutcome::Done,
            Err(reason) => BatchOutcome::Fatal(reason),
        };
    }
    debug!(records = %BatchSpan(batch), "batch written");
    processor.committed(effects.writes, false);
    report_dead_letters(&effects.dead_letters, publisher.dead_letter_topic());
    health.wrong_partitions.record(&effects.dead_letters);

    store_offsets(consumer, batch);
    let now_ms = unix_ms();
    record_end_to_end_latency(batch, now_ms);
    health.last_batch_ms.store(now_ms, Ordering::Relaxed);
    metrics::histogram!(t::BATCH_SIZE_EVENTS).record(batch.len() as f64);
    metrics::histogram!(t::BATCH_DURATION_SECONDS).record(started.elapsed().as_secs_f64());
    metrics::gauge!(t::EVENTS_IN_FLIGHT).set(0.0);
    BatchOutcome::Done
}

/// Why an `at_least_once` batch must not write its rows: the group may
/// have given its partitions to another member, which may already hold an
/// older version of them (see [`pause`]). `None` when it may write.
fn may_have_lost_its_partitions(
    consumer: &StreamConsumer<PipelineContext>,
    polled_from: Instant,
) -> Option<String> {
    if consumer.assignment_lost() {
        return Some("the consumer lost its assignment".into());
    }
    let pauses = consumer.context().pauses();
    pauses.paused_since(polled_from).map(|paused| {
        format!(
            "the process stood still for {:.1} s or more since the batch was polled, past half \
             of kafka.session_timeout ({:.1} s)",
            paused.as_secs_f64(),
            pauses.limit().as_secs_f64()
        )
    })
}

/// Stores, per partition, the offset after the last record of the batch.
fn store_offsets(consumer: &StreamConsumer<PipelineContext>, batch: &[InputRecord]) {
    let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for r in batch {
        let slot = next.entry((&r.topic, r.partition)).or_insert(r.offset + 1);
        *slot = (*slot).max(r.offset + 1);
    }
    let mut tpl = TopicPartitionList::with_capacity(next.len());
    for ((topic, partition), offset) in next {
        if let Err(e) = tpl.add_partition_offset(topic, partition, Offset::Offset(offset)) {
            warn!(topic, partition, offset, error = %e, "cannot record offset");
        }
    }
    match consumer.store_offsets(&tpl) {
        Ok(()) => debug!(records = %BatchSpan(batch), "offsets stored"),
        // The partition was revoked meanwhile: its new owner redoes the batch,
        // and the row watermarks make that harmless.
        Err(e) => warn!(
            error = %e,
            records = %BatchSpan(batch),
            "storing offsets failed; the batch will be processed again"
        ),
    }
}
