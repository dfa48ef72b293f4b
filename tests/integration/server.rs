//! The listeners under abuse, against a real galley process: a client that
//! never finishes its request head is cut off, thousands of idle
//! connections neither exhaust galley's file descriptors nor keep a real
//! client out, a flood of bad tokens is turned away before the token check
//! runs, and /readyz answers from the state a background check keeps.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::http::{self, Body};
use crate::support::process::{http_get, GalleyProcess};
use crate::support::scenario::Scenario;

const TOKEN: &str = "server-hardening-test-token-0123456789";
/// `api.header_read_timeout` of these tests: short, so that they end soon.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// `api.request_timeout` of these tests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// `api.max_connections` of these tests, well below the idle connections opened.
const MAX_CONNECTIONS: usize = 200;
const IDLE_CONNECTIONS: usize = 2_000;
/// `api.unauthenticated_rate_limit_burst` of these tests.
const UNAUTHENTICATED_BURST: usize = 10;

/// Settings every test here runs with.
fn hardened() -> Vec<(&'static str, String)> {
    let digest: String = Sha256::digest(TOKEN.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    vec![
        (
            "GALLEY_API__TOKENS",
            format!("[{{name = \"server\", sha256 = \"{digest}\"}}]"),
        ),
        (
            "GALLEY_API__HEADER_READ_TIMEOUT",
            format!("{}s", HEADER_READ_TIMEOUT.as_secs()),
        ),
        (
            "GALLEY_API__REQUEST_TIMEOUT",
            format!("{}s", REQUEST_TIMEOUT.as_secs()),
        ),
        ("GALLEY_API__MAX_CONNECTIONS", MAX_CONNECTIONS.to_string()),
        (
            "GALLEY_API__UNAUTHENTICATED_RATE_LIMIT_PER_SECOND",
            "1".into(),
        ),
        (
            "GALLEY_API__UNAUTHENTICATED_RATE_LIMIT_BURST",
            UNAUTHENTICATED_BURST.to_string(),
        ),
    ]
}

async fn hardened_galley(prefix: &str) -> (Scenario, GalleyProcess) {
    let mut scenario = Scenario::new(prefix).await;
    for (key, value) in hardened() {
        scenario.env.set(key, value);
    }
    let mut galley = GalleyProcess::spawn(&scenario.env, prefix);
    galley.wait_ready(Duration::from_secs(60)).await;
    (scenario, galley)
}

/// The value of an unlabelled metric, or the sum over a labelled one's
/// series, in galley's /metrics exposition; 0 when absent.
async fn metric_sum(galley: &GalleyProcess, name: &str) -> f64 {
    let (status, text) = http_get(galley.admin, "/metrics")
        .await
        .expect("the admin listener answers /metrics");
    assert_eq!(status, 200, "{text}");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Whether the peer closed `stream` (EOF or reset) within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408 or similar before the close is fine; keep reading to the close.
            Ok(Ok(_)) => continue,
        }
    }
}

