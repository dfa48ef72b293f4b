//! `make bench`: how close galley runs to the limit of its machine.
//!
//! One run, against the local stack (scripts/stack), on one prepared backlog
//! of pre-encoded events in the two input topics:
//! - (c) galley end to end: the release binary drains the backlog; events/s
//!   from its start until the last event is applied, its CPU time and peak RSS;
//! - (d) end-to-end latency (Kafka timestamp to rows written, galley's own
//!   histogram) at an open-loop offered load of half of (c), and in the same
//!   phase, from outside: input timestamp to result event visible to a
//!   read_committed consumer, and to the placed order answered by the API;
//! - (e) query API requests/s and p50/p99 at a fixed concurrency, for the
//!   order-by-id and SKU-sales routes and for raw CQL reads of the same rows,
//!   with the pipeline idle and while it runs at half of (c);
//! - (a) consume only: galley's consumer configuration reading exactly the
//!   events (c) processed, copying them into records as galley does;
//! - (b) write only: galley's processor computes every row of those events
//!   first (untimed), then its write step alone writes them, with the same
//!   statements, batches and concurrency, into an empty keyspace.
//!
//! Before (c), a warm-up runs galley over a smaller backlog of its own and
//! measures nothing, so that the stack's JVMs are not still compiling
//! during (c) while they are warm for the phases after it.
//!
//! It prints one table and writes it as JSON under `bench-results/`. The
//! figures are meant to be read as ratios of one run: absolute times on a
//! shared machine drift from run to run. Settings come from `BENCH_*`
//! variables (see [`Settings::from_env`]); topics and keyspaces are unique to
//! the run and removed afterwards.

mod consume;
mod latency;
mod process;
mod query;
mod report;
mod setup;
mod stream;
mod visible;
mod write;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use galley::codec::Codec;
use galley::config::Delivery;

use process::Galley;
use report::{ModeFigures, Report};
use setup::BenchEnv;

/// What one run does; every value can be set from the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Events in the prepared backlog (both input topics together).
    pub events: usize,
    pub partitions: i32,
    /// Requests in flight at once during the query measurements.
    pub query_concurrency: usize,
    /// Length of each query measurement.
    pub query_duration: Duration,
    /// Length of the open-loop load of the latency measurement.
    pub latency_duration: Duration,
    pub kafka_port: u16,
    pub cql_port: u16,
    pub galley_bin: PathBuf,
    pub results_dir: PathBuf,
    /// Leave topics and keyspaces in place afterwards, to look at them.
    pub keep: bool,
    /// Run the warm-up before measuring (`BENCH_WARM_UP=0` skips it, for a
    /// stack known to be warm).
    pub warm_up: bool,
}

impl Settings {
    fn from_env() -> Result<Settings> {
        fn var<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
            match std::env::var(name) {
                Ok(v) => v
                    .parse()
                    .map_err(|_| anyhow::anyhow!("{name}={v} is not a valid value")),
                Err(_) => Ok(default),
            }
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        Ok(Settings {
            events: var("BENCH_EVENTS", 1_000_000)?,
            partitions: var("BENCH_PARTITIONS", 6)?,
            query_concurrency: var("BENCH_QUERY_CONCURRENCY", 16)?,
            query_duration: Duration::from_secs_f64(var("BENCH_QUERY_SECONDS", 5.0)?),
            latency_duration: Duration::from_secs_f64(var("BENCH_LATENCY_SECONDS", 20.0)?),
            kafka_port: var("STACK_KAFKA_PORT", 9092)?,
            cql_port: var("STACK_CQL_PORT", 9042)?,
            // Not GALLEY_*: galley's config reads those, and refuses unknown ones.
            galley_bin: var("BENCH_GALLEY_BIN", root.join("target/release/galley"))?,
            results_dir: var("BENCH_RESULTS_DIR", root.join("bench-results"))?,
            keep: var("BENCH_KEEP", 0u8)? == 1,
            warm_up: var("BENCH_WARM_UP", 1u8)? == 1,
        })
    }
}

fn main() -> Result<()> {
    // `cargo test --all-targets` runs bench targets too, without `--bench`;
    // this one takes minutes and a running stack, so it runs only when asked.
    if !std::env::args().any(|a| a == "--bench") {
        println!("system bench: skipped; run it with `make bench`");
        return Ok(());
    }
    let settings = Settings::from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(run(settings))
}

