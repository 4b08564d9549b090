//! Counters of the requests the middleware sees: by response status, and how many were
//! refused because the client is blocked. Rendered at `/metrics` beside the pipeline's.

use std::{
    fmt::Write,
    sync::atomic::{AtomicU64, Ordering},
};

/// Status codes are counted in a fixed array indexed by code: a relaxed add, no lock and
/// no allocation on the request path. Codes outside 100..=599 (not valid HTTP) share the
/// `other` counter.
const FIRST_STATUS: u16 = 100;
const LAST_STATUS: u16 = 599;

#[derive(Debug)]
pub struct RequestMetrics {
    by_status: Box<[AtomicU64]>,
    other_status: AtomicU64,
    blocked: AtomicU64,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self {
            by_status: (FIRST_STATUS..=LAST_STATUS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            other_status: AtomicU64::new(0),
            blocked: AtomicU64::new(0),
        }
    }
}

impl RequestMetrics {
    /// Counts one answered request.
    pub fn count_status(&self, status: u16) {
        let counter = status
            .checked_sub(FIRST_STATUS)
            .and_then(|i| self.by_status.get(usize::from(i)))
            .unwrap_or(&self.other_status);
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one request refused with 403 because its client is blocked.
    pub fn count_blocked(&self) {
        self.blocked.fetch_add(1, Ordering::Relaxed);
    }

    /// How many requests were answered with `status` so far.
    pub fn requests_with_status(&self, status: u16) -> u64 {
        status
            .checked_sub(FIRST_STATUS)
            .and_then(|i| self.by_status.get(usize::from(i)))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Prometheus text exposition; statuses never seen are left out.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP iptrack_http_requests_total Requests answered, by status code.\n\
             # TYPE iptrack_http_requests_total counter"
        );
        for (code, counter) in (FIRST_STATUS..=LAST_STATUS).zip(self.by_status.iter()) {
            let n = counter.load(Ordering::Relaxed);
            if n > 0 {
                let _ = writeln!(out, "iptrack_http_requests_total{{status=\"{code}\"}} {n}");
            }
        }
        let other = self.other_status.load(Ordering::Relaxed);
        if other > 0 {
            let _ = writeln!(
                out,
                "iptrack_http_requests_total{{status=\"other\"}} {other}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP iptrack_requests_blocked_total Requests refused with 403 because the client is blocked.\n\
             # TYPE iptrack_requests_blocked_total counter\n\
             iptrack_requests_blocked_total {}",
            self.blocked.load(Ordering::Relaxed)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_counted_by_code_and_strange_codes_are_kept_apart() {
        let metrics = RequestMetrics::default();
        metrics.count_status(200);
        metrics.count_status(200);
        metrics.count_status(599);
        metrics.count_status(100);
        metrics.count_status(42);
        metrics.count_status(1000);
        metrics.count_blocked();
        assert_eq!(metrics.requests_with_status(200), 2);
        let text = metrics.render();
        assert!(
            text.contains("iptrack_http_requests_total{status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("iptrack_http_requests_total{status=\"599\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("iptrack_http_requests_total{status=\"100\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("iptrack_http_requests_total{status=\"other\"} 2\n"),
            "{text}"
        );
        assert!(!text.contains("status=\"404\""), "{text}");
        assert!(
            text.contains("iptrack_requests_blocked_total 1\n"),
            "{text}"
        );
    }
}
