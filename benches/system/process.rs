//! The galley process under measurement: the release binary started with the
//! run's config, watched through `/proc` (CPU time, peak RSS) and through the
//! database (`partition_progress` says which offset each partition's rows
//! reached), and stopped with SIGTERM like any deployment would.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use galley::kafka;
use rdkafka::consumer::{BaseConsumer, Consumer};
use scylla::statement::prepared::PreparedStatement;

use crate::query::HttpConnection;
use crate::setup::BenchEnv;
use crate::Settings;

/// How often the drain condition is checked; bounds the error of (c)'s time.
const DRAIN_POLL: Duration = Duration::from_millis(50);
/// How many offsets short of its end a partition may be and still hold
/// only transaction markers worth checking for.
const MARKER_SLACK: i64 = 4;
/// Longest a drain may take before the run gives up.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1800);

pub struct Galley {
    child: Option<Child>,
    started: Instant,
    log: PathBuf,
    /// Where galley writes its listeners' addresses (`--ready-file`).
    ready_file: PathBuf,
    pub admin: SocketAddr,
    pub api: SocketAddr,
    watermarks: Arc<BaseConsumer>,
    /// Every input partition, listed once: the topics were made with them.
    partitions: Vec<(String, i32)>,
    /// Reads one input topic's `partition_progress` rows.
    progress: PreparedStatement,
}

/// The moment every input partition's rows reached its end.
pub struct Drained {
    /// Input events applied (offsets below the ends, from the topics' start).
    pub events: u64,
    /// From the process's start.
    pub elapsed: Duration,
    pub cpu_seconds: f64,
    pub peak_rss_mib: f64,
    /// The end of every input partition at that moment.
    pub end_offsets: BTreeMap<(String, i32), i64>,
}

