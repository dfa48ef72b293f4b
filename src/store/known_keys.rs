//! Which rows of an input partition exist, without asking the database for
//! each: the keys every batch created, recorded in `row_keys` before the
//! rows themselves, and read back whole by the partition's next owner.
//!
//! Most reads a batch makes are of rows that do not exist yet (a new order,
//! its first reservation, a SKU's cell for a new minute). Knowing that a key
//! was never written answers them with no read at all, which keeps results
//! flowing while the database is away and takes the slowest step off the
//! batch's path.
//!
//! The argument, per input partition:
//! - A key's hash is recorded before any row of that key is written (the
//!   recording is a wave of its own, ahead of the rows), so a row in the
//!   database always has its hash recorded. Records only add: each is keyed
//!   by its batch's offset and its own content, so a batch processed again
//!   under at-least-once delivery, ending at the same offset with fewer new
//!   keys (its first run's rows are found this time), cannot replace the
//!   first run's record. Recording a hash whose rows never
//!   got written (a failed batch, an aborted transaction) only costs a read.
//! - The recorded keys are the whole story only if they were recorded from
//!   the start: the row at `batch_offset` -1 says so. Its owner writes it when
//!   the partition has neither recorded keys nor progress, that is when no
//!   row of it can exist yet. A partition that applied events before its
//!   keys were recorded (an older galley) never gets it, and every key of it
//!   is read as before. Rows written without their keys later (changelog
//!   values of the format before keys) add the row at `batch_offset` -2,
//!   which outweighs it for good.
//! - An owner reads the recorded keys after it took the partition, when the
//!   rows of every earlier batch are in the database (the sink has applied
//!   them: see [`crate::pipeline`]); the keys of its own batches it adds as
//!   they commit. A key in neither set has no row: it reads as absent.
//!
//! Hashes are 64-bit FNV-1a of a table tag and the key's parts. A collision
//! makes an absent key look recorded, which costs a read and nothing else.

use std::collections::HashSet;
use std::sync::Arc;

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use super::{execute, prepare, read, StoreError};

/// The `batch_offset` of the row that says a partition's keys are recorded
/// from its start.
const FROM_THE_START: i64 = -1;
/// The `batch_offset` of the row that says rows of the partition were
/// written without their keys: its recorded keys are incomplete for good.
const KEYS_MISSED: i64 = -2;

/// A key's hash as `row_keys` records it.
pub type KeyHash = u64;

/// Hashes a key: a tag naming its table, then its parts, each followed by a
/// separator byte so that ("ab", "c") and ("a", "bc") differ.
pub fn key_hash(table: u8, parts: &[&[u8]]) -> KeyHash {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET_BASIS;
    let mut eat = |byte: u8| {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    };
    eat(table);
    for part in parts {
        for &byte in *part {
            eat(byte);
        }
        eat(0xff);
    }
    hash
}

/// The keys one owner knows to exist in one input partition.
#[derive(Debug, Default)]
pub struct PartitionKeys {
    /// Whether every key the partition ever created is in `hashes`.
    complete: bool,
    hashes: HashSet<KeyHash>,
}

impl PartitionKeys {
    /// Whether a row of this key surely does not exist: only a complete set
    /// can say so.
    pub fn surely_absent(&self, hash: KeyHash) -> bool {
        self.complete && !self.hashes.contains(&hash)
    }

    /// Whether the key is among those known; with an incomplete set, a key
    /// that is not may still exist.
    pub fn knows(&self, hash: KeyHash) -> bool {
        self.hashes.contains(&hash)
    }

    /// Adds the keys a committed batch created.
    pub fn add(&mut self, hashes: &[KeyHash]) {
        self.hashes.extend(hashes.iter().copied());
    }

    pub fn is_complete(&self) -> bool {
        self.complete
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}

/// `row_keys`, read and written.
pub struct KnownKeysStore {
    session: Arc<Session>,
    select: PreparedStatement,
    insert: PreparedStatement,
}

impl KnownKeysStore {
    pub async fn prepare(session: Arc<Session>, keyspace: &str) -> Result<Self, StoreError> {
        let ks = keyspace;
        let select = format!(
            "SELECT batch_offset, key_hashes FROM {ks}.row_keys WHERE topic = ? AND partition = ?"
        );
        let insert = format!(
            "INSERT INTO {ks}.row_keys (topic, partition, batch_offset, content_hash, \
             key_hashes) VALUES (?, ?, ?, ?, ?)"
        );
        Ok(Self {
            select: prepare(&session, &select).await?,
            insert: prepare(&session, &insert).await?,
            session,
        })
    }

