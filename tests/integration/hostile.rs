//! Hostile clients against a real `galley run`: what a client sends must
//! not grow galley's metrics without bound, nor let it mint page cursors.
//! Each test runs its own galley with its own topics, group and keyspace.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use galley::api::cursor::{CursorSigner, ListKind, Page};
use galley::shop::generator::{self, GeneratorSettings};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::http::{self, Body, Response};
use crate::support::process::{http_get, GalleyProcess};
use crate::support::scenario::Scenario;

/// The methods HTTP defines; any other is labelled `other`.
const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

/// Every route either listener serves, as a metric's `route` label.
const ROUTES: [&str; 10] = [
    "/v1/orders/{order_id}",
    "/v1/customers/{customer_id}/orders",
    "/v1/inventory/{sku}",
    "/v1/sales/skus/{sku}",
    "/v1/sales",
    "/openapi.json",
    "/healthz",
    "/readyz",
    "/metrics",
    "unmatched",
];

/// The characters RFC 9110 allows in a method (a `token`).
const TCHARS: &[u8] =
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn random_method(rng: &mut StdRng) -> String {
    if rng.random_bool(0.2) {
        return STANDARD_METHODS[rng.random_range(0..STANDARD_METHODS.len())].to_string();
    }
    let len = rng.random_range(1..=24);
    (0..len)
        .map(|_| TCHARS[rng.random_range(0..TCHARS.len())] as char)
        .collect()
}

fn random_path(rng: &mut StdRng) -> String {
    let known = [
        "/v1/orders/O-1",
        "/v1/customers/C-1/orders",
        "/v1/inventory/SKU-1",
        "/v1/sales",
        "/openapi.json",
        "/healthz",
        "/metrics",
        "/readyz",
    ];
    if rng.random_bool(0.5) {
        return known[rng.random_range(0..known.len())].to_string();
    }
    let segments = rng.random_range(1..=4);
    (0..segments)
        .map(|_| format!("/{:x}", rng.random::<u32>()))
        .collect()
}

/// Sends one request and returns the status, or None when the server
/// answered nothing parseable: a hostile client does not care.
async fn send_raw(addr: SocketAddr, method: &str, path: &str) -> Option<u16> {
    let connect = tokio::net::TcpStream::connect(addr);
    let mut stream = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .ok()?
        .ok()?;
    let head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw);
    text.split_whitespace().nth(1)?.parse().ok()
}

/// The value of `label` in an exposition line's label set, if any.
fn label<'a>(line: &'a str, label: &str) -> Option<&'a str> {
    let start = line.find(&format!("{label}=\""))? + label.len() + 2;
    let end = start + line[start..].find('"')?;
    Some(&line[start..end])
}

/// The `galley_http_*` series in an exposition, one line per series.
fn http_series(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| l.starts_with("galley_http_"))
        .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_methods_and_paths_add_no_metric_series() {
    let scenario = Scenario::new("cardinality").await;
    let mut galley = GalleyProcess::spawn(&scenario.env, "cardinality");
    galley.wait_ready(Duration::from_secs(60)).await;

    let mut rng = StdRng::seed_from_u64(9);
    let mut answered = 0;
    for i in 0..1_000 {
        let addr = if i % 2 == 0 { galley.api } else { galley.admin };
        let (method, path) = (random_method(&mut rng), random_path(&mut rng));
        if send_raw(addr, &method, &path).await.is_some() {
            answered += 1;
        }
    }
    assert!(
        answered > 900,
        "only {answered} of 1000 requests were answered"
    );

    let (status, body) = http_get(galley.admin, "/metrics")
        .await
        .expect("the admin listener answers /metrics");
    assert_eq!(status, 200, "{body}");
    let series = http_series(&body);
    let mut methods = BTreeSet::new();
    for line in &series {
        let method = label(line, "method").unwrap_or_else(|| panic!("no method: {line}"));
        let route = label(line, "route").unwrap_or_else(|| panic!("no route: {line}"));
        let listener = label(line, "listener").unwrap_or_else(|| panic!("no listener: {line}"));
        assert!(
            STANDARD_METHODS.contains(&method) || method == "other",
            "a client-made method became a label: {line}"
        );
        assert!(ROUTES.contains(&route), "a client-made route label: {line}");
        assert!(["api", "admin"].contains(&listener), "{line}");
        methods.insert((listener.to_string(), method.to_string()));
    }
    for listener in ["api", "admin"] {
        assert!(
            methods.contains(&(listener.to_string(), "other".to_string())),
            "no request with a made-up method was counted on {listener}: {methods:?}"
        );
    }
    // The bound: every listener × route × method × status class, with the
    // histogram's buckets; far below what 1,000 random requests could make.
    println!("[cardinality] http series={}", series.len());
}

const CURSOR_TOKEN: &str = "cursor-token-for-the-hostile-tests-0123";

