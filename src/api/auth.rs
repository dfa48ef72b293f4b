//! Who may call the /v1 routes, and how often. A caller presents
//! `Authorization: Bearer <token>`; galley hashes it with SHA-256 and
//! compares the digest with every configured one in constant time, so the
//! config holds no secret and the comparison leaks nothing through timing.
//! Each token then draws from its own token bucket; an empty bucket is a 429
//! with `Retry-After`. Tokens are never logged: only their configured names.
//! Before any of that, a client IP that failed the check too often is
//! refused with 429 (see [`super::unauthenticated`]), so that a flood of bad
//! tokens costs galley no hashing.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::unauthenticated::{self, FailureLimiter};
use crate::config::ApiConfig;
use crate::telemetry as t;

/// The SHA-256 of a token, as lowercase hex: what `api.tokens[].sha256` holds.
pub fn token_digest_hex(token: &[u8]) -> String {
    Sha256::digest(token)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A bucket's size and refill rate; a rate of 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

struct KnownToken {
    name: Arc<str>,
    digest: [u8; 32],
    limit: RateLimit,
}

/// The authenticated caller, put in the request's extensions for handlers and logs.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: Arc<str>,
}

/// Token check and rate limiting for the /v1 routes.
pub struct Gate {
    tokens: Vec<KnownToken>,
    buckets: Mutex<HashMap<Arc<str>, Bucket>>,
    failures: FailureLimiter,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl Gate {
    /// Builds the gate from validated config (a token with a malformed digest,
    /// which validation refuses, could never match and is left out).
    pub fn from_config(cfg: &ApiConfig) -> Self {
        let tokens = cfg
            .tokens
            .iter()
            .filter_map(|t| {
                Some(KnownToken {
                    name: Arc::from(t.name.as_str()),
                    digest: t.digest()?,
                    limit: RateLimit {
                        per_second: t.rate_limit_per_second.unwrap_or(cfg.rate_limit_per_second),
                        burst: t.rate_limit_burst.unwrap_or(cfg.rate_limit_burst),
                    },
                })
            })
            .collect();
        let failures = FailureLimiter::new(
            unauthenticated::RateLimit {
                per_second: cfg.unauthenticated_rate_limit_per_second,
                burst: cfg.unauthenticated_rate_limit_burst,
            },
            cfg.unauthenticated_max_clients,
        );
        Self {
            tokens,
            buckets: Mutex::new(HashMap::new()),
            failures,
        }
    }

    /// The configured token whose digest matches `presented`. Every digest
    /// is compared, whatever matched before, so timing says nothing.
    fn identify(&self, presented: &[u8]) -> Option<&KnownToken> {
        let digest = Sha256::digest(presented);
        let mut found = None;
        for token in &self.tokens {
            if bool::from(token.digest.as_slice().ct_eq(digest.as_slice())) {
                found = Some(token);
            }
        }
        found
    }

    /// Takes one request from the token's bucket; `Err` holds the seconds
    /// until the next request would be let through.
    fn admit(&self, name: &Arc<str>, limit: RateLimit, now: Instant) -> Result<(), u64> {
        if limit.per_second == 0 {
            return Ok(());
        }
        let rate = f64::from(limit.per_second);
        let burst = f64::from(limit.burst.max(1));
        // A poisoned lock only means another request panicked mid-update;
        // a bucket is two numbers and stays usable.
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(name.clone()).or_insert(Bucket {
            tokens: burst,
            refilled: now,
        });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / rate;
            Err((wait.ceil() as u64).max(1))
        }
    }
}

/// The bearer token of a request, if it carries one.
fn bearer(request: &Request) -> Option<&[u8]> {
    let value = request.headers().get(header::AUTHORIZATION)?.as_bytes();
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = value[7..].trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// The client's IP, which the listener puts in every request; a request
/// built without one (a test calling the router directly) counts as
/// 0.0.0.0, one client.
fn client_ip(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// Middleware for the /v1 routes: 429 for a client IP over its failed-check
/// limit, 401 without a known token, 429 over the token's rate.
pub async fn require_token(
    State(gate): State<Arc<Gate>>,
    mut request: Request,
    next: Next,
) -> Response {
    let ip = client_ip(&request);
    let now = Instant::now();
    if let Err(retry_after) = gate.failures.check(ip, now) {
        metrics::counter!(t::API_UNAUTHENTICATED_THROTTLED_TOTAL).increment(1);
        return ApiError::rate_limited(
            retry_after,
            format!(
                "too many requests without a valid token from this address; retry after \
                 {retry_after}s"
            ),
        )
        .into_response();
    }
    let Some(presented) = bearer(&request) else {
        gate.failures.charge(ip, now);
        return ApiError::unauthorized("send `Authorization: Bearer <token>`").into_response();
    };
    let Some(token) = gate.identify(presented) else {
        metrics::counter!(t::API_AUTH_CHECKS_TOTAL, "outcome" => "invalid").increment(1);
        gate.failures.charge(ip, now);
        return ApiError::unauthorized("the bearer token is not valid").into_response();
    };
    metrics::counter!(t::API_AUTH_CHECKS_TOTAL, "outcome" => "valid").increment(1);
    if let Err(retry_after) = gate.admit(&token.name, token.limit, now) {
        return ApiError::rate_limited(
            retry_after,
            format!(
                "token `{}` is over its rate limit ({} requests/s, burst {}); retry after {retry_after}s",
                token.name, token.limit.per_second, token.limit.burst
            ),
        )
        .into_response();
    }
    request.extensions_mut().insert(Caller {
        name: token.name.clone(),
    });
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::ApiToken;

    fn gate(tokens: &[(&str, &str)]) -> Gate {
        let cfg = ApiConfig {
            tokens: tokens
                .iter()
                .map(|(name, token)| ApiToken {
                    name: name.to_string(),
                    sha256: token_digest_hex(token.as_bytes()),
                    rate_limit_per_second: None,
                    rate_limit_burst: None,
                })
                .collect(),
            ..ApiConfig::default()
        };
        Gate::from_config(&cfg)
    }

    #[test]
    fn digest_is_lowercase_hex_sha256() {
        assert_eq!(
            token_digest_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn only_a_configured_token_is_known() {
        let g = gate(&[
            ("grafana", "token-one-0123456789"),
            ("ops", "token-two-0123456789"),
        ]);
        let found = g
            .identify(b"token-two-0123456789")
            .map(|t| t.name.to_string());
        assert_eq!(found.as_deref(), Some("ops"));
        assert!(g.identify(b"token-two-012345678").is_none());
        assert!(g.identify(b"").is_none());
        assert!(gate(&[]).identify(b"anything").is_none());
    }

    #[test]
    fn the_bucket_lets_a_burst_through_then_the_rate() {
        let g = gate(&[]);
        let name: Arc<str> = Arc::from("t");
        let limit = RateLimit {
            per_second: 2,
            burst: 3,
        };
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(g.admit(&name, limit, t0), Ok(()));
        }
        assert_eq!(g.admit(&name, limit, t0), Err(1));
        // Half a second refills one request at 2/s.
        assert_eq!(
            g.admit(&name, limit, t0 + Duration::from_millis(500)),
            Ok(())
        );
        assert_eq!(
            g.admit(&name, limit, t0 + Duration::from_millis(500)),
            Err(1)
        );
        let slow = RateLimit {
            per_second: 0,
            burst: 1,
        };
        for _ in 0..100 {
            assert_eq!(g.admit(&name, slow, t0), Ok(()), "0 means no limit");
        }
    }
}
