//! The partitioner contract against the real stack. An outside producer with
//! librdkafka's defaults (CRC32, `consistent_random`) puts keys on other
//! partitions than galley's murmur2; each such record must be dead-lettered
//! as `wrong_partition`, counted, and turn `/readyz` to 503, instead of
//! silently giving a row two writers. With `kafka.partitioner = consistent`
//! the same stream is galley's own way, and every projection equals the fold.

use std::collections::BTreeSet;
use std::time::Duration;

use galley::config::Partitioner;
use galley::pipeline::partitioning::partition_for;
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;

use crate::support::brokers;
use crate::support::process::{http_get, GalleyProcess};
use crate::support::scenario::{ReadMessage, Scenario, INPUT_PARTITIONS};

/// Sends the stream the way a producer with librdkafka's defaults does
/// (no `partitioner` set: `consistent_random`), as kcat or confluent-kafka do.
async fn produce_with_librdkafka_defaults(scenario: &Scenario, count: usize, seed: u64) -> usize {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("producer");
    let messages = scenario.generate(count, seed);
    let topics = &scenario.env.topics;
    galley::shop::send::send_all(&producer, &topics.orders, &topics.inventory, &messages, 0)
        .await
        .expect("send the stream")
        .acknowledged
}

/// The input records of both input topics: those an outside producer sent,
/// and galley's own re-keyed ones (which carry an event id).
fn inputs(scenario: &Scenario) -> (Vec<ReadMessage>, Vec<ReadMessage>) {
    let topics = &scenario.env.topics;
    let mut all = scenario.read_topic(&topics.orders);
    all.extend(scenario.read_topic(&topics.inventory));
    all.into_iter()
        .partition(|m| !m.headers.contains_key(galley::shop::EVENT_ID_HEADER))
}

fn placed_by(partitioner: Partitioner, m: &ReadMessage) -> bool {
    match &m.key {
        Some(key) => partition_for(partitioner, key, INPUT_PARTITIONS) == m.partition,
        None => true,
    }
}

/// Sums every series of a counter in a Prometheus exposition.
fn counter_sum(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_off_their_keys_murmur2_partition_are_dead_lettered_as_wrong_partition() {
    let scenario = Scenario::new("wrongpart").await;
    let mut galley = GalleyProcess::spawn(&scenario.env, "a");
    galley.wait_ready(Duration::from_secs(60)).await;
    produce_with_librdkafka_defaults(&scenario, 600, 31).await;
    scenario.wait_caught_up(&mut [&mut galley]).await;

    let (outside, own) = tokio::task::block_in_place(|| inputs(&scenario));
    // Our hashes agree with librdkafka's and with galley's producer.
    assert!(outside
        .iter()
        .all(|m| placed_by(Partitioner::Consistent, m)));
    assert!(own.iter().all(|m| placed_by(Partitioner::Murmur2, m)));
    let misplaced: BTreeSet<(String, i32, i64)> = outside
        .iter()
        .filter(|m| !placed_by(Partitioner::Murmur2, m))
        .map(|m| (m.topic.clone(), m.partition, m.offset))
        .collect();
    assert!(misplaced.len() > 100, "the stream must be mostly misplaced");

    let dead =
        tokio::task::block_in_place(|| scenario.read_topic(&scenario.env.topics.dead_letter));
    let header = |m: &ReadMessage, name: &str| m.headers.get(name).cloned().unwrap_or_default();
    let wrong_partition: BTreeSet<(String, i32, i64)> = dead
        .iter()
        .filter(|m| header(m, "__connect.errors.exception.class.name") == "wrong_partition")
        .map(|m| {
            assert!(
                header(m, "__connect.errors.exception.message").contains("kafka.partitioner"),
                "the message says what to fix"
            );
            (
                header(m, "__connect.errors.topic"),
                header(m, "__connect.errors.partition")
                    .parse()
                    .unwrap_or(-1),
                header(m, "__connect.errors.offset").parse().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        wrong_partition.len(),
        misplaced.len(),
        "{} records sit off their key's murmur2 partition; {} were dead-lettered as wrong_partition",
        misplaced.len(),
        wrong_partition.len()
    );
    assert_eq!(wrong_partition, misplaced);

    let (status, body) = http_get(galley.admin, "/readyz").await.expect("readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("wrong_partition") && body.contains("kafka.partitioner"),
        "{body}"
    );
    let (_, exposition) = http_get(galley.admin, "/metrics").await.expect("metrics");
    assert_eq!(
        counter_sum(&exposition, "galley_wrong_partition_events_total"),
        misplaced.len() as f64
    );
    galley.terminate(Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_consistent_partitioner_a_librdkafka_default_stream_equals_the_fold() {
    let mut scenario = Scenario::new("crcpart").await;
    scenario.env.set("GALLEY_KAFKA__PARTITIONER", "consistent");
    let mut galley = GalleyProcess::spawn(&scenario.env, "a");
    galley.wait_ready(Duration::from_secs(60)).await;
    let sent = produce_with_librdkafka_defaults(&scenario, 3_000, 32).await;
    scenario.wait_caught_up(&mut [&mut galley]).await;

    let (outside, own) = tokio::task::block_in_place(|| inputs(&scenario));
    assert!(!own.is_empty(), "galley fed its own input topics");
    // galley's own producer followed kafka.partitioner.
    assert!(outside
        .iter()
        .chain(&own)
        .all(|m| placed_by(Partitioner::Consistent, m)));
    let report = scenario.verify(sent).await;
    report.print("crcpart", std::time::Duration::ZERO);
    report.assert_exact();
    let (status, body) = http_get(galley.admin, "/readyz").await.expect("readyz");
    assert_eq!(status, 200, "{body}");
    galley.terminate(Duration::from_secs(30));
}
