//! Query-string parameters of the /v1 routes and their checks. Values are
//! taken as text and parsed here, so that every mistake gets a 400 whose
//! code and message say which parameter and which limit it broke.

use std::time::Duration;

use chrono::DateTime;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ApiError;
use crate::config::ApiConfig;

/// Latest time accepted: the end of year 9999, as far as RFC 3339 goes.
const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// The limits a request is checked against, from `[api]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub default_page_size: u32,
    pub max_page_size: u32,
    pub max_time_window: Duration,
    pub max_request_body_bytes: usize,
}

impl Limits {
    pub fn from_config(cfg: &ApiConfig) -> Self {
        Self {
            default_page_size: cfg.default_page_size,
            max_page_size: cfg.max_page_size,
            max_time_window: cfg.max_time_window,
            max_request_body_bytes: cfg.max_request_body_bytes,
        }
    }
}

/// Paging of a list route.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page, from 1 to `api.max_page_size` (100 unless configured);
    /// `api.default_page_size` (50) when absent.
    #[param(value_type = Option<u32>, minimum = 1, example = 20)]
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page, unchanged. Absent: the first page.
    pub cursor: Option<String>,
}

/// A time window `[from, to)`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WindowParams {
    /// Start of the window, inclusive: RFC 3339 (`2026-01-01T00:00:00Z`,
    /// any offset) or milliseconds since the Unix epoch.
    #[param(value_type = String, required = true, example = "2026-01-01T00:00:00Z")]
    pub from: Option<String>,
    /// End of the window, exclusive; later than `from` by at most
    /// `api.max_time_window` (24h unless configured).
    #[param(value_type = String, required = true, example = "2026-01-01T01:00:00Z")]
    pub to: Option<String>,
}

impl PageParams {
    /// The page size asked for, within the limits.
    pub fn page_size(&self, limits: &Limits) -> Result<u32, ApiError> {
        let Some(raw) = self.limit.as_deref() else {
            return Ok(limits.default_page_size);
        };
        let max = limits.max_page_size;
        let digits = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
        if !digits {
            return Err(ApiError::bad_request(
                "invalid_limit",
                format!("limit must be a whole number from 1 to {max} (api.max_page_size)"),
            ));
        }
        match raw.parse::<u64>() {
            Ok(0) => Err(ApiError::bad_request(
                "invalid_limit",
                format!("limit must be at least 1 (and at most {max}, api.max_page_size)"),
            )),
            Ok(n) if n <= u64::from(max) => Ok(n as u32),
            // Too many digits to parse is over the limit too.
            _ => Err(ApiError::bad_request(
                "page_too_large",
                format!("limit {raw} exceeds api.max_page_size ({max})"),
            )),
        }
    }
}

impl WindowParams {
    /// The window as epoch milliseconds, checked: present, parseable,
    /// `to` after `from`, and no wider than `api.max_time_window`.
    pub fn window(&self, limits: &Limits) -> Result<(i64, i64), ApiError> {
        let from = parse_time("from", self.from.as_deref())?;
        let to = parse_time("to", self.to.as_deref())?;
        if to <= from {
            return Err(ApiError::bad_request(
                "invalid_time_range",
                "`to` must be later than `from`; the window is [from, to)",
            ));
        }
        let max_ms = i64::try_from(limits.max_time_window.as_millis()).unwrap_or(i64::MAX);
        if to - from > max_ms {
            return Err(ApiError::bad_request(
                "window_too_large",
                format!(
                    "the window from {} to {} is wider than api.max_time_window ({})",
                    super::time::rfc3339(from),
                    super::time::rfc3339(to),
                    humantime_serde::re::humantime::format_duration(limits.max_time_window)
                ),
            ));
        }
        Ok((from, to))
    }
}

/// Parses RFC 3339 (any offset) or epoch milliseconds.
fn parse_time(name: &'static str, raw: Option<&str>) -> Result<i64, ApiError> {
    let Some(raw) = raw else {
        return Err(ApiError::bad_request(
            "missing_parameter",
            format!("`{name}` is required: an RFC 3339 time or epoch milliseconds"),
        ));
    };
    let invalid = || {
        ApiError::bad_request(
            "invalid_time",
            format!(
                "`{name}` must be an RFC 3339 time such as 2026-01-01T00:00:00Z, \
                 or milliseconds since the Unix epoch, between 1970 and 9999"
            ),
        )
    };
    let ms = if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        raw.parse::<i64>().map_err(|_| invalid())?
    } else {
        DateTime::parse_from_rfc3339(raw)
            .map_err(|_| invalid())?
            .timestamp_millis()
    };
    if !(0..=MAX_TIME_MS).contains(&ms) {
        return Err(invalid());
    }
    Ok(ms)
}

