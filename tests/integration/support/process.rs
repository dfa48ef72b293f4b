//! A real `galley run` process for a test: its own topics, group and
//! keyspace, its own ports, its log in a file, and a kill on drop.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use galley::config::TopicsConfig;

use super::{brokers, cql_contact_point, unique_name};

/// Names of everything one test's galley processes share.
#[derive(Debug, Clone)]
pub struct GalleyEnv {
    pub topics: TopicsConfig,
    pub group: String,
    pub keyspace: String,
    /// Extra `GALLEY_*` settings for this test.
    pub extra: BTreeMap<String, String>,
}

impl GalleyEnv {
    pub fn new(prefix: &str, keyspace: &str) -> Self {
        let base = unique_name(prefix);
        Self {
            topics: TopicsConfig {
                orders: format!("{base}.orders"),
                inventory: format!("{base}.inventory"),
                results: format!("{base}.results"),
                dead_letter: format!("{base}.dead-letter"),
            },
            group: format!("{base}.group"),
            keyspace: keyspace.to_string(),
            // A killed process's open transaction holds its partitions at
            // most this long (exactly_once, the default delivery).
            extra: BTreeMap::from([(
                "GALLEY_KAFKA__TRANSACTION_TIMEOUT".to_string(),
                "10s".to_string(),
            )]),
        }
    }

    /// Adds a `GALLEY_*` setting for this test's galley processes.
    pub fn set(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    pub fn topic_names(&self) -> Vec<String> {
        vec![
            self.topics.orders.clone(),
            self.topics.inventory.clone(),
            self.topics.results.clone(),
            self.topics.dead_letter.clone(),
        ]
    }
}

/// A running `galley run`. It binds its listeners on port 0 and writes the
/// addresses it got to its ready file, which [`GalleyProcess::wait_ready`]
/// reads back: picking a free port for it would race with every other
/// socket on the machine.
pub struct GalleyProcess {
    child: Option<Child>,
    /// Known once `wait_ready` has returned.
    pub admin: SocketAddr,
    /// Known once `wait_ready` has returned.
    pub api: SocketAddr,
    pub log: PathBuf,
    /// `--ready-file`, in a directory of this process's own, removed on drop.
    pub ready_file: PathBuf,
    _ready_dir: tempfile::TempDir,
}

impl GalleyProcess {
    pub fn spawn(env: &GalleyEnv, name: &str) -> Self {
        let log_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("galley-logs");
        std::fs::create_dir_all(&log_dir).expect("log dir");
        let log = log_dir.join(format!("{}-{name}.log", env.group));
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let ready_dir = tempfile::tempdir().expect("ready file dir");
        let ready_file = ready_dir.path().join("galley.ready");
        let mut cmd = galley_command(env, name);
        cmd.arg("run")
            .arg("--ready-file")
            .arg(&ready_file)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = cmd.spawn().expect("spawn galley");
        let unknown: SocketAddr = ([127, 0, 0, 1], 0).into();
        Self {
            child: Some(child),
            admin: unknown,
            api: unknown,
            log,
            ready_file,
            _ready_dir: ready_dir,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The process's peak resident set size so far, in KiB (VmHWM from
    /// /proc): None once it has exited or where /proc has no such line.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    }

    /// SIGKILL: no drain, no commit, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal by name (TERM, STOP, CONT) to the process.
    pub fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            let status = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(pid.to_string())
                .status()
                .expect("run kill");
            assert!(status.success(), "kill -{signal} {pid} failed");
        }
    }

    /// SIGTERM, then waits for the exit up to `deadline`; returns the status.
    pub fn terminate(&mut self, deadline: Duration) -> Option<ExitStatus> {
        self.signal("TERM");
        self.wait_exit(deadline)
    }

    /// Waits up to `deadline` for the process to exit and returns its status;
    /// past the deadline it is killed and None is returned.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let until = Instant::now() + deadline;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= until {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// How the process ended, once it has (a signal shows as one): a
    /// process killed by a signal leaves no last word in its log.
    pub fn exit_status(&mut self) -> String {
        match self.child.as_mut().map(|child| child.try_wait()) {
            Some(Ok(Some(status))) => status.to_string(),
            Some(Ok(None)) => "still running".to_string(),
            Some(Err(e)) => format!("unknown ({e})"),
            None => "not started".to_string(),
        }
    }

