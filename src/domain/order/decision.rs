//! What one order event leads to ([`OrderDecision`]), and the ways the rules
//! build one: a status change with its timeline entry, an applied change, a
//! duplicate, a rejection with its `OrderRejected` result.

use super::{Order, OrderStatus, TimelineEntry};
use crate::domain::{
    Emitted, EpochMillis, EventIds, EventSet, OrderEvent, OrderRejected, OrderStatusChanged,
    Outcome, ResultEvent,
};

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

/// Moves the order to `to`, records it, and returns the status-change result.
pub(super) fn transition(
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

pub(super) fn status_changed(
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
pub(super) fn record(order: &mut Order, time: EpochMillis, note: Option<String>) {
    order.updated_at_ms = time;
    order.timeline.push(TimelineEntry {
        event_time_ms: time,
        status: order.status.into_str().to_owned(),
        note,
    });
}

/// A blank free-text reason says nothing, so it is carried as absent.
pub(super) fn reason_text(text: &str) -> Option<String> {
    let trimmed = text.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

pub(super) fn applied(order: Order, emitted: Vec<Emitted>, sales: Vec<SaleLine>) -> OrderDecision {
    OrderDecision {
        state: Some(order),
        state_changed: true,
        emitted,
        sales,
        outcome: Outcome::Applied,
    }
}

pub(super) fn duplicate(order: &Order) -> OrderDecision {
    OrderDecision {
        state: Some(order.clone()),
        state_changed: false,
        emitted: Vec::new(),
        sales: Vec::new(),
        outcome: Outcome::Duplicate,
    }
}

/// A refused event leaves the order exactly as it was; only the result says why.
pub(super) fn reject(
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

pub(super) fn unknown_order(event: &OrderEvent, ids: &mut EventIds) -> OrderDecision {
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
