//! The shop's events as typed values: what arrives on the input topics and
//! what galley publishes, one file per topic role. Field names match the Avro
//! schemas in `schemas/`.
//!
//! Every event carries its own event time (`event_time_ms`, milliseconds since
//! the Unix epoch). Handlers read time only from events, never from a clock,
//! so that replaying the same input computes the same output.
//!
//! Each event type is declared once, in its topic's file: its payload struct,
//! one line in the topic's [`event_set!`](crate::event_set) naming the struct
//! and its key field, and its contract checks (`validate`: what makes it
//! poison). The `event_set!` line gives the codec its decode and encode
//! dispatch, the record name (the struct's name, which the manifest must list
//! on the same topic) and the event's key and event time; nothing else lists
//! event types. The orders file also holds the simulated customer journey
//! that generated streams follow, so a new order event is generated where it
//! is declared.

mod inventory;
mod orders;
mod results;

pub use inventory::*;
pub use orders::*;
pub use results::*;

pub use crate::codec::EventSet;
use crate::codec::{Codec, CodecError};

use super::ValidationError;

/// Milliseconds since the Unix epoch, as carried by Avro `timestamp-millis`.
pub type EpochMillis = i64;

/// Longest order, customer or SKU id accepted, in bytes. Ids become partition
/// keys and clustering columns, so an unbounded one is treated as poison.
pub const MAX_ID_BYTES: usize = 128;

/// A codec for the shop's three event sets, checked against the manifest.
pub fn codec() -> Result<Codec, CodecError> {
    Codec::builder()
        .register::<OrderEvent>()
        .register::<InventoryEvent>()
        .register::<ResultEvent>()
        .build()
}

/// A usable id: not blank, and short enough to be a key.
pub(crate) fn check_id(field: &'static str, value: &str) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if value.len() > MAX_ID_BYTES {
        return Err(ValidationError::new(
            field,
            format!("must be at most {MAX_ID_BYTES} bytes, got {}", value.len()),
        ));
    }
    Ok(())
}

pub(crate) fn check_positive(field: &'static str, value: i32) -> Result<(), ValidationError> {
    if value <= 0 {
        return Err(ValidationError::new(
            field,
            format!("must be > 0, got {value}"),
        ));
    }
    Ok(())
}

/// Event times are positive: zero or less means the producer never set one.
pub(crate) fn check_event_time(event_time_ms: EpochMillis) -> Result<(), ValidationError> {
    if event_time_ms <= 0 {
        return Err(ValidationError::new(
            "event_time_ms",
            format!("must be > 0, got {event_time_ms}"),
        ));
    }
    Ok(())
}
