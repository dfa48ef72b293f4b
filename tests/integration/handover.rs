//! A member that takes over partitions whose changelog its sink has yet to
//! apply (`exactly_once`) must keep answering the group while it waits:
//! its batches give way and the consumer is polled, so that a member that
//! joins meanwhile gets its share without waiting for the sink.

use std::time::{Duration, Instant};

use crate::support::cql_contact_point;
use crate::support::process::GalleyProcess;
use crate::support::scenario::Scenario;
use crate::support::tcp_proxy::TcpProxy;

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
    first
        .wait_metric_at_least("galley_sink_awaiting_batches", 3.0, Duration::from_secs(90))
        .await;
    first.kill();

    // The second member takes every partition; before processing any, its
    // sink must apply the first member's backlog, slowly.
    let mut second = GalleyProcess::spawn(&scenario.env, "second");
    second.wait_ready(Duration::from_secs(60)).await;
    second
        .wait_metric_at_least("galley_partitions_owned", 12.0, Duration::from_secs(60))
        .await;
    // From here the second member's sink crawls (a statement takes about a
    // second): it cannot finish the backlog before its first batch, even
    // when that batch's fetch waits for the killed member's open
    // transaction (it did, once, and no batch gave way), nor commit before
    // the third member is in. If the rebalance waited for that sink, the
    // third would wait past its deadline.
    proxy.set_latency(Duration::from_millis(500));
    // Records for it to process: its first batch waits for the sink. The
    // third member must join while it waits, not before its first batch
    // (its fetch can wait seconds for the killed member's open transaction
    // to be aborted): wait until one batch has given way.
    sent += scenario.produce(rest, 4_000).await;
    second
        .wait_metric_at_least(
            "galley_batches_deferred_total",
            1.0,
            Duration::from_secs(90),
        )
        .await;
    // The third talks to the database directly.
    let mut direct = scenario.env.clone();
    direct.set("GALLEY_CQL__CONTACT_POINTS", cql_contact_point());
    let mut third = GalleyProcess::spawn(&direct, "third");
    third.wait_ready(Duration::from_secs(60)).await;
    third
        .wait_metric_at_least("galley_partitions_owned", 1.0, Duration::from_secs(90))
        .await;
    let second_committed = second.committed_transactions().await as u64;
    let second_deferred = second
        .metric_sum("galley_batches_deferred_total")
        .await
        .unwrap_or(0.0);
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
