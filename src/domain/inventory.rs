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

use super::{
    Emitted, EpochMillis, EventIds, EventSet, InventoryEvent, LowStockAlert, OrderEvent, Outcome,
    ResultEvent, StockReservationOutcome, StockReservationRequested, StockReserved, StockShort,
};

/// Where one order's claim on one SKU stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[derive(Display, EnumString, IntoStaticStr, VariantArray)]
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

/// Folds one event into the SKU's stock and, for events naming an order, the
/// (SKU, order id) reservation. Assumes
/// [`InventoryEvent::validate`] accepted the event.
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

    step.finish(after, event.event_time_ms(), low_stock_threshold, ids)
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
    /// Stamps a changed stock row, raises the low-stock alert when
    /// availability crosses the threshold, and settles the outcome.
    fn finish(
        self,
        mut after: Stock,
        time: EpochMillis,
        low_stock_threshold: i64,
        ids: &mut EventIds,
    ) -> InventoryDecision {
        let mut step = self;
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
#[path = "inventory_tests.rs"]
mod tests;
