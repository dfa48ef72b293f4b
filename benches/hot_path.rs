//! Cost per event of galley's hot path, stage by stage, with no broker and no
//! database: decode (Confluent bytes → typed event through the `Codec`),
//! apply (the pure handler on an existing state), encode (every emitted
//! event through the codec into a fresh `Vec`, as the shop does), bind (the
//! values the store builds for each row write, serialized with the scylla
//! driver's own `SerializeRow` against column specs of the real tables), and
//! the whole event (decode + validate + apply + encode + bind).
//!
//! Four realistic events: an `OrderPlaced` with 3 lines, a `PaymentCaptured`
//! on the confirmed order, an `OrderShipped` on the paid one (3 sales cells
//! and a minute cell besides the order rows), and an inventory
//! `StockReservationRequested` on existing stock. The same run compares
//! apache-avro (through galley's codec) with `serde_avro_fast` decoding the
//! same `OrderPlaced` bytes (v2 and v1 writers) and encoding the same emitted
//! events.
//!
//! Run with `cargo bench --bench hot_path` (about a minute). Besides
//! criterion's report, it times every path again in one interleaved run,
//! counting allocations with a counting global allocator, prints one table of
//! ns, allocations and bytes allocated per event, and writes it with the
//! Avro comparison and a recommendation to
//! `target/bench-results/hot_path.json`:
//! `{"stages": {"<stage>_<event>": {"ns_per_event", "allocs_per_event",
//! "bytes_per_event"}}, "avro_comparison": {...}, "recommendation": "..."}`.
//!
//! `avro_comparison.ratios` are apache-avro ns ÷ serde_avro_fast ns (above
//! 1: serde_avro_fast is faster); `paths` holds the figures of each side.
//!
//! Allocation counts include reallocations (a growing `Vec`) and bytes count
//! what each call asked for; the two relaxed atomic adds per allocation are
//! in every figure alike. What the shop does around these stages (Kafka
//! message envelopes, row caches, batching) is not measured here.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::io::BufRead;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use galley::codec::{peek_schema_id, Codec, EventSet, HEADER_LEN};
use galley::domain::inventory::{self, InventoryDecision, Reservation, Stock};
use galley::domain::order::{self, Order, OrderDecision};
use galley::domain::{
    Emitted, EventIds, EventOrigin, InventoryEvent, OrderEvent, OrderLine, OrderPlaced,
    OrderShipped, PaymentCaptured, ResultEvent, StockReservationOutcome, StockReservationRequested,
};
use galley::shop::rows::{
    minute_sales_values, order_document_values, order_index_values, reservation_values,
    sku_sales_values, stock_values, SalesCell,
};
use galley::store::Versioned;
use scylla::frame::response::result::{ColumnSpec, ColumnType, NativeType, TableSpec};
use scylla::serialize::row::{RowSerializationContext, SerializeRow};
use scylla::serialize::writers::RowWriter;
use serde::Deserialize;

struct CountingAlloc;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);

