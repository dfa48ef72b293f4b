//! One batch prepared: per input partition, its events are decoded, their
//! rows loaded, the pure handlers of [`crate::domain`] run on them in offset
//! order, and the rows they changed collected into the batch's writes.
//!
//! An event at or below a row's watermark was applied to that row before and
//! is a duplicate; every row an event changes takes its offset as the new
//! watermark (see the module doc of [`crate::shop`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::cache::{BatchRows, PartitionKey, ReservationKey};
use super::decode::Decoded;
use super::known::note_created_keys;
use super::load::reservation_order;
use super::sales::{add_sales, ChangedCells, SaleContribution};
use super::writes::{Counted, InventoryLog, ShopWrites};
use super::ShopProcessor;
use crate::codec::EventSet;
use crate::domain::inventory::{self, Reservation};
use crate::domain::order;
use crate::domain::{Emitted, EventIds, EventOrigin, InventoryEvent, OrderEvent, Outcome};
use crate::pipeline::{Effects, InputRecord, StepError};
use crate::store::marks::RecordMark;
use crate::store::Versioned;
use crate::telemetry as t;

/// What the handlers decided for one partition's events, besides the
/// messages and outcomes, which go straight into the effects.
#[derive(Default)]
struct PartitionDecisions {
    /// Orders whose row changed, in key order.
    changed_orders: BTreeSet<String>,
    /// Each SKU whose stock changed, with its changes in order.
    inventory_log: BTreeMap<String, InventoryLog>,
    sales: Vec<SaleContribution>,
    /// The record of the highest offset seen, and the newest event time.
    newest: Option<(RecordMark, i64)>,
}

impl PartitionDecisions {
    fn note_seen(&mut self, record: &InputRecord, event_time_ms: i64) {
        let mark = RecordMark::of(record.offset, record.key.as_deref(), record.timestamp_ms);
        self.newest = Some(match self.newest {
            Some((m, t)) if m.offset >= mark.offset => (m, t.max(event_time_ms)),
            Some((_, t)) => (mark, t.max(event_time_ms)),
            None => (mark, event_time_ms),
        });
    }
}

impl ShopProcessor {
    /// Prepares a batch, one input partition after the other.
    pub(super) async fn prepare_batch(
        &mut self,
        batch: &[InputRecord],
    ) -> Result<Effects<ShopWrites>, StepError> {
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
            self.load_known_keys(part).await?;
            self.prepare_partition(part, records, &mut effects).await?;
        }
        note_created_keys(&mut effects.writes, &self.caches.known_keys);
        Ok(effects)
    }

    /// Decides one partition's events and appends the effects to `effects`.
    async fn prepare_partition(
        &mut self,
        part: &PartitionKey,
        records: &[&InputRecord],
        effects: &mut Effects<ShopWrites>,
    ) -> Result<(), StepError> {
        let events = self.decode_records(records, &mut effects.dead_letters);
        let mut rows = BatchRows::default();
        self.load_entity_rows(part, &events, &mut rows).await?;
        let decided = self.decide_events(part, &events, &mut rows, effects)?;
        self.load_sales_rows(part, &decided.sales, &mut rows)
            .await?;
        let changed_cells = add_sales(&decided.sales, &mut rows.sku_sales, &mut rows.minute_sales);
        collect_writes(&mut effects.writes, part, rows, decided, changed_cells);
        Ok(())
    }

    /// Runs the handlers on a partition's events in order, appending the
    /// messages they emit and their outcomes to `effects`.
    fn decide_events(
        &self,
        part: &PartitionKey,
        events: &[(&InputRecord, Decoded)],
        rows: &mut BatchRows,
        effects: &mut Effects<ShopWrites>,
    ) -> Result<PartitionDecisions, StepError> {
        let handler_started = Instant::now();
        let mut decided = PartitionDecisions::default();
        for (record, event) in events {
            let (outcome, emitted) = self.decide_event(record, event, rows, &mut decided);
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
        Ok(decided)
    }

    fn decide_event(
        &self,
        record: &InputRecord,
        event: &Decoded,
        rows: &mut BatchRows,
        decided: &mut PartitionDecisions,
    ) -> (Outcome, Vec<Emitted>) {
        let origin = EventOrigin {
            topic: &record.topic,
            partition: record.partition,
            offset: record.offset,
        };
        let mut ids = EventIds::new(origin);
        decided.note_seen(record, event.event_time_ms());
        match event {
            Decoded::Order(e) => apply_order_event(e, record.offset, &mut ids, rows, decided),
            Decoded::Inventory(e) => {
                let threshold = self.settings.low_stock_threshold;
                apply_inventory_event(e, record.offset, threshold, &mut ids, rows, decided)
            }
        }
    }
}

