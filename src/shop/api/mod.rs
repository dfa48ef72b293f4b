//! The shop's query API: its /v1 routes ([`mod@routes`]), the JSON views they
//! answer with ([`views`]), and the state they read. The engine's
//! [`crate::api::query`] serves them behind its token check, limits and
//! OpenAPI document.

pub mod routes;
pub mod views;

use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use self::routes::QueryState;
use crate::api::query;
use crate::config::ApiConfig;

/// The shop's tags in the OpenAPI document.
#[derive(OpenApi)]
#[openapi(tags(
    (name = "orders", description = "Orders by id and by customer"),
    (name = "inventory", description = "Stock and reservations per SKU"),
    (name = "sales", description = "Sales per minute")
))]
struct ShopDoc;

/// Every /v1 route of the shop, each registered together with its OpenAPI
/// operation, so that the document cannot drift from what is served.
fn v1_routes() -> OpenApiRouter<QueryState> {
    OpenApiRouter::with_openapi(ShopDoc::openapi())
        .routes(routes!(routes::get_order))
        .routes(routes!(routes::customer_orders))
        .routes(routes!(routes::inventory))
        .routes(routes!(routes::sku_sales))
        .routes(routes!(routes::sales))
}

/// The query listener's app: the shop's routes in the engine's router.
pub fn router(state: QueryState, cfg: &ApiConfig) -> anyhow::Result<Router> {
    query::router(v1_routes(), state, cfg)
}

/// The OpenAPI document the query listener serves at /openapi.json.
pub fn openapi() -> utoipa::openapi::OpenApi {
    query::openapi(v1_routes())
}

#[cfg(test)]
mod tests {
    use strum::VariantArray;

    use super::*;
    use crate::domain::inventory::ReservationStatus;
    use crate::domain::order::{LineStock, OrderStatus};

    #[test]
    fn the_document_lists_every_route_with_its_security_and_errors() {
        let doc = serde_json::to_value(openapi()).expect("serializable");
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["title"], "galley query API");
        let paths = doc["paths"].as_object().expect("paths");
        let mut names: Vec<&str> = paths.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "/openapi.json",
                "/v1/customers/{customer_id}/orders",
                "/v1/inventory/{sku}",
                "/v1/orders/{order_id}",
                "/v1/sales",
                "/v1/sales/skus/{sku}",
            ]
        );
        for (name, item) in paths {
            let op = &item["get"];
            if name.starts_with("/v1/") {
                assert_eq!(
                    op["security"],
                    serde_json::json!([{"bearer": []}]),
                    "{name}"
                );
                for status in ["200", "400", "401", "413", "429", "503"] {
                    assert!(op["responses"][status].is_object(), "{name} {status}");
                }
            }
        }
        // Nullable fields are always present: dashboards can rely on the keys.
        let required = &doc["components"]["schemas"]["Freshness"]["required"];
        for key in ["newest_event_time", "lag_records", "partitions"] {
            assert!(
                required
                    .as_array()
                    .is_some_and(|r| r.iter().any(|k| k == key)),
                "{key}: {required}"
            );
        }
        if std::env::var_os("GALLEY_PRINT_OPENAPI").is_some() {
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
    }

    /// The enum names as the schema lists them, in declaration order.
    fn listed<'a>(doc: &'a serde_json::Value, schema: &str) -> Vec<&'a str> {
        doc["components"]["schemas"][schema]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{schema} is not an enum: {doc}"))
            .iter()
            .filter_map(serde_json::Value::as_str)
            .collect()
    }

    #[test]
    fn the_document_lists_order_status_as_an_enum_of_every_status() {
        let doc = serde_json::to_value(openapi()).expect("serializable");
        let every: Vec<&str> = OrderStatus::VARIANTS.iter().map(|s| s.into_str()).collect();
        assert_eq!(listed(&doc, "OrderStatus"), every);
        let status_ref = serde_json::json!({"$ref": "#/components/schemas/OrderStatus"});
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["OrderView"]["properties"]["status"], status_ref);
        assert_eq!(
            schemas["CustomerOrderView"]["properties"]["status"],
            status_ref
        );

        let stocks: Vec<&str> = LineStock::VARIANTS.iter().map(|s| s.into_str()).collect();
        assert_eq!(listed(&doc, "LineStock"), stocks);
        let reservations: Vec<&str> = ReservationStatus::VARIANTS
            .iter()
            .map(|s| s.into_str())
            .collect();
        assert_eq!(listed(&doc, "ReservationStatus"), reservations);
    }
}
