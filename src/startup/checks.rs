//! The checks `galley run` makes before it subscribes: an input topic must
//! still be the offset space the keyspace's watermarks were written in
//! (same partitions, not re-created), or the process refuses to start.

use std::time::Duration;

use anyhow::{bail, Context};
use tokio::time::Instant;
use tracing::warn;

use super::InputConsumer;
use crate::config::Config;
use crate::kafka;
use crate::pipeline;
use crate::store;
use crate::store::marks::{self, Incarnation, RecordMark};
use crate::store::progress::ProgressStore;

/// How long startup waits for the input topics' partitions to be readable
/// (a topic created just before galley may have no leader yet).
const TOPIC_METADATA_WAIT: Duration = Duration::from_secs(30);

/// Refuses to start when an input topic is no longer the offset space the
/// keyspace's watermarks were written in (partitions added, topic
/// re-created); otherwise records each topic's partition count the first time.
pub(super) async fn check_offset_spaces(
    config: &Config,
    consumer: &InputConsumer,
    progress: &ProgressStore,
) -> anyhow::Result<()> {
    for topic in [&config.topics.orders, &config.topics.inventory] {
        let ends = partition_ends(consumer, topic).await?;
        let recorded = progress.recorded_partitions(topic).await?;
        let applied = progress.applied_offsets(topic).await?;
        if ends.is_empty() {
            if recorded.is_some() || !applied.is_empty() {
                bail!(
                    "input topic {topic} is gone, but this keyspace applied events from it; \
                     see README \"Adding partitions\""
                );
            }
            warn!(topic = %topic, "input topic has no partitions yet; its offsets are not checked");
            continue;
        }
        if let Some(problem) =
            store::progress::offset_space_problem(topic, recorded, &ends, &applied)
        {
            bail!(problem);
        }
        check_incarnation(config, topic, &ends, progress).await?;
        if recorded.is_none() {
            let now = pipeline::unix_ms();
            progress
                .record_partitions(topic, ends.len() as i32, now)
                .await?;
        }
    }
    Ok(())
}

/// How long the startup check waits for the records at the marked offsets.
const MARKED_RECORDS_WAIT: Duration = Duration::from_secs(10);

/// Refuses to start when the record at a partition's marked offset is not
/// the one this keyspace applied there (see [`store::marks`]): the topic was
/// re-created, even if it has grown past every applied offset since.
async fn check_incarnation(
    config: &Config,
    topic: &str,
    ends: &std::collections::BTreeMap<i32, i64>,
    progress: &ProgressStore,
) -> anyhow::Result<()> {
    // A mark at or past a partition's end was refused by the offset check.
    let marks: Vec<(i32, RecordMark)> = progress
        .marks(topic)
        .await?
        .into_iter()
        .filter(|(p, mark)| ends.get(p).is_some_and(|end| mark.offset < *end))
        .collect();
    if marks.is_empty() {
        return Ok(());
    }
    let offsets: Vec<(i32, i64)> = marks.iter().map(|(p, m)| (*p, m.offset)).collect();
    let (kafka, name) = (config.kafka.clone(), topic.to_string());
    let found = tokio::task::spawn_blocking(move || {
        kafka::first_records_at(&kafka, &name, &offsets, MARKED_RECORDS_WAIT)
    })
    .await?
    .with_context(|| format!("reading the marked records of input topic {topic}"))?;
    for (partition, mark) in &marks {
        let read = found
            .get(partition)
            .map(|(offset, key, time)| RecordMark::of(*offset, key.as_deref(), *time));
        match marks::compare_mark(topic, *partition, mark, read.as_ref()) {
            Incarnation::Same => {}
            Incarnation::Different(problem) => bail!(problem),
            Incarnation::Unknown => warn!(
                topic = %topic,
                partition,
                offset = mark.offset,
                "the record this keyspace applied last here is gone (retention); this \
                 partition is not checked for a re-created topic"
            ),
        }
    }
    Ok(())
}

/// The partitions of `topic` and their ends, retried while the broker cannot
/// tell yet; empty when the topic has no partitions.
async fn partition_ends(
    consumer: &InputConsumer,
    topic: &str,
) -> anyhow::Result<std::collections::BTreeMap<i32, i64>> {
    let deadline = Instant::now() + TOPIC_METADATA_WAIT;
    loop {
        let (client, name) = (consumer.clone(), topic.to_string());
        let ends = tokio::task::spawn_blocking(move || {
            kafka::partition_ends(&*client, &name, Duration::from_secs(5))
        })
        .await?;
        match ends {
            Ok(ends) if !ends.is_empty() => return Ok(ends),
            Ok(_) | Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Ok(ends) => return Ok(ends),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("reading the partitions of input topic {topic}"))
            }
        }
    }
}
