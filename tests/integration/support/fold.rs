//! The test oracle: an independent re-implementation of the shop's business
//! rules. Given the raw contents of both input topics it computes what every
//! projection row and every published event must be once galley has handled
//! all of them.
//!
//! This module deliberately shares no code with the production handlers
//! (`galley::domain::order`, `galley::domain::inventory`). It only uses the
//! codec to decode messages and the plain event types. If both implementations
//! agree, the pipeline is right; if they disagree, one of them is wrong and
//! the test says where.
//!
//! Every emitted event is computed in full, payload and all, from the rules.
//! The records galley writes back onto its own input topics (reservation
//! requests, releases and fulfilments by SKU, stock outcomes by order id) are
//! not taken as inputs: the fold replays the partitions as queues in a causal
//! simulation, and when it reaches such a record it applies the event it
//! emitted itself under that id. Only the record's position (which partition,
//! which offset) comes from the topic: timing is nondeterministic, contents
//! are not. `published.rs` then compares galley's payloads with the fold's.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;

use galley::codec::{Codec, EventSet};
use galley::domain::{
    minute_of, Emitted, InventoryEvent, LowStockAlert, OrderEvent, OrderLine, OrderRejected,
    OrderStatusChanged, ResultEvent, StockFulfilmentRequested, StockReleaseRequested,
    StockReservationOutcome, StockReservationRequested, StockReserved, StockShort,
};

/// One message read back from an input topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputMessage {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// The `galley.event_id` header: set on the records galley itself wrote
    /// (re-keyed requests and answers), absent on outside input.
    pub event_id: Option<String>,
}

/// The parts of galley's configuration the rules depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoldSettings {
    pub orders_topic: String,
    pub inventory_topic: String,
    pub low_stock_threshold: i64,
    pub max_event_bytes: usize,
}

/// One row of the orders projection.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExpectedOrder {
    pub customer_id: String,
    pub status: String,
    pub currency: String,
    pub total_cents: i64,
    pub paid_cents: i64,
    pub refunded_cents: i64,
    pub placed_at_ms: i64,
    pub updated_at_ms: i64,
    /// (sku, quantity, unit price in cents, stock state), in line order.
    pub lines: Vec<(String, i32, i64, String)>,
}

/// Which topic an emitted event is published to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Destination {
    Results,
    Orders,
    Inventory,
}

/// Which topic and which type an emitted event has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmittedKind {
    pub destination: Destination,
    pub event_type: &'static str,
}

/// The topic `event` is published to.
pub fn destination_of(event: &Emitted) -> Destination {
    match event {
        Emitted::Result(_) => Destination::Results,
        Emitted::Order(_) => Destination::Orders,
        Emitted::Inventory(_) => Destination::Inventory,
    }
}

/// The topic and type of `event`.
pub fn kind_of(event: &Emitted) -> EmittedKind {
    let event_type = match event {
        Emitted::Result(e) => e.type_name(),
        Emitted::Order(e) => e.type_name(),
        Emitted::Inventory(e) => e.type_name(),
    };
    EmittedKind {
        destination: destination_of(event),
        event_type,
    }
}

/// The record key `event` must be published with.
pub fn key_of(event: &Emitted) -> &str {
    match event {
        Emitted::Result(e) => e.key(),
        Emitted::Order(e) => e.key(),
        Emitted::Inventory(e) => e.key(),
    }
}

/// Everything the handlers must have produced from a given input.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Expected {
    pub orders: BTreeMap<String, ExpectedOrder>,
    /// (customer_id, placed_at_ms, order_id) → (status, total_cents)
    pub customer_orders: BTreeMap<(String, i64, String), (String, i64)>,
    /// (sku, minute_ms) → (units, revenue_cents)
    pub sku_sales: BTreeMap<(String, i64), (i64, i64)>,
    /// minute_ms → (units, revenue_cents, orders)
    pub minute_sales: BTreeMap<i64, (i64, i64, i64)>,
    /// sku → (on_hand, reserved)
    pub stock: BTreeMap<String, (i64, i64)>,
    /// (sku, order_id) → (quantity, status)
    pub reservations: BTreeMap<(String, String), (i32, String)>,
    /// event id → the whole event that must be published under it
    pub emitted: BTreeMap<String, Emitted>,
    /// Records galley wrote onto an input topic under an id the fold never
    /// emits (or onto the wrong topic): the fold skipped them.
    pub unexpected_inputs: Vec<String>,
    /// (topic, partition, offset) → error class
    pub dead_letters: BTreeMap<(String, i32, i64), String>,
    /// (outcome, event_type) → how many input events had that outcome
    pub counts: BTreeMap<(String, String), usize>,
    /// rejection reason → how many
    pub rejections: BTreeMap<String, usize>,
}

// Order statuses.
const PLACED: &str = "placed";
const CONFIRMED: &str = "confirmed";
const PAYMENT_FAILED: &str = "payment_failed";
const PAID: &str = "paid";
const SHIPPED: &str = "shipped";
const DELIVERED: &str = "delivered";
const CANCELLED: &str = "cancelled";
const REFUNDED: &str = "refunded";

// Line stock states (and reservation statuses).
const PENDING: &str = "pending";
const RESERVED: &str = "reserved";
const SHORT: &str = "short";
const RELEASED: &str = "released";
const FULFILLED: &str = "fulfilled";

// Why an order was cancelled by a shortage rather than by its customer.
const OUT_OF_STOCK: &str = "out_of_stock";

const MAX_ID_BYTES: usize = 128;
const MAX_LINES: usize = 100;
const MAX_LINE_QUANTITY: i32 = 1_000_000;

/// Which input topic a message belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Input {
    Orders,
    Inventory,
}

/// Collects the events emitted while handling one input message, each under
/// its deterministic id `{topic}/{partition}/{offset}/{index}`.
struct Emitter<'a> {
    prefix: String,
    next: u32,
    emitted: &'a mut BTreeMap<String, Emitted>,
}

