//! Request counts and latencies for both listeners, labelled by the matched
//! route template (never the raw path, whose ids would make labels unbounded).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

use crate::telemetry as t;

/// Which listener a request arrived on, a metric label.
#[derive(Debug, Clone, Copy)]
pub struct Listener(pub &'static str);

/// Middleware: wrap a router with `axum::middleware::from_fn_with_state(Listener("api"), track)`.
pub async fn track(
    axum::extract::State(listener): axum::extract::State<Listener>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let status_class = match response.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    metrics::counter!(
        t::HTTP_REQUESTS_TOTAL,
        "listener" => listener.0,
        "route" => route.clone(),
        "method" => method.clone(),
        "status_class" => status_class
    )
    .increment(1);
    metrics::histogram!(
        t::HTTP_REQUEST_DURATION_SECONDS,
        "listener" => listener.0,
        "route" => route,
        "method" => method
    )
    .record(started.elapsed().as_secs_f64());
    response
}
