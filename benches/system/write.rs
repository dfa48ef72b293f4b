//! (b) Write only: the rows of the events (c) applied, computed beforehand
//! by galley's own processor (decode, reads, handlers: untimed), then
//! written by its own write step: the same prepared statements, the same
//! order (derived rows, then orders and inventory, then progress), the same
//! single-partition inventory batches and the same `max_concurrent_statements`,
//! batch after batch as galley does. Into a keyspace of its own, empty before.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use galley::pipeline::{always_open, InputRecord, Processor};
use galley::shop::projections::ProjectionStore;
use galley::shop::{ShopProcessor, ShopWrites};

use crate::setup::BenchEnv;

pub struct Written {
    pub events: u64,
    pub statements: usize,
    pub elapsed: Duration,
}

pub async fn measure(env: &BenchEnv, batches: &[Vec<InputRecord>]) -> Result<Written> {
    let store = ProjectionStore::prepare(env.session.clone(), &env.write_keyspace)
        .await
        .context("preparing the write keyspace's statements")?;
    let codec = galley::domain::codec().context("loading schemas")?;
    let mut processor = ShopProcessor::new(Arc::new(codec), Arc::new(store), env.shop_settings());

    let computing = Instant::now();
    let mut rows: Vec<ShopWrites> = Vec::with_capacity(batches.len());
    for batch in batches {
        let mut effects = processor
            .prepare(batch)
            .await
            .map_err(|e| anyhow::anyhow!("computing rows: {e}"))?;
        rows.push(effects.writes.take_rows());
        processor.committed(effects.writes, false);
    }
    let statements = rows.iter().map(ShopWrites::statement_count).sum();
    println!(
        "bench: (b) computed {statements} statements' rows in {:.1} s (not timed)",
        computing.elapsed().as_secs_f64()
    );

    let gate = always_open();
    let started = Instant::now();
    for batch_rows in &rows {
        processor
            .write(batch_rows, &gate)
            .await
            .map_err(|e| anyhow::anyhow!("writing rows: {e}"))?;
    }
    let elapsed = started.elapsed();
    Ok(Written {
        events: batches.iter().map(|b| b.len() as u64).sum(),
        statements,
        elapsed,
    })
}
