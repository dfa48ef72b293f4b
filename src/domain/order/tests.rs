//! The order handler's rules, event by event.

use super::*;
use crate::domain::*;
use crate::domain::{
    EventOrigin, OrderDelivered, OrderLine, OrderShipped, StockReservationOutcome,
};

const ORDER: &str = "o-1";
const CUSTOMER: &str = "c-9";
const T0: EpochMillis = 1_700_000_000_000;

fn ids(offset: i64) -> EventIds<'static> {
    EventIds::new(EventOrigin {
        topic: "shop.orders",
        partition: 3,
        offset,
    })
}

fn id(offset: i64, index: u32) -> String {
    format!("shop.orders/3/{offset}/{index}")
}

fn at(offset: i64) -> EpochMillis {
    T0 + offset * 1_000
}

fn line(sku: &str, quantity: i32, unit_price_cents: i64) -> OrderLine {
    OrderLine {
        sku: sku.to_owned(),
        quantity,
        unit_price_cents,
    }
}

fn placed_with(lines: Vec<OrderLine>, offset: i64) -> OrderEvent {
    OrderEvent::Placed(OrderPlaced {
        order_id: ORDER.to_owned(),
        customer_id: CUSTOMER.to_owned(),
        lines,
        currency: "EUR".to_owned(),
        event_time_ms: at(offset),
    })
}

/// Two SKUs: 2 x A at 5.00 and 1 x B at 10.00, total 20.00.
fn placed(offset: i64) -> OrderEvent {
    placed_with(vec![line("A", 2, 500), line("B", 1, 1_000)], offset)
}

fn stock(sku: &str, quantity: i32, reserved: bool, offset: i64) -> OrderEvent {
    OrderEvent::StockOutcome(StockReservationOutcome {
        event_id: format!("shop.inventory/0/{offset}/1"),
        order_id: ORDER.to_owned(),
        sku: sku.to_owned(),
        quantity,
        reserved,
        event_time_ms: at(offset),
    })
}

fn captured(amount_cents: i64, offset: i64) -> OrderEvent {
    OrderEvent::PaymentCaptured(PaymentCaptured {
        order_id: ORDER.to_owned(),
        amount_cents,
        event_time_ms: at(offset),
    })
}

fn failed(reason: &str, offset: i64) -> OrderEvent {
    OrderEvent::PaymentFailed(PaymentFailed {
        order_id: ORDER.to_owned(),
        reason: reason.to_owned(),
        event_time_ms: at(offset),
    })
}

fn shipped(offset: i64) -> OrderEvent {
    OrderEvent::Shipped(OrderShipped {
        order_id: ORDER.to_owned(),
        carrier: "dhl".to_owned(),
        event_time_ms: at(offset),
    })
}

fn delivered(offset: i64) -> OrderEvent {
    OrderEvent::Delivered(OrderDelivered {
        order_id: ORDER.to_owned(),
        event_time_ms: at(offset),
    })
}

fn cancelled(reason: &str, offset: i64) -> OrderEvent {
    OrderEvent::Cancelled(OrderCancelled {
        order_id: ORDER.to_owned(),
        reason: reason.to_owned(),
        event_time_ms: at(offset),
    })
}

/// Applies `event` at `offset` (the offset also names the ids).
fn step(current: Option<&Order>, event: &OrderEvent, offset: i64) -> OrderDecision {
    apply(current, event, &mut ids(offset))
}

fn state(decision: OrderDecision) -> Order {
    decision.state.expect("decision keeps an order")
}

fn placed_order() -> Order {
    state(step(None, &placed(1), 1))
}

fn confirmed_order() -> Order {
    let order = state(step(Some(&placed_order()), &stock("A", 2, true, 2), 2));
    state(step(Some(&order), &stock("B", 1, true, 3), 3))
}

fn payment_failed_order() -> Order {
    state(step(
        Some(&confirmed_order()),
        &failed("card declined", 4),
        4,
    ))
}

fn paid_order() -> Order {
    state(step(Some(&confirmed_order()), &captured(2_000, 4), 4))
}

fn shipped_order() -> Order {
    state(step(Some(&paid_order()), &shipped(5), 5))
}

fn delivered_order() -> Order {
    state(step(Some(&shipped_order()), &delivered(6), 6))
}

fn cancelled_order() -> Order {
    state(step(
        Some(&placed_order()),
        &cancelled("changed mind", 2),
        2,
    ))
}

