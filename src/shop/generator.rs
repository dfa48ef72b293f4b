//! Realistic, seeded streams of shop events for `galley produce`, the demo,
//! tests and benchmarks: stock deliveries, orders that walk through their
//! lifecycle interleaved with each other, a chosen share of invalid
//! transitions, and a chosen share of poison messages of every kind.
//!
//! Which moves an order makes, how often, and which wrong moves are sent on
//! purpose come from the journey tables next to the order handler
//! ([`crate::domain::JOURNEY`]); this module only draws from them.
//!
//! The same seed and settings always generate the same stream.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::codec::{Codec, EventSet};
use crate::domain::{
    InventoryEvent, OrderEvent, OrderLine, OrderPlaced, StockAdjusted, StockReceived,
};
use crate::domain::{JourneyDraw, JourneyMove, JourneyOrder, RefusedMove};

/// Which input topic a generated message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Destination {
    Orders,
    Inventory,
}

/// What the generator was asked for.
#[derive(Debug, Clone)]
pub struct GeneratorSettings {
    /// Messages to generate, poison included.
    pub count: usize,
    pub customers: usize,
    pub skus: usize,
    pub seed: u64,
    /// Share of messages that are poison (0.0 to 1.0).
    pub poison_fraction: f64,
    /// Share of order events that break the state machine on purpose.
    pub invalid_fraction: f64,
    /// Event time of the first event, ms since the epoch.
    pub start_ms: i64,
    /// Event time between consecutive events.
    pub step_ms: i64,
    /// Messages between two steps of the same order, so that stock answers
    /// have time to come back when the stream is sent at a moderate rate.
    pub lifecycle_gap: usize,
}

impl Default for GeneratorSettings {
    fn default() -> Self {
        Self {
            count: 1000,
            customers: 50,
            skus: 20,
            seed: 42,
            poison_fraction: 0.01,
            invalid_fraction: 0.02,
            start_ms: 1_767_225_600_000, // 2026-01-01T00:00:00Z
            step_ms: 50,
            lifecycle_gap: 1000,
        }
    }
}

/// One message of the stream.
#[derive(Debug, Clone)]
pub struct GeneratedMessage {
    pub destination: Destination,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    /// The dead-letter error class this message must produce, if it is poison.
    pub poison_class: Option<&'static str>,
    /// The event's type name, or `poison`.
    pub label: &'static str,
}

/// Counts of what a stream holds, for the summary `galley produce` prints.
#[derive(Debug, Default, Clone)]
pub struct StreamSummary {
    pub by_label: BTreeMap<&'static str, usize>,
    pub by_poison_class: BTreeMap<&'static str, usize>,
    pub orders: usize,
    pub invalid_transitions: usize,
}

impl StreamSummary {
    pub fn total(&self) -> usize {
        self.by_label.values().sum()
    }
}

/// Share of non-poison messages that are stock movements after the opening stock.
const STOCK_MOVEMENT_SHARE: f64 = 0.04;
/// Share of SKUs that open scarce, so that shortages happen.
const SCARCE_SKU_SHARE: f64 = 0.15;
/// Chance of placing a new order even when an active one could move on, so
/// that many orders are in flight at once.
const NEW_ORDER_CHANCE: f64 = 0.3;
/// Share of invalid transitions sent for an order nobody placed.
const UNPLACED_ORDER_SHARE: f64 = 0.3;

/// What the simulated shop sells and who buys.
struct Catalog {
    skus: Vec<String>,
    prices: Vec<i64>,
    customers: Vec<String>,
}

impl Catalog {
    fn new(rng: &mut StdRng, skus: usize, customers: usize) -> Self {
        let skus: Vec<String> = (0..skus.max(1)).map(|i| format!("SKU-{i:05}")).collect();
        let prices = skus
            .iter()
            .map(|_| rng.random_range(199..=19_999))
            .collect();
        let customers = (0..customers.max(1)).map(|i| format!("C-{i:06}")).collect();
        Self {
            skus,
            prices,
            customers,
        }
    }

    fn random_sku(&self, rng: &mut StdRng) -> String {
        self.skus[rng.random_range(0..self.skus.len())].clone()
    }
}

/// An order still on its journey, and the stream position from which its
/// next move may be sent.
struct ActiveOrder {
    journey: JourneyOrder,
    ready_at: usize,
}

