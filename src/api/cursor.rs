//! Opaque, signed page cursors. A cursor wraps the database's paging state
//! in URL-safe base64 so that a dashboard can hand it back unchanged; what
//! comes back goes to the database, so galley must have made it.
//!
//! Layout before encoding: version (1 byte), list kind (1 byte), page size
//! (u32, big-endian), expiry (u64 seconds since the Unix epoch, big-endian),
//! paging state, then HMAC-SHA256 (32 bytes) over all of that and the list's
//! key (length-prefixed), keyed by `api.cursor_key`.
//!
//! The MAC binds a cursor to its list, its page size and its expiry: a
//! cursor minted by a client, altered, replayed on another list or with
//! another `limit`, or older than `api.cursor_ttl` is refused (400
//! `invalid_cursor`) before the database sees it. A checksum would not do:
//! anyone can compute one, and then hand the database any paging-state
//! bytes. Without `api.cursor_key` a key is drawn at start, so cursors then
//! do not survive a restart and are not accepted by another replica.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

const VERSION: u8 = 2;
const HEADER_BYTES: usize = 1 + 1 + 4 + 8;
const MAC_BYTES: usize = 32;
/// Bytes of a key drawn at start.
const RANDOM_KEY_BYTES: usize = 32;
/// Longest cursor accepted, in characters; paging states are far shorter.
pub const MAX_CURSOR_CHARS: usize = 2048;

type HmacSha256 = Hmac<Sha256>;

/// Which paged list a cursor walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    CustomerOrders = 1,
    Reservations = 2,
}

/// One list, read a page size at a time: what a cursor is bound to.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    pub kind: ListKind,
    /// The list's key, such as the customer id.
    pub key: &'a str,
    /// The request's page size (`limit`).
    pub size: u32,
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
    #[error(
        "the cursor was not made by this galley for this list (altered, of another list, \
         or made before a restart or by another replica without a shared api.cursor_key)"
    )]
    Mismatch,
    #[error("the cursor was made for limit={made_for}; pass the same limit with it")]
    PageSize { made_for: u32 },
    #[error("the cursor has expired (api.cursor_ttl); start again from the first page")]
    Expired,
}

/// Makes and checks cursors with one key and lifetime.
#[derive(Clone)]
pub struct CursorSigner {
    key: Vec<u8>,
    ttl: Duration,
}

