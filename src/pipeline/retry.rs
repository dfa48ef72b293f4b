//! Capped exponential backoff that gives way to shutdown.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::config::PipelineConfig;

/// Waits between attempts: `initial`, doubling, never more than `max`.
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
        }
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
    }

    /// The wait before the next attempt, advancing the schedule.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// Sleeps before the next attempt. Returns false when the attempt should
    /// not be made: the shutdown deadline has passed. A shutdown asked during
    /// the wait starts the deadline clock.
    pub async fn wait(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
        deadline: &mut Option<Instant>,
        cfg: &PipelineConfig,
    ) -> bool {
        let delay = self.next_delay();
        let sleep_until = match deadline {
            Some(d) => {
                let now = Instant::now();
                if now >= *d {
                    return false;
                }
                (now + delay).min(*d)
            }
            None => Instant::now() + delay,
        };
        tokio::select! {
            _ = tokio::time::sleep_until(sleep_until.into()) => {}
            changed = shutdown.changed(), if deadline.is_none() => {
                if changed.is_err() || *shutdown.borrow() {
                    *deadline = Some(Instant::now() + cfg.shutdown_deadline);
                }
            }
        }
        deadline.is_none_or(|d| Instant::now() < d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let seen: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(seen, vec![100, 200, 350, 350, 350]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
