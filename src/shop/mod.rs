//! The shop wired into the engine: decodes the shop's topics, loads and
//! caches the rows each event needs, runs the pure handlers of
//! [`crate::domain`], and turns their decisions into messages and row writes.
//!
//! # Exactly once in effect
//! Every row has one owner, the input partition its key hashes to: orders and
//! their customer-list entries belong to the order's partition of the orders
//! topic; a SKU's stock and reservations to its partition of the inventory
//! topic; sales are counted in one sub-row per (minute, source partition) and
//! summed when read. Each row stores the offset of the last event applied to
//! it, and an event at or below that offset is skipped for that row, so a
//! replayed batch changes nothing it already changed. Handlers compute
//! absolute values from the row they read, never increments, so writing the
//! same decision twice is harmless.
//!
//! Within a batch, rows derived from an order (sales sub-rows, the customer
//! list) are written before the order row itself. A crash between the two
//! leaves the derived rows ahead of the order, never behind: the replay
//! recomputes the order from its older state, and each derived row skips the
//! contributions its watermark already holds. A SKU's stock and reservation
//! rows share one CQL partition and are written in one single-partition
//! batch, which the database applies atomically, because the reservation row
//! decides idempotence and must never disagree with the counts.
//!
//! Writes carry `USING TIMESTAMP <offset>`: a former owner that wakes up late
//! (a paused process whose partitions moved) writes older timestamps than the
//! current owner and cannot overwrite its newer state.

pub mod api;
pub mod generator;
pub mod projections;
pub mod queries;
pub mod rows;

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;
use std::time::Instant;

use futures::future::{BoxFuture, FutureExt};
use futures::stream::{self, StreamExt, TryStreamExt};

use self::projections::ProjectionStore;
use self::rows::SalesCell;
use crate::codec::{Codec, EventSet};
use crate::config::TopicsConfig;
use crate::domain::inventory::{self, Reservation, Stock};
use crate::domain::order::{self, Order};
use crate::domain::{
    Emitted, EventIds, EventOrigin, InventoryEvent, OrderEvent, Outcome, ValidationError,
};
use crate::pipeline::{
    unix_ms, DeadLetter, DeadLetterStage, Effects, ErrorClass, InputRecord, OutgoingMessage,
    Processor, RetryableError,
};
use crate::store::cache::RowCache;
use crate::store::{StoreError, Versioned};
use crate::telemetry as t;

/// Header carrying the deterministic id of every event galley publishes.
pub const EVENT_ID_HEADER: &str = "galley.event_id";
/// Header naming the event type, so consumers can route without decoding.
pub const EVENT_TYPE_HEADER: &str = "galley.event_type";

/// The event type label of a record whose bytes could not be decoded.
const UNKNOWN_EVENT_TYPE: &str = "unknown";

/// Rows of one generation of a partition's cache, per table.
const CACHE_GENERATION_ROWS: usize = 10_000;
/// Reservation rows per single-partition batch; keeps batches far below the
/// database's batch size limits even for a hot SKU.
const RESERVATIONS_PER_BATCH: usize = 100;

type PartitionKey = (Arc<str>, i32);
type ReservationKey = (String, String);

/// What the shop needs to know about its environment.
#[derive(Debug, Clone)]
pub struct ShopSettings {
    pub topics: TopicsConfig,
    pub low_stock_threshold: i64,
    pub max_event_bytes: usize,
    pub max_concurrent_statements: usize,
}

/// The shop's [`Processor`].
pub struct ShopProcessor {
    codec: Arc<Codec>,
    store: Arc<ProjectionStore>,
    settings: ShopSettings,
    caches: HashMap<PartitionKey, PartitionCache>,
}

struct PartitionCache {
    orders: RowCache<String, Option<Versioned<Order>>>,
    stock: RowCache<String, Option<Versioned<Stock>>>,
    reservations: RowCache<ReservationKey, Option<Versioned<Reservation>>>,
    sku_sales: RowCache<(String, i64), Versioned<SalesCell>>,
    minute_sales: RowCache<i64, Versioned<SalesCell>>,
}

impl PartitionCache {
    fn new() -> Self {
        Self {
            orders: RowCache::new(CACHE_GENERATION_ROWS),
            stock: RowCache::new(CACHE_GENERATION_ROWS),
            reservations: RowCache::new(CACHE_GENERATION_ROWS),
            sku_sales: RowCache::new(CACHE_GENERATION_ROWS),
            minute_sales: RowCache::new(CACHE_GENERATION_ROWS),
        }
    }
}

/// A decoded, validated input event.
enum Decoded {
    Order(OrderEvent),
    Inventory(InventoryEvent),
}

impl Decoded {
    fn key(&self) -> &str {
        match self {
            Decoded::Order(e) => e.key(),
            Decoded::Inventory(e) => e.key(),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Decoded::Order(e) => e.type_name(),
            Decoded::Inventory(e) => e.type_name(),
        }
    }

