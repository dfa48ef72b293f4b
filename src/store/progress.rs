//! The `partition_progress` table: per input partition, the offset and the
//! event time of the newest event applied. A processor writes it after each
//! batch's rows; the query API's freshness report reads it. It is the
//! engine's own table, keyed by topic and partition, whatever the domain.

use std::sync::Arc;

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;
use scylla::{DeserializeRow, SerializeRow};

use super::read::{self, ReadError};
use super::{execute, prepare, StoreError};

/// The bound values of the progress upsert, in statement order (checked by
/// name against the prepared statement's bind markers).
#[derive(Debug, Clone, PartialEq, SerializeRow)]
#[scylla(flavor = "enforce_order")]
pub struct ProgressValues<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub applied_offset: i64,
    pub newest_event_time: CqlTimestamp,
    pub updated_at: CqlTimestamp,
    /// `USING TIMESTAMP ?`, which the database names `[timestamp]`.
    #[scylla(rename = "[timestamp]")]
    pub write_timestamp: i64,
}

/// `partition_progress` of one partition: its newest applied event time as
/// of `now_ms`, stamped with the applied offset like every projection row.
pub fn progress_values(
    topic: &str,
    partition: i32,
    applied_offset: i64,
    newest_event_ms: i64,
    now_ms: i64,
) -> ProgressValues<'_> {
    ProgressValues {
        topic,
        partition,
        applied_offset,
        newest_event_time: CqlTimestamp(newest_event_ms),
        updated_at: CqlTimestamp(now_ms),
        write_timestamp: applied_offset,
    }
}

/// What the progress read selects.
#[derive(Debug, DeserializeRow)]
#[scylla(flavor = "enforce_order")]
struct ProgressColumns {
    partition: i32,
    newest_event_time: Option<CqlTimestamp>,
}

/// Newest applied event time of one input partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressRow {
    pub partition: i32,
    pub newest_event_time_ms: Option<i64>,
}

/// The progress table's prepared statements.
pub struct ProgressStore {
    session: Arc<Session>,
    upsert: PreparedStatement,
    select: PreparedStatement,
}

impl ProgressStore {
    pub async fn prepare(session: Arc<Session>, keyspace: &str) -> Result<Self, StoreError> {
        let ks = keyspace;
        let upsert = format!(
            "INSERT INTO {ks}.partition_progress (topic, partition, applied_offset, \
             newest_event_time, updated_at) VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?"
        );
        let select = format!(
            "SELECT partition, newest_event_time FROM {ks}.partition_progress WHERE topic = ?"
        );
        Ok(Self {
            upsert: prepare(&session, &upsert).await?,
            select: prepare(&session, &select).await?,
            session,
        })
    }

    /// Records that `partition` of `topic` applied up to `applied_offset`,
    /// whose newest event happened at `newest_event_ms`.
    pub async fn write(
        &self,
        topic: &str,
        partition: i32,
        applied_offset: i64,
        newest_event_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let values = progress_values(topic, partition, applied_offset, newest_event_ms, now_ms);
        execute(&self.session, "upsert_progress", &self.upsert, values).await
    }

    /// Newest applied event time of every partition of `topic` that has applied one.
    pub async fn read(&self, topic: &str) -> Result<Vec<ProgressRow>, ReadError> {
        let rows: Vec<ProgressColumns> = read::select_all(
            &self.session,
            "api_progress",
            "partition_progress",
            &self.select,
            (topic,),
        )
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| ProgressRow {
                partition: row.partition,
                newest_event_time_ms: row.newest_event_time.map(|t| t.0),
            })
            .collect())
    }
}
