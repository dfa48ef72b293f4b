//! From input records to validated events, or to dead letters that say why
//! not; and from the events the handlers emit to the messages that publish
//! them.

use super::ShopProcessor;
use crate::codec::EventSet;
use crate::domain::{Emitted, InventoryEvent, OrderEvent, ValidationError};
use crate::pipeline::{
    DeadLetter, DeadLetterStage, ErrorClass, InputRecord, OutgoingMessage, StepError,
};
use crate::shop::{EVENT_ID_HEADER, EVENT_TYPE_HEADER};

/// The event type label of a record whose bytes could not be decoded.
const UNKNOWN_EVENT_TYPE: &str = "unknown";

/// A decoded, validated input event.
pub(super) enum Decoded {
    Order(OrderEvent),
    Inventory(InventoryEvent),
}

impl Decoded {
    fn key(&self) -> &str {
        match self {
            Decoded::Order(e) => e.key(),
            Decoded::Inventory(e) => e.key(),
        }
    }

    pub(super) fn type_name(&self) -> &'static str {
        match self {
            Decoded::Order(e) => e.type_name(),
            Decoded::Inventory(e) => e.type_name(),
        }
    }

    pub(super) fn event_time_ms(&self) -> i64 {
        match self {
            Decoded::Order(e) => e.event_time_ms(),
            Decoded::Inventory(e) => e.event_time_ms(),
        }
    }
}

impl ShopProcessor {
    /// Decodes one partition's records, in order; those that fail become dead
    /// letters.
    pub(super) fn decode_records<'r>(
        &self,
        records: &[&'r InputRecord],
        dead_letters: &mut Vec<DeadLetter>,
    ) -> Vec<(&'r InputRecord, Decoded)> {
        let mut events = Vec::with_capacity(records.len());
        for record in records {
            match self.decode(record) {
                Ok(event) => events.push((*record, event)),
                Err(dead) => dead_letters.push(*dead),
            }
        }
        events
    }

    fn decode(&self, record: &InputRecord) -> Result<Decoded, Box<DeadLetter>> {
        use DeadLetterStage::Decode;
        let Some(payload) = record.payload.as_deref() else {
            return Err(poison(
                record,
                ErrorClass::Empty,
                Decode,
                None,
                "record has no value".into(),
            ));
        };
        if payload.len() > self.settings.max_event_bytes {
            let message = format!(
                "value of {} bytes exceeds pipeline.max_event_bytes ({})",
                payload.len(),
                self.settings.max_event_bytes
            );
            return Err(poison(record, ErrorClass::Oversize, Decode, None, message));
        }
        let topic = &*record.topic;
        let decoded = if topic == self.settings.topics.orders {
            Decoded::Order(self.decode_valid(record, payload, OrderEvent::validate)?)
        } else if topic == self.settings.topics.inventory {
            Decoded::Inventory(self.decode_valid(record, payload, InventoryEvent::validate)?)
        } else {
            let message = format!("galley does not handle topic {topic}");
            return Err(poison(
                record,
                ErrorClass::UnknownTopic,
                Decode,
                None,
                message,
            ));
        };
        check_key(record, decoded.key(), decoded.type_name())?;
        Ok(decoded)
    }

    /// Decodes a record of `S`'s topic and checks its content.
    fn decode_valid<S: EventSet>(
        &self,
        record: &InputRecord,
        payload: &[u8],
        validate: impl Fn(&S) -> Result<(), ValidationError>,
    ) -> Result<S, Box<DeadLetter>> {
        let event = self.codec.decode::<S>(payload).map_err(|e| {
            poison(
                record,
                ErrorClass::from(&e),
                DeadLetterStage::Decode,
                None,
                e.to_string(),
            )
        })?;
        validate(&event).map_err(|e| {
            poison(
                record,
                ErrorClass::Validation,
                DeadLetterStage::Validate,
                Some(event.type_name()),
                e.to_string(),
            )
        })?;
        Ok(event)
    }

    pub(super) fn encode(&self, emitted: &Emitted) -> Result<OutgoingMessage, StepError> {
        let topics = &self.settings.topics;
        let mut payload = Vec::with_capacity(128);
        let (topic, key, event_type, event_id, result) = match emitted {
            Emitted::Result(e) => (
                &topics.results,
                e.key(),
                e.type_name(),
                e.event_id(),
                self.codec.encode(e, &mut payload),
            ),
            Emitted::Inventory(e) => (
                &topics.inventory,
                e.key(),
                e.type_name(),
                inventory_event_id(e),
                self.codec.encode(e, &mut payload),
            ),
            Emitted::Order(e) => (
                &topics.orders,
                e.key(),
                e.type_name(),
                order_event_id(e),
                self.codec.encode(e, &mut payload),
            ),
        };
        // Our own events always fit our own schemas; failing here is a
        // deployment bug that no retry fixes. Stopping loudly is safer than
        // dropping the effect, and than a silent retry loop.
        result.map_err(|e| StepError::Fatal(format!("cannot encode {event_type}: {e}")))?;
        Ok(OutgoingMessage {
            topic: topic.clone(),
            key: key.as_bytes().to_vec(),
            payload,
            headers: vec![
                (EVENT_ID_HEADER, event_id.as_bytes().to_vec()),
                (EVENT_TYPE_HEADER, event_type.as_bytes().to_vec()),
            ],
            event_type,
        })
    }
}

/// A dead letter for `record`. Until the bytes decode, the event's type is
/// unknown; after, a validation or key failure names it (a bounded label).
fn poison(
    record: &InputRecord,
    error_class: ErrorClass,
    stage: DeadLetterStage,
    event_type: Option<&'static str>,
    message: String,
) -> Box<DeadLetter> {
    Box::new(DeadLetter::of(
        record,
        error_class,
        stage,
        event_type.unwrap_or(UNKNOWN_EVENT_TYPE),
        message,
    ))
}

/// The record's Kafka key must be the event's own key.
fn check_key(
    record: &InputRecord,
    expected: &str,
    event_type: &'static str,
) -> Result<(), Box<DeadLetter>> {
    let (class, message) = match record.key.as_deref() {
        Some(k) if k == expected.as_bytes() => return Ok(()),
        None => (
            ErrorClass::MissingKey,
            format!("record has no key; expected `{expected}`"),
        ),
        Some(k) => (
            ErrorClass::KeyMismatch,
            format!(
                "record key `{}` differs from the event's key `{expected}`",
                String::from_utf8_lossy(k)
            ),
        ),
    };
    Err(poison(
        record,
        class,
        DeadLetterStage::Validate,
        Some(event_type),
        message,
    ))
}

fn inventory_event_id(event: &InventoryEvent) -> &str {
    match event {
        InventoryEvent::ReservationRequested(e) => &e.event_id,
        InventoryEvent::ReleaseRequested(e) => &e.event_id,
        InventoryEvent::FulfilmentRequested(e) => &e.event_id,
        InventoryEvent::Received(_) | InventoryEvent::Adjusted(_) => "",
    }
}

fn order_event_id(event: &OrderEvent) -> &str {
    match event {
        OrderEvent::StockOutcome(e) => &e.event_id,
        _ => "",
    }
}