    /// The listener addresses in the ready file, once this process has
    /// written it (the pid tells it from a file an earlier process left).
    pub fn ready_addresses(&self) -> Option<(SocketAddr, SocketAddr)> {
        let text = std::fs::read_to_string(&self.ready_file).ok()?;
        let ready: serde_json::Value = serde_json::from_str(&text).ok()?;
        if ready["pid"].as_u64() != self.pid().map(u64::from) {
            return None;
        }
        let admin = ready["admin"].as_str()?.parse().ok()?;
        let api = ready["api"].as_str()?.parse().ok()?;
        Some((admin, api))
    }

    /// Polls /readyz until it answers 200; panics with the log tail otherwise.
    pub async fn wait_ready(&mut self, timeout: Duration) {
        if !self.ready_within(timeout).await {
            panic!(
                "galley did not become ready within {timeout:?}; log {}:\n{}",
                self.log.display(),
                self.log_tail(40)
            );
        }
    }

    /// Whether `/readyz` answers 200 within `timeout` (false at once if
    /// the process exits).
    pub async fn ready_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.admin.port() == 0 {
                if let Some((admin, api)) = self.ready_addresses() {
                    self.admin = admin;
                    self.api = api;
                }
            }
            if self.admin.port() != 0 && http_status(self.admin, "/readyz").await == Some(200) {
                return true;
            }
            if !self.is_running() || Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Metric `name` summed over its series; `None` when this process
    /// does not export it (or does not answer).
    pub async fn metric_sum(&self, name: &str) -> Option<f64> {
        let samples = self.metric_samples(name).await;
        (!samples.is_empty()).then(|| samples.values().sum())
    }

    /// `galley_transactions_total{outcome="committed"}`: 0 before the first
    /// transaction, and under at_least_once.
    pub async fn committed_transactions(&self) -> f64 {
        self.metric_samples("galley_transactions_total")
            .await
            .iter()
            .filter(|(labels, _)| labels.contains("outcome=\"committed\""))
            .map(|(_, value)| value)
            .sum()
    }

