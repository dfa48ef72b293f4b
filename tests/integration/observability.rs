//! What operators see, checked against the real stack: after galley has
//! processed a generated stream, the counters it exports equal what an
//! independent fold of the input topics says happened, the lag gauges return
//! to zero, the exposition passes `promtool check metrics`, and every metric
//! the dashboard and the alert rules query is one galley exports. The alert
//! rules pass `promtool check rules` and their own unit tests, and secrets
//! never reach `check-config` output or the logs.
//!
//! promtool comes from Debian's prometheus package, which `scripts/prereqs`
//! installs; without it these tests fail and say so rather than skip.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use galley::telemetry::{self as t, Kind};

use crate::support::fold::{Destination, Expected};
use crate::support::process::{http_get, GalleyEnv, GalleyProcess};
use crate::support::scenario::Scenario;

const INPUT_PARTITIONS: i32 = 6;
/// Counters move when a batch commits and lag is refreshed every 500 ms here;
/// this bounds how long a correct galley can take to show it.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
const SASL_PASSWORD: &str = "kafka-s3cret-do-not-log";
const CQL_PASSWORD: &str = "cql-hunter2-do-not-log";

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

// ---------------------------------------------------------------------------
// The Prometheus text exposition, parsed just enough to check it.

/// One sample line: `name{label="value",...} value`.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

#[derive(Debug, Default)]
struct Exposition {
    samples: Vec<Sample>,
    /// Metric family name → type, from the `# TYPE` lines.
    types: BTreeMap<String, String>,
    /// Families with a `# HELP` line.
    helped: BTreeSet<String>,
}

impl Exposition {
    fn parse(text: &str) -> Result<Self, String> {
        let mut out = Exposition::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest
                    .split_once(' ')
                    .ok_or_else(|| format!("line {}: bad TYPE: {line}", n + 1))?;
                out.types.insert(name.to_string(), kind.to_string());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or_default();
                out.helped.insert(name.to_string());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            out.samples
                .push(parse_sample(line).map_err(|e| format!("line {}: {e}: {line}", n + 1))?);
        }
        Ok(out)
    }

    /// The family a sample belongs to: histogram series drop their suffix.
    fn family(&self, sample_name: &str) -> String {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = sample_name.strip_suffix(suffix) {
                if self.types.get(base).map(String::as_str) == Some("histogram") {
                    return base.to_string();
                }
            }
        }
        sample_name.to_string()
    }

    fn series<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// Sums a metric by the values of one label.
    fn sum_by(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for s in self.series(name) {
            let key = s.labels.get(label).cloned().unwrap_or_default();
            *out.entry(key).or_insert(0.0) += s.value;
        }
        out
    }

    fn sum(&self, name: &str) -> f64 {
        // Starting from +0.0 prints an empty sum as 0, not -0.
        self.series(name).fold(0.0, |acc, s| acc + s.value)
    }

    /// The value of the one series of `name` with exactly these labels.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.series(name)
            .find(|s| {
                s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| "no value".to_string())?;
    let name = line[..name_end].to_string();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let mut key = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '}' => {
                    end = Some(i);
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    if chars.next().map(|(_, c)| c) != Some('"') {
                        return Err("label value not quoted".into());
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '\\')) => match chars.next() {
                                Some((_, 'n')) => value.push('\n'),
                                Some((_, c)) => value.push(c),
                                None => return Err("dangling escape".into()),
                            },
                            Some((_, '"')) => break,
                            Some((_, c)) => value.push(c),
                            None => return Err("unterminated label value".into()),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                c => key.push(c),
            }
        }
        let end = end.ok_or_else(|| "unterminated label set".to_string())?;
        rest = &inner[end + 1..];
    }
    let value_text = rest
        .split_whitespace()
        .next()
        .ok_or_else(|| "no value".to_string())?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().map_err(|e| format!("value {v}: {e}"))?,
    };
    Ok(Sample {
        name,
        labels,
        value,
    })
}

async fn scrape(galley: &GalleyProcess) -> (String, Exposition) {
    let (status, body) = http_get(galley.admin, "/metrics")
        .await
        .expect("the admin listener answers /metrics");
    assert_eq!(status, 200, "{body}");
    let exposition = Exposition::parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    (body, exposition)
}