    fn event_time_ms(&self) -> i64 {
        match self {
            Decoded::Order(e) => e.event_time_ms(),
            Decoded::Inventory(e) => e.event_time_ms(),
        }
    }
}

/// Rows one batch writes, in the order they must be written, plus what the
/// cache should hold afterwards.
#[derive(Default)]
pub struct ShopWrites {
    customer_index: Vec<Versioned<Order>>,
    sku_sales: Vec<(i32, String, i64, Versioned<SalesCell>)>,
    minute_sales: Vec<(i32, i64, Versioned<SalesCell>)>,
    orders: Vec<(i32, Versioned<Order>)>,
    inventory: Vec<(i32, Vec<InventoryChunk>)>,
    progress: Vec<(Arc<str>, i32, i64, i64)>,
    cache: HashMap<PartitionKey, BatchRows>,
    counts: Vec<Counted>,
}

impl ShopWrites {
    /// Moves the rows to write into a value of their own, leaving behind what
    /// [`Processor::committed`] adopts (cache contents and outcome counts).
    /// `make bench` uses it to compute a whole backlog's rows through the
    /// real processor first and write them afterwards, timing the writes alone.
    pub fn take_rows(&mut self) -> ShopWrites {
        ShopWrites {
            customer_index: std::mem::take(&mut self.customer_index),
            sku_sales: std::mem::take(&mut self.sku_sales),
            minute_sales: std::mem::take(&mut self.minute_sales),
            orders: std::mem::take(&mut self.orders),
            inventory: std::mem::take(&mut self.inventory),
            progress: std::mem::take(&mut self.progress),
            cache: HashMap::new(),
            counts: Vec::new(),
        }
    }

    /// Statements [`Processor::write`] executes for these rows (an inventory
    /// chunk is one batch statement).
    pub fn statement_count(&self) -> usize {
        self.customer_index.len()
            + self.sku_sales.len()
            + self.minute_sales.len()
            + self.orders.len()
            + self.inventory.iter().map(|(_, c)| c.len()).sum::<usize>()
            + self.progress.len()
    }
}

struct InventoryChunk {
    stock: Versioned<Stock>,
    reservations: Vec<Versioned<Reservation>>,
}

/// One decoded input event's fate, counted once its batch is written. Dead
/// letters are counted by the pipeline, which publishes them.
struct Counted {
    topic: Arc<str>,
    event_type: &'static str,
    outcome: Outcome,
}

/// The rows of one partition a batch read or computed.
#[derive(Default)]
struct BatchRows {
    orders: HashMap<String, Option<Versioned<Order>>>,
    stock: HashMap<String, Option<Versioned<Stock>>>,
    reservations: HashMap<ReservationKey, Option<Versioned<Reservation>>>,
    sku_sales: HashMap<(String, i64), Versioned<SalesCell>>,
    minute_sales: HashMap<i64, Versioned<SalesCell>>,
}

/// A row read for a batch, with its key.
enum LoadedRow {
    Order(Option<Versioned<Order>>, String),
    Stock(Option<Versioned<Stock>>, String),
    Reservation(Option<Versioned<Reservation>>, ReservationKey),
}

/// A sales cell read for a batch, with its key.
enum LoadedCell {
    Sku(Option<Versioned<SalesCell>>, (String, i64)),
    Minute(Option<Versioned<SalesCell>>, i64),
}

/// A sale waiting to be added to its cells.
struct SaleContribution {
    offset: i64,
    event_time_ms: i64,
    sku: String,
    minute_ms: i64,
    units: i64,
    revenue_cents: i64,
}

impl ShopProcessor {
    pub fn new(codec: Arc<Codec>, store: Arc<ProjectionStore>, settings: ShopSettings) -> Self {
        Self {
            codec,
            store,
            settings,
            caches: HashMap::new(),
        }
    }

    fn decode(&self, record: &InputRecord) -> Result<Decoded, Box<DeadLetter>> {
        use DeadLetterStage::Decode;
        let Some(payload) = record.payload.as_deref() else {
            return Err(poison(
                record,
                ErrorClass::Empty,
                Decode,
                None,
                "record has no value".into(),
            ));
        };
        if payload.len() > self.settings.max_event_bytes {
            let message = format!(
                "value of {} bytes exceeds pipeline.max_event_bytes ({})",
                payload.len(),
                self.settings.max_event_bytes
            );
            return Err(poison(record, ErrorClass::Oversize, Decode, None, message));
        }
        let topic = &*record.topic;
        let decoded = if topic == self.settings.topics.orders {
            Decoded::Order(self.decode_valid(record, payload, OrderEvent::validate)?)
        } else if topic == self.settings.topics.inventory {
            Decoded::Inventory(self.decode_valid(record, payload, InventoryEvent::validate)?)
        } else {
            let message = format!("galley does not handle topic {topic}");
            return Err(poison(
                record,
                ErrorClass::UnknownTopic,
                Decode,
                None,
                message,
            ));
        };
        check_key(record, decoded.key(), decoded.type_name())?;
        Ok(decoded)
    }

