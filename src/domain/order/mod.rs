//! The order handler: the order's state and its state machine, which folds
//! order events (checked by [`OrderEvent::validate`]) into an [`Order`] and
//! decides which result events, inventory requests and sales contributions
//! follow from each one.
//!
//! An order is `placed` and asks inventory to reserve each line. Payment and
//! stock move independently, as they do in a real shop where the payment
//! provider does not wait for the warehouse: a placed order becomes
//! `confirmed` once every line is reserved, and `paid` when payment is
//! captured, in either order. Only a paid order whose every line is reserved
//! can ship, and a sale counts when the order ships. The first shortage
//! cancels an order that has not shipped (reason `out_of_stock`; a paid one
//! is then due a refund) and releases what was reserved. Refused transitions
//! are business rejections ([`Outcome::Rejected`](crate::domain::Outcome::Rejected) plus an `OrderRejected`
//! result), never poison.

use serde::{Deserialize, Serialize};
use strum::{Display, EnumString, IntoStaticStr, VariantArray};
use utoipa::ToSchema;

mod decision;

use decision::{
    applied, duplicate, reason_text, record, reject, status_changed, transition, unknown_order,
};
pub use decision::{OrderDecision, SaleLine};

use super::{
    minute_of, Emitted, EpochMillis, EventIds, InventoryEvent, OrderCancelled, OrderEvent,
    OrderPlaced, PaymentCaptured, PaymentFailed, PaymentRefunded, StockFulfilmentRequested,
    StockReleaseRequested, StockReservationOutcome, StockReservationRequested,
};

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[derive(Display, EnumString, IntoStaticStr, VariantArray)]
#[strum(serialize_all = "snake_case", const_into_str)]
pub enum OrderStatus {
    Placed,
    Confirmed,
    PaymentFailed,
    Paid,
    Shipped,
    Delivered,
    Cancelled,
    /// Paid back after a cancellation or a return; nothing follows.
    Refunded,
}

/// Where one line's stock stands, as far as the order knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[derive(Display, EnumString, IntoStaticStr, VariantArray)]
#[strum(serialize_all = "snake_case", const_into_str)]
pub enum LineStock {
    /// Requested, no answer yet.
    Pending,
    Reserved,
    Short,
    /// Was reserved; the order asked inventory to give the units back.
    Released,
    /// Shipped: the order asked inventory to take the units off the shelf.
    Fulfilled,
}

/// One line of an order, one per SKU (repeated SKUs are merged when placed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderLineState {
    pub sku: String,
    pub quantity: i32,
    pub unit_price_cents: i64,
    /// Where the line's stock stands.
    pub stock: LineStock,
}

/// One applied change of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TimelineEntry {
    /// Event time of the change.
    #[serde(rename = "at", with = "super::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub event_time_ms: EpochMillis,
    /// The order's status after the change.
    pub status: String,
    #[schema(required = true)]
    pub note: Option<String>,
}

/// The order projection: the fold of its events. Its JSON (times as RFC 3339
/// text with milliseconds, money in integer cents of `currency`) is both the
/// stored row and the query API's view of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Order {
    #[schema(example = "O-65a1b2c3-0000000")]
    pub order_id: String,
    #[schema(example = "C-000001")]
    pub customer_id: String,
    pub status: OrderStatus,
    /// ISO 4217 code.
    #[schema(example = "EUR")]
    pub currency: String,
    pub total_cents: i64,
    pub paid_cents: i64,
    /// Paid back to the customer; documents written before refunds existed
    /// read as 0.
    #[serde(default)]
    pub refunded_cents: i64,
    pub lines: Vec<OrderLineState>,
    /// Every applied change, oldest first.
    pub timeline: Vec<TimelineEntry>,
    #[serde(rename = "placed_at", with = "super::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub placed_at_ms: EpochMillis,
    #[serde(rename = "updated_at", with = "super::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at_ms: EpochMillis,
}

