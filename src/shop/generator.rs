//! Realistic, seeded streams of shop events for `galley produce`, the demo,
//! tests and benchmarks: stock deliveries, orders that walk through their
//! lifecycle interleaved with each other, a chosen share of invalid
//! transitions, and a chosen share of poison messages of every kind.
//!
//! The same seed and settings always generate the same stream.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use crate::codec::{Codec, EventSet};
use crate::domain::{
    InventoryEvent, OrderCancelled, OrderDelivered, OrderEvent, OrderLine, OrderPlaced,
    OrderShipped, PaymentCaptured, PaymentFailed, StockAdjusted, StockReceived,
};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Pay,
    Ship,
    Deliver,
    Done,
}

struct ActiveOrder {
    id: String,
    total: i64,
    next: Step,
    ready_at: usize,
}

/// Generates a whole stream. Deterministic in `settings`.
pub fn generate(
    codec: &Codec,
    settings: &GeneratorSettings,
) -> (Vec<GeneratedMessage>, StreamSummary) {
    let mut rng = StdRng::seed_from_u64(settings.seed);
    let mut out: Vec<GeneratedMessage> = Vec::with_capacity(settings.count);
    let mut summary = StreamSummary::default();
    let skus: Vec<String> = (0..settings.skus.max(1))
        .map(|i| format!("SKU-{i:05}"))
        .collect();
    let customers: Vec<String> = (0..settings.customers.max(1))
        .map(|i| format!("C-{i:06}"))
        .collect();
    let prices: Vec<i64> = skus
        .iter()
        .map(|_| rng.random_range(199..=19_999))
        .collect();
    let mut active: Vec<ActiveOrder> = Vec::new();
    let mut next_order = 0usize;
    let mut time = settings.start_ms;

    let push_order =
        |out: &mut Vec<GeneratedMessage>, summary: &mut StreamSummary, event: OrderEvent| {
            let mut payload = Vec::new();
            if codec.encode(&event, &mut payload).is_ok() {
                *summary.by_label.entry(event.type_name()).or_default() += 1;
                out.push(GeneratedMessage {
                    destination: Destination::Orders,
                    key: Some(event.key().to_string()),
                    payload,
                    poison_class: None,
                    label: event.type_name(),
                });
            }
        };
    let push_inventory =
        |out: &mut Vec<GeneratedMessage>, summary: &mut StreamSummary, event: InventoryEvent| {
            let mut payload = Vec::new();
            if codec.encode(&event, &mut payload).is_ok() {
                *summary.by_label.entry(event.type_name()).or_default() += 1;
                out.push(GeneratedMessage {
                    destination: Destination::Inventory,
                    key: Some(event.key().to_string()),
                    payload,
                    poison_class: None,
                    label: event.type_name(),
                });
            }
        };

    // Opening stock: most SKUs well stocked, a few scarce so that shortages happen.
    for sku in &skus {
        if out.len() >= settings.count {
            break;
        }
        let quantity = if rng.random_bool(0.15) {
            rng.random_range(1..=5)
        } else {
            rng.random_range(200..=600)
        };
        time += settings.step_ms;
        push_inventory(
            &mut out,
            &mut summary,
            InventoryEvent::Received(StockReceived {
                sku: sku.clone(),
                quantity,
                event_time_ms: time,
            }),
        );
    }

    while out.len() < settings.count {
        time += settings.step_ms;
        let position = out.len();
        if rng.random_bool(settings.poison_fraction.clamp(0.0, 1.0)) {
            let message = poison(codec, &mut rng, &skus, time);
            *summary.by_label.entry("poison").or_default() += 1;
            if let Some(class) = message.poison_class {
                *summary.by_poison_class.entry(class).or_default() += 1;
            }
            out.push(message);
            continue;
        }
        let roll: f64 = rng.random();
        if roll < 0.04 {
            let sku = skus[rng.random_range(0..skus.len())].clone();
            let event = if rng.random_bool(0.7) {
                InventoryEvent::Received(StockReceived {
                    sku,
                    quantity: rng.random_range(10..=100),
                    event_time_ms: time,
                })
            } else {
                let delta = rng.random_range(-5..=5);
                InventoryEvent::Adjusted(StockAdjusted {
                    sku,
                    delta: if delta == 0 { -1 } else { delta },
                    reason: "cycle_count".into(),
                    event_time_ms: time,
                })
            };
            push_inventory(&mut out, &mut summary, event);
            continue;
        }
        if roll < 0.04 + settings.invalid_fraction {
            summary.invalid_transitions += 1;
            let event = invalid_event(&mut rng, &active, next_order, time);
            push_order(&mut out, &mut summary, event);
            continue;
        }
        let ready = active.iter().position(|o| o.ready_at <= position);
        let start_new = ready.is_none() || rng.random_bool(0.3);
        if start_new {
            let id = format!("O-{:x}-{next_order:07}", settings.seed);
            next_order += 1;
            summary.orders += 1;
            let customer = customers[rng.random_range(0..customers.len())].clone();
            let line_count = rng.random_range(1..=3);
            let mut lines: Vec<OrderLine> = Vec::with_capacity(line_count);
            for _ in 0..line_count {
                let i = rng.random_range(0..skus.len());
                if lines.iter().any(|l| l.sku == skus[i]) {
                    continue;
                }
                lines.push(OrderLine {
                    sku: skus[i].clone(),
                    quantity: rng.random_range(1..=4),
                    unit_price_cents: prices[i],
                });
            }
            let total = lines
                .iter()
                .map(|l| i64::from(l.quantity) * l.unit_price_cents)
                .sum();
            push_order(
                &mut out,
                &mut summary,
                OrderEvent::Placed(OrderPlaced {
                    order_id: id.clone(),
                    customer_id: customer,
                    lines,
                    currency: "EUR".into(),
                    event_time_ms: time,
                }),
            );
            active.push(ActiveOrder {
                id,
                total,
                next: Step::Pay,
                ready_at: position + settings.lifecycle_gap,
            });
            continue;
        }
        let Some(index) = ready else { continue };
        let order = &mut active[index];
        let order_id = order.id.clone();
        let event = match order.next {
            Step::Pay => {
                let r: f64 = rng.random();
                if r < 0.08 {
                    order.next = Step::Done;
                    OrderEvent::Cancelled(OrderCancelled {
                        order_id,
                        reason: "customer_request".into(),
                        event_time_ms: time,
                    })
                } else if r < 0.14 {
                    // A failed payment; the customer retries later.
                    OrderEvent::PaymentFailed(PaymentFailed {
                        order_id,
                        reason: "card_declined".into(),
                        event_time_ms: time,
                    })
                } else {
                    order.next = Step::Ship;
                    OrderEvent::PaymentCaptured(PaymentCaptured {
                        order_id,
                        amount_cents: order.total,
                        event_time_ms: time,
                    })
                }
            }
            Step::Ship => {
                order.next = Step::Deliver;
                OrderEvent::Shipped(OrderShipped {
                    order_id,
                    carrier: "parcelco".into(),
                    event_time_ms: time,
                })
            }
            Step::Deliver | Step::Done => {
                order.next = Step::Done;
                OrderEvent::Delivered(OrderDelivered {
                    order_id,
                    event_time_ms: time,
                })
            }
        };
        order.ready_at = position + settings.lifecycle_gap;
        if order.next == Step::Done {
            active.swap_remove(index);
        }
        push_order(&mut out, &mut summary, event);
    }
    (out, summary)
}

