//! The end-to-end harness: a test's world (topics, group, keyspace), a
//! generated stream sent to it, waiting until galley has caught up, and the
//! verification that every projection row equals an independent fold of the
//! input topics, that every expected event was published under its
//! deterministic id with exactly the fold's payload (see `published.rs`), and that every poison message sits in the dead-letter topic with its
//! origin in the headers. Used by `pipeline.rs` and by the fault suite.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use galley::codec::Codec;
use galley::config::{KafkaConfig, Partitioner, TopicsConfig};
use galley::shop::generator::{self, GeneratedMessage, GeneratorSettings};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use scylla::value::CqlTimestamp;

use super::fold::{self, Expected, ExpectedOrder, FoldSettings, InputMessage};
use super::process::{GalleyEnv, GalleyProcess};
use super::published::{check_published, PublishSettings, PublishedRecord};
use super::topics::{kafka_config, TestTopics};
use super::{brokers, unique_name, TestKeyspace};

pub const INPUT_PARTITIONS: i32 = 6;
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(240);

/// One test's world: topics, keyspace, and the names galley runs with.
pub struct Scenario {
    pub env: GalleyEnv,
    pub keyspace: TestKeyspace,
    _topics: TestTopics,
    pub codec: Arc<Codec>,
    /// `pipeline.max_event_bytes` of the galley under test, for the fold.
    pub max_event_bytes: usize,
    /// galley runs with `pipeline.delivery = "exactly_once"`.
    pub exactly_once: bool,
}

/// A message read back from a topic, with its headers.
pub struct ReadMessage {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: BTreeMap<String, String>,
    /// The record's timestamp, when it has one.
    pub timestamp_ms: Option<i64>,
}

/// What a verification found, printed by every test.
#[derive(Debug, Default)]
pub struct Report {
    pub sent: usize,
    pub input_messages: usize,
    pub applied: usize,
    pub rejected: usize,
    pub duplicates_skipped: usize,
    pub dead_lettered: usize,
    pub expected_events: usize,
    pub missing_events: Vec<String>,
    pub unexpected_events: Vec<String>,
    pub duplicate_events: usize,
    /// Dead letters of an input record already dead-lettered.
    pub duplicate_dead_letters: usize,
    /// Published under an expected id with other contents than the fold's.
    pub mismatched_events: Vec<String>,
    pub mismatches: Vec<String>,
    pub dead_letter_problems: Vec<String>,
    pub rejections: BTreeMap<String, usize>,
    pub expected: Expected,
}

impl Report {
    /// Prints the figures and keeps them in `target/tmp/test-reports/`,
    /// which `scripts/test` shows after the run (test output is captured).
    pub fn print(&self, name: &str, elapsed: Duration) {
        let text = format!(
            "[{name}] sent={} input_messages={} applied={} rejected={} duplicates_skipped={} \
             dead_lettered={} expected_events={} missing_events={} unexpected_events={} \
             duplicate_events={} duplicate_dead_letters={} mismatched_events={} \
             projection_mismatches={} dead_letter_problems={} elapsed={:.1}s\n\
             [{name}] rejections by reason: {:?}\n",
            self.sent,
            self.input_messages,
            self.applied,
            self.rejected,
            self.duplicates_skipped,
            self.dead_lettered,
            self.expected_events,
            self.missing_events.len(),
            self.unexpected_events.len(),
            self.duplicate_events,
            self.duplicate_dead_letters,
            self.mismatched_events.len(),
            self.mismatches.len(),
            self.dead_letter_problems.len(),
            elapsed.as_secs_f64(),
            self.rejections,
        );
        print!("{text}");
        save_report(name, &text);
    }

