//! The shop's [`ChangelogSink`]: writes the rows of committed changelog
//! values to the database (`pipeline.delivery = "exactly_once"`), in the
//! same three waves the processor writes a batch in with at-least-once
//! delivery, so that the order of effects the module doc of [`crate::shop`]
//! argues for holds either way.

use std::sync::Arc;

use super::writes::{write_in_waves, ShopWrites};
use super::{changelog, coalesce};
use crate::pipeline::{always_open, ChangelogSink, StepError};
use crate::shop::projections::ProjectionStore;

/// Applies the shop's changelog values to the projection tables.
pub struct ShopSink {
    store: Arc<ProjectionStore>,
    max_concurrent_statements: usize,
}

impl ShopSink {
    pub fn new(store: Arc<ProjectionStore>, max_concurrent_statements: usize) -> Self {
        Self {
            store,
            max_concurrent_statements,
        }
    }
}

impl ChangelogSink for ShopSink {
    /// Merges all `values` into one write, so that a run of small batches
    /// costs one set of waves, and writes each row once. Applying them again
    /// changes nothing: every row carries its offset as its write timestamp,
    /// so the newest version of a row wins however often, and in whatever
    /// order, it is written.
    async fn apply(&self, values: &[&[u8]]) -> Result<(), StepError> {
        let writes = rows_of_round(values)?;
        // The sink applies committed changelog records only, and their
        // offset timestamps settle a race with a former owner's sink.
        write_in_waves(
            &self.store,
            &writes,
            self.max_concurrent_statements,
            &always_open(),
        )
        .await
    }
}

/// The rows a round of changelog `values` writes: all of them merged, each
/// row in its newest version only.
pub(super) fn rows_of_round(values: &[&[u8]]) -> Result<ShopWrites, StepError> {
    let mut writes = changelog::decode(values)?;
    coalesce::newest_only(&mut writes);
    Ok(writes)
}
