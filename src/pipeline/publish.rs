//! Publishing a batch's messages and dead letters, and waiting for every
//! acknowledgement before the batch's rows may be written. Across retries an
//! [`Outbox`] remembers what was acknowledged, so that one record refused
//! for good never holds the others.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::join_all;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use tracing::warn;

use super::dead_letter::{refused_for_good, DeadLetterRecord, DeadLetterTarget, Fit};
use super::{DeadLetter, OutgoingMessage, StepError};
use crate::kafka::reconnect::WatchedClient;
use crate::telemetry as t;

#[path = "transaction.rs"]
mod transaction;
pub use transaction::{ChangelogRecord, Transaction};

/// Sends messages through one idempotent producer, replaced by a new one
/// when librdkafka declares it dead; or, for `exactly_once` delivery,
/// through one transactional producer (see [`Publisher::commit_batch`]).
#[derive(Clone)]
pub struct Publisher {
    producer: Arc<RwLock<FutureProducer>>,
    /// What a replacement producer is made from.
    config: ClientConfig,
    dead_letters: DeadLetterTarget,
    delivery_timeout: Duration,
    /// Bound on each blocking transaction call; `None` when not transactional.
    transaction_timeout: Option<Duration>,
    /// Replacements of the transactional producer since a transaction last
    /// committed.
    renewals_without_commit: Arc<AtomicU32>,
}

/// What of one batch's effects is still to be acknowledged, across retries
/// of the publish step: a retry re-sends only that, so a dead letter the
/// broker took is not sent again each time something else fails.
pub struct Outbox<'a> {
    messages: &'a [OutgoingMessage],
    messages_done: bool,
    dead_letters: Vec<(&'a DeadLetter, Sent)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Not,
    /// Refused for good as it was: the stripped copy is what goes next.
    Refused,
    Acknowledged,
}

impl<'a> Outbox<'a> {
    pub fn new(messages: &'a [OutgoingMessage], dead_letters: &'a [DeadLetter]) -> Self {
        Self {
            messages,
            messages_done: messages.is_empty(),
            dead_letters: dead_letters.iter().map(|d| (d, Sent::Not)).collect(),
        }
    }

    fn is_done(&self) -> bool {
        self.messages_done
            && self
                .dead_letters
                .iter()
                .all(|(_, s)| *s == Sent::Acknowledged)
    }
}

impl Publisher {
    /// A publisher whose producer is made from `config`.
    pub fn new(
        config: ClientConfig,
        dead_letters: DeadLetterTarget,
        delivery_timeout: Duration,
    ) -> KafkaResult<Self> {
        let producer: FutureProducer = config.create()?;
        Ok(Self {
            producer: Arc::new(RwLock::new(producer)),
            config,
            dead_letters,
            delivery_timeout,
            transaction_timeout: None,
            renewals_without_commit: Arc::default(),
        })
    }

    /// A publisher whose producer is transactional (`config` names a
    /// `transactional.id`), its transactions initialised: this fences any
    /// earlier producer with the same id and aborts its open transaction.
    /// Blocks up to `transaction_timeout` twice over: call it off the async
    /// workers.
    pub fn transactional(
        config: ClientConfig,
        dead_letters: DeadLetterTarget,
        delivery_timeout: Duration,
        transaction_timeout: Duration,
    ) -> KafkaResult<Self> {
        let producer: FutureProducer = config.create()?;
        producer.init_transactions(Timeout::After(transaction_timeout * 2))?;
        Ok(Self {
            producer: Arc::new(RwLock::new(producer)),
            config,
            dead_letters,
            delivery_timeout,
            transaction_timeout: Some(transaction_timeout),
            renewals_without_commit: Arc::default(),
        })
    }

