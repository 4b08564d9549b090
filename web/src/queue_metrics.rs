//! The cluster-wide part of `/metrics`, read from Redis at scrape time: each queue's depth
//! (the numbers `iptrack queues` shows) and the counters the workers record there (job
//! durations and failures, geolocation cache hits and misses; see
//! `iptrack_core::job_metrics` for why workers publish through Redis).

use std::fmt;

use iptrack_core::{
    job_metrics::{ClusterCounters, DURATION_BUCKETS},
    jobs::ALL_QUEUES,
    queue_stats::QueueStats,
};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet},
    metrics::{MetricType, counter::ConstCounter},
    registry::Registry,
};
use redis::aio::ConnectionLike;

use iptrack_middleware::metrics::gauge;

/// What one scrape read from Redis; `None` when Redis could not be read.
#[derive(Debug, Clone, Default)]
pub struct ClusterSnapshot(Option<(Vec<QueueStats>, ClusterCounters)>);

impl ClusterSnapshot {
    /// Reads the queues and the workers' counters. When Redis cannot be read, the snapshot
    /// is [`ClusterSnapshot::unavailable`]: the scrape still succeeds with the process's
    /// own counters and `iptrack_cluster_metrics_up 0`.
    pub async fn read<C: ConnectionLike + Send>(conn: &mut C, prefix: &str) -> Self {
        let read = async {
            let queues = QueueStats::read_all(conn, prefix, ALL_QUEUES).await?;
            let counters = ClusterCounters::read(conn, prefix).await?;
            Ok::<_, redis::RedisError>((queues, counters))
        };
        match read.await {
            Ok(read) => Self(Some(read)),
            Err(error) => {
                tracing::debug!(%error, "cannot read cluster metrics from Redis");
                Self::unavailable()
            }
        }
    }

    /// The snapshot when Redis cannot be reached at all.
    pub fn unavailable() -> Self {
        Self(None)
    }

    pub fn register(self, registry: &mut Registry) {
        registry.register_collector(Box::new(self));
    }

    /// These metrics alone, as text.
    pub fn render(self) -> String {
        iptrack_middleware::metrics::exposition(|registry| self.register(registry))
    }
}