/// The sockets galley holds open, from /proc.
fn open_sockets(galley: &GalleyProcess) -> usize {
    let pid = galley.pid().expect("galley runs");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read galley's fds")
        .filter_map(Result::ok)
        .filter(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stalling_in_its_request_head_is_disconnected() {
    let (_scenario, galley) = hardened_galley("slowloris").await;
    let mut stalled = TcpStream::connect(galley.api).await.expect("connect");
    stalled
        .write_all(b"GET /v1/orders/O-1 HT")
        .await
        .expect("send half a request line");
    let started = Instant::now();
    assert!(
        closed_within(&mut stalled, HEADER_READ_TIMEOUT + Duration::from_secs(10)).await,
        "a client that sent half a request line was still connected after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() >= HEADER_READ_TIMEOUT - Duration::from_millis(200),
        "cut after {:?}, before api.header_read_timeout",
        started.elapsed()
    );
    // A client that connects and sends nothing at all is cut off the same way.
    let mut silent = TcpStream::connect(galley.api).await.expect("connect");
    assert!(
        closed_within(&mut silent, HEADER_READ_TIMEOUT + Duration::from_secs(10)).await,
        "a silent client was still connected"
    );
}

/// A request whose body never comes is answered 503 `timeout` after
/// `api.request_timeout`, not held for as long as the client likes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_body_never_comes_times_out() {
    let (_scenario, galley) = hardened_galley("reqtimeout").await;
    let mut client = TcpStream::connect(galley.api).await.expect("connect");
    let head = format!(
        "GET /openapi.json HTTP/1.1\r\nHost: {}\r\nContent-Length: 10\r\n\
         Connection: close\r\n\r\n",
        galley.api
    );
    client.write_all(head.as_bytes()).await.expect("send head");
    let started = Instant::now();
    let mut response = String::new();
    tokio::time::timeout(
        REQUEST_TIMEOUT + Duration::from_secs(10),
        client.read_to_string(&mut response),
    )
    .await
    .expect("an answer within api.request_timeout")
    .expect("read the answer");
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(response.contains("\"error\":\"timeout\""), "{response}");
    assert!(started.elapsed() >= REQUEST_TIMEOUT - Duration::from_millis(100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_neither_exhaust_sockets_nor_keep_a_real_client_out() {
    let (_scenario, galley) = hardened_galley("idleconns").await;
    let before = open_sockets(&galley);
    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        // The kernel completes the handshake for connections galley has not
        // accepted yet, so every connect succeeds while the cap holds.
        idle.push(TcpStream::connect(galley.api).await.expect("connect"));
    }
    // Give galley time to accept what it will: its socket count must stay
    // within the cap however long the idle connections wait.
    let settle = Instant::now() + Duration::from_secs(1);
    let mut most = 0;
    while Instant::now() < settle {
        most = most.max(open_sockets(&galley));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        most <= before + MAX_CONNECTIONS + 5,
        "galley held {most} sockets with {IDLE_CONNECTIONS} idle clients \
         ({before} before, api.max_connections = {MAX_CONNECTIONS})"
    );

    let auth = format!("Bearer {TOKEN}");
    let r = http::send(
        galley.api,
        "GET",
        "/v1/orders/O-absent",
        &[("Authorization", &auth)],
        Body::None,
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);
    println!(
        "[idle] {IDLE_CONNECTIONS} idle clients: galley held at most {most} sockets \
         ({before} before); a real client was answered in {:?}",
        r.elapsed
    );
    // Idle clients are cut each api.header_read_timeout, a batch of at most
    // api.max_connections at a time, so the real client waits at most for
    // the batches queued before it.
    let batches = IDLE_CONNECTIONS.div_ceil(MAX_CONNECTIONS) as u32 + 1;
    assert!(
        r.elapsed < HEADER_READ_TIMEOUT * batches + Duration::from_secs(5),
        "a real client waited {:?}",
        r.elapsed
    );
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_tokens_is_refused_before_the_token_check() {
    let (_scenario, galley) = hardened_galley("badtokens").await;
    let checks_before = metric_sum(&galley, "galley_api_auth_checks_total").await;
    let flood = 200;
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut first_429 = None;
    for i in 0..flood {
        let r = http::send(
            galley.api,
            "GET",
            "/v1/orders/O-1",
            &[("Authorization", "Bearer not-a-token-of-galley")],
            Body::None,
        )
        .await;
        *statuses.entry(r.status).or_default() += 1;
        if r.status == 429 && first_429.is_none() {
            first_429 = Some(i);
            let body = r.json();
            assert_eq!(body["error"], "rate_limited", "{body}");
            assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
        }
    }
    let started_429 =
        first_429.unwrap_or_else(|| panic!("no 429 in {flood} bad tokens: {statuses:?}"));
    assert!(
        started_429 <= UNAUTHENTICATED_BURST + 2,
        "the first 429 came after {started_429} bad tokens: {statuses:?}"
    );
    let checks = metric_sum(&galley, "galley_api_auth_checks_total").await - checks_before;
    // The burst, plus what the 1/s rate refilled while the flood ran.
    assert!(
        checks <= (UNAUTHENTICATED_BURST + 10) as f64,
        "the token check ran {checks} times for {flood} bad tokens: {statuses:?}"
    );
    let throttled = metric_sum(&galley, "galley_api_unauthenticated_throttled_total").await;
    assert!(
        throttled >= (flood - UNAUTHENTICATED_BURST - 10) as f64,
        "{throttled}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_from_the_background_check() {
    let (_scenario, galley) = hardened_galley("readycache").await;
    let before = metric_sum(&galley, "galley_readiness_checks_total").await;
    let started = Instant::now();
    let requests = 50;
    let answers = futures::future::join_all(
        (0..requests).map(|_| http::send(galley.admin, "GET", "/readyz", &[], Body::None)),
    )
    .await;
    let elapsed = started.elapsed();
    let checks = metric_sum(&galley, "galley_readiness_checks_total").await - before;
    for r in &answers {
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // The background check runs about once a second, whatever the requests.
    let allowed = elapsed.as_secs_f64().ceil() + 2.0;
    assert!(
        checks <= allowed,
        "{requests} concurrent /readyz ran {checks} readiness checks in {elapsed:?}"
    );
}
