//! The results topic: what galley publishes, keyed by order id or SKU.

use serde::{Deserialize, Serialize};

use super::EpochMillis;

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
