//! Payloads of the jobs that travel over Redis, and the names of their queues.
//!
//! A job payload is JSON (apalis-redis's codec). Field names are part of the wire format
//! between web and worker processes of possibly different versions: add fields with
//! `#[serde(default)]`, never rename.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Queue of [`RequestLogBatch`] jobs: web → worker.
pub const REQUEST_LOGS_QUEUE: &str = "request-logs";
/// Queue of [`FlagSuspiciousIps`] jobs: scheduler (or `iptrack flag-suspicious`) → worker.
pub const FLAG_SUSPICIOUS_IPS_QUEUE: &str = "flag-suspicious-ips";
/// Queue of [`PurgeLogs`] jobs: scheduler → worker.
pub const PURGE_LOGS_QUEUE: &str = "purge-logs";

/// Every queue iptrack uses; the worker keeps each one's sets in bounds.
pub const ALL_QUEUES: &[&str] = &[
    REQUEST_LOGS_QUEUE,
    FLAG_SUSPICIOUS_IPS_QUEUE,
    PURGE_LOGS_QUEUE,
];

/// Flag the addresses that misbehaved in `[window_start, window_end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagSuspiciousIps {
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
}

/// Delete request logs (and batch ids) older than `older_than`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeLogs {
    pub older_than: DateTime<Utc>,
}

/// One logged request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEvent {
    /// The resolved client address (see `client_ip`).
    pub ip: IpAddr,
    /// When the response was produced, UTC.
    pub timestamp: DateTime<Utc>,
    pub method: String,
    /// Path without the query string, at most [`MAX_PATH_BYTES`] bytes.
    pub path: String,
    pub status: u16,
}

/// Longest path stored, in bytes; longer paths are cut at a character boundary.
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

/// Cuts `path` to at most [`MAX_PATH_BYTES`] bytes without splitting a character.
pub fn bounded_path(path: &str) -> String {
    if path.len() <= MAX_PATH_BYTES {
        return path.to_owned();
    }
    let mut end = MAX_PATH_BYTES;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    path[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_paths_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_PATH_BYTES);
        let cut = bounded_path(&long);
        assert!(cut.len() <= MAX_PATH_BYTES);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(bounded_path("/login"), "/login");
    }
}
