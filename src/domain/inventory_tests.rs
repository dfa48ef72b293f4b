//! The inventory handler's rules, event by event.

use super::*;
use crate::domain::*;
use crate::domain::{EventOrigin, StockAdjusted, StockReceived};

const SKU: &str = "sku-1";
const ORDER: &str = "o-1";
const T0: EpochMillis = 1_700_000_000_000;
/// Low enough that no availability ever falls below it.
const NO_ALERT: i64 = i64::MIN;

fn ids(offset: i64) -> EventIds<'static> {
    EventIds::new(EventOrigin {
        topic: "shop.inventory",
        partition: 2,
        offset,
    })
}

fn id(offset: i64, index: u32) -> String {
    format!("shop.inventory/2/{offset}/{index}")
}

fn at(offset: i64) -> EpochMillis {
    T0 + offset * 1_000
}

fn stock(on_hand: i64, reserved: i64) -> Stock {
    Stock {
        sku: SKU.to_owned(),
        on_hand,
        reserved,
        updated_at_ms: T0,
    }
}

fn held(quantity: i32, status: ReservationStatus) -> Reservation {
    Reservation {
        order_id: ORDER.to_owned(),
        quantity,
        status,
    }
}

fn received(quantity: i32, offset: i64) -> InventoryEvent {
    InventoryEvent::Received(StockReceived {
        sku: SKU.to_owned(),
        quantity,
        event_time_ms: at(offset),
    })
}

fn adjusted(delta: i32, offset: i64) -> InventoryEvent {
    InventoryEvent::Adjusted(StockAdjusted {
        sku: SKU.to_owned(),
        delta,
        reason: "count".to_owned(),
        event_time_ms: at(offset),
    })
}

fn request(quantity: i32, offset: i64) -> InventoryEvent {
    InventoryEvent::ReservationRequested(StockReservationRequested {
        event_id: format!("shop.orders/0/{offset}/1"),
        sku: SKU.to_owned(),
        order_id: ORDER.to_owned(),
        quantity,
        event_time_ms: at(offset),
    })
}

fn release(offset: i64) -> InventoryEvent {
    InventoryEvent::ReleaseRequested(StockReleaseRequested {
        event_id: format!("shop.orders/0/{offset}/1"),
        sku: SKU.to_owned(),
        order_id: ORDER.to_owned(),
        event_time_ms: at(offset),
    })
}

fn fulfil(offset: i64) -> InventoryEvent {
    InventoryEvent::FulfilmentRequested(StockFulfilmentRequested {
        event_id: format!("shop.orders/0/{offset}/1"),
        sku: SKU.to_owned(),
        order_id: ORDER.to_owned(),
        event_time_ms: at(offset),
    })
}

fn step(
    current: Option<&Stock>,
    reservation: Option<&Reservation>,
    event: &InventoryEvent,
    threshold: i64,
    offset: i64,
) -> InventoryDecision {
    apply(current, reservation, event, threshold, &mut ids(offset))
}

fn outcome_event(offset: i64, index: u32, quantity: i32, reserved: bool) -> Emitted {
    Emitted::Order(OrderEvent::StockOutcome(StockReservationOutcome {
        event_id: id(offset, index),
        order_id: ORDER.to_owned(),
        sku: SKU.to_owned(),
        quantity,
        reserved,
        event_time_ms: at(offset),
    }))
}

fn alert_event(offset: i64, index: u32, available: i64, threshold: i64) -> Emitted {
    Emitted::Result(ResultEvent::LowStockAlert(LowStockAlert {
        event_id: id(offset, index),
        sku: SKU.to_owned(),
        available,
        threshold,
        event_time_ms: at(offset),
    }))
}

/// Checks that `event` against (`current`, `reservation`) changes nothing.
fn assert_no_op(current: &Stock, reservation: Option<&Reservation>, event: &InventoryEvent) {
    let decision = step(Some(current), reservation, event, 5, 9);
    assert_eq!(decision.outcome, Outcome::Duplicate, "{event:?}");
    assert_eq!(&decision.stock, current);
    assert!(!decision.stock_changed);
    assert_eq!(decision.reservation.as_ref(), reservation);
    assert!(!decision.reservation_changed);
    assert!(decision.emitted.is_empty());
}

