//! HTTP surfaces: the operators' admin listener (/metrics, /healthz,
//! /readyz) and, on its own port, the dashboards' query routes with their
//! auth, limits, paging, freshness and OpenAPI document.

pub mod admin;
pub mod auth;
pub mod constraints;
pub mod cursor;
pub mod error;
pub mod freshness;
pub mod http_metrics;
pub mod params;
pub mod query;
pub mod serve;
pub mod time;
pub mod unauthenticated;

use std::io;
use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::warn;

pub use serve::ServeLimits;

/// A bound listener and the routes it will serve. Binding comes first so
/// that the caller learns the address (port 0 picks a free one) before
/// anything is served.
pub struct Listener {
    key: &'static str,
    listener: TcpListener,
    local_addr: SocketAddr,
    app: Router,
    limits: ServeLimits,
}

impl Listener {
    /// Binds `addr` for `app`, to be served within `limits`. `key` names
    /// the config key in errors and logs; its section (`api`, `admin`)
    /// labels the listener's metrics.
    pub async fn bind(
        key: &'static str,
        addr: SocketAddr,
        app: Router,
        limits: ServeLimits,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot bind {key} {addr}: {e}"))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| anyhow::anyhow!("cannot read the address bound for {key}: {e}"))?;
        Ok(Self {
            key,
            listener,
            local_addr,
            app,
            limits,
        })
    }

    /// The bound address, which differs from the configured one when its port is 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves on a task of its own until `shutdown` turns true; then it stops
    /// accepting and lets the requests in flight finish.
    pub fn serve(self, shutdown: watch::Receiver<bool>) -> Serving {
        let label = self.key.split('.').next().unwrap_or(self.key);
        let server = serve::serve(self.listener, self.app, self.limits, label, shutdown);
        Serving {
            key: self.key,
            task: tokio::spawn(server),
        }
    }
}

/// A listener being served; see [`Listener::serve`].
pub struct Serving {
    key: &'static str,
    task: JoinHandle<io::Result<()>>,
}

/// How a listener ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// Every request in flight was answered.
    Drained,
    /// The server ended on an error, which is logged.
    Failed,
    /// Requests were still in flight at the deadline and were given up.
    CutAtDeadline,
}

