//! (d) as a user sees it, measured from outside galley during the latency
//! phase: from an input event's timestamp until
//! - the result events it caused are visible to a read_committed consumer
//!   of the results topic, and
//! - the order it placed is answered by the query API.
//!
//! Results: each carries its origin in its event id header
//! (`topic/partition/offset/index`). One read_committed consumer follows the
//! results topic and both input topics from their ends before the phase. It
//! notes when each result arrives and, for each input record, either its
//! timestamp (the bench sent it: the due time) or its own origin (galley fed
//! it back). A result's latency is its arrival less the timestamp of the
//! upstream event at the root of its chain, so a stock answer counts its
//! hops through the inventory topic. The consumer asks the broker for data
//! every few milliseconds, as a latency-minded subscriber would.
//!
//! Projections: a few placed orders per second are polled with
//! `GET /v1/orders/{id}` every few milliseconds from their due time until
//! the API answers 200.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use galley::config::Config;
use galley::kafka;
use galley::shop::generator::GeneratedMessage;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::consume::passed_every_end;
use crate::query::{nearest_rank, HttpConnection};
use crate::setup::BenchEnv;

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the watch may take to read what galley wrote before it stopped.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// Chains longer than this are not galley's (an order's stock answer is two hops).
const MAX_HOPS: usize = 8;
const PROBES_PER_SECOND: f64 = 5.0;
const PROBE_CONNECTIONS: usize = 8;
const PROBE_INTERVAL: Duration = Duration::from_millis(5);
const PROBE_GIVE_UP: Duration = Duration::from_secs(10);
/// Index of the results topic in the watched list (then orders, inventory).
const RESULTS: usize = 0;

/// Each watched partition's end offset.
type Ends = BTreeMap<(String, i32), i64>;

/// Quantiles of one visibility latency, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Visible {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    /// Latencies measured.
    pub count: usize,
    /// Results whose upstream event the watch never saw, or probes the
    /// API did not answer with 200 within the give-up time.
    pub missed: usize,
}

impl Visible {
    fn of(mut latencies_ms: Vec<f64>, missed: usize) -> Visible {
        latencies_ms.sort_unstable_by(f64::total_cmp);
        let at = |q| nearest_rank(&latencies_ms, q).unwrap_or(f64::NAN);
        Visible {
            p50: at(0.5),
            p99: at(0.99),
            p999: at(0.999),
            count: latencies_ms.len(),
            missed,
        }
    }
}

/// When the open-loop sender sends event `i`: `start + i / rate`.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub started: Instant,
    pub start_ms: f64,
    pub rate: f64,
}

impl Pace {
    pub fn from_now(rate: f64) -> Pace {
        Pace {
            started: Instant::now(),
            start_ms: unix_ms_f64(),
            rate,
        }
    }

    pub fn due_ms(&self, i: usize) -> f64 {
        self.start_ms + i as f64 * 1000.0 / self.rate
    }

    pub fn due_at(&self, i: usize) -> Instant {
        self.started + Duration::from_secs_f64(i as f64 / self.rate)
    }
}

fn unix_ms_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// A watched record: its topic's index in the watched list, its partition
/// and its offset.
type Origin = (usize, i32, i64);

enum Parent {
    /// Sent by the bench: its timestamp is the upstream event's due time.
    Upstream(i64),
    /// Published by galley on behalf of this record.
    Derived(Origin),
}

#[derive(Default)]
struct Seen {
    inputs: HashMap<Origin, Parent>,
    /// Each result's origin and when it arrived (unix ms).
    results: Vec<(Option<Origin>, f64)>,
}

impl Seen {
    fn note(&mut self, topics: &[String], topic_index: usize, msg: &impl Message, at_ms: f64) {
        let origin = msg
            .headers()
            .and_then(|h| {
                h.iter()
                    .find(|h| h.key == galley::shop::EVENT_ID_HEADER)
                    .and_then(|h| h.value)
            })
            .and_then(|id| std::str::from_utf8(id).ok())
            .map(|id| parse_origin(topics, id));
        if topic_index == RESULTS {
            self.results.push((origin.flatten(), at_ms));
            return;
        }
        let parent = match origin {
            Some(Some(o)) => Parent::Derived(o),
            // A fed-back record whose origin is not watched cannot be traced.
            Some(None) => return,
            None => match msg.timestamp().to_millis() {
                Some(ts) => Parent::Upstream(ts),
                None => return,
            },
        };
        self.inputs
            .insert((topic_index, msg.partition(), msg.offset()), parent);
    }

