//! Unit tests of the changelog values: a batch's rows survive the trip
//! through encoding and decoding, values are cut below the engine's limit
//! without losing, repeating or reordering a row, and a value this galley
//! cannot read is an error rather than a guess.

use std::sync::Arc;

use super::cache::PartitionKey;
use super::changelog::{decode, encode, ChangelogError, FORMAT_VERSION};
use super::writes::{InventoryChunk, ShopWrites};
use crate::domain::inventory::{Reservation, ReservationStatus, Stock};
use crate::domain::order::{LineStock, Order, OrderLineState, OrderStatus, TimelineEntry};
use crate::pipeline::{ChangelogEntry, StepError};
use crate::shop::rows::SalesCell;
use crate::store::marks::RecordMark;
use crate::store::Versioned;

const T0: i64 = 1_767_225_600_000;
const MINUTE: i64 = T0 - T0 % 60_000;

pub(super) fn orders_part() -> PartitionKey {
    (Arc::from("shop.orders"), 3)
}

/// The same partition number on the other topic: its rows belong elsewhere.
pub(super) fn inventory_part() -> PartitionKey {
    (Arc::from("shop.inventory"), 3)
}

/// A paid two-line order, as a handler leaves it.
pub(super) fn order(n: i64, offset: i64) -> Versioned<Order> {
    let line = |sku: &str, quantity| OrderLineState {
        sku: sku.into(),
        quantity,
        unit_price_cents: 1_250,
        stock: LineStock::Reserved,
    };
    let step = |at: i64, status: &str, note: Option<&str>| TimelineEntry {
        event_time_ms: T0 + at,
        status: status.into(),
        note: note.map(str::to_owned),
    };
    Versioned {
        value: Order {
            order_id: format!("O-65a1b2c3-{n:07}"),
            customer_id: format!("C-{:06}", n % 97),
            status: OrderStatus::Paid,
            currency: "EUR".into(),
            total_cents: 3_750,
            paid_cents: 3_750,
            refunded_cents: 0,
            lines: vec![line("SKU-00017", 1), line("SKU-00042", 2)],
            timeline: vec![
                step(0, "placed", None),
                step(1_500, "confirmed", Some("all lines reserved")),
                step(4_000, "paid", Some("card")),
            ],
            placed_at_ms: T0,
            updated_at_ms: T0 + 4_000,
        },
        applied_offset: offset,
    }
}

pub(super) fn cell(units: i64, offset: i64) -> Versioned<SalesCell> {
    Versioned {
        value: SalesCell {
            units,
            revenue_cents: units * 1_250,
            orders: 1,
            updated_at_ms: T0 + offset,
        },
        applied_offset: offset,
    }
}

/// A SKU's stock after the event at `offset`, with the reservations of
/// `orders` changed along with it.
pub(super) fn chunk(sku: &str, offset: i64, orders: std::ops::Range<i64>) -> InventoryChunk {
    InventoryChunk {
        stock: Versioned {
            value: Stock {
                sku: sku.into(),
                on_hand: 500 - offset,
                reserved: offset,
                updated_at_ms: T0 + offset,
            },
            applied_offset: offset,
        },
        reservations: orders
            .map(|n| Versioned {
                value: Reservation {
                    order_id: format!("O-65a1b2c3-{n:07}"),
                    quantity: 2,
                    status: ReservationStatus::Reserved,
                },
                applied_offset: offset - 1,
            })
            .collect(),
    }
}

