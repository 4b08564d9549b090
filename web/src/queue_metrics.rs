//! The cluster-wide part of `/metrics`, read from Redis at scrape time: each queue's depth
//! (the numbers `iptrack queues` shows) and the counters the workers record there (job
//! durations and failures, geolocation cache hits and misses; see
//! `iptrack_core::job_metrics` for why workers publish through Redis).

use std::fmt::Write;

use iptrack_core::{
    job_metrics::{ClusterCounters, DURATION_BUCKETS},
    jobs::ALL_QUEUES,
    queue_stats::QueueStats,
};
use redis::aio::ConnectionLike;

/// Reads Redis and renders the cluster section. When Redis cannot be read, only
/// `iptrack_cluster_metrics_up 0` is rendered, so the scrape still succeeds with the
/// process's own counters.
pub async fn render<C: ConnectionLike + Send>(conn: &mut C, prefix: &str) -> String {
    let read = async {
        let queues = QueueStats::read_all(conn, prefix, ALL_QUEUES).await?;
        let counters = ClusterCounters::read(conn, prefix).await?;
        Ok::<_, redis::RedisError>((queues, counters))
    };
    match read.await {
        Ok((queues, counters)) => {
            let mut out = up_line(1);
            render_queues(&mut out, &queues);
            render_counters(&mut out, &counters);
            out
        }
        Err(error) => {
            tracing::debug!(%error, "cannot read cluster metrics from Redis");
            render_unavailable()
        }
    }
}

/// The cluster section when Redis cannot be reached at all.
pub fn render_unavailable() -> String {
    up_line(0)
}

fn up_line(up: u8) -> String {
    format!(
        "# HELP iptrack_cluster_metrics_up Whether the queue and worker metrics could be read from Redis.\n\
         # TYPE iptrack_cluster_metrics_up gauge\niptrack_cluster_metrics_up {up}\n"
    )
}

fn render_queues(out: &mut String, queues: &[QueueStats]) {
    let _ = writeln!(
        out,
        "# HELP iptrack_queue_jobs Jobs in each queue, by state (due, scheduled, in_flight, done, dead).\n\
         # TYPE iptrack_queue_jobs gauge"
    );
    for q in queues {
        for (state, n) in [
            ("due", q.due),
            ("scheduled", q.scheduled),
            ("in_flight", q.in_flight),
            ("done", q.done),
            ("dead", q.dead),
        ] {
            let _ = writeln!(
                out,
                "iptrack_queue_jobs{{queue=\"{}\",state=\"{state}\"}} {n}",
                q.queue
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP iptrack_queue_workers Workers registered on each queue.\n\
         # TYPE iptrack_queue_workers gauge"
    );
    for q in queues {
        let _ = writeln!(
            out,
            "iptrack_queue_workers{{queue=\"{}\"}} {}",
            q.queue,
            q.workers.len()
        );
    }
}

fn render_counters(out: &mut String, counters: &ClusterCounters) {
    let _ = writeln!(
        out,
        "# HELP iptrack_job_duration_seconds Time jobs took, by queue (all workers).\n\
         # TYPE iptrack_job_duration_seconds histogram"
    );
    for (queue, jobs) in &counters.jobs {
        for (bound, n) in DURATION_BUCKETS.iter().zip(&jobs.cumulative_buckets) {
            let _ = writeln!(
                out,
                "iptrack_job_duration_seconds_bucket{{queue=\"{queue}\",le=\"{bound}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "iptrack_job_duration_seconds_bucket{{queue=\"{queue}\",le=\"+Inf\"}} {}\n\
             iptrack_job_duration_seconds_sum{{queue=\"{queue}\"}} {}\n\
             iptrack_job_duration_seconds_count{{queue=\"{queue}\"}} {}",
            jobs.count, jobs.sum_seconds, jobs.count
        );
    }
    let _ = writeln!(
        out,
        "# HELP iptrack_job_failures_total Jobs that ended with an error (each is retried), by queue.\n\
         # TYPE iptrack_job_failures_total counter"
    );
    for (queue, jobs) in &counters.jobs {
        let _ = writeln!(
            out,
            "iptrack_job_failures_total{{queue=\"{queue}\"}} {}",
            jobs.failures
        );
    }
    let _ = writeln!(
        out,
        "# HELP iptrack_geo_cache_hits_total Geolocation lookups answered from the Redis cache.\n\
         # TYPE iptrack_geo_cache_hits_total counter\n\
         iptrack_geo_cache_hits_total {}\n\
         # HELP iptrack_geo_cache_misses_total Geolocation lookups that went to the provider.\n\
         # TYPE iptrack_geo_cache_misses_total counter\n\
         iptrack_geo_cache_misses_total {}",
        counters.geo_cache_hits, counters.geo_cache_misses
    );
}