impl Galley {
    pub async fn start(settings: &Settings, env: &BenchEnv) -> Result<Galley> {
        let log = env.dir.join("galley.log");
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("duplicating the log file")?;
        let ready_file = env.dir.join("galley.ready");
        // A file left by an earlier galley in this dir would name dead ports.
        match std::fs::remove_file(&ready_file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", ready_file.display())),
        }
        let child = Command::new(&settings.galley_bin)
            .arg("--config")
            .arg(&env.config_path)
            .arg("run")
            .arg("--ready-file")
            .arg(&ready_file)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (build it with `cargo build --release`)",
                    settings.galley_bin.display()
                )
            })?;
        let started = Instant::now();
        let watermarks: BaseConsumer = kafka::base_config(&env.config.kafka)
            .create()
            .context("creating the watermark client")?;
        let watermarks = Arc::new(watermarks);
        let partitions = input_partitions(watermarks.clone(), env).await?;
        let keyspace = &env.config.cql.keyspace;
        let progress = env
            .session
            .prepare(format!(
                "SELECT partition, applied_offset FROM {keyspace}.partition_progress WHERE topic = ?"
            ))
            .await
            .context("preparing the progress read")?;
        let mut galley = Galley {
            child: Some(child),
            started,
            log,
            ready_file,
            admin: ([127, 0, 0, 1], 0).into(),
            api: ([127, 0, 0, 1], 0).into(),
            watermarks,
            partitions,
            progress,
        };
        galley.wait_for_listeners().await?;
        Ok(galley)
    }

    /// Reads the listeners' addresses (galley binds port 0) from its ready file.
    async fn wait_for_listeners(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some((api, admin)) = self.ready_addresses() {
                self.api = api;
                self.admin = admin;
                return Ok(());
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!(
                    "galley wrote no ready file {} within a minute; see {}",
                    self.ready_file.display(),
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// (api, admin) from the ready file, once galley has written it (whole:
    /// it renames the file into place).
    fn ready_addresses(&self) -> Option<(SocketAddr, SocketAddr)> {
        let text = std::fs::read_to_string(&self.ready_file).ok()?;
        let ready: serde_json::Value = serde_json::from_str(&text).ok()?;
        let api = ready["api"].as_str()?.parse().ok()?;
        let admin = ready["admin"].as_str()?.parse().ok()?;
        Some((api, admin))
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                bail!(
                    "galley exited ({status}); its log is {}",
                    self.log.display()
                );
            }
        }
        Ok(())
    }

    /// Waits until every event in the input topics is applied; the figures
    /// of (c) are taken at that moment.
    pub async fn drain_backlog(&mut self, env: &BenchEnv) -> Result<Drained> {
        let end_offsets = self.wait_drained(env).await?;
        let elapsed = self.started.elapsed();
        let pid = self.child.as_ref().map(Child::id).unwrap_or(0);
        let (cpu_seconds, peak_rss_mib) = proc_usage(pid)?;
        // galley's own view of where the time went (batch, statement and
        // publish durations), kept beside its log for whoever reads the run.
        let metrics = env.dir.join("metrics-after-backlog.txt");
        std::fs::write(&metrics, self.scrape().await?)
            .with_context(|| format!("writing {}", metrics.display()))?;
        Ok(Drained {
            events: end_offsets.values().map(|o| *o as u64).sum(),
            elapsed,
            cpu_seconds,
            peak_rss_mib,
            end_offsets,
        })
    }

    /// Polls until each input partition's `partition_progress` row holds the
    /// offset just below the partition's end. Reading the progress before
    /// the ends makes this safe against events galley feeds back to itself:
    /// they are published before the batch's rows, so an end read later
    /// already counts them.
    pub async fn wait_drained(&mut self, env: &BenchEnv) -> Result<BTreeMap<(String, i32), i64>> {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        loop {
            let mut applied: BTreeMap<(String, i32), i64> = BTreeMap::new();
            for topic in env.input_topics() {
                let rows = env
                    .session
                    .execute_unpaged(&self.progress, (topic,))
                    .await
                    .context("reading partition_progress")?
                    .into_rows_result()
                    .context("reading partition_progress")?;
                for row in rows
                    .rows::<(i32, i64)>()
                    .context("partition_progress rows")?
                {
                    let (partition, offset) = row.context("partition_progress row")?;
                    applied.insert((topic.to_string(), partition), offset);
                }
            }
            let ends = self.end_offsets().await?;
            let behind: Vec<(String, i32, i64, i64)> = ends
                .iter()
                .filter_map(|((topic, partition), end)| {
                    let next = applied
                        .get(&(topic.clone(), *partition))
                        .map_or(0, |o| o + 1);
                    (*end > 0 && next < *end).then(|| (topic.clone(), *partition, next, *end))
                })
                .collect();
            // Under exactly_once galley's own re-keyed events end in
            // transaction markers, which take offsets and are never records:
            // a partition a few offsets short may hold nothing but those.
            let nearly = behind
                .iter()
                .all(|(_, _, next, end)| end - next <= MARKER_SLACK);
            if behind.is_empty() || (nearly && self.only_markers_left(env, behind).await?) {
                return Ok(ends);
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!("galley did not drain within {DRAIN_TIMEOUT:?}");
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
    }

    /// Whether nothing but transaction markers lies in each `(topic,
    /// partition, from, end)` range, as a read_committed reader sees it.
    async fn only_markers_left(
        &self,
        env: &BenchEnv,
        ranges: Vec<(String, i32, i64, i64)>,
    ) -> Result<bool> {
        let config = env.config.kafka.clone();
        tokio::task::spawn_blocking(move || {
            let reader: BaseConsumer = kafka::base_config(&config)
                .set("group.id", format!("{}.markers", config.group_id))
                .set("enable.auto.commit", "false")
                .set("isolation.level", "read_committed")
                .create()
                .context("creating the marker reader")?;
            let mut tpl = rdkafka::TopicPartitionList::new();
            for (topic, partition, from, _) in &ranges {
                tpl.add_partition_offset(topic, *partition, rdkafka::Offset::Offset(*from))
                    .context("marker reader assignment")?;
            }
            reader.assign(&tpl).context("assigning the marker reader")?;
            let until = Instant::now() + Duration::from_secs(2);
            while Instant::now() < until {
                if reader.poll(Duration::from_millis(100)).is_some() {
                    return Ok(false);
                }
                let positions = reader.position().context("marker reader position")?;
                let past = ranges.iter().all(|(topic, partition, _, end)| {
                    matches!(
                        positions.find_partition(topic, *partition).map(|e| e.offset()),
                        Some(rdkafka::Offset::Offset(p)) if p >= *end
                    )
                });
                if past {
                    return Ok(true);
                }
            }
            Ok(false)
        })
        .await
        .context("the marker reader task")?
    }

    /// The high watermark of every input partition.
    async fn end_offsets(&self) -> Result<BTreeMap<(String, i32), i64>> {
        let client = self.watermarks.clone();
        let partitions = self.partitions.clone();
        tokio::task::spawn_blocking(move || {
            let mut ends = BTreeMap::new();
            for (topic, partition) in partitions {
                let (_, high) = client
                    .fetch_watermarks(&topic, partition, Duration::from_secs(10))
                    .context("reading a high watermark")?;
                ends.insert((topic, partition), high);
            }
            Ok(ends)
        })
        .await
        .context("the watermark task")?
    }

    /// galley's Prometheus text, from its admin listener.
    pub async fn scrape(&self) -> Result<String> {
        let mut conn = HttpConnection::open(self.admin).await?;
        let (status, body) = conn.get("/metrics", None).await?;
        if status != 200 {
            bail!("/metrics answered {status}");
        }
        String::from_utf8(body).context("/metrics is not UTF-8")
    }

    /// SIGTERM, as a deployment stops it; SIGKILL if it does not exit in time.
    pub async fn stop(mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Galley {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Every partition of the run's input topics.
async fn input_partitions(client: Arc<BaseConsumer>, env: &BenchEnv) -> Result<Vec<(String, i32)>> {
    let topics: Vec<String> = env.input_topics().map(str::to_string).to_vec();
    tokio::task::spawn_blocking(move || {
        let metadata = client
            .fetch_metadata(None, Duration::from_secs(10))
            .context("reading topic metadata")?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| topics.iter().any(|n| n == t.name()))
            .flat_map(|t| {
                t.partitions()
                    .iter()
                    .map(|p| (t.name().to_string(), p.id()))
            })
            .collect())
    })
    .await
    .context("the metadata task")?
}

/// CPU seconds (user + system) and peak resident memory (MiB) of a process.
fn proc_usage(pid: u32) -> Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name, which may itself hold spaces: state is
    // the first of them, utime the 12th and stime the 13th.
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .with_context(|| format!("/proc/{pid}/stat has no field {i}"))
    };
    let cpu_seconds = (ticks(11)? + ticks(12)?) / clock_ticks_per_second();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let peak_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .context("no VmHWM in /proc/<pid>/status")?;
    Ok((cpu_seconds, peak_kib / 1024.0))
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}
