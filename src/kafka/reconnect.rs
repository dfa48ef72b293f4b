//! Gives `kafka.brokers` back to a Kafka client that librdkafka left with
//! no broker at all.
//!
//! Since 2.10, librdkafka drops every broker a Metadata response leaves
//! out. A broker that is stopping or starting can answer with topics but
//! with no broker (its own registration is fenced for that moment); a
//! client that asked it then drops every broker it knew, bootstrap ones
//! included. The answer also counted as a success, which stops the client's
//! re-bootstrap timer, and with no broker left no request is ever sent that
//! would start it again: the client stays disconnected until the process
//! restarts (librdkafka issue 5301, still open in 2.15; galley bundles
//! 2.12.1). A single-broker cluster meets this on every restart, a larger
//! one during rolling restarts. The fault suite saw a member keep its
//! partitions while its sink, or its producer, could never reach the broker
//! again.
//!
//! [`keep_connected`] probes a client every few seconds; one that no broker
//! has answered for [`REBOOTSTRAP_AFTER`] is given its bootstrap list again
//! (`rd_kafka_brokers_add`), which starts a connection when it has none.
//! For a client that still knows its brokers (they are only down), this
//! adds at most the bootstrap entries that librdkafka's own re-bootstrap
//! would add, and the next Metadata response retires them again.

use std::ffi::CString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::{Client, ClientContext};
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::producer::{FutureProducer, Producer};
use tokio::sync::watch;
use tracing::warn;

use super::REBOOTSTRAP_AFTER;
use crate::telemetry as t;

/// How often each client is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// How long one probe waits for a broker's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// A long-lived Kafka client whose connection [`keep_connected`] looks after.
pub trait WatchedClient: Send + Sync + 'static {
    /// Asks a broker for the metadata of `topic`. Blocking.
    fn probe(&self, topic: &str, timeout: Duration) -> KafkaResult<()>;

    /// Adds the brokers of `bootstrap` (a `bootstrap.servers` list) to the
    /// client; it connects to one of them if it has no broker.
    fn add_brokers(&self, bootstrap: &CString);
}

fn probe_client<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> KafkaResult<()> {
    client.fetch_metadata(Some(topic), timeout).map(|_| ())
}

fn add_brokers_to<C: ClientContext>(client: &Client<C>, bootstrap: &CString) {
    // SAFETY: the client is alive for the duration of the call (borrowed
    // from its owner), `bootstrap` is a NUL-terminated string librdkafka
    // copies, and `rd_kafka_brokers_add` takes the client's own lock, so
    // it may be called from any thread.
    unsafe {
        rdkafka::bindings::rd_kafka_brokers_add(client.native_ptr(), bootstrap.as_ptr());
    }
}

impl<C: ConsumerContext + 'static> WatchedClient for StreamConsumer<C> {
    fn probe(&self, topic: &str, timeout: Duration) -> KafkaResult<()> {
        probe_client(self.client(), topic, timeout)
    }

    fn add_brokers(&self, bootstrap: &CString) {
        add_brokers_to(self.client(), bootstrap);
    }
}

impl<C: ClientContext + 'static> WatchedClient for FutureProducer<C> {
    fn probe(&self, topic: &str, timeout: Duration) -> KafkaResult<()> {
        probe_client(self.client(), topic, timeout)
    }

    fn add_brokers(&self, bootstrap: &CString) {
        add_brokers_to(self.client(), bootstrap);
    }
}

/// Where a client stands with the brokers, from its probes.
#[derive(Debug, Default)]
pub struct Reachability {
    /// Since when no probe was answered; `None` while the last one was.
    unanswered_since: Option<Instant>,
}

impl Reachability {
    /// Records a probe's outcome at `now`; true when the client should be
    /// given its bootstrap brokers again. After that, the clock starts over,
    /// so that a long outage re-adds them once per [`REBOOTSTRAP_AFTER`].
    pub fn record(&mut self, answered: bool, now: Instant) -> bool {
        if answered {
            self.unanswered_since = None;
            return false;
        }
        let since = *self.unanswered_since.get_or_insert(now);
        if now.duration_since(since) >= REBOOTSTRAP_AFTER {
            self.unanswered_since = Some(now);
            return true;
        }
        false
    }
}

/// Probes `client` every [`PROBE_INTERVAL`] with a Metadata request for
/// `topic`, and gives it `brokers` again when none answered for
/// [`REBOOTSTRAP_AFTER`]; until `stop` turns true. `label` names the client
/// in logs and in `galley_kafka_brokers_readded_total`.
pub async fn keep_connected(
    label: &'static str,
    client: Arc<dyn WatchedClient>,
    topic: String,
    brokers: &str,
    mut stop: watch::Receiver<bool>,
) {
    let Ok(bootstrap) = CString::new(brokers) else {
        warn!(
            client = label,
            "kafka.brokers holds a NUL byte; the client is not watched"
        );
        return;
    };
    metrics::counter!(t::KAFKA_BROKERS_READDED_TOTAL, "client" => label).increment(0);
    let mut reachability = Reachability::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PROBE_INTERVAL) => {}
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
        let (probed, topic_name) = (client.clone(), topic.clone());
        let answered =
            tokio::task::spawn_blocking(move || probed.probe(&topic_name, PROBE_TIMEOUT).is_ok())
                .await
                .unwrap_or(false);
        if reachability.record(answered, Instant::now()) {
            client.add_brokers(&bootstrap);
            metrics::counter!(t::KAFKA_BROKERS_READDED_TOTAL, "client" => label).increment(1);
            warn!(
                client = label,
                unanswered_for_seconds = REBOOTSTRAP_AFTER.as_secs(),
                "no broker answered this Kafka client; gave it kafka.brokers again"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brokers_are_readded_once_probes_went_unanswered_for_the_whole_interval() {
        let start = Instant::now();
        let mut r = Reachability::default();
        assert!(!r.record(false, start));
        assert!(!r.record(false, start + REBOOTSTRAP_AFTER / 2));
        assert!(r.record(false, start + REBOOTSTRAP_AFTER));
        // The clock starts over after a re-add.
        assert!(!r.record(false, start + REBOOTSTRAP_AFTER + PROBE_INTERVAL));
        assert!(r.record(false, start + REBOOTSTRAP_AFTER * 2));
    }

    #[test]
    fn an_answered_probe_resets_the_clock() {
        let start = Instant::now();
        let mut r = Reachability::default();
        assert!(!r.record(false, start));
        assert!(!r.record(true, start + REBOOTSTRAP_AFTER / 2));
        assert!(!r.record(false, start + REBOOTSTRAP_AFTER));
        assert!(!r.record(false, start + REBOOTSTRAP_AFTER + REBOOTSTRAP_AFTER / 2));
        assert!(r.record(false, start + REBOOTSTRAP_AFTER * 2));
    }
}