// ---------------------------------------------------------------------------
// promtool

/// Runs promtool; a missing promtool fails the test with the way to get it.
fn promtool(args: &[&str], stdin: Option<&str>, dir: &Path) -> (bool, String) {
    use std::io::Write;
    let spawned = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => panic!(
            "cannot run promtool ({e}). It comes with Debian's prometheus package: \
             run scripts/prereqs as root (or `sudo apt-get install --no-install-recommends \
             prometheus`), then run the tests again"
        ),
    };
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .expect("write the exposition to promtool");
    }
    let output = child.wait_with_output().expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

// ---------------------------------------------------------------------------
// Metric names in dashboards and rules.

/// Every `galley_…` metric name in a PromQL expression.
fn galley_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(found) = expr[i..].find("galley_") {
        let start = i + found;
        let preceded_by_word = start > 0
            && (bytes[start - 1].is_ascii_alphanumeric()
                || bytes[start - 1] == b'_'
                || bytes[start - 1] == b':');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if !preceded_by_word {
            out.insert(expr[start..end].to_string());
        }
        i = end;
    }
    out
}

/// Resolves a queried name to galley's metric definition: histogram series
/// may carry `_bucket`, `_sum` or `_count`, nothing else may.
fn definition_of(queried: &str) -> Option<&'static t::MetricDef> {
    if let Some(def) = t::metric(queried) {
        return Some(def);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        queried
            .strip_suffix(suffix)
            .and_then(t::metric)
            .filter(|def| def.kind == Kind::Histogram)
    })
}

fn dashboard() -> serde_json::Value {
    let path = repo_path("deploy/grafana/dashboards/galley.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every PromQL expression of the dashboard: panel targets and variable queries.
fn dashboard_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", serde_json::Value::String(s))
                    | ("definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    ("query", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                dashboard_exprs(v, out);
            }
        }
        _ => {}
    }
}

fn dashboard_metric_names() -> BTreeSet<String> {
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard(), &mut exprs);
    exprs.iter().flat_map(|e| galley_names(e)).collect()
}

