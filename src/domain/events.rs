//! The shop's events as typed values: what arrives on the input topics and
//! what galley publishes. Field names match the Avro schemas in `schemas/`.
//!
//! Every event carries its own event time (`event_time_ms`, milliseconds since
//! the Unix epoch). Handlers read time only from events, never from a clock,
//! so that replaying the same input computes the same output.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, as carried by Avro `timestamp-millis`.
pub type EpochMillis = i64;

/// One line of an order: a SKU, how many units, and the price of one unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: String,
    pub quantity: i32,
    pub unit_price_cents: i64,
}

/// Events on the orders topic, keyed by order id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderEvent {
    Placed(OrderPlaced),
    PaymentCaptured(PaymentCaptured),
    PaymentFailed(PaymentFailed),
    Shipped(OrderShipped),
    Delivered(OrderDelivered),
    Cancelled(OrderCancelled),
    /// Published by galley's inventory handler, re-keyed by order id.
    StockOutcome(StockReservationOutcome),
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

/// Events on the inventory topic, keyed by SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InventoryEvent {
    Received(StockReceived),
    Adjusted(StockAdjusted),
    /// Published by galley's order handler when an order is placed.
    ReservationRequested(StockReservationRequested),
    /// Published by galley's order handler when a reserved order is cancelled.
    ReleaseRequested(StockReleaseRequested),
    /// Published by galley's order handler when an order ships: the reserved
    /// units leave the warehouse.
    FulfilmentRequested(StockFulfilmentRequested),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReceived {
    pub sku: String,
    pub quantity: i32,
    pub event_time_ms: EpochMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockAdjusted {
    pub sku: String,
    /// Signed change of units on hand (a count correction, shrinkage, ...).
    pub delta: i32,
    pub reason: String,
    pub event_time_ms: EpochMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReservationRequested {
    pub event_id: String,
    pub sku: String,
    pub order_id: String,
    pub quantity: i32,
    pub event_time_ms: EpochMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReleaseRequested {
    pub event_id: String,
    pub sku: String,
    pub order_id: String,
    pub event_time_ms: EpochMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockFulfilmentRequested {
    pub event_id: String,
    pub sku: String,
    pub order_id: String,
    pub event_time_ms: EpochMillis,
}

/// Result events galley publishes on the results topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResultEvent {
    OrderStatusChanged(OrderStatusChanged),
    OrderRejected(OrderRejected),
    StockReserved(StockReserved),
    StockShort(StockShort),
    LowStockAlert(LowStockAlert),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderStatusChanged {
    pub event_id: String,
    pub order_id: String,
    pub customer_id: String,
    /// Absent when the order was just placed.
    pub from_status: Option<String>,
    pub to_status: String,
    /// Why, when the change was not asked for directly (for example `out_of_stock`).
    pub reason: Option<String>,
    pub event_time_ms: EpochMillis,
}

/// A business rejection: the event was well-formed but not allowed now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRejected {
    pub event_id: String,
    pub order_id: String,
    /// The kind of event that was refused, for example `PaymentCaptured`.
    pub event_type: String,
    /// The order's status when it was refused; absent for an unknown order.
    pub status: Option<String>,
    /// A stable machine-readable reason, for example `invalid_transition`.
    pub reason: String,
    pub event_time_ms: EpochMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReserved {
    pub event_id: String,
    pub sku: String,
    pub order_id: String,
    pub quantity: i32,
    pub available_after: i64,
    pub event_time_ms: EpochMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockShort {
    pub event_id: String,
    pub sku: String,
    pub order_id: String,
    pub requested: i32,
    pub available: i64,
    pub event_time_ms: EpochMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LowStockAlert {
    pub event_id: String,
    pub sku: String,
    pub available: i64,
    pub threshold: i64,
    pub event_time_ms: EpochMillis,
}

impl OrderEvent {
    /// The Kafka key this event travels under.
    pub fn order_id(&self) -> &str {
        match self {
            OrderEvent::Placed(e) => &e.order_id,
            OrderEvent::PaymentCaptured(e) => &e.order_id,
            OrderEvent::PaymentFailed(e) => &e.order_id,
            OrderEvent::Shipped(e) => &e.order_id,
            OrderEvent::Delivered(e) => &e.order_id,
            OrderEvent::Cancelled(e) => &e.order_id,
            OrderEvent::StockOutcome(e) => &e.order_id,
        }
    }

    pub fn event_time_ms(&self) -> EpochMillis {
        match self {
            OrderEvent::Placed(e) => e.event_time_ms,
            OrderEvent::PaymentCaptured(e) => e.event_time_ms,
            OrderEvent::PaymentFailed(e) => e.event_time_ms,
            OrderEvent::Shipped(e) => e.event_time_ms,
            OrderEvent::Delivered(e) => e.event_time_ms,
            OrderEvent::Cancelled(e) => e.event_time_ms,
            OrderEvent::StockOutcome(e) => e.event_time_ms,
        }
    }

    /// The Avro record name, also used as the `event_type` metric label.
    pub fn type_name(&self) -> &'static str {
        match self {
            OrderEvent::Placed(_) => "OrderPlaced",
            OrderEvent::PaymentCaptured(_) => "PaymentCaptured",
            OrderEvent::PaymentFailed(_) => "PaymentFailed",
            OrderEvent::Shipped(_) => "OrderShipped",
            OrderEvent::Delivered(_) => "OrderDelivered",
            OrderEvent::Cancelled(_) => "OrderCancelled",
            OrderEvent::StockOutcome(_) => "StockReservationOutcome",
        }
    }
}

impl InventoryEvent {
    /// The Kafka key this event travels under.
    pub fn sku(&self) -> &str {
        match self {
            InventoryEvent::Received(e) => &e.sku,
            InventoryEvent::Adjusted(e) => &e.sku,
            InventoryEvent::ReservationRequested(e) => &e.sku,
            InventoryEvent::ReleaseRequested(e) => &e.sku,
            InventoryEvent::FulfilmentRequested(e) => &e.sku,
        }
    }

    pub fn event_time_ms(&self) -> EpochMillis {
        match self {
            InventoryEvent::Received(e) => e.event_time_ms,
            InventoryEvent::Adjusted(e) => e.event_time_ms,
            InventoryEvent::ReservationRequested(e) => e.event_time_ms,
            InventoryEvent::ReleaseRequested(e) => e.event_time_ms,
            InventoryEvent::FulfilmentRequested(e) => e.event_time_ms,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            InventoryEvent::Received(_) => "StockReceived",
            InventoryEvent::Adjusted(_) => "StockAdjusted",
            InventoryEvent::ReservationRequested(_) => "StockReservationRequested",
            InventoryEvent::ReleaseRequested(_) => "StockReleaseRequested",
            InventoryEvent::FulfilmentRequested(_) => "StockFulfilmentRequested",
        }
    }
}

impl ResultEvent {
    pub fn event_id(&self) -> &str {
        match self {
            ResultEvent::OrderStatusChanged(e) => &e.event_id,
            ResultEvent::OrderRejected(e) => &e.event_id,
            ResultEvent::StockReserved(e) => &e.event_id,
            ResultEvent::StockShort(e) => &e.event_id,
            ResultEvent::LowStockAlert(e) => &e.event_id,
        }
    }

    /// The Kafka key: the order id for order results, the SKU for stock results.
    pub fn key(&self) -> &str {
        match self {
            ResultEvent::OrderStatusChanged(e) => &e.order_id,
            ResultEvent::OrderRejected(e) => &e.order_id,
            ResultEvent::StockReserved(e) => &e.sku,
            ResultEvent::StockShort(e) => &e.sku,
            ResultEvent::LowStockAlert(e) => &e.sku,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            ResultEvent::OrderStatusChanged(_) => "OrderStatusChanged",
            ResultEvent::OrderRejected(_) => "OrderRejected",
            ResultEvent::StockReserved(_) => "StockReserved",
            ResultEvent::StockShort(_) => "StockShort",
            ResultEvent::LowStockAlert(_) => "LowStockAlert",
        }
    }
}
