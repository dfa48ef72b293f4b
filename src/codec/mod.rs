//! Avro schemas, the Confluent wire format, and typed decoding and encoding
//! of the shop's events.
//!
//! - Schemas: `schemas/` (see its README) is compiled into the binary by
//!   `build.rs`, which generates a table of `include_str!` over the manifest
//!   and every `.avsc`; the manifest is the source of truth for schema ids
//!   until a schema registry is configured. Nothing is read from disk at run
//!   time.
//! - Wire format: byte 0 is the magic byte 0, bytes 1..5 the schema id as a
//!   big-endian u32, the rest one Avro binary datum with nothing after it.
//! - [`Codec::new`] parses every schema once, checks that each older writer
//!   schema is readable by its record's reader (latest) schema, and prepares
//!   one Avro reader and writer per schema id. Decoding then takes one of two
//!   paths, chosen once per id:
//!   - writer schema identical (by canonical form) to the reader schema: the
//!     datum is deserialized straight into the domain struct, no
//!     intermediate `Value` (the hot path for current producers);
//!   - an older writer version: Avro schema resolution through a `Value`
//!     (defaults filled in, removed fields dropped), then `from_value`.
//! - Decoding allocations are capped process-wide at
//!   [`MAX_ALLOCATION_BYTES`] (apache-avro's set-once global, set by
//!   [`Codec::new`]): a string length prefix claiming more fails before
//!   anything is allocated. An array's claimed item count is not trusted
//!   either: preallocation is capped (by serde, or by the same limit on the
//!   resolving path) and reading runs out of input long before memory does.
//! - Encoding always uses the record's reader schema id and appends to the
//!   caller's buffer, so a producer loop can reuse one `Vec`.

mod error;
mod manifest;
mod records;
mod wire;

#[cfg(test)]
mod tests;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::writer::datum::GenericDatumWriter;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::domain::{InventoryEvent, OrderEvent, OrderLine, OrderPlaced, ResultEvent};

pub use error::{CodecError, DecodeError, EncodeError};
pub use records::TopicRole;
pub use wire::{peek_schema_id, HEADER_LEN, MAGIC};

use manifest::Registered;
use records::RecordKind;

/// The most bytes one decoded string, byte array or collection may claim.
/// Far above any legitimate event (Kafka's default message limit is 1 MiB),
/// far below what a corrupt length prefix could make the decoder reserve.
pub const MAX_ALLOCATION_BYTES: usize = 16 * 1024 * 1024;

/// Decodes and encodes every event type in the manifest. Build one at
/// start-up and share it (`Arc<Codec>`); all methods take `&self`.
pub struct Codec {
    /// Sorted by schema id, for binary search on the hot path.
    entries: Vec<Entry>,
    /// Per [`RecordKind::index`], the position in `entries` of the reader
    /// schema that encoding uses.
    latest: [usize; RecordKind::COUNT],
}

struct Entry {
    id: u32,
    kind: RecordKind,
    version: u32,
    read: ReadPlan,
    writer: GenericDatumWriter<'static>,
}

