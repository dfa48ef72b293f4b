//! The JSON shapes of the query API's answers, and how projection rows
//! become them. These types are the API contract: their schemas in
//! /openapi.json are generated from them. Times are RFC 3339 strings in UTC
//! with milliseconds; money is integer cents of the order's currency.

use serde::Serialize;
use utoipa::ToSchema;

use crate::api::freshness::Freshness;
use crate::api::time::rfc3339;
use crate::domain::order::{Order, OrderLineState, TimelineEntry};
use crate::shop::queries::{CustomerOrderRow, MinuteSales, ReservationRow, StockRow};

/// An order as dashboards see it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderView {
    #[schema(example = "O-65a1b2c3-0000000")]
    pub order_id: String,
    #[schema(example = "C-000001")]
    pub customer_id: String,
    /// One of placed, confirmed, payment_failed, paid, shipped, delivered, cancelled.
    #[schema(example = "paid")]
    pub status: String,
    /// ISO 4217 code.
    #[schema(example = "EUR")]
    pub currency: String,
    pub total_cents: i64,
    pub paid_cents: i64,
    pub lines: Vec<OrderLineView>,
    /// Every applied change, oldest first.
    pub timeline: Vec<TimelineEntryView>,
    #[schema(format = DateTime)]
    pub placed_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    pub freshness: Freshness,
}

/// One line of an order.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLineView {
    pub sku: String,
    pub quantity: i32,
    pub unit_price_cents: i64,
    /// Stock state of the line: pending, reserved, short, released or fulfilled.
    pub stock: String,
}

/// One applied change of an order.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimelineEntryView {
    /// Event time of the change.
    #[schema(format = DateTime)]
    pub at: String,
    /// The order's status after the change.
    pub status: String,
    #[schema(required = true)]
    pub note: Option<String>,
}

impl OrderView {
    pub fn new(o: Order, freshness: Freshness) -> Self {
        Self {
            status: o.status.as_str().to_string(),
            order_id: o.order_id,
            customer_id: o.customer_id,
            currency: o.currency,
            total_cents: o.total_cents,
            paid_cents: o.paid_cents,
            lines: o.lines.into_iter().map(OrderLineView::from).collect(),
            timeline: o
                .timeline
                .into_iter()
                .map(TimelineEntryView::from)
                .collect(),
            placed_at: rfc3339(o.placed_at_ms),
            updated_at: rfc3339(o.updated_at_ms),
            freshness,
        }
    }
}

impl From<OrderLineState> for OrderLineView {
    fn from(l: OrderLineState) -> Self {
        Self {
            sku: l.sku,
            quantity: l.quantity,
            unit_price_cents: l.unit_price_cents,
            stock: l.stock.as_str().to_string(),
        }
    }
}

impl From<TimelineEntry> for TimelineEntryView {
    fn from(e: TimelineEntry) -> Self {
        Self {
            at: rfc3339(e.event_time_ms),
            status: e.status,
            note: e.note,
        }
    }
}

/// One page of a customer's orders, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerOrdersPage {
    pub customer_id: String,
    pub orders: Vec<CustomerOrderView>,
    /// Pass as `cursor` for the next page; null on the last page. A page
    /// may be shorter than `limit`, even empty, and still not be the last:
    /// follow the cursor until it is null.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
    pub freshness: Freshness,
}

/// An order in a customer's list (see /v1/orders/{order_id} for the whole order).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerOrderView {
    pub order_id: String,
    #[schema(format = DateTime)]
    pub placed_at: String,
    pub status: String,
    pub currency: String,
    pub total_cents: i64,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<CustomerOrderRow> for CustomerOrderView {
    fn from(r: CustomerOrderRow) -> Self {
        Self {
            order_id: r.order_id,
            placed_at: rfc3339(r.placed_at_ms),
            status: r.status,
            currency: r.currency,
            total_cents: r.total_cents,
            updated_at: rfc3339(r.updated_at_ms),
        }
    }
}

/// A SKU's stock and one page of its reservations.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InventoryView {
    pub sku: String,
    /// Units on the shelf.
    pub on_hand: i64,
    /// Units promised to orders and not yet shipped or released.
    pub reserved: i64,
    /// on_hand - reserved.
    pub available: i64,
    /// Event time of the last stock change; null if none was applied.
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub updated_at: Option<String>,
    /// Reservations by order id, one page of `limit`.
    pub reservations: Vec<ReservationView>,
    /// Pass as `cursor` for the next page of reservations; null on the last.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
    pub freshness: Freshness,
}