    fn root_ms(&self, mut origin: Origin) -> Option<i64> {
        for _ in 0..MAX_HOPS {
            match self.inputs.get(&origin)? {
                Parent::Upstream(ts) => return Some(*ts),
                Parent::Derived(parent) => origin = *parent,
            }
        }
        None
    }

    fn latencies(&self) -> Visible {
        let mut latencies = Vec::with_capacity(self.results.len());
        let mut missed = 0;
        for (origin, at_ms) in &self.results {
            match origin.and_then(|o| self.root_ms(o)) {
                Some(root) => latencies.push(at_ms - root as f64),
                None => missed += 1,
            }
        }
        Visible::of(latencies, missed)
    }
}

/// `topic/partition/offset/index` → the watched record it names.
fn parse_origin(topics: &[String], event_id: &str) -> Option<Origin> {
    let mut parts = event_id.rsplitn(4, '/');
    let _index = parts.next()?;
    let offset = parts.next()?.parse().ok()?;
    let partition = parts.next()?.parse().ok()?;
    let topic = parts.next()?;
    let index = topics.iter().position(|t| t == topic)?;
    Some((index, partition, offset))
}

/// A read_committed consumer of the results and input topics, running in
/// the background from their current ends.
pub struct ResultWatch {
    consumer: Arc<StreamConsumer>,
    /// Each watched partition's end when the watch started.
    starts: Ends,
    stop: oneshot::Sender<Ends>,
    task: JoinHandle<Result<Seen>>,
}

impl ResultWatch {
    pub async fn start(env: &BenchEnv) -> Result<ResultWatch> {
        let config = &env.config;
        let topics = vec![
            config.topics.results.clone(),
            config.topics.orders.clone(),
            config.topics.inventory.clone(),
        ];
        let consumer = Arc::new(watch_consumer(config, &env.run)?);
        let partitions = tokio::task::block_in_place(|| partitions_of(&consumer, &topics))?;
        let starts = tokio::task::block_in_place(|| high_watermarks(&consumer, &partitions))?;
        let mut assignment = TopicPartitionList::new();
        for ((topic, partition), end) in &starts {
            assignment
                .add_partition_offset(topic, *partition, Offset::Offset(*end))
                .context("building the watch's assignment")?;
        }
        consumer
            .assign(&assignment)
            .context("assigning the watch")?;
        let (stop, stop_rx) = oneshot::channel();
        let task = tokio::spawn(follow(consumer.clone(), topics, stop_rx));
        Ok(ResultWatch {
            consumer,
            starts,
            stop,
            task,
        })
    }

    /// Reads on until every partition's current end, then measures.
    /// Partitions nobody wrote to since the start are left out: a consumer
    /// reports no position where it consumed nothing.
    pub async fn finish(self) -> Result<Visible> {
        let consumer = self.consumer.clone();
        let partitions: Vec<(String, i32)> = self.starts.keys().cloned().collect();
        let mut ends = tokio::task::block_in_place(|| high_watermarks(&consumer, &partitions))?;
        ends.retain(|key, end| self.starts.get(key).is_some_and(|start| *end > *start));
        let _ = self.stop.send(ends);
        let seen = self.task.await.context("the result watch")??;
        Ok(seen.latencies())
    }
}

fn watch_consumer(config: &Config, run: &str) -> Result<StreamConsumer> {
    let mut kafka_cfg = config.kafka.clone();
    kafka_cfg.group_id = format!("{run}.result-watch");
    kafka::consumer_config(&kafka_cfg, true)
        .set("fetch.wait.max.ms", "5")
        .set("fetch.min.bytes", "1")
        .create()
        .context("creating the result watch's consumer")
}

fn partitions_of(consumer: &StreamConsumer, topics: &[String]) -> Result<Vec<(String, i32)>> {
    let mut out = Vec::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), METADATA_TIMEOUT)
            .with_context(|| format!("reading the metadata of {topic}"))?;
        for t in metadata.topics() {
            out.extend(t.partitions().iter().map(|p| (topic.clone(), p.id())));
        }
    }
    Ok(out)
}

