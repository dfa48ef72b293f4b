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

use std::collections::BTreeMap;
use std::fmt::Debug;

use galley::codec::{Codec, EventSet};
use galley::domain::{minute_of, InventoryEvent, OrderEvent, OrderLine};

/// One message read back from an input topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputMessage {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
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

/// What must be published under one deterministic event id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmittedKind {
    pub destination: Destination,
    pub event_type: &'static str,
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
    /// event id → what it is and where it goes
    pub emitted: BTreeMap<String, EmittedKind>,
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

const MAX_ID_BYTES: usize = 128;
const MAX_LINES: usize = 100;
const MAX_LINE_QUANTITY: i32 = 1_000_000;

/// Which input topic a message belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Input {
    Orders,
    Inventory,
}

/// Collects the ids of events emitted while handling one input message.
struct Emitter<'a> {
    prefix: String,
    next: u32,
    emitted: &'a mut BTreeMap<String, EmittedKind>,
}

impl Emitter<'_> {
    fn emit(&mut self, destination: Destination, event_type: &'static str) {
        let id = format!("{}/{}", self.prefix, self.next);
        self.next += 1;
        let previous = self.emitted.insert(
            id.clone(),
            EmittedKind {
                destination,
                event_type,
            },
        );
        assert!(previous.is_none(), "oracle emitted id {id} twice");
    }
}

