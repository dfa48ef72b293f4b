//! A poison record on its way to the dead-letter topic, and the closed sets
//! that classify it: why it failed ([`ErrorClass`]) and at which step
//! ([`DeadLetterStage`]). Both travel as header values and metric labels, so
//! their spellings are a published contract.

use std::sync::Arc;

use strum::{Display, EnumString, IntoStaticStr, VariantArray};

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
}

#[cfg(test)]
mod tests {
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
}
