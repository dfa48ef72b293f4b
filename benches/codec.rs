//! Cost per event of the Avro codec on an `OrderPlaced` with 3 lines: the
//! codec's direct decode (writer = reader schema), its resolving decode (a
//! v1 writer), the deprecated `from_avro_datum` + `from_value` path it
//! replaces, and encoding.
//!
//! Run with `cargo bench --bench codec`. Besides criterion's report, it
//! times every path again in one interleaved run and prints ns/event with
//! the ratio to the matching deprecated path (ratios survive a noisy shared machine
//! better than absolute figures), also written to
//! `target/bench-results/codec.txt`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use apache_avro::Schema;
use criterion::{Criterion, Throughput};
use galley::codec::Codec;
use galley::domain::{OrderEvent, OrderLine, OrderPlaced};

const V1_SCHEMA: &str = include_str!("../schemas/orders/order_placed.v1.avsc");
const V2_SCHEMA: &str = include_str!("../schemas/orders/order_placed.v2.avsc");

fn sample() -> OrderPlaced {
    OrderPlaced {
        order_id: "order-2026-11-24-000123".into(),
        customer_id: "customer-000042".into(),
        lines: (0..3)
            .map(|i| OrderLine {
                sku: format!("sku-{:06}", 1000 + i),
                quantity: i + 1,
                unit_price_cents: 1_999 + i64::from(i) * 250,
            })
            .collect(),
        currency: "EUR".into(),
        event_time_ms: 1_795_000_000_000,
    }
}

/// The inputs every path works on, built once.
struct Fixture {
    codec: Codec,
    schema: Schema,
    v1_schema: Schema,
    event: OrderEvent,
    v2: Vec<u8>,
    v1: Vec<u8>,
}

impl Fixture {
    fn new() -> Fixture {
        let codec = galley::domain::codec().expect("embedded schemas load");
        let schema = Schema::parse_str(V2_SCHEMA).expect("v2 schema parses");
        let v1_schema = Schema::parse_str(V1_SCHEMA).expect("v1 schema parses");
        let event = OrderEvent::Placed(sample());
        let mut v2 = Vec::new();
        codec.encode(&event, &mut v2).expect("encodes");
        let mut v1 = Vec::new();
        sample().encode_v1(&codec, &mut v1).expect("encodes");
        Fixture {
            codec,
            schema,
            v1_schema,
            event,
            v2,
            v1,
        }
    }

    fn decode_direct(&self) -> OrderEvent {
        self.codec.decode::<OrderEvent>(&self.v2).expect("decodes")
    }

    fn decode_resolving(&self) -> OrderEvent {
        self.codec.decode::<OrderEvent>(&self.v1).expect("decodes")
    }

    /// What the codec replaces: the deprecated datum function (which builds
    /// a reader, resolving the schema, on every call) into a `Value`, then
    /// `from_value`.
    #[allow(deprecated)]
    fn decode_deprecated(&self) -> OrderPlaced {
        let mut body = &self.v2[5..];
        let value = apache_avro::from_avro_datum(&self.schema, &mut body, None).expect("decodes");
        apache_avro::from_value(&value).expect("converts")
    }

    /// The deprecated path for a v1 writer: resolution against v2 is
    /// prepared again on every call.
    #[allow(deprecated)]
    fn decode_deprecated_resolving(&self) -> OrderPlaced {
        let mut body = &self.v1[5..];
        let value = apache_avro::from_avro_datum(&self.v1_schema, &mut body, Some(&self.schema))
            .expect("decodes");
        apache_avro::from_value(&value).expect("converts")
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        self.codec.encode(&self.event, out).expect("encodes");
    }

    #[allow(deprecated)]
    fn encode_deprecated(&self) -> Vec<u8> {
        let OrderEvent::Placed(placed) = &self.event else {
            unreachable!("the fixture is an OrderPlaced")
        };
        let value = apache_avro::to_value(placed).expect("converts");
        apache_avro::to_avro_datum(&self.schema, value).expect("encodes")
    }
}

