//! The shop's changelog values (`pipeline.delivery = "exactly_once"`): a
//! batch's rows, split by the input partition that owns them, encoded so
//! that the sink can write them later, and decoded again by the sink.
//!
//! A value is one format-version byte ([`FORMAT_VERSION`]) followed by the
//! postcard encoding of one partition's rows: its topic and number, the keys
//! the batch created (see [`crate::store::known_keys`]), then its
//! customer-list entries, SKU and minute sales cells, orders, inventory
//! chunks and progress, in the order they are written. The version byte lets
//! formats be told apart: the sink still reads format 1, which had no keys,
//! and marks the partitions of such values as having rows whose keys are not
//! recorded; an unknown version is an error, never a guess.
//!
//! A partition whose rows would make a value longer than the engine's limit
//! is cut into several values, in write order: the created keys come first,
//! the derived rows come before
//! the orders in the sequence, a SKU's chunks stay in order, and the progress
//! row is always in the last value. A sink that applies only the first
//! values of a batch before a crash therefore leaves the database as the
//! three write waves of [`super::writes`] would: derived rows ahead of their
//! orders, never behind, and the progress not ahead of any row.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::cache::PartitionKey;
use super::writes::{InventoryChunk, ShopWrites};
use crate::domain::order::Order;
use crate::pipeline::{ChangelogEntry, StepError};
use crate::shop::rows::SalesCell;
use crate::store::known_keys::KeyHash;
use crate::store::marks::RecordMark;
use crate::store::Versioned;

/// The first byte of every value this module writes.
pub(super) const FORMAT_VERSION: u8 = 2;

/// The format before the created keys were recorded.
const FORMAT_WITHOUT_KEYS: u8 = 1;

/// What can go wrong turning rows into values and back.
#[derive(Debug, thiserror::Error)]
pub(super) enum ChangelogError {
    #[error("a changelog value is empty: it has not even a format version byte")]
    Empty,
    #[error(
        "a changelog value has format version {0}, which this galley cannot read (it reads \
         versions {FORMAT_WITHOUT_KEYS} and {FORMAT_VERSION}); it was written by another \
         version of galley"
    )]
    UnknownVersion(u8),
    #[error("a changelog value of format version {FORMAT_VERSION} does not decode: {0}")]
    Malformed(String),
    #[error("the rows of {topic}[{partition}] cannot be encoded for the changelog: {message}")]
    Encode {
        topic: String,
        partition: i32,
        message: String,
    },
}

/// Neither a value that does not decode nor rows that do not encode gets
/// better by trying again.
impl From<ChangelogError> for StepError {
    fn from(err: ChangelogError) -> Self {
        StepError::Fatal(err.to_string())
    }
}

