//! The shop's row keys as [`crate::store::known_keys`] hashes them: which
//! rows a batch need not read because they surely do not exist, and which
//! keys a batch creates, recorded before its rows are written.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use super::cache::PartitionKey;
use super::writes::ShopWrites;
use crate::store::known_keys::{key_hash, KeyHash, PartitionKeys};
use crate::telemetry as t;

pub(super) fn order_key(order_id: &str) -> KeyHash {
    key_hash(b'o', &[order_id.as_bytes()])
}

pub(super) fn stock_key(sku: &str) -> KeyHash {
    key_hash(b's', &[sku.as_bytes()])
}

pub(super) fn reservation_key(sku: &str, order_id: &str) -> KeyHash {
    key_hash(b'r', &[sku.as_bytes(), order_id.as_bytes()])
}

pub(super) fn sku_cell_key(sku: &str, minute: i64) -> KeyHash {
    key_hash(b'k', &[sku.as_bytes(), &minute.to_le_bytes()])
}

pub(super) fn minute_cell_key(minute: &i64) -> KeyHash {
    key_hash(b'm', &[&minute.to_le_bytes()])
}

/// Takes out of `wanted` every key `known` says has no row and puts it
/// into `rows` as `absent`: what its read would have found, without the read.
pub(super) fn settle_absent<K, V: Clone>(
    known: Option<&PartitionKeys>,
    wanted: &mut HashSet<K>,
    rows: &mut HashMap<K, V>,
    hash: fn(&K) -> KeyHash,
    absent: V,
) where
    K: Eq + Hash,
{
    let Some(known) = known.filter(|k| k.is_complete()) else {
        return;
    };
    let (settled, to_read): (Vec<K>, Vec<K>) = wanted
        .drain()
        .partition(|key| known.surely_absent(hash(key)));
    wanted.extend(to_read);
    metrics::counter!(t::ROW_READS_SKIPPED_TOTAL).increment(settled.len() as u64);
    for key in settled {
        rows.insert(key, absent.clone());
    }
}

/// Notes in `w.new_keys`, per partition whose keys are complete, the keys
/// of the rows `w` writes that `known` does not hold yet (those the batch
/// creates), under the offset of the partition's newest record in the batch.
pub(super) fn note_created_keys(w: &mut ShopWrites, known: &HashMap<PartitionKey, PartitionKeys>) {
    let mut written: Vec<(&PartitionKey, KeyHash)> = Vec::new();
    for (part, sku, minute, _) in &w.sku_sales {
        written.push((part, sku_cell_key(sku, *minute)));
    }
    for (part, minute, _) in &w.minute_sales {
        written.push((part, minute_cell_key(minute)));
    }
    for (part, order) in &w.orders {
        written.push((part, order_key(&order.value.order_id)));
    }
    for (part, chunks) in &w.inventory {
        for chunk in chunks {
            let sku = &chunk.stock.value.sku;
            written.push((part, stock_key(sku)));
            for r in &chunk.reservations {
                written.push((part, reservation_key(sku, &r.value.order_id)));
            }
        }
    }
    // A partition whose keys are incomplete never answers from them: its
    // keys are not worth recording.
    let mut created: HashMap<&PartitionKey, HashSet<KeyHash>> = HashMap::new();
    for (part, hash) in written {
        if let Some(known) = known.get(part).filter(|k| k.is_complete()) {
            if !known.knows(hash) {
                created.entry(part).or_default().insert(hash);
            }
        }
    }
    let mut new_keys = Vec::new();
    for (part, newest, _) in &w.progress {
        if let Some(hashes) = created.remove(part) {
            let mut hashes: Vec<KeyHash> = hashes.into_iter().collect();
            hashes.sort_unstable();
            new_keys.push((part.clone(), newest.offset, hashes));
        }
    }
    w.new_keys = new_keys;
}
