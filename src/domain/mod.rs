//! The shop's business logic as pure functions from (state, event) to
//! (new state, emitted events). No I/O, no clock, no randomness: the same
//! input always computes the same output, which is what lets a replay after a
//! crash converge on the same projections and re-send identical result events.

#[cfg(test)]
mod codec_tests;
pub mod events;
pub mod inventory;
pub mod order;
pub mod rfc3339;

use std::fmt;

pub use events::*;

/// Where an input event came from. Deterministic ids are derived from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventOrigin<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// Hands out the ids of the events emitted while handling one input event:
/// `{topic}/{partition}/{offset}/{index}`, index counting from 0 in emission order.
///
/// Because the id depends only on the input's position and the (deterministic)
/// order of emission, a replay re-emits the same ids, and consumers can drop
/// duplicates by id.
#[derive(Debug)]
pub struct EventIds<'a> {
    origin: EventOrigin<'a>,
    next_index: u32,
}

impl<'a> EventIds<'a> {
    pub fn new(origin: EventOrigin<'a>) -> Self {
        Self {
            origin,
            next_index: 0,
        }
    }

    pub fn next_id(&mut self) -> String {
        let id = EventId {
            topic: self.origin.topic,
            partition: self.origin.partition,
            offset: self.origin.offset,
            index: self.next_index,
        }
        .to_string();
        self.next_index += 1;
        id
    }
}

/// The parts of a deterministic event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventId<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub index: u32,
}

impl fmt::Display for EventId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.topic, self.partition, self.offset, self.index
        )
    }
}

/// An event a handler asks the pipeline to publish, by destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Emitted {
    /// To the results topic.
    Result(ResultEvent),
    /// To the inventory topic, keyed by SKU (re-keying an order's request).
    Inventory(InventoryEvent),
    /// To the orders topic, keyed by order id (an inventory answer).
    Order(OrderEvent),
}

/// A well-formed event whose content breaks the contract (a poison event):
/// it goes to the dead-letter topic, it is not a business rejection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// What happened to one input event, for metrics and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The event changed state (or was accepted as a no-op by design).
    Applied,
    /// A business rule refused it; an `OrderRejected` result says why.
    Rejected { reason: &'static str },
    /// A repeated request or answer that changes nothing (idempotence).
    Duplicate,
}

/// Start of the UTC minute containing `ms`.
pub fn minute_of(ms: EpochMillis) -> EpochMillis {
    ms.div_euclid(60_000) * 60_000
}