enum ReadPlan {
    /// Writer schema = reader schema: deserialize straight into the struct.
    Direct(GenericDatumReader<'static>),
    /// Older writer: decode with the writer schema, resolve against the
    /// reader schema (both prepared once), then convert the `Value`.
    Resolve(GenericDatumReader<'static>),
}

impl Codec {
    /// Loads the embedded manifest and prepares every schema id.
    ///
    /// Fails if the manifest or a schema is malformed, or if an older writer
    /// schema cannot be read by its record's reader schema: errors that must
    /// stop start-up rather than turn every event into poison.
    pub fn new() -> Result<Codec, CodecError> {
        Self::build(false)
    }

    fn build(force_resolve: bool) -> Result<Codec, CodecError> {
        let cap = apache_avro::util::max_allocation_bytes(MAX_ALLOCATION_BYTES);
        if cap != MAX_ALLOCATION_BYTES {
            // The limit is a set-once global; something decoded Avro before
            // the codec existed. Decoding still fails safely, just later.
            tracing::warn!(
                configured = cap,
                wanted = MAX_ALLOCATION_BYTES,
                "Avro allocation limit was already set before the codec was built"
            );
        }

        let registry = manifest::embedded()?;
        let mut entries = Vec::with_capacity(registry.schemas.len());
        let mut latest = [usize::MAX; RecordKind::COUNT];
        for registered in &registry.schemas {
            let reader = registry.reader_of(registered.kind).ok_or_else(|| {
                CodecError::Manifest(format!("{} has no reader schema", registered.kind.name()))
            })?;
            if registered.reader {
                latest[registered.kind.index()] = entries.len();
            }
            entries.push(Entry::prepare(registered, reader, force_resolve)?);
        }
        // The manifest loader already demands a reader per record; checked
        // again here because `encode_latest` indexes with it.
        if let Some(missing) = RecordKind::ALL
            .iter()
            .find(|kind| latest[kind.index()] == usize::MAX)
        {
            return Err(CodecError::Manifest(format!(
                "{} has no reader schema",
                missing.name()
            )));
        }
        Ok(Codec { entries, latest })
    }

    /// Decodes a message from the orders topic.
    pub fn decode_order(&self, bytes: &[u8]) -> Result<OrderEvent, DecodeError> {
        let (entry, body) = self.entry_for(bytes, TopicRole::Orders)?;
        Ok(match entry.kind {
            RecordKind::OrderPlaced => OrderEvent::Placed(entry.decode(body)?),
            RecordKind::PaymentCaptured => OrderEvent::PaymentCaptured(entry.decode(body)?),
            RecordKind::PaymentFailed => OrderEvent::PaymentFailed(entry.decode(body)?),
            RecordKind::OrderShipped => OrderEvent::Shipped(entry.decode(body)?),
            RecordKind::OrderDelivered => OrderEvent::Delivered(entry.decode(body)?),
            RecordKind::OrderCancelled => OrderEvent::Cancelled(entry.decode(body)?),
            RecordKind::StockReservationOutcome => OrderEvent::StockOutcome(entry.decode(body)?),
            _ => return Err(entry.wrong_topic()),
        })
    }

    /// Decodes a message from the inventory topic.
    pub fn decode_inventory(&self, bytes: &[u8]) -> Result<InventoryEvent, DecodeError> {
        let (entry, body) = self.entry_for(bytes, TopicRole::Inventory)?;
        Ok(match entry.kind {
            RecordKind::StockReceived => InventoryEvent::Received(entry.decode(body)?),
            RecordKind::StockAdjusted => InventoryEvent::Adjusted(entry.decode(body)?),
            RecordKind::StockReservationRequested => {
                InventoryEvent::ReservationRequested(entry.decode(body)?)
            }
            RecordKind::StockReleaseRequested => {
                InventoryEvent::ReleaseRequested(entry.decode(body)?)
            }
            RecordKind::StockFulfilmentRequested => {
                InventoryEvent::FulfilmentRequested(entry.decode(body)?)
            }
            _ => return Err(entry.wrong_topic()),
        })
    }

    /// Decodes a message from the results topic (tests, downstream consumers).
    pub fn decode_result(&self, bytes: &[u8]) -> Result<ResultEvent, DecodeError> {
        let (entry, body) = self.entry_for(bytes, TopicRole::Results)?;
        Ok(match entry.kind {
            RecordKind::OrderStatusChanged => ResultEvent::OrderStatusChanged(entry.decode(body)?),
            RecordKind::OrderRejected => ResultEvent::OrderRejected(entry.decode(body)?),
            RecordKind::StockReserved => ResultEvent::StockReserved(entry.decode(body)?),
            RecordKind::StockShort => ResultEvent::StockShort(entry.decode(body)?),
            RecordKind::LowStockAlert => ResultEvent::LowStockAlert(entry.decode(body)?),
            _ => return Err(entry.wrong_topic()),
        })
    }

    /// Appends `event`, framed with its record's reader schema id, to `out`.
    pub fn encode_order(&self, event: &OrderEvent, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match event {
            OrderEvent::Placed(e) => self.encode_latest(RecordKind::OrderPlaced, e, out),
            OrderEvent::PaymentCaptured(e) => {
                self.encode_latest(RecordKind::PaymentCaptured, e, out)
            }
            OrderEvent::PaymentFailed(e) => self.encode_latest(RecordKind::PaymentFailed, e, out),
            OrderEvent::Shipped(e) => self.encode_latest(RecordKind::OrderShipped, e, out),
            OrderEvent::Delivered(e) => self.encode_latest(RecordKind::OrderDelivered, e, out),
            OrderEvent::Cancelled(e) => self.encode_latest(RecordKind::OrderCancelled, e, out),
            OrderEvent::StockOutcome(e) => {
                self.encode_latest(RecordKind::StockReservationOutcome, e, out)
            }
        }
    }

    /// Appends `event`, framed with its record's reader schema id, to `out`.
    pub fn encode_inventory(
        &self,
        event: &InventoryEvent,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        match event {
            InventoryEvent::Received(e) => self.encode_latest(RecordKind::StockReceived, e, out),
            InventoryEvent::Adjusted(e) => self.encode_latest(RecordKind::StockAdjusted, e, out),
            InventoryEvent::ReservationRequested(e) => {
                self.encode_latest(RecordKind::StockReservationRequested, e, out)
            }
            InventoryEvent::ReleaseRequested(e) => {
                self.encode_latest(RecordKind::StockReleaseRequested, e, out)
            }
            InventoryEvent::FulfilmentRequested(e) => {
                self.encode_latest(RecordKind::StockFulfilmentRequested, e, out)
            }
        }
    }

    /// Appends `event`, framed with its record's reader schema id, to `out`.
    pub fn encode_result(&self, event: &ResultEvent, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match event {
            ResultEvent::OrderStatusChanged(e) => {
                self.encode_latest(RecordKind::OrderStatusChanged, e, out)
            }
            ResultEvent::OrderRejected(e) => self.encode_latest(RecordKind::OrderRejected, e, out),
            ResultEvent::StockReserved(e) => self.encode_latest(RecordKind::StockReserved, e, out),
            ResultEvent::StockShort(e) => self.encode_latest(RecordKind::StockShort, e, out),
            ResultEvent::LowStockAlert(e) => self.encode_latest(RecordKind::LowStockAlert, e, out),
        }
    }

    /// Appends `e` written with schema version 1 of `OrderPlaced` (no
    /// `currency`), as a producer that predates version 2 would send it.
    /// For tests and sample data; galley itself always writes the latest.
    pub fn encode_order_placed_v1(
        &self,
        e: &OrderPlaced,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        /// Version 1's fields only: its schema has no `currency` to write.
        #[derive(Serialize)]
        struct OrderPlacedV1<'a> {
            order_id: &'a str,
            customer_id: &'a str,
            lines: &'a [OrderLine],
            event_time_ms: i64,
        }
        let kind = RecordKind::OrderPlaced;
        let entry = self
            .entries
            .iter()
            .find(|entry| entry.kind == kind && entry.version == 1)
            .ok_or(EncodeError::UnknownVersion {
                record: kind.name(),
                version: 1,
            })?;
        let v1 = OrderPlacedV1 {
            order_id: &e.order_id,
            customer_id: &e.customer_id,
            lines: &e.lines,
            event_time_ms: e.event_time_ms,
        };
        entry.encode(&v1, out)
    }

    /// Appends `value` framed with an explicit schema id, which must be in
    /// the manifest; `value`'s fields must match that schema version. For
    /// tests and tools that need to produce an older writer version.
    pub fn encode_with_schema_id<T: Serialize>(
        &self,
        schema_id: u32,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        self.lookup(schema_id)
            .ok_or(EncodeError::UnknownSchemaId(schema_id))?
            .encode(value, out)
    }

    /// Every schema id this codec accepts, ascending.
    pub fn schema_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.entries.iter().map(|entry| entry.id)
    }

