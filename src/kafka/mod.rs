//! Kafka client configuration shared by every consumer, producer and admin
//! client galley makes, plus topic administration.
//!
//! Settings that matter for the guarantees live here rather than at each call
//! site: producers are idempotent and use the partitioner of
//! `kafka.partitioner` (so that galley's re-keyed events land where the
//! upstream producers put the same key), and consumers never store offsets
//! on their own.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::config::KafkaConfig;

pub mod reconnect;

/// How long a client that cannot refresh its metadata from any broker it
/// knows waits before starting again from `kafka.brokers`.
pub const REBOOTSTRAP_AFTER: Duration = Duration::from_secs(10);

/// Settings common to every client: brokers, identity and security.
pub fn base_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("client.id", &cfg.client_id)
        .set("security.protocol", cfg.security_protocol.as_ref())
        // Fail fast on a broker that is down, but keep reconnecting in the background.
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "2000")
        // A single broker restarting can answer a metadata request without
        // itself in the broker list; librdkafka (2.10+) then drops the
        // broker and, with no broker left, re-bootstraps only after this
        // interval, 5 minutes by default. The fault suite saw producers time
        // every message out and consumers stay out of their group for 2
        // minutes after a restart. Re-bootstrapping from
        // `bootstrap.servers` costs one connection.
        .set(
            "metadata.recovery.rebootstrap.trigger.ms",
            REBOOTSTRAP_AFTER.as_millis().to_string(),
        )
        // librdkafka's log callback (forwarded to tracing under the
        // `librdkafka` target) gets warnings and errors only. It prints its
        // configuration only in debug contexts (`debug=conf` or `all`),
        // which galley never sets and no config key can pass through, and
        // even those dumps redact sensitive properties such as
        // `sasl.password`. A `ClientConfig` is never logged or printed: its
        // `Debug` would show the password.
        .set_log_level(RDKafkaLogLevel::Warning);
    if cfg.security_protocol.uses_sasl() {
        c.set("sasl.mechanism", &cfg.sasl_mechanism)
            .set("sasl.username", &cfg.sasl_username)
            .set("sasl.password", cfg.sasl_password.expose());
    }
    c
}

/// An idempotent producer whose sends are acknowledged by all in-sync replicas.
pub fn producer_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = base_config(cfg);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", cfg.partitioner.librdkafka_name())
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        // Also bounds a batch of records, so that the broker's default
        // `max.message.bytes` (1,048,588) never refuses one.
        .set("message.max.bytes", cfg.message_max_bytes.to_string())
        .set(
            "delivery.timeout.ms",
            cfg.delivery_timeout.as_millis().to_string(),
        )
        .set("retry.backoff.ms", "20");
    c
}

/// The producer of `exactly_once` delivery: [`producer_config`] plus a
/// `transactional.id`, which makes librdkafka fence any earlier producer
/// with the same id (a restarted process's predecessor) at
/// `init_transactions`.
pub fn transactional_producer_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = producer_config(cfg);
    // librdkafka refuses a message timeout longer than the transaction's.
    let delivery = cfg.delivery_timeout.min(cfg.transaction_timeout);
    c.set("transactional.id", cfg.transactional_id())
        .set(
            "transaction.timeout.ms",
            cfg.transaction_timeout.as_millis().to_string(),
        )
        .set("delivery.timeout.ms", delivery.as_millis().to_string());
    c
}

/// The changelog topic of an input topic: the row changes its partitions'
/// batches made, partition for partition (`exactly_once` delivery).
pub fn changelog_topic(input_topic: &str) -> String {
    format!("{input_topic}.changelog")
}

/// How long a changelog keeps its records: a sink that falls further behind
/// than this loses row changes, which its start refuses to hide.
const CHANGELOG_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The sink's consumer: reads committed changelog records of the partitions
/// it is given (`assign`), joins no group and commits nothing; its position
/// lives in the database it applies to.
pub fn sink_consumer_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = base_config(cfg);
    c.set("group.id", format!("{}.sink", cfg.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "error")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "false");
    bound_prefetch(&mut c, cfg.consumer_queue_max_bytes);
    c
}

