//! Stock per SKU and reservations per (SKU, order id): validates inventory
//! events, folds them into [`Stock`] and [`Reservation`] rows, and answers the
//! order handler's reservation requests.
//!
//! A reservation row, once written, is never reserved again: a repeated
//! request, a request arriving after its own release, and a repeated release
//! or fulfilment all find the row and change nothing. That is what makes the
//! order/inventory round trip safe under at-least-once delivery.

use serde::{Deserialize, Serialize};
use strum::{Display, EnumString, IntoStaticStr, VariantArray};
use utoipa::ToSchema;

use super::order::check_id;
use super::{
    Emitted, EpochMillis, EventIds, EventSet, InventoryEvent, LowStockAlert, OrderEvent, Outcome,
    ResultEvent, StockFulfilmentRequested, StockReleaseRequested, StockReservationOutcome,
    StockReservationRequested, StockReserved, StockShort, ValidationError,
};

/// Where one order's claim on one SKU stands.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
    Display,
    EnumString,
    IntoStaticStr,
    VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case", const_into_str)]
pub enum ReservationStatus {
    Reserved,
    /// Not enough stock when asked; kept so that a repeat is not granted later.
    Short,
    Released,
    Fulfilled,
}

/// One order's claim on one SKU; the row is keyed by (SKU, order id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub order_id: String,
    pub quantity: i32,
    pub status: ReservationStatus,
}

/// The inventory projection for one SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stock {
    pub sku: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub updated_at_ms: EpochMillis,
}

impl Stock {
    /// A SKU never seen before: nothing on hand, nothing reserved.
    pub fn empty(sku: impl Into<String>) -> Self {
        Self {
            sku: sku.into(),
            on_hand: 0,
            reserved: 0,
            updated_at_ms: 0,
        }
    }

    /// Units that can still be promised. Negative when stock was oversold
    /// (a downward count correction below what is already reserved).
    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved
    }
}

/// Everything one inventory event leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryDecision {
    /// The SKU's stock after the event (the input, or an empty row, when unchanged).
    pub stock: Stock,
    pub stock_changed: bool,
    /// The reservation row after the event; `None` for events naming no order.
    pub reservation: Option<Reservation>,
    pub reservation_changed: bool,
    /// In publication order; ids were drawn in this order.
    pub emitted: Vec<Emitted>,
    pub outcome: Outcome,
}

/// Poison checks: an event that fails them is malformed, not merely refused.
pub fn validate(event: &InventoryEvent) -> Result<(), ValidationError> {
    check_id("sku", event.key())?;
    if event.event_time_ms() <= 0 {
        return Err(ValidationError::new(
            "event_time_ms",
            format!("must be > 0, got {}", event.event_time_ms()),
        ));
    }
    match event {
        InventoryEvent::Received(received) => check_positive("quantity", received.quantity),
        InventoryEvent::Adjusted(adjusted) => {
            if adjusted.delta == 0 {
                return Err(ValidationError::new("delta", "must not be 0"));
            }
            Ok(())
        }
        InventoryEvent::ReservationRequested(request) => {
            check_id("order_id", &request.order_id)?;
            check_positive("quantity", request.quantity)
        }
        InventoryEvent::ReleaseRequested(StockReleaseRequested { order_id, .. })
        | InventoryEvent::FulfilmentRequested(StockFulfilmentRequested { order_id, .. }) => {
            check_id("order_id", order_id)
        }
    }
}

fn check_positive(field: &'static str, value: i32) -> Result<(), ValidationError> {
    if value <= 0 {
        return Err(ValidationError::new(
            field,
            format!("must be > 0, got {value}"),
        ));
    }
    Ok(())
}

