//! Kafka clients across broker restarts: a restarting broker can answer a
//! Metadata request with topics but no broker, after which librdkafka
//! (2.10 to 2.15) drops every broker it knew and never reconnects
//! (librdkafka issue 5301). galley's clients are watched by
//! `kafka::reconnect::keep_connected`, which gives them `kafka.brokers`
//! again; this scenario holds it to that, with clients left unwatched
//! beside them for comparison.

use std::sync::Arc;
use std::time::{Duration, Instant};

use galley::kafka::reconnect::{keep_connected, WatchedClient};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::watch;

use crate::support::topics::{kafka_config, TestTopics};
use crate::support::{brokers, unique_name};
use crate::{require_fault_stack, save_report, stack};

const RESTARTS: usize = 6;
/// Pairs of a consumer and a producer, watched and unwatched each.
const PAIRS: usize = 6;
/// The watch re-adds brokers after 10 s unanswered, probing every 5 s;
/// librdkafka's own re-bootstrap, when it works, also waits 10 s.
const RECONNECT_DEADLINE: Duration = Duration::from_secs(40);

/// A consumer in a group of its own, reading `topic`, and a producer
/// writing to it every 20 ms: both busy, as galley's are, when the broker
/// stops and starts, so that both ask it for metadata meanwhile.
fn busy_pair(topic: &str, group: &str) -> Vec<Arc<dyn WatchedClient>> {
    let cfg = kafka_config(group);
    let consumer: StreamConsumer = galley::kafka::consumer_config(&cfg, false)
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let consumer = Arc::new(consumer);
    let reading = consumer.clone();
    tokio::spawn(async move {
        loop {
            let _ = reading.recv().await;
        }
    });
    let producer: FutureProducer = galley::kafka::producer_config(&cfg)
        .create()
        .expect("producer");
    let writing = producer.clone();
    let to = topic.to_string();
    tokio::spawn(async move {
        loop {
            let record = FutureRecord::<str, str>::to(&to).key("k").payload("v");
            let _ = writing.send(record, Duration::from_secs(1)).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    vec![consumer, Arc::new(producer)]
}

fn answers(client: &Arc<dyn WatchedClient>, topic: &str) -> bool {
    tokio::task::block_in_place(|| client.probe(topic, Duration::from_secs(2)).is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watched_clients_reconnect_after_every_kafka_restart() {
    require_fault_stack();
    let started = Instant::now();
    let topics = TestTopics::single("reconnect", 6).await;
    let topic = topics.name().to_string();
    let (stop_tx, stop) = watch::channel(false);
    let mut watched = Vec::new();
    let mut unwatched = Vec::new();
    for i in 0..PAIRS {
        for client in busy_pair(&topic, &unique_name(&format!("reconnect_w{i}"))) {
            let (t, b, s) = (topic.clone(), brokers(), stop.clone());
            let c = client.clone();
            tokio::spawn(async move { keep_connected("test", c, t, &b, s).await });
            watched.push(client);
        }
        unwatched.extend(busy_pair(&topic, &unique_name(&format!("reconnect_u{i}"))));
    }

    let mut lines = Vec::new();
    for round in 1..=RESTARTS {
        tokio::task::block_in_place(|| stack("down", "kafka"));
        tokio::task::block_in_place(|| stack("up", "kafka"));
        let back = Instant::now();
        let mut waiting: Vec<usize> = (0..watched.len()).collect();
        while !waiting.is_empty() && back.elapsed() < RECONNECT_DEADLINE {
            waiting.retain(|&i| !answers(&watched[i], &topic));
        }
        let took = back.elapsed();
        let unwatched_cut_off = unwatched.iter().filter(|c| !answers(c, &topic)).count();
        lines.push(format!(
            "round {round}: watched clients all answered {:.1}s after the broker's return \
             (still silent: {}); unwatched clients silent then: {unwatched_cut_off} of {}",
            took.as_secs_f64(),
            waiting.len(),
            unwatched.len()
        ));
        assert!(
            waiting.is_empty(),
            "round {round}: {} of {} watched clients had no broker answer them {:?} after \
             the broker's return; rounds so far:\n{}",
            waiting.len(),
            watched.len(),
            RECONNECT_DEADLINE,
            lines.join("\n")
        );
    }
    let _ = stop_tx.send(true);
    let report = format!(
        "[reconnect] {} watched and {} unwatched clients, {RESTARTS} broker restarts, \
         elapsed={:.1}s\n{}",
        watched.len(),
        unwatched.len(),
        started.elapsed().as_secs_f64(),
        lines
            .iter()
            .map(|l| format!("[reconnect] {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!("{report}");
    save_report("faults-reconnect", &format!("{report}\n"));
}