/// Every `expr:` of the alert rules (block scalars included).
fn alert_exprs() -> Vec<String> {
    let path = repo_path("deploy/prometheus/alerts.yml");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some((indent, rest)) = line
            .find("expr:")
            .map(|i| (i, line[i + "expr:".len()..].trim()))
        else {
            continue;
        };
        if rest == "|" || rest == ">" || rest == "|-" || rest == ">-" {
            let mut block = String::new();
            while let Some(next) = lines.peek() {
                let next_indent = next.len() - next.trim_start().len();
                if !next.trim().is_empty() && next_indent <= indent {
                    break;
                }
                block.push_str(next.trim());
                block.push('\n');
                lines.next();
            }
            out.push(block);
        } else {
            out.push(rest.to_string());
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The stream test.

/// What the counters should read, from the fold, as (metric, key) → value.
fn expected_counters(expected: &Expected, env: &GalleyEnv) -> BTreeMap<(String, String), f64> {
    let mut out: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut add = |metric: &str, key: String, n: usize| {
        *out.entry((metric.to_string(), key)).or_insert(0.0) += n as f64;
    };
    let mut inputs = 0;
    for ((outcome, event_type), n) in &expected.counts {
        inputs += n;
        let metric = match outcome.as_str() {
            "applied" => t::EVENTS_APPLIED_TOTAL,
            "rejected" => t::EVENTS_REJECTED_TOTAL,
            "duplicate" => t::EVENTS_DUPLICATE_TOTAL,
            "dead_lettered" => t::EVENTS_DEAD_LETTERED_TOTAL,
            other => panic!("the fold has an outcome galley does not count: {other}"),
        };
        add(metric, format!("event_type={event_type}"), *n);
    }
    add(t::EVENTS_CONSUMED_TOTAL, "all".into(), inputs);
    for (reason, n) in &expected.rejections {
        add(t::EVENTS_REJECTED_TOTAL, format!("reason={reason}"), *n);
    }
    for class in expected.dead_letters.values() {
        add(
            t::EVENTS_DEAD_LETTERED_TOTAL,
            format!("error_class={class}"),
            1,
        );
    }
    for kind in expected.emitted.values().map(crate::support::fold::kind_of) {
        let topic = match kind.destination {
            Destination::Results => &env.topics.results,
            Destination::Orders => &env.topics.orders,
            Destination::Inventory => &env.topics.inventory,
        };
        add(
            t::EVENTS_PUBLISHED_TOTAL,
            format!("{topic}/{}", kind.event_type),
            1,
        );
    }
    add(
        t::EVENTS_PUBLISHED_TOTAL,
        format!("{}/DeadLetter", env.topics.dead_letter),
        expected.dead_letters.len(),
    );
    out
}

/// What the counters read, in the same shape as [`expected_counters`].
fn scraped_counters(e: &Exposition) -> BTreeMap<(String, String), f64> {
    let mut out: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut put = |metric: &str, key: String, v: f64| {
        if v != 0.0 {
            *out.entry((metric.to_string(), key)).or_insert(0.0) += v;
        }
    };
    for metric in [
        t::EVENTS_APPLIED_TOTAL,
        t::EVENTS_REJECTED_TOTAL,
        t::EVENTS_DUPLICATE_TOTAL,
        t::EVENTS_DEAD_LETTERED_TOTAL,
    ] {
        for (event_type, v) in e.sum_by(metric, "event_type") {
            put(metric, format!("event_type={event_type}"), v);
        }
    }
    put(
        t::EVENTS_CONSUMED_TOTAL,
        "all".into(),
        e.sum(t::EVENTS_CONSUMED_TOTAL),
    );
    for (reason, v) in e.sum_by(t::EVENTS_REJECTED_TOTAL, "reason") {
        put(t::EVENTS_REJECTED_TOTAL, format!("reason={reason}"), v);
    }
    for (class, v) in e.sum_by(t::EVENTS_DEAD_LETTERED_TOTAL, "error_class") {
        put(
            t::EVENTS_DEAD_LETTERED_TOTAL,
            format!("error_class={class}"),
            v,
        );
    }
    for s in e.series(t::EVENTS_PUBLISHED_TOTAL) {
        let topic = s.labels.get("topic").cloned().unwrap_or_default();
        let event_type = s.labels.get("event_type").cloned().unwrap_or_default();
        put(
            t::EVENTS_PUBLISHED_TOTAL,
            format!("{topic}/{event_type}"),
            s.value,
        );
    }
    out
}

fn differences(
    expected: &BTreeMap<(String, String), f64>,
    actual: &BTreeMap<(String, String), f64>,
) -> Vec<String> {
    let keys: BTreeSet<_> = expected.keys().chain(actual.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let want = expected.get(k).copied().unwrap_or(0.0);
            let got = actual.get(k).copied().unwrap_or(0.0);
            (want != got).then(|| format!("{} {{{}}}: scraped {got}, expected {want}", k.0, k.1))
        })
        .collect()
}

/// Lag gauges that are missing or not zero, for every input partition.
fn lag_not_zero(e: &Exposition, env: &GalleyEnv) -> Vec<String> {
    let mut problems = Vec::new();
    for topic in [&env.topics.orders, &env.topics.inventory] {
        for partition in 0..INPUT_PARTITIONS {
            let p = partition.to_string();
            for metric in [t::CONSUMER_LAG_RECORDS, t::CONSUMER_LAG_SECONDS] {
                match e.value(metric, &[("topic", topic), ("partition", &p)]) {
                    Some(0.0) => {}
                    Some(v) => problems.push(format!("{metric}{{{topic}[{p}]}} = {v}")),
                    None => problems.push(format!("{metric}{{{topic}[{p}]}} missing")),
                }
            }
        }
    }
    problems
}

/// Every series carries only the labels its definition allows, with values
/// from small sets: no ids, no error text.
fn label_problems(e: &Exposition, env: &GalleyEnv) -> Vec<String> {
    let topics: BTreeSet<&str> = [
        env.topics.orders.as_str(),
        env.topics.inventory.as_str(),
        env.topics.results.as_str(),
        env.topics.dead_letter.as_str(),
    ]
    .into();
    let mut problems = Vec::new();
    for s in &e.samples {
        if !s.name.starts_with("galley_") {
            continue;
        }
        let family = e.family(&s.name);
        let Some(def) = t::metric(&family) else {
            problems.push(format!(
                "{family} is exported but not defined in telemetry::METRICS"
            ));
            continue;
        };
        for (key, value) in &s.labels {
            let allowed =
                def.labels.contains(&key.as_str()) || (key == "le" && def.kind == Kind::Histogram);
            if !allowed {
                problems.push(format!("{}: label {key} is not declared", s.name));
            }
            let bounded = match key.as_str() {
                "topic" => topics.contains(value.as_str()),
                "partition" => value
                    .parse::<i32>()
                    .is_ok_and(|p| (0..INPUT_PARTITIONS).contains(&p)),
                "status_class" => ["1xx", "2xx", "3xx", "4xx", "5xx"].contains(&value.as_str()),
                "listener" => ["api", "admin"].contains(&value.as_str()),
                "kind" => ["assign", "revoke"].contains(&value.as_str()),
                "step" => ["check", "restore", "prepare", "publish", "write", "sink"]
                    .contains(&value.as_str()),
                // Class, type, reason and statement names are code identifiers.
                _ => value.len() <= 64 && !value.contains(' '),
            };
            if !bounded {
                problems.push(format!(
                    "{}: {key}=\"{value}\" is not from a fixed set",
                    s.name
                ));
            }
        }
    }
    for (family, kind) in &e.types {
        if let Some(def) = t::metric(family) {
            let want = match def.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            if kind != want {
                problems.push(format!("{family} is a {kind}, defined as a {want}"));
            }
        }
        if family.starts_with("galley_") && !e.helped.contains(family) {
            problems.push(format!("{family} has no HELP"));
        }
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_metrics_equal_the_fold_and_lag_returns_to_zero() {
    let started = Instant::now();
    let mut scenario = Scenario::new("obs").await;
    let extra = &mut scenario.env.extra;
    extra.insert(
        "GALLEY_PIPELINE__LAG_REFRESH_INTERVAL".into(),
        "500ms".into(),
    );
    // Set but unused (no username, no SASL): they must still never be printed.
    extra.insert("GALLEY_KAFKA__SASL_PASSWORD".into(), SASL_PASSWORD.into());
    extra.insert("GALLEY_CQL__PASSWORD".into(), CQL_PASSWORD.into());
    let mut galley = GalleyProcess::spawn(&scenario.env, "obs");
    galley.wait_ready(Duration::from_secs(60)).await;

    let messages = scenario.generate(4_000, 31);
    let sent = scenario.produce(messages, 4_000).await;
    scenario.wait_caught_up(&mut [&mut galley]).await;
    let report = scenario.verify(sent).await;
    report.assert_exact();
    let expected = &report.expected;
    let want = expected_counters(expected, &scenario.env);
    assert!(
        want.keys().any(|(m, _)| m == t::EVENTS_DEAD_LETTERED_TOTAL)
            && want.keys().any(|(m, _)| m == t::EVENTS_REJECTED_TOTAL),
        "the stream holds poison and rejections: {want:?}"
    );

    // Counters move when batches commit; lag when the tracker next looks.
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let (body, exposition) = loop {
        let (body, exposition) = scrape(&galley).await;
        let mut problems = differences(&want, &scraped_counters(&exposition));
        problems.extend(lag_not_zero(&exposition, &scenario.env));
        if problems.is_empty() {
            break (body, exposition);
        }
        assert!(
            Instant::now() < deadline,
            "after {SETTLE_TIMEOUT:?} the metrics still disagree with the fold:\n{}\n\nlog:\n{}",
            problems.join("\n"),
            galley.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let inputs = want[&(t::EVENTS_CONSUMED_TOTAL.to_string(), "all".to_string())];
    let figures = format!(
        "[observability] inputs={inputs} applied={} rejected={} duplicate={} dead_lettered={} \
         lag=0 on {} partitions, {:.1}s in all\n",
        exposition.sum(t::EVENTS_APPLIED_TOTAL),
        exposition.sum(t::EVENTS_REJECTED_TOTAL),
        exposition.sum(t::EVENTS_DUPLICATE_TOTAL),
        exposition.sum(t::EVENTS_DEAD_LETTERED_TOTAL),
        2 * INPUT_PARTITIONS,
        started.elapsed().as_secs_f64(),
    );
    print!("{figures}");
    // Test output is captured; scripts/test prints these files after the run.
    crate::support::scenario::save_report("observability", &figures);

    // Every processed event was timed end to end and counted in a batch.
    assert_eq!(
        exposition.sum(&format!("{}_count", t::END_TO_END_LATENCY_SECONDS)),
        inputs,
        "one end-to-end latency per processed event"
    );
    assert_eq!(
        exposition.sum(&format!("{}_sum", t::BATCH_SIZE_EVENTS)),
        inputs,
        "batch sizes add up to the events processed"
    );
    // The process's own state.
    assert_eq!(exposition.value(t::READY, &[]), Some(1.0), "galley_ready");
    assert_eq!(
        exposition.value(t::PARTITIONS_OWNED, &[]),
        Some(f64::from(2 * INPUT_PARTITIONS))
    );
    assert_eq!(exposition.value(t::EVENTS_IN_FLIGHT, &[]), Some(0.0));
    assert_eq!(
        exposition.value(t::BUILD_INFO, &[("version", env!("CARGO_PKG_VERSION"))]),
        Some(1.0)
    );
    assert_eq!(exposition.sum(t::DB_ERRORS_TOTAL), 0.0);
    assert_eq!(exposition.sum(t::PUBLISH_ERRORS_TOTAL), 0.0);
    assert_eq!(exposition.sum(t::BATCH_RETRIES_TOTAL), 0.0);
    assert!(
        exposition
            .value(
                t::HTTP_REQUESTS_TOTAL,
                &[
                    ("listener", "admin"),
                    ("route", "/readyz"),
                    ("method", "GET"),
                    ("status_class", "2xx")
                ]
            )
            .is_some_and(|n| n >= 1.0),
        "/readyz requests are counted by route and status class"
    );
    // Every order and reservation of the stream is new: none is read, the
    // partitions' recorded keys answer for them.
    assert!(
        exposition
            .value(t::ROW_READS_SKIPPED_TOTAL, &[])
            .is_some_and(|n| n > 0.0),
        "reads of rows never written are skipped"
    );
    for statement in [
        "select_row_keys",
        "insert_row_keys",
        "upsert_order",
        "write_inventory",
    ] {
        let count = exposition.value(
            &format!("{}_count", t::DB_STATEMENT_DURATION_SECONDS),
            &[("statement", statement)],
        );
        assert!(count.is_some_and(|n| n > 0.0), "{statement} is timed");
        assert_eq!(
            exposition.value(t::DB_ERRORS_TOTAL, &[("statement", statement)]),
            Some(0.0),
            "{statement}'s error series exists at zero, for increase() in alerts"
        );
    }

    // Each committed transaction times its parts: what the commit waited
    // for, then the commit itself.
    let committed = exposition
        .value(t::TRANSACTIONS_TOTAL, &[("outcome", "committed")])
        .unwrap_or(0.0);
    assert!(committed > 0.0, "transactions were committed");
    for call in ["records", "changelog", "offsets", "commit"] {
        let timed = exposition
            .value(
                &format!("{}_count", t::TRANSACTION_CALL_DURATION_SECONDS),
                &[("call", call)],
            )
            .unwrap_or(0.0);
        assert!(
            timed >= committed,
            "{call}: timed {timed} times, {committed} transactions committed"
        );
    }

    let problems = label_problems(&exposition, &scenario.env);
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The exposition is valid and lint-clean for Prometheus.
    let (ok, output) = promtool(&["check", "metrics"], Some(&body), &repo_path("."));
    assert!(ok, "promtool check metrics:\n{output}\n---\n{body}");

    // Everything the dashboard and the alerts query is exported.
    let exported: BTreeSet<String> = exposition.types.keys().cloned().collect();
    let mut queried = dashboard_metric_names();
    queried.extend(alert_exprs().iter().flat_map(|e| galley_names(e)));
    let missing: Vec<String> = queried
        .iter()
        .filter(|name| {
            let family = definition_of(name).map(|d| d.name.to_string());
            !family.is_some_and(|f| exported.contains(&f))
        })
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "queried by the dashboard or alerts but not exported: {missing:?}"
    );

    // One warning per dead letter, naming its origin; no secret anywhere in the log.
    let log = std::fs::read_to_string(&galley.log).expect("galley's log");
    let mut warned: BTreeSet<(String, i32, i64)> = BTreeSet::new();
    for line in log.lines() {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let fields = &entry["fields"];
        if fields["message"] == "poison event sent to the dead-letter topic" {
            assert_eq!(entry["level"], "WARN", "{line}");
            assert!(fields["error_class"].is_string(), "{line}");
            warned.insert((
                fields["topic"].as_str().unwrap_or_default().to_string(),
                fields["partition"].as_i64().unwrap_or(-1) as i32,
                fields["offset"].as_i64().unwrap_or(-1),
            ));
        }
        if matches!(entry["level"].as_str(), Some("WARN" | "ERROR")) {
            assert!(
                !line.contains(SASL_PASSWORD) && !line.contains(CQL_PASSWORD),
                "a secret was logged: {line}"
            );
        }
    }
    let dead: BTreeSet<(String, i32, i64)> = expected.dead_letters.keys().cloned().collect();
    assert_eq!(
        warned, dead,
        "one warning per dead letter, with topic, partition, offset"
    );
    assert!(
        !log.contains(SASL_PASSWORD) && !log.contains(CQL_PASSWORD),
        "a secret reached the log"
    );
}

// ---------------------------------------------------------------------------
// Files: alert rules, dashboard, configuration.

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let dir = repo_path("deploy/prometheus");
    let (ok, output) = promtool(&["check", "rules", "alerts.yml"], None, &dir);
    assert!(ok, "promtool check rules:\n{output}");
    let (ok, output) = promtool(&["test", "rules", "alerts.test.yml"], None, &dir);
    assert!(ok, "promtool test rules:\n{output}");
    // prometheus.yml loads the rules (rule_files) and is itself valid.
    let (ok, output) = promtool(&["check", "config", "prometheus.yml"], None, &dir);
    assert!(ok, "promtool check config:\n{output}");
    assert!(output.contains("1 rule files found"), "{output}");

    // The rules cover what operators asked for, on metrics galley defines.
    let exprs = alert_exprs();
    let names: BTreeSet<String> = exprs.iter().flat_map(|e| galley_names(e)).collect();
    for name in &names {
        assert!(
            definition_of(name).is_some(),
            "{name} is not a galley metric"
        );
    }
    for needed in [
        t::CONSUMER_LAG_RECORDS,
        t::EVENTS_DEAD_LETTERED_TOTAL,
        t::READY,
        t::DB_ERRORS_TOTAL,
    ] {
        assert!(names.contains(needed), "no alert on {needed}");
    }
    assert!(
        exprs.iter().any(|e| e.contains("up{job=\"galley\"}")),
        "no alert when galley cannot be scraped"
    );
}

#[test]
fn dashboard_parses_and_queries_only_galley_metrics() {
    let dash = dashboard();
    assert!(
        dash["schemaVersion"].as_i64().is_some_and(|v| v >= 39),
        "a Grafana 11 dashboard (schemaVersion 39 or later)"
    );
    assert_eq!(dash["uid"], "galley");
    let panels = dash["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut titles = Vec::new();
    for panel in panels {
        let id = panel["id"].as_i64().expect("every panel has an id");
        assert!(ids.insert(id), "panel id {id} is used twice");
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().unwrap_or_default();
        titles.push(title.to_string());
        assert_eq!(
            panel["datasource"]["uid"], "prometheus",
            "{title}: the provisioned datasource"
        );
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        assert!(!targets.is_empty(), "{title} has no query");
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_default();
            assert!(!galley_names(expr).is_empty(), "{title}: {expr}");
        }
    }

    let names = dashboard_metric_names();
    for name in &names {
        assert!(
            definition_of(name).is_some(),
            "the dashboard queries {name}, which galley does not define"
        );
    }
    // The views the issue asks for.
    for needed in [
        t::EVENTS_APPLIED_TOTAL,
        t::EVENTS_REJECTED_TOTAL,
        t::EVENTS_DEAD_LETTERED_TOTAL,
        t::CONSUMER_LAG_RECORDS,
        t::CONSUMER_LAG_SECONDS,
        t::END_TO_END_LATENCY_SECONDS,
        t::HANDLER_DURATION_SECONDS,
        t::DB_STATEMENT_DURATION_SECONDS,
        t::DB_ERRORS_TOTAL,
        t::HTTP_REQUESTS_TOTAL,
        t::HTTP_REQUEST_DURATION_SECONDS,
        t::READY,
        t::PARTITIONS_OWNED,
        t::EVENTS_IN_FLIGHT,
        t::BATCH_SIZE_EVENTS,
    ] {
        assert!(
            names
                .iter()
                .any(|n| definition_of(n).is_some_and(|d| d.name == needed)),
            "the dashboard does not show {needed}"
        );
    }
    let mut exprs = Vec::new();
    dashboard_exprs(&dash, &mut exprs);
    for quantile in ["histogram_quantile(0.5,", "histogram_quantile(0.99,"] {
        assert!(
            exprs.iter().any(|e| e.contains(quantile)
                && e.contains(&format!("{}_bucket", t::END_TO_END_LATENCY_SECONDS))),
            "end-to-end latency {quantile}"
        );
    }

    // docker-compose.yml provisions it, with the datasource its panels name.
    let compose = std::fs::read_to_string(repo_path("docker-compose.yml")).expect("compose");
    let provider = std::fs::read_to_string(repo_path(
        "deploy/grafana/provisioning/dashboards/galley.yml",
    ))
    .expect("dashboard provider");
    let datasource = std::fs::read_to_string(repo_path(
        "deploy/grafana/provisioning/datasources/prometheus.yml",
    ))
    .expect("datasource");
    assert!(compose.contains("./deploy/grafana/dashboards:/var/lib/grafana/dashboards"));
    assert!(compose.contains("./deploy/grafana/provisioning:/etc/grafana/provisioning"));
    assert!(compose.contains("./deploy/prometheus:/etc/prometheus"));
    assert!(provider.contains("path: /var/lib/grafana/dashboards"));
    assert!(datasource.contains("uid: prometheus"));
}

#[test]
fn check_config_prints_no_secret() {
    let output = Command::new(env!("CARGO_BIN_EXE_galley"))
        .arg("check-config")
        .env(
            "GALLEY_CONFIG",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/galley.toml"),
        )
        .env("GALLEY_KAFKA__SECURITY_PROTOCOL", "sasl_ssl")
        .env("GALLEY_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
        .env("GALLEY_KAFKA__SASL_USERNAME", "galley")
        .env("GALLEY_KAFKA__SASL_PASSWORD", SASL_PASSWORD)
        .env("GALLEY_CQL__USERNAME", "galley")
        .env("GALLEY_CQL__PASSWORD", CQL_PASSWORD)
        .output()
        .expect("run galley check-config");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(
        !text.contains(SASL_PASSWORD) && !text.contains(CQL_PASSWORD),
        "check-config printed a secret:\n{text}"
    );
    assert!(text.contains("SCRAM-SHA-512"), "the rest is shown: {text}");
    assert!(
        text.contains("<redacted>"),
        "secrets show as redacted: {text}"
    );
}

#[test]
fn metric_names_in_queries_are_found() {
    let names = galley_names(
        "histogram_quantile(0.99, sum by (le) (rate(galley_end_to_end_latency_seconds_bucket{job=~\"$job\"}[5m]))) \
         / sum(my_galley_other) + galley_ready",
    );
    let want: BTreeSet<String> = [
        "galley_end_to_end_latency_seconds_bucket".to_string(),
        "galley_ready".to_string(),
    ]
    .into();
    assert_eq!(names, want);
    assert_eq!(
        definition_of("galley_end_to_end_latency_seconds_bucket").map(|d| d.name),
        Some(t::END_TO_END_LATENCY_SECONDS)
    );
    assert!(definition_of("galley_events_applied_total_count").is_none());
    let sample = parse_sample(r#"galley_x{a="b\"c",d="e"} 3"#).expect("parses");
    assert_eq!(sample.labels["a"], "b\"c");
    assert_eq!(sample.value, 3.0);
}

#[test]
fn readme_documents_every_metric() {
    let readme = std::fs::read_to_string(repo_path("README.md")).expect("README.md");
    let section = readme
        .split_once("## Operating galley")
        .map(|(_, rest)| rest)
        .expect("README has an `Operating galley` section");
    for def in t::METRICS {
        assert!(
            section.contains(&format!("`{}`", def.name)),
            "README's Operating galley section does not list {}",
            def.name
        );
    }
}
