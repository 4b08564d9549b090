//! Counters the worker processes keep in Redis, so that any web's `/metrics` can export
//! them: job durations and failures per queue, and geolocation cache hits and misses.
//!
//! Why Redis and not a `/metrics` endpoint per worker: workers are scaled by count
//! (`docker compose up --scale worker=4`) and come and go, so they have no stable address
//! to scrape, and a restarted worker would reset its counters. Kept in one Redis hash, the
//! numbers are cluster-wide totals that survive restarts; each web reads them at scrape
//! time. Every web therefore reports the same totals: aggregate them with `max`, not `sum`.
//!
//! Recording costs one pipelined round trip per job (a job is a whole batch of events), and
//! never fails the job: an unreachable Redis loses that sample only.

use std::{collections::HashMap, time::Duration};

use redis::aio::ConnectionLike;

/// Upper bounds (seconds) of the job-duration histogram buckets; `+Inf` is implied.
pub const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The hash holding every counter: `{IPTRACK_REDIS_PREFIX}:metrics`.
pub fn metrics_key(prefix: &str) -> String {
    format!("{prefix}:metrics")
}

/// Counts one finished job of `queue` that took `elapsed` and succeeded or failed.
pub async fn record_job<C: ConnectionLike + Send>(
    conn: &mut C,
    prefix: &str,
    queue: &str,
    elapsed: Duration,
    succeeded: bool,
) -> Result<(), redis::RedisError> {
    let key = metrics_key(prefix);
    let micros = i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX);
    let seconds = elapsed.as_secs_f64();
    // Buckets are stored non-cumulative (one increment per job); rendering sums them.
    let bucket = DURATION_BUCKETS
        .iter()
        .position(|bound| seconds <= *bound)
        .map_or_else(|| "inf".to_owned(), |i| i.to_string());
    let mut pipe = redis::pipe();
    pipe.hincr(&key, format!("job|{queue}|count"), 1)
        .ignore()
        .hincr(&key, format!("job|{queue}|sum_us"), micros)
        .ignore()
        .hincr(&key, format!("job|{queue}|bucket|{bucket}"), 1)
        .ignore();
    if !succeeded {
        pipe.hincr(&key, format!("job|{queue}|failures"), 1)
            .ignore();
    }
    pipe.query_async(conn).await
}

/// Counts geolocation cache lookups (the request-log job reads the cache for each batch's
/// distinct public addresses): `hits` answered from the cache, `misses` not.
pub async fn record_geo_cache<C: ConnectionLike + Send>(
    conn: &mut C,
    prefix: &str,
    hits: u64,
    misses: u64,
) -> Result<(), redis::RedisError> {
    redis::pipe()
        .cmd("HINCRBY")
        .arg(metrics_key(prefix))
        .arg("geo|cache_hits")
        .arg(hits)
        .ignore()
        .cmd("HINCRBY")
        .arg(metrics_key(prefix))
        .arg("geo|cache_misses")
        .arg(misses)
        .ignore()
        .query_async(conn)
        .await
}

/// Durations and failures of one queue's jobs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobDurations {
    pub count: u64,
    pub failures: u64,
    pub sum_seconds: f64,
    /// Cumulative counts per [`DURATION_BUCKETS`] bound (same length), Prometheus style.
    pub cumulative_buckets: Vec<u64>,
}

/// Everything the workers recorded.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterCounters {
    /// By queue name, sorted.
    pub jobs: Vec<(String, JobDurations)>,
    pub geo_cache_hits: u64,
    pub geo_cache_misses: u64,
}

impl ClusterCounters {
    /// Reads the counters (one `HGETALL`).
    pub async fn read<C: ConnectionLike + Send>(
        conn: &mut C,
        prefix: &str,
    ) -> Result<Self, redis::RedisError> {
        let fields: HashMap<String, i64> = redis::cmd("HGETALL")
            .arg(metrics_key(prefix))
            .query_async(conn)
            .await?;
        Ok(Self::from_fields(&fields))
    }

    fn from_fields(fields: &HashMap<String, i64>) -> Self {
        let non_negative = |v: i64| u64::try_from(v).unwrap_or(0);
        let mut jobs: HashMap<String, (JobDurations, Vec<u64>)> = HashMap::new();
        let mut counters = Self::default();
        for (field, value) in fields {
            let parts: Vec<&str> = field.split('|').collect();
            match parts.as_slice() {
                ["geo", "cache_hits"] => counters.geo_cache_hits = non_negative(*value),
                ["geo", "cache_misses"] => counters.geo_cache_misses = non_negative(*value),
                ["job", queue, rest @ ..] => {
                    let (durations, buckets) =
                        jobs.entry((*queue).to_owned()).or_insert_with(|| {
                            (JobDurations::default(), vec![0; DURATION_BUCKETS.len() + 1])
                        });
                    match rest {
                        ["count"] => durations.count = non_negative(*value),
                        ["failures"] => durations.failures = non_negative(*value),
                        ["sum_us"] => durations.sum_seconds = *value as f64 / 1e6,
                        ["bucket", "inf"] => buckets[DURATION_BUCKETS.len()] = non_negative(*value),
                        ["bucket", index] => {
                            if let Some(slot) =
                                index.parse::<usize>().ok().and_then(|i| buckets.get_mut(i))
                            {
                                *slot = non_negative(*value);
                            }
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        let mut jobs: Vec<(String, JobDurations)> = jobs
            .into_iter()
            .map(|(queue, (mut durations, buckets))| {
                let mut total = 0;
                durations.cumulative_buckets = buckets[..DURATION_BUCKETS.len()]
                    .iter()
                    .map(|n| {
                        total += n;
                        total
                    })
                    .collect();
                (queue, durations)
            })
            .collect();
        jobs.sort_by(|a, b| a.0.cmp(&b.0));
        counters.jobs = jobs;
        counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_fields_become_cumulative_buckets() {
        let fields: HashMap<String, i64> = [
            ("job|request-logs|count", 3),
            ("job|request-logs|failures", 1),
            ("job|request-logs|sum_us", 1_500_000),
            ("job|request-logs|bucket|0", 1),
            ("job|request-logs|bucket|7", 1),
            ("job|request-logs|bucket|inf", 1),
            ("geo|cache_hits", 5),
            ("unknown|field", 9),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let counters = ClusterCounters::from_fields(&fields);
        assert_eq!(counters.geo_cache_hits, 5);
        assert_eq!(counters.geo_cache_misses, 0);
        let (queue, jobs) = &counters.jobs[0];
        assert_eq!(queue, "request-logs");
        assert_eq!((jobs.count, jobs.failures), (3, 1));
        assert!((jobs.sum_seconds - 1.5).abs() < 1e-9);
        assert_eq!(jobs.cumulative_buckets.len(), DURATION_BUCKETS.len());
        assert_eq!(jobs.cumulative_buckets[0], 1);
        assert_eq!(jobs.cumulative_buckets[6], 1);
        assert_eq!(jobs.cumulative_buckets[7], 2);
        // The job beyond the last bound appears only in +Inf, which is `count`.
        assert_eq!(*jobs.cumulative_buckets.last().unwrap_or(&0), 2);
    }
}
