//! The codec on the shop's event sets: round trips, the wire-format error
//! classes, schema evolution, allocation limits, and the schema files
//! themselves (the published contract of `schemas/`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use apache_avro::schema_compatibility::SchemaCompatibility;

fn manifest_text() -> &'static str {
    embedded_schema_files().0
}

fn files() -> &'static [(&'static str, &'static str)] {
    embedded_schema_files().1
}
use serde_json::Value as Json;

use crate::codec::{
    embedded_schema_files, peek_schema_id, Codec, DecodeError, EncodeError, HEADER_LEN,
    MAX_ALLOCATION_BYTES,
};
use crate::domain::*;

const T: EpochMillis = 1_767_225_600_000;

fn codec() -> Codec {
    crate::domain::codec().expect("embedded schemas load")
}

fn placed(lines: usize) -> OrderPlaced {
    OrderPlaced {
        order_id: "order-0001".into(),
        customer_id: "customer-42".into(),
        lines: (0..lines)
            .map(|i| OrderLine {
                sku: format!("sku-{i}"),
                quantity: i as i32 + 1,
                unit_price_cents: 1_999 + i as i64,
            })
            .collect(),
        currency: "USD".into(),
        event_time_ms: T,
    }
}

fn orders() -> Vec<OrderEvent> {
    vec![
        OrderEvent::Placed(placed(3)),
        OrderEvent::Placed(placed(0)),
        OrderEvent::PaymentCaptured(PaymentCaptured {
            order_id: "o1".into(),
            amount_cents: 5_997,
            event_time_ms: T + 1,
        }),
        OrderEvent::PaymentFailed(PaymentFailed {
            order_id: "o1".into(),
            reason: "card_declined".into(),
            event_time_ms: T + 2,
        }),
        OrderEvent::Shipped(OrderShipped {
            order_id: "o1".into(),
            carrier: "dhl".into(),
            event_time_ms: T + 3,
        }),
        OrderEvent::Delivered(OrderDelivered {
            order_id: "o1".into(),
            event_time_ms: T + 4,
        }),
        OrderEvent::Cancelled(OrderCancelled {
            order_id: "o1".into(),
            reason: "".into(),
            event_time_ms: T + 5,
        }),
        OrderEvent::Refunded(PaymentRefunded {
            order_id: "o1".into(),
            amount_cents: 5_997,
            reason: "returned".into(),
            event_time_ms: T + 6,
        }),
        OrderEvent::StockOutcome(StockReservationOutcome {
            event_id: "shop.inventory/3/17/0".into(),
            order_id: "o1".into(),
            sku: "sku-1".into(),
            quantity: 2,
            reserved: true,
            event_time_ms: T + 6,
        }),
    ]
}

fn inventory() -> Vec<InventoryEvent> {
    vec![
        InventoryEvent::Received(StockReceived {
            sku: "sku-1".into(),
            quantity: 100,
            event_time_ms: T,
        }),
        InventoryEvent::Adjusted(StockAdjusted {
            sku: "sku-1".into(),
            delta: -3,
            reason: "shrinkage ✓".into(),
            event_time_ms: T + 1,
        }),
        InventoryEvent::ReservationRequested(StockReservationRequested {
            event_id: "shop.orders/0/5/1".into(),
            sku: "sku-1".into(),
            order_id: "o1".into(),
            quantity: 2,
            event_time_ms: T + 2,
        }),
        InventoryEvent::ReleaseRequested(StockReleaseRequested {
            event_id: "shop.orders/0/6/0".into(),
            sku: "sku-1".into(),
            order_id: "o1".into(),
            event_time_ms: T + 3,
        }),
        InventoryEvent::FulfilmentRequested(StockFulfilmentRequested {
            event_id: "shop.orders/0/7/0".into(),
            sku: "sku-1".into(),
            order_id: "o1".into(),
            event_time_ms: T + 4,
        }),
    ]
}