/// Reads the group's committed offsets as committed transactions settled
/// them, ignoring pending ones (no `require_stable`, which librdkafka asks
/// for only under `read_committed`). It never subscribes, so it never joins
/// the group.
pub fn settled_offsets_reader_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = base_config(cfg);
    c.set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_uncommitted");
    c
}

/// A group consumer that leaves offset storing to galley: an offset is stored
/// only after the effects of its event are published and written. With
/// `transactional`, nothing is committed by the consumer at all: offsets go
/// to the group inside each batch's transaction.
pub fn consumer_config(cfg: &KafkaConfig, transactional: bool) -> ClientConfig {
    let mut c = base_config(cfg);
    c.set("group.id", &cfg.group_id)
        .set("enable.auto.offset.store", "false")
        .set(
            "enable.auto.commit",
            if transactional { "false" } else { "true" },
        )
        .set("auto.commit.interval.ms", "1000")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("isolation.level", "read_committed")
        .set(
            "session.timeout.ms",
            cfg.session_timeout.as_millis().to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            (cfg.session_timeout.as_millis() / 4).max(100).to_string(),
        )
        .set("enable.partition.eof", "false");
    bound_prefetch(&mut c, cfg.consumer_queue_max_bytes);
    c
}

/// librdkafka's own `message.max.bytes` default: `fetch.max.bytes` may not be smaller.
const LIBRDKAFKA_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// Bounds what librdkafka prefetches to about `queue_bytes`. It stops
/// fetching once its queue holds `queued.max.messages.kbytes`, but the fetch
/// in flight may still land, so the queue can reach twice the bound:
/// `fetch.max.bytes` is set to the bound too. A partition's fetch is capped
/// by `max.partition.fetch.bytes` (1 MiB, or the bound when smaller); a record
/// larger than either is still fetched whole.
fn bound_prefetch(c: &mut ClientConfig, queue_bytes: usize) {
    let fetch = queue_bytes.max(LIBRDKAFKA_MESSAGE_MAX_BYTES);
    c.set(
        "queued.max.messages.kbytes",
        (queue_bytes / 1024).max(1).to_string(),
    )
    .set("fetch.max.bytes", fetch.to_string())
    .set(
        "max.partition.fetch.bytes",
        fetch.min(1024 * 1024).to_string(),
    );
}

/// Each partition of `topic` and its high watermark (the offset after its
/// last record). Blocking: call it off the async runtime's workers.
pub fn partition_ends<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    topic: &str,
    timeout: Duration,
) -> Result<std::collections::BTreeMap<i32, i64>, KafkaError> {
    Ok(partition_watermarks(consumer, topic, timeout)?
        .into_iter()
        .map(|(partition, (_, high))| (partition, high))
        .collect())
}

/// Each partition of `topic` and its (low, high) watermarks: the first
/// retained offset and the offset after the last record. Empty when the
/// topic does not exist. Blocking: call it off the async runtime's workers.
pub fn partition_watermarks<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    topic: &str,
    timeout: Duration,
) -> Result<std::collections::BTreeMap<i32, (i64, i64)>, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut marks = std::collections::BTreeMap::new();
    for t in metadata.topics().iter().filter(|t| t.error().is_none()) {
        for p in t.partitions() {
            marks.insert(p.id(), consumer.fetch_watermarks(topic, p.id(), timeout)?);
        }
    }
    Ok(marks)
}

/// One record read back by [`first_records_at`]: its offset, key and Kafka timestamp.
pub type ReadBack = (i64, Option<Vec<u8>>, Option<i64>);

/// The first record at or after each `(partition, offset)` of `topic`, for
/// the partitions that return one within `wait`. Reads with a consumer of
/// its own that joins no group and commits nothing. Blocking: call it off
/// the async runtime's workers.
pub fn first_records_at(
    cfg: &KafkaConfig,
    topic: &str,
    offsets: &[(i32, i64)],
    wait: Duration,
) -> Result<std::collections::BTreeMap<i32, ReadBack>, KafkaError> {
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::message::Message;
    use rdkafka::{Offset, TopicPartitionList};

    let consumer: BaseConsumer = base_config(cfg)
        .set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for (partition, offset) in offsets {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    consumer.assign(&tpl)?;
    let mut found = std::collections::BTreeMap::new();
    let deadline = std::time::Instant::now() + wait;
    while found.len() < offsets.len() && std::time::Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message?;
        found.entry(message.partition()).or_insert_with(|| {
            (
                message.offset(),
                message.key().map(<[u8]>::to_vec),
                message.timestamp().to_millis(),
            )
        });
    }
    Ok(found)
}