fn count(bytes: usize) {
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    ALLOCATED_BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to `System`; counting touches
// only atomics, never the heap.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

const ORDERS_TOPIC: &str = "shop.orders";
const INVENTORY_TOPIC: &str = "shop.inventory";
/// The defaults of `config/galley.toml`.
const KEYSPACE: &str = "galley";
const LOW_STOCK_THRESHOLD: i64 = 10;
const T0: i64 = 1_795_000_000_000;
const ORDER_ID: &str = "order-2026-11-24-000123";
const SKUS: [&str; 3] = ["sku-001000", "sku-001001", "sku-001002"];

const ORDER_PLACED_V2: &str = include_str!("../schemas/orders/order_placed.v2.avsc");
const ORDER_PLACED_V1: &str = include_str!("../schemas/orders/order_placed.v1.avsc");
const ORDER_STATUS_CHANGED: &str = include_str!("../schemas/results/order_status_changed.v1.avsc");
const RESERVATION_REQUESTED: &str =
    include_str!("../schemas/inventory/stock_reservation_requested.v1.avsc");

fn placed() -> OrderPlaced {
    OrderPlaced {
        order_id: ORDER_ID.into(),
        customer_id: "customer-000042".into(),
        lines: SKUS
            .iter()
            .zip(1..)
            .map(|(sku, i)| OrderLine {
                sku: (*sku).into(),
                quantity: i,
                unit_price_cents: 1_999 + i64::from(i) * 250,
            })
            .collect(),
        currency: "EUR".into(),
        event_time_ms: T0,
    }
}

enum Event {
    Order(OrderEvent),
    Inventory(InventoryEvent),
}

impl Event {
    fn time(&self) -> i64 {
        match self {
            Event::Order(e) => e.event_time_ms(),
            Event::Inventory(e) => e.event_time_ms(),
        }
    }
}

#[derive(Clone)]
enum Decision {
    Order(OrderDecision),
    Inventory(InventoryDecision),
}

impl Decision {
    fn emitted(&self) -> &[Emitted] {
        match self {
            Decision::Order(d) => &d.emitted,
            Decision::Inventory(d) => &d.emitted,
        }
    }
}

/// The rows one event writes when it is alone in its batch.
enum Rows {
    Order {
        order: Versioned<Order>,
        sku_sales: Vec<(String, i64, Versioned<SalesCell>)>,
        minute_sales: Option<(i64, Versioned<SalesCell>)>,
    },
    Inventory {
        stock: Versioned<Stock>,
        reservation: Option<Versioned<Reservation>>,
    },
}

/// Where an input event sits and the rows it meets: what the handler needs.
struct Input {
    topic: &'static str,
    partition: i32,
    offset: i64,
    order: Option<Order>,
    stock: Option<Stock>,
    reservation: Option<Reservation>,
}

impl Input {
    fn orders(offset: i64, order: Option<Order>) -> Input {
        Input {
            topic: ORDERS_TOPIC,
            partition: 3,
            offset,
            order,
            stock: None,
            reservation: None,
        }
    }

    fn apply(&self, event: &Event) -> Decision {
        let mut ids = EventIds::new(EventOrigin {
            topic: self.topic,
            partition: self.partition,
            offset: self.offset,
        });
        match event {
            Event::Order(e) => Decision::Order(order::apply(self.order.as_ref(), e, &mut ids)),
            Event::Inventory(e) => Decision::Inventory(inventory::apply(
                self.stock.as_ref(),
                self.reservation.as_ref(),
                e,
                LOW_STOCK_THRESHOLD,
                &mut ids,
            )),
        }
    }

    /// The rows the shop would write for this event, built the way
    /// `prepare_partition` builds them for a batch of one.
    fn rows_of(&self, decision: Decision, event_time_ms: i64) -> Rows {
        let offset = self.offset;
        match decision {
            Decision::Order(d) => {
                let order = d.state.expect("every fixture event leaves an order");
                let mut minute_sales: Option<(i64, Versioned<SalesCell>)> = None;
                let mut sku_sales = Vec::with_capacity(d.sales.len());
                for sale in d.sales {
                    let (_, minute) = minute_sales.get_or_insert_with(|| {
                        let first = SalesCell {
                            orders: 1,
                            updated_at_ms: event_time_ms,
                            ..SalesCell::default()
                        };
                        (
                            sale.minute_ms,
                            Versioned {
                                value: first,
                                applied_offset: offset,
                            },
                        )
                    });
                    minute.value.units += sale.units;
                    minute.value.revenue_cents += sale.revenue_cents;
                    let cell = SalesCell {
                        units: sale.units,
                        revenue_cents: sale.revenue_cents,
                        orders: 0,
                        updated_at_ms: event_time_ms,
                    };
                    sku_sales.push((
                        sale.sku,
                        sale.minute_ms,
                        Versioned {
                            value: cell,
                            applied_offset: offset,
                        },
                    ));
                }
                Rows::Order {
                    order: Versioned {
                        value: order,
                        applied_offset: offset,
                    },
                    sku_sales,
                    minute_sales,
                }
            }
            Decision::Inventory(d) => Rows::Inventory {
                stock: Versioned {
                    value: d.stock,
                    applied_offset: offset,
                },
                reservation: d.reservation.map(|value| Versioned {
                    value,
                    applied_offset: offset,
                }),
            },
        }
    }
}

/// One input event and what every stage makes of it, computed once so that
/// each stage can be timed on its own input.
struct Case {
    name: &'static str,
    input: Input,
    bytes: Vec<u8>,
    event: Event,
    decision: Decision,
    rows: Rows,
}

impl Case {
    fn new(codec: &Codec, name: &'static str, input: Input, event: Event) -> Case {
        let mut bytes = Vec::new();
        match &event {
            Event::Order(e) => codec.encode(e, &mut bytes),
            Event::Inventory(e) => codec.encode(e, &mut bytes),
        }
        .expect("fixture events encode");
        let decision = input.apply(&event);
        let rows = input.rows_of(decision.clone(), event.time());
        Case {
            name,
            input,
            bytes,
            event,
            decision,
            rows,
        }
    }
}

/// Column specs of the bind markers of each upsert, as the database reports
/// them for a prepared statement: the table's columns in statement order,
/// then `[timestamp]` for `USING TIMESTAMP ?`.
struct Tables {
    orders: Vec<ColumnSpec<'static>>,
    orders_by_customer: Vec<ColumnSpec<'static>>,
    sku_sales: Vec<ColumnSpec<'static>>,
    minute_sales: Vec<ColumnSpec<'static>>,
    stock: Vec<ColumnSpec<'static>>,
    reservation: Vec<ColumnSpec<'static>>,
}

fn bind_markers(
    table: &'static str,
    columns: &[(&'static str, NativeType)],
) -> Vec<ColumnSpec<'static>> {
    let spec = |name: &'static str, typ: NativeType| {
        ColumnSpec::borrowed(
            name,
            ColumnType::Native(typ),
            TableSpec::borrowed(KEYSPACE, table),
        )
    };
    columns
        .iter()
        .map(|(name, typ)| spec(name, typ.clone()))
        .chain([spec("[timestamp]", NativeType::BigInt)])
        .collect()
}

impl Tables {
    /// Types from `src/store/migrations/` (0001, and 0002 for the order document).
    fn new() -> Tables {
        use NativeType::{BigInt, Int, Text, Timestamp};
        Tables {
            orders: bind_markers(
                "order_documents",
                &[
                    ("order_id", Text),
                    ("document", Text),
                    ("source_partition", Int),
                    ("applied_offset", BigInt),
                ],
            ),
            orders_by_customer: bind_markers(
                "orders_by_customer",
                &[
                    ("customer_id", Text),
                    ("placed_at", Timestamp),
                    ("order_id", Text),
                    ("status", Text),
                    ("currency", Text),
                    ("total_cents", BigInt),
                    ("updated_at", Timestamp),
                    ("applied_offset", BigInt),
                ],
            ),
            sku_sales: bind_markers(
                "sales_by_sku_minute",
                &[
                    ("sku", Text),
                    ("day", Int),
                    ("minute", Timestamp),
                    ("source_partition", Int),
                    ("units", BigInt),
                    ("revenue_cents", BigInt),
                    ("updated_at", Timestamp),
                    ("applied_offset", BigInt),
                ],
            ),
            minute_sales: bind_markers(
                "sales_by_minute",
                &[
                    ("day", Int),
                    ("minute", Timestamp),
                    ("source_partition", Int),
                    ("units", BigInt),
                    ("revenue_cents", BigInt),
                    ("orders", BigInt),
                    ("updated_at", Timestamp),
                    ("applied_offset", BigInt),
                ],
            ),
            stock: bind_markers(
                "inventory",
                &[
                    ("sku", Text),
                    ("on_hand", BigInt),
                    ("reserved", BigInt),
                    ("stock_updated_at", Timestamp),
                    ("stock_applied_offset", BigInt),
                    ("source_partition", Int),
                ],
            ),
            reservation: bind_markers(
                "inventory",
                &[
                    ("sku", Text),
                    ("order_id", Text),
                    ("reservation_quantity", Int),
                    ("reservation_status", Text),
                    ("reservation_applied_offset", BigInt),
                ],
            ),
        }
    }
}

/// Serializes `values` as the driver does for a prepared statement (a fresh
/// buffer per statement, as `SerializedValues::from_serializable` starts
/// one) and returns the serialized size.
fn serialize(specs: &[ColumnSpec<'_>], values: &impl SerializeRow) -> usize {
    let mut data = Vec::new();
    let mut writer = RowWriter::new(&mut data);
    values
        .serialize(&RowSerializationContext::from_specs(specs), &mut writer)
        .expect("the store's values type-check against the table");
    data.len()
}

struct Fixture {
    codec: Codec,
    tables: Tables,
    cases: Vec<Case>,
}

impl Fixture {
    fn new() -> Fixture {
        let codec = galley::domain::codec().expect("embedded schemas load");
        let ids = |offset| {
            EventIds::new(EventOrigin {
                topic: ORDERS_TOPIC,
                partition: 3,
                offset,
            })
        };
        // Walk one order through its life so that each event meets the state
        // it would meet in production: confirmed (every line reserved) for
        // the payment, paid for the shipment.
        let placed_event = OrderEvent::Placed(placed());
        let mut state = order::apply(None, &placed_event, &mut ids(1_000))
            .state
            .expect("placing creates the order");
        for (i, line) in placed().lines.iter().enumerate() {
            let answer = OrderEvent::StockOutcome(StockReservationOutcome {
                event_id: format!("{INVENTORY_TOPIC}/1/{}/1", 5_000 + i),
                order_id: ORDER_ID.into(),
                sku: line.sku.clone(),
                quantity: line.quantity,
                reserved: true,
                event_time_ms: T0 + 1_000,
            });
            state = order::apply(Some(&state), &answer, &mut ids(1_001 + i as i64))
                .state
                .expect("an answer keeps the order");
        }
        let confirmed = state;
        let captured = OrderEvent::PaymentCaptured(PaymentCaptured {
            order_id: ORDER_ID.into(),
            amount_cents: confirmed.total_cents,
            event_time_ms: T0 + 60_000,
        });
        let paid = order::apply(Some(&confirmed), &captured, &mut ids(1_004))
            .state
            .expect("capturing keeps the order");
        let shipped = OrderEvent::Shipped(OrderShipped {
            order_id: ORDER_ID.into(),
            carrier: "DHL".into(),
            event_time_ms: T0 + 3_600_000,
        });
        let request = InventoryEvent::ReservationRequested(StockReservationRequested {
            event_id: format!("{ORDERS_TOPIC}/3/1000/1"),
            sku: SKUS[0].into(),
            order_id: ORDER_ID.into(),
            quantity: 2,
            event_time_ms: T0,
        });
        let stock = Stock {
            sku: SKUS[0].into(),
            on_hand: 500,
            reserved: 20,
            updated_at_ms: T0 - 86_400_000,
        };

        let stock_input = Input {
            topic: INVENTORY_TOPIC,
            partition: 1,
            offset: 5_000,
            order: None,
            stock: Some(stock),
            reservation: None,
        };
        let cases = vec![
            Case::new(
                &codec,
                "order_placed",
                Input::orders(1_000, None),
                Event::Order(placed_event),
            ),
            Case::new(
                &codec,
                "payment_captured",
                Input::orders(1_004, Some(confirmed)),
                Event::Order(captured),
            ),
            Case::new(
                &codec,
                "order_shipped",
                Input::orders(1_005, Some(paid)),
                Event::Order(shipped),
            ),
            Case::new(
                &codec,
                "reservation_requested",
                stock_input,
                Event::Inventory(request),
            ),
        ];
        Fixture {
            codec,
            tables: Tables::new(),
            cases,
        }
    }

    fn decode(&self, case: &Case) -> Event {
        match case.event {
            Event::Order(_) => Event::Order(
                self.codec
                    .decode::<OrderEvent>(&case.bytes)
                    .expect("decodes"),
            ),
            Event::Inventory(_) => Event::Inventory(
                self.codec
                    .decode::<InventoryEvent>(&case.bytes)
                    .expect("decodes"),
            ),
        }
    }

    /// One fresh payload per message, with the shop's initial capacity.
    fn encode(&self, emitted: &[Emitted], out: &mut Vec<Vec<u8>>) {
        out.clear();
        for e in emitted {
            let mut payload = Vec::with_capacity(128);
            match e {
                Emitted::Result(e) => self.codec.encode(e, &mut payload),
                Emitted::Inventory(e) => self.codec.encode(e, &mut payload),
                Emitted::Order(e) => self.codec.encode(e, &mut payload),
            }
            .expect("galley's own events encode");
            out.push(payload);
        }
    }

    /// In the order the shop writes: derived rows first, then the order.
    fn bind(&self, rows: &Rows, partition: i32) -> usize {
        let t = &self.tables;
        match rows {
            Rows::Order {
                order,
                sku_sales,
                minute_sales,
            } => {
                let mut size = serialize(&t.orders_by_customer, &order_index_values(order));
                for (sku, minute_ms, cell) in sku_sales {
                    let values = sku_sales_values(sku, *minute_ms, partition, cell);
                    size += serialize(&t.sku_sales, &values);
                }
                if let Some((minute_ms, cell)) = minute_sales {
                    let values = minute_sales_values(*minute_ms, partition, cell);
                    size += serialize(&t.minute_sales, &values);
                }
                let values =
                    order_document_values(order, partition).expect("the order encodes as JSON");
                size + serialize(&t.orders, &values)
            }
            Rows::Inventory { stock, reservation } => {
                let mut size = serialize(&t.stock, &stock_values(stock, partition));
                if let Some(r) = reservation {
                    size += serialize(&t.reservation, &reservation_values(&stock.value.sku, r));
                }
                size
            }
        }
    }

    fn whole(&self, case: &Case, out: &mut Vec<Vec<u8>>) -> usize {
        let event = self.decode(case);
        match &event {
            Event::Order(e) => e.validate(),
            Event::Inventory(e) => e.validate(),
        }
        .expect("fixture events are valid");
        let decision = case.input.apply(&event);
        self.encode(decision.emitted(), out);
        let rows = case.input.rows_of(decision, event.time());
        self.bind(&rows, case.input.partition)
    }
}

/// `OrderPlaced` as `serde_avro_fast` would need it: the v2 default of
/// `currency` has to live here, since that crate has no reader schema.
#[derive(Debug, Deserialize)]
struct FastOrderPlaced {
    order_id: String,
    customer_id: String,
    lines: Vec<OrderLine>,
    #[serde(default = "default_currency")]
    currency: String,
    event_time_ms: i64,
}

fn default_currency() -> String {
    "EUR".into()
}

impl From<FastOrderPlaced> for OrderPlaced {
    fn from(f: FastOrderPlaced) -> OrderPlaced {
        OrderPlaced {
            order_id: f.order_id,
            customer_id: f.customer_id,
            lines: f.lines,
            currency: f.currency,
            event_time_ms: f.event_time_ms,
        }
    }
}

/// The zero-copy variant: strings borrowed from the message bytes.
#[derive(Debug, Deserialize)]
struct FastOrderPlacedRef<'a> {
    order_id: &'a str,
    customer_id: &'a str,
    #[serde(borrow)]
    lines: Vec<FastOrderLineRef<'a>>,
    currency: &'a str,
    event_time_ms: i64,
}

#[derive(Debug, Deserialize)]
struct FastOrderLineRef<'a> {
    sku: &'a str,
    quantity: i32,
    unit_price_cents: i64,
}

