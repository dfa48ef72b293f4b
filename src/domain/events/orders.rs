//! The orders topic, keyed by order id: what upstream sends about an order,
//! what the inventory handler answers, the contract checks that make one of
//! them poison, and the simulated customer journey that generated streams
//! walk orders through.

use serde::{Deserialize, Serialize};

use super::{check_event_time, check_id, EpochMillis};
use crate::codec::{Codec, EncodeError, EventSet};
use crate::domain::order::OrderStatus;
use crate::domain::ValidationError;

/// Most lines one order may carry; each line costs one reservation round trip.
pub const MAX_LINES: usize = 100;
/// Most units of one SKU on one line.
pub const MAX_LINE_QUANTITY: i32 = 1_000_000;

/// One line of an order: a SKU, how many units, and the price of one unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: String,
    pub quantity: i32,
    pub unit_price_cents: i64,
}

crate::event_set! {
    /// Events on the orders topic, keyed by order id.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub enum OrderEvent: "orders" {
        Placed(OrderPlaced) keyed by order_id,
        PaymentCaptured(PaymentCaptured) keyed by order_id,
        PaymentFailed(PaymentFailed) keyed by order_id,
        Shipped(OrderShipped) keyed by order_id,
        Delivered(OrderDelivered) keyed by order_id,
        Cancelled(OrderCancelled) keyed by order_id,
        /// Money went back to the customer of a cancelled or returned order.
        Refunded(PaymentRefunded) keyed by order_id,
        /// Published by galley's inventory handler, re-keyed by order id.
        StockOutcome(StockReservationOutcome) keyed by order_id,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order_id: String,
    pub customer_id: String,
    pub lines: Vec<OrderLine>,
    /// ISO 4217 code. Added in schema version 2; older writers decode as "EUR".
    pub currency: String,
    pub event_time_ms: EpochMillis,
}

