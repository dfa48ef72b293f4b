//! Commits past the transaction markers that end a quiet input partition
//! (`pipeline.delivery = "exactly_once"`).
//!
//! galley's own re-keyed events reach its input topics in transactions, so
//! an input partition often ends in a commit marker. A batch commits its
//! partitions' offsets past the markers the consumer has already stepped
//! over when the batch starts (`past_markers` in `exactly_once`), but the
//! marker of the last transaction into a partition can come after its last
//! batch. If no record follows, the group's committed offset stays one short
//! of the end for good, and a lag of 1 shows that never goes away (the
//! integration test `lag::exactly_once_idle_partitions_show_no_lag` saw it
//! in CI on orders partition 2).
//!
//! So when the loop is idle, a partition whose consumer position has passed
//! the offset this process last committed for it gets a transaction of its
//! own: a changelog record that carries the new checkpoint, and the offset.
//! Idle means no batch is open, so every record the consumer delivered of
//! the partition since that commit was in a batch that committed (and moved
//! the offset) or gave way (and moved the position back): what lies between
//! the committed offset and the position can only be markers. A partition
//! counts only once this process has committed it since its assignment; a
//! partition assigned again starts from whatever its last owner committed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Offset;

use super::rewind::PartitionSpans;
use super::PipelineContext;

/// How often an idle loop compares positions with committed offsets.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The offsets this process committed, per input partition it owns.
#[derive(Default)]
pub(super) struct QuietMarkers {
    committed: HashMap<(Arc<str>, i32), i64>,
    checked_at: Option<Instant>,
}

impl QuietMarkers {
    /// Notes the offsets a committed transaction took the partitions to.
    pub(super) fn committed(&mut self, spans: &PartitionSpans) {
        for (part, (_, next)) in spans {
            self.committed.insert(part.clone(), *next);
        }
    }

    /// Forgets partitions revoked or assigned anew: their offsets are their
    /// next or last owner's.
    pub(super) fn forget(&mut self, partitions: &[(String, i32)]) {
        self.committed
            .retain(|(t, p), _| !partitions.iter().any(|(u, q)| q == p && u == &**t));
    }

    /// Forgets the partitions of a batch that gave way or was abandoned:
    /// the consumer was moved back over its records, and until a batch of
    /// theirs commits, a position read may not show the move yet.
    pub(super) fn forget_rewound(&mut self, spans: &PartitionSpans) {
        self.committed.retain(|part, _| !spans.contains_key(part));
    }

    /// Partitions owned whose position has passed their committed offset,
    /// each with that offset and the position; empty if checked less than
    /// [`CHECK_EVERY`] ago. Call only while no batch is open.
    pub(super) fn due(&mut self, consumer: &StreamConsumer<PipelineContext>) -> PartitionSpans {
        let now = Instant::now();
        if self.committed.is_empty()
            || self
                .checked_at
                .is_some_and(|at| now.duration_since(at) < CHECK_EVERY)
        {
            return PartitionSpans::new();
        }
        self.checked_at = Some(now);
        let Ok(positions) = consumer.position() else {
            return PartitionSpans::new();
        };
        let mut due = PartitionSpans::new();
        for elem in positions.elements() {
            let Offset::Offset(position) = elem.offset() else {
                continue;
            };
            let key: (Arc<str>, i32) = (Arc::from(elem.topic()), elem.partition());
            if let Some(&committed) = self.committed.get(&key) {
                if position > committed {
                    due.insert(key, (committed, position));
                }
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_revoked_assigned_anew_or_rewound_are_forgotten_and_others_kept() {
        let mut quiet = QuietMarkers::default();
        let orders: Arc<str> = Arc::from("shop.orders");
        let mut spans = PartitionSpans::new();
        spans.insert((orders.clone(), 2), (10, 41));
        spans.insert((orders.clone(), 3), (7, 9));
        quiet.committed(&spans);
        quiet.forget(&[("shop.orders".to_string(), 2)]);
        assert_eq!(quiet.committed.get(&(orders.clone(), 2)), None);
        assert_eq!(quiet.committed.get(&(orders.clone(), 3)), Some(&9));
        let mut rewound = PartitionSpans::new();
        rewound.insert((orders.clone(), 3), (9, 12));
        quiet.forget_rewound(&rewound);
        assert!(quiet.committed.is_empty());
    }
}