impl FastOrderPlacedRef<'_> {
    fn to_owned(&self) -> OrderPlaced {
        OrderPlaced {
            order_id: self.order_id.into(),
            customer_id: self.customer_id.into(),
            lines: self
                .lines
                .iter()
                .map(|line| OrderLine {
                    sku: line.sku.into(),
                    quantity: line.quantity,
                    unit_price_cents: line.unit_price_cents,
                })
                .collect(),
            currency: self.currency.into(),
            event_time_ms: self.event_time_ms,
        }
    }
}

/// `serde_avro_fast`'s side of the comparison, on the same bytes.
struct FastAvro {
    placed_v2: serde_avro_fast::Schema,
    placed_v1: serde_avro_fast::Schema,
    status_changed: serde_avro_fast::Schema,
    reservation_requested: serde_avro_fast::Schema,
    placed_v2_id: u32,
    placed_v1_id: u32,
    status_changed_id: u32,
    reservation_requested_id: u32,
    /// `OrderPlaced` written by a v1 producer (no `currency`).
    v1_bytes: Vec<u8>,
}

impl FastAvro {
    fn new(fixture: &Fixture) -> FastAvro {
        let parse = |text: &str| -> serde_avro_fast::Schema {
            text.parse()
                .expect("serde_avro_fast parses galley's schemas")
        };
        let id = |bytes: &[u8]| peek_schema_id(bytes).expect("galley frames its output");
        let placed_case = &fixture.cases[0];
        let mut v1_bytes = Vec::new();
        placed()
            .encode_v1(&fixture.codec, &mut v1_bytes)
            .expect("encodes");
        let mut emitted_ids = (0, 0);
        for e in placed_case.decision.emitted() {
            let mut out = Vec::new();
            match e {
                Emitted::Result(r @ ResultEvent::OrderStatusChanged(_)) => {
                    fixture.codec.encode(r, &mut out).expect("encodes");
                    emitted_ids.0 = id(&out);
                }
                Emitted::Inventory(i @ InventoryEvent::ReservationRequested(_)) => {
                    fixture.codec.encode(i, &mut out).expect("encodes");
                    emitted_ids.1 = id(&out);
                }
                other => unreachable!("placing an order does not emit {other:?}"),
            }
        }
        FastAvro {
            placed_v2: parse(ORDER_PLACED_V2),
            placed_v1: parse(ORDER_PLACED_V1),
            status_changed: parse(ORDER_STATUS_CHANGED),
            reservation_requested: parse(RESERVATION_REQUESTED),
            placed_v2_id: id(&placed_case.bytes),
            placed_v1_id: id(&v1_bytes),
            status_changed_id: emitted_ids.0,
            reservation_requested_id: emitted_ids.1,
            v1_bytes,
        }
    }

