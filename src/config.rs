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
    /// `security.protocol` for librdkafka: plaintext, ssl, sasl_plaintext, sasl_ssl.
    pub security_protocol: String,
    /// SASL mechanism when a SASL protocol is used (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512).
    pub sasl_mechanism: String,
    pub sasl_username: String,
    pub sasl_password: Secret,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            group_id: "galley".into(),
            client_id: "galley".into(),
            session_timeout: Duration::from_secs(10),
            delivery_timeout: Duration::from_secs(30),
            security_protocol: "plaintext".into(),
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
    /// Consistency of every read and write: one, local_one, local_quorum, quorum, all.
    pub consistency: String,
    /// Datacenter the driver prefers; empty means no preference.
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
            consistency: "local_quorum".into(),
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
    /// Most events taken into one batch.
    pub batch_max_events: usize,
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
            batch_max_events: 2000,
            batch_linger: Duration::from_millis(20),
            max_event_bytes: 1024 * 1024,
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
}

impl Default for ShopConfig {
    fn default() -> Self {
        Self {
            low_stock_threshold: 10,
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
    /// Browser origins (scheme://host[:port]) allowed to call the API
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
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8081".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` for people, `json` for log shippers.
    pub format: String,
    /// A tracing filter, for example `info` or `galley=debug,rdkafka=warn`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "text".into(),
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
        for (var, raw) in env {
            let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if var == CONFIG_PATH_ENV {
                continue;
            }
            apply_env_override(&mut tree, var, rest, raw)?;
        }
        let merged: Config = Config::deserialize(tree).map_err(|e| ConfigError::Env {
            var: "GALLEY_*".into(),
            message: e.to_string(),
        })?;
        merged.validate()?;
        Ok(merged)
    }

    /// Cross-field and value checks that serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let nonempty = |key: &str, v: &str| {
            if v.trim().is_empty() {
                Err(invalid(key, "must not be empty"))
            } else {
                Ok(())
            }
        };
        nonempty("kafka.brokers", &self.kafka.brokers)?;
        nonempty("kafka.group_id", &self.kafka.group_id)?;
        nonempty("kafka.client_id", &self.kafka.client_id)?;
        positive_duration("kafka.session_timeout", self.kafka.session_timeout)?;
        positive_duration("kafka.delivery_timeout", self.kafka.delivery_timeout)?;
        match self.kafka.security_protocol.as_str() {
            "plaintext" | "ssl" => {}
            "sasl_plaintext" | "sasl_ssl" => {
                nonempty("kafka.sasl_mechanism", &self.kafka.sasl_mechanism)?;
                nonempty("kafka.sasl_username", &self.kafka.sasl_username)?;
            }
            other => {
                return Err(invalid(
                    "kafka.security_protocol",
                    format!("`{other}` is not one of plaintext, ssl, sasl_plaintext, sasl_ssl"),
                ))
            }
        }

        let topics = [
            ("topics.orders", &self.topics.orders),
            ("topics.inventory", &self.topics.inventory),
            ("topics.results", &self.topics.results),
            ("topics.dead_letter", &self.topics.dead_letter),
        ];
        for (i, (key, name)) in topics.iter().enumerate() {
            validate_topic_name(key, name)?;
            if let Some((other, _)) = topics[..i].iter().find(|(_, n)| n == name) {
                return Err(invalid(
                    key,
                    format!("`{name}` is also used by `{other}`; every topic must be distinct"),
                ));
            }
        }