    /// The topic role a schema id belongs to, if it is known.
    pub fn topic_of(&self, schema_id: u32) -> Option<TopicRole> {
        self.lookup(schema_id).map(|entry| entry.kind.role())
    }

    fn lookup(&self, schema_id: u32) -> Option<&Entry> {
        self.entries
            .binary_search_by_key(&schema_id, |entry| entry.id)
            .ok()
            .map(|position| &self.entries[position])
    }

    fn entry_for<'b>(
        &self,
        bytes: &'b [u8],
        role: TopicRole,
    ) -> Result<(&Entry, &'b [u8]), DecodeError> {
        let (schema_id, body) = wire::split(bytes)?;
        let entry = self
            .lookup(schema_id)
            .ok_or(DecodeError::UnknownSchemaId(schema_id))?;
        if entry.kind.role() != role {
            return Err(entry.wrong_topic());
        }
        Ok((entry, body))
    }

    fn encode_latest<T: Serialize>(
        &self,
        kind: RecordKind,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        // `latest` is complete by construction (checked in `build`).
        self.entries[self.latest[kind.index()]].encode(value, out)
    }
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|entry| {
                (
                    entry.id,
                    entry.kind.name(),
                    entry.version,
                    matches!(entry.read, ReadPlan::Direct(_)),
                )
            }))
            .finish()
    }
}