fn status_changed_event(
    offset: i64,
    index: u32,
    from: Option<&str>,
    to: &str,
    reason: Option<&str>,
) -> Emitted {
    Emitted::Result(ResultEvent::OrderStatusChanged(OrderStatusChanged {
        event_id: id(offset, index),
        order_id: ORDER.to_owned(),
        customer_id: CUSTOMER.to_owned(),
        from_status: from.map(str::to_owned),
        to_status: to.to_owned(),
        reason: reason.map(str::to_owned),
        event_time_ms: at(offset),
    }))
}

fn release_event(offset: i64, index: u32, sku: &str) -> Emitted {
    Emitted::Inventory(InventoryEvent::ReleaseRequested(StockReleaseRequested {
        event_id: id(offset, index),
        sku: sku.to_owned(),
        order_id: ORDER.to_owned(),
        event_time_ms: at(offset),
    }))
}

fn line_stock(order: &Order) -> Vec<(&str, LineStock)> {
    order
        .lines
        .iter()
        .map(|l| (l.sku.as_str(), l.stock))
        .collect()
}

/// Applies `event` to `before` at `offset` and checks it was refused with
/// `reason`, leaving the order untouched and emitting only the rejection.
fn assert_rejected(before: &Order, event: &OrderEvent, offset: i64, reason: &'static str) {
    let decision = step(Some(before), event, offset);
    assert_eq!(decision.outcome, Outcome::Rejected { reason });
    assert_eq!(decision.state.as_ref(), Some(before));
    assert!(!decision.state_changed);
    assert!(decision.sales.is_empty());
    assert_eq!(
        decision.emitted,
        vec![Emitted::Result(ResultEvent::OrderRejected(OrderRejected {
            event_id: id(offset, 0),
            order_id: ORDER.to_owned(),
            event_type: event.type_name().to_owned(),
            status: Some(before.status.into_str().to_owned()),
            reason: reason.to_owned(),
            event_time_ms: at(offset),
        }))]
    );
}

// --- placing -----------------------------------------------------------

#[test]
fn placing_an_order_announces_it_and_requests_stock_for_each_line() {
    let decision = step(None, &placed(17), 17);
    assert_eq!(decision.outcome, Outcome::Applied);
    assert!(decision.state_changed);
    assert!(decision.sales.is_empty());
    let request = |index: u32, sku: &str, quantity: i32| {
        Emitted::Inventory(InventoryEvent::ReservationRequested(
            StockReservationRequested {
                event_id: id(17, index),
                sku: sku.to_owned(),
                order_id: ORDER.to_owned(),
                quantity,
                event_time_ms: at(17),
            },
        ))
    };
    assert_eq!(
        decision.emitted,
        vec![
            status_changed_event(17, 0, None, "placed", None),
            request(1, "A", 2),
            request(2, "B", 1),
        ]
    );
    assert_eq!(
        state(decision),
        Order {
            order_id: ORDER.to_owned(),
            customer_id: CUSTOMER.to_owned(),
            status: OrderStatus::Placed,
            lines: vec![
                OrderLineState {
                    sku: "A".to_owned(),
                    quantity: 2,
                    unit_price_cents: 500,
                    stock: LineStock::Pending,
                },
                OrderLineState {
                    sku: "B".to_owned(),
                    quantity: 1,
                    unit_price_cents: 1_000,
                    stock: LineStock::Pending,
                },
            ],
            currency: "EUR".to_owned(),
            total_cents: 2_000,
            paid_cents: 0,
            refunded_cents: 0,
            placed_at_ms: at(17),
            updated_at_ms: at(17),
            timeline: vec![TimelineEntry {
                event_time_ms: at(17),
                status: "placed".to_owned(),
                note: None,
            }],
        }
    );
}

#[test]
fn placing_merges_lines_that_repeat_a_sku() {
    let event = placed_with(
        vec![line("A", 2, 500), line("B", 1, 1_000), line("A", 3, 500)],
        1,
    );
    assert_eq!(event.validate(), Ok(()));
    let decision = step(None, &event, 1);
    let requested: Vec<(String, i32)> = decision
        .emitted
        .iter()
        .filter_map(|e| match e {
            Emitted::Inventory(InventoryEvent::ReservationRequested(r)) => {
                Some((r.sku.clone(), r.quantity))
            }
            _ => None,
        })
        .collect();
    assert_eq!(requested, vec![("A".to_owned(), 5), ("B".to_owned(), 1)]);
    let order = state(decision);
    assert_eq!(order.lines.len(), 2);
    assert_eq!(
        (order.lines[0].quantity, order.lines[0].unit_price_cents),
        (5, 500)
    );
    assert_eq!(order.total_cents, 3_500);
}

