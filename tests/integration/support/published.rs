//! The oracle's check of what galley published: every record galley wrote
//! (recognised by its `galley.event_id` header) on the results topic and,
//! re-keyed, on its own input topics, against the events the fold expects
//! under the same deterministic ids.
//!
//! Kept apart from `scenario.rs` so that it runs without a broker: its unit
//! tests feed it hand-made records.

use std::collections::BTreeMap;

use galley::codec::Codec;
use galley::domain::{Emitted, InventoryEvent, OrderEvent, ResultEvent};
use galley::pipeline::partitioning::partition_for;

use super::fold::{destination_of, key_of, Destination, Expected};

/// One record galley published, as read back from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedRecord {
    pub event_id: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

/// The topics galley publishes to, and how it must place re-keyed records.
#[derive(Debug, Clone)]
pub struct PublishSettings {
    pub results_topic: String,
    pub orders_topic: String,
    pub inventory_topic: String,
    pub input_partitions: i32,
    pub partitioner: galley::config::Partitioner,
}

impl PublishSettings {
    fn destination(&self, topic: &str) -> Option<Destination> {
        if topic == self.results_topic {
            Some(Destination::Results)
        } else if topic == self.orders_topic {
            Some(Destination::Orders)
        } else if topic == self.inventory_topic {
            Some(Destination::Inventory)
        } else {
            None
        }
    }
}

/// What the check found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EventCheck {
    /// Ids the fold expects that galley never published.
    pub missing: Vec<String>,
    /// Ids galley published that the fold does not expect, or that went to
    /// the wrong topic.
    pub unexpected: Vec<String>,
    /// Published under an expected id, with other contents (or key, or
    /// partition) than the fold's.
    pub mismatched: Vec<String>,
    /// Extra copies of an id (at-least-once re-publication after a crash).
    pub duplicate_copies: usize,
}

/// Compares every published record with the fold's expectation: the whole
/// decoded payload, the key, and for a re-keyed record on an input topic the
/// partition its key maps to. Every copy of an id is checked.
pub fn check_published(
    codec: &Codec,
    settings: &PublishSettings,
    expected: &Expected,
    published: &[PublishedRecord],
) -> EventCheck {
    let mut check = EventCheck::default();
    let mut copies: BTreeMap<&str, usize> = BTreeMap::new();
    for record in published {
        *copies.entry(record.event_id.as_str()).or_default() += 1;
        if let Err(problem) = check_record(codec, settings, expected, record) {
            match problem {
                Problem::Unexpected(text) => check.unexpected.push(text),
                Problem::Mismatched(text) => check.mismatched.push(text),
            }
        }
    }
    for id in expected.emitted.keys() {
        if !copies.contains_key(id.as_str()) {
            check.missing.push(id.clone());
        }
    }
    check.duplicate_copies = copies.values().map(|n| n - 1).sum();
    check
}

enum Problem {
    Unexpected(String),
    Mismatched(String),
}

fn check_record(
    codec: &Codec,
    settings: &PublishSettings,
    expected: &Expected,
    record: &PublishedRecord,
) -> Result<(), Problem> {
    let id = &record.event_id;
    let place = format!("{}/{}/{}", record.topic, record.partition, record.offset);
    let Some(destination) = settings.destination(&record.topic) else {
        return Err(Problem::Unexpected(format!(
            "{id} at {place}: not one of galley's topics"
        )));
    };
    let Some(want) = expected.emitted.get(id) else {
        return Err(Problem::Unexpected(format!(
            "{id} at {place}: an id the fold does not emit"
        )));
    };
    if destination_of(want) != destination {
        return Err(Problem::Unexpected(format!(
            "{id} went to {destination:?}, expected {:?}",
            destination_of(want)
        )));
    }
    let got = decode(
        codec,
        destination,
        record.payload.as_deref().unwrap_or_default(),
    )
    .map_err(|e| Problem::Mismatched(format!("{id} at {place}: does not decode: {e}")))?;
    if &got != want {
        return Err(Problem::Mismatched(format!(
            "{id} at {place}: payload differs\n  expected {want:?}\n  actual   {got:?}"
        )));
    }
    let key = key_of(want).as_bytes();
    if record.key.as_deref() != Some(key) {
        return Err(Problem::Mismatched(format!(
            "{id} at {place}: key {:?}, expected {:?}",
            record.key.as_deref().map(String::from_utf8_lossy),
            key_of(want)
        )));
    }
    if destination != Destination::Results {
        let home = partition_for(settings.partitioner, key, settings.input_partitions);
        if record.partition != home {
            return Err(Problem::Mismatched(format!(
                "{id} at {place}: key {:?} belongs on partition {home}",
                key_of(want)
            )));
        }
    }
    Ok(())
}

/// Decodes a payload as the event type its topic carries.
fn decode(codec: &Codec, destination: Destination, payload: &[u8]) -> Result<Emitted, String> {
    let decoded = match destination {
        Destination::Results => codec.decode::<ResultEvent>(payload).map(Emitted::Result),
        Destination::Orders => codec.decode::<OrderEvent>(payload).map(Emitted::Order),
        Destination::Inventory => codec
            .decode::<InventoryEvent>(payload)
            .map(Emitted::Inventory),
    };
    decoded.map_err(|e| e.to_string())
}

#[cfg(test)]
#[path = "published_tests.rs"]
mod tests;
