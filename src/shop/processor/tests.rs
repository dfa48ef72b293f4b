//! Unit tests of the processor's pure parts: what a batch's writes hand over
//! to be written and what they keep for the cache, how sales add up in
//! their cells when a batch is replayed after a crash, and which rows a batch
//! may not read from the database while the changelog sink lags.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::cache::{stage, BatchRows, PartitionCaches, PartitionKey};
use super::sales::{add_sales, SaleContribution};
use super::writes::{Counted, ShopWrites};
use crate::domain::order::Order;
use crate::domain::Outcome;
use crate::shop::rows::SalesCell;
use crate::store::marks::RecordMark;
use crate::store::Versioned;

#[test]
fn take_rows_moves_the_rows_and_leaves_what_committed_adopts() {
    let mut writes = ShopWrites::default();
    let newest = RecordMark::of(41, Some(b"O-1"), Some(1_000));
    writes.progress.push(((Arc::from("t"), 0), newest, 1_000));
    writes
        .minute_sales
        .push(((Arc::from("t"), 0), 60_000, cell(1, 1, 41)));
    writes.counts.push(Counted {
        topic: Arc::from("t"),
        event_type: "OrderPlaced",
        outcome: Outcome::Applied,
    });
    writes
        .cache
        .insert((Arc::from("t"), 0), BatchRows::default());

    let rows = writes.take_rows();
    assert_eq!(
        rows.statement_count(),
        3,
        "progress row and mark, one sales cell"
    );
    assert!(rows.cache.is_empty() && rows.counts.is_empty());
    assert_eq!(writes.statement_count(), 0);
    assert_eq!((writes.cache.len(), writes.counts.len()), (1, 1));
}

fn sale(offset: i64, sku: &str, units: i64) -> SaleContribution {
    SaleContribution {
        offset,
        event_time_ms: 60_000 + offset,
        sku: sku.to_owned(),
        minute_ms: 60_000,
        units,
        revenue_cents: units * 100,
    }
}

fn cell(units: i64, orders: i64, applied_offset: i64) -> Versioned<SalesCell> {
    Versioned {
        value: SalesCell {
            units,
            revenue_cents: units * 100,
            orders,
            updated_at_ms: 0,
        },
        applied_offset,
    }
}

type SkuCells = HashMap<(String, i64), Versioned<SalesCell>>;
type MinuteCells = HashMap<i64, Versioned<SalesCell>>;

/// What a cell counts: units, revenue, orders, watermark.
fn counted(cell: &Versioned<SalesCell>) -> (i64, i64, i64, i64) {
    let v = &cell.value;
    (v.units, v.revenue_cents, v.orders, cell.applied_offset)
}

fn cells(
    minute: Versioned<SalesCell>,
    skus: &[(&str, Versioned<SalesCell>)],
) -> (SkuCells, MinuteCells) {
    let sku_cells = skus
        .iter()
        .map(|(sku, c)| (((*sku).to_owned(), 60_000), c.clone()))
        .collect();
    (sku_cells, HashMap::from([(60_000, minute)]))
}

#[test]
fn every_line_of_a_new_sale_counts_once_and_the_order_once() {
    let (mut skus, mut minutes) = cells(
        cell(0, 0, -1),
        &[("A", cell(0, 0, -1)), ("B", cell(0, 0, -1))],
    );
    let (dirty_sku, dirty_minute) =
        add_sales(&[sale(7, "A", 2), sale(7, "B", 3)], &mut skus, &mut minutes);
    assert_eq!(dirty_sku.len(), 2);
    assert_eq!(dirty_minute.len(), 1);
    assert_eq!(counted(&minutes[&60_000]), counted(&cell(5, 1, 7)));
    assert_eq!(
        counted(&skus[&("B".to_owned(), 60_000)]),
        counted(&cell(3, 0, 7))
    );
}

#[test]
fn a_replayed_multi_line_sale_already_in_the_minute_cell_adds_nothing() {
    // Before the crash the minute cell counted offset 7 (both lines), the
    // SKU cells did too; the order row did not, so offset 7 is replayed.
    let (mut skus, mut minutes) =
        cells(cell(5, 1, 7), &[("A", cell(2, 0, 7)), ("B", cell(3, 0, 7))]);
    let (dirty_sku, dirty_minute) =
        add_sales(&[sale(7, "A", 2), sale(7, "B", 3)], &mut skus, &mut minutes);
    assert!(dirty_sku.is_empty() && dirty_minute.is_empty());
    assert_eq!(counted(&minutes[&60_000]), counted(&cell(5, 1, 7)));
}

