//! The shop's [`Processor`]: the engine hands it batches of input records, it
//! hands back the messages and row writes they lead to, as the module doc of
//! [`crate::shop`] argues, exactly once in effect.
//!
//! A batch passes through the files here in turn: `decode` turns records into
//! validated events or dead letters; `load` brings the rows those events touch
//! into the batch, from the partition's `cache` or else from the database;
//! `apply` runs the pure handlers and adds each sale to its `sales` cells;
//! `writes` holds the rows to write and writes them in waves. Once the batch
//! is committed, the cache adopts its rows.
//!
//! With exactly-once delivery the processor writes nothing itself:
//! `changelog` encodes a batch's rows for the engine to commit with the
//! batch, the cache keeps them at hand until the sink has applied them, and
//! the [`ShopSink`] of `sink` decodes and writes them, in the same waves.

mod apply;
mod cache;
mod changelog;
mod coalesce;
mod decode;
mod known;
mod load;
mod sales;
mod sink;
mod writes;

#[cfg(test)]
mod changelog_tests;
#[cfg(test)]
mod coalesce_tests;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use self::cache::PartitionCaches;
pub use self::sink::ShopSink;
pub use self::writes::ShopWrites;
use self::writes::{count_outcomes, write_in_waves};
use super::projections::ProjectionStore;
use super::ShopSettings;
use crate::codec::Codec;
use crate::pipeline::{ChangelogEntry, Effects, InputRecord, Processor, StepError, WriteGate};
use crate::telemetry as t;

/// The shop's [`Processor`].
pub struct ShopProcessor {
    codec: Arc<Codec>,
    store: Arc<ProjectionStore>,
    settings: ShopSettings,
    caches: PartitionCaches,
}

impl ShopProcessor {
    pub fn new(codec: Arc<Codec>, store: Arc<ProjectionStore>, settings: ShopSettings) -> Self {
        metrics::gauge!(t::ROW_CACHE_BYTES).set(0.0);
        metrics::gauge!(t::KNOWN_ROW_KEYS).set(0.0);
        metrics::counter!(t::ROW_READS_SKIPPED_TOTAL).absolute(0);
        metrics::gauge!(t::ROWS_AWAITING_SINK_BYTES).set(0.0);
        Self {
            codec,
            store,
            caches: PartitionCaches::new(settings.row_cache_max_bytes),
            settings,
        }
    }
}

impl Processor for ShopProcessor {
    type Writes = ShopWrites;

    async fn prepare(&mut self, batch: &[InputRecord]) -> Result<Effects<ShopWrites>, StepError> {
        self.prepare_batch(batch).await
    }

    async fn write(&mut self, writes: &ShopWrites, gate: &WriteGate<'_>) -> Result<(), StepError> {
        let limit = self.settings.max_concurrent_statements;
        write_in_waves(&self.store, writes, limit, gate).await
    }

    fn changelog(
        &self,
        writes: &ShopWrites,
        max_bytes: usize,
    ) -> Result<Vec<ChangelogEntry>, StepError> {
        Ok(changelog::encode(writes, max_bytes)?)
    }

    fn committed(&mut self, writes: ShopWrites, awaiting_sink: bool) {
        count_outcomes(&writes.counts);
        self.caches.commit(writes, awaiting_sink);
        self.report_cache_bytes();
    }

    fn applied(&mut self, topic: &str, partition: i32, next_offset: i64) {
        self.caches.applied(topic, partition, next_offset);
        self.report_cache_bytes();
    }

    fn partitions_revoked(&mut self, partitions: &[(String, i32)]) {
        self.caches.forget_partitions(partitions);
        self.report_cache_bytes();
    }

    fn awaiting_sink_bytes(&self) -> usize {
        self.caches.awaiting_sink_bytes()
    }
}

impl ShopProcessor {
    fn report_cache_bytes(&self) {
        metrics::gauge!(t::ROW_CACHE_BYTES).set(self.caches.bytes() as f64);
        let known: usize = self.caches.known_keys.values().map(|k| k.len()).sum();
        metrics::gauge!(t::KNOWN_ROW_KEYS).set(known as f64);
        metrics::gauge!(t::ROWS_AWAITING_SINK_BYTES).set(self.caches.awaiting_sink_bytes() as f64);
    }
}
