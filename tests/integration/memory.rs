//! Memory is bounded by bytes, not by counts: a stream of maximum-size
//! events must not make galley hold a batch of `batch_max_events` of them,
//! nor let librdkafka prefetch without bound.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use crate::support::brokers;
use crate::support::process::GalleyProcess;
use crate::support::scenario::{Scenario, INPUT_PARTITIONS};

const MIB: usize = 1024 * 1024;
/// `pipeline.max_event_bytes` of this test's galley.
const EVENT_BYTES: usize = MIB / 2;
/// `pipeline.batch_max_bytes` and `kafka.consumer_queue_max_bytes`.
const BATCH_BYTES: usize = 4 * MIB;
const QUEUE_BYTES: usize = 4 * MIB;
/// 100 MiB of maximum-size events: far more than the configured bounds.
const EVENTS: usize = 200;
/// What a busy galley may hold beyond an idle one's resident set and the
/// configured byte bounds: allocator arenas, librdkafka's network and
/// compression buffers, the dead-letter producer's batches.
const SLACK_KIB: u64 = 32 * 1024;

/// Sends `EVENTS` poison values of exactly `EVENT_BYTES` (no key and a bad
/// magic byte: each is read whole into a batch, then dead-lettered),
/// uncompressed: librdkafka's fetch bounds count bytes on the wire, so a
/// compressed stream would let its queue hold the compression ratio times
/// more (see README, "Memory").
async fn send_max_size_poison(topic: &str) {
    send_poison(topic, EVENTS, EVENT_BYTES).await;
}

/// Sends `count` poison values of `bytes` each, uncompressed, unkeyed,
/// spread over the input partitions.
async fn send_poison(topic: &str, count: usize, bytes: usize) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("compression.type", "none")
        .set("message.max.bytes", (2 * bytes).to_string())
        .create()
        .expect("producer");
    for i in 0..count {
        // 0x40 and up: never the wire format's magic byte 0.
        let value: Vec<u8> = (0..bytes)
            .map(|j| ((j * 7919 + i * 31) % 251) as u8 | 0x40)
            .collect();
        let partition = i as i32 % INPUT_PARTITIONS;
        let record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(topic).partition(partition).payload(&value);
        producer
            .send(record, Duration::from_secs(30))
            .await
            .expect("the broker takes a maximum-size event");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maximum_size_events_keep_the_resident_set_under_the_configured_bytes() {
    let mut scenario = Scenario::new("memory").await;
    scenario
        .env
        .set("GALLEY_PIPELINE__MAX_EVENT_BYTES", EVENT_BYTES.to_string())
        .set("GALLEY_PIPELINE__BATCH_MAX_EVENTS", "2000")
        .set("GALLEY_PIPELINE__BATCH_MAX_BYTES", BATCH_BYTES.to_string())
        .set(
            "GALLEY_KAFKA__CONSUMER_QUEUE_MAX_BYTES",
            QUEUE_BYTES.to_string(),
        )
        // Long enough that only a bound ends a batch while the backlog lasts.
        .set("GALLEY_PIPELINE__BATCH_LINGER", "3s");
    // What a ready galley holds before any event: the baseline.
    let mut idle = GalleyProcess::spawn(&scenario.env, "idle");
    idle.wait_ready(Duration::from_secs(60)).await;
    let idle_kib = idle.peak_rss_kib().expect("galley's VmHWM");
    idle.terminate(Duration::from_secs(30));

    // A backlog, the worst case: every batch can fill to its bound at once.
    send_max_size_poison(&scenario.env.topics.orders).await;
    let mut galley = GalleyProcess::spawn(&scenario.env, "backlog");
    galley.wait_ready(Duration::from_secs(60)).await;
    scenario.wait_caught_up(&mut [&mut galley]).await;
    let peak_kib = galley.peak_rss_kib().expect("galley's VmHWM");

    // The batch, the dead letters copied from it and the producer's copies
    // of those in flight: three times the batch bound (plus one record);
    // librdkafka's queue may be overshot by one fetch of the same size:
    // twice its bound.
    let configured_kib = ((3 * (BATCH_BYTES + EVENT_BYTES) + 2 * QUEUE_BYTES) / 1024) as u64;
    let bound_kib = idle_kib + configured_kib + SLACK_KIB;
    let sent_mib = EVENTS * EVENT_BYTES / MIB;
    assert!(
        peak_kib <= bound_kib,
        "peak RSS {} MiB > bound {} MiB (idle {} MiB) after {sent_mib} MiB of maximum-size \
         events",
        peak_kib / 1024,
        bound_kib / 1024,
        idle_kib / 1024
    );
    let dead_lettered = scenario.read_topic(&scenario.env.topics.dead_letter).len();
    assert_eq!(dead_lettered, EVENTS, "every poison event is dead-lettered");
}

/// A value of about 1 MB, the most a broker takes with its default
/// `message.max.bytes` (1048588 bytes per record batch): more than
/// galley's producer may send whole (`kafka.message_max_bytes`).
const BROKER_DEFAULT_RECORD_BYTES: usize = 1_040_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_as_large_as_the_broker_takes_is_dead_lettered() {
    let scenario = Scenario::new("bigpoison").await;
    let mut galley = GalleyProcess::spawn(&scenario.env, "a");
    galley.wait_ready(Duration::from_secs(60)).await;
    send_poison(&scenario.env.topics.orders, 1, BROKER_DEFAULT_RECORD_BYTES).await;

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let dead = scenario.read_topic(&scenario.env.topics.dead_letter);
        if let Some(letter) = dead.first() {
            let size = letter.payload.as_ref().map_or(0, Vec::len);
            // Cut down to fit, a dead letter says how large the value was.
            let original = letter
                .headers
                .get("galley.original_value_bytes")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(size);
            assert_eq!(
                original, BROKER_DEFAULT_RECORD_BYTES,
                "the value as it was, or its size; headers {:?}",
                letter.headers
            );
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no dead letter within 60 s; log:\n{}",
            galley.log_tail(10)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
