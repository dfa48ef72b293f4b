//! Avro schemas, the Confluent wire format, and typed decoding and encoding
//! of whatever event sets a domain registers (see [`EventSet`]).
//!
//! - Schemas: `schemas/` (see its README) is compiled into the binary by
//!   `build.rs`, which generates a table of `include_str!` over the manifest
//!   and every `.avsc`; the manifest is the source of truth for schema ids
//!   until a schema registry is configured. Nothing is read from disk at run
//!   time.
//! - Wire format: byte 0 is the magic byte 0, bytes 1..5 the schema id as a
//!   big-endian u32, the rest one Avro binary datum with nothing after it.
//! - [`CodecBuilder::build`] checks that the manifest lists exactly the
//!   records of the registered event sets, each on its set's topic role and
//!   each with a reader schema; a mismatch stops start-up with its name.
//! - It parses every schema once, checks that each older writer
//!   schema is readable by its record's reader (latest) schema, and prepares
//!   one Avro reader and writer per schema id. Decoding then takes one of two
//!   paths, chosen once per id:
//!   - writer schema identical (by canonical form) to the reader schema: the
//!     datum is deserialized straight into the domain struct, no
//!     intermediate `Value` (the hot path for current producers);
//!   - an older writer version: Avro schema resolution through a `Value`
//!     (defaults filled in, removed fields dropped), then `from_value`.
//! - Decoding allocations are capped process-wide at
//!   [`MAX_ALLOCATION_BYTES`] (apache-avro's set-once global, set when the
//!   first codec is built): a string length prefix claiming more fails before
//!   anything is allocated. An array's claimed item count is not trusted
//!   either: preallocation is capped (by serde, or by the same limit on the
//!   resolving path) and reading runs out of input long before memory does.
//! - Encoding always uses the record's reader schema id and appends to the
//!   caller's buffer, so a producer loop can reuse one `Vec`.

mod error;
mod event_set;
mod manifest;
mod wire;

#[cfg(test)]
mod tests;

use std::any::TypeId;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::writer::datum::GenericDatumWriter;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use error::{CodecError, DecodeError, EncodeError};
pub use event_set::{EventSet, RecordDecoder, RecordEncoder};
pub use wire::{peek_schema_id, HEADER_LEN, MAGIC};

use manifest::{Registered, Registry};

/// The most bytes one decoded string, byte array or collection may claim.
/// Far above any legitimate event (Kafka's default message limit is 1 MiB),
/// far below what a corrupt length prefix could make the decoder reserve.
pub const MAX_ALLOCATION_BYTES: usize = 16 * 1024 * 1024;

/// Decodes and encodes every event type of the registered sets. Build one
/// at start-up and share it (`Arc<Codec>`); all methods take `&self`.
pub struct Codec {
    /// Sorted by schema id, for binary search on the hot path.
    entries: Vec<Entry>,
    sets: Vec<SetEntry>,
}

/// A registered event set, before the manifest is matched against it.
struct SetSpec {
    type_id: TypeId,
    topic: &'static str,
    records: &'static [&'static str],
}

struct SetEntry {
    spec: SetSpec,
    /// Per record of the set, the position in `entries` of the reader
    /// schema that encoding uses.
    latest: Vec<usize>,
}

struct Entry {
    id: u32,
    /// Index into `Codec::sets`.
    set: usize,
    /// Index into the set's records.
    record: usize,
    record_name: &'static str,
    version: u32,
    reader: bool,
    schema: &'static apache_avro::Schema,
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

/// Collects the event sets a [`Codec`] serves.
#[derive(Default)]
pub struct CodecBuilder {
    sets: Vec<SetSpec>,
}

impl CodecBuilder {
    /// Adds the records of `S`, which travel on the topic role `S::TOPIC`.
    pub fn register<S: EventSet>(mut self) -> Self {
        self.sets.push(SetSpec {
            type_id: TypeId::of::<S>(),
            topic: S::TOPIC,
            records: S::RECORDS,
        });
        self
    }

