//! A poison record on its way to the dead-letter topic, the closed sets
//! that classify it (why it failed, [`ErrorClass`], and at which step,
//! [`DeadLetterStage`]), and the record it becomes: the original key, value,
//! headers and timestamp, plus Kafka Connect's `__connect.errors.*` context.
//! Class and stage travel as header values and metric labels, so their
//! spellings are a published contract (schemas/README.md).
//!
//! A dead letter must never be larger than the producer's
//! `message.max.bytes` (`kafka.message_max_bytes`): librdkafka refuses it
//! for good, and retrying it would hold every partition of its batch
//! forever. So one that does not fit is cut down ([`Fit`]), and headers give
//! the original value's size and SHA-256.

use std::sync::Arc;

use rdkafka::message::{Header, Headers, OwnedHeaders};
use sha2::{Digest, Sha256};
use strum::{Display, EnumString, IntoStaticStr, VariantArray};

use super::InputRecord;
use crate::codec::DecodeError;

/// Why a record is poison. The snake_case spelling is the `error_class`
/// metric label and the `__connect.errors.exception.class.name`-style header
/// value; it never changes once published.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Display, EnumString, IntoStaticStr, VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum ErrorClass {
    /// The record has no value.
    Empty,
    /// The value is larger than `pipeline.max_event_bytes`.
    Oversize,
    /// The first byte is not the wire format's magic byte.
    BadMagic,
    /// Shorter than the magic byte and schema id.
    TruncatedHeader,
    /// The schema id is not in the manifest.
    UnknownSchemaId,
    /// A known record that belongs on another topic.
    WrongTopic,
    /// The body is not a valid datum of its schema.
    BadBody,
    /// Decoded, but its content breaks the contract.
    Validation,
    /// Read from a topic that no handler serves.
    UnknownTopic,
    /// The record has no key.
    MissingKey,
    /// The record's key is not the event's own key.
    KeyMismatch,
    /// The record is on another partition than its key's under
    /// `kafka.partitioner`: its producer partitions keys another way.
    WrongPartition,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl From<&DecodeError> for ErrorClass {
    fn from(error: &DecodeError) -> Self {
        match error {
            DecodeError::Empty => ErrorClass::Empty,
            DecodeError::BadMagic(_) => ErrorClass::BadMagic,
            DecodeError::Truncated => ErrorClass::TruncatedHeader,
            DecodeError::UnknownSchemaId(_) => ErrorClass::UnknownSchemaId,
            DecodeError::WrongTopic { .. } => ErrorClass::WrongTopic,
            DecodeError::Body { .. } => ErrorClass::BadBody,
        }
    }
}

/// The step of processing at which a record turned out to be poison.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Display, EnumString, IntoStaticStr, VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum DeadLetterStage {
    /// Reading the bytes into a typed event.
    Decode,
    /// Checking a decoded event against the contract (fields, key).
    Validate,
}

impl DeadLetterStage {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The stage in Kafka Connect's names (`__connect.errors.stage`):
    /// decoding bytes into an event is what Connect's value converter does;
    /// checking the event is the task's own processing of it.
    pub fn connect_name(self) -> &'static str {
        match self {
            DeadLetterStage::Decode => "VALUE_CONVERTER",
            DeadLetterStage::Validate => "TASK_PUT",
        }
    }
}

/// A poison record and why it could not be processed.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// Why it is poison (a metric label).
    pub error_class: ErrorClass,
    /// The event's type when its bytes could be decoded, else `unknown` (a metric label).
    pub event_type: &'static str,
    pub message: String,
    /// Where in processing it failed.
    pub stage: DeadLetterStage,
    /// The original record's headers, written back as they were.
    pub headers: Option<OwnedHeaders>,
    /// The original record's timestamp, kept on the dead letter.
    pub timestamp_ms: Option<i64>,
}

