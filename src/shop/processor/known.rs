//! The shop's row keys as [`crate::store::known_keys`] hashes them: which
//! rows a batch need not read because they surely do not exist, and which
//! keys a batch creates, recorded before its rows are written.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

#[cfg(test)]
use super::cache::PartitionCaches;
use super::cache::{BatchRows, PartitionKey};
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
    let Some(known) = known.filter(|k| k.answers()) else {
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

/// The keys of the order and stock rows and reservations a partition's
/// batch loaded as absent (`None`). A row the batch writes under one of
/// these keys is created by it.
pub(super) fn absent_entity_keys(rows: &BatchRows) -> HashSet<KeyHash> {
    let mut absent = HashSet::new();
    absent.extend(
        rows.orders
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(id, _)| order_key(id)),
    );
    absent.extend(
        rows.stock
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(sku, _)| stock_key(sku)),
    );
    absent.extend(
        rows.reservations
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|((sku, order), _)| reservation_key(sku, order)),
    );
    absent
}

/// The keys of the sales cells a partition's batch loaded as never written.
pub(super) fn absent_cell_keys(rows: &BatchRows) -> HashSet<KeyHash> {
    let mut absent = HashSet::new();
    absent.extend(
        rows.sku_sales
            .iter()
            .filter(|(_, cell)| cell.applied_offset < 0)
            .map(|((sku, minute), _)| sku_cell_key(sku, *minute)),
    );
    absent.extend(
        rows.minute_sales
            .iter()
            .filter(|(_, cell)| cell.applied_offset < 0)
            .map(|(minute, _)| minute_cell_key(minute)),
    );
    absent
}

/// Notes in `w.new_keys`, per partition whose keys are recorded from its
/// start, the keys of the rows `w` writes that the batch loaded as absent
/// (`absent`, per partition): those it creates, under the offset of the
/// partition's newest record in the batch. Taken from what the batch
/// loaded, not from the keys held in memory, so that a partition whose held
/// keys were let go still records every key it creates.
pub(super) fn note_created_keys(
    w: &mut ShopWrites,
    known: &HashMap<PartitionKey, PartitionKeys>,
    absent: &HashMap<PartitionKey, HashSet<KeyHash>>,
) {
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
    let recorded = |part: &PartitionKey| known.get(part).is_some_and(PartitionKeys::is_complete);
    let mut created: HashMap<&PartitionKey, HashSet<KeyHash>> = HashMap::new();
    for (part, hash) in written {
        if recorded(part) && absent.get(part).is_some_and(|a| a.contains(&hash)) {
            created.entry(part).or_default().insert(hash);
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::shop::rows::SalesCell;
    use crate::store::marks::RecordMark;
    use crate::store::Versioned;

    fn part(n: i32) -> PartitionKey {
        (Arc::from("shop.orders"), n)
    }

    fn cell(applied_offset: i64) -> Versioned<SalesCell> {
        Versioned {
            value: SalesCell::default(),
            applied_offset,
        }
    }

    /// Writes of two minute cells in partition 0 and one in partition 1.
    fn writes() -> ShopWrites {
        let mut w = ShopWrites::default();
        w.minute_sales.push((part(0), 60_000, cell(40)));
        w.minute_sales.push((part(0), 120_000, cell(41)));
        w.minute_sales.push((part(1), 60_000, cell(7)));
        for (p, offset) in [(0, 41), (1, 7)] {
            let mark = RecordMark::of(offset, Some(b"O-1"), Some(1_000));
            w.progress.push((part(p), mark, 1_000));
        }
        w
    }

    #[test]
    fn a_batch_records_the_written_keys_it_loaded_as_absent() {
        let mut w = writes();
        let mut known = HashMap::new();
        known.insert(part(0), PartitionKeys::recorded_from_start([]));
        // Partition 1's keys were never recorded from its start.
        known.insert(part(1), PartitionKeys::default());
        let absent = HashMap::from([
            (part(0), HashSet::from([minute_cell_key(&60_000)])),
            (part(1), HashSet::from([minute_cell_key(&60_000)])),
        ]);
        note_created_keys(&mut w, &known, &absent);
        assert_eq!(
            w.new_keys,
            vec![(part(0), 41, vec![minute_cell_key(&60_000)])]
        );

        // A partition whose held keys were let go still records what it creates.
        if let Some(keys) = known.get_mut(&part(0)) {
            keys.drop_keys();
        }
        let mut again = writes();
        note_created_keys(&mut again, &known, &absent);
        assert_eq!(again.new_keys, w.new_keys);
    }

    #[test]
    fn past_the_bound_the_largest_partitions_keys_are_let_go() {
        let big = PartitionKeys::recorded_from_start(0..10_000);
        let small = PartitionKeys::recorded_from_start(0..10);
        let bound = big.heap_bytes() + small.heap_bytes() - 1;
        let mut caches = PartitionCaches::new(1 << 20, bound);
        caches.known_keys.insert(part(0), big);
        caches.known_keys.insert(part(1), small);
        caches.bound_known_keys();
        assert!(!caches.known_keys[&part(0)].answers());
        assert!(caches.known_keys[&part(0)].is_complete());
        assert!(caches.known_keys[&part(1)].answers());
        let held: usize = caches
            .known_keys
            .values()
            .map(PartitionKeys::heap_bytes)
            .sum();
        assert!(held <= bound);
    }

    #[test]
    fn only_keys_held_by_an_answering_set_are_read() {
        let mut wanted: HashSet<String> = ["O-1", "O-2"].map(String::from).into();
        let mut rows: HashMap<String, Option<u8>> = HashMap::new();
        let known = PartitionKeys::recorded_from_start([order_key("O-1")]);
        settle_absent(
            Some(&known),
            &mut wanted,
            &mut rows,
            |id| order_key(id),
            None,
        );
        assert_eq!(
            wanted,
            HashSet::from(["O-1".to_string()]),
            "O-1 exists: read it"
        );
        assert_eq!(rows, HashMap::from([("O-2".to_string(), None)]));

        let mut wanted: HashSet<String> = ["O-3"].map(String::from).into();
        settle_absent(
            Some(&PartitionKeys::default()),
            &mut wanted,
            &mut rows,
            |id| order_key(id),
            None,
        );
        assert_eq!(wanted.len(), 1, "an incomplete set settles nothing");
    }
}