/// An order event that the state machine must refuse.
fn invalid_event(
    rng: &mut StdRng,
    active: &[ActiveOrder],
    next_order: usize,
    time: i64,
) -> OrderEvent {
    if active.is_empty() || rng.random_bool(0.3) {
        // An event for an order nobody placed.
        return OrderEvent::Delivered(OrderDelivered {
            order_id: format!("O-UNKNOWN-{next_order:07}-{}", rng.random_range(0..1000)),
            event_time_ms: time,
        });
    }
    let order = &active[rng.random_range(0..active.len())];
    match order.next {
        // Delivered before shipping.
        Step::Pay | Step::Ship => OrderEvent::Delivered(OrderDelivered {
            order_id: order.id.clone(),
            event_time_ms: time,
        }),
        // Paid twice.
        Step::Deliver | Step::Done => OrderEvent::PaymentCaptured(PaymentCaptured {
            order_id: order.id.clone(),
            amount_cents: order.total,
            event_time_ms: time,
        }),
    }
}

/// A message that must go to the dead-letter topic, of a random kind.
fn poison(codec: &Codec, rng: &mut StdRng, skus: &[String], time: i64) -> GeneratedMessage {
    let sku = skus[rng.random_range(0..skus.len())].clone();
    let valid = {
        let mut bytes = Vec::new();
        let event = InventoryEvent::Received(StockReceived {
            sku: sku.clone(),
            quantity: 5,
            event_time_ms: time,
        });
        let _ = codec.encode(&event, &mut bytes);
        bytes
    };
    let (class, key, payload): (&'static str, Option<String>, Vec<u8>) =
        match rng.random_range(0..6) {
            0 => {
                let len = rng.random_range(1..64);
                let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                // Random bytes that happen to start like the wire format are a different case.
                bytes[0] = bytes[0].max(1);
                ("bad_magic", Some(sku), bytes)
            }
            1 => {
                let mut bytes = valid;
                bytes[0] = 7;
                ("bad_magic", Some(sku), bytes)
            }
            2 => {
                let mut bytes = valid;
                bytes[1..5].copy_from_slice(&9_999u32.to_be_bytes());
                ("unknown_schema_id", Some(sku), bytes)
            }
            3 => {
                let mut bytes = valid;
                bytes.truncate(7);
                ("bad_body", Some(sku), bytes)
            }
            4 => ("missing_key", None, valid),
            _ => {
                let mut bytes = Vec::new();
                let event = InventoryEvent::Received(StockReceived {
                    sku: sku.clone(),
                    quantity: 0,
                    event_time_ms: time,
                });
                let _ = codec.encode(&event, &mut bytes);
                ("validation", Some(sku), bytes)
            }
        };
    GeneratedMessage {
        destination: Destination::Inventory,
        key,
        payload,
        poison_class: Some(class),
        label: "poison",
    }
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

/// Sends a generated stream at about `rate` messages per second (0: as fast
/// as the broker takes them) and waits for every acknowledgement. Returns
/// how many were acknowledged.
pub async fn send_all(
    producer: &FutureProducer,
    orders_topic: &str,
    inventory_topic: &str,
    messages: &[GeneratedMessage],
    rate: u32,
) -> Result<usize, KafkaError> {
    let pacer = Pacer::new(rate);
    let mut pending = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let delay = pacer.delay_before(i);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let topic = match m.destination {
            Destination::Orders => orders_topic,
            Destination::Inventory => inventory_topic,
        };
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).payload(&m.payload);
        if let Some(key) = &m.key {
            record = record.key(key.as_str());
        }
        // Queue without waiting for each acknowledgement; collect them at the end.
        pending.push(producer.send_result(record).map_err(|(e, _)| e)?);
    }
    let mut acknowledged = 0;
    for delivery in pending {
        if let Ok(Ok(_)) = delivery.await {
            acknowledged += 1;
        }
    }
    producer.flush(Timeout::After(Duration::from_secs(30)))?;
    Ok(acknowledged)
}

