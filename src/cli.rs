//! What each subcommand does. `main.rs` parses arguments and calls these.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::producer::FutureProducer;
use tracing::{info, warn};

use crate::api;
use crate::config::Config;
use crate::kafka;
use crate::pipeline;
use crate::shop::generator::{self, GeneratorSettings};
use crate::startup::{Application, ReadyFile};
use crate::store::{self, migrate};

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// `galley migrate`: creates the keyspace and applies pending migrations.
pub fn migrate(config: Config) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let session = store::connect(&config.cql).await?;
        let report =
            migrate::apply(&session, &config.cql.keyspace, &config.cql.replication).await?;
        println!(
            "keyspace {}: applied {:?}, already applied {:?}",
            config.cql.keyspace, report.applied, report.already_applied
        );
        Ok(())
    })
}

#[derive(Debug, clap::Args)]
pub struct CreateTopicsArgs {
    /// Partitions of each input topic (and of the results and dead-letter topics).
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    /// Replication factor; 1 for a single local broker.
    #[arg(long, default_value_t = 1)]
    pub replication: i32,
}

/// `galley create-topics`: creates the four topics if they are missing.
pub fn create_topics(config: Config, args: CreateTopicsArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let t = &config.topics;
        let names = [
            t.orders.as_str(),
            t.inventory.as_str(),
            t.results.as_str(),
            t.dead_letter.as_str(),
        ];
        kafka::ensure_topics(&config.kafka, &names, args.partitions, args.replication).await?;
        println!("topics ready: {}", names.join(", "));
        Ok(())
    })
}

#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// Messages to send, poison included.
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Messages per second; 0 sends as fast as the broker takes them.
    #[arg(long, default_value_t = 2000)]
    pub rate: u32,
    #[arg(long, default_value_t = 50)]
    pub customers: usize,
    #[arg(long, default_value_t = 20)]
    pub skus: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Share of poison messages, 0.0 to 1.0.
    #[arg(long, default_value_t = 0.01)]
    pub poison_fraction: f64,
    /// Share of order events that break the state machine on purpose.
    #[arg(long, default_value_t = 0.02)]
    pub invalid_fraction: f64,
    /// Event time of the first event in ms since the epoch; default: now minus the stream's span.
    #[arg(long)]
    pub start_ms: Option<i64>,
}

/// `galley produce`: generates a shop stream and sends it.
pub fn produce(config: Config, args: ProduceArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.poison_fraction) || !(0.0..=1.0).contains(&args.invalid_fraction)
    {
        bail!("--poison-fraction and --invalid-fraction must be between 0 and 1");
    }
    let codec = crate::domain::codec().context("loading schemas")?;
    let defaults = GeneratorSettings::default();
    let span = defaults.step_ms * args.count as i64;
    let settings = GeneratorSettings {
        count: args.count,
        customers: args.customers,
        skus: args.skus,
        seed: args.seed,
        poison_fraction: args.poison_fraction,
        invalid_fraction: args.invalid_fraction,
        start_ms: args.start_ms.unwrap_or_else(|| pipeline::unix_ms() - span),
        ..defaults
    };
    let (messages, summary) = generator::generate(&codec, &settings);
    runtime()?.block_on(async {
        let producer: FutureProducer = kafka::producer_config(&config.kafka)
            .create()
            .context("creating the Kafka producer")?;
        let started = Instant::now();
        let outcome = crate::shop::send::send_all(
            &producer,
            &config.topics.orders,
            &config.topics.inventory,
            &messages,
            args.rate,
        )
        .await
        .context("sending the stream")?;
        let failed = outcome.failed();
        let elapsed = started.elapsed();
        println!(
            "sent {} messages in {:.1}s ({} failed) to {} and {}",
            messages.len(),
            elapsed.as_secs_f64(),
            failed,
            config.topics.orders,
            config.topics.inventory
        );
        println!(
            "orders started: {}, invalid transitions: {}",
            summary.orders, summary.invalid_transitions
        );
        for (label, n) in &summary.by_label {
            println!("  {label:<28} {n}");
        }
        for (class, n) in &summary.by_poison_class {
            println!("  poison/{class:<21} {n}");
        }
        if failed > 0 {
            bail!(
                "{failed} messages were not acknowledged: {:?}",
                outcome.failures
            );
        }
        Ok(())
    })
}

