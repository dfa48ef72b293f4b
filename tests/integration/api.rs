//! The query API against a real galley process that has processed a
//! generated shop stream: every route's answer is compared with the test's
//! own fold of the input topics; every 4xx the API promises is provoked;
//! tokens, rate limits and CORS are exercised; every body that came back is
//! validated against the live /openapi.json; and /readyz is watched while
//! galley's database connection is cut and restored.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use chrono::DateTime;
use galley::api::cursor::{CursorSigner, ListKind, Page};
use galley::shop::generator::{self, GeneratorSettings};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support::fold::Expected;
use crate::support::http::{self, Body, Response};
use crate::support::process::{GalleyEnv, GalleyProcess};
use crate::support::scenario::{save_report, Scenario};
use crate::support::tcp_proxy::TcpProxy;
use crate::support::topics::TestTopics;
use crate::support::{cql_contact_point, TestKeyspace};

const DASHBOARD_TOKEN: &str = "dashboard-token-for-the-api-tests-0123";
const THROTTLED_TOKEN: &str = "throttled-token-for-the-api-tests-4567";
const ALLOWED_ORIGIN: &str = "https://dash.example.com";
/// `api.cursor_key`: known here, so that the test can sign cursors of its own.
const CURSOR_KEY: &str = "cursor-key-for-the-api-tests-0123456789abcdef";
/// 2026-01-01T23:58:00Z: the stream crosses midnight, so sales windows
/// read two day partitions.
const START_MS: i64 = 1_767_311_880_000;

const ORDER: &str = "/v1/orders/{order_id}";
const CUSTOMER: &str = "/v1/customers/{customer_id}/orders";
const INVENTORY: &str = "/v1/inventory/{sku}";
const SKU_SALES: &str = "/v1/sales/skus/{sku}";
const SALES: &str = "/v1/sales";
const OPENAPI: &str = "/openapi.json";

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Percent-encodes a path segment.
fn enc(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Epoch ms of an RFC 3339 string in a response.
fn ms(value: &Value) -> i64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"));
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("not RFC 3339 ({e}): {text}"))
        .timestamp_millis()
}

fn iso(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .expect("in range")
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One response, kept to be validated against the OpenAPI document.
struct Recorded {
    /// The route template, or None for a path no route matches.
    template: Option<&'static str>,
    method: String,
    path: String,
    status: u16,
    body: String,
}

/// A client of one galley's query API that remembers what it saw.
struct Api {
    addr: SocketAddr,
    recorded: Mutex<Vec<Recorded>>,
    latencies: Mutex<BTreeMap<&'static str, Vec<Duration>>>,
}

impl Api {
    fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            recorded: Mutex::new(Vec::new()),
            latencies: Mutex::new(BTreeMap::new()),
        }
    }

    async fn call(
        &self,
        template: Option<&'static str>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> Response {
        let response = http::send(self.addr, method, path, headers, body).await;
        assert!(
            response.status < 500 || response.status == 503,
            "{method} {path} gave {}: {}",
            response.status,
            response.body
        );
        if let (Some(t), 200) = (template, response.status) {
            self.latencies
                .lock()
                .expect("latencies")
                .entry(t)
                .or_default()
                .push(response.elapsed);
        }
        self.recorded.lock().expect("recorded").push(Recorded {
            template,
            method: method.to_string(),
            path: path.to_string(),
            status: response.status,
            body: response.body.clone(),
        });
        response
    }

    /// GET with the dashboard token.
    async fn get(&self, template: &'static str, path: &str) -> Response {
        let auth = format!("Bearer {DASHBOARD_TOKEN}");
        self.call(
            Some(template),
            "GET",
            path,
            &[("Authorization", &auth)],
            Body::None,
        )
        .await
    }

    async fn get_ok(&self, template: &'static str, path: &str) -> Value {
        let r = self.get(template, path).await;
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        assert_eq!(r.header("content-type"), Some("application/json"));
        r.json()
    }

    /// Expects an error status and code; returns the message.
    async fn get_err(&self, template: &'static str, path: &str, status: u16, code: &str) -> String {
        let r = self.get(template, path).await;
        check_error(&r, status, code, path)
    }
}

fn check_error(r: &Response, status: u16, code: &str, what: &str) -> String {
    assert_eq!(r.status, status, "{what}: {}", r.body);
    let body = r.json();
    assert_eq!(body["error"], code, "{what}: {}", r.body);
    let message = body["message"].as_str().unwrap_or_default().to_string();
    assert!(!message.is_empty(), "{what}: empty message");
    message
}

