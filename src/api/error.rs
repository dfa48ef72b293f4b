//! Every failed query API request is `{"error": code, "message": text}`
//! with the status that says whose fault it is: 4xx for the request, 503 when
//! the database cannot answer. The codes are a stable contract; messages are
//! for people and may change.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use tracing::{error, warn};
use utoipa::ToSchema;

use crate::store::read::ReadError;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// A stable machine-readable code, such as `invalid_cursor` or `rate_limited`.
    #[schema(example = "not_found")]
    pub error: String,
    /// What went wrong, for a person.
    #[schema(example = "order O-1 does not exist")]
    pub message: String,
}

/// A failed request, rendered as an [`ErrorBody`] with its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after_secs: Option<u64>,
    www_authenticate: bool,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
            www_authenticate: false,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// An absent entity.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unknown_route() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown_route",
            "no such route; /openapi.json lists them",
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route answers GET only",
        )
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            www_authenticate: true,
            ..Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
        }
    }

    pub fn rate_limited(retry_after_secs: u64, message: impl Into<String>) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
        }
    }

    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "the request body exceeds api.max_request_body_bytes ({limit} bytes); \
                 these routes take no body"
            ),
        )
    }

    /// The database did not answer; the request may succeed if repeated.
    pub fn unavailable(err: impl std::fmt::Display) -> Self {
        warn!(error = %err, "query failed: database unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the database did not answer; try again shortly",
        )
    }

    /// The request took longer than `api.request_timeout` and was given up.
    pub fn timed_out(limit: std::time::Duration) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request took longer than api.request_timeout ({}ms); try again shortly",
                limit.as_millis()
            ),
        )
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl From<ReadError> for ApiError {
    fn from(err: ReadError) -> Self {
        match err {
            ReadError::Unavailable { .. } => ApiError::unavailable(err),
            ReadError::BadPagingState(_) => {
                warn!(error = %err, "cursor refused by the database");
                ApiError::bad_request(
                    "invalid_cursor",
                    "the cursor is not valid for this request; start again without it",
                )
            }
            // Rows are written by galley alone: a row it cannot read is a bug, not input.
            ReadError::Row { .. } => {
                error!(error = %err, "stored row unreadable");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "a stored row could not be read; this is a bug in galley",
                )
            }
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::bad_request("invalid_path", rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request("invalid_query", rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code.to_string(),
            message: self.message,
        };
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.www_authenticate {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"galley\""),
            );
        }
        response
    }
}

/// Router fallback: a path no route matches.
pub async fn unknown_route() -> ApiError {
    ApiError::unknown_route()
}

/// Router fallback: a known path asked with a method it does not answer.
pub async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}