#[test]
fn a_replay_skips_what_each_cell_holds_and_adds_what_it_lacks() {
    // The minute cell and SKU A were written before the crash, SKU B was not.
    let (mut skus, mut minutes) = cells(
        cell(5, 1, 7),
        &[("A", cell(2, 0, 7)), ("B", cell(0, 0, -1))],
    );
    let replay = [
        sale(7, "A", 2),
        sale(7, "B", 3),
        sale(9, "A", 1),
        sale(9, "B", 1),
    ];
    add_sales(&replay, &mut skus, &mut minutes);
    assert_eq!(
        counted(&skus[&("A".to_owned(), 60_000)]),
        counted(&cell(3, 0, 9))
    );
    assert_eq!(
        counted(&skus[&("B".to_owned(), 60_000)]),
        counted(&cell(4, 0, 9))
    );
    assert_eq!(counted(&minutes[&60_000]), counted(&cell(7, 2, 9)));
}

/// An order whose customer id alone holds `id_bytes`.
fn order_with_customer_id(n: usize, id_bytes: usize) -> Versioned<Order> {
    use crate::domain::order::OrderStatus;
    Versioned {
        value: Order {
            order_id: format!("O-{n}"),
            customer_id: "C".repeat(id_bytes),
            status: OrderStatus::Placed,
            currency: "EUR".into(),
            total_cents: 100,
            paid_cents: 0,
            refunded_cents: 0,
            lines: Vec::new(),
            timeline: Vec::new(),
            placed_at_ms: 0,
            updated_at_ms: 0,
        },
        applied_offset: n as i64,
    }
}

#[test]
fn the_row_caches_of_all_partitions_stay_within_their_bytes() {
    const BUDGET: usize = 1024 * 1024;
    const ID_BYTES: usize = 1024;
    let mut caches = PartitionCaches::new(BUDGET);
    // 4 partitions × 10,000 orders of over 1 KiB each: 40 MiB offered.
    for partition in 0..4 {
        let key = (Arc::from("orders"), partition);
        let mut rows = BatchRows::default();
        for n in 0..10_000 {
            rows.orders
                .insert(format!("O-{n}"), Some(order_with_customer_id(n, ID_BYTES)));
        }
        caches.adopt(HashMap::from([(key, rows)]));
        assert!(caches.bytes() <= BUDGET, "{} bytes cached", caches.bytes());
    }
    // Counted independently of the cache's own accounting: every cached
    // order holds at least its customer id.
    let cached: usize = (0..4)
        .map(|p| caches.cache(&(Arc::from("orders"), p)).orders.len())
        .sum();
    assert!(
        cached * ID_BYTES <= BUDGET,
        "{cached} orders of over {ID_BYTES} bytes cached, budget {BUDGET}"
    );
    assert!(cached > 0, "the cache still caches");
}

/// A batch's writes as a partition's batch leaves them: the order it
/// changed, the partition's progress, and the rows it read for the cache.
fn order_batch(part: &PartitionKey, order: Versioned<Order>, newest_offset: i64) -> ShopWrites {
    let mut writes = ShopWrites::default();
    let newest = RecordMark::of(newest_offset, Some(b"key"), Some(1_000));
    writes.progress.push((part.clone(), newest, 1_000));
    writes.customer_index.push((part.clone(), order.clone()));
    writes.orders.push((part.clone(), order.clone()));
    let mut rows = BatchRows::default();
    rows.orders
        .insert(order.value.order_id.clone(), Some(order));
    writes.cache.insert(part.clone(), rows);
    writes
}

/// Fills `part`'s order cache with other orders until `id` is evicted.
fn evict(caches: &mut PartitionCaches, part: &PartitionKey, id: &str) {
    let mut rows = BatchRows::default();
    for n in 1_000..1_200 {
        rows.orders
            .insert(format!("O-{n}"), Some(order_with_customer_id(n, 1024)));
    }
    caches.adopt(HashMap::from([(part.clone(), rows)]));
    assert!(
        caches.cache(part).orders.get(&id.to_owned()).is_none(),
        "{id} is evicted from the cache"
    );
}

/// Stages order `id` into a new batch: where the batch found it, if
/// anywhere, and whether it must be read from the database.
fn stage_order(
    caches: &mut PartitionCaches,
    part: &PartitionKey,
    id: &str,
) -> (Option<Versioned<Order>>, bool) {
    let mut rows = BatchRows::default();
    let mut want = HashSet::new();
    stage(
        &mut rows.orders,
        caches.cache(part).held_orders(),
        &mut want,
        id.to_owned(),
    );
    let found = rows.orders.remove(id).flatten();
    (found, want.contains(id))
}

