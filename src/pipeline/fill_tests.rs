use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::*;
use crate::pipeline::{ChangelogEntry, Effects, StepError, WriteGate};

/// A processor that only remembers which partitions it was told to forget.
#[derive(Default)]
struct Forgetful {
    revoked: Vec<(String, i32)>,
}

impl Processor for Forgetful {
    type Writes = ();

    async fn prepare(&mut self, _batch: &[InputRecord]) -> Result<Effects<()>, StepError> {
        Ok(Effects {
            messages: Vec::new(),
            dead_letters: Vec::new(),
            writes: (),
        })
    }

    async fn write(&mut self, _writes: &(), _gate: &WriteGate<'_>) -> Result<(), StepError> {
        Ok(())
    }

    fn changelog(&self, _writes: &(), _max_bytes: usize) -> Result<Vec<ChangelogEntry>, StepError> {
        Ok(Vec::new())
    }

    fn committed(&mut self, _writes: (), _awaiting_sink: bool) {}

    fn applied(&mut self, _topic: &str, _partition: i32, _next_offset: i64) {}

    fn partitions_revoked(&mut self, partitions: &[(String, i32)]) {
        self.revoked.extend(partitions.iter().cloned());
    }
}

/// What a filling reaches: the group's news, the batch, the processor.
struct Rig {
    events: GroupEvents,
    health: Arc<PipelineHealth>,
    processor: Forgetful,
    batch: Vec<InputRecord>,
}

impl Rig {
    /// A rig whose member owns `owned`; also returns a handle on its group
    /// news, for the test to play the rebalance callback.
    fn owning(owned: &[(&str, i32)]) -> (Rig, GroupEvents) {
        let events = GroupEvents::default();
        events.record_assigned(owned.iter().map(|(t, p)| (t.to_string(), *p)).collect());
        let rig = Rig {
            events: events.clone(),
            health: PipelineHealth::new(),
            processor: Forgetful::default(),
            batch: Vec::new(),
        };
        (rig, events)
    }

    fn filling(&mut self) -> Filling<'_, Forgetful> {
        Filling {
            batch: &mut self.batch,
            events: &self.events,
            processor: &mut self.processor,
            health: &self.health,
            transactional: None,
        }
    }
}

fn record(topic: &Arc<str>, partition: i32, offset: i64) -> InputRecord {
    InputRecord {
        topic: topic.clone(),
        partition,
        offset,
        key: None,
        payload: None,
        timestamp_ms: None,
        headers: None,
    }
}

fn spans(batch: &[InputRecord]) -> Vec<(i32, i64)> {
    batch.iter().map(|r| (r.partition, r.offset)).collect()
}

/// The zombie fault scenario lost inventory[0]@539..=1436 this way: the
/// surviving member had the partition revoked and assigned back while one
/// batch filled, fetched it again from the committed offset, and dropped
/// those records with the stale ones; its fetch position had moved past
/// them, so its next stored offset skipped them for good.
#[test]
fn records_fetched_after_their_partition_came_back_stay_in_the_batch() {
    let topic: Arc<str> = Arc::from("inventory");
    let p0 = ("inventory".to_string(), 0);
    let (mut rig, events) = Rig::owning(&[("inventory", 0), ("inventory", 1)]);
    let mut filling = rig.filling();
    // Fetched under the first assignment.
    filling.push(record(&topic, 0, 539));
    filling.push(record(&topic, 0, 540));
    filling.push(record(&topic, 1, 7));
    // Revoked, then assigned again, before the batch is processed ...
    events.record_revoked(std::slice::from_ref(&p0));
    events.record_assigned(vec![p0.clone()]);
    // ... and fetched again from the committed offset.
    filling.push(record(&topic, 0, 539));
    filling.push(record(&topic, 0, 540));
    filling.push(record(&topic, 0, 541));
    filling.finish();

    assert_eq!(
        spans(&rig.batch),
        vec![(1, 7), (0, 539), (0, 540), (0, 541)],
        "the records fetched before the revocation are dropped, the ones fetched after it kept"
    );
    assert_eq!(
        rig.processor.revoked,
        vec![p0],
        "the processor forgets the partition"
    );
    assert!(rig.health.has_assignment.load(Ordering::Relaxed));
}

#[test]
fn a_revoked_partition_s_records_leave_the_batch_and_the_others_stay() {
    let topic: Arc<str> = Arc::from("orders");
    let (mut rig, events) = Rig::owning(&[("orders", 0), ("orders", 1)]);
    let mut filling = rig.filling();
    filling.push(record(&topic, 0, 10));
    filling.push(record(&topic, 1, 20));
    events.record_revoked(&[("orders".to_string(), 0)]);
    filling.push(record(&topic, 1, 21));
    filling.finish();
    assert_eq!(spans(&rig.batch), vec![(1, 20), (1, 21)]);

    // Revoked with no record after it: applied when the filling ends.
    let mut filling = rig.filling();
    filling.push(record(&topic, 1, 22));
    events.record_revoked(&[("orders".to_string(), 1)]);
    filling.finish();
    assert!(rig.batch.is_empty(), "{:?}", spans(&rig.batch));
    assert!(!rig.health.has_assignment.load(Ordering::Relaxed));
}