#[test]
fn receiving_stock_adds_to_on_hand() {
    let decision = step(Some(&stock(10, 4)), None, &received(5, 1), NO_ALERT, 1);
    assert_eq!(decision.outcome, Outcome::Applied);
    assert!(decision.stock_changed);
    assert_eq!(
        decision.stock,
        Stock {
            sku: SKU.to_owned(),
            on_hand: 15,
            reserved: 4,
            updated_at_ms: at(1),
        }
    );
    assert_eq!(decision.stock.available(), 11);
    assert_eq!(decision.reservation, None);
    assert!(!decision.reservation_changed);
    assert!(decision.emitted.is_empty());
}

#[test]
fn receiving_stock_for_a_new_sku_starts_from_empty() {
    let decision = step(None, None, &received(3, 1), NO_ALERT, 1);
    assert_eq!(decision.stock.sku, SKU);
    assert_eq!((decision.stock.on_hand, decision.stock.reserved), (3, 0));
}

#[test]
fn an_adjustment_changes_on_hand_in_either_direction() {
    let up = step(Some(&stock(10, 0)), None, &adjusted(2, 1), NO_ALERT, 1);
    assert_eq!(up.stock.on_hand, 12);
    let down = step(Some(&stock(10, 0)), None, &adjusted(-3, 1), NO_ALERT, 1);
    assert_eq!(down.stock.on_hand, 7);
    assert!(down.stock_changed);
    assert_eq!(down.stock.updated_at_ms, at(1));
}

#[test]
fn an_adjustment_below_reserved_reports_negative_availability() {
    let decision = step(Some(&stock(5, 4)), None, &adjusted(-3, 1), NO_ALERT, 1);
    assert_eq!((decision.stock.on_hand, decision.stock.reserved), (2, 4));
    assert_eq!(decision.stock.available(), -2);
}

#[test]
fn a_request_within_availability_reserves_and_answers_the_order() {
    let decision = step(Some(&stock(10, 2)), None, &request(3, 7), NO_ALERT, 7);
    assert_eq!(decision.outcome, Outcome::Applied);
    assert!(decision.stock_changed);
    assert_eq!(decision.stock.reserved, 5);
    assert_eq!(decision.stock.on_hand, 10);
    assert_eq!(decision.stock.updated_at_ms, at(7));
    assert!(decision.reservation_changed);
    assert_eq!(
        decision.reservation,
        Some(held(3, ReservationStatus::Reserved))
    );
    assert_eq!(
        decision.emitted,
        vec![
            Emitted::Result(ResultEvent::StockReserved(StockReserved {
                event_id: id(7, 0),
                sku: SKU.to_owned(),
                order_id: ORDER.to_owned(),
                quantity: 3,
                available_after: 5,
                event_time_ms: at(7),
            })),
            outcome_event(7, 1, 3, true),
        ]
    );
}

#[test]
fn a_request_for_exactly_what_is_available_is_reserved() {
    let decision = step(Some(&stock(3, 0)), None, &request(3, 1), NO_ALERT, 1);
    assert_eq!(decision.stock.available(), 0);
    assert_eq!(
        decision.reservation.map(|r| r.status),
        Some(ReservationStatus::Reserved)
    );
}

#[test]
fn a_request_beyond_availability_is_recorded_short() {
    let before = stock(10, 8);
    let decision = step(Some(&before), None, &request(3, 7), NO_ALERT, 7);
    assert_eq!(decision.outcome, Outcome::Applied);
    assert!(!decision.stock_changed);
    assert_eq!(decision.stock, before);
    assert!(decision.reservation_changed);
    assert_eq!(
        decision.reservation,
        Some(held(3, ReservationStatus::Short))
    );
    assert_eq!(
        decision.emitted,
        vec![
            Emitted::Result(ResultEvent::StockShort(StockShort {
                event_id: id(7, 0),
                sku: SKU.to_owned(),
                order_id: ORDER.to_owned(),
                requested: 3,
                available: 2,
                event_time_ms: at(7),
            })),
            outcome_event(7, 1, 3, false),
        ]
    );
}

