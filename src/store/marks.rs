//! An incarnation marker for input topics, without Kafka topic ids (the
//! Kafka client galley uses does not expose them): the identity of the
//! newest record each input partition applied, kept in `partition_marks`
//! (migration 0004) with the partition's progress. A topic deleted and
//! re-created starts its offsets again; once it has grown past every applied
//! offset its end offsets look like the old topic's, but the record at the
//! marked offset is another one. `galley run` reads it before consuming and
//! refuses to start on a difference ([`compare_mark`]).

/// What identifies one record of a partition: its offset, its Kafka
/// timestamp and a hash of its key. Another record at the same offset of a
/// re-created topic differs in its key or in the time it was produced.
/// Serializable: a changelog carries it with the partition's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordMark {
    pub offset: i64,
    /// The record's Kafka timestamp in ms; -1 when it has none.
    pub timestamp_ms: i64,
    pub key_hash: i64,
}

impl RecordMark {
    pub fn of(offset: i64, key: Option<&[u8]>, timestamp_ms: Option<i64>) -> Self {
        Self {
            offset,
            timestamp_ms: timestamp_ms.unwrap_or(-1),
            key_hash: key_hash(key),
        }
    }
}

/// FNV-1a (64 bits) of the key, stable across builds and platforms; a
/// missing key hashes apart from every present one, the empty key included.
fn key_hash(key: Option<&[u8]>) -> i64 {
    let Some(key) = key else {
        return 0;
    };
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in std::iter::once(1u8).chain(key.iter().copied()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// What comparing a partition's mark with the record now at its offset says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incarnation {
    /// The record at the marked offset is the marked one.
    Same,
    /// The marked record cannot be read any more (retention deleted it, or
    /// nothing came back in time): nothing is known either way.
    Unknown,
    /// Another record sits at the marked offset: the topic was re-created.
    Different(String),
}

/// Compares the `mark` of `topic[partition]` with the first record read at
/// or after the marked offset (`found`, if any).
pub fn compare_mark(
    topic: &str,
    partition: i32,
    mark: &RecordMark,
    found: Option<&RecordMark>,
) -> Incarnation {
    let Some(found) = found.filter(|f| f.offset == mark.offset) else {
        return Incarnation::Unknown;
    };
    if found == mark {
        return Incarnation::Same;
    }
    Incarnation::Different(format!(
        "input topic {topic}[{partition}] holds another record at offset {} than the one this \
         keyspace applied there (key hash {} / timestamp {} now, {} / {} applied): the topic \
         was re-created since, and the offsets of its new events mean nothing to this \
         keyspace's watermarks. Run galley on a new keyspace (cql.keyspace, then `galley \
         migrate`) to rebuild from the topic as it is; see README \"Adding partitions\"",
        mark.offset, found.key_hash, found.timestamp_ms, mark.key_hash, mark.timestamp_ms
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_record_is_the_same_incarnation() {
        let mark = RecordMark::of(41, Some(b"SKU-1"), Some(1_000));
        let found = RecordMark::of(41, Some(b"SKU-1"), Some(1_000));
        assert_eq!(compare_mark("t", 2, &mark, Some(&found)), Incarnation::Same);
    }

    #[test]
    fn another_key_or_time_at_the_marked_offset_is_a_recreated_topic() {
        let mark = RecordMark::of(41, Some(b"SKU-1"), Some(1_000));
        for found in [
            RecordMark::of(41, Some(b"SKU-2"), Some(1_000)),
            RecordMark::of(41, Some(b"SKU-1"), Some(2_000)),
            RecordMark::of(41, None, Some(1_000)),
        ] {
            let Incarnation::Different(problem) = compare_mark("t", 2, &mark, Some(&found)) else {
                panic!("{found:?} taken for {mark:?}");
            };
            assert!(problem.contains("t[2]"), "{problem}");
            assert!(problem.contains("re-created"), "{problem}");
        }
    }

    #[test]
    fn a_mark_that_cannot_be_read_proves_nothing() {
        let mark = RecordMark::of(41, Some(b"SKU-1"), Some(1_000));
        let later = RecordMark::of(57, Some(b"SKU-9"), Some(9_000));
        assert_eq!(
            compare_mark("t", 2, &mark, Some(&later)),
            Incarnation::Unknown
        );
        assert_eq!(compare_mark("t", 2, &mark, None), Incarnation::Unknown);
    }

    #[test]
    fn keys_hash_apart() {
        assert_ne!(key_hash(None), key_hash(Some(b"")));
        assert_ne!(key_hash(Some(b"a")), key_hash(Some(b"b")));
        assert_eq!(key_hash(Some(b"a")), key_hash(Some(b"a")));
    }
}
