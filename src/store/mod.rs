//! The CQL side of the engine, whatever domain it serves: the session
//! (ScyllaDB in production, Cassandra locally; the same CQL works on both),
//! versioned migrations, the row cache, statement helpers that time every
//! statement, paged reads, and the engine's own `partition_progress` table.
//! A domain's rows, statements and reads live with the domain (the shop's in
//! `src/shop/`).

pub mod cache;
pub mod changelog;
pub mod known_keys;
pub mod marks;
pub mod migrate;
pub mod progress;
pub mod read;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::unprepared::Statement;
use scylla::statement::Consistency;

use crate::config::{CqlConfig, CqlConsistency};
use crate::telemetry as t;

/// Failures talking to the database. Callers branch on these: a query error
/// is retried with backoff, a schema mismatch stops startup.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot connect to the CQL cluster at {contact_points}: {message}")]
    Connect {
        contact_points: String,
        message: String,
    },
    #[error("CQL statement `{statement}` failed: {message}")]
    Query { statement: String, message: String },
    #[error("{0}")]
    Schema(String),
    #[error("row of {table} could not be read: {message}")]
    Row {
        table: &'static str,
        message: String,
    },
}

impl StoreError {
    pub fn query(statement: impl Into<String>, err: impl std::fmt::Display) -> Self {
        StoreError::Query {
            statement: statement.into(),
            message: err.to_string(),
        }
    }
}

/// A stored row galley cannot read, or a schema that is not the one it
/// expects, stays that way however often it is read again: fatal. A failed
/// statement or connection may pass: retryable.
impl From<StoreError> for crate::pipeline::StepError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Row { .. } | StoreError::Schema(_) => Self::Fatal(err.to_string()),
            StoreError::Connect { .. } | StoreError::Query { .. } => {
                Self::Retryable(err.to_string())
            }
        }
    }
}

/// A row value together with the offset of the last event applied to it.
///
/// Every projection row stores that offset both as `applied_offset` (read
/// back to skip events already applied) and as its cells' write timestamp
/// (`USING TIMESTAMP`), so that of two writers of one row, the one further
/// along its partition wins, whatever order the writes arrive in.
///
/// Serializable so that a domain can put its rows in a changelog
/// (`pipeline.delivery = "exactly_once"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Versioned<T> {
    pub value: T,
    pub applied_offset: i64,
}

/// The driver's level for the configured one.
fn driver_consistency(level: CqlConsistency) -> Consistency {
    match level {
        CqlConsistency::LocalQuorum => Consistency::LocalQuorum,
        CqlConsistency::Quorum => Consistency::Quorum,
        CqlConsistency::All => Consistency::All,
    }
}

/// Opens a session with galley's consistency and timeouts. The keyspace is
/// not selected: statements name it, so one session can serve migrations too.
pub async fn connect(cfg: &CqlConfig) -> Result<Arc<Session>, StoreError> {
    let profile = ExecutionProfile::builder()
        .consistency(driver_consistency(cfg.consistency))
        .request_timeout(Some(cfg.request_timeout))
        .build();
    let mut builder = SessionBuilder::new()
        .known_nodes(&cfg.contact_points)
        .connection_timeout(Duration::from_secs(5))
        .default_execution_profile_handle(profile.into_handle());
    if !cfg.local_datacenter.is_empty() {
        builder = builder.prefer_datacenter(cfg.local_datacenter.clone());
    }
    if !cfg.username.is_empty() {
        builder = builder.user(cfg.username.clone(), cfg.password.expose().to_string());
    }
    builder
        .build()
        .await
        .map(Arc::new)
        .map_err(|e| StoreError::Connect {
            contact_points: cfg.contact_points.join(","),
            message: e.to_string(),
        })
}

/// Answers whether the database serves queries right now (for readiness).
pub async fn ping(session: &Session) -> Result<(), StoreError> {
    const PING: &str = "SELECT release_version FROM system.local";
    session
        .query_unpaged(PING, ())
        .await
        .map(|_| ())
        .map_err(|e| StoreError::query(PING, e))
}

/// Prepares one statement; the error names it.
pub async fn prepare(session: &Session, cql: &str) -> Result<PreparedStatement, StoreError> {
    session
        .prepare(cql)
        .await
        .map_err(|e| StoreError::query(cql, e))
}

/// How long one `TRUNCATE` may take: every replica flushes and drops the
/// table's data before it answers, which takes far longer than a row write
/// (Cassandra's own `truncate_request_timeout` is 60 s).
const TRUNCATE_TIMEOUT: Duration = Duration::from_secs(120);

/// Empties `table` of `keyspace`. `TRUNCATE` and never `DELETE`: a tombstone
/// written with a wall-clock timestamp would shadow every offset-stamped
/// write that follows it (see [`Versioned`]).
pub async fn truncate(session: &Session, keyspace: &str, table: &str) -> Result<(), StoreError> {
    let cql = format!("TRUNCATE {keyspace}.{table}");
    let mut statement = Statement::new(cql.clone());
    statement.set_request_timeout(Some(TRUNCATE_TIMEOUT));
    session
        .query_unpaged(statement, ())
        .await
        .map(|_| ())
        .map_err(|e| StoreError::query(cql, e))
}

/// Executes a statement that returns no rows (a write), recording its
/// latency and outcome under `name`.
pub async fn execute(
    session: &Session,
    name: &'static str,
    statement: &PreparedStatement,
    values: impl SerializeRow,
) -> Result<(), StoreError> {
    let started = Instant::now();
    let result = session.execute_unpaged(statement, values).await;
    record_statement(name, started, result.is_ok());
    result.map(|_| ()).map_err(|e| StoreError::query(name, e))
}

/// Records one statement's latency and outcome. A success adds zero to the
/// statement's error counter: the series then exists from the first
/// statement on, so an alert's `increase()` sees the first failure.
pub(crate) fn record_statement(statement: &'static str, started: Instant, ok: bool) {
    metrics::histogram!(t::DB_STATEMENT_DURATION_SECONDS, "statement" => statement)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(t::DB_ERRORS_TOTAL, "statement" => statement).increment(u64::from(!ok));
}