/// `galley check-config`: prints the configuration, secrets redacted by
/// their types' `Debug`.
pub fn check_config(config: &Config) -> anyhow::Result<()> {
    use std::io::Write;
    writeln!(std::io::stdout().lock(), "{config:#?}").context("writing to standard output")
}

/// `galley hash-token`: prints the digest of the token on standard input.
pub fn print_token_digest() -> anyhow::Result<()> {
    let digest = hash_token(std::io::stdin().lock())?;
    println!("{digest}");
    Ok(())
}

/// Shortest token `galley hash-token` accepts: shorter ones can be guessed.
const MIN_TOKEN_BYTES: usize = 16;

/// `galley hash-token`: reads a token on stdin and prints the SHA-256 hex
/// digest that `api.tokens[].sha256` takes. Only a trailing newline is
/// stripped, so `echo "$TOKEN" |` and `printf %s "$TOKEN" |` agree.
pub fn hash_token(mut input: impl std::io::Read) -> anyhow::Result<String> {
    let mut raw = Vec::new();
    input
        .read_to_end(&mut raw)
        .context("reading the token from standard input")?;
    let mut token = raw.as_slice();
    if let Some(rest) = token.strip_suffix(b"\n") {
        token = rest.strip_suffix(b"\r").unwrap_or(rest);
    }
    if token.len() < MIN_TOKEN_BYTES {
        bail!(
            "the token on standard input has {} bytes; use at least {MIN_TOKEN_BYTES}, \
             for example: openssl rand -hex 24",
            token.len()
        );
    }
    if token
        .iter()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        bail!("the token contains whitespace or control characters, which HTTP headers mangle");
    }
    Ok(api::auth::token_digest_hex(token))
}

#[derive(Debug, Default, clap::Args)]
pub struct RunArgs {
    /// Once both listeners are bound, write {"api", "admin", "pid"} here as
    /// JSON (atomically: a reader never sees half of it); removed on exit.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
}

/// How long, after the service has stopped, blocking calls still under way
/// (broker metadata reads, a consumer close given up at the deadline) may
/// hold up the exit.
const BLOCKING_CALLS_GRACE: Duration = Duration::from_secs(1);

/// `galley run`: the service, until SIGTERM or SIGINT.
pub fn run(config: Config, args: RunArgs) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let result = runtime.block_on(async {
        let app = Application::build(config).await?;
        if let Some(path) = &args.ready_file {
            ReadyFile::of(&app).write_atomically(path)?;
            info!(path = %path.display(), "ready file written");
        }
        app.run_until_stopped(wait_for_signal()).await
    });
    if let Some(path) = &args.ready_file {
        // A ready file that outlives the process would point at dead ports.
        if let Err(e) = std::fs::remove_file(path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(error = %e, path = %path.display(), "cannot remove the ready file");
            }
        }
    }
    runtime.shutdown_timeout(BLOCKING_CALLS_GRACE);
    result
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// How long each broker request of `galley replay` and `galley rebuild` may take.
const GROUP_ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// `galley replay`: moves the consumer group back to the earliest retained
/// offset of every input partition, so that the next `galley run` reads the
/// input topics again from the start. The projections skip what they have
/// already applied (row watermarks), so a replay converges to the same rows
/// and re-publishes nothing for events already applied. Refused while the
/// group has active members: their commits would undo the reset.
///
/// Under `exactly_once` the sink of every changelog restarts at the
/// changelog's end (see [`restart_sinks`]).
pub fn replay(config: Config) -> anyhow::Result<()> {
    let consumer = group_admin(&config)?;
    refuse_active_members(&consumer, &config.kafka.group_id, "replaying")?;
    let runtime = runtime()?;
    let session = runtime.block_on(checked_session(&config))?;
    let earliest = earliest_offsets(&consumer, &config)?;
    let reset = commit_offsets(&consumer, &config.kafka.group_id, &earliest)?;
    restart_sinks(&runtime, &session, &consumer, &config, &earliest)?;
    println!(
        "group {}: {reset} partitions reset to their earliest offsets; the next `galley run` \
         replays them",
        config.kafka.group_id
    );
    Ok(())
}

