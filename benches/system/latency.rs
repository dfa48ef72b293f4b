//! (d) End-to-end latency at an open-loop offered load, and the open-loop
//! sender the loaded query measurement reuses.
//!
//! Open loop: event `i` is due at `start + i / rate` whether or not earlier
//! ones were taken, and carries that due time as its Kafka timestamp, so a
//! sender or broker falling behind shows up as latency instead of quietly
//! lowering the load. Latency is galley's own
//! `galley_end_to_end_latency_seconds` histogram (Kafka timestamp to the
//! event's rows written), scraped before and after; quantiles are
//! interpolated within its buckets, which are at most 1.5 times apart.
//! The same phase measures, from outside, when results and projections
//! become visible (see [`crate::visible`]).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use galley::codec::Codec;
use galley::config::Config;
use galley::shop::generator::GeneratedMessage;
use galley::telemetry::{histogram_buckets, histogram_quantile};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::process::Galley;
use crate::setup::BenchEnv;
use crate::stream;
use crate::visible::{Pace, ProjectionProbes, ResultWatch, Visible};
use crate::Settings;

const HISTOGRAM: &str = galley::telemetry::END_TO_END_LATENCY_SECONDS;
/// Seeds of the open-loop streams; the backlog has seed 1.
const LATENCY_SEED: u64 = 2;
const LOADED_QUERY_SEED: u64 = 3;

#[derive(Debug, Clone)]
pub struct Latency {
    pub offered_eps: f64,
    pub sent: usize,
    /// Events the histogram counted (input events, including those galley fed back to itself).
    pub observed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    /// Where a batch's time went during the phase: batches, their mean
    /// size, and the mean time of each step that ran, per batch.
    pub breakdown: Breakdown,
    /// Input timestamp → result event read by a read_committed consumer.
    pub result_visible: Visible,
    /// Input timestamp → the placed order answered by the query API.
    pub projection_visible: Visible,
}

/// Mean figures of the batches processed during the latency phase.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Breakdown {
    pub batches: u64,
    pub mean_batch_events: f64,
    pub mean_batch_ms: f64,
    /// Mean time from one batch's start to the next one's: the batch, then
    /// filling the next (its linger and any wait for records).
    pub mean_cycle_ms: f64,
    /// Step label and its mean time per batch in milliseconds.
    pub step_mean_ms: std::collections::BTreeMap<String, f64>,
    /// `exactly_once`: each part of a batch's transaction, mean milliseconds
    /// from the transaction's start (records, changelog and offsets overlap)
    /// and for the commit after them.
    pub transaction_mean_ms: std::collections::BTreeMap<String, f64>,
    /// CQL statements per batch, by statement (the sink's included).
    pub statements_per_batch: std::collections::BTreeMap<String, f64>,
}