    pub fn assert_exact(&self) {
        assert!(
            self.mismatches.is_empty(),
            "projections differ from the fold:\n{}",
            self.mismatches.join("\n")
        );
        assert!(
            self.missing_events.is_empty(),
            "{} expected events were never published, e.g. {:?}",
            self.missing_events.len(),
            &self.missing_events[..self.missing_events.len().min(10)]
        );
        assert!(
            self.mismatched_events.is_empty(),
            "{} published events differ from the fold's, e.g.:\n{}",
            self.mismatched_events.len(),
            self.mismatched_events[..self.mismatched_events.len().min(10)].join("\n")
        );
        assert!(
            self.unexpected_events.is_empty(),
            "{} published events the fold does not expect, e.g. {:?}",
            self.unexpected_events.len(),
            &self.unexpected_events[..self.unexpected_events.len().min(10)]
        );
        assert!(
            self.dead_letter_problems.is_empty(),
            "dead letters wrong:\n{}",
            self.dead_letter_problems.join("\n")
        );
        assert!(self.applied > 0, "nothing was applied");
    }

    /// What `exactly_once` adds to [`Report::assert_exact`]: a read_committed
    /// reader sees every result event and every dead letter once.
    pub fn assert_exactly_once(&self) {
        self.assert_exact();
        assert_eq!(
            self.duplicate_events, 0,
            "a read_committed consumer saw result events more than once"
        );
        assert_eq!(
            self.duplicate_dead_letters, 0,
            "a read_committed consumer saw dead letters more than once"
        );
    }
}

impl Scenario {
    pub async fn new(prefix: &str) -> Self {
        let keyspace = TestKeyspace::migrated(&format!("ks_{prefix}")).await;
        let env = GalleyEnv::new(&format!("t_{prefix}"), &keyspace.name);
        let mut topics = TestTopics::create(env.topic_names(), INPUT_PARTITIONS).await;
        // galley makes these itself under exactly_once; deleted with the rest.
        for input in [&env.topics.orders, &env.topics.inventory] {
            topics.names.push(galley::kafka::changelog_topic(input));
        }
        Self {
            env,
            keyspace,
            _topics: topics,
            exactly_once: galley::config::PipelineConfig::default().delivery
                == galley::config::Delivery::ExactlyOnce,
            codec: Arc::new(galley::domain::codec().expect("codec")),
            max_event_bytes: galley::config::PipelineConfig::default().max_event_bytes,
        }
    }

    /// Runs galley with `pipeline.delivery = "exactly_once"` (the default,
    /// said explicitly): caught up then also means that the sink has
    /// applied every committed batch.
    pub fn exactly_once(&mut self) -> &mut Self {
        self.exactly_once = true;
        self.env.set("GALLEY_PIPELINE__DELIVERY", "exactly_once");
        self
    }

    /// Runs galley with `pipeline.delivery = "at_least_once"`.
    pub fn at_least_once(&mut self) -> &mut Self {
        self.exactly_once = false;
        self.env.set("GALLEY_PIPELINE__DELIVERY", "at_least_once");
        self
    }

    pub fn generate(&self, count: usize, seed: u64) -> Vec<GeneratedMessage> {
        let settings = GeneratorSettings {
            count,
            customers: 300,
            skus: 60,
            seed,
            poison_fraction: 0.01,
            invalid_fraction: 0.02,
            lifecycle_gap: 1500,
            ..GeneratorSettings::default()
        };
        generator::generate(&self.codec, &settings).0
    }

    pub async fn produce(&self, messages: Vec<GeneratedMessage>, rate: u32) -> usize {
        produce(&self.env.topics, messages, rate).await
    }

    /// The partitioner galley runs with: `kafka.partitioner` if the test
    /// set it, else the default.
    pub fn partitioner(&self) -> Partitioner {
        match self
            .env
            .extra
            .get("GALLEY_KAFKA__PARTITIONER")
            .map(String::as_str)
        {
            Some("consistent") => Partitioner::Consistent,
            _ => Partitioner::Murmur2,
        }
    }

