//! The closed set of Avro records galley knows how to decode and encode, and
//! the topic role each belongs to.
//!
//! This is the one list to extend when an event type is added (together
//! with its schema file, its manifest entry, and its domain variant): the
//! manifest may only name records listed here, and every record listed here
//! must have a reader schema in the manifest, both checked by `Codec::new`.

use std::fmt;

use serde::Deserialize;

/// Which topic an event travels on. Set per record in `schemas/manifest.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TopicRole {
    /// `shop.orders`, keyed by order id.
    Orders,
    /// `shop.inventory`, keyed by SKU.
    Inventory,
    /// The results topic galley publishes to.
    Results,
}

impl TopicRole {
    pub fn as_str(self) -> &'static str {
        match self {
            TopicRole::Orders => "orders",
            TopicRole::Inventory => "inventory",
            TopicRole::Results => "results",
        }
    }
}

impl fmt::Display for TopicRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! records {
    ($($kind:ident => $role:ident),+ $(,)?) => {
        /// One Avro record (event type), whatever its schema version.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub(crate) enum RecordKind {
            $($kind),+
        }

        impl RecordKind {
            pub(crate) const ALL: &'static [RecordKind] = &[$(RecordKind::$kind),+];
            pub(crate) const COUNT: usize = Self::ALL.len();

            /// The Avro record name, without the namespace.
            pub(crate) fn name(self) -> &'static str {
                match self {
                    $(RecordKind::$kind => stringify!($kind)),+
                }
            }

            pub(crate) fn role(self) -> TopicRole {
                match self {
                    $(RecordKind::$kind => TopicRole::$role),+
                }
            }

            pub(crate) fn from_name(name: &str) -> Option<RecordKind> {
                match name {
                    $(stringify!($kind) => Some(RecordKind::$kind),)+
                    _ => None,
                }
            }

            /// Dense index for per-record tables.
            pub(crate) fn index(self) -> usize {
                self as usize
            }
        }
    };
}

records! {
    OrderPlaced => Orders,
    PaymentCaptured => Orders,
    PaymentFailed => Orders,
    OrderShipped => Orders,
    OrderDelivered => Orders,
    OrderCancelled => Orders,
    StockReservationOutcome => Orders,
    StockReceived => Inventory,
    StockAdjusted => Inventory,
    StockReservationRequested => Inventory,
    StockReleaseRequested => Inventory,
    StockFulfilmentRequested => Inventory,
    OrderStatusChanged => Results,
    OrderRejected => Results,
    StockReserved => Results,
    StockShort => Results,
    LowStockAlert => Results,
}

/// The Avro namespace of every galley record.
pub(crate) const NAMESPACE: &str = "galley.shop";