/// Paces sending to `rate` messages per second (0 means as fast as possible).
#[derive(Debug)]
pub struct Pacer {
    started: Instant,
    rate: f64,
}

impl Pacer {
    pub fn new(rate: u32) -> Self {
        Self {
            started: Instant::now(),
            rate: f64::from(rate),
        }
    }

    /// How long to wait before sending message number `sent`.
    pub fn delay_before(&self, sent: usize) -> Duration {
        if self.rate <= 0.0 {
            return Duration::ZERO;
        }
        let due = Duration::from_secs_f64(sent as f64 / self.rate);
        due.saturating_sub(self.started.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitting_keeps_each_order_placed_before_the_rest_of_its_life() {
        let codec = crate::domain::codec().expect("codec");
        let settings = GeneratorSettings {
            count: 2000,
            ..GeneratorSettings::default()
        };
        let (messages, _) = generate(&codec, &settings);
        let (setup, rest) = split_setup(messages.clone());
        assert_eq!(setup.len() + rest.len(), messages.len());
        assert!(setup
            .iter()
            .all(|m| m.label != "PaymentCaptured" && m.label != "OrderShipped"));
        assert!(rest
            .iter()
            .all(|m| m.destination == Destination::Orders && m.label != "OrderPlaced"));
        // Sending setup then the rest keeps every key's messages in their original order.
        let per_key = |part: &[GeneratedMessage]| {
            let mut by_key: std::collections::BTreeMap<Option<String>, Vec<Vec<u8>>> =
                std::collections::BTreeMap::new();
            for m in part {
                by_key
                    .entry(m.key.clone())
                    .or_default()
                    .push(m.payload.clone());
            }
            by_key
        };
        let resent: Vec<GeneratedMessage> = setup.into_iter().chain(rest).collect();
        assert_eq!(per_key(&resent), per_key(&messages));
    }

    #[test]
    fn the_same_seed_generates_the_same_stream() {
        let codec = crate::domain::codec().expect("codec");
        let settings = GeneratorSettings {
            count: 500,
            ..GeneratorSettings::default()
        };
        let (a, _) = generate(&codec, &settings);
        let (b, _) = generate(&codec, &settings);
        assert_eq!(a.len(), 500);
        assert!(a
            .iter()
            .zip(&b)
            .all(|(x, y)| x.payload == y.payload && x.key == y.key));
    }

    #[test]
    fn poison_messages_are_of_the_requested_share_and_all_decode_as_poison() {
        let codec = crate::domain::codec().expect("codec");
        let settings = GeneratorSettings {
            count: 4000,
            poison_fraction: 0.05,
            ..GeneratorSettings::default()
        };
        let (messages, summary) = generate(&codec, &settings);
        let poison: Vec<_> = messages
            .iter()
            .filter(|m| m.poison_class.is_some())
            .collect();
        assert!((100..=300).contains(&poison.len()), "{}", poison.len());
        for m in poison {
            let decoded = codec.decode::<InventoryEvent>(&m.payload);
            match m.poison_class {
                Some("missing_key") => assert!(decoded.is_ok() && m.key.is_none()),
                Some("validation") => {
                    let event = decoded.expect("validation poison decodes");
                    assert!(crate::domain::inventory::validate(&event).is_err());
                }
                Some(class) => assert_eq!(decoded.err().map(|e| e.class()), Some(class)),
                None => unreachable!(),
            }
        }
        assert_eq!(summary.total(), 4000);
        assert!(summary.orders > 100);
    }
}