#[test]
fn events_for_an_unknown_order_are_rejected() {
    for event in [
        captured(2_000, 9),
        failed("x", 9),
        shipped(9),
        delivered(9),
        cancelled("x", 9),
        stock("A", 2, true, 9),
    ] {
        let decision = step(None, &event, 9);
        assert_eq!(
            decision.outcome,
            Outcome::Rejected {
                reason: "unknown_order"
            }
        );
        assert_eq!(decision.state, None);
        assert!(!decision.state_changed);
        assert_eq!(
            decision.emitted,
            vec![Emitted::Result(ResultEvent::OrderRejected(OrderRejected {
                event_id: id(9, 0),
                order_id: ORDER.to_owned(),
                event_type: event.type_name().to_owned(),
                status: None,
                reason: "unknown_order".to_owned(),
                event_time_ms: at(9),
            }))]
        );
    }
}

#[test]
fn placing_an_existing_order_again_is_rejected_as_duplicate() {
    assert_rejected(&placed_order(), &placed(5), 5, "duplicate_order");
    assert_rejected(&paid_order(), &placed(5), 5, "duplicate_order");
}

// --- stock answers -----------------------------------------------------

#[test]
fn a_reserved_line_is_recorded_while_other_lines_are_pending() {
    let decision = step(Some(&placed_order()), &stock("A", 2, true, 2), 2);
    assert_eq!(decision.outcome, Outcome::Applied);
    assert!(decision.state_changed);
    assert!(decision.emitted.is_empty());
    let order = state(decision);
    assert_eq!(order.status, OrderStatus::Placed);
    assert_eq!(
        line_stock(&order),
        vec![("A", LineStock::Reserved), ("B", LineStock::Pending)]
    );
    assert_eq!(order.updated_at_ms, at(2));
    assert_eq!(order.timeline.len(), 2);
    assert_eq!(order.timeline[1].status, "placed");
}

#[test]
fn order_is_confirmed_when_every_line_is_reserved() {
    let partly = state(step(Some(&placed_order()), &stock("A", 2, true, 2), 2));
    let decision = step(Some(&partly), &stock("B", 1, true, 3), 3);
    assert_eq!(decision.outcome, Outcome::Applied);
    assert_eq!(
        decision.emitted,
        vec![status_changed_event(
            3,
            0,
            Some("placed"),
            "confirmed",
            None
        )]
    );
    let order = state(decision);
    assert_eq!(order.status, OrderStatus::Confirmed);
    assert_eq!(
        line_stock(&order),
        vec![("A", LineStock::Reserved), ("B", LineStock::Reserved)]
    );
    assert_eq!(
        order.timeline.last().map(|e| e.status.as_str()),
        Some("confirmed")
    );
}

#[test]
fn a_shortage_cancels_the_order_and_releases_lines_already_reserved() {
    let partly = state(step(Some(&placed_order()), &stock("A", 2, true, 2), 2));
    let decision = step(Some(&partly), &stock("B", 1, false, 3), 3);
    assert_eq!(decision.outcome, Outcome::Applied);
    assert_eq!(
        decision.emitted,
        vec![
            status_changed_event(3, 0, Some("placed"), "cancelled", Some("out_of_stock")),
            release_event(3, 1, "A"),
        ]
    );
    let order = state(decision);
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(
        line_stock(&order),
        vec![("A", LineStock::Released), ("B", LineStock::Short)]
    );
    let last = order.timeline.last().cloned();
    assert_eq!(
        last.map(|e| (e.status, e.note)),
        Some((
            "cancelled".to_owned(),
            Some("out_of_stock: B short".to_owned())
        ))
    );
}

#[test]
fn a_shortage_on_the_first_answer_cancels_without_releasing_anything() {
    let decision = step(Some(&placed_order()), &stock("A", 2, false, 2), 2);
    assert_eq!(
        decision.emitted,
        vec![status_changed_event(
            2,
            0,
            Some("placed"),
            "cancelled",
            Some("out_of_stock")
        )]
    );
    let order = state(decision);
    assert_eq!(
        line_stock(&order),
        vec![("A", LineStock::Short), ("B", LineStock::Pending)]
    );
}

#[test]
fn a_late_reservation_after_cancellation_is_released() {
    let cancelled = state(step(Some(&placed_order()), &stock("A", 2, false, 2), 2));
    let decision = step(Some(&cancelled), &stock("B", 1, true, 3), 3);
    assert_eq!(decision.outcome, Outcome::Applied);
    assert!(decision.state_changed);
    assert_eq!(decision.emitted, vec![release_event(3, 0, "B")]);
    let order = state(decision);
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(
        line_stock(&order),
        vec![("A", LineStock::Short), ("B", LineStock::Released)]
    );
}