/// An orders partition with an empty cache, and two versions of order
/// O-10: the first made at offset 8, the second at offset 20.
fn two_versions_of_one_order() -> (
    PartitionKey,
    PartitionCaches,
    Versioned<Order>,
    Versioned<Order>,
) {
    let part: PartitionKey = (Arc::from("shop.orders"), 2);
    let first = order_with_customer_id(10, 8);
    let mut second = order_with_customer_id(10, 8);
    second.applied_offset = 20;
    (part, PartitionCaches::new(16 * 1024), first, second)
}

#[test]
fn a_row_awaiting_the_sink_is_read_from_memory_until_applied_then_from_the_database() {
    let (part, mut caches, first, second) = two_versions_of_one_order();
    caches.commit(order_batch(&part, first.clone(), 12), true);
    caches.commit(order_batch(&part, second.clone(), 25), true);
    assert!(caches.awaiting_sink_bytes() > 0);

    // Evicted from the cache, the order is found among the rows awaiting
    // the sink, in its newest version, and the database is not asked.
    evict(&mut caches, &part, "O-10");
    assert_eq!(
        stage_order(&mut caches, &part, "O-10"),
        (Some(second.clone()), false)
    );

    // The sink applied the first batch (records below 13): the second one's
    // version is still only in memory.
    caches.applied("shop.orders", 2, 13);
    evict(&mut caches, &part, "O-10");
    assert_eq!(
        stage_order(&mut caches, &part, "O-10"),
        (Some(second), false)
    );
    // Another partition's progress lets go of nothing here.
    caches.applied("shop.inventory", 2, 100);
    caches.applied("shop.orders", 1, 100);
    assert!(caches.awaiting_sink_bytes() > 0);

    // Everything applied: the database holds it, and is asked again.
    caches.applied("shop.orders", 2, 26);
    assert_eq!(caches.awaiting_sink_bytes(), 0);
    evict(&mut caches, &part, "O-10");
    assert_eq!(stage_order(&mut caches, &part, "O-10"), (None, true));
}

#[test]
fn without_a_sink_to_wait_for_nothing_is_held_back() {
    let part: PartitionKey = (Arc::from("shop.orders"), 2);
    let mut caches = PartitionCaches::new(16 * 1024);
    caches.commit(order_batch(&part, order_with_customer_id(10, 8), 12), false);
    assert_eq!(caches.awaiting_sink_bytes(), 0);
    evict(&mut caches, &part, "O-10");
    assert_eq!(stage_order(&mut caches, &part, "O-10"), (None, true));
}

#[test]
fn a_revoked_partition_forgets_its_rows_awaiting_the_sink() {
    let part: PartitionKey = (Arc::from("shop.orders"), 2);
    let other: PartitionKey = (Arc::from("shop.orders"), 5);
    let mut caches = PartitionCaches::new(16 * 1024);
    caches.commit(order_batch(&part, order_with_customer_id(10, 8), 12), true);
    caches.commit(order_batch(&other, order_with_customer_id(11, 8), 40), true);
    let both = caches.awaiting_sink_bytes();

    caches.forget_partitions(&[("shop.orders".to_owned(), 2)]);
    assert!(caches.awaiting_sink_bytes() < both && caches.awaiting_sink_bytes() > 0);
    assert_eq!(stage_order(&mut caches, &part, "O-10"), (None, true));
    evict(&mut caches, &other, "O-11");
    let (found, asked) = stage_order(&mut caches, &other, "O-11");
    assert!(
        found.is_some() && !asked,
        "the other partition keeps its rows"
    );
}

#[test]
fn a_row_changed_again_is_held_once_among_the_rows_awaiting_the_sink() {
    let (part, mut caches, first, second) = two_versions_of_one_order();
    caches.commit(order_batch(&part, first, 12), true);
    let one_copy = caches.awaiting_sink_bytes();
    assert!(one_copy > 0);
    caches.commit(order_batch(&part, second.clone(), 25), true);
    assert_eq!(
        caches.awaiting_sink_bytes(),
        one_copy,
        "the older version leaves memory once a newer one is held"
    );

    // The first batch applied: the newest version is still held, and read.
    caches.applied("shop.orders", 2, 13);
    assert_eq!(caches.awaiting_sink_bytes(), one_copy);
    evict(&mut caches, &part, "O-10");
    assert_eq!(
        stage_order(&mut caches, &part, "O-10"),
        (Some(second), false)
    );

    // Changed once more after everything was applied: held afresh.
    caches.applied("shop.orders", 2, 26);
    assert_eq!(caches.awaiting_sink_bytes(), 0);
    let mut third = order_with_customer_id(10, 8);
    third.applied_offset = 30;
    caches.commit(order_batch(&part, third.clone(), 31), true);
    assert_eq!(caches.awaiting_sink_bytes(), one_copy);
    evict(&mut caches, &part, "O-10");
    assert_eq!(
        stage_order(&mut caches, &part, "O-10"),
        (Some(third), false)
    );
}
