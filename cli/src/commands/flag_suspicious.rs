//! `iptrack flag-suspicious`: enqueue a flag-suspicious-ips job now, outside the schedule.

use crate::output::say;
use anyhow::Context;
use chrono::{DateTime, Utc};
use iptrack_core::{
    Settings,
    jobs::{FLAG_SUSPICIOUS_IPS_QUEUE, FlagSuspiciousIps},
    queue::{self, JobQueue},
};

/// Enqueues the window of `IPTRACK_FLAG_WINDOW_SECS` that ends at `window_end` (default:
/// now). Re-running a window, or an overlapping one, is harmless: a flag is an incident that
/// later windows extend (see `flag_suspicious_ips`).
pub async fn run(settings: &Settings, window_end: Option<DateTime<Utc>>) -> anyhow::Result<()> {
    let job = FlagSuspiciousIps::ending_at(
        window_end.unwrap_or_else(Utc::now),
        settings.schedules.flag_window,
    )?;
    let conn = queue::connect_to(&settings.redis).context("REDIS_URL")?;
    let mut jobs = JobQueue::new(
        conn,
        queue::queue_config(
            &settings.redis.prefix,
            &settings.worker,
            FLAG_SUSPICIOUS_IPS_QUEUE,
        ),
    );
    jobs.push(&[job]).await.context("cannot reach Redis")?;
    say!(
        "enqueued flag-suspicious-ips for [{}, {})",
        job.window_start.to_rfc3339(),
        job.window_end.to_rfc3339()
    );
    Ok(())
}
