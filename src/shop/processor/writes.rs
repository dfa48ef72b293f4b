//! The rows one batch writes, and how they are written: in three waves, rows
//! derived from orders before the orders and inventory, and the partitions'
//! progress last, for the reasons the module doc of [`crate::shop`] gives.
//! The processor writes a batch's rows this way itself (at-least-once
//! delivery), and the changelog sink the rows of the values it applies.
//! Also the outcome counters, which move only once a batch is written.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt};
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use super::cache::{BatchRows, PartitionCaches, PartitionKey};
use crate::domain::inventory::{Reservation, Stock};
use crate::domain::order::Order;
use crate::domain::Outcome;
use crate::pipeline::{unix_ms, StepError, WriteGate};
use crate::shop::projections::ProjectionStore;
use crate::shop::rows::SalesCell;
use crate::store::known_keys::KeyHash;
use crate::store::marks::RecordMark;
use crate::store::{StoreError, Versioned};
use crate::telemetry as t;

/// Reservation rows per single-partition batch; keeps batches far below the
/// database's batch size limits even for a hot SKU.
pub(super) const RESERVATIONS_PER_BATCH: usize = 100;

/// Rows one batch writes, in the order they must be written, plus what the
/// cache should hold afterwards.
///
/// Every row names the input partition that owns it, topic included: a
/// partition number alone is ambiguous when a batch holds partition 0 of
/// the orders topic and partition 0 of the inventory topic, and the
/// changelog splits the rows by owner.
#[derive(Default)]
pub struct ShopWrites {
    /// Per input partition: the offset of its newest record in the batch and
    /// the keys of the rows the batch creates, recorded before any row.
    pub(super) new_keys: Vec<(PartitionKey, i64, Vec<KeyHash>)>,
    /// Input partitions whose rows come from changelog values that do not
    /// name their keys (format 1): their recorded keys are incomplete now.
    pub(super) keys_unrecorded: Vec<PartitionKey>,
    pub(super) customer_index: Vec<(PartitionKey, Versioned<Order>)>,
    pub(super) sku_sales: Vec<(PartitionKey, String, i64, Versioned<SalesCell>)>,
    pub(super) minute_sales: Vec<(PartitionKey, i64, Versioned<SalesCell>)>,
    pub(super) orders: Vec<(PartitionKey, Versioned<Order>)>,
    /// Each SKU's chunks, in the order they must be written.
    pub(super) inventory: Vec<(PartitionKey, Vec<InventoryChunk>)>,
    /// Per input partition: its newest record applied and newest event time.
    pub(super) progress: Vec<(PartitionKey, RecordMark, i64)>,
    pub(super) cache: HashMap<PartitionKey, BatchRows>,
    pub(super) counts: Vec<Counted>,
}

impl PartitionCaches {
    /// Makes a committed batch's rows the cached state of their partitions.
    /// With `awaiting_sink` (their changes are not in the database yet), also
    /// keeps the rows it changed until the sink has applied them.
    pub(super) fn commit(&mut self, mut writes: ShopWrites, awaiting_sink: bool) {
        for (part, _, hashes) in std::mem::take(&mut writes.new_keys) {
            if let Some(known) = self.known_keys.get_mut(&part) {
                known.add(&hashes);
            }
        }
        self.adopt(std::mem::take(&mut writes.cache));
        if !awaiting_sink {
            return;
        }
        for (part, (next_offset, rows)) in writes.into_changed_rows() {
            self.hold_until_applied(&part, next_offset, rows);
        }
    }
}

impl ShopWrites {
    /// Moves the rows to write into a value of their own, leaving behind what
    /// [`Processor::committed`](crate::pipeline::Processor::committed) adopts
    /// (cache contents and outcome counts).
    /// `make bench` uses it to compute a whole backlog's rows through the
    /// real processor first and write them afterwards, timing the writes alone.
    pub fn take_rows(&mut self) -> ShopWrites {
        ShopWrites {
            new_keys: std::mem::take(&mut self.new_keys),
            keys_unrecorded: std::mem::take(&mut self.keys_unrecorded),
            customer_index: std::mem::take(&mut self.customer_index),
            sku_sales: std::mem::take(&mut self.sku_sales),
            minute_sales: std::mem::take(&mut self.minute_sales),
            orders: std::mem::take(&mut self.orders),
            inventory: std::mem::take(&mut self.inventory),
            progress: std::mem::take(&mut self.progress),
            cache: HashMap::new(),
            counts: Vec::new(),
        }
    }