impl std::fmt::Debug for CursorSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CursorSigner")
            .field("key", &"<redacted>")
            .field("ttl", &self.ttl)
            .finish()
    }
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl CursorSigner {
    /// Signs with `key`; cursors last `ttl`.
    pub fn new(key: &[u8], ttl: Duration) -> Self {
        Self {
            key: key.to_vec(),
            ttl,
        }
    }

    /// Signs with a key drawn now from the thread's CSPRNG (seeded by the OS).
    pub fn random(ttl: Duration) -> Self {
        let mut key = vec![0u8; RANDOM_KEY_BYTES];
        rand::rng().fill_bytes(&mut key);
        Self { key, ttl }
    }

    /// From `api.cursor_key` (a random key when empty) and `api.cursor_ttl`.
    pub fn from_config(cfg: &crate::config::ApiConfig) -> Self {
        if cfg.cursor_key.is_empty() {
            Self::random(cfg.cursor_ttl)
        } else {
            Self::new(cfg.cursor_key.expose().as_bytes(), cfg.cursor_ttl)
        }
    }

    fn mac(&self, page: &Page<'_>, header: &[u8], state: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length; this cannot fail.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(header);
        mac.update(&(page.key.len() as u64).to_be_bytes());
        mac.update(page.key.as_bytes());
        mac.update(state);
        mac
    }

    /// Wraps a paging state into a cursor for `page`, valid until `now` + ttl.
    pub fn encode(&self, page: Page<'_>, state: &[u8], now: SystemTime) -> String {
        let expires = unix_seconds(now).saturating_add(self.ttl.as_secs().max(1));
        let mut raw = Vec::with_capacity(HEADER_BYTES + state.len() + MAC_BYTES);
        raw.push(VERSION);
        raw.push(page.kind as u8);
        raw.extend_from_slice(&page.size.to_be_bytes());
        raw.extend_from_slice(&expires.to_be_bytes());
        let tag = self.mac(&page, &raw, state).finalize().into_bytes();
        raw.extend_from_slice(state);
        raw.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Unwraps a cursor that this signer made for `page` and that has not
    /// expired at `now`; returns the paging state.
    pub fn decode(
        &self,
        page: Page<'_>,
        cursor: &str,
        now: SystemTime,
    ) -> Result<Vec<u8>, CursorError> {
        if cursor.len() > MAX_CURSOR_CHARS {
            return Err(CursorError::TooLong);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(cursor.as_bytes())
            .map_err(|_| CursorError::NotBase64)?;
        // A paging state is never empty: an empty one would restart the list.
        if raw.len() < HEADER_BYTES + 1 + MAC_BYTES {
            return Err(CursorError::Truncated);
        }
        if raw[0] != VERSION {
            return Err(CursorError::Version);
        }
        let (body, tag) = raw.split_at(raw.len() - MAC_BYTES);
        let (header, state) = body.split_at(HEADER_BYTES);
        if header[1] != page.kind as u8 {
            return Err(CursorError::Mismatch);
        }
        // Constant-time comparison, inside `verify_slice`.
        self.mac(&page, header, state)
            .verify_slice(tag)
            .map_err(|_| CursorError::Mismatch)?;
        // Only now are the fields known to be galley's own.
        let size = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
        if size != page.size {
            return Err(CursorError::PageSize { made_for: size });
        }
        let mut expires = [0u8; 8];
        expires.copy_from_slice(&header[6..HEADER_BYTES]);
        if unix_seconds(now) >= u64::from_be_bytes(expires) {
            return Err(CursorError::Expired);
        }
        Ok(state.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(900);

    fn signer() -> CursorSigner {
        CursorSigner::new(b"a key for the cursor unit tests, 32+ bytes", TTL)
    }

    fn page(kind: ListKind, key: &str, size: u32) -> Page<'_> {
        Page { kind, key, size }
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_767_225_600)
    }

    #[test]
    fn a_cursor_round_trips_for_its_own_list_and_page_size_only() {
        let s = signer();
        let state = b"\x00\x10some-paging-state\xff";
        let orders = page(ListKind::CustomerOrders, "C-000001", 20);
        let cursor = s.encode(orders, state, now());
        assert!(cursor
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(s.decode(orders, &cursor, now()), Ok(state.to_vec()));
        let other_customer = page(ListKind::CustomerOrders, "C-000002", 20);
        assert_eq!(
            s.decode(other_customer, &cursor, now()),
            Err(CursorError::Mismatch)
        );
        let other_list = page(ListKind::Reservations, "C-000001", 20);
        assert_eq!(
            s.decode(other_list, &cursor, now()),
            Err(CursorError::Mismatch)
        );
        let other_size = page(ListKind::CustomerOrders, "C-000001", 21);
        assert_eq!(
            s.decode(other_size, &cursor, now()),
            Err(CursorError::PageSize { made_for: 20 })
        );
    }

    #[test]
    fn a_cursor_expires_after_its_ttl() {
        let s = signer();
        let p = page(ListKind::Reservations, "SKU-1", 5);
        let cursor = s.encode(p, b"state", now());
        let almost = now() + TTL - Duration::from_secs(1);
        assert_eq!(s.decode(p, &cursor, almost), Ok(b"state".to_vec()));
        assert_eq!(s.decode(p, &cursor, now() + TTL), Err(CursorError::Expired));
    }

    #[test]
    fn cursors_of_another_key_forged_or_altered_are_refused() {
        let s = signer();
        let p = page(ListKind::Reservations, "SKU-1", 5);
        let cursor = s.encode(p, b"state-bytes", now());
        let other = CursorSigner::new(b"another key", TTL).encode(p, b"state-bytes", now());
        assert_eq!(s.decode(p, &other, now()), Err(CursorError::Mismatch));
        assert_eq!(
            CursorSigner::random(TTL).decode(p, &cursor, now()),
            Err(CursorError::Mismatch)
        );
        let raw = URL_SAFE_NO_PAD.decode(&cursor).expect("base64");
        // Every single bit flipped past the version byte is caught: the
        // kind, the page size, the expiry, the state and the MAC itself.
        for byte in 1..raw.len() {
            let mut altered = raw.clone();
            altered[byte] ^= 0x01;
            let altered = URL_SAFE_NO_PAD.encode(altered);
            assert_eq!(
                s.decode(p, &altered, now()),
                Err(CursorError::Mismatch),
                "byte {byte}"
            );
        }
    }

    #[test]
    fn damaged_cursors_are_refused() {
        let s = signer();
        let p = page(ListKind::Reservations, "SKU-1", 5);
        let cursor = s.encode(p, b"state-bytes", now());
        let truncated = &cursor[..cursor.len() - 3];
        assert!(s.decode(p, truncated, now()).is_err());
        assert_eq!(s.decode(p, "AQ", now()), Err(CursorError::Truncated));
        assert_eq!(
            s.decode(p, "not base64!", now()),
            Err(CursorError::NotBase64)
        );
        let mut v1 = URL_SAFE_NO_PAD.decode(&cursor).expect("base64");
        v1[0] = 1;
        assert_eq!(
            s.decode(p, &URL_SAFE_NO_PAD.encode(v1), now()),
            Err(CursorError::Version)
        );
        let long = "A".repeat(MAX_CURSOR_CHARS + 1);
        assert_eq!(s.decode(p, &long, now()), Err(CursorError::TooLong));
    }
}
