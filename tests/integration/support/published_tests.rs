//! The published-event check must notice a wrong field in any payload, not
//! only a wrong id, topic or type.

use super::*;
use crate::support::fold::{fold, FoldSettings, InputMessage};
use galley::config::Partitioner;
use galley::domain::{
    Emitted, EventSet, InventoryEvent, OrderEvent, OrderLine, OrderPlaced, OrderStatusChanged,
    ResultEvent, StockReceived, StockReservationOutcome, StockReservationRequested, StockReserved,
};
use galley::pipeline::partitioning::partition_for;

const ORDERS: &str = "orders_t";
const INVENTORY: &str = "inventory_t";
const RESULTS: &str = "results_t";
const PARTITIONS: i32 = 6;
const T0: i64 = 1_700_000_000_000;

fn settings() -> PublishSettings {
    PublishSettings {
        results_topic: RESULTS.into(),
        orders_topic: ORDERS.into(),
        inventory_topic: INVENTORY.into(),
        input_partitions: PARTITIONS,
        partitioner: Partitioner::Murmur2,
    }
}

fn fold_settings() -> FoldSettings {
    FoldSettings {
        orders_topic: ORDERS.into(),
        inventory_topic: INVENTORY.into(),
        low_stock_threshold: 5,
        max_event_bytes: 4096,
    }
}

fn partition(key: &str) -> i32 {
    partition_for(Partitioner::Murmur2, key.as_bytes(), PARTITIONS)
}

/// A world with one order and one SKU: the outside inputs, and what galley
/// published when it got everything right. Each is (record, decoded event).
struct World {
    codec: Codec,
    inputs: Vec<InputMessage>,
    published: Vec<(PublishedRecord, Emitted)>,
}

impl World {
    fn encode(&self, event: &Emitted) -> (Vec<u8>, String) {
        let mut bytes = Vec::new();
        let key = match event {
            Emitted::Result(e) => {
                self.codec.encode(e, &mut bytes).expect("encode");
                e.key().to_string()
            }
            Emitted::Order(e) => {
                self.codec.encode(e, &mut bytes).expect("encode");
                e.key().to_string()
            }
            Emitted::Inventory(e) => {
                self.codec.encode(e, &mut bytes).expect("encode");
                e.key().to_string()
            }
        };
        (bytes, key)
    }

    /// Adds an outside input record on partition 0 of its topic.
    fn input(&mut self, topic: &str, key: &str, payload: Vec<u8>) {
        let offset = self.inputs.iter().filter(|m| m.topic == topic).count() as i64;
        self.inputs.push(InputMessage {
            topic: topic.into(),
            partition: 0,
            offset,
            key: Some(key.as_bytes().to_vec()),
            payload: Some(payload),
            event_id: None,
        });
    }

    /// Records that galley published `event` under `id`; a re-keyed one is
    /// also an input record of its topic, on its key's partition.
    fn publish(&mut self, id: &str, event: Emitted) {
        let (bytes, key) = self.encode(&event);
        let topic = match &event {
            Emitted::Result(_) => RESULTS,
            Emitted::Order(_) => ORDERS,
            Emitted::Inventory(_) => INVENTORY,
        };
        let partition = if topic == RESULTS { 0 } else { partition(&key) };
        let offset = self
            .published
            .iter()
            .filter(|(r, _)| r.topic == topic && r.partition == partition)
            .count() as i64;
        let record = PublishedRecord {
            event_id: id.into(),
            topic: topic.into(),
            partition,
            offset,
            key: Some(key.into_bytes()),
            payload: Some(bytes),
        };
        if topic != RESULTS {
            self.inputs.push(InputMessage {
                topic: record.topic.clone(),
                partition: record.partition,
                offset: record.offset,
                key: record.key.clone(),
                payload: record.payload.clone(),
                event_id: Some(id.into()),
            });
        }
        self.published.push((record, event));
    }

