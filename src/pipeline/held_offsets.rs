//! Assigned partitions whose committed offsets a transaction of this
//! process's own producer holds, and how they are let go.
//!
//! Under `exactly_once` the consumer reads the group's committed offsets
//! `require_stable`: while a transaction that sent offsets for a partition
//! is open, the group coordinator answers `UNSTABLE_OFFSET_COMMIT`, and
//! librdkafka asks again, without end and without telling the
//! application, until the transaction's marker reaches the coordinator.
//! The partition is not fetched meanwhile. That wait is right when another
//! producer (a previous owner, a zombie) has a transaction open: the broker
//! ends it by `kafka.transaction_timeout` at the latest.
//!
//! The fault suite met a wait that never ended. After a restart of Kafka
//! (4.x, one broker) around a commit of galley's producer, the transaction
//! coordinator held galley's last transaction complete, so it owed no
//! marker, while the group coordinator kept offsets pending for all the
//! group's partitions. galley's member was given its partitions back and
//! never fetched a record; by this reading, a restart of galley would not
//! have helped either. What ends it is a marker from the same
//! producer id for the same group: the group coordinator keeps pending
//! offsets per producer id, and the producer's next marker takes them all,
//! whatever its epoch, applying them on a commit (Kafka's
//! `OffsetMetadataManager.replayEndTransactionMarker`); within them, a
//! later offset for a partition replaces an earlier one.
//!
//! So a member that cannot read its assignment's committed offsets for
//! [`held_for`] (well past any wait the broker ends by itself), while they
//! can be read without `require_stable`, commits a transaction of its own
//! holding nothing but offsets for those partitions: each one's changelog
//! checkpoint, the input offset the last committed batch ended before, read
//! by the sink once it has applied everything committed to the changelog.
//! Batches commit their offsets and their checkpoints in one transaction,
//! so the checkpoint is what the committed offset must be, whether the held
//! offsets were on their way to a commit or an abort. Partitions without a
//! checkpoint, or whose checkpoint is behind their settled offset, are left
//! out. If the wait was another producer's after all, the release changes
//! nothing: that
//! producer's pending offsets stay pending until its own transaction ends,
//! and then decide the committed offset as they would have. The offsets
//! go with the member's group metadata, so a member that was not the owner
//! any more is refused by the coordinator.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::publish::{Outbox, Publisher, Transaction};
use super::sink::Sink;
use super::PipelineContext;
use crate::telemetry as t;

/// How often the committed offsets of the assignment are read.
const CHECK_EVERY: Duration = Duration::from_secs(10);
/// Bound on one read of committed offsets.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the committed offsets of assigned partitions stay unreadable
/// before they are released: twice the transaction timeout (the broker
/// aborts a transaction open longer than that within seconds of it), and
/// never less than 20 s.
pub(super) fn held_for(transaction_timeout: Duration) -> Duration {
    (transaction_timeout * 2).max(Duration::from_secs(20))
}

/// Since when the assignment's committed offsets have been unreadable, as
/// the watch task last found.
type HeldSince = Arc<Mutex<Option<Instant>>>;

/// Watches whether the assignment's committed offsets can be read, and
/// releases them between batches when they stay held.
pub(super) struct HeldOffsets {
    /// Reads the group's committed offsets without `require_stable`: what
    /// committed transactions settled, pending ones aside.
    settled_reader: Arc<BaseConsumer>,
    since: HeldSince,
    /// Reads the committed offsets off the batch loop: a read waits while a
    /// transaction holds them, up to [`READ_TIMEOUT`].
    watch: Option<JoinHandle<()>>,
    /// When offsets were last released (or found impossible to release).
    last_attempt: Option<Instant>,
}

impl Drop for HeldOffsets {
    fn drop(&mut self) {
        if let Some(task) = self.watch.take() {
            task.abort();
        }
    }
}

impl HeldOffsets {
    pub(super) fn new(settled_reader: Arc<BaseConsumer>) -> Self {
        Self {
            settled_reader,
            since: HeldSince::default(),
            watch: None,
            last_attempt: None,
        }
    }

    /// Releases the assignment's committed offsets once they have been
    /// unreadable for [`held_for`], at most once per that interval. Called
    /// between batches, so that no other transaction is open.
    pub(super) async fn release_if_held(
        &mut self,
        consumer: &Arc<StreamConsumer<PipelineContext>>,
        publisher: &Publisher,
        sink: &Sink,
    ) {
        let Some(grace) = publisher.transaction_timeout().map(held_for) else {
            return;
        };
        if self.watch.is_none() {
            self.watch = Some(tokio::spawn(watch_readability(
                consumer.clone(),
                self.since.clone(),
            )));
        }
        let now = Instant::now();
        let Some(since) = *self.since.lock().unwrap_or_else(|e| e.into_inner()) else {
            return;
        };
        let attempted_lately = self.last_attempt.is_some_and(|at| now - at < grace);
        if now - since < grace || attempted_lately {
            return;
        }
        let assignment = match consumer.assignment() {
            Ok(assignment) if assignment.count() > 0 => assignment,
            _ => return,
        };
        // The watch may have last read while the broker was away; only a
        // read that fails now, while a settled read succeeds, shows a hold.
        if read_committed(consumer.clone(), assignment.clone())
            .await
            .is_some()
        {
            *self.since.lock().unwrap_or_else(|e| e.into_inner()) = None;
            return;
        }
        self.last_attempt = Some(now);
        let held_seconds = (now - since).as_secs();
        let Some(settled) = read_committed(self.settled_reader.clone(), assignment.clone()).await
        else {
            warn!(
                held_seconds,
                "the assignment's committed offsets cannot be read, settled or not: is the \
                 group coordinator away?"
            );
            return;
        };
        let offsets = release_offsets(sink, &assignment, &settled).await;
        if offsets.count() == 0 {
            warn!(
                held_seconds,
                "the assignment's committed offsets are held by a transaction, and no \
                 changelog checkpoint can release them"
            );
            return;
        }
        warn!(
            held_seconds,
            offsets = ?describe(&offsets),
            "the assignment's committed offsets are held by a transaction; committing the \
             partitions' changelog checkpoints in a transaction of their own"
        );
        commit_release(publisher, consumer, &offsets).await;
    }
}