/// Folds one event into the order. Assumes [`OrderEvent::validate`] accepted
/// the event.
pub fn apply(current: Option<&Order>, event: &OrderEvent, ids: &mut EventIds) -> OrderDecision {
    let Some(order) = current else {
        return match event {
            OrderEvent::Placed(placed) => place(placed, ids),
            _ => unknown_order(event, ids),
        };
    };
    match event {
        OrderEvent::Placed(_) => reject(order, event, "duplicate_order", ids),
        OrderEvent::StockOutcome(answer) => stock_outcome(order, event, answer, ids),
        OrderEvent::PaymentCaptured(captured) => capture_payment(order, event, captured, ids),
        OrderEvent::PaymentFailed(failed) => fail_payment(order, event, failed, ids),
        OrderEvent::Shipped(shipped) => match order.status {
            OrderStatus::Paid if all_reserved(order) => {
                ship(order, shipped.carrier.as_str(), shipped.event_time_ms, ids)
            }
            OrderStatus::Paid => reject(order, event, "awaiting_stock", ids),
            status => reject(order, event, refusal(status), ids),
        },
        OrderEvent::Delivered(delivered) => match order.status {
            OrderStatus::Shipped => {
                let mut next = order.clone();
                let changed = transition(
                    &mut next,
                    OrderStatus::Delivered,
                    None,
                    delivered.event_time_ms,
                    ids,
                );
                applied(next, vec![changed], Vec::new())
            }
            status => reject(order, event, refusal(status), ids),
        },
        OrderEvent::Cancelled(cancelled) => cancel(order, event, cancelled, ids),
        OrderEvent::Refunded(refund) => refund_payment(order, event, refund, ids),
    }
}

/// The reason for refusing a lifecycle step the current status does not allow.
fn refusal(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::Cancelled => "order_cancelled",
        OrderStatus::Refunded => "order_refunded",
        _ => "invalid_transition",
    }
}

fn place(placed: &OrderPlaced, ids: &mut EventIds) -> OrderDecision {
    let mut lines: Vec<OrderLineState> = Vec::with_capacity(placed.lines.len());
    for line in &placed.lines {
        match lines.iter_mut().find(|l| l.sku == line.sku) {
            Some(merged) => merged.quantity = merged.quantity.saturating_add(line.quantity),
            None => lines.push(OrderLineState {
                sku: line.sku.clone(),
                quantity: line.quantity,
                unit_price_cents: line.unit_price_cents,
                stock: LineStock::Pending,
            }),
        }
    }
    let total_cents = lines
        .iter()
        .fold(0i64, |sum, line| sum.saturating_add(line_amount(line)));
    let time = placed.event_time_ms;
    let mut order = Order {
        order_id: placed.order_id.clone(),
        customer_id: placed.customer_id.clone(),
        status: OrderStatus::Placed,
        lines,
        currency: placed.currency.clone(),
        total_cents,
        paid_cents: 0,
        refunded_cents: 0,
        placed_at_ms: time,
        updated_at_ms: time,
        timeline: Vec::new(),
    };
    let mut emitted = vec![status_changed(&order, None, None, time, ids)];
    for line in &order.lines {
        emitted.push(Emitted::Inventory(InventoryEvent::ReservationRequested(
            StockReservationRequested {
                event_id: ids.next_id(),
                sku: line.sku.clone(),
                order_id: order.order_id.clone(),
                quantity: line.quantity,
                event_time_ms: time,
            },
        )));
    }
    record(&mut order, time, None);
    applied(order, emitted, Vec::new())
}