/// A session to the configured keyspace, its migrations checked.
async fn checked_session(
    config: &Config,
) -> anyhow::Result<std::sync::Arc<scylla::client::session::Session>> {
    let session = store::connect(&config.cql).await?;
    migrate::check(&session, &config.cql.keyspace).await?;
    Ok(session)
}

/// After the group was reset to `earliest`: the sink of every changelog
/// partition restarts at the changelog's end, claiming nothing applied below
/// the reset input offset. The changelog's checkpoints (input offsets) would
/// otherwise run far ahead of the new run's: a partition's next owner would
/// take rows as applied that the sink has yet to apply, and rows held for
/// the sink would not be let go until the run passed the old offsets.
/// What the changelog holds up to its end is left unapplied: for a rebuild
/// it is the old derivation, and a replay derives the same changes again.
/// Partitions whose changelog does not exist (`at_least_once` only) are skipped.
fn restart_sinks(
    runtime: &tokio::runtime::Runtime,
    session: &std::sync::Arc<scylla::client::session::Session>,
    consumer: &rdkafka::consumer::BaseConsumer,
    config: &Config,
    earliest: &[(String, i32, i64)],
) -> anyhow::Result<()> {
    let positions = runtime.block_on(store::changelog::AppliedStore::prepare(
        session.clone(),
        &config.cql.keyspace,
    ))?;
    let mut ends = std::collections::HashMap::new();
    for (input, partition, low) in earliest {
        let changelog = kafka::changelog_topic(input);
        if !ends.contains_key(&changelog) {
            let marks = kafka::partition_watermarks(consumer, &changelog, GROUP_ADMIN_TIMEOUT)
                .with_context(|| format!("reading the watermarks of {changelog}"))?;
            ends.insert(changelog.clone(), marks);
        }
        let Some((_, end)) = ends[&changelog].get(partition).copied() else {
            continue;
        };
        let restarted = runtime
            .block_on(positions.restart(&changelog, *partition, end, *low))
            .with_context(|| format!("restarting the sink of {changelog}[{partition}]"))?;
        println!(
            "{changelog}[{partition}]: the sink restarts at offset {}",
            restarted.next_offset
        );
    }
    Ok(())
}

/// `galley rebuild`: empties every table derived from the input topics
/// (the shop's [`DERIVED_TABLES`](crate::shop::projections::DERIVED_TABLES)
/// and the engine's progress table) and resets the consumer group to the
/// earliest offsets, so that the next `galley run` derives every row again
/// from the input topics. Derived tables depend on each other's watermarks,
/// so they are only ever emptied together. Refused, like a replay, while the
/// group has active members: they would write into the emptied tables.
///
/// The group is reset first: if a truncation then fails, a `galley run`
/// replays into the rows still there instead of continuing with rows gone.
pub fn rebuild(config: Config) -> anyhow::Result<()> {
    let group = &config.kafka.group_id;
    let keyspace = &config.cql.keyspace;
    let consumer = group_admin(&config)?;
    refuse_active_members(&consumer, group, "rebuilding")?;
    let runtime = runtime()?;
    let session = runtime.block_on(checked_session(&config))?;
    let earliest = earliest_offsets(&consumer, &config)?;
    if let Some(problem) = missing_history(&earliest) {
        bail!(problem);
    }
    let reset = commit_offsets(&consumer, group, &earliest)?;
    println!("group {group}: {reset} partitions reset to their earliest offsets");
    restart_sinks(&runtime, &session, &consumer, &config, &earliest)?;
    let tables = crate::shop::projections::DERIVED_TABLES
        .iter()
        .chain([&store::progress::TABLE]);
    for table in tables {
        runtime
            .block_on(store::truncate(&session, keyspace, table))
            .with_context(|| {
                format!(
                    "the rebuild stopped at {keyspace}.{table}: run `galley rebuild` again \
                     before any `galley run`"
                )
            })?;
        println!("truncated {keyspace}.{table}");
    }
    refuse_active_members(&consumer, group, "rebuilding").context(
        "checking, after the truncations, that no member joined during the rebuild (one \
             that did may have written into the emptied tables): stop every member, then run \
             `galley rebuild` again",
    )?;
    println!("keyspace {keyspace}: the next `galley run` rebuilds every row from the input topics");
    Ok(())
}

