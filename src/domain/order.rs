//! The order state machine: validates order events, folds them into an
//! [`Order`], and decides which result events, inventory requests and sales
//! contributions follow from each one.
//!
//! An order is `placed` and asks inventory to reserve each line. Payment and
//! stock move independently, as they do in a real shop where the payment
//! provider does not wait for the warehouse: a placed order becomes
//! `confirmed` once every line is reserved, and `paid` when payment is
//! captured, in either order. Only a paid order whose every line is reserved
//! can ship, and a sale counts when the order ships. The first shortage
//! cancels an order that has not shipped (reason `out_of_stock`; a paid one
//! is then due a refund) and releases what was reserved. Refused transitions
//! are business rejections ([`Outcome::Rejected`] plus an `OrderRejected`
//! result), never poison.

use serde::{Deserialize, Serialize};
use strum::{Display, EnumString, IntoStaticStr, VariantArray};
use utoipa::ToSchema;

use super::{
    minute_of, Emitted, EpochMillis, EventIds, EventSet, InventoryEvent, OrderCancelled,
    OrderEvent, OrderPlaced, OrderRejected, OrderStatusChanged, Outcome, PaymentCaptured,
    PaymentFailed, ResultEvent, StockFulfilmentRequested, StockReleaseRequested,
    StockReservationOutcome, StockReservationRequested, ValidationError,
};

/// Longest order, customer or SKU id accepted, in bytes. Ids become partition
/// keys and clustering columns, so an unbounded one is treated as poison.
/// The inventory handler applies the same rule to the same ids.
pub const MAX_ID_BYTES: usize = 128;
/// Most lines one order may carry; each line costs one reservation round trip.
pub const MAX_LINES: usize = 100;
/// Most units of one SKU on one line.
pub const MAX_LINE_QUANTITY: i32 = 1_000_000;

/// Where an order is in its life.
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
pub enum OrderStatus {
    Placed,
    Confirmed,
    PaymentFailed,
    Paid,
    Shipped,
    Delivered,
    Cancelled,
}

/// Where one line's stock stands, as far as the order knows.
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

/// A contribution to the sales projections (per SKU per minute, and overall).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleLine {
    pub sku: String,
    pub minute_ms: EpochMillis,
    pub units: i64,
    pub revenue_cents: i64,
}

/// Everything one order event leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderDecision {
    /// The order after the event; `None` only when there is still no order.
    pub state: Option<Order>,
    /// Whether `state` differs from the input and must be written.
    pub state_changed: bool,
    /// In publication order; ids were drawn in this order.
    pub emitted: Vec<Emitted>,
    pub sales: Vec<SaleLine>,
    pub outcome: Outcome,
}

/// Poison checks: an event that fails them is malformed, not merely refused.
/// Business rules (is this transition allowed now?) live in [`apply`].
pub fn validate(event: &OrderEvent) -> Result<(), ValidationError> {
    check_id("order_id", event.key())?;
    if event.event_time_ms() <= 0 {
        return Err(ValidationError::new(
            "event_time_ms",
            format!("must be > 0, got {}", event.event_time_ms()),
        ));
    }
    match event {
        OrderEvent::Placed(placed) => validate_placed(placed),
        OrderEvent::PaymentCaptured(captured) => {
            if captured.amount_cents <= 0 {
                return Err(ValidationError::new(
                    "amount_cents",
                    format!("must be > 0, got {}", captured.amount_cents),
                ));
            }
            Ok(())
        }
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

/// A usable id: not blank, and short enough to be a key.
pub(super) fn check_id(field: &'static str, value: &str) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if value.len() > MAX_ID_BYTES {
        return Err(ValidationError::new(
            field,
            format!("must be at most {MAX_ID_BYTES} bytes, got {}", value.len()),
        ));
    }
    Ok(())
}

/// Folds one event into the order. Assumes [`validate`] accepted the event.
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
    }
}

