//! Offset spaces are checked, not assumed: a keyspace's watermarks belong to
//! one incarnation of each input topic with one partition count. When
//! partitions are added (keys move) or a topic is re-created (offsets start
//! again below the watermarks), `galley run` must refuse to start and say
//! what to do, instead of counting new events as duplicates.

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
    use rdkafka::consumer::Consumer;
    let consumer = scenario.admin_consumer();
    let timeout = Duration::from_secs(5);
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), timeout) else {
        return false;
    };
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    partitions.len() == INPUT_PARTITIONS as usize
        && partitions
            .iter()
            .all(|p| matches!(consumer.fetch_watermarks(topic, *p, timeout), Ok((_, 0))))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn galley_refuses_to_start_on_a_recreated_topic() {
    let scenario = applied_stream("recreate").await;
    let inventory = scenario.env.topics.inventory.clone();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    admin()
        .delete_topics(&[&inventory], &opts)
        .await
        .expect("delete topic");
    // Deletion completes in the background; create again until it takes.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let created = galley::kafka::ensure_topics(
            &kafka_config("unused"),
            &[&inventory],
            INPUT_PARTITIONS,
            1,
        )
        .await;
        if created.is_ok() && tokio::task::block_in_place(|| is_empty_topic(&scenario, &inventory))
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "topic not re-created");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_refuses_to_start(&scenario, &inventory, &["re-created"]);
}
