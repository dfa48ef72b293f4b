//! The composition root of `galley run`: [`Application::build`] makes every
//! part from the config (Kafka clients, the CQL stores, the shop's
//! processor, both HTTP listeners, bound before anything is served), and
//! [`Application::run_until_stopped`] runs them until a shutdown signal,
//! then stops them: the pipeline drains and commits while the listeners
//! answer the requests in flight and the background tasks end; whatever is
//! still running `pipeline.shutdown_deadline` after the signal is given up.

mod checks;
mod ready_file;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use scylla::client::session::Session;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::api::admin::{self, AdminState};
use crate::api::freshness::{self, FreshnessView};
use crate::api::params::Limits;
use crate::api::{Listener, ServeLimits, Serving};
use crate::codec::Codec;
use crate::config::{Config, Delivery};
use crate::kafka;
use crate::kafka::reconnect::WatchedClient;
use crate::pipeline::{
    self, DeadLetterTarget, ExactlyOnce, PartitionCheck, PipelineContext, PipelineHealth,
    Publisher, Sink, Stopped,
};
use crate::shop::projections::ProjectionStore;
use crate::shop::queries::QueryStore;
use crate::shop::{ShopProcessor, ShopSettings, ShopSink};
use crate::store::changelog::AppliedStore;
use crate::store::progress::ProgressStore;
use crate::store::{self, migrate};
use checks::check_offset_spaces;
pub use ready_file::ReadyFile;

/// How long the producer may take to deliver what is queued once the pipeline has stopped.
const PUBLISHER_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

type InputConsumer = Arc<StreamConsumer<PipelineContext>>;

/// galley, built and bound, not yet running.
pub struct Application {
    config: Config,
    api: Listener,
    admin: Listener,
    consumer: InputConsumer,
    /// Reads the group's settled committed offsets (for freshness, and for
    /// releasing offsets a transaction holds).
    settled_offsets: Arc<BaseConsumer>,
    publisher: Publisher,
    processor: ShopProcessor,
    /// `exactly_once` delivery's sink, and the shop's half of it.
    sink: Option<(Sink, ShopSink)>,
    health: Arc<PipelineHealth>,
    watchers: Watchers,
}

/// What the background tasks beside the pipeline read.
struct Watchers {
    admin_state: AdminState,
    freshness: FreshnessView,
    progress: Arc<ProgressStore>,
}

/// The tasks that run beside the pipeline and are stopped after it.
struct Companions {
    api: Serving,
    admin: Serving,
    readiness: JoinHandle<()>,
    freshness: JoinHandle<()>,
    /// One [`kafka::reconnect::keep_connected`] per long-lived Kafka client.
    connections: Vec<JoinHandle<()>>,
}

impl Application {
    /// Connects to the database and Kafka, checks the schema, prepares the
    /// statements and binds both listeners. Nothing is consumed or served yet.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let metrics = crate::telemetry::init_metrics()?;
        let codec = Arc::new(crate::domain::codec().context("loading schemas")?);
        let session = store::connect(&config.cql).await?;
        migrate::check(&session, &config.cql.keyspace).await?;
        let projections =
            Arc::new(ProjectionStore::prepare(session.clone(), &config.cql.keyspace).await?);
        let queries = Arc::new(QueryStore::prepare(session.clone(), &config.cql.keyspace).await?);
        let progress =
            Arc::new(ProgressStore::prepare(session.clone(), &config.cql.keyspace).await?);
        let dead_letters = DeadLetterTarget {
            topic: config.topics.dead_letter.clone(),
            max_message_bytes: config.kafka.message_max_bytes,
            task_id: config.kafka.client_id.clone(),
        };
        let transactional = config.pipeline.delivery == Delivery::ExactlyOnce;
        let consumer = input_consumer(&config, transactional)?;
        let settled_offsets: BaseConsumer = kafka::settled_offsets_reader_config(&config.kafka)
            .create()
            .context("creating the Kafka consumer that reads settled committed offsets")?;
        let settled_offsets = Arc::new(settled_offsets);
        // Subscribing only once the check passed: a process refusing to
        // start must not hold (or be mid-way through taking) an assignment.
        // Before the changelogs are made: they follow the input topics'
        // partition counts, which this check vouches for.
        check_offset_spaces(&config, &consumer, &progress).await?;
        let (publisher, sink) =
            delivery_parts(&config, &session, &projections, dead_letters).await?;
        consumer
            .subscribe(&[&config.topics.orders, &config.topics.inventory])
            .context("subscribing to the input topics")?;