#[test]
fn a_late_reservation_after_customer_cancellation_is_released() {
    let decision = step(Some(&cancelled_order()), &stock("A", 2, true, 3), 3);
    assert_eq!(decision.emitted, vec![release_event(3, 0, "A")]);
    assert_eq!(
        line_stock(&state(decision)),
        vec![("A", LineStock::Released), ("B", LineStock::Pending)]
    );
}

#[test]
fn a_late_shortage_after_cancellation_is_only_recorded() {
    let decision = step(Some(&cancelled_order()), &stock("B", 1, false, 3), 3);
    assert_eq!(decision.outcome, Outcome::Applied);
    assert!(decision.state_changed);
    assert!(decision.emitted.is_empty());
    let order = state(decision);
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(
        line_stock(&order),
        vec![("A", LineStock::Pending), ("B", LineStock::Short)]
    );
}

#[test]
fn a_repeated_stock_answer_is_a_no_op() {
    let partly = state(step(Some(&placed_order()), &stock("A", 2, true, 2), 2));
    for repeat in [stock("A", 2, true, 3), stock("A", 2, false, 3)] {
        let decision = step(Some(&partly), &repeat, 3);
        assert_eq!(decision.outcome, Outcome::Duplicate);
        assert!(!decision.state_changed);
        assert!(decision.emitted.is_empty());
        assert_eq!(decision.state.as_ref(), Some(&partly));
    }
    let confirmed = confirmed_order();
    let decision = step(Some(&confirmed), &stock("B", 1, true, 4), 4);
    assert_eq!(decision.outcome, Outcome::Duplicate);
    assert_eq!(decision.state, Some(confirmed));
}

#[test]
fn a_stock_answer_for_a_sku_not_in_the_order_is_rejected() {
    assert_rejected(&placed_order(), &stock("Z", 1, true, 2), 2, "unknown_line");
}

// --- payment -----------------------------------------------------------

#[test]
fn payment_of_a_confirmed_order_marks_it_paid() {
    let offset = 100;
    let decision = step(Some(&confirmed_order()), &captured(2_000, offset), offset);
    assert_eq!(decision.outcome, Outcome::Applied);
    assert_eq!(
        decision.emitted,
        vec![status_changed_event(
            offset,
            0,
            Some("confirmed"),
            "paid",
            None
        )]
    );
    assert!(decision.sales.is_empty(), "sales count at shipping");
    let order = state(decision);
    assert_eq!(order.status, OrderStatus::Paid);
    assert_eq!(order.paid_cents, 2_000);
    assert_eq!(order.updated_at_ms, at(offset));
}

#[test]
fn payment_after_a_failed_payment_is_accepted() {
    let decision = step(Some(&payment_failed_order()), &captured(2_000, 5), 5);
    assert_eq!(decision.outcome, Outcome::Applied);
    assert_eq!(
        decision.emitted,
        vec![status_changed_event(
            5,
            0,
            Some("payment_failed"),
            "paid",
            None
        )]
    );
    assert!(decision.sales.is_empty(), "sales count at shipping");
    assert_eq!(state(decision).status, OrderStatus::Paid);
}

#[test]
fn payment_before_stock_confirmation_is_accepted_and_shipping_waits_for_stock() {
    let decision = step(Some(&placed_order()), &captured(2_000, 2), 2);
    assert_eq!(decision.outcome, Outcome::Applied);
    let paid = state(decision);
    assert_eq!(paid.status, OrderStatus::Paid);
    assert_rejected(&paid, &shipped(3), 3, "awaiting_stock");

    // Both answers arrive: the order stays paid and can now ship.
    let one = state(step(Some(&paid), &stock("A", 2, true, 4), 4));
    let both = step(Some(&one), &stock("B", 1, true, 5), 5);
    assert!(both.emitted.is_empty(), "no status change while paid");
    let ready = state(both);
    assert_eq!(ready.status, OrderStatus::Paid);
    let shipping = step(Some(&ready), &shipped(6), 6);
    assert_eq!(shipping.outcome, Outcome::Applied);
    assert_eq!(state(shipping).status, OrderStatus::Shipped);
}

#[test]
fn a_shortage_after_payment_cancels_the_order_with_a_refund_due() {
    let paid = state(step(Some(&placed_order()), &captured(2_000, 2), 2));
    let reserved = state(step(Some(&paid), &stock("A", 2, true, 3), 3));
    let decision = step(Some(&reserved), &stock("B", 1, false, 4), 4);
    assert_eq!(decision.outcome, Outcome::Applied);
    assert_eq!(
        decision.emitted,
        vec![
            status_changed_event(4, 0, Some("paid"), "cancelled", Some("out_of_stock")),
            release_event(4, 1, "A"),
        ]
    );
    let order = state(decision);
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(order.paid_cents, 2_000);
}

