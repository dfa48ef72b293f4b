//! Persistent consumer errors are a readiness reason. A fetch that keeps
//! failing (librdkafka once logged "Decompression (codec 0x4) failed" and
//! stalled its partitions) must turn /readyz to 503, not only raise
//! `galley_consumer_errors_total`.
//!
//! The broker here is librdkafka's mock cluster, in the test process: a
//! real Kafka broker cannot be made to fail fetches on demand (it refuses
//! a corrupt record at produce time). Its fetch errors reach a real galley
//! process through librdkafka's ordinary fetch path, as a corrupt record
//! would.

use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use crate::support::process::{http_get, GalleyEnv, GalleyProcess};
use crate::support::TestKeyspace;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_that_keep_failing_make_readyz_name_the_consumer_errors() {
    let mock = MockCluster::new(1).expect("a mock Kafka cluster");
    let keyspace = TestKeyspace::migrated("ks_fetcherr").await;
    let mut env = GalleyEnv::new("t_fetcherr", &keyspace.name);
    // The changelogs too: the mock cluster does not create topics through
    // the admin API, which galley uses to make them under exactly_once.
    let changelogs = [&env.topics.orders, &env.topics.inventory]
        .map(|input| galley::kafka::changelog_topic(input));
    for topic in env.topic_names().iter().chain(&changelogs) {
        mock.create_topic(topic, 2, 1)
            .expect("topic on the mock cluster");
    }
    env.set("GALLEY_KAFKA__BROKERS", mock.bootstrap_servers());
    let mut galley = GalleyProcess::spawn(&env, "a");
    galley.wait_ready(Duration::from_secs(60)).await;

    // Every partition of every fetch fails with CORRUPT_MESSAGE (code 2).
    mock.request_errors(
        RDKafkaApiKey::Fetch,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_MSG; 5_000],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = http_get(galley.admin, "/readyz").await;
        if let Some((503, body)) = &answer {
            if body.contains("kafka: consumer errors: ") {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still answers {answer:?} while every fetch fails; log:\n{}",
            galley.log_tail(10)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