    /// The rows these writes change, per partition, keyed as the cache keys
    /// them, each with the offset after the partition's newest record in the
    /// batch: what must be read from memory until the sink has applied the
    /// batch. (The customer list is never read, so it is not among them.)
    pub(super) fn into_changed_rows(self) -> HashMap<PartitionKey, (i64, BatchRows)> {
        let mut changed: HashMap<PartitionKey, (i64, BatchRows)> = HashMap::new();
        // Past every changed row's own event, and past the partition's
        // newest record of the batch (which may have changed no row).
        fn slot<'a>(
            changed: &'a mut HashMap<PartitionKey, (i64, BatchRows)>,
            part: &PartitionKey,
            row_offset: i64,
        ) -> &'a mut BatchRows {
            let (next, rows) = changed.entry(part.clone()).or_default();
            *next = (*next).max(row_offset + 1);
            rows
        }
        for (part, sku, minute, cell) in self.sku_sales {
            slot(&mut changed, &part, cell.applied_offset)
                .sku_sales
                .insert((sku, minute), cell);
        }
        for (part, minute, cell) in self.minute_sales {
            slot(&mut changed, &part, cell.applied_offset)
                .minute_sales
                .insert(minute, cell);
        }
        for (part, order) in self.orders {
            slot(&mut changed, &part, order.applied_offset)
                .orders
                .insert(order.value.order_id.clone(), Some(order));
        }
        for (part, chunks) in self.inventory {
            // Later chunks of a SKU hold later versions: they replace.
            for chunk in chunks {
                let rows = slot(&mut changed, &part, chunk.stock.applied_offset);
                let sku = chunk.stock.value.sku.clone();
                for r in chunk.reservations {
                    let key = (sku.clone(), r.value.order_id.clone());
                    rows.reservations.insert(key, Some(r));
                }
                rows.stock.insert(sku, Some(chunk.stock));
            }
        }
        for (part, newest, _) in &self.progress {
            if let Some((next, _)) = changed.get_mut(part) {
                *next = (*next).max(newest.offset + 1);
            }
        }
        changed
    }

    /// Statements [`Processor::write`](crate::pipeline::Processor::write)
    /// executes for these rows (an inventory chunk is one batch statement; a
    /// partition's progress is two, its row and its mark).
    pub fn statement_count(&self) -> usize {
        self.new_keys.len()
            + self.keys_unrecorded.len()
            + self.customer_index.len()
            + self.sku_sales.len()
            + self.minute_sales.len()
            + self.orders.len()
            + self.inventory.iter().map(|(_, c)| c.len()).sum::<usize>()
            + 2 * self.progress.len()
    }
}

/// A SKU's stock and the reservations changed with it, written as one
/// single-partition batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct InventoryChunk {
    pub(super) stock: Versioned<Stock>,
    pub(super) reservations: Vec<Versioned<Reservation>>,
}

/// One decoded input event's fate, counted once its batch is written. Dead
/// letters are counted by the pipeline, which publishes them.
pub(super) struct Counted {
    pub(super) topic: Arc<str>,
    pub(super) event_type: &'static str,
    pub(super) outcome: Outcome,
}

/// A SKU's changes within one batch, cut into atomic chunks.
#[derive(Default)]
pub(super) struct InventoryLog {
    pub(super) stock: Option<Versioned<Stock>>,
    pending: Vec<Versioned<Reservation>>,
    chunks: Vec<InventoryChunk>,
}

