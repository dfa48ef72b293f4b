//! The pipeline end to end: a generated shop stream goes in, galley runs as a
//! real process, and afterwards every projection row must equal an
//! independent fold of what the input topics hold, every expected event must
//! be published (by deterministic id), and every poison message must sit in
//! the dead-letter topic with its origin in the headers. The same check runs
//! under SIGKILLs and under a rebalance, in both delivery modes; under
//! `exactly_once`, a read_committed reader must also see every result event
//! and every dead letter exactly once, kills and all.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use crate::support::http;
use crate::support::process::{self, BatchPhase, GalleyProcess};
use crate::support::scenario::{produce, Report, Scenario};

/// The delivery mode a scenario runs galley in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    AtLeastOnce,
    ExactlyOnce,
}

impl Mode {
    async fn scenario(self, prefix: &str) -> Scenario {
        match self {
            Mode::AtLeastOnce => {
                let mut scenario = Scenario::new(prefix).await;
                scenario.at_least_once();
                scenario
            }
            Mode::ExactlyOnce => {
                let mut scenario = Scenario::new(&format!("{prefix}_eos")).await;
                scenario.exactly_once();
                scenario
            }
        }
    }

    fn name(self, prefix: &str) -> String {
        match self {
            Mode::AtLeastOnce => prefix.to_string(),
            Mode::ExactlyOnce => format!("{prefix}-eos"),
        }
    }

