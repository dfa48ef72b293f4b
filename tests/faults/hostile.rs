//! A hostile client of the query API, and secrets that must stay secret.
//! tests/integration/api.rs covers the documented errors route by route;
//! this adds traversal and injection-like input, absurd parameters, a flood
//! from one token, and checks that a 200 only ever carries what was asked.

use std::time::{Duration, Instant};

use crate::support::http::{self, Body};
use crate::support::process::GalleyProcess;
use crate::support::scenario::Scenario;
use crate::{admin_get, require_fault_stack, Figures};

const TOKEN: &str = "fault-suite-dashboard-token-7f3a9c";
const FLOOD_TOKEN: &str = "fault-suite-flood-token-51d2e8b0";
const CQL_PASSWORD: &str = "cql-pw-Zq8vK2mX4nR7";
const SASL_PASSWORD: &str = "sasl-pw-Hj5tW9cB3pL6";

fn hash(token: &str) -> String {
    galley::api::auth::token_digest_hex(token.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_queries_get_4xx_and_secrets_stay_secret() {
    require_fault_stack();
    let started = Instant::now();
    let mut scenario = Scenario::new("hostile").await;
    let extra = &mut scenario.env.extra;
    extra.insert(
        "GALLEY_API__TOKENS".into(),
        format!(
            "[{{name = \"dashboard\", sha256 = \"{}\"}}, {{name = \"flood\", sha256 = \"{}\", \
             rate_limit_per_second = 5, rate_limit_burst = 10}}]",
            hash(TOKEN),
            hash(FLOOD_TOKEN)
        ),
    );
    // The local database has no authentication and the broker speaks
    // plaintext: the secrets are configured, sent nowhere that checks them.
    extra.insert("GALLEY_CQL__USERNAME".into(), "fault".into());
    extra.insert("GALLEY_CQL__PASSWORD".into(), CQL_PASSWORD.into());
    extra.insert("GALLEY_KAFKA__SASL_USERNAME".into(), "fault".into());
    extra.insert("GALLEY_KAFKA__SASL_PASSWORD".into(), SASL_PASSWORD.into());
    extra.insert("GALLEY_API__RATE_LIMIT_PER_SECOND".into(), "1000".into());
    extra.insert("GALLEY_API__RATE_LIMIT_BURST".into(), "1000".into());
    let mut galley = GalleyProcess::spawn(&scenario.env, "hostile");
    galley.wait_ready(Duration::from_secs(60)).await;
    let sent = scenario.produce(scenario.generate(3_000, 301), 0).await;
    scenario.wait_caught_up(&mut [&mut galley]).await;
    let report = scenario.verify(sent).await;
    report.assert_exact();

    let auth = format!("Bearer {TOKEN}");
    let get = |path: String, headers: Vec<(&'static str, String)>| {
        let addr = galley.api;
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            http::send(addr, "GET", &path, &h, Body::None).await
        }
    };
    let with_token = || vec![("Authorization", auth.clone())];

    let (order_id, order) = report.expected.orders.iter().next().expect("an order");
    let customer = order.customer_id.clone();
    let sku = report.expected.stock.keys().next().expect("a SKU").clone();
    let mut statuses: std::collections::BTreeMap<u16, usize> = Default::default();
    let mut check = |path: &str, status: u16, body: &str| {
        *statuses.entry(status).or_default() += 1;
        assert!(status < 500, "GET {path}: {status} {body}");
    };

    // Paths: traversal, injection-like ids, unicode, encoded separators.
    let hostile_ids = [
        "..",
        "../../etc/passwd",
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e%2f",
        "'%20OR%201=1%20--",
        "%27%20OR%20%271%27=%271",
        "%7B%22$ne%22:null%7D",
        "%3Cscript%3Ealert(1)%3C/script%3E",
        "O-1;DROP%20TABLE%20orders",
        "%E2%80%AE%F0%9F%92%A5",
        "%00",
        "*",
        "%25",
    ];
    for id in hostile_ids {
        for path in [
            format!("/v1/orders/{id}"),
            format!("/v1/customers/{id}/orders"),
            format!("/v1/inventory/{id}"),
            format!("/v1/sales/skus/{id}?from=0&to=60000"),
            format!("/v1/orders/{order_id}/{id}"),
            format!("/v1/{id}"),
        ] {
            let r = get(path.clone(), with_token()).await;
            check(&path, r.status, &r.body);
            assert!(
                matches!(r.status, 200 | 400 | 404),
                "GET {path}: {} {}",
                r.status,
                r.body
            );
            // A hostile id that is still a valid id (`..`, `*`) is just an
            // id nobody has: an empty answer, never someone else's rows.
            if r.status == 200 {
                for (known, o) in &report.expected.orders {
                    assert!(
                        !r.body.contains(known.as_str())
                            && !r.body.contains(&format!("\"{}\"", o.customer_id)),
                        "GET {path} answered with data it was not asked for: {}",
                        r.body
                    );
                }
            }
        }
    }

    // Parameters: absurd limits, garbage cursors and dates, reversed windows.
    let params = [
        format!("/v1/customers/{customer}/orders?limit=-1"),
        format!("/v1/customers/{customer}/orders?limit=99999999999999999999"),
        format!("/v1/customers/{customer}/orders?limit=1e3"),
        format!("/v1/customers/{customer}/orders?limit=0x10"),
        format!("/v1/customers/{customer}/orders?limit=5&limit=6"),
        format!("/v1/customers/{customer}/orders?cursor=garbage"),
        format!(
            "/v1/customers/{customer}/orders?cursor={}",
            "A".repeat(8_000)
        ),
        format!("/v1/customers/{customer}/orders?cursor=%27%20OR%201=1%20--"),
        format!("/v1/inventory/{sku}?limit=100000"),
        format!("/v1/inventory/{sku}?cursor=%00%00"),
        "/v1/sales?from=yesterday&to=today".to_string(),
        "/v1/sales?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z".to_string(),
        "/v1/sales?from=-99999999999999999999&to=0".to_string(),
        "/v1/sales?from=0&to=9223372036854775807".to_string(),
        "/v1/sales?from=1&to=1".to_string(),
        format!("/v1/sales/skus/{sku}?from=%3Cscript%3E&to=1"),
        format!("/v1/sales/skus/{sku}"),
    ];
    for path in &params {
        let r = get(path.clone(), with_token()).await;
        check(path, r.status, &r.body);
        assert_eq!(r.status, 400, "GET {path}: {}", r.body);
    }

    // Tokens: missing, wrong, the hash itself, malformed headers.
    let order_path = format!("/v1/orders/{order_id}");
    for headers in [
        vec![],
        vec![("Authorization", "Bearer".to_string())],
        vec![("Authorization", "Bearer ".to_string())],
        vec![("Authorization", format!("Bearer {TOKEN}x"))],
        vec![("Authorization", format!("Bearer {}", hash(TOKEN)))],
        vec![("Authorization", format!("Basic {TOKEN}"))],
        vec![("Authorization", format!("bearer  {TOKEN} extra"))],
        vec![("Authorization", "Bearer ' OR 1=1 --".to_string())],
        vec![("Authorization", format!("Bearer {}", "t".repeat(4_000)))],
    ] {
        let r = get(order_path.clone(), headers.clone()).await;
        check(&order_path, r.status, &r.body);
        assert_eq!(r.status, 401, "{headers:?}: {}", r.body);
        assert!(!r.body.contains(order_id.as_str()), "{}", r.body);
    }

    // A 200 carries only the entity asked for.
    for (id, expected) in report.expected.orders.iter().step_by(53).take(15) {
        let r = get(format!("/v1/orders/{id}"), with_token()).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        assert_eq!(v["order_id"], id.as_str());
        assert_eq!(v["customer_id"], expected.customer_id.as_str());
        let r = get(
            format!("/v1/customers/{}/orders?limit=100", expected.customer_id),
            with_token(),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let body = r.json();
        let orders = body["orders"].as_array().expect("orders");
        assert!(!orders.is_empty());
        for o in orders {
            let key = (
                expected.customer_id.clone(),
                0,
                o["order_id"].as_str().unwrap_or_default().to_string(),
            );
            assert!(
                report
                    .expected
                    .customer_orders
                    .keys()
                    .any(|(c, _, oid)| *c == key.0 && *oid == key.2),
                "{} is not an order of {}",
                key.2,
                key.0
            );
        }
    }

    // A flood from one token: 429 with Retry-After once over its rate, never a 5xx.
    let flood_path = format!("/v1/orders/{order_id}");
    let mut handles = Vec::new();
    for _ in 0..8 {
        let addr = galley.api;
        let path = flood_path.clone();
        handles.push(tokio::spawn(async move {
            let auth = format!("Bearer {FLOOD_TOKEN}");
            let mut seen = Vec::new();
            for _ in 0..25 {
                let r =
                    http::send(addr, "GET", &path, &[("Authorization", &auth)], Body::None).await;
                seen.push((r.status, r.header("retry-after").map(str::to_string)));
            }
            seen
        }));
    }
    let mut flood: std::collections::BTreeMap<u16, usize> = Default::default();
    for h in handles {
        for (status, retry_after) in h.await.expect("flood task") {
            *flood.entry(status).or_default() += 1;
            assert!(matches!(status, 200 | 429), "flood answered {status}");
            if status == 429 {
                let secs: u64 = retry_after
                    .expect("429 carries Retry-After")
                    .parse()
                    .expect("Retry-After in seconds");
                assert!(secs >= 1);
            }
        }
    }
    assert!(flood.get(&429).copied().unwrap_or(0) > 100, "{flood:?}");
    // The other token is not limited by the flood.
    let r = get(flood_path.clone(), with_token()).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Secrets: nowhere in the log, /metrics or /readyz.
    let (_, metrics) = admin_get(&galley, "/metrics").await.expect("/metrics");
    let (_, readyz) = admin_get(&galley, "/readyz").await.expect("/readyz");
    let log = std::fs::read_to_string(&galley.log).expect("galley's log");
    let secrets = [
        ("the dashboard token", TOKEN.to_string()),
        ("the flood token", FLOOD_TOKEN.to_string()),
        ("the dashboard token's hash", hash(TOKEN)),
        ("the flood token's hash", hash(FLOOD_TOKEN)),
        ("the CQL password", CQL_PASSWORD.to_string()),
        ("the SASL password", SASL_PASSWORD.to_string()),
    ];
    for (what, secret) in &secrets {
        for (place, text) in [("log", &log), ("/metrics", &metrics), ("/readyz", &readyz)] {
            assert!(!text.contains(secret.as_str()), "{what} appears in {place}");
        }
    }

    Figures {
        name: "hostile_api_and_secrets",
        report: &report,
        recovery: None,
        extra: vec![
            format!("hostile requests by status: {statuses:?}"),
            format!("flood of 200 requests from one token by status: {flood:?}"),
            format!(
                "{} secrets checked in {} log bytes, {} /metrics bytes, /readyz: none found",
                secrets.len(),
                log.len(),
                metrics.len()
            ),
        ],
    }
    .print(started.elapsed());
}
