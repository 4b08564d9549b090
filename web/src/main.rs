//! `iptrack-web`: the reference server with the IpTracking middleware.

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use iptrack_core::{Settings, db, process, shutdown};
use iptrack_migration::{Migrator, MigratorTrait};
use iptrack_web::{Application, WebOptions};
use tokio_util::sync::CancellationToken;

/// The iptrack reference web server. Configuration comes from the environment (see README).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// TOML file with the same keys as the environment variables (the environment wins).
    #[arg(long, env = "IPTRACK_CONFIG")]
    config: Option<PathBuf>,
    /// Apply pending database migrations before serving.
    #[arg(long)]
    migrate: bool,
    /// Serve the same routes without the IpTracking middleware (for benchmarks).
    #[arg(long)]
    no_tracking: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let settings = match process::init("iptrack-web", args.config.as_deref()) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    process::exit_code("iptrack-web", run(args, settings).await)
}

async fn run(args: Args, settings: Settings) -> anyhow::Result<()> {
    if args.migrate {
        let db = db::connect(settings.database.url.expose()).await?;
        Migrator::up(&db, None).await?;
    }
    let app = Application::build(
        &settings,
        WebOptions {
            tracking: !args.no_tracking,
        },
    )
    .await?;
    let stop = CancellationToken::new();
    shutdown::cancel_on_signal(stop.clone());
    app.run_until_stopped(stop).await
}