fn results() -> Vec<ResultEvent> {
    vec![
        ResultEvent::OrderStatusChanged(OrderStatusChanged {
            event_id: "shop.orders/0/5/0".into(),
            order_id: "o1".into(),
            customer_id: "c1".into(),
            from_status: None,
            to_status: "placed".into(),
            reason: None,
            event_time_ms: T,
        }),
        ResultEvent::OrderStatusChanged(OrderStatusChanged {
            event_id: "shop.orders/0/9/0".into(),
            order_id: "o1".into(),
            customer_id: "c1".into(),
            from_status: Some("placed".into()),
            to_status: "cancelled".into(),
            reason: Some("out_of_stock".into()),
            event_time_ms: T + 1,
        }),
        ResultEvent::OrderRejected(OrderRejected {
            event_id: "shop.orders/0/10/0".into(),
            order_id: "o2".into(),
            event_type: "PaymentCaptured".into(),
            status: None,
            reason: "unknown_order".into(),
            event_time_ms: T + 2,
        }),
        ResultEvent::OrderRejected(OrderRejected {
            event_id: "shop.orders/0/11/0".into(),
            order_id: "o1".into(),
            event_type: "OrderShipped".into(),
            status: Some("cancelled".into()),
            reason: "order_cancelled".into(),
            event_time_ms: T + 3,
        }),
        ResultEvent::StockReserved(StockReserved {
            event_id: "shop.inventory/1/2/0".into(),
            sku: "sku-1".into(),
            order_id: "o1".into(),
            quantity: 2,
            available_after: 95,
            event_time_ms: T + 4,
        }),
        ResultEvent::StockShort(StockShort {
            event_id: "shop.inventory/1/3/0".into(),
            sku: "sku-2".into(),
            order_id: "o1".into(),
            requested: 5,
            available: -1,
            event_time_ms: T + 5,
        }),
        ResultEvent::LowStockAlert(LowStockAlert {
            event_id: "shop.inventory/1/2/1".into(),
            sku: "sku-1".into(),
            available: 4,
            threshold: 5,
            event_time_ms: T + 6,
        }),
    ]
}

fn encode_order(codec: &Codec, event: &OrderEvent) -> Vec<u8> {
    let mut out = Vec::new();
    codec.encode(event, &mut out).expect("encodes");
    out
}

/// Every sample message with the topic role it belongs to.
fn all_messages(codec: &Codec) -> Vec<(&'static str, Vec<u8>)> {
    let mut messages = Vec::new();
    for event in orders() {
        messages.push(("orders", encode_order(codec, &event)));
    }
    for event in inventory() {
        let mut out = Vec::new();
        codec.encode(&event, &mut out).expect("encodes");
        messages.push(("inventory", out));
    }
    for event in results() {
        let mut out = Vec::new();
        codec.encode(&event, &mut out).expect("encodes");
        messages.push(("results", out));
    }
    let mut v1 = Vec::new();
    placed(2).encode_v1(codec, &mut v1).expect("encodes");
    messages.push(("orders", v1));
    messages
}

fn decode_as(codec: &Codec, role: &'static str, bytes: &[u8]) -> Result<String, DecodeError> {
    Ok(match role {
        "orders" => format!("{:?}", codec.decode::<OrderEvent>(bytes)?),
        "inventory" => format!("{:?}", codec.decode::<InventoryEvent>(bytes)?),
        _ => format!("{:?}", codec.decode::<ResultEvent>(bytes)?),
    })
}

