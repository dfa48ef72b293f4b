//! Unit tests of a sink round's rows: of several batches' changelog values,
//! each row is written once, in its newest version, rows of different input
//! partitions stay apart, and a SKU's chunks merge only when the merge fits
//! in one chunk.

use super::cache::PartitionKey;
use super::changelog::encode;
use super::changelog_tests::{
    assert_same_rows, cell, chunk, inventory_part, order, orders_part, values,
};
use super::sink::rows_of_round;
use super::writes::ShopWrites;
use crate::pipeline::ChangelogEntry;
use crate::store::marks::RecordMark;

const MINUTE: i64 = 1_767_225_600_000;

fn progress(part: &PartitionKey, offset: i64) -> (PartitionKey, RecordMark, i64) {
    (part.clone(), RecordMark::of(offset, None, None), offset)
}

/// The first batch: orders 1 and 2, a sale of SKU-00017, and four of the
/// SKU's reservations.
fn first_batch() -> ShopWrites {
    let (o, i) = (orders_part(), inventory_part());
    let mut w = ShopWrites::default();
    w.new_keys.push((o.clone(), 101, vec![1, 2]));
    for (n, offset) in [(1, 100), (2, 101)] {
        w.customer_index.push((o.clone(), order(n, offset)));
        w.orders.push((o.clone(), order(n, offset)));
    }
    w.sku_sales
        .push((o.clone(), "SKU-00017".into(), MINUTE, cell(1, 101)));
    w.minute_sales.push((o.clone(), MINUTE, cell(1, 101)));
    w.inventory
        .push((i.clone(), vec![chunk("SKU-00017", 40, 0..4)]));
    w.progress.push(progress(&i, 40));
    w.progress.push(progress(&o, 101));
    w
}

/// The next batch of the same partitions: order 1 again, another sale of
/// SKU-00017 in the same minute and one of SKU-00042, and SKU-00017's
/// reservations 2 to 5, two of them changed again.
fn second_batch() -> ShopWrites {
    let (o, i) = (orders_part(), inventory_part());
    let mut w = ShopWrites::default();
    w.new_keys.push((o.clone(), 110, vec![3]));
    w.customer_index.push((o.clone(), order(1, 110)));
    w.orders.push((o.clone(), order(1, 110)));
    for sku in ["SKU-00017", "SKU-00042"] {
        w.sku_sales
            .push((o.clone(), sku.into(), MINUTE, cell(2, 110)));
    }
    w.minute_sales.push((o.clone(), MINUTE, cell(3, 110)));
    w.inventory
        .push((i.clone(), vec![chunk("SKU-00017", 50, 2..6)]));
    w.progress.push(progress(&i, 50));
    w.progress.push(progress(&o, 110));
    w
}

fn encoded(writes: &ShopWrites) -> Vec<ChangelogEntry> {
    encode(writes, 1 << 20).expect("encodes")
}

#[test]
fn a_round_of_two_batches_writes_each_row_once_in_its_newest_version() {
    let (first, second) = (encoded(&first_batch()), encoded(&second_batch()));
    let round: Vec<&[u8]> = values(&first).into_iter().chain(values(&second)).collect();
    let got = rows_of_round(&round).expect("decodes");

    let (o, i) = (orders_part(), inventory_part());
    let mut want = ShopWrites {
        new_keys: vec![(o.clone(), 101, vec![1, 2]), (o.clone(), 110, vec![3])],
        ..ShopWrites::default()
    };
    for (n, offset) in [(1, 110), (2, 101)] {
        want.customer_index.push((o.clone(), order(n, offset)));
        want.orders.push((o.clone(), order(n, offset)));
    }
    want.sku_sales = vec![
        (o.clone(), "SKU-00017".into(), MINUTE, cell(2, 110)),
        (o.clone(), "SKU-00042".into(), MINUTE, cell(2, 110)),
    ];
    want.minute_sales = vec![(o.clone(), MINUTE, cell(3, 110))];
    // The newest stock, reservations 0 and 1 as the first batch left them,
    // 2 to 5 as the second did.
    let mut merged = chunk("SKU-00017", 50, 0..6);
    merged.reservations[..2].clone_from_slice(&chunk("SKU-00017", 40, 0..2).reservations);
    want.inventory = vec![(i.clone(), vec![merged])];
    want.progress = vec![progress(&i, 50), progress(&o, 110)];
    assert_same_rows(&got, &want);
}

#[test]
fn the_newest_version_wins_whatever_order_the_values_come_in() {
    let (first, second) = (encoded(&first_batch()), encoded(&second_batch()));
    let in_order: Vec<&[u8]> = values(&first).into_iter().chain(values(&second)).collect();
    let reversed: Vec<&[u8]> = values(&second).into_iter().chain(values(&first)).collect();
    let (a, b) = (
        rows_of_round(&in_order).expect("decodes"),
        rows_of_round(&reversed).expect("decodes"),
    );
    let newest = |w: &ShopWrites| {
        let mut orders: Vec<_> = w.orders.iter().map(|(_, o)| o.clone()).collect();
        orders.sort_by(|x, y| x.value.order_id.cmp(&y.value.order_id));
        let mut progress: Vec<_> = w.progress.clone();
        progress.sort_by(|x, y| x.0.cmp(&y.0));
        (orders, w.minute_sales.clone(), progress)
    };
    assert_eq!(newest(&a), newest(&b));
    assert_eq!(b.orders.len(), 2);
    assert_eq!(b.minute_sales, vec![(orders_part(), MINUTE, cell(3, 110))]);
}

#[test]
fn rows_of_different_input_partitions_are_kept_apart() {
    let mut other = ShopWrites::default();
    let elsewhere = inventory_part();
    other.orders.push((elsewhere.clone(), order(1, 90)));
    other
        .minute_sales
        .push((elsewhere.clone(), MINUTE, cell(9, 90)));
    let (first, other) = (encoded(&first_batch()), encoded(&other));
    let round: Vec<&[u8]> = values(&first).into_iter().chain(values(&other)).collect();
    let got = rows_of_round(&round).expect("decodes");
    assert!(got.orders.contains(&(orders_part(), order(1, 100))));
    assert!(got.orders.contains(&(elsewhere.clone(), order(1, 90))));
    assert_eq!(got.orders.len(), 3);
    assert_eq!(got.minute_sales.len(), 2);
}

#[test]
fn chunks_whose_merge_would_not_fit_in_one_stay_as_they_were() {
    let part = inventory_part();
    let mut first = ShopWrites::default();
    first
        .inventory
        .push((part.clone(), vec![chunk("SKU-00017", 40, 0..60)]));
    let mut second = ShopWrites::default();
    second
        .inventory
        .push((part.clone(), vec![chunk("SKU-00017", 45, 60..120)]));
    let (first, second) = (encoded(&first), encoded(&second));
    let round: Vec<&[u8]> = values(&first).into_iter().chain(values(&second)).collect();
    let got = rows_of_round(&round).expect("decodes");
    let want = vec![
        chunk("SKU-00017", 40, 0..60),
        chunk("SKU-00017", 45, 60..120),
    ];
    assert_eq!(got.inventory, vec![(part, want)]);
}
