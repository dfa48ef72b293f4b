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
//! offsets were on their way to a commit or an abort, provided no
//! transaction that wrote to the changelog partition is still undecided:
//! the sink must have applied it through its high watermark. Partitions
//! without a checkpoint, with a changelog not applied to its end, or whose
//! checkpoint is behind their settled offset, are left out. Time counts as
//! held only while the offsets can be read without `require_stable`: a
//! broker that does not answer holds nothing. If the wait was another
//! producer's after all, the release changes nothing: that producer's
//! pending offsets stay pending until its own transaction ends, and then
//! decide the committed offset as they would have. The offsets
//! go with the member's group metadata, so a member that was not the owner
//! any more is refused by the coordinator.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::publish::{Publisher, Transaction};
use super::sink::{ChangelogProgress, Sink};
use super::PipelineContext;
use crate::kafka;
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
                self.settled_reader.clone(),
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
        let offsets = release_offsets(sink, &self.settled_reader, &assignment, &settled).await;
        if offsets.count() == 0 {
            warn!(
                held_seconds,
                "the assignment's committed offsets are held by a transaction, and no \
                 changelog checkpoint can release them (a changelog has an undecided \
                 transaction, or the sink is behind)"
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
    match publisher.commit_offsets(&[], offsets, consumer).await {
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
/// held: unreadable so, while readable settled. A read that fails both
/// ways says the broker is away, not that a transaction holds the
/// offsets, and starts the count again: time in an outage is no evidence
/// that the broker forgot a transaction (ci35 released offsets 13 s after
/// an outage, counting the outage, while the last transaction before it
/// still had its markers to come).
async fn watch_readability(
    consumer: Arc<StreamConsumer<PipelineContext>>,
    settled_reader: Arc<BaseConsumer>,
    since: HeldSince,
) {
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let held = match consumer.assignment() {
            Ok(assignment) if assignment.count() > 0 => {
                read_committed(consumer.clone(), assignment.clone())
                    .await
                    .is_none()
                    && read_committed(settled_reader.clone(), assignment)
                        .await
                        .is_some()
            }
            _ => false,
        };
        let mut since = since.lock().unwrap_or_else(|e| e.into_inner());
        if held {
            since.get_or_insert_with(Instant::now);
        } else {
            *since = None;
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

/// Per assigned partition, its changelog checkpoint, where the sink has
/// applied the changelog partition to its end and the checkpoint is not
/// behind the settled committed offset.
async fn release_offsets(
    sink: &Sink,
    settled_reader: &Arc<BaseConsumer>,
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
        let Some(progress) = sink.progress(&topic, partition) else {
            continue;
        };
        let changelog = kafka::changelog_topic(&topic);
        let Some(log_end) = high_watermark(settled_reader.clone(), changelog, partition).await
        else {
            continue;
        };
        let settled = settled.get(&(topic.clone(), partition)).copied();
        if let Some(offset) = offset_to_release(progress, log_end, settled) {
            let _ = offsets.add_partition_offset(&topic, partition, Offset::Offset(offset));
        }
    }
    offsets
}

/// The high watermark of a partition as a `read_uncommitted` reader sees
/// it: the end of its log, undecided transactions included.
async fn high_watermark(reader: Arc<BaseConsumer>, topic: String, partition: i32) -> Option<i64> {
    let read = tokio::task::spawn_blocking(move || {
        reader.fetch_watermarks(&topic, partition, READ_TIMEOUT)
    })
    .await;
    read.ok()?.ok().map(|(_, high)| high)
}

/// The offset to commit for a partition: its changelog checkpoint, once the
/// sink has applied the changelog partition through `log_end`, its high
/// watermark, and unless it is behind the settled committed offset.
///
/// Short of the high watermark, a transaction that wrote to the changelog
/// partition may be undecided, the held one among them: its checkpoint is
/// the offset it holds, and if it commits, an older checkpoint committed
/// now would send the group back over input whose results are already
/// published (ci35: 278 results twice). A read_committed position reaches
/// the high watermark only once every such transaction is decided.
fn offset_to_release(
    progress: ChangelogProgress,
    log_end: i64,
    settled: Option<Offset>,
) -> Option<i64> {
    if progress.position < log_end {
        return None;
    }
    let checkpoint = progress.checkpoint?;
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

    fn applied(checkpoint: Option<i64>, position: i64) -> ChangelogProgress {
        ChangelogProgress {
            checkpoint,
            position,
        }
    }

    #[test]
    fn a_release_commits_the_checkpoint_and_never_moves_the_group_back() {
        let settled = |o| Some(Offset::Offset(o));
        let end = 30;
        let through = |c| applied(c, end);
        // The held transaction's offsets were ahead of the settled ones.
        assert_eq!(
            offset_to_release(through(Some(120)), end, settled(100)),
            Some(120)
        );
        assert_eq!(
            offset_to_release(through(Some(100)), end, settled(100)),
            Some(100)
        );
        // Nothing settled yet: the partition's first batches were held.
        assert_eq!(
            offset_to_release(through(Some(40)), end, Some(Offset::Invalid)),
            Some(40)
        );
        assert_eq!(offset_to_release(through(Some(40)), end, None), Some(40));
        // A checkpoint from before an at_least_once run is stale.
        assert_eq!(
            offset_to_release(through(Some(100)), end, settled(500)),
            None
        );
        // Never processed exactly_once: nothing to release it with.
        assert_eq!(offset_to_release(through(None), end, settled(500)), None);
    }

    #[test]
    fn no_release_while_a_changelog_transaction_may_be_undecided() {
        // The sink stands at the last stable offset, 25; the changelog goes
        // on to 30 with the records of a transaction not yet decided. Its
        // checkpoint, not 555, is what the held offsets may be.
        assert_eq!(offset_to_release(applied(Some(555), 25), 30, None), None);
        assert_eq!(
            offset_to_release(applied(Some(555), 25), 30, Some(Offset::Offset(500))),
            None
        );
        // Once decided and applied, the checkpoint is the one to commit.
        assert_eq!(
            offset_to_release(applied(Some(646), 30), 30, None),
            Some(646)
        );
    }
}