#[test]
fn a_request_for_an_unknown_sku_is_short() {
    let decision = step(None, None, &request(1, 1), NO_ALERT, 1);
    assert_eq!(decision.stock, Stock::empty(SKU));
    assert_eq!(
        decision.reservation,
        Some(held(1, ReservationStatus::Short))
    );
}

#[test]
fn a_repeated_request_changes_nothing_whatever_the_reservation_status() {
    let plenty = stock(100, 3);
    for &status in ReservationStatus::VARIANTS {
        assert_no_op(&plenty, Some(&held(3, status)), &request(3, 9));
    }
}

#[test]
fn a_repeated_request_after_a_full_round_trip_changes_nothing() {
    let first = step(Some(&stock(10, 0)), None, &request(4, 1), NO_ALERT, 1);
    let second = step(
        Some(&first.stock),
        first.reservation.as_ref(),
        &request(4, 2),
        NO_ALERT,
        2,
    );
    assert_eq!(second.outcome, Outcome::Duplicate);
    assert_eq!(second.stock, first.stock);
    assert!(second.emitted.is_empty());
}

#[test]
fn releasing_a_reservation_returns_its_units() {
    let decision = step(
        Some(&stock(10, 6)),
        Some(&held(4, ReservationStatus::Reserved)),
        &release(3),
        NO_ALERT,
        3,
    );
    assert_eq!(decision.outcome, Outcome::Applied);
    assert!(decision.stock_changed);
    assert_eq!((decision.stock.on_hand, decision.stock.reserved), (10, 2));
    assert_eq!(decision.stock.updated_at_ms, at(3));
    assert!(decision.reservation_changed);
    assert_eq!(
        decision.reservation,
        Some(held(4, ReservationStatus::Released))
    );
    assert!(decision.emitted.is_empty());
}

#[test]
fn a_release_before_its_request_blocks_the_late_request() {
    let before = stock(10, 0);
    let decision = step(Some(&before), None, &release(3), NO_ALERT, 3);
    assert_eq!(decision.outcome, Outcome::Applied);
    assert!(!decision.stock_changed);
    assert_eq!(decision.stock, before);
    assert!(decision.reservation_changed);
    assert_eq!(
        decision.reservation,
        Some(held(0, ReservationStatus::Released))
    );
    assert!(decision.emitted.is_empty());
    assert_no_op(&before, decision.reservation.as_ref(), &request(2, 4));
}

#[test]
fn releasing_a_reservation_not_held_changes_nothing() {
    let current = stock(10, 0);
    for status in [
        ReservationStatus::Short,
        ReservationStatus::Released,
        ReservationStatus::Fulfilled,
    ] {
        assert_no_op(&current, Some(&held(3, status)), &release(9));
    }
}

#[test]
fn fulfilling_a_reservation_takes_its_units_off_the_shelf() {
    let decision = step(
        Some(&stock(10, 6)),
        Some(&held(4, ReservationStatus::Reserved)),
        &fulfil(5),
        NO_ALERT,
        5,
    );
    assert_eq!(decision.outcome, Outcome::Applied);
    assert!(decision.stock_changed);
    assert_eq!((decision.stock.on_hand, decision.stock.reserved), (6, 2));
    assert_eq!(decision.stock.available(), 4);
    assert_eq!(
        decision.reservation,
        Some(held(4, ReservationStatus::Fulfilled))
    );
    assert!(decision.reservation_changed);
    assert!(decision.emitted.is_empty());
}

#[test]
fn fulfilling_without_a_held_reservation_changes_nothing() {
    let current = stock(10, 0);
    assert_no_op(&current, None, &fulfil(9));
    for status in [
        ReservationStatus::Short,
        ReservationStatus::Released,
        ReservationStatus::Fulfilled,
    ] {
        assert_no_op(&current, Some(&held(3, status)), &fulfil(9));
    }
}

