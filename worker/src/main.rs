//! `iptrack-worker`: runs the apalis workers of every iptrack queue.

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use iptrack_core::{Settings, db, process, shutdown};
use iptrack_migration::{Migrator, MigratorTrait};
use iptrack_worker::{
    feeds::FeedSetupError, geo::GeoSetupError, jobs::deliver_notice::WebhookSetupError,
};
use tokio_util::sync::CancellationToken;

/// iptrack's job worker. Configuration comes from the environment (see README).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// TOML file with the same keys as the environment variables (the environment wins).
    #[arg(long, env = "IPTRACK_CONFIG")]
    config: Option<PathBuf>,
    /// Apply pending database migrations before starting.
    #[arg(long)]
    migrate: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let settings = match process::init("iptrack-worker", args.config.as_deref()) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    match run(args, settings).await {
        // A geolocation database, a feed CA file or a webhook client that cannot be set
        // up is a bad setting: one line, status 2.
        Err(error)
            if error.downcast_ref::<GeoSetupError>().is_some()
                || error.downcast_ref::<FeedSetupError>().is_some()
                || error.downcast_ref::<WebhookSetupError>().is_some() =>
        {
            eprintln!("iptrack-worker: {error}");
            ExitCode::from(2)
        }
        result => process::exit_code("iptrack-worker", result),
    }
}

async fn run(args: Args, settings: Settings) -> anyhow::Result<()> {
    if args.migrate {
        let db = db::connect(settings.database.url.expose()).await?;
        Migrator::up(&db, None).await?;
    }
    let stop = CancellationToken::new();
    shutdown::cancel_on_signal(stop.clone());
    iptrack_worker::start(&settings, stop).await?.wait().await;
    Ok(())
}
