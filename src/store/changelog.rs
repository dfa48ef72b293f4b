//! The sink's position in each changelog partition, kept in the database it
//! applies to (`pipeline.delivery = "exactly_once"`): a partition's next
//! owner resumes applying where the database says the last one stopped.

use std::sync::Arc;

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::DeserializeRow;

use futures::future::{BoxFuture, FutureExt};

use super::read::{self, ReadError};
use super::{execute, prepare, StoreError};
use crate::pipeline::{Applied, SinkPositions, StepError};

#[derive(Debug, DeserializeRow)]
struct AppliedColumns {
    next_offset: Option<i64>,
    input_next_offset: Option<i64>,
}

/// The `changelog_applied` table's prepared statements.
pub struct AppliedStore {
    session: Arc<Session>,
    upsert: PreparedStatement,
    select: PreparedStatement,
}

impl AppliedStore {
    pub async fn prepare(session: Arc<Session>, keyspace: &str) -> Result<Self, StoreError> {
        let ks = keyspace;
        let upsert = format!(
            "INSERT INTO {ks}.changelog_applied (topic, partition, next_offset, \
             input_next_offset) VALUES (?, ?, ?, ?) USING TIMESTAMP ?"
        );
        let select = format!(
            "SELECT next_offset, input_next_offset FROM {ks}.changelog_applied \
             WHERE topic = ? AND partition = ?"
        );
        Ok(Self {
            upsert: prepare(&session, &upsert).await?,
            select: prepare(&session, &select).await?,
            session,
        })
    }

    /// Where the sink stopped in `partition` of the changelog `topic`, if
    /// it ever applied anything there.
    pub async fn read(&self, topic: &str, partition: i32) -> Result<Option<Applied>, ReadError> {
        let row: Option<AppliedColumns> = read::select_one(
            &self.session,
            "sink_position",
            "changelog_applied",
            &self.select,
            (topic, partition),
        )
        .await?;
        Ok(row.and_then(|r| {
            Some(Applied {
                next_offset: r.next_offset?,
                input_next_offset: r.input_next_offset?,
            })
        }))
    }

    /// Starts the sink of `partition` of changelog `topic` again at
    /// `next_offset` (or where it stopped, if that is further), with nothing
    /// of its input partition claimed applied below `input_next_offset`,
    /// whatever the row said before. `galley replay` and `galley rebuild`
    /// reset the input to its earliest offsets, and the checkpoints of the
    /// earlier run, far ahead of the new run's, would otherwise claim its
    /// rows applied before they are. Written with a timestamp above the
    /// stored row's: a tie with the sink's next write (stamped with its
    /// next offset) keeps the larger values, which are the sink's.
    pub async fn restart(
        &self,
        topic: &str,
        partition: i32,
        next_offset: i64,
        input_next_offset: i64,
    ) -> Result<Applied, StoreError> {
        let stored = self.read(topic, partition).await?;
        let next_offset = stored.map_or(next_offset, |a| a.next_offset.max(next_offset));
        let values = (
            topic,
            partition,
            next_offset,
            input_next_offset,
            next_offset + 1,
        );
        execute(&self.session, "restart_sink_position", &self.upsert, values).await?;
        Ok(Applied {
            next_offset,
            input_next_offset,
        })
    }

    /// Records that `partition` of the changelog `topic` is applied up to `applied`.
    pub async fn write(
        &self,
        topic: &str,
        partition: i32,
        applied: Applied,
    ) -> Result<(), StoreError> {
        let values = (
            topic,
            partition,
            applied.next_offset,
            applied.input_next_offset,
            applied.next_offset,
        );
        execute(&self.session, "upsert_sink_position", &self.upsert, values).await
    }
}

impl SinkPositions for AppliedStore {
    fn read<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
    ) -> BoxFuture<'a, Result<Option<Applied>, StepError>> {
        async move {
            AppliedStore::read(self, topic, partition)
                .await
                .map_err(|e| StepError::from(StoreError::from(e)))
        }
        .boxed()
    }

    fn write<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        applied: Applied,
    ) -> BoxFuture<'a, Result<(), StepError>> {
        async move {
            AppliedStore::write(self, topic, partition, applied)
                .await
                .map_err(StepError::from)
        }
        .boxed()
    }
}
