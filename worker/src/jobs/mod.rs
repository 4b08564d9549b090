//! One file per job, holding the whole job: its apalis handler and all the work it does
//! (geolocation's steps included; `crate::geo` holds only the providers and the cache).

pub mod deliver_notice;
pub mod flag_suspicious_ips;
pub mod geolocate;
pub mod purge_logs;
pub mod refresh_feed;
pub mod request_logs;
pub mod request_summaries;

use std::time::Instant;

use crate::context::JobContext;

/// Counts a finished job in the cluster-wide metrics (`iptrack_core::job_metrics`). A
/// failure to record is logged at debug level and otherwise ignored: metrics never fail or
/// delay a job beyond one Redis round trip.
pub(crate) async fn record_outcome(ctx: &JobContext, queue: &str, started: Instant, ok: bool) {
    let mut redis = ctx.redis.clone();
    if let Err(error) = iptrack_core::job_metrics::record_job(
        &mut redis,
        &ctx.redis_prefix,
        queue,
        started.elapsed(),
        ok,
    )
    .await
    {
        tracing::debug!(%error, queue, "cannot record job metrics");
    }
}