impl Emitter<'_> {
    /// Emits the event `build` makes with the next id.
    fn emit(&mut self, build: impl FnOnce(String) -> Emitted) {
        let id = format!("{}/{}", self.prefix, self.next);
        self.next += 1;
        let previous = self.emitted.insert(id.clone(), build(id.clone()));
        assert!(previous.is_none(), "oracle emitted id {id} twice");
    }

    /// An order's status moved `from` (absent when just placed) `to`.
    fn status(&mut self, order: &OrderRef<'_>, from: Option<&str>, to: &str, reason: Option<&str>) {
        self.emit(|event_id| {
            Emitted::Result(ResultEvent::OrderStatusChanged(OrderStatusChanged {
                event_id,
                order_id: order.order_id.to_string(),
                customer_id: order.customer_id.to_string(),
                from_status: from.map(str::to_string),
                to_status: to.to_string(),
                reason: reason.map(str::to_string),
                event_time_ms: order.time,
            }))
        });
    }

    /// `event` was refused for `reason`; `status` is the order's, if any.
    fn rejected(&mut self, event: &OrderEvent, status: Option<&str>, reason: &str) {
        self.emit(|event_id| {
            Emitted::Result(ResultEvent::OrderRejected(OrderRejected {
                event_id,
                order_id: event.key().to_string(),
                event_type: event.type_name().to_string(),
                status: status.map(str::to_string),
                reason: reason.to_string(),
                event_time_ms: event.event_time_ms(),
            }))
        });
    }

    /// Asks inventory to reserve, release or take off the shelf a line's units.
    fn stock_request(&mut self, order: &OrderRef<'_>, sku: &str, request: Request) {
        let (sku, order_id, time) = (sku.to_string(), order.order_id.to_string(), order.time);
        self.emit(|event_id| {
            Emitted::Inventory(match request {
                Request::Reserve(quantity) => {
                    InventoryEvent::ReservationRequested(StockReservationRequested {
                        event_id,
                        sku,
                        order_id,
                        quantity,
                        event_time_ms: time,
                    })
                }
                Request::Release => InventoryEvent::ReleaseRequested(StockReleaseRequested {
                    event_id,
                    sku,
                    order_id,
                    event_time_ms: time,
                }),
                Request::Fulfil => InventoryEvent::FulfilmentRequested(StockFulfilmentRequested {
                    event_id,
                    sku,
                    order_id,
                    event_time_ms: time,
                }),
            })
        });
    }
}

/// What the order events emitted for one order name: its ids, and the time
/// of the event being handled.
struct OrderRef<'a> {
    order_id: &'a str,
    customer_id: &'a str,
    time: i64,
}

/// What an order asks of inventory for one line.
#[derive(Clone, Copy)]
enum Request {
    Reserve(i32),
    Release,
    Fulfil,
}

/// A free-text reason the customer left blank says nothing: it is absent.
fn reason_text(text: &str) -> Option<&str> {
    let trimmed = text.trim();
    (!trimmed.is_empty()).then_some(trimmed)
}

/// How one well-formed input event was handled.
enum Handled {
    Applied,
    Duplicate,
    Rejected(&'static str),
}

/// Computes the expected outcome of handling every message in `messages`.
///
/// Messages are grouped per (topic, partition) and each partition is a queue
/// handled in offset order. A record galley wrote (it has an event id) is
/// handled once the fold has emitted that id, with the fold's own event, not
/// galley's bytes; until then its partition waits. Per-key state lives in
/// one partition, so only the order within a partition matters. When no
/// partition can move, the first waiting record is one the fold never emits:
/// it is skipped and listed in `unexpected_inputs`. Messages on topics other
/// than the two input topics are ignored.
pub fn fold(codec: &Codec, settings: &FoldSettings, messages: &[InputMessage]) -> Expected {
    let mut queues: BTreeMap<(&str, i32), Vec<&InputMessage>> = BTreeMap::new();
    for m in messages
        .iter()
        .filter(|m| m.topic == settings.orders_topic || m.topic == settings.inventory_topic)
    {
        queues.entry((&m.topic, m.partition)).or_default().push(m);
    }
    let mut queues: Vec<VecDeque<&InputMessage>> = queues
        .into_values()
        .map(|mut q| {
            q.sort_by_key(|m| m.offset);
            q.into()
        })
        .collect();

    let mut expected = Expected::default();
    loop {
        let mut advanced = false;
        for queue in &mut queues {
            while let Some(&message) = queue.front() {
                if !step(codec, settings, message, &mut expected) {
                    break;
                }
                queue.pop_front();
                advanced = true;
            }
        }
        if advanced {
            continue;
        }
        let Some(stuck) = queues.iter_mut().find_map(VecDeque::pop_front) else {
            break;
        };
        expected.unexpected_inputs.push(format!(
            "{}/{}/{}: galley wrote event id {:?}, which the fold never emits",
            stuck.topic,
            stuck.partition,
            stuck.offset,
            stuck.event_id.as_deref().unwrap_or_default()
        ));
    }
    expected
}

/// Handles `message` if it can be handled now: false when galley wrote it
/// under an id the fold has not emitted (yet).
fn step(
    codec: &Codec,
    settings: &FoldSettings,
    message: &InputMessage,
    expected: &mut Expected,
) -> bool {
    let input = if message.topic == settings.orders_topic {
        Input::Orders
    } else {
        Input::Inventory
    };
    let screened = match &message.event_id {
        None => screen(codec, settings, input, message),
        Some(id) => {
            let Some(own) = expected.emitted.get(id) else {
                return false;
            };
            let decoded = match (input, own.clone()) {
                (Input::Orders, Emitted::Order(event)) => Decoded::Order(event),
                (Input::Inventory, Emitted::Inventory(event)) => Decoded::Inventory(event),
                (_, other) => {
                    expected.unexpected_inputs.push(format!(
                        "{}/{}/{}: galley wrote {id} here, but the fold emits it to {:?}",
                        message.topic,
                        message.partition,
                        message.offset,
                        destination_of(&other)
                    ));
                    return true;
                }
            };
            check(decoded, message)
        }
    };
    handle_message(message, screened, settings, expected);
    true
}

fn bump<K: Ord>(map: &mut BTreeMap<K, usize>, key: K) {
    *map.entry(key).or_insert(0) += 1;
}

fn handle_message(
    message: &InputMessage,
    screened: Result<Decoded, Poison>,
    settings: &FoldSettings,
    expected: &mut Expected,
) {
    let event = match screened {
        Ok(event) => event,
        Err(Poison { class, event_type }) => {
            expected.dead_letters.insert(
                (message.topic.clone(), message.partition, message.offset),
                class,
            );
            bump(
                &mut expected.counts,
                ("dead_lettered".to_string(), event_type.to_string()),
            );
            return;
        }
    };

    let prefix = format!("{}/{}/{}", message.topic, message.partition, message.offset);
    let (event_type, handled) = match event {
        Decoded::Order(event) => {
            let event_type = event.type_name();
            let handled = apply_order(expected, prefix, &event);
            (event_type, handled)
        }
        Decoded::Inventory(event) => {
            let event_type = event.type_name();
            let handled = apply_inventory(expected, settings.low_stock_threshold, prefix, &event);
            (event_type, handled)
        }
    };
    let outcome = match handled {
        Handled::Applied => "applied",
        Handled::Duplicate => "duplicate",
        Handled::Rejected(reason) => {
            bump(&mut expected.rejections, reason.to_string());
            "rejected"
        }
    };
    bump(
        &mut expected.counts,
        (outcome.to_string(), event_type.to_string()),
    );
}

enum Decoded {
    Order(OrderEvent),
    Inventory(InventoryEvent),
}

/// Why a message is poison: the dead-letter error class, and the event type
/// (`unknown` until the bytes decode).
struct Poison {
    class: String,
    event_type: &'static str,
}

impl Poison {
    fn undecoded(class: impl Into<String>) -> Self {
        Self {
            class: class.into(),
            event_type: "unknown",
        }
    }
}

/// Decodes and checks one message; `Err` says why it is poison.
fn screen(
    codec: &Codec,
    settings: &FoldSettings,
    input: Input,
    message: &InputMessage,
) -> Result<Decoded, Poison> {
    let Some(payload) = message.payload.as_deref() else {
        return Err(Poison::undecoded("empty"));
    };
    if payload.len() > settings.max_event_bytes {
        return Err(Poison::undecoded("oversize"));
    }
    let decoded = match input {
        Input::Orders => Decoded::Order(
            codec
                .decode::<OrderEvent>(payload)
                .map_err(|e| Poison::undecoded(e.class()))?,
        ),
        Input::Inventory => Decoded::Inventory(
            codec
                .decode::<InventoryEvent>(payload)
                .map_err(|e| Poison::undecoded(e.class()))?,
        ),
    };
    check(decoded, message)
}

/// The contract checks of a decoded event, and its record's key.
fn check(decoded: Decoded, message: &InputMessage) -> Result<Decoded, Poison> {
    let (valid, key, event_type) = match &decoded {
        Decoded::Order(event) => (order_is_valid(event), event.key(), event.type_name()),
        Decoded::Inventory(event) => (inventory_is_valid(event), event.key(), event.type_name()),
    };
    let poison = |class: &str| Poison {
        class: class.into(),
        event_type,
    };
    if !valid {
        return Err(poison("validation"));
    }
    match message.key.as_deref() {
        None => Err(poison("missing_key")),
        Some(k) if k != key.as_bytes() => Err(poison("key_mismatch")),
        Some(_) => Ok(decoded),
    }
}

fn id_ok(value: &str) -> bool {
    !value.trim().is_empty() && value.len() <= MAX_ID_BYTES
}

fn currency_ok(currency: &str) -> bool {
    currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase())
}