/// Makes sure every input topic has its changelog, with the same partition
/// count (a record's changelog partition is its input partition), and
/// refuses one whose count differs.
pub async fn ensure_changelogs(cfg: &KafkaConfig, inputs: &[&str]) -> Result<(), TopicError> {
    let admin: AdminClient<DefaultClientContext> =
        base_config(cfg).create().map_err(TopicError::Client)?;
    let names: Vec<String> = inputs
        .iter()
        .flat_map(|t| [t.to_string(), changelog_topic(t)])
        .collect();
    let probe_cfg = cfg.clone();
    let counts = tokio::task::spawn_blocking(move || topic_shapes(&probe_cfg, &names))
        .await
        .map_err(|e| TopicError::Create {
            topic: "changelogs".into(),
            message: e.to_string(),
        })??;
    let retention = CHANGELOG_RETENTION.as_millis().to_string();
    let mut missing = Vec::new();
    for input in inputs {
        let changelog = changelog_topic(input);
        let Some(&(partitions, replication)) = counts.get(*input) else {
            return Err(TopicError::Create {
                topic: changelog,
                message: format!("its input topic {input} does not exist"),
            });
        };
        match counts.get(&changelog) {
            Some(&(n, _)) if n == partitions => {}
            Some(&(n, _)) => {
                return Err(TopicError::Create {
                    topic: changelog,
                    message: format!(
                        "it has {n} partitions and its input topic {input} has {partitions};                          a changelog must have as many as its input"
                    ),
                })
            }
            None => missing.push((changelog, partitions, replication)),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let new_topics: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|(name, partitions, replication)| {
            NewTopic::new(name, *partitions, TopicReplication::Fixed(*replication))
                .set("cleanup.policy", "delete")
                .set("retention.ms", &retention)
        })
        .collect();
    create_new_topics(&admin, &new_topics, "changelogs").await
}

/// Partition count and replication factor of each of `topics` that exists.
/// Blocking.
fn topic_shapes(
    cfg: &KafkaConfig,
    topics: &[String],
) -> Result<std::collections::HashMap<String, (i32, i32)>, TopicError> {
    use rdkafka::consumer::BaseConsumer;
    let probe: BaseConsumer = base_config(cfg).create().map_err(TopicError::Client)?;
    let metadata = probe
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(|e| TopicError::Create {
            topic: topics.join(","),
            message: format!("cannot read topic metadata: {e}"),
        })?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none() && topics.iter().any(|n| n == t.name()))
        .map(|t| {
            let replication = t
                .partitions()
                .first()
                .map_or(1, |p| p.replicas().len().max(1) as i32);
            (
                t.name().to_string(),
                (t.partitions().len() as i32, replication),
            )
        })
        .collect())
}

/// Why a topic could not be created.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("cannot create admin client: {0}")]
    Client(#[source] rdkafka::error::KafkaError),
    #[error("cannot create topic {topic}: {message}")]
    Create { topic: String, message: String },
}

/// Creates each topic that does not exist yet; existing topics are left as they are.
pub async fn ensure_topics(
    cfg: &KafkaConfig,
    topics: &[&str],
    partitions: i32,
    replication: i32,
) -> Result<(), TopicError> {
    let admin: AdminClient<DefaultClientContext> =
        base_config(cfg).create().map_err(TopicError::Client)?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(replication)))
        .collect();
    create_new_topics(&admin, &new_topics, &topics.join(",")).await
}

/// Creates `new_topics`; one that exists already is fine. `what` names
/// them in an error of the whole request.
async fn create_new_topics(
    admin: &AdminClient<DefaultClientContext>,
    new_topics: &[NewTopic<'_>],
    what: &str,
) -> Result<(), TopicError> {
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(new_topics, &opts)
        .await
        .map_err(|e| TopicError::Create {
            topic: what.to_string(),
            message: e.to_string(),
        })?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(TopicError::Create {
                    topic,
                    message: code.to_string(),
                })
            }
        }
    }
    Ok(())
}