impl Collector for ClusterSnapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        gauge(usize::from(self.0.is_some())).encode(encoder.encode_descriptor(
            "iptrack_cluster_metrics_up",
            "Whether the queue and worker metrics could be read from Redis.",
            None,
            MetricType::Gauge,
        )?)?;
        let Some((queues, counters)) = &self.0 else {
            return Ok(());
        };
        let mut jobs = encoder.encode_descriptor(
            "iptrack_queue_jobs",
            "Jobs in each queue, by state (due, scheduled, in_flight, done, dead).",
            None,
            MetricType::Gauge,
        )?;
        for q in queues {
            for (state, n) in [
                ("due", q.due),
                ("scheduled", q.scheduled),
                ("in_flight", q.in_flight),
                ("done", q.done),
                ("dead", q.dead),
            ] {
                jobs.encode_family(&[("queue", q.queue.as_str()), ("state", state)])?
                    .encode_gauge(&n)?;
            }
        }
        let mut workers = encoder.encode_descriptor(
            "iptrack_queue_workers",
            "Workers registered on each queue.",
            None,
            MetricType::Gauge,
        )?;
        for q in queues {
            workers
                .encode_family(&[("queue", q.queue.as_str())])?
                .encode_gauge(&q.workers.len())?;
        }
        let mut durations = encoder.encode_descriptor(
            "iptrack_job_duration_seconds",
            "Time jobs took, by queue (all workers).",
            None,
            MetricType::Histogram,
        )?;
        for (queue, jobs) in &counters.jobs {
            // The encoder sums the buckets itself: hand it each bucket's own count.
            let mut below = 0;
            let buckets: Vec<(f64, u64)> = DURATION_BUCKETS
                .iter()
                .zip(&jobs.cumulative_buckets)
                .map(|(&bound, &cumulative)| {
                    let own = cumulative.saturating_sub(below);
                    below = cumulative;
                    (bound, own)
                })
                .collect();
            durations
                .encode_family(&[("queue", queue.as_str())])?
                .encode_histogram::<NoLabelSet>(jobs.sum_seconds, jobs.count, &buckets, None)?;
        }
        let mut failures = encoder.encode_descriptor(
            "iptrack_job_failures",
            "Jobs that ended with an error (each is retried), by queue.",
            None,
            MetricType::Counter,
        )?;
        for (queue, jobs) in &counters.jobs {
            ConstCounter::new(jobs.failures)
                .encode(failures.encode_family(&[("queue", queue.as_str())])?)?;
        }
        for (name, help, value) in [
            (
                "iptrack_geo_cache_hits",
                "Geolocation lookups answered from the Redis cache.",
                counters.geo_cache_hits,
            ),
            (
                "iptrack_geo_cache_misses",
                "Geolocation lookups that went to the provider.",
                counters.geo_cache_misses,
            ),
        ] {
            ConstCounter::new(value).encode(encoder.encode_descriptor(
                name,
                help,
                None,
                MetricType::Counter,
            )?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use iptrack_core::{
        job_metrics::{ClusterCounters, DURATION_BUCKETS, JobDurations},
        queue_stats::QueueStats,
    };

    use super::*;
    use iptrack_middleware::{
        metrics::{PipelineMetrics, RateLimitMetrics},
        request_metrics::RequestMetrics,
    };

    /// Every metric `/metrics` served before prometheus-client, in its order, with the HELP
    /// and TYPE lines as they were written by hand: README documents them, dashboards read
    /// them.
    const CONTRACT: &[(&str, &str, &str)] = &[
        (
            "iptrack_log_events_buffered_total",
            "counter",
            "Request-log events accepted into the in-process buffer.",
        ),
        (
            "iptrack_log_events_dropped_total",
            "counter",
            "Request-log events dropped because the buffer was full.",
        ),
        (
            "iptrack_log_events_pushed_total",
            "counter",
            "Request-log events pushed to the request-logs queue.",
        ),
        (
            "iptrack_log_batches_pushed_total",
            "counter",
            "Batches pushed to the request-logs queue.",
        ),
        (
            "iptrack_log_push_failures_total",
            "counter",
            "Failed attempts to push a batch to Redis (each is retried).",
        ),
        (
            "iptrack_log_buffer_events",
            "gauge",
            "Request-log events waiting in the buffer.",
        ),
        (
            "iptrack_http_requests_total",
            "counter",
            "Requests answered, by status code.",
        ),
        (
            "iptrack_requests_blocked_total",
            "counter",
            "Requests refused with 403 because the client is blocked.",
        ),
        (
            "iptrack_rate_limited_total",
            "counter",
            "Requests refused with 429 by a rate limit.",
        ),
        (
            "iptrack_rate_limit_fallback_decisions_total",
            "counter",
            "Rate-limit decisions taken in memory because Redis was unreachable.",
        ),
        (
            "iptrack_rate_limit_redis_failures_total",
            "counter",
            "Rate-limit calls to Redis that failed or timed out.",
        ),
        (
            "iptrack_rate_limit_fallback_active",
            "gauge",
            "1 while rate limits are counted in memory.",
        ),
        (
            "iptrack_cluster_metrics_up",
            "gauge",
            "Whether the queue and worker metrics could be read from Redis.",
        ),
        (
            "iptrack_queue_jobs",
            "gauge",
            "Jobs in each queue, by state (due, scheduled, in_flight, done, dead).",
        ),
        (
            "iptrack_queue_workers",
            "gauge",
            "Workers registered on each queue.",
        ),
        (
            "iptrack_job_duration_seconds",
            "histogram",
            "Time jobs took, by queue (all workers).",
        ),
        (
            "iptrack_job_failures_total",
            "counter",
            "Jobs that ended with an error (each is retried), by queue.",
        ),
        (
            "iptrack_geo_cache_hits_total",
            "counter",
            "Geolocation lookups answered from the Redis cache.",
        ),
        (
            "iptrack_geo_cache_misses_total",
            "counter",
            "Geolocation lookups that went to the provider.",
        ),
    ];

    fn scrape() -> String {
        let pipeline = PipelineMetrics::default();
        pipeline.events_buffered.inc_by(24);
        pipeline.events_dropped.inc_by(2);
        let requests = Arc::new(RequestMetrics::default());
        requests.count_status(200);
        requests.count_status(404);
        requests.count_blocked();
        let limits = RateLimitMetrics::default();
        limits.limited.inc();
        limits.set_fallback_active(true);
        let mut cumulative_buckets = vec![0; DURATION_BUCKETS.len()];
        for (i, n) in cumulative_buckets.iter_mut().enumerate() {
            *n = if i == 0 { 1 } else { 2 };
        }
        let cluster = ClusterSnapshot(Some((
            vec![QueueStats {
                queue: "request-logs".into(),
                due: 3,
                scheduled: 0,
                in_flight: 1,
                done: 7,
                dead: 0,
                workers: Vec::new(),
            }],
            ClusterCounters {
                jobs: vec![(
                    "request-logs".into(),
                    JobDurations {
                        count: 3,
                        failures: 1,
                        sum_seconds: 1.5,
                        cumulative_buckets,
                    },
                )],
                geo_cache_hits: 5,
                geo_cache_misses: 4,
            },
        )));
        [
            pipeline.render(7),
            requests.render(),
            limits.render(),
            cluster.render(),
        ]
        .concat()
    }

    #[test]
    fn the_exposition_keeps_every_documented_name_type_and_help_text() {
        let text = scrape();
        let described: Vec<&str> = text.lines().filter(|l| l.starts_with('#')).collect();
        let expected: Vec<String> = CONTRACT
            .iter()
            .flat_map(|(name, kind, help)| {
                [
                    format!("# HELP {name} {help}"),
                    format!("# TYPE {name} {kind}"),
                ]
            })
            .collect();
        assert_eq!(described, expected, "{text}");
    }

    #[test]
    fn samples_keep_their_names_labels_and_values() {
        let text = scrape();
        for line in [
            "iptrack_log_events_buffered_total 24",
            "iptrack_log_events_dropped_total 2",
            "iptrack_log_buffer_events 7",
            "iptrack_http_requests_total{status=\"200\"} 1",
            "iptrack_http_requests_total{status=\"404\"} 1",
            "iptrack_requests_blocked_total 1",
            "iptrack_rate_limited_total 1",
            "iptrack_rate_limit_fallback_active 1",
            "iptrack_cluster_metrics_up 1",
            "iptrack_queue_jobs{queue=\"request-logs\",state=\"due\"} 3",
            "iptrack_queue_jobs{queue=\"request-logs\",state=\"in_flight\"} 1",
            "iptrack_queue_jobs{queue=\"request-logs\",state=\"done\"} 7",
            "iptrack_queue_workers{queue=\"request-logs\"} 0",
            "iptrack_job_duration_seconds_bucket{queue=\"request-logs\",le=\"0.005\"} 1",
            "iptrack_job_duration_seconds_bucket{queue=\"request-logs\",le=\"0.01\"} 2",
            "iptrack_job_duration_seconds_bucket{queue=\"request-logs\",le=\"60\"} 2",
            "iptrack_job_duration_seconds_bucket{queue=\"request-logs\",le=\"+Inf\"} 3",
            "iptrack_job_duration_seconds_sum{queue=\"request-logs\"} 1.5",
            "iptrack_job_duration_seconds_count{queue=\"request-logs\"} 3",
            "iptrack_job_failures_total{queue=\"request-logs\"} 1",
            "iptrack_geo_cache_hits_total 5",
            "iptrack_geo_cache_misses_total 4",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        // Statuses never seen are left out.
        assert!(!text.contains("status=\"500\""), "{text}");
    }

    #[test]
    fn without_redis_only_the_up_gauge_describes_the_cluster() {
        let text = ClusterSnapshot::unavailable().render();
        assert_eq!(
            text,
            "# HELP iptrack_cluster_metrics_up Whether the queue and worker metrics could be read from Redis.\n\
             # TYPE iptrack_cluster_metrics_up gauge\n\
             iptrack_cluster_metrics_up 0\n"
        );
    }
}