/// What one batch over an orders partition and an inventory partition of
/// the same number writes.
fn batch() -> ShopWrites {
    let (o, i) = (orders_part(), inventory_part());
    let mut w = ShopWrites::default();
    w.new_keys
        .push((i.clone(), 47, vec![9, 0x00ff_00ff_00ff_00ff]));
    w.new_keys.push((o.clone(), 104, vec![1, 2, 3, u64::MAX]));
    for (n, offset) in [(1, 100), (2, 101), (3, 104)] {
        w.customer_index.push((o.clone(), order(n, offset)));
        w.orders.push((o.clone(), order(n, offset)));
    }
    for (sku, units, offset) in [("SKU-00017", 1, 101), ("SKU-00042", 2, 104)] {
        w.sku_sales
            .push((o.clone(), sku.into(), MINUTE, cell(units, offset)));
    }
    w.minute_sales.push((o.clone(), MINUTE, cell(3, 104)));
    // SKU-00017's changes come in three chunks, written in this order.
    w.inventory.push((
        i.clone(),
        vec![
            chunk("SKU-00017", 40, 0..4),
            chunk("SKU-00017", 45, 4..8),
            chunk("SKU-00017", 47, 8..9),
        ],
    ));
    w.inventory
        .push((i.clone(), vec![chunk("SKU-00042", 46, 9..11)]));
    w.progress.push((
        i,
        RecordMark::of(47, Some(b"SKU-00017"), Some(T0 + 47)),
        T0 + 47,
    ));
    w.progress.push((
        o,
        RecordMark::of(104, Some(b"O-65a1b2c3-0000003"), Some(T0 + 104)),
        T0 + 104,
    ));
    w
}

pub(super) fn values(entries: &[ChangelogEntry]) -> Vec<&[u8]> {
    entries.iter().map(|e| e.value.as_slice()).collect()
}

/// The rows of every table, as a test compares them.
pub(super) fn assert_same_rows(got: &ShopWrites, want: &ShopWrites) {
    assert_eq!(got.new_keys, want.new_keys);
    assert_eq!(got.keys_unrecorded, want.keys_unrecorded);
    assert_eq!(got.customer_index, want.customer_index);
    assert_eq!(got.sku_sales, want.sku_sales);
    assert_eq!(got.minute_sales, want.minute_sales);
    assert_eq!(got.orders, want.orders);
    assert_eq!(got.inventory, want.inventory);
    assert_eq!(got.progress, want.progress);
}

/// Rows in one value: every list's entries and its progress.
fn rows_in(value: &[u8]) -> usize {
    let w = decode(&[value]).unwrap();
    w.new_keys.len()
        + w.customer_index.len()
        + w.sku_sales.len()
        + w.minute_sales.len()
        + w.orders.len()
        + w.inventory.iter().map(|(_, c)| c.len()).sum::<usize>()
        + w.progress.len()
}

#[test]
fn a_batch_round_trips_through_the_changelog() {
    let writes = batch();
    let entries = encode(&writes, 1 << 20).unwrap();

    // One value per partition, each named by its owner: the same partition
    // number on two topics is two owners.
    let owners: Vec<(&str, i32)> = entries.iter().map(|e| (&*e.topic, e.partition)).collect();
    assert_eq!(owners, [("shop.inventory", 3), ("shop.orders", 3)]);
    assert!(entries.iter().all(|e| e.value[0] == FORMAT_VERSION));

    let decoded = decode(&values(&entries)).unwrap();
    assert_same_rows(&decoded, &writes);
    assert!(decoded.cache.is_empty() && decoded.counts.is_empty());
    // Each value alone holds its own partition's rows only.
    let inventory_only = decode(&[entries[0].value.as_slice()]).unwrap();
    assert!(inventory_only.orders.is_empty() && inventory_only.sku_sales.is_empty());
    assert_eq!(inventory_only.inventory, writes.inventory);
}

