//! `iptrack up`: the whole system in one process, for a single machine or a first try.
//!
//! Applies migrations, starts the workers and the scheduler, then the web server. On
//! SIGINT/SIGTERM the web stops first and flushes its log buffer to Redis; workers and
//! scheduler stop after it, so nothing the web accepted is left only in memory.

use iptrack_core::{Settings, shutdown};
use iptrack_web::{Application, WebOptions};
use tokio_util::sync::CancellationToken;

use super::migrate;

pub async fn run(settings: &Settings) -> anyhow::Result<()> {
    migrate::run(settings).await?;

    let stop_web = CancellationToken::new();
    shutdown::cancel_on_signal(stop_web.clone());
    let stop_workers = CancellationToken::new();

    let workers = iptrack_worker::start(settings, stop_workers.clone()).await?;
    let scheduler = iptrack_scheduler::start(settings, stop_workers.clone()).await?;
    let app = Application::build(settings, WebOptions::default()).await?;
    tracing::info!(
        "iptrack is up: http://{}:{}",
        settings.bind.ip(),
        app.port()
    );

    let served = app.run_until_stopped(stop_web).await;
    stop_workers.cancel();
    workers.wait().await;
    scheduler.wait().await;
    served
}
