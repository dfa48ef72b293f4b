//! The partitioner contract: every keyed input record must sit on the
//! partition its key maps to under `kafka.partitioner`, modulo the topic's
//! partition count.
//!
//! Why it is checked rather than assumed: each row has one writer, the input
//! partition its key belongs to, and galley's own re-keyed events (published
//! with the same partitioner) must meet the upstream events of the same key
//! on the same partition. A producer with another partitioner (librdkafka's
//! default is CRC32, galley's default is Java's murmur2) would split a key
//! over two partitions: two writers for one row and watermarks from two
//! offset spaces, a silent corruption. A record on the wrong partition is
//! therefore dead-lettered as `wrong_partition` before any handler sees it.
//!
//! The partition counts come from the broker's metadata. They are learned
//! the first time a topic is seen, and fetched again whenever a batch holds
//! a record that looks misplaced. A count that changed meanwhile means
//! partitions were added: keys moved, and their rows' watermarks belong to
//! other partitions' offsets, so the batch stalls (retried, logged, `/readyz`
//! 503) rather than count new events as duplicates; `galley run` refuses to
//! start in that state (see [`crate::store::progress::offset_space_problem`]).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};

use super::{unix_ms, DeadLetter, DeadLetterStage, ErrorClass, InputRecord, StepError};
use crate::config::Partitioner;
use crate::telemetry as t;

/// How long a partition that received a misplaced record keeps galley
/// unready: long enough for the alert on readiness to fire and for someone
/// to look, short enough that a fixed producer clears it by itself.
pub const WRONG_PARTITION_UNREADY_FOR: Duration = Duration::from_secs(600);

/// How long one metadata request may take before the step is retried.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// Java's `Utils.murmur2`, the hash of Kafka's default partitioner.
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, byte) in tail.iter().enumerate().rev() {
            h ^= u32::from(*byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// CRC-32 (IEEE 802.3, as zlib computes it), the hash of librdkafka's
/// `consistent` partitioners.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

/// The partition of `key` among `partitions` under `partitioner`.
pub fn partition_for(partitioner: Partitioner, key: &[u8], partitions: i32) -> i32 {
    let n = partitions.max(1) as u32;
    let hash = match partitioner {
        Partitioner::Murmur2 => (murmur2(key) as u32) & 0x7fff_ffff,
        Partitioner::Consistent => crc32(key),
    };
    (hash % n) as i32
}

/// Checks input records against the partitioner contract.
#[derive(Debug)]
pub struct PartitionCheck {
    partitioner: Partitioner,
    counts: BTreeMap<String, i32>,
}

/// A batch less its misplaced records, and those as dead letters.
pub type Checked<'b> = (Cow<'b, [InputRecord]>, Vec<DeadLetter>);

impl PartitionCheck {
    pub fn new(partitioner: Partitioner) -> Self {
        Self {
            partitioner,
            counts: BTreeMap::new(),
        }
    }

    /// Splits off the records that sit on another partition than their key's.
    /// Records without a key are left to the processor, which knows what a
    /// key should be. Fails only when the partition counts cannot be read.
    pub async fn split<'b, C: ConsumerContext + 'static>(
        &mut self,
        consumer: &Arc<StreamConsumer<C>>,
        batch: &'b [InputRecord],
    ) -> Result<Checked<'b>, StepError> {
        let unknown = topics_of(
            batch
                .iter()
                .filter(|r| !self.counts.contains_key(&*r.topic)),
        );
        self.learn(consumer, unknown).await?;
        if batch.iter().all(|r| self.is_placed_right(r)) {
            return Ok((Cow::Borrowed(batch), Vec::new()));
        }
        // A count read before partitions were added must not condemn a record.
        let suspects = topics_of(batch.iter().filter(|r| !self.is_placed_right(r)));
        self.learn(consumer, suspects).await?;
        let (right, wrong): (Vec<&InputRecord>, Vec<&InputRecord>) =
            batch.iter().partition(|r| self.is_placed_right(r));
        let dead = wrong.into_iter().map(|r| self.dead_letter(r)).collect();
        Ok((Cow::Owned(right.into_iter().cloned().collect()), dead))
    }

    fn is_placed_right(&self, record: &InputRecord) -> bool {
        match (&record.key, self.counts.get(&*record.topic)) {
            (Some(key), Some(&n)) => partition_for(self.partitioner, key, n) == record.partition,
            _ => true,
        }
    }

    fn dead_letter(&self, record: &InputRecord) -> DeadLetter {
        let n = self.counts.get(&*record.topic).copied().unwrap_or(0);
        let key = record.key.as_deref().unwrap_or_default();
        let expected = partition_for(self.partitioner, key, n);
        let message = format!(
            "record key `{}` belongs on partition {expected} of {} ({n} partitions) under \
             kafka.partitioner = {}, but the record is on partition {}: its producer partitions \
             keys another way; make it use {} (librdkafka partitioner={}), or set \
             kafka.partitioner to what every producer of the topic uses, then send the record again",
            String::from_utf8_lossy(key),
            record.topic,
            self.partitioner,
            record.partition,
            self.partitioner,
            self.partitioner.librdkafka_name(),
        );
        DeadLetter::of(
            record,
            ErrorClass::WrongPartition,
            DeadLetterStage::Validate,
            "unknown",
            message,
        )
    }

    /// Reads the partition counts of `topics` from the broker.
    async fn learn<C: ConsumerContext + 'static>(
        &mut self,
        consumer: &Arc<StreamConsumer<C>>,
        topics: Vec<String>,
    ) -> Result<(), StepError> {
        for topic in topics {
            let client = consumer.clone();
            let name = topic.clone();
            let count = tokio::task::spawn_blocking(move || {
                let metadata = client.fetch_metadata(Some(&name), METADATA_TIMEOUT);
                metadata.map(|m| m.topics().first().map_or(0, |t| t.partitions().len()))
            })
            .await
            .map_err(|e| StepError::Retryable(format!("reading the partitions of {topic}: {e}")))?
            .map_err(|e| StepError::Retryable(format!("reading the partitions of {topic}: {e}")))?;
            if count == 0 {
                return Err(StepError::Retryable(format!(
                    "the broker lists no partitions for {topic}"
                )));
            }
            if let Some(known) = self.counts.get(&topic).filter(|n| **n != count as i32) {
                return Err(StepError::Retryable(format!(
                    "input topic {topic} went from {known} to {count} partitions while galley ran: \
                     keys moved, so stop galley and follow README \"Adding partitions\""
                )));
            }
            self.counts.insert(topic, count as i32);
        }
        Ok(())
    }
}