    /// Every key recorded for `topic[partition]`. When nothing is recorded
    /// and `has_progress` is false, the partition has no row yet: its keys
    /// are recorded from now on, and the set is complete.
    pub async fn load(
        &self,
        topic: &str,
        partition: i32,
        has_progress: impl std::future::Future<Output = Result<bool, StoreError>>,
    ) -> Result<PartitionKeys, StoreError> {
        let rows: Vec<(i64, Option<Vec<u8>>)> = read::select_all(
            &self.session,
            "select_row_keys",
            "row_keys",
            &self.select,
            (topic, partition),
        )
        .await?;
        let mut keys = PartitionKeys::default();
        let (mut from_the_start, mut missed) = (false, false);
        for (batch_offset, blob) in &rows {
            from_the_start |= *batch_offset == FROM_THE_START;
            missed |= *batch_offset == KEYS_MISSED;
            let blob = blob.as_deref().unwrap_or_default();
            keys.hashes.extend(decode_hashes(blob));
        }
        keys.complete = from_the_start && !missed;
        if rows.is_empty() && !has_progress.await? {
            let values = (topic, partition, FROM_THE_START, 0_i64, Vec::<u8>::new());
            execute(&self.session, "insert_row_keys", &self.insert, values).await?;
            keys.complete = true;
        }
        Ok(keys)
    }

    /// Records the keys a batch of `topic[partition]` created; the batch's
    /// newest record of the partition is at `batch_offset`.
    pub async fn record(
        &self,
        topic: &str,
        partition: i32,
        batch_offset: i64,
        hashes: &[KeyHash],
    ) -> Result<(), StoreError> {
        let blob = encode_hashes(hashes);
        // Keyed by its content too: a batch processed again after a crash
        // may end at the same offset and create other keys (the first run's
        // rows are found this time), and its record must not replace the
        // first one's.
        let content_hash = key_hash(b'c', &[&blob]) as i64;
        let values = (topic, partition, batch_offset, content_hash, blob);
        execute(&self.session, "insert_row_keys", &self.insert, values).await
    }

    /// Says that rows of `topic[partition]` were written without their keys
    /// recorded: from now on every key of it is read.
    pub async fn forget_completeness(&self, topic: &str, partition: i32) -> Result<(), StoreError> {
        let values = (topic, partition, KEYS_MISSED, 0_i64, Vec::<u8>::new());
        execute(&self.session, "insert_row_keys", &self.insert, values).await
    }
}

fn encode_hashes(hashes: &[KeyHash]) -> Vec<u8> {
    hashes.iter().flat_map(|h| h.to_le_bytes()).collect()
}

/// The hashes of a blob; a trailing partial hash (never written) is ignored.
fn decode_hashes(blob: &[u8]) -> impl Iterator<Item = KeyHash> + '_ {
    blob.chunks_exact(8).map(|chunk| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        u64::from_le_bytes(bytes)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_survive_their_blob() {
        let hashes = vec![0, 1, u64::MAX, 0x0123_4567_89ab_cdef];
        let blob = encode_hashes(&hashes);
        assert_eq!(blob.len(), 32);
        assert_eq!(decode_hashes(&blob).collect::<Vec<_>>(), hashes);
    }

    #[test]
    fn a_key_hash_tells_tables_and_part_boundaries_apart() {
        let ab_c = key_hash(b'r', &[b"ab", b"c"]);
        assert_ne!(ab_c, key_hash(b'r', &[b"a", b"bc"]));
        assert_ne!(ab_c, key_hash(b'o', &[b"ab", b"c"]));
        assert_eq!(ab_c, key_hash(b'r', &[b"ab", b"c"]));
        // FNV-1a 64 of "a" (a tag and no parts), the published test vector:
        // recorded hashes must stay valid across builds and platforms.
        assert_eq!(key_hash(b'a', &[]), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn only_a_complete_set_calls_a_key_absent() {
        let mut keys = PartitionKeys::default();
        keys.add(&[7]);
        assert!(
            !keys.surely_absent(8),
            "an incomplete set knows nothing of 8"
        );
        keys.complete = true;
        assert!(keys.surely_absent(8));
        assert!(!keys.surely_absent(7));
        assert!(keys.knows(7));
    }
}