    /// Decodes a record of `S`'s topic and checks its content.
    fn decode_valid<S: EventSet>(
        &self,
        record: &InputRecord,
        payload: &[u8],
        validate: impl Fn(&S) -> Result<(), ValidationError>,
    ) -> Result<S, Box<DeadLetter>> {
        let event = self.codec.decode::<S>(payload).map_err(|e| {
            poison(
                record,
                ErrorClass::from(&e),
                DeadLetterStage::Decode,
                None,
                e.to_string(),
            )
        })?;
        validate(&event).map_err(|e| {
            poison(
                record,
                ErrorClass::Validation,
                DeadLetterStage::Validate,
                Some(event.type_name()),
                e.to_string(),
            )
        })?;
        Ok(event)
    }

    fn encode(&self, emitted: &Emitted) -> Result<OutgoingMessage, RetryableError> {
        let topics = &self.settings.topics;
        let mut payload = Vec::with_capacity(128);
        let (topic, key, event_type, event_id, result) = match emitted {
            Emitted::Result(e) => (
                &topics.results,
                e.key(),
                e.type_name(),
                e.event_id(),
                self.codec.encode(e, &mut payload),
            ),
            Emitted::Inventory(e) => (
                &topics.inventory,
                e.key(),
                e.type_name(),
                inventory_event_id(e),
                self.codec.encode(e, &mut payload),
            ),
            Emitted::Order(e) => (
                &topics.orders,
                e.key(),
                e.type_name(),
                order_event_id(e),
                self.codec.encode(e, &mut payload),
            ),
        };
        // Our own events always fit our own schemas; failing here is a
        // deployment bug, and stalling is safer than dropping the effect.
        result.map_err(|e| RetryableError(format!("cannot encode {event_type}: {e}")))?;
        Ok(OutgoingMessage {
            topic: topic.clone(),
            key: key.as_bytes().to_vec(),
            payload,
            headers: vec![
                (EVENT_ID_HEADER, event_id.as_bytes().to_vec()),
                (EVENT_TYPE_HEADER, event_type.as_bytes().to_vec()),
            ],
            event_type,
        })
    }

    fn cache(&mut self, key: &PartitionKey) -> &mut PartitionCache {
        self.caches
            .entry(key.clone())
            .or_insert_with(PartitionCache::new)
    }

    /// Fills `rows` with every order, stock and reservation row the events
    /// will touch, from the cache or else from the database.
    async fn load_entity_rows(
        &mut self,
        part: &PartitionKey,
        events: &[(&InputRecord, Decoded)],
        rows: &mut BatchRows,
    ) -> Result<(), StoreError> {
        let mut want_orders: HashSet<String> = HashSet::new();
        let mut want_stock: HashSet<String> = HashSet::new();
        let mut want_reservations: HashSet<ReservationKey> = HashSet::new();
        {
            let cache = self.cache(part);
            for (_, event) in events {
                match event {
                    Decoded::Order(e) => {
                        let id = e.key().to_string();
                        stage(&mut rows.orders, &mut cache.orders, &mut want_orders, id);
                    }
                    Decoded::Inventory(e) => {
                        let sku = e.key().to_string();
                        if let Some(order_id) = reservation_order(e) {
                            let key = (sku.clone(), order_id.to_string());
                            stage(
                                &mut rows.reservations,
                                &mut cache.reservations,
                                &mut want_reservations,
                                key,
                            );
                        }
                        stage(&mut rows.stock, &mut cache.stock, &mut want_stock, sku);
                    }
                }
            }
        }
        // One wave of reads for all three tables: a batch waits for the
        // slowest read once, not once per table.
        let store = &*self.store;
        let reads: Vec<BoxFuture<'_, Result<LoadedRow, StoreError>>> = want_orders
            .into_iter()
            .map(|id| async move { Ok(LoadedRow::Order(store.load_order(&id).await?, id)) }.boxed())
            .chain(want_stock.into_iter().map(|sku| {
                async move { Ok(LoadedRow::Stock(store.load_stock(&sku).await?, sku)) }.boxed()
            }))
            .chain(want_reservations.into_iter().map(|key| {
                async move {
                    let row = store.load_reservation(&key.0, &key.1).await?;
                    Ok(LoadedRow::Reservation(row, key))
                }
                .boxed()
            }))
            .collect();
        let limit = self.settings.max_concurrent_statements.max(1);
        let mut loaded = stream::iter(reads).buffer_unordered(limit);
        while let Some(row) = loaded.try_next().await? {
            match row {
                LoadedRow::Order(v, id) => {
                    rows.orders.insert(id, v);
                }
                LoadedRow::Stock(v, sku) => {
                    rows.stock.insert(sku, v);
                }
                LoadedRow::Reservation(v, key) => {
                    rows.reservations.insert(key, v);
                }
            }
        }
        Ok(())
    }

