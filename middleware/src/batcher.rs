//! Drains the log buffer into batches and pushes them onto the `request-logs` queue.
//!
//! A batch closes at `IPTRACK_BATCH_MAX_EVENTS` events or `IPTRACK_BATCH_MAX_WAIT_MS` after
//! its first event. A push that fails is retried with back-off, forever while running; the
//! buffer meanwhile absorbs new events up to its bound. The batch keeps its id across
//! retries, so a push that reached Redis although its reply was lost is written once.

use std::{sync::Arc, time::Duration};

use iptrack_core::{
    jobs::{LogEvent, RequestLogBatch},
    queue::{JobQueue, QueueError},
    redis_status,
    settings::LogPipelineSettings,
    throttle::RateLimitedWarning,
};
use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::metrics::PipelineMetrics;

/// Longest a stopping pipeline keeps trying to deliver what it holds.
pub const FINAL_FLUSH_GRACE: Duration = Duration::from_secs(10);

/// How often a filling batch takes the events that have arrived. Awaiting the channel
/// instead wakes this task for nearly every event, and waking a task that sleeps on another
/// thread is a system call made by the sender, on the request path: measured, that was
/// most of what tracking cost a fast handler (BENCHMARKS.md, "Overhead"). A batch may close
/// up to this much after `IPTRACK_BATCH_MAX_WAIT_MS`.
const COLLECT_INTERVAL: Duration = Duration::from_millis(5);

const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);

pub(crate) async fn run(
    mut rx: mpsc::Receiver<LogEvent>,
    mut queue: JobQueue<RequestLogBatch>,
    limits: LogPipelineSettings,
    metrics: Arc<PipelineMetrics>,
    stop: CancellationToken,
) {
    let max = limits.batch_max_events;
    let failure_warning = RateLimitedWarning::new(Duration::from_secs(10));
    let mut give_up_at = None;
    loop {
        let mut events = Vec::with_capacity(max);
        if give_up_at.is_none() {
            tokio::select! {
                biased;
                received = rx.recv_many(&mut events, max) => {
                    if received == 0 {
                        break; // every sink dropped
                    }
                }
                _ = stop.cancelled() => {}
            }
        }
        if stop.is_cancelled() {
            // No new events from here on; what is buffered is still delivered.
            rx.close();
            give_up_at.get_or_insert_with(|| Instant::now() + FINAL_FLUSH_GRACE);
        }
        let batch_deadline = Instant::now() + limits.batch_max_wait;
        loop {
            take_waiting(&mut rx, &mut events, max);
            let now = Instant::now();
            // Stopping: what is there is taken; no waiting for more.
            let stopping = give_up_at.is_some() || stop.is_cancelled();
            if events.len() >= max || stopping || now >= batch_deadline {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep((batch_deadline - now).min(COLLECT_INTERVAL)) => {}
                _ = stop.cancelled() => {}
            }
        }
        if events.is_empty() {
            break;
        }
        let count = events.len() as u64;
        let batch = RequestLogBatch::new(events);
        if push_until_delivered(
            &mut queue,
            &batch,
            &metrics,
            &failure_warning,
            &stop,
            &mut give_up_at,
        )
        .await
        {
            PipelineMetrics::add(&metrics.batches_pushed, 1);
            PipelineMetrics::add(&metrics.events_pushed, count);
        } else {
            let remaining = count + rx.len() as u64;
            PipelineMetrics::add(&metrics.events_dropped, remaining);
            tracing::error!(
                lost_events = remaining,
                "request-log pipeline stopped before Redis accepted its buffered events"
            );
            return;
        }
    }
}

/// Moves the events waiting in the buffer into `events`, up to `max`, without waiting.
fn take_waiting(rx: &mut mpsc::Receiver<LogEvent>, events: &mut Vec<LogEvent>, max: usize) {
    while events.len() < max {
        match rx.try_recv() {
            Ok(event) => events.push(event),
            Err(_) => break,
        }
    }
}

/// Pushes `batch`, retrying with back-off. Returns false only when stopping and the final
/// grace period ran out.
async fn push_until_delivered(
    queue: &mut JobQueue<RequestLogBatch>,
    batch: &RequestLogBatch,
    metrics: &PipelineMetrics,
    failure_warning: &RateLimitedWarning,
    stop: &CancellationToken,
    give_up_at: &mut Option<Instant>,
) -> bool {
    let mut delay = RETRY_MIN;
    loop {
        match queue.push(std::slice::from_ref(batch)).await {
            Ok(_) => {
                redis_status::answered();
                return true;
            }
            Err(QueueError::Redis(error)) => {
                PipelineMetrics::add(&metrics.push_failures, 1);
                redis_status::report("request-log batcher", &error);
            }
            Err(error) => {
                PipelineMetrics::add(&metrics.push_failures, 1);
                if failure_warning.should_fire() {
                    tracing::warn!(%error, events = batch.events.len(), "cannot push request logs to Redis; retrying");
                }
            }
        }
        if give_up_at.is_none() {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.cancelled() => {
                    *give_up_at = Some(Instant::now() + FINAL_FLUSH_GRACE);
                }
            }
        } else {
            tokio::time::sleep(delay).await;
        }
        if give_up_at.is_some_and(|deadline| Instant::now() >= deadline) {
            return false;
        }
        delay = (delay * 2).min(RETRY_MAX);
    }
}