    /// Checks framing and trailing bytes as galley's codec does, so that the
    /// two sides do the same work.
    fn decode<'a, T: Deserialize<'a>>(
        bytes: &'a [u8],
        id: u32,
        schema: &serde_avro_fast::Schema,
    ) -> T {
        assert_eq!(peek_schema_id(bytes).expect("framed"), id, "schema id");
        let mut state =
            serde_avro_fast::de::DeserializerState::from_slice(&bytes[HEADER_LEN..], schema);
        let value = T::deserialize(state.deserializer()).expect("decodes");
        let mut rest = state.into_reader();
        assert!(
            rest.fill_buf().expect("a slice").is_empty(),
            "trailing bytes"
        );
        value
    }

    fn decode_v2(&self, bytes: &[u8]) -> FastOrderPlaced {
        Self::decode(bytes, self.placed_v2_id, &self.placed_v2)
    }

    fn decode_v2_borrowed<'a>(&self, bytes: &'a [u8]) -> FastOrderPlacedRef<'a> {
        Self::decode(bytes, self.placed_v2_id, &self.placed_v2)
    }

    fn decode_v1(&self) -> FastOrderPlaced {
        Self::decode(&self.v1_bytes, self.placed_v1_id, &self.placed_v1)
    }
}

/// Reused serializer state, as a producer loop would keep it.
struct FastEncoders<'s> {
    status_changed: serde_avro_fast::ser::SerializerConfig<'s>,
    reservation_requested: serde_avro_fast::ser::SerializerConfig<'s>,
    status_changed_id: u32,
    reservation_requested_id: u32,
}

