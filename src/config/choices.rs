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
    One,
    LocalOne,
    LocalQuorum,
    Quorum,
    All,
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

/// Parses a config spelling; the message lists every accepted one, and the
/// caller's deserializer adds the key.
fn parse_choice<T>(raw: &str) -> Result<T, String>
where
    T: std::str::FromStr + VariantArray + AsRef<str>,
{
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

config_choice!(SecurityProtocol, CqlConsistency, LogFormat);
