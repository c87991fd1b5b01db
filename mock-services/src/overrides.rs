//! Per-request behaviour overrides carried in `X-Mock-*` headers.

use std::fmt;

use actix_web::http::header::HeaderMap;

/// Prefix shared by every override header (header names arrive lower-cased).
const PREFIX: &str = "x-mock-";

/// What the `X-Mock-*` headers of one request ask for; `None`/`false` means "not given".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Overrides {
    /// `X-Mock-Status`: answer with this status (200..=599).
    pub status: Option<u16>,
    /// `X-Mock-Delay-Ms`: fixed latency.
    pub delay_ms: Option<u64>,
    /// `X-Mock-Retry-After`: `Retry-After` seconds on failures.
    pub retry_after_secs: Option<u64>,
    /// `X-Mock-Fail-First`: fail the first N requests per `Idempotency-Key`.
    pub fail_first: Option<u32>,
    /// `X-Mock-Hang: 1`.
    pub hang: bool,
    /// `X-Mock-Reset: 1`.
    pub reset: bool,
    /// `X-Mock-Malformed: 1`.
    pub malformed: bool,
    /// `X-Mock-Huge-Bytes`: body size.
    pub huge_bytes: Option<u64>,
}

/// An `X-Mock-*` header that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InvalidOverride {
    pub header: String,
    pub expected: &'static str,
}

impl fmt::Display for InvalidOverride {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "header {}: expected {}", self.header, self.expected)
    }
}

impl Overrides {
    /// Reads the overrides in one pass over the headers (cheaper than one lookup per
    /// override name). Unknown `X-Mock-*` names are rejected so a typo cannot silently
    /// turn a fault test into a happy-path test.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Self, InvalidOverride> {
        let mut overrides = Self::default();
        for (name, value) in headers.iter() {
            let Some(suffix) = name.as_str().strip_prefix(PREFIX) else {
                continue;
            };
            let invalid = |expected| InvalidOverride {
                header: name.as_str().to_owned(),
                expected,
            };
            let value = value.to_str().map_err(|_| invalid("ASCII text"))?.trim();
            match suffix {
                "status" => {
                    let status = value
                        .parse::<u16>()
                        .ok()
                        .filter(|status| (200..=599).contains(status))
                        .ok_or_else(|| invalid("a status code within 200..=599"))?;
                    overrides.status = Some(status);
                }
                "delay-ms" => {
                    overrides.delay_ms = Some(value.parse().map_err(|_| invalid("milliseconds"))?);
                }
                "retry-after" => {
                    overrides.retry_after_secs =
                        Some(value.parse().map_err(|_| invalid("seconds"))?);
                }
                "fail-first" => {
                    overrides.fail_first =
                        Some(value.parse().map_err(|_| invalid("a request count"))?);
                }
                "huge-bytes" => {
                    overrides.huge_bytes =
                        Some(value.parse().map_err(|_| invalid("a byte count"))?);
                }
                "hang" => overrides.hang = parse_flag(value).ok_or_else(|| invalid("1 or 0"))?,
                "reset" => overrides.reset = parse_flag(value).ok_or_else(|| invalid("1 or 0"))?,
                "malformed" => {
                    overrides.malformed = parse_flag(value).ok_or_else(|| invalid("1 or 0"))?;
                }
                _ => return Err(invalid("a known X-Mock-* header name")),
            }
        }
        Ok(overrides)
    }
}

fn parse_flag(value: &str) -> Option<bool> {
    match value {
        "1" | "true" | "yes" => Some(true),
        "0" | "false" | "no" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        map
    }

    #[test]
    fn reads_every_override() {
        let parsed = Overrides::from_headers(&headers(&[
            ("x-mock-status", "503"),
            ("x-mock-delay-ms", "25"),
            ("x-mock-retry-after", "3"),
            ("x-mock-fail-first", "2"),
            ("x-mock-hang", "1"),
            ("x-mock-reset", "true"),
            ("x-mock-malformed", "1"),
            ("x-mock-huge-bytes", "1000"),
            ("idempotency-key", "ignored"),
        ]));
        assert_eq!(
            parsed,
            Ok(Overrides {
                status: Some(503),
                delay_ms: Some(25),
                retry_after_secs: Some(3),
                fail_first: Some(2),
                hang: true,
                reset: true,
                malformed: true,
                huge_bytes: Some(1000),
            })
        );
    }

    #[test]
    fn no_headers_means_no_overrides() {
        assert_eq!(
            Overrides::from_headers(&headers(&[("content-type", "application/json")])),
            Ok(Overrides::default())
        );
    }

    #[test]
    fn rejects_bad_values_and_unknown_names() {
        for pairs in [
            [("x-mock-status", "abc")],
            [("x-mock-status", "999")],
            [("x-mock-status", "100")],
            [("x-mock-delay-ms", "-1")],
            [("x-mock-hang", "maybe")],
            [("x-mock-delay", "10")],
        ] {
            assert!(
                Overrides::from_headers(&headers(&pairs)).is_err(),
                "{pairs:?}"
            );
        }
    }
}