    /// Stock received for A, an order o1 for 4 of A, and everything galley
    /// must publish for it: the placed status change, the reservation
    /// request, the reservation, and the answer back to the order, which
    /// confirms it.
    fn one_order() -> Self {
        let mut w = World {
            codec: galley::domain::codec().expect("codec"),
            inputs: Vec::new(),
            published: Vec::new(),
        };
        let mut bytes = Vec::new();
        w.codec
            .encode(
                &InventoryEvent::Received(StockReceived {
                    sku: "A".into(),
                    quantity: 10,
                    event_time_ms: T0,
                }),
                &mut bytes,
            )
            .expect("encode");
        w.input(INVENTORY, "A", bytes);
        let mut bytes = Vec::new();
        w.codec
            .encode(
                &OrderEvent::Placed(OrderPlaced {
                    order_id: "o1".into(),
                    customer_id: "c1".into(),
                    lines: vec![OrderLine {
                        sku: "A".into(),
                        quantity: 4,
                        unit_price_cents: 250,
                    }],
                    currency: "EUR".into(),
                    event_time_ms: T0 + 1,
                }),
                &mut bytes,
            )
            .expect("encode");
        w.input(ORDERS, "o1", bytes);

        let placed = format!("{ORDERS}/0/0");
        let status = |id: String, from: Option<&str>, to: &str, t: i64| {
            Emitted::Result(ResultEvent::OrderStatusChanged(OrderStatusChanged {
                event_id: id,
                order_id: "o1".into(),
                customer_id: "c1".into(),
                from_status: from.map(str::to_string),
                to_status: to.into(),
                reason: None,
                event_time_ms: t,
            }))
        };
        w.publish(
            &format!("{placed}/0"),
            status(format!("{placed}/0"), None, "placed", T0 + 1),
        );
        w.publish(
            &format!("{placed}/1"),
            Emitted::Inventory(InventoryEvent::ReservationRequested(
                StockReservationRequested {
                    event_id: format!("{placed}/1"),
                    sku: "A".into(),
                    order_id: "o1".into(),
                    quantity: 4,
                    event_time_ms: T0 + 1,
                },
            )),
        );
        let request = format!("{INVENTORY}/{}/0", partition("A"));
        w.publish(
            &format!("{request}/0"),
            Emitted::Result(ResultEvent::StockReserved(StockReserved {
                event_id: format!("{request}/0"),
                sku: "A".into(),
                order_id: "o1".into(),
                quantity: 4,
                available_after: 6,
                event_time_ms: T0 + 1,
            })),
        );
        w.publish(
            &format!("{request}/1"),
            Emitted::Order(OrderEvent::StockOutcome(StockReservationOutcome {
                event_id: format!("{request}/1"),
                order_id: "o1".into(),
                sku: "A".into(),
                quantity: 4,
                reserved: true,
                event_time_ms: T0 + 1,
            })),
        );
        let outcome = format!("{ORDERS}/{}/0", partition("o1"));
        w.publish(
            &format!("{outcome}/0"),
            status(format!("{outcome}/0"), Some("placed"), "confirmed", T0 + 1),
        );
        w
    }

    /// Replaces the payload galley published under `id` by `change(event)`.
    fn tamper(&mut self, id: &str, change: impl FnOnce(&mut Emitted)) {
        let index = self
            .published
            .iter()
            .position(|(r, _)| r.event_id == id)
            .expect("published id");
        let mut event = self.published[index].1.clone();
        change(&mut event);
        let (bytes, _) = self.encode(&event);
        let record = &mut self.published[index].0;
        record.payload = Some(bytes.clone());
        if let Some(input) = self
            .inputs
            .iter_mut()
            .find(|m| m.event_id.as_deref() == Some(id))
        {
            input.payload = Some(bytes);
        }
        self.published[index].1 = event;
    }

    fn check(&self) -> EventCheck {
        let expected = fold(&self.codec, &fold_settings(), &self.inputs);
        let records: Vec<PublishedRecord> = self.published.iter().map(|(r, _)| r.clone()).collect();
        check_published(&self.codec, &settings(), &expected, &records)
    }
}

fn request_id() -> String {
    format!("{ORDERS}/0/0/1")
}

fn outcome_id() -> String {
    format!("{INVENTORY}/{}/0/1", partition("A"))
}

fn reserved_id() -> String {
    format!("{INVENTORY}/{}/0/0", partition("A"))
}

fn confirmed_id() -> String {
    format!("{ORDERS}/{}/0/0", partition("o1"))
}

/// Asserts the check reports `id` as published with other contents.
fn assert_mismatch(check: &EventCheck, id: &str) {
    assert!(
        check.mismatched.iter().any(|m| m.contains(id)),
        "a wrong payload under {id} must be reported; the check found {check:#?}"
    );
}

