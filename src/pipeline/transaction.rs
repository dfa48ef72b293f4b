//! The transactional half of [`Publisher`] (`pipeline.delivery =
//! "exactly_once"`): one Kafka transaction per batch, its failures sorted
//! into librdkafka's classes, and the renewal of a producer librdkafka
//! declared dead.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::TopicPartitionList;
use tracing::{debug, warn};

use super::{Outbox, Publisher, Sent};
use crate::pipeline::StepError;
use crate::telemetry as t;

/// How many times in a row the transactional producer may be replaced with
/// no transaction committed in between (see [`Publisher::commit_batch`]).
pub const MAX_RENEWALS_WITHOUT_COMMIT: u32 = 3;

/// A changelog record of a batch's transaction.
pub struct ChangelogRecord<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub value: &'a [u8],
    /// The checkpoint: on a batch's last record for its partition, the
    /// input offset the batch ends before.
    pub checkpoint: Option<i64>,
}

/// How a batch's transaction ended, when it did not fail.
#[derive(Debug, PartialEq, Eq)]
pub enum Transaction {
    Committed,
    /// The group moved on (this member's generation is gone, or its
    /// partitions were lost): the transaction was aborted, and the batch
    /// belongs to whoever owns its partitions now.
    GroupMovedOn(String),
}

impl Publisher {
    /// Publishes a batch in one transaction: what `outbox` holds, the
    /// changelog records, and the input offsets `offsets` (each the next
    /// one to consume) for the group `consumer` belongs to; then commits.
    /// Every attempt sends everything again (an aborted transaction keeps
    /// nothing). Errors follow librdkafka's classes: one that asks for an
    /// abort is aborted here and returned retryable, so that the same batch
    /// goes again in a new transaction; a fatal one (this producer was
    /// fenced by a newer one with its transactional id, or lost its state)
    /// is [`StepError::Fatal`]: a fenced zombie must stop, not retry.
    ///
    /// A producer librdkafka declared dead (fenced, most often because the
    /// broker aborted a transaction that outlived `kafka.transaction_timeout`
    /// while it was away) is replaced by a new one with the same
    /// transactional id: the batch then goes again. A zombie gains nothing
    /// from this, because offsets it adds after the group moved on fail the
    /// generation check. Broker outages can kill several producers in a
    /// row, each time after it committed; but more than
    /// [`MAX_RENEWALS_WITHOUT_COMMIT`] renewals with no commit between them
    /// are fatal: nothing gets through, as when two live processes share
    /// one transactional id and fence each other.
    pub async fn commit_batch<C>(
        &self,
        outbox: &mut Outbox<'_>,
        changelog: &[ChangelogRecord<'_>],
        offsets: &TopicPartitionList,
        consumer: &Arc<StreamConsumer<C>>,
    ) -> Result<Transaction, StepError>
    where
        C: ConsumerContext + 'static,
    {
        let producer = self.producer();
        match self
            .commit_batch_once(outbox, changelog, offsets, consumer)
            .await
        {
            Err(StepError::Fatal(reason)) if producer.client().fatal_error().is_some() => {
                Err(self.renew_transactions(&reason).await)
            }
            other => other,
        }
    }

    /// Commits a transaction of changelog records and input offsets alone,
    /// between batches: no results, no dead letters. Outcomes as for
    /// [`Publisher::commit_batch`].
    pub async fn commit_offsets<C>(
        &self,
        changelog: &[ChangelogRecord<'_>],
        offsets: &TopicPartitionList,
        consumer: &Arc<StreamConsumer<C>>,
    ) -> Result<Transaction, StepError>
    where
        C: ConsumerContext + 'static,
    {
        let mut nothing = Outbox::new(&[], &[]);
        self.commit_batch(&mut nothing, changelog, offsets, consumer)
            .await
    }

    /// Replaces a dead transactional producer (see [`Publisher::commit_batch`]).
    async fn renew_transactions(&self, reason: &str) -> StepError {
        let Some(txn_timeout) = self.transaction_timeout else {
            return StepError::Fatal(reason.to_string());
        };
        let renewals = self.renewals_without_commit.fetch_add(1, Ordering::Relaxed) + 1;
        if renewals > MAX_RENEWALS_WITHOUT_COMMIT {
            return StepError::Fatal(format!(
                "{reason}; the transactional producer died {renewals} times in a row with no \
                 transaction committed in between: is kafka.transactional_id shared with \
                 another live process?"
            ));
        }
        let config = self.config.clone();
        let fresh = tokio::task::spawn_blocking(move || {
            let producer: FutureProducer = config.create()?;
            producer.init_transactions(Timeout::After(txn_timeout * 2))?;
            Ok::<_, KafkaError>(producer)
        })
        .await;
        let fresh = match fresh {
            Ok(Ok(fresh)) => fresh,
            Ok(Err(e)) => {
                return StepError::Retryable(format!(
                    "{reason}; a new transactional producer could not start yet: {e}"
                ))
            }
            Err(e) => return StepError::Fatal(format!("{reason}; renewing the producer: {e}")),
        };
        let old = match self.producer.write() {
            Ok(mut producer) => std::mem::replace(&mut *producer, fresh),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), fresh),
        };
        tokio::task::spawn_blocking(move || drop(old));
        metrics::counter!(t::PRODUCER_REPLACEMENTS_TOTAL).increment(1);
        warn!(
            reason,
            "replaced the dead transactional producer; the batch goes again"
        );
        StepError::Retryable(format!(
            "the transactional producer was replaced ({reason}); the batch goes again"
        ))
    }

