//! Payloads of the jobs that travel over Redis, and the names of their queues.
//!
//! A job payload is JSON (apalis-redis's codec). Field names are part of the wire format
//! between web and worker processes of possibly different versions: add fields with
//! `#[serde(default)]`, never rename.

use std::net::IpAddr;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Queue of [`RequestLogBatch`] jobs: web → worker.
pub const REQUEST_LOGS_QUEUE: &str = "request-logs";
/// Queue of [`FlagSuspiciousIps`] jobs: scheduler (or `iptrack flag-suspicious`) → worker.
pub const FLAG_SUSPICIOUS_IPS_QUEUE: &str = "flag-suspicious-ips";
/// Queue of [`PurgeLogs`] jobs: scheduler → worker.
pub const PURGE_LOGS_QUEUE: &str = "purge-logs";
/// Queue of [`GeolocateAddresses`] jobs: worker (request-logs, on a cache miss) → worker.
pub const GEOLOCATE_QUEUE: &str = "geolocate";
/// Queue of [`Notice`] jobs: worker (a new flag or ban) → worker (webhook delivery). Only
/// filled when `IPTRACK_WEBHOOK_URL` is set.
pub const NOTIFICATIONS_QUEUE: &str = "notifications";

/// The Redis channel every new flag and ban is published on as a [`Notice`] (JSON),
/// whether or not webhooks are on: the web instances relay it to the dashboard's live
/// stream (`GET /api/v1/events`). Fire and forget, like the blocklist channel: a page that
/// was not listening reads the tables when it loads.
pub fn notices_channel(prefix: &str) -> String {
    format!("{prefix}:notices")
}

/// Queue of [`RefreshBlocklistFeed`] jobs: scheduler → worker.
pub const BLOCKLIST_FEEDS_QUEUE: &str = "blocklist-feeds";

/// Queue of [`SummarizeRequests`] jobs: scheduler → worker.
pub const REQUEST_SUMMARIES_QUEUE: &str = "request-summaries";

/// Every queue iptrack uses; the worker keeps each one's sets in bounds.
pub const ALL_QUEUES: &[&str] = &[
    REQUEST_LOGS_QUEUE,
    FLAG_SUSPICIOUS_IPS_QUEUE,
    PURGE_LOGS_QUEUE,
    GEOLOCATE_QUEUE,
    NOTIFICATIONS_QUEUE,
    BLOCKLIST_FEEDS_QUEUE,
    REQUEST_SUMMARIES_QUEUE,
];

/// Fetch the list at `url` and make it the whole of feed `source`'s entries
/// (`IPTRACK_BLOCKLIST_FEEDS`). Pushed once per feed and interval, cluster-wide. A fetch
/// that fails, or a list that is refused (a bad line, empty, less than half of the
/// feed's entries), leaves the feed's entries as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshBlocklistFeed {
    /// The feed's name (`firehol1`; its rows are `feed:firehol1`). Checked again by the
    /// worker: the payload crossed Redis.
    pub source: String,
    /// `http://` or `https://`, as configured (credentials included).
    pub url: String,
}

/// Flag the addresses that misbehaved in `[window_start, window_end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagSuspiciousIps {
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
}

impl FlagSuspiciousIps {
    /// The window of length `window` that ends at `window_end`: what the scheduler pushes
    /// at each tick and `iptrack flag-suspicious` pushes by hand.
    ///
    /// A window whose start cannot be represented (a length beyond `chrono`'s range, or an
    /// end so early that the start would precede the earliest representable time) is an
    /// error, never a shorter or empty window: an empty window would be enqueued and claimed
    /// as done while it flags nothing. Settings bound the length to a week, so in practice
    /// only a hand-given `--window-end` near year −262,144 meets it.
    pub fn ending_at(
        window_end: DateTime<Utc>,
        window: std::time::Duration,
    ) -> Result<Self, WindowOutOfRange> {
        let window_start = chrono::TimeDelta::from_std(window)
            .ok()
            .and_then(|length| window_end.checked_sub_signed(length))
            .ok_or(WindowOutOfRange { window_end, window })?;
        Ok(Self {
            window_start,
            window_end,
        })
    }
}

/// A flag window that would start before the earliest time `chrono` represents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "a window of {} s ending at {window_end} starts before the earliest representable time",
    window.as_secs()
)]
pub struct WindowOutOfRange {
    pub window_end: DateTime<Utc>,
    pub window: std::time::Duration,
}

/// Delete request logs (and batch ids) older than `older_than`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeLogs {
    pub older_than: DateTime<Utc>,
}

/// Summarize each closed hour of the 24 before `now` that has no current summary (top
/// addresses and paths, distinct addresses per country: the dashboard's figures that
/// minute counts cannot give). Pushed every few minutes, once per tick cluster-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummarizeRequests {
    pub now: DateTime<Utc>,
}