/// The state of one stream being generated.
struct StreamBuilder<'a> {
    codec: &'a Codec,
    settings: &'a GeneratorSettings,
    rng: StdRng,
    catalog: Catalog,
    active: Vec<ActiveOrder>,
    orders_placed: usize,
    time: i64,
    out: Vec<GeneratedMessage>,
    summary: StreamSummary,
}

/// Generates a whole stream. Deterministic in `settings`.
pub fn generate(
    codec: &Codec,
    settings: &GeneratorSettings,
) -> (Vec<GeneratedMessage>, StreamSummary) {
    let mut stream = StreamBuilder::new(codec, settings);
    stream.opening_stock();
    while !stream.is_full() {
        stream.next_message();
    }
    (stream.out, stream.summary)
}

impl<'a> StreamBuilder<'a> {
    fn new(codec: &'a Codec, settings: &'a GeneratorSettings) -> Self {
        let mut rng = StdRng::seed_from_u64(settings.seed);
        let catalog = Catalog::new(&mut rng, settings.skus, settings.customers);
        Self {
            codec,
            settings,
            rng,
            catalog,
            active: Vec::new(),
            orders_placed: 0,
            time: settings.start_ms,
            out: Vec::with_capacity(settings.count),
            summary: StreamSummary::default(),
        }
    }

    fn is_full(&self) -> bool {
        self.out.len() >= self.settings.count
    }

    /// Most SKUs well stocked, a few scarce.
    fn opening_stock(&mut self) {
        for index in 0..self.catalog.skus.len() {
            if self.is_full() {
                break;
            }
            let quantity = if self.rng.random_bool(SCARCE_SKU_SHARE) {
                self.rng.random_range(1..=5)
            } else {
                self.rng.random_range(200..=600)
            };
            self.time += self.settings.step_ms;
            let sku = self.catalog.skus[index].clone();
            self.push_inventory(stock_received(sku, quantity, self.time));
        }
    }

    fn next_message(&mut self) {
        self.time += self.settings.step_ms;
        if self.rng.random_bool(share(self.settings.poison_fraction)) {
            self.push_poison();
            return;
        }
        let roll: f64 = self.rng.random();
        if roll < STOCK_MOVEMENT_SHARE {
            let event = stock_movement(&mut self.rng, &self.catalog, self.time);
            self.push_inventory(event);
            return;
        }
        if roll < STOCK_MOVEMENT_SHARE + self.settings.invalid_fraction {
            self.push_refused_move();
            return;
        }
        let position = self.out.len();
        match self.active.iter().position(|o| o.ready_at <= position) {
            Some(index) if !self.rng.random_bool(NEW_ORDER_CHANCE) => self.advance_order(index),
            _ => self.place_order(),
        }
    }

    fn place_order(&mut self) {
        let order_id = format!("O-{:x}-{:07}", self.settings.seed, self.orders_placed);
        self.orders_placed += 1;
        self.summary.orders += 1;
        let (placed, journey) = new_order(&mut self.rng, &self.catalog, order_id, self.time);
        self.active.push(ActiveOrder {
            journey,
            ready_at: self.out.len() + self.settings.lifecycle_gap,
        });
        self.push_order(placed);
    }

    fn advance_order(&mut self, index: usize) {
        let ready_at = self.out.len() + self.settings.lifecycle_gap;
        let order = &mut self.active[index];
        let event = next_move(&mut self.rng, &mut order.journey, self.time);
        order.ready_at = ready_at;
        if event.is_none() || order.journey.is_over() {
            self.active.swap_remove(index);
        }
        if let Some(event) = event {
            self.push_order(event);
        }
    }

    /// An order event that the state machine must refuse.
    fn push_refused_move(&mut self) {
        self.summary.invalid_transitions += 1;
        let mut event = None;
        if !self.active.is_empty() && !self.rng.random_bool(UNPLACED_ORDER_SHARE) {
            let index = self.rng.random_range(0..self.active.len());
            let journey = &self.active[index].journey;
            event = refused_move(&mut self.rng, journey, self.time).map(|(_, event)| event);
        }
        let event = match event {
            Some(event) => event,
            None => unplaced_order_move(&mut self.rng, self.orders_placed, self.time),
        };
        self.push_order(event);
    }