fn criterion_benches(c: &mut Criterion, fixture: &Fixture) {
    let mut group = c.benchmark_group("order_placed_3_lines");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode/codec_direct_v2", |b| {
        b.iter(|| black_box(fixture.decode_direct()))
    });
    group.bench_function("decode/codec_resolving_v1", |b| {
        b.iter(|| black_box(fixture.decode_resolving()))
    });
    group.bench_function("decode/deprecated_from_avro_datum", |b| {
        b.iter(|| black_box(fixture.decode_deprecated()))
    });
    group.bench_function("decode/deprecated_from_avro_datum_resolving_v1", |b| {
        b.iter(|| black_box(fixture.decode_deprecated_resolving()))
    });
    let mut out = Vec::with_capacity(256);
    group.bench_function("encode/codec_reused_vec", |b| {
        b.iter(|| {
            fixture.encode(&mut out);
            black_box(out.len())
        })
    });
    group.bench_function("encode/deprecated_to_avro_datum", |b| {
        b.iter(|| black_box(fixture.encode_deprecated()))
    });
    group.finish();
}

/// Best (least disturbed) ns/call over several rounds of `f`.
fn best_ns(rounds: usize, calls: u32, mut f: impl FnMut()) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        let started = Instant::now();
        for _ in 0..calls {
            f();
        }
        best = best.min(started.elapsed());
    }
    best.as_nanos() as f64 / f64::from(calls)
}

fn ratio_summary(fixture: &Fixture) -> String {
    let calls = 20_000;
    let mut out = Vec::with_capacity(256);
    let mut figures = [0.0_f64; 6];
    // Interleaved rounds, so a burst of noise hits every path alike.
    for _ in 0..5 {
        let round = [
            best_ns(3, calls, || {
                black_box(fixture.decode_direct());
            }),
            best_ns(3, calls, || {
                black_box(fixture.decode_resolving());
            }),
            best_ns(3, calls, || {
                black_box(fixture.decode_deprecated());
            }),
            best_ns(3, calls, || {
                black_box(fixture.decode_deprecated_resolving());
            }),
            best_ns(3, calls, || {
                fixture.encode(&mut out);
                black_box(out.len());
            }),
            best_ns(3, calls, || {
                black_box(fixture.encode_deprecated());
            }),
        ];
        for (best, now) in figures.iter_mut().zip(round) {
            *best = if *best == 0.0 { now } else { best.min(now) };
        }
    }
    let [direct, resolving, deprecated, deprecated_resolving, encode, encode_deprecated] = figures;
    let mut text = format!(
        "codec bench: OrderPlaced with 3 lines, {} body bytes, ns/event (best of interleaved rounds)\n",
        fixture.v2.len() - 5
    );
    for (name, ns, baseline) in [
        ("decode codec direct (v2 writer)", direct, deprecated),
        ("decode deprecated from_avro_datum", deprecated, deprecated),
        (
            "decode codec resolving (v1 writer)",
            resolving,
            deprecated_resolving,
        ),
        (
            "decode deprecated, v1 resolved to v2",
            deprecated_resolving,
            deprecated_resolving,
        ),
        ("encode codec (reused Vec)", encode, encode_deprecated),
        (
            "encode deprecated to_avro_datum",
            encode_deprecated,
            encode_deprecated,
        ),
    ] {
        text.push_str(&format!(
            "  {name:<38} {ns:>8.0} ns   {:.2}x of deprecated\n",
            ns / baseline
        ));
    }
    text
}

fn main() {
    let fixture = Fixture::new();
    // Both paths must agree before their speed means anything.
    assert_eq!(fixture.decode_direct(), fixture.event);
    assert_eq!(
        OrderEvent::Placed(fixture.decode_deprecated()),
        fixture.event
    );
    assert_eq!(
        OrderEvent::Placed(fixture.decode_deprecated_resolving()),
        fixture.decode_resolving()
    );

    let mut criterion = Criterion::default().configure_from_args();
    criterion_benches(&mut criterion, &fixture);
    criterion.final_summary();

    // `cargo test --benches` runs this binary without `--bench`: a smoke
    // run, no timings.
    if std::env::args().any(|arg| arg == "--bench") {
        let text = ratio_summary(&fixture);
        print!("{text}");
        let dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::PathBuf::from("target"))
            .join("bench-results");
        let written = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join("codec.txt"), &text));
        if let Err(e) = written {
            eprintln!("could not write {}: {e}", dir.display());
        }
    }
}
