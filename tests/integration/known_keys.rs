//! The keys each input partition created, as `row_keys` keeps them in the
//! real database: complete only when recorded from the partition's start,
//! and never complete again once rows were written without them.

use galley::shop::projections::ProjectionStore;
use galley::store::marks::RecordMark;

use crate::support::TestKeyspace;

const TOPIC: &str = "shop.orders";

/// A migrated keyspace of its own and the projection statements on it.
async fn fresh_store(prefix: &str) -> (TestKeyspace, ProjectionStore) {
    let ks = TestKeyspace::migrated(prefix).await;
    let store = ProjectionStore::prepare(ks.session.clone(), &ks.name)
        .await
        .expect("statements prepare");
    (ks, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_keys_answer_for_absence_only_from_a_partitions_start() {
    let (_ks, store) = fresh_store("knownkeys").await;

    // Partition 0 has neither recorded keys nor progress: no row of it can
    // exist, so its keys are recorded from now on and answer for absence.
    let fresh = store.load_known_keys(TOPIC, 0).await.expect("load");
    assert!(fresh.is_complete() && fresh.is_empty());
    store
        .known_keys()
        .record(TOPIC, 0, 41, &[7, u64::MAX])
        .await
        .expect("record");
    store
        .known_keys()
        .record(TOPIC, 0, 90, &[8])
        .await
        .expect("record");
    let reloaded = store.load_known_keys(TOPIC, 0).await.expect("reload");
    assert!(reloaded.is_complete());
    assert_eq!(reloaded.len(), 3);
    assert!(reloaded.knows(7) && reloaded.knows(8) && reloaded.knows(u64::MAX));
    assert!(reloaded.surely_absent(9));
    assert!(!reloaded.surely_absent(8));

    // Partition 1 applied events before any key was recorded: its keys
    // never answer for absence, not even after some are recorded.
    let mark = RecordMark::of(12, Some(b"O-1"), Some(1_767_225_600_000));
    store
        .write_progress(TOPIC, 1, &mark, 1_767_225_600_000, 1_767_225_600_000)
        .await
        .expect("progress");
    let older = store.load_known_keys(TOPIC, 1).await.expect("load");
    assert!(!older.is_complete());
    assert!(!older.surely_absent(9));
    store
        .known_keys()
        .record(TOPIC, 1, 20, &[9])
        .await
        .expect("record");
    let older = store.load_known_keys(TOPIC, 1).await.expect("reload");
    assert!(!older.is_complete() && older.knows(9));

    // Rows written without their keys (a changelog value of the format
    // before keys) take partition 0's completeness away for good.
    store
        .known_keys()
        .forget_completeness(TOPIC, 0)
        .await
        .expect("forget");
    let forgotten = store.load_known_keys(TOPIC, 0).await.expect("reload");
    assert!(!forgotten.is_complete());
    assert!(forgotten.knows(7), "the recorded keys stay");
    assert!(!forgotten.surely_absent(9));
}

/// Under at_least_once a batch can be processed again after a crash and end
/// at the same offset as the first time, with other keys created (the first
/// time's rows are found this time). Its record must add to the first, not
/// replace it: a replaced record loses keys whose rows exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_recorded_again_at_the_same_offset_keeps_both_records() {
    let (_ks, store) = fresh_store("knownkeys2").await;
    let fresh = store.load_known_keys(TOPIC, 0).await.expect("load");
    assert!(fresh.is_complete());
    store
        .known_keys()
        .record(TOPIC, 0, 500, &[1, 2])
        .await
        .expect("record");
    store
        .known_keys()
        .record(TOPIC, 0, 500, &[3])
        .await
        .expect("record again");
    let reloaded = store.load_known_keys(TOPIC, 0).await.expect("reload");
    for key in [1, 2, 3] {
        assert!(reloaded.knows(key), "key {key} was recorded and is lost");
    }
}
