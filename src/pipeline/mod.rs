//! The engine: consume, batch, hand the batch to a [`Processor`], publish what
//! it emitted, let it write its rows, then store the offsets. It knows nothing
//! of the shop.
//!
//! # Order of effects, and what it guarantees
//! For every batch, strictly in this order:
//! 1. the processor decodes and computes (`prepare`), without changing any
//!    state that outlives the batch;
//! 2. every emitted message and dead letter is published and acknowledged by
//!    the broker (idempotent producer, `acks=all`);
//! 3. the processor writes its rows (`write`);
//! 4. only then are the batch's offsets stored for commit
//!    (`enable.auto.offset.store=false`).
//!
//! Steps 2 to 4 each log one debug line per batch (`batch published`,
//! `batch written`, `offsets stored`, naming the records), so a log says
//! where in a batch a process was killed or frozen; the tests rely on it.
//!
//! Before step 1, every keyed record is checked against the partitioner
//! contract ([`partitioning`]); a misplaced one becomes a dead letter and the
//! processor never sees it.
//!
//! A failure at any step is retried with capped exponential backoff, from that
//! step, with the same values; the process never moves past a batch it could
//! not finish. A crash at any point leaves the committed offset at or before
//! the batch, so the batch is processed again: the processor's row
//! watermarks make the repeated writes converge, and re-published messages
//! carry the same deterministic ids, so consumers can drop them.
//!
//! # Rebalances and shutdown
//! The consumer is polled only between batches, and librdkafka runs rebalance
//! callbacks inside the poll, so a revocation never interrupts a batch: by
//! the time the callback runs, every processed event's offset is stored, and
//! librdkafka's auto-commit commits them before the partitions are
//! released. Messages of a revoked partition that were polled into a batch
//! still being filled are dropped unprocessed; the partition's next owner
//! reads them from the committed offset. Only those polled before the
//! revocation: a partition assigned back within the same filling is polled
//! again from its committed offset, and those records stay (`fill.rs`). On
//! shutdown the loop stops polling, finishes the batch in hand within the
//! shutdown deadline, commits, and leaves the group.

/// Runs one step of a batch until it succeeds: a retryable failure waits
/// out the backoff and tries again; a fatal one, or the shutdown deadline,
/// ends the batch unfinished (the enclosing function returns).
macro_rules! until_done {
    ($retry:expr, $step:expr, $attempt:expr) => {{
        let step_started = Instant::now();
        loop {
            match $retry.bounded($attempt).await {
                Some(Ok(value)) => break $retry.succeeded($step, value, step_started),
                Some(Err(StepError::Fatal(reason))) => {
                    return BatchOutcome::Fatal(format!("{}: {reason}", $step.label()))
                }
                Some(Err(e)) if $retry.failed($step, &e).await => {}
                _ => return BatchOutcome::Abandoned,
            }
        }
    }};
}

mod at_least_once;
mod checkpoint;
mod consumer;
mod consumer_errors;
mod dead_letter;
mod exactly_once;
mod fill;
mod held_offsets;
pub mod partitioning;
mod pause;
mod publish;
mod quiet_markers;
mod report;
mod retry;
mod rewind;
mod sink;
mod step;
mod write_gate;

pub use checkpoint::CHECKPOINT_HEADER;
pub use consumer::{GroupEvents, PipelineContext};
pub use consumer_errors::{ConsumerErrors, CONSUMER_ERROR_WINDOW};
pub use dead_letter::{headers as dead_letter_headers, DeadLetterTarget, Fit};
pub use dead_letter::{DeadLetter, DeadLetterStage, ErrorClass};
pub use exactly_once::ExactlyOnce;
use exactly_once::Transactional;
use fill::{fill_batch, Filling};
pub use partitioning::{PartitionCheck, WrongPartitions};
pub use publish::{ChangelogRecord, Outbox, Publisher, Transaction};
use report::{
    count_by_topic, record_end_to_end_latency, register_metrics, report_dead_letters, BatchSpan,
};
pub use retry::Backoff;
pub use sink::{Applied, Sink, SinkPositions};
use step::StepRetry;
pub use write_gate::{always_open, WriteGate};

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message, OwnedHeaders};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::PipelineConfig;
use crate::telemetry as t;

/// One consumed record, owned so that it can outlive the poll that produced it.
#[derive(Debug, Clone)]
pub struct InputRecord {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// The record's Kafka timestamp in milliseconds, when it has one.
    pub timestamp_ms: Option<i64>,
    /// The record's headers, kept for its dead letter should it be poison.
    pub headers: Option<OwnedHeaders>,
}