fn lines_ok(lines: &[OrderLine]) -> bool {
    if lines.is_empty() || lines.len() > MAX_LINES {
        return false;
    }
    let mut prices: BTreeMap<&str, i64> = BTreeMap::new();
    for line in lines {
        if !id_ok(&line.sku)
            || !(1..=MAX_LINE_QUANTITY).contains(&line.quantity)
            || line.unit_price_cents < 0
        {
            return false;
        }
        match prices.get(line.sku.as_str()) {
            Some(&price) if price != line.unit_price_cents => return false,
            Some(_) => {}
            None => {
                prices.insert(&line.sku, line.unit_price_cents);
            }
        }
    }
    true
}

fn order_is_valid(event: &OrderEvent) -> bool {
    if !id_ok(event.key()) || event.event_time_ms() <= 0 {
        return false;
    }
    match event {
        OrderEvent::Placed(e) => {
            id_ok(&e.customer_id) && currency_ok(&e.currency) && lines_ok(&e.lines)
        }
        OrderEvent::PaymentCaptured(e) => e.amount_cents > 0,
        OrderEvent::Refunded(e) => e.amount_cents > 0,
        OrderEvent::StockOutcome(e) => id_ok(&e.sku) && e.quantity > 0,
        OrderEvent::PaymentFailed(_)
        | OrderEvent::Shipped(_)
        | OrderEvent::Delivered(_)
        | OrderEvent::Cancelled(_) => true,
    }
}

fn inventory_is_valid(event: &InventoryEvent) -> bool {
    if !id_ok(event.key()) || event.event_time_ms() <= 0 {
        return false;
    }
    match event {
        InventoryEvent::Received(e) => e.quantity > 0,
        InventoryEvent::Adjusted(e) => e.delta != 0,
        InventoryEvent::ReservationRequested(e) => id_ok(&e.order_id) && e.quantity > 0,
        InventoryEvent::ReleaseRequested(e) => id_ok(&e.order_id),
        InventoryEvent::FulfilmentRequested(e) => id_ok(&e.order_id),
    }
}

// ---------------------------------------------------------------------------
// Orders
// ---------------------------------------------------------------------------

