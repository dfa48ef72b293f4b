//! The fault suite: galley against a real Kafka broker and a real CQL
//! database while they fail. Every scenario sends a seeded stream, checks
//! every projection row against the independent fold and every published
//! event, payload and all, and prints its figures (sent, applied, rejected,
//! dead-lettered, projection mismatches, duplicate result events, recovery
//! time).
//!
//! Scenarios stop and start the servers, so they run one at a time and only
//! against a stack of their own: `make faults` (scripts/faults) brings one up
//! on other ports and runs `cargo test --test faults -- --test-threads=1`.
//! `cargo test --all-targets` does not build this target (`test = false`).

#[allow(dead_code)]
#[path = "../integration/support/mod.rs"]
mod support;

mod hostile;
mod outages;
mod reconnect;
mod streams;

use std::process::Command;
use std::time::{Duration, Instant};

use galley::config::TopicsConfig;
use galley::shop::generator::GeneratedMessage;

use support::process::{http_get, GalleyProcess};
use support::scenario::{save_report, Report};

/// Refuses to run against the shared stack of `make test`: the suite stops
/// servers, which would break every test running there.
fn require_fault_stack() {
    let dir = std::env::var("STACK_DIR").unwrap_or_default();
    assert!(
        dir.ends_with(".stack-faults"),
        "the fault suite stops and starts Kafka and the database: run it with `make faults` \
         (scripts/faults), which gives it a stack of its own (STACK_DIR=.stack-faults); \
         STACK_DIR is {dir:?}"
    );
}

/// `scripts/stack <action> <component>` on the fault stack (the environment
/// scripts/faults exported names its folder and ports).
fn stack(action: &str, component: &str) -> Duration {
    let started = Instant::now();
    let status = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/stack"))
        .args([action, component])
        .status()
        .expect("run scripts/stack");
    assert!(
        status.success(),
        "scripts/stack {action} {component} failed"
    );
    started.elapsed()
}

/// Sends a stream whose messages may wait out a broker outage, the way a
/// careful upstream application does: whatever its producer could not
/// deliver is sent again, in order, by a new producer. A producer can fail
/// every message it holds after the broker comes back: it can turn fatal
/// (an out of order sequence number, librdkafka issue 3584), or lose track
/// of the broker until it re-bootstraps (galley's clients, this one
/// included, re-bootstrap after 10 s; see `kafka::base_config`). What
/// failed, and why, is printed and kept with the figures; galley's own
/// handling of the same events is what the scenarios check.
async fn produce_patiently(
    topics: TopicsConfig,
    messages: Vec<GeneratedMessage>,
    rate: u32,
) -> usize {
    let mut remaining = messages;
    let mut acknowledged = 0;
    for round in 1..=3 {
        let outcome = support::scenario::send_with_new_producer(
            &topics,
            &remaining,
            rate,
            Duration::from_secs(120),
        )
        .await;
        acknowledged += outcome.acknowledged;
        if outcome.unacknowledged.is_empty() {
            return acknowledged;
        }
        let line = format!(
            "[upstream producer] round {round}: {} of {} messages not acknowledged ({:?}); \
             sending them again with a new producer\n",
            outcome.unacknowledged.len(),
            remaining.len(),
            outcome.failures
        );
        print!("{line}");
        save_report("faults-upstream-producer", &line);
        let mut index = outcome.unacknowledged.into_iter().peekable();
        remaining = remaining
            .into_iter()
            .enumerate()
            .filter(|(i, _)| index.next_if_eq(i).is_some())
            .map(|(_, m)| m)
            .collect();
    }
    panic!(
        "{} messages were still not acknowledged after three producers",
        remaining.len()
    );
}

/// The figures every scenario prints, and keeps for scripts/faults to show.
struct Figures<'a> {
    name: &'a str,
    report: &'a Report,
    /// What recovery means for this scenario, and how long it took.
    recovery: Option<(String, Duration)>,
    extra: Vec<String>,
}

impl Figures<'_> {
    fn print(&self, elapsed: Duration) {
        let r = self.report;
        let recovery = match &self.recovery {
            Some((what, d)) => format!("{:.1}s ({what})", d.as_secs_f64()),
            None => "n/a".into(),
        };
        let mut text = format!(
            "[{}] events_sent={} applied={} rejected={} dead_lettered={} duplicates_skipped={} \
             projection_mismatches={} duplicate_result_events={} missing_result_events={} \
             unexpected_result_events={} mismatched_result_events={} dead_letter_problems={} \
             recovery={recovery} elapsed={:.1}s\n",
            self.name,
            r.sent,
            r.applied,
            r.rejected,
            r.dead_lettered,
            r.duplicates_skipped,
            r.mismatches.len(),
            r.duplicate_events,
            r.missing_events.len(),
            r.unexpected_events.len(),
            r.mismatched_events.len(),
            r.dead_letter_problems.len(),
            elapsed.as_secs_f64(),
        );
        for line in &self.extra {
            text.push_str(&format!("[{}] {line}\n", self.name));
        }
        print!("{text}");
        save_report(&format!("faults-{}", self.name), &text);
    }
}

/// GETs an admin path; (status, body), or None while nothing answers.
async fn admin_get(galley: &GalleyProcess, path: &str) -> Option<(u16, String)> {
    http_get(galley.admin, path).await
}

/// Polls /readyz until it answers 200; returns how long that took.
async fn wait_ready_again(galley: &mut GalleyProcess, timeout: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if let Some((200, _)) = admin_get(galley, "/readyz").await {
            return started.elapsed();
        }
        if !galley.is_running() {
            panic!(
                "galley exited ({}); log:\n{}",
                galley.exit_status(),
                galley.log_tail(40)
            );
        }
        assert!(
            started.elapsed() < timeout,
            "/readyz did not return to 200 within {timeout:?}; log:\n{}",
            galley.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until galley has applied at least `events` input events: the point
/// at which a fault lands mid-stream, whatever the machine's speed.
async fn wait_applied(galley: &GalleyProcess, events: f64, timeout: Duration) {
    galley
        .wait_metric_at_least("galley_events_applied_total", events, timeout)
        .await;
}

/// Peak resident set size of a process, from /proc (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}