impl InventoryLog {
    pub(super) fn add_reservation(&mut self, reservation: Versioned<Reservation>) {
        // A second change to the same reservation within a chunk replaces the first.
        if let Some(existing) = self
            .pending
            .iter_mut()
            .find(|r| r.value.order_id == reservation.value.order_id)
        {
            *existing = reservation;
        } else {
            self.pending.push(reservation);
        }
        if self.pending.len() >= RESERVATIONS_PER_BATCH {
            if let Some(stock) = self.stock.clone() {
                self.chunks.push(InventoryChunk {
                    stock,
                    reservations: std::mem::take(&mut self.pending),
                });
            }
        }
    }

    pub(super) fn into_chunks(mut self) -> Vec<InventoryChunk> {
        if let Some(stock) = self.stock.take() {
            let last_chunk_offset = self.chunks.last().map(|c| c.stock.applied_offset);
            if !self.pending.is_empty() || last_chunk_offset != Some(stock.applied_offset) {
                self.chunks.push(InventoryChunk {
                    stock,
                    reservations: self.pending,
                });
            }
        }
        self.chunks
    }
}

/// Writes rows in three waves, each finished before the next, with at most
/// `limit` statements in flight; before them, the keys the rows create (see
/// [`crate::store::known_keys`]: a row's key is recorded before the row).
pub(super) async fn write_in_waves(
    store: &ProjectionStore,
    w: &ShopWrites,
    limit: usize,
    gate: &WriteGate<'_>,
) -> Result<(), StepError> {
    let now = unix_ms();
    run_bounded(key_writes(store, w), limit, gate).await?;
    // Rows derived from orders first, then the orders themselves (see the
    // module doc of `crate::shop`).
    run_bounded(derived_row_writes(store, w), limit, gate).await?;
    run_bounded(primary_row_writes(store, w), limit, gate).await?;
    run_bounded(progress_writes(store, w, now), limit, gate).await?;
    Ok(())
}

type Write<'a> = BoxFuture<'a, Result<(), StoreError>>;

/// The keys the batch creates, and the partitions whose keys stop being
/// complete.
fn key_writes<'a>(store: &'a ProjectionStore, w: &'a ShopWrites) -> Vec<Write<'a>> {
    let keys = store.known_keys();
    w.new_keys
        .iter()
        .map(|((topic, p), batch_offset, hashes)| {
            keys.record(topic, *p, *batch_offset, hashes).boxed()
        })
        .chain(
            w.keys_unrecorded
                .iter()
                .map(|(topic, p)| keys.forget_completeness(topic, *p).boxed()),
        )
        .collect()
}

/// The customer list and the sales cells: rows derived from orders.
fn derived_row_writes<'a>(store: &'a ProjectionStore, w: &'a ShopWrites) -> Vec<Write<'a>> {
    w.customer_index
        .iter()
        .map(|(_, o)| store.write_order_index(o).boxed())
        .chain(w.sku_sales.iter().map(|((_, p), sku, minute, cell)| {
            store.write_sku_sales(sku, *minute, *p, cell).boxed()
        }))
        .chain(
            w.minute_sales
                .iter()
                .map(|((_, p), minute, cell)| store.write_minute_sales(*minute, *p, cell).boxed()),
        )
        .collect()
}

/// The orders and each SKU's inventory chunks.
fn primary_row_writes<'a>(store: &'a ProjectionStore, w: &'a ShopWrites) -> Vec<Write<'a>> {
    w.orders
        .iter()
        .map(|((_, p), o)| store.write_order(o, *p).boxed())
        .chain(
            w.inventory
                .iter()
                .map(|((_, p), chunks)| write_inventory_chunks(store, chunks, *p).boxed()),
        )
        .collect()
}

async fn write_inventory_chunks(
    store: &ProjectionStore,
    chunks: &[InventoryChunk],
    partition: i32,
) -> Result<(), StoreError> {
    // A SKU's chunks go in order: each is the state after its last event.
    for chunk in chunks {
        let reservations: Vec<&Versioned<Reservation>> = chunk.reservations.iter().collect();
        store
            .write_inventory(&chunk.stock, &reservations, partition)
            .await?;
    }
    Ok(())
}