/// One row of a partition, borrowed from the batch's writes, as the cutting
/// sees it: the unit that goes into one value or the next.
#[derive(Clone, Copy)]
enum Row<'a> {
    NewKeys(i64, &'a [KeyHash]),
    CustomerIndex(&'a Versioned<Order>),
    SkuSales(&'a str, i64, &'a Versioned<SalesCell>),
    MinuteSales(i64, &'a Versioned<SalesCell>),
    Order(&'a Versioned<Order>),
    Chunk(&'a InventoryChunk),
    Progress(&'a RecordMark, i64),
}

impl Row<'_> {
    /// Bytes the row adds to a value's encoding.
    fn encoded_len(&self) -> postcard::Result<usize> {
        use postcard::experimental::serialized_size;
        match self {
            Row::NewKeys(offset, hashes) => serialized_size(&(offset, hashes)),
            Row::CustomerIndex(o) | Row::Order(o) => serialized_size(o),
            Row::SkuSales(sku, minute, cell) => serialized_size(&(sku, minute, cell)),
            Row::MinuteSales(minute, cell) => serialized_size(&(minute, cell)),
            Row::Chunk(chunk) => serialized_size(chunk),
            Row::Progress(mark, event_time) => serialized_size(&(mark, event_time)),
        }
    }
}

/// One value as it is encoded: borrowed rows. Its fields, in this order,
/// are the format; [`DecodedValue`] reads them back.
#[derive(Serialize)]
struct EncodedValue<'a> {
    topic: &'a str,
    partition: i32,
    new_keys: Option<(i64, &'a [KeyHash])>,
    customer_index: Vec<&'a Versioned<Order>>,
    sku_sales: Vec<(&'a str, i64, &'a Versioned<SalesCell>)>,
    minute_sales: Vec<(i64, &'a Versioned<SalesCell>)>,
    orders: Vec<&'a Versioned<Order>>,
    inventory: Vec<&'a InventoryChunk>,
    progress: Option<(&'a RecordMark, i64)>,
}

impl<'a> EncodedValue<'a> {
    fn new(part: &'a PartitionKey) -> Self {
        Self {
            topic: &part.0,
            partition: part.1,
            new_keys: None,
            customer_index: Vec::new(),
            sku_sales: Vec::new(),
            minute_sales: Vec::new(),
            orders: Vec::new(),
            inventory: Vec::new(),
            progress: None,
        }
    }

    fn push(&mut self, row: Row<'a>) {
        match row {
            Row::NewKeys(offset, hashes) => self.new_keys = Some((offset, hashes)),
            Row::CustomerIndex(o) => self.customer_index.push(o),
            Row::SkuSales(sku, minute, cell) => self.sku_sales.push((sku, minute, cell)),
            Row::MinuteSales(minute, cell) => self.minute_sales.push((minute, cell)),
            Row::Order(o) => self.orders.push(o),
            Row::Chunk(chunk) => self.inventory.push(chunk),
            Row::Progress(mark, event_time) => self.progress = Some((mark, event_time)),
        }
    }
}

/// One value as it is decoded: the owned twin of [`EncodedValue`].
#[derive(Deserialize)]
struct DecodedValue {
    topic: String,
    partition: i32,
    new_keys: Option<(i64, Vec<KeyHash>)>,
    rows: DecodedRows,
}

/// A value of format 1: the rows with no keys before them. (postcard lays a
/// nested struct's fields out as if they were the outer one's.)
#[derive(Deserialize)]
struct DecodedValueWithoutKeys {
    topic: String,
    partition: i32,
    rows: DecodedRows,
}

/// The rows of a decoded value, after its topic, partition and keys.
#[derive(Deserialize)]
struct DecodedRows {
    customer_index: Vec<Versioned<Order>>,
    sku_sales: Vec<(String, i64, Versioned<SalesCell>)>,
    minute_sales: Vec<(i64, Versioned<SalesCell>)>,
    orders: Vec<Versioned<Order>>,
    inventory: Vec<InventoryChunk>,
    progress: Option<(RecordMark, i64)>,
}

/// Bytes of the encoding of the list lengths an unsigned varint takes.
fn varint_len(mut n: usize) -> usize {
    let mut bytes = 1;
    while n >= 0x80 {
        n >>= 7;
        bytes += 1;
    }
    bytes
}

/// Every partition's rows of `writes`, in write order: the order of the
/// fields of [`ShopWrites`], a SKU's chunks one after the other.
fn rows_by_partition(writes: &ShopWrites) -> BTreeMap<&PartitionKey, Vec<Row<'_>>> {
    let mut by_part: BTreeMap<&PartitionKey, Vec<Row<'_>>> = BTreeMap::new();
    for (part, batch_offset, hashes) in &writes.new_keys {
        let row = Row::NewKeys(*batch_offset, hashes);
        by_part.entry(part).or_default().push(row);
    }
    for (part, o) in &writes.customer_index {
        by_part.entry(part).or_default().push(Row::CustomerIndex(o));
    }
    for (part, sku, minute, cell) in &writes.sku_sales {
        let row = Row::SkuSales(sku, *minute, cell);
        by_part.entry(part).or_default().push(row);
    }
    for (part, minute, cell) in &writes.minute_sales {
        let row = Row::MinuteSales(*minute, cell);
        by_part.entry(part).or_default().push(row);
    }
    for (part, o) in &writes.orders {
        by_part.entry(part).or_default().push(Row::Order(o));
    }
    for (part, chunks) in &writes.inventory {
        let rows = by_part.entry(part).or_default();
        rows.extend(chunks.iter().map(Row::Chunk));
    }
    for (part, mark, event_time) in &writes.progress {
        let row = Row::Progress(mark, *event_time);
        by_part.entry(part).or_default().push(row);
    }
    by_part
}

/// Encodes `writes` as changelog entries: per partition, its rows cut into
/// values of at most `max_bytes` (a row larger than that alone in its own
/// value), in write order.
pub(super) fn encode(
    writes: &ShopWrites,
    max_bytes: usize,
) -> Result<Vec<ChangelogEntry>, ChangelogError> {
    let mut entries = Vec::new();
    for (part, rows) in rows_by_partition(writes) {
        let encode_error = |message: String| ChangelogError::Encode {
            topic: part.0.to_string(),
            partition: part.1,
            message,
        };
        // What a value holds besides its rows, counted as if all of the
        // partition's rows were in it (so never less than it is): the version
        // byte, the topic and partition, five list lengths and the tags of
        // the keys and progress options.
        let header = postcard::experimental::serialized_size(&(&*part.0, part.1))
            .map_err(|e| encode_error(e.to_string()))?;
        let framing = 1 + header + 5 * varint_len(rows.len()) + 2;
        let mut value = EncodedValue::new(part);
        let mut value_len = framing;
        let mut value_rows = 0;
        for row in rows {
            let row_len = row.encoded_len().map_err(|e| encode_error(e.to_string()))?;
            if value_rows > 0 && value_len + row_len > max_bytes {
                entries.push(entry(part, &value).map_err(encode_error)?);
                value = EncodedValue::new(part);
                value_len = framing;
                value_rows = 0;
            }
            value.push(row);
            value_len += row_len;
            value_rows += 1;
        }
        if value_rows > 0 {
            entries.push(entry(part, &value).map_err(encode_error)?);
        }
    }
    Ok(entries)
}

/// The entry of one value: its version byte, then its rows.
fn entry(part: &PartitionKey, value: &EncodedValue<'_>) -> Result<ChangelogEntry, String> {
    let bytes = postcard::to_extend(value, vec![FORMAT_VERSION]).map_err(|e| e.to_string())?;
    Ok(ChangelogEntry {
        topic: part.0.clone(),
        partition: part.1,
        value: bytes,
    })
}

/// Decodes values [`encode`] produced and merges them, in the order given,
/// into the rows of one write: rows are appended, so a SKU's chunks stay in
/// order, and a row of a key that several values hold appears that many
/// times (the newest write wins by its timestamp). The result has nothing
/// for the cache and no outcome counts.
pub(super) fn decode(values: &[&[u8]]) -> Result<ShopWrites, ChangelogError> {
    let mut writes = ShopWrites::default();
    // One `Arc` per topic, and where each SKU's chunks are in `writes.inventory`.
    let mut topics: HashMap<String, Arc<str>> = HashMap::new();
    let mut sku_chunks: HashMap<(PartitionKey, String), usize> = HashMap::new();
    for bytes in values {
        let (topic, partition, new_keys, value) = decode_value(bytes)?;
        let topic = topics
            .entry(topic)
            .or_insert_with_key(|t| Arc::from(t.as_str()))
            .clone();
        let part: PartitionKey = (topic, partition);
        let w = &mut writes;
        match new_keys {
            Some(KeysOf::Batch(batch_offset, hashes)) => {
                w.new_keys.push((part.clone(), batch_offset, hashes))
            }
            Some(KeysOf::NotRecorded) if !w.keys_unrecorded.contains(&part) => {
                w.keys_unrecorded.push(part.clone())
            }
            _ => {}
        }
        w.customer_index
            .extend(value.customer_index.into_iter().map(|o| (part.clone(), o)));
        w.sku_sales.extend(
            value
                .sku_sales
                .into_iter()
                .map(|(sku, minute, cell)| (part.clone(), sku, minute, cell)),
        );
        w.minute_sales.extend(
            value
                .minute_sales
                .into_iter()
                .map(|(minute, cell)| (part.clone(), minute, cell)),
        );
        w.orders
            .extend(value.orders.into_iter().map(|o| (part.clone(), o)));
        for chunk in value.inventory {
            let key = (part.clone(), chunk.stock.value.sku.clone());
            match sku_chunks.get(&key) {
                Some(&at) => w.inventory[at].1.push(chunk),
                None => {
                    sku_chunks.insert(key, w.inventory.len());
                    w.inventory.push((part.clone(), vec![chunk]));
                }
            }
        }
        if let Some((mark, event_time)) = value.progress {
            w.progress.push((part, mark, event_time));
        }
    }
    Ok(writes)
}

/// What a decoded value says of the keys its batch created.
enum KeysOf {
    /// The batch's newest offset in the partition, and the keys it created.
    Batch(i64, Vec<KeyHash>),
    /// The value's format does not record them.
    NotRecorded,
}

/// Decodes one value: its version byte, then exactly one partition's rows.
fn decode_value(
    bytes: &[u8],
) -> Result<(String, i32, Option<KeysOf>, DecodedRows), ChangelogError> {
    let (&version, rest) = bytes.split_first().ok_or(ChangelogError::Empty)?;
    match version {
        FORMAT_VERSION => {
            let v: DecodedValue = decode_whole(rest)?;
            let keys = v
                .new_keys
                .map(|(offset, hashes)| KeysOf::Batch(offset, hashes));
            Ok((v.topic, v.partition, keys, v.rows))
        }
        FORMAT_WITHOUT_KEYS => {
            let v: DecodedValueWithoutKeys = decode_whole(rest)?;
            Ok((v.topic, v.partition, Some(KeysOf::NotRecorded), v.rows))
        }
        other => Err(ChangelogError::UnknownVersion(other)),
    }
}

/// Decodes bytes that must hold exactly one `T`.
fn decode_whole<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ChangelogError> {
    let (value, trailing) = postcard::take_from_bytes::<T>(bytes)
        .map_err(|e| ChangelogError::Malformed(e.to_string()))?;
    if !trailing.is_empty() {
        return Err(ChangelogError::Malformed(format!(
            "{} bytes follow the rows",
            trailing.len()
        )));
    }
    Ok(value)
}