    async fn load_sales_rows(
        &mut self,
        part: &PartitionKey,
        sales: &[SaleContribution],
        rows: &mut BatchRows,
    ) -> Result<(), StoreError> {
        let mut want_sku: HashSet<(String, i64)> = HashSet::new();
        let mut want_minute: HashSet<i64> = HashSet::new();
        {
            let cache = self.cache(part);
            for sale in sales {
                let key = (sale.sku.clone(), sale.minute_ms);
                stage(
                    &mut rows.sku_sales,
                    &mut cache.sku_sales,
                    &mut want_sku,
                    key,
                );
                stage(
                    &mut rows.minute_sales,
                    &mut cache.minute_sales,
                    &mut want_minute,
                    sale.minute_ms,
                );
            }
        }
        let store = &*self.store;
        let partition = part.1;
        let limit = self.settings.max_concurrent_statements;
        let or_empty = |cell: Option<Versioned<SalesCell>>| {
            cell.unwrap_or(Versioned {
                value: SalesCell::default(),
                applied_offset: -1,
            })
        };
        // Both tables in one wave of reads, as for the entity rows.
        let reads: Vec<BoxFuture<'_, Result<LoadedCell, StoreError>>> = want_sku
            .into_iter()
            .map(|key| {
                async move {
                    let cell = store.load_sku_sales(&key.0, key.1, partition).await?;
                    Ok(LoadedCell::Sku(cell, key))
                }
                .boxed()
            })
            .chain(want_minute.into_iter().map(|minute| {
                async move {
                    let cell = store.load_minute_sales(minute, partition).await?;
                    Ok(LoadedCell::Minute(cell, minute))
                }
                .boxed()
            }))
            .collect();
        let mut loaded = stream::iter(reads).buffer_unordered(limit.max(1));
        while let Some(cell) = loaded.try_next().await? {
            match cell {
                LoadedCell::Sku(v, key) => {
                    rows.sku_sales.insert(key, or_empty(v));
                }
                LoadedCell::Minute(v, minute) => {
                    rows.minute_sales.insert(minute, or_empty(v));
                }
            }
        }
        Ok(())
    }

