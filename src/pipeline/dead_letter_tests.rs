//! Unit tests of dead letters: class and stage spellings, and how a dead
//! letter that does not fit is cut down.

use rdkafka::message::{Header, Headers, OwnedHeaders};

use super::*;

#[test]
fn decode_errors_keep_the_class_names_the_codec_publishes() {
    let errors = [
        DecodeError::Empty,
        DecodeError::BadMagic(1),
        DecodeError::Truncated,
        DecodeError::UnknownSchemaId(9),
        DecodeError::WrongTopic {
            schema_id: 1,
            record: "R",
        },
        DecodeError::Body {
            schema_id: 1,
            message: String::new(),
        },
    ];
    for error in &errors {
        assert_eq!(ErrorClass::from(error).as_str(), error.class());
    }
}

#[test]
fn classes_and_stages_are_snake_case_and_parse_back() {
    for class in ErrorClass::VARIANTS {
        let name = class.as_str();
        assert!(name.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        assert_eq!(name.parse::<ErrorClass>(), Ok(*class));
    }
    assert_eq!(ErrorClass::KeyMismatch.as_str(), "key_mismatch");
    for stage in DeadLetterStage::VARIANTS {
        assert_eq!(stage.as_str().parse::<DeadLetterStage>(), Ok(*stage));
    }
    assert_eq!(DeadLetterStage::Validate.as_str(), "validate");
}

fn target(max: usize) -> DeadLetterTarget {
    DeadLetterTarget {
        topic: "dlq".into(),
        max_message_bytes: max,
        task_id: "galley-1".into(),
    }
}

fn letter(value: Vec<u8>) -> DeadLetter {
    let headers = OwnedHeaders::new().insert(Header {
        key: "trace-id",
        value: Some("abc".as_bytes()),
    });
    DeadLetter {
        topic: Arc::from("shop.orders"),
        partition: 3,
        offset: 42,
        key: Some(b"order-1".to_vec()),
        payload: Some(value),
        error_class: ErrorClass::Oversize,
        event_type: "unknown",
        message: "too big".into(),
        stage: DeadLetterStage::Decode,
        headers: Some(headers),
        timestamp_ms: Some(1_700_000_000_000),
    }
}

fn header_of(r: &DeadLetterRecord<'_>, name: &str) -> Option<String> {
    r.headers
        .iter()
        .filter(|h| h.key == name)
        .last()
        .map(|h| String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
}

/// librdkafka's own estimate of a record's size, which `message.max.bytes` bounds.
fn wire_size(r: &DeadLetterRecord<'_>) -> usize {
    let headers: usize = r
        .headers
        .iter()
        .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len) + 10)
        .sum();
    r.key.map_or(0, <[u8]>::len) + r.value.map_or(0, <[u8]>::len) + headers + 40
}

#[test]
fn a_dead_letter_that_fits_is_whole_with_its_headers_timestamp_and_id() {
    let d = letter(vec![7; 1000]);
    let r = d.record(&target(100_000), false);
    assert_eq!(r.fit, Fit::Whole);
    assert_eq!(r.value, d.payload.as_deref());
    assert_eq!(r.key, Some(b"order-1".as_slice()));
    assert_eq!(r.timestamp_ms, Some(1_700_000_000_000));
    assert_eq!(header_of(&r, "trace-id").as_deref(), Some("abc"));
    assert_eq!(
        header_of(&r, headers::ID).as_deref(),
        Some("shop.orders/3/42")
    );
    assert_eq!(header_of(&r, headers::TASK_ID).as_deref(), Some("galley-1"));
    assert_eq!(
        header_of(&r, headers::STAGE).as_deref(),
        Some("VALUE_CONVERTER")
    );
    assert_eq!(header_of(&r, headers::ORIGINAL_BYTES), None);
}

#[test]
fn a_dead_letter_too_large_is_cut_to_fit_with_the_original_size_and_digest() {
    let d = letter(vec![7; 1_040_000]);
    let r = d.record(&target(1_000_000), false);
    assert_eq!(r.fit, Fit::Truncated);
    assert!(wire_size(&r) <= 1_000_000, "{}", wire_size(&r));
    let value = r.value.expect("a prefix");
    assert!(
        value.len() > 990_000,
        "keeps nearly all it can: {}",
        value.len()
    );
    assert_eq!(
        header_of(&r, headers::ORIGINAL_BYTES).as_deref(),
        Some("1040000")
    );
    let digest = header_of(&r, headers::ORIGINAL_SHA256).expect("digest");
    assert_eq!(digest.len(), 64);
    assert_eq!(header_of(&r, "trace-id").as_deref(), Some("abc"));
}

#[test]
fn a_stripped_dead_letter_keeps_only_the_context_and_the_digest() {
    let mut d = letter(vec![7; 10]);
    d.message = "é".repeat(10_000);
    let r = d.record(&target(100_000), true);
    assert_eq!(r.fit, Fit::Stripped);
    assert_eq!(r.value, None);
    assert_eq!(
        r.timestamp_ms, None,
        "a refused timestamp is not sent again"
    );
    assert_eq!(header_of(&r, "trace-id"), None);
    assert_eq!(
        header_of(&r, headers::ORIGINAL_BYTES).as_deref(),
        Some("10")
    );
    let message = header_of(&r, headers::MESSAGE).expect("message");
    assert!(
        message.len() <= 4096,
        "the message is capped on a char boundary"
    );
    // Key and headers alone too large: stripped without being asked.
    d.key = Some(vec![1; 200_000]);
    let r = d.record(&target(100_000), false);
    assert_eq!(r.fit, Fit::Stripped);
    assert_eq!(r.key, None);
    assert!(wire_size(&r) <= 100_000);
}

#[test]
fn connect_stage_names_are_connects() {
    assert_eq!(DeadLetterStage::Decode.connect_name(), "VALUE_CONVERTER");
    assert_eq!(DeadLetterStage::Validate.connect_name(), "TASK_PUT");
}