    async fn commit_batch_once<C>(
        &self,
        outbox: &mut Outbox<'_>,
        changelog: &[ChangelogRecord<'_>],
        offsets: &TopicPartitionList,
        consumer: &Arc<StreamConsumer<C>>,
    ) -> Result<Transaction, StepError>
    where
        C: ConsumerContext + 'static,
    {
        let Some(txn_timeout) = self.transaction_timeout else {
            return Err(StepError::Fatal(
                "commit_batch needs a transactional publisher".into(),
            ));
        };
        let producer = self.producer();
        producer
            .begin_transaction()
            .map_err(|e| txn_error("begin", e))?;
        outbox.messages_done = outbox.messages.is_empty();
        for (_, sent) in &mut outbox.dead_letters {
            if *sent == Sent::Acknowledged {
                *sent = Sent::Not;
            }
        }
        // The records' acknowledgements and the offsets' two round trips
        // (to the transaction and the group coordinators) overlap: all of
        // them must succeed before the commit, in any order.
        let started = std::time::Instant::now();
        let ((error, _), changelog_error, offsets_sent) = tokio::join!(
            timed("records", started, self.send_round(outbox)),
            timed(
                "changelog",
                started,
                self.send_changelog(&producer, changelog)
            ),
            timed(
                "offsets",
                started,
                send_offsets(&producer, offsets, consumer, txn_timeout)
            ),
        );
        if let Some(reason) = error.or(changelog_error) {
            self.abort(&producer, txn_timeout).await?;
            return Err(StepError::Retryable(format!(
                "transaction aborted, a record was refused: {reason}"
            )));
        }
        match offsets_sent {
            Ok(()) => {}
            Err(OffsetsNotSent::GroupMovedOn(reason)) => {
                self.abort(&producer, txn_timeout).await?;
                return Ok(Transaction::GroupMovedOn(reason.into()));
            }
            Err(OffsetsNotSent::Failed(e)) => {
                return self
                    .after_failure(&producer, "send offsets", e, txn_timeout)
                    .await
            }
        }
        debug!("batch sent in its transaction");
        self.commit(&producer, txn_timeout).await
    }

    /// Commits the open transaction, once everything in it is acknowledged.
    async fn commit(
        &self,
        producer: &FutureProducer,
        txn_timeout: Duration,
    ) -> Result<Transaction, StepError> {
        let committing = std::time::Instant::now();
        loop {
            let p = producer.clone();
            match blocking(move || p.commit_transaction(Timeout::After(txn_timeout))).await {
                Ok(()) => {
                    metrics::histogram!(t::TRANSACTION_CALL_DURATION_SECONDS, "call" => "commit")
                        .record(committing.elapsed().as_secs_f64());
                    self.renewals_without_commit.store(0, Ordering::Relaxed);
                    metrics::counter!(t::TRANSACTIONS_TOTAL, "outcome" => "committed").increment(1);
                    return Ok(Transaction::Committed);
                }
                // A commit that timed out (the broker away) resumes where it stopped.
                Err(KafkaError::Transaction(e)) if e.is_retriable() => {
                    warn!(error = %e, "committing the transaction: retrying");
                }
                Err(e) => return self.after_failure(producer, "commit", e, txn_timeout).await,
            }
        }
    }

    /// Sends the changelog records of a batch's transaction, each to the
    /// changelog partition of its input partition; the first failure, if any.
    async fn send_changelog(
        &self,
        producer: &FutureProducer,
        changelog: &[ChangelogRecord<'_>],
    ) -> Option<String> {
        let timeout = Timeout::After(self.delivery_timeout);
        let sends = changelog.iter().map(|r| {
            let checkpoint = r.checkpoint.map(|c| c.to_string());
            let mut record = FutureRecord::<[u8], [u8]>::to(r.topic)
                .partition(r.partition)
                .payload(r.value);
            if let Some(c) = &checkpoint {
                record = record.headers(OwnedHeaders::new().insert(Header {
                    key: crate::pipeline::CHECKPOINT_HEADER,
                    value: Some(c.as_bytes()),
                }));
            }
            producer.send(record, timeout)
        });
        join_all(sends)
            .await
            .into_iter()
            .zip(changelog)
            .find_map(|(result, r)| {
                result
                    .err()
                    .map(|(e, _)| format!("changelog {}[{}]: {e}", r.topic, r.partition))
            })
    }

    /// What a failed transaction call leads to: abort and go again, abort
    /// and leave the batch to the group, or stop.
    async fn after_failure(
        &self,
        producer: &FutureProducer,
        call: &str,
        e: KafkaError,
        txn_timeout: Duration,
    ) -> Result<Transaction, StepError> {
        let group_moved_on = matches!(
            &e,
            KafkaError::Transaction(rd) if matches!(
                rd.code(),
                RDKafkaErrorCode::IllegalGeneration
                    | RDKafkaErrorCode::UnknownMemberId
                    | RDKafkaErrorCode::FencedInstanceId
                    | RDKafkaErrorCode::RebalanceInProgress
            )
        );
        let error = txn_error(call, e);
        if let StepError::Fatal(_) = error {
            return Err(error);
        }
        self.abort(producer, txn_timeout).await?;
        if group_moved_on {
            return Ok(Transaction::GroupMovedOn(error.to_string()));
        }
        Err(error)
    }

    /// Aborts the open transaction; the producer is unusable if that fails.
    async fn abort(
        &self,
        producer: &FutureProducer,
        txn_timeout: Duration,
    ) -> Result<(), StepError> {
        loop {
            let p = producer.clone();
            match blocking(move || p.abort_transaction(Timeout::After(txn_timeout))).await {
                Ok(()) => {
                    metrics::counter!(t::TRANSACTIONS_TOTAL, "outcome" => "aborted").increment(1);
                    return Ok(());
                }
                Err(KafkaError::Transaction(e)) if e.is_retriable() => {
                    warn!(error = %e, "aborting the transaction: retrying");
                }
                Err(e) => {
                    return Err(StepError::Fatal(format!(
                        "the transaction could not be aborted: {e}"
                    )))
                }
            }
        }
    }
}

/// Why a batch's input offsets did not join its transaction.
enum OffsetsNotSent {
    /// The consumer is no longer a member that may commit them.
    GroupMovedOn(&'static str),
    Failed(KafkaError),
}

/// Adds `offsets` to the open transaction, for the group the consumer
/// belongs to as of now.
async fn send_offsets<C>(
    producer: &FutureProducer,
    offsets: &TopicPartitionList,
    consumer: &Arc<StreamConsumer<C>>,
    txn_timeout: Duration,
) -> Result<(), OffsetsNotSent>
where
    C: ConsumerContext + 'static,
{
    if consumer.assignment_lost() {
        return Err(OffsetsNotSent::GroupMovedOn(
            "the consumer lost its assignment",
        ));
    }
    let Some(group) = consumer.group_metadata() else {
        return Err(OffsetsNotSent::GroupMovedOn(
            "the consumer has no group metadata",
        ));
    };
    let (p, tpl) = (producer.clone(), offsets.clone());
    blocking(move || p.send_offsets_to_transaction(&tpl, &group, Timeout::After(txn_timeout)))
        .await
        .map_err(OffsetsNotSent::Failed)
}

/// Awaits `part` of a transaction and records how long after the
/// transaction's start it ended, so that the slowest of the parts that
/// overlap shows which one the commit waited for.
async fn timed<T>(
    call: &'static str,
    started: std::time::Instant,
    part: impl std::future::Future<Output = T>,
) -> T {
    let out = part.await;
    metrics::histogram!(t::TRANSACTION_CALL_DURATION_SECONDS, "call" => call)
        .record(started.elapsed().as_secs_f64());
    out
}

/// Runs a blocking librdkafka call off the async workers.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> KafkaResult<T> + Send + 'static,
) -> KafkaResult<T> {
    match tokio::task::spawn_blocking(call).await {
        Ok(result) => result,
        Err(e) => Err(KafkaError::Canceled).inspect_err(|_| warn!(error = %e, "blocking call")),
    }
}

/// A transaction call's failure in the pipeline's terms: fatal when
/// librdkafka says the producer is done for (fenced included), or says
/// nothing of how to go on; otherwise retryable.
fn txn_error(call: &str, e: KafkaError) -> StepError {
    match &e {
        KafkaError::Transaction(rd) if rd.is_fatal() => StepError::Fatal(format!(
            "transaction {call}: the producer is fenced or failed for good: {e}"
        )),
        KafkaError::Transaction(rd) if rd.is_retriable() || rd.txn_requires_abort() => {
            StepError::Retryable(format!("transaction {call}: {e}"))
        }
        KafkaError::Transaction(_) => StepError::Fatal(format!("transaction {call} failed: {e}")),
        _ => StepError::Retryable(format!("transaction {call}: {e}")),
    }
}