/// Most addresses in one [`GeolocateAddresses`] job: ip-api's batch endpoint takes 100.
pub const GEOLOCATE_MAX_ADDRESSES: usize = 100;

/// Look these public addresses up, cache the answers and fill in their rows' location.
/// Each address was claimed cluster-wide by whoever pushed the job (see `worker::geo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeolocateAddresses {
    /// At most [`GEOLOCATE_MAX_ADDRESSES`].
    pub addresses: Vec<IpAddr>,
}

/// What a [`Notice`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeKind {
    /// An address was flagged (a new `suspicious_ip` incident).
    Flag,
    /// An address was blocked automatically.
    Ban,
}

/// One new flag or ban, to be delivered to `IPTRACK_WEBHOOK_URL`. Pushed once per event
/// cluster-wide (the pusher claims the event's key first), delivered with retries by one
/// worker. It is also the `json` webhook body, field for field (README, "Notifications"):
/// optional fields are `null` when unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// Unique per event, also sent to the receiver so that it can drop a delivery repeated
    /// after a lost reply.
    pub id: Uuid,
    pub kind: NoticeKind,
    /// The flagged or banned address or network, as `blocked_ip` and `suspicious_ip` show it.
    pub address: String,
    /// The rule that fired: a streaming rule's name, or `volume` / `sensitive-path`.
    pub rule: String,
    /// Why, in words ("12 POST /login status 401 in 5m (threshold 10)").
    pub reason: String,
    /// Requests the rule counted.
    #[serde(default)]
    pub count: Option<u64>,
    /// The rule's window, in seconds.
    #[serde(default)]
    pub window_secs: Option<u64>,
    /// When a ban ends (`None`: a flag, or a ban until unblocked).
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// How many times the address has been banned, this ban included (bans only).
    #[serde(default)]
    pub ban_count: Option<u32>,
    /// The rule is in dry-run mode: flagged and notified, never blocked.
    #[serde(default)]
    pub dry_run: bool,
    /// When the event happened.
    pub at: DateTime<Utc>,
    /// ISO 3166-1 alpha-2 code of the address's country, when known. Filled at delivery
    /// from the workers' geolocation cache when the pusher left it out.
    #[serde(default)]
    pub country_code: Option<String>,
    /// The country's English name, when known (filled like `country_code`).
    #[serde(default)]
    pub country: Option<String>,
    /// The city, when known (filled like `country_code`).
    #[serde(default)]
    pub city: Option<String>,
}

/// One logged request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEvent {
    /// The resolved client address (see `client_ip`).
    pub ip: IpAddr,
    /// When the response was produced, UTC, in whole microseconds ([`event_time`]).
    pub timestamp: DateTime<Utc>,
    /// At most [`MAX_METHOD_BYTES`] bytes.
    pub method: String,
    /// Path without the query string, in its canonical form (`crate::path`), at most
    /// [`MAX_PATH_BYTES`] bytes.
    pub path: String,
    pub status: u16,
    /// Microseconds from the request reaching the middleware to its response.
    #[serde(default)]
    pub duration_us: u64,
    /// `User-Agent`, at most [`MAX_USER_AGENT_BYTES`] bytes; empty when absent.
    #[serde(default)]
    pub user_agent: String,
    /// The application's id for the authenticated user, if any.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Query string without `?`, only when `IPTRACK_LOG_QUERY_STRING` is on.
    #[serde(default)]
    pub query_string: Option<String>,
}

/// Longest user agent stored, in bytes.
pub const MAX_USER_AGENT_BYTES: usize = 512;

/// Longest path stored, in bytes; longer paths are cut before the escape or character
/// that would straddle the limit.
pub const MAX_PATH_BYTES: usize = 2048;

/// A batch of events, pushed as one job. The id makes re-delivery harmless: the worker
/// records it in the same transaction as the rows and skips a batch it has seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestLogBatch {
    pub batch_id: Uuid,
    pub events: Vec<LogEvent>,
}

impl RequestLogBatch {
    /// A batch with a fresh, time-ordered id.
    pub fn new(events: Vec<LogEvent>) -> Self {
        Self {
            batch_id: Uuid::now_v7(),
            events,
        }
    }
}

/// The time of an event: now, cut to whole microseconds. PostgreSQL keeps microseconds
/// and SQLite would keep the nanoseconds as text; cut here, both databases store the same
/// instant, and the one the event carried.
pub fn event_time() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// The path as it is stored and compared: its canonical form (`crate::path`), so every
/// spelling of one path is one row value, cut to at most [`MAX_PATH_BYTES`] bytes.
pub fn bounded_path(path: &str) -> String {
    bounded_canonical_path(&crate::path::canonical_path(path))
}

