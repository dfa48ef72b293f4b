//! (e) The query API against raw CQL: the same rows, the same concurrency.
//!
//! Each measurement runs a fixed number of workers for a fixed time. An API
//! worker owns one keep-alive HTTP/1.1 connection, as a dashboard backend
//! would; a raw CQL worker runs the API's own SELECT through a shared
//! driver session, as the API does, and reads every row into typed values.
//! Requests/s is completed requests over the time; p50 and p99 come from
//! every request's own latency.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::SecondsFormat;
use futures::future::try_join_all;
use galley::shop::rows::day_of;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;
use serde::Serialize;
use tokio::net::TcpStream;

use crate::process::Galley;
use crate::setup::BenchEnv;
use crate::stream::Backlog;
use crate::Settings;

/// Width of a sales window: a few hours of a SKU's minutes, within one day.
const SALES_WINDOW_MS: i64 = 3 * 3_600_000;
/// Distinct keys each measurement cycles through.
const KEYS: usize = 20_000;

/// One measurement's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: usize,
    /// Answers other than 200 (API) or failed statements (CQL).
    pub errors: usize,
}

/// Both routes through the API, and the same reads as raw CQL.
#[derive(Debug, Clone, Serialize)]
pub struct QueryFigures {
    pub order_by_id: Measured,
    pub sku_sales: Measured,
    pub raw_cql: RawCql,
    pub concurrency: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct RawCql {
    pub order_by_id: Measured,
    pub sku_sales: Measured,
}

/// The keys the measurements read: orders the backlog placed, and sales
/// windows of its SKUs inside its event times.
pub struct Targets {
    order_ids: Vec<String>,
    /// (sku, day, from, to)
    sales: Vec<(String, i32, i64, i64)>,
}

impl Targets {
    pub fn from_backlog(backlog: &Backlog) -> Targets {
        let placed: Vec<&str> = backlog
            .messages
            .iter()
            .filter(|m| m.label == "OrderPlaced")
            .filter_map(|m| m.key.as_deref())
            .collect();
        let step = (placed.len() / KEYS).max(1);
        let order_ids = placed.iter().step_by(step).map(|s| s.to_string()).collect();
        let skus: Vec<&str> = {
            let mut s: Vec<&str> = backlog
                .messages
                .iter()
                .filter(|m| m.label == "StockReceived")
                .filter_map(|m| m.key.as_deref())
                .collect();
            s.sort_unstable();
            s.dedup();
            s
        };
        let minute = 60_000;
        let first = backlog.start_ms - backlog.start_ms % minute;
        let span = (backlog.end_ms - first - SALES_WINDOW_MS).max(minute);
        let sales = (0..KEYS)
            .filter(|_| !skus.is_empty())
            .map(|i| {
                let sku = skus[i % skus.len()].to_string();
                // Spread windows over the backlog's time, each inside one day.
                let mut from = first + ((i as i64 * 7_919 * minute) % span) / minute * minute;
                let day = day_of(from);
                let day_end = (i64::from(day) + 1) * 86_400_000;
                if from + SALES_WINDOW_MS > day_end {
                    from = day_end - SALES_WINDOW_MS;
                }
                // Moved back within its own day, so `day` still holds.
                (sku, day, from, from + SALES_WINDOW_MS)
            })
            .collect();
        Targets { order_ids, sales }
    }
}

/// Measures both routes and their raw CQL reads, one after the other.
pub async fn measure_all(
    settings: &Settings,
    env: &BenchEnv,
    galley: &Galley,
    targets: &Targets,
    phase: &str,
) -> Result<QueryFigures> {
    let concurrency = settings.query_concurrency;
    let duration = settings.query_duration;
    if targets.order_ids.is_empty() || targets.sales.is_empty() {
        bail!("the backlog placed no orders or received no stock: nothing to query");
    }
    let order_paths: Vec<String> = targets
        .order_ids
        .iter()
        .map(|id| format!("/v1/orders/{id}"))
        .collect();
    let sales_paths: Vec<String> = targets
        .sales
        .iter()
        .map(|(sku, _, from, to)| {
            format!(
                "/v1/sales/skus/{sku}?from={}&to={}",
                rfc3339(*from),
                rfc3339(*to)
            )
        })
        .collect();
    let token = env.token.as_str();
    let order_by_id = over_http(galley.api, token, &order_paths, concurrency, duration).await?;
    let sku_sales = over_http(galley.api, token, &sales_paths, concurrency, duration).await?;

    let ks = &env.config.cql.keyspace;
    let session = &env.session;
    let order_statement = session
        .prepare(format!(
            "SELECT document, source_partition FROM {ks}.order_documents WHERE order_id = ?"
        ))
        .await
        .context("preparing the raw order read")?;
    let sales_statement = session
        .prepare(format!(
            "SELECT minute, units, revenue_cents FROM {ks}.sales_by_sku_minute \
             WHERE sku = ? AND day = ? AND minute >= ? AND minute < ?"
        ))
        .await
        .context("preparing the raw sales read")?;
    let raw = RawCql {
        order_by_id: over_cql(
            session,
            &order_statement,
            &targets.order_ids,
            concurrency,
            duration,
            |s, st, id| {
                Box::pin(async move {
                    // The API's own row type: the same columns, deserialized alike.
                    type OrderColumns = galley::shop::queries::OrderDocumentColumns;
                    let rows = s
                        .execute_unpaged(st, (id.as_str(),))
                        .await?
                        .into_rows_result()?;
                    Ok(rows.maybe_first_row::<OrderColumns>()?.is_some() as usize)
                })
            },
        )
        .await?,
        sku_sales: over_cql(
            session,
            &sales_statement,
            &targets.sales,
            concurrency,
            duration,
            |s, st, key| {
                Box::pin(async move {
                    let (sku, day, from, to) = key;
                    let values = (sku.as_str(), *day, CqlTimestamp(*from), CqlTimestamp(*to));
                    let rows = s.execute_unpaged(st, values).await?.into_rows_result()?;
                    let mut n = 0;
                    for row in rows.rows::<(CqlTimestamp, Option<i64>, Option<i64>)>()? {
                        row?;
                        n += 1;
                    }
                    Ok(n)
                })
            },
        )
        .await?,
    };
    let figures = QueryFigures {
        order_by_id,
        sku_sales,
        raw_cql: raw,
        concurrency,
    };
    println!(
        "bench: (e) {phase}: order {:.0} rps p99 {:.2} ms (raw {:.2} ms); sales {:.0} rps p99 {:.2} ms (raw {:.2} ms)",
        figures.order_by_id.rps,
        figures.order_by_id.p99_ms,
        figures.raw_cql.order_by_id.p99_ms,
        figures.sku_sales.rps,
        figures.sku_sales.p99_ms,
        figures.raw_cql.sku_sales.p99_ms,
    );
    Ok(figures)
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// `concurrency` keep-alive connections, each GETting the paths in turn.
async fn over_http(
    api: SocketAddr,
    token: &str,
    paths: &[String],
    concurrency: usize,
    duration: Duration,
) -> Result<Measured> {
    let mut connections = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        connections.push(HttpConnection::open(api).await?);
    }
    let until = Instant::now() + duration;
    let started = Instant::now();
    let workers = connections.into_iter().enumerate().map(|(w, mut conn)| {
        let start = w * paths.len() / concurrency;
        async move {
            let mut latencies: Vec<Duration> = Vec::new();
            let mut errors = 0;
            let mut i = start;
            while Instant::now() < until {
                let path = &paths[i % paths.len()];
                let sent = Instant::now();
                let (status, _) = conn.get(path, Some(token)).await?;
                latencies.push(sent.elapsed());
                if status != 200 {
                    errors += 1;
                }
                i += 1;
            }
            anyhow::Ok((latencies, errors))
        }
    });
    let results = try_join_all(workers).await?;
    Ok(summarize(results, started.elapsed()))
}

type Read<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<usize>> + Send + 'a>>;

/// `concurrency` tasks on one session, each running `read` over the keys in turn.
async fn over_cql<K: Sync>(
    session: &Session,
    statement: &PreparedStatement,
    keys: &[K],
    concurrency: usize,
    duration: Duration,
    read: impl for<'a> Fn(&'a Session, &'a PreparedStatement, &'a K) -> Read<'a> + Sync,
) -> Result<Measured> {
    let until = Instant::now() + duration;
    let started = Instant::now();
    let read = &read;
    let workers = (0..concurrency).map(|w| {
        let start = w * keys.len() / concurrency;
        async move {
            let mut latencies: Vec<Duration> = Vec::new();
            let mut errors = 0;
            let mut i = start;
            while Instant::now() < until {
                let sent = Instant::now();
                let ok = read(session, statement, &keys[i % keys.len()])
                    .await
                    .is_ok();
                latencies.push(sent.elapsed());
                if !ok {
                    errors += 1;
                }
                i += 1;
            }
            anyhow::Ok((latencies, errors))
        }
    });
    let results = try_join_all(workers).await?;
    Ok(summarize(results, started.elapsed()))
}