/// Commits a transaction that holds nothing but `offsets`.
async fn commit_release(
    publisher: &Publisher,
    consumer: &Arc<StreamConsumer<PipelineContext>>,
    offsets: &TopicPartitionList,
) {
    let mut nothing = Outbox::new(&[], &[]);
    match publisher
        .commit_batch(&mut nothing, &[], offsets, consumer)
        .await
    {
        Ok(Transaction::Committed) => {
            metrics::counter!(t::HELD_OFFSETS_RELEASES_TOTAL).increment(1);
            info!("held offsets released");
        }
        Ok(Transaction::GroupMovedOn(reason)) => {
            info!(%reason, "held offsets not released: the group moved on");
        }
        Err(e) => warn!(error = %e, "held offsets not released; trying again later"),
    }
}

/// Every [`CHECK_EVERY`], reads the assignment's committed offsets as the
/// consumer does (`require_stable`), and notes since when they have been
/// unreadable.
async fn watch_readability(consumer: Arc<StreamConsumer<PipelineContext>>, since: HeldSince) {
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let readable = match consumer.assignment() {
            Ok(assignment) if assignment.count() > 0 => {
                read_committed(consumer.clone(), assignment).await.is_some()
            }
            _ => true,
        };
        let mut since = since.lock().unwrap_or_else(|e| e.into_inner());
        if readable {
            *since = None;
        } else {
            since.get_or_insert_with(Instant::now);
        }
    }
}

/// The committed offsets of `partitions` as `consumer` reads them, or
/// `None` when they cannot be read in time.
async fn read_committed<X, C>(
    consumer: Arc<C>,
    partitions: TopicPartitionList,
) -> Option<HashMap<(String, i32), Offset>>
where
    X: rdkafka::consumer::ConsumerContext + 'static,
    C: Consumer<X> + Send + Sync + 'static,
{
    let read =
        tokio::task::spawn_blocking(move || consumer.committed_offsets(partitions, READ_TIMEOUT))
            .await;
    let committed = read.ok()?.ok()?;
    Some(
        committed
            .elements()
            .iter()
            .map(|e| ((e.topic().to_string(), e.partition()), e.offset()))
            .collect(),
    )
}

/// Per assigned partition, its changelog checkpoint, where the sink knows
/// it and it is not behind the settled committed offset (a partition
/// last processed `at_least_once` can carry an older checkpoint from
/// before: committing it would move the group back).
async fn release_offsets(
    sink: &Sink,
    assignment: &TopicPartitionList,
    settled: &HashMap<(String, i32), Offset>,
) -> TopicPartitionList {
    let assigned: Vec<(String, i32)> = assignment
        .elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect();
    let mut offsets = TopicPartitionList::new();
    for (topic, partition) in assigned {
        let input: Arc<str> = Arc::from(topic.as_str());
        let checkpoint = sink
            .committed_checkpoint(&input, partition)
            .await
            .ok()
            .flatten();
        let settled = settled.get(&(topic.clone(), partition)).copied();
        if let Some(offset) = offset_to_release(checkpoint, settled) {
            let _ = offsets.add_partition_offset(&topic, partition, Offset::Offset(offset));
        }
    }
    offsets
}

/// The offset to commit for a partition: its changelog checkpoint, unless
/// there is none or it is behind the settled committed offset.
fn offset_to_release(checkpoint: Option<i64>, settled: Option<Offset>) -> Option<i64> {
    let checkpoint = checkpoint?;
    match settled {
        Some(Offset::Offset(settled)) if checkpoint < settled => None,
        _ => Some(checkpoint),
    }
}

fn describe(offsets: &TopicPartitionList) -> Vec<String> {
    offsets
        .elements()
        .iter()
        .map(|e| format!("{}[{}]@{:?}", e.topic(), e.partition(), e.offset()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_held_past_any_wait_the_broker_ends_by_itself() {
        assert_eq!(held_for(Duration::from_secs(60)), Duration::from_secs(120));
        assert_eq!(held_for(Duration::from_secs(5)), Duration::from_secs(20));
    }

    #[test]
    fn a_release_commits_the_checkpoint_and_never_moves_the_group_back() {
        let settled = |o| Some(Offset::Offset(o));
        // The held transaction's offsets were ahead of the settled ones.
        assert_eq!(offset_to_release(Some(120), settled(100)), Some(120));
        assert_eq!(offset_to_release(Some(100), settled(100)), Some(100));
        // Nothing settled yet: the partition's first batches were held.
        assert_eq!(offset_to_release(Some(40), Some(Offset::Invalid)), Some(40));
        assert_eq!(offset_to_release(Some(40), None), Some(40));
        // A checkpoint from before an at_least_once run is stale.
        assert_eq!(offset_to_release(Some(100), settled(500)), None);
        // Never processed exactly_once: nothing to release it with.
        assert_eq!(offset_to_release(None, settled(500)), None);
    }
}
