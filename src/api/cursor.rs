//! Opaque page cursors. A cursor wraps the database's paging state, the
//! list it belongs to and a checksum, in URL-safe base64, so that a
//! dashboard can hand it back unchanged but nothing else makes sense of it.
//!
//! Layout before encoding: version (1 byte), list kind (1 byte), paging
//! state, then the first 12 bytes of SHA-256(version, kind, list key length,
//! list key, paging state). The checksum binds the cursor to its list: a
//! cursor of another customer, a truncated or edited one fails to decode
//! (400 `invalid_cursor`) before the database sees it. It is not a secret:
//! whoever holds a token may read every list anyway; it only keeps garbage
//! and mix-ups away from the database.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const VERSION: u8 = 1;
const CHECKSUM_BYTES: usize = 12;
/// Longest cursor accepted, in characters; paging states are far shorter.
pub const MAX_CURSOR_CHARS: usize = 2048;

/// Which paged list a cursor walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    CustomerOrders = 1,
    Reservations = 2,
}

/// Why a cursor was refused; all of them are the caller's mistake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("the cursor is longer than any cursor galley hands out")]
    TooLong,
    #[error("the cursor is not URL-safe base64")]
    NotBase64,
    #[error("the cursor is truncated")]
    Truncated,
    #[error("the cursor was made by another version of galley")]
    Version,
    #[error("the cursor belongs to another list or was altered")]
    Mismatch,
}

fn checksum(kind: ListKind, key: &str, state: &[u8]) -> [u8; CHECKSUM_BYTES] {
    let mut hasher = Sha256::new();
    hasher.update([VERSION, kind as u8]);
    hasher.update((key.len() as u64).to_be_bytes());
    hasher.update(key.as_bytes());
    hasher.update(state);
    let digest = hasher.finalize();
    let mut out = [0u8; CHECKSUM_BYTES];
    out.copy_from_slice(&digest[..CHECKSUM_BYTES]);
    out
}

/// Wraps a paging state into a cursor for the list `kind` of `key`.
pub fn encode(kind: ListKind, key: &str, state: &[u8]) -> String {
    let mut raw = Vec::with_capacity(2 + state.len() + CHECKSUM_BYTES);
    raw.push(VERSION);
    raw.push(kind as u8);
    raw.extend_from_slice(state);
    raw.extend_from_slice(&checksum(kind, key, state));
    URL_SAFE_NO_PAD.encode(raw)
}

/// Unwraps a cursor made by [`encode`] for the same list; returns the paging state.
pub fn decode(kind: ListKind, key: &str, cursor: &str) -> Result<Vec<u8>, CursorError> {
    if cursor.len() > MAX_CURSOR_CHARS {
        return Err(CursorError::TooLong);
    }
    let raw = URL_SAFE_NO_PAD
        .decode(cursor.as_bytes())
        .map_err(|_| CursorError::NotBase64)?;
    // A paging state is never empty: an empty one would restart the list.
    if raw.len() < 2 + 1 + CHECKSUM_BYTES {
        return Err(CursorError::Truncated);
    }
    if raw[0] != VERSION {
        return Err(CursorError::Version);
    }
    let (body, sum) = raw.split_at(raw.len() - CHECKSUM_BYTES);
    let state = &body[2..];
    let expected = checksum(kind, key, state);
    if body[1] != kind as u8 || !bool::from(expected.ct_eq(sum)) {
        return Err(CursorError::Mismatch);
    }
    Ok(state.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_for_its_own_list_only() {
        let state = b"\x00\x10some-paging-state\xff";
        let cursor = encode(ListKind::CustomerOrders, "C-000001", state);
        assert!(cursor
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(
            decode(ListKind::CustomerOrders, "C-000001", &cursor),
            Ok(state.to_vec())
        );
        assert_eq!(
            decode(ListKind::CustomerOrders, "C-000002", &cursor),
            Err(CursorError::Mismatch)
        );
        assert_eq!(
            decode(ListKind::Reservations, "C-000001", &cursor),
            Err(CursorError::Mismatch)
        );
    }

    #[test]
    fn damaged_cursors_are_refused() {
        let cursor = encode(ListKind::Reservations, "SKU-1", b"state-bytes");
        let truncated = &cursor[..cursor.len() - 3];
        assert!(decode(ListKind::Reservations, "SKU-1", truncated).is_err());
        assert_eq!(
            decode(ListKind::Reservations, "SKU-1", "AQ"),
            Err(CursorError::Truncated)
        );
        assert_eq!(
            decode(ListKind::Reservations, "SKU-1", "not base64!"),
            Err(CursorError::NotBase64)
        );
        let mut flipped = URL_SAFE_NO_PAD.decode(&cursor).expect("base64");
        flipped[4] ^= 1;
        assert_eq!(
            decode(
                ListKind::Reservations,
                "SKU-1",
                &URL_SAFE_NO_PAD.encode(flipped)
            ),
            Err(CursorError::Mismatch)
        );
        let long = "A".repeat(MAX_CURSOR_CHARS + 1);
        assert_eq!(
            decode(ListKind::Reservations, "SKU-1", &long),
            Err(CursorError::TooLong)
        );
    }
}
