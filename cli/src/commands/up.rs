//! `iptrack up`: the whole system in one process, for a single machine or a first try.
//!
//! Finds or starts a Redis (see `private_redis`), applies migrations, starts the workers
//! and the scheduler, then the web server. On SIGINT/SIGTERM the web stops first and
//! flushes its log buffer to Redis; workers and scheduler stop after it (each worker hands
//! back the jobs it holds), and a private Redis last, so nothing the web accepted is left
//! only in memory.

mod private_redis;

use iptrack_core::{Settings, redis_status, shutdown};
use iptrack_web::{Application, WebOptions};
use tokio_util::sync::CancellationToken;

use super::migrate;

pub use private_redis::NoRedis;

pub async fn run(settings: &Settings) -> anyhow::Result<()> {
    let mut settings = settings.clone();
    let private = private_redis::choose(&mut settings).await?;
    redis_status::init(&settings.redis.url);
    let result = run_with(&settings).await;
    if let Some(private) = private {
        private.stop().await;
    }
    result
}

async fn run_with(settings: &Settings) -> anyhow::Result<()> {
    migrate::run(settings).await?;

    let stop_web = CancellationToken::new();
    shutdown::cancel_on_signal(stop_web.clone());
    let stop_workers = CancellationToken::new();

    let workers = iptrack_worker::start(settings, stop_workers.clone()).await?;
    let scheduler = iptrack_scheduler::start(settings, stop_workers.clone()).await?;
    let app = Application::build(settings, WebOptions::default()).await?;
    tracing::info!(
        "iptrack is up: http://{}:{}",
        settings.web.bind.ip(),
        app.port()
    );

    let served = app.run_until_stopped(stop_web).await;
    stop_workers.cancel();
    workers.wait().await;
    scheduler.wait().await;
    served
}
