//! The events a run sends: a backlog produced as fast as the broker takes
//! it, and later streams sent open loop at a fixed rate. All come from the
//! shop's generator (realistic order lifecycles, stock, 2% invalid
//! transitions, no poison), each stream with its own seed so that their
//! order ids never meet.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use galley::codec::Codec;
use galley::config::Config;
use galley::kafka;
use galley::shop::generator::{self, Destination, GeneratedMessage, GeneratorSettings};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

/// Distinct customers and SKUs: enough that rows spread over many
/// partitions and the caches see misses, as in a real shop.
const CUSTOMERS: usize = 50_000;
const SKUS: usize = 5_000;
/// Event time between consecutive generated events.
const STEP_MS: i64 = 50;

pub struct Backlog {
    pub messages: Vec<GeneratedMessage>,
    /// Event time of the first and past the last event, ms since the epoch.
    pub start_ms: i64,
    pub end_ms: i64,
}

/// The backlog: `count` events whose event times end now.
pub fn backlog(codec: &Codec, count: usize) -> Backlog {
    let span = STEP_MS * count as i64;
    let end_ms = galley::pipeline::unix_ms();
    let start_ms = end_ms - span;
    let (messages, _) = generator::generate(codec, &settings(count, 1, start_ms));
    Backlog {
        messages,
        start_ms,
        end_ms,
    }
}

/// A stream for an open-loop phase, with event times from now on.
pub fn live(codec: &Codec, count: usize, seed: u64) -> Vec<GeneratedMessage> {
    let start_ms = galley::pipeline::unix_ms();
    generator::generate(codec, &settings(count, seed, start_ms)).0
}

fn settings(count: usize, seed: u64, start_ms: i64) -> GeneratorSettings {
    GeneratorSettings {
        count,
        customers: CUSTOMERS,
        skus: SKUS,
        seed,
        poison_fraction: 0.0,
        start_ms,
        step_ms: STEP_MS,
        ..GeneratorSettings::default()
    }
}

pub fn topic<'a>(config: &'a Config, m: &GeneratedMessage) -> &'a str {
    match m.destination {
        Destination::Orders => &config.topics.orders,
        Destination::Inventory => &config.topics.inventory,
    }
}

/// A producer with galley's settings (idempotent, acks=all, lz4) and a
/// queue deep enough to hold a whole backlog.
pub fn producer(config: &Config, linger_ms: u32) -> Result<FutureProducer> {
    kafka::producer_config(&config.kafka)
        .set("linger.ms", linger_ms.to_string())
        .set("queue.buffering.max.messages", "2000000")
        .set("queue.buffering.max.kbytes", "2097151")
        .set("batch.num.messages", "10000")
        .create()
        .context("creating the bench's producer")
}

/// Sends every message as fast as the broker acknowledges them; returns events/s.
pub async fn produce_all(config: &Config, messages: &[GeneratedMessage]) -> Result<f64> {
    let producer = producer(config, 20)?;
    let started = Instant::now();
    let mut pending: VecDeque<DeliveryFuture> = VecDeque::new();
    for m in messages {
        let mut record = FutureRecord::to(topic(config, m)).payload(&m.payload);
        if let Some(key) = &m.key {
            record = record.key(key.as_str());
        }
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push_back(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    match pending.pop_front() {
                        Some(oldest) => acknowledged(oldest).await?,
                        None => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
                Err((e, _)) => return Err(e).context("queueing a backlog event"),
            }
        }
    }
    for delivery in pending {
        acknowledged(delivery).await?;
    }
    Ok(messages.len() as f64 / started.elapsed().as_secs_f64())
}

pub async fn acknowledged(delivery: DeliveryFuture) -> Result<()> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(e).context("the broker refused an event"),
        Err(_) => bail!("the producer dropped an event"),
    }
}