impl<'s> FastEncoders<'s> {
    fn new(fast: &'s FastAvro) -> Self {
        FastEncoders {
            status_changed: serde_avro_fast::ser::SerializerConfig::new(&fast.status_changed),
            reservation_requested: serde_avro_fast::ser::SerializerConfig::new(
                &fast.reservation_requested,
            ),
            status_changed_id: fast.status_changed_id,
            reservation_requested_id: fast.reservation_requested_id,
        }
    }

    /// The same work as [`Fixture::encode`] for the events an `OrderPlaced` emits.
    fn encode(&mut self, emitted: &[Emitted], out: &mut Vec<Vec<u8>>) {
        out.clear();
        for e in emitted {
            let mut payload = Vec::with_capacity(128);
            let written = match e {
                Emitted::Result(ResultEvent::OrderStatusChanged(e)) => {
                    frame(self.status_changed_id, &mut payload);
                    serde_avro_fast::to_datum(e, payload, &mut self.status_changed)
                }
                Emitted::Inventory(InventoryEvent::ReservationRequested(e)) => {
                    frame(self.reservation_requested_id, &mut payload);
                    serde_avro_fast::to_datum(e, payload, &mut self.reservation_requested)
                }
                other => unreachable!("placing an order does not emit {other:?}"),
            };
            out.push(written.expect("encodes"));
        }
    }
}

fn frame(schema_id: u32, out: &mut Vec<u8>) {
    out.push(0);
    out.extend_from_slice(&schema_id.to_be_bytes());
}

/// Per-event figures of one path.
#[derive(Debug, Clone, Copy)]
struct Figures {
    ns: f64,
    allocs: f64,
    bytes: f64,
}