        if self.cql.contact_points.is_empty() {
            return Err(invalid(
                "cql.contact_points",
                "needs at least one host:port",
            ));
        }
        for point in &self.cql.contact_points {
            if point
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                return Err(invalid(
                    "cql.contact_points",
                    format!("`{point}` is not host:port"),
                ));
            }
        }
        validate_keyspace("cql.keyspace", &self.cql.keyspace)?;
        if crate::store::parse_consistency(&self.cql.consistency).is_none() {
            return Err(invalid(
                "cql.consistency",
                format!(
                    "`{}` is not one of one, local_one, local_quorum, quorum, all",
                    self.cql.consistency
                ),
            ));
        }
        let replication = self.cql.replication.trim();
        if !(replication.starts_with('{')
            && replication.ends_with('}')
            && replication.contains("'class'"))
        {
            return Err(invalid(
                "cql.replication",
                "must be a CQL map such as {'class': 'SimpleStrategy', 'replication_factor': 1}",
            ));
        }
        positive_duration("cql.request_timeout", self.cql.request_timeout)?;
        if self.cql.max_concurrent_statements == 0 {
            return Err(invalid(
                "cql.max_concurrent_statements",
                "must be at least 1",
            ));
        }

        if !(1..=100_000).contains(&self.pipeline.batch_max_events) {
            return Err(invalid(
                "pipeline.batch_max_events",
                "must be between 1 and 100000",
            ));
        }
        if self.pipeline.max_event_bytes < 64 {
            return Err(invalid("pipeline.max_event_bytes", "must be at least 64"));
        }
        positive_duration(
            "pipeline.shutdown_deadline",
            self.pipeline.shutdown_deadline,
        )?;
        positive_duration(
            "pipeline.retry_initial_backoff",
            self.pipeline.retry_initial_backoff,
        )?;
        if self.pipeline.retry_max_backoff < self.pipeline.retry_initial_backoff {
            return Err(invalid(
                "pipeline.retry_max_backoff",
                "must not be shorter than pipeline.retry_initial_backoff",
            ));
        }
        positive_duration(
            "pipeline.lag_refresh_interval",
            self.pipeline.lag_refresh_interval,
        )?;

        if self.shop.low_stock_threshold < 0 {
            return Err(invalid("shop.low_stock_threshold", "must not be negative"));
        }

        self.validate_api()?;
        let api = parse_listen("api.listen", &self.api.listen)?;
        let admin = parse_listen("admin.listen", &self.admin.listen)?;
        if api == admin && api.port() != 0 {
            return Err(invalid(
                "admin.listen",
                "must differ from api.listen: operators' routes never share the query port",
            ));
        }

        match self.log.format.as_str() {
            "text" | "json" => {}
            other => {
                return Err(invalid(
                    "log.format",
                    format!("`{other}` is not one of text, json"),
                ))
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(invalid(
                "log.level",
                format!("`{}` is not a tracing filter", self.log.level),
            ));
        }
        Ok(())
    }

    fn validate_api(&self) -> Result<(), ConfigError> {
        let api = &self.api;
        let mut digests = Vec::new();
        for (i, token) in api.tokens.iter().enumerate() {
            let key = |field: &str| format!("api.tokens[{i}].{field}");
            let name_ok = (1..=64).contains(&token.name.len())
                && token
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !name_ok {
                return Err(invalid(
                    &key("name"),
                    format!("`{}` is not 1-64 of [A-Za-z0-9._-]", token.name),
                ));
            }
            if api.tokens[..i].iter().any(|t| t.name == token.name) {
                return Err(invalid(
                    &key("name"),
                    format!("`{}` names two tokens", token.name),
                ));
            }
            // The value is a digest, not a secret, but say nothing more than its shape.
            let Some(digest) = token.digest() else {
                return Err(invalid(
                    &key("sha256"),
                    "must be 64 hex digits, the SHA-256 of the token \
                     (`galley hash-token` prints it); never the token itself",
                ));
            };
            if digests.contains(&digest) {
                return Err(invalid(
                    &key("sha256"),
                    "is the digest of another token too",
                ));
            }
            digests.push(digest);
        }
        for origin in &api.cors_allowed_origins {
            check_origin(origin)?;
        }
        if !(1..=10_000).contains(&api.max_page_size) {
            return Err(invalid("api.max_page_size", "must be between 1 and 10000"));
        }
        if !(1..=api.max_page_size).contains(&api.default_page_size) {
            return Err(invalid(
                "api.default_page_size",
                "must be between 1 and api.max_page_size",
            ));
        }
        positive_duration("api.max_time_window", api.max_time_window)?;
        // Each day of a window is one partition read; keep the fan-out bounded.
        if api.max_time_window > Duration::from_secs(366 * 86_400) {
            return Err(invalid("api.max_time_window", "must not exceed 366 days"));
        }
        if api.rate_limit_per_second > 0 && api.rate_limit_burst == 0 {
            return Err(invalid(
                "api.rate_limit_burst",
                "must be at least 1 while api.rate_limit_per_second is set",
            ));
        }
        Ok(())
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

fn apply_env_override(
    tree: &mut toml::Value,
    var: &str,
    rest: &str,
    raw: &str,
) -> Result<(), ConfigError> {
    let env_err = |message: String| ConfigError::Env {
        var: var.to_string(),
        message,
    };
    if !rest.contains("__") {
        return Err(env_err(
            "is not a galley setting; nested keys are joined with `__`, \
             for example GALLEY_KAFKA__BROKERS"
                .into(),
        ));
    }
    let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
    let key = path.join(".");
    let mut node = tree;
    for (depth, part) in path.iter().enumerate() {
        let table = node
            .as_table_mut()
            .ok_or_else(|| env_err(format!("`{key}` is not a galley setting")))?;
        let slot = table
            .get_mut(part.as_str())
            .ok_or_else(|| env_err(format!("`{key}` is not a galley setting")))?;
        if depth + 1 == path.len() {
            *slot = typed_like(slot, raw).map_err(|m| env_err(format!("`{key}`: {m}")))?;
            return Ok(());
        }
        node = slot;
    }
    Err(env_err(format!("`{key}` is not a galley setting")))
}

/// Parses an environment string as the same TOML type as the value it replaces.
fn typed_like(existing: &toml::Value, raw: &str) -> Result<toml::Value, String> {
    use toml::Value;
    match existing {
        Value::String(_) => Ok(Value::String(raw.to_string())),
        Value::Integer(_) => raw
            .trim()
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| format!("`{raw}` is not an integer")),
        Value::Float(_) => raw
            .trim()
            .parse::<f64>()
            .map(Value::Float)
            .map_err(|_| format!("`{raw}` is not a number")),
        Value::Boolean(_) => match raw.trim() {
            "true" | "1" => Ok(Value::Boolean(true)),
            "false" | "0" => Ok(Value::Boolean(false)),
            _ => Err(format!("`{raw}` is not true or false")),
        },
        Value::Array(_) => {
            let trimmed = raw.trim();
            if trimmed.starts_with('[') {
                let doc: toml::Table = toml::from_str(&format!("v = {trimmed}"))
                    .map_err(|e| format!("`{raw}` is not a TOML array: {e}"))?;
                doc.get("v")
                    .cloned()
                    .ok_or_else(|| format!("`{raw}` is not a TOML array"))
            } else {
                Ok(Value::Array(
                    trimmed
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| Value::String(s.to_string()))
                        .collect(),
                ))
            }
        }
        Value::Datetime(_) | Value::Table(_) => {
            Err("is a section, not a value; name one of its keys".into())
        }
    }
}

