//! A loopback TCP proxy that a test can cut and restore: it makes "the
//! database is down" true for one galley process only, while every other
//! test keeps talking to the real database directly. Cutting closes the
//! listener and drops every live connection; restoring listens on the same
//! port again, so the client reconnects to the address it already knows.
//! It can also be slow (a delay before each chunk it forwards) and flaky
//! (every live connection reset while it keeps listening).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

pub struct TcpProxy {
    pub addr: SocketAddr,
    upstream: String,
    accept: Option<JoinHandle<()>>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    /// Delay before each forwarded chunk, in microseconds; 0 forwards at once.
    latency_us: Arc<AtomicU64>,
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    // Accepted sockets we drop linger in TIME_WAIT; let the port be reused.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

impl TcpProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub async fn start(upstream: &str) -> Self {
        let listener = bind(([127, 0, 0, 1], 0).into()).expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let mut proxy = Self {
            addr,
            upstream: upstream.to_string(),
            accept: None,
            connections: Arc::new(Mutex::new(Vec::new())),
            latency_us: Arc::new(AtomicU64::new(0)),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&mut self, listener: TcpListener) {
        let upstream = self.upstream.clone();
        let connections = self.connections.clone();
        let latency_us = self.latency_us.clone();
        self.accept = Some(tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                let upstream = upstream.clone();
                let latency_us = latency_us.clone();
                let task = tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(&upstream).await {
                        let _ = inbound.set_nodelay(true);
                        let _ = outbound.set_nodelay(true);
                        let (in_read, in_write) = inbound.into_split();
                        let (out_read, out_write) = outbound.into_split();
                        // Either direction ending ends the connection.
                        tokio::select! {
                            _ = pump(in_read, out_write, latency_us.clone()) => {}
                            _ = pump(out_read, in_write, latency_us) => {}
                        }
                    }
                });
                connections
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(task.abort_handle());
            }
        }));
    }

    /// Delays every chunk forwarded from now on, in both directions.
    #[allow(dead_code)] // the fault suite's slow database
    pub fn set_latency(&self, latency: Duration) {
        self.latency_us
            .store(latency.as_micros() as u64, Ordering::Relaxed);
    }

    #[allow(dead_code)] // the fault suite's flaky database
    /// Drops every live connection (the peers see them close) and keeps
    /// listening, so clients can reconnect at once. Returns how many it dropped.
    pub fn reset_connections(&self) -> usize {
        let mut connections = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        let live = connections.iter().filter(|c| !c.is_finished()).count();
        for connection in connections.drain(..) {
            connection.abort();
        }
        live
    }

    /// Stops listening and drops every forwarded connection.
    pub fn cut(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        for connection in self
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            connection.abort();
        }
    }

    /// Listens on the same port again (the aborted listener may take a
    /// moment to be dropped, so binding is retried for a few seconds).
    pub async fn restore(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match bind(self.addr) {
                Ok(listener) => {
                    self.serve(listener);
                    return;
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot listen on {} again: {e}", self.addr),
            }
        }
    }
}

/// Copies one direction of a connection, waiting `latency_us` before each chunk.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    latency_us: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let delay = latency_us.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_micros(delay)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
    }
}