fn apply_order(expected: &mut Expected, prefix: String, event: &OrderEvent) -> Handled {
    let Expected {
        orders,
        customer_orders,
        sku_sales,
        minute_sales,
        emitted,
        ..
    } = expected;
    let mut out = Emitter {
        prefix,
        next: 0,
        emitted,
    };
    let order_id = event.key().to_string();
    let time = event.event_time_ms();

    let Some(order) = orders.get_mut(&order_id) else {
        let OrderEvent::Placed(placed) = event else {
            out.rejected(event, None, "unknown_order");
            return Handled::Rejected("unknown_order");
        };
        // Merge lines by SKU: quantities add up, the first price stays.
        let mut lines: Vec<(String, i32, i64, String)> = Vec::new();
        for line in &placed.lines {
            match lines.iter_mut().find(|l| l.0 == line.sku) {
                Some(existing) => existing.1 += line.quantity,
                None => lines.push((
                    line.sku.clone(),
                    line.quantity,
                    line.unit_price_cents,
                    PENDING.to_string(),
                )),
            }
        }
        let total = lines.iter().fold(0i64, |acc, l| {
            acc.saturating_add(i64::from(l.1).saturating_mul(l.2))
        });
        let who = OrderRef {
            order_id: &order_id,
            customer_id: &placed.customer_id,
            time,
        };
        out.status(&who, None, PLACED, None);
        for (sku, quantity, _, _) in &lines {
            out.stock_request(&who, sku, Request::Reserve(*quantity));
        }
        customer_orders.insert(
            (placed.customer_id.clone(), time, order_id.clone()),
            (PLACED.to_string(), total),
        );
        orders.insert(
            order_id,
            ExpectedOrder {
                customer_id: placed.customer_id.clone(),
                status: PLACED.to_string(),
                currency: placed.currency.clone(),
                total_cents: total,
                paid_cents: 0,
                refunded_cents: 0,
                placed_at_ms: time,
                updated_at_ms: time,
                lines,
            },
        );
        return Handled::Applied;
    };

    let status = order.status.clone();
    let customer_id = order.customer_id.clone();
    let who = OrderRef {
        order_id: &order_id,
        customer_id: &customer_id,
        time,
    };
    let from = Some(status.as_str());
    let verdict: Result<(), &'static str> = match event {
        OrderEvent::Placed(_) => Err("duplicate_order"),

        OrderEvent::StockOutcome(outcome) => {
            let Some(index) = order.lines.iter().position(|l| l.0 == outcome.sku) else {
                out.rejected(event, from, "unknown_line");
                return Handled::Rejected("unknown_line");
            };
            if order.lines[index].3 != PENDING {
                return Handled::Duplicate;
            }
            order.lines[index].3 = if outcome.reserved { RESERVED } else { SHORT }.to_string();
            order.updated_at_ms = time;
            if status == PLACED && order.lines.iter().all(|l| l.3 == RESERVED) {
                order.status = CONFIRMED.to_string();
                out.status(&who, from, CONFIRMED, None);
            } else if matches!(status.as_str(), PLACED | PAYMENT_FAILED | PAID) && !outcome.reserved
            {
                // The first shortage cancels an order that has not shipped.
                order.status = CANCELLED.to_string();
                out.status(&who, from, CANCELLED, Some(OUT_OF_STOCK));
                release_reserved_lines(order, &who, &mut out);
            } else if matches!(status.as_str(), CANCELLED | REFUNDED) && outcome.reserved {
                // Reserved after the order was cancelled: give the units back.
                out.stock_request(&who, &outcome.sku, Request::Release);
                order.lines[index].3 = RELEASED.to_string();
            }
            Ok(())
        }

        OrderEvent::PaymentCaptured(payment) => match status.as_str() {
            PLACED | CONFIRMED | PAYMENT_FAILED => {
                if payment.amount_cents != order.total_cents {
                    Err("amount_mismatch")
                } else {
                    order.status = PAID.to_string();
                    order.paid_cents = payment.amount_cents;
                    order.updated_at_ms = time;
                    out.status(&who, from, PAID, None);
                    Ok(())
                }
            }
            PAID | SHIPPED | DELIVERED | REFUNDED => Err("already_paid"),
            CANCELLED => Err("order_cancelled"),
            _ => Err("invalid_transition"),
        },

        OrderEvent::PaymentFailed(failed) => match status.as_str() {
            PLACED | CONFIRMED => {
                order.status = PAYMENT_FAILED.to_string();
                order.updated_at_ms = time;
                out.status(&who, from, PAYMENT_FAILED, reason_text(&failed.reason));
                Ok(())
            }
            CANCELLED => Err("order_cancelled"),
            REFUNDED => Err("order_refunded"),
            _ => Err("invalid_transition"),
        },

        OrderEvent::Shipped(_) => match status.as_str() {
            PAID if order.lines.iter().any(|l| l.3 != RESERVED) => Err("awaiting_stock"),
            PAID => {
                order.status = SHIPPED.to_string();
                order.updated_at_ms = time;
                out.status(&who, from, SHIPPED, None);
                for line in order.lines.iter_mut() {
                    out.stock_request(&who, &line.0, Request::Fulfil);
                    line.3 = FULFILLED.to_string();
                }
                // Sales are recognised when the goods ship.
                let minute = minute_of(time);
                let mut units = 0i64;
                let mut revenue = 0i64;
                for (sku, qty, price, _) in &order.lines {
                    let line_units = i64::from(*qty);
                    let line_revenue = line_units.saturating_mul(*price);
                    let cell = sku_sales.entry((sku.clone(), minute)).or_insert((0, 0));
                    cell.0 += line_units;
                    cell.1 += line_revenue;
                    units += line_units;
                    revenue += line_revenue;
                }
                let cell = minute_sales.entry(minute).or_insert((0, 0, 0));
                cell.0 += units;
                cell.1 += revenue;
                cell.2 += 1;
                Ok(())
            }
            CANCELLED => Err("order_cancelled"),
            REFUNDED => Err("order_refunded"),
            _ => Err("invalid_transition"),
        },

        OrderEvent::Delivered(_) => match status.as_str() {
            SHIPPED => {
                order.status = DELIVERED.to_string();
                order.updated_at_ms = time;
                out.status(&who, from, DELIVERED, None);
                Ok(())
            }
            CANCELLED => Err("order_cancelled"),
            REFUNDED => Err("order_refunded"),
            _ => Err("invalid_transition"),
        },

        OrderEvent::Cancelled(cancelled) => match status.as_str() {
            PLACED | CONFIRMED | PAYMENT_FAILED | PAID => {
                order.status = CANCELLED.to_string();
                order.updated_at_ms = time;
                out.status(&who, from, CANCELLED, reason_text(&cancelled.reason));
                release_reserved_lines(order, &who, &mut out);
                Ok(())
            }
            SHIPPED | DELIVERED => Err("not_cancellable"),
            CANCELLED => Err("order_cancelled"),
            REFUNDED => Err("order_refunded"),
            _ => Err("invalid_transition"),
        },

        // Money goes back once, after payment, for a cancelled or delivered
        // order, and never more than was captured.
        OrderEvent::Refunded(refund) => match status.as_str() {
            REFUNDED => Err("already_refunded"),
            CANCELLED | DELIVERED if order.paid_cents > 0 => {
                if refund.amount_cents > order.paid_cents {
                    Err("refund_exceeds_payment")
                } else {
                    order.status = REFUNDED.to_string();
                    order.refunded_cents = refund.amount_cents;
                    order.updated_at_ms = time;
                    out.status(&who, from, REFUNDED, reason_text(&refund.reason));
                    Ok(())
                }
            }
            PAID | SHIPPED => Err("invalid_transition"),
            _ => Err("not_paid"),
        },
    };

    match verdict {
        Ok(()) => {
            let key = (
                order.customer_id.clone(),
                order.placed_at_ms,
                order_id.clone(),
            );
            customer_orders.insert(key, (order.status.clone(), order.total_cents));
            Handled::Applied
        }
        Err(reason) => {
            out.rejected(event, from, reason);
            Handled::Rejected(reason)
        }
    }
}

/// Asks inventory to release every line currently reserved, in line order.
fn release_reserved_lines(order: &mut ExpectedOrder, who: &OrderRef<'_>, out: &mut Emitter<'_>) {
    for line in order.lines.iter_mut().filter(|l| l.3 == RESERVED) {
        out.stock_request(who, &line.0, Request::Release);
        line.3 = RELEASED.to_string();
    }
}

// ---------------------------------------------------------------------------
// Inventory
// ---------------------------------------------------------------------------