/// Longest id accepted, in characters. Stored ids are at most 128 bytes,
/// so a longer one cannot exist; counted in characters, as the OpenAPI
/// document's `maxLength` counts, so that the two agree (an id of 128
/// characters but more bytes is simply not found).
pub const MAX_ID_CHARS: usize = 128;

/// Ids are opaque text from upstream; refuse what no upstream id looks like.
pub fn check_id(kind: &str, id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.chars().count() > MAX_ID_CHARS || id.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_id",
            format!(
                "{kind} must be 1 to {MAX_ID_CHARS} characters, none of them a control character"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            default_page_size: 50,
            max_page_size: 100,
            max_time_window: Duration::from_secs(24 * 3600),
            max_request_body_bytes: 16384,
        }
    }

    fn page(limit: Option<&str>) -> Result<u32, &'static str> {
        PageParams {
            limit: limit.map(str::to_string),
            cursor: None,
        }
        .page_size(&limits())
        .map_err(|e| e.code())
    }

    fn window(from: Option<&str>, to: Option<&str>) -> Result<(i64, i64), &'static str> {
        WindowParams {
            from: from.map(str::to_string),
            to: to.map(str::to_string),
        }
        .window(&limits())
        .map_err(|e| e.code())
    }

    #[test]
    fn page_size_defaults_and_names_its_limit() {
        assert_eq!(page(None), Ok(50));
        assert_eq!(page(Some("1")), Ok(1));
        assert_eq!(page(Some("100")), Ok(100));
        assert_eq!(page(Some("101")), Err("page_too_large"));
        assert_eq!(page(Some("99999999999999999999999")), Err("page_too_large"));
        for bad in ["0", "-1", "", "ten", "1.5", " 5"] {
            assert_eq!(page(Some(bad)), Err("invalid_limit"), "{bad:?}");
        }
        let err = PageParams {
            limit: Some("500".into()),
            cursor: None,
        }
        .page_size(&limits())
        .expect_err("over");
        assert!(format!("{err:?}").contains("api.max_page_size"));
    }

    #[test]
    fn windows_accept_rfc3339_and_epoch_ms() {
        assert_eq!(
            window(Some("2026-01-01T00:00:00Z"), Some("2026-01-01T01:00:00Z")),
            Ok((1_767_225_600_000, 1_767_229_200_000))
        );
        assert_eq!(
            window(Some("2026-01-01T01:00:00+01:00"), Some("1767229200000")),
            Ok((1_767_225_600_000, 1_767_229_200_000))
        );
    }

    #[test]
    fn bad_windows_say_what_is_wrong() {
        let t = Some("2026-01-01T00:00:00Z");
        assert_eq!(window(None, t), Err("missing_parameter"));
        assert_eq!(window(t, None), Err("missing_parameter"));
        assert_eq!(window(Some("yesterday"), t), Err("invalid_time"));
        assert_eq!(window(t, Some("-5")), Err("invalid_time"));
        assert_eq!(window(t, Some("99999999999999999999")), Err("invalid_time"));
        assert_eq!(window(t, t), Err("invalid_time_range"));
        assert_eq!(
            window(Some("2026-01-02T00:00:00Z"), t),
            Err("invalid_time_range")
        );
        assert_eq!(
            window(t, Some("2026-01-02T00:00:00.001Z")),
            Err("window_too_large")
        );
        assert_eq!(
            window(t, Some("2026-01-02T00:00:00Z")).map(|(a, b)| b - a),
            Ok(86_400_000)
        );
    }

    #[test]
    fn ids_must_be_printable_and_bounded() {
        assert!(check_id("order id", "O-1").is_ok());
        assert!(check_id("order id", "").is_err());
        assert!(check_id("order id", "a\u{7}b").is_err());
        assert!(check_id("order id", &"x".repeat(129)).is_err());
        // Characters, as the document's maxLength counts, not bytes.
        assert!(check_id("order id", &"é".repeat(128)).is_ok());
        assert!(check_id("order id", &"é".repeat(129)).is_err());
    }
}