    /// Decides one partition's events and appends the effects to `effects`.
    async fn prepare_partition(
        &mut self,
        part: &PartitionKey,
        records: &[&InputRecord],
        effects: &mut Effects<ShopWrites>,
    ) -> Result<(), RetryableError> {
        let mut events: Vec<(&InputRecord, Decoded)> = Vec::with_capacity(records.len());
        for record in records {
            match self.decode(record) {
                Ok(event) => events.push((record, event)),
                Err(dead) => effects.dead_letters.push(*dead),
            }
        }
        let mut rows = BatchRows::default();
        self.load_entity_rows(part, &events, &mut rows)
            .await
            .map_err(|e| RetryableError(e.to_string()))?;

        let handler_started = Instant::now();
        let mut dirty_orders: BTreeMap<String, ()> = BTreeMap::new();
        let mut inventory_log: BTreeMap<String, InventoryLog> = BTreeMap::new();
        let mut sales: Vec<SaleContribution> = Vec::new();
        let mut newest: Option<(i64, i64)> = None;
        let threshold = self.settings.low_stock_threshold;

        for (record, event) in &events {
            let origin = EventOrigin {
                topic: &record.topic,
                partition: record.partition,
                offset: record.offset,
            };
            let mut ids = EventIds::new(origin);
            let event_time = event.event_time_ms();
            newest = Some(match newest {
                Some((o, t)) => (o.max(record.offset), t.max(event_time)),
                None => (record.offset, event_time),
            });
            let (outcome, emitted) = match event {
                Decoded::Order(e) => {
                    let slot = rows.orders.entry(e.key().to_string()).or_insert(None);
                    if slot
                        .as_ref()
                        .is_some_and(|v| v.applied_offset >= record.offset)
                    {
                        (Outcome::Duplicate, Vec::new())
                    } else {
                        let decision = order::apply(slot.as_ref().map(|v| &v.value), e, &mut ids);
                        let advance = match (&decision.outcome, decision.state_changed) {
                            (Outcome::Applied, true) => true,
                            // A refused event leaves the order as it was, but
                            // the row records that it was seen, so that a
                            // replay does not refuse it a second time.
                            (Outcome::Rejected { .. }, _) => slot.is_some(),
                            _ => false,
                        };
                        if advance {
                            let value = decision
                                .state
                                .clone()
                                .or_else(|| slot.as_ref().map(|v| v.value.clone()));
                            if let Some(value) = value {
                                *slot = Some(Versioned {
                                    value,
                                    applied_offset: record.offset,
                                });
                                dirty_orders.insert(e.key().to_string(), ());
                            }
                        }
                        for sale in decision.sales {
                            sales.push(SaleContribution {
                                offset: record.offset,
                                event_time_ms: event_time,
                                sku: sale.sku,
                                minute_ms: sale.minute_ms,
                                units: sale.units,
                                revenue_cents: sale.revenue_cents,
                            });
                        }
                        (decision.outcome, decision.emitted)
                    }
                }
                Decoded::Inventory(e) => {
                    let sku = e.key().to_string();
                    let stock_slot = rows.stock.entry(sku.clone()).or_insert(None);
                    if stock_slot
                        .as_ref()
                        .is_some_and(|v| v.applied_offset >= record.offset)
                    {
                        (Outcome::Duplicate, Vec::new())
                    } else {
                        let res_key = reservation_order(e).map(|o| (sku.clone(), o.to_string()));
                        let reservation = res_key
                            .as_ref()
                            .and_then(|k| rows.reservations.get(k))
                            .and_then(|v| v.as_ref())
                            .map(|v| &v.value);
                        let decision = inventory::apply(
                            stock_slot.as_ref().map(|v| &v.value),
                            reservation,
                            e,
                            threshold,
                            &mut ids,
                        );
                        if decision.stock_changed || decision.reservation_changed {
                            let stock = Versioned {
                                value: decision.stock.clone(),
                                applied_offset: record.offset,
                            };
                            *stock_slot = Some(stock.clone());
                            let log = inventory_log.entry(sku.clone()).or_default();
                            log.stock = Some(stock);
                            if decision.reservation_changed {
                                if let (Some(key), Some(r)) =
                                    (res_key, decision.reservation.clone())
                                {
                                    let versioned = Versioned {
                                        value: r,
                                        applied_offset: record.offset,
                                    };
                                    rows.reservations.insert(key, Some(versioned.clone()));
                                    log.add_reservation(versioned);
                                }
                            }
                        }
                        (decision.outcome, decision.emitted)
                    }
                }
            };
            for e in &emitted {
                effects.messages.push(self.encode(e)?);
            }
            effects.writes.counts.push(Counted {
                topic: record.topic.clone(),
                event_type: event.type_name(),
                outcome,
            });
        }
        metrics::histogram!(t::HANDLER_DURATION_SECONDS, "topic" => part.0.to_string())
            .record(handler_started.elapsed().as_secs_f64());

        self.load_sales_rows(part, &sales, &mut rows)
            .await
            .map_err(|e| RetryableError(e.to_string()))?;
        let (dirty_sku_cells, dirty_minute_cells) =
            add_sales(&sales, &mut rows.sku_sales, &mut rows.minute_sales);

        let partition = part.1;
        let w = &mut effects.writes;
        for key in dirty_sku_cells {
            if let Some(cell) = rows.sku_sales.get(&key) {
                w.sku_sales.push((partition, key.0, key.1, cell.clone()));
            }
        }
        for minute in dirty_minute_cells {
            if let Some(cell) = rows.minute_sales.get(&minute) {
                w.minute_sales.push((partition, minute, cell.clone()));
            }
        }
        for id in dirty_orders.into_keys() {
            if let Some(Some(order)) = rows.orders.get(&id) {
                w.customer_index.push(order.clone());
                w.orders.push((partition, order.clone()));
            }
        }
        for (_, log) in inventory_log {
            let chunks = log.into_chunks();
            if !chunks.is_empty() {
                w.inventory.push((partition, chunks));
            }
        }
        if let Some((offset, event_time)) = newest {
            w.progress
                .push((part.0.clone(), partition, offset, event_time));
        }
        w.cache.insert(part.clone(), rows);
        Ok(())
    }
}

/// Adds each sale to its per-SKU and per-minute cells, skipping, per cell,
/// every event at or below the cell's watermark (already counted before a
/// crash). Returns the cells that changed.
///
/// The lines of one event share its offset and its minute. Whether an event
/// counts for a minute cell is decided once, at its first line, from the
/// watermark the cell had before the event: the first line moves the
/// watermark to the event's own offset, so asking again at a later line
/// would give the wrong answer.
/// A dead letter for `record`. Until the bytes decode, the event's type is
/// unknown; after, a validation or key failure names it (a bounded label).
fn poison(
    record: &InputRecord,
    error_class: ErrorClass,
    stage: DeadLetterStage,
    event_type: Option<&'static str>,
    message: String,
) -> Box<DeadLetter> {
    Box::new(DeadLetter {
        topic: record.topic.clone(),
        partition: record.partition,
        offset: record.offset,
        key: record.key.clone(),
        payload: record.payload.clone(),
        error_class,
        event_type: event_type.unwrap_or(UNKNOWN_EVENT_TYPE),
        message,
        stage,
    })
}

/// The record's Kafka key must be the event's own key.
fn check_key(
    record: &InputRecord,
    expected: &str,
    event_type: &'static str,
) -> Result<(), Box<DeadLetter>> {
    let (class, message) = match record.key.as_deref() {
        Some(k) if k == expected.as_bytes() => return Ok(()),
        None => (
            ErrorClass::MissingKey,
            format!("record has no key; expected `{expected}`"),
        ),
        Some(k) => (
            ErrorClass::KeyMismatch,
            format!(
                "record key `{}` differs from the event's key `{expected}`",
                String::from_utf8_lossy(k)
            ),
        ),
    };
    Err(poison(
        record,
        class,
        DeadLetterStage::Validate,
        Some(event_type),
        message,
    ))
}