/// [`bounded_path`] for a path already in canonical form (the middleware has it from rule
/// matching, and need not scan it again). The canonical form is ASCII; the cut never leaves
/// half an escape (`%4`), which would read as a different path.
pub fn bounded_canonical_path(canonical: &str) -> String {
    if canonical.len() <= MAX_PATH_BYTES {
        return canonical.to_owned();
    }
    let bytes = canonical.as_bytes();
    let mut end = MAX_PATH_BYTES;
    // An escape is three bytes: back off if one of the last two kept bytes starts one.
    if let Some(back) = bytes[end - 2..end].iter().position(|&b| b == b'%') {
        end = end - 2 + back;
    }
    match canonical.get(..end) {
        Some(cut) => cut.to_owned(),
        None => bounded_text(canonical, end),
    }
}

/// Cuts `text` to at most `max_bytes` bytes without splitting a character.
pub fn bounded_text(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_owned();
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Longest method `request_log.method` holds (`VARCHAR(16)` on PostgreSQL).
pub const MAX_METHOD_BYTES: usize = 16;

/// The method as stored, cut to [`MAX_METHOD_BYTES`]. HTTP accepts extension methods of any
/// length, and one too long for the column would fail the INSERT of its whole batch on
/// PostgreSQL: a client could then keep every request sharing its batch out of the log.
pub fn bounded_method(method: &str) -> String {
    bounded_text(method, MAX_METHOD_BYTES)
}

/// Header bytes as text: invalid UTF-8 replaced (never a panic), cut to `max_bytes`.
pub fn bounded_header(bytes: &[u8], max_bytes: usize) -> String {
    let head = &bytes[..bytes.len().min(max_bytes)];
    bounded_text(&String::from_utf8_lossy(head), max_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_window_ends_where_asked_and_overflow_is_an_error() {
        let hour = std::time::Duration::from_secs(3600);
        let end: DateTime<Utc> = "2026-11-21T10:00:00Z".parse().unwrap_or_default();
        let job = FlagSuspiciousIps::ending_at(end, hour);
        assert_eq!(
            job.map(|j| (j.window_start.to_rfc3339(), j.window_end)),
            Ok(("2026-11-21T09:00:00+00:00".to_owned(), end))
        );
        // The earliest end with a start: exactly one window after the minimum.
        let earliest = DateTime::<Utc>::MIN_UTC;
        let just = earliest + chrono::TimeDelta::seconds(3600);
        assert_eq!(
            FlagSuspiciousIps::ending_at(just, hour).map(|j| j.window_start),
            Ok(earliest)
        );
        let too_early = earliest + chrono::TimeDelta::seconds(3599);
        assert!(FlagSuspiciousIps::ending_at(too_early, hour).is_err());
        // A length beyond chrono's range is refused, not cut to zero.
        let error = FlagSuspiciousIps::ending_at(end, std::time::Duration::MAX);
        assert!(
            matches!(&error, Err(e) if e.to_string().contains("earliest representable time")),
            "{error:?}"
        );
    }

    #[test]
    fn event_times_are_whole_microseconds() {
        use chrono::Timelike;
        // A clock reading is a whole microsecond by chance one time in a thousand.
        for _ in 0..20 {
            assert_eq!(event_time().nanosecond() % 1_000, 0);
            std::thread::sleep(std::time::Duration::from_micros(7));
        }
    }

    #[test]
    fn long_paths_are_cut_without_splitting_an_escape() {
        let long = "é".repeat(MAX_PATH_BYTES);
        let cut = bounded_path(&long);
        assert!(cut.len() <= MAX_PATH_BYTES);
        // 682 whole escapes fill 2,046 bytes; the 683rd would straddle the limit.
        assert_eq!(cut.len(), 2_046);
        assert!("%C3%A9".repeat(MAX_PATH_BYTES).starts_with(&cut));
        for offset in 0..3 {
            let path = format!(
                "/{}{}",
                "a".repeat(MAX_PATH_BYTES - 3 + offset),
                "%2F".repeat(4)
            );
            let cut = bounded_path(&path);
            assert!(cut.len() <= MAX_PATH_BYTES, "{offset}");
            assert_eq!(
                crate::path::canonical_path(&cut),
                cut.as_str(),
                "{offset}: {cut}"
            );
        }
        assert_eq!(bounded_path("/login"), "/login");
        assert_eq!(bounded_path("/%6cogin"), "/login");
    }

    #[test]
    fn header_text_is_bounded_and_invalid_utf8_replaced() {
        assert_eq!(
            bounded_header(b"curl/8.5.0", MAX_USER_AGENT_BYTES),
            "curl/8.5.0"
        );
        assert_eq!(bounded_header(b"bad \xff byte", 64), "bad \u{fffd} byte");
        let huge = vec![b'a'; 100_000];
        assert_eq!(
            bounded_header(&huge, MAX_USER_AGENT_BYTES).len(),
            MAX_USER_AGENT_BYTES
        );
        // A replacement character straddling the cut is dropped, not split.
        let cut = bounded_header(&[b'a', 0xff, 0xff], 3);
        assert!(cut.len() <= 3 && cut.starts_with('a'));
    }
}