/// `(magic, id, body)` framed by hand, independent of the code under test.
fn frame(schema_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Avro `long`: zigzag, then little-endian base-128 varint.
fn zigzag(n: i64) -> Vec<u8> {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        let byte = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn avro_string(s: &str) -> Vec<u8> {
    let mut out = zigzag(s.len() as i64);
    out.extend_from_slice(s.as_bytes());
    out
}

#[test]
fn every_event_type_round_trips() {
    let codec = codec();
    for event in orders() {
        let bytes = encode_order(&codec, &event);
        assert_eq!(codec.decode::<OrderEvent>(&bytes), Ok(event));
    }
    for event in inventory() {
        let mut bytes = Vec::new();
        codec.encode(&event, &mut bytes).unwrap();
        assert_eq!(codec.decode::<InventoryEvent>(&bytes), Ok(event));
    }
    for event in results() {
        let mut bytes = Vec::new();
        codec.encode(&event, &mut bytes).unwrap();
        assert_eq!(codec.decode::<ResultEvent>(&bytes), Ok(event));
    }
}

#[test]
fn every_record_kind_is_covered_by_the_samples() {
    let codec = codec();
    let seen: BTreeSet<u32> = all_messages(&codec)
        .iter()
        .map(|(_, bytes)| peek_schema_id(bytes).unwrap())
        .collect();
    let all: BTreeSet<u32> = codec.schema_ids().collect();
    assert_eq!(seen, all);
}

#[test]
fn encoding_uses_the_reader_schema_id_and_the_wire_format() {
    let codec = codec();
    let bytes = encode_order(&codec, &OrderEvent::Placed(placed(1)));
    assert_eq!(&bytes[..5], &[0, 0, 0, 0, 2]);

    // OrderDelivered {order_id: "o1", event_time_ms: 1}, laid out by hand.
    let delivered = OrderEvent::Delivered(OrderDelivered {
        order_id: "o1".into(),
        event_time_ms: 1,
    });
    let mut expected = avro_string("o1");
    expected.extend(zigzag(1));
    assert_eq!(encode_order(&codec, &delivered), frame(6, &expected));

    // A null union branch is index 0, a string is index 1.
    let mut out = Vec::new();
    let ResultEvent::OrderStatusChanged(changed) = &results()[0] else {
        unreachable!()
    };
    codec
        .encode(&ResultEvent::OrderStatusChanged(changed.clone()), &mut out)
        .unwrap();
    let mut expected = Vec::new();
    for s in [&changed.event_id, &changed.order_id, &changed.customer_id] {
        expected.extend(avro_string(s));
    }
    expected.extend(zigzag(0));
    expected.extend(avro_string("placed"));
    expected.extend(zigzag(0));
    expected.extend(zigzag(T));
    assert_eq!(out, frame(40, &expected));
}

#[test]
fn encoding_appends_and_leaves_the_buffer_intact_on_error() {
    let codec = codec();
    let mut out = b"keep".to_vec();
    codec
        .encode(&OrderEvent::Placed(placed(1)), &mut out)
        .unwrap();
    assert_eq!(&out[..4], b"keep");
    let after_first = out.clone();
    let first = codec.decode::<OrderEvent>(&after_first[4..]).unwrap();
    assert_eq!(first, OrderEvent::Placed(placed(1)));

    // Version 1 has no `currency`, so the full v2 struct does not fit it.
    let err = codec
        .encode_with_schema_id(1, &placed(1), &mut out)
        .unwrap_err();
    assert!(
        matches!(err, EncodeError::Body { schema_id: 1, .. }),
        "{err}"
    );
    assert_eq!(out, after_first);

    assert_eq!(
        codec.encode_with_schema_id(999, &placed(1), &mut out),
        Err(EncodeError::UnknownSchemaId(999))
    );
    assert_eq!(out, after_first);
}

#[test]
fn order_placed_v1_decodes_through_v2_with_default_currency() {
    let codec = codec();
    let mut bytes = Vec::new();
    placed(3).encode_v1(&codec, &mut bytes).unwrap();
    assert_eq!(peek_schema_id(&bytes), Ok(1));
    let expected = OrderPlaced {
        currency: "EUR".into(),
        ..placed(3)
    };
    assert_eq!(
        codec.decode::<OrderEvent>(&bytes),
        Ok(OrderEvent::Placed(expected))
    );

    // The same through the general entry point, from a v1-shaped value.
    #[derive(serde::Serialize)]
    struct V1 {
        order_id: String,
        customer_id: String,
        lines: Vec<OrderLine>,
        event_time_ms: i64,
    }
    let mut general = Vec::new();
    let p = placed(3);
    let v1 = V1 {
        order_id: p.order_id,
        customer_id: p.customer_id,
        lines: p.lines,
        event_time_ms: p.event_time_ms,
    };
    codec.encode_with_schema_id(1, &v1, &mut general).unwrap();
    assert_eq!(general, bytes);
}

#[test]
fn direct_and_resolving_paths_agree_on_every_type() {
    let direct = codec();
    let resolving = Codec::builder()
        .register::<OrderEvent>()
        .register::<InventoryEvent>()
        .register::<ResultEvent>()
        .build_resolving_only()
        .expect("resolving codec");
    assert!(format!("{direct:?}").contains("(2, \"OrderPlaced\", 2, true)"));
    assert!(format!("{direct:?}").contains("(1, \"OrderPlaced\", 1, false)"));
    assert!(!format!("{resolving:?}").contains("true"));
    for (role, bytes) in all_messages(&direct) {
        assert_eq!(
            decode_as(&direct, role, &bytes),
            decode_as(&resolving, role, &bytes)
        );
        assert!(decode_as(&direct, role, &bytes).is_ok());
    }
}

#[test]
fn wire_format_errors_have_their_own_classes() {
    let codec = codec();
    let good = encode_order(&codec, &OrderEvent::Placed(placed(3)));

    let err = codec.decode::<OrderEvent>(&[]).unwrap_err();
    assert_eq!((err.class(), err.schema_id()), ("empty", None));

    let mut bad_magic = good.clone();
    bad_magic[0] = 1;
    let err = codec.decode::<OrderEvent>(&bad_magic).unwrap_err();
    assert_eq!(err, DecodeError::BadMagic(1));
    assert_eq!(err.class(), "bad_magic");

    for len in 1..HEADER_LEN {
        let err = codec.decode::<OrderEvent>(&good[..len]).unwrap_err();
        assert_eq!(err, DecodeError::Truncated);
        assert_eq!(err.class(), "truncated_header");
    }

    let err = codec
        .decode::<OrderEvent>(&frame(9_999, &good[5..]))
        .unwrap_err();
    assert_eq!(err, DecodeError::UnknownSchemaId(9_999));
    assert_eq!(
        (err.class(), err.schema_id()),
        ("unknown_schema_id", Some(9_999))
    );

    // Id 0 is not ours either, even though it looks like a zeroed header.
    assert_eq!(
        codec.decode::<OrderEvent>(&[0, 0, 0, 0, 0]),
        Err(DecodeError::UnknownSchemaId(0))
    );
}

#[test]
fn a_truncated_or_padded_body_is_bad_body() {
    let codec = codec();
    for (role, bytes) in all_messages(&codec) {
        let id = peek_schema_id(&bytes).unwrap();
        // Every strict prefix of the body is short of a full datum, down to
        // the bare header.
        for cut in HEADER_LEN..bytes.len() {
            let err = decode_as(&codec, role, &bytes[..cut]).unwrap_err();
            assert_eq!(err.class(), "bad_body", "{err} at {cut} of schema {id}");
            assert_eq!(err.schema_id(), Some(id));
        }
        let mut padded = bytes.clone();
        padded.push(0);
        let err = decode_as(&codec, role, &padded).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Body {
                schema_id: id,
                message: "1 trailing bytes after the datum".into()
            }
        );
    }
}

#[test]
fn a_schema_of_another_topic_is_wrong_topic() {
    let codec = codec();
    let mut inventory_bytes = Vec::new();
    codec.encode(&inventory()[0], &mut inventory_bytes).unwrap();
    let err = codec.decode::<OrderEvent>(&inventory_bytes).unwrap_err();
    assert_eq!(
        err,
        DecodeError::WrongTopic {
            schema_id: 20,
            record: "StockReceived"
        }
    );
    assert_eq!(err.class(), "wrong_topic");

    let order_bytes = encode_order(&codec, &orders()[0]);
    assert!(matches!(
        codec.decode::<ResultEvent>(&order_bytes),
        Err(DecodeError::WrongTopic { schema_id: 2, .. })
    ));
    assert!(matches!(
        codec.decode::<InventoryEvent>(&order_bytes),
        Err(DecodeError::WrongTopic { schema_id: 2, .. })
    ));

    // The topic check comes before the body is looked at.
    assert!(matches!(
        codec.decode::<OrderEvent>(&frame(40, &[])),
        Err(DecodeError::WrongTopic { schema_id: 40, .. })
    ));
    assert_eq!(codec.topic_of(40), Some("results"));
    assert_eq!(codec.topic_of(41_000), None);
}

/// Asserts `body` under `schema_id` fails as bad_body, quickly.
fn assert_rejected_fast(codec: &Codec, schema_id: u32, body: &[u8]) -> String {
    let started = Instant::now();
    let err = codec
        .decode::<OrderEvent>(&frame(schema_id, body))
        .unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err.class(), "bad_body", "{err}");
    assert!(
        elapsed < Duration::from_millis(500),
        "took {elapsed:?} to reject: {err}"
    );
    err.to_string()
}