fn apply_inventory(
    expected: &mut Expected,
    threshold: i64,
    prefix: String,
    event: &InventoryEvent,
) -> Handled {
    let Expected {
        stock,
        reservations,
        emitted,
        ..
    } = expected;
    let mut out = Emitter {
        prefix,
        next: 0,
        emitted,
    };
    let sku = event.key().to_string();
    let (on_hand_before, reserved_before) = stock.get(&sku).copied().unwrap_or((0, 0));
    let available_before = on_hand_before - reserved_before;
    let mut on_hand = on_hand_before;
    let mut reserved = reserved_before;

    match event {
        InventoryEvent::Received(e) => on_hand += i64::from(e.quantity),
        InventoryEvent::Adjusted(e) => on_hand += i64::from(e.delta),
        InventoryEvent::ReservationRequested(e) => {
            let key = (sku.clone(), e.order_id.clone());
            if reservations.contains_key(&key) {
                return Handled::Duplicate;
            }
            let granted = available_before >= i64::from(e.quantity);
            let (sku, order_id, quantity, time) =
                (sku.clone(), e.order_id.clone(), e.quantity, e.event_time_ms);
            if granted {
                reserved += i64::from(quantity);
                reservations.insert(key, (quantity, RESERVED.to_string()));
                let available_after = on_hand - reserved;
                out.emit(|event_id| {
                    Emitted::Result(ResultEvent::StockReserved(StockReserved {
                        event_id,
                        sku: sku.clone(),
                        order_id: order_id.clone(),
                        quantity,
                        available_after,
                        event_time_ms: time,
                    }))
                });
            } else {
                reservations.insert(key, (quantity, SHORT.to_string()));
                out.emit(|event_id| {
                    Emitted::Result(ResultEvent::StockShort(StockShort {
                        event_id,
                        sku: sku.clone(),
                        order_id: order_id.clone(),
                        requested: quantity,
                        available: available_before,
                        event_time_ms: time,
                    }))
                });
            }
            // The answer goes back to the order, re-keyed by order id.
            out.emit(|event_id| {
                Emitted::Order(OrderEvent::StockOutcome(StockReservationOutcome {
                    event_id,
                    order_id,
                    sku,
                    quantity,
                    reserved: granted,
                    event_time_ms: time,
                }))
            });
        }
        InventoryEvent::ReleaseRequested(e) => {
            let key = (sku.clone(), e.order_id.clone());
            match reservations.get_mut(&key) {
                Some(reservation) if reservation.1 == RESERVED => {
                    reserved -= i64::from(reservation.0);
                    reservation.1 = RELEASED.to_string();
                }
                Some(_) => return Handled::Duplicate,
                None => {
                    reservations.insert(key, (0, RELEASED.to_string()));
                }
            }
        }
        InventoryEvent::FulfilmentRequested(e) => {
            let key = (sku.clone(), e.order_id.clone());
            match reservations.get_mut(&key) {
                Some(reservation) if reservation.1 == RESERVED => {
                    on_hand -= i64::from(reservation.0);
                    reserved -= i64::from(reservation.0);
                    reservation.1 = FULFILLED.to_string();
                }
                _ => return Handled::Duplicate,
            }
        }
    }

    let available_after = on_hand - reserved;
    if available_before >= threshold && available_after < threshold {
        let (sku, time) = (sku.clone(), event.event_time_ms());
        out.emit(|event_id| {
            Emitted::Result(ResultEvent::LowStockAlert(LowStockAlert {
                event_id,
                sku,
                available: available_after,
                threshold,
                event_time_ms: time,
            }))
        });
    }
    stock.insert(sku, (on_hand, reserved));
    Handled::Applied
}

// ---------------------------------------------------------------------------
// Comparison
// ---------------------------------------------------------------------------

const MAX_MISMATCH_LINES: usize = 50;

/// Human-readable differences between the projection maps of `expected` and
/// `actual` (orders, customer_orders, sku_sales, minute_sales, stock,
/// reservations). Empty when they agree. At most about 50 detail lines,
/// followed by a line with the total number of differences.
pub fn mismatches(expected: &Expected, actual: &Expected) -> Vec<String> {
    let mut all = Vec::new();
    diff_map("orders", &expected.orders, &actual.orders, &mut all);
    diff_map(
        "customer_orders",
        &expected.customer_orders,
        &actual.customer_orders,
        &mut all,
    );
    diff_map(
        "sku_sales",
        &expected.sku_sales,
        &actual.sku_sales,
        &mut all,
    );
    diff_map(
        "minute_sales",
        &expected.minute_sales,
        &actual.minute_sales,
        &mut all,
    );
    diff_map("stock", &expected.stock, &actual.stock, &mut all);
    diff_map(
        "reservations",
        &expected.reservations,
        &actual.reservations,
        &mut all,
    );
    if all.is_empty() {
        return all;
    }
    let total = all.len();
    let mut report: Vec<String> = all.into_iter().take(MAX_MISMATCH_LINES).collect();
    if total > MAX_MISMATCH_LINES {
        report.push(format!("... {} more not shown", total - MAX_MISMATCH_LINES));
    }
    report.push(format!("{total} difference(s) in total"));
    report
}

fn diff_map<K: Ord + Debug, V: PartialEq + Debug>(
    name: &str,
    expected: &BTreeMap<K, V>,
    actual: &BTreeMap<K, V>,
    out: &mut Vec<String>,
) {
    for (key, want) in expected {
        match actual.get(key) {
            None => out.push(format!("{name}[{key:?}]: missing, expected {want:?}")),
            Some(got) if got != want => out.push(format!(
                "{name}[{key:?}]: expected {want:?}, actual {got:?}"
            )),
            Some(_) => {}
        }
    }
    for (key, got) in actual {
        if !expected.contains_key(key) {
            out.push(format!("{name}[{key:?}]: unexpected row {got:?}"));
        }
    }
}

