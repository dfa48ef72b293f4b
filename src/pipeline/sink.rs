//! The sink of `exactly_once` delivery: applies committed changelog records
//! to the database, off the processing path.
//!
//! Each batch's row changes travel in its Kafka transaction as records of
//! the changelog of their input partition (`<input>.changelog`, partition
//! for partition). The sink reads those changelogs `read_committed`, so a
//! record of an aborted transaction, a fenced zombie's for instance, is
//! never applied. It applies what it read through the domain's
//! [`ChangelogSink`], many statements at once, then records in the database
//! how far it got (`changelog_applied`): the offset-derived cell
//! timestamps make a record applied twice change nothing, so a crash
//! between the two only repeats work.
//!
//! The last record a batch wrote to a partition's changelog carries the
//! batch's next input offset in a header (a checkpoint). The pipeline
//! relies on it twice: before it processes a partition it was given, it
//! waits until the sink has applied the changelog up to the committed
//! input offset (the database then holds every earlier change); and it
//! tells the processor which of its own committed batches the database
//! holds, so that their rows can leave memory.
//!
//! The sink follows only the changelog partitions of input partitions this
//! process owns, each from where the database says it stopped.

use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::FutureExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{watch, Notify};
use tracing::{info, warn};

use super::checkpoint::checkpoint_of;
use super::{ChangelogSink, PipelineHealth, StepError};
use crate::config::KafkaConfig;
use crate::kafka;
use crate::kafka::reconnect::WatchedClient;
use crate::telemetry as t;

/// How far one changelog partition is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The changelog offset to read next.
    pub next_offset: i64,
    /// Every row change made by input records below this offset is applied.
    pub input_next_offset: i64,
}

/// Where the sink keeps its positions: in the database it applies to, so
/// that a partition's next owner resumes where the last one stopped.
pub trait SinkPositions: Send + Sync + 'static {
    /// How far `partition` of the changelog `topic` is applied, if at all.
    fn read<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
    ) -> BoxFuture<'a, Result<Option<Applied>, StepError>>;

    /// Records that `partition` of the changelog `topic` is applied up to `applied`.
    fn write<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        applied: Applied,
    ) -> BoxFuture<'a, Result<(), StepError>>;
}

/// Most records applied in one round.
const ROUND_MAX_RECORDS: usize = 2000;
/// Most value bytes applied in one round.
const ROUND_MAX_BYTES: usize = 16 * 1024 * 1024;
/// How often an idle sink looks at its positions (they move past
/// transaction markers without delivering a record).
const IDLE_TICK: Duration = Duration::from_millis(100);
/// How long a restore waits for a checkpoint that the committed input
/// offset promises but the changelog does not show yet (its transaction's
/// markers follow the commit by moments); past it, the partition is
/// processed from what the database holds, with a warning.
const CHECKPOINT_GRACE: Duration = Duration::from_secs(10);
/// Bound on one read of a changelog's last stable offset.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(5);

/// How far the sink applied one changelog partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangelogProgress {
    /// The last checkpoint applied: every change made by input records
    /// below it is in the database. `None` until a checkpoint is applied.
    pub checkpoint: Option<i64>,
    /// The changelog position after everything applied so far.
    pub position: i64,
}

/// What the sink knows of one changelog partition it follows.
#[derive(Debug)]
struct Followed {
    /// The input topic whose partition the changelog partition mirrors.
    input: Arc<str>,
    /// Every change made by input records below this offset is applied.
    input_next: Option<i64>,
    /// The changelog position after everything applied so far.
    position: i64,
    /// Next input offsets of this process's committed batches not yet
    /// applied, oldest first.
    awaiting: VecDeque<i64>,
}

#[derive(Debug, Default)]
struct SinkState {
    followed: HashMap<(String, i32), Followed>,
    /// (input topic, partition, input next offset) applied since the
    /// pipeline last asked.
    news: Vec<(Arc<str>, i32, i64)>,
    /// Set when the sink met an error that retrying cannot fix.
    fatal: Option<String>,
}