#[test]
fn a_small_limit_cuts_values_keeping_every_row_once_and_a_skus_chunks_in_order() {
    let writes = batch();
    // Below an order row (about 240 bytes), above an inventory chunk of four
    // reservations (about 110).
    let max_bytes = 200;
    let entries = encode(&writes, max_bytes).unwrap();

    for e in &entries {
        assert!(
            e.value.len() <= max_bytes || rows_in(&e.value) == 1,
            "a value of {} bytes holds {} rows",
            e.value.len(),
            rows_in(&e.value)
        );
    }
    let of = |topic: &str| -> Vec<&[u8]> {
        entries
            .iter()
            .filter(|e| &*e.topic == topic)
            .map(|e| e.value.as_slice())
            .collect()
    };
    let (orders, inventory) = (of("shop.orders"), of("shop.inventory"));
    assert!(orders.len() > 1 && inventory.len() > 1, "the limit cuts");
    // SKU-00017's chunks really are spread over several values.
    let holding_first_sku = inventory
        .iter()
        .filter(|v| {
            let w = decode(&[**v]).unwrap();
            w.inventory
                .iter()
                .any(|(_, c)| c[0].stock.value.sku == "SKU-00017")
        })
        .count();
    assert!(holding_first_sku > 1, "{holding_first_sku} values");
    // The progress row comes last, in each partition's last value.
    for values in [&orders, &inventory] {
        let (last, earlier) = values.split_last().unwrap();
        assert_eq!(decode(&[*last]).unwrap().progress.len(), 1);
        assert!(earlier
            .iter()
            .all(|v| decode(&[*v]).unwrap().progress.is_empty()));
    }
    // The created keys come first, in each partition's first value: a sink
    // records them before it writes any row of the batch.
    for values in [&orders, &inventory] {
        let (first, later) = values.split_first().unwrap();
        assert_eq!(decode(&[*first]).unwrap().new_keys.len(), 1);
        assert!(later
            .iter()
            .all(|v| decode(&[*v]).unwrap().new_keys.is_empty()));
    }
    // Decoded in changelog order and merged, the rows are the batch's:
    // none lost, none twice, every SKU's chunks in their order.
    assert_same_rows(&decode(&values(&entries)).unwrap(), &writes);
}

#[test]
fn a_row_larger_than_the_limit_is_a_value_of_its_own() {
    let writes = batch();
    let entries = encode(&writes, 1).unwrap();
    let rows: usize = entries.iter().map(|e| rows_in(&e.value)).sum();
    assert_eq!(entries.len(), rows, "one row per value");
    assert_eq!(rows, 2 + 3 + 2 + 1 + 3 + 4 + 2);
    assert_same_rows(&decode(&values(&entries)).unwrap(), &writes);
}

#[test]
fn an_unknown_format_version_is_an_error() {
    let entries = encode(&batch(), 1 << 20).unwrap();
    let mut value = entries[0].value.clone();
    value[0] = FORMAT_VERSION + 1;
    let err = decode(&[entries[1].value.as_slice(), &value])
        .err()
        .unwrap();
    assert!(
        matches!(err, ChangelogError::UnknownVersion(v) if v == FORMAT_VERSION + 1),
        "{err}"
    );
    assert!(err.to_string().contains("format version 3"), "{err}");
    assert!(matches!(StepError::from(err), StepError::Fatal(_)));
}

#[test]
fn a_value_that_does_not_decode_is_an_error() {
    let entries = encode(&batch(), 1 << 20).unwrap();
    let value = &entries[1].value;
    let truncated = &value[..value.len() / 2];
    let mut trailing = value.clone();
    trailing.push(0);
    for (bad, what) in [
        (&[][..], "an empty value"),
        (truncated, "a truncated value"),
        (&trailing[..], "a value with bytes after its rows"),
    ] {
        let err = decode(&[bad]).err();
        assert!(
            matches!(
                err,
                Some(ChangelogError::Empty | ChangelogError::Malformed(_))
            ),
            "{what}: {err:?}"
        );
    }
}

#[test]
fn a_value_of_the_format_without_keys_marks_its_partition_unrecorded() {
    let mut writes = batch();
    writes.new_keys.clear();
    let entries = encode(&writes, 1 << 20).unwrap();
    // Format 1 is format 2 without the keys option after the partition.
    let format_1: Vec<Vec<u8>> = entries
        .iter()
        .map(|e| {
            let header =
                postcard::experimental::serialized_size(&(&*e.topic, e.partition)).unwrap();
            let mut value = e.value.clone();
            assert_eq!(value.remove(1 + header), 0, "the keys option is None");
            value[0] = 1;
            value
        })
        .collect();
    let decoded = decode(&format_1.iter().map(Vec::as_slice).collect::<Vec<_>>()).unwrap();
    writes.keys_unrecorded = vec![inventory_part(), orders_part()];
    assert_same_rows(&decoded, &writes);
}
