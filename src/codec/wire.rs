//! The Confluent wire format framing: byte 0 is the magic byte 0, bytes 1..5
//! the schema id as a big-endian u32, and the rest the Avro binary datum.

use super::DecodeError;

/// The only magic byte defined by the Confluent wire format.
pub const MAGIC: u8 = 0;
/// Magic byte plus schema id.
pub const HEADER_LEN: usize = 5;

/// Splits a message into its schema id and Avro body.
pub fn split(bytes: &[u8]) -> Result<(u32, &[u8]), DecodeError> {
    match bytes {
        [] => Err(DecodeError::Empty),
        [MAGIC, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        [MAGIC, ..] => Err(DecodeError::Truncated),
        [magic, ..] => Err(DecodeError::BadMagic(*magic)),
    }
}

/// Reads only the schema id, for callers that route or label a message
/// before (or instead of) decoding it.
pub fn peek_schema_id(bytes: &[u8]) -> Result<u32, DecodeError> {
    split(bytes).map(|(id, _)| id)
}

/// Appends the header for `schema_id` to `out`.
pub(crate) fn write_header(schema_id: u32, out: &mut Vec<u8>) {
    out.push(MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let mut out = vec![9];
        write_header(0x0102_0304, &mut out);
        out.push(42);
        assert_eq!(split(&out[1..]), Ok((0x0102_0304, &[42u8][..])));
    }

    #[test]
    fn header_errors_by_class() {
        assert_eq!(split(&[]), Err(DecodeError::Empty));
        assert_eq!(split(&[1, 0, 0, 0, 1]), Err(DecodeError::BadMagic(1)));
        assert_eq!(split(&[0]), Err(DecodeError::Truncated));
        assert_eq!(split(&[0, 0, 0, 1]), Err(DecodeError::Truncated));
        // A header with no body is well-framed; the body decoder decides.
        assert_eq!(split(&[0, 0, 0, 0, 7]), Ok((7, &[][..])));
    }
}
