//! Publishing a batch's messages and dead letters, and waiting for every
//! acknowledgement before the batch's rows may be written.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::join_all;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use super::{DeadLetter, OutgoingMessage, StepError};
use crate::telemetry as t;

/// Kafka Connect's dead-letter header names, which existing tooling reads.
pub mod dlq_headers {
    pub const TOPIC: &str = "__connect.errors.topic";
    pub const PARTITION: &str = "__connect.errors.partition";
    pub const OFFSET: &str = "__connect.errors.offset";
    pub const CLASS: &str = "__connect.errors.exception.class.name";
    pub const MESSAGE: &str = "__connect.errors.exception.message";
    pub const STAGE: &str = "__connect.errors.stage";
    pub const CONNECTOR: &str = "__connect.errors.connector.name";
}

/// Sends messages through one idempotent producer, replaced by a new one
/// when librdkafka declares it dead.
#[derive(Clone)]
pub struct Publisher {
    producer: Arc<RwLock<FutureProducer>>,
    /// What a replacement producer is made from.
    config: ClientConfig,
    dead_letter_topic: String,
    delivery_timeout: Duration,
}

impl Publisher {
    /// A publisher whose producer is made from `config`.
    pub fn new(
        config: ClientConfig,
        dead_letter_topic: String,
        delivery_timeout: Duration,
    ) -> KafkaResult<Self> {
        let producer: FutureProducer = config.create()?;
        Ok(Self {
            producer: Arc::new(RwLock::new(producer)),
            config,
            dead_letter_topic,
            delivery_timeout,
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
    pub fn dead_letter_topic(&self) -> &str {
        &self.dead_letter_topic
    }

    /// Publishes everything, in order, and returns once all are acknowledged.
    /// On any failure the caller retries the whole set: re-sending in the
    /// original order keeps per-key order intact, and duplicates carry the
    /// same event ids.
    pub async fn publish_all(
        &self,
        messages: &[OutgoingMessage],
        dead_letters: &[DeadLetter],
    ) -> Result<(), StepError> {
        if messages.is_empty() && dead_letters.is_empty() {
            return Ok(());
        }
        let producer = self.producer();
        let timeout = Timeout::After(self.delivery_timeout);
        let mut labels = Vec::with_capacity(messages.len() + dead_letters.len());
        let mut pending = Vec::with_capacity(labels.capacity());
        for m in messages {
            labels.push((m.topic.as_str(), m.event_type));
            pending.push(producer.send(message_record(m), timeout));
        }
        for d in dead_letters {
            let record = dead_letter_record(&self.dead_letter_topic, d);
            labels.push((self.dead_letter_topic.as_str(), "DeadLetter"));
            pending.push(producer.send(record, timeout));
        }
        let results = join_all(pending).await;
        let timed_out = results.iter().any(|r| {
            matches!(
                r,
                Err((
                    KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut),
                    _
                ))
            )
        });
        let outcomes = labels
            .into_iter()
            .zip(results.iter().map(|r| r.as_ref().err().map(|(e, _)| e)));
        let Some(message) = count_deliveries(outcomes) else {
            return Ok(());
        };
        if let Some((code, reason)) = producer.client().fatal_error() {
            return Err(self.replace_producer(&format!("it failed fatally ({code:?}: {reason})")));
        }
        if timed_out {
            // Seen in the fault suite: after a broker restart an idempotent
            // producer can keep timing every message out although the
            // broker is back (librdkafka issues 3009 and 3189 describe the
            // same). A new producer connects afresh; during a real outage
            // this costs one new producer per delivery timeout.
            return Err(self.replace_producer(&format!("its messages timed out: {message}")));
        }
        Err(StepError::Retryable(message))
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
        tracing::warn!(reason, "replaced the Kafka producer with a new one");
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

/// The poison record as it was, with Kafka Connect's headers saying where it
/// came from and why it failed.
fn dead_letter_record<'a>(topic: &'a str, d: &'a DeadLetter) -> FutureRecord<'a, [u8], [u8]> {
    let partition = d.partition.to_string();
    let offset = d.offset.to_string();
    let headers = [
        (dlq_headers::TOPIC, d.topic.as_bytes()),
        (dlq_headers::PARTITION, partition.as_bytes()),
        (dlq_headers::OFFSET, offset.as_bytes()),
        (dlq_headers::CLASS, d.error_class.as_str().as_bytes()),
        (dlq_headers::MESSAGE, d.message.as_bytes()),
        (dlq_headers::STAGE, d.stage.as_str().as_bytes()),
        (dlq_headers::CONNECTOR, "galley".as_bytes()),
    ]
    .into_iter()
    // Header values are copied into the record here.
    .fold(
        OwnedHeaders::new_with_capacity(7),
        |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(value),
            })
        },
    );
    let mut record = FutureRecord::to(topic).headers(headers);
    if let Some(key) = &d.key {
        record = record.key(key.as_slice());
    }
    if let Some(payload) = &d.payload {
        record = record.payload(payload.as_slice());
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