/// How one well-formed input event was handled.
enum Handled {
    Applied,
    Duplicate,
    Rejected(&'static str),
}

/// Computes the expected outcome of handling every message in `messages`.
///
/// Messages are grouped per (topic, partition) and each partition is handled
/// in offset order. Messages on topics other than the two input topics are
/// ignored.
pub fn fold(codec: &Codec, settings: &FoldSettings, messages: &[InputMessage]) -> Expected {
    let mut sorted: Vec<&InputMessage> = messages
        .iter()
        .filter(|m| m.topic == settings.orders_topic || m.topic == settings.inventory_topic)
        .collect();
    sorted
        .sort_by(|a, b| (&a.topic, a.partition, a.offset).cmp(&(&b.topic, b.partition, b.offset)));

    let mut expected = Expected::default();
    for message in sorted {
        let input = if message.topic == settings.orders_topic {
            Input::Orders
        } else {
            Input::Inventory
        };
        handle_message(codec, settings, input, message, &mut expected);
    }
    expected
}

fn bump<K: Ord>(map: &mut BTreeMap<K, usize>, key: K) {
    *map.entry(key).or_insert(0) += 1;
}

fn handle_message(
    codec: &Codec,
    settings: &FoldSettings,
    input: Input,
    message: &InputMessage,
    expected: &mut Expected,
) {
    let event = match screen(codec, settings, input, message) {
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
    let (decoded, key, event_type) = match input {
        Input::Orders => {
            let event = codec
                .decode::<OrderEvent>(payload)
                .map_err(|e| Poison::undecoded(e.class()))?;
            let event_type = event.type_name();
            if !order_is_valid(&event) {
                return Err(Poison {
                    class: "validation".into(),
                    event_type,
                });
            }
            let key = event.key().as_bytes().to_vec();
            (Decoded::Order(event), key, event_type)
        }
        Input::Inventory => {
            let event = codec
                .decode::<InventoryEvent>(payload)
                .map_err(|e| Poison::undecoded(e.class()))?;
            let event_type = event.type_name();
            if !inventory_is_valid(&event) {
                return Err(Poison {
                    class: "validation".into(),
                    event_type,
                });
            }
            let key = event.key().as_bytes().to_vec();
            (Decoded::Inventory(event), key, event_type)
        }
    };
    let poison = |class: &str| Poison {
        class: class.into(),
        event_type,
    };
    match message.key.as_deref() {
        None => Err(poison("missing_key")),
        Some(k) if k != key.as_slice() => Err(poison("key_mismatch")),
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
            out.emit(Destination::Results, ORDER_REJECTED);
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
        out.emit(Destination::Results, STATUS_CHANGED);
        for _ in &lines {
            out.emit(Destination::Inventory, RESERVATION_REQUESTED);
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
    let verdict: Result<(), &'static str> = match event {
        OrderEvent::Placed(_) => Err("duplicate_order"),

        OrderEvent::StockOutcome(outcome) => {
            let Some(index) = order.lines.iter().position(|l| l.0 == outcome.sku) else {
                out.emit(Destination::Results, ORDER_REJECTED);
                return Handled::Rejected("unknown_line");
            };
            if order.lines[index].3 != PENDING {
                return Handled::Duplicate;
            }
            order.lines[index].3 = if outcome.reserved { RESERVED } else { SHORT }.to_string();
            order.updated_at_ms = time;
            if status == PLACED && order.lines.iter().all(|l| l.3 == RESERVED) {
                order.status = CONFIRMED.to_string();
                out.emit(Destination::Results, STATUS_CHANGED);
            } else if matches!(status.as_str(), PLACED | PAYMENT_FAILED | PAID) && !outcome.reserved
            {
                order.status = CANCELLED.to_string();
                out.emit(Destination::Results, STATUS_CHANGED);
                release_reserved_lines(order, &mut out);
            } else if matches!(status.as_str(), CANCELLED | REFUNDED) && outcome.reserved {
                out.emit(Destination::Inventory, RELEASE_REQUESTED);
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
                    out.emit(Destination::Results, STATUS_CHANGED);
                    Ok(())
                }
            }
            PAID | SHIPPED | DELIVERED | REFUNDED => Err("already_paid"),
            CANCELLED => Err("order_cancelled"),
            _ => Err("invalid_transition"),
        },

        OrderEvent::PaymentFailed(_) => match status.as_str() {
            PLACED | CONFIRMED => {
                order.status = PAYMENT_FAILED.to_string();
                order.updated_at_ms = time;
                out.emit(Destination::Results, STATUS_CHANGED);
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
                out.emit(Destination::Results, STATUS_CHANGED);
                for line in order.lines.iter_mut() {
                    out.emit(Destination::Inventory, FULFILMENT_REQUESTED);
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
                out.emit(Destination::Results, STATUS_CHANGED);
                Ok(())
            }
            CANCELLED => Err("order_cancelled"),
            REFUNDED => Err("order_refunded"),
            _ => Err("invalid_transition"),
        },

        OrderEvent::Cancelled(_) => match status.as_str() {
            PLACED | CONFIRMED | PAYMENT_FAILED | PAID => {
                order.status = CANCELLED.to_string();
                order.updated_at_ms = time;
                out.emit(Destination::Results, STATUS_CHANGED);
                release_reserved_lines(order, &mut out);
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
                    out.emit(Destination::Results, STATUS_CHANGED);
                    Ok(())
                }
            }
            PAID | SHIPPED => Err("invalid_transition"),
            _ => Err("not_paid"),
        },
    };

    match verdict {
        Ok(()) => {
            let key = (order.customer_id.clone(), order.placed_at_ms, order_id);
            customer_orders.insert(key, (order.status.clone(), order.total_cents));
            Handled::Applied
        }
        Err(reason) => {
            out.emit(Destination::Results, ORDER_REJECTED);
            Handled::Rejected(reason)
        }
    }
}

/// Asks inventory to release every line currently reserved, in line order.
fn release_reserved_lines(order: &mut ExpectedOrder, out: &mut Emitter<'_>) {
    for line in order.lines.iter_mut().filter(|l| l.3 == RESERVED) {
        out.emit(Destination::Inventory, RELEASE_REQUESTED);
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
            if available_before >= i64::from(e.quantity) {
                reserved += i64::from(e.quantity);
                reservations.insert(key, (e.quantity, RESERVED.to_string()));
                out.emit(Destination::Results, STOCK_RESERVED);
            } else {
                reservations.insert(key, (e.quantity, SHORT.to_string()));
                out.emit(Destination::Results, STOCK_SHORT);
            }
            out.emit(Destination::Orders, RESERVATION_OUTCOME);
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

    stock.insert(sku, (on_hand, reserved));
    let available_after = on_hand - reserved;
    if available_before >= threshold && available_after < threshold {
        out.emit(Destination::Results, LOW_STOCK_ALERT);
    }
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
        assert_eq!(e.emitted, want);
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
            e.emitted[&format!("{ORDERS}/0/3/0")].event_type,
            ORDER_REJECTED
        );
        assert_eq!(
            e.emitted[&format!("{ORDERS}/0/4/0")].event_type,
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
            e.emitted[&o(2, 0)],
            kind(Destination::Results, STATUS_CHANGED)
        );
        assert_eq!(
            e.emitted[&o(2, 1)],
            kind(Destination::Inventory, RELEASE_REQUESTED)
        );
        assert!(!e.emitted.contains_key(&o(2, 2)));
        assert_eq!(
            e.emitted[&o(3, 0)],
            kind(Destination::Inventory, RELEASE_REQUESTED)
        );
        assert_eq!(
            e.emitted[&o(4, 0)],
            kind(Destination::Results, ORDER_REJECTED)
        );
        assert_eq!(e.rejections["order_cancelled"], 1);

        // Reserving 4 of 10 leaves 6 (>= 5): no alert.
        assert_eq!(
            e.emitted[&i(1, 0)],
            kind(Destination::Results, STOCK_RESERVED)
        );
        assert_eq!(
            e.emitted[&i(1, 1)],
            kind(Destination::Orders, RESERVATION_OUTCOME)
        );
        assert!(!e.emitted.contains_key(&i(1, 2)));
        assert_eq!(e.emitted[&i(2, 0)], kind(Destination::Results, STOCK_SHORT));
        assert_eq!(
            e.emitted[&i(2, 1)],
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
            e.emitted[&i(1, 0)],
            kind(Destination::Results, STOCK_RESERVED)
        );
        assert_eq!(
            e.emitted[&i(1, 1)],
            kind(Destination::Orders, RESERVATION_OUTCOME)
        );
        assert_eq!(
            e.emitted[&i(1, 2)],
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