/// A galley with a token, and a few hundred orders of two customers, so
/// that each customer's list has many pages.
async fn galley_with_orders(scenario: &mut Scenario, extra: &[(&str, &str)]) -> GalleyProcess {
    use sha2::{Digest, Sha256};
    let digest: String = Sha256::digest(CURSOR_TOKEN.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let tokens = format!("[{{name = \"hostile\", sha256 = \"{digest}\"}}]");
    scenario.env.set("GALLEY_API__TOKENS", tokens);
    scenario.env.set("GALLEY_API__RATE_LIMIT_PER_SECOND", "0");
    for (k, v) in extra {
        scenario.env.set(k, *v);
    }
    let mut galley = GalleyProcess::spawn(&scenario.env, "cursors");
    galley.wait_ready(Duration::from_secs(60)).await;
    let settings = GeneratorSettings {
        count: 300,
        customers: 2,
        skus: 5,
        seed: 11,
        poison_fraction: 0.0,
        invalid_fraction: 0.0,
        ..GeneratorSettings::default()
    };
    let messages = generator::generate(&scenario.codec, &settings).0;
    scenario.produce(messages, 3_000).await;
    scenario.wait_caught_up(&mut [&mut galley]).await;
    galley
}

async fn get(addr: SocketAddr, path: &str) -> Response {
    let auth = format!("Bearer {CURSOR_TOKEN}");
    http::send(addr, "GET", path, &[("Authorization", &auth)], Body::None).await
}

fn orders_page(limit: u32, cursor: &str) -> String {
    format!("/v1/customers/C-000000/orders?limit={limit}&cursor={cursor}")
}

/// Expects 400 `invalid_cursor`.
async fn refused(addr: SocketAddr, limit: u32, cursor: &str, what: &str) {
    let r = get(addr, &orders_page(limit, cursor)).await;
    assert_eq!(r.status, 400, "{what} was accepted: {}", r.body);
    assert_eq!(r.json()["error"], "invalid_cursor", "{what}: {}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_not_made_by_galley_are_refused() {
    let mut scenario = Scenario::new("cursors").await;
    let key = "cursor-key-for-the-hostile-tests-0123456789";
    let galley = galley_with_orders(&mut scenario, &[("GALLEY_API__CURSOR_KEY", key)]).await;
    let first = get(galley.api, "/v1/customers/C-000000/orders?limit=2").await;
    assert_eq!(first.status, 200, "{}", first.body);
    let issued = first.json()["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_string();
    let resumed = get(galley.api, &orders_page(2, &issued)).await;
    assert_eq!(resumed.status, 200, "{}", resumed.body);

    // Forged: galley's layout and a real paging state, under a MAC made
    // with a key that is not galley's.
    let raw = URL_SAFE_NO_PAD.decode(&issued).expect("base64");
    let (header, state) = (&raw[..14], &raw[14..raw.len() - 32]);
    let size = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
    assert_eq!(size, 2, "the page size is in the layout");
    let page = Page {
        kind: ListKind::CustomerOrders,
        key: "C-000000",
        size: 2,
    };
    let ttl = Duration::from_secs(900);
    let guessed_key = CursorSigner::new(b"a key a client guessed", ttl);
    let forged = guessed_key.encode(page, state, SystemTime::now());
    refused(galley.api, 2, &forged, "a cursor signed with another key").await;
    let mut wrong_mac = raw.clone();
    let last = wrong_mac.len() - 1;
    wrong_mac[last] ^= 0x80;
    refused(
        galley.api,
        2,
        &URL_SAFE_NO_PAD.encode(&wrong_mac),
        "a wrong MAC",
    )
    .await;

    // Altered: a longer page size or a later expiry written into galley's cursor.
    for (byte, what) in [(5, "an altered page size"), (12, "an altered expiry")] {
        let mut altered = raw.clone();
        altered[byte] ^= 0x01;
        refused(galley.api, 2, &URL_SAFE_NO_PAD.encode(&altered), what).await;
    }
    let mut altered_state = raw.clone();
    altered_state[14] ^= 0x01;
    let altered_state = URL_SAFE_NO_PAD.encode(&altered_state);
    refused(galley.api, 2, &altered_state, "an altered paging state").await;

    // Galley's own cursor, with another page size.
    refused(galley.api, 3, &issued, "a cursor for limit=2 with limit=3").await;

    // Signed with galley's key, but expired.
    let signer = CursorSigner::new(key.as_bytes(), ttl);
    let long_ago = SystemTime::now() - 2 * ttl;
    let expired = signer.encode(page, state, long_ago);
    refused(galley.api, 2, &expired, "an expired cursor").await;
    // The same, fresh, is accepted: the refusals above are the MAC's and the expiry's.
    let fresh = signer.encode(page, state, SystemTime::now());
    let r = get(galley.api, &orders_page(2, &fresh)).await;
    assert_eq!(r.status, 200, "a cursor galley's key signed: {}", r.body);
}