#[test]
fn payment_of_the_wrong_amount_is_rejected() {
    assert_rejected(
        &confirmed_order(),
        &captured(1_999, 4),
        4,
        "amount_mismatch",
    );
    assert_rejected(
        &payment_failed_order(),
        &captured(2_001, 5),
        5,
        "amount_mismatch",
    );
}

#[test]
fn payment_of_a_paid_order_is_rejected() {
    for order in [paid_order(), shipped_order(), delivered_order()] {
        assert_rejected(&order, &captured(2_000, 9), 9, "already_paid");
    }
}

#[test]
fn payment_of_a_cancelled_order_is_rejected() {
    assert_rejected(
        &cancelled_order(),
        &captured(2_000, 9),
        9,
        "order_cancelled",
    );
}

#[test]
fn failed_payment_of_a_confirmed_order_records_the_reason() {
    let decision = step(Some(&confirmed_order()), &failed("card declined", 4), 4);
    assert_eq!(decision.outcome, Outcome::Applied);
    assert_eq!(
        decision.emitted,
        vec![status_changed_event(
            4,
            0,
            Some("confirmed"),
            "payment_failed",
            Some("card declined")
        )]
    );
    let order = state(decision);
    assert_eq!(order.status, OrderStatus::PaymentFailed);
    assert_eq!(
        order.timeline.last(),
        Some(&TimelineEntry {
            event_time_ms: at(4),
            status: "payment_failed".to_owned(),
            note: Some("card declined".to_owned()),
        })
    );
}

#[test]
fn failed_payment_before_stock_confirmation_is_recorded() {
    let decision = step(Some(&placed_order()), &failed("card declined", 2), 2);
    assert_eq!(decision.outcome, Outcome::Applied);
    assert_eq!(
        decision.emitted,
        vec![status_changed_event(
            2,
            0,
            Some("placed"),
            "payment_failed",
            Some("card declined")
        )]
    );
    assert_eq!(state(decision).status, OrderStatus::PaymentFailed);
}

#[test]
fn failed_payment_outside_confirmed_is_an_invalid_transition() {
    for order in [
        payment_failed_order(),
        paid_order(),
        shipped_order(),
        delivered_order(),
    ] {
        assert_rejected(&order, &failed("x", 9), 9, "invalid_transition");
    }
    assert_rejected(&cancelled_order(), &failed("x", 9), 9, "order_cancelled");
}

// --- shipping and delivery ---------------------------------------------

#[test]
fn shipping_a_paid_order_requests_fulfilment_of_every_line_and_records_sales() {
    let decision = step(Some(&paid_order()), &shipped(5), 5);
    assert_eq!(decision.outcome, Outcome::Applied);
    let fulfil = |index: u32, sku: &str| {
        Emitted::Inventory(InventoryEvent::FulfilmentRequested(
            StockFulfilmentRequested {
                event_id: id(5, index),
                sku: sku.to_owned(),
                order_id: ORDER.to_owned(),
                event_time_ms: at(5),
            },
        ))
    };
    assert_eq!(
        decision.emitted,
        vec![
            status_changed_event(5, 0, Some("paid"), "shipped", None),
            fulfil(1, "A"),
            fulfil(2, "B"),
        ]
    );
    let minute_ms = minute_of(at(5));
    assert_eq!(
        decision.sales,
        vec![
            SaleLine {
                sku: "A".to_owned(),
                minute_ms,
                units: 2,
                revenue_cents: 1_000,
            },
            SaleLine {
                sku: "B".to_owned(),
                minute_ms,
                units: 1,
                revenue_cents: 1_000,
            },
        ]
    );
    let order = state(decision);
    assert_eq!(order.status, OrderStatus::Shipped);
    assert_eq!(
        line_stock(&order),
        vec![("A", LineStock::Fulfilled), ("B", LineStock::Fulfilled)]
    );
    assert_eq!(
        order.timeline.last().and_then(|e| e.note.clone()),
        Some("carrier: dhl".to_owned())
    );
}

#[test]
fn shipping_an_unpaid_or_shipped_order_is_an_invalid_transition() {
    for order in [
        placed_order(),
        confirmed_order(),
        payment_failed_order(),
        shipped_order(),
        delivered_order(),
    ] {
        assert_rejected(&order, &shipped(9), 9, "invalid_transition");
    }
    assert_rejected(&cancelled_order(), &shipped(9), 9, "order_cancelled");
}

