//! The codec on a small event set of its own, independent of any domain:
//! what `event_set!` generates, and how the manifest is matched against the
//! registered sets at start-up.

use serde::{Deserialize, Serialize};

use super::manifest::{self, Registry};
use super::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ping {
    id: String,
    event_time_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pong {
    id: String,
    answer: String,
    event_time_ms: i64,
}

crate::event_set! {
    /// Two records on the `pings` topic role.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Pings: "pings" {
        Ping(Ping) keyed by id,
        Pong(Pong) keyed by answer,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Echo {
    id: String,
    event_time_ms: i64,
}

crate::event_set! {
    #[derive(Debug, Clone, PartialEq)]
    pub enum Echoes: "echoes" {
        Echo(Echo) keyed by id,
    }
}

fn schema(record: &str, extra_field: &str) -> String {
    format!(
        r#"{{"type":"record","name":"{record}","namespace":"test","fields":[
            {{"name":"id","type":"string"}},{extra_field}
            {{"name":"event_time_ms","type":"long"}}]}}"#
    )
}

fn entry(id: u32, record: &str, topic: &str) -> String {
    format!(
        "[[schema]]\nid = {id}\nfile = \"{record}.avsc\"\nrecord = \"{record}\"\ntopic = \"{topic}\"\nversion = 1\nreader = true\n"
    )
}

/// A registry of the given entries over the three test schemas, leaked so
/// that prepared readers may borrow it as the embedded one is borrowed.
fn registry(entries: &[String]) -> &'static Registry {
    let files: Vec<(String, String)> = vec![
        ("Ping.avsc".into(), schema("Ping", "")),
        (
            "Pong.avsc".into(),
            schema("Pong", r#"{"name":"answer","type":"string"},"#),
        ),
        ("Echo.avsc".into(), schema("Echo", "")),
    ];
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(path, text)| {
            (
                &*Box::leak(path.clone().into_boxed_str()),
                &*Box::leak(text.clone().into_boxed_str()),
            )
        })
        .collect();
    let manifest = format!("namespace = \"test\"\n{}", entries.join("\n"));
    Box::leak(Box::new(
        manifest::load(&manifest, &files).expect("test manifest loads"),
    ))
}

fn both_sets() -> CodecBuilder {
    Codec::builder().register::<Pings>().register::<Echoes>()
}

fn full_manifest() -> Vec<String> {
    vec![
        entry(1, "Ping", "pings"),
        entry(2, "Pong", "pings"),
        entry(3, "Echo", "echoes"),
    ]
}

fn build_error(builder: CodecBuilder, entries: &[String]) -> String {
    match builder.build_from(registry(entries), false) {
        Ok(_) => panic!("codec built from {entries:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_macro_gives_each_variant_its_record_key_and_time() {
    assert_eq!(Pings::TOPIC, "pings");
    assert_eq!(Pings::RECORDS, &["Ping", "Pong"]);
    let pong = Pings::Pong(Pong {
        id: "p-1".into(),
        answer: "yes".into(),
        event_time_ms: 7,
    });
    assert_eq!(pong.record_index(), 1);
    assert_eq!(pong.type_name(), "Pong");
    assert_eq!(pong.key(), "yes");
    assert_eq!(pong.event_time_ms(), 7);
}

#[test]
fn every_registered_record_round_trips_and_other_sets_are_wrong_topic() {
    let codec = both_sets()
        .build_from(registry(&full_manifest()), false)
        .expect("codec");
    let events = [
        Pings::Ping(Ping {
            id: "a".into(),
            event_time_ms: 1,
        }),
        Pings::Pong(Pong {
            id: "b".into(),
            answer: "c".into(),
            event_time_ms: 2,
        }),
    ];
    for (expected_id, event) in (1u32..).zip(&events) {
        let mut bytes = Vec::new();
        codec.encode(event, &mut bytes).expect("encodes");
        assert_eq!(peek_schema_id(&bytes), Ok(expected_id));
        assert_eq!(codec.decode::<Pings>(&bytes).as_ref(), Ok(event));
        assert_eq!(
            codec.decode::<Echoes>(&bytes),
            Err(DecodeError::WrongTopic {
                schema_id: expected_id,
                record: event.type_name()
            })
        );
    }
    assert_eq!(codec.topic_of(3), Some("echoes"));
}

#[test]
fn a_manifest_record_no_set_declares_stops_the_build() {
    // Echo is listed, but only the Pings set is registered.
    let err = build_error(Codec::builder().register::<Pings>(), &full_manifest());
    assert!(
        err.contains("\"Echo\"") && err.contains("not declared"),
        "{err}"
    );
}

#[test]
fn a_record_on_another_topic_than_its_set_stops_the_build() {
    let entries = vec![
        entry(1, "Ping", "echoes"),
        entry(2, "Pong", "pings"),
        entry(3, "Echo", "echoes"),
    ];
    let err = build_error(both_sets(), &entries);
    assert!(
        err.contains("Ping belongs on the pings topic, not echoes"),
        "{err}"
    );
}

#[test]
fn a_declared_record_without_a_schema_stops_the_build() {
    let entries = vec![entry(1, "Ping", "pings"), entry(3, "Echo", "echoes")];
    let err = build_error(both_sets(), &entries);
    assert!(err.contains("Pong has no entry"), "{err}");
}

#[test]
fn a_set_registered_twice_stops_the_build() {
    let err = build_error(both_sets().register::<Pings>(), &full_manifest());
    assert!(err.contains("registered twice"), "{err}");
}

#[test]
fn encoding_a_set_the_codec_does_not_serve_is_an_error() {
    let codec = Codec::builder()
        .register::<Pings>()
        .build_from(registry(&full_manifest()[..2]), false)
        .expect("codec");
    let echo = Echoes::Echo(Echo {
        id: "e".into(),
        event_time_ms: 1,
    });
    let mut out = Vec::new();
    assert_eq!(
        codec.encode(&echo, &mut out),
        Err(EncodeError::Unregistered { topic: "echoes" })
    );
    assert!(out.is_empty());
}