    /// The producer in use now.
    pub fn producer(&self) -> FutureProducer {
        match self.producer.read() {
            Ok(producer) => producer.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Where poison events go.
    /// Bound on each blocking transaction call; `None` when not transactional.
    pub fn transaction_timeout(&self) -> Option<Duration> {
        self.transaction_timeout
    }

    pub fn dead_letter_topic(&self) -> &str {
        &self.dead_letters.topic
    }

    /// Publishes what `outbox` still holds and returns once all of it is
    /// acknowledged. Result messages are re-sent together, in their original
    /// order, until one round has them all acknowledged: that keeps per-key
    /// order, and duplicates carry the same event ids. A dead letter refused
    /// for good (too large, a timestamp the broker will not take) is sent
    /// again at once, stripped, so that it never holds up the batch.
    pub async fn publish(&self, outbox: &mut Outbox<'_>) -> Result<(), StepError> {
        let mut first_error = None;
        let mut timed_out = false;
        for round in 0..2 {
            if outbox.is_done() {
                break;
            }
            let (error, round_timed_out) = self.send_round(outbox).await;
            timed_out |= round_timed_out;
            if let Some(e) = error {
                first_error.get_or_insert(e);
            }
            // A second round only for dead letters refused in the first.
            let refused = outbox.dead_letters.iter().any(|(_, s)| *s == Sent::Refused);
            if round == 0 && !refused {
                break;
            }
        }
        let Some(message) = first_error.filter(|_| !outbox.is_done()) else {
            return Ok(());
        };
        if let Some((code, reason)) = self.producer().client().fatal_error() {
            return Err(self.replace_producer(&format!("it failed fatally ({code:?}: {reason})")));
        }
        if timed_out {
            // Seen in the fault suite: after a broker restart a producer can
            // keep timing every message out although the broker is back
            // (librdkafka issues 3009 and 3189 describe the same; see also
            // the re-bootstrap note in `kafka::base_config`). A new producer
            // connects afresh; during a real outage this costs one new
            // producer per delivery timeout.
            return Err(self.replace_producer(&format!("its messages timed out: {message}")));
        }
        Err(StepError::Retryable(message))
    }

    /// Sends everything not yet acknowledged once, and records the outcomes.
    /// Returns the first failure, and whether any message timed out.
    async fn send_round(&self, outbox: &mut Outbox<'_>) -> (Option<String>, bool) {
        let producer = self.producer();
        let timeout = Timeout::After(self.delivery_timeout);
        let topic = self.dead_letters.topic.as_str();
        let mut labels = Vec::new();
        let mut pending = Vec::new();
        if !outbox.messages_done {
            for m in outbox.messages {
                labels.push((m.topic.as_str(), m.event_type));
                pending.push(producer.send(message_record(m), timeout));
            }
        }
        let mut sent_dead = Vec::new();
        for (i, (d, sent)) in outbox.dead_letters.iter().enumerate() {
            if *sent == Sent::Acknowledged {
                continue;
            }
            let record = d.record(&self.dead_letters, *sent == Sent::Refused);
            if record.fit != Fit::Whole {
                warn!(id = %d.id(), fit = ?record.fit, "dead letter too large to send whole; cut down");
            }
            labels.push((topic, "DeadLetter"));
            pending.push(producer.send(dead_letter_record(topic, record), timeout));
            sent_dead.push(i);
        }
        let results = join_all(pending).await;
        let errors: Vec<Option<&KafkaError>> = results
            .iter()
            .map(|r| r.as_ref().err().map(|(e, _)| e))
            .collect();
        let n_messages = errors.len() - sent_dead.len();
        if !outbox.messages_done {
            outbox.messages_done = errors[..n_messages].iter().all(Option::is_none);
        }
        for (&i, error) in sent_dead.iter().zip(&errors[n_messages..]) {
            let (d, sent) = &mut outbox.dead_letters[i];
            *sent = match error {
                None => Sent::Acknowledged,
                Some(e) if *sent == Sent::Not && refused_for_good(e) => {
                    warn!(id = %d.id(), error = %e, "dead letter refused for good; sending it stripped");
                    Sent::Refused
                }
                Some(_) => *sent,
            };
        }
        let timed_out = errors.iter().any(|e| {
            matches!(
                e,
                Some(KafkaError::MessageProduction(
                    RDKafkaErrorCode::MessageTimedOut
                ))
            )
        });
        (count_deliveries(labels.into_iter().zip(errors)), timed_out)
    }

    /// Replaces the producer and asks for the batch to be re-sent through
    /// the new one. librdkafka's remedy for a fatal error (an idempotent
    /// producer that lost its sequence with the broker, for instance across
    /// a broker restart) is a new producer; it is also the way out of a
    /// producer stuck timing out. Re-sending is safe: results are
    /// at-least-once, with deterministic ids. Fatal only if no new producer
    /// can be made.
    fn replace_producer(&self, reason: &str) -> StepError {
        let fresh: FutureProducer = match self.config.create() {
            Ok(fresh) => fresh,
            Err(e) => {
                return StepError::Fatal(format!(
                    "the producer must be replaced because {reason}, and no new one can be made: \
                     {e}"
                ))
            }
        };
        let old = match self.producer.write() {
            Ok(mut producer) => std::mem::replace(&mut *producer, fresh),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), fresh),
        };
        // Dropping a producer purges and flushes it: a blocking call.
        tokio::task::spawn_blocking(move || drop(old));
        metrics::counter!(t::PRODUCER_REPLACEMENTS_TOTAL).increment(1);
        warn!(reason, "replaced the Kafka producer with a new one");
        StepError::Retryable(format!(
            "the producer was replaced because {reason}; the batch is re-sent through the new one"
        ))
    }

