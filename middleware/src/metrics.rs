//! Everything `/metrics` serves, registered with and encoded by `prometheus-client`.
//!
//! One scrape builds one [`Registry`]: each part of the process registers what it counts
//! (the log pipeline here, the requests in `request_metrics`, the rate limiter here, the
//! cluster-wide numbers read from Redis in `queue_metrics`), and [`exposition`] encodes it
//! in the Prometheus text format (0.0.4). The hot path only ever adds to an atomic counter;
//! the registry exists for the length of a scrape.
//!
//! Names, types, labels and HELP texts are a contract (README, "Metrics"): the encoder
//! appends `_total` to counters and a full stop to the help given to [`Registry::register`],
//! so both are left off here.

use prometheus_client::{
    encoding::prometheus_text,
    metrics::{counter::Counter, gauge::ConstGauge},
    registry::Registry,
};

/// The Prometheus text exposition of what `register` puts into a fresh registry.
pub fn exposition(register: impl FnOnce(&mut Registry)) -> String {
    let mut registry = Registry::default();
    register(&mut registry);
    let mut out = String::new();
    // Encoding into a String has no I/O that could fail.
    let _ = prometheus_text::encode(&mut out, &registry);
    out
}

/// Registers counters given as (name without `_total`, help without its full stop).
fn register_counters(registry: &mut Registry, counters: &[(&str, &str, &Counter)]) {
    for &(name, help, counter) in counters {
        registry.register(name, help, counter.clone());
    }
}

/// A gauge's value as the encoder takes it.
pub fn gauge(value: usize) -> ConstGauge {
    ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX))
}

/// Counters shared by the middleware (hot path: relaxed atomic adds only) and the batcher.
#[derive(Debug, Default)]
pub struct PipelineMetrics {
    /// Events accepted into the buffer.
    pub events_buffered: Counter,
    /// Events dropped because the buffer was full (or the pipeline had stopped).
    pub events_dropped: Counter,
    /// Events pushed to Redis inside a batch.
    pub events_pushed: Counter,
    /// Batches pushed to Redis.
    pub batches_pushed: Counter,
    /// Failed push attempts (each is retried).
    pub push_failures: Counter,
}

impl PipelineMetrics {
    pub(crate) fn add(counter: &Counter, n: u64) {
        counter.inc_by(n);
    }

    /// Registers the counters, and the buffer's fill `buffered_now` as a gauge.
    pub fn register(&self, registry: &mut Registry, buffered_now: usize) {
        let counters = [
            (
                "iptrack_log_events_buffered",
                "Request-log events accepted into the in-process buffer",
                &self.events_buffered,
            ),
            (
                "iptrack_log_events_dropped",
                "Request-log events dropped because the buffer was full",
                &self.events_dropped,
            ),
            (
                "iptrack_log_events_pushed",
                "Request-log events pushed to the request-logs queue",
                &self.events_pushed,
            ),
            (
                "iptrack_log_batches_pushed",
                "Batches pushed to the request-logs queue",
                &self.batches_pushed,
            ),
            (
                "iptrack_log_push_failures",
                "Failed attempts to push a batch to Redis (each is retried)",
                &self.push_failures,
            ),
        ];
        register_counters(registry, &counters);
        registry.register(
            "iptrack_log_buffer_events",
            "Request-log events waiting in the buffer",
            gauge(buffered_now),
        );
    }

    /// These metrics alone, as text.
    pub fn render(&self, buffered_now: usize) -> String {
        exposition(|registry| self.register(registry, buffered_now))
    }
}

/// Counters of the rate limiter (`ratelimit/`), on the same `/metrics` page.
#[derive(Debug, Default)]
pub struct RateLimitMetrics {
    /// Requests refused with 429.
    pub limited: Counter,
    /// Decisions taken by the in-memory fallback because Redis was unreachable.
    pub fallback_decisions: Counter,
    /// Redis calls of the limiter that failed or timed out.
    pub redis_failures: Counter,
    /// 1 while the fallback is in use.
    fallback_active: prometheus_client::metrics::gauge::Gauge,
}

impl RateLimitMetrics {
    pub(crate) fn add(counter: &Counter) {
        counter.inc();
    }

    /// Whether the in-memory fallback is deciding now; the limiter sets it (public for the
    /// `/metrics` contract test, which renders every metric).
    pub fn set_fallback_active(&self, active: bool) {
        self.fallback_active.set(i64::from(active));
    }

    pub fn register(&self, registry: &mut Registry) {
        let counters = [
            (
                "iptrack_rate_limited",
                "Requests refused with 429 by a rate limit",
                &self.limited,
            ),
            (
                "iptrack_rate_limit_fallback_decisions",
                "Rate-limit decisions taken in memory because Redis was unreachable",
                &self.fallback_decisions,
            ),
            (
                "iptrack_rate_limit_redis_failures",
                "Rate-limit calls to Redis that failed or timed out",
                &self.redis_failures,
            ),
        ];
        register_counters(registry, &counters);
        registry.register(
            "iptrack_rate_limit_fallback_active",
            "1 while rate limits are counted in memory",
            self.fallback_active.clone(),
        );
    }

    /// These metrics alone, as text.
    pub fn render(&self) -> String {
        exposition(|registry| self.register(registry))
    }
}
