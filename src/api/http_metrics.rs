//! Request counts and latencies for both listeners, labelled by the matched
//! route template (never the raw path, whose ids would make labels unbounded)
//! and by the method, where any method outside HTTP's standard set is
//! `other`: a client may send any token as a method, even without a token
//! of ours, and each would otherwise add a series per histogram bucket.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use crate::telemetry as t;

/// Which listener a request arrived on, a metric label.
#[derive(Debug, Clone, Copy)]
pub struct Listener(pub &'static str);

/// The `method` label: the standard methods by name, anything else `other`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

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
    let method = method_label(request.method());
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
        "method" => method,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_standard_methods_are_labelled_by_name() {
        for name in [
            "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
        ] {
            let method = Method::from_bytes(name.as_bytes()).expect("a method");
            assert_eq!(method_label(&method), name);
        }
        for name in ["get", "PROPFIND", "X-Made-Up", "&`c|Tf6$*Fos", "GETX"] {
            let method = Method::from_bytes(name.as_bytes()).expect("a method");
            assert_eq!(method_label(&method), "other", "{name}");
        }
    }
}
