//! Counters of the request-log pipeline, rendered in Prometheus text format at `/metrics`.

use std::{
    fmt::Write,
    sync::atomic::{AtomicU64, Ordering},
};

/// Counters shared by the middleware (hot path: relaxed atomic adds only) and the batcher.
#[derive(Debug, Default)]
pub struct PipelineMetrics {
    /// Events accepted into the buffer.
    pub events_buffered: AtomicU64,
    /// Events dropped because the buffer was full (or the pipeline had stopped).
    pub events_dropped: AtomicU64,
    /// Events pushed to Redis inside a batch.
    pub events_pushed: AtomicU64,
    /// Batches pushed to Redis.
    pub batches_pushed: AtomicU64,
    /// Failed push attempts (each is retried).
    pub push_failures: AtomicU64,
}

impl PipelineMetrics {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Prometheus text exposition of the counters; `buffered_now` is the buffer's fill.
    pub fn render(&self, buffered_now: usize) -> String {
        let mut out = String::new();
        let counters = [
            (
                "iptrack_log_events_buffered_total",
                "Request-log events accepted into the in-process buffer.",
                &self.events_buffered,
            ),
            (
                "iptrack_log_events_dropped_total",
                "Request-log events dropped because the buffer was full.",
                &self.events_dropped,
            ),
            (
                "iptrack_log_events_pushed_total",
                "Request-log events pushed to the request-logs queue.",
                &self.events_pushed,
            ),
            (
                "iptrack_log_batches_pushed_total",
                "Batches pushed to the request-logs queue.",
                &self.batches_pushed,
            ),
            (
                "iptrack_log_push_failures_total",
                "Failed attempts to push a batch to Redis (each is retried).",
                &self.push_failures,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP iptrack_log_buffer_events Request-log events waiting in the buffer.\n\
             # TYPE iptrack_log_buffer_events gauge\niptrack_log_buffer_events {buffered_now}"
        );
        out
    }
}

/// Counters of the rate limiter (`web/src/ratelimit/`), on the same `/metrics` page.
#[derive(Debug, Default)]
pub struct RateLimitMetrics {
    /// Requests refused with 429.
    pub limited: AtomicU64,
    /// Decisions taken by the in-memory fallback because Redis was unreachable.
    pub fallback_decisions: AtomicU64,
    /// Redis calls of the limiter that failed or timed out.
    pub redis_failures: AtomicU64,
    /// 1 while the fallback is in use.
    fallback_active: AtomicU64,
}

impl RateLimitMetrics {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_fallback_active(&self, active: bool) {
        self.fallback_active
            .store(u64::from(active), Ordering::Relaxed);
    }

    /// Prometheus text exposition of the rate-limit counters.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters = [
            (
                "iptrack_rate_limited_total",
                "Requests refused with 429 by a rate limit.",
                &self.limited,
            ),
            (
                "iptrack_rate_limit_fallback_decisions_total",
                "Rate-limit decisions taken in memory because Redis was unreachable.",
                &self.fallback_decisions,
            ),
            (
                "iptrack_rate_limit_redis_failures_total",
                "Rate-limit calls to Redis that failed or timed out.",
                &self.redis_failures,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP iptrack_rate_limit_fallback_active 1 while rate limits are counted in memory.\n\
             # TYPE iptrack_rate_limit_fallback_active gauge\niptrack_rate_limit_fallback_active {}",
            self.fallback_active.load(Ordering::Relaxed)
        );
        out
    }
}