fn api_env(env: &mut GalleyEnv) {
    let tokens = format!(
        "[{{name = \"dashboard\", sha256 = \"{}\"}}, \
          {{name = \"throttled\", sha256 = \"{}\", rate_limit_per_second = 1, rate_limit_burst = 2}}]",
        sha256_hex(DASHBOARD_TOKEN),
        sha256_hex(THROTTLED_TOKEN)
    );
    let settings = [
        ("GALLEY_API__TOKENS", tokens.as_str()),
        // The dashboard token makes thousands of requests here; its bucket must not be the limit.
        ("GALLEY_API__RATE_LIMIT_PER_SECOND", "100000"),
        ("GALLEY_API__RATE_LIMIT_BURST", "100000"),
        // Every kind of missing or wrong token is provoked on every route,
        // more than the default burst of failures; tests/integration/server.rs
        // covers that limit.
        ("GALLEY_API__UNAUTHENTICATED_RATE_LIMIT_PER_SECOND", "0"),
        ("GALLEY_API__CORS_ALLOWED_ORIGINS", ALLOWED_ORIGIN),
        ("GALLEY_API__CURSOR_KEY", CURSOR_KEY),
        ("GALLEY_PIPELINE__LAG_REFRESH_INTERVAL", "500ms"),
    ];
    for (k, v) in settings {
        env.extra.insert(k.to_string(), v.to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_api_serves_the_fold_of_a_generated_stream() {
    let started = Instant::now();
    let mut scenario = Scenario::new("api").await;
    api_env(&mut scenario.env);
    let mut galley = GalleyProcess::spawn(&scenario.env, "api");
    galley.wait_ready(Duration::from_secs(60)).await;

    // Few customers, so that each has many pages of orders; a short
    // lifecycle gap, so that plenty of orders ship and sales exist.
    let settings = GeneratorSettings {
        count: 6_000,
        customers: 8,
        skus: 12,
        seed: 21,
        poison_fraction: 0.01,
        invalid_fraction: 0.02,
        start_ms: START_MS,
        lifecycle_gap: 300,
        ..GeneratorSettings::default()
    };
    let messages = generator::generate(&scenario.codec, &settings).0;
    // Placed orders and stock first, the rest once every reservation is
    // answered: the routes then have shipped orders (sales) to serve however
    // slowly galley runs on a busy machine.
    let (setup, lifecycle) = generator::split_setup(messages);
    let mut sent = scenario.produce(setup, 3_000).await;
    scenario.wait_caught_up(&mut [&mut galley]).await;
    sent += scenario.produce(lifecycle, 3_000).await;
    scenario.wait_caught_up(&mut [&mut galley]).await;
    let report = scenario.verify(sent).await;
    report.assert_exact();
    let expected = &report.expected;

    let api = Api::new(galley.api);
    let orders_topic = scenario.env.topics.orders.clone();
    let inventory_topic = scenario.env.topics.inventory.clone();
    wait_fresh(&api, chrono::Utc::now().timestamp_millis()).await;

    check_orders(&api, expected, &orders_topic).await;
    check_customer_pages(&api, expected, &orders_topic).await;
    check_inventory(&api, expected, &inventory_topic).await;
    check_sales(&api, expected).await;
    check_bad_requests(&api, expected).await;
    check_auth(&api).await;
    check_rate_limit(&api).await;
    check_cors(&api).await;
    check_body_limit(&api).await;
    check_no_input_gives_5xx(&api).await;
    let validated = check_against_openapi(&api).await;

    let figures = latency_figures(&api);
    let text = format!(
        "[api] orders={} customers={} skus={} responses_validated={validated} elapsed={:.1}s\n{figures}",
        expected.orders.len(),
        expected
            .customer_orders
            .keys()
            .map(|k| &k.0)
            .collect::<BTreeSet<_>>()
            .len(),
        expected.stock.len(),
        started.elapsed().as_secs_f64()
    );
    print!("{text}");
    save_report("api", &text);
}

/// Waits until the freshness galley reports has caught up with the stream:
/// no lag, and every orders partition has applied something.
/// Waits for a freshness snapshot taken after `caught_up_ms`, when galley
/// had caught up: one snapshot covers both input topics, so the per-SKU
/// checks of the inventory topic then see its lag as 0 too (a snapshot
/// taken before could show the orders topic caught up and not yet the
/// inventory topic).
async fn wait_fresh(api: &Api, caught_up_ms: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = api
            .get_ok(
                SALES,
                "/v1/sales?from=2026-01-01T00:00:00Z&to=2026-01-01T00:01:00Z",
            )
            .await;
        let f = &body["freshness"];
        let after_catch_up =
            f["refreshed_at"].as_str().is_some() && ms(&f["refreshed_at"]) > caught_up_ms;
        if after_catch_up && f["lag_records"] == 0 && !f["slowest_partition_event_time"].is_null() {
            assert_eq!(f["partitions"].as_array().map(Vec::len), Some(6), "{f}");
            assert!(ms(&f["newest_event_time"]) >= ms(&f["slowest_partition_event_time"]));
            assert!(ms(&f["newest_event_time"]) >= START_MS, "{f}");
            assert!(!f["refreshed_at"].is_null());
            return;
        }
        assert!(
            Instant::now() < deadline,
            "freshness never showed the caught-up stream: {f}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every order, field by field.
async fn check_orders(api: &Api, expected: &Expected, orders_topic: &str) {
    assert!(
        expected.orders.len() > 500,
        "{} orders",
        expected.orders.len()
    );
    for (order_id, order) in &expected.orders {
        let v = api
            .get_ok(ORDER, &format!("/v1/orders/{}", enc(order_id)))
            .await;
        let what = format!("order {order_id}: {v}");
        assert_eq!(v["order_id"], order_id.as_str(), "{what}");
        assert_eq!(v["customer_id"], order.customer_id.as_str(), "{what}");
        assert_eq!(v["status"], order.status.as_str(), "{what}");
        assert_eq!(v["currency"], order.currency.as_str(), "{what}");
        assert_eq!(v["total_cents"], order.total_cents, "{what}");
        assert_eq!(v["paid_cents"], order.paid_cents, "{what}");
        assert_eq!(v["refunded_cents"], order.refunded_cents, "{what}");
        assert_eq!(ms(&v["placed_at"]), order.placed_at_ms, "{what}");
        assert_eq!(ms(&v["updated_at"]), order.updated_at_ms, "{what}");
        let lines: Vec<(String, i32, i64, String)> = v["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .map(|l| {
                (
                    l["sku"].as_str().unwrap_or_default().to_string(),
                    l["quantity"].as_i64().unwrap_or_default() as i32,
                    l["unit_price_cents"].as_i64().unwrap_or_default(),
                    l["stock"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        assert_eq!(lines, order.lines, "{what}");
        assert!(!v["timeline"].as_array().expect("timeline").is_empty());
        // An order's freshness is that of the one orders partition that owns it.
        let parts = v["freshness"]["partitions"].as_array().expect("partitions");
        assert_eq!(parts.len(), 1, "{what}");
        assert_eq!(parts[0]["topic"], orders_topic, "{what}");
        assert_eq!(parts[0]["lag_records"], 0, "{what}");
        assert!(ms(&parts[0]["newest_event_time"]) >= START_MS, "{what}");
        assert_eq!(v["freshness"]["lag_records"], 0, "{what}");
    }
}

/// (placed_at_ms, order_id, (status, total_cents)) of an order in a customer's list.
type ListedOrder<'a> = (i64, &'a str, &'a (String, i64));

/// Every customer's list, walked page by page: each order exactly once, newest first.
async fn check_customer_pages(api: &Api, expected: &Expected, orders_topic: &str) {
    let mut by_customer: BTreeMap<&str, Vec<ListedOrder>> = BTreeMap::new();
    for ((customer, placed, order), value) in &expected.customer_orders {
        by_customer
            .entry(customer)
            .or_default()
            .push((*placed, order, value));
    }
    let limit = 7;
    let mut walked_many_pages = false;
    for (customer, mut list) in by_customer.clone() {
        // Clustering order: placed_at descending, then order id ascending.
        list.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        let want: Vec<&str> = list.iter().map(|e| e.1).collect();
        let mut got: Vec<String> = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut path = format!("/v1/customers/{}/orders?limit={limit}", enc(customer));
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let v = api.get_ok(CUSTOMER, &path).await;
            pages += 1;
            assert_eq!(v["customer_id"], customer);
            let orders = v["orders"].as_array().expect("orders");
            assert!(orders.len() <= limit, "page longer than the limit");
            for o in orders {
                let id = o["order_id"].as_str().expect("order_id").to_string();
                let Some(entry) = list.iter().find(|e| e.1 == id) else {
                    panic!("{customer}: unexpected order {id}");
                };
                assert_eq!(ms(&o["placed_at"]), entry.0, "{id}");
                assert_eq!(o["status"], entry.2 .0.as_str(), "{id}");
                assert_eq!(o["total_cents"], entry.2 .1, "{id}");
                got.push(id);
            }
            let parts = v["freshness"]["partitions"].as_array().expect("partitions");
            assert_eq!(
                parts.len(),
                6,
                "a customer's list spans every orders partition"
            );
            assert!(parts.iter().all(|p| p["topic"] == orders_topic));
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
            assert!(pages < 10_000, "paging does not end");
        }
        assert_eq!(
            got, want,
            "{customer}: every order exactly once, newest first"
        );
        walked_many_pages |= pages > 2;

        // The largest page gives the same list in fewer requests.
        let first = api
            .get_ok(
                CUSTOMER,
                &format!("/v1/customers/{}/orders?limit=100", enc(customer)),
            )
            .await;
        let n = first["orders"].as_array().expect("orders").len();
        assert_eq!(n, want.len().min(100));
        // Without a limit, api.default_page_size (50).
        let default = api
            .get_ok(CUSTOMER, &format!("/v1/customers/{}/orders", enc(customer)))
            .await;
        assert_eq!(
            default["orders"].as_array().expect("orders").len(),
            want.len().min(50)
        );
    }
    assert!(walked_many_pages, "some customer has more than two pages");

    // A customer without orders has an empty list.
    let v = api
        .get_ok(CUSTOMER, "/v1/customers/C-nobody/orders?limit=5")
        .await;
    assert_eq!(v["orders"], json!([]));
    assert!(v["next_cursor"].is_null());

    // Cursors only work for the list they came from.
    let (a, b) = {
        let mut keys = by_customer.keys();
        (
            *keys.next().expect("a customer"),
            *keys.next().expect("two customers"),
        )
    };
    let page = api
        .get_ok(
            CUSTOMER,
            &format!("/v1/customers/{}/orders?limit=2", enc(a)),
        )
        .await;
    let good = page["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let path = |customer: &str, cursor: &str| {
        format!(
            "/v1/customers/{}/orders?limit=2&cursor={cursor}",
            enc(customer)
        )
    };
    api.get_ok(CUSTOMER, &path(a, &good)).await;
    // Signed with galley's key: these reach the paging-state checks.
    let signer = CursorSigner::new(CURSOR_KEY.as_bytes(), Duration::from_secs(900));
    let signed = |kind: ListKind, state: &[u8]| {
        let page = Page {
            kind,
            key: a,
            size: 2,
        };
        signer.encode(page, state, SystemTime::now())
    };
    for bad in [
        path(b, &good),
        path(a, &good[..good.len() - 4]),
        path(a, "not-a-cursor"),
        path(a, "%21%21%21"),
        path(a, &"A".repeat(3000)),
        path(a, &signed(ListKind::Reservations, b"state")),
        // A well-formed cursor around bytes the database cannot use as a paging state.
        path(a, &signed(ListKind::CustomerOrders, b"\x00\x01garbage")),
        path(a, &signed(ListKind::CustomerOrders, &[0xff; 64])),
    ] {
        api.get_err(CUSTOMER, &bad, 400, "invalid_cursor").await;
    }
}

/// Every SKU's stock and reservations.
async fn check_inventory(api: &Api, expected: &Expected, inventory_topic: &str) {
    assert!(!expected.stock.is_empty());
    for (index, (sku, (on_hand, reserved))) in expected.stock.iter().enumerate() {
        let limit = if index == 0 { 5 } else { 100 };
        let want: BTreeMap<&str, (i32, &str)> = expected
            .reservations
            .iter()
            .filter(|((s, _), _)| s == sku)
            .map(|((_, order), (q, status))| (order.as_str(), (*q, status.as_str())))
            .collect();
        let mut got: BTreeMap<String, (i32, String)> = BTreeMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/inventory/{}?limit={limit}", enc(sku));
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let v = api.get_ok(INVENTORY, &path).await;
            let what = format!("{sku}: {v}");
            assert_eq!(v["sku"], sku.as_str(), "{what}");
            assert_eq!(v["on_hand"], *on_hand, "{what}");
            assert_eq!(v["reserved"], *reserved, "{what}");
            assert_eq!(v["available"], on_hand - reserved, "{what}");
            let parts = v["freshness"]["partitions"].as_array().expect("partitions");
            assert_eq!(parts.len(), 1, "{what}");
            assert_eq!(parts[0]["topic"], inventory_topic, "{what}");
            assert_eq!(parts[0]["lag_records"], 0, "{what}");
            for r in v["reservations"].as_array().expect("reservations") {
                let order = r["order_id"].as_str().expect("order_id").to_string();
                let value = (
                    r["quantity"].as_i64().expect("quantity") as i32,
                    r["status"].as_str().expect("status").to_string(),
                );
                assert!(
                    got.insert(order.clone(), value).is_none(),
                    "{sku}: {order} twice"
                );
            }
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        let got: BTreeMap<&str, (i32, &str)> = got
            .iter()
            .map(|(k, (q, s))| (k.as_str(), (*q, s.as_str())))
            .collect();
        assert_eq!(got, want, "{sku}: reservations");
    }
    api.get_err(INVENTORY, "/v1/inventory/SKU-never-seen", 404, "not_found")
        .await;
}

/// Sales per SKU and overall, over windows that cross midnight and ones that cut minutes off.
async fn check_sales(api: &Api, expected: &Expected) {
    let minutes: BTreeSet<i64> = expected.minute_sales.keys().copied().collect();
    assert!(
        minutes.len() >= 3,
        "the stream has sales in {} minutes",
        minutes.len()
    );
    let first = *minutes.first().expect("a minute");
    let last = *minutes.last().expect("a minute");
    assert_ne!(
        first.div_euclid(86_400_000),
        last.div_euclid(86_400_000),
        "sales on both sides of midnight"
    );
    let second = *minutes.iter().nth(1).expect("two minutes");
    let windows = [
        (first, last + 60_000),
        (second, last),
        (first - 3_600_000, first + 1),
    ];

    for (from, to) in windows {
        let want: Vec<(i64, (i64, i64, i64))> = expected
            .minute_sales
            .range(from..to)
            .map(|(m, v)| (*m, *v))
            .collect();
        let v = api
            .get_ok(
                SALES,
                &format!("/v1/sales?from={}&to={}", iso(from), iso(to)),
            )
            .await;
        let got: Vec<(i64, (i64, i64, i64))> = v["minutes"]
            .as_array()
            .expect("minutes")
            .iter()
            .map(|m| {
                (
                    ms(&m["minute"]),
                    (
                        m["units"].as_i64().expect("units"),
                        m["revenue_cents"].as_i64().expect("revenue"),
                        m["orders"].as_i64().expect("orders"),
                    ),
                )
            })
            .collect();
        assert_eq!(got, want, "overall sales in [{}, {})", iso(from), iso(to));
        assert_eq!(v["total_units"], want.iter().map(|w| w.1 .0).sum::<i64>());
        assert_eq!(
            v["total_revenue_cents"],
            want.iter().map(|w| w.1 .1).sum::<i64>()
        );
        assert_eq!(v["total_orders"], want.iter().map(|w| w.1 .2).sum::<i64>());
        assert_eq!(ms(&v["from"]), from);
        assert_eq!(ms(&v["to"]), to);
        assert_eq!(
            v["freshness"]["partitions"].as_array().map(Vec::len),
            Some(6)
        );
    }
    // Epoch milliseconds and other offsets name the same instants.
    let v = api
        .get_ok(
            SALES,
            &format!(
                "/v1/sales?from={first}&to={}",
                enc("2026-01-02T03:00:00+02:00")
            ),
        )
        .await;
    assert_eq!(ms(&v["from"]), first);
    assert_eq!(ms(&v["to"]), 1_767_315_600_000);

    let skus: BTreeSet<&str> = expected.sku_sales.keys().map(|k| k.0.as_str()).collect();
    assert!(!skus.is_empty());
    for sku in skus {
        for (from, to) in windows {
            let want: Vec<(i64, (i64, i64))> = expected
                .sku_sales
                .iter()
                .filter(|((s, m), _)| s == sku && (from..to).contains(m))
                .map(|((_, m), v)| (*m, *v))
                .collect();
            let v = api
                .get_ok(
                    SKU_SALES,
                    &format!(
                        "/v1/sales/skus/{}?from={}&to={}",
                        enc(sku),
                        iso(from),
                        iso(to)
                    ),
                )
                .await;
            let got: Vec<(i64, (i64, i64))> = v["minutes"]
                .as_array()
                .expect("minutes")
                .iter()
                .map(|m| {
                    (
                        ms(&m["minute"]),
                        (
                            m["units"].as_i64().expect("units"),
                            m["revenue_cents"].as_i64().expect("revenue"),
                        ),
                    )
                })
                .collect();
            assert_eq!(got, want, "{sku} in [{}, {})", iso(from), iso(to));
            assert_eq!(v["sku"], sku);
            assert_eq!(v["total_units"], want.iter().map(|w| w.1 .0).sum::<i64>());
            assert_eq!(
                v["total_revenue_cents"],
                want.iter().map(|w| w.1 .1).sum::<i64>()
            );
        }
    }
    // A SKU that never sold has an empty series, not an error.
    let v = api
        .get_ok(
            SKU_SALES,
            &format!("/v1/sales/skus/SKU-none?from={first}&to={}", first + 60_000),
        )
        .await;
    assert_eq!(v["minutes"], json!([]));
}

/// Every 400 and 404 the routes promise, with the code that names the problem.
async fn check_bad_requests(api: &Api, expected: &Expected) {
    let customer = &expected
        .customer_orders
        .keys()
        .next()
        .expect("a customer")
        .0;
    let sku = expected.stock.keys().next().expect("a SKU");

    // Ids.
    let long = "x".repeat(129);
    api.get_err(ORDER, &format!("/v1/orders/{long}"), 400, "invalid_id")
        .await;
    api.get_err(ORDER, "/v1/orders/bad%07id", 400, "invalid_id")
        .await;
    api.get_err(ORDER, "/v1/orders/%FF%FE", 400, "invalid_path")
        .await;
    api.get_err(CUSTOMER, "/v1/customers/%00/orders", 400, "invalid_id")
        .await;
    api.get_err(
        INVENTORY,
        &format!("/v1/inventory/{long}"),
        400,
        "invalid_id",
    )
    .await;
    api.get_err(
        SKU_SALES,
        "/v1/sales/skus/%01?from=2026-01-01T00:00:00Z&to=2026-01-01T01:00:00Z",
        400,
        "invalid_id",
    )
    .await;
    // An absent entity.
    api.get_err(ORDER, "/v1/orders/O-does-not-exist", 404, "not_found")
        .await;

    // Page sizes.
    let customers = format!("/v1/customers/{}/orders", enc(customer));
    let inventory = format!("/v1/inventory/{}", enc(sku));
    for (template, base) in [(CUSTOMER, &customers), (INVENTORY, &inventory)] {
        for bad in ["0", "-3", "abc", "1.5", "", "%20"] {
            api.get_err(
                template,
                &format!("{base}?limit={bad}"),
                400,
                "invalid_limit",
            )
            .await;
        }
        for over in ["101", "100000000000000000000000"] {
            let message = api
                .get_err(
                    template,
                    &format!("{base}?limit={over}"),
                    400,
                    "page_too_large",
                )
                .await;
            assert!(message.contains("api.max_page_size"), "{message}");
        }
        api.get_err(
            template,
            &format!("{base}?limit=5&limit=6"),
            400,
            "invalid_query",
        )
        .await;
    }

    // Time windows.
    let day = "2026-01-01T00:00:00Z";
    let sku_sales = format!("/v1/sales/skus/{}", enc(sku));
    for (template, base) in [(SALES, "/v1/sales".to_string()), (SKU_SALES, sku_sales)] {
        let cases = [
            (format!("?to={day}"), "missing_parameter"),
            (format!("?from={day}"), "missing_parameter"),
            (String::new(), "missing_parameter"),
            (format!("?from=yesterday&to={day}"), "invalid_time"),
            (
                format!("?from={day}&to=2026-13-01T00:00:00Z"),
                "invalid_time",
            ),
            (format!("?from=-5&to={day}"), "invalid_time"),
            (format!("?from={day}&to={day}"), "invalid_time_range"),
            (
                format!("?from=2026-01-01T01:00:00Z&to={day}"),
                "invalid_time_range",
            ),
            (
                format!("?from={day}&to=2026-01-02T00:00:00.001Z"),
                "window_too_large",
            ),
            (
                format!("?from=0&to={}", 40 * 86_400_000_i64),
                "window_too_large",
            ),
        ];
        for (query, code) in cases {
            let message = api
                .get_err(template, &format!("{base}{query}"), 400, code)
                .await;
            if code == "window_too_large" {
                assert!(message.contains("api.max_time_window"), "{message}");
            }
        }
        // Exactly the widest window is fine.
        api.get_ok(
            template,
            &format!("{base}?from={day}&to=2026-01-02T00:00:00Z"),
        )
        .await;
    }

    // Routes and methods.
    let auth = format!("Bearer {DASHBOARD_TOKEN}");
    let headers = [("Authorization", auth.as_str())];
    for path in [
        "/v1/nope",
        "/",
        "/v1/orders/",
        "/v1/orders/a/b",
        "/v2/sales",
    ] {
        let r = api.call(None, "GET", path, &headers, Body::None).await;
        check_error(&r, 404, "unknown_route", path);
    }
    for (template, method, path) in [
        (ORDER, "POST", "/v1/orders/O-1".to_string()),
        (ORDER, "DELETE", "/v1/orders/O-1".to_string()),
        (SALES, "PUT", "/v1/sales".to_string()),
        (CUSTOMER, "PATCH", customers.clone()),
        (OPENAPI, "POST", "/openapi.json".to_string()),
    ] {
        let r = api
            .call(Some(template), method, &path, &headers, Body::None)
            .await;
        check_error(&r, 405, "method_not_allowed", &format!("{method} {path}"));
    }
}

/// No token, a wrong one, another scheme: 401. The right one: 200.
async fn check_auth(api: &Api) {
    let paths = [
        (ORDER, "/v1/orders/O-1".to_string()),
        (CUSTOMER, "/v1/customers/C-000001/orders".to_string()),
        (INVENTORY, "/v1/inventory/SKU-00001".to_string()),
        (
            SKU_SALES,
            format!(
                "/v1/sales/skus/SKU-00001?from={START_MS}&to={}",
                START_MS + 1
            ),
        ),
        (
            SALES,
            format!("/v1/sales?from={START_MS}&to={}", START_MS + 1),
        ),
    ];
    let wrong = format!("Bearer {DASHBOARD_TOKEN}x");
    let basic = "Basic ZGFzaGJvYXJkOnNlY3JldA==".to_string();
    let bare = DASHBOARD_TOKEN.to_string();
    let empty = "Bearer ".to_string();
    for (template, path) in &paths {
        let r = api.call(Some(template), "GET", path, &[], Body::None).await;
        check_error(&r, 401, "unauthorized", path);
        assert!(
            r.header("www-authenticate")
                .is_some_and(|h| h.starts_with("Bearer")),
            "{path}: {:?}",
            r.headers
        );
        for header in [&wrong, &basic, &bare, &empty] {
            let r = api
                .call(
                    Some(template),
                    "GET",
                    path,
                    &[("Authorization", header)],
                    Body::None,
                )
                .await;
            check_error(&r, 401, "unauthorized", path);
        }
        // The scheme is case-insensitive, as HTTP says.
        let lower = format!("bearer {DASHBOARD_TOKEN}");
        let r = api
            .call(
                Some(template),
                "GET",
                path,
                &[("Authorization", &lower)],
                Body::None,
            )
            .await;
        assert!(matches!(r.status, 200 | 404), "{path}: {}", r.body);
    }
    // The document is public.
    let r = api
        .call(Some(OPENAPI), "GET", "/openapi.json", &[], Body::None)
        .await;
    assert_eq!(r.status, 200);
}

/// The throttled token (1 request/s, burst 2) runs dry; the dashboard token does not notice.
async fn check_rate_limit(api: &Api) {
    let auth = format!("Bearer {THROTTLED_TOKEN}");
    let path = "/v1/orders/O-rate-limit";
    let mut limited = None;
    for _ in 0..10 {
        let r = api
            .call(
                Some(ORDER),
                "GET",
                path,
                &[("Authorization", &auth)],
                Body::None,
            )
            .await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status, 404, "{}", r.body);
    }
    let r = limited.expect("the throttled token was never limited");
    check_error(&r, 429, "rate_limited", path);
    let retry_after: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    api.get_err(ORDER, path, 404, "not_found").await;
    // After Retry-After, the throttled token is let through again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = api
            .call(
                Some(ORDER),
                "GET",
                path,
                &[("Authorization", &auth)],
                Body::None,
            )
            .await;
        if r.status == 404 {
            break;
        }
        assert_eq!(r.status, 429);
        assert!(Instant::now() < deadline, "the bucket never refilled");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// CORS answers the listed origin only, preflight included.
async fn check_cors(api: &Api) {
    let auth = format!("Bearer {DASHBOARD_TOKEN}");
    let path = "/v1/orders/O-cors";
    let r = api
        .call(
            Some(ORDER),
            "GET",
            path,
            &[("Authorization", &auth), ("Origin", ALLOWED_ORIGIN)],
            Body::None,
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some(ALLOWED_ORIGIN)
    );
    // An error without a token still says so to the browser, so the dashboard can read it.
    let r = api
        .call(
            Some(ORDER),
            "GET",
            path,
            &[("Origin", ALLOWED_ORIGIN)],
            Body::None,
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some(ALLOWED_ORIGIN)
    );

    let r = api
        .call(
            Some(ORDER),
            "GET",
            path,
            &[
                ("Authorization", &auth),
                ("Origin", "https://evil.example.com"),
            ],
            Body::None,
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("access-control-allow-origin"), None);

    let preflight = |origin: &'static str| {
        [
            ("Origin", origin),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "authorization"),
        ]
    };
    let r = http::send(
        api.addr,
        "OPTIONS",
        path,
        &preflight(ALLOWED_ORIGIN),
        Body::None,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some(ALLOWED_ORIGIN)
    );
    assert!(r
        .header("access-control-allow-headers")
        .is_some_and(|h| h.to_ascii_lowercase().contains("authorization")));
    assert!(r
        .header("access-control-allow-methods")
        .is_some_and(|h| h.contains("GET")));
    let r = http::send(
        api.addr,
        "OPTIONS",
        path,
        &preflight("https://evil.example.com"),
        Body::None,
    )
    .await;
    assert_eq!(r.header("access-control-allow-origin"), None, "{r:?}");
}

/// Bodies over api.max_request_body_bytes: 413, declared or streamed.
async fn check_body_limit(api: &Api) {
    let auth = format!("Bearer {DASHBOARD_TOKEN}");
    let headers = [("Authorization", auth.as_str())];
    let big = vec![b'x'; 20_000];
    for body in [Body::Sized(&big), Body::Chunked(&big)] {
        let r = api
            .call(Some(ORDER), "GET", "/v1/orders/O-body", &headers, body)
            .await;
        let message = check_error(&r, 413, "body_too_large", "a 20 kB body");
        assert!(message.contains("api.max_request_body_bytes"), "{message}");
    }
    // A small body is ignored.
    let r = api
        .call(
            Some(ORDER),
            "GET",
            "/v1/orders/O-body",
            &headers,
            Body::Sized(b"{}"),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
}

/// Random junk in every part of a request never gets a 5xx (Api::call asserts it).
async fn check_no_input_gives_5xx(api: &Api) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xA91);
    let auth = format!("Bearer {DASHBOARD_TOKEN}");
    let templates = [
        (ORDER, "/v1/orders/{}"),
        (CUSTOMER, "/v1/customers/{}/orders?limit={}&cursor={}"),
        (INVENTORY, "/v1/inventory/{}?limit={}&cursor={}"),
        (SKU_SALES, "/v1/sales/skus/{}?from={}&to={}"),
        (SALES, "/v1/sales?from={}&to={}"),
    ];
    for _ in 0..300 {
        let (template, shape) = templates[rng.random_range(0..templates.len())];
        let mut path = String::new();
        for (i, piece) in shape.split("{}").enumerate() {
            if i > 0 {
                let len = rng.random_range(1..40);
                let junk: String = (0..len)
                    .map(|_| format!("%{:02X}", rng.random_range(0u8..=255)))
                    .collect();
                path.push_str(&junk);
            }
            path.push_str(piece);
        }
        let r = api
            .call(
                Some(template),
                "GET",
                &path,
                &[("Authorization", &auth)],
                Body::None,
            )
            .await;
        assert!(
            matches!(r.status, 200 | 400 | 404),
            "GET {path}: {} {}",
            r.status,
            r.body
        );
    }
}

/// Every response body this test saw matches the schema /openapi.json
/// gives for its route and status; every route in the document was called.
async fn check_against_openapi(api: &Api) -> usize {
    let doc = api
        .call(Some(OPENAPI), "GET", "/openapi.json", &[], Body::None)
        .await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.header("content-type"), Some("application/json"));
    let doc = doc.json();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    // Undocumented fields are a mismatch too: close every object schema.
    let mut components = doc["components"].clone();
    close_objects(&mut components);

    let documented: BTreeSet<String> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect();
    let want: BTreeSet<String> = [ORDER, CUSTOMER, INVENTORY, SKU_SALES, SALES, OPENAPI]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(documented, want, "the document lists exactly the routes");
    for path in [ORDER, CUSTOMER, INVENTORY, SKU_SALES, SALES] {
        let op = &doc["paths"][path]["get"];
        assert_eq!(op["security"], json!([{"bearer": []}]), "{path}");
        for status in ["200", "400", "401", "429", "503"] {
            assert!(
                op["responses"][status].is_object(),
                "{path} documents {status}"
            );
        }
    }

    let recorded = std::mem::take(&mut *api.recorded.lock().expect("recorded"));
    let mut seen: BTreeSet<(&str, u16)> = BTreeSet::new();
    let mut validators: BTreeMap<String, jsonschema::Validator> = BTreeMap::new();
    for r in &recorded {
        let method = r.method.to_ascii_lowercase();
        // Bodies of documented operations follow their response schema;
        // 404s of unknown routes and 405s follow the shared error schema.
        let schema = match r.template {
            Some(t) if doc["paths"][t][&method].is_object() => {
                let response = &doc["paths"][t][&method]["responses"][r.status.to_string()];
                assert!(
                    response.is_object(),
                    "{} {} answered {}, which the document does not list",
                    r.method,
                    r.path,
                    r.status
                );
                seen.insert((t, r.status));
                response["content"]["application/json"]["schema"].clone()
            }
            _ => json!({"$ref": "#/components/schemas/ErrorBody"}),
        };
        let key = schema.to_string();
        let validator = validators.entry(key).or_insert_with(|| {
            let root = json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "components": components,
                "allOf": [schema],
            });
            jsonschema::options()
                .should_validate_formats(true)
                .build(&root)
                .expect("the document's schema compiles")
        });
        let body: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| {
            panic!(
                "{} {}: body is not JSON ({e}): {}",
                r.method, r.path, r.body
            )
        });
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{} {} ({}) does not match the document:\n{}\nbody: {}",
            r.method,
            r.path,
            r.status,
            errors.join("\n"),
            r.body
        );
    }
    for (route, status) in [
        (ORDER, 200),
        (ORDER, 400),
        (ORDER, 401),
        (ORDER, 404),
        (ORDER, 413),
        (ORDER, 429),
        (CUSTOMER, 200),
        (CUSTOMER, 400),
        (CUSTOMER, 401),
        (INVENTORY, 200),
        (INVENTORY, 400),
        (INVENTORY, 404),
        (SKU_SALES, 200),
        (SKU_SALES, 400),
        (SALES, 200),
        (SALES, 400),
        (OPENAPI, 200),
    ] {
        assert!(
            seen.contains(&(route, status)),
            "no {status} of {route} was validated"
        );
    }
    recorded.len()
}

