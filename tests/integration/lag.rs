//! Lag as operators read it: the group's committed offsets against the
//! partitions' ends (what `kafka-consumer-groups.sh --describe` shows), and
//! galley's own lag gauge.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::support::process::GalleyProcess;
use crate::support::scenario::{Scenario, INPUT_PARTITIONS};
use crate::support::{brokers, unique_name};

/// How long galley may take, once the stream stops, to show no lag anywhere.
const SETTLE: Duration = Duration::from_secs(60);
const KAFKA_TIMEOUT: Duration = Duration::from_secs(5);
const LAG_GAUGE: &str = galley::telemetry::CONSUMER_LAG_RECORDS;

/// Under exactly_once, galley's re-keyed events reach its input topics in
/// transactions, so an input partition usually ends in a commit marker
/// that no record follows. Once the stream stops, the group's committed
/// offsets must reach the partitions' ends and galley's lag gauges must read
/// 0: a lag that never goes away would hide a real one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_once_idle_partitions_show_no_lag() {
    let mut scenario = Scenario::new("idle_lag").await;
    scenario.exactly_once();
    scenario
        .env
        .set("GALLEY_PIPELINE__LAG_REFRESH_INTERVAL", "1s");
    let mut galley = GalleyProcess::spawn(&scenario.env, "a");
    galley.wait_ready(Duration::from_secs(60)).await;
    let messages = scenario.generate(3_000, 17);
    scenario.produce(messages, 3_000).await;
    scenario.wait_caught_up(&mut [&mut galley]).await;

    let inputs = [
        scenario.env.topics.orders.clone(),
        scenario.env.topics.inventory.clone(),
    ];
    let ending_in_markers = tokio::task::block_in_place(|| partitions_ending_in_markers(&inputs));
    assert!(
        ending_in_markers
            .iter()
            .any(|(topic, _)| topic == &scenario.env.topics.inventory),
        "no inventory partition ends in a transaction marker, so this test proves nothing"
    );

    let deadline = Instant::now() + SETTLE;
    loop {
        let lags = tokio::task::block_in_place(|| group_lags(&scenario.admin_consumer(), &inputs));
        let gauges = galley.metric_samples(LAG_GAUGE).await;
        let every = 2 * INPUT_PARTITIONS as usize;
        let group_clear = lags.len() == every && lags.values().all(|lag| *lag == 0);
        let gauges_clear = gauges.len() == every && gauges.values().all(|lag| *lag == 0.0);
        if group_clear && gauges_clear {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{SETTLE:?} after catching up, lag remains.\ngroup (end - committed): \
             {lags:?}\ngalley_consumer_lag_records: {gauges:?}\npartitions ending in \
             markers: {ending_in_markers:?}\nlog:\n{}",
            galley.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Each partition's end minus the group's committed offset; a partition
/// without a committed offset counts its whole end.
fn group_lags(consumer: &BaseConsumer, topics: &[String]) -> BTreeMap<(String, i32), i64> {
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        for p in 0..INPUT_PARTITIONS {
            tpl.add_partition(topic, p);
        }
    }
    let committed = consumer
        .committed_offsets(tpl, KAFKA_TIMEOUT)
        .expect("committed offsets");
    committed
        .elements()
        .iter()
        .map(|e| {
            let (_, end) = consumer
                .fetch_watermarks(e.topic(), e.partition(), KAFKA_TIMEOUT)
                .expect("watermarks");
            let at = match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            };
            ((e.topic().to_string(), e.partition()), end - at)
        })
        .collect()
}

/// The partitions whose last offset is not a record a read_committed
/// consumer can read: a transaction marker.
fn partitions_ending_in_markers(topics: &[String]) -> BTreeSet<(String, i32)> {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique_name("markers"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("reader");
    let mut last = TopicPartitionList::new();
    let mut candidates = BTreeSet::new();
    for topic in topics {
        for p in 0..INPUT_PARTITIONS {
            let (_, end) = reader
                .fetch_watermarks(topic, p, KAFKA_TIMEOUT)
                .expect("watermarks");
            if end > 0 {
                last.add_partition_offset(topic, p, Offset::Offset(end - 1))
                    .expect("offset");
                candidates.insert((topic.clone(), p, end));
            }
        }
    }
    reader.assign(&last).expect("assign");
    // A partition's last record, when it is one, is the first thing read;
    // once the reader's position is past every end, nothing else can come.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut records_at_end = BTreeSet::new();
    while Instant::now() < deadline {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) {
            records_at_end.insert((m.topic().to_string(), m.partition()));
        }
        let positions = reader.position().expect("positions");
        let past_all = candidates.iter().all(|(topic, p, end)| {
            matches!(
                positions.find_partition(topic, *p).map(|e| e.offset()),
                Some(Offset::Offset(at)) if at >= *end
            )
        });
        if past_all {
            break;
        }
    }
    candidates
        .into_iter()
        .map(|(topic, p, _)| (topic, p))
        .filter(|key| !records_at_end.contains(key))
        .collect()
}
