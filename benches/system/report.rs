//! The run's figures: one table on stdout and one JSON file under
//! `bench-results/`, whose top-level keys other tools read
//! (`consume_only_eps`, `write_only_eps`, `e2e_eps`, `cpu_us_per_event`,
//! `peak_rss_mib`, `e2e_latency_ms`, `query_idle`, `query_loaded`), with the
//! targets each ratio is held to.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::consume::Consumed;
use crate::latency::Latency;
use crate::process::Drained;
use crate::query::{Measured, QueryFigures};
use crate::write::Written;
use crate::Settings;

/// (c) over (b).
const TARGET_E2E_OVER_WRITE: f64 = 0.8;
const TARGET_CPU_US_PER_EVENT: f64 = 10.0;
const TARGET_PEAK_RSS_MIB: f64 = 256.0;
/// Input timestamp → result visible to a read_committed consumer, at half load.
const TARGET_RESULT_VISIBLE_P50_MS: f64 = 30.0;
const TARGET_RESULT_VISIBLE_P99_MS: f64 = 100.0;
/// Input timestamp → the projection answered by the API, at half load.
const TARGET_PROJECTION_VISIBLE_P99_MS: f64 = 250.0;
/// API p99 over raw CQL p99, same rows, same concurrency.
const TARGET_QUERY_P99_RATIO: f64 = 1.5;

#[derive(Debug, Default)]
pub struct Report {
    events_backlog: usize,
    partitions: i32,
    pub produce_eps: f64,
    events_applied: u64,
    e2e_seconds: f64,
    pub e2e_eps: f64,
    cpu_seconds: f64,
    cpu_us_per_event: f64,
    peak_rss_mib: f64,
    consume_only_eps: f64,
    write_only_eps: f64,
    write_statements: usize,
    pub latency: Option<Latency>,
    pub query_idle: Option<QueryFigures>,
    pub query_loaded: Option<QueryFigures>,
    hot_path: Option<Value>,
    /// (c) and (d) with `at_least_once` delivery, beside the main run's
    /// `exactly_once`.
    pub at_least_once: Option<ModeFigures>,
}

/// (c) and (d) of one delivery mode.
#[derive(Debug, Clone)]
pub struct ModeFigures {
    pub e2e_eps: f64,
    pub cpu_us_per_event: f64,
    pub peak_rss_mib: f64,
    pub latency: Latency,
}

impl ModeFigures {
    pub fn new(d: &Drained, latency: Latency) -> Self {
        let seconds = d.elapsed.as_secs_f64();
        Self {
            e2e_eps: d.events as f64 / seconds,
            cpu_us_per_event: d.cpu_seconds * 1e6 / d.events.max(1) as f64,
            peak_rss_mib: d.peak_rss_mib,
            latency,
        }
    }
}

impl Report {
    pub fn new(settings: &Settings) -> Report {
        Report {
            events_backlog: settings.events,
            partitions: settings.partitions,
            ..Report::default()
        }
    }

    pub fn set_end_to_end(&mut self, d: &Drained) {
        self.events_applied = d.events;
        self.e2e_seconds = d.elapsed.as_secs_f64();
        self.e2e_eps = d.events as f64 / self.e2e_seconds;
        self.cpu_seconds = d.cpu_seconds;
        self.cpu_us_per_event = d.cpu_seconds * 1e6 / d.events.max(1) as f64;
        self.peak_rss_mib = d.peak_rss_mib;
    }

    pub fn set_consume_only(&mut self, c: &Consumed) {
        self.consume_only_eps = c.events as f64 / c.elapsed.as_secs_f64();
    }

    pub fn set_write_only(&mut self, w: &Written) {
        self.write_only_eps = w.events as f64 / w.elapsed.as_secs_f64();
        self.write_statements = w.statements;
    }

