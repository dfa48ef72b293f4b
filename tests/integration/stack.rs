//! The local stack itself: Kafka produces and consumes, transactions are
//! honoured by read_committed consumers, and CQL round-trips.

use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;

use crate::support::topics::{kafka_config, TestTopics};
use crate::support::{brokers, cql_config, unique_name, TestKeyspace};

fn consumer(group: &str, isolation: &str) -> StreamConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer")
}

/// Reads until `expected` messages arrived or nothing more comes within the idle timeout.
async fn read_values(consumer: &StreamConsumer, expected: usize, idle: Duration) -> Vec<String> {
    let mut values = Vec::new();
    while values.len() < expected {
        match tokio::time::timeout(idle, consumer.recv()).await {
            Ok(Ok(m)) => {
                values.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
            }
            Ok(Err(e)) => panic!("consumer error: {e}"),
            Err(_) => break,
        }
    }
    values
}

#[tokio::test]
async fn kafka_round_trip_through_a_unique_topic() {
    let topics = TestTopics::single("t_roundtrip", 3).await;
    let producer: FutureProducer = galley::kafka::producer_config(&kafka_config("p"))
        .create()
        .expect("producer");
    for i in 0..30 {
        let value = format!("message-{i}");
        let key = format!("key-{}", i % 5);
        producer
            .send(
                FutureRecord::to(topics.name()).key(&key).payload(&value),
                Timeout::After(Duration::from_secs(10)),
            )
            .await
            .expect("delivered");
    }
    let c = consumer(&unique_name("g_roundtrip"), "read_uncommitted");
    c.subscribe(&[topics.name()]).expect("subscribe");
    let mut got = read_values(&c, 30, Duration::from_secs(20)).await;
    got.sort();
    let mut want: Vec<String> = (0..30).map(|i| format!("message-{i}")).collect();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn read_committed_consumers_see_committed_transactions_and_not_aborted_ones() {
    let topics = TestTopics::single("t_txn", 1).await;
    let topic = topics.name().to_string();
    let transactional_id = unique_name("txn");
    let producer: FutureProducer = galley::kafka::producer_config(&kafka_config("p"))
        .set("transactional.id", &transactional_id)
        .set("retry.backoff.ms", "10")
        .create()
        .expect("transactional producer");
    // Transaction calls block; keep them off the async workers.
    let p = producer.clone();
    tokio::task::spawn_blocking(move || p.init_transactions(Duration::from_secs(30)))
        .await
        .expect("join")
        .expect("init transactions");

    for (value, commit) in [
        ("first-committed", true),
        ("aborted", false),
        ("second-committed", true),
    ] {
        producer.begin_transaction().expect("begin");
        producer
            .send(
                FutureRecord::to(&topic).key("k").payload(value),
                Timeout::After(Duration::from_secs(10)),
            )
            .await
            .expect("sent inside transaction");
        let p = producer.clone();
        tokio::task::spawn_blocking(move || {
            if commit {
                p.commit_transaction(Duration::from_secs(30))
            } else {
                p.abort_transaction(Duration::from_secs(30))
            }
        })
        .await
        .expect("join")
        .expect("end transaction");
    }

    let committed = consumer(&unique_name("g_rc"), "read_committed");
    committed.subscribe(&[&topic]).expect("subscribe");
    let seen = read_values(&committed, 3, Duration::from_secs(10)).await;
    assert_eq!(seen, vec!["first-committed", "second-committed"]);

    // The aborted record is in the log: an uncommitted reader sees all three.
    let uncommitted = consumer(&unique_name("g_ru"), "read_uncommitted");
    uncommitted.subscribe(&[&topic]).expect("subscribe");
    let all = read_values(&uncommitted, 3, Duration::from_secs(10)).await;
    assert_eq!(all, vec!["first-committed", "aborted", "second-committed"]);
}

#[tokio::test]
async fn cql_round_trip_in_a_unique_keyspace_that_is_dropped_afterwards() {
    let keyspace = TestKeyspace::empty("ks_roundtrip").await;
    let name = keyspace.name.clone();
    let session = keyspace.session.clone();
    session
        .query_unpaged(
            format!("CREATE TABLE {name}.kv (k text PRIMARY KEY, v bigint)"),
            (),
        )
        .await
        .expect("create table");
    session
        .await_schema_agreement()
        .await
        .expect("schema agreement");
    let insert = session
        .prepare(format!("INSERT INTO {name}.kv (k, v) VALUES (?, ?)"))
        .await
        .expect("prepare insert");
    for i in 0..10i64 {
        session
            .execute_unpaged(&insert, (format!("key-{i}"), i * i))
            .await
            .expect("insert");
    }
    let rows = session
        .query_unpaged(format!("SELECT v FROM {name}.kv WHERE k = 'key-7'"), ())
        .await
        .expect("select")
        .into_rows_result()
        .expect("rows");
    let (v,): (i64,) = rows.single_row().expect("one row");
    assert_eq!(v, 49);

    drop(keyspace);
    let check = galley::store::connect(&cql_config("system"))
        .await
        .expect("session");
    let remaining = check
        .query_unpaged(
            "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?",
            (name.as_str(),),
        )
        .await
        .expect("select keyspaces")
        .into_rows_result()
        .expect("rows")
        .rows_num();
    assert_eq!(remaining, 0, "keyspace {name} should be dropped");
}
