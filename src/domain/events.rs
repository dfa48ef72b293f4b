//! The shop's events as typed values: what arrives on the input topics and
//! what galley publishes. Field names match the Avro schemas in `schemas/`.
//!
//! Every event carries its own event time (`event_time_ms`, milliseconds since
//! the Unix epoch). Handlers read time only from events, never from a clock,
//! so that replaying the same input computes the same output.
//!
//! Each event type is declared once, here: its payload struct, and one line
//! in its topic's [`event_set!`](crate::event_set) naming the struct and its
//! key field. That line gives the codec its decode and encode dispatch, the
//! record name (the struct's name, which the manifest must list on the same
//! topic) and the event's key and event time; nothing else lists event types.

use serde::{Deserialize, Serialize};

pub use crate::codec::EventSet;
use crate::codec::{Codec, CodecError, EncodeError};

/// Milliseconds since the Unix epoch, as carried by Avro `timestamp-millis`.
pub type EpochMillis = i64;

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

crate::event_set! {
    /// Events on the inventory topic, keyed by SKU.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub enum InventoryEvent: "inventory" {
        Received(StockReceived) keyed by sku,
        Adjusted(StockAdjusted) keyed by sku,
        /// Published by galley's order handler when an order is placed.
        ReservationRequested(StockReservationRequested) keyed by sku,
        /// Published by galley's order handler when a reserved order is cancelled.
        ReleaseRequested(StockReleaseRequested) keyed by sku,
        /// Published by galley's order handler when an order ships: the reserved
        /// units leave the warehouse.
        FulfilmentRequested(StockFulfilmentRequested) keyed by sku,
    }
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

crate::event_set! {
    /// Result events galley publishes on the results topic.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub enum ResultEvent: "results" {
        OrderStatusChanged(OrderStatusChanged) keyed by order_id,
        OrderRejected(OrderRejected) keyed by order_id,
        StockReserved(StockReserved) keyed by sku,
        StockShort(StockShort) keyed by sku,
        LowStockAlert(LowStockAlert) keyed by sku,
    }
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
}

/// A codec for the shop's three event sets, checked against the manifest.
pub fn codec() -> Result<Codec, CodecError> {
    Codec::builder()
        .register::<OrderEvent>()
        .register::<InventoryEvent>()
        .register::<ResultEvent>()
        .build()
}