fn positive_duration(key: &str, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() {
        Err(invalid(key, "must be longer than zero"))
    } else {
        Ok(())
    }
}

/// An allowed CORS origin is exact: a scheme, a host and maybe a port, no
/// path and no wildcard, so that nothing is permitted by accident.
fn check_origin(origin: &str) -> Result<(), ConfigError> {
    let key = "api.cors_allowed_origins";
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    let ok = match rest {
        Some(host) => {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!(
                "`{origin}` is not an origin such as https://grafana.example.com:3000 \
                 (scheme and host, no path, no wildcard)"
            ),
        ))
    }
}

fn parse_listen(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value
        .parse()
        .map_err(|_| invalid(key, format!("`{value}` is not an ip:port address")))
}

fn validate_topic_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("`{name}` is not a Kafka topic name (1-249 of [a-zA-Z0-9._-])"),
        ))
    }
}

/// CQL identifiers we accept unquoted: they are spliced into DDL.
pub fn validate_keyspace(key: &str, name: &str) -> Result<(), ConfigError> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && name.len() <= 48
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("`{name}` is not a keyspace name (a letter, then up to 47 of [a-zA-Z0-9_])"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().expect("defaults validate");
    }

    #[test]
    fn shipped_config_file_parses_and_validates() {
        let text = include_str!("../config/galley.toml");
        Config::from_sources(text, None, &BTreeMap::new()).expect("config/galley.toml is valid");
    }

    #[test]
    fn env_overrides_file_values_with_the_right_type() {
        let text = "[kafka]\nbrokers = \"a:1\"\n[pipeline]\nbatch_max_events = 10\n";
        let cfg = Config::from_sources(
            text,
            None,
            &env(&[
                ("GALLEY_KAFKA__BROKERS", "b:2"),
                ("GALLEY_PIPELINE__BATCH_MAX_EVENTS", "77"),
                ("GALLEY_PIPELINE__BATCH_LINGER", "5ms"),
                ("GALLEY_CQL__CONTACT_POINTS", "h1:9042, h2:9042"),
                ("GALLEY_CONFIG", "ignored-here.toml"),
                ("OTHER", "x"),
            ]),
        )
        .expect("valid");
        assert_eq!(cfg.kafka.brokers, "b:2");
        assert_eq!(cfg.pipeline.batch_max_events, 77);
        assert_eq!(cfg.pipeline.batch_linger, Duration::from_millis(5));
        assert_eq!(cfg.cql.contact_points, vec!["h1:9042", "h2:9042"]);
    }

    #[test]
    fn unknown_file_key_is_rejected_with_its_path() {
        let err = Config::from_sources("[kafka]\nbrokrs = \"x\"\n", None, &BTreeMap::new())
            .expect_err("unknown key");
        let text = err.to_string();
        assert!(text.contains("kafka"), "{text}");
        assert!(text.contains("brokrs"), "{text}");
    }

    #[test]
    fn unknown_env_key_is_rejected_with_its_name() {
        let err = Config::from_sources("", None, &env(&[("GALLEY_KAFKA__BROKRS", "x")]))
            .expect_err("unknown env key");
        assert!(err.to_string().contains("GALLEY_KAFKA__BROKRS"), "{err}");
        let err = Config::from_sources("", None, &env(&[("GALLEY_KAFKA_BROKERS", "x")]))
            .expect_err("single underscore");
        assert!(err.to_string().contains("__"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            (
                "[pipeline]\nbatch_max_events = 0\n",
                "pipeline.batch_max_events",
            ),
            ("[cql]\nkeyspace = \"1bad\"\n", "cql.keyspace"),
            ("[cql]\nconsistency = \"most\"\n", "cql.consistency"),
            ("[admin]\nlisten = \"127.0.0.1:8080\"\n", "admin.listen"),
            ("[api]\nlisten = \"nowhere\"\n", "api.listen"),
            ("[topics]\nresults = \"shop.orders\"\n", "topics.results"),
            (
                "[pipeline]\nbatch_linger = \"soon\"\n",
                "pipeline.batch_linger",
            ),
            ("[log]\nformat = \"xml\"\n", "log.format"),
            ("[api]\nmax_page_size = 0\n", "api.max_page_size"),
            (
                "[api]\nmax_page_size = 10\ndefault_page_size = 11\n",
                "api.default_page_size",
            ),
            ("[api]\nmax_time_window = \"0s\"\n", "api.max_time_window"),
            (
                "[api]\ncors_allowed_origins = [\"*\"]\n",
                "api.cors_allowed_origins",
            ),
            (
                "[api]\ncors_allowed_origins = [\"https://a.example/path\"]\n",
                "api.cors_allowed_origins",
            ),
            (
                "[[api.tokens]]\nname = \"g\"\nsha256 = \"plain-text-token\"\n",
                "api.tokens[0].sha256",
            ),
            (
                "[[api.tokens]]\nname = \"bad name\"\nsha256 = \"\"\n",
                "api.tokens[0].name",
            ),
        ];
        for (text, key) in cases {
            let err = Config::from_sources(text, None, &BTreeMap::new()).expect_err(text);
            assert!(err.to_string().contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn api_tokens_come_from_the_file_or_an_inline_array_in_the_environment() {
        let digest = "ab".repeat(32);
        let text = format!(
            "[api]\ncors_allowed_origins = [\"https://grafana.example.com\"]\n\
             [[api.tokens]]\nname = \"grafana\"\nsha256 = \"{digest}\"\nrate_limit_burst = 5\n"
        );
        let cfg = Config::from_sources(&text, None, &BTreeMap::new()).expect("valid");
        assert_eq!(cfg.api.tokens.len(), 1);
        assert_eq!(cfg.api.tokens[0].digest(), Some([0xab; 32]));
        assert_eq!(cfg.api.tokens[0].rate_limit_burst, Some(5));

        let other = "cd".repeat(32);
        let inline = format!(
            "[{{name = \"a\", sha256 = \"{digest}\"}}, \
             {{name = \"b\", sha256 = \"{other}\", rate_limit_per_second = 1}}]"
        );
        let cfg = Config::from_sources(
            &text,
            None,
            &env(&[
                ("GALLEY_API__TOKENS", inline.as_str()),
                ("GALLEY_API__CORS_ALLOWED_ORIGINS", "http://localhost:3000"),
            ]),
        )
        .expect("valid");
        let names: Vec<&str> = cfg.api.tokens.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(cfg.api.tokens[1].rate_limit_per_second, Some(1));
        assert_eq!(cfg.api.cors_allowed_origins, ["http://localhost:3000"]);

        let twice = format!(
            "[{{name = \"a\", sha256 = \"{digest}\"}}, {{name = \"b\", sha256 = \"{digest}\"}}]"
        );
        let err = Config::from_sources("", None, &env(&[("GALLEY_API__TOKENS", twice.as_str())]))
            .expect_err("one digest, two names");
        assert!(err.to_string().contains("api.tokens[1].sha256"), "{err}");
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let text = "[cql]\npassword = \"hunter2\"\n[kafka]\nsasl_password = \"s3cret\"\n";
        let cfg = Config::from_sources(text, None, &BTreeMap::new()).expect("valid");
        let shown = format!("{cfg:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret"),
            "{shown}"
        );
        assert_eq!(cfg.cql.password.expose(), "hunter2");
    }
}
