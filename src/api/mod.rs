//! HTTP surfaces: the operators' admin listener (/metrics, /healthz,
//! /readyz) and, on its own port, the dashboards' query routes with their
//! auth, limits, paging, freshness and OpenAPI document.

pub mod admin;
pub mod auth;
pub mod cursor;
pub mod error;
pub mod freshness;
pub mod http_metrics;
pub mod params;
pub mod query;
pub mod time;

use std::net::SocketAddr;

use axum::Router;
use tokio::sync::watch;
use tracing::warn;

/// Binds `addr` and serves `app` on it until shutdown. Returns the bound
/// address, which differs from `addr` when its port is 0. `key` names the
/// config key in errors.
pub async fn serve(
    key: &'static str,
    addr: SocketAddr,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind {key} {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            warn!(error = %e, listener = key, "listener stopped");
        }
    });
    Ok(bound)
}