impl InputRecord {
    /// Copies a consumed message. Records arrive in runs of one topic, so the
    /// topic's name is shared with `previous` when it is the same.
    pub fn copy_of<M: Message>(msg: &M, previous: Option<&InputRecord>) -> InputRecord {
        let topic: Arc<str> = match previous {
            Some(prev) if &*prev.topic == msg.topic() => prev.topic.clone(),
            _ => Arc::from(msg.topic()),
        };
        InputRecord {
            topic,
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key().map(<[u8]>::to_vec),
            payload: msg.payload().map(<[u8]>::to_vec),
            timestamp_ms: msg.timestamp().to_millis(),
            headers: msg.headers().map(copy_headers),
        }
    }

    /// The bytes this record holds: its key and value, and the record
    /// itself. (Headers are not copied from the consumed message.)
    pub fn held_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.key.as_ref().map_or(0, Vec::len)
            + self.payload.as_ref().map_or(0, Vec::len)
    }
}

/// An owned copy of a consumed record's headers.
fn copy_headers<H: Headers>(headers: &H) -> OwnedHeaders {
    headers
        .iter()
        .fold(OwnedHeaders::new_with_capacity(headers.count()), |o, h| {
            o.insert(h)
        })
}

/// A message the pipeline publishes on a processor's behalf.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub topic: String,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    pub headers: Vec<(&'static str, Vec<u8>)>,
    /// The event type, a metric label.
    pub event_type: &'static str,
}

/// What a processor computed for one batch.
pub struct Effects<W> {
    /// Published and acknowledged before `writes` are applied.
    pub messages: Vec<OutgoingMessage>,
    pub dead_letters: Vec<DeadLetter>,
    /// Opaque to the pipeline: handed back to [`Processor::write`].
    pub writes: W,
}

/// A step of processing that failed, and whether trying again can help.
///
/// Errors come in three classes. A record that can never be processed is
/// *poison*: the processor turns it into a dead letter and the batch goes
/// on, so it never reaches this type. What is left is either
/// [`StepError::Retryable`] or [`StepError::Fatal`].
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// A dependency failed in a way that can pass (the broker or the
    /// database is away, slow or overloaded): the step is tried again with
    /// backoff, and readiness says what is waited for.
    #[error("{0}")]
    Retryable(String),
    /// Trying again cannot help: a stored row galley cannot read, an event
    /// its own schemas cannot encode, a producer librdkafka declared dead
    /// beyond what a new one can fix. The pipeline stops, /healthz fails
    /// and the process exits non-zero, so that its supervisor restarts it
    /// and an operator hears of it, instead of a silent retry loop.
    #[error("{0}")]
    Fatal(String),
}

/// One input partition's row changes from one batch, as its changelog
/// stores them (`pipeline.delivery = "exactly_once"`). The value is the
/// domain's own encoding; the engine adds where it came from and which
/// input offset the batch ends before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangelogEntry {
    /// The input topic whose partition owns the rows.
    pub topic: Arc<str>,
    /// The input partition that owns the rows.
    pub partition: i32,
    pub value: Vec<u8>,
}

/// Turns batches of records into effects. Implemented by each domain.
pub trait Processor: Send + 'static {
    type Writes: Send + 'static;

    /// Decodes and applies a batch without changing any state that outlives
    /// the call, so that it can be retried. Records are in offset order
    /// within each partition.
    fn prepare(
        &mut self,
        batch: &[InputRecord],
    ) -> impl Future<Output = Result<Effects<Self::Writes>, StepError>> + Send;

    /// Writes the rows computed by `prepare`. Must be idempotent: after a
    /// failure it is called again with the same writes. Asks `gate` before
    /// each statement and returns its error when it closes: the process
    /// may have lost the batch's partitions, and no further row may land.
    fn write(
        &mut self,
        writes: &Self::Writes,
        gate: &WriteGate<'_>,
    ) -> impl Future<Output = Result<(), StepError>> + Send;

    /// Encodes the rows `writes` changes for the changelog: per input
    /// partition whose rows changed, one or more entries in the order they
    /// must be applied, each value at most `max_bytes` long unless a single
    /// row is larger. Pure: it may be called again for the same writes.
    fn changelog(
        &self,
        writes: &Self::Writes,
        max_bytes: usize,
    ) -> Result<Vec<ChangelogEntry>, StepError>;

    /// Adopts the state `writes` describes as current, once its batch is
    /// committed. With `awaiting_sink`, the rows are not in the database
    /// yet (the sink applies them later): until [`Processor::applied`] says
    /// they are, later batches must read them from memory, never from the
    /// database, whatever the cache evicts meanwhile.
    fn committed(&mut self, writes: Self::Writes, awaiting_sink: bool);

    /// The sink has applied to the database every row change of the input
    /// partition made by records below `next_offset`.
    fn applied(&mut self, topic: &str, partition: i32, next_offset: i64);

    /// Forgets everything cached for partitions this process no longer owns.
    fn partitions_revoked(&mut self, partitions: &[(String, i32)]);

    /// Approximate bytes of rows held in memory until the sink applies them
    /// (`pipeline.max_bytes_awaiting_sink` bounds it).
    fn awaiting_sink_bytes(&self) -> usize {
        0
    }
}

