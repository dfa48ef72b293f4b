//! The steps of a batch and how each one is retried: backoff, readiness
//! flags, retry metrics, and the shutdown deadline that bounds every attempt.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::sync::watch;
use tracing::warn;

use super::Backoff;
use super::{BatchSpan, InputRecord, PipelineHealth, StepError};
use crate::config::PipelineConfig;
use crate::telemetry as t;

/// The steps of a batch, each retried on its own.
#[derive(Debug, Clone, Copy)]
pub(super) enum Step {
    Check,
    /// `exactly_once`: waiting for the sink to apply what an earlier owner
    /// of a partition committed, or for room among the batches it has yet
    /// to apply.
    Restore,
    Prepare,
    Publish,
    Write,
}

impl Step {
    pub(super) const ALL: [Step; 5] = [
        Step::Check,
        Step::Restore,
        Step::Prepare,
        Step::Publish,
        Step::Write,
    ];

    /// The `step` label of the retry counter.
    pub(super) fn label(self) -> &'static str {
        match self {
            Step::Check => "check",
            Step::Restore => "restore",
            Step::Prepare => "prepare",
            Step::Publish => "publish",
            Step::Write => "write",
        }
    }

    /// The dependency the step waits on, as readiness reports it.
    fn health_flag(self, health: &PipelineHealth) -> &AtomicBool {
        match self {
            Step::Restore | Step::Prepare | Step::Write => &health.db_ok,
            Step::Check | Step::Publish => &health.kafka_ok,
        }
    }

    fn retrying(self) -> &'static str {
        match self {
            Step::Check => "reading the input topics' partition counts failed; retrying",
            Step::Restore => "waiting for the sink failed; retrying",
            Step::Prepare => "preparing batch failed; retrying",
            Step::Publish => "publishing failed; retrying the whole batch's messages",
            Step::Write => "writing rows failed; retrying",
        }
    }
}

/// What a failed step needs to report itself and wait before its next try.
pub(super) struct StepRetry<'a> {
    pub(super) backoff: Backoff,
    pub(super) cfg: &'a PipelineConfig,
    pub(super) health: &'a PipelineHealth,
    pub(super) shutdown: &'a mut watch::Receiver<bool>,
    pub(super) deadline: Option<Instant>,
    pub(super) batch: &'a [InputRecord],
}

impl StepRetry<'_> {
    /// Records a step's success, and its time since `started` (its first attempt).
    pub(super) fn succeeded<T>(&mut self, step: Step, value: T, started: Instant) -> T {
        metrics::histogram!(t::BATCH_STEP_DURATION_SECONDS, "step" => step.label())
            .record(started.elapsed().as_secs_f64());
        step.health_flag(self.health).store(true, Ordering::Relaxed);
        self.backoff.reset();
        value
    }

    /// Runs one attempt of a step. A shutdown asked meanwhile starts the
    /// deadline clock, and an attempt still running at the deadline is given
    /// up (`None`): no publish or write outlives `pipeline.shutdown_deadline`.
    /// What it sent may still land; the batch's offsets are not stored, so
    /// it is redone, and its effects converge.
    pub(super) async fn bounded<T>(&mut self, attempt: impl Future<Output = T>) -> Option<T> {
        tokio::pin!(attempt);
        loop {
            if let Some(deadline) = self.deadline {
                let deadline = tokio::time::Instant::from_std(deadline);
                return tokio::time::timeout_at(deadline, &mut attempt).await.ok();
            }
            tokio::select! {
                out = &mut attempt => return Some(out),
                changed = self.shutdown.changed() => {
                    if changed.is_err() || *self.shutdown.borrow() {
                        self.deadline = Some(Instant::now() + self.cfg.shutdown_deadline);
                    }
                }
            }
        }
    }

    /// Reports the failure and waits out the backoff; false when the batch
    /// must be abandoned (shutdown deadline passed).
    pub(super) async fn failed(&mut self, step: Step, error: &StepError) -> bool {
        step.health_flag(self.health)
            .store(false, Ordering::Relaxed);
        metrics::counter!(t::BATCH_RETRIES_TOTAL, "step" => step.label()).increment(1);
        // Retry warnings name the records they hold up, by partition and offset range.
        warn!(
            error = %error,
            records = %BatchSpan(self.batch),
            events = self.batch.len(),
            "{}",
            step.retrying()
        );
        self.backoff
            .wait(self.shutdown, &mut self.deadline, self.cfg)
            .await
    }
}
