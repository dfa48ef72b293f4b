//! Everything one bench run creates, named after the run so that runs never
//! meet: topics, the group, two keyspaces (one galley fills end to end, one
//! the write-only measurement fills), galley's config file and API token.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use galley::config::{Config, Delivery};
use galley::kafka;
use galley::shop::ShopSettings;
use galley::store::{self, migrate};
use rand::Rng;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use scylla::client::session::Session;

use crate::Settings;

pub struct BenchEnv {
    pub run: String,
    /// Galley's config file and log.
    pub dir: PathBuf,
    pub config_path: PathBuf,
    /// The same config, as galley reads it.
    pub config: Config,
    /// The bearer token the query measurements send.
    pub token: String,
    pub write_keyspace: String,
    pub session: Arc<Session>,
}

impl BenchEnv {
    /// A run's world, galley configured with `pipeline.delivery = delivery`.
    pub async fn create(settings: &Settings, delivery: Delivery) -> Result<BenchEnv> {
        let suffix = match delivery {
            Delivery::ExactlyOnce => "",
            Delivery::AtLeastOnce => "alo",
        };
        Self::create_named(settings, delivery, suffix).await
    }

    /// A world for the warm-up, apart from those measured.
    pub async fn create_for_warm_up(settings: &Settings) -> Result<BenchEnv> {
        Self::create_named(settings, Delivery::ExactlyOnce, "warm").await
    }

    async fn create_named(
        settings: &Settings,
        delivery: Delivery,
        suffix: &str,
    ) -> Result<BenchEnv> {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let run = format!("bench{unix}{suffix}");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("target/bench")
            .join(&run);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let token: String = {
            let mut rng = rand::rng();
            (0..32)
                .map(|_| format!("{:02x}", rng.random::<u8>()))
                .collect()
        };
        let config_path = dir.join("galley.toml");
        std::fs::write(&config_path, config_text(settings, &run, &token, delivery))
            .with_context(|| format!("writing {}", config_path.display()))?;
        let config = Config::load(Some(&config_path)).context("loading the bench's config")?;

        let t = &config.topics;
        let topics = [&t.orders, &t.inventory, &t.results, &t.dead_letter].map(String::as_str);
        kafka::ensure_topics(&config.kafka, &topics, settings.partitions, 1)
            .await
            .context("creating the bench's topics")?;
        let session = store::connect(&config.cql)
            .await
            .context("connecting to the CQL database")?;
        let write_keyspace = format!("{run}_write");
        for keyspace in [&config.cql.keyspace, &write_keyspace] {
            migrate::apply(&session, keyspace, &config.cql.replication)
                .await
                .with_context(|| format!("migrating {keyspace}"))?;
        }
        Ok(BenchEnv {
            run,
            dir,
            config_path,
            config,
            token,
            write_keyspace,
            session,
        })
    }

    pub fn input_topics(&self) -> [&str; 2] {
        [&self.config.topics.orders, &self.config.topics.inventory]
    }

    /// The shop's settings exactly as `galley run` derives them from the config.
    pub fn shop_settings(&self) -> ShopSettings {
        let c = &self.config;
        ShopSettings {
            topics: c.topics.clone(),
            low_stock_threshold: c.shop.low_stock_threshold,
            max_event_bytes: c.pipeline.max_event_bytes,
            max_concurrent_statements: c.cql.max_concurrent_statements,
            row_cache_max_bytes: c.shop.row_cache_max_bytes,
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "topics {}.*, keyspaces {} and {}",
            self.run, self.config.cql.keyspace, self.write_keyspace
        )
    }

    /// Drops both keyspaces and deletes the run's topics.
    pub async fn remove(&self) -> Result<()> {
        for keyspace in [&self.config.cql.keyspace, &self.write_keyspace] {
            self.session
                .query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), ())
                .await
                .with_context(|| format!("dropping {keyspace}"))?;
        }
        let admin: AdminClient<DefaultClientContext> = kafka::base_config(&self.config.kafka)
            .create()
            .context("creating an admin client")?;
        let t = &self.config.topics;
        let changelogs = [&t.orders, &t.inventory].map(|input| kafka::changelog_topic(input));
        let mut topics: Vec<&str> = [&t.orders, &t.inventory, &t.results, &t.dead_letter]
            .map(String::as_str)
            .to_vec();
        // Made by galley under exactly_once; deleting a missing one is harmless.
        topics.extend(changelogs.iter().map(String::as_str));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        admin
            .delete_topics(&topics, &opts)
            .await
            .context("deleting the run's topics")?;
        Ok(())
    }
}

/// Galley's configuration for the run: the shipped defaults, except for
/// names, ports, a token for the bench and no rate limit (the query
/// measurement would otherwise measure the limiter).
fn config_text(settings: &Settings, run: &str, token: &str, delivery: Delivery) -> String {
    let digest = galley::api::auth::token_digest_hex(token.as_bytes());
    format!(
        r#"[kafka]
brokers = "127.0.0.1:{kafka}"
group_id = "{run}.group"
client_id = "galley-bench"

[topics]
orders = "{run}.orders"
inventory = "{run}.inventory"
results = "{run}.results"
dead_letter = "{run}.dead-letter"

[cql]
contact_points = ["127.0.0.1:{cql}"]
keyspace = "{run}_e2e"

[api]
listen = "127.0.0.1:0"
rate_limit_per_second = 0

[[api.tokens]]
name = "bench"
sha256 = "{digest}"

[admin]
listen = "127.0.0.1:0"

[pipeline]
delivery = "{delivery}"

[log]
format = "json"
level = "info"
"#,
        kafka = settings.kafka_port,
        cql = settings.cql_port,
        delivery = delivery.as_ref(),
    )
}
