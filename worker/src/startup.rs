//! Starting the workers of every queue; used by `iptrack-worker`, `iptrack up` and tests.

use std::sync::Arc;

use anyhow::Context;
use apalis::prelude::{BackendExt, WorkerBuilder};
use apalis_redis::RedisStorage;
use iptrack_core::{
    db,
    jobs::{REQUEST_LOGS_QUEUE, RequestLogBatch},
    queue,
    settings::Settings,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{
    context::JobContext,
    jobs::request_logs,
    maintenance,
    poll::TickStrategy,
    supervisor::{SupervisorStats, supervise},
};

/// The running workers of one process.
#[derive(Debug)]
pub struct RunningWorkers {
    /// Starts of the supervised apalis workers (restarts included).
    pub stats: Arc<SupervisorStats>,
    tasks: JoinSet<()>,
}

impl RunningWorkers {
    /// Waits until every worker has stopped (after the shutdown token is cancelled, each
    /// finishes the job it is running first).
    pub async fn wait(mut self) {
        while let Some(result) = self.tasks.join_next().await {
            if let Err(error) = result {
                tracing::error!(%error, "worker task failed");
            }
        }
    }
}

/// Connects to the database and Redis and starts the workers; they run until `shutdown`.
pub async fn start(
    settings: &Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningWorkers> {
    let db = db::connect(&settings.database_url)
        .await
        .context("cannot connect to the database (DATABASE_URL)")?;
    let conn = queue::connect(&settings.redis_url).context("REDIS_URL")?;
    let context = JobContext { db };
    let request_logs = queue::queue_config(settings, REQUEST_LOGS_QUEUE);

    // Bring a large retry backlog into the active list before any worker fetches.
    if let Err(error) =
        maintenance::run_once(&mut conn.clone(), std::slice::from_ref(&request_logs)).await
    {
        tracing::warn!(%error, "queue maintenance failed at start; the workers retry");
    }

    let stats = Arc::new(SupervisorStats::default());
    let mut tasks = JoinSet::new();
    tasks.spawn(maintenance::run(
        conn.clone(),
        vec![request_logs.clone()],
        shutdown.clone(),
    ));
    let poll_interval = settings.worker.poll_interval;
    for index in 0..settings.worker.concurrency {
        let conn = conn.clone();
        let config = request_logs.clone();
        let context = context.clone();
        let stop = shutdown.clone();
        tasks.spawn(supervise(
            REQUEST_LOGS_QUEUE,
            index,
            stats.clone(),
            shutdown.clone(),
            move |name| {
                let backend = RedisStorage::<RequestLogBatch>::new(conn.clone())
                    .with_config(config.clone())
                    .poll_with_strategy(TickStrategy::new(poll_interval));
                let worker = WorkerBuilder::new(name)
                    .backend(backend)
                    .data(context.clone())
                    .build(request_logs::handle);
                let stop = stop.clone();
                worker.run_until(async move {
                    stop.cancelled().await;
                    Ok::<(), std::io::Error>(())
                })
            },
        ));
    }
    tracing::info!(
        database = settings.database_kind(),
        workers_per_queue = settings.worker.concurrency,
        "iptrack-worker started"
    );
    Ok(RunningWorkers { stats, tasks })
}