#[test]
fn everything_right_is_clean() {
    let check = World::one_order().check();
    assert_eq!(check, EventCheck::default());
}

#[test]
fn a_wrong_quantity_in_a_reservation_request_is_reported() {
    let mut w = World::one_order();
    w.tamper(&request_id(), |e| {
        if let Emitted::Inventory(InventoryEvent::ReservationRequested(r)) = e {
            r.quantity = 3;
        }
    });
    assert_mismatch(&w.check(), &request_id());
}

#[test]
fn a_wrong_amount_in_a_stock_reserved_result_is_reported() {
    let mut w = World::one_order();
    w.tamper(&reserved_id(), |e| {
        if let Emitted::Result(ResultEvent::StockReserved(r)) = e {
            r.available_after = 7;
        }
    });
    assert_mismatch(&w.check(), &reserved_id());
}

#[test]
fn a_wrong_to_status_is_reported() {
    let mut w = World::one_order();
    w.tamper(&confirmed_id(), |e| {
        if let Emitted::Result(ResultEvent::OrderStatusChanged(r)) = e {
            r.to_status = "paid".into();
        }
    });
    assert_mismatch(&w.check(), &confirmed_id());
}

#[test]
fn a_wrong_reserved_flag_is_reported() {
    let mut w = World::one_order();
    w.tamper(&outcome_id(), |e| {
        if let Emitted::Order(OrderEvent::StockOutcome(r)) = e {
            r.reserved = false;
        }
    });
    let check = w.check();
    assert_mismatch(&check, &outcome_id());
}

#[test]
fn the_fold_applies_its_own_answer_not_galleys() {
    let mut w = World::one_order();
    w.tamper(&outcome_id(), |e| {
        if let Emitted::Order(OrderEvent::StockOutcome(r)) = e {
            r.reserved = false;
        }
    });
    let expected = fold(&w.codec, &fold_settings(), &w.inputs);
    // Stock was reserved, so the order is confirmed, whatever galley wrote.
    assert_eq!(expected.orders["o1"].status, "confirmed");
    assert_eq!(expected.stock["A"], (10, 4));
    assert!(expected.unexpected_inputs.is_empty());
}

#[test]
fn a_record_the_fold_never_emits_is_skipped_and_reported() {
    let mut w = World::one_order();
    let stray = format!("{ORDERS}/0/0/9");
    w.publish(
        &stray,
        Emitted::Inventory(InventoryEvent::ReleaseRequested(
            galley::domain::StockReleaseRequested {
                event_id: stray.clone(),
                sku: "A".into(),
                order_id: "o1".into(),
                event_time_ms: T0 + 2,
            },
        )),
    );
    let expected = fold(&w.codec, &fold_settings(), &w.inputs);
    assert_eq!(expected.unexpected_inputs.len(), 1, "{expected:#?}");
    assert!(expected.unexpected_inputs[0].contains(&stray));
    // The stray release was not applied: the units stay reserved.
    assert_eq!(expected.stock["A"], (10, 4));
    let check = w.check();
    assert!(
        check.unexpected.iter().any(|u| u.contains(&stray)),
        "{check:#?}"
    );
}

#[test]
fn a_re_keyed_record_on_another_partition_than_its_keys_is_reported() {
    let mut w = World::one_order();
    let id = request_id();
    let wrong = (partition("A") + 1) % PARTITIONS;
    for (record, _) in w.published.iter_mut().filter(|(r, _)| r.event_id == id) {
        record.partition = wrong;
    }
    for input in w
        .inputs
        .iter_mut()
        .filter(|m| m.event_id.as_deref() == Some(&id))
    {
        input.partition = wrong;
    }
    let check = w.check();
    assert!(
        check
            .mismatched
            .iter()
            .any(|m| m.contains(&id) && m.contains("belongs on partition")),
        "{check:#?}"
    );
}

#[test]
fn an_expected_event_never_published_is_missing() {
    let mut w = World::one_order();
    w.published.retain(|(r, _)| r.event_id != confirmed_id());
    let check = w.check();
    assert_eq!(check.missing, vec![confirmed_id()]);
    assert!(check.unexpected.is_empty() && check.mismatched.is_empty());
}
