//! Housekeeping of apalis-redis's sets, run by every worker process once a second.
//!
//! - Due retries are moved from `:scheduled` to the active list in chunks, so apalis-redis's
//!   fetch never meets the 8,000 due jobs its single `unpack` cannot carry.
//! - Completed jobs lose their payloads, and their traces beyond a fixed number are
//!   forgotten; apalis-redis keeps both forever.
//! - Live workers' metadata hashes get a TTL, renewed here, so a stopped worker's expires;
//!   apalis-redis never removes them.
//!
//! Several worker processes running this at once is harmless: each step is one atomic
//! script.

use std::time::Duration;

use iptrack_core::{
    queue::{self, QueueConfig},
    redis_status,
};
use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

pub const INTERVAL: Duration = Duration::from_secs(1);

/// One pass over `queues`.
pub async fn run_once(
    conn: &mut ConnectionManager,
    queues: &[QueueConfig],
) -> Result<(), redis::RedisError> {
    for config in queues {
        let promoted = queue::promote_due(conn, config).await?;
        if promoted > 0 {
            tracing::debug!(
                queue = config.queue.as_ref(),
                promoted,
                "due retries re-queued"
            );
        }
        queue::trim_done(conn, config).await?;
        queue::expire_worker_keys(conn, config).await?;
    }
    Ok(())
}

/// Runs [`run_once`] every [`INTERVAL`] until `shutdown`.
pub async fn run(
    mut conn: ConnectionManager,
    queues: Vec<QueueConfig>,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(INTERVAL);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        match run_once(&mut conn, &queues).await {
            Ok(()) => redis_status::answered(),
            Err(error) => redis_status::report("queue maintenance", &error),
        }
    }
}