impl Breakdown {
    /// The difference of two scrapes' batch histograms.
    fn between(before: &str, after: &str, phase: std::time::Duration) -> Breakdown {
        let diff = |name: &str| {
            let (a, b) = (sums_and_counts(after, name), sums_and_counts(before, name));
            a.into_iter()
                .map(|(label, (sum, count))| {
                    let (s0, c0) = b.get(&label).copied().unwrap_or((0.0, 0.0));
                    (label, (sum - s0, count - c0))
                })
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        let mean = |(sum, count): (f64, f64)| if count > 0.0 { sum / count } else { 0.0 };
        let sizes = diff(galley::telemetry::BATCH_SIZE_EVENTS)
            .remove("")
            .unwrap_or_default();
        let durations = diff(galley::telemetry::BATCH_DURATION_SECONDS)
            .remove("")
            .unwrap_or_default();
        let batches = sizes.1.max(1.0);
        Breakdown {
            batches: sizes.1 as u64,
            mean_batch_events: mean(sizes),
            mean_batch_ms: mean(durations) * 1000.0,
            mean_cycle_ms: phase.as_secs_f64() * 1000.0 / batches,
            step_mean_ms: diff(galley::telemetry::BATCH_STEP_DURATION_SECONDS)
                .into_iter()
                .map(|(step, (sum, _))| (step, sum * 1000.0 / batches))
                .collect(),
            transaction_mean_ms: diff(galley::telemetry::TRANSACTION_CALL_DURATION_SECONDS)
                .into_iter()
                .map(|(call, totals)| (call, mean(totals) * 1000.0))
                .collect(),
            statements_per_batch: diff(galley::telemetry::DB_STATEMENT_DURATION_SECONDS)
                .into_iter()
                .map(|(statement, (_, count))| (statement, count / batches))
                .collect(),
        }
    }
}

/// `name`'s `_sum` and `_count` per value of its one label ("" without
/// one), from Prometheus text.
fn sums_and_counts(text: &str, name: &str) -> std::collections::BTreeMap<String, (f64, f64)> {
    let mut out: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    for line in text.lines() {
        for (suffix, is_sum) in [("_sum", true), ("_count", false)] {
            let Some(rest) = line.strip_prefix(name).and_then(|r| r.strip_prefix(suffix)) else {
                continue;
            };
            let (labels, value) = match rest.rsplit_once(' ') {
                Some(split) => split,
                None => continue,
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let label = labels.split('"').nth(1).unwrap_or_default().to_string();
            let slot = out.entry(label).or_default();
            if is_sum {
                slot.0 += value;
            } else {
                slot.1 += value;
            }
        }
    }
    out
}

pub async fn measure(
    settings: &Settings,
    codec: &Codec,
    env: &BenchEnv,
    galley: &mut Galley,
    rate: f64,
) -> Result<Latency> {
    let count = (rate * settings.latency_duration.as_secs_f64()).ceil() as usize;
    let messages = stream::live(codec, count, LATENCY_SEED);
    let before_text = galley.scrape().await?;
    let phase_started = std::time::Instant::now();
    let before = histogram_buckets(&before_text, HISTOGRAM)?;
    let producer = stream::producer(&env.config, 1)?;
    let results = ResultWatch::start(env).await?;
    let pace = Pace::from_now(rate);
    let probes = ProjectionProbes::start(galley.api, &env.token, &messages, pace);
    let (_stop_tx, stop) = watch::channel(false);
    let sent = send_paced(&producer, &env.config, &messages, pace, stop).await?;
    galley.wait_drained(env).await?;
    let projection_visible = probes.finish().await?;
    let result_visible = results.finish().await?;
    let after_text = galley.scrape().await?;
    let phase = phase_started.elapsed();
    let after = histogram_buckets(&after_text, HISTOGRAM)?;

    let diff: Vec<(f64, u64)> = after
        .iter()
        .map(|(bound, count)| {
            let earlier = before.get(bound).copied().unwrap_or(0);
            (bound.0, count.saturating_sub(earlier))
        })
        .collect();
    let observed = diff.last().map(|(_, c)| *c).unwrap_or(0);
    if observed == 0 {
        bail!("galley's latency histogram counted nothing during the latency phase");
    }
    let ms = |q: f64| histogram_quantile(&diff, q) * 1000.0;
    let latency = Latency {
        offered_eps: rate,
        sent,
        observed,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        breakdown: Breakdown::between(&before_text, &after_text, phase),
        result_visible,
        projection_visible,
    };
    println!(
        "bench: (d) {} events at {:.0}/s: p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms",
        latency.sent, rate, latency.p50_ms, latency.p99_ms, latency.p999_ms
    );
    println!(
        "bench: (d) result visible: {:?}; projection visible: {:?}",
        latency.result_visible, latency.projection_visible
    );
    println!("bench: (d) batches: {:?}", latency.breakdown);
    Ok(latency)
}

/// A stream sent open loop in the background until stopped.
pub struct OpenLoop {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<usize>>,
}

impl OpenLoop {
    pub fn start(
        settings: &Settings,
        codec: &Codec,
        env: &BenchEnv,
        rate: f64,
    ) -> Result<OpenLoop> {
        // Enough for the four query measurements and their gaps.
        let seconds = settings.query_duration.as_secs_f64() * 4.0 + 30.0;
        let messages = stream::live(codec, (rate * seconds).ceil() as usize, LOADED_QUERY_SEED);
        let producer = stream::producer(&env.config, 1)?;
        let config = env.config.clone();
        let (stop, stop_rx) = watch::channel(false);
        let pace = Pace::from_now(rate);
        let task =
            tokio::spawn(
                async move { send_paced(&producer, &config, &messages, pace, stop_rx).await },
            );
        Ok(OpenLoop { stop, task })
    }

    pub async fn stop(self) -> Result<usize> {
        let _ = self.stop.send(true);
        self.task.await.context("the open-loop sender")?
    }
}

/// Sends `messages[i]` at `start + i / rate`, stamped with that time;
/// returns how many were sent before the end or a stop.
async fn send_paced(
    producer: &FutureProducer,
    config: &Config,
    messages: &[GeneratedMessage],
    pace: Pace,
    stop: watch::Receiver<bool>,
) -> Result<usize> {
    let mut pending: Vec<DeliveryFuture> = Vec::with_capacity(messages.len());
    let mut next = 0;
    while next < messages.len() && !*stop.borrow() {
        let due =
            ((pace.started.elapsed().as_secs_f64() * pace.rate) as usize + 1).min(messages.len());
        while next < due {
            let m = &messages[next];
            let due_ms = pace.due_ms(next) as i64;
            let mut record = FutureRecord::to(stream::topic(config, m))
                .payload(&m.payload)
                .timestamp(due_ms);
            if let Some(key) = &m.key {
                record = record.key(key.as_str());
            }
            let delivery = producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .context("queueing an open-loop event")?;
            pending.push(delivery);
            next += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for delivery in pending {
        stream::acknowledged(delivery).await?;
    }
    Ok(next)
}