fn high_watermarks(consumer: &StreamConsumer, partitions: &[(String, i32)]) -> Result<Ends> {
    partitions
        .iter()
        .map(|(topic, partition)| {
            let (_, high) = consumer
                .fetch_watermarks(topic, *partition, METADATA_TIMEOUT)
                .with_context(|| format!("reading the end of {topic}/{partition}"))?;
            Ok(((topic.clone(), *partition), high))
        })
        .collect()
}

/// Consumes until told the ends to reach, then until its position passes
/// them (transaction markers take offsets and are never delivered).
async fn follow(
    consumer: Arc<StreamConsumer>,
    topics: Vec<String>,
    mut stop: oneshot::Receiver<Ends>,
) -> Result<Seen> {
    let mut seen = Seen::default();
    let mut ends: Option<(Ends, Instant)> = None;
    loop {
        if let Some((ends, deadline)) = &ends {
            if passed_every_end(&consumer, ends) {
                break;
            }
            if Instant::now() > *deadline {
                eprintln!("bench: the result watch did not reach the topics' ends; measuring what it read");
                break;
            }
        }
        tokio::select! {
            received = tokio::time::timeout(Duration::from_millis(100), consumer.recv()) => {
                let Ok(received) = received else { continue };
                let msg = received.context("the result watch consuming")?;
                let at_ms = unix_ms_f64();
                if let Some(index) = topics.iter().position(|t| t == msg.topic()) {
                    seen.note(&topics, index, &msg, at_ms);
                }
            }
            given = &mut stop, if ends.is_none() => {
                let given = given.context("the result watch lost its owner")?;
                ends = Some((given, Instant::now() + CATCH_UP_TIMEOUT));
            }
        }
    }
    Ok(seen)
}

/// Placed orders polled through the API from their due time.
pub struct ProjectionProbes {
    task: JoinHandle<Result<Visible>>,
}

impl ProjectionProbes {
    /// Probes about [`PROBES_PER_SECOND`] of the orders `messages` place,
    /// `messages[i]` being sent at `pace.due_at(i)`.
    pub fn start(
        api: SocketAddr,
        token: &str,
        messages: &[GeneratedMessage],
        pace: Pace,
    ) -> ProjectionProbes {
        let placed: Vec<(usize, String)> = messages
            .iter()
            .enumerate()
            .filter(|(_, m)| m.label == "OrderPlaced")
            .filter_map(|(i, m)| Some((i, m.key.clone()?)))
            .collect();
        let seconds = messages.len() as f64 / pace.rate;
        let wanted = (seconds * PROBES_PER_SECOND).ceil().max(1.0) as usize;
        let step = (placed.len() / wanted).max(1);
        let probes: Vec<(usize, String)> = placed.into_iter().step_by(step).collect();
        let token = token.to_string();
        let task = tokio::spawn(async move {
            let workers = (0..PROBE_CONNECTIONS).map(|w| {
                let mine: Vec<(usize, String)> = probes
                    .iter()
                    .skip(w)
                    .step_by(PROBE_CONNECTIONS)
                    .cloned()
                    .collect();
                let token = token.clone();
                async move {
                    let mut conn = HttpConnection::open(api).await?;
                    let mut out = Vec::with_capacity(mine.len());
                    for (i, order_id) in mine {
                        let path = format!("/v1/orders/{order_id}");
                        out.push(probe(&mut conn, &path, &token, pace, i).await?);
                    }
                    anyhow::Ok(out)
                }
            });
            let results = futures::future::try_join_all(workers).await?;
            let all: Vec<Option<f64>> = results.into_iter().flatten().collect();
            let missed = all.iter().filter(|l| l.is_none()).count();
            Ok(Visible::of(all.into_iter().flatten().collect(), missed))
        });
        ProjectionProbes { task }
    }

    pub async fn finish(self) -> Result<Visible> {
        self.task.await.context("the projection probes")?
    }
}

/// Milliseconds from event `i`'s due time until `path` answers 200, or
/// `None` if it does not within [`PROBE_GIVE_UP`].
async fn probe(
    conn: &mut HttpConnection,
    path: &str,
    token: &str,
    pace: Pace,
    i: usize,
) -> Result<Option<f64>> {
    let due = pace.due_at(i);
    tokio::time::sleep_until(due.into()).await;
    loop {
        let (status, _) = conn.get(path, Some(token)).await?;
        if status == 200 {
            return Ok(Some(unix_ms_f64() - pace.due_ms(i)));
        }
        if due.elapsed() > PROBE_GIVE_UP {
            return Ok(None);
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}