#[test]
fn gigantic_length_claims_fail_fast_without_allocating() {
    let codec = codec();
    assert_eq!(
        apache_avro::util::max_allocation_bytes(0),
        MAX_ALLOCATION_BYTES
    );

    // PaymentCaptured whose order_id claims far more bytes than any limit,
    // and one just above galley's cap (and below Avro's 512 MiB default).
    for claim in [1_i64 << 60, i64::MAX, (MAX_ALLOCATION_BYTES as i64) * 4] {
        let mut body = zigzag(claim);
        body.extend_from_slice(b"abc");
        let message = assert_rejected_fast(&codec, 3, &body);
        assert!(message.contains("allocate"), "{message}");
    }

    // A negative length is not a length.
    let mut body = zigzag(-5);
    body.extend_from_slice(b"abc");
    assert_rejected_fast(&codec, 3, &body);

    // OrderPlaced whose lines array claims 2^60 items, on the direct path
    // (v2) and on the resolving path (v1), in a positive and a negative
    // (sized) block header.
    for schema_id in [1, 2] {
        for count in [1_i64 << 60, -(1_i64 << 60)] {
            let mut body = avro_string("o1");
            body.extend(avro_string("c1"));
            body.extend(zigzag(count));
            if count < 0 {
                body.extend(zigzag(1 << 40));
            }
            body.extend(avro_string("sku"));
            assert_rejected_fast(&codec, schema_id, &body);
        }
    }
}

