//! Helpers shared by the integration tests: where the local stack listens,
//! unique names, resources that clean up after themselves, polling with a
//! deadline, and a handle on a real `galley` process.

pub mod fold;
pub mod http;
pub mod process;
pub mod published;
pub mod scenario;
pub mod tcp_proxy;
pub mod topics;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use galley::config::{CqlConfig, CqlConsistency};
use scylla::client::session::Session;

/// Kafka bootstrap address of the local stack.
pub fn brokers() -> String {
    let port = std::env::var("STACK_KAFKA_PORT").unwrap_or_else(|_| "9092".into());
    format!("127.0.0.1:{port}")
}

/// CQL contact point of the local stack.
pub fn cql_contact_point() -> String {
    let port = std::env::var("STACK_CQL_PORT").unwrap_or_else(|_| "9042".into());
    format!("127.0.0.1:{port}")
}

/// A name no other test, or earlier run, uses: lower case, digits and `_`,
/// valid as a topic, group and keyspace name.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{n}_{:x}", std::process::id(), nanos % 0xfffff)
}

pub fn cql_config(keyspace: &str) -> CqlConfig {
    CqlConfig {
        contact_points: vec![cql_contact_point()],
        keyspace: keyspace.to_string(),
        consistency: CqlConsistency::Quorum,
        ..CqlConfig::default()
    }
}

/// A keyspace dropped when the guard goes out of scope, even on panic.
pub struct TestKeyspace {
    pub name: String,
    pub session: Arc<Session>,
}

impl TestKeyspace {
    /// Creates and migrates a fresh keyspace with galley's tables.
    pub async fn migrated(prefix: &str) -> Self {
        let name = unique_name(prefix);
        let cfg = cql_config(&name);
        let session = galley::store::connect(&cfg).await.expect("CQL session");
        galley::store::migrate::apply(&session, &name, &cfg.replication)
            .await
            .expect("migrations apply");
        Self { name, session }
    }

    /// Creates an empty keyspace.
    pub async fn empty(prefix: &str) -> Self {
        let name = unique_name(prefix);
        let session = galley::store::connect(&cql_config(&name))
            .await
            .expect("CQL session");
        session
            .query_unpaged(
                format!(
                    "CREATE KEYSPACE {name} WITH replication = \
                     {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
                ),
                (),
            )
            .await
            .expect("create keyspace");
        Self { name, session }
    }
}

/// Runs async cleanup from a `Drop`, on a thread and runtime of its own:
/// a drop may run inside a runtime that must not be blocked.
pub fn clean_up_blocking<F>(cleanup: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let _ = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(cleanup);
        }
    })
    .join();
}

impl Drop for TestKeyspace {
    fn drop(&mut self) {
        let name = self.name.clone();
        clean_up_blocking(async move {
            if let Ok(session) = galley::store::connect(&cql_config(&name)).await {
                let _ = session
                    .query_unpaged(format!("DROP KEYSPACE IF EXISTS {name}"), ())
                    .await;
            }
        });
    }
}