impl Entry {
    fn prepare(
        registered: &'static Registered,
        reader: &'static Registered,
        force_resolve: bool,
    ) -> Result<Entry, CodecError> {
        let avro = |e: apache_avro::Error| CodecError::Avro {
            schema_id: registered.id,
            message: error::avro_message(&e),
        };
        let same_layout =
            registered.schema.canonical_form() == reader.schema.canonical_form() && !force_resolve;
        let read = if same_layout {
            ReadPlan::Direct(
                GenericDatumReader::builder(&registered.schema)
                    .build()
                    .map_err(avro)?,
            )
        } else {
            SchemaCompatibility::can_read(&registered.schema, &reader.schema).map_err(|e| {
                CodecError::Incompatible {
                    record: registered.kind.name(),
                    writer_id: registered.id,
                    reader_id: reader.id,
                    message: e.to_string(),
                }
            })?;
            ReadPlan::Resolve(
                GenericDatumReader::builder(&registered.schema)
                    .reader_schema(&reader.schema)
                    .build()
                    .map_err(avro)?,
            )
        };
        let writer = GenericDatumWriter::builder(&registered.schema)
            .build()
            .map_err(avro)?;
        Ok(Entry {
            id: registered.id,
            kind: registered.kind,
            version: registered.version,
            read,
            writer,
        })
    }

    fn decode<T: DeserializeOwned>(&self, body: &[u8]) -> Result<T, DecodeError> {
        let mut rest = body;
        let decoded = match &self.read {
            ReadPlan::Direct(reader) => reader.read_deser::<T>(&mut rest),
            ReadPlan::Resolve(reader) => reader
                .read_value(&mut rest)
                .and_then(|value| apache_avro::from_value::<T>(&value)),
        };
        let value = decoded.map_err(|e| DecodeError::body(self.id, &e))?;
        if !rest.is_empty() {
            // One message is one datum; bytes after it mean the producer
            // used a different schema than the id it claims.
            return Err(DecodeError::Body {
                schema_id: self.id,
                message: format!("{} trailing bytes after the datum", rest.len()),
            });
        }
        Ok(value)
    }

    fn encode<T: Serialize>(&self, value: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        wire::write_header(self.id, out);
        if let Err(e) = self.writer.write_ser(out, value) {
            // Leave the caller's buffer as it was, not with half a frame.
            out.truncate(start);
            return Err(EncodeError::body(self.id, &e));
        }
        Ok(())
    }

    fn wrong_topic(&self) -> DecodeError {
        DecodeError::WrongTopic {
            schema_id: self.id,
            record: self.kind.name(),
        }
    }
}
