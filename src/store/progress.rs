//! The `partition_progress` table: per input partition, the offset and the
//! event time of the newest event applied. A processor writes it after each
//! batch's rows; the query API's freshness report reads it. It is the
//! engine's own table, keyed by topic and partition, whatever the domain.
//!
//! With the `input_topics` table it also tells whether the input topics are
//! still the offset spaces the keyspace's watermarks were written in
//! ([`offset_space_problem`]): `galley run` checks it before consuming.

use std::collections::BTreeMap;
use std::sync::Arc;

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;
use scylla::{DeserializeRow, SerializeRow};

use super::marks::RecordMark;
use super::read::{self, ReadError};
use super::{execute, prepare, StoreError};

/// The engine's table of per-partition progress. It holds no watermark a
/// row depends on, but `galley rebuild` empties it with the domain's
/// tables, so that the freshness report does not claim the rebuilt rows are
/// current before they are.
pub const TABLE: &str = "partition_progress";

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

/// Why the input topic's offsets are not the ones the keyspace's watermarks
/// were written in, if they are not: its partition count changed since it
/// was `recorded`, or a partition ends (`ends`: partition → high watermark)
/// at or below an offset already `applied` there, which only a re-created
/// or truncated topic does. Either way new events would count as
/// duplicates, silently, so `galley run` refuses to start with this message.
pub fn offset_space_problem(
    topic: &str,
    recorded: Option<i32>,
    ends: &BTreeMap<i32, i64>,
    applied: &[(i32, i64)],
) -> Option<String> {
    let partitions = ends.len() as i32;
    if let Some(recorded) = recorded.filter(|r| *r != partitions) {
        return Some(format!(
            "input topic {topic} has {partitions} partitions, but this keyspace was written \
             when it had {recorded} partitions: keys now map to other partitions, so their \
             rows would get a second writer and new events would count as duplicates. See \
             README \"Adding partitions\": rebuild into a new keyspace from topics that \
             hold every event at its new partition"
        ));
    }
    let behind = applied
        .iter()
        .find(|(p, offset)| ends.get(p).is_some_and(|end| end <= offset));
    behind.map(|(partition, offset)| {
        format!(
            "input topic {topic}[{partition}] ends at offset {} but this keyspace already \
             applied offset {offset} there: the topic was re-created (or truncated) since, \
             and its new events would count as duplicates. Run galley on a new keyspace \
             (cql.keyspace, then `galley migrate`) to rebuild from the topic as it is; see \
             README \"Adding partitions\"",
            ends.get(partition).copied().unwrap_or_default()
        )
    })
}

/// What the progress read selects.
#[derive(Debug, DeserializeRow)]
#[scylla(flavor = "enforce_order")]
struct ProgressColumns {
    partition: i32,
    newest_event_time: Option<CqlTimestamp>,
}