#[test]
fn delivering_a_shipped_order_marks_it_delivered() {
    let decision = step(Some(&shipped_order()), &delivered(6), 6);
    assert_eq!(decision.outcome, Outcome::Applied);
    assert_eq!(
        decision.emitted,
        vec![status_changed_event(
            6,
            0,
            Some("shipped"),
            "delivered",
            None
        )]
    );
    let order = state(decision);
    assert_eq!(order.status, OrderStatus::Delivered);
    assert_eq!(order.updated_at_ms, at(6));
}

#[test]
fn delivering_an_order_not_shipped_is_an_invalid_transition() {
    for order in [
        placed_order(),
        confirmed_order(),
        payment_failed_order(),
        paid_order(),
        delivered_order(),
    ] {
        assert_rejected(&order, &delivered(9), 9, "invalid_transition");
    }
    assert_rejected(&cancelled_order(), &delivered(9), 9, "order_cancelled");
}

// --- cancellation ------------------------------------------------------

#[test]
fn cancelling_a_partly_reserved_order_releases_only_reserved_lines() {
    let partly = state(step(Some(&placed_order()), &stock("B", 1, true, 2), 2));
    let decision = step(Some(&partly), &cancelled("changed mind", 3), 3);
    assert_eq!(decision.outcome, Outcome::Applied);
    assert_eq!(
        decision.emitted,
        vec![
            status_changed_event(3, 0, Some("placed"), "cancelled", Some("changed mind")),
            release_event(3, 1, "B"),
        ]
    );
    let order = state(decision);
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(
        line_stock(&order),
        vec![("A", LineStock::Pending), ("B", LineStock::Released)]
    );
    assert_eq!(
        order.timeline.last().and_then(|e| e.note.clone()),
        Some("changed mind".to_owned())
    );
}

#[test]
fn cancelling_a_confirmed_order_releases_every_line() {
    let decision = step(Some(&confirmed_order()), &cancelled("fraud", 4), 4);
    assert_eq!(
        decision.emitted,
        vec![
            status_changed_event(4, 0, Some("confirmed"), "cancelled", Some("fraud")),
            release_event(4, 1, "A"),
            release_event(4, 2, "B"),
        ]
    );
    assert_eq!(
        line_stock(&state(decision)),
        vec![("A", LineStock::Released), ("B", LineStock::Released)]
    );
}

#[test]
fn cancelling_after_a_failed_payment_releases_every_line() {
    let decision = step(Some(&payment_failed_order()), &cancelled("", 5), 5);
    assert_eq!(
        decision.emitted,
        vec![
            status_changed_event(5, 0, Some("payment_failed"), "cancelled", None),
            release_event(5, 1, "A"),
            release_event(5, 2, "B"),
        ]
    );
    assert_eq!(state(decision).status, OrderStatus::Cancelled);
}

#[test]
fn cancelling_a_shipped_or_delivered_order_is_refused() {
    for order in [shipped_order(), delivered_order()] {
        assert_rejected(&order, &cancelled("x", 9), 9, "not_cancellable");
    }
}

#[test]
fn cancelling_a_paid_order_before_it_ships_releases_its_stock() {
    let decision = step(Some(&paid_order()), &cancelled("changed mind", 9), 9);
    assert_eq!(decision.outcome, Outcome::Applied);
    assert_eq!(
        decision.emitted,
        vec![
            status_changed_event(9, 0, Some("paid"), "cancelled", Some("changed mind")),
            release_event(9, 1, "A"),
            release_event(9, 2, "B"),
        ]
    );
    let order = state(decision);
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(order.paid_cents, 2_000, "the refund due stays visible");
}

#[test]
fn cancelling_a_cancelled_order_is_rejected() {
    assert_rejected(
        &cancelled_order(),
        &cancelled("again", 9),
        9,
        "order_cancelled",
    );
}

#[test]
fn applying_the_same_event_twice_computes_the_same_decision() {
    let confirmed = confirmed_order();
    let event = cancelled("fraud", 4);
    assert_eq!(
        step(Some(&confirmed), &event, 4),
        step(Some(&confirmed), &event, 4)
    );
}

// --- validation --------------------------------------------------------

fn invalid_field(event: &OrderEvent) -> &'static str {
    match event.validate() {
        Ok(()) => panic!("expected {event:?} to be invalid"),
        Err(error) => error.field,
    }
}

#[test]
fn well_formed_events_pass_validation() {
    for event in [
        placed(1),
        stock("A", 1, false, 1),
        captured(1, 1),
        failed("", 1),
        shipped(1),
        delivered(1),
        cancelled("", 1),
    ] {
        assert_eq!(event.validate(), Ok(()), "{event:?}");
    }
    let limits = vec![line(&"s".repeat(MAX_ID_BYTES), MAX_LINE_QUANTITY, 0); MAX_LINES];
    assert_eq!(placed_with(limits, 1).validate(), Ok(()));
}