        let health = PipelineHealth::new();
        let admin_state = AdminState {
            metrics,
            health: health.clone(),
            session,
            publisher: publisher.clone(),
            readiness: admin::Readiness::default(),
        };
        let admin = Listener::bind(
            "admin.listen",
            config.admin_addr(),
            admin::router(admin_state.clone()),
            ServeLimits {
                max_connections: config.admin.max_connections,
                header_read_timeout: config.api.header_read_timeout,
            },
        )
        .await?;
        info!(admin = %admin.local_addr(), "admin listener bound");
        let freshness = FreshnessView::new();
        let api = bind_query_listener(&config, queries.clone(), freshness.clone()).await?;

        let processor = shop_processor(&config, codec, projections);
        Ok(Self {
            config,
            api,
            admin,
            consumer,
            settled_offsets,
            publisher,
            processor,
            sink,
            health,
            watchers: Watchers {
                admin_state,
                freshness,
                progress,
            },
        })
    }

    /// Where the query API listens.
    pub fn api_addr(&self) -> SocketAddr {
        self.api.local_addr()
    }

    /// Where the admin routes (/healthz, /readyz, /metrics) listen.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr()
    }

    /// Consumes, applies, publishes and serves until `shutdown` completes,
    /// then stops everything. Fails when the pipeline had to give up a batch
    /// at the shutdown deadline (it will be processed again).
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let Self {
            config,
            api,
            admin,
            consumer,
            settled_offsets,
            publisher,
            processor,
            sink,
            health,
            watchers,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut companions =
            Companions::start(api, admin, watchers, &settled_offsets, &config, &stop_rx);
        companions.connections = watch_connections(&config, &consumer, &publisher, &sink, &stop_rx);
        let (exactly_once, sink_task) = match sink {
            Some(parts) => {
                let (eos, task) = start_sink(parts, settled_offsets, &config, &health, &stop_rx);
                (Some(eos), Some(task))
            }
            None => (None, None),
        };
        let flusher = publisher.clone();
        // Kept to close the consumer last, off the async workers: closing
        // leaves the group, a blocking call.
        let closer = consumer.clone();
        info!(
            orders = %config.topics.orders,
            inventory = %config.topics.inventory,
            group = %config.kafka.group_id,
            "galley running"
        );
        let mut pipeline = Box::pin(pipeline::run(
            consumer,
            publisher,
            processor,
            PartitionCheck::new(config.kafka.partitioner),
            config.pipeline.clone(),
            health,
            stop_rx,
            exactly_once,
        ));
        tokio::pin!(shutdown);
        let grace = config.pipeline.shutdown_deadline;
        // The listeners and background tasks stop while the pipeline drains,
        // so their deadline runs from the signal, as the pipeline's does.
        let (stopped, stop_asked) = tokio::select! {
            stopped = &mut pipeline => (stopped, Instant::now()),
            () = &mut shutdown => {
                let asked = Instant::now();
                info!("shutdown asked; draining");
                let _ = stop_tx.send(true);
                // The pipeline bounds each of its steps; this bounds the whole.
                let stopped = tokio::time::timeout_at(asked + grace, &mut pipeline)
                    .await
                    .unwrap_or(Stopped::DeadlineExceeded);
                (stopped, asked)
            }
        };
        // The pipeline stops by itself only on a fatal error; the listeners
        // and tasks must stop with it.
        let _ = stop_tx.send(true);
        let deadline = stop_asked + grace;
        let flush_for = deadline
            .saturating_duration_since(Instant::now())
            .min(PUBLISHER_FLUSH_TIMEOUT);
        flusher.flush(flush_for);
        companions.stop_by(deadline).await;
        if let Some(task) = sink_task {
            join_task_by("sink", task, deadline).await;
        }
        // A pipeline given up at the deadline still holds the consumer.
        close_consumer_by((closer, pipeline), deadline).await;
        exit_status(stopped)
    }
}

/// How the process ends, given how its pipeline stopped.
fn exit_status(stopped: Stopped) -> anyhow::Result<()> {
    match stopped {
        Stopped::Drained => {
            info!("stopped cleanly");
            Ok(())
        }
        Stopped::DeadlineExceeded => {
            warn!("stopped at the deadline with work unfinished; it will be redone");
            bail!("shutdown deadline exceeded")
        }
        Stopped::Fatal(reason) => bail!("stopped on a fatal error: {reason}"),
    }
}

