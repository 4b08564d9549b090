//! Counters of the requests the middleware sees: by response status, and how many were
//! refused because the client is blocked. Served at `/metrics` beside the pipeline's.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, NoLabelSet},
    metrics::MetricType,
    registry::Registry,
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

    /// Registers the counters; statuses never seen are left out of the exposition.
    pub fn register(self: &Arc<Self>, registry: &mut Registry) {
        registry.register_collector(Box::new(self.clone()));
    }

    /// These metrics alone, as text.
    pub fn render(self: &Arc<Self>) -> String {
        crate::metrics::exposition(|registry| self.register(registry))
    }
}

/// Encoded at scrape time from the atomics, so that the request path never takes the lock
/// a `prometheus-client` label family would.
impl Collector for RequestMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let mut requests = encoder.encode_descriptor(
            "iptrack_http_requests",
            "Requests answered, by status code.",
            None,
            MetricType::Counter,
        )?;
        let by_code = (FIRST_STATUS..=LAST_STATUS)
            .zip(self.by_status.iter())
            .map(|(code, counter)| (code.to_string(), counter))
            .chain(std::iter::once(("other".to_owned(), &self.other_status)));
        for (status, counter) in by_code {
            let n = counter.load(Ordering::Relaxed);
            if n > 0 {
                requests
                    .encode_family(&[("status", status)])?
                    .encode_counter::<NoLabelSet, u64, u64>(&n, None)?;
            }
        }
        encoder
            .encode_descriptor(
                "iptrack_requests_blocked",
                "Requests refused with 403 because the client is blocked.",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, u64, u64>(&self.blocked.load(Ordering::Relaxed), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_counted_by_code_and_strange_codes_are_kept_apart() {
        let metrics = Arc::new(RequestMetrics::default());
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