    pub fn admin_consumer(&self) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", &self.env.group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer")
    }

    /// Every partition of both input topics.
    fn input_partitions(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for topic in [&self.env.topics.orders, &self.env.topics.inventory] {
            for p in 0..INPUT_PARTITIONS {
                tpl.add_partition(topic, p);
            }
        }
        tpl
    }

    /// The group's committed offset of every input partition that has one,
    /// when they all reach the end of their partition; None otherwise.
    pub fn caught_up(&self) -> Option<Vec<(String, i32, i64)>> {
        let consumer = self.admin_consumer();
        let timeout = Duration::from_secs(5);
        let tpl = self.input_partitions();
        let committed = consumer.committed_offsets(tpl, timeout).ok()?;
        let mut offsets = Vec::new();
        let mut short = TopicPartitionList::new();
        let mut ends = BTreeMap::new();
        for e in committed.elements() {
            let (_, high) = consumer
                .fetch_watermarks(e.topic(), e.partition(), timeout)
                .ok()?;
            match e.offset() {
                Offset::Offset(o) => {
                    offsets.push((e.topic().to_string(), e.partition(), o));
                    if o < high {
                        short
                            .add_partition_offset(e.topic(), e.partition(), Offset::Offset(o))
                            .ok()?;
                        ends.insert((e.topic().to_string(), e.partition()), high);
                    }
                }
                _ if high == 0 => {}
                _ => return None,
            }
        }
        if short.count() > 0 && !Self::only_markers_left(&short, &ends) {
            return None;
        }
        Some(offsets)
    }

    /// Where each input partition stands, for a failure message: whether
    /// the group's committed offsets can be read `require_stable` (a
    /// transaction holding them makes them unreadable), and each one's
    /// settled committed offset against its end.
    fn standing(&self) -> String {
        let timeout = Duration::from_secs(5);
        let tpl = self.input_partitions();
        let stable = match self
            .admin_consumer()
            .committed_offsets(tpl.clone(), timeout)
        {
            Ok(_) => "readable".to_string(),
            Err(e) => format!("unreadable ({e})"),
        };
        let Ok(settled_reader) = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", &self.env.group)
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_uncommitted")
            .create::<BaseConsumer>()
        else {
            return format!("committed offsets {stable} require_stable");
        };
        let partitions: Vec<String> = match settled_reader.committed_offsets(tpl, timeout) {
            Ok(settled) => settled
                .elements()
                .iter()
                .map(|e| {
                    let end = settled_reader
                        .fetch_watermarks(e.topic(), e.partition(), timeout)
                        .map(|(_, high)| high.to_string())
                        .unwrap_or_else(|_| "?".into());
                    format!("{}[{}] {:?} of {end}", e.topic(), e.partition(), e.offset())
                })
                .collect(),
            Err(e) => vec![format!("settled offsets unreadable ({e})")],
        };
        format!(
            "committed offsets {stable} require_stable; settled offset of end: {}",
            partitions.join(", ")
        )
    }

    /// Whether the sink has applied, for every input partition, every
    /// batch up to its committed offset (the checkpoint it records).
    async fn sink_caught_up(&self, committed: &[(String, i32, i64)]) -> bool {
        let ks = &self.keyspace.name;
        // An offset of 0 was committed by `galley replay` or the like, not
        // by a batch: there is nothing for the sink to have applied.
        for (topic, partition, offset) in committed.iter().filter(|(_, _, o)| *o > 0) {
            if self
                .sink_claim(ks, topic, *partition)
                .await
                .is_none_or(|applied| applied < *offset)
            {
                return false;
            }
        }
        true
    }

    /// The input offset below which the sink's position row
    /// (`changelog_applied`) says every row change of input partition
    /// `topic[partition]` is applied; None without a row.
    pub async fn sink_claim(&self, ks: &str, topic: &str, partition: i32) -> Option<i64> {
        let changelog = galley::kafka::changelog_topic(topic);
        let row = self
            .keyspace
            .session
            .query_unpaged(
                format!(
                    "SELECT input_next_offset FROM {ks}.changelog_applied \
                     WHERE topic = ? AND partition = ?"
                ),
                (changelog, partition),
            )
            .await
            .ok()
            .and_then(|r| r.into_rows_result().ok())
            .and_then(|rows| rows.maybe_first_row::<(Option<i64>,)>().ok().flatten());
        row.and_then(|(applied,)| applied)
    }

    /// Waits until galley has processed everything, including what it fed
    /// back into its own input topics, twice in a row a second apart.
    pub async fn wait_caught_up(&self, processes: &mut [&mut GalleyProcess]) {
        let deadline = Instant::now() + CATCH_UP_TIMEOUT;
        let mut streak = 0;
        loop {
            let committed = tokio::task::block_in_place(|| self.caught_up());
            let sink_behind = match &committed {
                Some(committed) if self.exactly_once => !self.sink_caught_up(committed).await,
                _ => false,
            };
            let done = committed.is_some() && !sink_behind;
            streak = if done { streak + 1 } else { 0 };
            if streak >= 2 {
                return;
            }
            for p in processes.iter_mut() {
                if !p.is_running() {
                    panic!(
                        "galley exited early ({}); log:\n{}",
                        p.exit_status(),
                        p.log_tail(40)
                    );
                }
            }
            if Instant::now() >= deadline {
                let tails: Vec<String> = processes
                    .iter()
                    .map(|p| {
                        let stacks = tokio::task::block_in_place(|| {
                            p.dump_thread_stacks(Duration::from_secs(60))
                        });
                        format!("{stacks}\n{}", p.log_tail(30))
                    })
                    .collect();
                let standing = tokio::task::block_in_place(|| self.standing());
                let why = if sink_behind {
                    "the sink has not applied every committed batch"
                } else {
                    "the group's committed offsets do not reach the ends of the input topics"
                };
                panic!(
                    "galley did not catch up within {CATCH_UP_TIMEOUT:?}: {why}; {standing}; \
                     logs:\n{}",
                    tails.join("\n---\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(if done { 1000 } else { 250 })).await;
        }
    }

    /// Whether nothing but transaction markers lies between each partition's
    /// committed offset in `from` and its end in `ends`: galley's own re-keyed
    /// events reach the input topics in transactions under exactly_once, and
    /// the marker after the last of them is never a record to process.
    fn only_markers_left(from: &TopicPartitionList, ends: &BTreeMap<(String, i32), i64>) -> bool {
        let Ok(reader) = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", unique_name("markers"))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create::<BaseConsumer>()
        else {
            return false;
        };
        if reader.assign(from).is_err() {
            return false;
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Some(message) = reader.poll(Duration::from_millis(100)) {
                drop(message);
                return false;
            }
            let Ok(positions) = reader.position() else {
                return false;
            };
            let past_all = ends.iter().all(|((topic, partition), end)| {
                matches!(
                    positions.find_partition(topic, *partition).map(|e| e.offset()),
                    Some(Offset::Offset(p)) if p >= *end
                )
            });
            if past_all {
                return true;
            }
        }
        false
    }

    /// Reads every message of a topic, from the start to its current end.
    pub fn read_topic(&self, topic: &str) -> Vec<ReadMessage> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", unique_name("reader"))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()
            .expect("reader");
        let timeout = Duration::from_secs(10);
        let ends: BTreeMap<i32, i64> = galley::kafka::partition_ends(&consumer, topic, timeout)
            .expect("partitions and watermarks")
            .into_iter()
            .filter(|(_, high)| *high > 0)
            .collect();
        let mut tpl = TopicPartitionList::new();
        for p in ends.keys() {
            tpl.add_partition_offset(topic, *p, Offset::Beginning)
                .expect("tpl");
        }
        let mut out = Vec::new();
        if ends.is_empty() {
            return out;
        }
        consumer.assign(&tpl).expect("assign");
        let mut remaining: BTreeSet<i32> = ends.keys().copied().collect();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !remaining.is_empty() {
            assert!(Instant::now() < deadline, "reading {topic} timed out");
            let Some(result) = consumer.poll(Duration::from_millis(500)) else {
                // A partition that ends in transaction markers is read once
                // the position has passed them: they are never delivered.
                if let Ok(positions) = consumer.position() {
                    remaining.retain(|p| {
                        !matches!(
                            positions.find_partition(topic, *p).map(|e| e.offset()),
                            Some(Offset::Offset(o)) if o >= ends[p]
                        )
                    });
                }
                continue;
            };
            let m = result.expect("read message");
            let mut headers = BTreeMap::new();
            if let Some(h) = m.headers() {
                for header in h.iter() {
                    headers.insert(
                        header.key.to_string(),
                        String::from_utf8_lossy(header.value.unwrap_or_default()).into_owned(),
                    );
                }
            }
            out.push(ReadMessage {
                topic: m.topic().to_string(),
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec),
                headers,
                timestamp_ms: m.timestamp().to_millis(),
            });
            if m.offset() + 1 >= ends[&m.partition()] {
                remaining.remove(&m.partition());
            }
        }
        out
    }

    /// Compares everything galley produced with the independent fold.
    pub async fn verify(&self, sent: usize) -> Report {
        let (orders, inventory, results, dead) = tokio::task::block_in_place(|| {
            (
                self.read_topic(&self.env.topics.orders),
                self.read_topic(&self.env.topics.inventory),
                self.read_topic(&self.env.topics.results),
                self.read_topic(&self.env.topics.dead_letter),
            )
        });
        let inputs: Vec<InputMessage> = orders
            .iter()
            .chain(&inventory)
            .map(|m| InputMessage {
                topic: m.topic.clone(),
                partition: m.partition,
                offset: m.offset,
                key: m.key.clone(),
                payload: m.payload.clone(),
                event_id: m.headers.get(galley::shop::EVENT_ID_HEADER).cloned(),
            })
            .collect();
        let settings = FoldSettings {
            orders_topic: self.env.topics.orders.clone(),
            inventory_topic: self.env.topics.inventory.clone(),
            low_stock_threshold: 10,
            max_event_bytes: self.max_event_bytes,
        };
        let expected = fold::fold(&self.codec, &settings, &inputs);
        let actual = read_projections(&self.keyspace).await;

        let mut report = Report {
            sent,
            input_messages: inputs.len(),
            expected_events: expected.emitted.len(),
            mismatches: fold::mismatches(&expected, &actual),
            rejections: expected.rejections.clone(),
            ..Report::default()
        };
        for ((outcome, _), n) in &expected.counts {
            match outcome.as_str() {
                "applied" => report.applied += n,
                "rejected" => report.rejected += n,
                "duplicate" => report.duplicates_skipped += n,
                "dead_lettered" => report.dead_lettered += n,
                _ => {}
            }
        }

        // Every event galley published, payload and all: on the results
        // topic, and re-keyed onto the input topics (galley's own records
        // there carry the event id header).
        let records: Vec<PublishedRecord> = results
            .iter()
            .chain(&orders)
            .chain(&inventory)
            .filter_map(|m| {
                let event_id = m.headers.get(galley::shop::EVENT_ID_HEADER)?;
                Some(PublishedRecord {
                    event_id: event_id.clone(),
                    topic: m.topic.clone(),
                    partition: m.partition,
                    offset: m.offset,
                    key: m.key.clone(),
                    payload: m.payload.clone(),
                })
            })
            .collect();
        let publish = PublishSettings {
            results_topic: self.env.topics.results.clone(),
            orders_topic: self.env.topics.orders.clone(),
            inventory_topic: self.env.topics.inventory.clone(),
            input_partitions: INPUT_PARTITIONS,
            partitioner: self.partitioner(),
        };
        let check = check_published(&self.codec, &publish, &expected, &records);
        report.missing_events = check.missing;
        report.unexpected_events = check.unexpected;
        report
            .unexpected_events
            .extend(expected.unexpected_inputs.iter().cloned());
        report.mismatched_events = check.mismatched;
        report.duplicate_events = check.duplicate_copies;

        // Every poison message, in the dead-letter topic, with its origin.
        let mut seen_dead: BTreeMap<(String, i32, i64), String> = BTreeMap::new();
        for m in &dead {
            let h = |name: &str| m.headers.get(name).cloned().unwrap_or_default();
            let origin = (
                h("__connect.errors.topic"),
                h("__connect.errors.partition").parse().unwrap_or(-1),
                h("__connect.errors.offset").parse().unwrap_or(-1),
            );
            if h("__connect.errors.exception.message").is_empty() {
                report
                    .dead_letter_problems
                    .push(format!("{origin:?} has no error message header"));
            }
            let class = h("__connect.errors.exception.class.name");
            if let Some(source) = inputs
                .iter()
                .find(|i| i.topic == origin.0 && i.partition == origin.1 && i.offset == origin.2)
            {
                if source.payload != m.payload || source.key != m.key {
                    report.dead_letter_problems.push(format!(
                        "{origin:?}: dead letter does not carry the original key and value"
                    ));
                }
            }
            if seen_dead.insert(origin, class).is_some() {
                report.duplicate_dead_letters += 1;
            }
        }
        for (origin, class) in &expected.dead_letters {
            match seen_dead.get(origin) {
                None => report
                    .dead_letter_problems
                    .push(format!("{origin:?} ({class}) missing")),
                Some(found) if found != class => report
                    .dead_letter_problems
                    .push(format!("{origin:?}: class {found}, expected {class}")),
                Some(_) => {}
            }
        }
        for origin in seen_dead.keys() {
            if !expected.dead_letters.contains_key(origin) {
                report
                    .dead_letter_problems
                    .push(format!("{origin:?} dead-lettered unexpectedly"));
            }
        }
        report.expected = expected;
        report
    }
}

