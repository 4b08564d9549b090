//! Keeps one apalis worker running: restarts it after it ends with an error, with
//! exponential back-off and a fresh unique name.
//!
//! An apalis-redis worker ends at the first Redis error (a dropped connection, a failed
//! fetch). Restarting it at once under the same name fails registration ("worker is still
//! active") and, in a loop, spins thousands of times a second while Redis is away. The
//! back-off bounds that to a few attempts; the new name lets registration succeed. The
//! previous incarnation's in-flight jobs return to the queue through orphan recovery after
//! heartbeat × missed heartbeats.

use std::{future::Future, time::Duration};

use iptrack_core::{queue::unique_worker_name, redis_status};
// Tokio's clock, so the back-off's tests run minutes of failures on paused time.
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// First delay before a restart; doubled after each failure ...
pub const RESTART_MIN: Duration = Duration::from_millis(100);
/// ... up to this.
pub const RESTART_MAX: Duration = Duration::from_secs(10);
/// A worker that ran this long before failing restarts after the minimum delay again.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Runs `start_worker(name)` until `shutdown`, restarting it with back-off whenever it
/// returns before then. The name ends in the generation (0 for the first start), so the
/// registered names tell how often a worker was restarted.
pub async fn supervise<F, Fut, E>(
    queue: &'static str,
    index: usize,
    shutdown: CancellationToken,
    mut start_worker: F,
) where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut delay = RESTART_MIN;
    for generation in 0.. {
        if shutdown.is_cancelled() {
            return;
        }
        let name = unique_worker_name(queue, index, generation);
        let started = Instant::now();
        let result = start_worker(name.clone()).await;
        if shutdown.is_cancelled() {
            return;
        }
        if started.elapsed() >= HEALTHY_RUN {
            delay = RESTART_MIN;
        }
        match result {
            Ok(()) => tracing::warn!(worker = %name, queue, "worker stopped; restarting"),
            // An apalis-redis worker ends with an error only when a Redis call failed:
            // one report per process names the server, the details stay at debug.
            Err(error) => {
                redis_status::unreachable("worker", &error);
                tracing::debug!(
                    worker = %name,
                    queue,
                    restart_in_ms = delay.as_millis() as u64,
                    "worker failed: {error}"
                );
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return,
        }
        delay = (delay * 2).min(RESTART_MAX);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    };

    use super::*;

    #[tokio::test]
    async fn a_worker_that_keeps_failing_is_restarted_with_back_off_under_a_new_name() {
        let (starts, names) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(std::sync::Mutex::new(Vec::new())),
        );
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            stop.cancel();
        });
        let (counted, named) = (starts.clone(), names.clone());
        supervise("test-queue", 0, shutdown, move |name| {
            counted.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut names) = named.lock() {
                names.push(name);
            }
            async { Err::<(), _>("redis away") }
        })
        .await;
        // Delays of 100, 200, 400 and 800 ms: at most 4 starts fit in a second (sleeps may
        // run long, never short); a restart loop without back-off makes thousands.
        let starts = starts.load(Ordering::Relaxed);
        assert!((1..=4).contains(&starts), "{starts} starts in 1 s");
        let names = names.lock().map(|n| n.clone()).unwrap_or_default();
        let generations: Vec<&str> = names.iter().filter_map(|n| n.rsplit('-').next()).collect();
        let expected: Vec<String> = (0..starts).map(|g| g.to_string()).collect();
        assert_eq!(generations, expected);
    }
}
