//! A `galley run` process's life: the ready file names the listeners it
//! bound, and SIGTERM stops it gracefully (requests in flight are answered,
//! the exit status is 0, the ready file is gone).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::process::{http_status, GalleyProcess};
use crate::support::scenario::Scenario;

/// Longer than galley's default `pipeline.shutdown_deadline` (30s).
const EXIT_DEADLINE: Duration = Duration::from_secs(40);
/// Long enough for anything on loopback.
const PATIENCE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_file_names_the_bound_listeners_and_sigterm_exits_zero() {
    let scenario = Scenario::new("ready").await;
    let mut galley = GalleyProcess::spawn(&scenario.env, "ready");
    galley.wait_ready(Duration::from_secs(60)).await;

    let text = std::fs::read_to_string(&galley.ready_file).expect("the ready file exists");
    let ready: serde_json::Value = serde_json::from_str(&text).expect("the ready file is JSON");
    assert_eq!(ready["pid"].as_u64(), galley.pid().map(u64::from), "{text}");
    let admin: SocketAddr = ready["admin"]
        .as_str()
        .expect("admin")
        .parse()
        .expect("addr");
    let api: SocketAddr = ready["api"].as_str().expect("api").parse().expect("addr");
    assert_ne!(admin.port(), 0, "{text}");
    assert_ne!(api.port(), 0, "{text}");
    assert_ne!(admin, api, "{text}");
    assert_eq!(http_status(admin, "/healthz").await, Some(200));
    assert_eq!(http_status(api, "/openapi.json").await, Some(200));

    let status = galley
        .terminate(EXIT_DEADLINE)
        .expect("galley exits within its shutdown deadline after SIGTERM");
    assert!(
        status.success(),
        "SIGTERM exit status {status:?}; log:\n{}",
        galley.log_tail(30)
    );
    assert!(
        !galley.ready_file.exists(),
        "the ready file outlived the process"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_request_finish_and_exits_zero() {
    let scenario = Scenario::new("graceful").await;
    let mut galley = GalleyProcess::spawn(&scenario.env, "graceful");
    galley.wait_ready(Duration::from_secs(60)).await;

    // The request stays in flight, deterministically, while its body is
    // missing: `100 Continue` says galley has read the head and its handler
    // is waiting for the body (every API request's body is read whole).
    let body = b"{}";
    let mut client = TcpStream::connect(galley.api).await.expect("connect");
    let head = format!(
        "GET /openapi.json HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\
         Expect: 100-continue\r\nConnection: close\r\n\r\n",
        galley.api,
        body.len()
    );
    client.write_all(head.as_bytes()).await.expect("send head");
    let interim = read_head(&mut client).await;
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");

    galley.signal("TERM");
    wait_until_refused(galley.api).await;
    // Only once the pipeline has drained and left the group would a process
    // that does not wait for its listeners exit: hold the request past that.
    wait_until_group_is_empty(&scenario).await;
    assert!(
        galley.is_running(),
        "galley exited with a request in flight; log:\n{}",
        galley.log_tail(30)
    );

    client.write_all(body).await.expect("send body");
    let mut response = String::new();
    tokio::time::timeout(PATIENCE, client.read_to_string(&mut response))
        .await
        .expect("the response comes")
        .expect("read the response");
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "{response}; log:\n{}",
        galley.log_tail(30)
    );
    assert!(response.contains("\"openapi\""), "{response}");

    let status = galley
        .wait_exit(EXIT_DEADLINE)
        .expect("galley exits within its shutdown deadline after SIGTERM");
    assert!(
        status.success(),
        "SIGTERM exit status {status:?}; log:\n{}",
        galley.log_tail(30)
    );
}

/// Reads one response head (up to the blank line) from `stream`.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout_at(deadline, stream.read(&mut byte))
            .await
            .expect("a response head within the deadline")
            .expect("read");
        assert_eq!(n, 1, "connection closed after {:?}", head);
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Polls until the test's consumer group has no members: galley's pipeline
/// has drained, committed and left it.
async fn wait_until_group_is_empty(scenario: &Scenario) {
    let client = scenario.admin_consumer();
    let group = scenario.env.group.as_str();
    let deadline = Instant::now() + PATIENCE;
    loop {
        // A broker round trip; the test's runtime has threads to spare.
        let groups = tokio::task::block_in_place(|| {
            client.fetch_group_list(Some(group), Duration::from_secs(5))
        })
        .expect("describe the consumer group");
        let members = groups
            .groups()
            .iter()
            .find(|g| g.name() == group)
            .map_or(0, |g| g.members().len());
        if members == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{group} still has {members} member(s) {PATIENCE:?} after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until nothing accepts connections on `addr`: galley has seen the
/// signal and closed its listening socket.
async fn wait_until_refused(addr: SocketAddr) {
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "{addr} still accepts connections {PATIENCE:?} after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
