//! Offset spaces are checked, not assumed: a keyspace's watermarks belong to
//! one incarnation of each input topic with one partition count. When
//! partitions are added (keys move) or a topic is re-created (offsets start
//! again below the watermarks), `galley run` must refuse to start and say
//! what to do, instead of counting new events as duplicates, even when the
//! re-created topic has grown past every applied offset.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;

use crate::support::process::GalleyProcess;
use crate::support::scenario::{Scenario, INPUT_PARTITIONS};
use crate::support::topics::kafka_config;

fn admin() -> AdminClient<DefaultClientContext> {
    galley::kafka::base_config(&kafka_config("unused"))
        .create()
        .expect("admin client")
}

/// Runs galley over a small stream until it has caught up, then stops it.
async fn applied_stream(prefix: &str) -> Scenario {
    let scenario = Scenario::new(prefix).await;
    let mut galley = GalleyProcess::spawn(&scenario.env, "first");
    galley.wait_ready(Duration::from_secs(60)).await;
    let sent = scenario.produce(scenario.generate(400, 41), 0).await;
    assert!(sent > 0);
    scenario.wait_caught_up(&mut [&mut galley]).await;
    let status = galley.terminate(Duration::from_secs(30)).expect("exits");
    assert!(status.success(), "{}", galley.log_tail(20));
    scenario
}

/// Starts galley again and requires it to exit non-zero, its log naming the
/// topic and each of `words`.
fn assert_refuses_to_start(scenario: &Scenario, topic: &str, words: &[&str]) {
    let mut galley = GalleyProcess::spawn(&scenario.env, "second");
    let status = galley.wait_exit(Duration::from_secs(60));
    let log = galley.log_tail(30);
    let status = status.unwrap_or_else(|| panic!("galley started anyway; log:\n{log}"));
    assert!(!status.success(), "{log}");
    for word in std::iter::once(topic).chain(words.iter().copied()) {
        assert!(log.contains(word), "`{word}` in:\n{log}");
    }
}

/// The topic exists with every partition and holds no record.
fn is_empty_topic(scenario: &Scenario, topic: &str) -> bool {
    let consumer = scenario.admin_consumer();
    let Ok(marks) = galley::kafka::partition_watermarks(&consumer, topic, Duration::from_secs(5))
    else {
        return false;
    };
    marks.len() == INPUT_PARTITIONS as usize && marks.values().all(|(_, high)| *high == 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn galley_refuses_to_start_after_partitions_were_added() {
    let scenario = applied_stream("addpart").await;
    let orders = scenario.env.topics.orders.clone();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin()
        .create_partitions(
            &[NewPartitions::new(&orders, INPUT_PARTITIONS as usize + 2)],
            &opts,
        )
        .await
        .expect("create partitions");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_refuses_to_start(
        &scenario,
        &orders,
        &[
            &format!("{INPUT_PARTITIONS} partitions"),
            "Adding partitions",
        ],
    );
}

/// Deletes `topic` and creates it again, empty, with as many partitions.
async fn recreate(scenario: &Scenario, topic: &str) {
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    admin()
        .delete_topics(&[topic], &opts)
        .await
        .expect("delete topic");
    // Deletion completes in the background; create again until it takes.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let created =
            galley::kafka::ensure_topics(&kafka_config("unused"), &[topic], INPUT_PARTITIONS, 1)
                .await;
        if created.is_ok() && tokio::task::block_in_place(|| is_empty_topic(scenario, topic)) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "topic not re-created");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Each partition of `topic` and its end offset.
fn partition_ends(scenario: &Scenario, topic: &str) -> Vec<(i32, i64)> {
    use rdkafka::consumer::Consumer;
    let consumer = scenario.admin_consumer();
    (0..INPUT_PARTITIONS)
        .map(|p| {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(5))
                .expect("watermarks");
            (p, high)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn galley_refuses_to_start_on_a_recreated_topic() {
    let scenario = applied_stream("recreate").await;
    let inventory = scenario.env.topics.inventory.clone();
    recreate(&scenario, &inventory).await;
    assert_refuses_to_start(&scenario, &inventory, &["re-created"]);
}

/// A re-created topic that has grown past every offset the keyspace applied
/// before galley starts again: the end offsets alone cannot tell, the
/// records at the applied offsets can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn galley_refuses_to_start_on_a_recreated_topic_grown_past_the_watermarks() {
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let scenario = applied_stream("regrown").await;
    let inventory = scenario.env.topics.inventory.clone();
    let before = tokio::task::block_in_place(|| partition_ends(&scenario, &inventory));
    assert!(before.iter().any(|(_, end)| *end > 0), "{before:?}");
    recreate(&scenario, &inventory).await;
    let producer: FutureProducer = galley::kafka::producer_config(&kafka_config("regrown"))
        .create()
        .expect("producer");
    for (partition, end) in &before {
        for n in 0..end + 5 {
            let key = format!("regrown-{partition}-{n}");
            let record = FutureRecord::to(&inventory)
                .partition(*partition)
                .key(&key)
                .payload("not an event of the first incarnation");
            producer
                .send(record, Duration::from_secs(30))
                .await
                .expect("send");
        }
    }
    let after = tokio::task::block_in_place(|| partition_ends(&scenario, &inventory));
    assert!(
        before.iter().zip(&after).all(|((_, b), (_, a))| a > b),
        "every partition ends past its old end: {before:?} -> {after:?}"
    );
    assert_refuses_to_start(&scenario, &inventory, &["another record", "re-created"]);
}
