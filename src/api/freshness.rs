//! How fresh an answer is. A background task refreshes, every
//! `pipeline.lag_refresh_interval`, for every partition of both input topics
//! (not only the ones this process owns): the consumer group's lag (high
//! watermark minus committed offset) from the broker, and the newest applied
//! event time from the `partition_progress` table. The query routes read
//! that snapshot from memory, so freshness costs a request nothing. The same
//! loop keeps the lag gauges of [`crate::telemetry`] current.
//!
//! The committed offsets are read as committed transactions settled them,
//! by a client of its own that does not ask for stable offsets: a
//! `read_committed` consumer's read waits while any transaction holds a
//! partition's offsets, and one that held them for good (see
//! `pipeline::held_offsets`) left every refresh failing and the lag gauges
//! frozen, just when they should show a lag that does not move.
//!
//! Because every galley process of a group reports every partition, sum
//! these gauges across processes with `max by (topic, partition)`, not `sum`.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::TopicPartitionList;
use serde::Serialize;
use tokio::sync::watch;
use tracing::warn;
use utoipa::ToSchema;

use super::time::rfc3339;
use crate::pipeline::unix_ms;
use crate::store::progress::ProgressStore;
use crate::telemetry as t;

/// Freshness of the partitions behind one response.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Freshness {
    /// Newest event time applied by any partition behind the answer (RFC 3339),
    /// or null before any was applied.
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub newest_event_time: Option<String>,
    /// The newest applied event time of the partition furthest behind: the
    /// answer holds the events of every partition up to about this time.
    /// Null while some partition has applied nothing.
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub slowest_partition_event_time: Option<String>,
    /// Records waiting in those partitions (committed offset to end); null
    /// when the lag of one of them is not known yet.
    #[schema(required = true)]
    pub lag_records: Option<i64>,
    /// When galley last read the lag and progress this reports (RFC 3339).
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub refreshed_at: Option<String>,
    /// Each partition behind the answer.
    pub partitions: Vec<PartitionFreshness>,
}

/// Freshness of one input partition.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartitionFreshness {
    pub topic: String,
    pub partition: i32,
    /// Newest event time applied from this partition (RFC 3339), or null.
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub newest_event_time: Option<String>,
    /// Records not yet processed in this partition, or null when unknown.
    #[schema(required = true)]
    pub lag_records: Option<i64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct PartitionState {
    newest_event_time_ms: Option<i64>,
    lag_records: Option<i64>,
}

#[derive(Debug, Default)]
struct Snapshot {
    refreshed_at_ms: Option<i64>,
    partitions: BTreeMap<(String, i32), PartitionState>,
}

/// The shared, in-memory freshness snapshot.
#[derive(Debug, Clone, Default)]
pub struct FreshnessView {
    inner: Arc<RwLock<Snapshot>>,
}

impl FreshnessView {
    pub fn new() -> Self {
        Self::default()
    }

    fn read<R>(&self, f: impl FnOnce(&Snapshot) -> R) -> R {
        // Writers never panic mid-update in a way that breaks the map; a
        // poisoned lock still holds a usable snapshot.
        let guard = self.inner.read().unwrap_or_else(|e| e.into_inner());
        f(&guard)
    }

    /// Freshness of one partition's data.
    pub fn partition(&self, topic: &str, partition: i32) -> Freshness {
        self.read(|s| {
            let state = s
                .partitions
                .get(&(topic.to_string(), partition))
                .copied()
                .unwrap_or_default();
            summarize(
                s.refreshed_at_ms,
                vec![(topic.to_string(), partition, state)],
            )
        })
    }

    /// Freshness of data that every partition of `topic` contributes to.
    pub fn topic(&self, topic: &str) -> Freshness {
        self.read(|s| {
            let states = s
                .partitions
                .iter()
                .filter(|((t, _), _)| t == topic)
                .map(|((t, p), state)| (t.clone(), *p, *state))
                .collect();
            summarize(s.refreshed_at_ms, states)
        })
    }

    fn replace(&self, snapshot: Snapshot) {
        let mut guard = self.inner.write().unwrap_or_else(|e| e.into_inner());
        *guard = snapshot;
    }