    /// Folds in the per-event figures of `cargo bench --bench hot_path`, when
    /// that ran first (scripts/bench runs it).
    pub fn attach_hot_path(&mut self) {
        // Where benches/hot_path.rs writes it: the target directory.
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
        let path = target.join("bench-results/hot_path.json");
        self.hot_path = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok());
    }

    fn e2e_over_write(&self) -> f64 {
        self.e2e_eps / self.write_only_eps.max(f64::MIN_POSITIVE)
    }

    fn p99_ratio(
        figures: &Option<QueryFigures>,
        route: impl Fn(&QueryFigures) -> (&Measured, &Measured),
    ) -> f64 {
        figures
            .as_ref()
            .map(|f| {
                let (api, raw) = route(f);
                api.p99_ms / raw.p99_ms.max(f64::MIN_POSITIVE)
            })
            .unwrap_or(f64::NAN)
    }

    fn targets(&self) -> Value {
        let (order, sales): (Route, Route) = (order_route, sales_route);
        let check = |value: f64, target: f64, at_least: bool| {
            let met = if at_least {
                value >= target
            } else {
                value <= target
            };
            json!({ "value": value, "target": target, "met": met })
        };
        let latency = |f: fn(&Latency) -> f64| self.latency.as_ref().map_or(f64::NAN, f);
        json!({
            "e2e_over_write_only": check(self.e2e_over_write(), TARGET_E2E_OVER_WRITE, true),
            "cpu_us_per_event": check(self.cpu_us_per_event, TARGET_CPU_US_PER_EVENT, false),
            "peak_rss_mib": check(self.peak_rss_mib, TARGET_PEAK_RSS_MIB, false),
            "result_visible_p50_ms": check(latency(|l| l.result_visible.p50), TARGET_RESULT_VISIBLE_P50_MS, false),
            "result_visible_p99_ms": check(latency(|l| l.result_visible.p99), TARGET_RESULT_VISIBLE_P99_MS, false),
            "projection_visible_p99_ms": check(latency(|l| l.projection_visible.p99), TARGET_PROJECTION_VISIBLE_P99_MS, false),
            "query_p99_over_raw_cql": {
                "idle_order_by_id": check(Self::p99_ratio(&self.query_idle, order), TARGET_QUERY_P99_RATIO, false),
                "idle_sku_sales": check(Self::p99_ratio(&self.query_idle, sales), TARGET_QUERY_P99_RATIO, false),
                "loaded_order_by_id": check(Self::p99_ratio(&self.query_loaded, order), TARGET_QUERY_P99_RATIO, false),
                "loaded_sku_sales": check(Self::p99_ratio(&self.query_loaded, sales), TARGET_QUERY_P99_RATIO, false),
            },
        })
    }

    pub fn to_json(&self) -> Value {
        let latency = self.latency.as_ref();
        json!({
            "date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "git_revision": git_revision(),
            "machine": machine(),
            "backlog_events": self.events_backlog,
            "partitions_per_topic": self.partitions,
            "events_applied": self.events_applied,
            "produce_eps": self.produce_eps,
            "consume_only_eps": self.consume_only_eps,
            "write_only_eps": self.write_only_eps,
            "write_only_statements": self.write_statements,
            "e2e_eps": self.e2e_eps,
            "e2e_seconds": self.e2e_seconds,
            "cpu_seconds": self.cpu_seconds,
            "cpu_us_per_event": self.cpu_us_per_event,
            "peak_rss_mib": self.peak_rss_mib,
            "e2e_latency_ms": {
                "p50": latency.map(|l| l.p50_ms),
                "p99": latency.map(|l| l.p99_ms),
                "p999": latency.map(|l| l.p999_ms),
                "offered_eps": latency.map(|l| l.offered_eps),
                "events_sent": latency.map(|l| l.sent),
                "events_observed": latency.map(|l| l.observed),
                "batches": latency.map(|l| &l.breakdown),
            },
            "result_visible_ms": latency.map(|l| &l.result_visible),
            "projection_visible_ms": latency.map(|l| &l.projection_visible),
            "delivery": "exactly_once",
            "at_least_once": self.at_least_once.as_ref().map(|m| json!({
                "e2e_eps": m.e2e_eps,
                "cpu_us_per_event": m.cpu_us_per_event,
                "peak_rss_mib": m.peak_rss_mib,
                "e2e_latency_ms": {"p50": m.latency.p50_ms, "p99": m.latency.p99_ms, "p999": m.latency.p999_ms, "batches": &m.latency.breakdown},
                "result_visible_ms": &m.latency.result_visible,
                "projection_visible_ms": &m.latency.projection_visible,
            })),
            "exactly_once_over_at_least_once": self.at_least_once.as_ref()
                .map(|m| self.e2e_eps / m.e2e_eps.max(f64::MIN_POSITIVE)),
            "query_idle": self.query_idle,
            "query_loaded": self.query_loaded,
            "targets": self.targets(),
            "hot_path": self.hot_path,
        })
    }

    /// Writes the JSON as `bench-results/<date>-<revision>.json` and as
    /// `bench-results/latest.json`; returns the first path.
    pub fn save(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let json = self.to_json();
        let text = serde_json::to_string_pretty(&json).context("serializing the report")?;
        let stamp = chrono::Utc::now().format("%Y-%m-%dT%H%M%SZ");
        let path = dir.join(format!("{stamp}-{}.json", git_revision()));
        std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
        let latest = dir.join("latest.json");
        std::fs::write(&latest, &text).with_context(|| format!("writing {}", latest.display()))?;
        Ok(path)
    }

    pub fn table(&self) -> String {
        let mut t = String::new();
        let m = machine();
        let _ = writeln!(
            t,
            "\n== galley bench, {} cores, {} MiB, {} ({}), rev {}",
            m["cores"],
            m["memory_mib"],
            m["cpu"].as_str().unwrap_or("?"),
            chrono::Utc::now().format("%Y-%m-%d"),
            git_revision()
        );
        let _ = writeln!(
            t,
            "backlog {} events over {} partitions per input topic; galley applied {} (with the stock commands it feeds back to itself)",
            self.events_backlog, self.partitions, self.events_applied
        );
        let _ = writeln!(t, "| measure | value | target |");
        let _ = writeln!(t, "|---|---|---|");
        let _ = writeln!(
            t,
            "| (a) consume only | {:.0} events/s | |",
            self.consume_only_eps
        );
        let _ = writeln!(
            t,
            "| (b) write only | {:.0} events/s | |",
            self.write_only_eps
        );
        let _ = writeln!(
            t,
            "| (c) galley end to end | {:.0} events/s ({:.1} s) | |",
            self.e2e_eps, self.e2e_seconds
        );
        let _ = writeln!(
            t,
            "| (c)/(b) | {:.2} | ≥ {TARGET_E2E_OVER_WRITE} |",
            self.e2e_over_write()
        );
        let _ = writeln!(
            t,
            "| (c)/(a) | {:.2} | |",
            self.e2e_eps / self.consume_only_eps.max(f64::MIN_POSITIVE)
        );
        let _ = writeln!(
            t,
            "| galley CPU per event | {:.1} µs | ≤ {TARGET_CPU_US_PER_EVENT} µs |",
            self.cpu_us_per_event
        );
        let _ = writeln!(
            t,
            "| galley peak RSS | {:.0} MiB | ≤ {TARGET_PEAK_RSS_MIB} MiB |",
            self.peak_rss_mib
        );
        if let Some(l) = &self.latency {
            let _ = writeln!(
                t,
                "| (d) latency at {:.0} events/s: p50 / p99 / p99.9 | {:.1} / {:.1} / {:.1} ms | |",
                l.offered_eps, l.p50_ms, l.p99_ms, l.p999_ms
            );
            visible_rows(&mut t, "", l);
        }
        if let Some(m) = &self.at_least_once {
            let _ = writeln!(
                t,
                "| (c) at_least_once: events/s, CPU, peak RSS | {:.0} events/s, {:.1} µs/event, {:.0} MiB | |",
                m.e2e_eps, m.cpu_us_per_event, m.peak_rss_mib
            );
            let _ = writeln!(
                t,
                "| (c) exactly_once / at_least_once | {:.2} | ≥ 0.9 |",
                self.e2e_eps / m.e2e_eps.max(f64::MIN_POSITIVE)
            );
            let _ = writeln!(
                t,
                "| (d) at_least_once latency: p50 / p99 / p99.9 | {:.1} / {:.1} / {:.1} ms | |",
                m.latency.p50_ms, m.latency.p99_ms, m.latency.p999_ms
            );
            visible_rows(&mut t, "at_least_once ", &m.latency);
        }
        for (phase, figures) in [("idle", &self.query_idle), ("loaded", &self.query_loaded)] {
            let Some(f) = figures else { continue };
            for (route, api, raw) in [
                ("order by id", &f.order_by_id, &f.raw_cql.order_by_id),
                ("SKU sales", &f.sku_sales, &f.raw_cql.sku_sales),
            ] {
                let _ = writeln!(
                    t,
                    "| (e) {phase}, {route}, {} in flight: API / raw CQL | {:.0} / {:.0} rps, p50 {:.2} / {:.2} ms, p99 {:.2} / {:.2} ms (×{:.2}) | p99 ≤ ×{TARGET_QUERY_P99_RATIO} |",
                    f.concurrency, api.rps, raw.rps, api.p50_ms, raw.p50_ms, api.p99_ms, raw.p99_ms,
                    api.p99_ms / raw.p99_ms.max(f64::MIN_POSITIVE)
                );
            }
        }
        t
    }
}

