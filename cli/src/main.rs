//! `iptrack`: the operator's command. Each subcommand lives in `commands/`.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use iptrack_core::{Settings, telemetry};

mod commands;

/// IP tracking for web services. Configuration comes from the environment (see README).
#[derive(Debug, Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    /// TOML file with the same keys as the environment variables (the environment wins).
    #[arg(long, global = true, env = "IPTRACK_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending database migrations.
    Migrate,
    /// Run web, worker and scheduler in one process (migrations applied first).
    Up,
}

#[tokio::main]
async fn main() -> ExitCode {
    // clap exits with status 2 and one line on malformed arguments.
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("iptrack: {error}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.log_format);
    let result = match cli.command {
        Command::Migrate => commands::migrate::run(&settings).await,
        Command::Up => commands::up::run(&settings).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("iptrack: {error:#}");
            ExitCode::FAILURE
        }
    }
}