/// Sets `additionalProperties: false` on every object schema that lists its properties.
fn close_objects(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            for v in map.values_mut() {
                close_objects(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

/// p50 / p99 / max of the successful requests per route, one line each.
fn latency_figures(api: &Api) -> String {
    let latencies = api.latencies.lock().expect("latencies");
    let mut out = String::new();
    for (route, samples) in latencies.iter() {
        let mut sorted = samples.clone();
        sorted.sort();
        let at = |q: f64| {
            let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
            sorted[i].as_secs_f64() * 1000.0
        };
        out.push_str(&format!(
            "[api] {route}: n={} p50={:.2}ms p99={:.2}ms max={:.2}ms (HTTP over loopback, new connection each)\n",
            sorted.len(),
            at(0.5),
            at(0.99),
            at(1.0)
        ));
    }
    out
}

/// /readyz turns 503 with a JSON reason while galley cannot reach its
/// database, and 200 again once it can, without a restart. Only this
/// galley's traffic goes through the proxy that is cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_database_and_recovers_without_a_restart() {
    let keyspace = TestKeyspace::migrated("ks_readyz").await;
    let mut env = GalleyEnv::new("t_readyz", &keyspace.name);
    let _topics = TestTopics::create(env.topic_names(), 2).await;
    let mut proxy = TcpProxy::start(&cql_contact_point()).await;
    env.extra
        .insert("GALLEY_CQL__CONTACT_POINTS".into(), proxy.addr.to_string());
    env.extra.insert(
        "GALLEY_API__TOKENS".into(),
        format!(
            "[{{name = \"dashboard\", sha256 = \"{}\"}}]",
            sha256_hex(DASHBOARD_TOKEN)
        ),
    );
    // Short CQL timeouts, so that the outage shows within seconds.
    env.extra
        .insert("GALLEY_CQL__REQUEST_TIMEOUT".into(), "2s".into());
    let mut galley = GalleyProcess::spawn(&env, "readyz");
    galley.wait_ready(Duration::from_secs(60)).await;
    let pid = galley.pid();
    let api = Api::new(galley.api);

    let readyz = || http::send(galley.admin, "GET", "/readyz", &[], Body::None);
    assert_eq!(readyz().await.status, 200);
    api.get_err(ORDER, "/v1/orders/O-absent", 404, "not_found")
        .await;

    // Without configured origins there are no CORS headers at all.
    let r = http::send(
        galley.api,
        "GET",
        "/v1/orders/O-absent",
        &[("Origin", ALLOWED_ORIGIN)],
        Body::None,
    )
    .await;
    assert_eq!(r.header("access-control-allow-origin"), None);

    proxy.cut();
    let cut_at = Instant::now();
    let reason = loop {
        let r = readyz().await;
        if r.status == 503 {
            break r.json();
        }
        assert_eq!(r.status, 200);
        assert!(
            cut_at.elapsed() < Duration::from_secs(60),
            "/readyz stayed 200 with the database unreachable"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("[readyz] 503 after {:?}: {reason}", cut_at.elapsed());
    assert_eq!(reason["status"], "not_ready");
    let reasons = reason["reasons"].as_array().expect("reasons");
    assert!(
        reasons
            .iter()
            .any(|r| r.as_str().is_some_and(|s| s.starts_with("database"))),
        "{reason}"
    );
    // The process lives, and the query API says the database is away.
    assert_eq!(
        http::send(galley.admin, "GET", "/healthz", &[], Body::None)
            .await
            .status,
        200
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = api.get(ORDER, "/v1/orders/O-absent").await;
        if r.status == 503 {
            let message = check_error(&r, 503, "unavailable", "a read during the outage");
            assert!(message.contains("database"), "{message}");
            break;
        }
        assert!(Instant::now() < deadline, "reads never failed: {}", r.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    proxy.restore().await;
    let restored_at = Instant::now();
    loop {
        let r = readyz().await;
        if r.status == 200 {
            break;
        }
        assert!(
            restored_at.elapsed() < Duration::from_secs(90),
            "/readyz did not recover: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "[readyz] 200 again {:?} after the restore",
        restored_at.elapsed()
    );
    assert!(galley.is_running());
    assert_eq!(galley.pid(), pid, "the same process, never restarted");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = api.get(ORDER, "/v1/orders/O-absent").await;
        if r.status == 404 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reads did not recover: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `galley hash-token` prints the digest `api.tokens` takes.
#[test]
fn hash_token_prints_the_sha256_of_the_token() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let run = |input: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_galley"))
            .arg("hash-token")
            .env("GALLEY_CONFIG", "/nonexistent/needs-no-config.toml")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn galley");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write token");
        child.wait_with_output().expect("galley exits")
    };
    let out = run(&format!("{DASHBOARD_TOKEN}\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        sha256_hex(DASHBOARD_TOKEN)
    );
    let out = run(DASHBOARD_TOKEN);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        sha256_hex(DASHBOARD_TOKEN)
    );
    let out = run("short\n");
    assert!(!out.status.success(), "a short token is refused");
}