#[test]
fn a_reservation_crossing_the_threshold_alerts_after_the_answer() {
    let decision = step(Some(&stock(10, 0)), None, &request(6, 4), 5, 4);
    assert_eq!(decision.emitted.len(), 3);
    assert_eq!(decision.emitted[1], outcome_event(4, 1, 6, true));
    assert_eq!(decision.emitted[2], alert_event(4, 2, 4, 5));
}

#[test]
fn an_adjustment_crossing_the_threshold_alerts() {
    let decision = step(Some(&stock(5, 0)), None, &adjusted(-1, 4), 5, 4);
    assert_eq!(decision.emitted, vec![alert_event(4, 0, 4, 5)]);
}

#[test]
fn no_alert_while_availability_stays_at_or_above_the_threshold() {
    let decision = step(Some(&stock(10, 0)), None, &request(5, 4), 5, 4);
    assert_eq!(decision.stock.available(), 5);
    assert_eq!(decision.emitted.len(), 2);
}

#[test]
fn no_alert_when_already_below_the_threshold() {
    let below = stock(4, 0);
    let decision = step(Some(&below), None, &adjusted(-1, 4), 5, 4);
    assert!(decision.emitted.is_empty());
    let decision = step(Some(&below), None, &request(2, 5), 5, 5);
    assert_eq!(decision.emitted.len(), 2);
    let decision = step(Some(&below), None, &received(10, 6), 5, 6);
    assert!(decision.emitted.is_empty());
}

#[test]
fn a_shortage_does_not_alert_because_stock_is_unchanged() {
    let decision = step(Some(&stock(5, 0)), None, &request(6, 4), 5, 4);
    assert_eq!(decision.emitted.len(), 2);
    assert!(!decision.stock_changed);
}

#[test]
fn applying_the_same_event_twice_computes_the_same_decision() {
    let current = stock(10, 0);
    assert_eq!(
        step(Some(&current), None, &request(6, 4), 5, 4),
        step(Some(&current), None, &request(6, 4), 5, 4)
    );
}

fn invalid_field(event: &InventoryEvent) -> &'static str {
    match event.validate() {
        Ok(()) => panic!("expected {event:?} to be invalid"),
        Err(error) => error.field,
    }
}

#[test]
fn well_formed_events_pass_validation() {
    for event in [
        received(1, 1),
        adjusted(-1, 1),
        request(1, 1),
        release(1),
        fulfil(1),
    ] {
        assert_eq!(event.validate(), Ok(()), "{event:?}");
    }
}

#[test]
fn malformed_events_fail_validation() {
    assert_eq!(invalid_field(&received(0, 1)), "quantity");
    assert_eq!(invalid_field(&adjusted(0, 1)), "delta");
    assert_eq!(invalid_field(&request(0, 1)), "quantity");
    assert_eq!(invalid_field(&request(-2, 1)), "quantity");
    assert_eq!(invalid_field(&received(1, -T0 / 1_000)), "event_time_ms");

    let mut blank_sku = received(1, 1);
    if let InventoryEvent::Received(e) = &mut blank_sku {
        e.sku = " ".to_owned();
    }
    assert_eq!(invalid_field(&blank_sku), "sku");

    let mut long_order = release(1);
    if let InventoryEvent::ReleaseRequested(e) = &mut long_order {
        e.order_id = "o".repeat(MAX_ID_BYTES + 1);
    }
    assert_eq!(invalid_field(&long_order), "order_id");

    let mut blank_order = fulfil(1);
    if let InventoryEvent::FulfilmentRequested(e) = &mut blank_order {
        e.order_id = String::new();
    }
    assert_eq!(invalid_field(&blank_order), "order_id");
}

#[test]
fn reservation_statuses_round_trip_through_their_names() {
    for &status in ReservationStatus::VARIANTS {
        assert_eq!(
            status.into_str().parse::<ReservationStatus>().ok(),
            Some(status)
        );
    }
    assert_eq!("held".parse::<ReservationStatus>().ok(), None);
}