/// Applies committed changelog values to the database: the sink's half of
/// a domain. Values come in changelog order within each input partition;
/// values of different partitions may be applied in any order and at once.
/// Applying a value again must change nothing, so that the sink can resume
/// from its last recorded position after a crash.
pub trait ChangelogSink: Send + Sync + 'static {
    /// Applies `values`, each one that [`Processor::changelog`] produced. A
    /// value that cannot be decoded is a [`StepError::Fatal`].
    fn apply(&self, values: &[&[u8]]) -> impl Future<Output = Result<(), StepError>> + Send;
}

/// Live facts about the pipeline that readiness and metrics report.
#[derive(Debug, Default)]
pub struct PipelineHealth {
    /// The consumer holds at least one partition or has joined the group.
    pub has_assignment: AtomicBool,
    /// The last publish to Kafka succeeded.
    pub kafka_ok: AtomicBool,
    /// The last statement against the database succeeded.
    pub db_ok: AtomicBool,
    /// Unix ms of the last completed batch (0 before the first).
    pub last_batch_ms: AtomicI64,
    /// Input partitions that lately received records keyed for another one.
    pub wrong_partitions: WrongPartitions,
    /// The consumer's recent errors, while they persist.
    pub consumer_errors: ConsumerErrors,
    /// The pipeline stopped on a fatal error; /healthz fails until the process exits.
    pub fatal: AtomicBool,
    /// `exactly_once`: while processing waits for the sink (as many batches
    /// await it as `pipeline.max_batches_awaiting_sink` allows), how many;
    /// else 0.
    pub sink_full: AtomicUsize,
}

impl PipelineHealth {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            kafka_ok: AtomicBool::new(true),
            db_ok: AtomicBool::new(true),
            ..Self::default()
        })
    }
}

/// How a pipeline run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Everything polled was processed and committed.
    Drained,
    /// The shutdown deadline passed with a batch unfinished, or with the
    /// final commit not done; the work is redone by whoever owns its
    /// partitions next.
    DeadlineExceeded,
    /// A step failed with a [`StepError::Fatal`]; nothing of its batch was
    /// committed.
    Fatal(String),
}

/// Runs the consume-apply-publish-write-commit loop until `shutdown` turns true.
#[allow(clippy::too_many_arguments)]
pub async fn run<P: Processor>(
    consumer: Arc<StreamConsumer<PipelineContext>>,
    publisher: Publisher,
    mut processor: P,
    mut check: PartitionCheck,
    cfg: PipelineConfig,
    health: Arc<PipelineHealth>,
    mut shutdown: watch::Receiver<bool>,
    exactly_once: Option<ExactlyOnce>,
) -> Stopped {
    let group_events = consumer.context().events();
    register_metrics();
    let mut transactional = exactly_once.map(Transactional::new);
    let mut batch: Vec<InputRecord> = Vec::with_capacity(cfg.batch_max_events);
    loop {
        if *shutdown.borrow() {
            break;
        }
        let mut filling = Filling {
            batch: &mut batch,
            events: &group_events,
            processor: &mut processor,
            health: &health,
            transactional: transactional.as_mut(),
        };
        let polled_from = Instant::now();
        let stopping = fill_batch(&consumer, &cfg, &mut filling, &mut shutdown).await;
        if let Some(eos) = transactional.as_mut() {
            let idle = batch.is_empty();
            eos.between_batches(&group_events, &mut processor, &consumer, &publisher, idle)
                .await;
        }
        if !batch.is_empty() {
            let deadline = stopping.then(|| Instant::now() + cfg.shutdown_deadline);
            let ctx = BatchContext {
                consumer: &consumer,
                publisher: &publisher,
                check: &mut check,
                cfg: &cfg,
                health: &health,
                batch: &batch,
                shutdown: &mut shutdown,
                deadline,
                polled_from,
            };
            let outcome = match transactional.as_mut() {
                None => at_least_once::process_batch(ctx, &mut processor).await,
                Some(eos) => exactly_once::process_batch(ctx, &mut processor, eos).await,
            };
            batch.clear();
            match outcome {
                BatchOutcome::Done | BatchOutcome::Deferred => {}
                BatchOutcome::Abandoned => {
                    warn!(
                        "shutdown deadline passed with a batch unfinished; it will be processed \
                         again"
                    );
                    return Stopped::DeadlineExceeded;
                }
                BatchOutcome::Fatal(reason) => {
                    error!(error = %reason, "a batch failed in a way retrying cannot fix; stopping");
                    health.fatal.store(true, Ordering::Relaxed);
                    return Stopped::Fatal(reason);
                }
            }
        }
        if stopping {
            break;
        }
    }
    // Under exactly_once every offset is committed inside its batch's
    // transaction; a commit of the consumer's position would move past
    // transaction markers, ahead of the changelog's checkpoints.
    let bound = FINAL_COMMIT_BOUND.min(cfg.shutdown_deadline);
    if leave_group(consumer, bound, transactional.is_none()).await {
        Stopped::Drained
    } else {
        Stopped::DeadlineExceeded
    }
}