/// Folds one event into the SKU's stock and, for events naming an order, the
/// (SKU, order id) reservation. Assumes [`validate`] accepted the event.
///
/// `reservation` is the current row for (event SKU, event order id), or `None`
/// when there is none or the event names no order. A low-stock alert is
/// emitted when availability crosses from `>= low_stock_threshold` to below it.
pub fn apply(
    stock: Option<&Stock>,
    reservation: Option<&Reservation>,
    event: &InventoryEvent,
    low_stock_threshold: i64,
    ids: &mut EventIds,
) -> InventoryDecision {
    let before = stock.cloned().unwrap_or_else(|| Stock::empty(event.key()));
    let mut step = Step {
        before,
        reservation: reservation.cloned(),
        reservation_changed: false,
        stock_changed: false,
        emitted: Vec::new(),
        duplicate: false,
    };
    let mut after = step.before.clone();
    match event {
        InventoryEvent::Received(received) => {
            after.on_hand += i64::from(received.quantity);
            step.stock_changed = true;
        }
        InventoryEvent::Adjusted(adjusted) => {
            after.on_hand += i64::from(adjusted.delta);
            step.stock_changed = true;
        }
        InventoryEvent::ReservationRequested(request) => {
            reserve(&mut step, &mut after, request, ids);
        }
        InventoryEvent::ReleaseRequested(release) => match &step.reservation {
            Some(held) if held.status == ReservationStatus::Reserved => {
                after.reserved -= i64::from(held.quantity);
                step.set_reservation_status(ReservationStatus::Released);
                step.stock_changed = true;
            }
            // The release overtook its request: remember it, so the request
            // arriving later finds a row and cannot reserve for a dead order.
            None => {
                step.reservation = Some(Reservation {
                    order_id: release.order_id.clone(),
                    quantity: 0,
                    status: ReservationStatus::Released,
                });
                step.reservation_changed = true;
            }
            Some(_) => step.duplicate = true,
        },
        InventoryEvent::FulfilmentRequested(_) => match &step.reservation {
            Some(held) if held.status == ReservationStatus::Reserved => {
                let quantity = i64::from(held.quantity);
                after.on_hand -= quantity;
                after.reserved -= quantity;
                step.set_reservation_status(ReservationStatus::Fulfilled);
                step.stock_changed = true;
            }
            _ => step.duplicate = true,
        },
    }

    let time = event.event_time_ms();
    if step.stock_changed {
        after.updated_at_ms = time;
        let available_before = step.before.available();
        let available_after = after.available();
        if available_before >= low_stock_threshold && available_after < low_stock_threshold {
            step.emitted
                .push(Emitted::Result(ResultEvent::LowStockAlert(LowStockAlert {
                    event_id: ids.next_id(),
                    sku: after.sku.clone(),
                    available: available_after,
                    threshold: low_stock_threshold,
                    event_time_ms: time,
                })));
        }
    }

    InventoryDecision {
        stock: if step.stock_changed {
            after
        } else {
            step.before
        },
        stock_changed: step.stock_changed,
        reservation: step.reservation,
        reservation_changed: step.reservation_changed,
        emitted: step.emitted,
        outcome: if step.duplicate {
            Outcome::Duplicate
        } else {
            Outcome::Applied
        },
    }
}

/// The decision under construction.
struct Step {
    before: Stock,
    reservation: Option<Reservation>,
    reservation_changed: bool,
    stock_changed: bool,
    emitted: Vec<Emitted>,
    duplicate: bool,
}

impl Step {
    fn set_reservation_status(&mut self, status: ReservationStatus) {
        if let Some(held) = &mut self.reservation {
            held.status = status;
            self.reservation_changed = true;
        }
    }
}

fn reserve(
    step: &mut Step,
    after: &mut Stock,
    request: &StockReservationRequested,
    ids: &mut EventIds,
) {
    // Any existing row, whatever its status, means this (SKU, order) was
    // already answered; answering again could reserve twice or contradict.
    if step.reservation.is_some() {
        step.duplicate = true;
        return;
    }
    let time = request.event_time_ms;
    let quantity = i64::from(request.quantity);
    let available = after.available();
    let reserved = available >= quantity;
    if reserved {
        after.reserved += quantity;
        step.stock_changed = true;
        step.emitted
            .push(Emitted::Result(ResultEvent::StockReserved(StockReserved {
                event_id: ids.next_id(),
                sku: request.sku.clone(),
                order_id: request.order_id.clone(),
                quantity: request.quantity,
                available_after: after.available(),
                event_time_ms: time,
            })));
    } else {
        step.emitted
            .push(Emitted::Result(ResultEvent::StockShort(StockShort {
                event_id: ids.next_id(),
                sku: request.sku.clone(),
                order_id: request.order_id.clone(),
                requested: request.quantity,
                available,
                event_time_ms: time,
            })));
    }
    step.emitted.push(Emitted::Order(OrderEvent::StockOutcome(
        StockReservationOutcome {
            event_id: ids.next_id(),
            order_id: request.order_id.clone(),
            sku: request.sku.clone(),
            quantity: request.quantity,
            reserved,
            event_time_ms: time,
        },
    )));
    step.reservation = Some(Reservation {
        order_id: request.order_id.clone(),
        quantity: request.quantity,
        status: if reserved {
            ReservationStatus::Reserved
        } else {
            ReservationStatus::Short
        },
    });
    step.reservation_changed = true;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::order::MAX_ID_BYTES;
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
        match validate(event) {
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
            assert_eq!(validate(&event), Ok(()), "{event:?}");
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
}