/// The reason for refusing a lifecycle step the current status does not allow.
fn refusal(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::Cancelled => "order_cancelled",
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
        (OrderStatus::Cancelled, LineStock::Reserved) => {
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
        OrderStatus::Paid | OrderStatus::Shipped | OrderStatus::Delivered => {
            return reject(order, event, "already_paid", ids)
        }
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
        OrderStatus::Cancelled => reject(order, event, "order_cancelled", ids),
    }
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

/// Moves the order to `to`, records it, and returns the status-change result.
fn transition(
    order: &mut Order,
    to: OrderStatus,
    reason: Option<String>,
    time: EpochMillis,
    ids: &mut EventIds,
) -> Emitted {
    let from = order.status;
    order.status = to;
    let changed = status_changed(order, Some(from), reason.as_deref(), time, ids);
    record(order, time, reason);
    changed
}

fn status_changed(
    order: &Order,
    from: Option<OrderStatus>,
    reason: Option<&str>,
    time: EpochMillis,
    ids: &mut EventIds,
) -> Emitted {
    Emitted::Result(ResultEvent::OrderStatusChanged(OrderStatusChanged {
        event_id: ids.next_id(),
        order_id: order.order_id.clone(),
        customer_id: order.customer_id.clone(),
        from_status: from.map(|s| s.into_str().to_owned()),
        to_status: order.status.into_str().to_owned(),
        reason: reason.map(str::to_owned),
        event_time_ms: time,
    }))
}

/// Stamps an applied change: every one advances `updated_at_ms` and leaves a
/// timeline entry, so the timeline is the order's full audit trail.
fn record(order: &mut Order, time: EpochMillis, note: Option<String>) {
    order.updated_at_ms = time;
    order.timeline.push(TimelineEntry {
        event_time_ms: time,
        status: order.status.into_str().to_owned(),
        note,
    });
}

fn all_reserved(order: &Order) -> bool {
    order.lines.iter().all(|l| l.stock == LineStock::Reserved)
}

fn line_amount(line: &OrderLineState) -> i64 {
    i64::from(line.quantity).saturating_mul(line.unit_price_cents)
}

/// A blank free-text reason says nothing, so it is carried as absent.
fn reason_text(text: &str) -> Option<String> {
    let trimmed = text.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

fn applied(order: Order, emitted: Vec<Emitted>, sales: Vec<SaleLine>) -> OrderDecision {
    OrderDecision {
        state: Some(order),
        state_changed: true,
        emitted,
        sales,
        outcome: Outcome::Applied,
    }
}

fn duplicate(order: &Order) -> OrderDecision {
    OrderDecision {
        state: Some(order.clone()),
        state_changed: false,
        emitted: Vec::new(),
        sales: Vec::new(),
        outcome: Outcome::Duplicate,
    }
}

/// A refused event leaves the order exactly as it was; only the result says why.
fn reject(
    order: &Order,
    event: &OrderEvent,
    reason: &'static str,
    ids: &mut EventIds,
) -> OrderDecision {
    OrderDecision {
        state: Some(order.clone()),
        state_changed: false,
        emitted: vec![rejected(event, Some(order.status), reason, ids)],
        sales: Vec::new(),
        outcome: Outcome::Rejected { reason },
    }
}

fn unknown_order(event: &OrderEvent, ids: &mut EventIds) -> OrderDecision {
    let reason = "unknown_order";
    OrderDecision {
        state: None,
        state_changed: false,
        emitted: vec![rejected(event, None, reason, ids)],
        sales: Vec::new(),
        outcome: Outcome::Rejected { reason },
    }
}

fn rejected(
    event: &OrderEvent,
    status: Option<OrderStatus>,
    reason: &'static str,
    ids: &mut EventIds,
) -> Emitted {
    Emitted::Result(ResultEvent::OrderRejected(OrderRejected {
        event_id: ids.next_id(),
        order_id: event.key().to_owned(),
        event_type: event.type_name().to_owned(),
        status: status.map(|s| s.into_str().to_owned()),
        reason: reason.to_owned(),
        event_time_ms: event.event_time_ms(),
    }))
}

// --- simulated customer journey ------------------------------------------------
//
// The stream generator (`shop::generator`) walks orders through the moves
// below. They live next to the handler so that the moves a customer makes and
// the rules that accept or refuse them change together.

use super::{OrderDelivered, OrderShipped};

/// An order as the stream generator simulates it. This is the customer's side
/// of the story, not the handler's [`Order`]: the simulation never sees stock
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

/// An event sent at the wrong moment on purpose, which [`apply`] must refuse.
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
        weight: 1,
        build: ship_with_carrier,
        then: OrderStatus::Shipped,
        ends_journey: false,
    },
    JourneyMove {
        from: &[OrderStatus::Shipped],
        weight: 1,
        build: deliver,
        then: OrderStatus::Delivered,
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
];

/// The reason [`apply`] gives for [`unplaced_order_event`].
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

#[cfg(test)]
mod tests {
    use super::*;
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
        assert_eq!(validate(&event), Ok(()));
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
        match validate(event) {
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
            assert_eq!(validate(&event), Ok(()), "{event:?}");
        }
        let limits = vec![line(&"s".repeat(MAX_ID_BYTES), MAX_LINE_QUANTITY, 0); MAX_LINES];
        assert_eq!(validate(&placed_with(limits, 1)), Ok(()));
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
}
