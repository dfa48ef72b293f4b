//! What a domain declares so that the codec can decode and encode its
//! events without knowing them: an [`EventSet`] is the closed set of records
//! that travel on one topic role, as one Rust enum with a variant per record.
//!
//! A domain writes each event type once, as a struct plus one line of an
//! [`event_set!`](crate::event_set) invocation; the macro generates the enum,
//! its record names, keys, event times and the decode and encode dispatch.
//! [`super::Codec`] then checks at start-up that the schema manifest and the
//! registered sets name exactly the same records.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{DecodeError, EncodeError};

/// The events of one topic role (the manifest's `topic`), one variant per
/// Avro record. Implemented by [`event_set!`](crate::event_set); by hand only
/// where the macro cannot express the set.
pub trait EventSet: Sized + 'static {
    /// The topic role these records travel on, as the manifest names it.
    const TOPIC: &'static str;
    /// The Avro record names (without namespace), in variant order.
    const RECORDS: &'static [&'static str];

    /// Position of this event's record in [`Self::RECORDS`].
    fn record_index(&self) -> usize;

    /// The Kafka key this event travels under.
    fn key(&self) -> &str;

    /// When it happened, ms since the Unix epoch (the event's own clock).
    fn event_time_ms(&self) -> i64;

    /// The Avro record name, also the `event_type` metric label.
    fn type_name(&self) -> &'static str {
        Self::RECORDS[self.record_index()]
    }

    /// Builds the variant at `index` from the datum `decoder` holds.
    fn decode_record<D: RecordDecoder>(index: usize, decoder: D) -> Result<Self, DecodeError>;

    /// Hands this event's payload (the variant's struct) to `encoder`.
    fn encode_record<E: RecordEncoder>(&self, encoder: E) -> Result<(), EncodeError>;
}

/// One datum ready to be read into the struct of the record it was written as.
pub trait RecordDecoder {
    fn decode<T: DeserializeOwned>(self) -> Result<T, DecodeError>;

    /// The error for a datum whose record the set does not list: the codec
    /// never asks for one, since it checks the sets against the manifest.
    fn mismatch(self) -> DecodeError;
}

/// Where an event's payload is written, framed with its record's schema id.
pub trait RecordEncoder {
    fn encode<T: Serialize>(self, value: &T) -> Result<(), EncodeError>;
}

/// Declares an event set: an enum with one variant per record, and its
/// [`EventSet`] implementation. Each variant names its payload struct (the
/// Avro record name is the struct's name) and the struct field that is the
/// event's Kafka key; every payload has an `event_time_ms: i64` field.
///
/// ```ignore
/// galley::event_set! {
///     /// Events on the orders topic, keyed by order id.
///     #[derive(Debug, Clone, PartialEq, Eq)]
///     pub enum OrderEvent: "orders" {
///         Placed(OrderPlaced) keyed by order_id,
///         Shipped(OrderShipped) keyed by order_id,
///     }
/// }
/// ```
#[macro_export]
macro_rules! event_set {
    (
        $(#[$meta:meta])*
        $vis:vis enum $set:ident : $topic:literal {
            $(
                $(#[$variant_meta:meta])*
                $variant:ident($record:ident) keyed by $key:ident
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $set {
            $($(#[$variant_meta])* $variant($record)),+
        }

        impl $crate::codec::EventSet for $set {
            const TOPIC: &'static str = $topic;
            const RECORDS: &'static [&'static str] = &[$(stringify!($record)),+];

            fn record_index(&self) -> usize {
                // Variant positions, counted by the compiler.
                #[allow(non_camel_case_types, dead_code)]
                enum Position { $($variant),+ }
                match self {
                    $($set::$variant(_) => Position::$variant as usize,)+
                }
            }

            fn key(&self) -> &str {
                match self {
                    $($set::$variant(e) => &e.$key,)+
                }
            }

            fn event_time_ms(&self) -> i64 {
                match self {
                    $($set::$variant(e) => e.event_time_ms,)+
                }
            }

            fn decode_record<D: $crate::codec::RecordDecoder>(
                index: usize,
                decoder: D,
            ) -> Result<Self, $crate::codec::DecodeError> {
                #[allow(non_camel_case_types, dead_code)]
                enum Position { $($variant),+ }
                $(
                    if index == Position::$variant as usize {
                        return Ok($set::$variant(decoder.decode::<$record>()?));
                    }
                )+
                Err(decoder.mismatch())
            }

            fn encode_record<E: $crate::codec::RecordEncoder>(
                &self,
                encoder: E,
            ) -> Result<(), $crate::codec::EncodeError> {
                match self {
                    $($set::$variant(e) => encoder.encode(e),)+
                }
            }
        }
    };
}