    /// Waits for queued messages to leave, for a clean shutdown.
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer().flush(Timeout::After(timeout)) {
            tracing::warn!(error = %e, "producer flush at shutdown");
        }
    }
}

fn message_record(m: &OutgoingMessage) -> FutureRecord<'_, [u8], [u8]> {
    let mut headers = OwnedHeaders::new_with_capacity(m.headers.len());
    for (name, value) in &m.headers {
        headers = headers.insert(Header {
            key: name,
            value: Some(value.as_slice()),
        });
    }
    FutureRecord::to(&m.topic)
        .key(m.key.as_slice())
        .payload(m.payload.as_slice())
        .headers(headers)
}

/// The dead letter as librdkafka takes it.
fn dead_letter_record<'a>(topic: &'a str, d: DeadLetterRecord<'a>) -> FutureRecord<'a, [u8], [u8]> {
    let mut record = FutureRecord::to(topic).headers(d.headers);
    if let Some(key) = d.key {
        record = record.key(key);
    }
    if let Some(value) = d.value {
        record = record.payload(value);
    }
    if let Some(ts) = d.timestamp_ms {
        record = record.timestamp(ts);
    }
    record
}

/// Counts published messages and failures per label set (touching the
/// registry once per set, not per message); returns the first failure.
fn count_deliveries<'a, E: std::fmt::Display>(
    outcomes: impl Iterator<Item = ((&'a str, &'static str), Option<E>)>,
) -> Option<String> {
    let mut first_error = None;
    let mut published: BTreeMap<(&str, &'static str), u64> = BTreeMap::new();
    let mut failed: BTreeMap<&str, u64> = BTreeMap::new();
    for ((topic, event_type), error) in outcomes {
        match error {
            None => {
                *published.entry((topic, event_type)).or_default() += 1;
                // A zero keeps the topic's error series in existence, so
                // that an alert's `increase()` sees its first failure.
                failed.entry(topic).or_default();
            }
            Some(e) => {
                *failed.entry(topic).or_default() += 1;
                if first_error.is_none() {
                    first_error = Some(format!("publish to {topic} failed: {e}"));
                }
            }
        }
    }
    for ((topic, event_type), n) in published {
        metrics::counter!(t::EVENTS_PUBLISHED_TOTAL, "topic" => topic.to_string(), "event_type" => event_type)
            .increment(n);
    }
    for (topic, n) in failed {
        metrics::counter!(t::PUBLISH_ERRORS_TOTAL, "topic" => topic.to_string()).increment(n);
    }
    first_error
}

/// The producer in use at each probe: a replaced one is watched no longer.
impl WatchedClient for Publisher {
    fn probe(&self, topic: &str, timeout: Duration) -> KafkaResult<()> {
        self.producer().probe(topic, timeout)
    }

    fn add_brokers(&self, bootstrap: &CString) {
        self.producer().add_brokers(bootstrap);
    }
}
