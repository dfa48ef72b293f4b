//! The processor's reads of many keys at once (`IN ?`) against the real
//! database: each returns exactly the rows that exist among the keys it
//! names, whole, and nothing of the keys it does not name.

use std::collections::HashMap;

use galley::domain::inventory::{Reservation, ReservationStatus, Stock};
use galley::domain::order::{Order, OrderStatus};
use galley::shop::projections::{ProjectionStore, KEYS_PER_READ};
use galley::shop::rows::SalesCell;
use galley::store::Versioned;

use crate::support::TestKeyspace;

const PARTITION: i32 = 3;
const MINUTE_MS: i64 = 1_764_000_000_000;

fn order(id: &str, offset: i64) -> Versioned<Order> {
    Versioned {
        value: Order {
            order_id: id.to_string(),
            customer_id: format!("C-{id}"),
            status: OrderStatus::Paid,
            currency: "EUR".into(),
            total_cents: offset * 100,
            paid_cents: offset * 100,
            refunded_cents: 0,
            lines: Vec::new(),
            timeline: Vec::new(),
            placed_at_ms: MINUTE_MS,
            updated_at_ms: MINUTE_MS + offset,
        },
        applied_offset: offset,
    }
}

fn reservation(order_id: &str, quantity: i32) -> Versioned<Reservation> {
    Versioned {
        value: Reservation {
            order_id: order_id.to_string(),
            quantity,
            status: ReservationStatus::Reserved,
        },
        applied_offset: i64::from(quantity),
    }
}

fn cell(units: i64) -> Versioned<SalesCell> {
    Versioned {
        value: SalesCell {
            units,
            revenue_cents: units * 250,
            orders: 0,
            updated_at_ms: MINUTE_MS + units,
        },
        applied_offset: units,
    }
}

/// Every other key of `keys` written, the rest asked for but absent.
fn every_other(keys: &[String]) -> Vec<&String> {
    keys.iter().step_by(2).collect()
}

#[tokio::test]
async fn reads_of_many_keys_return_exactly_the_rows_that_exist() {
    let keyspace = TestKeyspace::migrated("ks_reads").await;
    let store = ProjectionStore::prepare(keyspace.session.clone(), &keyspace.name)
        .await
        .expect("statements prepare");

    let ids: Vec<String> = (0..KEYS_PER_READ).map(|i| format!("O-{i:04}")).collect();
    let mut written_orders = HashMap::new();
    for (i, id) in every_other(&ids).into_iter().enumerate() {
        let row = order(id, i as i64 + 1);
        store
            .write_order(&row, PARTITION)
            .await
            .expect("order write");
        written_orders.insert(id.clone(), row);
    }
    let read = store.load_orders(&ids).await.expect("orders read");
    assert_eq!(read, written_orders);

    // The order's reservations of half the SKUs, and another order's of
    // every SKU, which the read must not return.
    let skus: Vec<String> = (0..KEYS_PER_READ).map(|i| format!("SKU-{i:03}")).collect();
    let mut written_reservations = HashMap::new();
    for (i, sku) in skus.iter().enumerate() {
        let stock = Versioned {
            value: Stock {
                sku: sku.clone(),
                on_hand: 100,
                reserved: 0,
                updated_at_ms: MINUTE_MS,
            },
            applied_offset: 1,
        };
        let other = reservation("O-other", 7);
        let mut rows = vec![&other];
        let own = reservation("O-0001", i as i32 + 1);
        if i % 2 == 0 {
            rows.push(&own);
        }
        store
            .write_inventory(&stock, &rows, PARTITION)
            .await
            .expect("inventory write");
        if i % 2 == 0 {
            written_reservations.insert(sku.clone(), own.clone());
        }
    }
    let read = store
        .load_reservations("O-0001", &skus)
        .await
        .expect("reservations read");
    assert_eq!(read, written_reservations);

    // Cells of half the SKUs in this minute and partition; the others' only
    // in the next minute or another partition, which the read must not return.
    let mut written_cells = HashMap::new();
    for (i, sku) in skus.iter().enumerate() {
        let units = i as i64 + 1;
        if i % 2 == 0 {
            store
                .write_sku_sales(sku, MINUTE_MS, PARTITION, &cell(units))
                .await
                .expect("cell write");
            written_cells.insert(sku.clone(), cell(units));
        } else {
            store
                .write_sku_sales(sku, MINUTE_MS + 60_000, PARTITION, &cell(units))
                .await
                .expect("cell write");
            store
                .write_sku_sales(sku, MINUTE_MS, PARTITION + 1, &cell(units))
                .await
                .expect("cell write");
        }
    }
    let read = store
        .load_sku_sales(&skus, MINUTE_MS, PARTITION)
        .await
        .expect("cells read");
    assert_eq!(read, written_cells);
}
