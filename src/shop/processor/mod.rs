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

mod apply;
mod cache;
mod decode;
mod load;
mod sales;
mod writes;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

use self::cache::{PartitionCache, PartitionKey};
use self::writes::count_outcomes;
pub use self::writes::ShopWrites;
use super::projections::ProjectionStore;
use super::ShopSettings;
use crate::codec::Codec;
use crate::pipeline::{Effects, InputRecord, Processor, StepError};

/// The shop's [`Processor`].
pub struct ShopProcessor {
    codec: Arc<Codec>,
    store: Arc<ProjectionStore>,
    settings: ShopSettings,
    caches: HashMap<PartitionKey, PartitionCache>,
}

impl ShopProcessor {
    pub fn new(codec: Arc<Codec>, store: Arc<ProjectionStore>, settings: ShopSettings) -> Self {
        Self {
            codec,
            store,
            settings,
            caches: HashMap::new(),
        }
    }
}

impl Processor for ShopProcessor {
    type Writes = ShopWrites;

    async fn prepare(&mut self, batch: &[InputRecord]) -> Result<Effects<ShopWrites>, StepError> {
        self.prepare_batch(batch).await
    }

    async fn write(&mut self, writes: &ShopWrites) -> Result<(), StepError> {
        self.write_in_waves(writes).await
    }

    fn committed(&mut self, writes: ShopWrites) {
        count_outcomes(&writes.counts);
        self.adopt(writes.cache);
    }

    fn partitions_revoked(&mut self, partitions: &[(String, i32)]) {
        self.forget_partitions(partitions);
    }
}
