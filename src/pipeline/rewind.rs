//! Moving the consumer back over a batch it could not finish, in either
//! delivery mode: its fetch positions have already passed the batch, and
//! the batch after it would otherwise store or commit offsets beyond it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};

use super::{InputRecord, PipelineContext};

/// Per input partition: the first offset of a batch and the offset after its last.
pub(super) type PartitionSpans = BTreeMap<(Arc<str>, i32), (i64, i64)>;

/// Per input partition of a batch: its first offset and the offset after its last.
pub(super) fn partition_spans(batch: &[InputRecord]) -> PartitionSpans {
    let mut spans = PartitionSpans::new();
    for r in batch {
        let span = spans
            .entry((r.topic.clone(), r.partition))
            .or_insert((r.offset, r.offset + 1));
        span.0 = span.0.min(r.offset);
        span.1 = span.1.max(r.offset + 1);
    }
    spans
}

/// How long moving the consumer back over an abandoned batch may take.
const REWIND_TIMEOUT: Duration = Duration::from_secs(5);

/// Moves the consumer back to the start of an abandoned batch in the
/// partitions it still holds, so that they are read again; partitions it
/// lost start from their committed offsets with their next owner anyway.
///
/// An error means a partition this process still holds may not have moved
/// back: the next batch would then commit offsets past the abandoned one
/// and lose it, so the caller stops instead (a restart resumes from the
/// committed offsets).
pub(super) async fn rewind(
    consumer: &Arc<StreamConsumer<PipelineContext>>,
    spans: &PartitionSpans,
) -> Result<(), String> {
    let owned = consumer
        .assignment()
        .map_err(|e| format!("cannot read the assignment to rewind the batch: {e}"))?;
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), (first, _)) in spans {
        if owned.find_partition(topic, *partition).is_some() {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*first))
                .map_err(|e| format!("cannot rewind {topic}[{partition}]: {e}"))?;
        }
    }
    if tpl.count() == 0 {
        return Ok(());
    }
    let consumer = consumer.clone();
    let sought =
        tokio::task::spawn_blocking(move || consumer.seek_partitions(tpl, REWIND_TIMEOUT)).await;
    let result = match sought {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => return Err(format!("rewinding the batch failed: {e}")),
        Err(e) => return Err(format!("rewinding the batch failed: {e}")),
    };
    for e in result.elements() {
        if let Err(err) = e.error() {
            return Err(format!(
                "rewinding {}[{}] failed: {err}",
                e.topic(),
                e.partition()
            ));
        }
    }
    Ok(())
}