impl DeadLetter {
    /// A dead letter carrying everything of `record`: key, value, headers, timestamp.
    pub fn of(
        record: &InputRecord,
        error_class: ErrorClass,
        stage: DeadLetterStage,
        event_type: &'static str,
        message: String,
    ) -> Self {
        DeadLetter {
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
            key: record.key.clone(),
            payload: record.payload.clone(),
            error_class,
            event_type,
            message,
            stage,
            headers: record.headers.clone(),
            timestamp_ms: record.timestamp_ms,
        }
    }

    /// `{topic}/{partition}/{offset}` of the poison record: the same on
    /// every copy, so a consumer of the dead-letter topic drops repeats by it.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.topic, self.partition, self.offset)
    }
}

/// Kafka Connect's dead-letter header names, which existing tooling reads,
/// and galley's own.
pub mod headers {
    pub const TOPIC: &str = "__connect.errors.topic";
    pub const PARTITION: &str = "__connect.errors.partition";
    pub const OFFSET: &str = "__connect.errors.offset";
    pub const CLASS: &str = "__connect.errors.exception.class.name";
    pub const MESSAGE: &str = "__connect.errors.exception.message";
    pub const STAGE: &str = "__connect.errors.stage";
    pub const CONNECTOR: &str = "__connect.errors.connector.name";
    pub const TASK_ID: &str = "__connect.errors.task.id";
    /// `{topic}/{partition}/{offset}` of the poison record.
    pub const ID: &str = "galley.dead_letter_id";
    /// Only on a dead letter whose value was cut: the original value's size.
    pub const ORIGINAL_BYTES: &str = "galley.original_value_bytes";
    /// Only on a dead letter whose value was cut: the original value's SHA-256, lower-case hex.
    pub const ORIGINAL_SHA256: &str = "galley.original_value_sha256";
}

/// Where dead letters go and what bounds them.
#[derive(Debug, Clone)]
pub struct DeadLetterTarget {
    pub topic: String,
    /// The producer's `message.max.bytes`: no dead letter may be larger.
    pub max_message_bytes: usize,
    /// `__connect.errors.task.id`: which galley process wrote it.
    pub task_id: String,
}

/// How much of the poison record a dead letter carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Key, value, headers and timestamp as they were.
    Whole,
    /// The value is cut to a prefix that fits; all else is kept.
    Truncated,
    /// The last resort, after the broker refused the record for good or when
    /// the key and headers alone do not fit: no value, no original headers,
    /// no original timestamp, and the key only if it fits.
    Stripped,
}

/// Room kept for the record's framing in librdkafka's size check, and for
/// each header's length prefixes: more than either ever takes.
const RECORD_OVERHEAD: usize = 512;
const HEADER_OVERHEAD: usize = 16;
/// Longest error message written: it names a field or a cause, not data.
const MESSAGE_MAX_BYTES: usize = 4096;

/// A dead letter as it is sent: owned headers, and how much of the key and
/// value go with it.
pub struct DeadLetterRecord<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: OwnedHeaders,
    pub timestamp_ms: Option<i64>,
    pub fit: Fit,
}