    /// Loads the embedded manifest and prepares every schema id.
    ///
    /// Fails if the manifest or a schema is malformed, if the manifest and
    /// the registered sets disagree on a record, or if an older writer
    /// schema cannot be read by its record's reader schema: errors that must
    /// stop start-up rather than turn every event into poison.
    pub fn build(self) -> Result<Codec, CodecError> {
        self.build_from(manifest::embedded()?, false)
    }

    /// Like [`Self::build`], but every schema id decodes through Avro schema
    /// resolution: for tests that compare the two decoding paths.
    #[doc(hidden)]
    pub fn build_resolving_only(self) -> Result<Codec, CodecError> {
        self.build_from(manifest::embedded()?, true)
    }

    fn build_from(
        self,
        registry: &'static Registry,
        force_resolve: bool,
    ) -> Result<Codec, CodecError> {
        set_allocation_limit();
        let mut sets: Vec<SetEntry> = Vec::with_capacity(self.sets.len());
        for spec in self.sets {
            check_set_is_new(&sets, &spec)?;
            sets.push(SetEntry {
                latest: vec![usize::MAX; spec.records.len()],
                spec,
            });
        }
        let mut entries = Vec::with_capacity(registry.schemas.len());
        for registered in &registry.schemas {
            let (set, record) = place_of(&sets, registered)?;
            let reader = registry.reader_of(&registered.record).ok_or_else(|| {
                CodecError::Manifest(format!("{} has no reader schema", registered.record))
            })?;
            if registered.reader {
                sets[set].latest[record] = entries.len();
            }
            let record_name = sets[set].spec.records[record];
            entries.push(Entry::prepare(
                registered,
                reader,
                (set, record, record_name),
                force_resolve,
            )?);
        }
        for set in &sets {
            if let Some(missing) = set.latest.iter().position(|&at| at == usize::MAX) {
                return Err(CodecError::Manifest(format!(
                    "{} has no entry; every record of the {} event set needs a reader schema",
                    set.spec.records[missing], set.spec.topic
                )));
            }
        }
        Ok(Codec { entries, sets })
    }
}

/// A record belongs to one set only, and a set is registered once.
fn check_set_is_new(sets: &[SetEntry], spec: &SetSpec) -> Result<(), CodecError> {
    for set in sets {
        if set.spec.type_id == spec.type_id {
            return Err(CodecError::Manifest(format!(
                "the {} event set is registered twice",
                spec.topic
            )));
        }
        if let Some(shared) = spec.records.iter().find(|r| set.spec.records.contains(r)) {
            return Err(CodecError::Manifest(format!(
                "{shared} is declared by both the {} and the {} event sets",
                set.spec.topic, spec.topic
            )));
        }
    }
    Ok(())
}

/// Which registered set and record a manifest entry is.
fn place_of(sets: &[SetEntry], registered: &Registered) -> Result<(usize, usize), CodecError> {
    for (set_index, set) in sets.iter().enumerate() {
        if let Some(record) = set
            .spec
            .records
            .iter()
            .position(|r| *r == registered.record)
        {
            if set.spec.topic != registered.topic {
                return Err(CodecError::Manifest(format!(
                    "schema id {}: {} belongs on the {} topic, not {}",
                    registered.id, registered.record, set.spec.topic, registered.topic
                )));
            }
            return Ok((set_index, record));
        }
    }
    Err(CodecError::Manifest(format!(
        "schema id {}: record {:?} (topic {}) is not declared by any registered event set",
        registered.id, registered.record, registered.topic
    )))
}

fn set_allocation_limit() {
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
}

impl Codec {
    pub fn builder() -> CodecBuilder {
        CodecBuilder::default()
    }

    /// Decodes a message of `S`'s topic; a record of another set is a
    /// [`DecodeError::WrongTopic`].
    pub fn decode<S: EventSet>(&self, bytes: &[u8]) -> Result<S, DecodeError> {
        let (schema_id, body) = wire::split(bytes)?;
        let entry = self
            .lookup(schema_id)
            .ok_or(DecodeError::UnknownSchemaId(schema_id))?;
        if self.sets[entry.set].spec.type_id != TypeId::of::<S>() {
            return Err(entry.wrong_topic());
        }
        S::decode_record(entry.record, EntryDecoder { entry, body })
    }

