//! Sending a generated stream to Kafka the way an upstream producer would:
//! paced, keyed, every acknowledgement awaited, and each failure kept with
//! its reason.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use super::generator::{Destination, GeneratedMessage};

/// What became of a sent stream: how many messages the broker acknowledged,
/// which were not (by index into the stream) and why (error text and
/// count), so a caller can say more than "some were lost", or send those
/// again.
#[derive(Debug, Default)]
pub struct SendOutcome {
    pub acknowledged: usize,
    pub unacknowledged: Vec<usize>,
    pub failures: BTreeMap<String, usize>,
}

impl SendOutcome {
    pub fn failed(&self) -> usize {
        self.failures.values().sum()
    }
}

/// Sends a generated stream at about `rate` messages per second (0: as fast
/// as the broker takes them) and waits for every acknowledgement.
pub async fn send_all(
    producer: &FutureProducer,
    orders_topic: &str,
    inventory_topic: &str,
    messages: &[GeneratedMessage],
    rate: u32,
) -> Result<SendOutcome, KafkaError> {
    let pacer = Pacer::new(rate);
    let mut pending = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let delay = pacer.delay_before(i);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let topic = match m.destination {
            Destination::Orders => orders_topic,
            Destination::Inventory => inventory_topic,
        };
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).payload(&m.payload);
        if let Some(key) = &m.key {
            record = record.key(key.as_str());
        }
        // Queue without waiting for each acknowledgement; collect them at the end.
        pending.push(producer.send_result(record).map_err(|(e, _)| e)?);
    }
    let mut outcome = SendOutcome::default();
    for (index, delivery) in pending.into_iter().enumerate() {
        let failure = match delivery.await {
            Ok(Ok(_)) => {
                outcome.acknowledged += 1;
                continue;
            }
            Ok(Err((e, _))) => e.to_string(),
            Err(_) => "producer dropped".to_string(),
        };
        outcome.unacknowledged.push(index);
        *outcome.failures.entry(failure).or_default() += 1;
    }
    producer.flush(Timeout::After(Duration::from_secs(30)))?;
    Ok(outcome)
}

/// Paces sending to `rate` messages per second (0 means as fast as possible).
#[derive(Debug)]
pub struct Pacer {
    started: Instant,
    rate: f64,
}

impl Pacer {
    pub fn new(rate: u32) -> Self {
        Self {
            started: Instant::now(),
            rate: f64::from(rate),
        }
    }

    /// How long to wait before sending message number `sent`.
    pub fn delay_before(&self, sent: usize) -> Duration {
        if self.rate <= 0.0 {
            return Duration::ZERO;
        }
        let due = Duration::from_secs_f64(sent as f64 / self.rate);
        due.saturating_sub(self.started.elapsed())
    }
}