    /// Polls metric `name` (summed over its series) until it reaches
    /// `at_least`; panics, with the log's tail, after `timeout`.
    pub async fn wait_metric_at_least(&self, name: &str, at_least: f64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.metric_sum(name).await.unwrap_or(0.0);
            if value >= at_least {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} is {value}, short of {at_least}, after {timeout:?}; log:\n{}",
                self.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The samples of metric `name` in this process's /metrics, by their
    /// label text (`topic="a",partition="0"`; empty without labels); empty
    /// when it does not answer.
    pub async fn metric_samples(&self, name: &str) -> std::collections::BTreeMap<String, f64> {
        let Some((200, text)) = http_get(self.admin, "/metrics").await else {
            return Default::default();
        };
        text.lines()
            .filter_map(|line| {
                let rest = line.strip_prefix(name)?;
                let (labels, value) = match rest.strip_prefix('{') {
                    Some(labelled) => labelled.rsplit_once("} ")?,
                    None => ("", rest.strip_prefix(' ')?),
                };
                Some((labels.to_string(), value.trim().parse().ok()?))
            })
            .collect()
    }

    /// Writes every thread's stack of the running process next to its log
    /// (`gdb -batch`, where gdb is installed) and says where, or why not: a
    /// process that stopped making progress is best explained by where
    /// its threads wait. Bounded by `timeout` (gdb is killed past it).
    pub fn dump_thread_stacks(&self, timeout: Duration) -> String {
        let Some(pid) = self.pid() else {
            return "no thread stacks: the process is not running".into();
        };
        let path = self.log.with_extension("stacks.txt");
        let Ok(out) = File::create(&path) else {
            return format!("no thread stacks: cannot create {}", path.display());
        };
        let gdb = Command::new("gdb")
            .args([
                "-p",
                &pid.to_string(),
                "-batch",
                "-ex",
                "thread apply all bt",
            ])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::null())
            .spawn();
        let Ok(mut gdb) = gdb else {
            return "no thread stacks: gdb is not installed".into();
        };
        let deadline = Instant::now() + timeout;
        while matches!(gdb.try_wait(), Ok(None)) {
            if Instant::now() >= deadline {
                let _ = gdb.kill();
                let _ = gdb.wait();
                return format!("thread stacks cut short at {timeout:?}: {}", path.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        format!("thread stacks: {}", path.display())
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// How many bytes the log holds now: a mark for [`Self::log_since`].
    pub fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    /// The log from byte `mark` on.
    pub fn log_since(&self, mark: u64) -> String {
        use std::io::{Read, Seek, SeekFrom};
        let mut text = Vec::new();
        if let Ok(mut file) = File::open(&self.log) {
            if file.seek(SeekFrom::Start(mark)).is_ok() {
                let _ = file.read_to_end(&mut text);
            }
        }
        String::from_utf8_lossy(&text).into_owned()
    }

    /// The batch phase galley logged last (it logs them only at
    /// [`BATCH_PHASE_LOG_LEVEL`]). Reads the log's last 16 KiB, which hold
    /// many batches' lines.
    pub fn last_batch_phase(&self) -> Option<BatchPhase> {
        let tail = self.log_since(self.log_len().saturating_sub(16 * 1024));
        tail.lines().rev().find_map(BatchPhase::of_line)
    }

    /// Polls the log until the last batch phase is `phase` (then true), or
    /// `timeout` passes (false).
    pub async fn wait_batch_phase(&self, phase: BatchPhase, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if self.last_batch_phase() == Some(phase) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        false
    }
}

/// The log filter under which galley logs each batch's phases
/// (`galley::pipeline` at debug: one line per phase per batch).
pub const BATCH_PHASE_LOG_LEVEL: &str = "info,galley::pipeline=debug";

/// The phases of a batch galley logs once each is done, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchPhase {
    /// `exactly_once`: its records are polled; its effects are not
    /// computed, and nothing of it is sent or about to be.
    Started,
    /// `exactly_once`: its effects are computed; its sends begin at once.
    Prepared,
    /// Its messages are acknowledged by the broker.
    Published,
    /// Its rows are written.
    Written,
    /// Its offsets are stored for commit: the batch is over.
    OffsetsStored,
    /// `exactly_once`: everything of the batch is sent in its open
    /// transaction, which is not committed yet.
    SentInTransaction,
    /// `exactly_once`: its transaction is committed: the batch is over.
    Committed,
}

impl BatchPhase {
    /// The phase a (JSON) log line reports, if it reports one.
    pub fn of_line(line: &str) -> Option<Self> {
        [
            ("batch started", Self::Started),
            ("batch prepared", Self::Prepared),
            ("batch published", Self::Published),
            ("batch written", Self::Written),
            ("offsets stored", Self::OffsetsStored),
            ("batch sent in its transaction", Self::SentInTransaction),
            ("batch committed", Self::Committed),
        ]
        .into_iter()
        .find(|(message, _)| line.contains(&format!("\"message\":\"{message}\"")))
        .map(|(_, phase)| phase)
    }

    /// Whether a process that stopped right after logging this phase held a
    /// batch between its publish and its offset store.
    pub fn mid_batch(self) -> bool {
        !matches!(self, Self::OffsetsStored | Self::Committed)
    }
}

impl Drop for GalleyProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// GETs a path and returns the status code, or None when nothing answers.
pub async fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    http_get(addr, path).await.map(|(status, _)| status)
}

/// A minimal HTTP/1.1 GET over loopback, enough for admin checks.
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
            .await
            .ok()?
            .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// A `galley` command (any subcommand) configured for this test's topics,
/// group and keyspace, with the test's extra settings applied last.
pub fn galley_command(env: &GalleyEnv, name: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_galley"));
    cmd.env(
        "GALLEY_CONFIG",
        concat!(env!("CARGO_MANIFEST_DIR"), "/config/galley.toml"),
    )
    .env("GALLEY_KAFKA__BROKERS", brokers())
    .env("GALLEY_KAFKA__GROUP_ID", &env.group)
    .env("GALLEY_KAFKA__CLIENT_ID", format!("galley-{name}"))
    .env("GALLEY_KAFKA__SESSION_TIMEOUT", "6s")
    .env("GALLEY_TOPICS__ORDERS", &env.topics.orders)
    .env("GALLEY_TOPICS__INVENTORY", &env.topics.inventory)
    .env("GALLEY_TOPICS__RESULTS", &env.topics.results)
    .env("GALLEY_TOPICS__DEAD_LETTER", &env.topics.dead_letter)
    .env("GALLEY_CQL__CONTACT_POINTS", cql_contact_point())
    .env("GALLEY_CQL__KEYSPACE", &env.keyspace)
    .env("GALLEY_CQL__CONSISTENCY", "quorum")
    .env("GALLEY_API__LISTEN", "127.0.0.1:0")
    .env("GALLEY_ADMIN__LISTEN", "127.0.0.1:0")
    .env("GALLEY_LOG__LEVEL", "info")
    .env("GALLEY_LOG__FORMAT", "json");
    for (k, v) in &env.extra {
        cmd.env(k, v);
    }
    cmd
}