fn add_sales(
    sales: &[SaleContribution],
    sku_cells: &mut HashMap<(String, i64), Versioned<SalesCell>>,
    minute_cells: &mut HashMap<i64, Versioned<SalesCell>>,
) -> (BTreeSet<(String, i64)>, BTreeSet<i64>) {
    let mut dirty_sku = BTreeSet::new();
    let mut dirty_minute = BTreeSet::new();
    let mut minute_decisions: HashMap<(i64, i64), bool> = HashMap::new();
    for sale in sales {
        let sku_key = (sale.sku.clone(), sale.minute_ms);
        if let Some(cell) = sku_cells.get_mut(&sku_key) {
            // A SKU appears once per order (lines are merged), so one event
            // adds at most one line to a SKU cell.
            if cell.applied_offset < sale.offset {
                cell.value.units += sale.units;
                cell.value.revenue_cents += sale.revenue_cents;
                cell.value.updated_at_ms = cell.value.updated_at_ms.max(sale.event_time_ms);
                cell.applied_offset = sale.offset;
                dirty_sku.insert(sku_key);
            }
        }
        if let Some(cell) = minute_cells.get_mut(&sale.minute_ms) {
            let (counts, first_line) = match minute_decisions.entry((sale.minute_ms, sale.offset)) {
                Entry::Occupied(decided) => (*decided.get(), false),
                Entry::Vacant(slot) => (*slot.insert(cell.applied_offset < sale.offset), true),
            };
            if counts {
                if first_line {
                    cell.value.orders += 1;
                }
                cell.value.units += sale.units;
                cell.value.revenue_cents += sale.revenue_cents;
                cell.value.updated_at_ms = cell.value.updated_at_ms.max(sale.event_time_ms);
                cell.applied_offset = sale.offset;
                dirty_minute.insert(sale.minute_ms);
            }
        }
    }
    (dirty_sku, dirty_minute)
}

/// A SKU's changes within one batch, cut into atomic chunks.
#[derive(Default)]
struct InventoryLog {
    stock: Option<Versioned<Stock>>,
    pending: Vec<Versioned<Reservation>>,
    chunks: Vec<InventoryChunk>,
}

impl InventoryLog {
    fn add_reservation(&mut self, reservation: Versioned<Reservation>) {
        // A second change to the same reservation within a chunk replaces the first.
        if let Some(existing) = self
            .pending
            .iter_mut()
            .find(|r| r.value.order_id == reservation.value.order_id)
        {
            *existing = reservation;
        } else {
            self.pending.push(reservation);
        }
        if self.pending.len() >= RESERVATIONS_PER_BATCH {
            if let Some(stock) = self.stock.clone() {
                self.chunks.push(InventoryChunk {
                    stock,
                    reservations: std::mem::take(&mut self.pending),
                });
            }
        }
    }

    fn into_chunks(mut self) -> Vec<InventoryChunk> {
        if let Some(stock) = self.stock.take() {
            let last_chunk_offset = self.chunks.last().map(|c| c.stock.applied_offset);
            if !self.pending.is_empty() || last_chunk_offset != Some(stock.applied_offset) {
                self.chunks.push(InventoryChunk {
                    stock,
                    reservations: self.pending,
                });
            }
        }
        self.chunks
    }
}