fn progress_writes<'a>(store: &'a ProjectionStore, w: &'a ShopWrites, now: i64) -> Vec<Write<'a>> {
    w.progress
        .iter()
        .map(|((topic, p), newest, event_time)| {
            store
                .write_progress(topic, *p, newest, *event_time, now)
                .boxed()
        })
        .collect()
}

/// Runs futures with at most `limit` in flight, each started only if
/// `gate` lets it; the first error wins.
async fn run_bounded(
    futures: Vec<Write<'_>>,
    limit: usize,
    gate: &WriteGate<'_>,
) -> Result<(), StepError> {
    let gated: Vec<_> = futures.into_iter().map(|w| gated(w, gate)).collect();
    let mut running = stream::iter(gated).buffer_unordered(limit.max(1));
    while let Some(result) = running.next().await {
        result?;
    }
    Ok(())
}

/// `write`, started only once `gate` lets it.
fn gated<'a>(write: Write<'a>, gate: &'a WriteGate<'a>) -> BoxFuture<'a, Result<(), StepError>> {
    async move {
        gate.may_write()?;
        write.await.map_err(StepError::from)
    }
    .boxed()
}

/// Adds a written batch's outcomes to the outcome counters, tallied first so
/// that the registry is touched once per label set rather than per event.
pub(super) fn count_outcomes(counts: &[Counted]) {
    // Keyed by (topic, event type, outcome, rejection reason or "").
    let mut tally: BTreeMap<(&str, &'static str, &'static str, &'static str), u64> =
        BTreeMap::new();
    for c in counts {
        let (outcome, reason) = match c.outcome {
            Outcome::Applied => ("applied", ""),
            Outcome::Rejected { reason } => ("rejected", reason),
            Outcome::Duplicate => ("duplicate", ""),
        };
        *tally
            .entry((&c.topic, c.event_type, outcome, reason))
            .or_default() += 1;
        // Every type seen gets its applied and duplicate series, at zero if
        // need be: dashboards then show a rate of 0 rather than no data.
        for quiet in ["applied", "duplicate"] {
            tally
                .entry((&c.topic, c.event_type, quiet, ""))
                .or_default();
        }
    }
    for ((topic, event_type, outcome, reason), n) in tally {
        let topic = topic.to_string();
        let counter = match outcome {
            "applied" => metrics::counter!(
                t::EVENTS_APPLIED_TOTAL,
                "topic" => topic,
                "event_type" => event_type
            ),
            "rejected" => metrics::counter!(
                t::EVENTS_REJECTED_TOTAL,
                "topic" => topic,
                "event_type" => event_type,
                "reason" => reason
            ),
            _ => metrics::counter!(
                t::EVENTS_DUPLICATE_TOTAL,
                "topic" => topic,
                "event_type" => event_type
            ),
        };
        counter.increment(n);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// `n` statements that each count themselves in `started` when they run.
    fn counted_statements(n: usize, started: &AtomicUsize) -> Vec<Write<'_>> {
        (0..n)
            .map(|_| {
                async {
                    started.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
                .boxed()
            })
            .collect()
    }

    #[tokio::test]
    async fn no_statement_starts_once_the_gate_closes() {
        let started = AtomicUsize::new(0);
        let asked = AtomicUsize::new(0);
        // The process "froze" after three statements were let through.
        let check = || (asked.fetch_add(1, Ordering::SeqCst) >= 3).then(|| "paused".to_string());
        let gate = WriteGate::new(&check);
        let statements = counted_statements(10, &started);
        let written = run_bounded(statements, 2, &gate).await;
        assert!(written.is_err());
        assert_eq!(gate.closed(), Some("paused"));
        assert_eq!(started.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_open_gate_lets_a_whole_wave_through() {
        let started = AtomicUsize::new(0);
        let gate = crate::pipeline::always_open();
        let statements = counted_statements(10, &started);
        assert!(run_bounded(statements, 2, &gate).await.is_ok());
        assert_eq!(started.load(Ordering::SeqCst), 10);
    }
}
