//! Keeps, of the rows one sink round decodes, only the newest version of
//! each row (`pipeline.delivery = "exactly_once"`).
//!
//! A round merges the changelog values of many batches when the sink is
//! behind, and a busy row (the current minute's sales cell of a partition, an
//! order going through its steps, a hot SKU's stock) then comes once per
//! batch that changed it. Every version is written with its offset as its
//! write timestamp, so the database keeps the newest whatever else is
//! written: writing only that one leaves the same rows for fewer statements,
//! and a sink that is behind catches up faster the further behind it is.
//!
//! What stays as it was: the keys the batches created (each batch's record
//! is a row of its own), and a SKU's inventory chunks whenever its newest
//! stock and reservations do not fit in one chunk, because each chunk is
//! written atomically as the state after its last event and a merge of
//! several would write a stock with only some of its reservations.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::Hash;

use super::writes::{InventoryChunk, ShopWrites, RESERVATIONS_PER_BATCH};
use crate::domain::inventory::Reservation;
use crate::store::Versioned;

/// Drops every row version that a newer version of the same row, in the same
/// input partition, supersedes.
pub(super) fn newest_only(writes: &mut ShopWrites) {
    keep_newest(
        &mut writes.customer_index,
        |(part, o)| {
            let v = &o.value;
            (
                part.clone(),
                v.customer_id.clone(),
                v.placed_at_ms,
                v.order_id.clone(),
            )
        },
        |(_, o)| o.applied_offset,
    );
    keep_newest(
        &mut writes.sku_sales,
        |(part, sku, minute, _)| (part.clone(), sku.clone(), *minute),
        |(_, _, _, cell)| cell.applied_offset,
    );
    keep_newest(
        &mut writes.minute_sales,
        |(part, minute, _)| (part.clone(), *minute),
        |(_, _, cell)| cell.applied_offset,
    );
    keep_newest(
        &mut writes.orders,
        |(part, o)| (part.clone(), o.value.order_id.clone()),
        |(_, o)| o.applied_offset,
    );
    keep_newest(
        &mut writes.progress,
        |(part, _, _)| part.clone(),
        |(_, mark, _)| mark.offset,
    );
    for (_, chunks) in &mut writes.inventory {
        if let Some(merged) = merge_chunks(chunks) {
            *chunks = vec![merged];
        }
    }
}

/// Keeps, of the rows with equal keys, the one with the highest offset (the
/// later one of equals, as the later write would win a tie), in the place of
/// the key's first row.
fn keep_newest<T, K: Eq + Hash>(
    rows: &mut Vec<T>,
    key: impl Fn(&T) -> K,
    offset: impl Fn(&T) -> i64,
) {
    let mut place: HashMap<K, usize> = HashMap::with_capacity(rows.len());
    let mut kept: Vec<T> = Vec::with_capacity(rows.len());
    for row in rows.drain(..) {
        match place.entry(key(&row)) {
            Entry::Occupied(at) => {
                let slot = &mut kept[*at.get()];
                if offset(&row) >= offset(slot) {
                    *slot = row;
                }
            }
            Entry::Vacant(at) => {
                at.insert(kept.len());
                kept.push(row);
            }
        }
    }
    *rows = kept;
}

/// One chunk with a SKU's newest stock and the newest version of each of
/// its reservations, if there are several chunks and that fits in one.
fn merge_chunks(chunks: &[InventoryChunk]) -> Option<InventoryChunk> {
    if chunks.len() < 2 {
        return None;
    }
    let stock = chunks
        .iter()
        .map(|c| &c.stock)
        .max_by_key(|s| s.applied_offset)?
        .clone();
    let mut reservations: Vec<Versioned<Reservation>> = chunks
        .iter()
        .flat_map(|c| c.reservations.iter().cloned())
        .collect();
    keep_newest(
        &mut reservations,
        |r| r.value.order_id.clone(),
        |r| r.applied_offset,
    );
    (reservations.len() <= RESERVATIONS_PER_BATCH).then_some(InventoryChunk {
        stock,
        reservations,
    })
}