async fn run(settings: Settings) -> Result<()> {
    let started = Instant::now();
    let codec = galley::domain::codec().context("loading schemas")?;
    let env = BenchEnv::create(&settings, Delivery::ExactlyOnce).await?;
    let result = measure(&settings, &codec, &env).await;
    if settings.keep {
        println!("bench: BENCH_KEEP=1, leaving {} in place", env.describe());
    } else if let Err(e) = env.remove().await {
        eprintln!("bench: cleaning up failed: {e:#}");
    }
    let report = result?;
    let path = report.save(&settings.results_dir)?;
    println!("{}", report.table());
    println!(
        "bench: wrote {} ({:.0} s in all)",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn measure(settings: &Settings, codec: &Codec, env: &BenchEnv) -> Result<Report> {
    let mut report = Report::new(settings);
    if settings.warm_up {
        warm_up(settings, codec).await?;
    }

    let backlog = stream::backlog(codec, settings.events);
    println!(
        "bench: producing {} pre-encoded events into {} partitions of each input topic",
        backlog.messages.len(),
        settings.partitions
    );
    let produced = stream::produce_all(&env.config, &backlog.messages).await?;
    report.produce_eps = produced;

    // (c), then (d) and (e) on the same running process.
    let mut galley = Galley::start(settings, env).await?;
    let drained = galley.drain_backlog(env).await?;
    println!(
        "bench: (c) galley applied {} events in {:.1} s",
        drained.events,
        drained.elapsed.as_secs_f64()
    );
    report.set_end_to_end(&drained);
    // Half of (c), counted like (c): galley feeds stock commands back to
    // itself, so each upstream event becomes more than one input event.
    let fed_back = drained.events as f64 / backlog.messages.len().max(1) as f64;
    let half_load = (report.e2e_eps / 2.0 / fed_back).max(1.0);

    report.latency = Some(latency::measure(settings, codec, env, &mut galley, half_load).await?);
    let targets = query::Targets::from_backlog(&backlog);
    report.query_idle = Some(query::measure_all(settings, env, &galley, &targets, "idle").await?);
    let load = latency::OpenLoop::start(settings, codec, env, half_load)?;
    report.query_loaded =
        Some(query::measure_all(settings, env, &galley, &targets, "loaded").await?);
    load.stop().await?;
    galley.wait_drained(env).await?;
    galley.stop().await;

    // (c) and (d) again with at_least_once delivery, in a world of their own.
    report.at_least_once = Some(other_mode(settings, &backlog, half_load).await?);

    // (a) and (b) over exactly the events (c) applied.
    let consumed = consume::measure(env, &drained.end_offsets).await?;
    println!(
        "bench: (a) consumed {} events in {:.1} s",
        consumed.events,
        consumed.elapsed.as_secs_f64()
    );
    report.set_consume_only(&consumed);
    let written = write::measure(env, &consumed.batches).await?;
    println!(
        "bench: (b) wrote the rows of {} events ({} statements) in {:.1} s",
        written.events,
        written.statements,
        written.elapsed.as_secs_f64()
    );
    report.set_write_only(&written);
    report.attach_hot_path();
    Ok(report)
}

/// Events the warm-up runs through galley: a fifth of the backlog, within
/// bounds. 40,000 events after a cold start still left (c) at about 60% of
/// its speed on a warm stack.
fn warm_up_events(backlog: usize) -> usize {
    (backlog / 5).clamp(100_000, 200_000)
}

/// Runs galley (`exactly_once`) over a smaller backlog in a world of its
/// own, and measures nothing: Kafka's and Cassandra's JVMs compile their
/// hot paths in the first tens of thousands of requests, and a stack
/// started just before the bench otherwise slows whatever runs first, which
/// is (c). On this project's machine, one galley run at 2,000 messages/s
/// right after `scripts/stack up` took batches of 873 events and 162 ms;
/// the same run once more, 278 events and 32 ms.
async fn warm_up(settings: &Settings, codec: &Codec) -> Result<()> {
    let started = Instant::now();
    let backlog = stream::backlog(codec, warm_up_events(settings.events));
    let env = BenchEnv::create_for_warm_up(settings).await?;
    let warmed = async {
        stream::produce_all(&env.config, &backlog.messages).await?;
        let mut galley = Galley::start(settings, &env).await?;
        let drained = galley.drain_backlog(&env).await?;
        galley.stop().await;
        anyhow::Ok(drained.events)
    }
    .await;
    if !settings.keep {
        if let Err(e) = env.remove().await {
            eprintln!("bench: cleaning up the warm-up failed: {e:#}");
        }
    }
    println!(
        "bench: warm-up: galley applied {} events; {:.1} s in all, not measured",
        warmed?,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// (c) and (d) with `at_least_once` delivery, on the same backlog and at
/// the same offered load, in topics and keyspaces of their own.
async fn other_mode(
    settings: &Settings,
    backlog: &stream::Backlog,
    half_load: f64,
) -> Result<ModeFigures> {
    let codec = galley::domain::codec().context("loading schemas")?;
    let env = BenchEnv::create(settings, Delivery::AtLeastOnce).await?;
    let figures = async {
        stream::produce_all(&env.config, &backlog.messages).await?;
        let mut galley = Galley::start(settings, &env).await?;
        let drained = galley.drain_backlog(&env).await?;
        println!(
            "bench: (c) at_least_once: galley applied {} events in {:.1} s",
            drained.events,
            drained.elapsed.as_secs_f64()
        );
        let latency = latency::measure(settings, &codec, &env, &mut galley, half_load).await?;
        galley.stop().await;
        anyhow::Ok(ModeFigures::new(&drained, latency))
    }
    .await;
    if !settings.keep {
        if let Err(e) = env.remove().await {
            eprintln!("bench: cleaning up the at_least_once run failed: {e:#}");
        }
    }
    figures
}