    fn push_poison(&mut self) {
        if let Some(message) = poison(self.codec, &mut self.rng, &self.catalog, self.time) {
            self.push(message);
        }
    }

    fn push_order(&mut self, event: OrderEvent) {
        let Some(payload) = order_payload(self.codec, &event) else {
            return;
        };
        self.push(GeneratedMessage {
            destination: Destination::Orders,
            key: Some(event.key().to_string()),
            payload,
            poison_class: None,
            label: event.type_name(),
        });
    }

    fn push_inventory(&mut self, event: InventoryEvent) {
        let Some(payload) = inventory_payload(self.codec, &event) else {
            return;
        };
        self.push(GeneratedMessage {
            destination: Destination::Inventory,
            key: Some(event.key().to_string()),
            payload,
            poison_class: None,
            label: event.type_name(),
        });
    }

    fn push(&mut self, message: GeneratedMessage) {
        *self.summary.by_label.entry(message.label).or_default() += 1;
        if let Some(class) = message.poison_class {
            *self.summary.by_poison_class.entry(class).or_default() += 1;
        }
        self.out.push(message);
    }
}

/// A probability from a setting, where anything out of range means never or always.
fn share(fraction: f64) -> f64 {
    if fraction.is_nan() {
        0.0
    } else {
        fraction.clamp(0.0, 1.0)
    }
}

/// A new order of one to three distinct SKUs, and its journey.
fn new_order(
    rng: &mut StdRng,
    catalog: &Catalog,
    order_id: String,
    time: i64,
) -> (OrderEvent, JourneyOrder) {
    let customer_id = catalog.customers[rng.random_range(0..catalog.customers.len())].clone();
    let line_count = rng.random_range(1..=3);
    let mut lines: Vec<OrderLine> = Vec::with_capacity(line_count);
    for _ in 0..line_count {
        let i = rng.random_range(0..catalog.skus.len());
        if lines.iter().any(|l| l.sku == catalog.skus[i]) {
            continue;
        }
        lines.push(OrderLine {
            sku: catalog.skus[i].clone(),
            quantity: rng.random_range(1..=4),
            unit_price_cents: catalog.prices[i],
        });
    }
    let placed = OrderPlaced {
        order_id,
        customer_id,
        lines,
        currency: "EUR".into(),
        event_time_ms: time,
    };
    let journey = JourneyOrder::placed(&placed);
    (OrderEvent::Placed(placed), journey)
}

/// The customer's next move with an order, picked from the journey table by
/// weight; advances the simulated order. `None` once its journey is over.
fn next_move(rng: &mut StdRng, journey: &mut JourneyOrder, time: i64) -> Option<OrderEvent> {
    if journey.is_over() {
        return None;
    }
    let moves: Vec<&JourneyMove> = crate::domain::journey_moves(journey.status).collect();
    let step = pick_weighted(rng, &moves, |m| m.weight)?;
    let event = (step.build)(journey, draw(rng, time));
    journey.advance(step, &event);
    Some(event)
}

/// An event sent for an order at a moment its status does not allow, and the
/// move it came from. `None` when nothing is refused in that status.
fn refused_move(
    rng: &mut StdRng,
    journey: &JourneyOrder,
    time: i64,
) -> Option<(&'static RefusedMove, OrderEvent)> {
    let moves: Vec<&RefusedMove> = crate::domain::refused_moves(journey.status).collect();
    let refused = pick_weighted(rng, &moves, |m| m.weight)?;
    Some((refused, (refused.build)(journey, draw(rng, time))))
}

/// An event for an order id nobody placed.
fn unplaced_order_move(rng: &mut StdRng, orders_placed: usize, time: i64) -> OrderEvent {
    let order_id = format!("O-UNKNOWN-{orders_placed:07}-{}", rng.random_range(0..1000));
    crate::domain::unplaced_order_event(order_id, draw(rng, time))
}

fn draw(rng: &mut StdRng, time: i64) -> JourneyDraw {
    JourneyDraw {
        event_time_ms: time,
        choice: rng.random(),
    }
}

