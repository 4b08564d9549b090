//! The bounded in-process buffer between the middleware and Redis.
//!
//! The middleware only ever calls [`LogSink::record`], a non-blocking `try_send` on a bounded
//! channel. When the buffer is full the event is dropped and counted: the application keeps
//! serving at full speed and memory stays bounded. A batcher task (batcher.rs) drains the
//! channel into batches and pushes them to Redis, retrying while Redis is away.

use std::{sync::Arc, time::Duration};

use iptrack_core::{
    jobs::{LogEvent, REQUEST_LOGS_QUEUE, RequestLogBatch},
    queue::{self, JobQueue},
    settings::LogPipelineSettings,
    throttle::RateLimitedWarning,
};
use redis::aio::ConnectionManager;
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;

pub use crate::batcher::FINAL_FLUSH_GRACE;
use crate::{batcher, metrics::PipelineMetrics};

/// How often, at most, a full buffer is reported in the log.
const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// The write end of the buffer; cheap to clone, one per middleware instance.
#[derive(Debug, Clone)]
pub struct LogSink {
    tx: mpsc::Sender<LogEvent>,
    metrics: Arc<PipelineMetrics>,
    drop_warning: Arc<RateLimitedWarning>,
}

impl LogSink {
    /// Hands `event` to the buffer without waiting. A full buffer drops it (counted in
    /// `iptrack_log_events_dropped_total`, warned about at most every 10 s).
    pub fn record(&self, event: LogEvent) {
        match self.tx.try_send(event) {
            Ok(()) => PipelineMetrics::add(&self.metrics.events_buffered, 1),
            Err(_) => {
                PipelineMetrics::add(&self.metrics.events_dropped, 1);
                if self.drop_warning.should_fire() {
                    tracing::warn!(
                        capacity = self.tx.max_capacity(),
                        dropped_total = self.metrics.events_dropped.get(),
                        "request-log buffer full; dropping events until Redis catches up"
                    );
                }
            }
        }
    }

    /// Events waiting in the buffer now.
    pub fn buffered(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    pub fn metrics(&self) -> &PipelineMetrics {
        &self.metrics
    }
}

/// The buffer plus its batcher task.
#[derive(Debug)]
pub struct LogPipeline {
    sink: LogSink,
    stop: CancellationToken,
    batcher: JoinHandle<()>,
}

impl LogPipeline {
    /// Starts the batcher, pushing batches onto the `request-logs` queue under
    /// `redis_prefix` (`IPTRACK_REDIS_PREFIX`) over `conn`.
    pub fn to_redis(
        limits: &LogPipelineSettings,
        conn: ConnectionManager,
        redis_prefix: &str,
    ) -> Self {
        Self::start(
            limits,
            JobQueue::new(
                conn,
                queue::producer_config(redis_prefix, REQUEST_LOGS_QUEUE),
            ),
        )
    }

    /// Starts the batcher, pushing batches onto `queue` (the `request-logs` queue) within
    /// the bounds of `limits`. Must be called inside a Tokio runtime.
    pub fn start(limits: &LogPipelineSettings, queue: JobQueue<RequestLogBatch>) -> Self {
        let limits = *limits;
        let (tx, rx) = mpsc::channel(limits.buffer_capacity);
        let metrics = Arc::new(PipelineMetrics::default());
        let stop = CancellationToken::new();
        let batcher = tokio::spawn(batcher::run(
            rx,
            queue,
            limits,
            metrics.clone(),
            stop.clone(),
        ));
        Self {
            sink: LogSink {
                tx,
                metrics,
                drop_warning: Arc::new(RateLimitedWarning::new(DROP_WARNING_INTERVAL)),
            },
            stop,
            batcher,
        }
    }

    pub fn sink(&self) -> LogSink {
        self.sink.clone()
    }

    /// Tells the batcher to stop and deliver what it holds, without waiting for it: what a
    /// guard dropped without `shutdown` does. The delivery goes on only while the runtime
    /// runs.
    pub(crate) fn stop_without_waiting(&self) {
        self.stop.cancel();
    }

    /// Stops accepting events, delivers what the buffer holds (trying for at most
    /// [`FINAL_FLUSH_GRACE`]), and waits for the batcher to finish.
    pub async fn finish(self) {
        self.stop.cancel();
        if let Err(error) = self.batcher.await {
            tracing::error!(%error, "request-log batcher task failed");
        }
    }
}