#[test]
fn garbage_never_panics() {
    let codec = codec();
    let messages = all_messages(&codec);
    // A small deterministic generator: mutations of valid messages reach
    // deeper into the decoder than uniformly random bytes.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let (role, base) = &messages[(next() % messages.len() as u64) as usize];
        let mut bytes = base.clone();
        for _ in 0..=(next() % 4) {
            let at = HEADER_LEN + (next() as usize) % (bytes.len() - HEADER_LEN).max(1);
            if at < bytes.len() {
                bytes[at] = next() as u8;
            }
        }
        let _ = decode_as(&codec, role, &bytes);
    }
}

#[test]
fn the_manifest_pins_the_published_ids() {
    let codec = codec();
    let ids: Vec<(u32, &str, u32, bool)> = codec
        .schemas()
        .map(|s| (s.id, s.record, s.version, s.reader))
        .collect();
    // Ids are a contract with every producer: renumbering one is a breaking
    // change, so it must fail here first.
    assert_eq!(
        ids,
        vec![
            (1, "OrderPlaced", 1, false),
            (2, "OrderPlaced", 2, true),
            (3, "PaymentCaptured", 1, true),
            (4, "PaymentFailed", 1, true),
            (5, "OrderShipped", 1, true),
            (6, "OrderDelivered", 1, true),
            (7, "OrderCancelled", 1, true),
            (8, "StockReservationOutcome", 1, true),
            (9, "PaymentRefunded", 1, true),
            (20, "StockReceived", 1, true),
            (21, "StockAdjusted", 1, true),
            (22, "StockReservationRequested", 1, true),
            (23, "StockReleaseRequested", 1, true),
            (24, "StockFulfilmentRequested", 1, true),
            (40, "OrderStatusChanged", 1, true),
            (41, "OrderRejected", 1, true),
            (42, "StockReserved", 1, true),
            (43, "StockShort", 1, true),
            (44, "LowStockAlert", 1, true),
        ]
    );
}