/// Starts the sink of `exactly_once` delivery as a task of its own, and
/// returns what the pipeline needs of it.
fn start_sink(
    (sink, applier): (Sink, ShopSink),
    settled_offsets_reader: Arc<BaseConsumer>,
    config: &Config,
    health: &Arc<PipelineHealth>,
    stop: &watch::Receiver<bool>,
) -> (ExactlyOnce, JoinHandle<()>) {
    let task = tokio::spawn(sink.clone().run(
        applier,
        health.clone(),
        (
            config.pipeline.retry_initial_backoff,
            config.pipeline.retry_max_backoff,
        ),
        stop.clone(),
    ));
    let eos = ExactlyOnce {
        sink,
        changelog_max_bytes: config
            .kafka
            .message_max_bytes
            .saturating_sub(CHANGELOG_RECORD_HEADROOM),
        settled_offsets_reader,
    };
    (eos, task)
}

/// Drops the last handles on the consumer, which closes it (a blocking call
/// that, with the broker away, can last until the session times out), on a
/// blocking thread and within `deadline`: past it the process exits without
/// waiting.
async fn close_consumer_by(holders: impl Send + 'static, deadline: Instant) {
    let closing = tokio::task::spawn_blocking(move || drop(holders));
    if tokio::time::timeout_at(deadline, closing).await.is_err() {
        warn!("closing the Kafka consumer did not finish by the shutdown deadline");
    }
}

impl Companions {
    fn start(
        api: Listener,
        admin: Listener,
        watchers: Watchers,
        settled_offsets: &Arc<BaseConsumer>,
        config: &Config,
        stop: &watch::Receiver<bool>,
    ) -> Self {
        let readiness = tokio::spawn(admin::watch_readiness(
            watchers.admin_state,
            admin::READINESS_CHECK_INTERVAL,
            stop.clone(),
        ));
        let freshness = tokio::spawn(freshness::track(
            settled_offsets.clone(),
            watchers.progress,
            vec![
                config.topics.orders.clone(),
                config.topics.inventory.clone(),
            ],
            config.pipeline.lag_refresh_interval,
            watchers.freshness,
            stop.clone(),
        ));
        Self {
            api: api.serve(stop.clone()),
            admin: admin.serve(stop.clone()),
            readiness,
            freshness,
            connections: Vec::new(),
        }
    }

    /// Waits for the listeners to answer their requests in flight and for
    /// the background tasks to end, giving up on whatever is left at `deadline`.
    async fn stop_by(self, deadline: Instant) {
        let (api, admin) =
            tokio::join!(self.api.finish_by(deadline), self.admin.finish_by(deadline));
        join_task_by("readiness watcher", self.readiness, deadline).await;
        join_task_by("freshness tracker", self.freshness, deadline).await;
        for task in self.connections {
            join_task_by("Kafka connection watch", task, deadline).await;
        }
        info!(api = ?api, admin = ?admin, "listeners stopped");
    }
}

/// Watches each long-lived Kafka client's connection (see
/// [`kafka::reconnect`]): the input consumer, the producer in use and,
/// under `exactly_once`, the sink's consumer.
fn watch_connections(
    config: &Config,
    consumer: &InputConsumer,
    publisher: &Publisher,
    sink: &Option<(Sink, ShopSink)>,
    stop: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let topics = &config.topics;
    let mut clients: Vec<(&'static str, Arc<dyn WatchedClient>, String)> = vec![
        ("consumer", consumer.clone(), topics.orders.clone()),
        (
            "producer",
            Arc::new(publisher.clone()),
            topics.results.clone(),
        ),
    ];
    if let Some((sink, _)) = sink {
        let changelog = kafka::changelog_topic(&topics.orders);
        clients.push(("sink", Arc::new(sink.clone()), changelog));
    }
    clients
        .into_iter()
        .map(|(label, client, topic)| {
            let (brokers, stop) = (config.kafka.brokers.clone(), stop.clone());
            tokio::spawn(async move {
                kafka::reconnect::keep_connected(label, client, topic, &brokers, stop).await
            })
        })
        .collect()
}

async fn join_task_by(name: &'static str, mut task: JoinHandle<()>, deadline: Instant) {
    match tokio::time::timeout_at(deadline, &mut task).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(task = name, error = %e, "task failed"),
        Err(_) => {
            warn!(
                task = name,
                "task still running at the shutdown deadline; stopping it"
            );
            task.abort();
        }
    }
}