impl OrderPlaced {
    /// Appends this event written with schema version 1 of `OrderPlaced` (no
    /// `currency`), as a producer that predates version 2 would send it. For
    /// tests and sample data; galley itself always writes the latest.
    pub fn encode_v1(&self, codec: &Codec, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        /// Version 1's fields only: its schema has no `currency` to write.
        #[derive(Serialize)]
        struct OrderPlacedV1<'a> {
            order_id: &'a str,
            customer_id: &'a str,
            lines: &'a [OrderLine],
            event_time_ms: i64,
        }
        let v1 = OrderPlacedV1 {
            order_id: &self.order_id,
            customer_id: &self.customer_id,
            lines: &self.lines,
            event_time_ms: self.event_time_ms,
        };
        codec.encode_version("OrderPlaced", 1, &v1, out)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentCaptured {
    pub order_id: String,
    pub amount_cents: i64,
    pub event_time_ms: EpochMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentFailed {
    pub order_id: String,
    pub reason: String,
    pub event_time_ms: EpochMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderShipped {
    pub order_id: String,
    pub carrier: String,
    pub event_time_ms: EpochMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderDelivered {
    pub order_id: String,
    pub event_time_ms: EpochMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelled {
    pub order_id: String,
    pub reason: String,
    pub event_time_ms: EpochMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRefunded {
    pub order_id: String,
    pub amount_cents: i64,
    pub reason: String,
    pub event_time_ms: EpochMillis,
}

/// The inventory handler's answer to one reservation request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReservationOutcome {
    /// Deterministic id of this message (see [`crate::domain::EventId`]).
    pub event_id: String,
    pub order_id: String,
    pub sku: String,
    pub quantity: i32,
    pub reserved: bool,
    pub event_time_ms: EpochMillis,
}

impl OrderEvent {
    /// Poison checks: an event that fails them is malformed, not merely refused.
    /// Business rules (is this transition allowed now?) live in [`crate::domain::order::apply`].
    pub fn validate(&self) -> Result<(), ValidationError> {
        let event = self;
        check_id("order_id", event.key())?;
        check_event_time(event.event_time_ms())?;
        match event {
            OrderEvent::Placed(placed) => validate_placed(placed),
            OrderEvent::Refunded(refund) => check_amount(refund.amount_cents),
            OrderEvent::PaymentCaptured(captured) => check_amount(captured.amount_cents),
            OrderEvent::StockOutcome(outcome) => {
                check_id("sku", &outcome.sku)?;
                if outcome.quantity <= 0 {
                    return Err(ValidationError::new(
                        "quantity",
                        format!("must be > 0, got {}", outcome.quantity),
                    ));
                }
                Ok(())
            }
            OrderEvent::PaymentFailed(_)
            | OrderEvent::Shipped(_)
            | OrderEvent::Delivered(_)
            | OrderEvent::Cancelled(_) => Ok(()),
        }
    }
}

/// Money moves in positive amounts; which amount is right is a business rule.
fn check_amount(amount_cents: i64) -> Result<(), ValidationError> {
    if amount_cents <= 0 {
        return Err(ValidationError::new(
            "amount_cents",
            format!("must be > 0, got {amount_cents}"),
        ));
    }
    Ok(())
}

fn validate_placed(placed: &OrderPlaced) -> Result<(), ValidationError> {
    check_id("customer_id", &placed.customer_id)?;
    if placed.lines.is_empty() || placed.lines.len() > MAX_LINES {
        return Err(ValidationError::new(
            "lines",
            format!(
                "must have 1..={MAX_LINES} lines, got {}",
                placed.lines.len()
            ),
        ));
    }
    let currency = placed.currency.as_bytes();
    if currency.len() != 3 || !currency.iter().all(u8::is_ascii_uppercase) {
        return Err(ValidationError::new(
            "currency",
            format!(
                "must be 3 uppercase ASCII letters, got {:?}",
                placed.currency
            ),
        ));
    }
    // The total must be representable, or every later amount check is meaningless.
    let mut total: i64 = 0;
    for (index, line) in placed.lines.iter().enumerate() {
        check_id("lines.sku", &line.sku)
            .map_err(|e| ValidationError::new(e.field, format!("line {index}: {}", e.message)))?;
        if line.quantity <= 0 || line.quantity > MAX_LINE_QUANTITY {
            return Err(ValidationError::new(
                "lines.quantity",
                format!(
                    "line {index}: must be in 1..={MAX_LINE_QUANTITY}, got {}",
                    line.quantity
                ),
            ));
        }
        if line.unit_price_cents < 0 {
            return Err(ValidationError::new(
                "lines.unit_price_cents",
                format!("line {index}: must be >= 0, got {}", line.unit_price_cents),
            ));
        }
        // Merging repeated SKUs keeps one price; two different prices for one
        // SKU would make that choice silently change what the customer pays.
        if let Some(first) = placed.lines[..index].iter().find(|l| l.sku == line.sku) {
            if first.unit_price_cents != line.unit_price_cents {
                return Err(ValidationError::new(
                    "lines.unit_price_cents",
                    format!(
                        "line {index}: SKU {:?} repeated with price {} after price {}",
                        line.sku, line.unit_price_cents, first.unit_price_cents
                    ),
                ));
            }
        }
        total = i64::from(line.quantity)
            .checked_mul(line.unit_price_cents)
            .and_then(|amount| total.checked_add(amount))
            .ok_or_else(|| {
                ValidationError::new("lines.unit_price_cents", "order total overflows i64 cents")
            })?;
    }
    Ok(())
}

// --- simulated customer journey ------------------------------------------------
//
// The stream generator (`shop::generator`) walks orders through the moves
// below. They live where order events are declared, so that a new event and
// the moves that produce it are written together; the generator's tests
// check every move against the handler's rules.

/// An order as the stream generator simulates it. This is the customer's side
/// of the story, not the handler's [`Order`](crate::domain::order::Order): the simulation never sees stock
/// answers, so it never sees `confirmed` or a shortage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JourneyOrder {
    pub order_id: String,
    pub total_cents: i64,
    /// What the customer has paid so far: what a refund would give back.
    pub paid_cents: i64,
    pub status: OrderStatus,
    /// Set by a move that ends the journey: the customer does nothing more.
    pub over: bool,
}

impl JourneyOrder {
    /// The journey of an order that was just placed.
    pub fn placed(placed: &OrderPlaced) -> Self {
        // Saturating like the handler's total, so both agree on what is owed.
        let total_cents = placed.lines.iter().fold(0i64, |sum, line| {
            sum.saturating_add(i64::from(line.quantity).saturating_mul(line.unit_price_cents))
        });
        Self {
            order_id: placed.order_id.clone(),
            total_cents,
            paid_cents: 0,
            status: OrderStatus::Placed,
            over: false,
        }
    }

    /// Moves the simulated order past `event`, which `step` built.
    pub fn advance(&mut self, step: &JourneyMove, event: &OrderEvent) {
        if let OrderEvent::PaymentCaptured(captured) = event {
            self.paid_cents = captured.amount_cents;
        }
        self.status = step.then;
        self.over = step.ends_journey;
    }

    /// Whether the customer has nothing left to do with this order.
    pub fn is_over(&self) -> bool {
        self.over || journey_moves(self.status).next().is_none()
    }
}

/// The varied content the generator drew for one move. Moves stay pure: the
/// generator owns the randomness and hands its draws in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JourneyDraw {
    pub event_time_ms: EpochMillis,
    /// Any number; a move picks its carrier, reason and so on with it.
    pub choice: u32,
}

/// Builds the event of one move for one order.
pub type BuildMove = fn(&JourneyOrder, JourneyDraw) -> OrderEvent;

/// A step a customer (or the shop's back office) takes with an order.
#[derive(Debug, Clone, Copy)]
pub struct JourneyMove {
    /// The simulated statuses the move can be taken from.
    pub from: &'static [OrderStatus],
    /// Relative to the other moves from the same status.
    pub weight: u32,
    pub build: BuildMove,
    /// The order's status once the handler applied the move (stock reserved).
    pub then: OrderStatus,
    /// Whether the customer does nothing more with the order afterwards, even
    /// if moves leave its new status (those are for orders that got there
    /// another way).
    pub ends_journey: bool,
}

/// An event sent at the wrong moment on purpose, which [`apply`](crate::domain::order::apply) must refuse.
#[derive(Debug, Clone, Copy)]
pub struct RefusedMove {
    pub from: &'static [OrderStatus],
    /// Relative to the other refused moves from the same status.
    pub weight: u32,
    pub build: BuildMove,
    /// Why the handler refuses it.
    pub reason: &'static str,
}

/// The simulated customer journey: every move an order can make, from which
/// simulated status, how often, and where it leads. A journey is over after a
/// move that ends it, or in a status no move leaves.
///
/// Adding an order event to generated streams means adding its move here
/// (and, if sending it at the wrong moment is worth testing, an entry in
/// [`REFUSED_MOVES`]); the generator picks moves from these tables and needs
/// no change. A move that only some orders in a status should make gets its
/// own path: for a refund of paid orders that are cancelled, a cancellation
/// from `Paid` that does not end the journey and a refund from `Cancelled`
/// that does (cancellations of unpaid orders end theirs, so they never reach
/// it); for a few delivered orders coming back, a rarer delivery that does
/// not end the journey, followed by the refund.
pub static JOURNEY: &[JourneyMove] = &[
    JourneyMove {
        from: &[OrderStatus::Placed, OrderStatus::PaymentFailed],
        weight: 8,
        build: cancel_by_customer,
        then: OrderStatus::Cancelled,
        ends_journey: true,
    },
    // After a failed payment the customer retries with another card or gives up.
    JourneyMove {
        from: &[OrderStatus::Placed],
        weight: 6,
        build: decline_payment,
        then: OrderStatus::PaymentFailed,
        ends_journey: false,
    },
    JourneyMove {
        from: &[OrderStatus::Placed, OrderStatus::PaymentFailed],
        weight: 86,
        build: capture_full_payment,
        then: OrderStatus::Paid,
        ends_journey: false,
    },
    JourneyMove {
        from: &[OrderStatus::Paid],
        weight: 97,
        build: ship_with_carrier,
        then: OrderStatus::Shipped,
        ends_journey: false,
    },
    // A paid order the customer cancels is refunded next.
    JourneyMove {
        from: &[OrderStatus::Paid],
        weight: 3,
        build: cancel_by_customer,
        then: OrderStatus::Cancelled,
        ends_journey: false,
    },
    JourneyMove {
        from: &[OrderStatus::Cancelled],
        weight: 1,
        build: refund_payment,
        then: OrderStatus::Refunded,
        ends_journey: true,
    },
    JourneyMove {
        from: &[OrderStatus::Shipped],
        weight: 19,
        build: deliver,
        then: OrderStatus::Delivered,
        ends_journey: true,
    },
    // One delivery in twenty comes back and is refunded.
    JourneyMove {
        from: &[OrderStatus::Shipped],
        weight: 1,
        build: deliver,
        then: OrderStatus::Delivered,
        ends_journey: false,
    },
    JourneyMove {
        from: &[OrderStatus::Delivered],
        weight: 1,
        build: refund_payment,
        then: OrderStatus::Refunded,
        ends_journey: true,
    },
];

/// The invalid transitions generated streams carry on purpose.
pub static REFUSED_MOVES: &[RefusedMove] = &[
    RefusedMove {
        from: &[
            OrderStatus::Placed,
            OrderStatus::PaymentFailed,
            OrderStatus::Paid,
        ],
        weight: 1,
        build: deliver,
        reason: "invalid_transition",
    },
    RefusedMove {
        from: &[OrderStatus::Shipped],
        weight: 1,
        build: capture_full_payment,
        reason: "already_paid",
    },
    RefusedMove {
        from: &[OrderStatus::Placed, OrderStatus::PaymentFailed],
        weight: 1,
        build: refund_before_payment,
        reason: "not_paid",
    },
];

/// The reason [`apply`](crate::domain::order::apply) gives for [`unplaced_order_event`].
pub const UNPLACED_ORDER_REASON: &str = "unknown_order";

/// The moves an order in simulated `status` can make.
pub fn journey_moves(status: OrderStatus) -> impl Iterator<Item = &'static JourneyMove> {
    JOURNEY.iter().filter(move |m| m.from.contains(&status))
}

/// The refused moves that can be sent for an order in simulated `status`.
pub fn refused_moves(status: OrderStatus) -> impl Iterator<Item = &'static RefusedMove> {
    REFUSED_MOVES
        .iter()
        .filter(move |m| m.from.contains(&status))
}

/// An event for an order nobody placed.
pub fn unplaced_order_event(order_id: String, draw: JourneyDraw) -> OrderEvent {
    OrderEvent::Delivered(OrderDelivered {
        order_id,
        event_time_ms: draw.event_time_ms,
    })
}

const CANCEL_REASONS: [&str; 3] = ["customer_request", "changed_mind", "found_cheaper"];
const DECLINE_REASONS: [&str; 3] = ["card_declined", "insufficient_funds", "card_expired"];
const CARRIERS: [&str; 3] = ["parcelco", "dhl", "ups"];
const REFUND_REASONS: [&str; 2] = ["cancelled_after_payment", "returned"];

fn pick(choices: &[&'static str], draw: JourneyDraw) -> String {
    let index = usize::try_from(draw.choice).unwrap_or(0) % choices.len().max(1);
    choices.get(index).copied().unwrap_or_default().to_owned()
}

fn cancel_by_customer(order: &JourneyOrder, draw: JourneyDraw) -> OrderEvent {
    OrderEvent::Cancelled(OrderCancelled {
        order_id: order.order_id.clone(),
        reason: pick(&CANCEL_REASONS, draw),
        event_time_ms: draw.event_time_ms,
    })
}

fn decline_payment(order: &JourneyOrder, draw: JourneyDraw) -> OrderEvent {
    OrderEvent::PaymentFailed(PaymentFailed {
        order_id: order.order_id.clone(),
        reason: pick(&DECLINE_REASONS, draw),
        event_time_ms: draw.event_time_ms,
    })
}

fn capture_full_payment(order: &JourneyOrder, draw: JourneyDraw) -> OrderEvent {
    OrderEvent::PaymentCaptured(PaymentCaptured {
        order_id: order.order_id.clone(),
        amount_cents: order.total_cents,
        event_time_ms: draw.event_time_ms,
    })
}

fn ship_with_carrier(order: &JourneyOrder, draw: JourneyDraw) -> OrderEvent {
    OrderEvent::Shipped(OrderShipped {
        order_id: order.order_id.clone(),
        carrier: pick(&CARRIERS, draw),
        event_time_ms: draw.event_time_ms,
    })
}

fn deliver(order: &JourneyOrder, draw: JourneyDraw) -> OrderEvent {
    OrderEvent::Delivered(OrderDelivered {
        order_id: order.order_id.clone(),
        event_time_ms: draw.event_time_ms,
    })
}

fn refund_payment(order: &JourneyOrder, draw: JourneyDraw) -> OrderEvent {
    refund(order, order.paid_cents, draw)
}

/// A refund of what the order costs, sent before anything was paid.
fn refund_before_payment(order: &JourneyOrder, draw: JourneyDraw) -> OrderEvent {
    refund(order, order.total_cents.max(1), draw)
}

fn refund(order: &JourneyOrder, amount_cents: i64, draw: JourneyDraw) -> OrderEvent {
    OrderEvent::Refunded(PaymentRefunded {
        order_id: order.order_id.clone(),
        amount_cents,
        reason: pick(&REFUND_REASONS, draw),
        event_time_ms: draw.event_time_ms,
    })
}
