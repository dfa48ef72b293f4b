//! (a) Consume only: galley's consumer configuration (a fresh group) reads
//! the events (c) applied and copies each into an owned record, cut into
//! batches of `pipeline.batch_max_events` in arrival order, as galley's
//! batch filling does. Nothing is decoded or written. The batches are kept:
//! they are the input of the write-only measurement.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use galley::kafka;
use galley::pipeline::{InputRecord, PipelineContext};
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::Message;

use crate::setup::BenchEnv;

pub struct Consumed {
    pub events: u64,
    /// From subscribing until the last event is in hand.
    pub elapsed: Duration,
    pub batches: Vec<Vec<InputRecord>>,
}

pub async fn measure(env: &BenchEnv, ends: &BTreeMap<(String, i32), i64>) -> Result<Consumed> {
    let mut kafka_cfg = env.config.kafka.clone();
    kafka_cfg.group_id = format!("{}.consume-only", env.run);
    let consumer: StreamConsumer<PipelineContext> = kafka::consumer_config(&kafka_cfg, false)
        .create_with_context(PipelineContext::new(Duration::from_secs(10)))
        .context("creating the consumer")?;
    let batch_size = env.config.pipeline.batch_max_events;
    let total: i64 = ends.values().sum();
    let mut batches: Vec<Vec<InputRecord>> = Vec::new();
    let mut batch: Vec<InputRecord> = Vec::with_capacity(batch_size);
    let mut events: i64 = 0;

    let started = Instant::now();
    consumer
        .subscribe(&env.input_topics())
        .context("subscribing")?;
    let mut last_event = Instant::now();
    // Every record below the ends is read once the consumer has passed
    // them all: the last offsets may be transaction markers (exactly_once),
    // which take offsets and are never delivered.
    while events < total {
        let received = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await;
        let Ok(msg) = received else {
            if passed_every_end(&consumer, ends) {
                break;
            }
            if last_event.elapsed() > Duration::from_secs(60) {
                anyhow::bail!("no event for 60 s while consuming");
            }
            continue;
        };
        let msg = msg.context("consuming")?;
        last_event = Instant::now();
        let end = ends
            .get(&(msg.topic().to_string(), msg.partition()))
            .copied()
            .unwrap_or(0);
        if msg.offset() >= end {
            // Sent after (c) was measured (the latency and query phases).
            continue;
        }
        batch.push(InputRecord::copy_of(&msg, batch.last()));
        events += 1;
        if batch.len() == batch_size {
            batches.push(std::mem::replace(
                &mut batch,
                Vec::with_capacity(batch_size),
            ));
        }
    }
    // Up to the last event in hand, not the idle wait that saw the end.
    let elapsed = last_event.duration_since(started);
    if !batch.is_empty() {
        batches.push(batch);
    }
    consumer.unsubscribe();
    Ok(Consumed {
        events: events as u64,
        elapsed,
        batches,
    })
}

/// Whether the consumer's position has reached every partition's end.
pub fn passed_every_end<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    ends: &BTreeMap<(String, i32), i64>,
) -> bool {
    let Ok(positions) = consumer.position() else {
        return false;
    };
    ends.iter().all(|((topic, partition), end)| {
        *end == 0
            || matches!(
                positions.find_partition(topic, *partition).map(|e| e.offset()),
                Some(rdkafka::Offset::Offset(p)) if p >= *end
            )
    })
}