/// One timed path: its stable key and what one event costs.
struct Path<'a> {
    key: String,
    run: Box<dyn FnMut() + 'a>,
}

fn paths<'a, 's: 'a>(
    fixture: &'a Fixture,
    fast: &'a FastAvro,
    encoders: &'a mut FastEncoders<'s>,
) -> Vec<Path<'a>> {
    let mut paths: Vec<Path<'a>> = Vec::new();
    let mut add = |key: String, run: Box<dyn FnMut() + 'a>| paths.push(Path { key, run });
    for case in &fixture.cases {
        let name = case.name;
        add(
            format!("decode_{name}"),
            Box::new(move || {
                black_box(fixture.decode(case));
            }),
        );
        add(
            format!("apply_{name}"),
            Box::new(move || {
                black_box(case.input.apply(&case.event));
            }),
        );
        let mut out = Vec::new();
        add(
            format!("encode_{name}"),
            Box::new(move || {
                fixture.encode(case.decision.emitted(), &mut out);
                black_box(&out);
            }),
        );
        add(
            format!("bind_{name}"),
            Box::new(move || {
                black_box(fixture.bind(&case.rows, case.input.partition));
            }),
        );
        let mut out = Vec::new();
        add(
            format!("whole_{name}"),
            Box::new(move || {
                black_box(fixture.whole(case, &mut out));
            }),
        );
    }

    let placed = &fixture.cases[0];
    add(
        "avro/apache_avro_decode_v2".into(),
        Box::new(move || {
            black_box(
                fixture
                    .codec
                    .decode::<OrderEvent>(&placed.bytes)
                    .expect("decodes"),
            );
        }),
    );
    add(
        "avro/serde_avro_fast_decode_v2".into(),
        Box::new(move || {
            black_box(fast.decode_v2(&placed.bytes));
        }),
    );
    add(
        "avro/serde_avro_fast_decode_v2_borrowed".into(),
        Box::new(move || {
            black_box(fast.decode_v2_borrowed(&placed.bytes));
        }),
    );
    add(
        "avro/apache_avro_decode_v1_writer".into(),
        Box::new(move || {
            black_box(
                fixture
                    .codec
                    .decode::<OrderEvent>(&fast.v1_bytes)
                    .expect("decodes"),
            );
        }),
    );
    add(
        "avro/serde_avro_fast_decode_v1_writer".into(),
        Box::new(move || {
            black_box(fast.decode_v1());
        }),
    );
    let mut out = Vec::new();
    add(
        "avro/apache_avro_encode_emitted".into(),
        Box::new(move || {
            fixture.encode(placed.decision.emitted(), &mut out);
            black_box(&out);
        }),
    );
    let mut out = Vec::new();
    add(
        "avro/serde_avro_fast_encode_emitted".into(),
        Box::new(move || {
            encoders.encode(placed.decision.emitted(), &mut out);
            black_box(&out);
        }),
    );
    paths
}

/// Every path must compute what the shop computes before its cost means
/// anything; this also makes `cargo test --benches` a real check.
fn check(fixture: &Fixture, fast: &FastAvro, encoders: &mut FastEncoders<'_>) {
    for case in &fixture.cases {
        let same = match (fixture.decode(case), &case.event) {
            (Event::Order(a), Event::Order(b)) => a == *b,
            (Event::Inventory(a), Event::Inventory(b)) => a == *b,
            _ => false,
        };
        assert!(same, "{}: decode round-trips", case.name);
        assert!(
            !case.decision.emitted().is_empty(),
            "{}: the handler emits",
            case.name
        );
        let mut out = Vec::new();
        assert!(
            fixture.whole(case, &mut out) > 0,
            "{}: rows bind",
            case.name
        );
        assert_eq!(out.len(), case.decision.emitted().len());
    }
    if let Rows::Order { sku_sales, .. } = &fixture.cases[2].rows {
        assert_eq!(sku_sales.len(), 3, "shipping counts every line");
    }

    let placed_case = &fixture.cases[0];
    let Event::Order(OrderEvent::Placed(expected)) = &placed_case.event else {
        unreachable!("the first case is the OrderPlaced")
    };
    assert_eq!(
        OrderPlaced::from(fast.decode_v2(&placed_case.bytes)),
        *expected
    );
    assert_eq!(
        fast.decode_v2_borrowed(&placed_case.bytes).to_owned(),
        *expected
    );
    let resolved = fixture
        .codec
        .decode::<OrderEvent>(&fast.v1_bytes)
        .expect("decodes");
    assert_eq!(OrderEvent::Placed(fast.decode_v1().into()), resolved);

    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    fixture.encode(placed_case.decision.emitted(), &mut ours);
    encoders.encode(placed_case.decision.emitted(), &mut theirs);
    assert_eq!(ours, theirs, "both crates write the same bytes");
}

