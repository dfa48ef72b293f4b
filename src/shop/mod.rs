//! The shop wired into the engine: decodes the shop's topics, loads and
//! caches the rows each event needs, runs the pure handlers of
//! [`crate::domain`], and turns their decisions into messages and row writes.
//!
//! # Exactly once in effect
//! Every row has one owner, the input partition its key hashes to: orders and
//! their customer-list entries belong to the order's partition of the orders
//! topic; a SKU's stock and reservations to its partition of the inventory
//! topic; sales are counted in one sub-row per (minute, source partition) and
//! summed when read. Each row stores the offset of the last event applied to
//! it, and an event at or below that offset is skipped for that row, so a
//! replayed batch changes nothing it already changed. Handlers compute
//! absolute values from the row they read, never increments, so writing the
//! same decision twice is harmless.
//!
//! Within a batch, rows derived from an order (sales sub-rows, the customer
//! list) are written before the order row itself. A crash between the two
//! leaves the derived rows ahead of the order, never behind: the replay
//! recomputes the order from its older state, and each derived row skips the
//! contributions its watermark already holds. A SKU's stock and reservation
//! rows share one CQL partition and are written in one single-partition
//! batch, which the database applies atomically, because the reservation row
//! decides idempotence and must never disagree with the counts.
//!
//! Writes carry `USING TIMESTAMP <offset>`: a former owner that wakes up late
//! (a paused process whose partitions moved) writes older timestamps than the
//! current owner and cannot overwrite its newer state.
//!
//! The [`ShopProcessor`] that does all this lives in `processor`, one file per
//! step of a batch, with the [`ShopSink`] that writes its changelog's rows
//! under exactly-once delivery.

pub mod api;
pub mod generator;
mod processor;
pub mod projections;
pub mod queries;
pub mod rows;
pub mod send;

use crate::config::TopicsConfig;

pub use self::processor::{ShopProcessor, ShopSink, ShopWrites};

/// Header carrying the deterministic id of every event galley publishes.
pub const EVENT_ID_HEADER: &str = "galley.event_id";
/// Header naming the event type, so consumers can route without decoding.
pub const EVENT_TYPE_HEADER: &str = "galley.event_type";

/// What the shop needs to know about its environment.
#[derive(Debug, Clone)]
pub struct ShopSettings {
    pub topics: TopicsConfig,
    pub low_stock_threshold: i64,
    pub max_event_bytes: usize,
    pub max_concurrent_statements: usize,
    /// Bytes the row caches of all owned partitions may hold together.
    pub row_cache_max_bytes: usize,
}