#[test]
fn blank_or_oversized_ids_fail_validation() {
    let mut blank_order = placed(1);
    if let OrderEvent::Placed(p) = &mut blank_order {
        p.order_id = "  ".to_owned();
    }
    assert_eq!(invalid_field(&blank_order), "order_id");

    let mut long_customer = placed(1);
    if let OrderEvent::Placed(p) = &mut long_customer {
        p.customer_id = "c".repeat(MAX_ID_BYTES + 1);
    }
    assert_eq!(invalid_field(&long_customer), "customer_id");

    assert_eq!(
        invalid_field(&placed_with(vec![line("", 1, 1)], 1)),
        "lines.sku"
    );
    assert_eq!(invalid_field(&stock(" ", 1, true, 1)), "sku");
}

#[test]
fn placed_orders_with_bad_lines_fail_validation() {
    assert_eq!(invalid_field(&placed_with(vec![], 1)), "lines");
    assert_eq!(
        invalid_field(&placed_with(vec![line("A", 1, 1); MAX_LINES + 1], 1)),
        "lines"
    );
    assert_eq!(
        invalid_field(&placed_with(vec![line("A", 0, 1)], 1)),
        "lines.quantity"
    );
    assert_eq!(
        invalid_field(&placed_with(vec![line("A", MAX_LINE_QUANTITY + 1, 1)], 1)),
        "lines.quantity"
    );
    assert_eq!(
        invalid_field(&placed_with(vec![line("A", 1, -1)], 1)),
        "lines.unit_price_cents"
    );
}

#[test]
fn a_sku_repeated_at_a_different_price_fails_validation() {
    let event = placed_with(vec![line("A", 1, 500), line("A", 1, 501)], 1);
    assert_eq!(invalid_field(&event), "lines.unit_price_cents");
}

#[test]
fn an_order_total_beyond_i64_fails_validation() {
    let event = placed_with(vec![line("A", 2, i64::MAX / 2 + 1)], 1);
    assert_eq!(invalid_field(&event), "lines.unit_price_cents");
}

#[test]
fn a_currency_that_is_not_three_uppercase_letters_fails_validation() {
    for currency in ["eur", "EURO", "E1R", "", "ÉUR"] {
        let mut event = placed(1);
        if let OrderEvent::Placed(p) = &mut event {
            p.currency = currency.to_owned();
        }
        assert_eq!(invalid_field(&event), "currency", "{currency:?}");
    }
}

#[test]
fn non_positive_amounts_quantities_and_times_fail_validation() {
    assert_eq!(invalid_field(&captured(0, 1)), "amount_cents");
    assert_eq!(invalid_field(&captured(-5, 1)), "amount_cents");
    assert_eq!(invalid_field(&stock("A", 0, true, 1)), "quantity");
    let mut timeless = delivered(1);
    if let OrderEvent::Delivered(d) = &mut timeless {
        d.event_time_ms = 0;
    }
    assert_eq!(invalid_field(&timeless), "event_time_ms");
}

// --- names -------------------------------------------------------------

#[test]
fn statuses_round_trip_through_their_names() {
    for &status in OrderStatus::VARIANTS {
        assert_eq!(status.into_str().parse::<OrderStatus>().ok(), Some(status));
        assert_eq!(
            serde_json::to_string(&status).ok(),
            Some(format!("\"{}\"", status.into_str()))
        );
    }
    for &stock in LineStock::VARIANTS {
        assert_eq!(stock.into_str().parse::<LineStock>().ok(), Some(stock));
        assert_eq!(
            serde_json::to_string(&stock).ok(),
            Some(format!("\"{}\"", stock.into_str()))
        );
    }
    assert_eq!(OrderStatus::PaymentFailed.into_str(), "payment_failed");
    assert_eq!(OrderStatus::PaymentFailed.to_string(), "payment_failed");
    assert_eq!("Paid".parse::<OrderStatus>().ok(), None);
    assert_eq!("".parse::<LineStock>().ok(), None);
}

#[test]
fn an_order_survives_a_json_round_trip() {
    let order = shipped_order();
    let json = serde_json::to_string(&order).expect("serializes");
    let back: Order = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(back, order);
}

// --- refunds -----------------------------------------------------------

fn refunded(amount_cents: i64, reason: &str, offset: i64) -> OrderEvent {
    OrderEvent::Refunded(PaymentRefunded {
        order_id: ORDER.to_owned(),
        amount_cents,
        reason: reason.to_owned(),
        event_time_ms: at(offset),
    })
}