/// The publisher of the configured delivery mode and, under `exactly_once`,
/// the sink with the shop's half of it (the changelog topics made first).
async fn delivery_parts(
    config: &Config,
    session: &Arc<Session>,
    projections: &Arc<ProjectionStore>,
    dead_letters: DeadLetterTarget,
) -> anyhow::Result<(Publisher, Option<(Sink, ShopSink)>)> {
    if config.pipeline.delivery == Delivery::AtLeastOnce {
        let publisher = Publisher::new(
            kafka::producer_config(&config.kafka),
            dead_letters,
            config.kafka.delivery_timeout,
        )
        .context("creating the Kafka producer")?;
        return Ok((publisher, None));
    }
    kafka::ensure_changelogs(
        &config.kafka,
        &[&config.topics.orders, &config.topics.inventory],
    )
    .await
    .context("preparing the changelog topics (pipeline.delivery = \"exactly_once\")")?;
    let publisher = transactional_publisher(config, dead_letters).await?;
    let applied = AppliedStore::prepare(session.clone(), &config.cql.keyspace).await?;
    let sink = Sink::new(&config.kafka, Arc::new(applied))
        .context("creating the sink's Kafka consumer")?;
    let applier = ShopSink::new(projections.clone(), config.cql.max_concurrent_statements);
    Ok((publisher, Some((sink, applier))))
}

/// Room a changelog record keeps beside its value, below
/// `kafka.message_max_bytes`, for its headers and the batch framing.
const CHANGELOG_RECORD_HEADROOM: usize = 64 * 1024;

/// The transactional publisher of `exactly_once` delivery, its transactions
/// initialised (which fences a predecessor with the same transactional id).
async fn transactional_publisher(
    config: &Config,
    dead_letters: DeadLetterTarget,
) -> anyhow::Result<Publisher> {
    let producer_config = kafka::transactional_producer_config(&config.kafka);
    let (delivery, transaction) = (
        config.kafka.delivery_timeout,
        config.kafka.transaction_timeout,
    );
    let id = config.kafka.transactional_id();
    tokio::task::spawn_blocking(move || {
        Publisher::transactional(producer_config, dead_letters, delivery, transaction)
    })
    .await?
    .with_context(|| {
        format!(
            "initialising Kafka transactions with transactional id {id} (kafka.transactional_id; \
             pipeline.delivery = \"exactly_once\" needs a broker with transactions)"
        )
    })
}

fn input_consumer(config: &Config, transactional: bool) -> anyhow::Result<InputConsumer> {
    let consumer: StreamConsumer<PipelineContext> =
        kafka::consumer_config(&config.kafka, transactional)
            .create_with_context(PipelineContext::new(config.kafka.session_timeout))
            .context("creating the Kafka consumer")?;
    Ok(Arc::new(consumer))
}

async fn bind_query_listener(
    config: &Config,
    queries: Arc<QueryStore>,
    freshness: FreshnessView,
) -> anyhow::Result<Listener> {
    let state = crate::shop::api::QueryState {
        store: queries,
        freshness,
        limits: Limits::from_config(&config.api),
        cursors: Arc::new(crate::api::cursor::CursorSigner::from_config(&config.api)),
        orders_topic: Arc::from(config.topics.orders.as_str()),
        inventory_topic: Arc::from(config.topics.inventory.as_str()),
    };
    let listener = Listener::bind(
        "api.listen",
        config.api_addr(),
        crate::shop::api::router(state, &config.api)?,
        ServeLimits {
            max_connections: config.api.max_connections,
            header_read_timeout: config.api.header_read_timeout,
        },
    )
    .await?;
    // Token names only: the digests are not secret, but say nothing needless.
    let token_names: Vec<&str> = config.api.tokens.iter().map(|t| t.name.as_str()).collect();
    info!(api = %listener.local_addr(), tokens = ?token_names, "query listener bound");
    if token_names.is_empty() {
        warn!("no api.tokens configured: every /v1 request is refused with 401");
    }
    if config.api.cursor_key.is_empty() {
        info!(
            "no api.cursor_key configured: page cursors are signed with a key drawn at start, \
             so they stop working on restart and are refused by other replicas"
        );
    }
    Ok(listener)
}

fn shop_processor(
    config: &Config,
    codec: Arc<Codec>,
    projections: Arc<ProjectionStore>,
) -> ShopProcessor {
    ShopProcessor::new(
        codec,
        projections,
        ShopSettings {
            topics: config.topics.clone(),
            low_stock_threshold: config.shop.low_stock_threshold,
            max_event_bytes: config.pipeline.max_event_bytes,
            max_concurrent_statements: config.cql.max_concurrent_statements,
            row_cache_max_bytes: config.shop.row_cache_max_bytes,
        },
    )
}