    /// Appends `event`, framed with its record's reader schema id, to `out`.
    pub fn encode<S: EventSet>(&self, event: &S, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let set = self
            .sets
            .iter()
            .find(|set| set.spec.type_id == TypeId::of::<S>())
            .ok_or(EncodeError::Unregistered { topic: S::TOPIC })?;
        // `latest` is complete by construction (checked in `build_from`).
        let entry = &self.entries[set.latest[event.record_index()]];
        event.encode_record(EntryEncoder { entry, out })
    }

    /// Appends `value` written with an explicit version of `record`, as a
    /// producer that predates the latest version would send it. For tests,
    /// sample data and tools; galley itself always writes the latest.
    pub fn encode_version<T: Serialize>(
        &self,
        record: &str,
        version: u32,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        self.entries
            .iter()
            .find(|entry| entry.record_name == record && entry.version == version)
            .ok_or_else(|| EncodeError::UnknownVersion {
                record: record.to_owned(),
                version,
            })?
            .encode(value, out)
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

    /// Every schema this codec knows, by ascending id: for tests and tools
    /// that check the schemas themselves.
    pub fn schemas(&self) -> impl Iterator<Item = SchemaInfo<'_>> + '_ {
        self.entries.iter().map(|entry| SchemaInfo {
            id: entry.id,
            record: entry.record_name,
            topic: self.sets[entry.set].spec.topic,
            version: entry.version,
            reader: entry.reader,
            schema: entry.schema,
        })
    }

    /// Every schema id this codec accepts, ascending.
    pub fn schema_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.entries.iter().map(|entry| entry.id)
    }

    /// The topic role a schema id belongs to, if it is known.
    pub fn topic_of(&self, schema_id: u32) -> Option<&'static str> {
        self.lookup(schema_id)
            .map(|entry| self.sets[entry.set].spec.topic)
    }

    fn lookup(&self, schema_id: u32) -> Option<&Entry> {
        self.entries
            .binary_search_by_key(&schema_id, |entry| entry.id)
            .ok()
            .map(|position| &self.entries[position])
    }
}

/// One schema of a [`Codec`], as the manifest registered it.
#[derive(Debug, Clone, Copy)]
pub struct SchemaInfo<'a> {
    pub id: u32,
    pub record: &'static str,
    pub topic: &'static str,
    pub version: u32,
    /// The latest version, which galley decodes into and encodes with.
    pub reader: bool,
    pub schema: &'a apache_avro::Schema,
}

/// The manifest and the schema files compiled into the binary, as
/// `(path relative to schemas/, contents)`.
pub fn embedded_schema_files() -> (&'static str, &'static [(&'static str, &'static str)]) {
    (manifest::MANIFEST, manifest::FILES)
}

/// One datum of a known entry, handed to the event set to pick its struct.
struct EntryDecoder<'a, 'b> {
    entry: &'a Entry,
    body: &'b [u8],
}

impl RecordDecoder for EntryDecoder<'_, '_> {
    fn decode<T: DeserializeOwned>(self) -> Result<T, DecodeError> {
        self.entry.decode(self.body)
    }

    fn mismatch(self) -> DecodeError {
        self.entry.wrong_topic()
    }
}

struct EntryEncoder<'a, 'b> {
    entry: &'a Entry,
    out: &'b mut Vec<u8>,
}

impl RecordEncoder for EntryEncoder<'_, '_> {
    fn encode<T: Serialize>(self, value: &T) -> Result<(), EncodeError> {
        self.entry.encode(value, self.out)
    }
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|entry| {
                (
                    entry.id,
                    entry.record_name,
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
        (set, record, record_name): (usize, usize, &'static str),
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
                    record: record_name,
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
            set,
            record,
            record_name,
            version: registered.version,
            reader: registered.reader,
            schema: &registered.schema,
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
            record: self.record_name,
        }
    }
}