struct Shared {
    consumer: StreamConsumer,
    store: Arc<dyn SinkPositions>,
    state: Mutex<SinkState>,
    /// Woken whenever the sink applied something or moved a position.
    progressed: Notify,
}

/// A handle on the sink: what the pipeline asks of it.
#[derive(Clone)]
pub struct Sink {
    shared: Arc<Shared>,
}

impl Sink {
    /// A sink reading changelogs with a consumer of its own.
    pub fn new(kafka_cfg: &KafkaConfig, store: Arc<dyn SinkPositions>) -> Result<Self, KafkaError> {
        let consumer: StreamConsumer = kafka::sink_consumer_config(kafka_cfg).create()?;
        Ok(Self {
            shared: Arc::new(Shared {
                consumer,
                store,
                state: Mutex::new(SinkState::default()),
                progressed: Notify::new(),
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, SinkState> {
        self.shared.state()
    }

    /// Why the sink stopped for good, if it did.
    pub fn fatal(&self) -> Option<String> {
        self.state().fatal.clone()
    }

    /// Starts following the changelog of input partition `(input, partition)`
    /// from where the database says the sink stopped (or its start).
    pub async fn follow(&self, input: &Arc<str>, partition: i32) -> Result<(), StepError> {
        let changelog = kafka::changelog_topic(input);
        if self
            .state()
            .followed
            .contains_key(&(changelog.clone(), partition))
        {
            return Ok(());
        }
        let stored = self.shared.store.read(&changelog, partition).await?;
        let (offset, position) = match stored {
            Some(applied) => (Offset::Offset(applied.next_offset), applied.next_offset),
            None => (Offset::Beginning, 0),
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&changelog, partition, offset)
            .map_err(|e| {
                StepError::Fatal(format!("cannot follow {changelog}[{partition}]: {e}"))
            })?;
        self.shared.consumer.incremental_assign(&tpl).map_err(|e| {
            StepError::Retryable(format!("following {changelog}[{partition}]: {e}"))
        })?;
        info!(%changelog, partition, from = position, "sink follows changelog partition");
        self.state().followed.insert(
            (changelog, partition),
            Followed {
                input: input.clone(),
                input_next: stored.map(|a| a.input_next_offset),
                position,
                awaiting: VecDeque::new(),
            },
        );
        Ok(())
    }

    /// Stops following the changelogs of input partitions this process no
    /// longer owns; their next owner's sink takes over from the database.
    pub fn unfollow(&self, partitions: &[(String, i32)]) {
        let mut tpl = TopicPartitionList::new();
        {
            let mut state = self.state();
            for (input, partition) in partitions {
                let key = (kafka::changelog_topic(input), *partition);
                if state.followed.remove(&key).is_some() {
                    tpl.add_partition(&key.0, key.1);
                }
            }
        }
        if tpl.count() > 0 {
            if let Err(e) = self.shared.consumer.incremental_unassign(&tpl) {
                warn!(error = %e, "sink: letting go of changelog partitions");
            }
        }
    }

    /// Returns once the database holds every row change of input partition
    /// `(input, partition)` made below `committed`, the input offset its
    /// processing starts from. Retryable while the sink is behind.
    pub async fn restore(
        &self,
        input: &Arc<str>,
        partition: i32,
        committed: i64,
        grace_from: Instant,
    ) -> Result<(), StepError> {
        self.follow(input, partition).await?;
        let changelog = kafka::changelog_topic(input);
        let key = (changelog.clone(), partition);
        loop {
            if let Some(reason) = self.fatal() {
                return Err(StepError::Fatal(reason));
            }
            let notified = self.shared.progressed.notified();
            let (input_next, position) = match self.state().followed.get(&key) {
                Some(f) => (f.input_next, f.position),
                None => return Err(StepError::Retryable("the partition was revoked".into())),
            };
            if input_next.is_some_and(|next| next >= committed) {
                return Ok(());
            }
            let stable_end = self.last_stable_offset(&changelog, partition).await?;
            if position >= stable_end {
                // Everything committed to the changelog is applied.
                match input_next {
                    // Never a checkpoint: the partition was processed
                    // `at_least_once` before, or never; the database holds
                    // what that left.
                    None => return Ok(()),
                    Some(next) if grace_from.elapsed() >= CHECKPOINT_GRACE => {
                        warn!(
                            %changelog,
                            partition,
                            applied_through = next,
                            committed,
                            "the changelog has no checkpoint at the committed input offset; \
                             processing from what the database holds"
                        );
                        return Ok(());
                    }
                    Some(_) => {}
                }
            }
            let _ = tokio::time::timeout(IDLE_TICK, notified).await;
        }
    }

    /// How far the changelog partition of input partition `(input,
    /// partition)` is applied, if the sink follows it.
    pub fn progress(&self, input: &str, partition: i32) -> Option<ChangelogProgress> {
        let changelog = kafka::changelog_topic(input);
        let state = self.state();
        let followed = state.followed.get(&(changelog, partition))?;
        Some(ChangelogProgress {
            checkpoint: followed.input_next,
            position: followed.position,
        })
    }

    /// The last stable offset of a changelog partition: the end of what a
    /// read_committed reader can see.
    async fn last_stable_offset(&self, topic: &str, partition: i32) -> Result<i64, StepError> {
        let shared = self.shared.clone();
        let topic_owned = topic.to_string();
        let marks = tokio::task::spawn_blocking(move || {
            shared
                .consumer
                .fetch_watermarks(&topic_owned, partition, WATERMARK_TIMEOUT)
        })
        .await
        .map_err(|e| StepError::Retryable(e.to_string()))?;
        marks.map(|(_, high)| high).map_err(|e| {
            StepError::Retryable(format!(
                "reading the end of changelog {topic}[{partition}]: {e}"
            ))
        })
    }

    /// Notes a committed batch that ended input partition `(input,
    /// partition)` before `next_offset`: counted as awaiting the sink
    /// until the sink applied it.
    pub fn committed(&self, input: &str, partition: i32, next_offset: i64) {
        let key = (kafka::changelog_topic(input), partition);
        if let Some(f) = self.state().followed.get_mut(&key) {
            if f.input_next.is_none_or(|applied| applied < next_offset) {
                f.awaiting.push_back(next_offset);
            }
        }
    }

    /// Committed batches of this process the sink has not applied yet.
    pub fn awaiting(&self) -> usize {
        self.state()
            .followed
            .values()
            .map(|f| f.awaiting.len())
            .sum()
    }

    /// Waits until fewer than `max` batches await the sink.
    pub async fn room_for_more(&self, max: usize) -> Result<(), StepError> {
        loop {
            if let Some(reason) = self.fatal() {
                return Err(StepError::Fatal(reason));
            }
            let notified = self.shared.progressed.notified();
            if self.awaiting() < max {
                return Ok(());
            }
            let _ = tokio::time::timeout(IDLE_TICK, notified).await;
        }
    }

    /// Input partitions whose applied offset moved since the last call, and
    /// where it is now.
    pub fn take_news(&self) -> Vec<(Arc<str>, i32, i64)> {
        std::mem::take(&mut self.state().news)
    }

    /// Applies committed changelog records until `stop` turns true or an
    /// error that retrying cannot fix; then [`Sink::fatal`] says why.
    pub async fn run<S: ChangelogSink>(
        self,
        applier: S,
        health: Arc<PipelineHealth>,
        retry: (Duration, Duration),
        mut stop: watch::Receiver<bool>,
    ) {
        let mut backoff = super::Backoff::new(retry.0, retry.1);
        loop {
            let round = tokio::select! {
                biased;
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return;
                    }
                    continue;
                }
                round = self.read_round() => round,
            };
            let round = match round {
                Ok(round) => round,
                Err(reason) => {
                    self.stop_for_good(reason);
                    return;
                }
            };
            if round.is_empty() {
                self.note_positions(&HashMap::new());
                continue;
            }
            let applied = match applied_by_partition(&round, &self.state()) {
                Ok(applied) => applied,
                Err(e) => {
                    self.stop_for_good(format!("the sink cannot apply the changelog: {e}"));
                    return;
                }
            };
            let values: Vec<&[u8]> = round
                .iter()
                .filter_map(|m| m.payload())
                .filter(|v| !v.is_empty())
                .collect();
            let attempts = (&applier, &*health, &mut backoff, &mut stop);
            if !self.apply_round(&values, &applied, attempts).await {
                return;
            }
            self.note_positions(&applied);
        }
    }

    /// Applies a round's values and records its positions, retrying with
    /// backoff; false when the sink must stop (asked to, or a fatal error).
    async fn apply_round<S: ChangelogSink>(
        &self,
        values: &[&[u8]],
        applied: &HashMap<(String, i32), Applied>,
        (applier, health, backoff, stop): RoundAttempts<'_, S>,
    ) -> bool {
        loop {
            let done = if values.is_empty() {
                self.record_applied(applied).await
            } else {
                match applier.apply(values).await {
                    Ok(()) => self.record_applied(applied).await,
                    Err(e) => Err(e),
                }
            };
            match done {
                Ok(()) => {
                    health
                        .db_ok
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    backoff.reset();
                    return true;
                }
                Err(StepError::Fatal(reason)) => {
                    self.stop_for_good(format!("the sink cannot apply the changelog: {reason}"));
                    return false;
                }
                Err(StepError::Retryable(reason)) => {
                    health
                        .db_ok
                        .store(false, std::sync::atomic::Ordering::Relaxed);
                    metrics::counter!(t::BATCH_RETRIES_TOTAL, "step" => "sink").increment(1);
                    warn!(error = %reason, values = values.len(), "sink: applying failed; retrying");
                    // The sink has nothing to finish at shutdown: what it
                    // did not apply, the next start applies.
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                        _ = stop.changed() => return false,
                    }
                }
            }
        }
    }

    fn stop_for_good(&self, reason: String) {
        tracing::error!(error = %reason, "the sink stopped");
        self.state().fatal = Some(reason);
        self.shared.progressed.notify_waiters();
    }

    /// Reads what is there, up to a round's bounds; empty after an idle tick.
    async fn read_round(&self) -> Result<Vec<OwnedMessage>, String> {
        let consumer = &self.shared.consumer;
        let first = match tokio::time::timeout(IDLE_TICK, consumer.recv()).await {
            Err(_) => return Ok(Vec::new()),
            Ok(Ok(m)) => m.detach(),
            Ok(Err(e)) => return sink_read_error(e).map(|()| Vec::new()),
        };
        let mut bytes = first.payload().map_or(0, <[u8]>::len);
        let mut round = vec![first];
        while round.len() < ROUND_MAX_RECORDS && bytes < ROUND_MAX_BYTES {
            match consumer.recv().now_or_never() {
                Some(Ok(m)) => {
                    bytes += m.payload().map_or(0, <[u8]>::len);
                    round.push(m.detach());
                }
                Some(Err(e)) => {
                    sink_read_error(e)?;
                    break;
                }
                None => break,
            }
        }
        Ok(round)
    }

    /// Records in the database how far each partition of a round is
    /// applied, all partitions at once.
    async fn record_applied(
        &self,
        applied: &HashMap<(String, i32), Applied>,
    ) -> Result<(), StepError> {
        let writes = applied
            .iter()
            .map(|((topic, partition), a)| self.shared.store.write(topic, *partition, *a));
        futures::future::try_join_all(writes).await.map(|_| ())
    }

    /// Moves each followed partition's applied position and input offset
    /// after a round (an empty round: positions only, which move past
    /// transaction markers), and wakes whoever waits on them.
    fn note_positions(&self, applied: &HashMap<(String, i32), Applied>) {
        let positions = self.shared.consumer.position().ok();
        let mut state = self.state();
        let SinkState { followed, news, .. } = &mut *state;
        for ((topic, partition), f) in followed.iter_mut() {
            if let Some(a) = applied.get(&(topic.clone(), *partition)) {
                f.position = f.position.max(a.next_offset);
                if f.input_next.is_none_or(|n| n < a.input_next_offset) {
                    f.input_next = Some(a.input_next_offset);
                    news.push((f.input.clone(), *partition, a.input_next_offset));
                }
            }
            if let Some(Offset::Offset(p)) = positions
                .as_ref()
                .and_then(|tpl| tpl.find_partition(topic, *partition))
                .map(|e| e.offset())
            {
                // Safe only because every record polled so far is applied:
                // the position is then past applied records and markers alone.
                f.position = f.position.max(p);
            }
            if let Some(next) = f.input_next {
                while f.awaiting.front().is_some_and(|a| *a <= next) {
                    f.awaiting.pop_front();
                }
            }
        }
        metrics::gauge!(t::SINK_AWAITING_BATCHES)
            .set(followed.values().map(|f| f.awaiting.len()).sum::<usize>() as f64);
        drop(state);
        self.shared.progressed.notify_waiters();
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, SinkState> {
        match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// What a round's attempts use: the applier, the health flags they set,
/// the backoff between them, and the stop signal that ends them.
type RoundAttempts<'a, S> = (
    &'a S,
    &'a PipelineHealth,
    &'a mut super::Backoff,
    &'a mut watch::Receiver<bool>,
);

/// A consumer error of the sink: a changelog that no longer holds the
/// offset to apply next lost row changes for good; anything else passes.
fn sink_read_error(e: KafkaError) -> Result<(), String> {
    match e {
        KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset)
        | KafkaError::MessageConsumption(RDKafkaErrorCode::OffsetOutOfRange) => Err(format!(
            "a changelog no longer holds the records the sink must apply next ({e}): the \
             database misses row changes; rebuild the projections (galley rebuild)"
        )),
        other => {
            warn!(error = %other, "sink: consumer error; continuing");
            Ok(())
        }
    }
}

/// Per changelog partition of `round`: its next changelog offset, and the
/// newest checkpoint (or what the partition had applied before).
fn applied_by_partition(
    round: &[OwnedMessage],
    state: &SinkState,
) -> Result<HashMap<(String, i32), Applied>, StepError> {
    let mut applied: HashMap<(String, i32), Applied> = HashMap::new();
    for m in round {
        let key = (m.topic().to_string(), m.partition());
        let before = state
            .followed
            .get(&key)
            .and_then(|f| f.input_next)
            .unwrap_or(0);
        let slot = applied.entry(key).or_insert(Applied {
            next_offset: 0,
            input_next_offset: before,
        });
        slot.next_offset = slot.next_offset.max(m.offset() + 1);
        if let Some(next) = checkpoint_of(m)? {
            slot.input_next_offset = slot.input_next_offset.max(next);
        }
    }
    Ok(applied)
}

/// The sink's own consumer, which joins no group: nothing but its fetches
/// would notice that it lost every broker.
impl WatchedClient for Sink {
    fn probe(&self, topic: &str, timeout: Duration) -> rdkafka::error::KafkaResult<()> {
        self.shared.consumer.probe(topic, timeout)
    }

    fn add_brokers(&self, bootstrap: &CString) {
        self.shared.consumer.add_brokers(bootstrap);
    }
}