    fn assert(self, report: &Report) {
        match self {
            Mode::AtLeastOnce => report.assert_exact(),
            Mode::ExactlyOnce => report.assert_exactly_once(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projections_equal_the_fold_of_a_generated_stream() {
    steady(Mode::AtLeastOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_results_and_projections_of_a_generated_stream() {
    steady(Mode::ExactlyOnce).await;
}

async fn steady(mode: Mode) {
    let started = Instant::now();
    let mut scenario = mode.scenario("steady").await;
    // The query API answers /v1 only with a configured token.
    let token = "steady-test-token-0123456789";
    scenario.env.set(
        "GALLEY_API__TOKENS",
        format!(
            "[{{name = \"steady\", sha256 = \"{}\"}}]",
            galley::api::auth::token_digest_hex(token.as_bytes())
        ),
    );
    let mut galley = GalleyProcess::spawn(&scenario.env, "a");
    galley.wait_ready(Duration::from_secs(60)).await;

    let messages = scenario.generate(20_000, 7);
    let sent = scenario.produce(messages, 5_000).await;
    scenario.wait_caught_up(&mut [&mut galley]).await;

    let report = scenario.verify(sent).await;
    report.print(&mode.name("steady"), started.elapsed());
    mode.assert(&report);
    assert_eq!(
        report.duplicate_events, 0,
        "no crash, so no duplicate events"
    );

    // The query API serves the same rows.
    for (order_id, order) in report.expected.orders.iter().step_by(97).take(20) {
        let auth = format!("Bearer {token}");
        let r = http::send(
            galley.api,
            "GET",
            &format!("/v1/orders/{order_id}"),
            &[("Authorization", &auth)],
            http::Body::None,
        )
        .await;
        let (status, body) = (r.status, r.body);
        assert_eq!(status, 200, "{body}");
        let view: serde_json::Value = serde_json::from_str(&body).expect("json body");
        assert_eq!(view["status"], order.status.as_str(), "{order_id}");
        assert_eq!(view["total_cents"], order.total_cents, "{order_id}");
        assert_eq!(
            view["customer_id"],
            order.customer_id.as_str(),
            "{order_id}"
        );
    }
    let auth = format!("Bearer {token}");
    let r = http::send(
        galley.api,
        "GET",
        "/v1/orders/no-such-order",
        &[("Authorization", &auth)],
        http::Body::None,
    )
    .await;
    let (status, body) = (r.status, r.body);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("\"error\":\"not_found\""), "{body}");
    assert!(report.dead_lettered > 100, "the stream holds poison");
    assert!(
        report.rejected > 100,
        "the stream holds invalid transitions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projections_equal_the_fold_after_repeated_sigkills() {
    crash(Mode::AtLeastOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_results_after_sigkills_inside_transactions() {
    crash(Mode::ExactlyOnce).await;
}

/// SIGKILLs, aimed inside a batch: right after galley logged that a batch's
/// messages were published, before its rows are written and its offsets
/// stored (`exactly_once`: sent in its transaction, not yet committed). The
/// log then says where each kill landed, and at least one must have landed
/// mid-batch, or the test did not test what it is named for.
async fn crash(mode: Mode) {
    let started = Instant::now();
    let mut scenario = mode.scenario("crash").await;
    scenario
        .env
        .set("GALLEY_LOG__LEVEL", process::BATCH_PHASE_LOG_LEVEL);
    // Each restart is the same member coming back: under exactly_once it
    // fences its killed predecessor and aborts the open transaction at once.
    scenario.env.set(
        "GALLEY_KAFKA__TRANSACTIONAL_ID",
        format!("{}.crash", scenario.env.group),
    );
    let aim = match mode {
        Mode::AtLeastOnce => BatchPhase::Published,
        Mode::ExactlyOnce => BatchPhase::SentInTransaction,
    };
    let mut galley = GalleyProcess::spawn(&scenario.env, "crash-0");
    galley.wait_ready(Duration::from_secs(60)).await;

    let messages = scenario.generate(20_000, 11);
    let topics = scenario.env.topics.clone();
    let producing = tokio::spawn(async move { produce(&topics, messages, 2_500).await });

    let mut rng = rand::rngs::StdRng::seed_from_u64(0xC0FFEE);
    let kills = 3;
    let mut mid_batch = 0;
    for k in 1..=kills {
        let pause = Duration::from_millis(rng.random_range(1_200..3_500));
        tokio::time::sleep(pause).await;
        let aimed = galley.wait_batch_phase(aim, Duration::from_secs(10)).await;
        galley.kill();
        // The process is gone: its log ends where it died.
        let landed = galley.last_batch_phase();
        if landed.is_some_and(BatchPhase::mid_batch) {
            mid_batch += 1;
        }
        println!("[crash] SIGKILL {k} after {pause:?} (aimed: {aimed}); last batch phase logged: {landed:?}");
        galley = GalleyProcess::spawn(&scenario.env, &format!("crash-{k}"));
        galley.wait_ready(Duration::from_secs(60)).await;
    }
    let sent = producing.await.expect("producer task");
    scenario.wait_caught_up(&mut [&mut galley]).await;

    let report = scenario.verify(sent).await;
    report.print(&mode.name("crash"), started.elapsed());
    println!(
        "[{}] kills={kills} mid_batch_kills={mid_batch} duplicate_events={}",
        mode.name("crash"),
        report.duplicate_events
    );
    mode.assert(&report);
    assert!(
        mid_batch >= 1,
        "none of the {kills} SIGKILLs landed between a batch's publish and its offset store"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projections_equal_the_fold_when_a_member_leaves_mid_stream() {
    rebalance(Mode::AtLeastOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_results_when_a_member_leaves_mid_stream() {
    rebalance(Mode::ExactlyOnce).await;
}

async fn rebalance(mode: Mode) {
    let started = Instant::now();
    let scenario = mode.scenario("rebalance").await;
    let mut first = GalleyProcess::spawn(&scenario.env, "first");
    let mut second = GalleyProcess::spawn(&scenario.env, "second");
    first.wait_ready(Duration::from_secs(60)).await;
    second.wait_ready(Duration::from_secs(60)).await;

    let messages = scenario.generate(20_000, 23);
    let half = messages.len() / 2;
    let rest = messages[half..].to_vec();
    let head = messages[..half].to_vec();
    let sent_head = scenario.produce(head, 4_000).await;

    let status = first.terminate(Duration::from_secs(40));
    let status = status.expect("galley exits within its shutdown deadline after SIGTERM");
    assert!(
        status.success(),
        "SIGTERM exit status {status:?}; log:\n{}",
        first.log_tail(30)
    );
    println!(
        "[rebalance] first member stopped after {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let sent_rest = scenario.produce(rest, 4_000).await;
    scenario.wait_caught_up(&mut [&mut second]).await;
    let report = scenario.verify(sent_head + sent_rest).await;
    report.print(&mode.name("rebalance"), started.elapsed());
    mode.assert(&report);
}