fn stock_outcome(
    order: &Order,
    event: &OrderEvent,
    answer: &StockReservationOutcome,
    ids: &mut EventIds,
) -> OrderDecision {
    let Some(index) = order.lines.iter().position(|l| l.sku == answer.sku) else {
        return reject(order, event, "unknown_line", ids);
    };
    if order.lines[index].stock != LineStock::Pending {
        return duplicate(order);
    }
    let time = answer.event_time_ms;
    let mut next = order.clone();
    let stock = if answer.reserved {
        LineStock::Reserved
    } else {
        LineStock::Short
    };
    next.lines[index].stock = stock;
    let sku_note = format!("{}: {}", answer.sku, stock.into_str());
    let mut emitted = Vec::new();

    match (next.status, stock) {
        // Any order that has not shipped cannot be fulfilled without this line.
        (
            from @ (OrderStatus::Placed | OrderStatus::PaymentFailed | OrderStatus::Paid),
            LineStock::Short,
        ) => {
            let note = format!("out_of_stock: {} short", answer.sku);
            next.status = OrderStatus::Cancelled;
            emitted.push(status_changed(
                &next,
                Some(from),
                Some("out_of_stock"),
                time,
                ids,
            ));
            release_reserved(&mut next, time, ids, &mut emitted);
            record(&mut next, time, Some(note));
        }
        (OrderStatus::Placed, _) if all_reserved(&next) => {
            next.status = OrderStatus::Confirmed;
            emitted.push(status_changed(
                &next,
                Some(OrderStatus::Placed),
                None,
                time,
                ids,
            ));
            record(&mut next, time, Some(sku_note));
        }
        // The order was cancelled while this answer was in flight: the units
        // must go back, or they stay reserved for an order that will never ship.
        (OrderStatus::Cancelled | OrderStatus::Refunded, LineStock::Reserved) => {
            release_reserved(&mut next, time, ids, &mut emitted);
            let note = format!("{}: reserved after cancellation, released", answer.sku);
            record(&mut next, time, Some(note));
        }
        _ => record(&mut next, time, Some(sku_note)),
    }
    applied(next, emitted, Vec::new())
}

fn capture_payment(
    order: &Order,
    event: &OrderEvent,
    captured: &PaymentCaptured,
    ids: &mut EventIds,
) -> OrderDecision {
    match order.status {
        OrderStatus::Placed | OrderStatus::Confirmed | OrderStatus::PaymentFailed => {}
        OrderStatus::Paid
        | OrderStatus::Shipped
        | OrderStatus::Delivered
        | OrderStatus::Refunded => return reject(order, event, "already_paid", ids),
        OrderStatus::Cancelled => return reject(order, event, "order_cancelled", ids),
    }
    if captured.amount_cents != order.total_cents {
        return reject(order, event, "amount_mismatch", ids);
    }
    let time = captured.event_time_ms;
    let mut next = order.clone();
    next.paid_cents = captured.amount_cents;
    let changed = transition(&mut next, OrderStatus::Paid, None, time, ids);
    applied(next, vec![changed], Vec::new())
}

fn fail_payment(
    order: &Order,
    event: &OrderEvent,
    failed: &PaymentFailed,
    ids: &mut EventIds,
) -> OrderDecision {
    match order.status {
        OrderStatus::Placed | OrderStatus::Confirmed => {
            let mut next = order.clone();
            let reason = reason_text(&failed.reason);
            let changed = transition(
                &mut next,
                OrderStatus::PaymentFailed,
                reason,
                failed.event_time_ms,
                ids,
            );
            applied(next, vec![changed], Vec::new())
        }
        status => reject(order, event, refusal(status), ids),
    }
}

