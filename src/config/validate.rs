//! Checks on a deserialized config that serde cannot express: ranges,
//! non-empty values, names spliced into CQL or given to Kafka, and rules
//! between keys. Each failure names the key at fault.

use std::net::SocketAddr;
use std::time::Duration;

use super::{invalid, Config, ConfigError, CqlConsistency};

/// Room kept in a dead letter, beyond the event's value, for its key and
/// headers: `pipeline.max_event_bytes` may not come closer than this to
/// `kafka.message_max_bytes`.
pub const DEAD_LETTER_HEADROOM: usize = 16 * 1024;

impl Config {
    /// Cross-field and value checks that serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_kafka()?;
        self.validate_transactions()?;
        self.validate_topics()?;
        self.validate_cql()?;
        self.validate_pipeline()?;
        self.validate_shop()?;
        self.validate_api()?;
        self.validate_listeners()?;
        self.validate_log()
    }

    fn validate_kafka(&self) -> Result<(), ConfigError> {
        nonempty("kafka.brokers", &self.kafka.brokers)?;
        nonempty("kafka.group_id", &self.kafka.group_id)?;
        nonempty("kafka.client_id", &self.kafka.client_id)?;
        positive_duration("kafka.session_timeout", self.kafka.session_timeout)?;
        positive_duration("kafka.delivery_timeout", self.kafka.delivery_timeout)?;
        // librdkafka takes it in KiB, as a C int, and never below one fetch of 1 MB.
        if !(1_000_000..=1 << 30).contains(&self.kafka.consumer_queue_max_bytes) {
            return Err(invalid(
                "kafka.consumer_queue_max_bytes",
                "must be between 1000000 (librdkafka's smallest fetch) and 1073741824 (1 GiB)",
            ));
        }
        // librdkafka's own bounds for `message.max.bytes`, the lower one
        // raised so that a cut-down dead letter keeps room for its headers.
        if !(65_536..=1_000_000_000).contains(&self.kafka.message_max_bytes) {
            return Err(invalid(
                "kafka.message_max_bytes",
                "must be between 65536 and 1000000000",
            ));
        }
        if self.kafka.security_protocol.uses_sasl() {
            nonempty("kafka.sasl_mechanism", &self.kafka.sasl_mechanism)?;
            nonempty("kafka.sasl_username", &self.kafka.sasl_username)?;
        }
        Ok(())
    }

    /// Every topic is a valid Kafka name and none is used twice.
    fn validate_transactions(&self) -> Result<(), ConfigError> {
        // The broker refuses a longer one (transaction.max.timeout.ms,
        // 15 minutes by default); under a second, a batch's own publish
        // would outlive its transaction.
        let t = self.kafka.transaction_timeout;
        if t < Duration::from_secs(1) || t > Duration::from_secs(15 * 60) {
            return Err(invalid(
                "kafka.transaction_timeout",
                "must be between 1s and 15m (the broker's default transaction.max.timeout.ms)",
            ));
        }
        if self.kafka.transactional_id.len() > 249 {
            return Err(invalid(
                "kafka.transactional_id",
                "must be at most 249 characters",
            ));
        }
        Ok(())
    }

    fn validate_topics(&self) -> Result<(), ConfigError> {
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
        Ok(())
    }

    fn validate_cql(&self) -> Result<(), ConfigError> {
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
        // local_quorum reads and writes overlap only inside one datacenter;
        // with no preference, two owners may each pick a different one.
        if self.cql.consistency == CqlConsistency::LocalQuorum
            && self.cql.local_datacenter.trim().is_empty()
        {
            return Err(invalid(
                "cql.local_datacenter",
                "must name a datacenter with cql.consistency = local_quorum, the same for \
                 every galley process (or use quorum)",
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
        Ok(())
    }

    fn validate_pipeline(&self) -> Result<(), ConfigError> {
        if !(1..=100_000).contains(&self.pipeline.batch_max_events) {
            return Err(invalid(
                "pipeline.batch_max_events",
                "must be between 1 and 100000",
            ));
        }
        if self.pipeline.batch_max_bytes < 1024 {
            return Err(invalid("pipeline.batch_max_bytes", "must be at least 1024"));
        }
        if self.pipeline.max_event_bytes < 64 {
            return Err(invalid("pipeline.max_event_bytes", "must be at least 64"));
        }
        // Any accepted event that turns out to be poison must fit whole in
        // its dead letter, next to its key and headers.
        let fits = self
            .kafka
            .message_max_bytes
            .saturating_sub(DEAD_LETTER_HEADROOM);
        if self.pipeline.max_event_bytes > fits {
            return Err(invalid(
                "pipeline.max_event_bytes",
                format!(
                    "must be at most kafka.message_max_bytes ({}) less {DEAD_LETTER_HEADROOM} bytes \
                     for a dead letter's key and headers, so at most {fits}",
                    self.kafka.message_max_bytes
                ),
            ));
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
        if self.pipeline.max_batches_awaiting_sink == 0 {
            return Err(invalid(
                "pipeline.max_batches_awaiting_sink",
                "must be at least 1",
            ));
        }
        if self.pipeline.max_bytes_awaiting_sink == 0 {
            return Err(invalid(
                "pipeline.max_bytes_awaiting_sink",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    fn validate_shop(&self) -> Result<(), ConfigError> {
        if self.shop.low_stock_threshold < 0 {
            return Err(invalid("shop.low_stock_threshold", "must not be negative"));
        }
        if self.shop.row_cache_max_bytes < 1024 {
            return Err(invalid("shop.row_cache_max_bytes", "must be at least 1024"));
        }
        Ok(())
    }

    fn validate_listeners(&self) -> Result<(), ConfigError> {
        let api = parse_listen("api.listen", &self.api.listen)?;
        let admin = parse_listen("admin.listen", &self.admin.listen)?;
        if api == admin && api.port() != 0 {
            return Err(invalid(
                "admin.listen",
                "must differ from api.listen: operators' routes never share the query port",
            ));
        }
        Ok(())
    }

    fn validate_log(&self) -> Result<(), ConfigError> {
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
        check_cursor_settings(api)?;
        check_server_limits(self)
    }
}

/// Timeouts, connection caps and the limit on failed token checks: each
/// bounded both ways, so that neither a typo nor zero disables a defence.
fn check_server_limits(cfg: &Config) -> Result<(), ConfigError> {
    let api = &cfg.api;
    let within = |key: &str, d: Duration, low: u64, high: u64| {
        if d < Duration::from_millis(low) || d > Duration::from_millis(high) {
            Err(invalid(
                key,
                format!("must be between {low}ms and {}s", high / 1000),
            ))
        } else {
            Ok(())
        }
    };
    within(
        "api.header_read_timeout",
        api.header_read_timeout,
        100,
        300_000,
    )?;
    within("api.request_timeout", api.request_timeout, 100, 600_000)?;
    for (key, value) in [
        ("api.max_connections", api.max_connections),
        ("admin.max_connections", cfg.admin.max_connections),
    ] {
        if !(1..=1_000_000).contains(&value) {
            return Err(invalid(key, "must be between 1 and 1000000"));
        }
    }
    if api.unauthenticated_rate_limit_per_second > 0 && api.unauthenticated_rate_limit_burst == 0 {
        return Err(invalid(
            "api.unauthenticated_rate_limit_burst",
            "must be at least 1 while api.unauthenticated_rate_limit_per_second is set",
        ));
    }
    if !(1..=1_000_000).contains(&api.unauthenticated_max_clients) {
        return Err(invalid(
            "api.unauthenticated_max_clients",
            "must be between 1 and 1000000",
        ));
    }
    Ok(())
}

/// Cursor signing: a configured key strong enough for HMAC-SHA256, and a
/// lifetime long enough to page through a list and short enough that a
/// leaked cursor soon stops working.
fn check_cursor_settings(api: &super::ApiConfig) -> Result<(), ConfigError> {
    let key_len = api.cursor_key.expose().len();
    if key_len > 0 && key_len < 32 {
        return Err(invalid(
            "api.cursor_key",
            "must be at least 32 bytes (for example `openssl rand -hex 32`), or empty for a \
             key drawn at start",
        ));
    }
    if api.cursor_ttl < Duration::from_secs(1) {
        return Err(invalid("api.cursor_ttl", "must be at least 1s"));
    }
    if api.cursor_ttl > Duration::from_secs(7 * 86_400) {
        return Err(invalid("api.cursor_ttl", "must not exceed 7 days"));
    }
    Ok(())
}

fn nonempty(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        Err(invalid(key, "must not be empty"))
    } else {
        Ok(())
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
