//! Rebuilding the projections from the input topics. Truncating one derived
//! table and replaying (what the README once said) cannot rebuild it: the
//! rows it derives from still hold their watermarks, so every event counts
//! as a duplicate and the truncated table stays empty. `galley rebuild`
//! truncates every table derived from the input topics together and resets
//! the group, so that the next `galley run` rebuilds every row.

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use galley::shop::generator::{self, GeneratorSettings};
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};

use crate::support::process::{galley_command, GalleyProcess};
use crate::support::scenario::{Scenario, INPUT_PARTITIONS};
use crate::support::TestKeyspace;

/// Runs one galley subcommand for the scenario's group and keyspace until it
/// succeeds (the group empties only once the broker has seen the last member
/// leave), and returns its output.
async fn run_until_it_succeeds(scenario: &Scenario, subcommand: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, text) = tokio::task::block_in_place(|| run_subcommand(scenario, subcommand));
        if ok {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "galley {subcommand} kept failing:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs `galley <subcommand>`; (success, stdout and stderr).
fn run_subcommand(scenario: &Scenario, subcommand: &str) -> (bool, String) {
    let out = galley_command(&scenario.env, subcommand)
        .arg(subcommand)
        .output()
        .expect("run galley");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Rows in a table of the keyspace.
async fn count_rows(keyspace: &TestKeyspace, table: &str) -> usize {
    let rows: Vec<(i64,)> = keyspace
        .session
        .query_iter(
            format!("SELECT count(*) FROM {}.{table}", keyspace.name),
            (),
        )
        .await
        .expect("count rows")
        .rows_stream::<(i64,)>()
        .expect("count row")
        .try_collect()
        .await
        .expect("count row");
    rows.first().map(|(n,)| *n as usize).unwrap_or_default()
}

/// Starts galley, waits until it has read everything, stops it.
async fn run_until_caught_up(scenario: &Scenario, name: &str) {
    let mut galley = GalleyProcess::spawn(&scenario.env, name);
    galley.wait_ready(Duration::from_secs(60)).await;
    scenario.wait_caught_up(&mut [&mut galley]).await;
    let status = galley.terminate(Duration::from_secs(30)).expect("exits");
    assert!(status.success(), "{}", galley.log_tail(20));
}

/// Starts galley, waits until it has read everything and its sink has
/// applied every row it holds for it (under exactly_once a row stays in
/// memory until then), stops it.
async fn run_until_applied(scenario: &Scenario, name: &str) {
    let mut galley = GalleyProcess::spawn(&scenario.env, name);
    galley.wait_ready(Duration::from_secs(60)).await;
    scenario.wait_caught_up(&mut [&mut galley]).await;
    let deadline = Instant::now() + SINK_SETTLE;
    loop {
        let held = galley.metric_samples(ROWS_AWAITING_SINK).await;
        if held.get("") == Some(&0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{SINK_SETTLE:?} after catching up, galley still holds rows for the sink \
             ({ROWS_AWAITING_SINK} {held:?}); log:\n{}",
            galley.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let status = galley.terminate(Duration::from_secs(30)).expect("exits");
    assert!(status.success(), "{}", galley.log_tail(20));
}

/// After a replay or a rebuild, the sink's position rows may not claim
/// any input partition applied past the group's committed offset: the run
/// that follows starts there, and a partition's next owner, or the rows
/// held for the sink, trust that claim to say what the database holds of
/// the new run.
async fn assert_sink_claims_nothing_past_the_group(scenario: &Scenario, after: &str) {
    let committed = tokio::task::block_in_place(|| {
        let consumer = scenario.admin_consumer();
        let mut tpl = TopicPartitionList::new();
        for topic in [&scenario.env.topics.orders, &scenario.env.topics.inventory] {
            for p in 0..INPUT_PARTITIONS {
                tpl.add_partition(topic, p);
            }
        }
        consumer
            .committed_offsets(tpl, Duration::from_secs(5))
            .expect("committed offsets")
    });
    let mut claims = 0;
    for e in committed.elements() {
        let Offset::Offset(offset) = e.offset() else {
            panic!(
                "{after}: no committed offset for {}[{}]",
                e.topic(),
                e.partition()
            );
        };
        let ks = &scenario.keyspace.name;
        if let Some(claim) = scenario.sink_claim(ks, e.topic(), e.partition()).await {
            claims += 1;
            assert!(
                claim <= offset,
                "after `galley {after}`, the sink claims {}[{}] applied below {claim}, past \
                 the group's committed offset {offset}",
                e.topic(),
                e.partition()
            );
        }
    }
    assert!(
        claims > 0,
        "no sink position rows: the run before was not exactly_once"
    );
}

/// How long the sink may take, once galley has caught up, to apply every row.
const SINK_SETTLE: Duration = Duration::from_secs(60);
const ROWS_AWAITING_SINK: &str = galley::telemetry::ROWS_AWAITING_SINK_BYTES;

/// Sends a stream whose orders get as far as shipping (sales count at
/// shipping): placed orders and stock first, the rest once every
/// reservation is answered. Returns how many messages were sent.
async fn send_shipping_stream(scenario: &Scenario, galley: &mut GalleyProcess) -> usize {
    let settings = GeneratorSettings {
        count: 3_000,
        customers: 30,
        skus: 12,
        seed: 57,
        lifecycle_gap: 300,
        ..GeneratorSettings::default()
    };
    let messages = generator::generate(&scenario.codec, &settings).0;
    let (setup, lifecycle) = generator::split_setup(messages);
    let mut sent = scenario.produce(setup, 3_000).await;
    scenario.wait_caught_up(&mut [&mut *galley]).await;
    sent += scenario.produce(lifecycle, 3_000).await;
    scenario.wait_caught_up(&mut [galley]).await;
    sent
}

const TRUNCATED_ALONE: [&str; 3] = [
    "sales_by_sku_minute",
    "sales_by_minute",
    "orders_by_customer",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_truncates_every_derived_table_and_equals_the_fold() {
    let scenario = Scenario::new("rebuild").await;
    let mut galley = GalleyProcess::spawn(&scenario.env, "first");
    galley.wait_ready(Duration::from_secs(60)).await;
    let sent = send_shipping_stream(&scenario, &mut galley).await;

    // Refused while a member is active, like `galley replay`.
    let (ok, text) = tokio::task::block_in_place(|| run_subcommand(&scenario, "rebuild"));
    assert!(!ok, "rebuild ran while galley was a member:\n{text}");
    assert!(text.contains("active member"), "{text}");
    let status = galley.terminate(Duration::from_secs(30)).expect("exits");
    assert!(status.success(), "{}", galley.log_tail(20));
    scenario.verify(sent).await.assert_exact();
    for table in TRUNCATED_ALONE {
        assert!(
            count_rows(&scenario.keyspace, table).await > 0,
            "{table} has rows"
        );
    }

    // The old procedure: truncate the derived tables alone, then replay.
    for table in TRUNCATED_ALONE {
        let cql = format!("TRUNCATE {}.{table}", scenario.keyspace.name);
        scenario
            .keyspace
            .session
            .query_unpaged(cql, ())
            .await
            .expect("truncate");
    }
    let replayed = run_until_it_succeeds(&scenario, "replay").await;
    assert!(replayed.contains("earliest offsets"), "{replayed}");
    assert_sink_claims_nothing_past_the_group(&scenario, "replay").await;
    run_until_caught_up(&scenario, "replayed").await;
    for table in TRUNCATED_ALONE {
        assert_eq!(
            count_rows(&scenario.keyspace, table).await,
            0,
            "{table}: the order rows' watermarks make every event a duplicate"
        );
    }

    // `galley rebuild`, then a run: every row equals the fold again.
    let rebuilt = run_until_it_succeeds(&scenario, "rebuild").await;
    assert!(rebuilt.contains("truncated"), "{rebuilt}");
    assert_sink_claims_nothing_past_the_group(&scenario, "rebuild").await;
    assert!(
        tokio::task::block_in_place(|| scenario.caught_up()).is_none(),
        "the rebuild moved the group's offsets back"
    );
    run_until_applied(&scenario, "rebuilt").await;
    let report = scenario.verify(sent).await;
    report.print("rebuild", Duration::ZERO);
    report.assert_exact();
}