fn ship(order: &Order, carrier: &str, time: EpochMillis, ids: &mut EventIds) -> OrderDecision {
    let mut next = order.clone();
    next.status = OrderStatus::Shipped;
    let mut emitted = vec![status_changed(
        &next,
        Some(OrderStatus::Paid),
        None,
        time,
        ids,
    )];
    // A sale counts when the goods leave: a paid order can still be cancelled
    // (and refunded) until it ships.
    let minute_ms = minute_of(time);
    let sales = next
        .lines
        .iter()
        .map(|line| SaleLine {
            sku: line.sku.clone(),
            minute_ms,
            units: i64::from(line.quantity),
            revenue_cents: line_amount(line),
        })
        .collect();
    // Only reserved units can leave the shelf; shipping requires every line
    // reserved, so this filter only matters if that invariant were broken.
    for line in next
        .lines
        .iter_mut()
        .filter(|l| l.stock == LineStock::Reserved)
    {
        emitted.push(Emitted::Inventory(InventoryEvent::FulfilmentRequested(
            StockFulfilmentRequested {
                event_id: ids.next_id(),
                sku: line.sku.clone(),
                order_id: order.order_id.clone(),
                event_time_ms: time,
            },
        )));
        line.stock = LineStock::Fulfilled;
    }
    record(
        &mut next,
        time,
        reason_text(carrier).map(|c| format!("carrier: {c}")),
    );
    applied(next, emitted, sales)
}

fn cancel(
    order: &Order,
    event: &OrderEvent,
    cancelled: &OrderCancelled,
    ids: &mut EventIds,
) -> OrderDecision {
    match order.status {
        OrderStatus::Placed
        | OrderStatus::Confirmed
        | OrderStatus::PaymentFailed
        | OrderStatus::Paid => {
            let time = cancelled.event_time_ms;
            let reason = reason_text(&cancelled.reason);
            let mut next = order.clone();
            next.status = OrderStatus::Cancelled;
            let mut emitted = vec![status_changed(
                &next,
                Some(order.status),
                reason.as_deref(),
                time,
                ids,
            )];
            release_reserved(&mut next, time, ids, &mut emitted);
            record(&mut next, time, reason);
            applied(next, emitted, Vec::new())
        }
        OrderStatus::Shipped | OrderStatus::Delivered => {
            reject(order, event, "not_cancellable", ids)
        }
        status @ (OrderStatus::Cancelled | OrderStatus::Refunded) => {
            reject(order, event, refusal(status), ids)
        }
    }
}

/// Money goes back once, only after payment, for an order that was
/// cancelled or delivered (and returned), and never more than was captured.
fn refund_payment(
    order: &Order,
    event: &OrderEvent,
    refund: &PaymentRefunded,
    ids: &mut EventIds,
) -> OrderDecision {
    let refused = match order.status {
        OrderStatus::Refunded => Some("already_refunded"),
        OrderStatus::Cancelled | OrderStatus::Delivered if order.paid_cents > 0 => None,
        OrderStatus::Paid | OrderStatus::Shipped => Some("invalid_transition"),
        _ => Some("not_paid"),
    };
    let refused =
        refused.or((refund.amount_cents > order.paid_cents).then_some("refund_exceeds_payment"));
    if let Some(reason) = refused {
        return reject(order, event, reason, ids);
    }
    let mut next = order.clone();
    next.refunded_cents = refund.amount_cents;
    let reason = reason_text(&refund.reason);
    let changed = transition(
        &mut next,
        OrderStatus::Refunded,
        reason,
        refund.event_time_ms,
        ids,
    );
    applied(next, vec![changed], Vec::new())
}

/// Asks inventory to give back every reserved line, marking each released.
fn release_reserved(
    order: &mut Order,
    time: EpochMillis,
    ids: &mut EventIds,
    emitted: &mut Vec<Emitted>,
) {
    for line in order
        .lines
        .iter_mut()
        .filter(|l| l.stock == LineStock::Reserved)
    {
        emitted.push(Emitted::Inventory(InventoryEvent::ReleaseRequested(
            StockReleaseRequested {
                event_id: ids.next_id(),
                sku: line.sku.clone(),
                order_id: order.order_id.clone(),
                event_time_ms: time,
            },
        )));
        line.stock = LineStock::Released;
    }
}

fn all_reserved(order: &Order) -> bool {
    order.lines.iter().all(|l| l.stock == LineStock::Reserved)
}

fn line_amount(line: &OrderLineState) -> i64 {
    i64::from(line.quantity).saturating_mul(line.unit_price_cents)
}

#[cfg(test)]
mod tests;
