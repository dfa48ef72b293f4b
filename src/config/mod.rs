//! Typed configuration: a TOML file plus `GALLEY_*` environment overrides,
//! validated once at startup with errors that name the offending key.
//!
//! Layering, lowest first: built-in defaults, the TOML file (`--config` or
//! `GALLEY_CONFIG`, default `config/galley.toml` when it exists), then
//! environment variables. An environment override names a key path with `__`
//! between levels: `GALLEY_KAFKA__BROKERS=10.0.0.1:9092` sets
//! `kafka.brokers`. Every `GALLEY_` variable other than `GALLEY_CONFIG` must
//! name a known key; a typo stops startup rather than being ignored.
//! Unknown keys in the file are rejected the same way.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod choices;
mod env_overrides;
#[cfg(test)]
mod tests;
mod validate;

pub use choices::{CqlConsistency, Delivery, LogFormat, Partitioner, SecurityProtocol};
pub use validate::validate_keyspace;

use env_overrides::Overrides;

/// Environment variable that selects the config file.
pub const CONFIG_PATH_ENV: &str = "GALLEY_CONFIG";
const ENV_PREFIX: &str = "GALLEY_";
const DEFAULT_CONFIG_PATH: &str = "config/galley.toml";

/// Why a configuration could not be loaded. Every variant names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

/// A value that must never appear in logs, `Debug` output or metrics.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; call only where it is handed to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("Secret(<empty>)")
        } else {
            f.write_str("Secret(<redacted>)")
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub topics: TopicsConfig,
    pub cql: CqlConfig,
    pub pipeline: PipelineConfig,
    pub shop: ShopConfig,
    pub api: ApiConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma separated.
    pub brokers: String,
    /// Consumer group shared by every galley process of one deployment.
    pub group_id: String,
    /// Client id reported to the broker (shows in broker logs and quotas).
    pub client_id: String,
    /// How long the group waits for a silent member before reassigning its partitions.
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// Upper bound on one publish (result events, dead letters) including retries.
    #[serde(with = "humantime_serde")]
    pub delivery_timeout: Duration,
    /// Largest record galley's producer sends (librdkafka's
    /// `message.max.bytes`); keep it at or below the dead-letter topic's
    /// `max.message.bytes`. A dead letter that would be larger is cut down.
    pub message_max_bytes: usize,
    /// `security.protocol` for librdkafka: plaintext, ssl, sasl_plaintext, sasl_ssl.
    pub security_protocol: SecurityProtocol,
    /// How upstream producers partition by key (murmur2, consistent). galley's
    /// producer uses the same, and an input record on another partition than
    /// its key's is dead-lettered as `wrong_partition`.
    pub partitioner: Partitioner,
    /// Bytes of records the consumer may prefetch ahead of the batch being
    /// filled (librdkafka's `queued.max.messages.kbytes` and
    /// `fetch.max.bytes`); one fetch may overshoot it by as much again.
    pub consumer_queue_max_bytes: usize,
    /// `transactional.id` of the producer in `exactly_once` delivery. It
    /// must differ between live galley processes (two with the same id fence
    /// each other) and stay the same across a process's restarts, so that
    /// the restarted one aborts its predecessor's open transaction at once.
    /// Empty means `<group_id>.<client_id>`: see [`KafkaConfig::transactional_id`].
    pub transactional_id: String,
    /// How long a transaction may stay open before the broker aborts it
    /// (and fences the producer). Longer than any stall inside a batch's
    /// publish; at most the broker's `transaction.max.timeout.ms` (15 min).
    #[serde(with = "humantime_serde")]
    pub transaction_timeout: Duration,
    /// SASL mechanism when a SASL protocol is used (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512).
    pub sasl_mechanism: String,
    pub sasl_username: String,
    pub sasl_password: Secret,
}