/// One order's claim on a SKU.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReservationView {
    pub order_id: String,
    pub quantity: i32,
    /// reserved, short, released or fulfilled.
    pub status: String,
}

impl From<ReservationRow> for ReservationView {
    fn from(r: ReservationRow) -> Self {
        Self {
            order_id: r.order_id,
            quantity: r.quantity,
            status: r.status,
        }
    }
}

impl InventoryView {
    pub fn new(
        sku: String,
        stock: Option<StockRow>,
        reservations: Vec<ReservationRow>,
        next_cursor: Option<String>,
        freshness: Freshness,
    ) -> Self {
        let (on_hand, reserved, updated_at) = match stock {
            Some(s) => (s.on_hand, s.reserved, s.updated_at_ms),
            None => (0, 0, None),
        };
        Self {
            sku,
            on_hand,
            reserved,
            available: on_hand - reserved,
            updated_at: updated_at.map(rfc3339),
            reservations: reservations
                .into_iter()
                .map(ReservationView::from)
                .collect(),
            next_cursor,
            freshness,
        }
    }
}

/// Sales of one SKU in one minute.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SkuMinuteSales {
    /// Start of the minute.
    #[schema(format = DateTime)]
    pub minute: String,
    pub units: i64,
    pub revenue_cents: i64,
}

/// A SKU's sales per minute in `[from, to)`. Minutes without sales are left out.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SkuSalesView {
    pub sku: String,
    #[schema(format = DateTime)]
    pub from: String,
    #[schema(format = DateTime)]
    pub to: String,
    pub minutes: Vec<SkuMinuteSales>,
    pub total_units: i64,
    pub total_revenue_cents: i64,
    pub freshness: Freshness,
}

impl SkuSalesView {
    pub fn new(
        sku: String,
        from_ms: i64,
        to_ms: i64,
        minutes: impl IntoIterator<Item = (i64, MinuteSales)>,
        freshness: Freshness,
    ) -> Self {
        let minutes: Vec<SkuMinuteSales> = minutes
            .into_iter()
            .map(|(minute, s)| SkuMinuteSales {
                minute: rfc3339(minute),
                units: s.units,
                revenue_cents: s.revenue_cents,
            })
            .collect();
        Self {
            sku,
            from: rfc3339(from_ms),
            to: rfc3339(to_ms),
            total_units: minutes.iter().map(|m| m.units).sum(),
            total_revenue_cents: minutes.iter().map(|m| m.revenue_cents).sum(),
            minutes,
            freshness,
        }
    }
}

/// Sales of every SKU in one minute.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MinuteSalesView {
    /// Start of the minute.
    #[schema(format = DateTime)]
    pub minute: String,
    pub units: i64,
    pub revenue_cents: i64,
    /// Orders that shipped in the minute.
    pub orders: i64,
}

/// Overall sales per minute in `[from, to)`. Minutes without sales are left out.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SalesView {
    #[schema(format = DateTime)]
    pub from: String,
    #[schema(format = DateTime)]
    pub to: String,
    pub minutes: Vec<MinuteSalesView>,
    pub total_units: i64,
    pub total_revenue_cents: i64,
    pub total_orders: i64,
    pub freshness: Freshness,
}

impl SalesView {
    pub fn new(
        from_ms: i64,
        to_ms: i64,
        minutes: impl IntoIterator<Item = (i64, MinuteSales)>,
        freshness: Freshness,
    ) -> Self {
        let minutes: Vec<MinuteSalesView> = minutes
            .into_iter()
            .map(|(minute, s)| MinuteSalesView {
                minute: rfc3339(minute),
                units: s.units,
                revenue_cents: s.revenue_cents,
                orders: s.orders,
            })
            .collect();
        Self {
            from: rfc3339(from_ms),
            to: rfc3339(to_ms),
            total_units: minutes.iter().map(|m| m.units).sum(),
            total_revenue_cents: minutes.iter().map(|m| m.revenue_cents).sum(),
            total_orders: minutes.iter().map(|m| m.orders).sum(),
            minutes,
            freshness,
        }
    }
}
