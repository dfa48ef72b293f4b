//! The consumer's rebalance callbacks: tell the processing loop which
//! partitions it lost.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::TopicPartitionList;
use tracing::{info, warn};

use super::pause::PauseWatch;
use crate::telemetry as t;

/// Rebalance news from the callback to the processing loop.
#[derive(Debug, Clone, Default)]
pub struct GroupEvents {
    inner: Arc<Mutex<GroupState>>,
    /// Set by every callback, cleared by [`GroupEvents::take`]: the loop
    /// checks it for each record it polls, so that the common case (no
    /// rebalance) costs an atomic load, not a lock.
    news: Arc<AtomicBool>,
}

#[derive(Debug, Default)]
struct GroupState {
    owned: BTreeSet<(String, i32)>,
    revoked_since_last_take: Vec<(String, i32)>,
    assigned_since_last_take: Vec<(String, i32)>,
}

impl GroupEvents {
    /// Whether a callback ran since the last [`GroupEvents::take`].
    pub fn has_news(&self) -> bool {
        self.news.load(Ordering::Acquire)
    }

    /// Partitions revoked since the last call, and how many are owned now.
    pub fn take(&self) -> (Vec<(String, i32)>, usize) {
        self.news.store(false, Ordering::Release);
        match self.inner.lock() {
            Ok(mut state) => {
                let revoked = std::mem::take(&mut state.revoked_since_last_take);
                (revoked, state.owned.len())
            }
            Err(_) => (Vec::new(), 0),
        }
    }

    /// Partitions assigned since the last call that are still owned.
    pub fn take_assigned(&self) -> Vec<(String, i32)> {
        match self.inner.lock() {
            Ok(mut state) => {
                let assigned = std::mem::take(&mut state.assigned_since_last_take);
                assigned
                    .into_iter()
                    .filter(|p| state.owned.contains(p))
                    .collect()
            }
            Err(_) => Vec::new(),
        }
    }

    /// Records partitions the group took from this member.
    pub(super) fn record_revoked(&self, revoked: &[(String, i32)]) {
        self.update(|s| {
            for p in revoked {
                s.owned.remove(p);
            }
            s.revoked_since_last_take.extend(revoked.iter().cloned());
        });
    }

    /// Records partitions the group gave this member.
    pub(super) fn record_assigned(&self, assigned: Vec<(String, i32)>) {
        self.update(|s| {
            s.owned.extend(assigned.iter().cloned());
            s.assigned_since_last_take.extend(assigned);
        });
    }

    fn update(&self, f: impl FnOnce(&mut GroupState)) {
        if let Ok(mut state) = self.inner.lock() {
            f(&mut state);
            metrics::gauge!(t::PARTITIONS_OWNED).set(state.owned.len() as f64);
        }
        self.news.store(true, Ordering::Release);
    }
}

/// The consumer context galley's group consumer runs with.
#[derive(Debug)]
pub struct PipelineContext {
    events: GroupEvents,
    pauses: PauseWatch,
}

impl PipelineContext {
    /// A context for a member whose group session times out after
    /// `session_timeout`.
    pub fn new(session_timeout: Duration) -> Self {
        Self {
            events: GroupEvents::default(),
            // Heartbeats go every quarter of the session timeout: a pause
            // of half of it, begun just before one was due, leaves a
            // quarter of margin before the group could give up on the member.
            pauses: PauseWatch::start(session_timeout / 2),
        }
    }

    /// Pauses of the whole process long enough to have cost it its partitions.
    pub fn pauses(&self) -> &PauseWatch {
        &self.pauses
    }

    pub fn events(&self) -> GroupEvents {
        self.events.clone()
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl ClientContext for PipelineContext {}

impl ConsumerContext for PipelineContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let revoked = partitions(tpl);
            metrics::counter!(t::REBALANCES_TOTAL, "kind" => "revoke").increment(1);
            // No commit here: with enable.auto.commit, librdkafka itself
            // commits the stored offsets of removed partitions before the
            // rebalance completes (rdkafka_assignment.c, "unassigned
            // partitions"). A synchronous commit in this callback had no
            // bound and blocked the poll that runs it, which after a broker
            // outage could stall the member.
            if consumer.assignment_lost() {
                warn!(
                    ?revoked,
                    "partitions lost (session timed out); their stored offsets are not committed"
                );
            }
            info!(?revoked, "partitions revoked");
            self.events.record_revoked(&revoked);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let assigned = partitions(tpl);
                metrics::counter!(t::REBALANCES_TOTAL, "kind" => "assign").increment(1);
                info!(?assigned, "partitions assigned");
                self.events.record_assigned(assigned);
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => warn!(error = %e, "rebalance error"),
        }
    }
}