/// Appends a scenario's figures to its report file.
pub fn save_report(name: &str, text: &str) {
    use std::io::Write;
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-reports");
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{name}.txt")))
            .and_then(|mut f| f.write_all(text.as_bytes()))
    });
    if let Err(e) = written {
        eprintln!("cannot keep the {name} report: {e}");
    }
}

/// Sends the messages at about `rate` per second, partitioned the way an
/// upstream Java producer would, and requires every one acknowledged.
pub async fn produce(topics: &TopicsConfig, messages: Vec<GeneratedMessage>, rate: u32) -> usize {
    let delivery_timeout = KafkaConfig::default().delivery_timeout;
    let outcome = send_with_new_producer(topics, &messages, rate, delivery_timeout).await;
    assert_eq!(
        outcome.acknowledged,
        messages.len(),
        "every generated message is acknowledged; the others failed with {:?}",
        outcome.failures
    );
    outcome.acknowledged
}

/// Sends `messages` through a producer made for this call (like an
/// upstream application's, with `delivery_timeout`) and waits for every
/// acknowledgement.
pub async fn send_with_new_producer(
    topics: &TopicsConfig,
    messages: &[GeneratedMessage],
    rate: u32,
    delivery_timeout: Duration,
) -> galley::shop::send::SendOutcome {
    let mut cfg = kafka_config("producer");
    cfg.delivery_timeout = delivery_timeout;
    let producer: FutureProducer = galley::kafka::producer_config(&cfg)
        .create()
        .expect("producer");
    galley::shop::send::send_all(&producer, &topics.orders, &topics.inventory, messages, rate)
        .await
        .expect("send the stream")
}

