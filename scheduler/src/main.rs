//! `iptrack-scheduler`: enqueues the hourly and daily jobs; never does their work.

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use iptrack_core::{Settings, process, shutdown};
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
    let settings = match process::init("iptrack-scheduler", args.config.as_deref()) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    process::exit_code("iptrack-scheduler", run(settings).await)
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    shutdown::cancel_on_signal(stop.clone());
    iptrack_scheduler::start(&settings, stop)
        .await?
        .wait()
        .await;
    Ok(())
}
