//! What every iptrack binary does first and last, so `main` stays a few lines.

use std::{fmt::Display, path::Path, process::ExitCode};

use crate::{Settings, redis_status, telemetry};

/// Loads settings and starts logging. An invalid setting prints one line naming the
/// variable and yields exit status 2.
pub fn init(process: &str, config_file: Option<&Path>) -> Result<Settings, ExitCode> {
    match Settings::load(config_file) {
        Ok(settings) => {
            telemetry::init(settings.log_format);
            redis_status::init(&settings.redis.url);
            Ok(settings)
        }
        Err(error) => {
            eprintln!("{process}: {error}");
            Err(ExitCode::from(2))
        }
    }
}

/// The exit status for how the process ended; a failure is logged here, once, with its
/// causes (`{:#}` shows an `anyhow` chain).
pub fn exit_code<E: Display>(process: &str, result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{process} failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}
