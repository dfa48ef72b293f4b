//! What each subcommand does. `main.rs` parses arguments and calls these.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::api;
use crate::api::freshness::FreshnessView;
use crate::api::params::Limits;
use crate::codec::Codec;
use crate::config::Config;
use crate::kafka;
use crate::pipeline::{self, PipelineContext, PipelineHealth, Publisher, Stopped};
use crate::shop::generator::{self, GeneratorSettings};
use crate::shop::projections::ProjectionStore;
use crate::shop::queries::QueryStore;
use crate::shop::{self, ShopProcessor, ShopSettings};
use crate::store::progress::ProgressStore;
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
    let codec = Codec::new().context("loading schemas")?;
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
        let acknowledged = generator::send_all(
            &producer,
            &config.topics.orders,
            &config.topics.inventory,
            &messages,
            args.rate,
        )
        .await
        .context("sending the stream")?;
        let failed = messages.len() - acknowledged;
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
            bail!("{failed} messages were not acknowledged");
        }
        Ok(())
    })
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

/// `galley run`: the service, until SIGTERM or SIGINT.
pub fn run(config: Config) -> anyhow::Result<()> {
    runtime()?.block_on(run_async(config))
}

async fn run_async(config: Config) -> anyhow::Result<()> {
    let metrics_handle = crate::telemetry::init_metrics()?;
    let codec = Arc::new(Codec::new().context("loading schemas")?);
    let session = store::connect(&config.cql).await?;
    migrate::check(&session, &config.cql.keyspace).await?;
    let projections =
        Arc::new(ProjectionStore::prepare(session.clone(), &config.cql.keyspace).await?);
    let queries = Arc::new(QueryStore::prepare(session.clone(), &config.cql.keyspace).await?);
    let progress = Arc::new(ProgressStore::prepare(session.clone(), &config.cql.keyspace).await?);

    let producer: FutureProducer = kafka::producer_config(&config.kafka)
        .create()
        .context("creating the Kafka producer")?;
    let consumer: StreamConsumer<PipelineContext> = kafka::consumer_config(&config.kafka)
        .create_with_context(PipelineContext::new())
        .context("creating the Kafka consumer")?;
    let consumer = Arc::new(consumer);
    consumer
        .subscribe(&[&config.topics.orders, &config.topics.inventory])
        .context("subscribing to the input topics")?;

    let health = PipelineHealth::new();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    let admin_state = api::admin::AdminState {
        metrics: metrics_handle,
        health: health.clone(),
        session: session.clone(),
        producer: producer.clone(),
    };
    tokio::spawn(api::admin::watch_readiness(
        admin_state.clone(),
        api::admin::READINESS_CHECK_INTERVAL,
        shutdown_rx.clone(),
    ));
    let admin = api::serve(
        "admin.listen",
        config.admin_addr(),
        api::admin::router(admin_state),
        shutdown_rx.clone(),
    )
    .await?;
    info!(admin = %admin, "admin listener up");
    let freshness = FreshnessView::new();
    let query_state = shop::api::QueryState {
        store: queries.clone(),
        freshness: freshness.clone(),
        limits: Limits::from_config(&config.api),
        orders_topic: Arc::from(config.topics.orders.as_str()),
        inventory_topic: Arc::from(config.topics.inventory.as_str()),
    };
    let query = api::serve(
        "api.listen",
        config.api_addr(),
        shop::api::router(query_state, &config.api)?,
        shutdown_rx.clone(),
    )
    .await?;
    // Token names only: the digests are not secret, but say nothing needless.
    let token_names: Vec<&str> = config.api.tokens.iter().map(|t| t.name.as_str()).collect();
    info!(api = %query, tokens = ?token_names, "query listener up");
    if token_names.is_empty() {
        warn!("no api.tokens configured: every /v1 request is refused with 401");
    }

    let lag = tokio::spawn(api::freshness::track(
        consumer.clone(),
        progress,
        vec![
            config.topics.orders.clone(),
            config.topics.inventory.clone(),
        ],
        config.pipeline.lag_refresh_interval,
        freshness,
        shutdown_rx.clone(),
    ));

    let publisher = Publisher::new(
        producer.clone(),
        config.topics.dead_letter.clone(),
        config.kafka.delivery_timeout,
    );
    let processor = ShopProcessor::new(
        codec,
        projections,
        ShopSettings {
            topics: config.topics.clone(),
            low_stock_threshold: config.shop.low_stock_threshold,
            max_event_bytes: config.pipeline.max_event_bytes,
            max_concurrent_statements: config.cql.max_concurrent_statements,
        },
    );

    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutdown asked; draining");
        let _ = shutdown_tx.send(true);
    });

    info!(
        orders = %config.topics.orders,
        inventory = %config.topics.inventory,
        group = %config.kafka.group_id,
        "galley running"
    );
    let stopped = pipeline::run(
        consumer,
        publisher.clone(),
        processor,
        config.pipeline.clone(),
        health,
        shutdown_rx,
    )
    .await;
    publisher.flush(Duration::from_secs(5));
    lag.abort();
    match stopped {
        Stopped::Drained => {
            info!("stopped cleanly");
            Ok(())
        }
        Stopped::DeadlineExceeded => {
            warn!("stopped at the deadline with work unfinished; it will be redone");
            bail!("shutdown deadline exceeded")
        }
    }
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

/// `galley replay`: moves the consumer group back to the earliest retained
/// offset of every input partition, so that the next `galley run` reads the
/// input topics again from the start. The projections skip what they have
/// already applied (row watermarks), so a replay converges to the same rows
/// and re-publishes nothing for events already applied. Refused while the
/// group has active members: their commits would undo the reset.
pub fn replay(config: Config) -> anyhow::Result<()> {
    use rdkafka::consumer::{BaseConsumer, CommitMode};
    use rdkafka::{Offset, TopicPartitionList};

    let timeout = Duration::from_secs(10);
    let group = &config.kafka.group_id;
    let consumer: BaseConsumer = kafka::base_config(&config.kafka)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()
        .context("creating the Kafka consumer")?;
    let groups = consumer
        .fetch_group_list(Some(group), timeout)
        .context("describing the consumer group")?;
    if let Some(g) = groups.groups().iter().find(|g| g.name() == group) {
        if !g.members().is_empty() {
            bail!(
                "consumer group {group} has {} active member(s) (state {}): stop every \
                 `galley run` of this group before replaying",
                g.members().len(),
                g.state()
            );
        }
    }
    let mut tpl = TopicPartitionList::new();
    for topic in [&config.topics.orders, &config.topics.inventory] {
        let metadata = consumer
            .fetch_metadata(Some(topic), timeout)
            .with_context(|| format!("reading the metadata of {topic}"))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            bail!("topic {topic} does not exist or has no partitions");
        }
        for partition in partitions {
            let (low, _) = consumer
                .fetch_watermarks(topic, partition, timeout)
                .with_context(|| format!("reading the watermarks of {topic}[{partition}]"))?;
            tpl.add_partition_offset(topic, partition, Offset::Offset(low))
                .with_context(|| format!("adding {topic}[{partition}]"))?;
        }
    }
    consumer
        .commit(&tpl, CommitMode::Sync)
        .with_context(|| format!("committing the earliest offsets for group {group}"))?;
    for e in tpl.elements() {
        if let Offset::Offset(o) = e.offset() {
            println!("{}[{}]: committed offset {o}", e.topic(), e.partition());
        }
    }
    println!(
        "group {group}: {} partitions reset to their earliest offsets; the next `galley run` \
         replays them",
        tpl.count()
    );
    Ok(())
}