fn summarize(results: Vec<(Vec<Duration>, usize)>, elapsed: Duration) -> Measured {
    let errors = results.iter().map(|(_, e)| e).sum();
    let mut all: Vec<Duration> = results.into_iter().flat_map(|(l, _)| l).collect();
    all.sort_unstable();
    let at = |q: f64| nearest_rank(&all, q).map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    Measured {
        rps: all.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        requests: all.len(),
        errors,
    }
}

/// The `q` quantile of `sorted` by nearest rank; `None` when it is empty.
pub fn nearest_rank<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
    sorted.get(index).copied()
}

/// One keep-alive HTTP/1.1 connection.
pub struct HttpConnection {
    sender: SendRequest<Empty<Bytes>>,
    authority: String,
}

impl HttpConnection {
    pub async fn open(addr: SocketAddr) -> Result<HttpConnection> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake")?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(HttpConnection {
            sender,
            authority: addr.to_string(),
        })
    }

    /// GETs `path`; returns the status and the whole body.
    pub async fn get(&mut self, path: &str, token: Option<&str>) -> Result<(u16, Vec<u8>)> {
        self.sender.ready().await.context("connection closed")?;
        let mut request = Request::get(path).header(HOST, &self.authority);
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .context("building a request")?;
        let response = self
            .sender
            .send_request(request)
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading the body of GET {path}"))?
            .to_bytes();
        Ok((status, body.to_vec()))
    }
}
