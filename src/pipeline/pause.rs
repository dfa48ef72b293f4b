//! Notices that this whole process stood still (SIGSTOP, a VM or container
//! freeze, heavy swapping) for long enough that its consumer group may have
//! given its partitions to another member meanwhile.
//!
//! Under `at_least_once` such a zombie, thawed between publishing a batch
//! and writing its rows, would write rows the new owner may already have
//! read an older version of and cached. The new owner then mixes the
//! zombie's rows, read later from the database, with its cached ones, and
//! an effect is lost (the fault suite's `zombie_member_cannot_clobber`
//! showed reservations missing from stock). librdkafka notices the lost
//! session only some time after the thaw; a thread of our own that ticks
//! on the monotonic clock notices the gap at once, or the gap is seen
//! from the last tick when the thread has not run since.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How often the watch's thread ticks.
const TICK: Duration = Duration::from_millis(100);

/// Watches for pauses longer than a limit.
#[derive(Debug)]
pub struct PauseWatch {
    clock: Arc<Clock>,
    limit: Duration,
}

#[derive(Debug)]
struct Clock {
    origin: Instant,
    /// Milliseconds since `origin` at the last tick.
    last_tick_ms: AtomicU64,
    /// Milliseconds since `origin` when the last pause longer than the
    /// limit ended (0: none seen).
    last_pause_end_ms: AtomicU64,
}

impl Clock {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn ms_of(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }

    fn starting_at(origin: Instant) -> Self {
        Self {
            origin,
            last_tick_ms: AtomicU64::new(0),
            last_pause_end_ms: AtomicU64::new(0),
        }
    }

    /// One tick: a gap since the previous one longer than `limit_ms` was a pause.
    fn tick(&self, limit_ms: u64) {
        let now = self.now_ms();
        let previous = self.last_tick_ms.swap(now, Ordering::AcqRel);
        if now.saturating_sub(previous) > limit_ms {
            self.last_pause_end_ms.store(now, Ordering::Release);
        }
    }
}

impl PauseWatch {
    /// A watch for pauses longer than `limit`, with its ticking thread
    /// (which ends when the watch is dropped).
    pub fn start(limit: Duration) -> Self {
        let clock = Arc::new(Clock::starting_at(Instant::now()));
        let weak = Arc::downgrade(&clock);
        let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        // Without the thread, a pause still shows while no tick followed it.
        let _ = std::thread::Builder::new()
            .name("galley-pause-watch".into())
            .spawn(move || tick(&weak, limit_ms));
        Self { clock, limit }
    }

    /// The longest gap without ticks that is longer than the limit and
    /// ended after `since` (or has not ended yet), if any.
    pub fn paused_since(&self, since: Instant) -> Option<Duration> {
        let now = self.clock.now_ms();
        let silent = now.saturating_sub(self.clock.last_tick_ms.load(Ordering::Acquire));
        if Duration::from_millis(silent) > self.limit {
            return Some(Duration::from_millis(silent));
        }
        let ended = self.clock.last_pause_end_ms.load(Ordering::Acquire);
        (ended > 0 && ended >= self.clock.ms_of(since)).then_some(self.limit)
    }

    /// The limit this watch reports pauses above.
    pub fn limit(&self) -> Duration {
        self.limit
    }
}

fn tick(clock: &Weak<Clock>, limit_ms: u64) {
    loop {
        std::thread::sleep(TICK);
        let Some(clock) = clock.upgrade() else {
            return;
        };
        clock.tick(limit_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A watch without its thread, its clock started ten seconds ago, so
    /// that a test can tick it by hand and set its last tick back.
    fn watch_ticked_by_hand(limit: Duration) -> PauseWatch {
        let origin = Instant::now()
            .checked_sub(Duration::from_secs(10))
            .unwrap_or_else(Instant::now);
        let clock = Arc::new(Clock::starting_at(origin));
        clock.tick(u64::MAX);
        PauseWatch { clock, limit }
    }

    #[test]
    fn ticks_within_the_limit_are_no_pause() {
        let watch = watch_ticked_by_hand(Duration::from_secs(1));
        let since = Instant::now();
        watch.clock.tick(1_000);
        assert_eq!(watch.paused_since(since), None);
    }

    #[test]
    fn a_gap_without_ticks_is_a_pause_before_and_after_the_next_tick() {
        let watch = watch_ticked_by_hand(Duration::from_secs(1));
        let batch_started = Instant::now();
        // Frozen: the last tick was five seconds ago, and none has run since.
        let now = watch.clock.now_ms();
        watch
            .clock
            .last_tick_ms
            .store(now - 5_000, Ordering::Release);
        let paused = watch.paused_since(batch_started);
        assert!(
            paused.is_some_and(|p| p >= Duration::from_secs(5)),
            "{paused:?}"
        );
        // Thawed: the next tick records the gap. A batch that started
        // before it still sees the pause; one that starts later does not.
        watch.clock.tick(1_000);
        assert_eq!(watch.paused_since(batch_started), Some(watch.limit()));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(watch.paused_since(Instant::now()), None);
    }

    #[test]
    fn the_thread_ticks_and_ends_with_the_watch() {
        let watch = PauseWatch::start(Duration::from_secs(1));
        let weak = Arc::downgrade(&watch.clock);
        std::thread::sleep(TICK * 3);
        assert!(watch.clock.last_tick_ms.load(Ordering::Acquire) > 0);
        drop(watch);
        // The thread holds the clock only while it ticks.
        let deadline = Instant::now() + Duration::from_secs(2);
        while weak.upgrade().is_some() {
            assert!(Instant::now() < deadline, "the thread outlived its watch");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
