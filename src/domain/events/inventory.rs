//! The inventory topic, keyed by SKU: stock movements from upstream and the
//! order handler's requests, and the contract checks that make one of them
//! poison.

use serde::{Deserialize, Serialize};

use super::{check_event_time, check_id, check_positive, EpochMillis};
use crate::codec::EventSet;
use crate::domain::ValidationError;

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

impl InventoryEvent {
    /// Poison checks: an event that fails them is malformed, not merely refused.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let event = self;
        check_id("sku", event.key())?;
        check_event_time(event.event_time_ms())?;
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
}
