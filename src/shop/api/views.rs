//! The JSON shapes of the query API's answers, and how projection rows
//! become them. These types are the API contract: their schemas in
//! /openapi.json are generated from them. Times are RFC 3339 strings in UTC
//! with milliseconds; money is integer cents of the order's currency.

use serde::Serialize;
use utoipa::openapi::schema::{AdditionalProperties, AllOfBuilder, ObjectBuilder, Schema};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::api::freshness::Freshness;
use crate::api::time::rfc3339;
use crate::domain::inventory::ReservationStatus;
use crate::domain::order::{Order, OrderStatus};
use crate::shop::queries::{CustomerOrderRow, MinuteSales, ReservationRow, StockRow};

/// An order as dashboards see it: the order's own JSON (its stored
/// document, see [`crate::shop::rows::order`]) and how fresh it is.
#[derive(Debug, Serialize)]
pub struct OrderView {
    #[serde(flatten)]
    pub order: Order,
    pub freshness: Freshness,
}

/// The schema of [`OrderView`]: the order's object with `freshness` added,
/// as one closed object. (utoipa renders a flattened field as an `allOf` of
/// two objects, which no body can match once each is closed against
/// properties it does not list.) Built from the order's own schema, so that
/// a field added to the order shows here without an edit.
impl PartialSchema for OrderView {
    fn schema() -> RefOr<Schema> {
        let freshness = Ref::from_schema_name(Freshness::name());
        match Order::schema() {
            RefOr::T(Schema::Object(mut object)) => {
                object
                    .properties
                    .insert("freshness".into(), freshness.into());
                object.required.push("freshness".into());
                object.additional_properties =
                    Some(Box::new(AdditionalProperties::FreeForm(false)));
                object.description = Some("An order as dashboards see it.".into());
                RefOr::T(Schema::Object(object))
            }
            // Not an object: compose it rather than lose either part.
            order => AllOfBuilder::new()
                .item(order)
                .item(
                    ObjectBuilder::new()
                        .property("freshness", freshness)
                        .required("freshness"),
                )
                .into(),
        }
    }
}

impl ToSchema for OrderView {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        <Order as ToSchema>::schemas(schemas);
        schemas.push((Freshness::name().into(), Freshness::schema()));
        <Freshness as ToSchema>::schemas(schemas);
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
    pub status: OrderStatus,
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
    pub status: ReservationStatus,
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