/// The two outside-in latencies of one (d) phase, as table rows.
fn visible_rows(t: &mut String, mode: &str, l: &Latency) {
    let (r, p) = (&l.result_visible, &l.projection_visible);
    let _ = writeln!(
        t,
        "| (d) {mode}input → result visible (read_committed): p50 / p99 / p99.9 | {:.1} / {:.1} / {:.1} ms ({} results, {} untraced) | p50 ≤ {TARGET_RESULT_VISIBLE_P50_MS}, p99 ≤ {TARGET_RESULT_VISIBLE_P99_MS} ms |",
        r.p50, r.p99, r.p999, r.count, r.missed
    );
    let _ = writeln!(
        t,
        "| (d) {mode}input → order answered by the API: p50 / p99 | {:.1} / {:.1} ms ({} probes, {} not answered) | p99 ≤ {TARGET_PROJECTION_VISIBLE_P99_MS} ms |",
        p.p50, p.p99, p.count, p.missed
    );
}

/// A route's API figures and the raw CQL figures of the same reads.
type Route = fn(&QueryFigures) -> (&Measured, &Measured);

fn order_route(f: &QueryFigures) -> (&Measured, &Measured) {
    (&f.order_by_id, &f.raw_cql.order_by_id)
}

fn sales_route(f: &QueryFigures) -> (&Measured, &Measured) {
    (&f.sku_sales, &f.raw_cql.sku_sales)
}

fn git_revision() -> String {
    let run = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let rev = run(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty =
        run(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{rev}-dirty")
    } else {
        rev
    }
}

fn machine() -> Value {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_mib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib / 1024);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string());
    json!({ "cores": cores, "memory_mib": memory_mib, "cpu": cpu })
}
