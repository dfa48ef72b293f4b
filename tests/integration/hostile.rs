//! Hostile clients against a real `galley run`: what a client sends must
//! not grow galley's metrics without bound, nor let it mint page cursors.
//! Each test runs its own galley with its own topics, group and keyspace.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