/// What the marks read selects.
#[derive(Debug, DeserializeRow)]
#[scylla(flavor = "enforce_order")]
struct MarkColumns {
    partition: i32,
    record_offset: Option<i64>,
    record_timestamp: Option<i64>,
    key_hash: Option<i64>,
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
    applied: PreparedStatement,
    recorded: PreparedStatement,
    record: PreparedStatement,
    upsert_mark: PreparedStatement,
    select_marks: PreparedStatement,
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
        let applied = format!(
            "SELECT partition, applied_offset FROM {ks}.partition_progress WHERE topic = ?"
        );
        let recorded = format!("SELECT partitions FROM {ks}.input_topics WHERE topic = ?");
        let record = format!(
            "INSERT INTO {ks}.input_topics (topic, partitions, recorded_at) VALUES (?, ?, ?)"
        );
        let upsert_mark = format!(
            "INSERT INTO {ks}.partition_marks (topic, partition, record_offset, \
             record_timestamp, key_hash) VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?"
        );
        let select_marks = format!(
            "SELECT partition, record_offset, record_timestamp, key_hash \
             FROM {ks}.partition_marks WHERE topic = ?"
        );
        Ok(Self {
            upsert_mark: prepare(&session, &upsert_mark).await?,
            select_marks: prepare(&session, &select_marks).await?,
            upsert: prepare(&session, &upsert).await?,
            select: prepare(&session, &select).await?,
            applied: prepare(&session, &applied).await?,
            recorded: prepare(&session, &recorded).await?,
            record: prepare(&session, &record).await?,
            session,
        })
    }

    /// Records that `partition` of `topic` applied up to the record
    /// `newest`, whose event happened at `newest_event_ms`, and marks that
    /// record as the partition's (see [`super::marks`]).
    pub async fn write(
        &self,
        topic: &str,
        partition: i32,
        newest: &RecordMark,
        newest_event_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let values = progress_values(topic, partition, newest.offset, newest_event_ms, now_ms);
        execute(&self.session, "upsert_progress", &self.upsert, values).await?;
        let mark = (
            topic,
            partition,
            newest.offset,
            newest.timestamp_ms,
            newest.key_hash,
            newest.offset,
        );
        execute(&self.session, "upsert_mark", &self.upsert_mark, mark).await
    }

    /// The marked record of every partition of `topic` that has one.
    pub async fn marks(&self, topic: &str) -> Result<Vec<(i32, RecordMark)>, ReadError> {
        let rows: Vec<MarkColumns> = read::select_all(
            &self.session,
            "startup_marks",
            "partition_marks",
            &self.select_marks,
            (topic,),
        )
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let mark = RecordMark {
                    offset: row.record_offset?,
                    timestamp_ms: row.record_timestamp?,
                    key_hash: row.key_hash?,
                };
                Some((row.partition, mark))
            })
            .collect())
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

    /// The offset applied last in each partition of `topic` that applied one.
    pub async fn applied_offsets(&self, topic: &str) -> Result<Vec<(i32, i64)>, ReadError> {
        let rows: Vec<(i32, Option<i64>)> = read::select_all(
            &self.session,
            "startup_applied_offsets",
            "partition_progress",
            &self.applied,
            (topic,),
        )
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(p, offset)| Some((p, offset?)))
            .collect())
    }

    /// The partition count of `topic` recorded with this keyspace, if any.
    pub async fn recorded_partitions(&self, topic: &str) -> Result<Option<i32>, ReadError> {
        let rows: Vec<(Option<i32>,)> = read::select_all(
            &self.session,
            "startup_input_topic",
            "input_topics",
            &self.recorded,
            (topic,),
        )
        .await?;
        Ok(rows.into_iter().next().and_then(|(n,)| n))
    }

    /// Records `partitions` as the partition count of `topic`.
    pub async fn record_partitions(
        &self,
        topic: &str,
        partitions: i32,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let values = (topic, partitions, CqlTimestamp(now_ms));
        execute(&self.session, "record_input_topic", &self.record, values).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends(partitions: i32, end: i64) -> BTreeMap<i32, i64> {
        (0..partitions).map(|p| (p, end)).collect()
    }

    #[test]
    fn the_same_topic_further_on_is_fine() {
        assert_eq!(offset_space_problem("t", None, &ends(6, 10), &[]), None);
        let applied = [(0, 9), (5, 3)];
        assert_eq!(
            offset_space_problem("t", Some(6), &ends(6, 10), &applied),
            None
        );
    }

    #[test]
    fn added_partitions_are_named_with_both_counts() {
        let problem = offset_space_problem("t", Some(6), &ends(8, 10), &[]).expect("refused");
        assert!(problem.contains("has 8 partitions"), "{problem}");
        assert!(problem.contains("had 6 partitions"), "{problem}");
        assert!(problem.contains("Adding partitions"), "{problem}");
    }

    #[test]
    fn a_partition_ending_at_or_below_an_applied_offset_is_a_recreated_topic() {
        for end in [0, 9] {
            let problem =
                offset_space_problem("t", Some(6), &ends(6, end), &[(2, 9)]).expect("refused");
            assert!(problem.contains("t[2]"), "{problem}");
            assert!(problem.contains("re-created"), "{problem}");
        }
    }
}