impl Serving {
    /// Waits, after shutdown was asked, for the requests in flight to finish,
    /// but no later than `deadline`: a client that never finishes its request
    /// must not keep the process alive.
    pub async fn finish_by(mut self, deadline: Instant) -> Stop {
        match tokio::time::timeout_at(deadline, &mut self.task).await {
            Ok(Ok(Ok(()))) => Stop::Drained,
            Ok(Ok(Err(e))) => {
                warn!(error = %e, listener = self.key, "listener stopped with an error");
                Stop::Failed
            }
            Ok(Err(e)) => {
                warn!(error = %e, listener = self.key, "listener task failed");
                Stop::Failed
            }
            Err(_) => {
                warn!(
                    listener = self.key,
                    "requests still in flight at the shutdown deadline; dropping them"
                );
                self.task.abort();
                Stop::CutAtDeadline
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::Notify;

    use super::*;

    /// Long enough for anything on loopback; a failing test ends instead of hanging.
    const PATIENCE: Duration = Duration::from_secs(10);

    const LIMITS: ServeLimits = ServeLimits {
        max_connections: 4,
        header_read_timeout: Duration::from_millis(500),
    };

    /// Serves `/slow`, which says when it has started and answers only once released.
    async fn held_listener(started: Arc<Notify>, release: Arc<Notify>) -> Listener {
        let app = Router::new().route(
            "/slow",
            get(move || {
                let (started, release) = (started.clone(), release.clone());
                async move {
                    started.notify_one();
                    release.notified().await;
                    "done"
                }
            }),
        );
        Listener::bind("test.listen", ([127, 0, 0, 1], 0).into(), app, LIMITS)
            .await
            .expect("bind loopback")
    }

    async fn request_slow(addr: SocketAddr) -> TcpStream {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET /slow HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send request");
        stream
    }

    /// Polls until nothing accepts connections on `addr`: the listener has
    /// seen the shutdown and closed its socket.
    async fn wait_until_refused(addr: SocketAddr) {
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect(addr).await.is_ok() {
            assert!(
                Instant::now() < deadline,
                "{addr} still accepts after shutdown"
            );
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn shutdown_lets_a_request_in_flight_finish() {
        let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let listener = held_listener(started.clone(), release.clone()).await;
        let addr = listener.local_addr();
        let (stop_tx, stop_rx) = watch::channel(false);
        let serving = listener.serve(stop_rx);
        let mut client = request_slow(addr).await;
        tokio::time::timeout(PATIENCE, started.notified())
            .await
            .expect("the handler starts");

        stop_tx.send(true).expect("the listener watches");
        wait_until_refused(addr).await;
        release.notify_one();

        let mut response = String::new();
        tokio::time::timeout(PATIENCE, client.read_to_string(&mut response))
            .await
            .expect("the response comes")
            .expect("read the response");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("done"), "{response}");
        let stop = serving.finish_by(Instant::now() + PATIENCE).await;
        assert_eq!(stop, Stop::Drained);
    }

    #[tokio::test]
    async fn a_request_still_in_flight_at_the_deadline_is_given_up() {
        let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let listener = held_listener(started.clone(), release).await;
        let addr = listener.local_addr();
        let (stop_tx, stop_rx) = watch::channel(false);
        let serving = listener.serve(stop_rx);
        let _client = request_slow(addr).await;
        tokio::time::timeout(PATIENCE, started.notified())
            .await
            .expect("the handler starts");

        stop_tx.send(true).expect("the listener watches");
        let stop = serving
            .finish_by(Instant::now() + Duration::from_millis(200))
            .await;
        assert_eq!(stop, Stop::CutAtDeadline);
    }

    /// Whether the server closed `stream` within `within`.
    async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 256];
        let deadline = Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
            }
        }
    }

    #[tokio::test]
    async fn a_client_stalling_in_its_request_head_is_cut_after_the_timeout() {
        let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let listener = held_listener(started, release).await;
        let addr = listener.local_addr();
        let (_stop_tx, stop_rx) = watch::channel(false);
        let _serving = listener.serve(stop_rx);
        let mut stalled = TcpStream::connect(addr).await.expect("connect");
        stalled.write_all(b"GET /sl").await.expect("send part");
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        let begun = Instant::now();
        assert!(
            closed_within(&mut stalled, PATIENCE).await,
            "stalled client kept"
        );
        assert!(
            closed_within(&mut silent, PATIENCE).await,
            "silent client kept"
        );
        assert!(begun.elapsed() >= LIMITS.header_read_timeout / 2);
    }

    #[tokio::test]
    async fn connections_past_the_cap_wait_until_one_ends() {
        let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let listener = held_listener(started.clone(), release.clone()).await;
        let addr = listener.local_addr();
        let (_stop_tx, stop_rx) = watch::channel(false);
        let _serving = listener.serve(stop_rx);
        // Fill every permit with a request held in its handler.
        let mut held = Vec::new();
        for _ in 0..LIMITS.max_connections {
            held.push(request_slow(addr).await);
            tokio::time::timeout(PATIENCE, started.notified())
                .await
                .expect("the handler starts");
        }
        // One more is connected by the kernel but not served.
        let _extra = request_slow(addr).await;
        assert!(
            tokio::time::timeout(LIMITS.header_read_timeout * 2, started.notified())
                .await
                .is_err(),
            "a connection past max_connections was served"
        );
        // Once one held request is answered and its connection closes, it is.
        release.notify_one();
        tokio::time::timeout(PATIENCE, started.notified())
            .await
            .expect("the waiting connection is served once a permit is free");
    }
}
