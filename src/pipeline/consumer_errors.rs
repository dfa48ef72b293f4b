//! Errors the consumer reports while polling, kept for readiness: a
//! partition whose fetches keep failing (librdkafka once logged
//! "Decompression (codec 0x4) failed" and stalled its partitions) must show
//! in /readyz, not only in `galley_consumer_errors_total`.
//!
//! librdkafka's errors as rdkafka hands them over do not say which
//! partition failed, so persistence is judged from the stream of errors:
//! they persist while the latest came within [`CONSUMER_ERROR_WINDOW`] and
//! either no record has arrived since it (everything stalled) or
//! [`CONSUMER_ERRORS_PERSISTENT`] of them came within the window (some
//! partition keeps failing while others flow). A lone error followed by
//! records, a broker that hiccuped, is not a reason.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// How long after the latest consumer error it may still make galley unready.
pub const CONSUMER_ERROR_WINDOW: Duration = Duration::from_secs(30);

/// Errors within [`CONSUMER_ERROR_WINDOW`] that make galley unready even
/// while records flow: librdkafka retries a failed fetch about twice a
/// second, so a partition that keeps failing reaches it within seconds.
pub const CONSUMER_ERRORS_PERSISTENT: usize = 10;

/// Errors count as persisting only while they keep coming: a partition
/// librdkafka cannot fetch fails again every `fetch.error.backoff.ms`
/// (500 ms by default), while the errors a broker outage left behind stop
/// once it is back, whether records then flow or the stream is idle.
pub const STILL_FAILING: Duration = Duration::from_secs(5);

/// The consumer's recent errors.
#[derive(Debug, Default)]
pub struct ConsumerErrors {
    state: Mutex<ErrorState>,
    /// An error came after the last record: the next record must say so.
    awaiting_record: AtomicBool,
}

#[derive(Debug, Default)]
struct ErrorState {
    /// Unix ms of the latest errors, oldest first, at most [`CONSUMER_ERRORS_PERSISTENT`].
    recent_ms: VecDeque<i64>,
    last_error: String,
    record_since: bool,
}

impl ConsumerErrors {
    /// Notes an error the consumer reported at `now_ms`.
    pub fn record_error(&self, now_ms: i64, error: String) {
        if let Ok(mut state) = self.state.lock() {
            if state.recent_ms.len() == CONSUMER_ERRORS_PERSISTENT {
                state.recent_ms.pop_front();
            }
            state.recent_ms.push_back(now_ms);
            state.last_error = error;
            state.record_since = false;
        }
        self.awaiting_record.store(true, Ordering::Release);
    }

    /// Notes that a record arrived. Costs an atomic load unless an error
    /// came since the previous record.
    pub fn record_received(&self) {
        if self.awaiting_record.swap(false, Ordering::AcqRel) {
            if let Ok(mut state) = self.state.lock() {
                state.record_since = true;
            }
        }
    }

    /// Why the consumer's errors make galley unready at `now_ms`, if they do.
    pub fn persisting(&self, now_ms: i64) -> Option<String> {
        let window = CONSUMER_ERROR_WINDOW.as_millis() as i64;
        let state = self.state.lock().ok()?;
        let latest = *state.recent_ms.back()?;
        if now_ms - latest >= window {
            return None;
        }
        let in_window = state
            .recent_ms
            .iter()
            .filter(|at| now_ms - **at < window)
            .count();
        if now_ms - latest >= STILL_FAILING.as_millis() as i64 {
            return None;
        }
        if state.record_since && in_window < CONSUMER_ERRORS_PERSISTENT {
            return None;
        }
        Some(format!(
            "{} (errors in the last {}s: {in_window}{})",
            state.last_error,
            CONSUMER_ERROR_WINDOW.as_secs(),
            if state.record_since {
                ""
            } else {
                ", no record received since the last"
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ERROR: &str = "Fetch from broker 1 failed: Local: Decompression failed";

    #[test]
    fn errors_with_no_record_since_persist_until_the_window_passes() {
        let errors = ConsumerErrors::default();
        assert_eq!(errors.persisting(1_000), None);
        errors.record_error(1_000, ERROR.into());
        let reason = errors.persisting(2_000).expect("a reason");
        assert!(reason.starts_with(ERROR), "{reason}");
        let after_window = 1_000 + CONSUMER_ERROR_WINDOW.as_millis() as i64;
        assert_eq!(errors.persisting(after_window), None);
    }

    #[test]
    fn a_lone_error_followed_by_records_is_no_reason() {
        let errors = ConsumerErrors::default();
        errors.record_error(1_000, ERROR.into());
        errors.record_received();
        assert_eq!(errors.persisting(2_000), None);
        errors.record_error(3_000, ERROR.into());
        assert!(
            errors.persisting(3_500).is_some(),
            "a new error counts again"
        );
    }

    #[test]
    fn errors_that_stopped_are_no_reason_even_with_no_record_since() {
        // After an outage on an idle stream no record comes to clear the
        // errors; that they stopped coming is enough.
        let errors = ConsumerErrors::default();
        errors.record_error(1_000, ERROR.into());
        assert!(errors.persisting(1_000 + 4_000).is_some());
        let quiet = 1_000 + STILL_FAILING.as_millis() as i64;
        assert_eq!(errors.persisting(quiet), None);
    }

    #[test]
    fn a_burst_of_errors_that_stopped_while_records_flow_is_no_reason() {
        // A broker outage leaves a burst of errors behind; once records flow
        // and no error follows, galley is ready, not 30 s later.
        let errors = ConsumerErrors::default();
        for i in 0..CONSUMER_ERRORS_PERSISTENT as i64 {
            errors.record_error(1_000 + 100 * i, ERROR.into());
        }
        errors.record_received();
        let quiet = 1_900 + STILL_FAILING.as_millis() as i64;
        assert_eq!(errors.persisting(quiet), None);
    }

    #[test]
    fn errors_that_keep_coming_persist_while_other_partitions_flow() {
        let errors = ConsumerErrors::default();
        for i in 0..CONSUMER_ERRORS_PERSISTENT as i64 {
            errors.record_error(1_000 + 500 * i, ERROR.into());
            errors.record_received();
        }
        assert!(errors.persisting(7_000).is_some());
        // Once the oldest of them leaves the window, they no longer do.
        let later = 1_000 + CONSUMER_ERROR_WINDOW.as_millis() as i64 + 1;
        assert_eq!(errors.persisting(later), None);
    }
}