/// Reads every order document of the keyspace into the fold's shape. The
/// document is the order's JSON; it is read here as plain JSON, not through
/// galley's types, so that the comparison stays independent of them.
async fn read_orders(keyspace: &TestKeyspace) -> BTreeMap<String, ExpectedOrder> {
    let ks = &keyspace.name;
    let rows: Vec<(String, Option<String>)> = keyspace
        .session
        .query_iter(
            format!("SELECT order_id, document FROM {ks}.order_documents"),
            (),
        )
        .await
        .expect("scan order documents")
        .rows_stream::<(String, Option<String>)>()
        .expect("order document rows")
        .try_collect()
        .await
        .expect("order document rows");
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let time = |v: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_default())
            .map(|t| t.timestamp_millis())
            .unwrap_or_default()
    };
    let mut orders = BTreeMap::new();
    for (id, document) in rows {
        let doc: serde_json::Value =
            serde_json::from_str(document.as_deref().unwrap_or("{}")).expect("document json");
        let lines = doc["lines"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|l| {
                        (
                            text(&l["sku"]),
                            l["quantity"].as_i64().unwrap_or_default() as i32,
                            l["unit_price_cents"].as_i64().unwrap_or_default(),
                            text(&l["stock"]),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let order = ExpectedOrder {
            customer_id: text(&doc["customer_id"]),
            status: text(&doc["status"]),
            currency: text(&doc["currency"]),
            total_cents: doc["total_cents"].as_i64().unwrap_or_default(),
            paid_cents: doc["paid_cents"].as_i64().unwrap_or_default(),
            refunded_cents: doc["refunded_cents"].as_i64().unwrap_or_default(),
            placed_at_ms: time(&doc["placed_at"]),
            updated_at_ms: time(&doc["updated_at"]),
            lines,
        };
        orders.insert(id, order);
    }
    orders
}

type StockRows = BTreeMap<String, (i64, i64)>;
type ReservationRows = BTreeMap<(String, String), (i32, String)>;

/// Reads every stock and reservation row in the fold's shape.
async fn read_inventory(keyspace: &TestKeyspace) -> (StockRows, ReservationRows) {
    let ks = &keyspace.name;
    let session = &keyspace.session;
    let mut stock = StockRows::new();
    let mut reservations = ReservationRows::new();
    type InventoryRow = (
        String,
        Option<String>,
        Option<i64>,
        Option<i64>,
        Option<i32>,
        Option<String>,
    );
    let rows: Vec<InventoryRow> = session
        .query_iter(
            format!(
                "SELECT sku, order_id, on_hand, reserved, reservation_quantity, reservation_status \
                 FROM {ks}.inventory"
            ),
            (),
        )
        .await
        .expect("scan inventory")
        .rows_stream::<InventoryRow>()
        .expect("inventory rows")
        .try_collect()
        .await
        .expect("inventory rows");
    for (sku, order, on_hand, reserved, quantity, status) in rows {
        stock.insert(
            sku.clone(),
            (on_hand.unwrap_or_default(), reserved.unwrap_or_default()),
        );
        if let (Some(order), Some(status)) = (order, status) {
            reservations.insert((sku, order), (quantity.unwrap_or_default(), status));
        }
    }
    (stock, reservations)
}

/// Reads every projection row of the keyspace into the fold's shape.
pub async fn read_projections(keyspace: &TestKeyspace) -> Expected {
    let ks = &keyspace.name;
    let session = &keyspace.session;
    let mut actual = Expected {
        orders: read_orders(keyspace).await,
        ..Expected::default()
    };

    type CustomerRow = (String, CqlTimestamp, String, Option<String>, Option<i64>);
    let rows: Vec<CustomerRow> = session
        .query_iter(
            format!("SELECT customer_id, placed_at, order_id, status, total_cents FROM {ks}.orders_by_customer"),
            (),
        )
        .await
        .expect("scan customers")
        .rows_stream::<CustomerRow>()
        .expect("customer rows")
        .try_collect()
        .await
        .expect("customer rows");
    for (customer, placed, order, status, total) in rows {
        actual.customer_orders.insert(
            (customer, placed.0, order),
            (status.unwrap_or_default(), total.unwrap_or_default()),
        );
    }

    type SkuSalesRow = (String, CqlTimestamp, Option<i64>, Option<i64>);
    let rows: Vec<SkuSalesRow> = session
        .query_iter(
            format!("SELECT sku, minute, units, revenue_cents FROM {ks}.sales_by_sku_minute"),
            (),
        )
        .await
        .expect("scan sku sales")
        .rows_stream::<SkuSalesRow>()
        .expect("sku sales rows")
        .try_collect()
        .await
        .expect("sku sales rows");
    for (sku, minute, units, revenue) in rows {
        let cell = actual.sku_sales.entry((sku, minute.0)).or_default();
        cell.0 += units.unwrap_or_default();
        cell.1 += revenue.unwrap_or_default();
    }

    type MinuteRow = (CqlTimestamp, Option<i64>, Option<i64>, Option<i64>);
    let rows: Vec<MinuteRow> = session
        .query_iter(
            format!("SELECT minute, units, revenue_cents, orders FROM {ks}.sales_by_minute"),
            (),
        )
        .await
        .expect("scan minute sales")
        .rows_stream::<MinuteRow>()
        .expect("minute rows")
        .try_collect()
        .await
        .expect("minute rows");
    for (minute, units, revenue, orders) in rows {
        let cell = actual.minute_sales.entry(minute.0).or_default();
        cell.0 += units.unwrap_or_default();
        cell.1 += revenue.unwrap_or_default();
        cell.2 += orders.unwrap_or_default();
    }

    (actual.stock, actual.reservations) = read_inventory(keyspace).await;
    actual
}