#[test]
fn every_version_of_a_record_is_mutually_readable() {
    // The README's evolution rules amount to full compatibility: new readers
    // read old data and old readers read new data.
    let codec = codec();
    for a in codec.schemas() {
        for b in codec.schemas().filter(|b| b.record == a.record) {
            SchemaCompatibility::mutual_read(a.schema, b.schema)
                .unwrap_or_else(|e| panic!("ids {} and {}: {e}", a.id, b.id));
        }
    }
}

#[test]
fn the_embedded_files_are_exactly_the_manifest_and_the_folder() {
    let manifest: toml::Table = toml::from_str(manifest_text()).unwrap();
    let listed: BTreeSet<String> = manifest["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["file"].as_str().unwrap().to_owned())
        .collect();
    let embedded: BTreeSet<String> = files().iter().map(|(path, _)| path.to_string()).collect();
    assert_eq!(listed, embedded, "every .avsc is in the manifest and back");

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    for (path, contents) in files() {
        let on_disk = std::fs::read_to_string(root.join(path)).unwrap();
        assert_eq!(&on_disk, contents, "{path} is stale; rebuild");
        let dir = path.split('/').next().unwrap();
        assert!(
            ["orders", "inventory", "results"].contains(&dir),
            "{path} must be under its topic role's folder"
        );
    }
    assert!(root.join("README.md").is_file());
}

/// Collects, into `missing`, every record or field below `schema` without a
/// non-empty `doc`.
fn walk_docs(schema: &Json, at: &str, missing: &mut Vec<String>) {
    match schema {
        Json::Array(branches) => {
            for (i, branch) in branches.iter().enumerate() {
                walk_docs(branch, &format!("{at}[{i}]"), missing);
            }
        }
        Json::Object(object) => match object.get("type").and_then(Json::as_str) {
            Some("record") => {
                let name = object["name"].as_str().unwrap_or("?");
                let at = format!("{at}{name}");
                if !has_doc(schema) {
                    missing.push(at.clone());
                }
                for field in object["fields"].as_array().into_iter().flatten() {
                    let field_at = format!("{at}.{}", field["name"].as_str().unwrap_or("?"));
                    if !has_doc(field) {
                        missing.push(field_at.clone());
                    }
                    walk_docs(&field["type"], &format!("{field_at}: "), missing);
                }
            }
            Some("array") => walk_docs(&object["items"], at, missing),
            Some("map") => walk_docs(&object["values"], at, missing),
            _ => {}
        },
        _ => {}
    }
}

fn has_doc(node: &Json) -> bool {
    node.get("doc")
        .and_then(Json::as_str)
        .is_some_and(|doc| !doc.trim().is_empty())
}

#[test]
fn every_schema_file_parses_and_documents_every_record_and_field() {
    let mut missing = Vec::new();
    for (path, contents) in files() {
        let json: Json = serde_json::from_str(contents).unwrap_or_else(|e| panic!("{path}: {e}"));
        apache_avro::Schema::parse(&json).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(json["type"], "record", "{path}");
        assert_eq!(json["namespace"], "galley.shop", "{path}");
        walk_docs(&json, &format!("{path}: "), &mut missing);

        for field in json["fields"].as_array().unwrap() {
            // Timestamps are logical timestamp-millis, so tools show them as
            // times and not as bare numbers.
            if field["name"] == "event_time_ms" {
                assert_eq!(field["type"]["type"], "long", "{path}");
                assert_eq!(field["type"]["logicalType"], "timestamp-millis", "{path}");
            }
            // Optional strings: null first, default null, so a producer may
            // leave them out and a later version may add one.
            if let Some(union) = field["type"].as_array() {
                assert_eq!(union, &vec![Json::from("null"), Json::from("string")]);
                assert_eq!(field.get("default"), Some(&Json::Null), "{path}");
            }
        }
    }
    assert!(missing.is_empty(), "missing docs: {missing:#?}");
}

#[test]
fn the_codec_can_be_shared_across_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Codec>();
}