impl KafkaConfig {
    /// The producer's `transactional.id`: the configured one, or
    /// `<group_id>.<client_id>`.
    pub fn transactional_id(&self) -> String {
        if self.transactional_id.is_empty() {
            format!("{}.{}", self.group_id, self.client_id)
        } else {
            self.transactional_id.clone()
        }
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            group_id: "galley".into(),
            client_id: "galley".into(),
            session_timeout: Duration::from_secs(10),
            delivery_timeout: Duration::from_secs(30),
            message_max_bytes: 1_000_000,
            security_protocol: SecurityProtocol::Plaintext,
            partitioner: Partitioner::Murmur2,
            consumer_queue_max_bytes: 32 * 1024 * 1024,
            transactional_id: String::new(),
            transaction_timeout: Duration::from_secs(60),
            sasl_mechanism: String::new(),
            sasl_username: String::new(),
            sasl_password: Secret::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// Order events, keyed by order id.
    pub orders: String,
    /// Inventory events and reservation requests, keyed by SKU.
    pub inventory: String,
    /// Result events galley publishes (status changes, stock outcomes, alerts).
    pub results: String,
    /// Poison events, with headers naming their origin and the error.
    pub dead_letter: String,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self {
            orders: "shop.orders".into(),
            inventory: "shop.inventory".into(),
            results: "shop.results".into(),
            dead_letter: "shop.dead-letter".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CqlConfig {
    /// host:port of one or more nodes; the driver discovers the rest.
    pub contact_points: Vec<String>,
    pub keyspace: String,
    /// Consistency of every read and write: quorum, all, or local_quorum
    /// (which needs `local_datacenter`). Levels whose read and write replica
    /// sets need not overlap (one, local_one) are refused.
    pub consistency: CqlConsistency,
    /// Datacenter the driver prefers; empty means no preference. Required
    /// with `local_quorum`, and the same for every galley process.
    pub local_datacenter: String,
    /// Replication used by `galley migrate` when it creates the keyspace,
    /// written as CQL's replication map, for example
    /// `{'class': 'NetworkTopologyStrategy', 'datacenter1': 3}`.
    pub replication: String,
    pub username: String,
    pub password: Secret,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Statements in flight at once from one galley process.
    pub max_concurrent_statements: usize,
}

impl Default for CqlConfig {
    fn default() -> Self {
        Self {
            contact_points: vec!["127.0.0.1:9042".into()],
            keyspace: "galley".into(),
            consistency: CqlConsistency::Quorum,
            local_datacenter: String::new(),
            replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}".into(),
            username: String::new(),
            password: Secret::default(),
            request_timeout: Duration::from_secs(5),
            max_concurrent_statements: 64,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// `exactly_once` (one Kafka transaction per batch, rows applied by a
    /// sink) or `at_least_once`.
    pub delivery: Delivery,
    /// In `exactly_once`, most batches committed but not yet applied to the
    /// database by the sink; past it, processing waits for the sink. Their
    /// rows are held in memory until applied.
    pub max_batches_awaiting_sink: usize,
    /// In `exactly_once`, most bytes of rows those batches changed, held in
    /// memory until the sink applies them (the processor's own estimate, as
    /// `galley_rows_awaiting_sink_bytes` reports it); past it, processing
    /// waits for the sink. While the database is away, results keep flowing
    /// until one of the two bounds is reached.
    pub max_bytes_awaiting_sink: usize,
    /// Most events taken into one batch.
    pub batch_max_events: usize,
    /// Most bytes (keys and values) taken into one batch; a record larger
    /// than this still forms a batch of one.
    pub batch_max_bytes: usize,
    /// How long a batch waits to fill before it is processed anyway.
    #[serde(with = "humantime_serde")]
    pub batch_linger: Duration,
    /// Largest accepted event value; larger ones are dead-lettered.
    pub max_event_bytes: usize,
    /// Time allowed on SIGTERM or partition revocation to finish in-flight work and commit.
    #[serde(with = "humantime_serde")]
    pub shutdown_deadline: Duration,
    /// First wait after a failed publish or write; doubles up to `retry_max_backoff`.
    #[serde(with = "humantime_serde")]
    pub retry_initial_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max_backoff: Duration,
    /// How often consumer lag is read from the broker's watermarks.
    #[serde(with = "humantime_serde")]
    pub lag_refresh_interval: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            delivery: Delivery::ExactlyOnce,
            max_batches_awaiting_sink: 4096,
            max_bytes_awaiting_sink: 16 * 1024 * 1024,
            batch_max_events: 2000,
            batch_max_bytes: 16 * 1024 * 1024,
            batch_linger: Duration::from_millis(20),
            // 960 KiB: with `kafka.message_max_bytes` of 1,000,000 it leaves
            // the room a dead letter's headers take (see validate.rs).
            max_event_bytes: 960 * 1024,
            shutdown_deadline: Duration::from_secs(30),
            retry_initial_backoff: Duration::from_millis(100),
            retry_max_backoff: Duration::from_secs(10),
            lag_refresh_interval: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShopConfig {
    /// A low-stock alert is published when a SKU's available units fall below this.
    pub low_stock_threshold: i64,
    /// Bytes (approximate) the row caches of all owned partitions hold
    /// together, at most; each partition's is evicted oldest first past
    /// its share.
    pub row_cache_max_bytes: usize,
}

impl Default for ShopConfig {
    fn default() -> Self {
        Self {
            low_stock_threshold: 10,
            row_cache_max_bytes: 64 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address of the dashboard query API.
    pub listen: String,
    /// Who may call the /v1 routes: each token by name and the SHA-256 of
    /// its value (never the value itself). No tokens: every /v1 call is 401.
    pub tokens: Vec<ApiToken>,
    /// Requests per second each token may make on average (token bucket); 0 turns the limit off.
    pub rate_limit_per_second: u32,
    /// Requests a token may make at once before the average rate applies.
    pub rate_limit_burst: u32,
    /// Browser origins (`scheme://host[:port]`) allowed to call the API
    /// cross-origin; empty sends no CORS headers at all.
    pub cors_allowed_origins: Vec<String>,
    /// Page size of list routes when the request names no `limit`.
    pub default_page_size: u32,
    /// Largest `limit` a list route accepts.
    pub max_page_size: u32,
    /// Widest `from`..`to` window a sales route accepts.
    #[serde(with = "humantime_serde")]
    pub max_time_window: Duration,
    /// Largest request body accepted (the routes take none).
    pub max_request_body_bytes: usize,
    /// HMAC key that signs page cursors, at least 32 bytes. Empty: a key is
    /// drawn at start, and cursors then do not survive a restart nor work
    /// across replicas.
    pub cursor_key: Secret,
    /// How long a page cursor stays valid.
    #[serde(with = "humantime_serde")]
    pub cursor_ttl: Duration,
    /// How long a client may take to send a whole request head, counted
    /// from its connect or from the previous response on a kept-alive
    /// connection; then the connection is closed. Bounds both a slowly
    /// trickled head and an idle keep-alive connection (both listeners).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Longest time one query API request may take, its body included;
    /// past it the answer is a 503 `timeout`.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Connections the query listener holds at once; more wait in the
    /// kernel's backlog. File descriptors are shared with the Kafka and CQL
    /// clients: keep this well below the process's open-file limit.
    pub max_connections: usize,
    /// Requests per second, per client IP (IPv6 per /64), that may fail the
    /// token check; past the burst, that IP's requests get 429 before any
    /// token is checked. 0 turns the limit off.
    pub unauthenticated_rate_limit_per_second: u32,
    /// Failed token checks a client IP may have at once before the rate applies.
    pub unauthenticated_rate_limit_burst: u32,
    /// Client IPs whose failures are tracked one by one; beyond them, the
    /// rest share one bucket, so memory stays bounded however many IPs send.
    pub unauthenticated_max_clients: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            tokens: Vec::new(),
            rate_limit_per_second: 20,
            rate_limit_burst: 100,
            cors_allowed_origins: Vec::new(),
            default_page_size: 50,
            max_page_size: 100,
            max_time_window: Duration::from_secs(24 * 3600),
            max_request_body_bytes: 16 * 1024,
            cursor_key: Secret::default(),
            cursor_ttl: Duration::from_secs(15 * 60),
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 512,
            unauthenticated_rate_limit_per_second: 1,
            unauthenticated_rate_limit_burst: 20,
            unauthenticated_max_clients: 10_000,
        }
    }
}

/// One caller of the query API. The token value itself is never configured:
/// `galley hash-token` turns it into the digest written here.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// Shown in logs instead of the token; 1-64 of [A-Za-z0-9._-].
    pub name: String,
    /// SHA-256 of the token, 64 hex digits.
    pub sha256: String,
    /// This token's own average rate, instead of `api.rate_limit_per_second`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_second: Option<u32>,
    /// This token's own burst, instead of `api.rate_limit_burst`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_burst: Option<u32>,
}

impl ApiToken {
    /// The digest as bytes; `None` when `sha256` is not 64 hex digits.
    pub fn digest(&self) -> Option<[u8; 32]> {
        let hex = self.sha256.as_bytes();
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            let text = std::str::from_utf8(pair).ok()?;
            out[i] = u8::from_str_radix(text, 16).ok()?;
        }
        Some(out)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of /metrics, /healthz and /readyz; never the query port.
    pub listen: String,
    /// Connections the admin listener holds at once (its own cap, so that
    /// a flood of the query port never keeps probes and scrapes out).
    pub max_connections: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8081".into(),
            max_connections: 32,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` for people, `json` for log shippers.
    pub format: LogFormat,
    /// A tracing filter, for example `info` or `galley=debug,rdkafka=warn`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

impl Config {
    /// Loads the file named by `explicit`, else `GALLEY_CONFIG`, else
    /// `config/galley.toml` if present, then applies the process environment.
    pub fn load(explicit: Option<&Path>) -> Result<Self, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let path = match (explicit, env.get(CONFIG_PATH_ENV)) {
            (Some(p), _) => Some(p.to_path_buf()),
            (None, Some(p)) => Some(PathBuf::from(p)),
            (None, None) => {
                let default = PathBuf::from(DEFAULT_CONFIG_PATH);
                default.exists().then_some(default)
            }
        };
        let text = match &path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.clone(),
                source,
            })?,
            None => String::new(),
        };
        Self::from_sources(&text, path.as_deref(), &env)
    }

    /// Builds a config from TOML text and an environment map; the testable core of [`Config::load`].
    pub fn from_sources(
        toml_text: &str,
        path: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let shown_path = path.map(Path::to_path_buf).unwrap_or_default();
        let deserializer =
            toml::Deserializer::parse(toml_text).map_err(|e| ConfigError::Syntax {
                path: shown_path.clone(),
                message: e.to_string(),
            })?;
        let from_file: Config = parse_with_path(deserializer, &shown_path)?;

        // Overrides are applied to the fully-defaulted tree so that each one
        // can be typed by the value it replaces.
        let mut tree = toml::Value::try_from(&from_file).map_err(|e| ConfigError::Syntax {
            path: shown_path.clone(),
            message: e.to_string(),
        })?;
        let mut overrides = Overrides::default();
        for (var, raw) in env {
            let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if var == CONFIG_PATH_ENV {
                continue;
            }
            overrides.apply(&mut tree, var, rest, raw)?;
        }
        let merged: Config =
            serde_path_to_error::deserialize(tree).map_err(|err| overrides.blame(err))?;
        merged.validate()?;
        Ok(merged)
    }

    pub fn api_addr(&self) -> SocketAddr {
        // validate() has already proved these parse; the fallback is unreachable in practice.
        self.api
            .listen
            .parse()
            .unwrap_or(([127, 0, 0, 1], 8080).into())
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .listen
            .parse()
            .unwrap_or(([127, 0, 0, 1], 8081).into())
    }
}

fn parse_with_path<'de, D, T>(de: D, path: &Path) -> Result<T, ConfigError>
where
    D: serde::Deserializer<'de, Error = toml::de::Error>,
    T: Deserialize<'de>,
{
    serde_path_to_error::deserialize(de).map_err(|err| {
        let key = err.path().to_string();
        let inner = err.into_inner();
        let message = inner.message().to_string();
        if key.is_empty() || key == "." {
            ConfigError::Syntax {
                path: path.to_path_buf(),
                message: inner.to_string(),
            }
        } else {
            ConfigError::Invalid { key, message }
        }
    })
}
