//! The dashboards' query API listener, whatever domain it serves: the
//! domain hands over its /v1 routes (an [`OpenApiRouter`], each route
//! registered with its OpenAPI operation), and this module puts them behind
//! the bearer token and the per-token rate limit, serves the OpenAPI
//! document at /openapi.json (public), and answers unknown routes and
//! methods with JSON errors.
//!
//! Every failure is `{"error": code, "message": text}`: 4xx for anything
//! about the request, 503 when the database cannot answer.
//!
//! Layers, outermost first: CORS (only with `api.cors_allowed_origins`),
//! request metrics, the body limit, then on /v1 the token check and the
//! per-token rate limit.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use futures::StreamExt;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{self, Gate};
use super::error::{self, ApiError, ErrorBody};
use super::params::Limits;
use crate::config::ApiConfig;

/// Name of the security scheme every /v1 operation requires: a domain's
/// operations declare `security(("bearer" = []))`.
pub const BEARER_SCHEME: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "galley query API",
        description = "Read-only JSON views of galley's projections, for dashboards. \
            Every /v1 route needs `Authorization: Bearer <token>`. Every answer says how \
            fresh it is; every error is {\"error\": code, \"message\": text}."
    ),
    modifiers(&BearerScheme),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token whose SHA-256 is listed in api.tokens (see `galley hash-token`).",
                    ))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document, serialized once at startup.
#[derive(Clone)]
struct OpenApiJson(Arc<str>);

/// The query listener's app: `v1`, the domain's /v1 routes with their
/// OpenAPI operations, reading `state`, behind the token check, with
/// /openapi.json and every layer. `v1` must hold at least one route: the
/// token check is a route layer, which axum refuses (panics) on no routes.
pub fn router<S>(v1: OpenApiRouter<S>, state: S, cfg: &ApiConfig) -> anyhow::Result<Router>
where
    S: Clone + Send + Sync + 'static,
{
    let limits = Limits::from_config(cfg);
    let gate = Arc::new(Gate::from_config(cfg));
    let (app, doc) = assemble(v1, gate).with_state(state).split_for_parts();
    let doc = OpenApiJson(Arc::from(serde_json::to_string(&constrained(
        doc, &limits,
    )?)?));
    let mut app = app
        .layer(Extension(doc))
        .fallback(error::unknown_route)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(from_fn_with_state(
            limits.max_request_body_bytes,
            limit_body,
        ))
        .layer(from_fn_with_state(cfg.request_timeout, time_limit))
        .layer(from_fn_with_state(
            super::http_metrics::Listener("api"),
            super::http_metrics::track,
        ));
    if let Some(cors) = cors_layer(&cfg.cors_allowed_origins) {
        app = app.layer(cors);
    }
    Ok(app)
}

/// The OpenAPI document the query listener serves at /openapi.json for `v1`.
pub fn openapi<S>(v1: OpenApiRouter<S>) -> utoipa::openapi::OpenApi
where
    S: Clone + Send + Sync + 'static,
{
    let cfg = ApiConfig::default();
    let doc = assemble(v1, Arc::new(Gate::from_config(&cfg))).into_openapi();
    constrained(doc.clone(), &Limits::from_config(&cfg))
        .and_then(serde_json::from_value)
        .unwrap_or(doc)
}

/// The document with the engine's checks written into it (see [`super::constraints`]).
fn constrained(
    doc: utoipa::openapi::OpenApi,
    limits: &Limits,
) -> Result<serde_json::Value, serde_json::Error> {
    let mut value = serde_json::to_value(doc)?;
    super::constraints::apply(&mut value, limits);
    Ok(value)
}

/// Every route, each registered together with its OpenAPI operation, so
/// that the document cannot drift from what is served. The domain's tags
/// come first, this document's own (`meta`) last.
fn assemble<S>(v1: OpenApiRouter<S>, gate: Arc<Gate>) -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    let v1 = v1.route_layer(from_fn_with_state(gate, auth::require_token));
    let mut all = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(openapi_json))
        .merge(v1);
    all.get_openapi_mut()
        .tags
        .get_or_insert_with(Vec::new)
        .push(
            TagBuilder::new()
                .name("meta")
                .description(Some("This document"))
                .build(),
        );
    all
}

/// CORS for the listed origins only; none listed, no CORS headers at all.
fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if allowed.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(allowed))
            .allow_methods([Method::GET, Method::HEAD])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    )
}

/// Refuses bodies over `api.max_request_body_bytes` with a JSON 413. The
/// routes take no body, but a client must not be able to make galley read
/// an unbounded one. Bodies within the limit are buffered and passed on.
async fn limit_body(State(max): State<usize>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return ApiError::body_too_large(max).into_response();
    }
    let (parts, body) = request.into_parts();
    let mut stream = body.into_data_stream();
    let mut buffered: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) if buffered.len() + bytes.len() > max => {
                return ApiError::body_too_large(max).into_response();
            }
            Ok(bytes) => buffered.extend_from_slice(&bytes),
            Err(_) => {
                return ApiError::bad_request("invalid_body", "the request body could not be read")
                    .into_response();
            }
        }
    }
    next.run(Request::from_parts(parts, Body::from(buffered)))
        .await
}

/// Gives up a request, its body included, after `api.request_timeout`
/// with a 503 `timeout`: a slow body or a stuck read must not hold the
/// connection, and its permit, indefinitely.
async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::timed_out(limit).into_response(),
    }
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object))
)]
async fn openapi_json(Extension(doc): Extension<OpenApiJson>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.0.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A domain's route.
    #[utoipa::path(get, path = "/v1/ping", tag = "ping", responses((status = 200, description = "pong")))]
    async fn ping() -> &'static str {
        "pong"
    }

    #[test]
    fn the_document_has_the_engine_parts_and_the_domain_routes() {
        let v1 = OpenApiRouter::<()>::new().routes(routes!(ping));
        let doc = serde_json::to_value(openapi(v1)).expect("serializable");
        assert_eq!(doc["info"]["title"], "galley query API");
        assert!(doc["paths"]["/openapi.json"]["get"].is_object());
        assert!(doc["paths"]["/v1/ping"]["get"].is_object());
        assert_eq!(
            doc["components"]["securitySchemes"][BEARER_SCHEME]["scheme"],
            "bearer"
        );
        assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
        let tags = doc["tags"].as_array().expect("tags");
        assert_eq!(tags.last().map(|t| &t["name"]), Some(&"meta".into()));
    }
}