impl DeadLetter {
    /// The record to send: whole when it fits `target.max_message_bytes`,
    /// else cut down; `Stripped` whatever its size when `stripped` is asked.
    pub fn record<'a>(&'a self, target: &DeadLetterTarget, stripped: bool) -> DeadLetterRecord<'a> {
        let mut message = self.message.as_str();
        if message.len() > MESSAGE_MAX_BYTES {
            let mut end = MESSAGE_MAX_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message = &message[..end];
        }
        let context = self.context_headers(target, message);
        let size_of = |hs: &[(&str, Vec<u8>)]| -> usize {
            hs.iter()
                .map(|(k, v)| k.len() + v.len() + HEADER_OVERHEAD)
                .sum()
        };
        let original: Vec<(&str, Option<&[u8]>)> = self
            .headers
            .as_ref()
            .map(|h| h.iter().map(|h| (h.key, h.value)).collect())
            .unwrap_or_default();
        let original_size: usize = original
            .iter()
            .map(|(k, v)| k.len() + v.map_or(0, <[u8]>::len) + HEADER_OVERHEAD)
            .sum();
        let value = self.payload.as_deref().unwrap_or_default();
        let key_len = self.key.as_ref().map_or(0, Vec::len);
        // The two headers a cut value adds: a size and 64 hex digits.
        let cut_headers = 2 * HEADER_OVERHEAD + 64 + 20 + 64;
        let limit = target.max_message_bytes;
        let fixed = RECORD_OVERHEAD + size_of(&context) + original_size + key_len;
        let fit = if stripped || fixed + cut_headers >= limit {
            Fit::Stripped
        } else if fixed + value.len() <= limit {
            Fit::Whole
        } else {
            Fit::Truncated
        };
        // What a cut value may keep.
        let room = limit.saturating_sub(fixed + cut_headers);
        let mut headers = OwnedHeaders::new_with_capacity(original.len() + context.len() + 2);
        if fit != Fit::Stripped {
            // Original headers first, as they were; galley's after them, so
            // that a reader taking the last header of a name gets galley's.
            for (key, value) in &original {
                headers = headers.insert(Header { key, value: *value });
            }
        }
        for (key, value) in &context {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_slice()),
            });
        }
        let (value, key) = match fit {
            Fit::Whole => (self.payload.as_deref(), self.key.as_deref()),
            Fit::Truncated => (Some(&value[..room.min(value.len())]), self.key.as_deref()),
            Fit::Stripped => {
                let room = target
                    .max_message_bytes
                    .saturating_sub(RECORD_OVERHEAD + size_of(&context) + cut_headers);
                (None, self.key.as_deref().filter(|k| k.len() <= room))
            }
        };
        if fit != Fit::Whole {
            headers = with_original_size_and_digest(headers, self.payload.as_deref());
        }
        DeadLetterRecord {
            key,
            value,
            headers,
            // A broker may refuse an old timestamp for good: the stripped
            // copy takes the time of sending instead.
            timestamp_ms: self.timestamp_ms.filter(|_| fit != Fit::Stripped),
            fit,
        }
    }

    /// Kafka Connect's context headers and galley's id, in the order written.
    fn context_headers(
        &self,
        target: &DeadLetterTarget,
        message: &str,
    ) -> Vec<(&'static str, Vec<u8>)> {
        vec![
            (headers::TOPIC, self.topic.as_bytes().to_vec()),
            (headers::PARTITION, self.partition.to_string().into_bytes()),
            (headers::OFFSET, self.offset.to_string().into_bytes()),
            (
                headers::CLASS,
                self.error_class.as_str().as_bytes().to_vec(),
            ),
            (headers::MESSAGE, message.as_bytes().to_vec()),
            (
                headers::STAGE,
                self.stage.connect_name().as_bytes().to_vec(),
            ),
            (headers::CONNECTOR, b"galley".to_vec()),
            (headers::TASK_ID, target.task_id.as_bytes().to_vec()),
            (headers::ID, self.id().into_bytes()),
        ]
    }
}

/// Adds the headers that let a reader check a cut value against the original.
fn with_original_size_and_digest(headers: OwnedHeaders, value: Option<&[u8]>) -> OwnedHeaders {
    let value = value.unwrap_or_default();
    let digest: String = Sha256::digest(value)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let size = value.len().to_string();
    [
        (headers::ORIGINAL_BYTES, size.as_bytes()),
        (headers::ORIGINAL_SHA256, digest.as_bytes()),
    ]
    .into_iter()
    .fold(headers, |headers, (key, value)| {
        headers.insert(Header {
            key,
            value: Some(value),
        })
    })
}

/// Whether the broker or librdkafka refused a dead letter for good, for a
/// reason that a smaller record without the original timestamp avoids.
pub fn refused_for_good(error: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        error.rdkafka_error_code(),
        Some(Code::MessageSizeTooLarge | Code::InvalidTimestamp | Code::InvalidRecord)
    )
}

#[cfg(test)]
#[path = "dead_letter_tests.rs"]
mod tests;
