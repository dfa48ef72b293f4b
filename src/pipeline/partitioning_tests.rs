//! Unit tests of the partitioner hashes, against published vectors, and of
//! the split of a batch into well and badly placed records.

use super::*;

/// Apache Kafka's own vectors (`UtilsTest.testMurmur2` in the Java client).
#[test]
fn murmur2_equals_the_java_clients_hash() {
    let cases: [(&[u8], i32); 6] = [
        (b"21", -973_932_308),
        (b"foobar", -790_332_482),
        (b"a-little-bit-long-string", -985_981_536),
        (b"a-little-bit-longer-string", -1_486_304_829),
        (
            b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58_897_971,
        ),
        (b"abc", 479_470_107),
    ];
    for (key, hash) in cases {
        assert_eq!(murmur2(key), hash, "{}", String::from_utf8_lossy(key));
    }
}

/// CRC-32's check value (the hash of "123456789") and two more.
#[test]
fn crc32_is_the_ieee_crc() {
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    assert_eq!(crc32(b""), 0);
    assert_eq!(
        crc32(b"The quick brown fox jumps over the lazy dog"),
        0x414f_a339
    );
}

#[test]
fn partitions_are_the_positive_hash_modulo_the_count() {
    // Java: toPositive(murmur2) % n; -973932308 & 0x7fffffff = 1173551340.
    assert_eq!(
        partition_for(Partitioner::Murmur2, b"21", 6),
        1_173_551_340 % 6
    );
    assert_eq!(
        partition_for(Partitioner::Murmur2, b"abc", 7),
        479_470_107 % 7
    );
    // librdkafka: crc32(key) % n, unsigned.
    assert_eq!(
        partition_for(Partitioner::Consistent, b"123456789", 6),
        (0xcbf4_3926u32 % 6) as i32
    );
    for n in 1..=64 {
        for key in [&b"O-000001"[..], b"SKU-00042", b""] {
            for p in [Partitioner::Murmur2, Partitioner::Consistent] {
                assert!((0..n).contains(&partition_for(p, key, n)));
            }
        }
    }
}

fn record(topic: &str, partition: i32, offset: i64, key: Option<&str>) -> InputRecord {
    InputRecord {
        topic: Arc::from(topic),
        partition,
        offset,
        key: key.map(|k| k.as_bytes().to_vec()),
        payload: Some(vec![0, 0, 0, 0, 1]),
        timestamp_ms: None,
        headers: None,
    }
}

#[test]
fn a_record_off_its_keys_partition_becomes_a_wrong_partition_dead_letter() {
    let mut check = PartitionCheck::new(Partitioner::Murmur2);
    check.counts.insert("t".into(), 6);
    let key = "O-000001";
    let home = partition_for(Partitioner::Murmur2, key.as_bytes(), 6);
    let away = (home + 1) % 6;
    let right = record("t", home, 10, Some(key));
    let wrong = record("t", away, 11, Some(key));
    let keyless = record("t", away, 12, None);
    let unknown_topic = record("other", away, 13, Some(key));
    assert!(check.is_placed_right(&right));
    assert!(!check.is_placed_right(&wrong));
    assert!(check.is_placed_right(&keyless), "left to the processor");
    assert!(
        check.is_placed_right(&unknown_topic),
        "no count, no verdict"
    );

    let dead = check.dead_letter(&wrong);
    assert_eq!(dead.error_class, ErrorClass::WrongPartition);
    assert_eq!(dead.error_class.as_str(), "wrong_partition");
    assert_eq!((dead.partition, dead.offset), (away, 11));
    assert_eq!(dead.key.as_deref(), Some(key.as_bytes()));
    assert_eq!(dead.payload, wrong.payload, "the original value is kept");
    for part in [
        format!("partition {home} of t"),
        format!("on partition {away}"),
        "kafka.partitioner = murmur2".into(),
        "murmur2_random".into(),
    ] {
        assert!(dead.message.contains(&part), "{part} in {}", dead.message);
    }
}

#[test]
fn the_consistent_partitioner_places_keys_by_crc32() {
    let mut check = PartitionCheck::new(Partitioner::Consistent);
    check.counts.insert("t".into(), 6);
    let key = b"SKU-00001";
    let crc_home = (crc32(key) % 6) as i32;
    let mut r = record("t", crc_home, 1, Some("SKU-00001"));
    assert!(check.is_placed_right(&r));
    r.partition = (crc_home + 1) % 6;
    assert!(!check.is_placed_right(&r));
}
