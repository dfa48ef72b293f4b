//! The order document: exactly the API's JSON, and readable across versions.

use super::*;
use crate::domain::order::{LineStock, OrderLineState, OrderStatus, TimelineEntry};

fn order() -> Order {
    Order {
        order_id: "O-1".into(),
        customer_id: "C-1".into(),
        status: OrderStatus::PaymentFailed,
        currency: "EUR".into(),
        total_cents: 2_500,
        paid_cents: 0,
        refunded_cents: 0,
        lines: vec![OrderLineState {
            sku: "S-1".into(),
            quantity: 2,
            unit_price_cents: 1_250,
            stock: LineStock::Reserved,
        }],
        timeline: vec![TimelineEntry {
            event_time_ms: 1_767_225_600_123,
            status: "payment_failed".into(),
            note: None,
        }],
        placed_at_ms: 1_767_225_600_000,
        updated_at_ms: 1_767_225_600_123,
    }
}

#[test]
fn the_document_is_the_api_json_of_the_order() {
    let versioned = Versioned {
        value: order(),
        applied_offset: 41,
    };
    let values = order_document_values(&versioned, 3).expect("encodes");
    assert_eq!((values.source_partition, values.applied_offset), (3, 41));
    assert_eq!(values.write_timestamp, 41);
    let json: serde_json::Value = serde_json::from_str(&values.document).expect("JSON");
    assert_eq!(
        json,
        serde_json::json!({
            "order_id": "O-1",
            "customer_id": "C-1",
            "status": "payment_failed",
            "currency": "EUR",
            "total_cents": 2500,
            "paid_cents": 0,
            "refunded_cents": 0,
            "lines": [{"sku": "S-1", "quantity": 2, "unit_price_cents": 1250, "stock": "reserved"}],
            "timeline": [{"at": "2026-01-01T00:00:00.123Z", "status": "payment_failed", "note": null}],
            "placed_at": "2026-01-01T00:00:00.000Z",
            "updated_at": "2026-01-01T00:00:00.123Z",
        })
    );
    assert_eq!(parse_document("O-1", Some(&values.document)), Ok(order()));
}

#[test]
fn reading_ignores_unknown_fields_and_names_what_is_malformed() {
    let mut json = serde_json::to_value(order()).expect("JSON");
    json["gift_wrap"] = serde_json::json!(true);
    assert_eq!(parse_document("O-1", Some(&json.to_string())), Ok(order()));
    let err = parse_document("O-1", Some(r#"{"order_id": "O-1"}"#)).expect_err("partial");
    assert!(err.contains("order O-1"), "{err}");
    assert!(parse_document("O-1", None).is_err());
}
