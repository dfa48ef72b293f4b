//! A limit on requests that fail the token check, per client IP, applied
//! before the check: once an IP has failed it more often than the burst
//! allows, its /v1 requests get 429 without any token being hashed or
//! compared, until its bucket refills. A client with a valid token is
//! never charged, but shares its IP's fate while that IP is over the limit
//! (behind NAT or a proxy, every client shares one IP).
//!
//! An IPv6 client is keyed by its /64, which one host usually owns whole.
//! Memory is bounded: at most `max_clients` IPs are tracked one by one;
//! IPs seen when the table is full, and it holds no entry that could be
//! forgotten (a full bucket is the same as none), share one overflow bucket.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A bucket's size and refill rate (the same shape as a token's limit,
/// kept apart so that this module does not import the token check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// How often a full table is searched for entries to forget, at most.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Per-IP buckets of failed token checks.
pub struct FailureLimiter {
    limit: RateLimit,
    max_clients: usize,
    state: Mutex<Table>,
}

struct Table {
    buckets: HashMap<IpAddr, Bucket>,
    overflow: Bucket,
    swept: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            refilled: now,
        }
    }

    fn refill(&mut self, limit: RateLimit, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(limit.per_second)).min(burst(limit));
        self.refilled = now;
    }
}

fn burst(limit: RateLimit) -> f64 {
    f64::from(limit.burst.max(1))
}

/// The key of a client: its IPv4 address, or the /64 of its IPv6 one.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

impl FailureLimiter {
    /// A `limit.per_second` of 0 turns the limit off.
    pub fn new(limit: RateLimit, max_clients: usize) -> Self {
        let now = Instant::now();
        Self {
            limit,
            max_clients: max_clients.max(1),
            state: Mutex::new(Table {
                buckets: HashMap::new(),
                overflow: Bucket::full(burst(limit), now),
                swept: None,
            }),
        }
    }

    /// `Err` with the seconds until it may try again when `ip` has no
    /// failure left; nothing is charged.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        if self.limit.per_second == 0 {
            return Ok(());
        }
        let mut guard = self.lock();
        let table = &mut *guard;
        let key = client_key(ip);
        let tracked = table.buckets.len();
        let bucket = match table.buckets.get_mut(&key) {
            Some(bucket) => bucket,
            // Untracked: a fresh bucket, or the overflow one when the table is full.
            None if tracked < self.max_clients => return Ok(()),
            None => &mut table.overflow,
        };
        bucket.refill(self.limit, now);
        if bucket.tokens >= 1.0 {
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / f64::from(self.limit.per_second);
            Err((wait.ceil() as u64).max(1))
        }
    }

    /// Charges one failed token check to `ip`.
    pub fn charge(&self, ip: IpAddr, now: Instant) {
        if self.limit.per_second == 0 {
            return;
        }
        let (limit, max) = (self.limit, self.max_clients);
        let mut table = self.lock();
        let key = client_key(ip);
        if !table.buckets.contains_key(&key) && table.buckets.len() >= max {
            table.sweep(limit, now);
        }
        let table = &mut *table;
        let bucket = if table.buckets.len() < max || table.buckets.contains_key(&key) {
            table
                .buckets
                .entry(key)
                .or_insert_with(|| Bucket::full(burst(limit), now))
        } else {
            &mut table.overflow
        };
        bucket.refill(limit, now);
        bucket.tokens = (bucket.tokens - 1.0).max(0.0);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // A poisoned lock only means a panic mid-update; the numbers stay usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.lock().buckets.len()
    }
}

impl Table {
    /// Forgets the buckets that have refilled, at most once per [`SWEEP_EVERY`]:
    /// a full table would otherwise be scanned on every failure.
    fn sweep(&mut self, limit: RateLimit, now: Instant) {
        if self
            .swept
            .is_some_and(|at| now.saturating_duration_since(at) < SWEEP_EVERY)
        {
            return;
        }
        self.swept = Some(now);
        let full = burst(limit);
        self.buckets.retain(|_, bucket| {
            bucket.refill(limit, now);
            bucket.tokens < full
        });
    }
}

#[cfg(test)]
#[path = "unauthenticated_tests.rs"]
mod tests;