    fn previous(&self) -> BTreeMap<(String, i32), PartitionState> {
        self.read(|s| s.partitions.clone())
    }
}

fn summarize(
    refreshed_at_ms: Option<i64>,
    states: Vec<(String, i32, PartitionState)>,
) -> Freshness {
    let known_all = !states.is_empty();
    let newest = states.iter().filter_map(|s| s.2.newest_event_time_ms).max();
    let slowest = if known_all && states.iter().all(|s| s.2.newest_event_time_ms.is_some()) {
        states.iter().filter_map(|s| s.2.newest_event_time_ms).min()
    } else {
        None
    };
    let lag = if known_all && states.iter().all(|s| s.2.lag_records.is_some()) {
        Some(states.iter().filter_map(|s| s.2.lag_records).sum())
    } else {
        None
    };
    Freshness {
        newest_event_time: newest.map(rfc3339),
        slowest_partition_event_time: slowest.map(rfc3339),
        lag_records: lag,
        refreshed_at: refreshed_at_ms.map(rfc3339),
        partitions: states
            .into_iter()
            .map(|(topic, partition, state)| PartitionFreshness {
                topic,
                partition,
                newest_event_time: state.newest_event_time_ms.map(rfc3339),
                lag_records: state.lag_records,
            })
            .collect(),
    }
}