/// Input partitions that received misplaced records, and when last, for
/// readiness; counted in [`t::WRONG_PARTITION_EVENTS_TOTAL`].
#[derive(Debug, Default)]
pub struct WrongPartitions {
    last_seen_ms: Mutex<BTreeMap<(String, i32), i64>>,
}

impl WrongPartitions {
    /// Notes the `wrong_partition` dead letters of a committed batch.
    pub fn record(&self, dead_letters: &[DeadLetter]) {
        let now = unix_ms();
        let wrong = dead_letters
            .iter()
            .filter(|d| d.error_class == ErrorClass::WrongPartition);
        let Ok(mut seen) = self.last_seen_ms.lock() else {
            return;
        };
        for d in wrong {
            metrics::counter!(
                t::WRONG_PARTITION_EVENTS_TOTAL,
                "topic" => d.topic.to_string(),
                "partition" => d.partition.to_string()
            )
            .increment(1);
            seen.insert((d.topic.to_string(), d.partition), now);
        }
    }

    /// `topic[partition]` of every partition that received a misplaced
    /// record within [`WRONG_PARTITION_UNREADY_FOR`] before `now_ms`.
    pub fn recent(&self, now_ms: i64) -> Vec<String> {
        let hold = WRONG_PARTITION_UNREADY_FOR.as_millis() as i64;
        let Ok(seen) = self.last_seen_ms.lock() else {
            return Vec::new();
        };
        seen.iter()
            .filter(|(_, at)| now_ms - **at < hold)
            .map(|((topic, partition), _)| format!("{topic}[{partition}]"))
            .collect()
    }
}

/// The distinct topics of some records, in order of first appearance.
fn topics_of<'r>(records: impl Iterator<Item = &'r InputRecord>) -> Vec<String> {
    let mut topics: Vec<String> = Vec::new();
    for r in records {
        if !topics.iter().any(|t| *t == *r.topic) {
            topics.push(r.topic.to_string());
        }
    }
    topics
}

#[cfg(test)]
#[path = "partitioning_tests.rs"]
mod tests;