/// A consumer of the configured group that only reads and commits offsets.
fn group_admin(config: &Config) -> anyhow::Result<rdkafka::consumer::BaseConsumer> {
    kafka::base_config(&config.kafka)
        .set("group.id", &config.kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()
        .context("creating the Kafka consumer")
}

/// Fails when `group` has active members: their commits would undo a reset.
fn refuse_active_members(
    consumer: &rdkafka::consumer::BaseConsumer,
    group: &str,
    doing: &str,
) -> anyhow::Result<()> {
    use rdkafka::consumer::Consumer;
    let groups = consumer
        .fetch_group_list(Some(group), GROUP_ADMIN_TIMEOUT)
        .context("describing the consumer group")?;
    if let Some(g) = groups.groups().iter().find(|g| g.name() == group) {
        if !g.members().is_empty() {
            bail!(
                "consumer group {group} has {} active member(s) (state {}): stop every \
                 `galley run` of this group before {doing}",
                g.members().len(),
                g.state()
            );
        }
    }
    Ok(())
}

/// The earliest retained offset of every input partition.
fn earliest_offsets(
    consumer: &rdkafka::consumer::BaseConsumer,
    config: &Config,
) -> anyhow::Result<Vec<(String, i32, i64)>> {
    let mut earliest = Vec::new();
    for topic in [&config.topics.orders, &config.topics.inventory] {
        let marks = kafka::partition_watermarks(consumer, topic, GROUP_ADMIN_TIMEOUT)
            .with_context(|| format!("reading the partitions and watermarks of {topic}"))?;
        if marks.is_empty() {
            bail!("topic {topic} does not exist or has no partitions");
        }
        for (partition, (low, _)) in marks {
            earliest.push((topic.clone(), partition, low));
        }
    }
    Ok(earliest)
}

/// Why the input topics cannot rebuild every row, if they cannot: a
/// partition whose earliest retained offset is not 0 has lost events to
/// retention (or a deletion), and rows rebuilt without them would be wrong.
/// A replay does not care (rows keep what they applied); a rebuild does.
fn missing_history(earliest: &[(String, i32, i64)]) -> Option<String> {
    let (topic, partition, low) = earliest.iter().find(|(_, _, low)| *low > 0)?;
    Some(format!(
        "input topic {topic}[{partition}] starts at offset {low}: the events before it are \
         gone, so a rebuild cannot derive the rows they made. Nothing was changed. Keep \
         the keyspace, or rebuild from topics that hold every event (see README \
         \"Adding partitions\")"
    ))
}

/// Commits `offsets` for `group`, prints each, and returns how many partitions were set.
fn commit_offsets(
    consumer: &rdkafka::consumer::BaseConsumer,
    group: &str,
    offsets: &[(String, i32, i64)],
) -> anyhow::Result<usize> {
    use rdkafka::consumer::{CommitMode, Consumer};
    use rdkafka::{Offset, TopicPartitionList};

    let mut tpl = TopicPartitionList::new();
    for (topic, partition, offset) in offsets {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .with_context(|| format!("adding {topic}[{partition}]"))?;
    }
    consumer
        .commit(&tpl, CommitMode::Sync)
        .with_context(|| format!("committing the earliest offsets for group {group}"))?;
    for (topic, partition, offset) in offsets {
        println!("{topic}[{partition}]: committed offset {offset}");
    }
    Ok(offsets.len())
}

#[cfg(test)]
mod tests {
    use super::missing_history;

    #[test]
    fn a_rebuild_needs_every_partition_from_offset_zero() {
        let whole = vec![
            ("orders".to_string(), 0, 0),
            ("inventory".to_string(), 3, 0),
        ];
        assert_eq!(missing_history(&whole), None);
        let mut trimmed = whole;
        trimmed.push(("inventory".to_string(), 4, 120));
        let problem = missing_history(&trimmed).expect("refused");
        assert!(
            problem.contains("inventory[4] starts at offset 120"),
            "{problem}"
        );
    }
}
