//! The response headers of draft-ietf-httpapi-ratelimit-headers-10 (September 2025):
//! structured-field lists naming the policy, `RateLimit-Policy: "login";q=5;w=60` (quota
//! and window in seconds) and `RateLimit: "login";r=0;t=42` (remaining and seconds until
//! the quota frees up), plus `Retry-After` (RFC 9110) on a 429.

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

use super::Decision;

pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Whole seconds, rounded up: a client that waits `t` seconds must not be refused again.
fn seconds_up(duration: std::time::Duration) -> u64 {
    duration
        .as_millis()
        .div_ceil(1000)
        .try_into()
        .unwrap_or(u64::MAX)
}

/// Adds both draft headers; `policy` is a rule name, which the settings restrict to
/// letters, digits, `-` and `_` (safe inside an sf-string).
pub fn insert(headers: &mut HeaderMap, policy: &str, decision: &Decision) {
    let values = [
        (
            RATELIMIT_POLICY,
            format!(
                "\"{policy}\";q={};w={}",
                decision.limit,
                seconds_up(decision.window)
            ),
        ),
        (
            RATELIMIT,
            format!(
                "\"{policy}\";r={};t={}",
                decision.remaining,
                seconds_up(decision.reset)
            ),
        ),
    ];
    for (name, value) in values {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}

/// `Retry-After` for a refused request: at least one second.
pub fn insert_retry_after(headers: &mut HeaderMap, decision: &Decision) {
    headers.insert(
        RETRY_AFTER,
        HeaderValue::from(seconds_up(decision.reset).max(1)),
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;

    #[test]
    fn headers_follow_the_draft_syntax_and_round_seconds_up() {
        let decision = Decision {
            allowed: false,
            limit: 5,
            remaining: 0,
            reset: Duration::from_millis(41_200),
            window: Duration::from_secs(60),
        };
        let mut headers = HeaderMap::new();
        insert(&mut headers, "login", &decision);
        insert_retry_after(&mut headers, &decision);
        assert_eq!(
            headers.get("ratelimit-policy").unwrap(),
            "\"login\";q=5;w=60"
        );
        assert_eq!(headers.get("ratelimit").unwrap(), "\"login\";r=0;t=42");
        assert_eq!(headers.get("retry-after").unwrap(), "42");
    }
}
