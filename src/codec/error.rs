//! The codec's errors: why a message could not be decoded (each with a stable
//! class for metric labels and dead-letter headers), why an event could not
//! be encoded, and why the embedded schemas could not be loaded.

use apache_avro::error::Details;

/// Longest message kept from an Avro error. Messages travel in dead-letter
/// headers and log lines; some Avro errors embed a whole schema.
const MAX_MESSAGE_BYTES: usize = 512;

/// Why a message could not be turned into a typed event. Every variant is a
/// poison event: retrying the same bytes can never succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty message (no magic byte)")]
    Empty,
    #[error("bad magic byte {0:#04x}: expected 0x00 (Confluent wire format)")]
    BadMagic(u8),
    #[error("message shorter than the 5-byte header (magic byte + schema id)")]
    Truncated,
    #[error("unknown schema id {0}: not in schemas/manifest.toml")]
    UnknownSchemaId(u32),
    #[error("schema id {schema_id} is a {record}, which does not belong on this topic")]
    WrongTopic {
        schema_id: u32,
        record: &'static str,
    },
    #[error("schema id {schema_id}: body is not a valid Avro datum: {message}")]
    Body { schema_id: u32, message: String },
}

impl DecodeError {
    /// A stable snake_case name for this kind of failure, used as a metric
    /// label and a dead-letter header; never changes once published.
    pub fn class(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty",
            DecodeError::BadMagic(_) => "bad_magic",
            DecodeError::Truncated => "truncated_header",
            DecodeError::UnknownSchemaId(_) => "unknown_schema_id",
            DecodeError::WrongTopic { .. } => "wrong_topic",
            DecodeError::Body { .. } => "bad_body",
        }
    }

    /// The schema id from the header, when the header was readable.
    pub fn schema_id(&self) -> Option<u32> {
        match self {
            DecodeError::Empty | DecodeError::BadMagic(_) | DecodeError::Truncated => None,
            DecodeError::UnknownSchemaId(id) => Some(*id),
            DecodeError::WrongTopic { schema_id, .. } | DecodeError::Body { schema_id, .. } => {
                Some(*schema_id)
            }
        }
    }

    pub(crate) fn body(schema_id: u32, error: &apache_avro::Error) -> Self {
        DecodeError::Body {
            schema_id,
            message: avro_message(error),
        }
    }
}

/// Why an event could not be encoded. Galley's own events always match
/// their schema (a test proves it for every type), so in practice only
/// [`EncodeError::UnknownSchemaId`] from a caller-chosen id can occur.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("unknown schema id {0}: not in schemas/manifest.toml")]
    UnknownSchemaId(u32),
    #[error("no schema version {version} of {record} in schemas/manifest.toml")]
    UnknownVersion { record: String, version: u32 },
    #[error("no event set of the {topic} topic is registered with this codec")]
    Unregistered { topic: &'static str },
    #[error("schema id {schema_id}: value does not fit the schema: {message}")]
    Body { schema_id: u32, message: String },
}

impl EncodeError {
    pub(crate) fn body(schema_id: u32, error: &apache_avro::Error) -> Self {
        EncodeError::Body {
            schema_id,
            message: avro_message(error),
        }
    }
}

/// Why the embedded schemas could not be loaded. Raised once, at start-up,
/// so that a broken manifest stops the process instead of poisoning events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("schemas/manifest.toml: {0}")]
    Manifest(String),
    #[error("schemas/{file}: {message}")]
    Schema { file: String, message: String },
    #[error(
        "schema id {writer_id} of {record} cannot be read with its reader schema id {reader_id}: {message}"
    )]
    Incompatible {
        record: &'static str,
        writer_id: u32,
        reader_id: u32,
        message: String,
    },
    #[error("schema id {schema_id}: cannot prepare the Avro reader or writer: {message}")]
    Avro { schema_id: u32, message: String },
}

/// The useful part of an Avro error, bounded in length.
pub(crate) fn avro_message(error: &apache_avro::Error) -> String {
    let text = match error.details() {
        // Its Display carries a debug dump of the whole schema; the field
        // context is what a reader of a dead-letter header needs.
        Details::DeserializeSchemaAware {
            value_type, value, ..
        } => format!("cannot read {value_type}: {value}"),
        _ => error.to_string(),
    };
    truncate(text)
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_keeps_char_boundaries() {
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let cut = truncate(long);
        assert!(cut.len() <= MAX_MESSAGE_BYTES + '…'.len_utf8());
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("short".into()), "short");
    }
}