/// Refreshes `view` and the lag gauges every `interval` until shutdown. A
/// refresh under way when shutdown comes is abandoned: its broker calls can
/// take seconds, and the process is stopping.
pub async fn track(
    consumer: Arc<BaseConsumer>,
    store: Arc<ProgressStore>,
    topics: Vec<String>,
    interval: Duration,
    view: FreshnessView,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = refresh(&consumer, &store, &topics, &view) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

async fn refresh(
    consumer: &Arc<BaseConsumer>,
    store: &ProgressStore,
    topics: &[String],
    view: &FreshnessView,
) {
    // The snapshot is as old as its reading, not its assembly: a reader
    // that sees `refreshed_at` after some moment knows the lags were read
    // after it.
    let read_at = unix_ms();
    let c = consumer.clone();
    let names = topics.to_vec();
    let lags = match tokio::task::spawn_blocking(move || read_lags(&c, &names)).await {
        Ok(Ok(lags)) => Some(lags),
        Ok(Err(e)) => {
            warn!(error = %e, "lag refresh failed");
            None
        }
        Err(e) => {
            warn!(error = %e, "lag refresh task failed");
            None
        }
    };

    let previous = view.previous();
    let mut partitions: BTreeMap<(String, i32), PartitionState> = match &lags {
        Some(lags) => lags
            .iter()
            .map(|(key, lag)| {
                let state = PartitionState {
                    newest_event_time_ms: None,
                    lag_records: *lag,
                };
                (key.clone(), state)
            })
            .collect(),
        // Without the broker, keep the partitions but say the lag is unknown.
        None => previous
            .keys()
            .map(|key| (key.clone(), PartitionState::default()))
            .collect(),
    };
    for topic in topics {
        add_progress(store, topic, &previous, &mut partitions).await;
    }

    set_lag_gauges(&partitions, unix_ms());
    view.replace(Snapshot {
        refreshed_at_ms: Some(read_at),
        partitions,
    });
}

/// Sets the newest applied event time of every partition of `topic` from
/// the progress table, or, when it cannot be read, from `previous`.
async fn add_progress(
    store: &ProgressStore,
    topic: &str,
    previous: &BTreeMap<(String, i32), PartitionState>,
    partitions: &mut BTreeMap<(String, i32), PartitionState>,
) {
    match store.read(topic).await {
        Ok(rows) => {
            for row in rows {
                partitions
                    .entry((topic.to_string(), row.partition))
                    .or_default()
                    .newest_event_time_ms = row.newest_event_time_ms;
            }
        }
        // An older reading is still true as a lower bound: keep it.
        Err(e) => {
            warn!(error = %e, topic = %topic, "progress refresh failed");
            for ((t, p), state) in previous {
                if t == topic {
                    partitions
                        .entry((t.clone(), *p))
                        .or_default()
                        .newest_event_time_ms = state.newest_event_time_ms;
                }
            }
        }
    }
}

/// Sets the lag gauges of every partition whose lag is known.
fn set_lag_gauges(partitions: &BTreeMap<(String, i32), PartitionState>, now_ms: i64) {
    for ((topic, partition), state) in partitions {
        let Some(lag) = state.lag_records else {
            continue;
        };
        let labels = [
            ("topic", topic.clone()),
            ("partition", partition.to_string()),
        ];
        metrics::gauge!(t::CONSUMER_LAG_RECORDS, &labels).set(lag as f64);
        // Seconds behind: how old the newest applied event is, while records wait.
        let seconds = match (lag, state.newest_event_time_ms) {
            (0, _) => Some(0.0),
            (_, Some(newest)) => Some(((now_ms - newest).max(0) as f64) / 1000.0),
            (_, None) => None,
        };
        if let Some(seconds) = seconds {
            metrics::gauge!(t::CONSUMER_LAG_SECONDS, &labels).set(seconds);
        }
    }
}

type Lags = Vec<((String, i32), Option<i64>)>;

/// The group's lag on every partition of `topics`: committed offsets (which
/// the broker answers for any partition, owned by this process or not)
/// against high watermarks. Blocking: run it off the async threads.
fn read_lags(consumer: &BaseConsumer, topics: &[String]) -> anyhow::Result<Lags> {
    let timeout = Duration::from_secs(5);
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        for t in metadata.topics() {
            for p in t.partitions() {
                tpl.add_partition(t.name(), p.id());
            }
        }
    }
    if tpl.count() == 0 {
        return Ok(Vec::new());
    }
    let committed = consumer.committed_offsets(tpl, timeout)?;
    let mut out = Vec::with_capacity(committed.count());
    for element in committed.elements() {
        let key = (element.topic().to_string(), element.partition());
        let lag = match consumer.fetch_watermarks(element.topic(), element.partition(), timeout) {
            Ok((low, high)) => {
                let position = element.offset().to_raw().filter(|o| *o >= 0).unwrap_or(low);
                Some((high - position).max(0))
            }
            Err(e) => {
                warn!(error = %e, topic = %key.0, partition = key.1, "watermarks unavailable");
                None
            }
        };
        out.push((key, lag));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(newest: Option<i64>, lag: Option<i64>) -> PartitionState {
        PartitionState {
            newest_event_time_ms: newest,
            lag_records: lag,
        }
    }

    #[test]
    fn a_topic_summary_reports_newest_slowest_and_total_lag() {
        let view = FreshnessView::new();
        let mut partitions = BTreeMap::new();
        partitions.insert(("o".to_string(), 0), state(Some(1_000), Some(3)));
        partitions.insert(("o".to_string(), 1), state(Some(5_000), Some(0)));
        partitions.insert(("i".to_string(), 0), state(None, Some(7)));
        view.replace(Snapshot {
            refreshed_at_ms: Some(9_000),
            partitions,
        });
        let f = view.topic("o");
        assert_eq!(
            f.newest_event_time.as_deref(),
            Some("1970-01-01T00:00:05.000Z")
        );
        assert_eq!(
            f.slowest_partition_event_time.as_deref(),
            Some("1970-01-01T00:00:01.000Z")
        );
        assert_eq!(f.lag_records, Some(3));
        assert_eq!(f.partitions.len(), 2);

        let i = view.partition("i", 0);
        assert_eq!(i.newest_event_time, None);
        assert_eq!(i.slowest_partition_event_time, None);
        assert_eq!(i.lag_records, Some(7));
    }

    #[test]
    fn nothing_known_yet_is_null_not_zero() {
        let view = FreshnessView::new();
        let f = view.topic("o");
        assert_eq!(f.lag_records, None);
        assert_eq!(f.refreshed_at, None);
        let p = view.partition("o", 4);
        assert_eq!(p.lag_records, None);
        assert_eq!(p.partitions.len(), 1);
    }
}