fn paid_then_cancelled_order() -> Order {
    state(step(Some(&paid_order()), &cancelled("changed mind", 5), 5))
}

#[test]
fn a_paid_order_that_is_cancelled_is_refunded_once() {
    let before = paid_then_cancelled_order();
    let decision = step(
        Some(&before),
        &refunded(2_000, "cancelled_after_payment", 6),
        6,
    );
    assert_eq!(decision.outcome, Outcome::Applied);
    assert_eq!(
        decision.emitted,
        vec![status_changed_event(
            6,
            0,
            Some("cancelled"),
            "refunded",
            Some("cancelled_after_payment")
        )]
    );
    let order = state(decision);
    assert_eq!(order.status, OrderStatus::Refunded);
    assert_eq!(order.refunded_cents, 2_000);
    assert_eq!(order.paid_cents, 2_000);
    assert_eq!(order.updated_at_ms, at(6));
    let last = order.timeline.last().expect("timeline entry");
    assert_eq!(
        (last.status.as_str(), last.note.as_deref()),
        ("refunded", Some("cancelled_after_payment"))
    );
    // A second refund, of any amount, is refused.
    assert_rejected(&order, &refunded(2_000, "again", 7), 7, "already_refunded");
    assert_rejected(&order, &refunded(1, "again", 7), 7, "already_refunded");
}

#[test]
fn a_delivered_order_that_comes_back_is_refunded_in_part_or_whole() {
    let partial = step(Some(&delivered_order()), &refunded(500, "returned", 7), 7);
    assert_eq!(partial.outcome, Outcome::Applied);
    let order = state(partial);
    assert_eq!(
        (order.status, order.refunded_cents),
        (OrderStatus::Refunded, 500)
    );
}

#[test]
fn a_refund_before_payment_or_before_cancellation_or_delivery_is_refused() {
    assert_rejected(&placed_order(), &refunded(2_000, "", 9), 9, "not_paid");
    assert_rejected(&confirmed_order(), &refunded(2_000, "", 9), 9, "not_paid");
    assert_rejected(
        &payment_failed_order(),
        &refunded(2_000, "", 9),
        9,
        "not_paid",
    );
    // Cancelled before anything was paid: there is nothing to give back.
    assert_rejected(&cancelled_order(), &refunded(2_000, "", 9), 9, "not_paid");
    assert_rejected(
        &paid_order(),
        &refunded(2_000, "", 9),
        9,
        "invalid_transition",
    );
    assert_rejected(
        &shipped_order(),
        &refunded(2_000, "", 9),
        9,
        "invalid_transition",
    );
}

#[test]
fn a_refund_above_the_captured_amount_is_refused() {
    let before = paid_then_cancelled_order();
    assert_rejected(
        &before,
        &refunded(2_001, "", 6),
        6,
        "refund_exceeds_payment",
    );
    assert_rejected(
        &delivered_order(),
        &refunded(9_999, "", 7),
        7,
        "refund_exceeds_payment",
    );
}

#[test]
fn a_refunded_order_refuses_every_further_step() {
    let order = state(step(
        Some(&paid_then_cancelled_order()),
        &refunded(2_000, "", 6),
        6,
    ));
    assert_rejected(&order, &captured(2_000, 7), 7, "already_paid");
    assert_rejected(&order, &shipped(7), 7, "order_refunded");
    assert_rejected(&order, &delivered(7), 7, "order_refunded");
    assert_rejected(&order, &cancelled("again", 7), 7, "order_refunded");
    assert_rejected(&order, &failed("late", 7), 7, "order_refunded");
}

#[test]
fn a_late_reservation_after_a_refund_is_released() {
    // Cancelled while B's answer was in flight, refunded, then B is reserved.
    let order = state(step(Some(&placed_order()), &stock("A", 2, true, 2), 2));
    let order = state(step(Some(&order), &captured(2_000, 3), 3));
    let order = state(step(Some(&order), &cancelled("changed mind", 4), 4));
    let order = state(step(Some(&order), &refunded(2_000, "", 5), 5));
    let decision = step(Some(&order), &stock("B", 1, true, 6), 6);
    assert_eq!(decision.outcome, Outcome::Applied);
    assert_eq!(decision.emitted, vec![release_event(6, 0, "B")]);
    assert_eq!(state(decision).status, OrderStatus::Refunded);
}

#[test]
fn a_refund_must_be_a_positive_amount_or_it_is_poison() {
    assert!(refunded(1, "", 1).validate().is_ok());
    for amount in [0, -5] {
        let err = refunded(amount, "", 1).validate().expect_err("poison");
        assert_eq!(err.field, "amount_cents");
    }
}
