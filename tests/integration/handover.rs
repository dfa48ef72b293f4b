//! A member that takes over partitions whose changelog its sink has yet to
//! apply (`exactly_once`) must keep answering the group while it waits:
//! its batches give way and the consumer is polled, so that a member that
//! joins meanwhile gets its share without waiting for the sink.

use std::time::{Duration, Instant};

use crate::support::cql_contact_point;
use crate::support::process::GalleyProcess;
use crate::support::scenario::Scenario;
use crate::support::tcp_proxy::TcpProxy;

/// The sum of a metric's series (0 when it is not exported yet).
async fn metric_total(galley: &GalleyProcess, name: &str) -> f64 {
    galley.metric_samples(name).await.values().sum()
}

/// Polls until `name` on `galley` reaches `at_least`; panics after `timeout`.
async fn wait_metric(galley: &GalleyProcess, name: &str, at_least: f64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let value = metric_total(galley, name).await;
        if value >= at_least {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} is {value}, short of {at_least}, after {timeout:?}; log:\n{}",
            galley.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn committed_transactions(galley: &GalleyProcess) -> f64 {
    galley
        .metric_samples("galley_transactions_total")
        .await
        .iter()
        .filter(|(labels, _)| labels.contains("outcome=\"committed\""))
        .map(|(_, v)| v)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_waiting_for_its_sink_still_lets_a_newcomer_in() {
    let started = Instant::now();
    let mut scenario = Scenario::new("slowsink").await;
    scenario.exactly_once();
    // Every CQL statement through a slow proxy, one at a time: the sink
    // applies far slower than the pipeline commits, so a backlog of
    // committed but unapplied row changes builds up.
    let proxy = TcpProxy::start(&cql_contact_point()).await;
    scenario
        .env
        .set("GALLEY_CQL__CONTACT_POINTS", proxy.addr.to_string())
        .set("GALLEY_CQL__MAX_CONCURRENT_STATEMENTS", "1");
    let mut first = GalleyProcess::spawn(&scenario.env, "first");
    first.wait_ready(Duration::from_secs(60)).await;
    proxy.set_latency(Duration::from_millis(4));

    let mut messages = scenario.generate(10_000, 71);
    let rest = messages.split_off(8_000);
    let mut sent = scenario.produce(messages, 4_000).await;
    // The first member commits batches its sink has not applied, then dies
    // with them unapplied.
    wait_metric(
        &first,
        "galley_sink_awaiting_batches",
        3.0,
        Duration::from_secs(90),
    )
    .await;
    first.kill();

    // The second member takes every partition; before processing any, its
    // sink must apply the first member's backlog, slowly.
    let mut second = GalleyProcess::spawn(&scenario.env, "second");
    second.wait_ready(Duration::from_secs(60)).await;
    wait_metric(
        &second,
        "galley_partitions_owned",
        12.0,
        Duration::from_secs(60),
    )
    .await;
    // Records for it to process: its first batch waits for the sink.
    sent += scenario.produce(rest, 4_000).await;
    let mut third = GalleyProcess::spawn(&scenario.env, "third");
    third.wait_ready(Duration::from_secs(60)).await;
    wait_metric(
        &third,
        "galley_partitions_owned",
        1.0,
        Duration::from_secs(90),
    )
    .await;
    let second_committed = committed_transactions(&second).await as u64;
    let second_deferred = metric_total(&second, "galley_batches_deferred_total").await;
    let third_joined_after = started.elapsed();

    proxy.set_latency(Duration::ZERO);
    scenario
        .wait_caught_up(&mut [&mut second, &mut third])
        .await;
    let report = scenario.verify(sent).await;
    report.print("slow_sink_handover", started.elapsed());
    println!(
        "[slow_sink_handover] third member owned partitions {:.1}s in, when the second had \
         committed {second_committed} transactions and deferred {second_deferred} batches",
        third_joined_after.as_secs_f64()
    );
    assert_eq!(
        second_committed,
        0,
        "the newcomer got partitions only after the second member had committed a batch: \
         the rebalance waited for the second member's sink; its log:\n{}",
        second.log_tail(30)
    );
    assert!(
        second_deferred >= 1.0,
        "the second member's batches never gave way to the sink; its log:\n{}",
        second.log_tail(30)
    );
    report.assert_exactly_once();
}