/// How long the final commit and leaving the group may take at shutdown
/// (or `pipeline.shutdown_deadline`, when that is shorter).
const FINAL_COMMIT_BOUND: Duration = Duration::from_secs(3);

/// Commits what is stored and leaves the group, off the async workers
/// (both are blocking librdkafka calls) and within `bound`. False when the
/// bound passed first: the group then learns of the departure from the
/// session timeout, and the next owner starts at the last commit.
async fn leave_group(
    consumer: Arc<StreamConsumer<PipelineContext>>,
    bound: Duration,
    final_commit: bool,
) -> bool {
    let leaving = tokio::task::spawn_blocking(move || {
        if final_commit {
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                // Nothing stored since the last commit is not an error worth more than a note.
                info!(error = %e, "final commit");
            }
        }
        consumer.unsubscribe();
    });
    match tokio::time::timeout(bound, leaving).await {
        Ok(_) => true,
        Err(_) => {
            warn!(
                bound_seconds = bound.as_secs(),
                "the final commit and leaving the group did not finish in time; giving up on them"
            );
            false
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum BatchOutcome {
    Done,
    /// (`exactly_once`) The batch could not start in time, the sink being
    /// behind; its records were rewound, to be read again after a poll.
    Deferred,
    Abandoned,
    Fatal(String),
}

/// What processing one batch reaches, whatever the delivery mode.
struct BatchContext<'a> {
    consumer: &'a Arc<StreamConsumer<PipelineContext>>,
    publisher: &'a Publisher,
    check: &'a mut PartitionCheck,
    cfg: &'a PipelineConfig,
    health: &'a PipelineHealth,
    batch: &'a [InputRecord],
    shutdown: &'a mut watch::Receiver<bool>,
    /// When shutdown was asked, the moment the batch is given up.
    deadline: Option<Instant>,
    /// When the poll that filled the batch began.
    polled_from: Instant,
}

impl<'a> BatchContext<'a> {
    /// Starts a batch: its in-flight gauge, and how its steps retry. Returns
    /// what the steps need besides.
    fn start(self) -> (BatchSteps<'a>, StepRetry<'a>) {
        metrics::gauge!(t::EVENTS_IN_FLIGHT).set(self.batch.len() as f64);
        let retry = StepRetry {
            backoff: Backoff::new(self.cfg.retry_initial_backoff, self.cfg.retry_max_backoff),
            cfg: self.cfg,
            health: self.health,
            shutdown: self.shutdown,
            deadline: self.deadline,
            batch: self.batch,
        };
        let steps = BatchSteps {
            consumer: self.consumer,
            publisher: self.publisher,
            check: self.check,
            cfg: self.cfg,
            health: self.health,
            batch: self.batch,
            started: Instant::now(),
            polled_from: self.polled_from,
        };
        (steps, retry)
    }
}

/// What a started batch's steps reach besides their retry policy.
struct BatchSteps<'a> {
    consumer: &'a Arc<StreamConsumer<PipelineContext>>,
    publisher: &'a Publisher,
    check: &'a mut PartitionCheck,
    cfg: &'a PipelineConfig,
    health: &'a PipelineHealth,
    batch: &'a [InputRecord],
    started: Instant,
    /// When the poll that filled the batch began.
    polled_from: Instant,
}

/// Milliseconds since the Unix epoch, by the wall clock.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
