//! The config values that come from a closed set: each is an enum whose
//! spellings (strum) are the single source for parsing, serializing, error
//! messages and `galley check-config` output.

use std::fmt;

use serde::{Deserialize, Serialize};
use strum::{AsRefStr, Display, EnumString, IntoStaticStr, VariantArray};

/// `kafka.security_protocol`, passed to librdkafka as `security.protocol`.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    AsRefStr,
    IntoStaticStr,
    Display,
    EnumString,
    VariantArray,
)]
#[serde(try_from = "String", into = "&'static str")]
#[strum(serialize_all = "snake_case")]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    /// Whether the protocol authenticates with SASL, so that the SASL
    /// mechanism and credentials must be configured and handed to librdkafka.
    pub fn uses_sasl(self) -> bool {
        match self {
            SecurityProtocol::Plaintext | SecurityProtocol::Ssl => false,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl => true,
        }
    }
}

/// `cql.consistency`, the consistency level of every read and write. Any
/// letter case is accepted, as CQL itself does for consistency names.
///
/// Only levels whose read and write replica sets overlap are offered. A
/// partition's rows are read by its new owner after a handover; a read that
/// misses the previous owner's last write (possible at `one`/`local_one`)
/// would make the new owner write a stale state with a newer timestamp, and
/// the update would be lost. `local_quorum` overlaps only within one
/// datacenter, so it needs `cql.local_datacenter` (see validation).
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    AsRefStr,
    IntoStaticStr,
    Display,
    EnumString,
    VariantArray,
)]
#[serde(try_from = "String", into = "&'static str")]
#[strum(serialize_all = "snake_case", ascii_case_insensitive)]
pub enum CqlConsistency {
    LocalQuorum,
    Quorum,
    All,
}

/// `kafka.partitioner`: how the upstream producers choose a record's
/// partition from its key, which galley's own producer matches and every
/// input record is checked against. Only keyed records matter here, so
/// librdkafka's `*_random` variants (random only for a null key) are the
/// same partitioner as their plain names.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    AsRefStr,
    IntoStaticStr,
    Display,
    EnumString,
    VariantArray,
)]
#[serde(try_from = "String", into = "&'static str")]
#[strum(serialize_all = "snake_case")]
pub enum Partitioner {
    /// Java's default (`murmur2(key) & 0x7fffffff % partitions`); librdkafka's
    /// `murmur2`/`murmur2_random`.
    Murmur2,
    /// librdkafka's default, `consistent_random` (`crc32(key) % partitions`),
    /// which kcat, confluent-kafka and most non-Java producers use.
    Consistent,
}

impl Partitioner {
    /// librdkafka's `partitioner` value that places keyed records the same way.
    pub fn librdkafka_name(self) -> &'static str {
        match self {
            Partitioner::Murmur2 => "murmur2_random",
            Partitioner::Consistent => "consistent_random",
        }
    }
}

/// `pipeline.delivery`: how a batch's effects reach Kafka and the database.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    AsRefStr,
    IntoStaticStr,
    Display,
    EnumString,
    VariantArray,
)]
#[serde(try_from = "String", into = "&'static str")]
#[strum(serialize_all = "snake_case")]
pub enum Delivery {
    /// One Kafka transaction per batch holds its result events, dead
    /// letters, row changes (the changelog) and input offsets; a sink
    /// applies committed row changes to the database. A read_committed
    /// consumer sees each result once. Needs a broker with transactions.
    ExactlyOnce,
    /// Publish, write the rows, then commit the offsets: results may be
    /// repeated after a crash (with the same event ids). For brokers
    /// without transactions, and for comparison.
    AtLeastOnce,
}

/// `log.format`: `text` for people, `json` for log shippers.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    AsRefStr,
    IntoStaticStr,
    Display,
    EnumString,
    VariantArray,
)]
#[serde(try_from = "String", into = "&'static str")]
#[strum(serialize_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

/// Spellings a closed set refuses on purpose, with the reason to show.
trait Refused {
    /// Why `raw` is not offered, when it is a known but unsafe value.
    fn refused(_raw: &str) -> Option<&'static str> {
        None
    }
}

impl Refused for SecurityProtocol {}
impl Refused for LogFormat {}
impl Refused for Partitioner {}
impl Refused for Delivery {}

impl Refused for CqlConsistency {
    fn refused(raw: &str) -> Option<&'static str> {
        let weak = ["one", "local_one", "any", "two", "three"];
        weak.iter().any(|w| raw.eq_ignore_ascii_case(w)).then_some(
            "can lose updates: after a partition handover a read at this level may miss \
             the previous owner's last write, and the new owner then writes a stale state \
             with a newer timestamp; use quorum, all, or local_quorum with \
             cql.local_datacenter set",
        )
    }
}

/// Parses a config spelling; the message lists every accepted one, and the
/// caller's deserializer adds the key.
fn parse_choice<T>(raw: &str) -> Result<T, String>
where
    T: std::str::FromStr + VariantArray + AsRef<str> + Refused,
{
    if let Some(reason) = T::refused(raw) {
        return Err(format!("`{raw}` {reason}"));
    }
    raw.parse().map_err(|_| {
        let accepted: Vec<&str> = T::VARIANTS.iter().map(AsRef::as_ref).collect();
        format!("`{raw}` is not one of {}", accepted.join(", "))
    })
}

/// Deserialization through the strum spellings, and a `Debug` that shows the
/// spelling as a quoted string, so that `galley check-config` prints what the
/// config file would say (`consistency: "local_quorum"`), not a Rust name.
macro_rules! config_choice {
    ($($choice:ty),+ $(,)?) => {$(
        impl TryFrom<String> for $choice {
            type Error = String;
            fn try_from(raw: String) -> Result<Self, String> {
                parse_choice(&raw)
            }
        }

        impl fmt::Debug for $choice {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.as_ref(), f)
            }
        }
    )+};
}

config_choice!(
    SecurityProtocol,
    CqlConsistency,
    LogFormat,
    Partitioner,
    Delivery
);