// ---------------------------------------------------------------------------
// Tests of the oracle itself
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use galley::domain::{
        OrderCancelled, OrderDelivered, OrderPlaced, OrderShipped, PaymentCaptured,
        PaymentRefunded, StockReceived, StockReleaseRequested, StockReservationOutcome,
        StockReservationRequested,
    };

    const ORDERS: &str = "orders_t";
    const INVENTORY: &str = "inventory_t";
    const T0: i64 = 1_700_000_000_000;

    // Emitted event types.
    const STATUS_CHANGED: &str = "OrderStatusChanged";
    const ORDER_REJECTED: &str = "OrderRejected";
    const STOCK_RESERVED: &str = "StockReserved";
    const STOCK_SHORT: &str = "StockShort";
    const LOW_STOCK_ALERT: &str = "LowStockAlert";
    const RESERVATION_REQUESTED: &str = "StockReservationRequested";
    const RELEASE_REQUESTED: &str = "StockReleaseRequested";
    const FULFILMENT_REQUESTED: &str = "StockFulfilmentRequested";
    const RESERVATION_OUTCOME: &str = "StockReservationOutcome";

    fn settings() -> FoldSettings {
        FoldSettings {
            orders_topic: ORDERS.into(),
            inventory_topic: INVENTORY.into(),
            low_stock_threshold: 5,
            max_event_bytes: 4096,
        }
    }

    /// Builds input streams, assigning offsets per (topic, partition 0).
    struct Stream {
        codec: Codec,
        messages: Vec<InputMessage>,
    }

    impl Stream {
        fn new() -> Self {
            Self {
                codec: galley::domain::codec().expect("codec"),
                messages: Vec::new(),
            }
        }

        fn next_offset(&self, topic: &str) -> i64 {
            self.messages.iter().filter(|m| m.topic == topic).count() as i64
        }

        fn raw(&mut self, topic: &str, key: Option<&[u8]>, payload: Option<Vec<u8>>) -> i64 {
            let offset = self.next_offset(topic);
            self.messages.push(InputMessage {
                topic: topic.into(),
                partition: 0,
                offset,
                key: key.map(<[u8]>::to_vec),
                payload,
                event_id: None,
            });
            offset
        }

        fn order(&mut self, event: OrderEvent) -> i64 {
            let mut bytes = Vec::new();
            self.codec.encode(&event, &mut bytes).expect("encode");
            let key = event.key().as_bytes().to_vec();
            self.raw(ORDERS, Some(&key), Some(bytes))
        }

        fn inventory(&mut self, event: InventoryEvent) -> i64 {
            let mut bytes = Vec::new();
            self.codec.encode(&event, &mut bytes).expect("encode");
            let key = event.key().as_bytes().to_vec();
            self.raw(INVENTORY, Some(&key), Some(bytes))
        }

        fn fold(&self) -> Expected {
            fold(&self.codec, &settings(), &self.messages)
        }
    }

    fn line(sku: &str, quantity: i32, price: i64) -> OrderLine {
        OrderLine {
            sku: sku.into(),
            quantity,
            unit_price_cents: price,
        }
    }

    fn placed(order_id: &str, lines: Vec<OrderLine>, t: i64) -> OrderEvent {
        OrderEvent::Placed(OrderPlaced {
            order_id: order_id.into(),
            customer_id: "c1".into(),
            lines,
            currency: "EUR".into(),
            event_time_ms: t,
        })
    }

    fn outcome(order_id: &str, sku: &str, qty: i32, reserved: bool, t: i64) -> OrderEvent {
        OrderEvent::StockOutcome(StockReservationOutcome {
            event_id: format!("{INVENTORY}/0/x/{sku}"),
            order_id: order_id.into(),
            sku: sku.into(),
            quantity: qty,
            reserved,
            event_time_ms: t,
        })
    }

    fn request(sku: &str, order_id: &str, qty: i32, t: i64) -> InventoryEvent {
        InventoryEvent::ReservationRequested(StockReservationRequested {
            event_id: format!("{ORDERS}/0/x/{sku}"),
            sku: sku.into(),
            order_id: order_id.into(),
            quantity: qty,
            event_time_ms: t,
        })
    }

    fn kind(destination: Destination, event_type: &'static str) -> EmittedKind {
        EmittedKind {
            destination,
            event_type,
        }
    }

    fn count(e: &Expected, outcome: &str, event_type: &str) -> usize {
        e.counts
            .get(&(outcome.to_string(), event_type.to_string()))
            .copied()
            .unwrap_or(0)
    }

    #[test]
    fn refunds_follow_payment_and_cancellation_once() {
        let mut s = Stream::new();
        s.order(placed("o1", vec![line("A", 2, 500)], T0));
        let refund = |amount_cents: i64, t: i64| {
            OrderEvent::Refunded(PaymentRefunded {
                order_id: "o1".into(),
                amount_cents,
                reason: "".into(),
                event_time_ms: t,
            })
        };
        s.order(refund(1000, T0 + 1));
        s.order(OrderEvent::PaymentCaptured(PaymentCaptured {
            order_id: "o1".into(),
            amount_cents: 1000,
            event_time_ms: T0 + 2,
        }));
        s.order(refund(1000, T0 + 3));
        s.order(OrderEvent::Cancelled(OrderCancelled {
            order_id: "o1".into(),
            reason: "".into(),
            event_time_ms: T0 + 4,
        }));
        s.order(refund(1001, T0 + 5));
        s.order(refund(600, T0 + 6));
        s.order(refund(400, T0 + 7));
        let e = s.fold();

        let order = &e.orders["o1"];
        assert_eq!(order.status, "refunded");
        assert_eq!((order.paid_cents, order.refunded_cents), (1000, 600));
        assert_eq!(order.updated_at_ms, T0 + 6);
        for reason in [
            "not_paid",
            "invalid_transition",
            "refund_exceeds_payment",
            "already_refunded",
        ] {
            assert_eq!(e.rejections[reason], 1, "{reason}");
        }
        assert_eq!(count(&e, "applied", "PaymentRefunded"), 1);
    }

    #[test]
    fn happy_path_order() {
        let mut s = Stream::new();
        // Two lines of the same SKU merge; one other SKU.
        s.order(placed(
            "o1",
            vec![line("A", 2, 150), line("B", 1, 1000), line("A", 1, 150)],
            T0,
        ));
        s.order(outcome("o1", "A", 3, true, T0 + 10));
        s.order(outcome("o1", "B", 1, true, T0 + 20));
        s.order(OrderEvent::PaymentCaptured(PaymentCaptured {
            order_id: "o1".into(),
            amount_cents: 1450,
            event_time_ms: T0 + 61_000,
        }));
        s.order(OrderEvent::Shipped(OrderShipped {
            order_id: "o1".into(),
            carrier: "dhl".into(),
            event_time_ms: T0 + 70_000,
        }));
        s.order(OrderEvent::Delivered(OrderDelivered {
            order_id: "o1".into(),
            event_time_ms: T0 + 80_000,
        }));
        let e = s.fold();

        let order = &e.orders["o1"];
        assert_eq!(order.status, "delivered");
        assert_eq!(order.total_cents, 1450);
        assert_eq!(order.paid_cents, 1450);
        assert_eq!(order.placed_at_ms, T0);
        assert_eq!(order.updated_at_ms, T0 + 80_000);
        assert_eq!(
            order.lines,
            vec![
                ("A".to_string(), 3, 150, "fulfilled".to_string()),
                ("B".to_string(), 1, 1000, "fulfilled".to_string()),
            ]
        );
        assert_eq!(
            e.customer_orders[&("c1".to_string(), T0, "o1".to_string())],
            ("delivered".to_string(), 1450)
        );
        let minute = minute_of(T0 + 61_000);
        assert_eq!(e.sku_sales[&("A".to_string(), minute)], (3, 450));
        assert_eq!(e.sku_sales[&("B".to_string(), minute)], (1, 1000));
        assert_eq!(e.sku_sales.len(), 2);
        assert_eq!(e.minute_sales[&minute], (4, 1450, 1));

        let o = |offset: i64, index: u32| format!("{ORDERS}/0/{offset}/{index}");
        let want: BTreeMap<String, EmittedKind> = [
            (o(0, 0), kind(Destination::Results, STATUS_CHANGED)),
            (o(0, 1), kind(Destination::Inventory, RESERVATION_REQUESTED)),
            (o(0, 2), kind(Destination::Inventory, RESERVATION_REQUESTED)),
            // offset 1: first outcome only records the line.
            (o(2, 0), kind(Destination::Results, STATUS_CHANGED)),
            (o(3, 0), kind(Destination::Results, STATUS_CHANGED)),
            (o(4, 0), kind(Destination::Results, STATUS_CHANGED)),
            (o(4, 1), kind(Destination::Inventory, FULFILMENT_REQUESTED)),
            (o(4, 2), kind(Destination::Inventory, FULFILMENT_REQUESTED)),
            (o(5, 0), kind(Destination::Results, STATUS_CHANGED)),
        ]
        .into_iter()
        .collect();
        let got: BTreeMap<String, EmittedKind> = e
            .emitted
            .iter()
            .map(|(id, ev)| (id.clone(), kind_of(ev)))
            .collect();
        assert_eq!(got, want);
        assert_eq!(count(&e, "applied", "OrderPlaced"), 1);
        assert_eq!(count(&e, "applied", "StockReservationOutcome"), 2);
        assert!(e.dead_letters.is_empty());
        assert!(e.rejections.is_empty());
        assert!(mismatches(&e, &e).is_empty());
    }

    #[test]
    fn replayed_outcome_and_rejections() {
        let mut s = Stream::new();
        s.order(placed("o1", vec![line("A", 1, 100)], T0));
        s.order(outcome("o1", "A", 1, true, T0 + 1));
        s.order(outcome("o1", "A", 1, true, T0 + 1)); // replay: duplicate
        s.order(OrderEvent::PaymentCaptured(PaymentCaptured {
            order_id: "o1".into(),
            amount_cents: 99,
            event_time_ms: T0 + 5,
        }));
        s.order(OrderEvent::Delivered(OrderDelivered {
            order_id: "nope".into(),
            event_time_ms: T0 + 6,
        }));
        let e = s.fold();
        assert_eq!(e.orders["o1"].status, "confirmed");
        assert_eq!(e.orders["o1"].updated_at_ms, T0 + 1);
        assert_eq!(count(&e, "duplicate", "StockReservationOutcome"), 1);
        assert!(!e
            .emitted
            .keys()
            .any(|id| id.starts_with(&format!("{ORDERS}/0/2/"))));
        assert_eq!(
            kind_of(&e.emitted[&format!("{ORDERS}/0/3/0")]).event_type,
            ORDER_REJECTED
        );
        assert_eq!(
            kind_of(&e.emitted[&format!("{ORDERS}/0/4/0")]).event_type,
            ORDER_REJECTED
        );
        assert_eq!(e.rejections["amount_mismatch"], 1);
        assert_eq!(e.rejections["unknown_order"], 1);
        assert_eq!(count(&e, "rejected", "PaymentCaptured"), 1);
        assert!(!e.orders.contains_key("nope"));
        assert!(e.sku_sales.is_empty());
    }

    #[test]
    fn shortage_cancels_and_releases() {
        let mut s = Stream::new();
        s.inventory(InventoryEvent::Received(StockReceived {
            sku: "A".into(),
            quantity: 10,
            event_time_ms: T0,
        }));
        s.order(placed(
            "o1",
            vec![line("A", 4, 100), line("B", 2, 100), line("C", 1, 100)],
            T0 + 1,
        ));
        // Inventory side answers: A reserved, B short.
        s.inventory(request("A", "o1", 4, T0 + 2));
        s.inventory(request("B", "o1", 2, T0 + 2));
        s.order(outcome("o1", "A", 4, true, T0 + 3));
        s.order(outcome("o1", "B", 2, false, T0 + 4));
        // The release galley sent for A comes back around.
        s.inventory(InventoryEvent::ReleaseRequested(StockReleaseRequested {
            event_id: format!("{ORDERS}/0/2/1"),
            sku: "A".into(),
            order_id: "o1".into(),
            event_time_ms: T0 + 4,
        }));
        // A late reserved answer for C on the cancelled order is released.
        s.order(outcome("o1", "C", 1, true, T0 + 5));
        // Cancelling again is refused.
        s.order(OrderEvent::Cancelled(OrderCancelled {
            order_id: "o1".into(),
            reason: "changed mind".into(),
            event_time_ms: T0 + 6,
        }));
        let e = s.fold();

        let order = &e.orders["o1"];
        assert_eq!(order.status, "cancelled");
        assert_eq!(order.updated_at_ms, T0 + 5);
        let stocks: Vec<&str> = order.lines.iter().map(|l| l.3.as_str()).collect();
        assert_eq!(stocks, ["released", "short", "released"]);

        let o = |offset: i64, index: u32| format!("{ORDERS}/0/{offset}/{index}");
        let i = |offset: i64, index: u32| format!("{INVENTORY}/0/{offset}/{index}");
        assert_eq!(
            kind_of(&e.emitted[&o(2, 0)]),
            kind(Destination::Results, STATUS_CHANGED)
        );
        assert_eq!(
            kind_of(&e.emitted[&o(2, 1)]),
            kind(Destination::Inventory, RELEASE_REQUESTED)
        );
        assert!(!e.emitted.contains_key(&o(2, 2)));
        assert_eq!(
            kind_of(&e.emitted[&o(3, 0)]),
            kind(Destination::Inventory, RELEASE_REQUESTED)
        );
        assert_eq!(
            kind_of(&e.emitted[&o(4, 0)]),
            kind(Destination::Results, ORDER_REJECTED)
        );
        assert_eq!(e.rejections["order_cancelled"], 1);

        // Reserving 4 of 10 leaves 6 (>= 5): no alert.
        assert_eq!(
            kind_of(&e.emitted[&i(1, 0)]),
            kind(Destination::Results, STOCK_RESERVED)
        );
        assert_eq!(
            kind_of(&e.emitted[&i(1, 1)]),
            kind(Destination::Orders, RESERVATION_OUTCOME)
        );
        assert!(!e.emitted.contains_key(&i(1, 2)));
        assert_eq!(
            kind_of(&e.emitted[&i(2, 0)]),
            kind(Destination::Results, STOCK_SHORT)
        );
        assert_eq!(
            kind_of(&e.emitted[&i(2, 1)]),
            kind(Destination::Orders, RESERVATION_OUTCOME)
        );
        let release_prefix = format!("{INVENTORY}/0/3/");
        assert!(!e.emitted.keys().any(|id| id.starts_with(&release_prefix)));

        assert_eq!(e.stock["A"], (10, 0));
        assert_eq!(e.stock["B"], (0, 0));
        assert!(!e.stock.contains_key("C"));
        assert_eq!(
            e.reservations[&("A".into(), "o1".into())],
            (4, "released".into())
        );
        assert_eq!(
            e.reservations[&("B".into(), "o1".into())],
            (2, "short".into())
        );
        assert!(e.sku_sales.is_empty() && e.minute_sales.is_empty());
    }

    #[test]
    fn duplicate_reservation_request_is_a_noop_and_low_stock_alerts() {
        let mut s = Stream::new();
        s.inventory(InventoryEvent::Received(StockReceived {
            sku: "A".into(),
            quantity: 8,
            event_time_ms: T0,
        }));
        s.inventory(request("A", "o1", 4, T0 + 1)); // 8 -> 4: below 5, alert
        s.inventory(request("A", "o1", 4, T0 + 1)); // replay
        s.inventory(request("A", "o1", 1, T0 + 2)); // same order, other qty: still duplicate
        let e = s.fold();
        assert_eq!(e.stock["A"], (8, 4));
        assert_eq!(e.reservations.len(), 1);
        let i = |offset: i64, index: u32| format!("{INVENTORY}/0/{offset}/{index}");
        assert_eq!(
            kind_of(&e.emitted[&i(1, 0)]),
            kind(Destination::Results, STOCK_RESERVED)
        );
        assert_eq!(
            kind_of(&e.emitted[&i(1, 1)]),
            kind(Destination::Orders, RESERVATION_OUTCOME)
        );
        assert_eq!(
            kind_of(&e.emitted[&i(1, 2)]),
            kind(Destination::Results, LOW_STOCK_ALERT)
        );
        assert_eq!(e.emitted.len(), 3);
        assert_eq!(count(&e, "duplicate", "StockReservationRequested"), 2);
        assert_eq!(count(&e, "applied", "StockReservationRequested"), 1);
        assert_eq!(count(&e, "applied", "StockReceived"), 1);
    }

    #[test]
    fn poison_classes() {
        let mut s = Stream::new();
        let codec = galley::domain::codec().expect("codec");
        let good = placed("o1", vec![line("A", 1, 100)], T0);
        let mut good_bytes = Vec::new();
        codec.encode(&good, &mut good_bytes).expect("encode");

        let empty = s.raw(ORDERS, Some(b"o1"), None);
        let oversize = s.raw(ORDERS, Some(b"o1"), Some(vec![0u8; 5000]));
        let bad_magic = s.raw(ORDERS, Some(b"o1"), Some(vec![0xff, 1, 2, 3, 4, 5, 6]));
        let invalid = s.order(placed("o1", vec![line("A", 1, 100), line("A", 1, 101)], T0));
        let bad_currency = s.order(OrderEvent::Placed(OrderPlaced {
            currency: "eur".into(),
            ..match placed("o1", vec![line("A", 1, 100)], T0) {
                OrderEvent::Placed(p) => p,
                _ => unreachable!(),
            }
        }));
        let no_key = s.raw(ORDERS, None, Some(good_bytes.clone()));
        let wrong_key = s.raw(ORDERS, Some(b"o2"), Some(good_bytes.clone()));
        // An inventory record on the orders topic.
        let mut inv_bytes = Vec::new();
        codec
            .encode(
                &InventoryEvent::Received(StockReceived {
                    sku: "A".into(),
                    quantity: 1,
                    event_time_ms: T0,
                }),
                &mut inv_bytes,
            )
            .expect("encode");
        let wrong_topic = s.raw(ORDERS, Some(b"A"), Some(inv_bytes));
        let zero_qty = s.inventory(InventoryEvent::Received(StockReceived {
            sku: "A".into(),
            quantity: 0,
            event_time_ms: T0,
        }));
        let fine = s.raw(ORDERS, Some(b"o1"), Some(good_bytes));

        let e = s.fold();
        let dl = |topic: &str, offset: i64| {
            e.dead_letters
                .get(&(topic.to_string(), 0, offset))
                .cloned()
                .unwrap_or_default()
        };
        assert_eq!(dl(ORDERS, empty), "empty");
        assert_eq!(dl(ORDERS, oversize), "oversize");
        assert_eq!(dl(ORDERS, bad_magic), "bad_magic");
        assert_eq!(dl(ORDERS, invalid), "validation");
        assert_eq!(dl(ORDERS, bad_currency), "validation");
        assert_eq!(dl(ORDERS, no_key), "missing_key");
        assert_eq!(dl(ORDERS, wrong_key), "key_mismatch");
        assert_eq!(dl(ORDERS, wrong_topic), "wrong_topic");
        assert_eq!(dl(INVENTORY, zero_qty), "validation");
        assert_eq!(e.dead_letters.len(), 9);
        // Undecodable ones have no type; the rest are counted under theirs.
        assert_eq!(count(&e, "dead_lettered", "unknown"), 4);
        assert_eq!(count(&e, "dead_lettered", "OrderPlaced"), 4);
        assert_eq!(count(&e, "dead_lettered", "StockReceived"), 1);
        assert!(e.stock.is_empty());
        // Only the last, well-formed message placed the order.
        assert_eq!(e.orders["o1"].placed_at_ms, T0);
        assert_eq!(count(&e, "applied", "OrderPlaced"), 1);
        assert_eq!(e.emitted.len(), 2);
        assert!(e.emitted.contains_key(&format!("{ORDERS}/0/{fine}/1")));
    }

    #[test]
    fn partitions_are_sorted_by_offset() {
        let mut s = Stream::new();
        s.order(placed("o1", vec![line("A", 1, 100)], T0));
        s.order(OrderEvent::Cancelled(OrderCancelled {
            order_id: "o1".into(),
            reason: "r".into(),
            event_time_ms: T0 + 1,
        }));
        let forward = s.fold();
        s.messages.reverse();
        assert_eq!(s.fold(), forward);
        assert_eq!(forward.orders["o1"].status, "cancelled");
    }

    #[test]
    fn mismatches_reports_differences() {
        let mut s = Stream::new();
        s.order(placed("o1", vec![line("A", 1, 100)], T0));
        let expected = s.fold();
        let mut actual = expected.clone();
        actual.orders.get_mut("o1").unwrap().updated_at_ms += 1;
        actual.stock.insert("Z".into(), (1, 0));
        actual.customer_orders.clear();
        // Differences in non-projection maps are ignored.
        actual.emitted.clear();
        let report = mismatches(&expected, &actual);
        assert_eq!(report.len(), 4, "{report:#?}");
        assert!(report[0].starts_with("orders[\"o1\"]"));
        assert!(report.iter().any(|l| l.contains("missing")));
        assert!(report.iter().any(|l| l.contains("unexpected")));
        assert_eq!(report.last().unwrap(), "3 difference(s) in total");

        for n in 0..80 {
            actual.stock.insert(format!("S{n:03}"), (n, 0));
        }
        let report = mismatches(&expected, &actual);
        assert_eq!(report.len(), 52);
        assert_eq!(report.last().unwrap(), "83 difference(s) in total");
    }
}