fn criterion_benches(c: &mut Criterion, paths: &mut [Path<'_>]) {
    let mut group = c.benchmark_group("hot_path");
    group.throughput(Throughput::Elements(1));
    for path in paths.iter_mut() {
        let run = &mut path.run;
        group.bench_function(path.key.as_str(), |b| b.iter(&mut *run));
    }
    group.finish();
}

/// Runs `f` `calls` times; allocations are deterministic, so one batch
/// counts them exactly.
fn measure(calls: u32, f: &mut dyn FnMut()) -> Figures {
    let allocs = ALLOCATIONS.load(Ordering::Relaxed);
    let bytes = ALLOCATED_BYTES.load(Ordering::Relaxed);
    let started = Instant::now();
    for _ in 0..calls {
        f();
    }
    let elapsed = started.elapsed();
    let per_call = |n: u64| n as f64 / f64::from(calls);
    Figures {
        ns: elapsed.as_nanos() as f64 / f64::from(calls),
        allocs: per_call(ALLOCATIONS.load(Ordering::Relaxed) - allocs),
        bytes: per_call(ALLOCATED_BYTES.load(Ordering::Relaxed) - bytes),
    }
}

/// Best ns per path over interleaved rounds, so a burst of noise on this
/// shared machine hits every path alike instead of skewing one.
fn interleaved(paths: &mut [Path<'_>]) -> Vec<Figures> {
    const ROUNDS: usize = 5;
    let batch = Duration::from_millis(15);
    let calls: Vec<u32> = paths
        .iter_mut()
        .map(|path| {
            let probe = measure(200, &mut *path.run);
            (batch.as_nanos() as f64 / probe.ns.max(1.0)).clamp(200.0, 200_000.0) as u32
        })
        .collect();
    let mut best: Vec<Option<Figures>> = vec![None; paths.len()];
    for _ in 0..ROUNDS {
        for ((path, calls), best) in paths.iter_mut().zip(&calls).zip(&mut best) {
            let now = measure(*calls, &mut *path.run);
            *best = Some(match *best {
                Some(b) if b.ns <= now.ns => b,
                _ => now,
            });
        }
    }
    best.into_iter()
        .map(|b| b.expect("at least one round"))
        .collect()
}

fn round(x: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (x * scale).round() / scale
}

fn allocations(n: f64) -> String {
    let n = n.round();
    let plural = if n == 1.0 { "" } else { "s" };
    format!("{n:.0} allocation{plural}")
}

fn figures_json(f: Figures) -> serde_json::Value {
    serde_json::json!({
        "ns_per_event": round(f.ns, 1),
        "allocs_per_event": round(f.allocs, 2),
        "bytes_per_event": round(f.bytes, 1),
    })
}

/// The table, the JSON document and the recommendation, from the figures.
fn report(fixture: &Fixture, keys: &[String], figures: &[Figures]) -> (String, serde_json::Value) {
    let get = |key: &str| -> Figures {
        keys.iter()
            .position(|k| k == key)
            .map(|i| figures[i])
            .unwrap_or_else(|| panic!("no path named {key}"))
    };
    let mut text = format!(
        "hot_path bench: per event, best of interleaved rounds\n  {:<44} {:>10} {:>13} {:>12}\n",
        "stage", "ns/event", "allocs/event", "bytes/event"
    );
    let mut stages = serde_json::Map::new();
    let mut compared = serde_json::Map::new();
    for (key, f) in keys.iter().zip(figures) {
        text.push_str(&format!(
            "  {key:<44} {:>10.0} {:>13.1} {:>12.0}\n",
            f.ns, f.allocs, f.bytes
        ));
        match key.strip_prefix("avro/") {
            Some(name) => compared.insert(name.to_owned(), figures_json(*f)),
            None => stages.insert(key.clone(), figures_json(*f)),
        };
    }

    let names: Vec<&str> = fixture.cases.iter().map(|c| c.name).collect();
    let share = |stage: &str, name: &str| {
        get(&format!("{stage}_{name}")).ns / get(&format!("whole_{name}")).ns
    };
    let largest = |name: &str| {
        ["decode", "apply", "encode", "bind"]
            .into_iter()
            .max_by(|a, b| share(a, name).total_cmp(&share(b, name)))
            .expect("four stages")
    };
    let decode_dominates = names.iter().all(|name| largest(name) == "decode");
    let decode_share_placed = share("decode", "order_placed");
    let avro_share = names
        .iter()
        .map(|name| share("decode", name) + share("encode", name))
        .sum::<f64>()
        / names.len() as f64;

    let apache = get("avro/apache_avro_decode_v2");
    let owned = get("avro/serde_avro_fast_decode_v2");
    let borrowed = get("avro/serde_avro_fast_decode_v2_borrowed");
    let apache_v1 = get("avro/apache_avro_decode_v1_writer");
    let fast_v1 = get("avro/serde_avro_fast_decode_v1_writer");
    let apache_enc = get("avro/apache_avro_encode_emitted");
    let fast_enc = get("avro/serde_avro_fast_encode_emitted");
    let speedup = |a: Figures, b: Figures| a.ns / b.ns;
    let whole_placed = get("whole_order_placed").ns;
    // What moving the current-schema path (decode and encode) would save on
    // an OrderPlaced; v1 writers would keep apache-avro's resolution.
    let saving = ((apache.ns - owned.ns) + (apache_enc.ns - fast_enc.ns)) / whole_placed;

    let comparison = serde_json::json!({
        "record": "OrderPlaced v2 with 3 lines; v1_writer: the same order written by a v1 \
                   producer; encode_emitted: the 4 events an OrderPlaced emits",
        "body_bytes": fixture.cases[0].bytes.len() - HEADER_LEN,
        "paths": compared,
        "ratios": {
            "decode_v2_speedup_owned": round(speedup(apache, owned), 2),
            "decode_v2_speedup_borrowed": round(speedup(apache, borrowed), 2),
            "decode_v1_writer_speedup": round(speedup(apache_v1, fast_v1), 2),
            "encode_emitted_speedup": round(speedup(apache_enc, fast_enc), 2),
        },
        "decode_dominates": decode_dominates,
        "decode_share_of_whole_order_placed": round(decode_share_placed, 3),
        "avro_share_of_whole_mean": round(avro_share, 3),
        "saving_share_of_whole_order_placed": round(saving, 3),
    });

    let biggest = largest("order_placed");
    let biggest_allocs = allocations(get(&format!("{biggest}_order_placed")).allocs);
    let verdict = if saving >= 0.2 {
        "Galley should move its Direct plan (writer schema = reader schema, every current \
         producer) to serde_avro_fast for decode and encode and keep apache-avro for the rest"
            .to_owned()
    } else {
        let mut keep = "Galley should keep apache-avro: the gain is a small part of an event, \
                        not worth a second Avro implementation"
            .to_owned();
        if speedup(apache_v1, fast_v1) >= 3.0 {
            keep.push_str(&format!(
                "; the one large gap is apache-avro's resolving path for v1 writers ({:.0} ns, \
                 {}), which matters only while old producers remain",
                apache_v1.ns,
                allocations(apache_v1.allocs)
            ));
        }
        keep
    };
    let recommendation = format!(
        "Avro (decode + encode) is {avro:.0}% of a whole event on average and decode {dec:.0}% \
         of an OrderPlaced, whose largest stage is {biggest} ({biggest_allocs}): decode \
         {dominates}. On the same bytes serde_avro_fast decodes an OrderPlaced {so:.1}x faster \
         into an owned struct ({ao} against {aa}; {sb:.1}x and {ab} borrowed), encodes its \
         emitted events {se:.1}x faster, and reads a v1 writer {s1:.1}x faster; moving the \
         current-schema path would save about {pct:.0}% of a whole OrderPlaced. {verdict}. \
         Switching costs: serde_avro_fast has no reader schema, so every default an older writer \
         relies on (v1 OrderPlaced's currency = \"EUR\") must be repeated as a serde attribute and \
         kept in step with the .avsc by a test, and it has no compatibility check, so apache-avro \
         stays for the start-up SchemaCompatibility check and the Resolve plan; every schema is \
         then parsed by both crates, DecodeError needs a second error source, and the 16 MiB \
         apache-avro allocation cap no longer applies (its slice decoder bounds strings by the \
         message, which max_event_bytes caps).",
        avro = avro_share * 100.0,
        dec = decode_share_placed * 100.0,
        dominates = if decode_dominates {
            "dominates"
        } else {
            "does not dominate"
        },
        so = speedup(apache, owned),
        ao = allocations(owned.allocs),
        aa = allocations(apache.allocs),
        sb = speedup(apache, borrowed),
        ab = allocations(borrowed.allocs),
        se = speedup(apache_enc, fast_enc),
        s1 = speedup(apache_v1, fast_v1),
        pct = saving * 100.0,
    );
    text.push_str(&format!(
        "  ({} body bytes for the OrderPlaced; whole = decode + validate + apply + encode + \
         bind)\nrecommendation: {recommendation}\n",
        fixture.cases[0].bytes.len() - HEADER_LEN
    ));
    let json = serde_json::json!({
        "stages": stages,
        "avro_comparison": comparison,
        "recommendation": recommendation,
    });
    (text, json)
}

fn main() {
    let fixture = Fixture::new();
    let fast = FastAvro::new(&fixture);
    let mut check_encoders = FastEncoders::new(&fast);
    check(&fixture, &fast, &mut check_encoders);

    let mut encoders = FastEncoders::new(&fast);
    let mut paths = paths(&fixture, &fast, &mut encoders);
    let mut criterion = Criterion::default()
        // 27 paths on 2 cores: short enough for about a minute in all; the
        // table and JSON come from the interleaved pass, not from these.
        .warm_up_time(Duration::from_millis(250))
        .measurement_time(Duration::from_millis(1_200))
        .configure_from_args();
    criterion_benches(&mut criterion, &mut paths);
    criterion.final_summary();

    // `cargo test --benches` runs this binary without `--bench`: a smoke
    // run, no timings, and no JSON that would pass for measured figures.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let figures = interleaved(&mut paths);
    let keys: Vec<String> = paths.iter().map(|p| p.key.clone()).collect();
    let (text, json) = report(&fixture, &keys, &figures);
    print!("{text}");
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("target"))
        .join("bench-results");
    let body = serde_json::to_string_pretty(&json).expect("plain JSON values serialize");
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("hot_path.json"), body + "\n"));
    match written {
        Ok(()) => println!("wrote {}", dir.join("hot_path.json").display()),
        Err(e) => eprintln!("could not write {}: {e}", dir.display()),
    }
}
