//! Parsing of query parameters, each refusal a 400 that names the parameter and says what
//! it expects. Parameters arrive as text and are parsed here rather than by serde, whose
//! messages ("invalid digit found in string") do not say which parameter was wrong.

use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use iptrack_entity::query::{
    logs::{self, CountryFilter, NetworkFilter},
    status_class::StatusClass,
    timeline::{BucketSize, Timeline},
};

use super::{ApiError, schema};

pub(super) fn time(name: &str, text: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    text.map(|text| {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.to_utc())
            .map_err(|e| {
                ApiError::BadRequest(format!(
                    "{name}: {e}; expected RFC 3339, e.g. 2026-11-21T10:00:00Z"
                ))
            })
    })
    .transpose()
}

/// A count in `1..=max`, `default` when absent.
pub(super) fn count(
    name: &str,
    text: Option<&str>,
    default: u64,
    max: u64,
) -> Result<u64, ApiError> {
    let Some(text) = text else {
        return Ok(default);
    };
    match text.parse::<u64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::BadRequest(format!(
            "{name} must be a whole number from 1 to {max}"
        ))),
    }
}

/// An address in the form the log stores it (IPv4-mapped IPv6 as IPv4). Only the forms
/// the document's pattern describes are taken (no surrounding spaces, for one).
pub(super) fn address(name: &str, text: Option<&str>) -> Result<Option<String>, ApiError> {
    text.map(|text| {
        schema::check_ip_address(name, text)?;
        match text.parse::<IpAddr>() {
            Ok(ip) => Ok(ip.to_canonical().to_string()),
            Err(_) => Err(ApiError::BadRequest(format!(
                "{name}: {text:?} is not an IP address"
            ))),
        }
    })
    .transpose()
}

/// Free text compared against stored text; see [`storable_text`].
pub(super) fn text(name: &str, text: Option<String>) -> Result<Option<String>, ApiError> {
    if let Some(text) = &text {
        storable_text(name, text)?;
    }
    Ok(text)
}

/// PostgreSQL's `text` cannot hold a NUL byte, so one sent in a query parameter (`%00`) or
/// a JSON string (`\u0000`) failed its statement with a 500; it is refused as bad input.
pub(super) fn storable_text(name: &str, text: &str) -> Result<(), ApiError> {
    if text.contains('\0') {
        return Err(ApiError::BadRequest(format!(
            "{name} must not contain a NUL character"
        )));
    }
    Ok(())
}

pub(super) fn status(name: &str, text: Option<&str>) -> Result<Option<i32>, ApiError> {
    text.map(|text| {
        logs::parse_status(text).map_err(|e| ApiError::BadRequest(format!("{name} {e}")))
    })
    .transpose()
}

/// `since` must come before `until` when both are given.
pub(super) fn ordered(
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Result<(), ApiError> {
    match (since, until) {
        (Some(since), Some(until)) if since >= until => Err(ApiError::BadRequest(
            "since must be earlier than until".to_owned(),
        )),
        _ => Ok(()),
    }
}

/// A filter's refusal as a 400 naming the parameter.
fn bad_filter(name: &str) -> impl Fn(logs::BadFilter) -> ApiError + '_ {
    move |e| ApiError::BadRequest(format!("{name}: {e}"))
}

/// A network in CIDR form with its host bits zero (see `NetworkFilter`'s `FromStr`, which
/// `iptrack logs` uses too), in a form the document's pattern describes.
pub(super) fn network(name: &str, text: Option<&str>) -> Result<Option<NetworkFilter>, ApiError> {
    text.map(|text| {
        schema::check_network(name, text)?;
        text.parse::<NetworkFilter>().map_err(bad_filter(name))
    })
    .transpose()
}

/// An HTTP method, compared upper-case.
pub(super) fn method(name: &str, text: Option<&str>) -> Result<Option<String>, ApiError> {
    text.map(|text| {
        schema::check_method(name, text)?;
        logs::parse_method(text).map_err(bad_filter(name))
    })
    .transpose()
}

pub(super) fn class(name: &str, text: Option<&str>) -> Result<Option<StatusClass>, ApiError> {
    text.map(|text| {
        text.parse::<StatusClass>()
            .map_err(|e| ApiError::BadRequest(format!("{name} {e}")))
    })
    .transpose()
}

pub(super) fn country(name: &str, text: Option<&str>) -> Result<Option<CountryFilter>, ApiError> {
    text.map(|text| {
        schema::check_country(name, text)?;
        text.parse::<CountryFilter>().map_err(bad_filter(name))
    })
    .transpose()
}

pub(super) fn bucket(name: &str, text: Option<&str>) -> Result<Option<BucketSize>, ApiError> {
    text.map(|text| {
        BucketSize::parse(text)
            .ok_or_else(|| ApiError::BadRequest(format!("{name} must be one of minute, hour, day")))
    })
    .transpose()
}

/// `[since, until)` from the parameters: `until` defaults to now, `since` to `default`
/// before `until`; at most 90 days long.
pub(super) fn range(
    since: Option<&str>,
    until: Option<&str>,
    default: Duration,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let until = time("until", until)?.unwrap_or_else(Utc::now);
    let since = match time("since", since)? {
        Some(since) => since,
        None => until
            .checked_sub_signed(default)
            .ok_or_else(|| ApiError::BadRequest("until is too early".to_owned()))?,
    };
    ordered(Some(since), Some(until))?;
    if until - since > iptrack_entity::query::timeline::MAX_RANGE {
        return Err(ApiError::BadRequest(
            "the range from since to until may be at most 90 days".to_owned(),
        ));
    }
    Ok((since, until))
}

/// [`range`] in buckets of `bucket` (the range's own size when `None`).
pub(super) fn timeline(
    since: Option<&str>,
    until: Option<&str>,
    bucket: Option<&str>,
    default: Duration,
) -> Result<Timeline, ApiError> {
    let (since, until) = range(since, until, default)?;
    let bucket = self::bucket("bucket", bucket)?;
    Timeline::new(since, until, bucket).map_err(|e| ApiError::BadRequest(e.to_string()))
}
