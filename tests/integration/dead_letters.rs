//! Poison that galley must never stall on, even when it is too large to copy
//! whole into a dead letter, and dead letters that keep what Kafka Connect
//! users read (the original headers and timestamp, the `__connect.errors.*`
//! context).
//! Each test runs a real galley process on topics and a keyspace of its own.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use sha2::{Digest, Sha256};

use crate::codecs::order_placed;
use crate::support::process::GalleyProcess;
use crate::support::scenario::{read_projections, ReadMessage, Scenario};
use crate::support::topics::kafka_config;

/// How long galley gets to apply a handful of events.
const APPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// A producer like galley's own, with `overrides` applied (compression,
/// message size).
pub fn producer(overrides: &[(&str, &str)]) -> FutureProducer {
    let mut cfg = galley::kafka::producer_config(&kafka_config("producer"));
    for (key, value) in overrides {
        cfg.set(*key, *value);
    }
    cfg.create().expect("producer with these settings")
}

/// One record to send: key, value, headers, timestamp.
pub struct Outgoing<'a> {
    pub key: &'a str,
    pub value: &'a [u8],
    pub headers: &'a [(&'a str, &'a [u8])],
    pub timestamp_ms: Option<i64>,
}

/// Sends the records in order to `topic` and waits for every ack.
pub async fn send(producer: &FutureProducer, topic: &str, records: &[Outgoing<'_>]) {
    for r in records {
        let mut headers = OwnedHeaders::new();
        for (key, value) in r.headers {
            headers = headers.insert(Header {
                key,
                value: Some(*value),
            });
        }
        let mut record = FutureRecord::to(topic)
            .key(r.key)
            .payload(r.value)
            .headers(headers);
        if let Some(ts) = r.timestamp_ms {
            record = record.timestamp(ts);
        }
        producer
            .send(record, Timeout::After(Duration::from_secs(30)))
            .await
            .map_err(|(e, _)| e)
            .expect("the broker accepts the record");
    }
}

/// Waits until every order of `ids` has a row; returns those still missing
/// at the deadline.
pub async fn wait_for_orders(scenario: &Scenario, ids: &[String]) -> BTreeSet<String> {
    let deadline = Instant::now() + APPLY_TIMEOUT;
    loop {
        let rows = read_projections(&scenario.keyspace).await.orders;
        let missing: BTreeSet<String> = ids
            .iter()
            .filter(|id| !rows.contains_key(*id))
            .cloned()
            .collect();
        if missing.is_empty() || Instant::now() >= deadline {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the dead-letter topic holds `count` messages, then returns them.
pub async fn wait_for_dead_letters(scenario: &Scenario, count: usize) -> Vec<ReadMessage> {
    let deadline = Instant::now() + APPLY_TIMEOUT;
    loop {
        let dead =
            tokio::task::block_in_place(|| scenario.read_topic(&scenario.env.topics.dead_letter));
        if dead.len() >= count || Instant::now() >= deadline {
            return dead;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The value of a dead letter's header, or "" when it has none.
fn header<'a>(m: &'a ReadMessage, name: &str) -> &'a str {
    m.headers.get(name).map(String::as_str).unwrap_or_default()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_too_large_for_a_dead_letter_is_truncated_and_holds_nothing_up() {
    let scenario = Scenario::new("dlq_big").await;
    let mut galley = GalleyProcess::spawn(&scenario.env, "a");
    galley.wait_ready(Duration::from_secs(60)).await;

    // What a Java producer with defaults can send: a value just under its
    // 1 MiB request limit, then (compressed) a 2 MiB one. Both are poison
    // (not the wire format) on the same partition as four good events.
    let big = vec![b'x'; 1_040_000];
    let huge: Vec<u8> = (0..2 * 1024 * 1024u32)
        .map(|i| b"abcdefgh"[(i % 8) as usize])
        .collect();
    let key = "order-big";
    let good: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| {
            let id = format!("order-after-{i}");
            let value = order_placed(&scenario, &id);
            (id, value)
        })
        .collect();
    // Java's default `max.request.size`; librdkafka's default is lower.
    let uncompressed = producer(&[
        ("compression.type", "none"),
        ("message.max.bytes", "1048576"),
    ]);
    let compressed = producer(&[
        ("compression.type", "gzip"),
        ("message.max.bytes", "4000000"),
    ]);
    fn one<'a>(key: &'a str, value: &'a [u8]) -> [Outgoing<'a>; 1] {
        [Outgoing {
            key,
            value,
            headers: &[],
            timestamp_ms: None,
        }]
    }
    let orders = &scenario.env.topics.orders;
    send(&uncompressed, orders, &one(key, &big)).await;
    send(&compressed, orders, &one(key, &huge)).await;
    for (id, value) in &good {
        let record = Outgoing {
            key: id,
            value,
            headers: &[],
            timestamp_ms: None,
        };
        send(&uncompressed, orders, &[record]).await;
    }

    let ids: Vec<String> = good.iter().map(|(id, _)| id.clone()).collect();
    let missing = wait_for_orders(&scenario, &ids).await;
    assert!(
        missing.is_empty(),
        "{} of 4 good events applied after the large poison; log:\n{}",
        4 - missing.len(),
        galley.log_tail(20)
    );
    let dead = wait_for_dead_letters(&scenario, 2).await;
    assert_eq!(dead.len(), 2, "one dead letter per poison record");
    for (m, original) in dead.iter().zip([&big, &huge]) {
        let payload = m.payload.as_deref().unwrap_or_default();
        assert!(payload.len() < original.len(), "the value is truncated");
        assert_eq!(
            payload,
            &original[..payload.len()],
            "a prefix of the original"
        );
        assert_eq!(
            header(m, "galley.original_value_bytes"),
            original.len().to_string()
        );
        assert_eq!(
            header(m, "galley.original_value_sha256"),
            sha256_hex(original)
        );
        let origin = format!(
            "{}/{}/{}",
            header(m, "__connect.errors.topic"),
            header(m, "__connect.errors.partition"),
            header(m, "__connect.errors.offset")
        );
        assert_eq!(header(m, "galley.dead_letter_id"), origin);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_keep_the_original_headers_and_timestamp_with_connect_context() {
    let scenario = Scenario::new("dlq_fidelity").await;
    let mut galley = GalleyProcess::spawn(&scenario.env, "a");
    galley.wait_ready(Duration::from_secs(60)).await;

    let producer = producer(&[]);
    let timestamp_ms = 1_700_000_123_456;
    let not_wire_format = b"not the wire format";
    // An OrderPlaced whose key is not its order id: it decodes, then fails.
    let mismatched = order_placed(&scenario, "order-real-id");
    let records = [
        Outgoing {
            key: "order-poison",
            value: not_wire_format,
            headers: &[("trace-id", b"abc123"), ("tenant", b"t-9")],
            timestamp_ms: Some(timestamp_ms),
        },
        Outgoing {
            key: "order-other-id",
            value: &mismatched,
            headers: &[("trace-id", b"def456")],
            timestamp_ms: Some(timestamp_ms + 1),
        },
    ];
    send(&producer, &scenario.env.topics.orders, &records).await;

    let dead = wait_for_dead_letters(&scenario, 2).await;
    assert_eq!(dead.len(), 2, "log:\n{}", galley.log_tail(20));
    let decode = dead
        .iter()
        .find(|m| m.key.as_deref() == Some(b"order-poison".as_slice()))
        .expect("the undecodable record's dead letter");
    let validate = dead
        .iter()
        .find(|m| m.key.as_deref() == Some(b"order-other-id".as_slice()))
        .expect("the mismatched key's dead letter");

    assert_eq!(header(decode, "trace-id"), "abc123", "original header kept");
    assert_eq!(header(decode, "tenant"), "t-9", "original header kept");
    assert_eq!(
        header(validate, "trace-id"),
        "def456",
        "original header kept"
    );
    assert_eq!(
        decode.timestamp_ms,
        Some(timestamp_ms),
        "original timestamp"
    );
    assert_eq!(validate.timestamp_ms, Some(timestamp_ms + 1));

    assert_eq!(header(decode, "__connect.errors.stage"), "VALUE_CONVERTER");
    assert_eq!(header(validate, "__connect.errors.stage"), "TASK_PUT");
    for m in [decode, validate] {
        assert_eq!(header(m, "__connect.errors.task.id"), "galley-a");
        assert_eq!(header(m, "__connect.errors.connector.name"), "galley");
        assert_eq!(
            header(m, "__connect.errors.topic"),
            scenario.env.topics.orders
        );
        assert!(!header(m, "__connect.errors.exception.message").is_empty());
        assert!(
            !m.headers.contains_key("galley.original_value_bytes"),
            "a dead letter that fits is whole"
        );
    }
    assert_eq!(decode.payload.as_deref(), Some(not_wire_format.as_slice()));
}