/// One of `items`, each as likely as its weight; `None` if all weigh nothing.
fn pick_weighted<'t, T>(
    rng: &mut StdRng,
    items: &[&'t T],
    weight: impl Fn(&T) -> u32,
) -> Option<&'t T> {
    let total: u64 = items.iter().map(|item| u64::from(weight(item))).sum();
    if total == 0 {
        return None;
    }
    let mut ticket = rng.random_range(0..total);
    for item in items {
        let w = u64::from(weight(item));
        if ticket < w {
            return Some(item);
        }
        ticket -= w;
    }
    None
}

/// A delivery (most of the time) or a cycle-count correction.
fn stock_movement(rng: &mut StdRng, catalog: &Catalog, time: i64) -> InventoryEvent {
    let sku = catalog.random_sku(rng);
    if rng.random_bool(0.7) {
        return stock_received(sku, rng.random_range(10..=100), time);
    }
    let delta = rng.random_range(-5..=5);
    InventoryEvent::Adjusted(StockAdjusted {
        sku,
        delta: if delta == 0 { -1 } else { delta },
        reason: "cycle_count".into(),
        event_time_ms: time,
    })
}

fn stock_received(sku: String, quantity: i32, time: i64) -> InventoryEvent {
    InventoryEvent::Received(StockReceived {
        sku,
        quantity,
        event_time_ms: time,
    })
}

/// The only call into the codec for order events, so that a change of its
/// encode API stays in one place.
fn order_payload(codec: &Codec, event: &OrderEvent) -> Option<Vec<u8>> {
    let mut payload = Vec::new();
    codec.encode(event, &mut payload).ok()?;
    Some(payload)
}

/// The only call into the codec for inventory events.
fn inventory_payload(codec: &Codec, event: &InventoryEvent) -> Option<Vec<u8>> {
    let mut payload = Vec::new();
    codec.encode(event, &mut payload).ok()?;
    Some(payload)
}

/// A message that must go to the dead-letter topic, of a random kind. `None`
/// only if the codec cannot encode the valid event the poison starts from.
fn poison(
    codec: &Codec,
    rng: &mut StdRng,
    catalog: &Catalog,
    time: i64,
) -> Option<GeneratedMessage> {
    let sku = catalog.random_sku(rng);
    let mut valid = inventory_payload(codec, &stock_received(sku.clone(), 5, time))?;
    let (class, key, payload): (&'static str, Option<String>, Vec<u8>) =
        match rng.random_range(0..6) {
            0 => ("bad_magic", Some(sku), random_non_wire_bytes(rng)),
            1 => {
                if let Some(magic) = valid.first_mut() {
                    *magic = 7;
                }
                ("bad_magic", Some(sku), valid)
            }
            2 => {
                if let Some(schema_id) = valid.get_mut(1..5) {
                    schema_id.copy_from_slice(&9_999u32.to_be_bytes());
                }
                ("unknown_schema_id", Some(sku), valid)
            }
            3 => {
                valid.truncate(7);
                ("bad_body", Some(sku), valid)
            }
            4 => ("missing_key", None, valid),
            _ => {
                let invalid = inventory_payload(codec, &stock_received(sku.clone(), 0, time))?;
                ("validation", Some(sku), invalid)
            }
        };
    Some(GeneratedMessage {
        destination: Destination::Inventory,
        key,
        payload,
        poison_class: Some(class),
        label: "poison",
    })
}

/// Random bytes that do not start like the wire format: random bytes that
/// happen to are a different poison case.
fn random_non_wire_bytes(rng: &mut StdRng) -> Vec<u8> {
    let len = rng.random_range(1..64);
    let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
    if let Some(first) = bytes.first_mut() {
        *first = (*first).max(1);
    }
    bytes
}

/// Splits a stream into what upstream sends first (orders placed, stock
/// movements, poison) and the rest of each order's life, keeping the order
/// of messages within each part. Sending the second part only once galley
/// has answered every reservation makes a stream's outcome independent of
/// how fast galley runs: no shipment then races its stock answer.
pub fn split_setup(
    messages: Vec<GeneratedMessage>,
) -> (Vec<GeneratedMessage>, Vec<GeneratedMessage>) {
    messages
        .into_iter()
        .partition(|m| m.destination == Destination::Inventory || m.label == "OrderPlaced")
}

#[cfg(test)]
#[path = "generator_tests.rs"]
mod tests;
