//! `iptrack-scheduler`: enqueues the hourly and daily jobs; never does their work.

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use iptrack_core::{Settings, shutdown, telemetry};
use tokio_util::sync::CancellationToken;

/// iptrack's scheduler. Configuration comes from the environment (see README).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// TOML file with the same keys as the environment variables (the environment wins).
    #[arg(long, env = "IPTRACK_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let settings = match Settings::load(args.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("iptrack-scheduler: {error}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.log_format);
    let stop = CancellationToken::new();
    shutdown::cancel_on_signal(stop.clone());
    match iptrack_scheduler::start(&settings, stop).await {
        Ok(scheduler) => {
            scheduler.wait().await;
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!("iptrack-scheduler failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}
