//! Outside producers compress as they like: input sent with every standard
//! Kafka codec (none, gzip, snappy, lz4, zstd) must be applied. librdkafka
//! decompresses only the codecs it was built with, and a partition whose
//! records it cannot decompress stalls while galley looks healthy.

use std::time::{Duration, Instant};

use galley::domain::events::{OrderEvent, OrderLine, OrderPlaced};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use crate::support::process::GalleyProcess;
use crate::support::scenario::{read_projections, Scenario};
use crate::support::topics::kafka_config;

/// A valid `OrderPlaced` for `order_id`, in the wire format.
pub fn order_placed(scenario: &Scenario, order_id: &str) -> Vec<u8> {
    let event = OrderEvent::Placed(OrderPlaced {
        order_id: order_id.to_string(),
        customer_id: format!("c-{order_id}"),
        lines: vec![OrderLine {
            sku: "sku-codec".into(),
            quantity: 1,
            unit_price_cents: 250,
        }],
        currency: "EUR".into(),
        event_time_ms: 1_700_000_000_000,
    });
    let mut out = Vec::new();
    scenario.codec.encode(&event, &mut out).expect("encode");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_compressed_with_every_standard_codec_is_applied() {
    let scenario = Scenario::new("codecs").await;
    let mut galley = GalleyProcess::spawn(&scenario.env, "a");
    galley.wait_ready(Duration::from_secs(60)).await;

    let mut ids = Vec::new();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let mut cfg = galley::kafka::producer_config(&kafka_config("producer"));
        cfg.set("compression.type", codec);
        let producer: FutureProducer = cfg
            .create()
            .unwrap_or_else(|e| panic!("a producer compressing with {codec}: {e}"));
        let id = format!("codec-{codec}");
        let value = order_placed(&scenario, &id);
        producer
            .send(
                FutureRecord::to(&scenario.env.topics.orders)
                    .key(&id)
                    .payload(&value),
                Timeout::After(Duration::from_secs(30)),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("the broker accepts the record");
        ids.push(id);
    }

    let deadline = Instant::now() + Duration::from_secs(60);
    let missing = loop {
        let rows = read_projections(&scenario.keyspace).await.orders;
        let missing: Vec<&String> = ids.iter().filter(|id| !rows.contains_key(*id)).collect();
        if missing.is_empty() || Instant::now() >= deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        missing.is_empty(),
        "orders sent with these codecs were never applied: {missing:?}; log:\n{}",
        galley.log_tail(20)
    );
}
