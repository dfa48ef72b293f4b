//! Serving one listener's connections with hyper directly rather than
//! `axum::serve`, which has neither a header-read timeout nor a connection
//! cap: a client trickling its request head, or thousands of clients that
//! connect and send nothing, would otherwise hold a task and a file
//! descriptor each for as long as they like, and file descriptors are shared
//! with the Kafka and CQL clients.
//!
//! Each accepted connection holds one permit of a semaphore of
//! `max_connections`; with none free, galley stops accepting and further
//! clients wait in the kernel's backlog until a connection ends. hyper's
//! header-read timeout runs from the connect and again after every response,
//! so it also closes idle keep-alive connections.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use crate::telemetry as t;

/// How long to wait after a failed accept (out of file descriptors, most
/// likely) before accepting again, so that the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(200);

/// What one listener allows its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Connections held at once.
    pub max_connections: usize,
    /// Time to send a complete request head, from the connect or the previous response.
    pub header_read_timeout: Duration,
}

/// Accepts and serves connections until `shutdown` turns true; then closes
/// the listening socket, asks every connection to finish its request in
/// flight and close, and returns once all have.
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    label: &'static str,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let cap = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(cap));
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = stopped(&mut shutdown) => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut shutdown) => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let connection = Connection {
                    app: app.clone(),
                    peer,
                    label,
                    header_read_timeout: limits.header_read_timeout,
                    _permit: permit,
                };
                tokio::spawn(connection.serve(stream, shutdown.clone()));
            }
            Err(e) => {
                warn!(error = %e, listener = label, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
    // New clients are refused from here on; those connected finish.
    drop(listener);
    let all = u32::try_from(cap).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
    Ok(())
}

/// Resolves once `shutdown` is true (or its sender is gone), holding no
/// borrow of the channel afterwards.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// One accepted connection and the permit it holds until it ends.
struct Connection {
    app: Router,
    peer: SocketAddr,
    label: &'static str,
    header_read_timeout: Duration,
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn serve(self, stream: TcpStream, mut shutdown: watch::Receiver<bool>) {
        let open = metrics::gauge!(t::LISTENER_CONNECTIONS_OPEN, "listener" => self.label);
        open.increment(1.0);
        let peer = self.peer;
        let router = TowerToHyperService::new(self.app);
        // Handlers see the client's address as axum's `ConnectInfo`, as with
        // `into_make_service_with_connect_info`.
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            hyper::service::Service::call(&router, request)
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout);
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(connection);
        let ended = tokio::select! {
            ended = connection.as_mut() => ended,
            () = stopped(&mut shutdown) => {
                // Finishes the request in flight, if any, then closes.
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = ended {
            // Timeouts and clients that go away are routine, not warnings.
            debug!(error = %e, peer = %peer, listener = self.label, "connection ended");
        }
        open.decrement(1.0);
    }
}