fn apply_order_event(
    event: &OrderEvent,
    offset: i64,
    ids: &mut EventIds,
    rows: &mut BatchRows,
    decided: &mut PartitionDecisions,
) -> (Outcome, Vec<Emitted>) {
    let slot = rows.orders.entry(event.key().to_string()).or_insert(None);
    if slot.as_ref().is_some_and(|v| v.applied_offset >= offset) {
        return (Outcome::Duplicate, Vec::new());
    }
    let decision = order::apply(slot.as_ref().map(|v| &v.value), event, ids);
    if order_row_advances(&decision.outcome, decision.state_changed, slot.is_some()) {
        let value = decision
            .state
            .clone()
            .or_else(|| slot.as_ref().map(|v| v.value.clone()));
        if let Some(value) = value {
            *slot = Some(Versioned {
                value,
                applied_offset: offset,
            });
            decided.changed_orders.insert(event.key().to_string());
        }
    }
    let event_time_ms = event.event_time_ms();
    decided
        .sales
        .extend(decision.sales.into_iter().map(|sale| SaleContribution {
            offset,
            event_time_ms,
            sku: sale.sku,
            minute_ms: sale.minute_ms,
            units: sale.units,
            revenue_cents: sale.revenue_cents,
        }));
    (decision.outcome, decision.emitted)
}

/// Whether an order event that is not a duplicate moves the order row's
/// watermark to its offset.
fn order_row_advances(outcome: &Outcome, state_changed: bool, row_exists: bool) -> bool {
    match (outcome, state_changed) {
        (Outcome::Applied, true) => true,
        // A refused event leaves the order as it was, but the row records
        // that it was seen, so that a replay does not refuse it a second time.
        (Outcome::Rejected { .. }, _) => row_exists,
        _ => false,
    }
}

fn apply_inventory_event(
    event: &InventoryEvent,
    offset: i64,
    low_stock_threshold: i64,
    ids: &mut EventIds,
    rows: &mut BatchRows,
    decided: &mut PartitionDecisions,
) -> (Outcome, Vec<Emitted>) {
    let sku = event.key().to_string();
    let stock_slot = rows.stock.entry(sku.clone()).or_insert(None);
    if stock_slot
        .as_ref()
        .is_some_and(|v| v.applied_offset >= offset)
    {
        return (Outcome::Duplicate, Vec::new());
    }
    let reservation_key = reservation_order(event).map(|o| (sku.clone(), o.to_string()));
    let reservation = reservation_key
        .as_ref()
        .and_then(|k| rows.reservations.get(k))
        .and_then(|v| v.as_ref())
        .map(|v| &v.value);
    let decision = inventory::apply(
        stock_slot.as_ref().map(|v| &v.value),
        reservation,
        event,
        low_stock_threshold,
        ids,
    );
    if decision.stock_changed || decision.reservation_changed {
        let stock = Versioned {
            value: decision.stock.clone(),
            applied_offset: offset,
        };
        *stock_slot = Some(stock.clone());
        let log = decided.inventory_log.entry(sku).or_default();
        log.stock = Some(stock);
        if decision.reservation_changed {
            let reservation = decision.reservation.clone();
            record_reservation(reservation_key, reservation, offset, rows, log);
        }
    }
    (decision.outcome, decision.emitted)
}

/// Puts a changed reservation into the batch's rows and the SKU's log.
fn record_reservation(
    key: Option<ReservationKey>,
    reservation: Option<Reservation>,
    offset: i64,
    rows: &mut BatchRows,
    log: &mut InventoryLog,
) {
    let (Some(key), Some(value)) = (key, reservation) else {
        return;
    };
    let versioned = Versioned {
        value,
        applied_offset: offset,
    };
    rows.reservations.insert(key, Some(versioned.clone()));
    log.add_reservation(versioned);
}

/// Appends the rows one partition's events changed to the batch's writes,
/// in the order they are written, and hands its rows to the cache.
fn collect_writes(
    w: &mut ShopWrites,
    part: &PartitionKey,
    rows: BatchRows,
    decided: PartitionDecisions,
    (changed_sku_cells, changed_minute_cells): ChangedCells,
) {
    for key in changed_sku_cells {
        if let Some(cell) = rows.sku_sales.get(&key) {
            w.sku_sales.push((part.clone(), key.0, key.1, cell.clone()));
        }
    }
    for minute in changed_minute_cells {
        if let Some(cell) = rows.minute_sales.get(&minute) {
            w.minute_sales.push((part.clone(), minute, cell.clone()));
        }
    }
    for id in decided.changed_orders {
        if let Some(Some(order)) = rows.orders.get(&id) {
            w.customer_index.push((part.clone(), order.clone()));
            w.orders.push((part.clone(), order.clone()));
        }
    }
    for (_, log) in decided.inventory_log {
        let chunks = log.into_chunks();
        if !chunks.is_empty() {
            w.inventory.push((part.clone(), chunks));
        }
    }
    if let Some((newest, event_time)) = decided.newest {
        w.progress.push((part.clone(), newest, event_time));
    }
    w.cache.insert(part.clone(), rows);
}
