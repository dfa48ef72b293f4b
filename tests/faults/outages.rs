//! Dependencies that go away or misbehave mid-stream: the broker stopped for
//! 20 s, the database stopped for 20 s, and a slow, flaky database behind a
//! proxy, and rebalances around broker outages. galley must stall, say so on
//! /readyz, and resume by itself, and its shutdown must keep its deadline.

use std::time::{Duration, Instant};

use crate::support::cql_contact_point;
use crate::support::process::GalleyProcess;
use crate::support::scenario::Scenario;
use crate::support::tcp_proxy::TcpProxy;
use crate::{
    admin_get, peak_rss_kib, produce_patiently, require_fault_stack, stack, wait_applied,
    wait_ready_again, Figures,
};

const OUTAGE: Duration = Duration::from_secs(20);

/// Stops `component` for 20 s while a stream is being sent and processed,
/// then starts it again; the same galley process must recover.
async fn outage_mid_stream(component: &str, reason_prefix: &str, seed: u64, exactly_once: bool) {
    require_fault_stack();
    let started = Instant::now();
    let suffix = if exactly_once { "_eos" } else { "" };
    let name = format!("{component}_down{suffix}");
    let mut scenario = Scenario::new(&format!("{component}down{suffix}")).await;
    if exactly_once {
        scenario.exactly_once();
    } else {
        scenario.at_least_once();
    }
    scenario.env.set("GALLEY_PIPELINE__RETRY_MAX_BACKOFF", "2s");
    scenario.env.set("GALLEY_CQL__REQUEST_TIMEOUT", "2s");
    let mut galley = GalleyProcess::spawn(&scenario.env, &name);
    galley.wait_ready(Duration::from_secs(60)).await;
    let pid = galley.pid();

    // 12,000 messages at 1,000/s: the outage starts once galley has applied
    // a few thousand events (about 4 s in on an idle machine). Where results
    // must flow while the database is away, the stream lasts past the
    // outage's end: 28,000 at 800/s, 35 s.
    let results_flow = exactly_once && component == "cassandra";
    let (count, rate) = if results_flow {
        (28_000, 800)
    } else {
        (12_000, 1_000)
    };
    let messages = scenario.generate(count, seed);
    let producing = tokio::spawn(produce_patiently(
        scenario.env.topics.clone(),
        messages,
        rate,
    ));
    wait_applied(&galley, 4_000.0, Duration::from_secs(60)).await;

    let committed_before = galley.committed_transactions().await;
    let stop_took = tokio::task::block_in_place(|| stack("down", component));
    let down_at = Instant::now();
    // Hold the outage for 20 s, watching /readyz all the while.
    let mut saw_reason: Option<String> = None;
    let mut first_503: Option<Duration> = None;
    let mut committed_first_half: Option<f64> = None;
    let mut last_readyz = String::new();
    while down_at.elapsed() < OUTAGE {
        if committed_first_half.is_none() && down_at.elapsed() >= OUTAGE / 2 {
            committed_first_half = Some(galley.committed_transactions().await - committed_before);
        }
        if let Some((status, body)) = admin_get(&galley, "/readyz").await {
            if status == 503 {
                first_503.get_or_insert(down_at.elapsed());
                last_readyz.clone_from(&body);
                if saw_reason.is_none() && body.contains(&format!("\"{reason_prefix}")) {
                    saw_reason = Some(body);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let committed_during = galley.committed_transactions().await - committed_before;
    // What held processing back at the outage's end, if anything did.
    let held_back = format!(
        "at the outage's end: {} bytes of rows awaiting the sink, {} batches deferred, {} \
         prepare retries; /readyz {last_readyz}",
        galley
            .metric_sum("galley_rows_awaiting_sink_bytes")
            .await
            .unwrap_or(0.0),
        galley
            .metric_sum("galley_batches_deferred_total")
            .await
            .unwrap_or(0.0),
        galley
            .metric_samples("galley_batch_retries_total")
            .await
            .iter()
            .filter(|(labels, _)| labels.contains("step=\"prepare\""))
            .map(|(_, value)| value)
            .sum::<f64>(),
    );
    let committed_first_half = committed_first_half.unwrap_or(committed_during);
    let committed_second_half = committed_during - committed_first_half;
    let start_took = tokio::task::block_in_place(|| stack("up", component));
    let back_at = Instant::now();
    let ready_after = wait_ready_again(&mut galley, Duration::from_secs(120)).await;
    let sent = producing.await.expect("producer task");
    scenario.wait_caught_up(&mut [&mut galley]).await;
    let caught_up_after = back_at.elapsed();
    // A restart of Kafka can leave the group's committed offsets held by a
    // transaction for good; galley then releases them (pipeline::held_offsets).
    let held_offsets_released = galley
        .metric_sum("galley_held_offsets_releases_total")
        .await
        .unwrap_or(0.0);
    assert_eq!(galley.pid(), pid, "the same process recovered");
    assert!(galley.is_running(), "galley still runs");

    let report = scenario.verify(sent).await;
    Figures {
        name: &name,
        report: &report,
        recovery: Some((
            format!("from the restart of {component} to /readyz 200"),
            ready_after,
        )),
        extra: vec![
            format!(
                "outage: stop took {:.1}s, held {}s, start took {:.1}s; /readyz 503 after \
                 {:.1}s; recovery to /readyz 200: {:.1}s, to lag 0: {:.1}s (from the end of \
                 the start)",
                stop_took.as_secs_f64(),
                OUTAGE.as_secs(),
                start_took.as_secs_f64(),
                first_503.unwrap_or_default().as_secs_f64(),
                ready_after.as_secs_f64(),
                caught_up_after.as_secs_f64()
            ),
            format!(
                "/readyz during the outage: {}",
                saw_reason.as_deref().unwrap_or("-")
            ),
            format!(
                "transactions committed during the outage: {committed_during} \
                 ({committed_first_half} in its first half, {committed_second_half} in its second)"
            ),
            held_back,
            format!("held committed offsets released: {held_offsets_released} times"),
        ],
    }
    .print(started.elapsed());
    assert!(
        saw_reason.is_some(),
        "/readyz never answered 503 naming {reason_prefix} during the outage"
    );
    if exactly_once {
        report.assert_exactly_once();
    } else {
        report.assert_exact();
    }
    if results_flow {
        // Kafka is the system of record: results must not wait for the
        // database, in either half of its absence.
        assert!(
            committed_first_half > 0.0 && committed_second_half > 0.0,
            "results stopped while the database was away: {committed_first_half} transactions \
             committed in the outage's first half, {committed_second_half} in its second"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_stopped_for_20s_mid_stream() {
    outage_mid_stream("kafka", "kafka", 101, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_stopped_for_20s_mid_stream() {
    outage_mid_stream("cassandra", "database", 102, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_kafka_stopped_for_20s_mid_stream() {
    outage_mid_stream("kafka", "kafka", 101, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_database_stopped_for_20s_mid_stream() {
    outage_mid_stream("cassandra", "database", 102, true).await;
}

/// galley talks to the database through a proxy that delays every chunk
/// and resets every connection every few seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_flaky_database() {
    require_fault_stack();
    let started = Instant::now();
    let mut scenario = Scenario::new("flakydb").await;
    let proxy = TcpProxy::start(&cql_contact_point()).await;
    scenario
        .env
        .set("GALLEY_CQL__CONTACT_POINTS", proxy.addr.to_string());
    scenario.env.set("GALLEY_PIPELINE__RETRY_MAX_BACKOFF", "2s");
    scenario.env.set("GALLEY_CQL__REQUEST_TIMEOUT", "3s");
    let mut galley = GalleyProcess::spawn(&scenario.env, "flaky");
    galley.wait_ready(Duration::from_secs(60)).await;
    let pid = galley.pid().expect("pid");

    let latency = Duration::from_millis(15);
    proxy.set_latency(latency);
    let messages = scenario.generate(10_000, 103);
    let producing = tokio::spawn(produce_patiently(
        scenario.env.topics.clone(),
        messages,
        1_000,
    ));
    // Reset every database connection every 3 s while the stream flows.
    let mut resets = 0;
    let mut dropped = 0;
    let mut peak_kib = 0;
    let mut every_three_seconds = tokio::time::interval(Duration::from_secs(3));
    every_three_seconds.tick().await;
    while !producing.is_finished() {
        every_three_seconds.tick().await;
        dropped += proxy.reset_connections();
        resets += 1;
        peak_kib = peak_kib.max(peak_rss_kib(pid).unwrap_or(0));
    }
    let sent = producing.await.expect("producer task");
    proxy.set_latency(Duration::ZERO);
    let calm_at = Instant::now();
    scenario.wait_caught_up(&mut [&mut galley]).await;
    let caught_up_after = calm_at.elapsed();
    peak_kib = peak_kib.max(peak_rss_kib(pid).unwrap_or(0));

    let report = scenario.verify(sent).await;
    let bound_kib = 512 * 1024;
    Figures {
        name: "flaky_db",
        report: &report,
        recovery: Some(("from the end of the chaos to lag 0".into(), caught_up_after)),
        extra: vec![format!(
            "latency {}ms per chunk, {resets} resets dropping {dropped} connections; peak RSS \
             {:.1} MiB (bound {} MiB)",
            latency.as_millis(),
            peak_kib as f64 / 1024.0,
            bound_kib / 1024
        )],
    }
    .print(started.elapsed());
    report.assert_exact();
    assert!(dropped > 0, "the proxy reset no connection");
    assert!(
        peak_kib > 0 && peak_kib < bound_kib,
        "peak RSS {peak_kib} KiB is outside (0, {bound_kib})"
    );
}

/// Rebalances on both sides of a broker outage, five times over, with two
/// members. A second member is stopped while the broker is away: its
/// shutdown must end within its deadline although nothing answers, and the
/// group rebalances when the broker returns (the member could not leave).
/// A new second member then joins: another rebalance, just after the
/// outage. Throughout, the first member must never stall, and at the end
/// every projection and result must equal the fold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalances_around_kafka_outages_never_stall() {
    require_fault_stack();
    let started = Instant::now();
    let mut scenario = Scenario::new("rebalout").await;
    let shutdown_deadline = Duration::from_secs(5);
    scenario.env.set("GALLEY_PIPELINE__RETRY_MAX_BACKOFF", "1s");
    scenario.env.set(
        "GALLEY_PIPELINE__SHUTDOWN_DEADLINE",
        format!("{}s", shutdown_deadline.as_secs()),
    );
    let mut a = GalleyProcess::spawn(&scenario.env, "rebal_a");
    a.wait_ready(Duration::from_secs(60)).await;

    // About 80 s of stream, which the five rounds below overlap.
    let messages = scenario.generate(12_000, 111);
    let producing = tokio::spawn(produce_patiently(
        scenario.env.topics.clone(),
        messages,
        150,
    ));
    let mut rounds = Vec::new();
    for round in 1..=5 {
        let mut b = GalleyProcess::spawn(&scenario.env, &format!("rebal_b{round}"));
        if !b.ready_within(Duration::from_secs(60)).await {
            // A newcomer waits on the first member to give up partitions:
            // where that member's threads wait is the likelier story.
            let stacks =
                tokio::task::block_in_place(|| a.dump_thread_stacks(Duration::from_secs(60)));
            panic!(
                "round {round}: the second member did not become ready within 60s; first \
                 member's {stacks}; its log:\n{}\n---\nsecond member's log:\n{}",
                a.log_tail(20),
                b.log_tail(20)
            );
        }
        b.wait_metric_at_least("galley_partitions_owned", 1.0, Duration::from_secs(60))
            .await;

        tokio::task::block_in_place(|| stack("down", "kafka"));
        let asked = Instant::now();
        let status = tokio::task::block_in_place(|| b.terminate(Duration::from_secs(60)));
        let stop_took = asked.elapsed();
        // The broker comes back before any assertion, so that a failure
        // here does not leave the stack down for the scenarios after it.
        tokio::task::block_in_place(|| stack("up", "kafka"));
        let back_at = Instant::now();
        let log = b.log_tail(30);
        assert!(
            status.is_some(),
            "round {round}: the second member did not exit within 60 s of SIGTERM with the \
             broker down; log:\n{log}"
        );
        // The deadline, plus the runtime's grace for blocking calls and
        // the process's own start of shutdown.
        let bound = shutdown_deadline + Duration::from_secs(3);
        assert!(
            stop_took <= bound,
            "round {round}: shutdown took {stop_took:?}, past {bound:?}; log:\n{log}"
        );
        wait_ready_again(&mut a, Duration::from_secs(120)).await;
        rounds.push(format!(
            "round {round}: second member stopped in {:.1}s with the broker down ({status:?}); \
             first member ready {:.1}s after the broker's return",
            stop_took.as_secs_f64(),
            back_at.elapsed().as_secs_f64()
        ));
    }
    let sent = producing.await.expect("producer task");
    let calm_at = Instant::now();
    scenario.wait_caught_up(&mut [&mut a]).await;
    let caught_up_after = calm_at.elapsed();
    assert!(a.is_running(), "the first member still runs");

    let report = scenario.verify(sent).await;
    Figures {
        name: "rebalance_outages",
        report: &report,
        recovery: Some((
            "from the end of the stream to lag 0".into(),
            caught_up_after,
        )),
        extra: rounds,
    }
    .print(started.elapsed());
    report.assert_exact();
}