/// Adds a written batch's outcomes to the outcome counters, tallied first so
/// that the registry is touched once per label set rather than per event.
fn count_outcomes(counts: &[Counted]) {
    // Keyed by (topic, event type, outcome, rejection reason or "").
    let mut tally: BTreeMap<(&str, &'static str, &'static str, &'static str), u64> =
        BTreeMap::new();
    for c in counts {
        let (outcome, reason) = match c.outcome {
            Outcome::Applied => ("applied", ""),
            Outcome::Rejected { reason } => ("rejected", reason),
            Outcome::Duplicate => ("duplicate", ""),
        };
        *tally
            .entry((&c.topic, c.event_type, outcome, reason))
            .or_default() += 1;
        // Every type seen gets its applied and duplicate series, at zero if
        // need be: dashboards then show a rate of 0 rather than no data.
        for quiet in ["applied", "duplicate"] {
            tally
                .entry((&c.topic, c.event_type, quiet, ""))
                .or_default();
        }
    }
    for ((topic, event_type, outcome, reason), n) in tally {
        let topic = topic.to_string();
        let counter = match outcome {
            "applied" => metrics::counter!(
                t::EVENTS_APPLIED_TOTAL,
                "topic" => topic,
                "event_type" => event_type
            ),
            "rejected" => metrics::counter!(
                t::EVENTS_REJECTED_TOTAL,
                "topic" => topic,
                "event_type" => event_type,
                "reason" => reason
            ),
            _ => metrics::counter!(
                t::EVENTS_DUPLICATE_TOTAL,
                "topic" => topic,
                "event_type" => event_type
            ),
        };
        counter.increment(n);
    }
}

/// Takes a row into the batch from the cache, or notes that it must be read.
fn stage<K, V>(rows: &mut HashMap<K, V>, cache: &mut RowCache<K, V>, want: &mut HashSet<K>, key: K)
where
    K: Clone + Eq + Hash,
    V: Clone,
{
    if let Entry::Vacant(slot) = rows.entry(key) {
        match cache.get(slot.key()) {
            Some(value) => {
                slot.insert(value.clone());
            }
            None => {
                want.insert(slot.into_key());
            }
        }
    }
}

/// Runs futures with at most `limit` in flight; the first error wins.
async fn run_bounded(
    futures: Vec<BoxFuture<'_, Result<(), StoreError>>>,
    limit: usize,
) -> Result<(), RetryableError> {
    let mut running = stream::iter(futures).buffer_unordered(limit.max(1));
    while let Some(result) = running.next().await {
        result.map_err(|e| RetryableError(e.to_string()))?;
    }
    Ok(())
}

fn reservation_order(event: &InventoryEvent) -> Option<&str> {
    match event {
        InventoryEvent::ReservationRequested(e) => Some(&e.order_id),
        InventoryEvent::ReleaseRequested(e) => Some(&e.order_id),
        InventoryEvent::FulfilmentRequested(e) => Some(&e.order_id),
        InventoryEvent::Received(_) | InventoryEvent::Adjusted(_) => None,
    }
}

fn inventory_event_id(event: &InventoryEvent) -> &str {
    match event {
        InventoryEvent::ReservationRequested(e) => &e.event_id,
        InventoryEvent::ReleaseRequested(e) => &e.event_id,
        InventoryEvent::FulfilmentRequested(e) => &e.event_id,
        InventoryEvent::Received(_) | InventoryEvent::Adjusted(_) => "",
    }
}

fn order_event_id(event: &OrderEvent) -> &str {
    match event {
        OrderEvent::StockOutcome(e) => &e.event_id,
        _ => "",
    }
}

impl Processor for ShopProcessor {
    type Writes = ShopWrites;

    async fn prepare(
        &mut self,
        batch: &[InputRecord],
    ) -> Result<Effects<ShopWrites>, RetryableError> {
        let mut by_partition: BTreeMap<PartitionKey, Vec<&InputRecord>> = BTreeMap::new();
        for record in batch {
            by_partition
                .entry((record.topic.clone(), record.partition))
                .or_default()
                .push(record);
        }
        let mut effects = Effects {
            messages: Vec::new(),
            dead_letters: Vec::new(),
            writes: ShopWrites::default(),
        };
        for (part, records) in &by_partition {
            self.prepare_partition(part, records, &mut effects).await?;
        }
        Ok(effects)
    }

    async fn write(&mut self, w: &ShopWrites) -> Result<(), RetryableError> {
        let store = &*self.store;
        let limit = self.settings.max_concurrent_statements;
        let now = unix_ms();

        // Rows derived from orders first, then the orders themselves (see the module doc).
        let derived: Vec<BoxFuture<'_, Result<(), StoreError>>> = w
            .customer_index
            .iter()
            .map(|o| store.write_order_index(o).boxed())
            .chain(w.sku_sales.iter().map(|(p, sku, minute, cell)| {
                store.write_sku_sales(sku, *minute, *p, cell).boxed()
            }))
            .chain(
                w.minute_sales
                    .iter()
                    .map(|(p, minute, cell)| store.write_minute_sales(*minute, *p, cell).boxed()),
            )
            .collect();
        run_bounded(derived, limit).await?;

        let primary: Vec<BoxFuture<'_, Result<(), StoreError>>> = w
            .orders
            .iter()
            .map(|(p, o)| store.write_order(o, *p).boxed())
            .chain(w.inventory.iter().map(|(p, chunks)| {
                async move {
                    // A SKU's chunks go in order: each is the state after its last event.
                    for chunk in chunks {
                        let reservations: Vec<&Versioned<Reservation>> =
                            chunk.reservations.iter().collect();
                        store
                            .write_inventory(&chunk.stock, &reservations, *p)
                            .await?;
                    }
                    Ok(())
                }
                .boxed()
            }))
            .collect();
        run_bounded(primary, limit).await?;

        let progress: Vec<BoxFuture<'_, Result<(), StoreError>>> = w
            .progress
            .iter()
            .map(|(topic, p, offset, event_time)| {
                store
                    .write_progress(topic, *p, *offset, *event_time, now)
                    .boxed()
            })
            .collect();
        run_bounded(progress, limit).await?;
        Ok(())
    }

    fn committed(&mut self, writes: ShopWrites) {
        count_outcomes(&writes.counts);
        for (part, rows) in writes.cache {
            let cache = self.cache(&part);
            for (k, v) in rows.orders {
                cache.orders.insert(k, v);
            }
            for (k, v) in rows.stock {
                cache.stock.insert(k, v);
            }
            for (k, v) in rows.reservations {
                cache.reservations.insert(k, v);
            }
            for (k, v) in rows.sku_sales {
                cache.sku_sales.insert(k, v);
            }
            for (k, v) in rows.minute_sales {
                cache.minute_sales.insert(k, v);
            }
        }
    }

    fn partitions_revoked(&mut self, partitions: &[(String, i32)]) {
        self.caches.retain(|(topic, p), _| {
            !partitions
                .iter()
                .any(|(t, q)| q == p && t.as_str() == &**topic)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_rows_moves_the_rows_and_leaves_what_committed_adopts() {
        let mut writes = ShopWrites::default();
        writes.progress.push((Arc::from("t"), 0, 41, 1_000));
        writes.minute_sales.push((0, 60_000, cell(1, 1, 41)));
        writes.counts.push(Counted {
            topic: Arc::from("t"),
            event_type: "OrderPlaced",
            outcome: Outcome::Applied,
        });
        writes
            .cache
            .insert((Arc::from("t"), 0), BatchRows::default());

        let rows = writes.take_rows();
        assert_eq!(rows.statement_count(), 2);
        assert!(rows.cache.is_empty() && rows.counts.is_empty());
        assert_eq!(writes.statement_count(), 0);
        assert_eq!((writes.cache.len(), writes.counts.len()), (1, 1));
    }

    fn sale(offset: i64, sku: &str, units: i64) -> SaleContribution {
        SaleContribution {
            offset,
            event_time_ms: 60_000 + offset,
            sku: sku.to_owned(),
            minute_ms: 60_000,
            units,
            revenue_cents: units * 100,
        }
    }

    fn cell(units: i64, orders: i64, applied_offset: i64) -> Versioned<SalesCell> {
        Versioned {
            value: SalesCell {
                units,
                revenue_cents: units * 100,
                orders,
                updated_at_ms: 0,
            },
            applied_offset,
        }
    }

    type SkuCells = HashMap<(String, i64), Versioned<SalesCell>>;
    type MinuteCells = HashMap<i64, Versioned<SalesCell>>;

    /// What a cell counts: units, revenue, orders, watermark.
    fn counted(cell: &Versioned<SalesCell>) -> (i64, i64, i64, i64) {
        let v = &cell.value;
        (v.units, v.revenue_cents, v.orders, cell.applied_offset)
    }

    fn cells(
        minute: Versioned<SalesCell>,
        skus: &[(&str, Versioned<SalesCell>)],
    ) -> (SkuCells, MinuteCells) {
        let sku_cells = skus
            .iter()
            .map(|(sku, c)| (((*sku).to_owned(), 60_000), c.clone()))
            .collect();
        (sku_cells, HashMap::from([(60_000, minute)]))
    }

    #[test]
    fn every_line_of_a_new_sale_counts_once_and_the_order_once() {
        let (mut skus, mut minutes) = cells(
            cell(0, 0, -1),
            &[("A", cell(0, 0, -1)), ("B", cell(0, 0, -1))],
        );
        let (dirty_sku, dirty_minute) =
            add_sales(&[sale(7, "A", 2), sale(7, "B", 3)], &mut skus, &mut minutes);
        assert_eq!(dirty_sku.len(), 2);
        assert_eq!(dirty_minute.len(), 1);
        assert_eq!(counted(&minutes[&60_000]), counted(&cell(5, 1, 7)));
        assert_eq!(
            counted(&skus[&("B".to_owned(), 60_000)]),
            counted(&cell(3, 0, 7))
        );
    }

    #[test]
    fn a_replayed_multi_line_sale_already_in_the_minute_cell_adds_nothing() {
        // Before the crash the minute cell counted offset 7 (both lines), the
        // SKU cells did too; the order row did not, so offset 7 is replayed.
        let (mut skus, mut minutes) =
            cells(cell(5, 1, 7), &[("A", cell(2, 0, 7)), ("B", cell(3, 0, 7))]);
        let (dirty_sku, dirty_minute) =
            add_sales(&[sale(7, "A", 2), sale(7, "B", 3)], &mut skus, &mut minutes);
        assert!(dirty_sku.is_empty() && dirty_minute.is_empty());
        assert_eq!(counted(&minutes[&60_000]), counted(&cell(5, 1, 7)));
    }

    #[test]
    fn a_replay_skips_what_each_cell_holds_and_adds_what_it_lacks() {
        // The minute cell and SKU A were written before the crash, SKU B was not.
        let (mut skus, mut minutes) = cells(
            cell(5, 1, 7),
            &[("A", cell(2, 0, 7)), ("B", cell(0, 0, -1))],
        );
        let replay = [
            sale(7, "A", 2),
            sale(7, "B", 3),
            sale(9, "A", 1),
            sale(9, "B", 1),
        ];
        add_sales(&replay, &mut skus, &mut minutes);
        assert_eq!(
            counted(&skus[&("A".to_owned(), 60_000)]),
            counted(&cell(3, 0, 9))
        );
        assert_eq!(
            counted(&skus[&("B".to_owned(), 60_000)]),
            counted(&cell(4, 0, 9))
        );
        assert_eq!(counted(&minutes[&60_000]), counted(&cell(7, 2, 9)));
    }
}
